"""Removing a tree that a sandbox owned: by descriptor, iteratively, never following a link.

Every directory is opened with O_NOFOLLOW under its parent's descriptor and checked to be the directory
that was listed; entries are unlinked with unlinkat on that descriptor, directories removed with
AT_REMOVEDIR once empty. A link is removed as a link. The walk keeps a bounded number of descriptors
(fds.DirChain), so depth is no limit. A directory whose owner took away its permissions (mode 000) is made
0700 through its own descriptor before the walk goes in, which matters where the tool lacks
CAP_DAC_OVERRIDE. A directory on another file system (something mounted inside the tree) stops the
removal with an error: what is mounted there is not the sandbox's to lose.

Immutable and append-only files (chattr +i/+a) are not handled: setting those attributes needs
CAP_LINUX_IMMUTABLE, which no sandbox is given, so a sandbox cannot leave such a file behind; one the
administrator made fails the removal with the kernel's EPERM.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import SandboxError
from .fds import DIR_FLAGS, DirChain, TreeChanged, lstat_at, open_dir_chmod

_RETRIES = 5  # times an entry that keeps changing under the walk is listed again before giving up


def remove_path(path: Path) -> None:
    """Remove path (a tree, a file or a link) if it exists. Its parent directory is opened by path, so it
    must not be in a tree the sandbox can change; below it, nothing is trusted."""
    try:
        parent = os.open(path.parent, DIR_FLAGS & ~os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        remove_at(parent, path.name, shown=str(path))
    finally:
        os.close(parent)


def remove_at(dir_fd: int, name: str, *, shown: str | None = None) -> None:
    """Remove the entry `name` of the directory dir_fd, and everything below it; nothing if it is gone."""
    where = shown or name
    try:
        _remove(dir_fd, name, where)
    except TreeChanged as exc:
        raise SandboxError(
            f"cannot remove {where}: a directory in it was moved while it was being removed",
            "stop whatever is writing there and run the command again",
        ) from exc
    except OSError as exc:
        raise SandboxError(f"cannot remove {where}: {exc.strerror or exc}") from exc


def _remove(dir_fd: int, name: str, where: str) -> None:
    for _ in range(_RETRIES):
        st = lstat_at(dir_fd, name)
        if st is None:
            return
        if not stat.S_ISDIR(st.st_mode):
            if _unlink(dir_fd, name):
                return
            continue
        try:
            fd, st = _open_for_removal(dir_fd, name, st)
        except TreeChanged:
            continue
        chain = DirChain(fd, st)
        try:
            _empty(chain, st.st_dev, where)
        finally:
            chain.close()
        if _rmdir(dir_fd, name):
            return
    raise SandboxError(f"cannot remove {where}: it keeps changing", "stop whatever writes there, and retry")


def _empty(chain: DirChain, dev: int, where: str) -> None:
    """Empty the chain's top directory: depth first, one level of pending names per open directory."""
    pending = [_names(chain.fd)]
    path: list[str] = []
    retries: list[int] = [0]
    while pending:
        names = pending[-1]
        if not names:
            pending.pop()
            retries.pop()
            if not path:
                return
            done = path.pop()
            chain.pop()
            if not _rmdir(chain.fd, done):  # written to meanwhile: go through it again
                retries[-1] += 1
                if retries[-1] > _RETRIES:
                    raise SandboxError(f"cannot remove {where}/{'/'.join([*path, done])}: it keeps filling")
                pending[-1].append(done)
            continue
        name = names.pop()
        st = lstat_at(chain.fd, name)
        if st is None:
            continue
        if not stat.S_ISDIR(st.st_mode):
            if not _unlink(chain.fd, name):
                names.append(name)  # became a directory meanwhile
            continue
        if st.st_dev != dev:
            rel = "/".join([*path, name])
            raise SandboxError(
                f"cannot remove {where}: another file system is mounted at {rel}",
                f"unmount {where}/{rel} first",
            )
        try:
            fd, st = _open_for_removal(chain.fd, name, st)
        except TreeChanged:
            names.append(name)
            continue
        chain.push(fd, st)
        pending.append(_names(fd))
        path.append(name)
        retries.append(0)


def _open_for_removal(dir_fd: int, name: str, listed: os.stat_result) -> tuple[int, os.stat_result]:
    """The directory opened, and made 0700 when it is not: listing it and unlinking in it then need no
    capability that overrides its mode."""
    fd, st = open_dir_chmod(dir_fd, name, listed)
    if st.st_mode & 0o700 != 0o700:
        try:
            os.fchmod(fd, 0o700)
        except BaseException:
            os.close(fd)
            raise
    return fd, st


def _names(fd: int) -> list[str]:
    return os.listdir(fd)


def _unlink(dir_fd: int, name: str) -> bool:
    """False when the name turned into a directory meanwhile."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        return False
    return True


def _rmdir(dir_fd: int, name: str) -> bool:
    """False when the directory is not empty (something was written into it meanwhile)."""
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        if exc.errno == errno.ENOTDIR:  # replaced by a file or link: the next round unlinks it
            return False
        raise
    return True
