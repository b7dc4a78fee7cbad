"""Atomic file writes: a temp file in the same directory, fsync, rename. A reader never sees half a file.

The temp file is named ``.NAME.tmp-PID``.  A run killed while writing leaves it behind; the next write of
the same file removes the temp files of processes that no longer exist (stale_temps), so they do not
pile up.  A live writer's temp file is never touched.

Inside ``deferred_sync()`` (apply, which writes thousands of files) the per-file fsyncs are left out and
the file systems written to are synced once when the block ends: a reader still never sees half a file
(the rename is what makes a file appear), but until the block ends a crash may lose what was written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

TEMP_INFIX = ".tmp-"

_deferred: dict[int, Path] | None = None  # st_dev -> a directory on it, while syncs are deferred


def temp_path(path: Path, pid: int | None = None) -> Path:
    return path.with_name(f".{path.name}{TEMP_INFIX}{os.getpid() if pid is None else pid}")


def stale_temps(path: Path) -> list[Path]:
    """Temp files of `path` left by writers that are gone (their PID no longer runs)."""
    prefix = f".{path.name}{TEMP_INFIX}"
    try:
        names = os.listdir(path.parent)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for name in names:
        pid = name[len(prefix) :] if name.startswith(prefix) else ""
        if pid.isdigit() and (int(pid) == os.getpid() or not pid_alive(int(pid))):
            out.append(path.parent / name)
    return out


def remove_stale_temps(path: Path) -> None:
    for tmp in stale_temps(path):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            if _deferred is None:
                os.fsync(f.fileno())
            else:
                _deferred.setdefault(os.fstat(f.fileno()).st_dev, path.parent)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if _deferred is not None:
        return
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename, creation or removal in `path` durable (at the end of a deferred_sync block, if
    inside one)."""
    if _deferred is not None:
        _deferred.setdefault(os.stat(path).st_dev, path)
        return
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def deferred_sync() -> Iterator[None]:
    """Writes without a sync each, then one syncfs(2) of each file system written to."""
    global _deferred
    if _deferred is not None:  # nested: the outer block syncs
        yield
        return
    _deferred = {}
    try:
        yield
    finally:
        written, _deferred = _deferred, None
        for directory in written.values():
            sync_filesystem(directory)


def sync_filesystem(directory: Path) -> None:
    """syncfs(2) of the file system holding `directory` (os.sync() where libc lacks it)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    syncfs = getattr(libc, "syncfs", None)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        os.sync()
        return
    try:
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
