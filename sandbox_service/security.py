"""Security profiles: the hardening directives of a sandbox, resolved once at create.

A profile is a readable file of directives (profiles/NAME.conf shipped with the tool, or an admin's
/etc/sandbox-service/profiles/NAME.conf). Two placeholders are resolved against the wrapped service:
@wrapped (the capability bounding set it needs) and @service (the socket families a network daemon uses).
The result is stored in the spec, so re-rendering never depends on profile files changing later.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from . import directives
from .errors import InvalidInput, NotFound
from .resources import data_dir
from .spec import Directive, Security, ServiceDef, check_text

ADMIN_PROFILES = Path("/etc/sandbox-service/profiles")
DEFAULT_PROFILE = "default"

# Linux capability numbers (linux/capability.h), index = bit
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
ALL_CAPS_MASK = 2**64 - 1

# What a daemon started as root needs to bind its port below 1024, drop to its worker user, prepare
# directories for it and signal its workers; nothing that reaches beyond its own sandbox.
ROOT_DAEMON_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
    "CAP_NET_BIND_SERVICE",
)  # fmt: skip
SERVICE_FAMILIES = "AF_UNIX AF_INET AF_INET6"


# Values a profile may leave for create to derive from the wrapped service (resolve()).
PLACEHOLDERS = {"CapabilityBoundingSet": "@wrapped", "RestrictAddressFamilies": "@service"}
# Namespaces every sandbox has that a profile may give up for density, yes or no (default yes).  Their
# choice goes into the spec as a flag of Security (named here), not as a directive: a spec's directives
# only harden.
NAMESPACE_CHOICES = {"PrivateIPC": "private_ipc"}
_YES = ("yes", "true", "on", "1")
_NO = ("no", "false", "off", "0")


@dataclass(frozen=True)
class ProfileLine:
    """One line of a profile file: a hardening directive, or a placeholder resolved per service."""

    key: str
    value: str

    def __post_init__(self) -> None:
        check_text(f"value of {self.key}", self.value)
        if self.key in NAMESPACE_CHOICES:
            if self.value not in (*_YES, *_NO):
                raise InvalidInput(f"{self.key}={self.value}: give yes or no")
        elif PLACEHOLDERS.get(self.key) != self.value:
            directives.check_value(self.key, self.value)


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    directives: tuple[ProfileLine, ...]


@dataclass(frozen=True)
class Resolved:
    directives: tuple[Directive, ...]
    dropped: tuple[Directive, ...]  # newer than the target's systemd
    private_ipc: bool = True  # the profile's PrivateIPC= (NAMESPACE_CHOICES)

    def applied_to(self, chosen: Security) -> Security:
        """The admin's choice with what it resolved to, as the spec stores it."""
        return replace(chosen, directives=self.directives, private_ipc=self.private_ipc)


def caps_from_mask(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in enumerate(CAPABILITIES) if mask & (1 << bit))


def profile_names(admin_dir: Path = ADMIN_PROFILES) -> list[str]:
    names = {p.stem for p in data_dir("profiles").glob("*.conf")}
    if admin_dir.is_dir():
        names |= {p.stem for p in admin_dir.glob("*.conf")}
    return sorted(names)


def load_profile(name: str, admin_dir: Path = ADMIN_PROFILES) -> Profile:
    if not name or "/" in name or name.startswith("."):
        raise InvalidInput(f"invalid profile name {name!r}")
    for base in (admin_dir, data_dir("profiles")):
        path = base / f"{name}.conf"
        if path.is_file():
            return Profile(name, path, parse_profile(path.read_text(), str(path)))
    raise NotFound(f"no profile named {name!r}", f"profiles: {', '.join(profile_names(admin_dir))}")


def parse_profile(text: str, where: str) -> tuple[ProfileLine, ...]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not directives.known(key):
            raise InvalidInput(
                f"{where}:{lineno}: {key or line!r} is not a directive sandbox-service knows",
                "profiles may use the directives listed in sandbox_service/directives.py",
            )
        try:
            out.append(ProfileLine(key, value))
        except InvalidInput as exc:
            raise InvalidInput(f"{where}:{lineno}: {exc.message}", exc.hint) from None
    return tuple(out)


def allowed_families(directives: tuple[Directive, ...]) -> frozenset[str] | None:
    """The socket families a RestrictAddressFamilies= allow list leaves (None: not restricted that way)."""
    allowed: frozenset[str] | None = None
    for d in directives:
        if d.key == "RestrictAddressFamilies" and not d.value.startswith("~"):
            allowed = frozenset(d.value.split())
    return allowed


def allows_ip(directives: tuple[Directive, ...]) -> bool:
    families = allowed_families(directives)
    return families is None or bool(families & {"AF_INET", "AF_INET6"})


def needed_capabilities(service: ServiceDef) -> tuple[str, ...]:
    """The bounding set for @wrapped: the host unit's own when it restricts one, else what the program
    demonstrably needs: nothing beyond its ambient set when it runs as a user, the root-daemon set
    when it starts as root (to bind ports below 1024 and switch to its worker user)."""
    if service.capability_bounding_set is not None:
        return service.capability_bounding_set
    if service.user not in (None, "root", "0"):
        return service.ambient_capabilities
    return tuple(sorted({*ROOT_DAEMON_CAPS, *service.ambient_capabilities}))


def resolve(
    profile: Profile,
    service: ServiceDef,
    systemd_version: int,
    *,
    memory_deny_write_execute: bool | None = None,
    private_users: bool | None = None,
) -> Resolved:
    items = []
    private_ipc = True
    for d in profile.directives:
        if d.key == "PrivateIPC":
            private_ipc = d.value in _YES
        elif d.value == "@wrapped":
            items.append(Directive(d.key, " ".join(needed_capabilities(service))))
        elif d.value == "@service":
            items.append(Directive(d.key, SERVICE_FAMILIES))
        else:
            items.append(Directive(d.key, d.value))
    for key, flag in (("MemoryDenyWriteExecute", memory_deny_write_execute), ("PrivateUsers", private_users)):
        if flag is not None:  # off: left out, which is systemd's default
            items = [d for d in items if d.key != key]
            if flag:
                items.append(Directive(key, "yes"))
    kept = tuple(d for d in items if directives.min_version(d.key, d.value) <= systemd_version)
    dropped = tuple(d for d in items if d not in kept)
    return Resolved(kept, dropped, private_ipc)


def settle(chosen: Security, service: ServiceDef, systemd_version: int, admin_dir: Path) -> Resolved:
    """Resolve the admin's choice (profile and flags) for a service; used by create and upgrade alike."""
    profile = load_profile(chosen.profile, admin_dir)
    return resolve(
        profile,
        service,
        systemd_version,
        memory_deny_write_execute=chosen.memory_deny_write_execute,
        private_users=chosen.private_users,
    )
