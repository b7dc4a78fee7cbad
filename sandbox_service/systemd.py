"""All D-Bus traffic with systemd (PID 1) goes through this module.

Methods are typed and return dataclasses; pystemd's exceptions are translated into our errors here, so
no other module sees a pystemd type. A command opens one connection, issues at most one Reload, and waits
for jobs by subscribing to JobRemoved *before* enqueueing them, so a fast job cannot finish unseen.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DBusError, JobFailed, NotFound, PermissionDenied, SandboxError, SystemdUnavailable

SYSTEMD_BUS_NAME = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER_IFACE = b"org.freedesktop.systemd1.Manager"
UNIT_IFACE = b"org.freedesktop.systemd1.Unit"
SERVICE_IFACE = b"org.freedesktop.systemd1.Service"
PROPS_IFACE = b"org.freedesktop.DBus.Properties"
JOB_TIMEOUT_SEC = 300.0
CALL_TIMEOUT_SEC = 120.0


def systemd_running(root: str = "/") -> bool:
    """sd_booted(): true when systemd is PID 1 of the system we would talk to."""
    return root == "/" and os.path.isdir("/run/systemd/system")


@dataclass(frozen=True)
class RawExec:
    path: str
    argv: tuple[str, ...]
    flags: tuple[str, ...]  # systemd's ExecXxxEx flag names: ignore-failure, privileged, no-setuid, ...


@dataclass(frozen=True)
class UnitSettings:
    """What systemd itself parsed for a service unit (fragment plus drop-ins)."""

    id: str
    names: tuple[str, ...]
    load_state: str
    fragment_path: str
    dropin_paths: tuple[str, ...]
    description: str
    type: str
    exec_start_pre: tuple[RawExec, ...]
    exec_start: tuple[RawExec, ...]
    exec_start_post: tuple[RawExec, ...]
    exec_reload: tuple[RawExec, ...]
    exec_stop: tuple[RawExec, ...]
    exec_stop_post: tuple[RawExec, ...]
    pid_file: str
    user: str
    group: str
    supplementary_groups: tuple[str, ...]
    environment: tuple[str, ...]
    environment_files: tuple[tuple[str, bool], ...]
    working_directory: str
    umask: int
    kill_mode: str
    kill_signal: int
    timeout_start_usec: int
    timeout_stop_usec: int
    restart: str
    restart_usec: int
    remain_after_exit: bool
    state_directories: tuple[str, ...]
    runtime_directories: tuple[str, ...]
    logs_directories: tuple[str, ...]
    cache_directories: tuple[str, ...]
    configuration_directories: tuple[str, ...]
    read_write_paths: tuple[str, ...]
    dynamic_user: bool
    root_directory: str
    root_image: str
    bus_name: str
    capability_bounding_set: int
    ambient_capabilities: int
    exec_condition: tuple[RawExec, ...] = ()
    source_path: str = ""  # the init script a generator made the unit from
    # PermissionsStartOnly=: systemd keeps it to itself (no D-Bus property); read from the unit's files
    permissions_start_only: bool = False
    # Offline only (unit files as written): assignments carry.py takes verbatim; over D-Bus the same come
    # from unit_properties()
    raw: tuple[tuple[str, str], ...] = ()


PropertyValue = str | int | bool | tuple[Any, ...]


@dataclass(frozen=True)
class Properties:
    """Every property systemd reports for a service unit (Unit and Service interfaces), as plain Python
    values: strings, numbers, booleans, and tuples of them (arrays and structs)."""

    items: tuple[tuple[str, PropertyValue], ...]

    def get(self, name: str, default: PropertyValue | None = None) -> PropertyValue | None:
        return dict(self.items).get(name, default)

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.items)


def _plain(value: Any) -> PropertyValue:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class UnitState:
    name: str
    load_state: str
    active_state: str
    sub_state: str


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    load_state: str
    active_state: str
    sub_state: str
    result: str
    main_pid: int
    memory_current: int | None  # None when systemd does not account it
    tasks_current: int | None
    slice: str
    fragment_path: str
    unit_file_state: str


_UINT64_MAX = 2**64 - 1


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _strs(values: Any) -> tuple[str, ...]:
    return tuple(_s(v) for v in values)


def _optional_counter(value: Any) -> int | None:
    return None if value == _UINT64_MAX else int(value)


def _raw_exec(entries: Any) -> tuple[RawExec, ...]:
    return tuple(RawExec(path=_s(e[0]), argv=_strs(e[1]), flags=_strs(e[2])) for e in entries)


def _translate(exc: Exception, what: str) -> Exception:
    from pystemd import dbusexc  # lazily: pystemd is only needed when systemd is used

    text = str(exc)
    if "[err" in text and "]: b'" in text:
        text = text.split("]: b'", 1)[1].rstrip("'")
    if isinstance(exc, dbusexc.DBusNoSuchUnitError):
        return NotFound(f"{what}: {text}")
    if isinstance(exc, (dbusexc.DBusAccessDeniedError, dbusexc.DBusAuthFailedError)):
        return PermissionDenied(f"{what}: {text}", "run as root")
    return DBusError(f"{what}: {text}")


class Systemd:
    """A connection to the system manager. Use as a context manager: `with Systemd() as sd: ...`."""

    def __init__(self) -> None:
        if not systemd_running():
            raise SystemdUnavailable(
                "systemd is not running on this system (no /run/systemd/system)",
                "boot with systemd, or work on files only with --root DIR",
            )
        from pystemd.dbuslib import DBus

        # sd-bus gives a method call 25 s by default; a PID 1 busy with thousands of units (a large
        # apply on a loaded host) may take longer to answer one.  Read when a call is made.
        os.environ.setdefault("SYSTEMD_BUS_TIMEOUT", f"{int(CALL_TIMEOUT_SEC)}s")
        self._bus = DBus()
        try:
            self._bus.open()
        except Exception as exc:
            raise SystemdUnavailable(f"cannot connect to the system bus: {exc}") from exc
        self._subscribed = False
        self._job_results: dict[bytes, str] = {}
        self._job_callback: Callable[..., None] | None = None

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bus.close()

    # -- low level ---------------------------------------------------------------------------------

    def _call(self, path: bytes, iface: bytes, method: bytes, signature: bytes, args: Sequence[Any]) -> Any:
        from pystemd.dbuslib import apply_signature

        try:
            reply = self._bus.call_method(
                SYSTEMD_BUS_NAME,
                path,
                iface,
                method,
                apply_signature(signature, list(args)) if signature else [],
            )
        except Exception as exc:
            raise _translate(exc, f"{method.decode()} failed") from exc
        return reply.body

    def _manager(self, method: bytes, signature: bytes = b"", *args: Any) -> Any:
        return self._call(MANAGER_PATH, MANAGER_IFACE, method, signature, args)

    def _get_all(self, path: bytes, iface: bytes) -> dict[bytes, Any]:
        result: dict[bytes, Any] = self._call(path, PROPS_IFACE, b"GetAll", b"s", [iface])
        return result

    def _unit_path(self, name: str) -> bytes:
        path: bytes = self._manager(b"LoadUnit", b"s", name.encode())
        return path

    # -- manager -----------------------------------------------------------------------------------

    def reload(self) -> None:
        self._manager(b"Reload")

    def version(self) -> int:
        """The running systemd's version number ("252.39-1~deb12u1" is 252)."""
        value = _s(self._call(MANAGER_PATH, PROPS_IFACE, b"Get", b"ss", [MANAGER_IFACE, b"Version"]))
        digits = ""
        for ch in value:
            if not ch.isdigit():
                break
            digits += ch
        return int(digits or 0)

    def enable(self, unit_files: Sequence[str]) -> None:
        if unit_files:
            self._manager(b"EnableUnitFiles", b"asbb", [u.encode() for u in unit_files], False, True)

    def disable(self, unit_files: Sequence[str]) -> None:
        if unit_files:
            self._manager(b"DisableUnitFiles", b"asb", [u.encode() for u in unit_files], False)

    def reset_failed(self, unit: str) -> None:
        with contextlib.suppress(NotFound):  # nothing to reset on a unit systemd no longer knows
            self._manager(b"ResetFailedUnit", b"s", unit.encode())

    def list_units(self, patterns: Sequence[str]) -> list[UnitState]:
        """Every loaded unit matching the patterns, from one D-Bus call."""
        rows = self._manager(b"ListUnitsByPatterns", b"asas", [], [p.encode() for p in patterns])
        return [UnitState(_s(r[0]), _s(r[2]), _s(r[3]), _s(r[4])) for r in rows]

    def stale_units(self, patterns: Sequence[str]) -> list[str]:
        """Loaded units matching the patterns whose files changed since systemd read them (a reload is
        due: NeedDaemonReload), e.g. after a run that wrote them was killed before it reloaded."""
        rows = self._manager(b"ListUnitsByPatterns", b"asas", [], [p.encode() for p in patterns])
        return [_s(r[0]) for r in rows if self._get_all(r[6], UNIT_IFACE).get(b"NeedDaemonReload")]

    # -- units -------------------------------------------------------------------------------------

    def unit_settings(self, name: str) -> UnitSettings:
        path = self._unit_path(name)
        unit = self._get_all(path, UNIT_IFACE)
        if _s(unit[b"LoadState"]) != "loaded":
            raise NotFound(
                f"unit {name} is not available (load state: {_s(unit[b'LoadState'])})",
                "check the name with: systemctl list-unit-files",
            )
        svc = self._get_all(path, SERVICE_IFACE)

        def ex(key: str) -> tuple[RawExec, ...]:
            return _raw_exec(svc.get(f"{key}Ex".encode(), []))

        return UnitSettings(
            id=_s(unit[b"Id"]),
            names=_strs(unit[b"Names"]),
            load_state=_s(unit[b"LoadState"]),
            fragment_path=_s(unit[b"FragmentPath"]),
            dropin_paths=_strs(unit[b"DropInPaths"]),
            description=_s(unit[b"Description"]),
            type=_s(svc[b"Type"]),
            exec_condition=ex("ExecCondition"),
            exec_start_pre=ex("ExecStartPre"),
            exec_start=ex("ExecStart"),
            exec_start_post=ex("ExecStartPost"),
            exec_reload=ex("ExecReload"),
            exec_stop=ex("ExecStop"),
            exec_stop_post=ex("ExecStopPost"),
            pid_file=_s(svc[b"PIDFile"]),
            user=_s(svc[b"User"]),
            group=_s(svc[b"Group"]),
            supplementary_groups=_strs(svc[b"SupplementaryGroups"]),
            environment=_strs(svc[b"Environment"]),
            environment_files=tuple((_s(p), bool(o)) for p, o in svc[b"EnvironmentFiles"]),
            working_directory=_s(svc[b"WorkingDirectory"]),
            umask=int(svc[b"UMask"]),
            kill_mode=_s(svc[b"KillMode"]),
            kill_signal=int(svc[b"KillSignal"]),
            timeout_start_usec=int(svc[b"TimeoutStartUSec"]),
            timeout_stop_usec=int(svc[b"TimeoutStopUSec"]),
            restart=_s(svc[b"Restart"]),
            restart_usec=int(svc[b"RestartUSec"]),
            remain_after_exit=bool(svc[b"RemainAfterExit"]),
            state_directories=_strs(svc[b"StateDirectory"]),
            runtime_directories=_strs(svc[b"RuntimeDirectory"]),
            logs_directories=_strs(svc[b"LogsDirectory"]),
            cache_directories=_strs(svc[b"CacheDirectory"]),
            configuration_directories=_strs(svc[b"ConfigurationDirectory"]),
            read_write_paths=_strs(svc[b"ReadWritePaths"]),
            dynamic_user=bool(svc[b"DynamicUser"]),
            root_directory=_s(svc[b"RootDirectory"]),
            root_image=_s(svc[b"RootImage"]),
            bus_name=_s(svc[b"BusName"]),
            capability_bounding_set=int(svc[b"CapabilityBoundingSet"]),
            ambient_capabilities=int(svc[b"AmbientCapabilities"]),
            source_path=_s(unit[b"SourcePath"]),
        )

    def unit_properties(self, name: str) -> Properties:
        """All properties of a service unit; for a name systemd does not know, the defaults it would give
        a service that sets nothing (how a unit's own settings are told from the manager's defaults)."""
        path = self._unit_path(name)
        merged: dict[str, PropertyValue] = {}
        for iface in (UNIT_IFACE, SERVICE_IFACE):
            for key, value in self._get_all(path, iface).items():
                merged[_s(key)] = _plain(value)
        return Properties(tuple(sorted(merged.items())))

    def service_status(self, name: str) -> ServiceStatus:
        path = self._unit_path(name)
        unit = self._get_all(path, UNIT_IFACE)
        svc = self._get_all(path, SERVICE_IFACE) if _s(unit[b"LoadState"]) == "loaded" else {}
        return ServiceStatus(
            name=name,
            load_state=_s(unit[b"LoadState"]),
            active_state=_s(unit[b"ActiveState"]),
            sub_state=_s(unit[b"SubState"]),
            result=_s(svc.get(b"Result", b"")),
            main_pid=int(svc.get(b"MainPID", 0)),
            memory_current=_optional_counter(svc.get(b"MemoryCurrent", _UINT64_MAX)),
            tasks_current=_optional_counter(svc.get(b"TasksCurrent", _UINT64_MAX)),
            slice=_s(svc.get(b"Slice", b"")),
            fragment_path=_s(unit[b"FragmentPath"]),
            unit_file_state=_s(unit[b"UnitFileState"]),
        )

    # -- jobs --------------------------------------------------------------------------------------

    def start(self, units: Sequence[str]) -> None:
        self._run_jobs(b"StartUnit", units)

    def stop(self, units: Sequence[str]) -> None:
        self._run_jobs(b"StopUnit", units)

    def restart(self, units: Sequence[str]) -> None:
        self._run_jobs(b"RestartUnit", units)

    def reload_unit(self, units: Sequence[str]) -> None:
        self._run_jobs(b"ReloadUnit", units)

    def _run_jobs(self, method: bytes, units: Sequence[str]) -> None:
        """Enqueue one job per unit and wait until systemd reports each as removed, with its result."""
        results = self.wait(self.submit(method.decode().removesuffix("Unit").lower(), units))
        failed = [(unit, result) for unit, result in results.items() if result != "done"]
        if failed:
            unit, result = failed[0]
            verb = method.decode().removesuffix("Unit").lower()
            raise JobFailed(f"{verb} of {unit} failed (job result: {result})", unit=unit)

    def submit(self, verb: str, units: Sequence[str]) -> dict[str, bytes]:
        """Enqueue a job ("start", "stop", "restart", "reload") for each unit, without waiting; returns
        each unit's job.  Wait for them with wait() (many batches may be submitted first)."""
        method = {"start": b"StartUnit", "stop": b"StopUnit", "restart": b"RestartUnit"}.get(
            verb, b"ReloadUnit"
        )
        # The callback is registered once per connection and records into self._job_results, so
        # results of jobs that finish before their enqueue call even returns are not lost.
        if not self._subscribed:

            def on_job_removed(msg: Any, error: Any = None, userdata: Any = None) -> None:
                self._on_job_removed(msg)  # pystemd tags the callback object, so it must be a function

            # pystemd hands sd-bus a pointer to the function without holding a reference to it: it must
            # live as long as the connection does
            self._job_callback = on_job_removed
            self._bus.match_signal(
                SYSTEMD_BUS_NAME, MANAGER_PATH, MANAGER_IFACE, b"JobRemoved", on_job_removed
            )
            self._manager(b"Subscribe")
            self._subscribed = True
        return {unit: self._manager(method, b"ss", unit.encode(), b"replace") for unit in units}

    def wait(
        self, jobs: dict[str, bytes], progress: Callable[[int, int], None] | None = None
    ) -> dict[str, str]:
        """Each unit's job result ("done", "failed", "timeout", ...) once systemd removed its job.  A job
        that makes no progress for JOB_TIMEOUT_SEC counts as "timeout"; the clock restarts whenever one
        finishes, so thousands of jobs that take long together do not time out."""
        return self._await(jobs, len(jobs), progress, None)

    def run_jobs(
        self,
        requests: Sequence[tuple[str, str]],
        *,
        window: int,
        progress: Callable[[int, int], None] | None = None,
        refused: Callable[[str, SandboxError], None] | None = None,
    ) -> dict[str, str]:
        """Each (verb, unit) request's job result, with at most `window` of its jobs queued at once.

        systemd runs every queued job at once; under hundreds of starts each one's start timeout runs
        while it waits its turn for the CPU, so jobs are fed in as others finish.  A unit systemd refuses
        a job for goes to `refused` (or raises without it); one never queued because the jobs before it
        stopped making progress has the result "not-queued"."""
        waiting = list(reversed(requests))
        jobs: dict[str, bytes] = {}

        def refill(in_flight: int) -> tuple[list[bytes], int]:
            queued: list[bytes] = []
            settled = 0
            while waiting and in_flight + len(queued) < window:
                verb, unit = waiting.pop()
                try:
                    job = self.submit(verb, [unit])[unit]
                except SandboxError as exc:
                    if refused is None:
                        raise
                    refused(unit, exc)
                    settled += 1
                    continue
                jobs[unit] = job
                queued.append(job)
            return queued, settled

        results = self._await(jobs, len(requests), progress, refill)
        results.update((unit, "not-queued") for _verb, unit in waiting)
        return results

    def _await(
        self,
        jobs: dict[str, bytes],
        total: int,
        progress: Callable[[int, int], None] | None,
        refill: Callable[[int], tuple[list[bytes], int]] | None,
    ) -> dict[str, str]:
        """The results of `jobs`; `refill(in flight)`, when given, may add jobs to it whenever some
        finished, returning the new ones and how many requests it settled without a job."""
        results = self._job_results
        pending = set(jobs.values())
        settled = 0
        deadline = time.monotonic() + JOB_TIMEOUT_SEC
        while True:
            if refill is not None:
                queued, without_job = refill(len(pending))
                pending.update(queued)
                settled += without_job
            if not pending:
                break
            while not self._bus.process().is_empty():  # runs the JobRemoved callback
                pass
            finished = {job for job in pending if job in results}
            if finished:
                pending -= finished
                settled += len(finished)
                deadline = time.monotonic() + JOB_TIMEOUT_SEC
                if progress is not None:
                    progress(settled, total)
                continue
            if time.monotonic() > deadline:
                break
            self._bus.wait(200_000)
        return {unit: results.get(job, "timeout") for unit, job in jobs.items()}

    def _on_job_removed(self, msg: Any) -> None:
        msg.process_reply(False)
        _job_id, job_path, _unit, result = msg.body
        self._job_results[job_path] = _s(result)
