"""The three-way merge of a sandbox's private /etc (base copy, host, sandbox), path by path.

This module owns the merge itself and nothing of the command around it: the report it produces (Action,
MergeReport), reading the three trees (Node, NodeKind), planning by reading only (plan_merge, MergePlan),
carrying a plan out (apply_merge, merge), and the safe no-follow file helpers both use, which reach every
entry of the untrusted sandbox tree one directory at a time with O_NOFOLLOW ``*at`` calls and replace files
by rename from a temporary file in the same directory. It knows nothing of specs, units or systemd.
"""

# How it decides. The three trees:
#
# - base: NAME/base, the host's files as they were when last copied (create, then every upgrade);
# - host: the host's files now;
# - sandbox: NAME/root, the sandbox's files now.
#
# Entries are compared by kind, bytes (links: by target) and owner/mode. Where the host did not change an
# entry, nothing happens. Where it did and the sandbox still has the base's version, the host's is taken.
# Where both changed, the sandbox's is kept and the host's is written beside it as ``PATH.hostnew``. The
# base always moves on to the host's version, so the next upgrade does not report the same change again.
# Steps are ordered so that an interrupted upgrade is finished by running it again.
#
# The sandbox's tree is written by its service, so it is never trusted: every file in it is reached one
# directory at a time with O_NOFOLLOW (``*at`` calls on directory descriptors, fswalk.open_beneath), never
# through a symlink, files are replaced by rename from a temporary file in the same directory, and trees
# are removed and labelled by descriptor, iteratively (fswalk).

from __future__ import annotations

import enum
import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .. import fswalk, selinux
from ..errors import InvalidInput, SandboxError
from ..fswalk.fds import CREATE_FLAGS as _CREATE_FLAGS
from ..fswalk.fds import DIR_FLAGS as _DIR_FLAGS
from ..fswalk.fds import GONE as _MISSING
from ..fswalk.fds import READ_FLAGS as _READ_FLAGS
from ..identity import IdMap
from ..spec import never_copied
from .journal import MergeJournal, work_dir_for

HOSTNEW_SUFFIX = ".hostnew"


class Action(enum.Enum):
    """What upgrade did (or, with --dry-run, would do) to one path of a sandbox."""

    UPDATED = "updated"  # changed on the host only: the host's version was taken
    ADDED = "added"  # new on the host: added to the sandbox
    REMOVED = "removed"  # gone from the host, unchanged in the sandbox: removed
    CONFLICT = "conflict"  # changed on both: the sandbox's kept, the host's written beside it as .hostnew
    KEPT = "kept"  # changed on both, nothing to write beside it: the sandbox's kept (e.g. gone on the host)


SANDBOX_CHANGES = (Action.UPDATED, Action.ADDED, Action.REMOVED)


@dataclass(frozen=True)
class MergeReport:
    """The outcome of merging one sandbox's /etc. Paths are absolute, as the sandbox sees them."""

    entries: tuple[tuple[str, Action], ...]
    base_updates: int = 0  # paths whose base copy moved on to the host's version (reported or not)
    had_base: bool = True  # False: no base existed, so every difference counted as a change on both sides

    def paths(self, action: Action) -> tuple[str, ...]:
        return tuple(p for p, a in self.entries if a is action)

    @property
    def changed(self) -> bool:
        """Whether the sandbox's own files change (a .hostnew beside a kept file does not count)."""
        return any(a in SANDBOX_CHANGES for _, a in self.entries)


# -- reading trees ---------------------------------------------------------------------------------------


class NodeKind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    LINK = "link"
    OTHER = "other"  # fifo, socket, device: never copied, never equal to anything copied


@dataclass(frozen=True)
class Node:
    """One directory entry, as much as the merge compares: kind, owner, mode and content."""

    kind: NodeKind
    uid: int = 0
    gid: int = 0
    mode: int = 0
    content: str = ""  # sha256 of a file's bytes, the target of a link


def _open_dir_at(parent_fd: int, name: str) -> int | None:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in _MISSING:
            return None
        raise


def _open_dir(root: Path, parts: Iterable[str]) -> int | None:
    """A descriptor of root/parts..., no symlink followed on the way (None where one is, or nothing)."""
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in _MISSING:
            return None
        raise
    try:
        return fswalk.open_beneath(root_fd, "/".join(parts), _DIR_FLAGS, resolve=fswalk.Resolve.NO_LINKS)
    except OSError as exc:
        if exc.errno in _MISSING:
            return None
        raise
    finally:
        os.close(root_fd)


def _lstat(parent_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _MISSING:
            return None
        raise


def _owner(ids: IdMap | None, host_id: int) -> int:
    """An owner as the merge compares it: a sandbox's files are owned by its shifted IDs (-1: an ID
    outside its range, which no host file can match)."""
    if ids is None:
        return host_id
    inner = ids.to_inner(host_id)
    return -1 if inner is None else inner


def _node_at(parent_fd: int, name: str, ids: IdMap | None = None) -> Node | None:
    st = _lstat(parent_fd, name)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        return Node(NodeKind.LINK, content=os.readlink(name, dir_fd=parent_fd))  # links: by target only
    if stat.S_ISDIR(st.st_mode):
        return Node(NodeKind.DIR, _owner(ids, st.st_uid), _owner(ids, st.st_gid), stat.S_IMODE(st.st_mode))
    if not stat.S_ISREG(st.st_mode):
        return Node(NodeKind.OTHER)
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in _MISSING:
            return None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Node(NodeKind.OTHER)
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return Node(
        NodeKind.FILE,
        _owner(ids, st.st_uid),
        _owner(ids, st.st_gid),
        stat.S_IMODE(st.st_mode),
        digest.hexdigest(),
    )


class _Reader:
    """A read-only view of one tree; directory descriptors are cached for the time of the planning."""

    def __init__(self, root: Path, ids: IdMap | None = None) -> None:
        self.root = root
        self.ids = ids
        self._fds: dict[str, int | None] = {}

    def dir_fd(self, rel: str) -> int | None:
        if rel not in self._fds:
            if not rel:
                self._fds[rel] = _open_dir(self.root, ())
            else:
                parent, _, name = rel.rpartition("/")
                pfd = self.dir_fd(parent)
                self._fds[rel] = None if pfd is None else _open_dir_at(pfd, name)
        return self._fds[rel]

    def node(self, rel: str) -> Node | None:
        parent, _, name = rel.rpartition("/")
        pfd = self.dir_fd(parent)
        return None if pfd is None else _node_at(pfd, name, self.ids)

    def names(self, rel: str) -> list[str]:
        fd = self.dir_fd(rel)
        return [] if fd is None else sorted(os.listdir(fd))

    def scan(self, tops: Iterable[str]) -> dict[str, Node]:
        """Every entry at and below the top paths (FIFOs and the like left out, as copies leave them)."""
        out: dict[str, Node] = {}
        for top in tops:
            todo = [top]  # an explicit stack: no depth of tree runs out of recursion
            while todo:
                rel = todo.pop()
                if rel in out or never_copied("/" + rel):
                    continue  # the host's secrets are no part of a sandbox's copies (spec.NEVER_COPIED)
                node = self.node(rel)
                if node is None or node.kind is NodeKind.OTHER:
                    continue
                out[rel] = node
                if node.kind is NodeKind.DIR:
                    todo += [f"{rel}/{name}" for name in reversed(self.names(rel))]
        return out

    def close(self) -> None:
        for fd in self._fds.values():
            if fd is not None:
                os.close(fd)
        self._fds.clear()


# -- planning --------------------------------------------------------------------------------------------


class _Op(enum.Enum):
    TAKE = "take"  # make the sandbox's entry the host's (write it, or remove it when the host has none)
    HOSTNEW = "hostnew"  # write the host's entry beside the sandbox's, as PATH.hostnew
    BASE = "base"  # only the base moves on


@dataclass(frozen=True)
class _Step:
    rel: str
    op: _Op
    host: Node | None  # what the base becomes (None: removed from the base)
    before: Node | None  # the sandbox's entry when planned; TAKE re-checks it right before acting
    action: Action | None  # what is reported (None: nothing the user needs to hear about)


@dataclass(frozen=True)
class MergePlan:
    """Every step of a merge, computed by reading only; `report` is what --dry-run shows."""

    base: Path
    host: Path
    sandbox: Path
    steps: tuple[_Step, ...]
    report: MergeReport
    ids: IdMap | None = None  # the sandbox's ID range: its files are owned by shifted IDs


def _key(rel: str) -> tuple[str, ...]:
    return tuple(rel.split("/"))  # parents sort before their children


def _ancestors(rel: str) -> Iterable[str]:
    parts = rel.split("/")
    for i in range(len(parts) - 1, 0, -1):
        yield "/".join(parts[:i])


def _top_paths(paths: Iterable[str]) -> list[str]:
    tops = []
    for p in paths:
        if not p.startswith("/") or ".." in p.split("/"):
            raise InvalidInput(f"not a normalized absolute path: {p!r}")
        rel = p.strip("/")
        if rel:
            tops.append(rel)
    return list(dict.fromkeys(tops))


def plan_merge(
    base: Path, host: Path, sandbox: Path, paths: Sequence[str], ids: IdMap | None = None
) -> MergePlan:
    """Plan the three-way merge of `paths` (absolute, as recorded in the spec) of three trees: `base`
    (the last copy taken), `host` (the host's root) and `sandbox` (the sandbox's root, whose owners are
    shifted into `ids`). Reads only."""
    readers = [_Reader(base), _Reader(host), _Reader(sandbox, ids)]
    try:
        return replace(_plan(base, host, sandbox, _top_paths(paths), *readers), ids=ids)
    finally:
        for r in readers:
            r.close()


def _plan(
    base: Path, host: Path, sandbox: Path, tops: list[str], b: _Reader, h: _Reader, s: _Reader
) -> MergePlan:
    had_base = b.dir_fd("") is not None
    old = b.scan(tops)
    new = h.scan(tops)
    steps: dict[str, _Step] = {}
    reports: dict[str, Action] = {}
    # directories the sandbox keeps in its own shape where the host has a directory (or had one): the
    # entries below them only move the base on; the first host change below one is reported on it
    blocked: dict[str, bool] = {}  # path -> reported already
    made_dirs: set[str] = set()  # directories a TAKE step creates in the sandbox

    def sandbox_has_dir(rel: str) -> bool:
        if rel in made_dirs:
            return True
        node = s.node(rel) if rel else Node(NodeKind.DIR)
        return node is not None and node.kind is NodeKind.DIR

    for rel in sorted(set(old) | set(new), key=_key):
        b_node, h_node = old.get(rel), new.get(rel)
        if b_node == h_node:
            if h_node is not None and h_node.kind is NodeKind.DIR and not sandbox_has_dir(rel):
                blocked.setdefault(rel, False)
            continue
        # the host changed this entry: the base moves on to the host's version whatever happens
        outer = next((a for a in _ancestors(rel) if a in blocked), None)
        if outer is not None:
            if not blocked[outer]:
                blocked[outer] = True
                reports[outer] = Action.KEPT
            steps[rel] = _Step(rel, _Op.BASE, h_node, None, None)
            continue
        s_node = s.node(rel)
        parent = rel.rpartition("/")[0]
        # a directory the host replaced by a file or link: never emptied in the sandbox, kept as it is
        replaces_dir = (
            b_node is not None
            and b_node.kind is NodeKind.DIR
            and h_node is not None
            and h_node.kind is not NodeKind.DIR
        )
        if s_node == b_node and not replaces_dir:
            if h_node is not None and not sandbox_has_dir(parent):
                steps[rel] = _Step(rel, _Op.BASE, h_node, s_node, Action.KEPT)  # nowhere to put it
            else:
                action = (
                    Action.REMOVED if h_node is None else Action.ADDED if b_node is None else Action.UPDATED
                )
                steps[rel] = _Step(rel, _Op.TAKE, h_node, s_node, action)
                if h_node is not None and h_node.kind is NodeKind.DIR:
                    made_dirs.add(rel)
        elif s_node == h_node:
            steps[rel] = _Step(rel, _Op.BASE, h_node, s_node, None)  # the sandbox has it already
        elif h_node is None or h_node.kind is NodeKind.DIR:
            # gone on the host, or a directory (owner/mode, or in place of the sandbox's entry): keep
            steps[rel] = _Step(rel, _Op.BASE, h_node, s_node, Action.KEPT)
            if h_node is not None and not (s_node is not None and s_node.kind is NodeKind.DIR):
                blocked[rel] = True
        else:
            ok = sandbox_has_dir(parent)
            steps[rel] = _Step(
                rel, _Op.HOSTNEW if ok else _Op.BASE, h_node, s_node, Action.CONFLICT if ok else Action.KEPT
            )
            if s_node is not None and s_node.kind is NodeKind.DIR:
                blocked[rel] = True  # a directory the host replaced by a file: keep it whole
    # a directory is removed only when nothing is left in it once the entries planned for removal are gone
    removed: set[str] = set()
    for rel in sorted(steps, key=_key, reverse=True):
        step = steps[rel]
        if step.op is not _Op.TAKE or step.host is not None:
            continue
        if step.before is not None and step.before.kind is NodeKind.DIR:
            left = [n for n in s.names(rel) if f"{rel}/{n}" not in removed]
            if left:
                steps[rel] = replace(step, op=_Op.BASE, action=Action.KEPT)
                continue
        removed.add(rel)
    for rel, step in steps.items():
        if step.action is not None:
            reports[rel] = step.action
    entries = tuple(("/" + rel, reports[rel]) for rel in sorted(reports, key=_key))
    ordered = tuple(steps[rel] for rel in sorted(steps, key=_key))
    return MergePlan(base, host, sandbox, ordered, MergeReport(entries, len(ordered), had_base))


# -- applying --------------------------------------------------------------------------------------------


def _discard(parent_fd: int, name: str) -> None:
    st = _lstat(parent_fd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        fswalk.remove_at(parent_fd, name)
    else:
        os.unlink(name, dir_fd=parent_fd)


def _set_meta(fd: int, st: os.stat_result, owners: fswalk.OwnerMap | None) -> None:
    os.fchown(fd, *_owned(st, owners))
    os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears set-id bits
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _label(parent_fd: int, name: str, level: str | None) -> None:
    if level:
        selinux.label_at(parent_fd, name, level)


def _owned(st: os.stat_result, owners: fswalk.OwnerMap | None) -> tuple[int, int]:
    return (st.st_uid, st.st_gid) if owners is None else owners(st.st_uid, st.st_gid)


@dataclass(frozen=True)
class _Target:
    """Where a step writes: the entry `rel` of the tree `root`, reached as `name` in `fd`."""

    root: Path
    rel: str
    fd: int
    name: str
    ours: bool  # the base (ours: anything in the way is replaced) or the sandbox's tree (not trusted)


def _put(
    src_fd: int,
    name: str,
    dst: _Target,
    journal: MergeJournal,
    *,
    level: str | None,
    owners: fswalk.OwnerMap | None = None,
) -> bool:
    """Make the target a copy of src_fd/name (file, link, or a directory's owner and mode only).

    A file or link is written in the journal's work directory and renamed into place; what it replaces
    is kept there. In a tree that is not ours (the sandbox's) a directory in the way is left alone and
    False returned; in ours it is set aside."""
    src = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
    existing = _lstat(dst.fd, dst.name)
    if stat.S_ISDIR(src.st_mode):
        created = existing is None or not stat.S_ISDIR(existing.st_mode)
        if created:
            if existing is not None:
                journal.set_aside(dst.root, dst.rel, dst.fd, dst.name)
            os.mkdir(dst.name, 0o700, dir_fd=dst.fd)
            journal.created(dst.root, dst.rel)
        fd = _open_dir_at(dst.fd, dst.name)
        if fd is None:
            raise SandboxError(f"{dst.name} changed while it was being written")
        try:
            if not created:
                journal.meta_changes(dst.root, dst.rel, os.fstat(fd))
            _set_meta(fd, src, owners)
        finally:
            os.close(fd)
        if created:
            _label(dst.fd, dst.name, level)
        return True
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        if not dst.ours:
            return False
        journal.set_aside(dst.root, dst.rel, dst.fd, dst.name)
        existing = None
    tmp = journal.new_name()
    work = journal.fd
    try:
        if stat.S_ISLNK(src.st_mode):
            os.symlink(os.readlink(name, dir_fd=src_fd), tmp, dir_fd=work)
            os.chown(tmp, *_owned(src, owners), dir_fd=work, follow_symlinks=False)
            os.utime(tmp, ns=(src.st_atime_ns, src.st_mtime_ns), dir_fd=work, follow_symlinks=False)
        else:
            _write_copy(src_fd, name, work, tmp, owners)
        _label(work, tmp, level)
    except BaseException:
        _discard(work, tmp)  # its space is free again at once
        raise
    if existing is not None:
        journal.keep_old(dst.root, dst.rel, dst.fd, dst.name)
    os.rename(tmp, dst.name, src_dir_fd=work, dst_dir_fd=dst.fd)
    if existing is None:
        journal.created(dst.root, dst.rel)
    return True


def _write_copy(src_fd: int, name: str, dst_fd: int, dst_name: str, owners: fswalk.OwnerMap | None) -> None:
    in_fd = os.open(name, _READ_FLAGS, dir_fd=src_fd)
    try:
        src = os.fstat(in_fd)
        if not stat.S_ISREG(src.st_mode):
            raise SandboxError(f"{name} changed while it was being copied")
        out_fd = os.open(dst_name, _CREATE_FLAGS, 0o600, dir_fd=dst_fd)
        try:
            while chunk := os.read(in_fd, 1 << 20):
                os.write(out_fd, chunk)
            _set_meta(out_fd, src, owners)
            os.fsync(out_fd)
        finally:
            os.close(out_fd)
    finally:
        os.close(in_fd)


def _remove(dst: _Target, journal: MergeJournal, level: str | None) -> bool:
    """Remove an entry (it goes to the work directory); in a tree that is not ours only an empty
    directory (False when not empty)."""
    st = _lstat(dst.fd, dst.name)
    if st is None:
        return True
    if not stat.S_ISDIR(st.st_mode) or dst.ours:
        journal.set_aside(dst.root, dst.rel, dst.fd, dst.name)
        return True
    try:
        os.rmdir(dst.name, dir_fd=dst.fd)  # emptiness checked by the kernel: nothing the sandbox adds is lost
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    journal.removed_dir(dst.root, dst.rel, st, level)
    return True


def _parent_fd(root: Path, rel: str, journal: MergeJournal | None) -> int | None:
    """The directory that holds `rel`; with a journal (the base, ours) made where missing."""
    parts = rel.split("/")[:-1]
    if journal is None:
        return _open_dir(root, parts)
    if not root.is_dir():
        root.mkdir(mode=0o700)
        journal.created(root, "")
    fd = os.open(root, _DIR_FLAGS)
    for i, part in enumerate(parts):
        sub = _open_dir_at(fd, part)
        if sub is None:
            here = "/".join(parts[: i + 1])
            if _lstat(fd, part) is not None:
                journal.set_aside(root, here, fd, part)
            os.mkdir(part, 0o755, dir_fd=fd)
            journal.created(root, here)
            sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
        os.close(fd)
        fd = sub
    return fd


def apply_merge(
    plan: MergePlan, *, selinux_level: str | None = None, journal: MergeJournal | None = None
) -> MergeReport:
    """Carry out a plan: sandbox first, then base, for each path (so a rerun finishes an interrupted one).
    Writes and directory creations go parents first, removals children first.

    Every change is recorded in `journal` (the caller commits or rolls back, with its other changes);
    without one, the merge keeps its own, in a work directory beside the sandbox's tree, and a failure
    puts everything back before the error is raised."""
    own = journal is None
    j = journal or MergeJournal(work_dir_for(plan.sandbox.parent))
    actions = dict(plan.report.entries)
    try:
        for step in plan.steps:
            if step.host is not None:
                _apply_step(plan, step, actions, selinux_level, j)
        for step in reversed(plan.steps):
            if step.host is None:
                _apply_step(plan, step, actions, selinux_level, j)
    except BaseException as exc:
        if own:
            problems = j.rollback()
            if isinstance(exc, SandboxError):
                raise SandboxError(exc.message + undone_text(problems), exc.hint) from exc
        raise
    if own:
        j.commit()
    entries = tuple((p, actions[p]) for p, _ in plan.report.entries)
    return replace(plan.report, entries=entries)


def undone_text(problems: Sequence[str]) -> str:
    """How a failed merge ended, for its error message."""
    if not problems:
        return "; nothing was changed: the files merged before it were put back"
    return "; putting back the files merged before it failed too: " + "; ".join(problems)


def _apply_step(
    plan: MergePlan, step: _Step, actions: dict[str, Action], level: str | None, journal: MergeJournal
) -> None:
    path = "/" + step.rel
    name = step.rel.rpartition("/")[2]
    try:
        if step.op is not _Op.BASE:
            ok = False
            pfd = _parent_fd(plan.sandbox, step.rel, None)
            if pfd is not None:
                try:
                    target = _Target(plan.sandbox, step.rel, pfd, name, False)
                    ok = _sandbox_step(plan, step, target, level, journal)
                finally:
                    os.close(pfd)
            if not ok:
                actions[path] = Action.KEPT
        bfd = _parent_fd(plan.base, step.rel, journal if step.host is not None else None)
        if bfd is None:
            return  # nothing to remove: a directory above it went already
        try:
            base = _Target(plan.base, step.rel, bfd, name, True)
            if step.host is None:
                _remove(base, journal, None)
            else:
                hfd = _parent_fd(plan.host, step.rel, None)
                if hfd is None:
                    raise FileNotFoundError(errno.ENOENT, "no such directory on the host", path)
                try:
                    _put(hfd, name, base, journal, level=level)
                finally:
                    os.close(hfd)
        finally:
            os.close(bfd)
    except OSError as exc:
        raise SandboxError(f"cannot merge {path} into {plan.sandbox}: {exc.strerror or exc}") from exc


def _sandbox_step(
    plan: MergePlan, step: _Step, dst: _Target, level: str | None, journal: MergeJournal
) -> bool:
    if step.op is _Op.TAKE and _node_at(dst.fd, dst.name, plan.ids) != step.before:
        return False  # the sandbox changed it since the plan was made: keep the sandbox's
    if step.host is None:
        return _remove(dst, journal, level)
    hfd = _parent_fd(plan.host, step.rel, None)
    if hfd is None:
        raise FileNotFoundError(errno.ENOENT, "no such directory on the host", "/" + step.rel)
    try:
        if step.op is _Op.HOSTNEW:
            dst = replace(dst, rel=dst.rel + HOSTNEW_SUFFIX, name=dst.name + HOSTNEW_SUFFIX)
        owners = plan.ids.shift() if plan.ids else None
        return _put(hfd, step.rel.rpartition("/")[2], dst, journal, level=level, owners=owners)
    finally:
        os.close(hfd)


def merge(
    base: Path, host: Path, sandbox: Path, paths: Sequence[str], *, dry_run: bool = False
) -> MergeReport:
    """Plan and (unless dry_run) apply the three-way merge; see plan_merge."""
    plan = plan_merge(base, host, sandbox, paths)
    return plan.report if dry_run else apply_merge(plan)
