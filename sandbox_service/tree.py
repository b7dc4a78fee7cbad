"""Build a sandbox's private root: base directories, usr-merge links, copies of host files, and the
directories the service expects to own. Copies keep owner, mode and times, and never follow a symlink:
a link is copied as a link, so nothing outside the named paths is ever read through one."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_atomic
from .discover.host import UsrLink
from .errors import InvalidInput, NotFound, SandboxError
from .identity import IdMap, OwnerMap
from .spec import never_copied

# Files every service needs to resolve users, hosts, libraries, time and certificates.
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
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/services",
    "/etc/protocols",
    "/etc/alternatives",
    "/etc/environment",
    "/etc/default/locale",
    "/etc/locale.conf",
)

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


def make_base(root: Path, usr_layout: Iterable[UsrLink], ids: IdMap | None = None) -> None:
    """The directories and links every root has.  With a user namespace (`ids`) they belong to the
    sandbox's root, except "/" itself: it stays the host's, so the sandbox cannot rename or replace what
    sits at its top (/etc, /usr, the launcher's directory)."""
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(root, 0o755)
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


def _copy_meta(src_st: os.stat_result, dst: Path, owners: OwnerMap | None = None) -> None:
    uid, gid = src_st.st_uid, src_st.st_gid
    if owners is not None:
        uid, gid = owners(uid), owners(gid)
    os.lchown(dst, uid, gid)
    if not stat.S_ISLNK(src_st.st_mode):
        os.chmod(dst, stat.S_IMODE(src_st.st_mode))
    os.utime(dst, ns=(src_st.st_atime_ns, src_st.st_mtime_ns), follow_symlinks=False)


def _make_parents(host_root: Path, root: Path, path: str, owners: OwnerMap | None) -> None:
    """Create the parents of path inside root, mirroring the host parents' owner and mode."""
    parts = Path(path.lstrip("/")).parts[:-1]
    cur = ""
    for part in parts:
        cur = f"{cur}/{part}"
        dst = inside(root, cur)
        if dst.is_symlink() or dst.exists():
            continue
        dst.mkdir()
        try:
            _copy_meta(os.lstat(inside(host_root, cur)), dst, owners)
        except FileNotFoundError:
            os.chmod(dst, 0o755)
            if owners is not None:
                os.lchown(dst, owners(0), owners(0))


def copy_path(host_root: Path, root: Path, path: str, owners: OwnerMap | None = None) -> int:
    """Copy one host path (file, link or whole directory) into root at the same place; returns the
    number of files copied.  `owners` maps each owner and group ID (into a sandbox's ID range, say)."""
    src = inside(host_root, path)
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist", "check the path given with --copy") from None
    _make_parents(host_root, root, path, owners)
    return _copy_one(src, st, inside(root, path), owners, path)


def _copy_one(src: Path, st: os.stat_result, dst: Path, owners: OwnerMap | None, logical: str) -> int:
    if never_copied(logical):
        return 0  # the host's secrets stay on the host, even inside a tree that is copied whole
    if stat.S_ISLNK(st.st_mode):
        if dst.is_symlink() or dst.exists():
            _remove(dst)
        os.symlink(os.readlink(src), dst)
        _copy_meta(st, dst, owners)
        return 1
    if stat.S_ISDIR(st.st_mode):
        if not dst.is_dir() or dst.is_symlink():
            if dst.is_symlink() or dst.exists():
                _remove(dst)
            dst.mkdir()
        count = 0
        with os.scandir(src) as entries:
            for entry in entries:
                logical_child = f"{logical.rstrip('/')}/{entry.name}"
                entry_st = entry.stat(follow_symlinks=False)
                count += _copy_one(Path(entry.path), entry_st, dst / entry.name, owners, logical_child)
        _copy_meta(st, dst, owners)
        return count
    if stat.S_ISREG(st.st_mode):
        if dst.is_symlink():
            dst.unlink()
        shutil.copyfile(src, dst, follow_symlinks=False)
        _copy_meta(st, dst, owners)
        return 1
    return 0  # sockets, fifos and devices belong to a running system, not to a copy


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        remove_tree(p)
    else:
        p.unlink()


def remove_tree(path: Path) -> None:
    """Remove a directory tree without following any symlink out of it."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    # shutil.rmtree uses fd-based traversal (rmtree.avoids_symlink_attacks) and unlinks links it meets
    if not shutil.rmtree.avoids_symlink_attacks:
        raise SandboxError("this platform cannot remove directory trees safely")
    shutil.rmtree(path)


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

    Directories in `shared` (the read-only binds such as /usr) are looked up under shared_root, the host.
    """
    shared_tops = {s.strip("/") for s in shared}

    def on_disk(p: Path) -> Path:
        top = p.parts[1] if len(p.parts) > 1 else ""
        return (shared_root if top in shared_tops else root) / str(p).lstrip("/")

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
