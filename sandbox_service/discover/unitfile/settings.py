"""The service settings the tool reads: one handler per setting, accumulated into a :class:`_Service`.

This module owns what each supported [Unit]/[Service] assignment does (``_HANDLERS``), including the
Exec*= command-line parser, the manager defaults from system.conf, and what systemd derives and checks
once every file is read (``_finish``: the Type= default, the DynamicUser= name, capability drops,
the checks that make it refuse a unit) before ``_settings`` builds the UnitSettings D-Bus would
report. Errors are split into ``_Ignored`` (logged, assignment dropped) and ``_Fatal`` (bad-setting).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ...directives import VALUE_PATTERNS
from ...errors import InvalidInput
from ...security import CAPABILITIES
from ...spec import CARRIABLE
from ...systemd import RawExec, UnitSettings
from .lookup import _SYSTEM_CONF_DROPIN_DIRS, _conf_files, _is_normalized, _Name, _path_key, _simplify, _Tree
from .specifiers import _Specifiers
from .syntax import _WHITESPACE, _iter_words, _next_word, _SyntaxError, _words, split_assignments
from .values import (
    _BUS_NAME,
    _ENV_NAME,
    _M64,
    _USEC_PER_SEC,
    USEC_INFINITY,
    _capability_mask,
    _dynamic_user_name,
    _parse_bool,
    _parse_signal,
    _timespan_fix_0,
    _valid_env_value,
    _valid_user_group,
    parse_timespan,
)


class _Ignored(Exception):
    """An assignment systemd would log and ignore."""


class _Fatal(Exception):
    """An error that makes systemd refuse to load the unit (load state bad-setting)."""


# What carry.py takes from a unit file as written: the carried settings and the hardening directives.
RAW_KEYS = CARRIABLE | frozenset(VALUE_PATTERNS)
_EXEC_KEYS = (
    "ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost"
)  # fmt: skip
_DIRECTORY_KEYS = {
    "StateDirectory": "state_directories",
    "RuntimeDirectory": "runtime_directories",
    "LogsDirectory": "logs_directories",
    "CacheDirectory": "cache_directories",
    "ConfigurationDirectory": "configuration_directories",
}
_SERVICE_TYPES = ("simple", "exec", "forking", "oneshot", "dbus", "notify", "notify-reload", "idle")
_KILL_MODES = ("control-group", "process", "mixed", "none")
_RESTARTS = ("no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always")
_EXEC_FLAG_ORDER = ("ignore-failure", "privileged", "no-setuid", "ambient", "no-env-expand")


@dataclass
class _Manager:
    """The manager defaults units inherit (system.conf)."""

    timeout_start_usec: int = 90 * _USEC_PER_SEC
    timeout_stop_usec: int = 90 * _USEC_PER_SEC
    restart_usec: int = 100_000


@dataclass
class _Service:
    """The settings as they accumulate, assignment by assignment."""

    defaults: _Manager
    description: str = ""
    success_action: bool = False
    type: str = ""
    execs: dict[str, list[RawExec]] = field(default_factory=lambda: {k: [] for k in _EXEC_KEYS})
    pid_file: str = ""
    user: str = ""
    group: str = ""
    supplementary_groups: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    environment_files: list[tuple[str, bool]] = field(default_factory=list)
    working_directory: str = ""
    umask: int = 0o022
    kill_mode: str = "control-group"
    kill_signal: int = 15
    timeout_start_usec: int | None = None  # None: not set (oneshot units then have no start timeout)
    timeout_stop_usec: int | None = None
    restart: str = "no"
    restart_usec: int | None = None
    remain_after_exit: bool = False
    permissions_start_only: bool = False
    source_path: str = ""
    directories: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in _DIRECTORY_KEYS})
    read_write_paths: list[str] = field(default_factory=list)
    dynamic_user: bool = False
    root_directory: str = ""
    root_image: str = ""
    bus_name: str = ""
    capability_bounding_set: int = 2**64 - 1
    ambient_capabilities: int = 0
    # Settings not reported, but that take capabilities out of the bounding set (see _IMPLIED_CAP_DROPS)
    private_devices: bool = False
    protect_kernel_modules: bool = False
    protect_kernel_logs: bool = False
    protect_clock: bool = False
    # Settings carried into a sandbox as written (spec.CARRIABLE, hardening directives), for carry.py
    raw: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Ctx:
    spec: _Specifiers
    warns: list[str]


_Handler = Callable[[_Service, str, str, _Ctx], None]


def _absolute_path(value: str, spec: _Specifiers) -> str:
    path = _simplify(spec.expand(value))
    if not path.startswith("/") or not _is_normalized(path):
        raise _Ignored(f"{path!r} is not a normalized absolute path")
    return path


def _set_path(attr: str) -> _Handler:
    def handle(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
        setattr(svc, attr, _absolute_path(value, ctx.spec) if value else "")

    return handle


def _set_choice(attr: str, choices: tuple[str, ...]) -> _Handler:
    def handle(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
        if value not in choices:
            raise _Ignored(f"unknown value {value!r}")
        setattr(svc, attr, value)

    return handle


def _set_parsed(attr: str, parse: Callable[[str], object]) -> _Handler:
    def handle(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
        try:
            setattr(svc, attr, parse(value))
        except ValueError as exc:
            raise _Ignored(str(exc)) from None

    return handle


def _handle_description(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    svc.description = ctx.spec.expand(value)


def _handle_source_path(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    svc.source_path = ctx.spec.expand(value)


def _handle_success_action(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    svc.success_action = value not in ("", "none")


def _handle_user_group(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    name = ctx.spec.expand(value)
    if name and not _valid_user_group(name):
        raise _Ignored(f"invalid user/group name {name!r}")
    setattr(svc, key.lower(), name)


def _handle_groups(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.supplementary_groups.clear()
        return
    for word in _iter_words(value):
        name = ctx.spec.expand(word)
        if _valid_user_group(name):
            svc.supplementary_groups.append(name)
        else:
            ctx.warns.append(f"{key}=: invalid group name {name!r}, ignoring")


def _handle_environment(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.environment.clear()
        return
    for word in _iter_words(value, unquote=True, cunescape=True):  # words before an error stay applied
        assignment = ctx.spec.expand(word)
        name, sep, env_value = assignment.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name) or not _valid_env_value(env_value):
            ctx.warns.append(f"{key}=: invalid environment assignment {assignment!r}, ignoring")
            continue
        for i, existing in enumerate(svc.environment):
            if existing.partition("=")[0] == name:
                svc.environment[i] = assignment
                break
        else:
            svc.environment.append(assignment)


def _handle_environment_file(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.environment_files.clear()
        return
    expanded = ctx.spec.expand(value)
    optional = expanded.startswith("-")
    path = _simplify(expanded.removeprefix("-"))
    if not path.startswith("/") or not _is_normalized(path):
        raise _Ignored(f"{path!r} is not a normalized absolute path")
    svc.environment_files.append((path, optional))


def _handle_pid_file(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.pid_file = ""
        return
    path = _simplify(ctx.spec.expand(value))
    path = path if path.startswith("/") else _simplify(f"/run/{path}")  # relative: below /run
    if not _is_normalized(path):
        raise _Ignored(f"{path!r} is not a normalized path")
    if path == "/var/run" or path.startswith("/var/run/"):
        path = "/run" + path.removeprefix("/var/run")  # systemd rewrites the legacy directory
    svc.pid_file = path


def _handle_working_directory(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.working_directory = ""
        return
    missing_ok = value.startswith("-")
    rest = value.removeprefix("-")
    path = "~" if rest == "~" else _absolute_path(rest, ctx.spec)
    svc.working_directory = ("!" if missing_ok else "") + path  # D-Bus marks "missing is fine" with "!"


def _handle_umask(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not re.fullmatch(r"[0-7]+", value) or int(value, 8) > 0o7777:
        raise _Ignored(f"invalid mode {value!r}")
    svc.umask = int(value, 8)


def _handle_timeout(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    try:
        usec = _timespan_fix_0(value)
    except ValueError as exc:
        raise _Ignored(str(exc)) from None
    if key in ("TimeoutSec", "TimeoutStartSec"):
        svc.timeout_start_usec = usec
    if key in ("TimeoutSec", "TimeoutStopSec"):
        svc.timeout_stop_usec = usec


def _handle_directories(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    items = svc.directories[key]
    if not value:
        items.clear()
        return
    for word in _iter_words(value, unquote=True, retain_escape=True):
        # SOURCE[:SYMLINK]; only the source is reported over D-Bus
        parts = _words(word, separators=":", cunescape=True, unescape_separators=True)
        if not 1 <= len(parts) <= 2:
            raise _Ignored(f"invalid syntax: {word!r}")
        path = _simplify(ctx.spec.expand(parts[0]))
        if path.startswith("/") or not _is_normalized(path) or path == ".":
            ctx.warns.append(f"{key}=: {path!r} is not a normalized relative path, ignoring")
        elif path == "private" or path.startswith("private/"):
            ctx.warns.append(f"{key}=: path can't be 'private', ignoring")
        elif path not in items:
            items.append(path)


def _handle_read_write_paths(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.read_write_paths.clear()
        return
    for word in _iter_words(value, unquote=True):
        ignore_missing = word.startswith("-")
        word = word.removeprefix("-")
        below_root = word.startswith("+")
        word = word.removeprefix("+")
        try:
            path = _absolute_path(word, ctx.spec)
        except _Ignored as exc:
            ctx.warns.append(f"{key}=: {exc}, ignoring")
            continue
        svc.read_write_paths.append(("-" if ignore_missing else "") + ("+" if below_root else "") + path)


def _handle_capabilities(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    attr = "capability_bounding_set" if key == "CapabilityBoundingSet" else "ambient_capabilities"
    initial = 2**64 - 1 if attr == "capability_bounding_set" else 0
    invert = value.startswith("~")
    mask = _capability_mask(value.removeprefix("~"))
    current: int = getattr(svc, attr)
    if mask == 0 or current == initial:  # the first assignment (or an empty one) replaces the set
        setattr(svc, attr, (~mask & _M64) if invert else mask)
    else:  # later ones add to it, or take away with "~"
        setattr(svc, attr, current & ~mask if invert else current | mask)


def _handle_bus_name(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    name = ctx.spec.expand(value)
    if name and (len(name) > 255 or not _BUS_NAME.fullmatch(name)):
        raise _Ignored(f"invalid bus name {name!r}")
    svc.bus_name = name


def _handle_exec(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.execs[key].clear()
        return
    svc.execs[key].extend(_parse_exec_line(value, key, ctx))


def _exec_prefixes(word: str) -> tuple[set[str], bool, str]:
    """The flags of the prefixes "-", ":", "+", "!", "!!", whether "@" was given, and the rest of the word."""
    flags: set[str] = set()
    own_argv0 = False
    for i, c in enumerate(word):
        if c == "-" and "ignore-failure" not in flags:
            flags.add("ignore-failure")
        elif c == "@" and not own_argv0:
            own_argv0 = True
        elif c == ":" and "no-env-expand" not in flags:
            flags.add("no-env-expand")
        elif c in "+!" and not flags & {"privileged", "no-setuid", "ambient"}:
            flags.add("privileged" if c == "+" else "no-setuid")
        elif c == "!" and not flags & {"privileged", "ambient"}:  # the second "!" of "!!"
            flags.discard("no-setuid")
            flags.add("ambient")
        else:
            return flags, own_argv0, word[i:]
    return flags, own_argv0, ""


def _parse_exec_line(value: str, key: str, ctx: _Ctx) -> list[RawExec]:
    """One Exec*= value: commands separated by a lone ";", each with its prefixes, quoting and escapes.

    An error makes systemd refuse the unit, unless the command has the "-" prefix: then the rest of the
    line is ignored (commands before it on the same line stay).
    """
    out: list[RawExec] = []
    pos = 0
    while True:
        ignore = False
        try:
            first, pos = _next_word(value, pos, unquote=True, cunescape=True, relax=True)
            if first is None:
                return out
            flags, own_argv0, rest = _exec_prefixes(first)
            ignore = "ignore-failure" in flags
            path = ctx.spec.expand(rest)
            if not path:
                raise _SyntaxError("empty executable path")
            if not path.startswith("/") and ("/" in path or path in (".", "..") or len(path) > 255):
                raise _SyntaxError(f"neither a valid executable name nor an absolute path: {path!r}")
            if path.endswith("/"):
                raise _SyntaxError(f"executable path specifies a directory: {path!r}")
            argv = [] if own_argv0 else [path]
            more = False
            while pos < len(value):
                if value[pos] == ";" and value[pos + 1 : pos + 2] in ("", *_WHITESPACE):
                    pos += 1
                    more = True
                    break
                if value.startswith("\\;", pos) and value[pos + 2 : pos + 3] in ("", *_WHITESPACE):
                    argv.append(";")
                    pos += 2
                    while pos < len(value) and value[pos] in _WHITESPACE:
                        pos += 1
                    continue
                word, pos = _next_word(value, pos, unquote=True, cunescape=True, relax=True)
                if word is None:
                    break
                argv.append(ctx.spec.expand(word))
            if not argv:
                raise _SyntaxError("empty executable name or zeroeth argument")
        except _SyntaxError as exc:
            if ignore:
                ctx.warns.append(f"{key}=: {exc}, ignoring")
                return out
            raise _Fatal(f"{key}=: {exc}") from None
        ordered = tuple(f for f in _EXEC_FLAG_ORDER if f in flags)
        out.append(RawExec(path=_simplify(path), argv=tuple(argv), flags=ordered))
        if not more:
            return out


def _caps(*names: str) -> int:
    return sum(1 << CAPABILITIES.index(n) for n in names)


# Sandboxing switches that systemd turns into capabilities dropped from the bounding set at load time
_IMPLIED_CAP_DROPS = {
    "PrivateDevices": ("private_devices", _caps("CAP_MKNOD", "CAP_SYS_RAWIO")),
    "ProtectKernelModules": ("protect_kernel_modules", _caps("CAP_SYS_MODULE")),
    "ProtectKernelLogs": ("protect_kernel_logs", _caps("CAP_SYSLOG")),
    "ProtectClock": ("protect_clock", _caps("CAP_SYS_TIME", "CAP_WAKE_ALARM")),
}

_HANDLERS: dict[tuple[str, str], _Handler] = {
    ("Unit", "Description"): _handle_description,
    ("Unit", "SuccessAction"): _handle_success_action,
    ("Unit", "SourcePath"): _handle_source_path,
    **{("Service", k): _handle_exec for k in _EXEC_KEYS},
    ("Service", "Type"): _set_choice("type", _SERVICE_TYPES),
    ("Service", "PIDFile"): _handle_pid_file,
    ("Service", "User"): _handle_user_group,
    ("Service", "Group"): _handle_user_group,
    ("Service", "SupplementaryGroups"): _handle_groups,
    ("Service", "Environment"): _handle_environment,
    ("Service", "EnvironmentFile"): _handle_environment_file,
    ("Service", "WorkingDirectory"): _handle_working_directory,
    ("Service", "UMask"): _handle_umask,
    ("Service", "KillMode"): _set_choice("kill_mode", _KILL_MODES),
    ("Service", "KillSignal"): _set_parsed("kill_signal", _parse_signal),
    ("Service", "TimeoutSec"): _handle_timeout,
    ("Service", "TimeoutStartSec"): _handle_timeout,
    ("Service", "TimeoutStopSec"): _handle_timeout,
    ("Service", "Restart"): _set_choice("restart", _RESTARTS),
    ("Service", "RestartSec"): _set_parsed("restart_usec", parse_timespan),
    ("Service", "RemainAfterExit"): _set_parsed("remain_after_exit", _parse_bool),
    ("Service", "PermissionsStartOnly"): _set_parsed("permissions_start_only", _parse_bool),
    **{("Service", k): _handle_directories for k in _DIRECTORY_KEYS},
    ("Service", "ReadWritePaths"): _handle_read_write_paths,
    ("Service", "DynamicUser"): _set_parsed("dynamic_user", _parse_bool),
    ("Service", "RootDirectory"): _set_path("root_directory"),
    ("Service", "RootImage"): _set_path("root_image"),
    ("Service", "BusName"): _handle_bus_name,
    ("Service", "CapabilityBoundingSet"): _handle_capabilities,
    ("Service", "AmbientCapabilities"): _handle_capabilities,
    **{("Service", k): _set_parsed(attr, _parse_bool) for k, (attr, _) in _IMPLIED_CAP_DROPS.items()},
}


def _apply(svc: _Service, path: str, text: str, ctx: _Ctx) -> None:
    try:
        assignments = split_assignments(text, path)
    except InvalidInput as exc:
        raise _Fatal(str(exc)) from None
    for a in assignments:
        if a.key in RAW_KEYS:
            with contextlib.suppress(_Ignored, _SyntaxError):
                svc.raw.append((a.key, ctx.spec.expand(a.value)))
        handler = _HANDLERS.get((a.section, a.key))
        if handler is None:
            continue
        try:
            handler(svc, a.key, a.value, ctx)
        except (_Ignored, _SyntaxError) as exc:
            ctx.warns.append(f"{path}:{a.line}: {a.key}={a.value}: {exc}, ignoring")
        except _Fatal as exc:
            raise _Fatal(f"{path}:{a.line}: {exc}") from None


def _manager_defaults(tree: _Tree) -> _Manager:
    manager = _Manager()
    files = ["/etc/systemd/system.conf", *_conf_files(tree, _SYSTEM_CONF_DROPIN_DIRS)]
    keys = {
        "DefaultTimeoutStartSec": ("timeout_start_usec", _timespan_fix_0),
        "DefaultTimeoutStopSec": ("timeout_stop_usec", _timespan_fix_0),
        "DefaultRestartSec": ("restart_usec", parse_timespan),
    }
    for path in files:
        try:
            assignments = split_assignments(tree.read_text(path) or "", path)
        except InvalidInput:
            continue
        for a in assignments:
            if a.section == "Manager" and a.key in keys:
                attr, parse = keys[a.key]
                with contextlib.suppress(ValueError):
                    setattr(manager, attr, parse(a.value))
    return manager


def _finish(svc: _Service, unit_id: str) -> None:
    """What systemd derives and checks once all files are read."""
    starts = svc.execs["ExecStart"]
    if not svc.type:
        svc.type = "dbus" if svc.bus_name else "simple" if starts else "oneshot"
    if svc.timeout_start_usec is None:
        svc.timeout_start_usec = USEC_INFINITY if svc.type == "oneshot" else svc.defaults.timeout_start_usec
    if svc.timeout_stop_usec is None:
        svc.timeout_stop_usec = svc.defaults.timeout_stop_usec
    if svc.restart_usec is None:
        svc.restart_usec = svc.defaults.restart_usec
    if svc.dynamic_user:
        parsed = _Name.parse(unit_id)
        assert parsed is not None
        svc.user = svc.user or _dynamic_user_name(parsed.prefix)
        svc.group = svc.group or svc.user
    for items in svc.directories.values():
        items.sort(key=_path_key)
    for attr, dropped in _IMPLIED_CAP_DROPS.values():
        if getattr(svc, attr):
            svc.capability_bounding_set &= ~dropped
    if not starts and not svc.remain_after_exit and not svc.success_action:
        raise _Fatal("Service has no ExecStart=, no SuccessAction= and no RemainAfterExit=yes")
    if svc.type != "oneshot" and not starts:
        raise _Fatal("Service has no ExecStart= setting, which is only allowed for Type=oneshot services")
    if svc.type != "oneshot" and len(starts) > 1:
        raise _Fatal("Service has more than one ExecStart= setting, which is only allowed for Type=oneshot")
    if svc.type == "oneshot" and svc.restart in ("always", "on-success"):
        raise _Fatal("Restart=always or on-success is not allowed for Type=oneshot services")
    if svc.type == "dbus" and not svc.bus_name:
        raise _Fatal("Service is of type D-Bus but no D-Bus service name has been specified")


def _settings(
    svc: _Service, unit_id: str, names: tuple[str, ...], fragment: str, dropins: list[str]
) -> UnitSettings:
    assert svc.timeout_start_usec is not None and svc.timeout_stop_usec is not None
    assert svc.restart_usec is not None
    dirs = {k: tuple(v) for k, v in svc.directories.items()}
    return UnitSettings(
        id=unit_id,
        names=names,
        load_state="loaded",
        fragment_path=fragment,
        dropin_paths=tuple(dropins),
        description=svc.description or unit_id,
        type=svc.type,
        exec_condition=tuple(svc.execs["ExecCondition"]),
        exec_start_pre=tuple(svc.execs["ExecStartPre"]),
        exec_start=tuple(svc.execs["ExecStart"]),
        exec_start_post=tuple(svc.execs["ExecStartPost"]),
        exec_reload=tuple(svc.execs["ExecReload"]),
        exec_stop=tuple(svc.execs["ExecStop"]),
        exec_stop_post=tuple(svc.execs["ExecStopPost"]),
        pid_file=svc.pid_file,
        user=svc.user,
        group=svc.group,
        supplementary_groups=tuple(svc.supplementary_groups),
        environment=tuple(svc.environment),
        environment_files=tuple(svc.environment_files),
        working_directory=svc.working_directory,
        umask=svc.umask,
        kill_mode=svc.kill_mode,
        kill_signal=svc.kill_signal,
        timeout_start_usec=svc.timeout_start_usec,
        timeout_stop_usec=svc.timeout_stop_usec,
        restart=svc.restart,
        restart_usec=svc.restart_usec,
        remain_after_exit=svc.remain_after_exit,
        permissions_start_only=svc.permissions_start_only,
        source_path=svc.source_path,
        state_directories=dirs["StateDirectory"],
        runtime_directories=dirs["RuntimeDirectory"],
        logs_directories=dirs["LogsDirectory"],
        cache_directories=dirs["CacheDirectory"],
        configuration_directories=dirs["ConfigurationDirectory"],
        read_write_paths=tuple(svc.read_write_paths),
        dynamic_user=svc.dynamic_user,
        root_directory=svc.root_directory,
        root_image=svc.root_image,
        bus_name=svc.bus_name,
        capability_bounding_set=svc.capability_bounding_set,
        ambient_capabilities=svc.ambient_capabilities,
        raw=tuple(svc.raw),
    )
