"""Descriptor primitives of the tree walks: no-follow opens checked against what was listed, and the chain
of directory descriptors from a walk's top down to where it is, with a bounded number of them open."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a listed file cannot block the open; O_NOCTTY: nor a tty take us over
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
# what an open of a listed name meets when the entry was removed or replaced by a link meanwhile
GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)

# Descriptors a chain keeps open at most: the top's and the deepest ones. A deeper walk closes the
# descriptors above its window and reopens them through ".." on the way back up.
MAX_OPEN = 16


class TreeChanged(Exception):
    """What was opened is not what was listed: the entry was replaced meanwhile. Callers list it again."""


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_dev == b.st_dev and a.st_ino == b.st_ino


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """The entry itself (a link is not followed); None when it is not there (any more)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_dir_at(dir_fd: int, name: str, listed: os.stat_result | None = None) -> tuple[int, os.stat_result]:
    """Open the directory `name` under dir_fd without following a link; with `listed`, it must be the
    very directory listed (TreeChanged otherwise)."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if listed is not None and exc.errno in GONE:
            raise TreeChanged(name) from exc
        raise
    return fd, _check(fd, listed, stat.S_ISDIR)


def open_file_at(dir_fd: int, name: str, listed: os.stat_result) -> tuple[int, os.stat_result]:
    """Open the regular file `name` for reading; it must be the very file listed (TreeChanged otherwise)."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (*GONE, errno.ENXIO):  # ENXIO: a socket, or a FIFO with no writer, swapped in
            raise TreeChanged(name) from exc
        raise
    return fd, _check(fd, listed, stat.S_ISREG)


def open_dir_chmod(dir_fd: int, name: str, listed: os.stat_result) -> tuple[int, os.stat_result]:
    """open_dir_at for a directory we may lack the permission to read: without CAP_DAC_OVERRIDE, a mode
    such as 000 that its owner set is first made 0700 through an O_PATH descriptor of that very directory
    (chmod of its /proc/self/fd entry acts on the open inode; no name in the tree is looked up again)."""
    try:
        return open_dir_at(dir_fd, name, listed)
    except PermissionError:
        pass
    try:
        pfd = os.open(name, PATH_FLAGS | os.O_DIRECTORY, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in GONE:
            raise TreeChanged(name) from exc
        raise
    try:
        _check(pfd, listed, stat.S_ISDIR)
        os.chmod(f"/proc/self/fd/{pfd}", 0o700)
        fd = os.open(".", DIR_FLAGS, dir_fd=pfd)
    finally:
        os.close(pfd)
    return fd, _check(fd, listed, stat.S_ISDIR)


def _check(fd: int, listed: os.stat_result | None, is_kind: Callable[[int], bool]) -> os.stat_result:
    st = os.fstat(fd)
    if not is_kind(st.st_mode) or (listed is not None and not same_file(st, listed)):
        os.close(fd)
        raise TreeChanged("")
    return st


class DirChain:
    """The directories from a walk's top (index 0) to its current directory, by descriptor.

    At most `max_open` descriptors are open: the top's, and a window of the deepest levels. Going down
    past the window closes the descriptor at its upper end; going back up to a level whose descriptor was
    closed reopens it as ".." of the level below, and checks it is the directory recorded there (device
    and inode): a directory moved meanwhile stops the walk with TreeChanged instead of going on somewhere
    else. So a tree of any depth is walked with a fixed number of descriptors, each level reopened at
    most once per visit.
    """

    def __init__(self, fd: int, st: os.stat_result, max_open: int = MAX_OPEN) -> None:
        if max_open < 2:
            raise ValueError("a chain needs at least two descriptors")
        self._fds: list[int | None] = [fd]
        self._ids: list[tuple[int, int]] = [(st.st_dev, st.st_ino)]
        self._low = 1  # the lowest index > 0 whose descriptor is open (the window's upper end)
        self._max = max_open

    @property
    def fd(self) -> int:
        """The current directory's descriptor (always open)."""
        fd = self._fds[-1]
        assert fd is not None
        return fd

    @property
    def top_fd(self) -> int:
        """The top directory's descriptor (always open)."""
        fd = self._fds[0]
        assert fd is not None
        return fd

    @property
    def depth(self) -> int:
        return len(self._fds) - 1

    def open_count(self) -> int:
        return sum(1 for fd in self._fds if fd is not None)

    def push(self, fd: int, st: os.stat_result) -> None:
        """Make fd (a subdirectory of the current one, owned by the chain from now on) the current."""
        self._fds.append(fd)
        self._ids.append((st.st_dev, st.st_ino))
        if len(self._fds) - self._low + 1 > self._max:
            closing = self._fds[self._low]
            assert closing is not None
            os.close(closing)
            self._fds[self._low] = None
            self._low += 1

    def pop(self) -> None:
        """Back up to the parent of the current directory."""
        if len(self._fds) < 2:
            raise ValueError("the top of a chain has no parent in it")
        child = self._fds.pop()
        self._ids.pop()
        assert child is not None
        try:
            if self._fds[-1] is None:
                parent = os.open("..", DIR_FLAGS, dir_fd=child)
                st = os.fstat(parent)
                if (st.st_dev, st.st_ino) != self._ids[-1]:
                    os.close(parent)
                    raise TreeChanged("..")
                self._fds[-1] = parent
                self._low = len(self._fds) - 1
        finally:
            os.close(child)
        self._low = min(self._low, max(len(self._fds) - 1, 1))

    def close(self) -> None:
        for fd in self._fds:
            if fd is not None:
                os.close(fd)
        self._fds = []
        self._ids = []
