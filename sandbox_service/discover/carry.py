"""Carry a host unit's settings over to its sandbox: what properties.py says is CARRIED, HARDENING or
DROPPED, turned from systemd's D-Bus view into unit-file lines, directives and notes.

A setting counts only where the unit sets it: its value differs from what systemd gives a service that
sets nothing (the properties of a unit name systemd does not know, asked from the same manager).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass

from ..spec import Directive, Setting
from ..systemd import Properties, PropertyValue
from .properties import PROPERTIES, Fate, fate

_INFINITY = 2**64 - 1
_SYSLOG_FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    *(f"local{i}" for i in range(8)),
)  # fmt: skip
_SYSLOG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_CPU_POLICIES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle"}
_NUMA_POLICIES = {0: "default", 1: "preferred", 2: "bind", 3: "interleave", 4: "local"}
# Properties whose D-Bus name is the unit-file key with Sec/NSec for USec/NSec
_TIME_SUFFIXES = (("USec", "Sec", "us"), ("NSec", "NSec", "ns"))
# Unit-section settings among the carried ones
UNIT_SECTION = frozenset(
    {
        "DefaultDependencies", "StopWhenUnneeded", "RefuseManualStart", "RefuseManualStop", "AllowIsolate",
        "IgnoreOnIsolate", "CollectMode", "JobTimeoutSec", "JobRunningTimeoutSec", "StartLimitIntervalSec",
        "StartLimitBurst", "OnFailureJobMode", "OnSuccessJobMode",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Carried:
    settings: tuple[Setting, ...]  # unit-file lines, as systemd reads them back
    notes: tuple[str, ...]  # what was left out, and why


def _seq(value: PropertyValue) -> tuple[PropertyValue, ...]:
    if not isinstance(value, tuple):
        raise TypeError(f"expected an array, got {value!r}")
    return value


def _int(value: PropertyValue) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected a number, got {value!r}")
    return value


def _signal(value: PropertyValue) -> str:
    try:
        return signal.Signals(_int(value)).name
    except ValueError:
        return str(value)


def _bool(value: PropertyValue) -> str:
    return "yes" if value else "no"


def _number_or_infinity(value: PropertyValue) -> str:
    return "infinity" if value == _INFINITY else str(value)


def _timespan(unit: str) -> Callable[[PropertyValue], str]:
    return lambda value: "infinity" if value == _INFINITY else f"{value}{unit}"


def _exit_statuses(value: PropertyValue) -> str:
    codes, signals = _seq(value)
    return " ".join([*(str(c) for c in _seq(codes)), *(_signal(s) for s in _seq(signals))])


def _words(value: PropertyValue) -> str:
    return " ".join(str(v) for v in _seq(value))


def _paths_with_options(value: PropertyValue) -> str:
    pairs = [_seq(pair) for pair in _seq(value)]
    return " ".join(f"{path}:{options}" if options else str(path) for path, options in pairs)


def _named(names: dict[int, str] | tuple[str, ...]) -> Callable[[PropertyValue], str]:
    def name(value: PropertyValue) -> str:
        number = _int(value)
        if isinstance(names, dict):
            return names.get(number, str(number))
        return names[number] if 0 <= number < len(names) else str(number)

    return name


# property -> (unit-file key, format); a carried property missing here is left out with a note
_FORMATS: dict[str, tuple[str, Callable[[PropertyValue], str]]] = {
    "ExitType": ("ExitType", str),
    "GuessMainPID": ("GuessMainPID", _bool),
    "NotifyAccess": ("NotifyAccess", str),
    "WatchdogSignal": ("WatchdogSignal", _signal),
    "FileDescriptorStoreMax": ("FileDescriptorStoreMax", str),
    "FileDescriptorStorePreserve": ("FileDescriptorStorePreserve", str),
    "NonBlocking": ("NonBlocking", _bool),
    "SameProcessGroup": ("SameProcessGroup", _bool),
    "IgnoreSIGPIPE": ("IgnoreSIGPIPE", _bool),
    "RestartSteps": ("RestartSteps", str),
    "RestartMode": ("RestartMode", str),
    "RestartPreventExitStatus": ("RestartPreventExitStatus", _exit_statuses),
    "RestartForceExitStatus": ("RestartForceExitStatus", _exit_statuses),
    "SuccessExitStatus": ("SuccessExitStatus", _exit_statuses),
    "TimeoutStartFailureMode": ("TimeoutStartFailureMode", str),
    "TimeoutStopFailureMode": ("TimeoutStopFailureMode", str),
    "OOMPolicy": ("OOMPolicy", str),
    "ReloadSignal": ("ReloadSignal", _signal),
    "RestartKillSignal": ("RestartKillSignal", _signal),
    "FinalKillSignal": ("FinalKillSignal", _signal),
    "SendSIGKILL": ("SendSIGKILL", _bool),
    "SendSIGHUP": ("SendSIGHUP", _bool),
    "SetLoginEnvironment": ("SetLoginEnvironment", _bool),
    "PassEnvironment": ("PassEnvironment", _words),
    "UnsetEnvironment": ("UnsetEnvironment", _words),
    "Nice": ("Nice", str),
    "OOMScoreAdjust": ("OOMScoreAdjust", str),
    "CoredumpFilter": ("CoredumpFilter", lambda v: f"0x{_int(v):x}"),
    "IOSchedulingClass": ("IOSchedulingClass", str),
    "IOSchedulingPriority": ("IOSchedulingPriority", str),
    "CPUSchedulingPolicy": ("CPUSchedulingPolicy", _named(_CPU_POLICIES)),
    "CPUSchedulingPriority": ("CPUSchedulingPriority", str),
    "CPUSchedulingResetOnFork": ("CPUSchedulingResetOnFork", _bool),
    "NUMAPolicy": ("NUMAPolicy", _named(_NUMA_POLICIES)),
    "Personality": ("Personality", str),
    "DebugInvocation": ("DebugInvocation", _bool),
    "SyslogIdentifier": ("SyslogIdentifier", str),
    "SyslogFacility": ("SyslogFacility", _named(_SYSLOG_FACILITIES)),
    "SyslogLevel": ("SyslogLevel", _named(_SYSLOG_LEVELS)),
    "SyslogLevelPrefix": ("SyslogLevelPrefix", _bool),
    "LogLevelMax": ("LogLevelMax", _named(_SYSLOG_LEVELS)),
    "LogRateLimitBurst": ("LogRateLimitBurst", str),
    "TemporaryFileSystem": ("TemporaryFileSystem", _paths_with_options),
    "ExecSearchPath": ("ExecSearchPath", lambda v: ":".join(str(p) for p in _seq(v))),
    "SystemCallLog": ("SystemCallLog", lambda v: ("" if _seq(v)[0] else "~") + _words(_seq(v)[1])),
    "MemoryKSM": ("MemoryKSM", _bool),
    "DisableControllers": ("DisableControllers", _words),
    "CPUAccounting": ("CPUAccounting", _bool),
    "CPUWeight": ("CPUWeight", _number_or_infinity),
    "StartupCPUWeight": ("StartupCPUWeight", _number_or_infinity),
    "CPUShares": ("CPUShares", _number_or_infinity),
    "StartupCPUShares": ("StartupCPUShares", _number_or_infinity),
    "CPUQuotaPerSecUSec": ("CPUQuota", lambda v: f"{_int(v) // 10_000}%"),
    "MemoryAccounting": ("MemoryAccounting", _bool),
    "TasksAccounting": ("TasksAccounting", _bool),
    "TasksMax": ("TasksMax", _number_or_infinity),
    "IOAccounting": ("IOAccounting", _bool),
    "IOWeight": ("IOWeight", _number_or_infinity),
    "StartupIOWeight": ("StartupIOWeight", _number_or_infinity),
    "BlockIOAccounting": ("BlockIOAccounting", _bool),
    "BlockIOWeight": ("BlockIOWeight", _number_or_infinity),
    "StartupBlockIOWeight": ("StartupBlockIOWeight", _number_or_infinity),
    "IPAccounting": ("IPAccounting", _bool),
    "ManagedOOMSwap": ("ManagedOOMSwap", str),
    "ManagedOOMMemoryPressure": ("ManagedOOMMemoryPressure", str),
    "ManagedOOMPreference": ("ManagedOOMPreference", str),
    "MemoryPressureWatch": ("MemoryPressureWatch", str),
    "DefaultDependencies": ("DefaultDependencies", _bool),
    "StopWhenUnneeded": ("StopWhenUnneeded", _bool),
    "RefuseManualStart": ("RefuseManualStart", _bool),
    "RefuseManualStop": ("RefuseManualStop", _bool),
    "AllowIsolate": ("AllowIsolate", _bool),
    "IgnoreOnIsolate": ("IgnoreOnIsolate", _bool),
    "CollectMode": ("CollectMode", str),
    "StartLimitBurst": ("StartLimitBurst", str),
    "OnFailureJobMode": ("OnFailureJobMode", str),
    "OnSuccessJobMode": ("OnSuccessJobMode", str),
}
for _name in ("MemoryMin", "MemoryLow", "MemoryHigh", "MemoryMax", "MemorySwapMax", "MemoryZSwapMax",
              "MemoryLimit", "DefaultMemoryLow", "DefaultMemoryMin", "DefaultStartupMemoryLow",
              "StartupMemoryLow", "StartupMemoryHigh", "StartupMemoryMax", "StartupMemorySwapMax",
              "StartupMemoryZSwapMax"):  # fmt: skip
    _FORMATS[_name] = (_name, _number_or_infinity)
for _name in ("IODeviceWeight", "IOReadBandwidthMax", "IOWriteBandwidthMax", "IOReadIOPSMax",
              "IOWriteIOPSMax", "IODeviceLatencyTargetUSec", "BlockIODeviceWeight", "BlockIOReadBandwidth",
              "BlockIOWriteBandwidth"):  # fmt: skip
    _FORMATS[_name] = (_name.removesuffix("USec") + ("Sec" if _name.endswith("USec") else ""), _words)


def _key_and_format(prop: str) -> tuple[str, Callable[[PropertyValue], str]] | None:
    if prop in _FORMATS:
        return _FORMATS[prop]
    if prop.startswith("Limit") and not prop.endswith("Soft"):
        return None  # the pair LimitX/LimitXSoft, rendered together
    for dbus, unit, suffix in _TIME_SUFFIXES:
        if prop.endswith(dbus):
            return prop.removesuffix(dbus) + unit, _timespan(suffix)
    return None


def _limit(name: str, hard: PropertyValue, soft: PropertyValue) -> Setting:
    return Setting(f"Limit{name}", f"{_number_or_infinity(soft)}:{_number_or_infinity(hard)}")


def carry(props: Properties, defaults: Properties) -> Carried:
    """The CARRIED settings the unit sets, and notes for the DROPPED ones (REFUSED, HARDENING and
    TRANSLATED properties are the business of unit.py and security.py)."""
    settings: list[Setting] = []
    notes: list[str] = []
    for name, value in props.items:
        if defaults.get(name) == value or fate(name) not in (Fate.CARRIED, Fate.DROPPED):
            continue
        if fate(name) is Fate.DROPPED:
            notes.append(f"{name} not carried over: {PROPERTIES[name][1]}")
            continue
        if name.startswith("Limit"):
            base = name.removesuffix("Soft")
            hard, soft = props.get(base), props.get(base + "Soft")
            limit = _limit(base.removeprefix("Limit"), hard if hard is not None else _INFINITY,
                           soft if soft is not None else _INFINITY)  # fmt: skip
            if limit not in settings:
                settings.append(limit)
            continue
        known = _key_and_format(name)
        if known is None:
            notes.append(f"{name} not carried over: the tool cannot write its value {value!r} yet")
            continue
        key, render = known
        text = render(value)
        if "\n" in text or text != text.strip():
            notes.append(f"{name} not carried over: its value cannot be written in a unit file")
            continue
        settings.append(Setting(key, text))
    return Carried(tuple(settings), tuple(notes))


def section_of(key: str) -> str:
    return "Unit" if key in UNIT_SECTION else "Service"


def hardening(props: Properties, defaults: Properties) -> tuple[Directive, ...]:
    """The unit's own protections, as directives the profile's are merged with (security.py)."""
    out: list[Directive] = []
    for name, value in props.items:
        if fate(name) is not Fate.HARDENING or defaults.get(name) == value:
            continue
        out.extend(_hardening_directives(name, value))
    return tuple(out)


_BOOLEAN_HARDENING = frozenset(
    {
        "NoNewPrivileges", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules",
        "ProtectKernelLogs", "ProtectClock", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
        "MemoryDenyWriteExecute", "RemoveIPC", "PrivatePIDs", "ProtectControlGroups",
    }
)  # fmt: skip
_WORDED = frozenset(
    {"ProtectSystem", "ProtectHome", "ProtectProc", "ProcSubset", "KeyringMode", "DevicePolicy"}
)


def _hardening_directives(name: str, value: PropertyValue) -> list[Directive]:
    if name in _BOOLEAN_HARDENING:
        return [Directive(name, "yes")] if value is True else []
    if name == "ProtectControlGroupsEx":
        return [Directive("ProtectControlGroups", str(value))] if value not in ("no", "") else []
    if name in _WORDED:
        return (
            [Directive(name, str(value))] if value not in ("no", "default", "all", "inherit", "auto") else []
        )
    if name in ("ReadOnlyPaths", "InaccessiblePaths"):
        return [Directive(name, _words(value))] if value else []
    if name in ("SystemCallFilter", "RestrictAddressFamilies", "RestrictFileSystems"):
        allow, items = _seq(value)
        if not _seq(items) and allow:
            return [Directive(name, "none")] if name == "RestrictAddressFamilies" else []
        return [Directive(name, ("" if allow else "~") + _words(items))] if _seq(items) else []
    if name == "SystemCallArchitectures" and value:
        return [Directive(name, _words(value))]
    if name == "SystemCallErrorNumber" and isinstance(value, int) and value > 0:
        import errno

        return [Directive(name, errno.errorcode.get(value, str(value)))]
    return []
