"""Which systemd version first understood each directive sandbox-service may emit.

systemd ignores an unknown key with only a warning, and `systemd-analyze verify` still succeeds, so
nothing else would catch a directive that the running systemd does not know. Profiles may use only
directives listed here; create drops (and reports) those newer than the target's systemd.
Versions are from systemd's NEWS and the systemd.exec(5) "Added in version" notes.
"""

from __future__ import annotations

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
