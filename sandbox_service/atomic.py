"""Atomic file writes: a temp file in the same directory, fsync, rename. A reader never sees half a file.

Inside ``deferred_sync()`` (apply, which writes thousands of files) the per-file fsyncs are left out and
the file systems written to are synced once when the block ends: a reader still never sees half a file
(the rename is what makes a file appear), but until the block ends a crash may lose what was written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

_deferred: dict[int, Path] | None = None  # st_dev -> a directory on it, while syncs are deferred


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
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
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
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
