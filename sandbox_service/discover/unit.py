"""Turn a host unit's effective settings (as systemd parsed them) into the sandbox's ServiceDef.

This is where we decide what can be wrapped. Anything that cannot be carried into a private root is
refused with the reason, never silently dropped.
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass, replace

from ..directives import VALUE_PATTERNS
from ..errors import InvalidInput, NotWrappable
from ..security import ALL_CAPS_MASK, caps_from_mask
from ..spec import (
    CARRIABLE,
    Directive,
    DirectoryKind,
    DirectoryMode,
    EnvFile,
    EnvVar,
    ExecCommand,
    ExecFlag,
    ServiceDef,
    ServiceType,
    Setting,
)
from ..systemd import Properties, RawExec, UnitSettings
from . import carry, properties

_USEC_INFINITY = 2**64 - 1
_FLAG_MAP = {
    "ignore-failure": ExecFlag.IGNORE_FAILURE,
    "no-env-expand": ExecFlag.NO_ENV_EXPAND,
    "no-setuid": ExecFlag.NO_SETUID,
    "privileged": ExecFlag.PRIVILEGED,
}
# Targets every service is ordered against by default, and the host's own plumbing
_IMPLIED_TARGETS = frozenset(
    {"sysinit.target", "basic.target", "shutdown.target", "paths.target", "sockets.target"}
)
_ACTIONS_THAT_REACH_THE_HOST = frozenset({
    "reboot", "reboot-force", "reboot-immediate", "poweroff", "poweroff-force", "poweroff-immediate",
    "exit", "exit-force", "soft-reboot", "soft-reboot-force", "kexec", "kexec-force", "halt", "halt-force",
    "halt-immediate",
})  # fmt: skip


def unit_name_for(arg: str) -> str:
    """`httpd` means `httpd.service` (the RHEL habit); other suffixes are refused with the reason."""
    if "/" in arg or not arg or any(c.isspace() for c in arg):
        raise InvalidInput(f"invalid unit name {arg!r}")
    name = arg if "." in arg else f"{arg}.service"
    if not name.endswith(".service"):
        raise NotWrappable(
            f"{name} is not a service unit",
            "only .service units run a program that can be sandboxed; name the service it activates",
        )
    if name.endswith("@.service"):
        raise NotWrappable(
            f"{name} is a template", "name an instance instead, for example " + name.replace("@.", "@main.")
        )
    return name


@dataclass(frozen=True)
class Translated:
    service: ServiceDef
    notes: tuple[str, ...]  # what of the host unit was left out, and why


def translate(
    u: UnitSettings, props: Properties | None = None, defaults: Properties | None = None
) -> Translated:
    """The sandbox's ServiceDef for a host unit, with what was left out of it.

    Over D-Bus (`props`, `defaults`: the unit's properties and those of a unit that sets nothing) every
    property systemd reports goes through properties.py; offline, the unit files' own assignments do."""
    service = service_def_from_settings(u)
    if props is None or defaults is None:
        carried = tuple(Setting(k, v) for k, v in u.raw if k in CARRIABLE)
        return Translated(replace(service, carried=carried, hardening=_raw_hardening(u.raw)), ())
    _refuse_properties(u, props, defaults)
    kept = carry.carry(props, defaults)
    service = replace(
        service,
        carried=kept.settings,
        hardening=carry.hardening(props, defaults),
        directory_modes=_directory_modes(props, defaults),
        after=_targets(props),
    )
    return Translated(service, kept.notes + _socket_notes(props))


def _socket_notes(props: Properties) -> tuple[str, ...]:
    """Socket activation stays on the host: the host's sockets would hand the sandbox connections from
    outside it.  The service opens its own listening sockets, as it does when started without them."""
    sockets: set[str] = set()
    for name in ("Requires", "Wants", "BindsTo", "TriggeredBy"):
        value = props.get(name)
        if isinstance(value, tuple):
            sockets |= {str(u) for u in value if str(u).endswith(".socket")}
    return tuple(
        f"{s} of the host is not used: the sandboxed service listens on its own sockets"
        for s in sorted(sockets)
    )


def service_def_from_settings(u: UnitSettings) -> ServiceDef:
    _refuse_unwrappable(u)
    try:
        stype = ServiceType(u.type)
    except ValueError:
        raise NotWrappable(f"{u.id} has Type={u.type}, which cannot be sandboxed") from None
    return ServiceDef(
        type=stype,
        exec_condition=_commands(u, "ExecCondition", u.exec_condition),
        exec_start_pre=_commands(u, "ExecStartPre", u.exec_start_pre),
        exec_start=_commands(u, "ExecStart", u.exec_start),
        exec_start_post=_commands(u, "ExecStartPost", u.exec_start_post),
        exec_reload=_commands(u, "ExecReload", u.exec_reload),
        exec_stop=_commands(u, "ExecStop", u.exec_stop),
        exec_stop_post=_commands(u, "ExecStopPost", u.exec_stop_post),
        pid_file=u.pid_file or None,
        user=u.user or None,
        group=u.group or None,
        supplementary_groups=u.supplementary_groups,
        environment=tuple(_env(e) for e in u.environment),
        environment_files=tuple(EnvFile(p, optional) for p, optional in u.environment_files),
        # D-Bus reports an optional directory ("-/x" in the unit file) as "!/x"
        working_directory=(
            "-" + u.working_directory[1:] if u.working_directory.startswith("!") else u.working_directory
        )
        or None,
        umask=f"{u.umask:04o}",
        kill_mode=u.kill_mode or None,
        kill_signal=_signal_name(u.kill_signal),
        timeout_start_sec=usec_to_timespan(u.timeout_start_usec),
        timeout_stop_sec=usec_to_timespan(u.timeout_stop_usec),
        restart=u.restart or None,
        restart_sec=usec_to_timespan(u.restart_usec),
        remain_after_exit=u.remain_after_exit,
        state_directories=u.state_directories,
        runtime_directories=u.runtime_directories,
        logs_directories=u.logs_directories,
        cache_directories=u.cache_directories,
        configuration_directories=u.configuration_directories,
        read_write_paths=u.read_write_paths,
        capability_bounding_set=None
        if u.capability_bounding_set == ALL_CAPS_MASK
        else caps_from_mask(u.capability_bounding_set),
        ambient_capabilities=caps_from_mask(u.ambient_capabilities),
    )


def with_overrides(service: ServiceDef, user: str | None, group: str | None) -> ServiceDef:
    """The admin's --user/--group win over the wrapped unit's User=/Group=."""
    if not (user or group):
        return service
    return replace(service, user=user or service.user, group=group or service.group)


def _refuse_unwrappable(u: UnitSettings) -> None:
    if u.root_directory or u.root_image:
        raise NotWrappable(
            f"{u.id} already runs in its own root ({u.root_directory or u.root_image})",
            "a unit with RootDirectory= or RootImage= is a container already; wrap its program instead",
        )
    if u.dynamic_user:
        raise NotWrappable(
            f"{u.id} uses DynamicUser=yes",
            "dynamic users live in the host's user database service, which a private root cannot reach; "
            "create a sandbox with --user NAME -- COMMAND instead",
        )
    if u.type == "dbus":
        raise NotWrappable(
            f"{u.id} is Type=dbus and needs the host's system bus",
            "the sandbox's private /run has no system bus socket; wrap a non-bus service",
        )
    if not u.exec_start and u.type != "oneshot":
        raise NotWrappable(f"{u.id} has no ExecStart=; there is no program to sandbox")


def _commands(u: UnitSettings, key: str, raws: tuple[RawExec, ...]) -> tuple[ExecCommand, ...]:
    """'+' (full privileges, outside the unit's sandboxing) becomes: inside the sandbox, as its root with
    all of the sandbox's capabilities (ExecFlag.PRIVILEGED).  '!!' only matters on kernels without
    ambient capabilities, so it is taken as no prefix.  PermissionsStartOnly= gives every command but
    ExecStart= what '+' gives."""
    out = []
    for raw in raws:
        flags = []
        for f in raw.flags:
            if f in _FLAG_MAP:
                flags.append(_FLAG_MAP[f])
        if u.permissions_start_only and key != "ExecStart" and ExecFlag.PRIVILEGED not in flags:
            flags.append(ExecFlag.PRIVILEGED)
        out.append(ExecCommand(path=raw.path, argv=raw.argv, flags=tuple(flags), expand_env=True))
    return tuple(out)


def _env(assignment: str) -> EnvVar:
    name, sep, value = assignment.partition("=")
    if not sep:
        raise NotWrappable(f"malformed environment entry {assignment!r}")
    return EnvVar(name, value)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return str(num)


def usec_to_timespan(usec: int) -> str | None:
    """systemd timespans as unit-file text; microseconds are exact, so no precision is lost."""
    if usec == _USEC_INFINITY:
        return "infinity"
    if usec == 0:
        return "0"
    if usec % 1_000_000 == 0:
        return f"{usec // 1_000_000}s"
    if usec % 1000 == 0:
        return f"{usec // 1000}ms"
    return f"{usec}us"


def _refuse_properties(u: UnitSettings, props: Properties, defaults: Properties) -> None:
    """What properties.py marks REFUSED, set by the unit; and actions on the whole machine."""
    for name, value in props.items:
        if properties.fate(name) is properties.Fate.REFUSED and defaults.get(name) != value:
            raise NotWrappable(f"{u.id} sets {name}=", properties.reason(name))
    for name in ("FailureAction", "SuccessAction", "StartLimitAction", "JobTimeoutAction"):
        if props.get(name) in _ACTIONS_THAT_REACH_THE_HOST:
            raise NotWrappable(
                f"{u.id} has {name}={props.get(name)}",
                "a sandbox must not reboot, power off or leave the host's manager; drop it with a drop-in",
            )
    for stream in ("StandardInput",):
        if props.get(stream) not in ("null", "", None) and defaults.get(stream) != props.get(stream):
            raise NotWrappable(
                f"{u.id} reads {stream}={props.get(stream)}", "a sandbox has no terminal or socket input"
            )


def _directory_modes(props: Properties, defaults: Properties) -> tuple[DirectoryMode, ...]:
    out = []
    for kind in DirectoryKind:
        name = f"{kind.value.capitalize()}DirectoryMode"
        value = props.get(name)
        if isinstance(value, int) and value != defaults.get(name):
            out.append(DirectoryMode(kind, f"{value:04o}"))
    return tuple(out)


def _targets(props: Properties) -> tuple[str, ...]:
    """The host targets the unit is ordered after (network-online.target, nss-lookup.target, ...): the
    sandbox keeps that order.  Other units it depends on are the host's, which the sandbox does not use."""
    after = props.get("After") or ()
    names = after if isinstance(after, tuple) else ()
    # sorted: systemd lists dependencies in no stable order, and a re-read must compare equal
    return tuple(
        sorted({str(n) for n in names if str(n).endswith(".target") and str(n) not in _IMPLIED_TARGETS})
    )


def _raw_hardening(raw: tuple[tuple[str, str], ...]) -> tuple[Directive, ...]:
    """Offline: the hardening directives as the unit files write them (those that would not harden are
    left to the profile)."""
    out = []
    for key, value in raw:
        if key in VALUE_PATTERNS and key not in CARRIABLE:
            with contextlib.suppress(InvalidInput):
                out.append(Directive(key, value))
    return tuple(out)
