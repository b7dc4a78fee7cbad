"""The `upgrade` command: bring sandboxes up to date after the host's packages were updated.

This module owns the orchestration around the three-way merge (see .threeway): choosing and loading the
sandboxes, planning each one (re-reading a wrapped host unit's settings over D-Bus, settling its security
profile anew, re-rendering its units, planning the merge of its /etc copies) before anything is written,
then applying all of them in one transaction with a single systemd daemon-reload (upgrade, UpgradeResult,
SandboxUpgrade), and afterwards restarting those that were running (restart_running), so the caller can
show what was merged before a restart that may fail.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePosixPath

from .. import control, render, security, specfile, tree
from ..create import translate_unit
from ..discover import host as host_discovery
from ..discover.unit import with_overrides
from ..errors import InvalidInput, NotFound, SandboxError
from ..identity import IdMap
from ..install import Transaction, write_units
from ..paths import UNIT_DIR, Layout, sandbox_root_path, service_unit
from ..spec import Kind, SandboxSpec, ServiceDef
from ..systemd import Systemd, systemd_running
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
    layout: Layout, names: Sequence[str], *, all_sandboxes: bool = False, dry_run: bool = False
) -> UpgradeResult:
    """Merge, save specs, write units, reload once. Nothing is restarted: see restart_running."""
    if all_sandboxes and names:
        raise InvalidInput("give sandbox names or --all, not both")
    if not all_sandboxes and not names:
        raise InvalidInput("no sandbox given", "name the sandboxes to upgrade, or use --all for every one")
    chosen = control.sandbox_names(layout) if all_sandboxes else list(dict.fromkeys(names))
    specs = [control.load_spec(layout, n) for n in chosen]
    online = layout.root == Path("/") and systemd_running()
    sd = Systemd() if online else None
    try:
        # everything is read and checked before anything is written
        planned = [_plan_one(layout, spec, sd) for spec in specs]
        if dry_run:
            results = [_result(p, p.merge.report if p.merge else MergeReport(())) for p in planned]
            return UpgradeResult(tuple(results), online, True, False)
        return _apply_all(layout, planned, sd)
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
    """Write what plan_change planned for one sandbox (merge, spec, tree files, units); the spec and
    units are undone by `tx`.  Nothing is told to systemd."""
    spec = p.spec
    # files first: they are consistent step by step and a rerun finishes them; the spec and the units
    # follow, and are rolled back if systemd cannot reload
    report = apply_merge(p.merge, selinux_level=spec.selinux_level) if p.merge else MergeReport(())
    if p.new_spec != spec:
        path = layout.spec_file(spec.name)
        tx.on_rollback(functools.partial(specfile.save, path, spec))
        specfile.save(path, p.new_spec)
    # the launcher and its settings follow the tool's version and the re-read unit
    tree.write_tree_files(layout.sandbox_root(spec.name), render.tree_files(p.new_spec))
    if any(_is_unit(u) for u in p.units):
        write_units(tx, layout, p.files, spec.name, replace=True)
    return report


def _apply_all(layout: Layout, planned: list[Planned], sd: Systemd | None) -> UpgradeResult:
    reports = []
    with Transaction() as tx:
        for p in planned:
            reports.append(apply_change(tx, layout, p))
        reloaded = False
        if sd is not None and any(_is_unit(u) for p in planned for u in p.units):
            sd.reload()
            reloaded = True
        tx.commit()
    results = [_result(p, r) for p, r in zip(planned, reports, strict=True)]
    return UpgradeResult(tuple(results), sd is not None, False, reloaded)


def restart_running(layout: Layout, result: UpgradeResult) -> tuple[str, ...]:
    """Restart the upgraded sandboxes that were running (one job each, waited for together), so they use
    the new files, units and the host's updated programs. Returns their names; nothing offline or dry."""
    names = tuple(s.name for s in result.sandboxes if s.running)
    if names and result.online and not result.dry_run:
        control.restart(layout, names)
        return names
    return ()
