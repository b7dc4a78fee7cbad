"""Commands on existing sandboxes: start, stop, restart, reload, status, list, delete.

Each command opens one systemd connection and issues at most one daemon-reload, however many sandboxes
it handles.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from . import identity, locks, recovery, render, selinux, specfile, tree
from .diagnose import Diagnosis, diagnose
from .errors import InvalidInput, JobFailed, NotFound
from .install import Transaction, enable_offline, remove_enable_links, remove_units
from .journal import tail
from .locks import LockPolicy
from .network.units import publish_units
from .paths import SPEC_FILE_NAME, Layout, runtime_dir_path, sandbox_name_of, service_unit, slice_unit
from .run import run_interactive
from .spec import SandboxSpec, check_name
from .systemd import Systemd, systemd_running


def load_spec(layout: Layout, name: str) -> SandboxSpec:
    """The spec of sandbox `name`, checked against its identity: the directory name, and the ID range
    the registry gave that name (a copied or edited spec cannot act as another sandbox)."""
    check_name(name)
    path = layout.spec_file(name)
    if not path.exists():
        raise NotFound(f"no sandbox named {name!r}", "list the sandboxes with: sandbox-service list")
    spec = specfile.load(path)
    identity.verify_name(path, name, spec.name)
    if spec.id_base is not None:
        identity.verify_range(layout, name, spec.id_base)
    return spec


def sandbox_names(layout: Layout) -> list[str]:
    base = layout.sandbox_base
    if not base.is_dir():
        return []
    return sorted(
        d.name for d in base.iterdir() if not d.name.startswith(".") and (d / SPEC_FILE_NAME).is_file()
    )


def run_job(
    sd: Systemd,
    verb: Literal["start", "stop", "restart", "reload_unit"],
    units: list[str],
    layout: Layout | None = None,
    copy_hint: Callable[[str], str] | None = None,
) -> None:
    """Run jobs and wait for them; a failure carries the journal lines of this attempt and, given the
    layout, a diagnosis of them (diagnose.py)."""
    began = time.time()
    try:
        getattr(sd, verb)(units)
    except JobFailed as exc:
        unit = exc.unit or units[0]
        journal = tail(unit, since=began)
        found = diagnosis(layout, unit, journal, copy_hint) if layout is not None else None
        if found is None:
            raise JobFailed(exc.message, exc.hint, unit, journal) from exc
        raise JobFailed(f"{exc.message}: {found.line}", found.hint, unit, journal) from exc


def diagnosis(
    layout: Layout, unit: str, journal: tuple[str, ...], copy_hint: Callable[[str], str] | None = None
) -> Diagnosis | None:
    """What diagnose.py makes of a sandbox unit's journal lines (None for a unit that is not one)."""
    name = sandbox_name_of(unit)
    if name is None:
        return None
    root = layout.sandbox_root(name)
    return diagnose(
        journal,
        name,
        host_has=lambda p: os.path.lexists(layout.host(p)),
        sandbox_has=lambda p: root.is_dir() and tree.has_path(root, p),
        copy_hint=copy_hint,
    )


def units_to_wait_for(spec: SandboxSpec) -> list[str]:
    """The service, and the sockets of its published ports: a start is done when those listen too."""
    sockets = [publish_units(spec.name, port)[0] for port in spec.network.publish]
    return [service_unit(spec.name), *sockets]


RUNNING_STATES = ("active", "activating", "reloading")


def check_room(sd: Systemd, specs: Sequence[SandboxSpec]) -> None:
    """Refuse to start these sandboxes when a limit of the host would stop some of them halfway
    (hostlimits); those running already cost nothing more."""
    from . import hostlimits

    if not specs:
        return
    units = sd.list_units([service_unit(s.name) for s in specs])
    running = {u.name for u in units if u.active_state in RUNNING_STATES}
    version = sd.version()
    hostlimits.check_room(
        [hostlimits.spec_cost(s, version) for s in specs if service_unit(s.name) not in running]
    )


def _control(layout: Layout, names: Sequence[str], verb: Literal["start", "stop", "restart"]) -> None:
    specs = [load_spec(layout, n) for n in names]
    units = [u for s in specs for u in (units_to_wait_for(s) if verb != "stop" else [service_unit(s.name)])]
    with Systemd() as sd:
        if verb != "stop":
            check_room(sd, specs)
        run_job(sd, verb, units, layout)


def start(layout: Layout, names: Sequence[str]) -> None:
    _control(layout, names, "start")


def stop(layout: Layout, names: Sequence[str]) -> None:
    _control(layout, names, "stop")


def restart(layout: Layout, names: Sequence[str]) -> None:
    _control(layout, names, "restart")


def reload(layout: Layout, name: str) -> None:
    spec = load_spec(layout, name)
    if not spec.service.exec_reload:
        raise InvalidInput(
            f"sandbox {name!r} has no ExecReload= command, so its service cannot reload",
            f"use: sandbox-service restart {name}",
        )
    with Systemd() as sd:
        run_job(sd, "reload_unit", [service_unit(name)], layout)


@dataclass(frozen=True)
class Deleted:
    name: str
    complete: bool  # it was a sandbox; False: only what interrupted runs had left of one
    removed: tuple[str, ...]  # what was found and removed, as phrases


def delete(
    layout: Layout, names: Sequence[str], keep_data: bool = False, *, lock: LockPolicy | None = None
) -> list[Deleted]:
    """Stop, disable and remove units, reload once, then remove the sandbox directories, registry
    entries and host accounts: everything the sandboxes hold, found by looking (recovery.py), so a
    sandbox whose create or delete was cut short at any step is removed as well as a complete one."""
    chosen = list(dict.fromkeys(check_name(n) for n in names))
    with locks.sandboxes(layout, chosen, policy=lock):
        found = []
        for n in chosen:
            if recovery.is_complete(layout, n):
                load_spec(layout, n)  # refuses a spec that names another sandbox or its ID range
            traces = recovery.find_traces(layout, n)
            if traces.empty:
                raise NotFound(f"no sandbox named {n!r}", "list the sandboxes with: sandbox-service list")
            found.append(traces)
        if layout.root == Path("/") and systemd_running():
            with Systemd() as sd:
                recovery.remove_traces(layout, found, sd, keep_data=keep_data)
        else:
            recovery.remove_traces(layout, found, None, keep_data=keep_data)
    return [Deleted(t.name, t.complete, tuple(t.describe())) for t in found]


def stop_and_disable(sd: Systemd, layout: Layout, specs: Sequence[SandboxSpec]) -> None:
    """Stop the sandboxes' services and slices (one batch of jobs) and disable their services."""
    services = [service_unit(s.name) for s in specs]
    # stopping the slice too unloads it; everything of the sandbox runs inside it.  A sandbox whose units
    # are gone already (delete --keep-data, then delete: a package's purge) has nothing to stop or
    # disable, and systemd refuses to stop a unit it cannot load.
    in_memory = {u.name: u for u in sd.list_units(services + [slice_unit(s.name) for s in specs])}
    to_stop = [
        name
        for name, u in in_memory.items()
        if u.load_state == "loaded" or u.active_state not in ("inactive", "failed")
    ]
    if to_stop:
        run_job(sd, "stop", to_stop)
    sd.disable([svc for svc in services if os.path.lexists(layout.unit_dir / svc)])


def remove_sandbox_units(layout: Layout, spec: SandboxSpec) -> list[Path]:
    """The unit files of one sandbox (not the static ones every sandbox shares)."""
    paths = [p for p in render.render(spec) if p.name not in render.STATIC_UNITS]
    return remove_units(layout, paths, spec.name)


def remove_sandbox_data(layout: Layout, spec: SandboxSpec, *, account: bool = True) -> list[Path]:
    """The directory of one sandbox, and then what no file carries any more: its MCS pair, its ID range
    and (unless the caller removes many at once) the host account of its root."""
    tree.remove_tree(layout.sandbox_dir(spec.name))
    if spec.selinux_level:
        selinux.McsRegistry(layout.mcs_registry).release(spec.name)
    if spec.id_base is not None:
        if account:
            identity.remove_account(layout, spec.name)
        identity.registry_for(layout).release(spec.name)
    return [layout.sandbox_dir(spec.name)]


def remove_runtime_dir(layout: Layout, spec: SandboxSpec) -> None:
    # systemd leaves the empty mount point of the sandbox's /run behind when it unmounts it
    with contextlib.suppress(OSError):
        layout.host(runtime_dir_path(spec.name)).rmdir()


def execute(layout: Layout, name: str, command: tuple[str, ...], *, interactive: bool) -> int:
    """Run a command inside the running sandbox; returns its exit status."""
    from .execute import require_running, systemd_run_argv

    spec = load_spec(layout, name)
    with Systemd() as sd:
        main_pid = require_running(sd, spec)
    return run_interactive(systemd_run_argv(spec, command, interactive=interactive, main_pid=main_pid))


def set_enabled(
    layout: Layout, names: Sequence[str], enabled: bool, *, lock: LockPolicy | None = None
) -> bool:
    """Enable or disable sandboxes at boot (through sandbox.target); returns whether systemd was told.

    Offline (--root, or no systemd running) the links are made and removed the way
    `systemctl --root=DIR enable` does."""
    with locks.sandboxes(layout, names, policy=lock):
        return _set_enabled(layout, names, enabled)


def _set_enabled(layout: Layout, names: Sequence[str], enabled: bool) -> bool:
    specs = [load_spec(layout, n) for n in names]
    services = [service_unit(s.name) for s in specs]
    online = layout.root == Path("/") and systemd_running()
    if online:
        with Systemd() as sd:
            if enabled:
                sd.enable(["sandbox.target", *services])
            else:
                sd.disable(services)
            sd.reload()
    else:
        with Transaction() as tx:
            if enabled:
                enable_offline(tx, layout, services)
            else:
                for svc in services:
                    remove_enable_links(layout, svc)
            tx.commit()
    for s in specs:
        specfile.save(layout.spec_file(s.name), replace(s, enabled=enabled))
    return online
