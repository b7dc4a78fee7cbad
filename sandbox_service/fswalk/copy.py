"""Copying a tree a sandbox can change while it is copied: by descriptor, iteratively, never following a
link, never reading outside it, never writing outside the destination.

How an entry is copied: it is listed (lstat under its directory's descriptor), then opened under that same
descriptor with O_NOFOLLOW, and fstat must show the very entry listed (kind, device and inode); an entry
replaced in between is listed again, a few times, then reported as changing and left out. A regular file's
bytes come from the descriptor opened (never from a path), holes kept (data.py). A link is copied as a link
(readlinkat on its directory's descriptor). Sockets, FIFOs and devices are reported and left out; so is a
directory on another device (something mounted inside the tree: the copy never crosses into it).

What is written: every entry is created anew (O_CREAT|O_EXCL, mkdirat, symlinkat) under the destination
directory's descriptor, after removing what was there, so an existing file of the destination (a hard
link to something elsewhere, say) is never written through. New directories are 0700 until they are
complete; then they get their owner, mode and times, as files and links do: owners through the OwnerMap,
mode and times as in the source. Extended attributes and ACLs are not copied (the copies never kept them;
SELinux labels are set afterwards, for the target sandbox). Files linked more than once in the source are
linked the same way in the copy (to the first copy, found again below the destination's top without
following links), so a gigabyte file with 60000 links costs a gigabyte, not 60 terabytes.

The walk keeps two descriptor chains (fds.DirChain), source and destination, in step: a tree of any depth
is copied with a bounded number of open descriptors.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..errors import NotFound, SandboxError
from .beneath import open_beneath
from .data import copy_data
from .fds import (
    CREATE_FLAGS,
    DIR_FLAGS,
    PATH_FLAGS,
    DirChain,
    TreeChanged,
    lstat_at,
    open_dir_at,
    open_file_at,
)
from .owners import OwnerMap, identity
from .remove import remove_at

_RETRIES = 5  # times an entry replaced between listing and opening is listed again
_T = TypeVar("_T")

# Called with (directory descriptor, name) between listing an entry and opening it. Only tests set it,
# to swap entries exactly there.
race_hook: Callable[[int, str], None] | None = None


@dataclass(frozen=True)
class Skipped:
    path: str  # relative to the directory the copied entry is in
    reason: str


@dataclass
class CopyReport:
    files: int = 0  # regular files
    links: int = 0
    dirs: int = 0
    bytes: int = 0  # data bytes copied (holes not counted)
    skipped: list[Skipped] = field(default_factory=list)

    def add(self, other: CopyReport) -> None:
        self.files += other.files
        self.links += other.links
        self.dirs += other.dirs
        self.bytes += other.bytes
        self.skipped += other.skipped


def copy_path(src: Path, dst: Path, *, owner: OwnerMap = identity) -> CopyReport:
    """Copy src (a tree, file or link) to dst. The parents of both are opened by path, so they must not be
    in trees a sandbox can change; src itself and everything below it is not trusted."""
    try:
        src_parent = os.open(src.parent, DIR_FLAGS & ~os.O_NOFOLLOW)
    except FileNotFoundError:
        raise NotFound(f"{src} does not exist") from None
    try:
        dst_parent = os.open(dst.parent, DIR_FLAGS & ~os.O_NOFOLLOW)
        try:
            return copy_at(src_parent, src.name, dst_parent, dst.name, owner=owner, shown=str(src))
        finally:
            os.close(dst_parent)
    finally:
        os.close(src_parent)


def copy_at(
    src_dir: int,
    src_name: str,
    dst_dir: int,
    dst_name: str,
    *,
    owner: OwnerMap = identity,
    shown: str | None = None,
    leave_out: Callable[[str], bool] | None = None,
) -> CopyReport:
    """Copy the entry src_name of the directory src_dir (and all below it) to dst_name in dst_dir.
    `leave_out` is asked for each entry below the top (its path relative to src_name, "a/b"): True leaves
    it out, silently (the host's secrets inside a tree that is otherwise copied)."""
    copier = _Copier(owner, leave_out)
    where = shown or src_name
    if lstat_at(src_dir, src_name) is None:
        raise NotFound(f"{where} does not exist")
    try:
        copier.run(src_dir, src_name, dst_dir, dst_name)
    except TreeChanged as exc:
        raise SandboxError(
            f"cannot copy {where}: a directory in it was moved while it was being copied",
            "copy it again (or stop the sandbox first)",
        ) from exc
    except OSError as exc:
        at = "/".join(copier.path[1:])  # [0] is src_name, which `where` ends with
        raise SandboxError(f"cannot copy {where}{'/' + at if at else ''}: {exc.strerror or exc}") from exc
    return copier.report


@dataclass
class _Level:
    st: os.stat_result  # the source directory's, as opened: what its copy gets at the end
    names: list[str]  # entries not copied yet, last first


class _Copier:
    def __init__(self, owner: OwnerMap, leave_out: Callable[[str], bool] | None = None) -> None:
        self.owner = owner
        self.leave_out = leave_out
        self.report = CopyReport()
        self.path: list[str] = []  # names from the copied entry down to the current directory
        self.dev: int | None = None
        self.dst_top: int | None = None  # the destination's top directory, while a tree is copied
        # files with more than one link: source (dev, ino) -> where the first copy went (path below
        # dst_top, its dev and ino), so the other links become links to it and not copies
        self.first_copies: dict[tuple[int, int], tuple[str, int, int]] = {}

    def run(self, src_dir: int, src_name: str, dst_dir: int, dst_name: str) -> None:
        opened = self._entry(src_dir, src_name, dst_dir, dst_name)
        if opened is None:
            return
        src_fd, dst_fd, st = opened
        self.dev = st.st_dev
        self.path.append(src_name)
        src = DirChain(src_fd, st)
        try:
            dst = DirChain(dst_fd, _fstat_or_close(dst_fd))
        except BaseException:
            src.close()
            raise
        self.dst_top = dst.top_fd
        try:
            self._walk(src, dst, st)
        finally:
            self.dst_top = None
            src.close()
            dst.close()

    def _walk(self, src: DirChain, dst: DirChain, top: os.stat_result) -> None:
        levels = [_Level(top, _names(src.fd))]
        while levels:
            level = levels[-1]
            if level.names:
                name = level.names.pop()
                if self.leave_out is not None and self.leave_out("/".join([*self.path[1:], name])):
                    continue
                opened = self._entry(src.fd, name, dst.fd, name)
                if opened is not None:
                    src_fd, dst_fd, st = opened
                    src.push(src_fd, st)
                    dst.push(dst_fd, _fstat_or_close(dst_fd))
                    self.path.append(name)
                    levels.append(_Level(st, _names(src_fd)))
                continue
            self._set_meta(dst.fd, None, level.st)
            self.report.dirs += 1
            levels.pop()
            self.path.pop()
            if levels:
                src.pop()
                dst.pop()

    def _entry(
        self, src_dir: int, name: str, dst_dir: int, dst_name: str
    ) -> tuple[int, int, os.stat_result] | None:
        """Copy a file or link; for a directory, make its copy and return both descriptors to walk."""
        for _ in range(_RETRIES):
            st = lstat_at(src_dir, name)
            if st is None:
                return None  # removed since it was listed: nothing to copy
            if race_hook is not None:
                race_hook(src_dir, name)
            mode = st.st_mode
            try:
                if stat.S_ISDIR(mode):
                    if self.dev is not None and st.st_dev != self.dev:
                        self._skip(name, "another file system is mounted there")
                        return None
                    src_fd, st = open_dir_at(src_dir, name, st)
                    try:
                        return src_fd, _make_dir(dst_dir, dst_name), st
                    except BaseException:
                        os.close(src_fd)
                        raise
                if stat.S_ISREG(mode):
                    self._file(src_dir, name, st, dst_dir, dst_name)
                elif stat.S_ISLNK(mode):
                    self._link(src_dir, name, st, dst_dir, dst_name)
                else:
                    self._skip(name, _kind(mode))
                return None
            except TreeChanged:
                continue
        self._skip(name, "it kept changing while it was copied")
        return None

    def _file(self, src_dir: int, name: str, st: os.stat_result, dst_dir: int, dst_name: str) -> None:
        in_fd, st = open_file_at(src_dir, name, st)
        try:
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and self._link_to_first_copy(key, dst_dir, dst_name):
                self.report.files += 1
                return
            new_file = functools.partial(os.open, dst_name, CREATE_FLAGS, 0o600, dir_fd=dst_dir)
            out_fd = _create(new_file, dst_dir, dst_name)
            try:
                self.report.bytes += copy_data(in_fd, out_fd, st)
                self._set_meta(out_fd, None, st)
                if st.st_nlink > 1 and self.dst_top is not None:
                    out = os.fstat(out_fd)
                    rel = "/".join([*self.path[1:], dst_name])
                    self.first_copies.setdefault(key, (rel, out.st_dev, out.st_ino))
            finally:
                os.close(out_fd)
        finally:
            os.close(in_fd)
        self.report.files += 1

    def _link_to_first_copy(self, key: tuple[int, int], dst_dir: int, dst_name: str) -> bool:
        """Make dst_name another link to the copy of the file `key` made before, if there is one (and it
        is still what was made: reached below the destination's top without a link, same inode).

        A file with thousands of links is then copied once, not thousands of times."""
        first = self.first_copies.get(key)
        if first is None or self.dst_top is None:
            return False
        rel, dev, ino = first
        try:
            fd = open_beneath(self.dst_top, rel, PATH_FLAGS)
        except OSError:
            return False  # moved or replaced meanwhile: a copy of its own then
        try:
            made = os.fstat(fd)
            if (made.st_dev, made.st_ino) != (dev, ino) or not stat.S_ISREG(made.st_mode):
                return False
            # linkat through the descriptor's /proc entry: the file itself, not a name looked up again
            link = functools.partial(
                os.link, f"/proc/self/fd/{fd}", dst_name, dst_dir_fd=dst_dir, follow_symlinks=True
            )
            _create(link, dst_dir, dst_name)
        except OSError as exc:
            if exc.errno == errno.EMLINK:  # as many links as the file system allows: a copy then
                return False
            raise
        finally:
            os.close(fd)
        return True

    def _link(self, src_dir: int, name: str, st: os.stat_result, dst_dir: int, dst_name: str) -> None:
        try:
            target = os.readlink(name, dir_fd=src_dir)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):  # EINVAL: no longer a link
                raise TreeChanged(name) from exc
            raise
        _create(lambda: os.symlink(target, dst_name, dir_fd=dst_dir), dst_dir, dst_name)
        self._set_meta(dst_dir, dst_name, st)
        self.report.links += 1

    def _set_meta(self, fd: int, name: str | None, st: os.stat_result) -> None:
        """Owner (mapped), mode and times of st onto fd itself, or onto the link `name` in directory fd."""
        uid, gid = self.owner(st.st_uid, st.st_gid)
        times = (st.st_atime_ns, st.st_mtime_ns)
        if name is None:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears set-id bits
            os.utime(fd, ns=times)
        else:
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
            os.utime(name, ns=times, dir_fd=fd, follow_symlinks=False)

    def _skip(self, name: str, reason: str) -> None:
        self.report.skipped.append(Skipped("/".join([*self.path, name]), reason))


def _fstat_or_close(fd: int) -> os.stat_result:
    try:
        return os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def _names(fd: int) -> list[str]:
    return sorted(os.listdir(fd), reverse=True)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "of an unknown kind"


def _create(make: Callable[[], _T], dir_fd: int, name: str) -> _T:
    """make() the new entry `name`; where something is in the way, remove it first (never write through
    it). Trying first saves a lookup per entry in the usual case, a destination that is empty."""
    for _ in range(_RETRIES):
        try:
            return make()
        except FileExistsError:
            _clear(dir_fd, name)
    return make()


def _clear(dir_fd: int, name: str) -> None:
    """Make room for a new entry: whatever is there is removed, never written through."""
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        remove_at(dir_fd, name)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)


def _make_dir(dir_fd: int, name: str) -> int:
    """A descriptor of the directory `name` in dir_fd: the one there, or a new one (mode 0700 until the
    copy sets its own) in place of whatever else was there."""
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        st = lstat_at(dir_fd, name)
        if st is not None and stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(TreeChanged):
                return open_dir_at(dir_fd, name, st)[0]
        _create(lambda: os.mkdir(name, 0o700, dir_fd=dir_fd), dir_fd, name)
    return open_dir_at(dir_fd, name)[0]
