"""The read paths: `list` and `status`.

Both are meant to be cheap at any number of sandboxes: `list` takes what it shows from the summaries of
index.py (a spec is parsed only when it changed since the last look) and the states from systemd in one
D-Bus call; `status` parses one spec and asks systemd about one unit.  Neither imports what only the
commands that build sandboxes need (rendering, discovery, copying), and the exposure score, which takes
systemd-analyze half a second, is computed only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import index
from .diagnose import Diagnosis
from .paths import Layout, runtime_dir_path, sandbox_root_path, service_unit, slice_unit


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
    runtime_directory: str
    network: str
    selinux_context: str | None
    profile: str
    private_ipc: bool
    isolation: str  # isolation.Model's value: what the sandbox's root is on the host
    isolation_detail: str
    exposure: float | None  # systemd-analyze security's score (0 tight, 10 exposed); None: not asked for
    diagnosis: Diagnosis | None = None  # why it failed or died, when it did (diagnose.py)


@dataclass(frozen=True)
class ListEntry:
    name: str
    kind: str
    source_unit: str | None
    active_state: str
    sub_state: str


def status(layout: Layout, name: str, *, with_exposure: bool = False) -> SandboxStatus:
    from . import isolation
    from .control import load_spec
    from .network.model import describe as describe_network
    from .spec import Kind
    from .systemd import Systemd

    spec = load_spec(layout, name)
    unit = service_unit(name)
    with Systemd() as sd:
        st = sd.service_status(unit)
    score = None
    if with_exposure and st.load_state == "loaded":
        from .exposure import exposure

        score = exposure(unit)[0]
    context = None
    if spec.selinux_level:
        from .selinux import process_context

        context = process_context(spec.selinux_level)
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
        unit_file=st.fragment_path or str(layout.unit_dir / unit),
        unit_file_state=st.unit_file_state,
        sandbox_dir=str(layout.sandbox_dir(name)),
        root_directory=spec.chroot if spec.kind is Kind.CHROOT and spec.chroot else sandbox_root_path(name),
        runtime_directory=runtime_dir_path(name),
        network=describe_network(spec.network),
        selinux_context=context,
        profile=spec.security.profile,
        private_ipc=spec.security.private_ipc,
        isolation=isolation.model(spec).value,
        isolation_detail=isolation.describe(spec),
        exposure=score,
        diagnosis=_failure(layout, st.name)
        if st.active_state == "failed" or st.result not in ("success", "")
        else None,
    )


def _failure(layout: Layout, unit: str) -> Diagnosis | None:
    """The diagnosis of a unit that failed or died, from its last journal lines."""
    from .control import diagnosis
    from .journal import tail

    return diagnosis(layout, unit, tail(unit, lines=30))


def list_sandboxes(layout: Layout) -> list[ListEntry]:
    """Every sandbox on disk, with unit states from a single D-Bus call."""
    from .systemd import Systemd, systemd_running

    summaries = index.summaries(layout)
    _check_identities(layout, summaries)
    states = {}
    if summaries and layout.root == Path("/") and systemd_running():
        with Systemd() as sd:
            # one pattern rather than one per sandbox: PID 1 matches it against its units once
            states = {u.name: u for u in sd.list_units(["sandbox-*.service"])}
    out = []
    for s in summaries:
        u = states.get(service_unit(s.name))
        out.append(
            ListEntry(
                s.name,
                s.kind,
                s.source_unit,
                u.active_state if u else "inactive",
                u.sub_state if u else "dead",
            )
        )
    return out


def _check_identities(layout: Layout, summaries: list[index.Summary]) -> None:
    """As loading each spec would: its name is its directory's, its ID range the one the registry gave
    that name (the registry read once, not once per sandbox)."""
    from .identity import registry_for, verify_name, verify_range

    ranges: dict[str, int] | None = None
    for s in summaries:
        if s.spec_name != s.name:
            verify_name(layout.spec_file(s.name), s.name, s.spec_name)
        if s.id_base is not None:
            if ranges is None:
                ranges = registry_for(layout).ranges()
            verify_range(layout, s.name, s.id_base, ranges.get(s.name))
