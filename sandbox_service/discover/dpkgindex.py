"""A persistent index of dpkg's file lists: which packages list a path, without reading every list.

Reading the 1200 file lists of a Debian host takes 25 ms and each path asked about costs another 2 ms
of scanning them; a create asks about 15 (50 ms of a 450 ms `create --now`, bench/bench_create.py).
This index, an SQLite file in /var/cache/sandbox-service, answers each question in microseconds.

It holds for one state of dpkg's info directory.  dpkg replaces a file list by renaming a new one over
it and removes lists by unlinking them, so every change moves the directory's mtime; the index records
the directory's device, inode and mtime and is used only while they are unchanged.  A file's mtime
moves in clock ticks, though: an index built within RACY_SECONDS of the last change is not saved, since
a second change in that same tick would leave the mtime as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .. import atomic

FORMAT = "1"
RACY_SECONDS = 2


def state_of(info: Path) -> str | None:
    """What identifies one state of the info directory, or None when there is none."""
    try:
        st = os.stat(info)
    except OSError:
        return None
    return f"{FORMAT}:{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}"


class OwnerIndex:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def owners(self, path: str) -> list[str]:
        """Packages (names without architecture, in name order) that list `path`."""
        rows = self._db.execute(
            "SELECT DISTINCT package FROM owner WHERE path = ? ORDER BY package", (os.fsencode(path),)
        )
        return [name for (name,) in rows]


def _open(index_file: Path, state: str) -> OwnerIndex | None:
    """The saved index, when it is there, readable and of this state."""
    if not index_file.is_file():
        return None
    db = None
    try:
        db = sqlite3.connect(f"file:{index_file}?mode=ro", uri=True)
        row = db.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()
        if row is not None and row[0] == state:
            return OwnerIndex(db)
    except sqlite3.Error:
        pass  # unreadable or of another format: built again
    if db is not None:
        db.close()
    return None


def _build(target: Path, state: str, lists: Mapping[str, bytes]) -> None:
    target.unlink(missing_ok=True)
    db = sqlite3.connect(target)
    try:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE owner (path BLOB NOT NULL, package TEXT NOT NULL, PRIMARY KEY (path, package))"
            " WITHOUT ROWID"
        )
        for key, text in lists.items():
            package = key.split(":", 1)[0]  # "pkg:arch": one package, whatever its architectures
            db.executemany(
                "INSERT OR IGNORE INTO owner VALUES (?, ?)",
                ((line, package) for line in text.split(b"\n") if line.startswith(b"/")),
            )
        db.execute("INSERT INTO meta VALUES ('state', ?)", (state,))
        db.commit()
    finally:
        db.close()


def load(info: Path, index_file: Path, lists: Callable[[], Mapping[str, bytes]]) -> OwnerIndex | None:
    """The index for the info directory's present state: the saved one, or one built from `lists` (the
    file lists as dpkgdb reads them) and saved in its place.  None when it cannot be had now (no info
    directory, a change too recent to be sure of, a cache directory this process may not write, dpkg at
    work meanwhile): the caller scans the lists itself."""
    state = state_of(info)
    if state is None:
        return None
    found = _open(index_file, state)
    if found is not None:
        return found
    if time.time_ns() - int(state.rsplit(":", 1)[1]) < RACY_SECONDS * 1_000_000_000:
        return None
    tmp = atomic.temp_path(index_file)
    try:
        index_file.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        atomic.remove_stale_temps(index_file)
        _build(tmp, state, lists())
        if state_of(info) != state:  # dpkg changed the lists while they were read
            return None
        os.chmod(tmp, 0o644)
        os.replace(tmp, index_file)
    except (OSError, sqlite3.Error):
        return None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return _open(index_file, state)
