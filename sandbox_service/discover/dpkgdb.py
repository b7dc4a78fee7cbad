"""dpkg's database read directly: which packages list a path, and what a package lists.

`dpkg-query -S` loads every package's file list each time it runs (70 ms on a Debian 12 host with 1200
packages), and create asked it two or three times per sandbox.  The lists are plain files, one path a
line (``/var/lib/dpkg/info/PACKAGE[:ARCH].list``), so this module reads them once per process (30 ms)
and answers each question from memory: what `dpkg-query -S` and `-L` would say for literal paths and
package names.  Paths in the lists are spelled as the package shipped them (``/lib/...`` before the
/usr merge), which is the caller's concern, as it was with dpkg-query.  On the running system, owners
are looked up in a persistent index of the lists (dpkgindex.py) instead, while it matches them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..paths import CACHE_BASE
from . import dpkgindex

INFO_DIR = "var/lib/dpkg/info"
# The running system's index (dpkgindex.py); None: none is kept (tests point it elsewhere).
INDEX_FILE: Path | None = CACHE_BASE / "dpkg-owners.sqlite"


class DpkgDatabase:
    """The file lists of the packages installed in the tree at `root`."""

    def __init__(self, root: Path, index_file: Path | None = None) -> None:
        self.info = root / INFO_DIR
        self.index_file = index_file
        self._names: list[str] | None = None  # "pkg" or "pkg:arch", in name order
        self._lists: dict[str, bytes] | None = None  # key -> "\n" + list text + "\n"
        self._index: dpkgindex.OwnerIndex | None = None
        self._index_tried = False

    def _keys(self) -> list[str]:
        if self._names is None:
            try:
                self._names = sorted(
                    n.removesuffix(".list") for n in os.listdir(self.info) if n.endswith(".list")
                )
            except FileNotFoundError:
                self._names = []
        return self._names

    def _read(self, key: str) -> bytes | None:
        try:
            with open(self.info / f"{key}.list", "rb") as f:
                return b"\n" + f.read() + b"\n"
        except OSError:
            return None  # removed meanwhile (dpkg running): as if not installed

    def _all(self) -> dict[str, bytes]:
        if self._lists is None:
            self._lists = {key: text for key in self._keys() if (text := self._read(key)) is not None}
        return self._lists

    def owners(self, path: str) -> list[str]:
        """Packages (names without architecture, in name order) that list `path`."""
        if not self._index_tried and self.index_file is not None:
            self._index_tried = True
            self._index = dpkgindex.load(self.info, self.index_file, self._all)
        if self._index is not None:
            return self._index.owners(path)
        needle = b"\n" + os.fsencode(path) + b"\n"
        return sorted({key.split(":", 1)[0] for key, text in self._all().items() if needle in text})

    def files(self, package: str) -> list[str] | None:
        """The paths `package` lists (of every architecture installed), or None when it is not installed."""
        texts = [self._read(k) for k in self._keys() if k == package or k.startswith(package + ":")]
        if not any(text is not None for text in texts):
            return None
        out: list[str] = []
        for text in texts:
            out += [line for line in os.fsdecode(text or b"").splitlines() if line.startswith("/")]
        return list(dict.fromkeys(out))


_CACHE: dict[Path, DpkgDatabase] = {}


def database(root: Path) -> DpkgDatabase:
    """One reading per tree and process (a create reads the same database several times).  Only the
    running system's keeps a persistent index: an image or chroot tree is not written to for it."""
    if root not in _CACHE:
        _CACHE[root] = DpkgDatabase(root, INDEX_FILE if root == Path("/") else None)
    return _CACHE[root]
