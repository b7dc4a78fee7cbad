"""The isolation model in unit-file terms: what a sandbox with its own user namespace looks like.

A sandbox whose spec has an ID range (``id_base``) runs every command through the launcher
(launcher.py): systemd starts it as the sandbox's host account (``sb-NAME``, host ID BASE) with just the
capabilities needed to enter a user namespace of the sandbox's own, and the launcher then runs the
command as the sandbox's root, or its service user, inside that namespace.  What the wrapped unit or the
profile restricts moves with it: the capability bounding set the service may have is applied by the
launcher inside the namespace, and so is the ban on creating further namespaces.

Pure: spec in, values out (render.py puts them into the unit).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from . import security
from .identity import account_name
from .network.model import NetworkMode
from .spec import ID_RANGE_SIZE, Directive, ExecCommand, ExecFlag, Kind, SandboxSpec, ServiceType

PYTHON = "/usr/bin/python3"
LAUNCHER_DIR = "/.sandbox-service"  # inside the sandbox; owned by host root, the sandbox cannot write it
LAUNCHER = f"{LAUNCHER_DIR}/launch"
LAUNCH_SETTINGS = f"{LAUNCHER_DIR}/launch.json"
LAUNCH_SETTINGS_VERSION = 1

# Environment variables that make the dynamic loader or libc read files the caller names: glibc ignores
# them for setuid programs (its "unsecure" list).  The launcher starts as the sandbox's host account with
# capabilities on the host, and EnvironmentFile= files live in the sandbox's own /etc, so they are
# removed from every command's environment.
LOADER_VARIABLES = (
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LD_AUDIT", "LD_DEBUG", "LD_DEBUG_OUTPUT",
    "LD_DYNAMIC_WEAK", "LD_HWCAP_MASK", "LD_LIBRARY_PATH", "LD_ORIGIN_PATH", "LD_PRELOAD", "LD_PROFILE",
    "LD_SHOW_AUXV", "LD_USE_LOAD_BIAS", "LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE", "NIS_PATH", "NLSPATH",
    "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR",
)  # fmt: skip

# The loader's own files, which it reads before the launcher's first line runs: the host's cache bound
# read-only over the sandbox's copy, and no preload list.  Both are mount points in every process of the
# sandbox, so its root can neither replace nor rename them, and "/" itself belongs to the host.
LOADER_BINDS = (("/etc/ld.so.cache", "/etc/ld.so.cache"), ("/dev/null", "/etc/ld.so.preload"))

# Commands that run while the service's main process lives join its namespaces (same view as the
# daemon: `ps` shows its processes, a PID file names a process it can see).
_JOINING = frozenset({"ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost"})

_DIRECTORY_KINDS = (
    ("runtime", "/run"),
    ("state", "/var/lib"),
    ("cache", "/var/cache"),
    ("logs", "/var/log"),
    ("configuration", "/etc"),
)


def uses_user_namespace(spec: SandboxSpec) -> bool:
    return spec.id_base is not None and spec.kind is not Kind.CHROOT


class Model(enum.Enum):
    """What a sandbox's root is on the host."""

    USER_NAMESPACE = "user-namespace"  # an unprivileged ID of the sandbox's own range
    HOST_ROOT = "host-root"  # the host's root: --no-user-namespace, or a chroot sandbox
    BEFORE_RANGES = "host-root-before-ranges"  # made by a release without ID ranges; clone moves it


def model(spec: SandboxSpec) -> Model:
    """The spec's isolation model.  A spec that asks for a user namespace but has no ID range was
    written before ranges existed (create always gives one): it still runs as the host's root."""
    if uses_user_namespace(spec):
        return Model.USER_NAMESPACE
    if spec.security.user_namespace and spec.kind is not Kind.CHROOT:
        return Model.BEFORE_RANGES
    return Model.HOST_ROOT


def describe(spec: SandboxSpec) -> str:
    """One line for `status`."""
    kind = model(spec)
    if kind is Model.USER_NAMESPACE:
        assert spec.id_base is not None
        return f"own user namespace (host IDs {spec.id_base}-{spec.id_base + ID_RANGE_SIZE - 1})"
    if kind is Model.BEFORE_RANGES:
        return (
            "none: its root is the host's root (made before ID ranges; "
            f"`sandbox-service clone {spec.name} NEW` makes a copy with its own user namespace)"
        )
    why = "a chroot sandbox" if spec.kind is Kind.CHROOT else "--no-user-namespace"
    return f"none: its root is the host's root ({why})"


def private_network(spec: SandboxSpec) -> bool:
    return spec.network.mode in (NetworkMode.NONE, NetworkMode.BRIDGE)


def opens_low_ports(spec: SandboxSpec) -> bool:
    """Whether the launcher lets the sandbox's root bind ports below 1024: in a network namespace of the
    sandbox's own (never the host's), when its profile leaves it IP sockets."""
    return private_network(spec) and security.allows_ip(spec.security.directives)


def entry_capabilities(spec: SandboxSpec) -> tuple[str, ...]:
    """What the launcher needs on the host before it enters the namespace: CAP_SETUID/CAP_SETGID to have
    the ID map written, CAP_NET_ADMIN for the port setting of opens_low_ports()."""
    caps = ["CAP_SETGID", "CAP_SETUID"]
    if opens_low_ports(spec):
        caps.append("CAP_NET_ADMIN")
    return tuple(sorted(caps))


def wrap(key: str, cmd: ExecCommand) -> ExecCommand:
    """An Exec*= command as it runs through the launcher; its prefixes stay on the line."""
    options: list[str] = []
    if ExecFlag.PRIVILEGED in cmd.flags:
        options.append("--privileged")  # '+': as the sandbox's root, with all of its capabilities
    elif ExecFlag.NO_SETUID in cmd.flags:
        options.append("--as-root")  # '!': systemd would not have switched users for it
    if key in _JOINING:
        options.append("--join-main")
    flags = tuple(f for f in cmd.flags if f not in (ExecFlag.NO_SETUID, ExecFlag.PRIVILEGED))
    argv = (PYTHON, "-I", "-S", "-B", LAUNCHER, *options, "--", cmd.path, *cmd.argv)
    return ExecCommand(path=PYTHON, argv=argv, flags=flags, expand_env=cmd.expand_env)


def _restricts_namespaces(spec: SandboxSpec) -> bool:
    return any(
        d.key == "RestrictNamespaces" and d.value not in ("no", "false", "") for d in spec.security.directives
    )


def _bounding_set(spec: SandboxSpec) -> tuple[str, ...] | None:
    """The bounding set the profile resolved for the service (None: unrestricted)."""
    values = [d.value for d in spec.security.directives if d.key == "CapabilityBoundingSet"]
    if not values:
        return None
    return tuple(values[-1].split())


@dataclass(frozen=True)
class UnitPlan:
    """What the user-namespace model puts into sandbox-NAME.service instead of the plain lines."""

    identity: tuple[tuple[str, str], ...]  # User=, Group=, AmbientCapabilities= of the launcher
    directives: tuple[Directive, ...]  # the profile's directives, adapted
    readonly_binds: tuple[tuple[str, str], ...]
    unset_environment: tuple[str, ...]
    notes: tuple[str, ...]


def unit_plan(spec: SandboxSpec) -> UnitPlan:
    assert spec.id_base is not None
    account = account_name(spec.name)
    caps = " ".join(entry_capabilities(spec))
    notes = []
    directives: list[Directive] = []
    for d in spec.security.directives:
        if d.key == "CapabilityBoundingSet":
            continue  # applied inside by the launcher; the unit's own set is the launcher's
        if d.key == "PrivateUsers":
            notes.append("PrivateUsers= left to the sandbox's own user namespace, which maps a private range")
            continue
        if d.key == "ProtectKernelTunables" and opens_low_ports(spec):
            notes.append(
                "ProtectKernelTunables= off so the launcher can allow ports below 1024 in the sandbox's "
                "network namespace; kernel tunables stay read-only to the sandbox, whose IDs own none"
            )
            continue
        if d.key == "RestrictNamespaces" and d.value not in ("no", "false", ""):
            directives.append(Directive(d.key, "user mnt"))  # the launcher's; it forbids any after it
            continue
        directives.append(d)
    directives.append(Directive("CapabilityBoundingSet", caps))
    if _per_command_mounts(spec) is not None:
        # the launcher mounts the unit's protections, then forbids mounting with a filter of its own
        directives.append(Directive("SystemCallFilter", "@mount"))
    return UnitPlan(
        identity=(("User", account), ("Group", account), ("AmbientCapabilities", caps)),
        directives=tuple(directives),
        readonly_binds=LOADER_BINDS,
        unset_environment=LOADER_VARIABLES,
        notes=tuple(notes),
    )


def _directories(spec: SandboxSpec) -> list[dict[str, object]]:
    svc = spec.service
    by_kind = {
        "runtime": svc.runtime_directories,
        "state": svc.state_directories,
        "cache": svc.cache_directories,
        "logs": svc.logs_directories,
        "configuration": svc.configuration_directories,
    }
    modes = {m.kind.value: int(m.mode, 8) for m in svc.directory_modes}
    out: list[dict[str, object]] = []
    for kind, top in _DIRECTORY_KINDS:
        for rel in by_kind[kind]:
            out.append({"kind": kind, "path": f"{top}/{rel}", "mode": modes.get(kind, 0o755)})
    return out


def _control_capabilities(spec: SandboxSpec) -> tuple[str, ...]:
    """What the commands that act on the running service (reload, stop) keep beyond the service's own
    set, when the unit restricts none: an init script's stop finds its daemon by /proc/PID/exe, which for
    a daemon under another user takes CAP_SYS_PTRACE (within the sandbox's own user namespace only)."""
    if spec.service.capability_bounding_set is not None:
        return ()
    return ("CAP_KILL", "CAP_SYS_PTRACE")


_PROTECT_LEVELS = {"yes": "yes", "true": "yes", "full": "full", "strict": "strict"}


def _per_command_mounts(spec: SandboxSpec) -> dict[str, object] | None:
    """The unit's ProtectSystem= and ReadOnlyPaths= when the launcher applies them
    (security.mounts_per_command): with what stays writable, the unit's ReadWritePaths= and directories."""
    svc = spec.service
    if not security.mounts_per_command(svc, spec.tmpfiles, uses_user_namespace(spec)):
        return None
    level = next((d.value for d in svc.hardening if d.key == "ProtectSystem"), "no")
    return {
        "protect_system": _PROTECT_LEVELS.get(level),
        "read_only": [p for d in svc.hardening if d.key == "ReadOnlyPaths" for p in d.value.split()],
        "writable": [*svc.read_write_paths, *(f"-{d['path']}" for d in _directories(spec))],
    }


def launch_settings(spec: SandboxSpec) -> str:
    """The launcher's launch.json for this sandbox."""
    assert spec.id_base is not None
    svc = spec.service
    data = {
        "version": LAUNCH_SETTINGS_VERSION,
        "id_base": spec.id_base,
        "user": svc.user,
        "group": svc.group,
        "supplementary_groups": list(svc.supplementary_groups),
        "bounding": None if (caps := _bounding_set(spec)) is None else list(caps),
        "ambient": list(svc.ambient_capabilities),
        "control": list(_control_capabilities(spec)),
        "directories": _directories(spec),
        "unprivileged_ports": opens_low_ports(spec),
        "forbid_namespaces": _restricts_namespaces(spec),
        "unit_environment": sorted({var.name for var in svc.environment}),
        "working_directory": svc.working_directory,
        "mounts": _per_command_mounts(spec),
    }
    return json.dumps(data, indent=2) + "\n"


def needs_notify_socket(spec: SandboxSpec) -> bool:
    return spec.service.type is ServiceType.NOTIFY


def without_user_namespace(cmd: ExecCommand) -> ExecCommand:
    """A command of a sandbox without a user namespace: '+' would run it outside the sandbox, so it runs
    inside as root instead ('!': no switch to the unit's user)."""
    if ExecFlag.PRIVILEGED not in cmd.flags:
        return cmd
    flags = tuple(f for f in cmd.flags if f is not ExecFlag.PRIVILEGED)
    if ExecFlag.NO_SETUID not in flags:
        flags += (ExecFlag.NO_SETUID,)
    return ExecCommand(cmd.path, cmd.argv, flags, cmd.expand_env)
