"""Undoing a merge that failed halfway: every change the merge makes to a sandbox's /etc or to its base
copy is recorded with what it replaced, so a failure (a full disk, an unreadable host file) puts back
what was there before.

Nothing is copied to make this possible: the work directory (``NAME/.upgrade-PID``, on the same file
system as the trees, readable by root only) receives new files before they are renamed into place, and
the entries they replace, by hard link or rename, so the old versions cost no space.  ``commit`` drops
the work directory; ``rollback`` moves the old versions back, newest change first.  A run killed with
the work directory in place leaves the trees consistent entry by entry (each change is one rename); the
next upgrade drops the directory (recovery.discard_upgrade_work) and finishes the merge.
"""

from __future__ import annotations

import contextlib
import enum
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import fswalk, selinux
from ..fswalk.fds import DIR_FLAGS

WORK_PREFIX = ".upgrade-"  # recovery.UPGRADE_WORK: the same name, which recovery looks for


class _Undo(enum.Enum):
    PUT_BACK = "put back"  # the old entry is in the work directory: rename it back into place
    REMOVE = "remove"  # a new entry where there was none: remove it (a directory only when empty)
    META = "meta"  # a directory's owner, mode and times changed: set them back
    MKDIR = "mkdir"  # an empty directory was removed: make it again as it was


@dataclass(frozen=True)
class _Record:
    undo: _Undo
    root: Path
    rel: str  # the entry, relative to root ("" for root itself)
    kept: str = ""  # PUT_BACK: its name in the work directory
    st: os.stat_result | None = None  # META, MKDIR: what to set back
    level: str | None = None  # MKDIR: the label it had (the sandbox's)


class MergeJournal:
    def __init__(self, work: Path) -> None:
        work.mkdir(mode=0o700)
        self.work = work
        self.fd = os.open(work, DIR_FLAGS)
        self._records: list[_Record] = []
        self._count = 0

    def new_name(self) -> str:
        """A fresh name in the work directory."""
        self._count += 1
        return f"{self._count}"

    def set_aside(self, root: Path, rel: str, parent_fd: int, name: str) -> None:
        """Move an entry out of the way (a file to remove, a directory a file replaces)."""
        kept = self.new_name()
        os.rename(name, kept, src_dir_fd=parent_fd, dst_dir_fd=self.fd)
        self._records.append(_Record(_Undo.PUT_BACK, root, rel, kept))

    def keep_old(self, root: Path, rel: str, parent_fd: int, name: str) -> None:
        """Keep an entry that a rename is about to replace (a hard link: no data is copied)."""
        kept = self.new_name()
        os.link(name, kept, src_dir_fd=parent_fd, dst_dir_fd=self.fd, follow_symlinks=False)
        self._records.append(_Record(_Undo.PUT_BACK, root, rel, kept))

    def created(self, root: Path, rel: str) -> None:
        self._records.append(_Record(_Undo.REMOVE, root, rel))

    def meta_changes(self, root: Path, rel: str, st: os.stat_result) -> None:
        self._records.append(_Record(_Undo.META, root, rel, st=st))

    def removed_dir(self, root: Path, rel: str, st: os.stat_result, level: str | None) -> None:
        self._records.append(_Record(_Undo.MKDIR, root, rel, st=st, level=level))

    def rollback(self) -> list[str]:
        """Put everything back, newest change first; returns what could not be (then the work directory,
        which holds the old versions, is kept and named)."""
        problems = []
        for r in reversed(self._records):
            try:
                self._undo(r)
            except OSError as exc:
                problems.append(f"{r.root / r.rel}: could not {r.undo.value} ({exc.strerror or exc})")
        self._records.clear()
        if problems:
            os.close(self.fd)
            problems.append(f"the previous versions are kept in {self.work}")
        else:
            self._drop()
        return problems

    def commit(self) -> None:
        """The merge stands: drop the old versions."""
        self._records.clear()
        self._drop()

    def _drop(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        fswalk.remove_path(self.work)

    def _undo(self, r: _Record) -> None:
        parent_rel, _, name = r.rel.rpartition("/")
        if not name:  # the root itself (the base directory, made by this merge)
            if r.undo is _Undo.REMOVE:
                os.rmdir(r.root)
            return
        pfd = _open_dir(r.root, parent_rel)
        try:
            _UNDO[r.undo](self, r, pfd, name)
        finally:
            os.close(pfd)

    def _put_back(self, r: _Record, pfd: int, name: str) -> None:
        os.rename(r.kept, name, src_dir_fd=self.fd, dst_dir_fd=pfd)

    def _remove(self, r: _Record, pfd: int, name: str) -> None:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(name, dir_fd=pfd)  # not empty: the sandbox put something there; it stays
        else:
            os.unlink(name, dir_fd=pfd)

    def _meta(self, r: _Record, pfd: int, name: str) -> None:
        assert r.st is not None
        fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
        try:
            _set(fd, r.st)
        finally:
            os.close(fd)

    def _mkdir(self, r: _Record, pfd: int, name: str) -> None:
        assert r.st is not None
        os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
        try:
            _set(fd, r.st)
        finally:
            os.close(fd)
        if r.level:
            selinux.label_at(pfd, name, r.level)


_UNDO: dict[_Undo, Callable[[MergeJournal, _Record, int, str], None]] = {
    _Undo.PUT_BACK: MergeJournal._put_back,
    _Undo.REMOVE: MergeJournal._remove,
    _Undo.META: MergeJournal._meta,
    _Undo.MKDIR: MergeJournal._mkdir,
}


def _set(fd: int, st: os.stat_result) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears set-id bits
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _open_dir(root: Path, rel: str) -> int:
    """root/rel, no symlink followed on the way."""
    root_fd = os.open(root, DIR_FLAGS)
    try:
        return fswalk.open_beneath(root_fd, rel, DIR_FLAGS, resolve=fswalk.Resolve.NO_LINKS)
    finally:
        os.close(root_fd)


def work_dir_for(sandbox_dir: Path) -> Path:
    """The work directory of this process's merge into the sandbox whose directory is `sandbox_dir`."""
    return sandbox_dir / f"{WORK_PREFIX}{os.getpid()}"
