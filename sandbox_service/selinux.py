"""SELinux for sandboxes: one MCS category pair per sandbox, the contexts built from it, file labels.

This is the only module that uses libselinux.  Its Python bindings are imported inside the functions that
need them, so the rest of the program works on hosts where they are not installed.

Every sandbox runs as ``sandbox_service_t`` and its files are ``sandbox_service_file_t`` (see
``selinux/sandbox_service.te``); what keeps two sandboxes apart is the category pair in the level,
``s0:cA,cB``.  The registry below makes sure no two live sandboxes ever hold the same pair.
"""

from __future__ import annotations

import errno
import importlib
import os
import re
import secrets
from pathlib import Path
from types import ModuleType

from . import fswalk
from .errors import InvalidInput, NotFound, PermissionDenied, SandboxError
from .registry import Registry
from .spec import SELinuxMode, check_name

DOMAIN_TYPE = "sandbox_service_t"
FILE_TYPE = "sandbox_service_file_t"
CATEGORIES = 1024  # c0..c1023, what Debian's and Fedora's MCS policies define
XATTR_NAME = "security.selinux"

_REGISTRY_VERSION = 1
_LEVEL_RE = re.compile(r"s0(?::c([0-9]+),c([0-9]+))?")
# Random draws before falling back to listing every free pair.  While fewer than half of the pairs are
# taken, a draw misses with probability below 1/2, so reaching the fallback is practically impossible
# until the space is nearly full.
_RANDOM_TRIES = 64


def _libselinux() -> ModuleType | None:
    """The libselinux Python bindings, or None when they are not installed."""
    try:
        return importlib.import_module("selinux")
    except ImportError:
        return None


def _parse_pair(level: str) -> tuple[int, int] | None:
    """(A, B) for "s0:cA,cB", None for plain "s0"; InvalidInput for anything else."""
    m = _LEVEL_RE.fullmatch(level)
    if m is None:
        raise InvalidInput(
            f"invalid SELinux level {level!r}", "a sandbox level looks like 's0:c12,c345' (or plain 's0')"
        )
    if m.group(1) is None:
        return None
    a, b = int(m.group(1)), int(m.group(2))
    if not 0 <= a < b < CATEGORIES:
        raise InvalidInput(
            f"invalid SELinux level {level!r}",
            f"the two categories must be different, in increasing order and at most c{CATEGORIES - 1}",
        )
    return a, b


def _format_pair(a: int, b: int) -> str:
    return f"s0:c{a},c{b}"


def process_context(level: str) -> str:
    """The context a sandboxed service runs in (what goes into the unit's SELinuxContext=)."""
    _parse_pair(level)
    return f"system_u:system_r:{DOMAIN_TYPE}:{level}"


def file_context(level: str) -> str:
    """The label of a sandbox's files."""
    _parse_pair(level)
    return f"system_u:object_r:{FILE_TYPE}:{level}"


# --------------------------------------------------------------------------------------------------------
# The category registry


class McsRegistry:
    """Which sandbox holds which category pair (registry.py: a JSON file changed under a lock)."""

    def __init__(self, path: Path, categories: int = CATEGORIES) -> None:
        if not 2 <= categories <= CATEGORIES:
            raise InvalidInput(f"category count {categories} is out of range", f"use 2 to {CATEGORIES}")
        self._registry: Registry[str] = Registry(
            path,
            key="pairs",
            version=_REGISTRY_VERSION,
            what="MCS registry",
            parse=_parse_pairs,
            repair_hint="removing it makes every sandbox get a new category pair, "
            "so their files must be labelled again",
        )
        self.path = path
        self.lock_path = self._registry.lock_path
        self.categories = categories

    def allocate(self, name: str) -> str:
        """The level of sandbox `name`, picking a free pair at random the first time it is asked for."""
        check_name(name)
        with self._registry.locked():
            pairs = self._registry.load()
            if name in pairs:
                return pairs[name]
            taken = {pair for pair in map(_parse_pair, pairs.values()) if pair is not None}
            level = _format_pair(*self._pick_free(taken))
            pairs[name] = level
            self._registry.store(pairs)
            return level

    def release(self, name: str) -> None:
        """Give the pair of `name` back.  Releasing a name that holds nothing does nothing."""
        check_name(name)
        self._registry.release(name)

    def lookup(self, name: str) -> str | None:
        return self._registry.load().get(name)

    def pairs(self) -> dict[str, str]:
        """Every sandbox name with its level."""
        return self._registry.load()

    def _pick_free(self, taken: set[tuple[int, int]]) -> tuple[int, int]:
        rng = secrets.SystemRandom()
        for _ in range(_RANDOM_TRIES):
            a, b = sorted(rng.sample(range(self.categories), 2))
            if (a, b) not in taken:
                return a, b
        free = [
            (a, b)
            for a in range(self.categories)
            for b in range(a + 1, self.categories)
            if (a, b) not in taken
        ]
        if not free:
            raise SandboxError(
                f"all {len(taken)} MCS category pairs in {self.path} are in use",
                "remove sandboxes that are no longer needed to free their pairs",
            )
        return rng.choice(free)


def _parse_pairs(pairs: dict[str, object]) -> dict[str, str]:
    seen: dict[tuple[int, int], str] = {}
    result: dict[str, str] = {}
    for name, level in pairs.items():
        if not isinstance(level, str):
            raise ValueError(f"the level of {name!r} is not a string")
        check_name(name)
        pair = _parse_pair(level)
        if pair is None:
            raise ValueError(f"{name!r} holds {level!r}, which has no categories")
        if pair in seen:
            raise ValueError(f"{name!r} and {seen[pair]!r} hold the same pair {level}")
        seen[pair] = name
        result[name] = level
    return result


# --------------------------------------------------------------------------------------------------------
# File labels


def _set_label(path: str, context: str, shown: str | None = None) -> None:
    """Label one file, or a symlink itself, never what it points to. `shown`: the name errors give."""
    lib = _libselinux()
    try:
        if lib is not None:
            lib.lsetfilecon(path, context)
        else:
            # Without the bindings SELinux is not in use on this host, and then the kernel stores the
            # security.selinux attribute like any other extended attribute.  Writing it directly gives the
            # same bytes libselinux writes (the context plus a trailing NUL), so the labels are already in
            # place when the host later turns SELinux on.  (With the bindings present, lsetfilecon() also
            # works while SELinux is disabled: it writes the same attribute; checked on Debian 12.)
            os.setxattr(path, XATTR_NAME, context.encode() + b"\0", follow_symlinks=False)
    except OSError as e:
        raise _label_error(shown or path, context, e) from e


def _label_error(path: str, context: str, e: OSError) -> SandboxError:
    if e.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(f"cannot label {path}: {e.strerror}", "run as root")
    if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
        return SandboxError(
            f"cannot label {path}: the filesystem does not support SELinux labels",
            "keep /var/lib/sandbox-service on a filesystem with extended attributes (ext4, xfs, btrfs)",
        )
    if e.errno == errno.EINVAL:
        return SandboxError(
            f"the kernel rejected the label {context} on {path}",
            "load the policy module first: semodule -i sandbox_service.pp",
        )
    return SandboxError(f"cannot label {path}: {e.strerror or e}")


def label_tree(path: Path, level: str) -> int:
    """Label `path` and everything below it for the sandbox at `level`; return how many entries were labelled.

    The parent of `path` is opened by path; below it the tree is walked by descriptor (see label_at).
    """
    context = file_context(level)  # a bad level fails before anything is opened
    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"cannot label {path}: it does not exist") from None
    try:
        if not _exists_at(parent, path.name):
            raise NotFound(f"cannot label {path}: it does not exist")
        return _label_entries(parent, path.name, context, str(path))
    finally:
        os.close(parent)


def label_at(dir_fd: int, name: str, level: str) -> int:
    """Label the entry `name` of the directory dir_fd and everything below it; return how many entries.

    The tree may be one a sandbox changes while it is labelled: it is walked by descriptor, iteratively
    (fswalk.entries_at), each entry labelled through /proc/self/fd/N/NAME, N being the descriptor of its
    directory, so no path in the tree is looked up again and no link is followed (lsetfilecon labels a
    link itself). Another file system mounted inside is not entered.
    """
    return _label_entries(dir_fd, name, file_context(level), name)


def _label_entries(dir_fd: int, name: str, context: str, shown: str) -> int:
    count = 0
    try:
        for parent, entry, _st in fswalk.entries_at(dir_fd, name):
            _set_label(f"/proc/self/fd/{parent}/{entry}", context, shown)
            count += 1
    except fswalk.TreeChanged as e:
        raise SandboxError(f"cannot label {shown}: a directory in it was moved meanwhile") from e
    except OSError as e:
        raise _label_error(shown, context, e) from e
    return count


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def read_label(path: Path) -> str | None:
    """The label stored on `path` (a symlink's own label, not its target's), None when it has none."""
    try:
        raw = os.getxattr(path, XATTR_NAME, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        if e.errno == errno.ENOENT:
            raise NotFound(f"cannot read the label of {path}: it does not exist") from e
        raise SandboxError(f"cannot read the label of {path}: {e.strerror or e}") from e
    return raw.rstrip(b"\0").decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------------------
# Host state


def selinux_enabled_on_host() -> bool:
    """True when the kernel enforces or logs SELinux decisions; False without the libselinux bindings."""
    lib = _libselinux()
    if lib is None:
        return False
    return bool(lib.is_selinux_enabled() == 1)


def resolve_mode(mode: SELinuxMode) -> bool:
    """Whether a sandbox gets SELinux contexts and labels for the mode the user chose."""
    if mode is SELinuxMode.DISABLED:
        return False
    if mode is SELinuxMode.AUTO:
        return selinux_enabled_on_host()
    if _libselinux() is None:
        raise InvalidInput(
            "SELinux was requested but the libselinux Python bindings are not installed",
            "install python3-selinux (Debian, Ubuntu) or python3-libselinux (Fedora), "
            "or choose the SELinux mode 'auto' or 'disabled'",
        )
    return True
