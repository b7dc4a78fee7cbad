"""dpkg's database read directly: which packages list a path, and what a package lists.

`dpkg-query -S` loads every package's file list each time it runs (70 ms on a Debian 12 host with 1200
packages), and create asked it two or three times per sandbox.  The lists are plain files, one path a
line (``/var/lib/dpkg/info/PACKAGE[:ARCH].list``), so this module reads them once per process (30 ms)
and answers each question from memory: what `dpkg-query -S` and `-L` would say for literal paths and
package names.  Paths in the lists are spelled as the package shipped them (``/lib/...`` before the
/usr merge), which is the caller's concern, as it was with dpkg-query.
"""

from __future__ import annotations

import os
from pathlib import Path

INFO_DIR = "var/lib/dpkg/info"


class DpkgDatabase:
    """The file lists of the packages installed in the tree at `root`."""

    def __init__(self, root: Path) -> None:
        self.info = root / INFO_DIR
        self._lists: dict[str, bytes] | None = None  # "pkg" or "pkg:arch" -> "\n" + list text + "\n"

    def _all(self) -> dict[str, bytes]:
        if self._lists is None:
            lists: dict[str, bytes] = {}
            try:
                names = sorted(n for n in os.listdir(self.info) if n.endswith(".list"))
            except FileNotFoundError:
                names = []
            for n in names:
                try:
                    with open(self.info / n, "rb") as f:
                        lists[n.removesuffix(".list")] = b"\n" + f.read() + b"\n"
                except OSError:
                    continue  # removed meanwhile (dpkg running): as if not installed
            self._lists = lists
        return self._lists

    def owners(self, path: str) -> list[str]:
        """Packages (names without architecture, in name order) that list `path`."""
        needle = b"\n" + os.fsencode(path) + b"\n"
        found = [key.split(":", 1)[0] for key, text in self._all().items() if needle in text]
        return list(dict.fromkeys(found))

    def files(self, package: str) -> list[str] | None:
        """The paths `package` lists (of every architecture installed), or None when it is not installed."""
        keys = [k for k in self._all() if k == package or k.startswith(package + ":")]
        if not keys:
            return None
        out: list[str] = []
        for k in keys:
            out += [line for line in os.fsdecode(self._all()[k]).splitlines() if line.startswith("/")]
        return list(dict.fromkeys(out))


_CACHE: dict[Path, DpkgDatabase] = {}


def database(root: Path) -> DpkgDatabase:
    """One reading per tree and process (a create reads the same database several times)."""
    if root not in _CACHE:
        _CACHE[root] = DpkgDatabase(root)
    return _CACHE[root]
