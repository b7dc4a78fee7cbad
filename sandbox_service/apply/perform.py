"""Carrying out an apply plan, in batches, with one daemon-reload.

1. The host's limits are checked for every sandbox that will start (hostlimits): refused before
   anything is done.
2. What must stop (pruned, or listed as not started) stops: one batch of jobs.
3. The ID ranges of the new sandboxes are taken in one edit of the registry, their host accounts in one
   locked edit of passwd and group (accounts.py).
4. Each sandbox is made, changed or has its units removed by one function (_create_one, _update_one,
   _delete_one), each in a transaction of its own: a sandbox that fails is undone and reported, the
   others go on.  Files are written atomically but synced once for all, at the end (atomic.py).
5. Enable links, then one daemon-reload for all; if systemd cannot reload, everything of this run is
   undone.
6. The data of pruned sandboxes goes; their ranges and accounts in one edit each.
7. Start and restart jobs are waited for together, fed to systemd START_WINDOW at a time as others
   finish; a sandbox that fails to start is kept (it is complete) and reported with its journal.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import accounts, control, create, fswalk, hostlimits, identity, recovery, specfile, tree
from ..atomic import deferred_sync
from ..errors import JobFailed, SandboxError
from ..identity import IdMap
from ..install import Transaction, enable_offline, remove_enable_links
from ..journal import tail
from ..paths import Layout, service_unit
from ..spec import SandboxSpec
from ..systemd import Systemd
from ..upgrade.command import apply_change
from .plan import Action, ApplyPlan, Verb

Progress = Callable[[str, int, int], None]  # (phase, done, total)
JOURNAL_TAILS = 5  # sandboxes that failed to start whose journal is read (each read takes a while)
RETRIED_RESULTS = ("dependency", "canceled")
# Start jobs queued at once: systemd runs every queued job at the same time, and each one's start
# timeout runs while it waits for the CPU behind the others (1000 at once on 2 cores: starts timed out).
START_WINDOW = 16 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Outcome:
    name: str
    result: str  # created, updated, unchanged, deleted, failed
    planned: str  # what the plan said: create, update, unchanged, delete
    changes: tuple[str, ...] = ()
    started: bool = False
    stopped: bool = False
    restarted: bool = False
    kept: bool = False  # failed to start, but what apply made or changed of it stays
    error: str | None = None
    hint: str | None = None
    journal: tuple[str, ...] = ()


@dataclass
class ApplyResult:
    outcomes: list[Outcome]
    online: bool
    reloaded: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # time spent in each phase

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == "failed"]


class _Run:
    """The state of one apply run: what has been done to which sandbox so far."""

    def __init__(self, layout: Layout, plan: ApplyPlan, sd: Systemd | None, progress: Progress | None):
        self.layout = layout
        self.plan = plan
        self.sd = sd
        self.progress = progress or (lambda phase, done, total: None)
        self.errors: dict[str, SandboxError] = {a.name: a.error for a in plan.actions if a.error}
        self.journals: dict[str, tuple[str, ...]] = {}
        self.specs: dict[str, SandboxSpec] = {}  # final specs of created and updated sandboxes
        self.transactions: list[Transaction] = []
        self.started: set[str] = set()
        self.stopped: set[str] = set()
        self.restarted: set[str] = set()
        self.result = ApplyResult([], sd is not None)

    def ok(self) -> list[Action]:
        return [a for a in self.plan.actions if a.name not in self.errors]

    def fail(self, name: str, exc: SandboxError) -> None:
        self.errors[name] = exc

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.result.seconds[name] = self.result.seconds.get(name, 0.0) + time.monotonic() - began


def perform(
    layout: Layout, plan: ApplyPlan, sd: Systemd | None, progress: Progress | None = None
) -> ApplyResult:
    run = _Run(layout, plan, sd, progress)
    with run.phase("limits"):
        _check_limits(run)
    with run.phase("stop"):
        _stop(run)
    with run.phase("accounts"):
        ranges = _take_ranges(run)
    with run.phase("build"), deferred_sync():  # one sync of the file system for all, at the end
        _clean_stale_staging(layout)
        _build(run, ranges)
    with run.phase("reload"):
        _register(run)
    with run.phase("cleanup"):
        _remove_pruned_data(run)
    with run.phase("start"):
        _start(run)
    run.result.outcomes = [_outcome(run, a) for a in plan.actions]
    return run.result


# -- 1. limits ------------------------------------------------------------------------------------------


def _check_limits(run: _Run) -> None:
    if run.sd is None:
        return
    starting = [_final_spec(a) for a in run.ok() if a.start]
    if starting:
        version = run.sd.version()
        hostlimits.check_room([hostlimits.spec_cost(s, version) for s in starting])


def _final_spec(a: Action) -> SandboxSpec:
    spec = a.created.spec if a.created else a.new_spec or a.spec
    assert spec is not None
    return spec


# -- 2. stop --------------------------------------------------------------------------------------------


def _stop(run: _Run) -> None:
    if run.sd is None:
        return
    stopping = [a for a in run.ok() if a.stop]
    if not stopping:
        return
    # a pruned sandbox's slice is stopped too: that unloads it, and everything of the sandbox runs in it
    units: dict[str, str] = {}
    for a in stopping:
        units[service_unit(a.name)] = a.name
        if a.verb is Verb.DELETE:
            units[f"sandbox-{a.name}.slice"] = a.name
    loaded = {u.name for u in run.sd.list_units(list(units)) if u.load_state == "loaded"}
    jobs = _submit(run, "stop", [u for u in units if u in loaded], units)
    results = run.sd.wait(jobs)
    for unit, result in results.items():
        if result != "done":
            run.fail(units[unit], JobFailed(f"stop of {unit} failed (job result: {result})", unit=unit))
    run.stopped = {a.name for a in stopping if a.name not in run.errors}


# -- 3. ID ranges and host accounts ---------------------------------------------------------------------


def _take_ranges(run: _Run) -> dict[str, int]:
    """Ranges and accounts of the new sandboxes that have a user namespace, in one edit each."""
    names = [
        a.name
        for a in run.ok()
        if a.verb is Verb.CREATE and a.created is not None and a.created.spec.security.user_namespace
    ]
    if not names:
        return {}
    ranges = identity.registry_for(run.layout).allocate_many(names)
    try:
        accounts.add(
            run.layout.root,
            [
                accounts.Account(identity.account_name(n), ranges[n], identity.account_comment(n))
                for n in names
            ],
        )
    except SandboxError:
        identity.registry_for(run.layout).release_many(names)
        raise
    return ranges


def _give_back_ranges(run: _Run, names: list[str]) -> None:
    if names:
        accounts.remove(run.layout.root, [identity.account_name(n) for n in names])
        identity.registry_for(run.layout).release_many(names)


# -- 4. each sandbox ------------------------------------------------------------------------------------


def _build(run: _Run, ranges: dict[str, int]) -> None:
    todo = [a for a in run.ok() if a.verb is not Verb.KEEP]
    given_back: list[str] = []
    for i, a in enumerate(todo, 1):
        tx = Transaction()
        try:
            if a.verb is Verb.CREATE:
                run.specs[a.name] = _create_one(tx, run.layout, a, ranges.get(a.name))
            elif a.verb is Verb.UPDATE:
                run.specs[a.name] = _update_one(tx, run.layout, a)
            else:
                _delete_one(run.layout, a)
        except SandboxError as exc:
            tx.rollback()
            run.fail(a.name, exc)
            if a.name in ranges:
                given_back.append(a.name)
        else:
            run.transactions.append(tx)
        run.progress("building", i, len(todo))
    _give_back_ranges(run, given_back)


def _create_one(tx: Transaction, layout: Layout, a: Action, id_base: int | None) -> SandboxSpec:
    """Make one sandbox (create's install: tree, spec, units), its range and account taken already."""
    assert a.created is not None
    return create.install(tx, a.created, layout, id_base=id_base).spec


def _update_one(tx: Transaction, layout: Layout, a: Action) -> SandboxSpec:
    """Change one sandbox: the host paths newly listed copied in, then what upgrade does (merge, spec,
    tree files, units); or, when only its bookkeeping changes, its spec."""
    assert a.spec is not None and a.new_spec is not None
    if a.added_copies:
        ids = IdMap(a.spec.id_base) if a.spec.id_base is not None else None
        root = layout.sandbox_root(a.name)
        for path in a.added_copies:
            tree.copy_path(layout.root, root, path, owner=ids.shift() if ids else fswalk.identity)
            if path.startswith("/etc/"):
                tree.copy_path(layout.root, layout.base_dir(a.name), path)
    if a.change is not None:
        recovery.discard_upgrade_work(layout, a.name)  # an upgrade's that was killed
        apply_change(tx, layout, a.change)
    else:
        spec_file = layout.spec_file(a.name)
        old = a.spec
        tx.on_rollback(lambda: specfile.save(spec_file, old))
        specfile.save(spec_file, a.new_spec)
    return a.new_spec


def _delete_one(layout: Layout, a: Action) -> None:
    """The units of one pruned sandbox (its data goes once systemd has let go of them)."""
    assert a.spec is not None
    remove_enable_links(layout, service_unit(a.name))
    control.remove_sandbox_units(layout, a.spec)


# -- 5. enable links, one reload ------------------------------------------------------------------------


def _register(run: _Run) -> None:
    done = {a.name: a for a in run.ok()}
    enable = [service_unit(n) for n, a in done.items() if a.enable is True]
    disable = [service_unit(n) for n, a in done.items() if a.enable is False]
    changed = any(
        a.verb in (Verb.CREATE, Verb.DELETE)
        or (a.verb is Verb.UPDATE and a.change is not None and a.change.units)
        for a in done.values()
    )
    try:
        if run.sd is None:
            with Transaction() as tx:
                if enable:
                    enable_offline(tx, run.layout, enable)
                for svc in disable:
                    remove_enable_links(run.layout, svc)
                tx.commit()
        else:
            # the links first, so that the one reload sees them too
            if enable:
                run.sd.enable(["sandbox.target", *enable])
            if disable:
                run.sd.disable(disable)
            if changed or enable or disable:
                run.sd.reload()
                run.result.reloaded = True
    except BaseException:
        for tx in reversed(run.transactions):
            tx.rollback()
        _give_back_ranges(run, [n for n, a in done.items() if a.verb is Verb.CREATE and n in run.specs])
        raise
    for tx in run.transactions:
        tx.commit()
    for name, a in done.items():  # registered: from now on they exist (recovery.py)
        if a.verb is Verb.CREATE and name in run.specs:
            recovery.mark_complete(run.layout.sandbox_dir(name))


# -- 6. data of pruned sandboxes ------------------------------------------------------------------------


def _remove_pruned_data(run: _Run) -> None:
    pruned = [a for a in run.ok() if a.verb is Verb.DELETE and a.spec is not None]
    for a in pruned:
        assert a.spec is not None
        tree.remove_tree(run.layout.sandbox_dir(a.name))
        if a.spec.selinux_level:
            from ..selinux import McsRegistry

            McsRegistry(run.layout.mcs_registry).release(a.name)
        control.remove_runtime_dir(run.layout, a.spec)
        if run.sd is not None:
            run.sd.reset_failed(service_unit(a.name))
    _give_back_ranges(run, [a.name for a in pruned if a.spec is not None and a.spec.id_base is not None])


# -- 7. start -------------------------------------------------------------------------------------------


def _start(run: _Run) -> None:
    if run.sd is None:
        return
    ok = run.ok()
    restart = [a for a in ok if a.restart]
    start = [a for a in ok if a.start]
    owner = {u: a.name for a in restart + start for u in control.units_to_wait_for(_final_spec(a))}
    began = time.time()
    restart_units = {service_unit(a.name) for a in restart}
    requests = [("restart", u) for u in sorted(restart_units)]
    requests += [("start", u) for a in start for u in control.units_to_wait_for(_final_spec(a))]
    if not requests:
        return

    def refused(unit: str, exc: SandboxError) -> None:
        verb = "restart" if unit in restart_units else "start"
        run.fail(owner[unit], type(exc)(f"{verb} of {unit}: {exc.message}", exc.hint))

    results = run.sd.run_jobs(
        requests,
        window=START_WINDOW,
        progress=lambda done, total: run.progress("starting", done, total),
        refused=refused,
    )
    # A job that failed only because a job it depended on was cancelled or failed (a busy PID 1
    # starting hundreds of units at once) gets one more try, in a second batch.
    again = [(verb, u) for verb, u in requests if results.get(u) in RETRIED_RESULTS]
    if again:
        results.update(run.sd.run_jobs(again, window=START_WINDOW, refused=refused))
    for unit, result in results.items():
        name = owner[unit]
        if result != "done" and name not in run.errors:
            verb = "restart" if any(a.name == name for a in restart) else "start"
            run.fail(name, JobFailed(f"{verb} of {unit} failed (job result: {result})", unit=unit))
            if len(run.journals) < JOURNAL_TAILS:
                run.journals[name] = tail(unit, since=began)
    run.started = {a.name for a in start if a.name not in run.errors}
    run.restarted = {a.name for a in restart if a.name not in run.errors}


def _submit(run: _Run, verb: str, units: list[str], owner: dict[str, str]) -> dict[str, bytes]:
    """Enqueue one job per unit; a unit systemd refuses a job for fails alone."""
    assert run.sd is not None
    jobs: dict[str, bytes] = {}
    for unit in units:
        try:
            jobs.update(run.sd.submit(verb, [unit]))
        except SandboxError as exc:
            run.fail(owner[unit], type(exc)(f"{verb} of {unit}: {exc.message}", exc.hint))
    return jobs


def _outcome(run: _Run, a: Action) -> Outcome:
    error = run.errors.get(a.name)
    done = {Verb.CREATE: "created", Verb.UPDATE: "updated", Verb.KEEP: "unchanged", Verb.DELETE: "deleted"}
    return Outcome(
        name=a.name,
        result="failed" if error is not None else done[a.verb],
        planned=a.verb.value,
        changes=a.changes,
        started=a.name in run.started,
        stopped=a.name in run.stopped,
        restarted=a.name in run.restarted,
        kept=error is not None and a.name in run.specs,
        error=None if error is None else error.message,
        hint=None if error is None else error.hint,
        journal=run.journals.get(a.name, ()),
    )


def _clean_stale_staging(layout: Layout) -> None:
    """Staging directories of creates that were interrupted (their process is gone): one scan."""
    try:
        entries = os.listdir(layout.sandbox_base)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.startswith(".") and ".staging-" in entry:
            pid = entry.rsplit("-", 1)[-1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                tree.remove_tree(layout.sandbox_base / entry)
