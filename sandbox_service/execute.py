"""`execute` and `connect`: run a command inside a running sandbox, with the same view and limits.

The command runs as a transient unit (systemd-run) carrying the sandbox service's own sandboxing lines,
rendered from the same spec, and JoinsNamespaceOf= the service: it gets the same root and mounts, joins
the service's network and IPC namespaces and /tmp, and has the same seccomp filter, capability bounding
set, SELinux label and slice. Output and exit status come back to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import directives, isolation, render
from .errors import InvalidInput, NotRunning
from .paths import service_unit
from .spec import SandboxSpec
from .systemd import Systemd

# Lines of sandbox-NAME.service that make up "the sandbox" (the rest describes the service's program).
SANDBOX_KEYS = frozenset(
    {
        "RootDirectory", "MountAPIVFS", "BindReadOnlyPaths", "BindPaths", "TemporaryFileSystem",
        "ReadWritePaths", "PrivateTmp", "PrivateNetwork", "PrivateIPC", "ProtectHostname",
        "NetworkNamespacePath", "SELinuxContext", "Slice", *directives.MIN_VERSION,
    }
)  # fmt: skip
# With a user namespace the command starts as the sandbox's host account, like the service's own.
USERNS_KEYS = frozenset({"User", "Group", "AmbientCapabilities", "UnsetEnvironment"})
# Settings that once were booleans and later took words too: systemd-run passes a word only through the
# newer "...Ex" property (a unit file takes either under the plain name).
_EX_PROPERTIES = frozenset({"ProtectControlGroups", "PrivateUsers", "ProtectHostname", "PrivateTmp"})
_BOOLEAN_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "1", "0"})
# RuntimeDirectory= is left out on purpose: the transient unit would remove the service's /run on exit.
# PrivatePIDs= too: the command joins the main process's namespaces, and must be able to name it; what it
# then sees of processes is the main process's own /proc.
NEVER = frozenset({"RuntimeDirectory", "RuntimeDirectoryPreserve", "PrivatePIDs"})


def sandbox_properties(spec: SandboxSpec) -> list[str]:
    """KEY=VALUE lines (already in unit-file syntax) of the service's [Service] section that define its
    sandbox, in their rendered order."""
    keys = SANDBOX_KEYS | (USERNS_KEYS if isolation.uses_user_namespace(spec) else frozenset())
    props = []
    section = ""
    for line in render.render_service(spec).splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        if section == "Service" and sep and key in keys and key not in NEVER:
            if key in _EX_PROPERTIES and value not in _BOOLEAN_WORDS:
                line = f"{key}Ex={value}"
            props.append(line)
    return props


def systemd_run_argv(
    spec: SandboxSpec, command: Sequence[str], *, interactive: bool, main_pid: int = 0
) -> list[str]:
    """The systemd-run command line; with a user namespace the command goes through the launcher, which
    joins the user and mount namespaces of the service's main process `main_pid`."""
    if not command:
        raise InvalidInput("no command given", "put the command after --, e.g. execute web -- ls /")
    if isolation.uses_user_namespace(spec):
        if main_pid <= 0:
            raise NotRunning(f"sandbox {spec.name!r} has no main process to join")
        launcher = [isolation.PYTHON, "-I", "-S", "-B", isolation.LAUNCHER, "--as-root"]
        command = [*launcher, "--join", str(main_pid), "--", command[0], *command]
    service = service_unit(spec.name)
    argv = ["systemd-run", "--quiet", "--collect", "--wait", "--service-type=exec"]
    argv.append("--pty" if interactive else "--pipe")
    argv += ["--description", f"sandbox-service execute in {spec.name}", "-p", f"JoinsNamespaceOf={service}"]
    argv += ["-p", f"After={service}"]
    for prop in sandbox_properties(spec):
        argv += ["-p", prop]
    return [*argv, "--", *command]


def require_running(sd: Systemd, spec: SandboxSpec) -> int:
    """The main PID of the running sandbox; NotRunning when it does not run."""
    st = sd.service_status(service_unit(spec.name))
    if st.active_state not in ("active", "reloading"):
        raise NotRunning(
            f"sandbox {spec.name!r} is not running ({st.active_state})",
            f"start it first: sandbox-service start {spec.name}",
        )
    return st.main_pid
