"""What a service needs beyond its own package's file list, found the same way for any service:

- its siblings: the installed packages built from the same source (samba's logs belong to samba-common,
  spamd's configuration to spamassassin);
- configuration that debconf/ucf manages, which dpkg does not list (/var/lib/ucf/registry);
- what maintainer scripts made for the service's account: directories under /etc, /var and /srv owned by
  the unit's User= or Group= (a cache, a log directory, generated keys).

Every function reads the host (or the --root image) only.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..run import run
from .packages import PackageManager

# Where maintainer scripts leave what a service's account owns, and how deep to look.
_ACCOUNT_TOPS = ("/etc", "/var/lib", "/var/cache", "/var/log", "/var/spool", "/var/www", "/srv")
_NOBODY = 65534  # an account many services share: what it owns is nobody's in particular


def siblings(pm: PackageManager, root: Path, package: str) -> tuple[str, ...]:
    """The installed packages built from the same source package as `package` (itself included)."""
    if pm is PackageManager.DPKG:
        res = run(
            ["dpkg-query", f"--root={root}", "-W", "-f", "${db:Status-Status}\t${Package}\t${Source}\n"],
            check=False,
        )
        by_source: dict[str, list[str]] = {}
        for line in res.stdout.splitlines():
            status, name, source = [*line.split("\t"), "", ""][:3]
            if status != "installed":
                continue
            # Source: "name" or "name (version)"; empty when it is the package's own name
            by_source.setdefault(source.split(" ")[0] or name, []).append(name.split(":")[0])
        for names in by_source.values():
            if package in names:
                return tuple(sorted(set(names)))
    elif pm is PackageManager.RPM:
        own = run(["rpm", f"--root={root}", "-q", "--qf", "%{SOURCERPM}", package], check=False).stdout
        if own.strip():
            res = run(["rpm", f"--root={root}", "-qa", "--qf", "%{NAME}\t%{SOURCERPM}\n"], check=False)
            names = [n for n, _, s in (line.partition("\t") for line in res.stdout.splitlines()) if s == own]
            if names:
                return tuple(sorted(set(names)))
    return (package,)


def ucf_paths(root: Path, packages: tuple[str, ...]) -> tuple[str, ...]:
    """Configuration files debconf/ucf manage for `packages` (not in dpkg's lists)."""
    try:
        lines = (root / "var/lib/ucf/registry").read_text(errors="replace").splitlines()
    except OSError:
        return ()
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) == 2 and fields[0] in packages and fields[1].startswith("/"):
            out.append(fields[1])
    return tuple(out)


def account_paths(root: Path, uid: int | None, gid: int | None) -> tuple[str, ...]:
    """Directories and files directly below _ACCOUNT_TOPS (two levels down for /etc, /var/lib, ...) that
    the service's own account owns: what its package's maintainer scripts made for it."""
    uid = uid if uid not in (0, _NOBODY) else None
    gid = gid if gid not in (0, _NOBODY) else None
    if uid is None and gid is None:
        return ()
    out = []
    for top in _ACCOUNT_TOPS:
        base = root / top.lstrip("/")
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid == uid or st.st_gid == gid:
                out.append(f"{top}/{entry.name}")
    return tuple(out)


def account_ids(root: Path, user: str | None, group: str | None) -> tuple[int | None, int | None]:
    """uid and gid of the unit's User=/Group= in the host's (or image's) user database files."""

    def find(db: str, name: str | None, field: int = 2) -> int | None:
        if name is None:
            return None
        if name.isdigit() and field == 2:
            return int(name)
        try:
            for line in (root / db).read_text(errors="replace").splitlines():
                fields = line.split(":")
                if len(fields) > field and fields[0] == name and fields[field].isdigit():
                    return int(fields[field])
        except OSError:
            pass
        return None

    # without Group=, the user's primary group
    gid = find("etc/group", group) if group is not None else find("etc/passwd", user, field=3)
    return find("etc/passwd", user), gid
