"""What a sandbox holds on this system, found by looking, and how to remove it: the recovery after a run
that was killed, crashed or lost power halfway.

A sandbox exists when its directory NAME/ holds sandbox.yaml and no INCOMPLETE mark.  Everything else
that carries its name is a trace (Traces): the directory of a create or clone that did not finish (it
still has the mark), staging directories (``.NAME.staging-PID``), a directory being deleted
(``.NAME.deleting-PID``), upgrade work directories (``NAME/.upgrade-PID``), unit files whose marker line
names it and their temp files, enable links to them, its MCS pair and ID range in the registries, the
host account ``sb-NAME`` the tool made, and the empty mount point of its /run.  None of this needs
sandbox.yaml to be found, so a sandbox is removable whatever step its run died in.

Callers hold the sandbox's lock (locks.py): then no other run is working on it, and every trace is
left over.  The recovery of each command, as the README's Reliability section lists them:

- create / clone: a NAME that is not a sandbox but has traces is cleared (remove_traces), then made
  anew; ``create --exist-ok`` on a complete sandbox rewrites its units and finishes registering it;
- delete: removes the traces of a NAME whether it is a sandbox, half one, or only traces;
- upgrade: work directories of a killed run are dropped (discard_upgrade_work); the merge itself is
  consistent after every step, so running it again finishes it;
- apply: holding the lock of every sandbox, it clears the listed names whose last run did not finish
  (clear_unfinished) before it plans, so they are made anew; what it updates goes as upgrade's does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import identity, locks, selinux
from .atomic import TEMP_INFIX, fsync_dir, pid_alive, stale_temps
from .errors import JobFailed
from .index import INDEX_NAME
from .install import is_ours
from .paths import (
    DELETING,
    INCOMPLETE_MARK,
    SPEC_FILE_NAME,
    STAGING,
    Layout,
    runtime_dir_path,
    service_unit,
    slice_unit,
    unit_base,
)
from .render import STATIC_UNITS, run_mount_unit
from .run import run
from .systemd import Systemd
from .tree import remove_tree

UPGRADE_WORK = ".upgrade-"  # NAME/.upgrade-PID: the work directory of an upgrade (threeway.MergeJournal)


def mark_complete(directory: Path) -> None:
    """The last step of making a sandbox: once the mark is gone, it exists."""
    (directory / INCOMPLETE_MARK).unlink()
    fsync_dir(directory)


def is_complete(layout: Layout, name: str) -> bool:
    d = layout.sandbox_dir(name)
    return (d / SPEC_FILE_NAME).is_file() and not os.path.lexists(d / INCOMPLETE_MARK)


def is_incomplete(layout: Layout, name: str) -> bool:
    return os.path.lexists(layout.sandbox_dir(name) / INCOMPLETE_MARK)


@dataclass(frozen=True)
class Traces:
    """Everything of sandbox `name` found on this system (see the module's description)."""

    name: str
    sandbox_dir: Path | None  # NAME/ with sandbox.yaml or the INCOMPLETE mark
    complete: bool  # NAME/ is a sandbox (not a run's unfinished work)
    side_dirs: tuple[Path, ...]  # staging and deleting directories
    unit_files: tuple[Path, ...]  # unit files whose marker line names the sandbox
    unit_temps: tuple[Path, ...]  # temp files of unit writes that were cut short
    enable_links: tuple[Path, ...]
    mcs_level: str | None
    id_base: int | None
    account: bool  # the host account sb-NAME (or its group) is the sandbox's
    runtime_dir: Path | None
    # temp files of what all sandboxes share (registries, sandbox.target) whose writer is gone: a run
    # killed while writing one left it, most likely this sandbox's run
    shared_temps: tuple[Path, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.describe()

    def unit_names(self) -> list[str]:
        return [p.name for p in self.unit_files]

    def describe(self) -> list[str]:
        """The traces as short phrases, for messages."""
        out = []
        if self.sandbox_dir is not None:
            what = "its directory" if self.complete else "the unfinished directory"
            out.append(f"{what} {self.sandbox_dir}")
        out += [f"directory {d}" for d in self.side_dirs]
        if self.unit_files:
            out.append("units " + ", ".join(self.unit_names()))
        out += [f"temp file {p}" for p in self.unit_temps]
        out += [f"enable link {p}" for p in self.enable_links]
        if self.mcs_level:
            out.append(f"MCS pair {self.mcs_level}")
        if self.id_base is not None:
            out.append(f"ID range {self.id_base}")
        if self.account:
            out.append(f"host account {identity.account_name(self.name)}")
        if self.runtime_dir is not None:
            out.append(f"mount point {self.runtime_dir}")
        out += [f"temp file {p}" for p in self.shared_temps]
        return out


def own_unit_names(name: str) -> set[str]:
    """The units every sandbox of this name has, whatever its spec says."""
    return {service_unit(name), slice_unit(name), run_mount_unit(name), f"{unit_base(name)}-netns.service"}


def find_traces(layout: Layout, name: str) -> Traces:
    """Look for everything of sandbox `name`; reads only."""
    d = layout.sandbox_dir(name)
    has_dir = (d / SPEC_FILE_NAME).is_file() or os.path.lexists(d / INCOMPLETE_MARK)
    side = []
    if layout.sandbox_base.is_dir():
        for what in (STAGING, DELETING):
            side += sorted(layout.sandbox_base.glob(f".{name}.{what}-*"))
    units, temps = _unit_traces(layout, name)
    links = _enable_links(layout, {p.name for p in units} | {service_unit(name)})
    mcs = selinux.McsRegistry(layout.mcs_registry).lookup(name)
    ids = identity.registry_for(layout).lookup(name)
    runtime = layout.host(runtime_dir_path(name))
    return Traces(
        name=name,
        sandbox_dir=d if has_dir else None,
        complete=is_complete(layout, name),
        side_dirs=tuple(side),
        unit_files=tuple(units),
        unit_temps=tuple(temps),
        enable_links=tuple(links),
        mcs_level=mcs,
        id_base=ids,
        account=identity.account_is_sandboxes(layout, name, ids),
        runtime_dir=runtime if runtime.is_dir() and not runtime.is_symlink() else None,
        shared_temps=tuple(p for f in shared_files(layout) for p in stale_temps(f)),
    )


def shared_files(layout: Layout) -> list[Path]:
    """Files every sandbox's runs write (atomically, through a temp file)."""
    registries = [layout.mcs_registry, identity.registry_for(layout).path, layout.sandbox_base / INDEX_NAME]
    return [*registries, *(layout.unit_dir / u for u in STATIC_UNITS)]


def _unit_traces(layout: Layout, name: str) -> tuple[list[Path], list[Path]]:
    units: list[Path] = []
    temps: list[Path] = []
    try:
        entries = sorted(os.scandir(layout.unit_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return units, temps
    own = own_unit_names(name)
    for e in entries:
        if not e.is_file(follow_symlinks=False):
            continue
        path = Path(e.path)
        if e.name.startswith(".") and TEMP_INFIX in e.name:
            unit = e.name[1:].rsplit(TEMP_INFIX, 1)[0]
            pid = e.name.rsplit(TEMP_INFIX, 1)[1]
            # a temp file cut short may be empty: known by its unit's name then
            mine = unit in own or unit.startswith(f"{unit_base(name)}-publish-") or is_ours(path, name)
            if pid.isdigit() and not pid_alive(int(pid)) and mine:
                temps.append(path)
        elif is_ours(path, name):
            units.append(path)
    return units, temps


def _enable_links(layout: Layout, units: set[str]) -> list[Path]:
    links = []
    for wants in sorted(layout.unit_dir.glob("*.wants")) + sorted(layout.unit_dir.glob("*.requires")):
        for unit in sorted(units):
            link = wants / unit
            if link.is_symlink():
                links.append(link)
    return links


def remove_traces(
    layout: Layout, all_traces: Sequence[Traces], sd: Systemd | None, *, keep_data: bool = False
) -> None:
    """Remove the traces of sandboxes, in an order that a run killed at any step can be repeated:

    their units are stopped; each directory is renamed away (``.NAME.deleting-PID``: from here on NAME is
    no sandbox, whatever happens next); enable links, unit files and temp files go, systemd reloads
    once; then the directories, the registry entries and the host account, which nothing refers to any
    more.  With keep_data a complete sandbox keeps its directory, registry entries and account (the
    files in it are owned by its ID range and labelled with its pair)."""
    if sd is not None:
        _stop(sd, all_traces)
    doomed: list[Path] = []
    for t in all_traces:
        kept = keep_data and t.complete
        if t.sandbox_dir is not None and not kept:
            away = layout.side_dir(t.name, DELETING, os.getpid())
            os.rename(t.sandbox_dir, away)
            fsync_dir(layout.sandbox_base)
            doomed.append(away)
        doomed += t.side_dirs
    for t in all_traces:
        for path in (*t.enable_links, *t.unit_files, *t.unit_temps):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if sd is not None:
        sd.reload()
        for t in all_traces:  # a failed unit is kept in memory, file or not, until its failure is reset
            for unit in sorted(own_unit_names(t.name) | set(t.unit_names())):
                sd.reset_failed(unit)
    for d in doomed:
        remove_tree(d)
    with locks.host(layout):  # what the sandboxes share
        for t in all_traces:
            if not (keep_data and t.complete):
                _release(layout, t)
            for path in t.shared_temps:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    for t in all_traces:
        # systemd leaves the empty mount point of the sandbox's /run behind when it unmounts it
        if t.runtime_dir is not None:
            with contextlib.suppress(OSError):
                t.runtime_dir.rmdir()


def _stop(sd: Systemd, all_traces: Sequence[Traces]) -> None:
    from .control import run_job  # control's delete uses this module

    # Every unit of the sandboxes at once: systemd orders the stops (the service before the /run mount it
    # requires).  A unit systemd cannot load (its file is gone already) cannot be stopped and needs no
    # stop; stopping the slice stops whatever still runs in it.
    units = [u for t in all_traces for u in sorted(own_unit_names(t.name) | set(t.unit_names()))]
    up = [u.name for u in sd.list_units(units) if u.load_state == "loaded" or _up(u.active_state)]
    if not up:
        return
    try:
        run_job(sd, "stop", up)
    except JobFailed:
        # systemd 252 on cgroup v1 now and then cannot start the helper that unmounts a sandbox's /run
        # (exit status 219/CGROUP), and then stops trying for a while: unmount it directly, and stop
        # what is left
        for t in all_traces:
            run(["umount", runtime_dir_path(t.name)], check=False)
        left = [u.name for u in sd.list_units(up) if _up(u.active_state)]
        if left:
            run_job(sd, "stop", left)


def _up(active_state: str) -> bool:
    return active_state not in ("inactive", "failed")


def _release(layout: Layout, t: Traces) -> None:
    """Registry entries and the host account: last, once no file is owned by the range or carries the
    pair.  The account goes before the range, so a range is never free while its account exists."""
    if t.account:
        identity.remove_account(layout, t.name)
    if t.id_base is not None:
        identity.registry_for(layout).release(t.name)
    if t.mcs_level is not None:
        selinux.McsRegistry(layout.mcs_registry).release(t.name)


def discard_upgrade_work(layout: Layout, name: str) -> list[Path]:
    """Remove the work directories (temp files, replaced entries) of upgrades of `name` that were killed;
    returns them.  What they had merged is consistent: the next merge finishes it."""
    d = layout.sandbox_dir(name)
    found = sorted(d.glob(f"{UPGRADE_WORK}*")) if d.is_dir() else []
    for w in found:
        remove_tree(w)
    return found


def remove_side_dirs(layout: Layout, name: str) -> list[Path]:
    """Staging and deleting directories of `name` (runs that were killed); returns them."""
    t = find_traces(layout, name)
    for d in t.side_dirs:
        remove_tree(d)
    for p in t.unit_temps:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return [*t.side_dirs, *t.unit_temps]


def remove_stray_units(layout: Layout, name: str, files: Mapping[PurePosixPath, str]) -> list[Path]:
    """Unit files of `name` that its spec no longer renders (a killed run's, or an older version's)."""
    wanted = {layout.host(str(p)) for p in files}
    units, _temps = _unit_traces(layout, name)
    stray = [u for u in units if u not in wanted]
    for u in stray:
        u.unlink()
    return stray


def unfinished(layout: Layout, names: Sequence[str]) -> list[str]:
    """Those of `names` that are no sandbox but have traces of an unfinished run: a staging or deleting
    directory, an unfinished sandbox directory, or a registry entry.  One listing of the sandboxes'
    directory and one read of each registry, however many names (apply)."""
    wanted = set(names)
    try:
        entries = os.listdir(layout.sandbox_base)
    except FileNotFoundError:
        return []
    found: set[str] = set()
    for entry in entries:
        if entry.startswith(".") and (f".{STAGING}-" in entry or f".{DELETING}-" in entry):
            found.add(entry[1:].rsplit(".", 1)[0])
        elif entry in wanted and os.path.lexists(layout.sandbox_dir(entry) / INCOMPLETE_MARK):
            found.add(entry)
    found |= set(identity.registry_for(layout).ranges()) | set(
        selinux.McsRegistry(layout.mcs_registry).pairs()
    )
    return sorted(n for n in found & wanted if not is_complete(layout, n))


def clear_unfinished(layout: Layout, names: Sequence[str], sd: Systemd | None) -> list[Traces]:
    """Remove the traces of those of `names` whose last run did not finish (see unfinished), so that
    they are made anew; returns what was found."""
    found = [find_traces(layout, n) for n in unfinished(layout, names)]
    found = [t for t in found if not t.empty]
    if found:
        remove_traces(layout, found, sd)
    return found
