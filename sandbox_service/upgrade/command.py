"""The `upgrade` command: bring sandboxes up to date after the host's packages were updated.

This module owns the orchestration around the three-way merge (see .threeway): choosing and loading the
sandboxes, planning each one (re-reading a wrapped host unit's settings over D-Bus, settling its security
profile anew, re-rendering its units, planning the merge of its /etc copies) before anything is written,
then applying all of them in one transaction with a single systemd daemon-reload (upgrade, UpgradeResult,
SandboxUpgrade), and afterwards restarting those that were running (restart_running), so the caller can
show what was merged before a restart that may fail.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePosixPath

from .. import control, locks, recovery, render, security, specfile, tree
from ..atomic import write_atomic
from ..create import translate_unit
from ..discover import host as host_discovery
from ..discover.unit import with_overrides
from ..errors import InvalidInput, NoSpace, NotFound, SandboxError, no_space
from ..identity import IdMap
from ..install import Transaction, write_units
from ..locks import LockPolicy
from ..paths import UNIT_DIR, Layout, sandbox_root_path, service_unit
from ..spec import Kind, SandboxSpec, ServiceDef
from ..systemd import Systemd, systemd_running
from .journal import MergeJournal, work_dir_for
from .threeway import MergePlan, MergeReport, apply_merge, plan_merge

RUNNING_STATES = ("active", "activating", "reloading")


@dataclass(frozen=True)
class SandboxUpgrade:
    name: str
    merge: MergeReport
    service_changes: tuple[str, ...]  # ServiceDef fields that differ after re-reading the host unit
    units: tuple[str, ...]  # unit files rewritten (with --dry-run: that would be)
    running: bool  # its service was running (restart_running restarts it)
    notes: tuple[str, ...]


@dataclass(frozen=True)
class UpgradeResult:
    sandboxes: tuple[SandboxUpgrade, ...]
    online: bool  # systemd was told (reload, restarts); False with --root or where it is not running
    dry_run: bool
    reloaded: bool
    skipped: tuple[str, ...] = ()  # --all: sandboxes whose create was interrupted (recovery.py)


@dataclass(frozen=True)
class Planned:
    spec: SandboxSpec  # as on disk
    new_spec: SandboxSpec
    merge: MergePlan | None
    files: dict[PurePosixPath, str]  # rendered units, by path on the target system
    units: tuple[str, ...]  # those whose text differs from what is on disk
    service_changes: tuple[str, ...]
    running: bool
    notes: tuple[str, ...]


def etc_copies(spec: SandboxSpec) -> tuple[str, ...]:
    """The copied paths upgrade merges: those under /etc (only they have a base copy)."""
    if spec.kind is Kind.CHROOT:
        return ()
    return tuple(p for p in spec.copies if p.startswith("/etc/"))


def upgrade(
    layout: Layout,
    names: Sequence[str],
    *,
    all_sandboxes: bool = False,
    dry_run: bool = False,
    lock: LockPolicy | None = None,
) -> UpgradeResult:
    """Merge, save specs, write units, reload once, holding the sandboxes' locks (not for --dry-run,
    which writes nothing). Nothing is restarted: see restart_running. A failure puts back every file,
    spec and unit written so far, and says so."""
    if all_sandboxes and names:
        raise InvalidInput("give sandbox names or --all, not both")
    if not all_sandboxes and not names:
        raise InvalidInput("no sandbox given", "name the sandboxes to upgrade, or use --all for every one")
    chosen = control.sandbox_names(layout) if all_sandboxes else list(dict.fromkeys(names))
    held = contextlib.nullcontext() if dry_run else locks.sandboxes(layout, chosen, policy=lock)
    with held:
        if all_sandboxes:  # one deleted while we waited for its lock is no longer there to upgrade
            chosen = [n for n in control.sandbox_names(layout) if n in chosen]
        skipped = tuple(n for n in chosen if recovery.is_incomplete(layout, n))
        if skipped and not all_sandboxes:
            raise InvalidInput(
                f"sandbox {skipped[0]!r} is not complete: the run that made it was interrupted",
                f"finish it with the same create command (or: sandbox-service delete {skipped[0]})",
            )
        specs = [control.load_spec(layout, n) for n in chosen if n not in skipped]
        online = layout.root == Path("/") and systemd_running()
        sd = Systemd() if online else None
        try:
            if not dry_run:
                for spec in specs:  # left by an upgrade that was killed; what it merged is consistent
                    recovery.discard_upgrade_work(layout, spec.name)
            # everything is read and checked before anything is written
            planned = [_plan_one(layout, spec, sd) for spec in specs]
            if dry_run:
                results = [_result(p, p.merge.report if p.merge else MergeReport(())) for p in planned]
                return UpgradeResult(tuple(results), online, True, False, skipped)
            return _apply_all(layout, planned, sd, skipped)
        finally:
            if sd is not None:
                sd.__exit__(None, None, None)


def _plan_one(layout: Layout, spec: SandboxSpec, sd: Systemd | None) -> Planned:
    notes: list[str] = []
    new_spec = spec
    if spec.kind is Kind.UNIT and spec.source_unit:
        if sd is None:
            notes.append(f"systemd is not running here: the settings of {spec.source_unit} were not re-read")
        else:
            service = with_overrides(_reread_service(spec, spec.source_unit, sd), spec.user, spec.group)
            version = host_discovery.systemd_version(layout.root)
            settled = security.settle(
                spec.security, service, version, layout.host(security.ADMIN_PROFILES), spec.tmpfiles
            )
            new_spec = replace(spec, service=service, security=settled.applied_to(spec.security))
    return plan_change(layout, spec, new_spec, sd, notes)


def plan_change(
    layout: Layout, spec: SandboxSpec, new_spec: SandboxSpec, sd: Systemd | None, notes: list[str]
) -> Planned:
    """What upgrading `spec` (on disk) to `new_spec` changes: the merge of its /etc copies, its units,
    whether it runs.  Reads only.  Also used by apply, which brings its new settings in this way."""
    changes = tuple(
        f.name
        for f in fields(ServiceDef)
        if getattr(spec.service, f.name) != getattr(new_spec.service, f.name)
    )
    notes += _service_notes(spec, new_spec, changes)
    files = render.render(new_spec)
    units = tuple(str(p) for p, text in files.items() if _read(layout.host(str(p))) != text)
    # the launcher and its settings inside the tree count as the sandbox's units: a new one needs a restart
    inside = layout.sandbox_root(spec.name)
    units += tuple(
        sandbox_root_path(spec.name) + p
        for p, text in render.tree_files(new_spec).items()
        if _read(inside / p.lstrip("/")) != text
    )
    paths = etc_copies(spec)
    plan = None
    if paths:
        ids = IdMap(spec.id_base) if spec.id_base is not None else None
        plan = plan_merge(layout.base_dir(spec.name), layout.root, layout.sandbox_root(spec.name), paths, ids)
        if not plan.report.had_base:
            notes.append(
                "no base copy (created by an older version): every difference from the host counts as "
                "a change in the sandbox; the base is made from the host's files now"
            )
    running = sd is not None and sd.service_status(service_unit(spec.name)).active_state in RUNNING_STATES
    return Planned(spec, new_spec, plan, files, units, changes, running, tuple(notes))


def _reread_service(spec: SandboxSpec, unit: str, sd: Systemd) -> ServiceDef:
    try:
        return translate_unit(sd.unit_settings(unit), sd).service
    except NotFound as exc:
        raise NotFound(
            f"sandbox {spec.name!r} wraps {unit}, which is gone: {exc.message}",
            f"reinstall its package, or remove the sandbox with: sandbox-service delete {spec.name}",
        ) from exc
    except SandboxError as exc:
        raise type(exc)(f"sandbox {spec.name!r}: {exc.message}", exc.hint) from exc


def _service_notes(old: SandboxSpec, new: SandboxSpec, changes: tuple[str, ...]) -> list[str]:
    notes = []
    for key in ("user", "group"):
        if key in changes:
            notes.append(
                f"{new.source_unit} now runs with {key.capitalize()}={getattr(new.service, key) or '(none)'} "
                f"(was {getattr(old.service, key) or '(none)'})"
            )
    if old.security != new.security:
        notes.append(
            f"security profile {new.security.profile!r} resolved anew for the changed service "
            "(see the unit for its directives)"
        )
    return notes


def _is_unit(path: str) -> bool:
    return PurePosixPath(path).parent == PurePosixPath(UNIT_DIR)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, IsADirectoryError):
        return None


def _result(p: Planned, report: MergeReport) -> SandboxUpgrade:
    return SandboxUpgrade(p.spec.name, report, p.service_changes, p.units, p.running, p.notes)


def apply_change(tx: Transaction, layout: Layout, p: Planned) -> MergeReport:
    """Write what plan_change planned for one sandbox (merge, spec, tree files, units); all of it is put
    back by `tx`'s rollback, the merge from its journal's work directory, which `tx`'s commit drops.
    Nothing is told to systemd."""
    spec = p.spec
    # files first: they are consistent step by step and a rerun finishes them; the spec and the units
    # follow
    report = MergeReport(())
    if p.merge:
        journal = MergeJournal(work_dir_for(layout.sandbox_dir(spec.name)))
        tx.on_rollback(functools.partial(_put_back, journal))
        tx.on_commit(journal.commit)
        report = apply_merge(p.merge, selinux_level=spec.selinux_level, journal=journal)
    if p.new_spec != spec:
        path = layout.spec_file(spec.name)
        tx.on_rollback(functools.partial(specfile.save, path, spec))
        specfile.save(path, p.new_spec)
    # the launcher and its settings follow the tool's version and the re-read unit
    _write_tree_files(tx, layout.sandbox_root(spec.name), render.tree_files(p.new_spec))
    if any(_is_unit(u) for u in p.units):
        write_units(tx, layout, p.files, spec.name, replace=True)
    return report


def _put_back(journal: MergeJournal) -> None:
    problems = journal.rollback()
    if problems:
        raise SandboxError("; ".join(problems))


def _write_tree_files(tx: Transaction, root: Path, files: dict[str, str]) -> None:
    for path in files:
        target = tree.inside(root, path)
        try:
            old = target.read_bytes()
        except FileNotFoundError:
            tx.on_rollback(functools.partial(target.unlink, missing_ok=True))
        else:
            tx.on_rollback(functools.partial(write_atomic, target, old))
    tree.write_tree_files(root, files)


def _apply_all(
    layout: Layout, planned: list[Planned], sd: Systemd | None, skipped: tuple[str, ...]
) -> UpgradeResult:
    reports = []
    tx = Transaction()
    reloading = False
    if sd is not None:
        # last to run on a rollback, once the old units are back: systemd reads them again
        tx.on_rollback(lambda: sd.reload() if reloading else None)
    try:
        for p in planned:
            reports.append(apply_change(tx, layout, p))
        reloaded = False
        # a unit file changed, or one an upgrade that was killed wrote before it could reload
        if sd is not None and (
            any(_is_unit(u) for p in planned for u in p.units) or sd.stale_units(_unit_names(planned))
        ):
            reloading = True
            sd.reload()
            reloaded = True
    except BaseException as exc:
        problems = tx.rollback()
        if isinstance(exc, (SandboxError, OSError)):
            raise _failed(exc, [p.spec.name for p in planned], problems, layout) from exc
        raise
    tx.commit()
    results = [_result(p, r) for p, r in zip(planned, reports, strict=True)]
    return UpgradeResult(tuple(results), sd is not None, False, reloaded, skipped)


def _unit_names(planned: list[Planned]) -> list[str]:
    return [path.name for p in planned for path in p.files if path.name not in render.STATIC_UNITS]


def _failed(
    exc: SandboxError | OSError, names: list[str], problems: list[str], layout: Layout
) -> SandboxError:
    """The error of an upgrade that was put back: what stopped it, and that (or what not) was undone."""
    which = ", ".join(names)
    if problems:
        after = f"; putting back what was written failed too: {'; '.join(problems)}"
    else:
        after = f"; nothing was changed: the /etc, spec and units of {which} are as they were"
    detail = exc.message if isinstance(exc, SandboxError) else f"{exc.filename}: {exc.strerror}"
    if no_space(exc) is not None:
        return NoSpace(
            f"upgrade of {which} stopped: {detail}: the file system is full{after}",
            f"free space (df -h {layout.sandbox_base}), then run the upgrade again",
        )
    if isinstance(exc, SandboxError):
        return type(exc)(f"upgrade of {which} stopped: {detail}{after}", exc.hint)
    return SandboxError(
        f"upgrade of {which} stopped: {detail}{after}", "fix the cause and run the upgrade again"
    )


def restart_running(layout: Layout, result: UpgradeResult) -> tuple[str, ...]:
    """Restart the upgraded sandboxes that were running (one job each, waited for together), so they use
    the new files, units and the host's updated programs. Returns their names; nothing offline or dry."""
    names = tuple(s.name for s in result.sandboxes if s.running)
    if names and result.online and not result.dry_run:
        control.restart(layout, names)
        return names
    return ()
