"""A throwaway systemd machine for integration tests.

``SystemdBox`` boots a systemd inside ``systemd-nspawn`` on a writable copy of
an operating system tree, so tests can install, start and break real units
without touching the host.  Two images (:data:`IMAGES`), named after the
systemd they boot:

- ``252``: the host's own root file system (Debian 12);
- ``257``: the Debian 13 tree that ``scripts/build-trixie.sh`` builds into
  ``.cache/trixie/root``.

The copy is an overlay: the image is the read-only lower layer and a tmpfs
holds the upper layer, so every write made inside the box (or through
:meth:`SystemdBox.write_file`) vanishes at teardown.  systemd must never be
booted in a bare namespace over the host file system: its boot-time tmpfiles
clean-up would, among other things, empty the host's ``/tmp``.

The checkout is visible inside at its own path, and :attr:`SystemdBox.tool_argv`
runs the tool from it (with the virtualenv's Python on the host image, with the
tree's ``/usr/bin/python3`` on the Debian 13 one).

Typical use::

    with SystemdBox(image="257") as box:
        box.run(["systemctl", "start", "nginx.service"])
        box.run([*box.tool_argv, "list"])

A command line front end lets shell scripts share the same recipe::

    python -m tests.box up STATE_DIR [--systemd 257]  # boot, print the leader PID, leave it running
                                                       # (--bind-ro DIR: DIR visible inside, read-only)
    python -m tests.box exec STATE_DIR -- CMD          # run CMD inside, exit with its status
    python -m tests.box down STATE_DIR                 # power off and clean up
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "DEFAULT_QUIET_UNITS",
    "IMAGES",
    "REPO",
    "BoxCommandError",
    "BoxError",
    "BoxImage",
    "SystemdBox",
    "cleanup_stale_boxes",
    "hidden_in_box",
]

#: The checkout; the box shows it at the same path, and the tool runs from it.
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BoxImage:
    """An operating system tree a box boots, and how the tool runs inside it."""

    #: The version of the systemd it boots; also its name (test ids, ``--systemd``).
    systemd: str
    description: str
    #: The overlay's lower layer.
    root: Path
    #: systemd-nspawn's cgroup layout: the unified hierarchy (cgroup v2 only), or the legacy one.
    unified_cgroups: bool
    #: The Python that runs the tool inside, and the PYTHONPATH it needs (None: it finds the tool itself).
    python: str
    pythonpath: str | None

    def missing(self) -> str | None:
        """Why this image cannot be booted here, or None."""
        if not (self.root / "usr/lib/systemd/systemd").exists():
            return f"{self.description} is not built: no systemd in {self.root} (run scripts/build-trixie.sh)"
        return None


IMAGES: Mapping[str, BoxImage] = {
    image.systemd: image
    for image in (
        # The host's cgroups are a hybrid hierarchy; for systemd 252 the legacy layout is what works here.
        # The virtualenv's Python runs the tool: it is on the host's root, and knows the checkout.
        BoxImage("252", "the host's root (Debian 12)", Path("/"), False, sys.executable, None),
        # The unified layout, as on a Debian 13 machine: systemd 257 still boots on the legacy one in a
        # container, but marks itself tainted ("cgroupsv1") and, outside containers, refuses it unless
        # forced.  No virtualenv there: Debian's Python and the Debian packages of the tool's
        # dependencies that the tree was built with.
        BoxImage(
            "257",
            "the Debian 13 tree",
            REPO / ".cache" / "trixie" / "root",
            True,
            "/usr/bin/python3",
            str(REPO),
        ),
    )
}
DEFAULT_IMAGE = "252"

#: Host services that the tests wrap; their ``*.wants/`` links are removed in the
#: box so they stay down until a test starts them (their unit files are kept).
DEFAULT_QUIET_UNITS: tuple[str, ...] = ("nginx.service", "apache2.service")

#: Where default state directories go.  Not ``/tmp``: the box mounts its own tmpfs
#: there, and a host path that vanishes inside the box only confuses.
STATE_PARENT = Path("/var/tmp")
STATE_PREFIX = "sandbox-service-box-"

BOOT_TIMEOUT = 90.0
SHUTDOWN_TIMEOUT = 30.0

#: Mount points that the booted box covers with file systems of its own; a file
#: written below them through the overlay would be invisible inside.
BOX_ONLY_MOUNTS = ("/tmp", "/run", "/dev", "/proc", "/sys")

BOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV: Mapping[str, str] = {
    "PATH": BOX_PATH,
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}

#: With ``upper_on_disk``: the sparse image of the writable layer's file system (in the state directory,
#: under its mount), its size and inodes (enough for thousands of sandboxes of 1500 files each).
LAYER_IMAGE = "layer.img"
LAYER_SIZE = 64 << 30
LAYER_INODES = 16_000_000

STATE_FILE = "box.json"
LEADER_FILE = "leader"
CONSOLE_LOG = "console.log"


class BoxError(RuntimeError):
    """The box could not be set up, booted or torn down."""


class BoxCommandError(AssertionError):
    """A command run inside the box failed; the message carries all its output."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"command failed in box with exit code {returncode}: {self.argv!r}\n"
            f"--- stdout ---\n{stdout.rstrip()}\n--- stderr ---\n{stderr.rstrip()}"
        )


@dataclass(frozen=True)
class _Proc:
    """A process identified by PID and start time, so a reused PID is not mistaken for it."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> _Proc:
        return cls(pid, _proc_stat(pid)[2])

    def alive(self) -> bool:
        try:
            state, _ppid, start = _proc_stat(self.pid)
        except OSError:
            return False
        return start == self.start and state not in ("Z", "X")


def hidden_in_box(path: str | os.PathLike[str]) -> bool:
    """Whether a host path is covered inside the box by a file system the box mounts itself.

    Such a path (e.g. a checkout under ``/tmp``) can only be seen in the box
    if passed in ``read_only_binds``.
    """
    text = str(Path(path).absolute())
    return any(text == mount or text.startswith(mount + "/") for mount in BOX_ONLY_MOUNTS)


def _proc_stat(pid: int) -> tuple[str, int, int]:
    """Return (state, parent PID, start time in clock ticks) from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses; the fields follow the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _mount_points() -> set[str]:
    points: set[str] = set()
    with open("/proc/self/mountinfo") as info:
        for line in info:
            target = line.split()[4]
            # mountinfo escapes space, tab, newline and backslash as octal.
            points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), target))
    return points


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"(no console log: {err})"
    return "\n".join(text.splitlines()[-lines:])


def _unmount(target: Path) -> None:
    if str(target) not in _mount_points():
        return
    done = subprocess.run(["umount", str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(target)], check=True, capture_output=True, text=True)


class SystemdBox:
    """A booted systemd container on a throwaway overlay of the host root file system.

    Construct, then :meth:`start` (or use it as a context manager, which does
    both and tears down at exit).  ``quiet_units`` adds unit names to
    :data:`DEFAULT_QUIET_UNITS`: units that must not start at boot.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        image: str | BoxImage = DEFAULT_IMAGE,
        quiet_units: Sequence[str] = (),
        read_only_binds: Sequence[str | os.PathLike[str]] = (),
        boot_timeout: float = BOOT_TIMEOUT,
        before_boot: Callable[[Path], None] | None = None,
        upper_on_disk: bool = False,
        nspawn_options: Sequence[str] = (),
    ) -> None:
        """``image`` is a key of :data:`IMAGES` (the systemd version) or an image.

        ``before_boot`` is called with the prepared root (the merged overlay) before systemd boots:
        a test can install things into the image offline and then see what the booted system does.

        ``upper_on_disk`` keeps the overlay's writable layer on disk (an ext4 image file) instead of
        a tmpfs (the benchmarks make thousands of sandboxes: more inodes than a tmpfs holds);
        ``nspawn_options`` are added to systemd-nspawn's command line (``--rlimit=...``)."""
        self.image = IMAGES[image] if isinstance(image, str) else image
        if state_dir is None:
            state_dir = STATE_PARENT / f"{STATE_PREFIX}{os.getpid()}-{self.image.systemd}"
        self.state_dir = Path(state_dir).absolute()
        self.quiet_units = tuple(dict.fromkeys((*DEFAULT_QUIET_UNITS, *quiet_units)))
        # The checkout at its own path: on another image it is not there at all, and on the host's root a
        # checkout under /tmp would be hidden by the box's own /tmp.
        binds = list(read_only_binds)
        if self.image.root != Path("/") or hidden_in_box(REPO):
            binds.append(REPO)
        self.read_only_binds = tuple(dict.fromkeys(str(Path(p).absolute()) for p in binds))
        self.boot_timeout = boot_timeout
        self.before_boot = before_boot
        self.upper_on_disk = upper_on_disk
        self.nspawn_options = tuple(nspawn_options)
        #: Seconds from starting systemd-nspawn to "running"/"degraded"; set by start().
        self.boot_seconds: float | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._nspawn: _Proc | None = None
        self._leader: _Proc | None = None

    # -- layout ---------------------------------------------------------------

    @property
    def merged(self) -> Path:
        """The box's root directory as seen from the host."""
        return self.state_dir / "merged"

    @property
    def python_argv(self) -> list[str]:
        """The command line that starts a Python inside the box which can import the tool's package."""
        if self.image.pythonpath is None:
            return [self.image.python]
        return ["/usr/bin/env", f"PYTHONPATH={self.image.pythonpath}", self.image.python]

    @property
    def tool_argv(self) -> list[str]:
        """The command line that runs sandbox-service (from the checkout) inside the box.

        Its first word is an absolute path to an executable, as the RPM macros' "is it installed" guard
        expects of ``%__sandbox_service``."""
        return [*self.python_argv, "-m", "sandbox_service"]

    @property
    def console_log(self) -> Path:
        """systemd-nspawn's output: the box's console."""
        return self.state_dir / CONSOLE_LOG

    @property
    def leader(self) -> int:
        """Host PID of the box's PID 1 (systemd)."""
        if self._leader is None:
            raise BoxError("box is not running")
        return self._leader.pid

    @property
    def running(self) -> bool:
        """Whether the box has booted and its systemd-nspawn and PID 1 are still there."""
        return self._leader is not None and self._leader.alive() and not self._nspawn_exited()

    @property
    def nspawn_pid(self) -> int:
        if self._nspawn is None:
            raise BoxError("box is not running")
        return self._nspawn.pid

    # -- life cycle -----------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Prepare the overlay, boot the box and wait until systemd reports it is up.

        On any failure everything done so far is undone before the error propagates.
        """
        if self._nspawn is not None:
            raise BoxError("box already started")
        try:
            self._prepare()
            if self.before_boot is not None:
                self.before_boot(self.merged)
            began = time.monotonic()
            self._spawn()
            self._wait_for_boot(began)
            self.boot_seconds = time.monotonic() - began
            self._save_state()
        except BaseException:
            self.close()
            raise

    def _prepare(self) -> None:
        why = self.image.missing()
        if why is not None:
            raise BoxError(why)
        if str(self.state_dir) in _mount_points():
            raise BoxError(f"{self.state_dir} is already a mount point; is another box using it?")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.upper_on_disk:
            self._mount_layer_image()
        else:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "mode=0700", "sandbox-service-box", str(self.state_dir)],
                check=True,
                capture_output=True,
                text=True,
            )
        upper, work = self.state_dir / "upper", self.state_dir / "work"
        for directory in (upper, work, self.merged):
            directory.mkdir()
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "-o",
                f"lowerdir={self.image.root},upperdir={upper},workdir={work}",
                "sandbox-service-box",
                str(self.merged),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        self._configure_root()

    def _mount_layer_image(self) -> None:
        """The state directory as an ext4 file system in a sparse image file it hides (disk, not memory;
        its own metadata is written back lazily, which the host's /var/tmp may not do); gone at close."""
        if any(self.state_dir.iterdir()):
            raise BoxError(f"{self.state_dir} is not empty; is another box using it?")
        image = self.state_dir / LAYER_IMAGE
        with open(image, "wb") as f:
            f.truncate(LAYER_SIZE)
        try:
            subprocess.run(
                ["mkfs.ext4", "-q", "-F", "-N", str(LAYER_INODES), "-E", "nodiscard", str(image)],
                check=True,
                capture_output=True,
                text=True,
            )
            subprocess.run(
                ["mount", "-o", "loop", str(image), str(self.state_dir)],
                check=True,
                capture_output=True,
                text=True,
            )
        except BaseException:
            image.unlink(missing_ok=True)
            raise
        self.state_dir.chmod(0o700)

    def _configure_root(self) -> None:
        etc = self.merged / "etc"
        # A fresh identity.  An absent machine-id would make systemd treat this as a
        # first boot and enable every installed unit through the presets.
        machine_id = subprocess.run(
            ["systemd-id128", "new"], check=True, capture_output=True, text=True
        ).stdout.strip()
        machine_id_file = etc / "machine-id"
        machine_id_file.unlink(missing_ok=True)
        machine_id_file.write_text(machine_id + "\n")

        system = etc / "systemd" / "system"
        system.mkdir(parents=True, exist_ok=True)
        # Nothing inside has a network to wait for; unmasked it holds the boot ~2 minutes.
        wait_online = system / "systemd-networkd-wait-online.service"
        if wait_online.is_symlink() or wait_online.exists():
            wait_online.unlink()
        wait_online.symlink_to("/dev/null")

        # Host services that tests wrap must not start on their own.
        for unit in self.quiet_units:
            for pattern in (f"*.wants/{unit}", f"*.requires/{unit}"):
                for link in system.glob(pattern):
                    if link.is_symlink():
                        link.unlink()

    def _spawn(self) -> None:
        argv = [
            "systemd-nspawn",
            "-D",
            str(self.merged),
            "--register=no",
            "--keep-unit",
            "--link-journal=no",
            "--private-network",
            "--capability=all",
            *self.nspawn_options,
            *(f"--bind-ro={path}" for path in self.read_only_binds),
            "-b",
        ]
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1" if self.image.unified_cgroups else "0"}
        with open(self.console_log, "wb") as console:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._nspawn = _Proc.of(self._popen.pid)

    def _find_leader(self, nspawn: _Proc) -> _Proc | None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                _state, ppid, _start = _proc_stat(pid)
                if ppid != nspawn.pid:
                    continue
                if (entry / "comm").read_text().strip() == "systemd":
                    return _Proc.of(pid)
            except (OSError, ValueError):
                continue
        return None

    def _boot_failure(self, why: str) -> BoxError:
        return BoxError(f"{why}\n--- tail of {self.console_log} ---\n{_tail(self.console_log)}")

    def _nspawn_exited(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is not None
        return self._nspawn is None or not self._nspawn.alive()

    def _wait_for_boot(self, began: float) -> None:
        assert self._nspawn is not None
        deadline = began + self.boot_timeout
        state = "(no answer yet)"
        while True:
            if self._nspawn_exited():
                raise self._boot_failure("systemd-nspawn exited during boot")
            if self._leader is None:
                self._leader = self._find_leader(self._nspawn)
            if self._leader is not None:
                done = subprocess.run(
                    ["nsenter", "-t", str(self._leader.pid), "-a", "systemctl", "is-system-running"],
                    capture_output=True,
                    text=True,
                    env=dict(BASE_ENV),
                    timeout=30,
                )
                state = done.stdout.strip() or done.stderr.strip() or state
                if state in ("running", "degraded"):
                    return
                if state in ("maintenance", "stopping", "offline"):
                    raise self._boot_failure(f"box boot failed: system state is {state!r}")
            if time.monotonic() > deadline:
                raise self._boot_failure(
                    f"box did not finish booting within {self.boot_timeout:g} s (last state: {state})"
                )
            time.sleep(0.2)

    def _save_state(self) -> None:
        assert self._nspawn is not None and self._leader is not None
        record = {
            "nspawn": [self._nspawn.pid, self._nspawn.start],
            "leader": [self._leader.pid, self._leader.start],
            "image": self.image.systemd,
            "quiet_units": list(self.quiet_units),
            "upper_on_disk": self.upper_on_disk,
        }
        (self.state_dir / STATE_FILE).write_text(json.dumps(record) + "\n")
        (self.state_dir / LEADER_FILE).write_text(f"{self._leader.pid}\n")

    @classmethod
    def attach(cls, state_dir: str | os.PathLike[str]) -> SystemdBox:
        """Take over a box that another process booted into ``state_dir``.

        If the box's processes are gone the returned object still knows the
        state directory, so :meth:`close` can clean up what is left.
        """
        try:
            record = json.loads((Path(state_dir).absolute() / STATE_FILE).read_text())
        except (OSError, ValueError):
            return cls(state_dir)
        box = cls(
            state_dir,
            image=record.get("image", DEFAULT_IMAGE),
            upper_on_disk=record.get("upper_on_disk", False),
        )
        box.quiet_units = tuple(record.get("quiet_units", box.quiet_units))
        nspawn, leader = _Proc(*record["nspawn"]), _Proc(*record["leader"])
        if nspawn.alive():
            box._nspawn = nspawn
            if leader.alive():
                box._leader = leader
        return box

    def close(self) -> None:
        """Power the box off and remove every trace of it; safe to call at any stage, and twice."""
        try:
            self._stop()
        finally:
            self._nspawn = None
            self._leader = None
            self._popen = None
            _unmount(self.merged)
            _unmount(self.state_dir)
            if str(self.state_dir) not in _mount_points():
                (self.state_dir / LAYER_IMAGE).unlink(missing_ok=True)
            with suppress(OSError):
                self.state_dir.rmdir()  # only if empty: never delete what we did not make

    def _stop(self) -> None:
        nspawn = self._nspawn
        if nspawn is None:
            return
        leader = self._leader
        if leader is None and not self._nspawn_exited():
            leader = self._find_leader(nspawn)  # boot may have failed before it was seen
        if leader is not None and self.running:
            with suppress(subprocess.SubprocessError, OSError):
                subprocess.run(
                    ["nsenter", "-t", str(leader.pid), "-a", "systemctl", "poweroff"],
                    capture_output=True,
                    env=dict(BASE_ENV),
                    timeout=15,
                )
        elif not self._nspawn_exited():
            # No systemd to talk to: nspawn turns SIGTERM into a shutdown request for
            # the box, or gives up itself.
            with suppress(OSError):
                os.kill(nspawn.pid, signal.SIGTERM)
        if self._wait_exit(leader, SHUTDOWN_TIMEOUT):
            return
        # Hard stop: the box's PID 1, which takes its PID namespace (every process in
        # the box) with it, then nspawn's whole session.
        if leader is not None:
            with suppress(OSError):
                if leader.alive():
                    os.kill(leader.pid, signal.SIGKILL)
        with suppress(OSError):
            os.killpg(nspawn.pid, signal.SIGKILL)
        if not self._wait_exit(leader, 10):
            raise BoxError(f"systemd-nspawn (PID {nspawn.pid}) or its PID 1 survived SIGKILL")

    def _wait_exit(self, leader: _Proc | None, timeout: float) -> bool:
        """Wait until nspawn and the box's PID 1 are both gone."""
        deadline = time.monotonic() + timeout
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        while not self._nspawn_exited() or (leader is not None and leader.alive()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # -- working inside -------------------------------------------------------

    def command(self, argv: Sequence[str], *, cwd: str | None = None) -> list[str]:
        """The host command line that runs ``argv`` inside the box, in ``cwd`` (default ``/``).

        ``nsenter -a`` starts in the cwd of the box's PID 1, which is ``/``.  Its
        ``--wd=DIR`` is no use for other directories: util-linux 2.38 opens DIR
        in the host's root before entering, leaving the command in a directory
        outside the box's root.  ``env --chdir`` changes directory inside instead.
        """
        chdir = [] if cwd in (None, "/") else ["env", f"--chdir={cwd}"]
        return ["nsenter", "-t", str(self.leader), "-a", *chdir, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the box (all of its namespaces, as root) and capture its output.

        The command gets a small clean environment (:data:`BASE_ENV`), updated
        with ``env``.  With ``check`` a non-zero exit raises :class:`BoxCommandError`.
        """
        return self._run(
            self.command(argv, cwd=cwd), argv, check=check, input=input, timeout=timeout, env=env
        )

    def run_in_netns_of(
        self,
        pid: int,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the box, inside the network namespace of box process ``pid``.

        ``pid`` is a PID as the box sees it, e.g. a sandboxed service's MainPID,
        so a test can reach a service on its private loopback.
        """
        inner = ["nsenter", "-t", str(pid), "-n", *argv]
        return self._run(self.command(inner), inner, check=check, input=input, timeout=timeout, env=env)

    def _run(
        self,
        full: list[str],
        shown: Sequence[str],
        *,
        check: bool,
        input: str | None,
        timeout: float,
        env: Mapping[str, str] | None,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            full,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**BASE_ENV, **(env or {})},
        )
        if check and done.returncode != 0:
            raise BoxCommandError(shown, done.returncode, done.stdout, done.stderr)
        return done

    def path(self, path_in_box: str) -> Path:
        """Host path of ``path_in_box`` on the box's root file system."""
        if not path_in_box.startswith("/"):
            raise ValueError(f"not an absolute path: {path_in_box!r}")
        parts = Path(path_in_box).parts[1:]
        if ".." in parts:
            raise ValueError(f"'..' is not allowed in box paths: {path_in_box!r}")
        return self.merged.joinpath(*parts)

    def _writable_path(self, path_in_box: str) -> Path:
        if hidden_in_box(path_in_box):
            raise ValueError(
                f"{path_in_box} is on a file system the box mounts itself, not on its root; "
                "use run(['tee', ...], input=...) or run(['cat', ...]) instead"
            )
        return self.path(path_in_box)

    def write_file(self, path_in_box: str, text: str, *, mode: int = 0o644) -> Path:
        """Write ``text`` to ``path_in_box`` (creating parent directories); returns the host path."""
        target = self._writable_path(path_in_box)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        return target

    def read_file(self, path_in_box: str) -> str:
        return self._writable_path(path_in_box).read_text()


def _state_dirs() -> Iterator[tuple[int, Path]]:
    """Default-located state directories, ``PREFIX<PID>`` or ``PREFIX<PID>-<what>``, with their PID."""
    for entry in STATE_PARENT.glob(f"{STATE_PREFIX}*"):
        pid = entry.name.removeprefix(STATE_PREFIX).split("-", 1)[0]
        if pid.isdigit():
            yield int(pid), entry


def cleanup_stale_boxes() -> list[Path]:
    """Tear down default-located boxes whose owning process is gone (e.g. a killed test run).

    Only ``/var/tmp/sandbox-service-box-<PID>[-...]`` directories whose PID no longer
    exists are touched.  Returns the directories cleaned.
    """
    cleaned = []
    for pid, state_dir in _state_dirs():
        if Path(f"/proc/{pid}").exists():
            continue
        SystemdBox.attach(state_dir).close()
        cleaned.append(state_dir)
    return cleaned


# -- command line --------------------------------------------------------------


def _cmd_up(args: argparse.Namespace) -> int:
    box = SystemdBox(args.state_dir, image=args.systemd, quiet_units=args.quiet, read_only_binds=args.bind_ro)
    box.start()
    print(box.leader)
    print(
        f"box ({box.image.description}, systemd {box.image.systemd}) up in {box.boot_seconds:.1f} s, "
        f"leader PID {box.leader}; the tool inside: {shlex.join(box.tool_argv)}",
        file=sys.stderr,
    )
    return 0


def _cmd_exec(args: argparse.Namespace) -> int:
    argv: list[str] = [*args.argv, *args.command]
    if not argv:
        print("exec: no command given", file=sys.stderr)
        return 2
    box = SystemdBox.attach(args.state_dir)
    if not box.running:
        print(f"no running box in {box.state_dir}", file=sys.stderr)
        return 1
    env = {**BASE_ENV, "TERM": os.environ.get("TERM", "dumb")}
    return subprocess.call(box.command(argv, cwd=args.cwd), env=env)


def _cmd_down(args: argparse.Namespace) -> int:
    SystemdBox.attach(args.state_dir).close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.box", description="Throwaway systemd box.")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="boot a box; print its leader PID and leave it running")
    up.add_argument("state_dir", type=Path)
    up.add_argument(
        "--systemd",
        choices=sorted(IMAGES),
        default=DEFAULT_IMAGE,
        help=f"the image, by the systemd it boots (default {DEFAULT_IMAGE}: the host's root)",
    )
    up.add_argument(
        "--quiet", action="append", default=[], metavar="UNIT", help="also keep UNIT from starting at boot"
    )
    up.add_argument(
        "--bind-ro",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="also make the host's DIR visible inside, read-only, at the same path",
    )
    up.set_defaults(func=_cmd_up)
    exe = sub.add_parser("exec", help="run a command inside a running box")
    exe.add_argument("state_dir", type=Path)
    exe.add_argument("--cwd", default=None, help="working directory inside the box (default /)")
    exe.add_argument("argv", nargs="*", metavar="CMD", help="put '--' before the command")
    exe.set_defaults(func=_cmd_exec)
    down = sub.add_parser("down", help="power a box off and clean up")
    down.add_argument("state_dir", type=Path)
    down.set_defaults(func=_cmd_down)
    # Everything after the first "--" is the command for "exec", never options for us.
    words = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in words:
        split = words.index("--")
        words, command = words[:split], words[split + 1 :]
    args = parser.parse_args(words)
    args.command = command
    try:
        result: int = args.func(args)
    except BoxError as err:
        print(f"box: {err}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
