"""The sandbox spec: one frozen dataclass per sandbox, the single source of truth.

Everything the units need is in here; render.py only turns it into text and specfile.py only stores it.
Validation happens once, when a spec is built (``__post_init__``), so nothing downstream re-checks.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from . import directives
from .errors import InvalidInput
from .network.model import NetworkSpec

NAME_MAX = 40
# Each sandbox's root runs in a user namespace mapping inner IDs 0..65535 onto a private range of host IDs.
# The ranges sit in the part of the host's ID space that systemd documents for containers (524288 up to
# 1879048191), from 2^30 on, aligned to their size.
ID_RANGE_SIZE = 65536
ID_BASE_FIRST = 0x40000000
ID_BASE_END = 0x6FFF0000  # exclusive: the last range ends where systemd's container range does
# Every pattern is applied with fullmatch: with match(), "$" would accept a trailing newline.
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?")
_SIZE_RE = re.compile(r"infinity|(?P<number>[0-9]{1,20})(?P<unit>[KMGT]?)|[0-9]{1,3}%")
_CPU_QUOTA_RE = re.compile(r"[0-9]{1,7}%")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_.:+-]+")
_PROFILE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# Host directories a sandbox may share read-only: /usr, and the top-level directories that usr-merged
# systems link into it and others keep as real directories; and the host-managed data under /etc that a
# service reads but never writes (trust anchors, the alternatives links into /usr, protocol tables),
# shared instead of copied into every sandbox, so host updates reach them as /usr's do.
SHARED_SOFTWARE = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SHARED_ETC = (
    "/etc/ssl/certs", "/etc/ca-certificates", "/etc/ca-certificates.conf", "/etc/pki", "/etc/alternatives",
    "/etc/mime.types", "/etc/services", "/etc/protocols",
)  # fmt: skip
SHAREABLE = (*SHARED_SOFTWARE, *SHARED_ETC)
# Where the private copies of host files may come from, and what is never copied (the host's secrets and
# the tool's own state, which holds every other sandbox).
COPYABLE = ("/etc/", "/var/", "/srv/", "/opt/", "/home/")
NEVER_COPIED = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssl/private",
    "/etc/sudoers", "/etc/sudoers.d", "/var/lib/sandbox-service", "/etc/sandbox-service",
)  # fmt: skip


class Kind(enum.Enum):
    UNIT = "unit"  # wraps an existing host unit
    GENERIC = "generic"  # any command, host /usr shared
    CHROOT = "chroot"  # any command in its own tree


class ServiceType(enum.Enum):
    SIMPLE = "simple"
    EXEC = "exec"
    FORKING = "forking"
    ONESHOT = "oneshot"
    NOTIFY = "notify"
    IDLE = "idle"


class ExecFlag(enum.Enum):
    """Exec line prefixes we keep. '+' (full privileges, outside the unit's sandboxing) is kept as
    PRIVILEGED and means, in a sandbox: as its root with all of the sandbox's capabilities, inside it."""

    IGNORE_FAILURE = "-"
    NO_ENV_EXPAND = ":"
    NO_SETUID = "!"
    PRIVILEGED = "+"


class SELinuxMode(enum.Enum):
    AUTO = "auto"
    ENABLED = "enabled"
    DISABLED = "disabled"


def check_name(name: str) -> str:
    if not name:
        raise InvalidInput("sandbox name is empty", "use a short lowercase name such as 'web'")
    if len(name) > NAME_MAX:
        raise InvalidInput(
            f"sandbox name {name!r} is longer than {NAME_MAX} characters", "choose a shorter name"
        )
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid sandbox name {name!r}",
            "use lowercase letters, digits, '-' and '_', starting with a letter or digit",
        )
    return name


def check_text(what: str, value: str) -> str:
    """Reject what no unit-file line can carry: newlines and other control characters."""
    for ch in value:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise InvalidInput(
                f"{what} contains a control character ({ch!r}): {value!r}",
                "newlines and control characters cannot be expressed in a unit file",
            )
    return value


def check_abs_path(what: str, value: str) -> str:
    check_text(what, value)
    if not value.startswith("/"):
        raise InvalidInput(f"{what} must be an absolute path, got {value!r}")
    parts = value.split("/")
    if ".." in parts or "." in parts[1:]:
        raise InvalidInput(f"{what} must be a normalized path without '.' or '..': {value!r}")
    return value


def check_copy_path(what: str, value: str) -> str:
    """A host path that may be copied into a sandbox: below /etc, /var, /srv, /opt or /home, and never
    the host's secrets or the tool's own state."""
    check_abs_path(what, value)
    if not value.startswith(COPYABLE):
        raise InvalidInput(
            f"{what} {value} is outside what a sandbox gets private copies of",
            f"copy paths below {', '.join(p.rstrip('/') for p in COPYABLE)} (the host's /usr is shared)",
        )
    if never_copied(value):
        raise InvalidInput(
            f"{what} {value} is never copied into a sandbox: it holds the host's secrets or other sandboxes",
            "give the sandbox its own file instead, from the host: sandbox-service execute NAME -- ...",
        )
    return value


def never_copied(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in NEVER_COPIED)


def check_rel_dir(what: str, value: str) -> str:
    """StateDirectory= and friends: relative paths below /var/lib, /run, ..."""
    check_text(what, value)
    if not value or value.startswith("/") or ".." in value.split("/"):
        raise InvalidInput(f"{what} must be a relative path without '..': {value!r}")
    return value


def check_token(what: str, value: str) -> str:
    """Short unit-file values (signals, modes, durations): no spaces, no quotes, no specifiers."""
    if not _TOKEN_RE.fullmatch(value):
        raise InvalidInput(f"{what} has an unexpected value {value!r}")
    return value


@dataclass(frozen=True)
class ExecCommand:
    """One Exec*= line. ``argv[0]`` is what the program sees; ``path`` is what is executed.

    ``expand_env`` records where the words came from: a host unit's words keep systemd's ``$VAR`` syntax
    (systemd expands them when the command runs), while words typed by a user are literal, so a ``$`` in
    them is escaped as ``$$`` when rendered.
    """

    path: str
    argv: tuple[str, ...]
    flags: tuple[ExecFlag, ...] = ()
    expand_env: bool = False

    def __post_init__(self) -> None:
        check_abs_path("executable path", self.path)
        if not self.argv:
            raise InvalidInput(f"command {self.path!r} has no arguments (argv[0] is missing)")
        for word in self.argv:
            check_text("command argument", word)


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str

    def __post_init__(self) -> None:
        if not _ENV_NAME_RE.fullmatch(self.name):
            raise InvalidInput(f"invalid environment variable name {self.name!r}")
        check_text(f"value of environment variable {self.name}", self.value)


@dataclass(frozen=True)
class EnvFile:
    path: str
    optional: bool = False

    def __post_init__(self) -> None:
        check_abs_path("EnvironmentFile", self.path)


# Settings of a host unit carried into its sandbox's unit as they are (discover/carry.py writes them):
# only these keys, so a spec file cannot slip in a command, a root, a user or a namespace setting.
_LIMITS = (
    "AS", "CORE", "CPU", "DATA", "FSIZE", "LOCKS", "MEMLOCK", "MSGQUEUE", "NICE", "NOFILE", "NPROC", "RSS",
    "RTPRIO", "RTTIME", "SIGPENDING", "STACK",
)  # fmt: skip
CARRIABLE = frozenset(
    {
        "ExitType", "GuessMainPID", "NotifyAccess", "WatchdogSec", "WatchdogSignal", "FileDescriptorStoreMax",
        "FileDescriptorStorePreserve", "NonBlocking", "SameProcessGroup", "IgnoreSIGPIPE", "RestartSteps",
        "RestartMaxDelaySec", "RestartMode", "RestartPreventExitStatus", "RestartForceExitStatus",
        "SuccessExitStatus", "TimeoutAbortSec", "TimeoutCleanSec", "TimeoutStartFailureMode",
        "TimeoutStopFailureMode", "RuntimeMaxSec", "RuntimeRandomizedExtraSec", "OOMPolicy",
        "ReloadSignal", "RestartKillSignal", "FinalKillSignal", "SendSIGKILL", "SendSIGHUP",
        "SetLoginEnvironment", "PassEnvironment", "UnsetEnvironment", "Nice", "OOMScoreAdjust",
        "CoredumpFilter", "IOSchedulingClass",
        "IOSchedulingPriority", "CPUSchedulingPolicy", "CPUSchedulingPriority", "CPUSchedulingResetOnFork",
        "NUMAPolicy", "TimerSlackNSec", "Personality", "DebugInvocation", "SyslogIdentifier",
        "SyslogFacility", "SyslogLevel", "SyslogLevelPrefix", "LogLevelMax", "LogRateLimitIntervalSec",
        "LogRateLimitBurst",
        "TemporaryFileSystem", "ExecSearchPath", "SystemCallLog", "MemoryKSM", "DisableControllers",
        "CPUAccounting", "CPUWeight", "StartupCPUWeight", "CPUShares", "StartupCPUShares", "CPUQuota",
        "CPUQuotaPeriodSec", "MemoryAccounting", "MemoryMin", "MemoryLow", "MemoryHigh", "MemoryMax",
        "MemorySwapMax", "MemoryZSwapMax", "MemoryLimit", "DefaultMemoryLow", "DefaultMemoryMin",
        "DefaultStartupMemoryLow", "StartupMemoryLow", "StartupMemoryHigh", "StartupMemoryMax",
        "StartupMemorySwapMax", "StartupMemoryZSwapMax", "MemoryPressureWatch", "MemoryPressureThresholdSec",
        "TasksAccounting", "TasksMax", "IOAccounting", "IOWeight", "StartupIOWeight", "IODeviceWeight",
        "IOReadBandwidthMax", "IOWriteBandwidthMax", "IOReadIOPSMax", "IOWriteIOPSMax",
        "IODeviceLatencyTargetSec", "BlockIOAccounting", "BlockIOWeight", "StartupBlockIOWeight",
        "BlockIODeviceWeight", "BlockIOReadBandwidth", "BlockIOWriteBandwidth", "IPAccounting",
        "ManagedOOMSwap", "ManagedOOMMemoryPressure", "ManagedOOMMemoryPressureLimit",
        "ManagedOOMMemoryPressureDurationSec", "ManagedOOMPreference", "DefaultDependencies",
        "StopWhenUnneeded", "RefuseManualStart", "RefuseManualStop", "AllowIsolate", "IgnoreOnIsolate",
        "CollectMode", "JobTimeoutSec", "JobRunningTimeoutSec", "StartLimitIntervalSec", "StartLimitBurst",
        "OnFailureJobMode", "OnSuccessJobMode", *(f"Limit{name}" for name in _LIMITS),
    }
)  # fmt: skip


@dataclass(frozen=True)
class Setting:
    """One line of the host unit's, carried into the sandbox's unit as it is (see CARRIABLE)."""

    key: str
    value: str

    def __post_init__(self) -> None:
        if self.key not in CARRIABLE:
            raise InvalidInput(f"{self.key}= is not a setting the tool carries from a host unit")
        check_text(f"value of {self.key}", self.value)
        if self.value != self.value.strip() or self.value.endswith("\\"):
            raise InvalidInput(f"value of {self.key} cannot be written in a unit file: {self.value!r}")


class DirectoryKind(enum.Enum):
    RUNTIME = "runtime"
    STATE = "state"
    CACHE = "cache"
    LOGS = "logs"
    CONFIGURATION = "configuration"


@dataclass(frozen=True)
class DirectoryMode:
    """The mode of one kind of the service's directories (RuntimeDirectoryMode= and friends)."""

    kind: DirectoryKind
    mode: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"0[0-7]{3}", self.mode):
            raise InvalidInput(f"invalid directory mode {self.mode!r}")


@dataclass(frozen=True)
class ServiceDef:
    """The wrapped program: the host unit's [Service] settings that carry over into the sandbox."""

    type: ServiceType = ServiceType.EXEC
    exec_start: tuple[ExecCommand, ...] = ()
    exec_start_pre: tuple[ExecCommand, ...] = ()
    exec_start_post: tuple[ExecCommand, ...] = ()
    exec_reload: tuple[ExecCommand, ...] = ()
    exec_stop: tuple[ExecCommand, ...] = ()
    exec_stop_post: tuple[ExecCommand, ...] = ()
    pid_file: str | None = None  # as the service sees it, inside the sandbox
    user: str | None = None
    group: str | None = None
    supplementary_groups: tuple[str, ...] = ()
    environment: tuple[EnvVar, ...] = ()
    environment_files: tuple[EnvFile, ...] = ()
    working_directory: str | None = None
    umask: str | None = None
    kill_mode: str | None = None
    kill_signal: str | None = None
    timeout_start_sec: str | None = None
    timeout_stop_sec: str | None = None
    restart: str | None = None
    restart_sec: str | None = None
    remain_after_exit: bool = False
    state_directories: tuple[str, ...] = ()
    runtime_directories: tuple[str, ...] = ()
    logs_directories: tuple[str, ...] = ()
    cache_directories: tuple[str, ...] = ()
    configuration_directories: tuple[str, ...] = ()
    read_write_paths: tuple[str, ...] = ()
    capability_bounding_set: tuple[str, ...] | None = None  # None: the host unit does not restrict it
    ambient_capabilities: tuple[str, ...] = ()
    exec_condition: tuple[ExecCommand, ...] = ()
    directory_modes: tuple[DirectoryMode, ...] = ()  # only those the host unit sets (default 0755)
    carried: tuple[Setting, ...] = ()  # the host unit's settings carried as they are
    hardening: tuple[Directive, ...] = ()  # the host unit's own protections (merged with the profile's)
    after: tuple[str, ...] = ()  # targets of the host's the service is ordered after (and wants)

    def all_commands(self) -> tuple[ExecCommand, ...]:
        return (
            *self.exec_condition, *self.exec_start_pre, *self.exec_start, *self.exec_start_post,
            *self.exec_reload, *self.exec_stop, *self.exec_stop_post,
        )  # fmt: skip

    def __post_init__(self) -> None:
        for cap in (*(self.capability_bounding_set or ()), *self.ambient_capabilities):
            if not re.fullmatch(r"CAP_[A-Z_]+", cap):
                raise InvalidInput(f"invalid capability name {cap!r}")
        if not self.exec_start and self.type is not ServiceType.ONESHOT:
            raise InvalidInput("the service has no ExecStart= command")
        if self.pid_file is not None:
            check_abs_path("PIDFile", self.pid_file)
            if not self.pid_file.startswith("/run/"):
                raise InvalidInput(
                    f"PIDFile={self.pid_file} is outside /run",
                    "only PID files under /run can be made visible to the host's systemd",
                )
        for who in (self.user, self.group, *self.supplementary_groups):
            if who is not None and not _USER_RE.fullmatch(who):
                raise InvalidInput(f"invalid user or group name {who!r}")
        if self.working_directory is not None:
            wd = self.working_directory.removeprefix("-")
            if wd != "~":
                check_abs_path("WorkingDirectory", wd)
        if self.umask is not None and not re.fullmatch(r"[0-7]{3,4}", self.umask):
            raise InvalidInput(f"invalid UMask {self.umask!r}")
        for what, value in (
            ("KillMode", self.kill_mode),
            ("KillSignal", self.kill_signal),
            ("TimeoutStartSec", self.timeout_start_sec),
            ("TimeoutStopSec", self.timeout_stop_sec),
            ("Restart", self.restart),
            ("RestartSec", self.restart_sec),
        ):
            if value is not None:
                check_token(what, value)
        for d in (
            *self.state_directories,
            *self.runtime_directories,
            *self.logs_directories,
            *self.cache_directories,
            *self.configuration_directories,
        ):
            check_rel_dir("directory setting", d)
        for target in self.after:
            if not re.fullmatch(r"[A-Za-z0-9:_.@\\-]+\.target", target):
                raise InvalidInput(f"invalid target name {target!r}")
        for p in self.read_write_paths:
            check_abs_path("ReadWritePaths", p.removeprefix("-").removeprefix("+"))
            if directives.opens_shared(p):
                raise InvalidInput(f"ReadWritePaths={p} would open what the sandbox shares read-only")


@dataclass(frozen=True)
class Directive:
    """One hardening directive of the sandbox's [Service] section, from its security profile.

    Only the hardening directives directives.py knows, with values that harden (directives.check_value):
    a spec file cannot smuggle in Exec*=, RootDirectory=, PrivateNetwork=no or a switched-off protection.
    """

    key: str
    value: str

    def __post_init__(self) -> None:
        check_text(f"value of {self.key}", self.value)
        directives.check_value(self.key, self.value)


@dataclass(frozen=True)
class Security:
    """The profile and flags the admin chose, and the directives they resolved to for this service.

    ``user_namespace`` is the isolation model: True (the default of every shipped profile) runs the
    sandbox's root as the sandbox's own unprivileged host IDs, in a user namespace of its own; False runs
    it as the host's root, as the wrapped unit would (weaker, for services that need host privileges).

    ``private_ipc`` is the profile's ``PrivateIPC=`` (default yes): an IPC namespace of the sandbox's
    own.  A profile may give it up (``PrivateIPC=no``) for density: systemd keeps two descriptors per
    running sandbox for it, and its own descriptor limit bounds how many sandboxes can run.  Recorded as a
    flag, not a directive, since a spec's directives may only harden.
    """

    profile: str = "default"
    memory_deny_write_execute: bool | None = None  # None: as the profile says
    private_users: bool | None = None
    directives: tuple[Directive, ...] = ()
    user_namespace: bool = True
    private_ipc: bool = True

    def __post_init__(self) -> None:
        if not _PROFILE_RE.fullmatch(self.profile):
            raise InvalidInput(f"invalid profile name {self.profile!r}")


@dataclass(frozen=True)
class Limits:
    """Resource limits carried by sandbox-NAME.slice. None means: systemd's default."""

    memory_max: str | None = None
    cpu_quota: str | None = None
    cpu_weight: int | None = None
    io_weight: int | None = None
    tasks_max: int | None = None
    run_size: str | None = None  # the sandbox's /run (a tmpfs of its own); None: render.RUN_SIZE_DEFAULT

    def __post_init__(self) -> None:
        if self.run_size is not None and not re.fullmatch(r"[1-9][0-9]{0,5}[KMG]", self.run_size):
            raise InvalidInput(
                f"invalid size of /run {self.run_size!r}", "use a number with K, M or G, such as 16M"
            )
        if self.memory_max is not None:
            m = _SIZE_RE.fullmatch(self.memory_max)
            too_big = m is not None and m["number"] and int(m["number"]) * _SIZE_UNITS[m["unit"]] >= 2**63
            if m is None or too_big:
                raise InvalidInput(
                    f"invalid memory limit {self.memory_max!r}",
                    "use bytes (below 2^63) with K/M/G/T, a percentage, or 'infinity'",
                )
        if self.cpu_quota is not None and not _CPU_QUOTA_RE.fullmatch(self.cpu_quota):
            raise InvalidInput(
                f"invalid CPU quota {self.cpu_quota!r}", "use a percentage such as 50% or 200%"
            )
        for what, value, lo, hi in (
            ("CPU weight", self.cpu_weight, 1, 10000),
            ("IO weight", self.io_weight, 1, 10000),
            ("tasks limit", self.tasks_max, 1, 4194304),
        ):
            if value is not None and not lo <= value <= hi:
                raise InvalidInput(f"{what} {value} is out of range", f"use a number from {lo} to {hi}")


@dataclass(frozen=True)
class SandboxSpec:
    name: str
    kind: Kind
    service: ServiceDef
    description: str = ""
    source_unit: str | None = None  # the wrapped host unit, for Kind.UNIT
    source_package: str | None = None
    packages: tuple[str, ...] = ()  # packages whose /etc and /var files were copied
    copies: tuple[str, ...] = ()  # every host path copied into the private tree (recorded for upgrade)
    limits: Limits = field(default_factory=Limits)
    selinux: SELinuxMode = SELinuxMode.AUTO
    selinux_level: str | None = None
    chroot: str | None = None  # Kind.CHROOT: the tree used as root instead of the sandbox's own
    readonly_binds: tuple[str, ...] = ("/usr",)  # host directories shared read-only (not for CHROOT)
    enabled: bool = False  # started by sandbox.target at boot
    network: NetworkSpec = field(default_factory=NetworkSpec)
    security: Security = field(default_factory=Security)
    user: str | None = None  # --user/--group given at create: wins over the wrapped unit's User=/Group=
    group: str | None = None
    id_base: int | None = None  # first host ID of the sandbox's private range; None: no user namespace
    tmpfiles: tuple[str, ...] = ()  # tmpfiles.d names of its packages, applied inside at every start
    apply_group: str | None = None  # made or last changed by `apply` for this group (apply --prune)

    def __post_init__(self) -> None:
        check_name(self.name)
        check_text("description", self.description)
        for p in self.copies:
            check_copy_path("copied path", p)
        if self.chroot is not None:
            check_abs_path("chroot directory", self.chroot)
        for p in self.readonly_binds:
            if p not in SHAREABLE:
                raise InvalidInput(
                    f"read-only bind {p!r} is not one the tool shares",
                    f"a sandbox shares only the host's software: {', '.join(SHAREABLE)}",
                )
        if (self.kind is Kind.CHROOT) != (self.chroot is not None):
            raise InvalidInput("a chroot sandbox needs a chroot directory, and only it may have one")
        if self.selinux_level is not None and not re.fullmatch(r"s0(:c[0-9]+,c[0-9]+)?", self.selinux_level):
            raise InvalidInput(f"invalid SELinux level {self.selinux_level!r}")
        if self.id_base is not None:
            check_id_base(self.id_base)
        for name in self.tmpfiles:
            if not re.fullmatch(r"[A-Za-z0-9_.@+-]+\.conf", name) or name.startswith("."):
                raise InvalidInput(f"invalid tmpfiles.d name {name!r}")
        if self.apply_group is not None:
            check_group(self.apply_group)
        if self.id_base is not None and not self.security.user_namespace:
            raise InvalidInput("an ID range is given but the user namespace is turned off")


def check_group(value: str) -> str:
    """An apply group's name: what a sandbox name may be."""
    if len(value) > NAME_MAX or not _NAME_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid apply group {value!r}",
            f"use at most {NAME_MAX} lowercase letters, digits, '-' and '_', starting with a letter or digit",
        )
    return value


def check_id_base(value: int) -> int:
    if not ID_BASE_FIRST <= value < ID_BASE_END or value % ID_RANGE_SIZE:
        raise InvalidInput(
            f"invalid ID range start {value}",
            f"a sandbox's IDs start at a multiple of {ID_RANGE_SIZE} from {ID_BASE_FIRST} "
            f"up to {ID_BASE_END - ID_RANGE_SIZE}",
        )
    return value
