"""Build a sandbox's private root: base directories, usr-merge links, copies of host files, and the
directories the service expects to own. Copies keep owner (through an owner mapping), mode and times, and
never follow a symlink: a link is copied as a link, so nothing outside the named paths is ever read
through one. The walking itself is fswalk's."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import fswalk
from .atomic import write_atomic
from .discover.host import UsrLink
from .errors import InvalidInput, NotFound, SandboxError
from .fswalk import OwnerMap, identity
from .fswalk.fds import DIR_FLAGS, lstat_at
from .identity import IdMap
from .spec import never_copied

# Files every service needs to resolve users, hosts, time and its locale: private copies, which the
# sandbox may change (what it reads but never writes is shared read-only: spec.SHARED_ETC).
BASE_ETC = (
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl/openssl.cnf",
    "/etc/os-release",
    "/etc/environment",
    "/etc/default/locale",
    "/etc/locale.conf",
)
# Without a user namespace the loader reads the sandbox's own cache (with one, the host's is bound over it).
LOADER_CACHE = "/etc/ld.so.cache"

# (path, mode) of directories every root has; mount points stay empty.
BASE_DIRS = (
    ("etc", 0o755),
    ("var", 0o755),
    ("var/lib", 0o755),
    ("var/log", 0o755),
    ("var/cache", 0o755),
    ("var/spool", 0o755),
    ("var/tmp", 0o1777),
    ("usr", 0o755),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("root", 0o700),
    ("home", 0o755),
)
BASE_LINKS = (("var/run", "../run"), ("var/lock", "../run/lock"))


@dataclass(frozen=True)
class OwnedDir:
    """A directory the service expects to own (StateDirectory= and friends), inside the root."""

    path: str
    user: str | None
    group: str | None
    mode: int = 0o755


def inside(root: Path, path: str) -> Path:
    """Join an absolute path under root without resolving anything (no symlink can redirect it)."""
    rel = path.lstrip("/")
    if ".." in Path(rel).parts:
        raise InvalidInput(f"path {path!r} contains '..'")
    return root / rel


def has_path(root: Path, path: str) -> bool:
    """Whether `path` exists in the tree, looked up without following any link the sandbox made (a link
    standing in the way counts as there: it is the sandbox's)."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = fswalk.open_beneath(root_fd, path, os.O_PATH | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        if exc.errno == errno.ELOOP:
            return True
        raise
    finally:
        os.close(root_fd)
    os.close(fd)
    return True


def make_base(root: Path, usr_layout: Iterable[UsrLink], ids: IdMap | None = None) -> None:
    """The directories and links every root has.  With a user namespace (`ids`) they belong to the
    sandbox's root, "/" too (tools such as systemd-tmpfiles refuse a root owned by someone else); what
    sits at the top (/etc, the usr-merge links, the launcher's directory) stays in place because the
    unit mounts "/" read-only (render._read_write_paths)."""
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    if ids is not None:
        os.lchown(root, ids.to_host(0), ids.to_host(0))
    for rel, mode in BASE_DIRS:
        d = root / rel
        d.mkdir(exist_ok=True)
        os.chmod(d, mode)
        if ids is not None:
            os.lchown(d, ids.to_host(0), ids.to_host(0))
    for rel, target in BASE_LINKS:
        if not (root / rel).is_symlink():
            os.symlink(target, root / rel)
            if ids is not None:
                os.lchown(root / rel, ids.to_host(0), ids.to_host(0))
    for link in usr_layout:
        p = root / link.name
        if link.target is not None:
            os.symlink(link.target, p)
        else:
            p.mkdir(mode=0o755)  # a mount point for the host directory, bound read-only


def write_tree_files(root: Path, files: dict[str, str]) -> None:
    """The tool's own files inside a sandbox (render.tree_files): owned by host root, read-only to the
    sandbox, in directories it cannot write."""
    for path, text in files.items():
        target = inside(root, path)
        parent = target.parent
        if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
            raise SandboxError(f"{parent} is not a directory", "the sandbox tree was tampered with")
        parent.mkdir(mode=0o755, exist_ok=True)
        st = os.lstat(parent)
        if (st.st_uid, st.st_gid) != (0, 0) or stat.S_IMODE(st.st_mode) & 0o022:
            os.lchown(parent, 0, 0)
            os.chmod(parent, 0o755)
        write_atomic(target, text, mode=0o644)


def copy_path(host_root: Path, root: Path, path: str, *, owner: OwnerMap = identity) -> int:
    """Copy one host path (file, link or whole directory) into root at the same place; returns the
    number of files and links copied. Missing parents are made like the host's (owner, mode, times);
    a link among the parents already in root is followed as the sandbox would see it, never out of root.
    Everything is copied by descriptor (fswalk): sockets, FIFOs and devices are left out."""
    src = inside(host_root, path)
    if not os.path.lexists(src):
        raise NotFound(f"{path} does not exist", "check the path given with --copy")
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parent_fd = _make_parents(host_root, root_fd, path, owner)
    finally:
        os.close(root_fd)
    try:
        src_parent = os.open(src.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            report = fswalk.copy_at(
                src_parent,
                src.name,
                parent_fd,
                src.name,
                owner=owner,
                shown=str(src),
                leave_out=lambda rel: never_copied(f"{path.rstrip('/')}/{rel}"),
            )
        finally:
            os.close(src_parent)
    finally:
        os.close(parent_fd)
    return report.files + report.links


def _make_parents(host_root: Path, root_fd: int, path: str, owner: OwnerMap) -> int:
    """A descriptor of the parent of path inside root, making the missing directories on the way with the
    owner, mode and times of the host's."""
    parts = Path(path.lstrip("/")).parts[:-1]
    fd = os.open(".", DIR_FLAGS, dir_fd=root_fd)
    try:
        for i, part in enumerate(parts):
            st = lstat_at(fd, part)
            if st is None:
                os.mkdir(part, 0o755, dir_fd=fd)
                sub = os.open(part, DIR_FLAGS, dir_fd=fd)
                _mirror_host_dir(sub, inside(host_root, "/" + "/".join(parts[: i + 1])), owner)
            elif stat.S_ISLNK(st.st_mode):
                flags = DIR_FLAGS & ~os.O_NOFOLLOW  # the link itself is followed, inside root only
                sub = fswalk.open_beneath(
                    root_fd, "/".join(parts[: i + 1]), flags, resolve=fswalk.Resolve.IN_ROOT
                )
            else:
                sub = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


def _mirror_host_dir(fd: int, host_dir: Path, owner: OwnerMap) -> None:
    try:
        st = os.stat(host_dir)
    except FileNotFoundError:
        return  # made with 0755 and our own owner
    os.fchown(fd, *owner(st.st_uid, st.st_gid))
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def remove_tree(path: Path) -> None:
    """Remove a directory tree (or a file, or a link) by descriptor, without following any symlink out of
    it, whatever its depth (fswalk.remove_path)."""
    fswalk.remove_path(path)


def lookup_ids(root: Path, user: str | None, group: str | None) -> tuple[int, int]:
    """uid/gid from the sandbox's own passwd and group files (not the host's databases)."""
    uid, gid = 0, 0
    if user:
        entry = _find(root / "etc/passwd", user)
        if entry is None:
            raise NotFound(
                f"user {user!r} is not in the sandbox's /etc/passwd", "create it on the host first"
            )
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        entry = _find(root / "etc/group", group)
        if entry is None:
            raise NotFound(f"group {group!r} is not in the sandbox's /etc/group")
        gid = int(entry[2])
    return uid, gid


def _find(db: Path, name: str) -> list[str] | None:
    try:
        lines = db.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        fields = line.split(":")
        if fields[0] == name or (name.isdigit() and len(fields) > 2 and fields[2] == name):
            return fields
    return None


def make_owned_dirs(root: Path, dirs: Iterable[OwnedDir], ids: IdMap | None = None) -> None:
    for d in dirs:
        p = inside(root, d.path)
        p.mkdir(parents=True, exist_ok=True)
        uid, gid = lookup_ids(root, d.user, d.group)
        if ids is not None:
            uid, gid = ids.to_host(uid), ids.to_host(gid)
        os.lchown(p, uid, gid)
        os.chmod(p, d.mode)


def resolve_inside(
    root: Path, path: str, shared_root: Path, shared: tuple[str, ...], max_links: int = 40
) -> Path | None:
    """Resolve path as the sandbox would see it (symlinks taken relative to its root); None if missing.

    Paths in `shared` (the read-only binds such as /usr, /etc/alternatives) and below them are looked up
    under shared_root, the host.
    """
    prefixes = tuple(s.rstrip("/") for s in shared)

    def on_disk(p: Path) -> Path:
        text = str(p)
        is_shared = any(text == s or text.startswith(s + "/") for s in prefixes)
        return (shared_root if is_shared else root) / text.lstrip("/")

    parts = list(Path(path.lstrip("/")).parts)
    cur = Path("/")
    while parts:
        part = parts.pop(0)
        if part == "..":
            cur = cur.parent
            continue
        candidate = cur / part
        disk = on_disk(candidate)
        if disk.is_symlink():
            max_links -= 1
            if max_links < 0:
                return None
            target = os.readlink(disk)
            if target.startswith("/"):
                cur = Path("/")
                parts = list(Path(target).parts[1:]) + parts
            else:
                parts = list(Path(target).parts) + parts
            continue
        if not disk.exists():
            return None
        cur = candidate
    return on_disk(cur)
