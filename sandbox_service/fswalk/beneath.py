"""Opening one path inside a tree a sandbox controls, relative to a descriptor of the tree's root.

Two ways to treat the symlinks on the way (Resolve):

- NO_LINKS: any symlink in the path is an error (ELOOP), and so is "..". For touching the sandbox's own
  files from the host side (upgrade, copies into it): what is opened is the entry at exactly that path.
- IN_ROOT: symlinks are followed the way the sandbox itself sees them, with the root as "/": an absolute
  target starts again at the root, ".." stops at the root. Nothing outside the root is ever reached. For
  reading a file as the sandbox would.

The kernel does this in one call with openat2(2) (RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH, or RESOLVE_IN_ROOT;
RESOLVE_NO_MAGICLINKS either way), called through ctypes: Python has no binding for it. Where the kernel
lacks it, or a seccomp filter refuses it, the path is walked one component at a time with O_NOFOLLOW
opens on the previous component's descriptor, and links are resolved by hand against the root.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import functools
import os
import stat
from collections import deque
from typing import Any

from .fds import DIR_FLAGS, lstat_at

_SYS_OPENAT2 = 437  # the same number on every architecture that has the generic syscall table (5.6+)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE_IN_ROOT = 0x10
_MAX_LINKS = 40  # as the kernel: more links than this in one lookup is a loop
_EAGAIN_TRIES = 8  # openat2 says EAGAIN when a rename raced the lookup; after that many, walk by hand


class Resolve(enum.Enum):
    NO_LINKS = "no-links"
    IN_ROOT = "in-root"


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_openat2_usable: bool | None = None  # None: not tried yet; False: ENOSYS, the walk by hand from now on


def open_beneath(
    root_fd: int,
    path: str,
    flags: int = os.O_RDONLY,
    mode: int = 0o644,
    *,
    resolve: Resolve = Resolve.NO_LINKS,
) -> int:
    """Open `path` (taken as relative to root_fd, whether or not it starts with "/") with open(2) `flags`
    (and `mode`, when they create a file). Raises OSError as open(2) would: ELOOP for a link in the way of
    NO_LINKS, EXDEV for a ".." with NO_LINKS."""
    flags |= os.O_CLOEXEC
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if resolve is Resolve.NO_LINKS and ".." in parts:
        raise OSError(errno.EXDEV, "'..' is not allowed in this path", path)
    if not parts:
        return os.open(".", flags, mode, dir_fd=root_fd)
    fd = _openat2(root_fd, "/".join(parts), flags, mode, resolve)
    if fd is not None:
        return fd
    if resolve is Resolve.NO_LINKS:
        return _walk_no_links(root_fd, parts, flags, mode)
    return _walk_in_root(root_fd, parts, flags, mode)


def _openat2(root_fd: int, path: str, flags: int, mode: int, resolve: Resolve) -> int | None:
    """The descriptor, or None where openat2 cannot be used for this call (then the caller walks)."""
    global _openat2_usable
    if _openat2_usable is False:
        return None
    bits = _RESOLVE_NO_MAGICLINKS
    bits |= _RESOLVE_IN_ROOT if resolve is Resolve.IN_ROOT else _RESOLVE_NO_SYMLINKS | _RESOLVE_BENEATH
    creates = flags & os.O_CREAT or flags & os.O_TMPFILE == os.O_TMPFILE
    how = _OpenHow(flags, mode if creates else 0, bits)  # openat2 refuses a mode it would not use
    for _ in range(_EAGAIN_TRIES):
        fd = _libc().syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(root_fd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            _openat2_usable = True
            return int(fd)
        err = ctypes.get_errno()
        if err == errno.EAGAIN:
            continue
        if err == errno.ENOSYS:
            _openat2_usable = False
            return None
        if err in (errno.EPERM, errno.E2BIG) or (err == errno.EINVAL and _openat2_usable is None):
            return None  # a seccomp filter, or a kernel without these flags: the walk gives the answer
        raise OSError(err, os.strerror(err), path)
    return None


@functools.cache
def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _no_links_error(fd: int, name: str, exc: OSError, path: str) -> OSError:
    """O_NOFOLLOW|O_DIRECTORY reports a link as ENOTDIR; say ELOOP, as openat2 does."""
    if exc.errno == errno.ENOTDIR:
        st = lstat_at(fd, name)
        if st is not None and stat.S_ISLNK(st.st_mode):
            return OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
    return OSError(exc.errno, exc.strerror, path)


def _walk_no_links(root_fd: int, parts: list[str], flags: int, mode: int) -> int:
    path = "/".join(parts)
    fd = os.open(".", DIR_FLAGS, dir_fd=root_fd)
    try:
        for part in parts[:-1]:
            try:
                sub = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _no_links_error(fd, part, exc, path) from None
            os.close(fd)
            fd = sub
        last = parts[-1]
        try:
            return os.open(last, flags | os.O_NOFOLLOW, mode, dir_fd=fd)
        except OSError as exc:
            raise _no_links_error(fd, last, exc, path) from None
    finally:
        os.close(fd)


def _walk_in_root(root_fd: int, parts: list[str], flags: int, mode: int) -> int:
    path = "/".join(parts)
    follow_last = not flags & os.O_NOFOLLOW and not (flags & os.O_CREAT and flags & os.O_EXCL)
    todo = deque(parts)
    where: list[str] = []  # the directories resolved so far, from the root: real directories, no links
    links = 0
    fd = os.open(".", DIR_FLAGS, dir_fd=root_fd)
    try:
        while todo:
            part = todo.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if where:
                    where.pop()
                    os.close(fd)
                    fd = _reopen(root_fd, where, path)
                continue
            st = lstat_at(fd, part)
            is_link = st is not None and stat.S_ISLNK(st.st_mode)
            if is_link and (todo or follow_last):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(part, dir_fd=fd)
                todo.extendleft(reversed(target.split("/")))
                if target.startswith("/"):
                    where.clear()
                    os.close(fd)
                    fd = os.open(".", DIR_FLAGS, dir_fd=root_fd)
                continue
            if not todo:
                return os.open(part, flags | os.O_NOFOLLOW, mode, dir_fd=fd)
            try:
                sub = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP) and links < _MAX_LINKS:
                    links += 1
                    todo.appendleft(part)  # replaced by a link since the lstat: look again
                    continue
                raise OSError(exc.errno, exc.strerror, path) from None
            os.close(fd)
            fd = sub
            where.append(part)
        return os.open(".", flags, mode, dir_fd=fd)  # every part was "..", ".", or a link to a directory
    finally:
        os.close(fd)


def _reopen(root_fd: int, where: list[str], path: str) -> int:
    """The directory `where` names from the root, opened again without following anything."""
    fd = os.open(".", DIR_FLAGS, dir_fd=root_fd)
    for part in where:
        try:
            sub = os.open(part, DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            raise OSError(exc.errno, exc.strerror, path) from None
        os.close(fd)
        fd = sub
    return fd
