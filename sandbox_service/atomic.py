"""Atomic file writes: a temp file in the same directory, fsync, rename. A reader never sees half a file.

The temp file is named ``.NAME.tmp-PID``.  A run killed while writing leaves it behind; the next write of
the same file removes the temp files of processes that no longer exist (stale_temps), so they do not
pile up.  A live writer's temp file is never touched.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TEMP_INFIX = ".tmp-"


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
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename, creation or removal in `path` durable."""
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
