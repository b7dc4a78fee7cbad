"""Commands on existing sandboxes: start, stop, restart, reload, status, list, delete.

Each command opens one systemd connection and issues at most one daemon-reload, however many sandboxes
it handles.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from . import identity, locks, recovery, render, selinux, specfile
from .errors import InvalidInput, JobFailed, NotFound
from .exposure import exposure
from .install import Transaction, enable_offline, remove_enable_links
from .journal import tail
from .locks import LockPolicy
from .network.model import describe as describe_network
from .network.units import publish_units
from .paths import SPEC_FILE_NAME, Layout, service_unit, slice_unit, unit_base
from .run import run_interactive
from .spec import SandboxSpec, check_name
from .systemd import Systemd, systemd_running


@dataclass(frozen=True)
class SandboxStatus:
    name: str
    kind: str
    source_unit: str | None
    unit: str
    active_state: str
    sub_state: str
    result: str
    main_pid: int
    memory_bytes: int | None
    tasks: int | None
    slice: str
    unit_file: str
    unit_file_state: str
    sandbox_dir: str
    root_directory: str
    network: str
    selinux_context: str | None
    profile: str
    exposure: float | None  # systemd-analyze security's score, 0 (tight) to 10 (exposed)


@dataclass(frozen=True)
class ListEntry:
    name: str
    kind: str
    source_unit: str | None
    active_state: str
    sub_state: str


def load_spec(layout: Layout, name: str) -> SandboxSpec:
    """The spec of sandbox `name`, checked against its identity: the directory name, and the ID range
    the registry gave that name (a copied or edited spec cannot act as another sandbox)."""
    check_name(name)
    path = layout.spec_file(name)
    if not path.exists():
        raise NotFound(f"no sandbox named {name!r}", "list the sandboxes with: sandbox-service list")
    spec = specfile.load(path)
    if spec.name != name:
        raise InvalidInput(
            f"{path} names sandbox {spec.name!r}, but it lies in the directory of {name!r}",
            "the directory name is the sandbox's identity; do not copy sandbox directories by hand "
            "(use: sandbox-service clone)",
        )
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


def run_job(sd: Systemd, verb: Literal["start", "stop", "restart", "reload_unit"], units: list[str]) -> None:
    """Run jobs and wait for them; a failure carries the journal lines of this attempt."""
    began = time.time()
    try:
        getattr(sd, verb)(units)
    except JobFailed as exc:
        unit = exc.unit or units[0]
        raise JobFailed(exc.message, exc.hint, unit, tail(unit, since=began)) from exc


def units_to_wait_for(spec: SandboxSpec) -> list[str]:
    """The service, and the sockets of its published ports: a start is done when those listen too."""
    sockets = [publish_units(spec.name, port)[0] for port in spec.network.publish]
    return [service_unit(spec.name), *sockets]


def _control(layout: Layout, names: Sequence[str], verb: Literal["start", "stop", "restart"]) -> None:
    specs = [load_spec(layout, n) for n in names]
    units = [u for s in specs for u in (units_to_wait_for(s) if verb != "stop" else [service_unit(s.name)])]
    with Systemd() as sd:
        run_job(sd, verb, units)


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
        run_job(sd, "reload_unit", [service_unit(name)])


def status(layout: Layout, name: str) -> SandboxStatus:
    spec = load_spec(layout, name)
    with Systemd() as sd:
        st = sd.service_status(service_unit(name))
    return SandboxStatus(
        name=name,
        kind=spec.kind.value,
        source_unit=spec.source_unit,
        unit=st.name,
        active_state=st.active_state,
        sub_state=st.sub_state,
        result=st.result,
        main_pid=st.main_pid,
        memory_bytes=st.memory_current,
        tasks=st.tasks_current,
        slice=st.slice or slice_unit(name),
        unit_file=st.fragment_path or str(layout.unit_dir / service_unit(name)),
        unit_file_state=st.unit_file_state,
        sandbox_dir=str(layout.sandbox_dir(name)),
        root_directory=render.service_view(spec).root_directory,
        network=describe_network(spec.network),
        selinux_context=selinux.process_context(spec.selinux_level) if spec.selinux_level else None,
        profile=spec.security.profile,
        exposure=exposure(service_unit(name))[0] if st.load_state == "loaded" else None,
    )


def list_sandboxes(layout: Layout) -> list[ListEntry]:
    """Every sandbox on disk, with unit states from a single D-Bus call."""
    specs = [load_spec(layout, n) for n in sandbox_names(layout)]
    states = {}
    if specs and systemd_running():
        with Systemd() as sd:
            states = {u.name: u for u in sd.list_units([f"{unit_base(s.name)}.service" for s in specs])}
    out = []
    for s in specs:
        u = states.get(service_unit(s.name))
        out.append(
            ListEntry(
                s.name,
                s.kind.value,
                s.source_unit,
                u.active_state if u else "inactive",
                u.sub_state if u else "dead",
            )
        )
    return out


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
