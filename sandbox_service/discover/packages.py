"""Which package owns a unit file, and which /etc and /var paths that package brings (dpkg or rpm).

Every query runs against the package database of the system being looked at: the host, or an image
tree given with --root (rpm --root), never a mix of the two.  dpkg's database is read directly
(dpkgdb.py: its file lists, once per process), rpm's through rpm.
"""

from __future__ import annotations

import enum
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFound
from ..run import run
from . import dpkgdb

PRIVATE_PREFIXES = ("/etc/", "/var/")
_TMPFILES_DIRS = ("/usr/lib/tmpfiles.d/", "/lib/tmpfiles.d/", "/etc/tmpfiles.d/")
_TMPFILES_NAME = re.compile(r"[A-Za-z0-9_.@+-]+\.conf")


class PackageManager(enum.Enum):
    DPKG = "dpkg"
    RPM = "rpm"
    NONE = "none"


@dataclass(frozen=True)
class PackagePaths:
    """A package's paths under /etc and /var. `trees` are directories only this package owns: they are
    copied whole, so files its maintainer scripts made (enabled-site links, generated keys) come along."""

    package: str
    files: tuple[str, ...]
    dirs: tuple[str, ...]
    trees: tuple[str, ...]
    tmpfiles: tuple[str, ...] = ()  # names of the tmpfiles.d files it ships


def detect(root: Path) -> PackageManager:
    """dpkg when the tree has a dpkg database, rpm when it has an rpm one (dpkg wins on Debian, where
    the rpm tool may be installed for building packages but owns nothing)."""
    if (root / "var/lib/dpkg/status").exists():  # read directly (dpkgdb): no dpkg tools needed
        return PackageManager.DPKG
    for db in ("var/lib/rpm", "usr/lib/sysimage/rpm"):
        if (root / db).is_dir() and any((root / db).iterdir()) and shutil.which("rpm"):
            return PackageManager.RPM
    return PackageManager.NONE


def _alternate_spellings(path: str) -> list[str]:
    """On usr-merged systems a file is known to the package database by the path the package shipped."""
    out = [path]
    for short in ("/lib/", "/bin/", "/sbin/"):
        if path.startswith("/usr" + short):
            out.append(path[len("/usr") :])
        elif path.startswith(short):
            out.append("/usr" + path)
    return out


def owner_of(pm: PackageManager, root: Path, path: str) -> str | None:
    for candidate in _alternate_spellings(path):
        if pm is PackageManager.DPKG:
            found = dpkgdb.database(root).owners(candidate)
            if found:
                return found[0]
        elif pm is PackageManager.RPM:
            res = run(["rpm", f"--root={root}", "-qf", "--qf", "%{NAME}\n", candidate], check=False)
            if res.returncode == 0 and res.stdout.strip():
                return res.stdout.splitlines()[0].strip()
    return None


def _list_files(pm: PackageManager, root: Path, package: str) -> list[str]:
    if pm is PackageManager.DPKG:
        listed = dpkgdb.database(root).files(package)
        if listed is None:
            raise NotFound(f"package {package} is not installed", "check the name with dpkg -l")
        return listed
    if pm is PackageManager.RPM:
        res = run(["rpm", f"--root={root}", "-ql", package], check=False)
    else:
        return []
    if res.returncode != 0:
        raise NotFound(f"package {package} is not installed", "check the name with dpkg -l or rpm -qa")
    return [line.strip() for line in res.stdout.splitlines() if line.startswith("/")]


def _owners(pm: PackageManager, root: Path, dirs: list[str]) -> dict[str, set[str]]:
    """Owners of many directories from one query."""
    owners: dict[str, set[str]] = {d: set() for d in dirs}
    if not dirs:
        return owners
    if pm is PackageManager.DPKG:
        db = dpkgdb.database(root)
        for d in dirs:
            owners[d].update(db.owners(d))
    elif pm is PackageManager.RPM:
        res = run(["rpm", f"--root={root}", "-qf", "--qf", "%{NAME}\n", *dirs], check=False)
        # rpm prints one block of owner names per argument, in order; a directory owned by several
        # packages prints several lines, so ask again one by one only when the counts disagree
        lines = res.stdout.splitlines()
        if len(lines) == len(dirs):
            for d, pkg in zip(dirs, lines, strict=True):
                owners[d].add(pkg.strip())
        else:
            for d in dirs:
                one = run(["rpm", f"--root={root}", "-qf", "--qf", "%{NAME}\n", d], check=False)
                owners[d].update(x.strip() for x in one.stdout.splitlines() if x.strip())
    return owners


def package_paths(
    pm: PackageManager, root: Path, package: str, family: frozenset[str] = frozenset()
) -> PackagePaths:
    """`family`: packages whose directories count as this one's own too (its source siblings): a
    directory only they own is copied whole."""
    everything = _list_files(pm, root, package)
    listed = [p for p in everything if p.startswith(PRIVATE_PREFIXES)]
    files, dirs = [], []
    for p in listed:
        host = root / p.lstrip("/")
        if host.is_dir() and not host.is_symlink():
            dirs.append(p)
        elif host.exists() or host.is_symlink():
            files.append(p)
    # Only directories at least two levels deep can be a package's own (/etc/nginx, /var/lib/nginx);
    # /etc or /var/lib themselves never are.
    deep = [d for d in dirs if d.count("/") >= 2 and d not in ("/var/lib", "/var/log", "/var/cache")]
    owners = _owners(pm, root, deep)
    ours = family | {package}
    trees = [d for d in deep if owners.get(d) and owners[d] <= ours]
    # keep only the outermost of nested trees
    trees = [t for t in trees if not any(t != o and t.startswith(o + "/") for o in trees)]
    tmpfiles = tmpfiles_configs(everything)
    return PackagePaths(package, tuple(files), tuple(dirs), tuple(trees), tmpfiles)


def tmpfiles_configs(package_files: list[str]) -> tuple[str, ...]:
    """The names of the tmpfiles.d files a package ships (systemd-tmpfiles finds them by name)."""
    names = []
    for path in package_files:
        for d in _TMPFILES_DIRS:
            name = path.removeprefix(d)
            if path.startswith(d) and _TMPFILES_NAME.fullmatch(name):
                names.append(name)
    return tuple(dict.fromkeys(names))
