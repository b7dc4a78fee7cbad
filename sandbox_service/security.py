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
from .spec import Directive, ExecFlag, Security, ServiceDef, ServiceType, check_text

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

# What a daemon started as root needs to bind its port below 1024, drop to its worker user, confine it
# to a directory (chroot), prepare directories for it and signal its workers; nothing that reaches
# beyond its own sandbox.
ROOT_DAEMON_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
)  # fmt: skip
# AF_NETLINK: getifaddrs() and getaddrinfo(AI_ADDRCONFIG) ask the kernel's routing socket which
# addresses exist; it shows the sandbox's own network namespace and changes nothing without CAP_NET_ADMIN.
SERVICE_FAMILIES = "AF_UNIX AF_INET AF_INET6 AF_NETLINK"


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
    left_out: tuple[tuple[Directive, str], ...] = ()  # what the service cannot run with, and why
    notes: tuple[str, ...] = ()  # how the wrapped unit's own protections were merged in
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


# The unit's file-system protections, which systemd applies to every command of the unit but its '+'
# ones (and the host's systemd-tmpfiles never runs under them).  Inside a sandbox those commands stay in
# the unit's namespace, so for a unit with any the launcher applies these to the others instead.
PER_COMMAND_MOUNTS = frozenset({"ProtectSystem", "ReadOnlyPaths"})


def mounts_per_command(service: ServiceDef, tmpfiles: tuple[str, ...], user_namespace: bool) -> bool:
    """Whether the launcher applies the unit's PER_COMMAND_MOUNTS (it runs only with a user namespace)."""
    exempt = bool(tmpfiles) or any(ExecFlag.PRIVILEGED in c.flags for c in service.all_commands())
    protects = any(d.key in PER_COMMAND_MOUNTS for d in service.hardening)
    return user_namespace and exempt and protects


def resolve(
    profile: Profile,
    service: ServiceDef,
    systemd_version: int,
    *,
    memory_deny_write_execute: bool | None = None,
    private_users: bool | None = None,
    per_command_mounts: bool = False,
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
    unit = service.hardening
    if per_command_mounts:
        unit = tuple(d for d in unit if d.key not in PER_COMMAND_MOUNTS)
    items, merge_notes = merge_hardening(items, unit)
    if per_command_mounts:
        merge_notes.append(
            "the unit's ProtectSystem=/ReadOnlyPaths= apply, as on the host, to its commands other than "
            "the '+' ones and tmpfiles: the launcher sets them up for each of those"
        )
    for key, flag in (("MemoryDenyWriteExecute", memory_deny_write_execute), ("PrivateUsers", private_users)):
        if flag is not None:  # off: left out, which is systemd's default
            items = [d for d in items if d.key != key]
            if flag:
                items.append(Directive(key, "yes"))
    kept = tuple(d for d in items if directives.min_version(d.key, d.value) <= systemd_version)
    dropped = tuple(d for d in items if d not in kept)
    left_out = tuple((d, why) for d in kept if (why := _unfit(d, service, systemd_version)) is not None)
    kept = tuple(d for d in kept if all(d != other for other, _ in left_out))
    return Resolved(kept, dropped, left_out, tuple(merge_notes), private_ipc)


# Worded protections from weakest to strongest: the sandbox keeps the stronger of the profile's and the
# wrapped unit's.
_STRENGTH: dict[str, tuple[str, ...]] = {  # each level: its spellings
    "ProtectSystem": ("no false", "yes true", "full", "strict"),
    "ProtectHome": ("no false", "read-only", "tmpfs", "yes true"),
    "ProtectProc": ("default", "ptraceable", "invisible", "noaccess"),
    "ProcSubset": ("all", "pid"),
    "KeyringMode": ("inherit", "shared", "private"),
    "DevicePolicy": ("auto", "closed", "strict"),
    "ProtectControlGroups": ("no false", "yes true", "private", "strict"),
}
# Lists that only take away: the wrapped unit's are added to the profile's.
_ADDITIVE = frozenset(
    {
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "ExecPaths",
        "NoExecPaths",
        "RestrictFileSystems",
        "SocketBindDeny",
    }
)


def _strength(key: str, value: str) -> int:
    return next((i for i, words in enumerate(_STRENGTH[key]) if value in words.split()), 0)


def merge_hardening(items: list[Directive], unit: tuple[Directive, ...]) -> tuple[list[Directive], list[str]]:
    """The profile's directives with the wrapped unit's own protections added where they are stronger:
    a sandbox is never weaker than the unit it wraps."""
    out = list(items)
    notes: list[str] = []
    for d in unit:
        mine = [i for i in out if i.key == d.key]
        if d.key in _STRENGTH:
            if not mine or _strength(d.key, d.value) > _strength(d.key, mine[-1].value):
                out = [i for i in out if i.key != d.key] + [d]
        elif d.key == "RestrictAddressFamilies":
            out = _intersect_families(out, d)
        elif d.key == "SystemCallFilter" and not d.value.startswith("~"):
            # both allow lists: only their intersection would be at least as strict as each; the unit's
            # own list (systemd's expansion of it) stands in for the profile's groups
            out = [i for i in out if not (i.key == d.key and not i.value.startswith("~"))]
            out.insert(0, d)
            notes.append("SystemCallFilter: the wrapped unit's own allow list replaces the profile's")
        elif d.key in _ADDITIVE or d.key == "SystemCallFilter":
            if d not in out:
                out.append(d)
        elif not mine:  # yes/no protections and single values the profile does not set
            out.append(d)
    return out, notes


def _intersect_families(items: list[Directive], unit: Directive) -> list[Directive]:
    if unit.value.startswith("~"):
        return [*items, unit]
    mine = allowed_families(tuple(items))
    theirs = frozenset(unit.value.split())
    if mine is None:
        return [*items, unit]
    both = " ".join(sorted(mine & theirs)) or "none"
    return [i for i in items if i.key != "RestrictAddressFamilies"] + [
        Directive("RestrictAddressFamilies", both)
    ]


def _unfit(d: Directive, service: ServiceDef, systemd_version: int) -> str | None:
    """Why the service cannot run with `d`, or None.

    PrivatePIDs= gives every command of the unit a PID namespace of its own: a forking daemon's first
    process would take its namespace down with it, and reload and stop commands could not see the main
    process they signal.  Before systemd 258 it can also cost a unit that stops its main process alone
    (KillMode=mixed or process) its clean stop: see directives.PRIVATE_PIDS_MAIN_IS_CHILD."""
    if d.key != "PrivatePIDs":
        return None
    if service.type is ServiceType.FORKING:
        return "a forking daemon's first process would end its PID namespace"
    if service.exec_reload or service.exec_stop or service.exec_start_post:
        return "its reload and stop commands would not see the main process"
    if service.kill_mode in ("mixed", "process") and systemd_version < directives.PRIVATE_PIDS_MAIN_IS_CHILD:
        return (
            f"with KillMode={service.kill_mode}, systemd {systemd_version} could send SIGKILL right after "
            f"the stop's SIGTERM (fixed in {directives.PRIVATE_PIDS_MAIN_IS_CHILD})"
        )
    return None


def settle(
    chosen: Security,
    service: ServiceDef,
    systemd_version: int,
    admin_dir: Path,
    tmpfiles: tuple[str, ...] = (),
) -> Resolved:
    """Resolve the admin's choice (profile and flags) for a service; used by create and upgrade alike."""
    profile = load_profile(chosen.profile, admin_dir)
    return resolve(
        profile,
        service,
        systemd_version,
        memory_deny_write_execute=chosen.memory_deny_write_execute,
        private_users=chosen.private_users,
        per_command_mounts=mounts_per_command(service, tmpfiles, chosen.user_namespace),
    )
