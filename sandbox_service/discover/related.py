"""What a service needs beyond its own package's file list, found the same way for any service:

- its siblings: the installed packages built from the same source (samba's logs belong to samba-common,
  spamd's configuration to spamassassin);
- configuration that debconf/ucf manages, which dpkg does not list (/var/lib/ucf/registry);
- what maintainer scripts made for the service's account: directories under /etc, /var and /srv owned by
  the unit's User= or Group= (a cache, a log directory, generated keys);
- what maintainer scripts name and made: paths under /etc, /var and /srv that a package's scripts
  mention and that exist (a defaults file ucf installed unregistered, a database directory);
- the configuration of what the service's packages depend on: the conffiles of their Depends= closure
  (a Java runtime reads its security settings from /etc, reached through a link in /usr).

Every function reads the host (or the --root image) only.
"""

from __future__ import annotations

import os
import re
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


# A path a maintainer script names: below one of these tops (at least one level down).
_SCRIPT_PATH = re.compile(r"(?<![\w.$/])/(?:etc|var/lib|var/cache|var/log|var/spool|srv)(?:/[\w.+@-]+)+")
# The package system's and the init system's own, which debhelper's snippets name in every package.
_SCRIPT_NEVER = (
    "/etc/init.d", "/etc/rc0.d", "/etc/rc1.d", "/etc/rc2.d", "/etc/rc3.d", "/etc/rc4.d", "/etc/rc5.d",
    "/etc/rc6.d", "/etc/rcS.d", "/etc/systemd", "/etc/alternatives", "/var/lib/dpkg", "/var/lib/ucf",
    "/var/lib/systemd", "/var/lib/apt", "/var/lib/rpm", "/var/cache/debconf", "/var/cache/apt",
    "/var/log/apt", "/var/lib/update-rc.d", "/var/lib/polkit-1",
)  # fmt: skip
# Directories every package drops files into: a file inside is the package's, the directory is not.
_SCRIPT_SHARED_DIRS = frozenset(
    {"/etc/default", "/etc/logrotate.d", "/etc/cron.d", "/etc/cron.daily", "/etc/sysctl.d", "/etc/ssl"}
)


def script_paths(pm: PackageManager, root: Path, packages: tuple[str, ...]) -> tuple[str, ...]:
    """Existing paths that the packages' maintainer scripts name: what they install or make outside
    the package manager's lists (a defaults file ucf installs unregistered, a database directory)."""
    texts = []
    for pkg in packages:
        if pm is PackageManager.DPKG:
            for script in ("preinst", "postinst", "config"):
                try:
                    texts.append((root / f"var/lib/dpkg/info/{pkg}.{script}").read_text(errors="replace"))
                except OSError:
                    continue
        elif pm is PackageManager.RPM:
            texts.append(run(["rpm", f"--root={root}", "-q", "--scriptlets", pkg], check=False).stdout)
    found: dict[str, None] = {}
    for text in texts:
        for path in _SCRIPT_PATH.findall(text):
            path = path.rstrip(".")
            if path in _SCRIPT_SHARED_DIRS or any(
                path == n or path.startswith(n + "/") for n in _SCRIPT_NEVER
            ):
                continue
            host = root / path.lstrip("/")
            # the host's own log files stay the host's: a log directory is made, not what it holds
            if os.path.lexists(host) and not (path.startswith("/var/log/") and not host.is_dir()):
                found[path] = None
    return tuple(found)


_RECORD = "\x1e"  # between dpkg-query's records: a Conffiles field spans lines
# What a dependency's conffiles configure for the host's housekeeping, not for a running service.
_HOUSEKEEPING = ("/etc/apt", "/etc/dpkg", "/etc/cron.d", "/etc/cron.daily", "/etc/cron.weekly",
                 "/etc/cron.monthly", "/etc/logrotate.d", "/etc/kernel")  # fmt: skip


def dependency_conffiles(pm: PackageManager, root: Path, packages: tuple[str, ...]) -> tuple[str, ...]:
    """The conffiles of the installed packages that `packages` depend on (Depends and Pre-Depends, all
    the way down; a virtual package by its installed providers), except those of the package system
    and the init system.  Only dpkg records them; elsewhere none are found."""
    if pm is not PackageManager.DPKG:
        return ()
    fmt = "${db:Status-Status}\t${Package}\t${Depends}, ${Pre-Depends}\t${Provides}\t${Conffiles}" + _RECORD
    res = run(["dpkg-query", f"--root={root}", "-W", "-f", fmt], check=False)
    depends: dict[str, list[list[str]]] = {}
    conffiles: dict[str, list[str]] = {}
    providers: dict[str, list[str]] = {}
    for record in res.stdout.split(_RECORD):
        status, name, deps, provides, files = [*record.strip("\n").split("\t"), "", "", "", ""][:5]
        if status != "installed":
            continue
        name = name.split(":")[0]
        depends[name] = [[_bare(a) for a in alt.split("|")] for alt in deps.split(",") if alt.strip()]
        conffiles[name] = [line.split()[0] for line in files.splitlines() if line.strip().startswith("/")]
        for virtual in provides.split(","):
            if virtual.strip():
                providers.setdefault(_bare(virtual), []).append(name)
    seen: set[str] = set()
    todo = [p for p in packages if p in depends]
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        for alternatives in depends[pkg]:
            for alt in alternatives:  # the first alternative that is installed, as dpkg satisfied it
                found = [alt] if alt in depends else providers.get(alt, [])
                if found:
                    todo += found
                    break
    out = []
    for pkg in sorted(seen - set(packages)):
        skip = (*_SCRIPT_NEVER, *_HOUSEKEEPING)
        out += [
            p
            for p in conffiles[pkg]
            # dpkg keeps listing a conffile the admin deleted (or an obsolete one)
            if not any(p == n or p.startswith(n + "/") for n in skip)
            and os.path.lexists(root / p.lstrip("/"))
        ]
    return tuple(out)


def _bare(dependency: str) -> str:
    """'libc6 (>= 2.34)' or 'foo:any' as a package name."""
    return dependency.strip().split(" ")[0].split(":")[0]


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
