"""Which systemd version first understood each directive sandbox-service may emit.

systemd ignores an unknown key with only a warning, and `systemd-analyze verify` still succeeds, so
nothing else would catch a directive that the running systemd does not know. Profiles may use only
directives listed here; create drops (and reports) those newer than the target's systemd.
Versions are from systemd's NEWS and the systemd.exec(5) "Added in version" notes.
"""

from __future__ import annotations

import re

# key -> first systemd version that knows it
MIN_VERSION: dict[str, int] = {
    "NoNewPrivileges": 187,
    "CapabilityBoundingSet": 1,
    "AmbientCapabilities": 229,
    "SystemCallFilter": 187,
    "SystemCallErrorNumber": 209,
    "SystemCallArchitectures": 209,
    "RestrictAddressFamilies": 211,
    "PrivateDevices": 209,
    "DevicePolicy": 208,
    "ProtectSystem": 214,
    "ProtectHome": 214,
    "ReadWritePaths": 231,
    "ReadOnlyPaths": 231,
    "InaccessiblePaths": 231,
    "MemoryDenyWriteExecute": 231,
    "RestrictRealtime": 231,
    "PrivateUsers": 232,
    "ProtectKernelTunables": 232,
    "ProtectKernelModules": 232,
    "ProtectControlGroups": 232,
    "RemoveIPC": 232,
    "RestrictNamespaces": 233,
    "LockPersonality": 235,
    "KeyringMode": 235,
    "IPAddressAllow": 235,
    "IPAddressDeny": 235,
    "UMask": 1,
    "ProtectHostname": 242,
    "RestrictSUIDSGID": 242,
    "ProtectKernelLogs": 244,
    "ProtectClock": 245,
    "ProtectProc": 247,
    "ProcSubset": 247,
    "PrivateIPC": 248,
    "SocketBindAllow": 249,
    "SocketBindDeny": 249,
    "RestrictFileSystems": 250,
    "PrivatePIDs": 257,
    "BindLogSockets": 257,
}

# From this version on systemd makes the main process of a PrivatePIDs= unit its child from the start.
# Before, the message naming that process could arrive first: systemd then took it as not its child and,
# not waiting for it, sent SIGKILL right after the stop's SIGTERM where KillMode= is mixed or process.
PRIVATE_PIDS_MAIN_IS_CHILD = 258

# (key, value) pairs whose *value* is newer than the key itself
VALUE_MIN_VERSION: dict[tuple[str, str], int] = {
    ("ProtectHostname", "private"): 257,
    ("ProtectControlGroups", "private"): 257,
    ("ProtectControlGroups", "strict"): 257,
    ("PrivateUsers", "self"): 257,
    ("PrivateUsers", "identity"): 257,
    ("PrivateUsers", "full"): 257,
}


def known(key: str) -> bool:
    return key in MIN_VERSION


def min_version(key: str, value: str) -> int:
    return max(MIN_VERSION[key], VALUE_MIN_VERSION.get((key, value), 0))


# What a directive may say in a profile or a spec file: each value must harden.  A protection switched
# off ("=no") is expressed by leaving the directive out, so a value that turns one off is refused, as is
# any key not listed (Exec*=, RootDirectory=, PrivateNetwork=, User= and the like are the tool's own).
_ON = r"yes|true|on|1"
_WORDS = r"[A-Za-z0-9@_:.+/-]+(?: [A-Za-z0-9@_:.+/-]+)*"
_PATHS = r"-?\+?/[^ ]*(?: -?\+?/[^ ]*)*"
_NS = r"(?:cgroup|ipc|net|mnt|pid|user|uts)"
VALUE_PATTERNS: dict[str, str] = {
    "NoNewPrivileges": _ON,
    "CapabilityBoundingSet": r"~?(?:CAP_[A-Z_]+(?: CAP_[A-Z_]+)*)?",
    "SystemCallFilter": r"~?" + _WORDS,
    "SystemCallErrorNumber": r"[A-Z0-9]+|kill|log",
    "SystemCallArchitectures": _WORDS,
    "RestrictAddressFamilies": r"none|~?AF_[A-Z0-9]+(?: AF_[A-Z0-9]+)*|",
    "PrivateDevices": _ON,
    "DevicePolicy": r"closed|strict",
    "ProtectSystem": r"yes|true|full|strict",
    "ProtectHome": r"yes|true|read-only|tmpfs",
    "ReadWritePaths": _PATHS,
    "ReadOnlyPaths": _PATHS,
    "InaccessiblePaths": _PATHS,
    "MemoryDenyWriteExecute": _ON,
    "RestrictRealtime": _ON,
    "PrivateUsers": r"yes|true|self|identity",
    "ProtectKernelTunables": _ON,
    "ProtectKernelModules": _ON,
    "ProtectControlGroups": r"yes|true|private|strict",
    "RemoveIPC": _ON,
    "RestrictNamespaces": rf"yes|true|~?{_NS}(?: {_NS})*",
    "LockPersonality": _ON,
    "KeyringMode": r"private|shared",
    "IPAddressAllow": _WORDS,
    "IPAddressDeny": _WORDS,
    "UMask": r"0?[0-7]{3}",
    "ProtectHostname": r"yes|true|private",
    "RestrictSUIDSGID": _ON,
    "ProtectKernelLogs": _ON,
    "ProtectClock": _ON,
    "ProtectProc": r"noaccess|invisible|ptraceable",
    "ProcSubset": r"pid|all",
    "PrivateIPC": _ON,
    "SocketBindAllow": _WORDS,
    "SocketBindDeny": _WORDS,
    "RestrictFileSystems": r"~?" + _WORDS,
    "PrivatePIDs": _ON,
    "BindLogSockets": _ON,
}
# ReadWritePaths= must never reopen what the sandbox shares read-only from the host
_SHARED_READ_ONLY = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/proc", "/sys")


def check_value(key: str, value: str) -> None:
    """Refuse a directive that is unknown, or whose value does not harden (see VALUE_PATTERNS)."""
    from .errors import InvalidInput  # here, not at the top: errors is tiny, but this module stays plain data

    pattern = VALUE_PATTERNS.get(key)
    if pattern is None:
        raise InvalidInput(
            f"{key}= is not a hardening directive sandbox-service accepts in a profile or spec",
            "profiles may use the directives listed in sandbox_service/directives.py",
        )
    if not re.fullmatch(pattern, value):
        raise InvalidInput(
            f"{key}={value} does not harden the sandbox",
            f"leave {key}= out to keep systemd's default; a value that turns a protection off is refused",
        )
    if key == "ReadWritePaths" and any(opens_shared(p) for p in value.split()):
        raise InvalidInput(f"ReadWritePaths={value} would open what the sandbox shares read-only")


def opens_shared(path: str) -> bool:
    bare = path.lstrip("-+").rstrip("/") or "/"
    return bare == "/" or any(bare == p or bare.startswith(p + "/") for p in _SHARED_READ_ONLY)
