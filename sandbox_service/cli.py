"""Command-line interface. The only module that prints messages for errors and chooses exit codes."""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import typer
import typer.core

from . import __version__
from .errors import InvalidInput, SandboxError, undo_failures
from .paths import Layout

# Modules are imported by the commands that need them, not here: `--help`, `list` and `status` start in
# a fraction of the time `create` needs to load its discovery, rendering and copying (bench/README).

# Help is formatted by click, plain (rich_markup_mode=None below), with every typer.  Before 0.9 (Debian
# 12 has 0.7) typer used rich whenever it was installed, whatever the markup mode said; this is its switch.
if "rich" in vars(typer.core):
    vars(typer.core)["rich"] = None

app = typer.Typer(
    name="sandbox-service",
    # Help texts are plain text, one line per paragraph (paragraphs apart by a blank line): the help
    # formatter wraps them to the terminal, and a newline inside a paragraph would break a sentence.
    # No markup either, so "[/tcp]" or "[ADDR:]" are shown as written (tests/test_help.py checks).
    help=(
        "Turn host systemd services into application containers built from systemd's own parts.\n\n"
        "A sandbox is a unit sandbox-NAME.service running the wrapped program in its own root under "
        "/var/lib/sandbox-service/NAME/root (host /usr shared read-only, private /etc, /var, /tmp, network "
        "and IPC) inside sandbox-NAME.slice. Plain systemctl works on it too."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

SHOWN_SKIPPED = 20  # entries a clone left out that are named one by one; a sandbox can make millions


class _State:
    debug = False
    root = Path("/")


def _layout() -> Layout:
    return Layout(_State.root)


def _need_root() -> None:
    if os.geteuid() != 0:
        from .errors import PermissionDenied

        raise PermissionDenied("this command must be run as root", "run it with sudo")


SELINUX_MODES = ("auto", "enabled", "disabled")


def _selinux_mode(value: str) -> Any:
    from .spec import SELinuxMode

    if value not in SELINUX_MODES:
        raise InvalidInput(f"--selinux {value!r} is not one of {', '.join(SELINUX_MODES)}")
    return SELinuxMode(value)


def _lock(no_wait: bool) -> Any:
    """Waiting for another run is said on stderr, once; --no-wait makes it an error (errors.Busy)."""
    from .locks import LockPolicy

    return LockPolicy(wait=not no_wait, on_wait=lambda text: typer.echo(f"sandbox-service: {text}", err=True))


NO_WAIT_HELP = "Fail at once (exit status 16) if another sandbox-service is changing the sandbox."


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sandbox-service {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    root: Path = typer.Option(
        Path("/"),
        "--root",
        help="Work on the files of the system image in DIR (offline: nothing is started, no D-Bus).",
        metavar="DIR",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _State.debug = debug
    _State.root = root.resolve() if root != Path("/") else root


@app.command(
    "create",
    epilog=(
        "Examples:\n\n"
        "sandbox-service create web --unit nginx.service --now\n\n"
        "sandbox-service create httpd    # means --unit httpd.service\n\n"
        "sandbox-service create job --memory 256M -- /usr/bin/python3 -m http.server"
    ),
)
def create_cmd(
    name: str = typer.Argument(
        ..., help="Sandbox name: lowercase letters, digits, '-' and '_'.", metavar="NAME"
    ),
    command: Optional[list[str]] = typer.Argument(
        None, help="A command to run instead of a host unit (after --).", metavar="COMMAND"
    ),
    unit: Optional[str] = typer.Option(
        None,
        "--unit",
        "-u",
        help="Host unit to wrap (default when no command: NAME.service).",
        metavar="UNIT",
    ),
    package: Optional[list[str]] = typer.Option(
        None, "--package", "-P", help="Copy this package's /etc and /var files too.", metavar="PACKAGE"
    ),
    copy: Optional[list[str]] = typer.Option(
        None, "--copy", "-C", help="Copy this host path into the private tree too.", metavar="PATH"
    ),
    user: Optional[str] = typer.Option(None, "--user", help="Run the command as this user.", metavar="USER"),
    group: Optional[str] = typer.Option(
        None, "--group", help="Run the command with this group.", metavar="GROUP"
    ),
    memory: Optional[str] = typer.Option(
        None, "--memory", help="MemoryMax= of the sandbox's slice (e.g. 512M).", metavar="SIZE"
    ),
    cpu_quota: Optional[str] = typer.Option(
        None, "--cpu-quota", help="CPUQuota= (e.g. 50%).", metavar="PERCENT"
    ),
    cpu_weight: Optional[int] = typer.Option(
        None, "--cpu-weight", help="CPUWeight= (1-10000).", metavar="WEIGHT"
    ),
    io_weight: Optional[int] = typer.Option(
        None, "--io-weight", help="IOWeight= (1-10000).", metavar="WEIGHT"
    ),
    tasks_max: Optional[int] = typer.Option(
        None, "--tasks-max", help="TasksMax= (number of tasks).", metavar="N"
    ),
    run_size: Optional[str] = typer.Option(
        None, "--run-size", help="Size of the sandbox's own /run (default 32M).", metavar="SIZE"
    ),
    chroot: Optional[str] = typer.Option(
        None, "--chroot", help="Run in this tree instead of a private root sharing /usr.", metavar="DIR"
    ),
    selinux: str = typer.Option(
        "auto",
        "--selinux",
        help="SELinux labelling.",
        metavar="auto|enabled|disabled",
    ),
    network: Optional[str] = typer.Option(
        None,
        "--network",
        help="none (default: loopback only), host (no isolation), bridge=BR[,address=IP/N][,gateway=IP].",
        metavar="MODE",
    ),
    publish: Optional[list[str]] = typer.Option(
        None,
        "--publish",
        "-p",
        help="Reach the sandbox's PORT from the host's HOSTPORT (on ADDR only, if given; /udp for UDP).",
        metavar="[ADDR:]HOSTPORT:PORT",
    ),
    allow_ip: Optional[list[str]] = typer.Option(
        None, "--allow-ip", help="IPAddressAllow= CIDR (repeatable).", metavar="CIDR"
    ),
    deny_ip: Optional[list[str]] = typer.Option(
        None, "--deny-ip", help="IPAddressDeny= CIDR (repeatable).", metavar="CIDR"
    ),
    profile: str = typer.Option(
        "default",
        "--profile",
        help="Security profile: default, strict, trusted, nonetwork, or an admin's.",
        metavar="PROFILE",
    ),
    memory_deny_write_execute: Optional[bool] = typer.Option(
        None,
        "--memory-deny-write-execute/--allow-write-execute",
        help="Forbid writable+executable memory (breaks JIT compilers); default: as the profile says.",
    ),
    user_namespace: bool = typer.Option(
        True,
        "--user-namespace/--no-user-namespace",
        help="Run the sandbox's root as a private range of unprivileged host IDs, in a user namespace "
        "of its own (the default). --no-user-namespace runs it as the host's root: weaker, only for "
        "services that need privileges on the host.",
    ),
    private_users: Optional[bool] = typer.Option(
        None,
        "--private-users/--no-private-users",
        help="systemd's PrivateUsers= (only with --no-user-namespace, which it cannot replace); "
        "default: as the profile says.",
    ),
    max_exposure: Optional[float] = typer.Option(
        None,
        "--max-exposure",
        help="Fail (and roll back) if systemd-analyze security scores above N.",
        metavar="N",
    ),
    description: str = typer.Option("", "--description", help="Text for Description=.", metavar="TEXT"),
    enable: bool = typer.Option(False, "--enable", help="Start the sandbox at boot (sandbox.target)."),
    now: bool = typer.Option(False, "--now", help="Start the sandbox and wait until it runs."),
    exist_ok: bool = typer.Option(
        False,
        "--exist-ok",
        help="Succeed if the sandbox exists with these settings, finishing an interrupted create.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print every file create would write."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result."),
    no_wait: bool = typer.Option(False, "--no-wait", help=NO_WAIT_HELP),
) -> None:
    """Create a sandbox from a host unit (--unit) or from a command (after --)."""
    from .create import CreateRequest, create, plan
    from .network.model import parse as parse_network
    from .spec import Limits
    from .systemd import Systemd, systemd_running

    cmd = tuple(command or ())
    req = CreateRequest(
        name=name,
        unit=unit if (unit or cmd) else name,
        command=cmd,
        user=user,
        group=group,
        packages=tuple(package or ()),
        copies=tuple(copy or ()),
        limits=Limits(memory, cpu_quota, cpu_weight, io_weight, tasks_max, run_size),
        chroot=chroot,
        selinux=_selinux_mode(selinux),
        description=description,
        network=parse_network(network, publish or (), allow_ip or (), deny_ip or ()),
        profile=profile,
        memory_deny_write_execute=memory_deny_write_execute,
        private_users=private_users,
        user_namespace=user_namespace,
        max_exposure=max_exposure,
        enable=enable,
        now=now,
        exist_ok=exist_ok,
    )
    layout = _layout()
    if dry_run:
        online = layout.root == Path("/") and systemd_running()
        if online:
            with Systemd() as sd:
                p = plan(req, layout, sd)
        else:
            p = plan(req, layout, None)
        from . import specfile

        files = {str(k): v for k, v in p.files.items()}
        files[str(Path("/var/lib/sandbox-service") / name / "sandbox.yaml")] = specfile.dumps(p.spec)
        if as_json:
            _print_json({"files": files, "copies": list(p.copies), "notes": list(p.notes)})
            return
        for path, text in files.items():
            typer.echo(f"### {path}")
            typer.echo(text)
        typer.echo(f"### copied into {Path('/var/lib/sandbox-service') / name / 'root'}:")
        for c in p.copies:
            typer.echo(f"  {c}")
        for n in p.notes:
            typer.echo(f"  note: {n}")
        return
    _need_root()
    result = create(req, layout, _lock(no_wait))
    if as_json:
        _print_json(
            {
                "name": result.spec.name,
                "written": [str(p) for p in result.written],
                "copied_files": result.copied_files,
                "started": result.started,
                "online": result.online,
                "notes": list(result.notes),
            }
        )
        return
    typer.echo(f"Created sandbox {result.spec.name} ({result.copied_files} files copied).")
    for n in result.notes:
        typer.echo(f"  note: {n}")
    if result.started:
        typer.echo(f"Started sandbox-{result.spec.name}.service.")
    elif result.online:
        typer.echo(f"Start it with: systemctl start sandbox-{result.spec.name}.service")
    else:
        when = "at the next boot" if result.spec.enabled else "when started on the booted system"
        typer.echo(f"systemd is not running here: nothing was started; the sandbox runs {when}.")


@app.command("profiles")
def profiles_cmd(
    name: Optional[str] = typer.Argument(None, help="Show the directives of this profile.", metavar="NAME"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the security profiles, or show what one sets."""
    from . import security

    admin_dir = _layout().host(security.ADMIN_PROFILES)
    names = [name] if name else security.profile_names(admin_dir)
    loaded = [security.load_profile(n, admin_dir) for n in names]
    if as_json:
        _print_json(
            [
                {"name": p.name, "path": str(p.path), "directives": [asdict(d) for d in p.directives]}
                for p in loaded
            ]
        )
        return
    for p in loaded:
        if name:
            typer.echo(f"# {p.path}")
            for d in p.directives:
                typer.echo(f"{d.key}={d.value}")
        else:
            typer.echo(f"{p.name:<12} {len(p.directives):>2} directives  {p.path}")


@app.command("execute")
def execute_cmd(
    name: str = typer.Argument(..., help="A running sandbox.", metavar="NAME"),
    command: list[str] = typer.Argument(
        ..., help="The command and its arguments (after --).", metavar="COMMAND"
    ),
) -> None:
    """Run a command inside a running sandbox: same root, mounts, network, IPC, seccomp filter, \
capabilities, SELinux label and slice as its service. Prints its output, exits with its status."""
    _need_root()
    from . import control

    raise typer.Exit(control.execute(_layout(), name, tuple(command), interactive=False))


@app.command("connect")
def connect_cmd(
    name: str = typer.Argument(..., help="A running sandbox.", metavar="NAME"),
    shell: str = typer.Option("/bin/sh", "--shell", help="The shell to start inside.", metavar="PATH"),
) -> None:
    """Open an interactive shell inside a running sandbox (as execute does, on a terminal)."""
    _need_root()
    from . import control

    raise typer.Exit(control.execute(_layout(), name, (shell,), interactive=True))


@app.command("clone")
def clone_cmd(
    src: str = typer.Argument(..., help="The sandbox to copy.", metavar="SOURCE"),
    dest: str = typer.Argument(..., help="Name of the new sandbox.", metavar="DEST"),
    no_wait: bool = typer.Option(False, "--no-wait", help=NO_WAIT_HELP),
) -> None:
    """Make a new, stopped sandbox from an existing one (private data copied, units rendered anew)."""
    from .clone import clone

    _need_root()
    result = clone(_layout(), src, dest, _lock(no_wait))
    name = result.spec.name
    for skipped in result.skipped[:SHOWN_SKIPPED]:
        typer.echo(f"left out {skipped.path}: {skipped.reason}")
    if len(result.skipped) > SHOWN_SKIPPED:
        typer.echo(f"left out {len(result.skipped) - SHOWN_SKIPPED} more entries (sockets, FIFOs, devices)")
    typer.echo(f"Cloned sandbox {src} to {name}; start it with: sandbox-service start {name}")


@app.command("enable")
def enable_cmd(
    names: list[str] = typer.Argument(..., help="Sandboxes to start at boot.", metavar="NAME"),
    no_wait: bool = typer.Option(False, "--no-wait", help=NO_WAIT_HELP),
) -> None:
    """Start sandboxes at boot (wanted by sandbox.target). Works offline with --root."""
    _need_root()
    from . import control

    online = control.set_enabled(_layout(), names, True, lock=_lock(no_wait))
    if not online:
        typer.echo("systemd is not running here: the sandboxes will start at the next boot.")


@app.command("disable")
def disable_cmd(
    names: list[str] = typer.Argument(..., help="Sandboxes not to start at boot.", metavar="NAME"),
    no_wait: bool = typer.Option(False, "--no-wait", help=NO_WAIT_HELP),
) -> None:
    """Stop starting sandboxes at boot (a running one keeps running). Works offline with --root."""
    _need_root()
    from . import control

    control.set_enabled(_layout(), names, False, lock=_lock(no_wait))


@app.command("start")
def start_cmd(names: list[str] = typer.Argument(..., help="Sandboxes to start.", metavar="NAME")) -> None:
    """Start sandboxes and wait until they run (same as systemctl start sandbox-NAME)."""
    _need_root()
    from . import control

    control.start(_layout(), names)


@app.command("stop")
def stop_cmd(names: list[str] = typer.Argument(..., help="Sandboxes to stop.", metavar="NAME")) -> None:
    """Stop sandboxes and wait until they stopped."""
    _need_root()
    from . import control

    control.stop(_layout(), names)


@app.command("restart")
def restart_cmd(names: list[str] = typer.Argument(..., help="Sandboxes to restart.", metavar="NAME")) -> None:
    """Restart sandboxes."""
    _need_root()
    from . import control

    control.restart(_layout(), names)


@app.command("reload")
def reload_cmd(
    name: str = typer.Argument(..., help="Sandbox whose service reloads.", metavar="NAME"),
) -> None:
    """Reload the service inside a sandbox (its ExecReload=)."""
    _need_root()
    from . import control

    control.reload(_layout(), name)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n}{unit}"
        n //= 1024
    return f"{n}T"


@app.command("status")
def status_cmd(
    name: str = typer.Argument(..., help="Sandbox name.", metavar="NAME"),
    exposure: bool = typer.Option(
        False,
        "--exposure",
        help="Also score the unit with systemd-analyze security (takes about half a second).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """State, main PID, memory, tasks, slice, isolation and paths of a sandbox (--exposure: its score)."""
    from .views import status

    st = status(_layout(), name, with_exposure=exposure)
    if as_json:
        _print_json(asdict(st))
        return
    rows = [
        ("Sandbox", f"{st.name} ({st.kind}{', wraps ' + st.source_unit if st.source_unit else ''})"),
        ("Unit", f"{st.unit} ({st.unit_file_state or 'static'})"),
        ("State", f"{st.active_state} ({st.sub_state})" + (f", result {st.result}" if st.result else "")),
        ("Main PID", str(st.main_pid) if st.main_pid else "-"),
        ("Memory", _size(st.memory_bytes)),
        ("Tasks", str(st.tasks) if st.tasks is not None else "-"),
        ("Slice", st.slice),
        ("Network", st.network),
        ("IPC", "private" if st.private_ipc else "the host's (profile sets PrivateIPC=no)"),
        ("SELinux", st.selinux_context or "not labelled"),
        ("Profile", st.profile),
        ("Isolation", st.isolation_detail),
    ]
    if st.exposure is not None:
        rows.append(("Exposure", f"{st.exposure} (systemd-analyze security)"))
    rows += [
        ("Unit file", st.unit_file),
        ("Sandbox dir", st.sandbox_dir),
        ("Root", st.root_directory),
    ]
    if st.diagnosis is not None:
        rows += [("Failed", st.diagnosis.line), ("Hint", st.diagnosis.hint)]
    for k, v in rows:
        typer.echo(f"{k + ':':<12} {v}")


@app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """All sandboxes with their state (one D-Bus call)."""
    from .views import list_sandboxes

    entries = list_sandboxes(_layout())
    if as_json:
        _print_json([asdict(e) for e in entries])
        return
    lines = [f"{'NAME':<20} {'KIND':<8} {'STATE':<10} {'SUB':<10} SOURCE"]
    lines += [
        f"{e.name:<20} {e.kind:<8} {e.active_state:<10} {e.sub_state:<10} {e.source_unit or '-'}"
        for e in entries
    ]
    typer.echo("\n".join(lines))  # one write: thousands of sandboxes print at once


@app.command("limits")
def limits_cmd(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """How many more sandboxes this host can run, and which of its limits decides (PID 1's open \
files, mounts, namespaces). start, create --now and apply check the same before they start anything."""
    from . import hostlimits

    _need_root()  # PID 1's descriptors are visible to root only
    if _State.root != Path("/"):
        raise InvalidInput("limits are those of the running system", "drop --root")
    from .systemd import Systemd, systemd_running

    if systemd_running():
        with Systemd() as sd:
            version = sd.version()
    else:
        from .discover.host import systemd_version

        version = systemd_version(Path("/"))
    limits = hostlimits.host_limits(count_namespaces=True)
    kinds = {
        "default": hostlimits.cost(True, True, 0, version),
        "dense": hostlimits.cost(True, False, 0, version),
    }
    rooms = {k: hostlimits.room(limits, c) for k, c in kinds.items()}
    if as_json:
        _print_json(
            {
                "systemd_version": version,
                "limits": [
                    {**asdict(lim), "left": lim.left, "reserved": lim.limit - lim.in_use - lim.left}
                    for lim in limits
                ],
                "per_sandbox": {k: asdict(c) for k, c in kinds.items()},
                "room": {
                    k: {"sandboxes": n, "bound_by": b.key if b else None} for k, (n, b) in rooms.items()
                },
            }
        )
        return
    typer.echo(f"{'LIMIT':<52} {'VALUE':>10} {'IN USE':>8} {'LEFT':>10}")
    for lim in limits:
        typer.echo(f"{lim.what:<52} {lim.limit:>10} {lim.in_use:>8} {lim.left:>10}")
    typer.echo("")
    for k, (n, bound) in rooms.items():
        c = kinds[k]
        typer.echo(
            f"About {n} more sandboxes with the profile {k!r} can start "
            f"({c.descriptors} descriptors of PID 1 each, systemd {version})"
            + (f"; the limit: {bound.what}." if bound else ".")
        )
    typer.echo("Each published port takes one descriptor more; namespaces counted as seen from here.")


@app.command("logs")
def logs_cmd(
    name: str = typer.Argument(..., help="Sandbox name.", metavar="NAME"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new entries."),
    lines: Optional[int] = typer.Option(
        None, "--lines", "-n", help="Show only the last N entries.", metavar="N"
    ),
) -> None:
    """The journal of a sandbox's units."""
    from . import control
    from .journal import show

    control.load_spec(_layout(), name)
    raise typer.Exit(show(name, lines, follow))


@app.command(
    "copy",
    epilog=(
        "Examples:\n\n"
        "  sandbox-service copy web /etc/ssl/local.pem /srv/www\n\n"
        "  sandbox-service copy web /var/lib/myapp --dry-run"
    ),
)
def copy_cmd(
    name: str = typer.Argument(..., help="Sandbox name.", metavar="NAME"),
    paths: list[str] = typer.Argument(
        ..., help="Host paths below /etc, /var, /srv, /opt or /home.", metavar="PATH"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the paths, copy nothing."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    no_wait: bool = typer.Option(False, "--no-wait", help=NO_WAIT_HELP),
) -> None:
    """Copy host files or directories into an existing sandbox, as create would have: owners mapped \
into the sandbox, secrets left out. The paths are recorded in the sandbox's spec, so upgrade and clone \
keep them. A path the sandbox already has is refused, never overwritten. A running service sees the \
files at once."""
    from .copy_in import copy_into

    if not dry_run:
        _need_root()
    result = copy_into(_layout(), name, paths, dry_run=dry_run, lock=_lock(no_wait))
    if as_json:
        _print_json(asdict(result))
        return
    verb = "Would copy" if result.dry_run else f"Copied {result.files} files:"
    typer.echo(f"{verb} {' '.join(result.paths)} into sandbox {result.name}.")


@app.command("delete")
def delete_cmd(
    names: list[str] = typer.Argument(..., help="Sandboxes to delete.", metavar="NAME"),
    keep_data: bool = typer.Option(
        False, "--keep-data", help="Keep /var/lib/sandbox-service/NAME (spec and root)."
    ),
    no_wait: bool = typer.Option(False, "--no-wait", help=NO_WAIT_HELP),
) -> None:
    """Stop, disable and remove sandboxes (units, and their directory unless --keep-data). Also removes \
whatever an interrupted create, clone or delete left of a sandbox."""
    _need_root()
    from . import control

    for d in control.delete(_layout(), names, keep_data, lock=_lock(no_wait)):
        if d.complete:
            typer.echo(f"Deleted sandbox {d.name}.")
        else:
            typer.echo(f"Removed what interrupted runs had left of sandbox {d.name}:")
            for what in d.removed:
                typer.echo(f"  {what}")


SHOWN_PER_RESULT = 20  # sandboxes named one by one per kind of result; the rest are counted


class _ProgressBar:
    """A progress line on a terminal (stderr), redrawn at most ten times a second."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.last = 0.0
        self.phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and done < total and phase == self.phase):
            return
        self.last, self.phase = now, phase
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r{phase:<9} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


@app.command(
    "apply",
    epilog=(
        "Examples:\n\n"
        "sandbox-service apply sandboxes.yaml --dry-run    # the plan only\n\n"
        "sandbox-service apply /etc/sandbox-service/apply.d --prune"
    ),
)
def apply_cmd(
    path: Path = typer.Argument(
        ..., help="An apply document, or a directory of them (*.yaml, *.yml).", metavar="FILE|DIR"
    ),
    prune: bool = typer.Option(
        False,
        "--prune",
        help="Delete the sandboxes apply made for the documents' groups that they no longer list.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable summary."),
    no_wait: bool = typer.Option(
        False,
        "--no-wait",
        help="Fail at once (exit status 16) if another sandbox-service is changing sandboxes.",
    ),
) -> None:
    """Make the sandboxes what the documents list: create what is missing, update what changed (as \
upgrade does), leave what is equal alone, start what should run.

One daemon-reload for the whole run; start jobs are enqueued together and waited for together. A \
sandbox that fails does not stop the others; the summary says which failed and why. Documents use \
the keys of sandbox.yaml (see sandbox-service.yaml(5)), and started: true|false."""
    import contextlib
    import time

    from . import locks, recovery
    from .apply.document import load
    from .apply.perform import perform
    from .apply.plan import plan_apply
    from .errors import ApplyIncomplete
    from .systemd import Systemd, systemd_running

    if not dry_run:
        _need_root()
    layout = _layout()
    docs = load(path)
    online = layout.root == Path("/") and systemd_running()
    began = time.monotonic()
    # the lock of every sandbox (one lock, whatever the number of sandboxes); a dry run writes nothing
    held = contextlib.nullcontext() if dry_run else locks.every_sandbox(layout, _lock(no_wait))
    with held:
        sd = Systemd() if online else None
        try:
            if not dry_run:  # listed sandboxes whose last run was cut short are made anew
                for t in recovery.clear_unfinished(layout, [e.name for e in docs.entries], sd):
                    typer.echo(f"removed what an interrupted run had left of {t.name}", err=True)
            plan = plan_apply(layout, docs, sd, prune=prune)
            planned_in = time.monotonic() - began
            if dry_run:
                _print_plan(plan, as_json)
                return
            result = perform(layout, plan, sd, progress=None if as_json else _ProgressBar())
        finally:
            if sd is not None:
                sd.__exit__(None, None, None)
    result.seconds = {"plan": planned_in, **result.seconds}
    counts = {r: sum(1 for o in result.outcomes if o.result == r) for r in _RESULTS}
    if as_json:
        _print_json(
            {
                "online": result.online,
                "reloaded": result.reloaded,
                "counts": counts,
                "started": sum(o.started for o in result.outcomes),
                "restarted": sum(o.restarted for o in result.outcomes),
                "stopped": sum(o.stopped for o in result.outcomes),
                "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
                "sandboxes": [asdict(o) for o in result.outcomes],
            }
        )
    else:
        for r in ("created", "updated", "deleted"):
            done = [o for o in result.outcomes if o.result == r]
            for o in done[:SHOWN_PER_RESULT]:
                extra = f" ({', '.join(o.changes)})" if o.changes else ""
                typer.echo(f"{r} {o.name}{extra}")
            if len(done) > SHOWN_PER_RESULT:
                typer.echo(f"{r} {len(done) - SHOWN_PER_RESULT} more")
        for o in result.failed:
            kept = " (kept: what apply did to it stays)" if o.kept else ""
            typer.echo(f"failed {o.name}: {o.error}{kept}")
            if o.hint:
                typer.echo(f"  hint: {o.hint}")
            for line in o.journal:
                typer.echo(f"  {line}")
        summary = ", ".join(f"{n} {r}" for r, n in counts.items())
        runs = [
            f"{sum(getattr(o, k) for o in result.outcomes)} {k}" for k in ("started", "restarted", "stopped")
        ]
        reload_text = "1 daemon-reload" if result.reloaded else "no daemon-reload"
        typer.echo(f"{summary}; {', '.join(runs)}; {reload_text}.")
        if not result.online:
            typer.echo("systemd is not running here: files only; nothing was started or stopped.")
    if result.failed:
        raise ApplyIncomplete(
            f"{len(result.failed)} of {len(result.outcomes)} sandboxes failed",
            "see above for each; fix the document or the host and apply again",
        )


_RESULTS = ("created", "updated", "unchanged", "deleted", "failed")


def _print_plan(plan: Any, as_json: bool) -> None:
    from .apply.plan import Verb

    if as_json:
        _print_json(
            {
                "online": plan.online,
                "groups": list(plan.groups),
                "sandboxes": [
                    {
                        "name": a.name,
                        "action": a.verb.value,
                        "where": a.where,
                        "changes": list(a.changes),
                        "start": a.start,
                        "stop": a.stop,
                        "restart": a.restart,
                        "enable": a.enable,
                        "error": a.error.message if a.error else None,
                        "hint": a.error.hint if a.error else None,
                    }
                    for a in plan.actions
                ],
            }
        )
        return
    for a in plan.actions:
        if a.error is not None:
            typer.echo(f"error     {a.name}: {a.error.message}")
            if a.error.hint:
                typer.echo(f"          hint: {a.error.hint}")
            continue
        extra = []
        if a.changes:
            extra.append(", ".join(a.changes))
        for flag in ("start", "stop", "restart"):
            if getattr(a, flag):
                extra.append(flag)
        if a.enable is not None:
            extra.append("enable" if a.enable else "disable")
        typer.echo(f"{a.verb.value:<9} {a.name}" + (f" ({'; '.join(extra)})" if extra else ""))
    counts = ", ".join(
        f"{plan.count(v)} to {v.value}" if v is not Verb.KEEP else f"{plan.count(v)} unchanged" for v in Verb
    )
    errors = sum(1 for a in plan.actions if a.error)
    typer.echo(
        f"Plan: {counts}" + (f", {errors} with errors" if errors else "") + ". Dry run: nothing was changed."
    )


@app.command(
    "upgrade",
    epilog=(
        "Examples:\n\n"
        "apt upgrade && sandbox-service upgrade --all\n\n"
        "sandbox-service upgrade web --dry-run    # what would change; writes nothing"
    ),
)
def upgrade_cmd(
    names: Optional[list[str]] = typer.Argument(
        None, help="Sandboxes to upgrade (or --all).", metavar="NAME"
    ),
    all_sandboxes: bool = typer.Option(False, "--all", help="Upgrade every sandbox."),
    no_restart: bool = typer.Option(
        False, "--no-restart", help="Leave running sandboxes running on the old files and programs."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List what would change; write nothing, restart nothing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result."),
    no_wait: bool = typer.Option(False, "--no-wait", help=NO_WAIT_HELP),
) -> None:
    """Bring sandboxes up to date after the host's packages were updated.

    Merges the host's changed /etc files into each sandbox's private copy, three ways (against the \
copy taken at create): a file the sandbox did not change becomes the host's ('updated', 'added', \
'removed'); a file changed on both sides is kept, with the host's beside it as FILE.hostnew \
('conflict'). Then re-renders the units from the host unit, reloads systemd once and restarts running \
sandboxes."""
    from .upgrade import HOSTNEW_SUFFIX, Action, restart_running, upgrade

    _need_root()  # the merge base (NAME/base) is readable by root only, so --dry-run needs root too
    layout = _layout()
    result = upgrade(layout, names or [], all_sandboxes=all_sandboxes, dry_run=dry_run, lock=_lock(no_wait))
    if not as_json:
        for name in result.skipped:
            typer.echo(
                f"{name}: skipped: the run that made it was interrupted "
                f"(finish it with the same create command, or: sandbox-service delete {name})"
            )
    if not as_json and not result.sandboxes:
        typer.echo("No sandboxes.")
    elif not as_json:
        for s in result.sandboxes:
            verb = "would change" if result.dry_run else "changed"
            typer.echo(f"{s.name}: " + (f"{verb}:" if s.merge.entries or s.units else "up to date"))
            for path, action in s.merge.entries:
                extra = (
                    f" (sandbox's kept; host's in {path}{HOSTNEW_SUFFIX})"
                    if action is Action.CONFLICT
                    else ""
                )
                typer.echo(f"  {action.value:<9} {path}{extra}")
            for unit in s.units:
                typer.echo(f"  {'unit':<9} {unit}")
            if s.service_changes:
                typer.echo(f"  host unit changed: {', '.join(s.service_changes)}")
            for note in s.notes:
                typer.echo(f"  note: {note}")
            if any(action is Action.CONFLICT for _, action in s.merge.entries):
                root = layout.sandbox_root(s.name)
                typer.echo(
                    f"  to resolve: merge each FILE{HOSTNEW_SUFFIX} into FILE under {root}, "
                    f"delete the {HOSTNEW_SUFFIX} file, then: sandbox-service restart {s.name}"
                )
        if result.dry_run:
            typer.echo("Dry run: nothing was written.")
        elif not result.online:
            typer.echo("systemd is not running here: files and units written; nothing reloaded or restarted.")
    restarted: tuple[str, ...] = ()
    failure: SandboxError | None = None
    if not no_restart:
        try:
            restarted = restart_running(layout, result)
        except SandboxError as exc:
            failure = exc  # what was merged is shown all the same; the error follows
    if as_json:
        _print_json(
            {
                "online": result.online,
                "dry_run": result.dry_run,
                "reloaded": result.reloaded,
                "skipped": list(result.skipped),
                "sandboxes": [
                    {
                        "name": s.name,
                        "entries": [
                            {
                                "path": path,
                                "action": action.value,
                                "hostnew": path + HOSTNEW_SUFFIX if action is Action.CONFLICT else None,
                            }
                            for path, action in s.merge.entries
                        ],
                        "had_base": s.merge.had_base,
                        "service_changes": list(s.service_changes),
                        "units": list(s.units),
                        "running": s.running,
                        "restarted": s.name in restarted,
                        "notes": list(s.notes),
                    }
                    for s in result.sandboxes
                ],
            }
        )
    elif restarted:
        typer.echo("Restarted " + ", ".join(f"sandbox-{n}.service" for n in restarted) + ".")
    elif no_restart and result.online and not result.dry_run and any(s.running for s in result.sandboxes):
        typer.echo("Not restarted (--no-restart): running sandboxes use the new files once restarted.")
    if failure is not None:
        raise failure


def main() -> None:
    """Entry point: typer handles usage errors itself; our errors become one message, a hint, an exit code."""
    try:
        app(prog_name="sandbox-service")  # also when run as python -m sandbox_service
    except SandboxError as exc:
        if _State.debug:
            traceback.print_exc()
        print(f"sandbox-service: error: {exc.message}", file=sys.stderr)
        for problem in undo_failures(exc):
            print(f"could not undo: {problem}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        journal = getattr(exc, "journal", ())
        if journal:
            print("last journal lines:", file=sys.stderr)
            for line in journal:
                print(f"  {line}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: say so briefly; --debug shows where
        if _State.debug:
            traceback.print_exc()
        print(f"sandbox-service: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("hint: rerun with --debug for a traceback, and report it", file=sys.stderr)
        sys.exit(70)


if __name__ == "__main__":
    main()
