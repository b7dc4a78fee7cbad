"""Locks that keep two runs of the tool from changing the same sandbox at the same time.

Every command that changes a sandbox (create, delete, upgrade, clone, copy, enable, disable) holds that
sandbox's lock from before it reads anything until it is done: an exclusive flock(2) on
``/var/lib/sandbox-service/.locks/sandbox-NAME.lock`` (under --root, in the image).  clone holds its
source's lock shared, so a source can be cloned twice at once but not changed meanwhile.  A second run
waits, saying once whom it waits for, or with ``--no-wait`` fails at once (errors.Busy).

The kernel drops a flock when its holder dies, also by SIGKILL, so a lock never outlives its run; what
the run left half done is for recovery.py to find, which is safe because the lock says nobody else is
working on that sandbox.  Lock files are removed when released, so none accumulate: a run that finds
its file replaced or gone after the wait (the holder removed it) opens the new one and waits again.

Every run that takes sandbox locks first takes ``.locks/all.lock`` shared; apply, which may change any
number of sandboxes, takes it exclusively instead (every_sandbox): one lock rather than thousands of
descriptors, and no per-sandbox command runs beside it.  The host lock (``.locks/host.lock``) is for
what sandboxes share beyond the registries, which lock themselves (registry.py): a new sandbox's check
that its published ports are free and its publication are one step under it, so two creates cannot
both take a port.  The order is always all, sandboxes, host.

Within one process the locks are re-entrant: a command run inside another that holds a lock already
(apply creating a sandbox, say) holds it once more instead of waiting for itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import Busy, NoSpace, PermissionDenied
from .paths import Layout
from .spec import check_name

LOCK_DIR_NAME = ".locks"
HOST_LOCK_NAME = "host.lock"
ALL_LOCK_NAME = "all.lock"


@dataclass(frozen=True)
class LockPolicy:
    """How a command meets a lock another run holds: wait (telling `on_wait` once, with a sentence for
    the user), or fail with errors.Busy at once."""

    wait: bool = True
    on_wait: Callable[[str], None] | None = None


def lock_dir(layout: Layout) -> Path:
    return layout.sandbox_base / LOCK_DIR_NAME


def sandbox_lock_path(layout: Layout, name: str) -> Path:
    return lock_dir(layout) / f"sandbox-{name}.lock"


def all_lock_path(layout: Layout) -> Path:
    return lock_dir(layout) / ALL_LOCK_NAME


def host_lock_path(layout: Layout) -> Path:
    return lock_dir(layout) / HOST_LOCK_NAME


@contextlib.contextmanager
def sandboxes(
    layout: Layout,
    names: Sequence[str],
    *,
    shared: Sequence[str] = (),
    policy: LockPolicy | None = None,
) -> Iterator[None]:
    """Hold the locks of `names` (exclusive) and of `shared` (shared, unless also in `names`).

    The lock of all sandboxes is taken first, shared (every_sandbox takes it exclusively); then the
    sandboxes' in name order, so two runs that want overlapping sets cannot deadlock."""
    policy = policy or LockPolicy()
    modes = {check_name(n): True for n in shared}
    modes.update({check_name(n): False for n in names})
    with contextlib.ExitStack() as stack:
        stack.enter_context(_holding(all_lock_path(layout), True, policy, "every sandbox"))
        for name in sorted(modes):
            stack.enter_context(
                _holding(sandbox_lock_path(layout, name), modes[name], policy, f"sandbox {name!r}")
            )
        yield


@contextlib.contextmanager
def every_sandbox(layout: Layout, policy: LockPolicy | None = None) -> Iterator[None]:
    """Hold the lock of all sandboxes exclusively (apply, which may change any number of them): one
    lock, not thousands, that no per-sandbox command gets past.  Commands run inside take their
    sandboxes' locks as usual (sandboxes())."""
    with _holding(all_lock_path(layout), False, policy or LockPolicy(), "every sandbox"):
        yield


@contextlib.contextmanager
def host(layout: Layout, policy: LockPolicy | None = None) -> Iterator[None]:
    """Hold the host lock: short steps that must not interleave with another sandbox's."""
    with _holding(host_lock_path(layout), False, policy or LockPolicy(), "the sandboxes' shared state"):
        yield


# The locks this process holds, by path: a command run inside another that holds the lock already (apply
# creating or upgrading a sandbox, say) holds it once more instead of waiting for itself.
_HELD: dict[Path, tuple[_Held, bool, int]] = {}


@contextlib.contextmanager
def _holding(path: Path, shared: bool, policy: LockPolicy, what: str) -> Iterator[None]:
    if path in _HELD:
        held, was_shared, count = _HELD[path]
        if was_shared and not shared:
            raise RuntimeError(f"{what}: its lock is held shared by this process, not exclusively")
        _HELD[path] = (held, was_shared, count + 1)
        try:
            yield
        finally:
            _HELD[path] = (held, was_shared, count)
        return
    held = _acquire(path, shared, policy, what)
    _HELD[path] = (held, shared, 1)
    try:
        yield
    finally:
        del _HELD[path]
        _release(held)


def _open(path: Path) -> tuple[int, bool]:
    """Open (creating) the lock file; also whether its run made the sandboxes' base directory."""
    base = path.parent.parent
    made_base = False
    while True:
        try:
            if not base.is_dir():
                base.mkdir(parents=True)
                os.chmod(base, 0o755)
                made_base = True
            path.parent.mkdir(mode=0o700, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600), made_base
        except FileNotFoundError:
            continue  # a run releasing its lock removed the empty lock directory just now
        except FileExistsError:
            continue  # another run made the base directory just now
        except PermissionError as e:
            raise PermissionDenied(f"cannot open the lock {path}: {e.strerror}", "run as root") from e
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):  # even an empty file needs a directory entry
                raise NoSpace(
                    f"cannot make the lock {path}: {e.strerror}", f"free space on the file system of {base}"
                ) from e
            raise


@dataclass
class _Held:
    fd: int
    path: Path
    made_base: bool


def _acquire(path: Path, shared: bool, policy: LockPolicy, what: str) -> _Held:
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    told = False
    made_base = False
    while True:
        fd, made = _open(path)
        made_base = made_base or made
        try:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = holder_of(fd)
                if not policy.wait:
                    raise Busy(
                        f"{what} is being changed by another sandbox-service{holder}",
                        "wait for it to finish, or run the command without --no-wait, which waits",
                    ) from None
                if policy.on_wait is not None and not told:
                    policy.on_wait(f"waiting: {what} is being changed by another sandbox-service{holder}")
                    told = True
                fcntl.flock(fd, mode)
            if _still_linked(fd, path):
                return _Held(fd, path, made_base)
        except BaseException:
            os.close(fd)
            _tidy(path, made_base)
            raise
        os.close(fd)  # the holder removed the file while we waited: lock the one that is there now


def _still_linked(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def _release(held: _Held) -> None:
    """Remove the lock file if nobody else holds it, then unlock; the lock directory goes when empty,
    and the sandboxes' base directory too if this run made it, so a lock leaves nothing behind."""
    try:
        # a shared holder may not be alone: only the one that can make it exclusive removes the file
        fcntl.flock(held.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _still_linked(held.fd, held.path):
            held.path.unlink()
    except OSError:
        pass  # another holder, or the file is gone already: it is theirs to remove
    finally:
        os.close(held.fd)
    _tidy(held.path, held.made_base)


def _tidy(path: Path, made_base: bool) -> None:
    """Remove lock files nobody holds (a run killed while holding a lock leaves its file), then the lock
    directory if empty, and the sandboxes' base directory if this run made it and it is empty."""
    with contextlib.suppress(OSError):
        for stale in os.scandir(path.parent):
            _remove_if_free(Path(stale.path))
    with contextlib.suppress(OSError):  # not empty: other runs' locks, or sandboxes
        path.parent.rmdir()
        if made_base:
            path.parent.parent.rmdir()


def _remove_if_free(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by another run: it is theirs
        if _still_linked(fd, path):
            path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)


def holder_of(fd: int) -> str:
    """' (PID n: its command line)' for the process that holds the lock on fd's file, or '' when
    /proc/locks does not say (another PID namespace, or it was released meanwhile)."""
    st = os.fstat(fd)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    found: list[tuple[bool, str]] = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; a waiter's line has "->" after the number
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK" or not fields[4].isdigit():
            continue
        dev, _, ino = fields[5].rpartition(":")
        if ino == str(st.st_ino):
            # on overlayfs the lock is on the file below, whose device differs from what fstat says
            found.append((dev != device, fields[4]))
    if not found:
        return ""
    pid = min(found)[1]
    return f" (PID {pid}: {_command_of(pid)})"


def _command_of(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if "sandbox_service" in argv:  # python -m sandbox_service ...: show it as the command is known
        argv = ["sandbox-service", *argv[argv.index("sandbox_service") + 1 :]]
    elif argv:
        argv[0] = os.path.basename(argv[0])
    text = " ".join(argv)
    return text if len(text) <= 80 else text[:77] + "..."
