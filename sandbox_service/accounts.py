"""The host accounts of many sandboxes added or removed in one locked edit of passwd, group, shadow and
gshadow, as the shadow tools (useradd, groupadd, userdel, groupdel) make their edits.

`create` makes one account with groupadd and useradd; `apply` makes hundreds or thousands, and those
tools rewrite all four files for every account (30 ms each once the files hold 5000 accounts: minutes
for a large apply).  This module takes the same locks they take, in the same order: the global lock of
lckpwdf(3) (a write lock on /etc/.pwd.lock), then FILE.lock for each file (a link to a file holding our
PID, removed when the process that made it is gone), and writes each file once: the old one kept as
FILE-, the new one written beside it and renamed over it, with the old one's owner and mode.  The
entries are the ones useradd and groupadd write for the options identity.ensure_account gives them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .atomic import pid_alive
from .errors import AlreadyExists, SandboxError

FILES = ("passwd", "group", "shadow", "gshadow")
LOCK_TIMEOUT = 15.0  # seconds, as lckpwdf(3)
SHELL = "/usr/sbin/nologin"
HOME = "/nonexistent"


@dataclass(frozen=True)
class Account:
    """``NAME:x:ID:ID:COMMENT:/nonexistent:/usr/sbin/nologin`` and its group ``NAME:x:ID:``."""

    name: str
    id: int
    comment: str


def _lock_file(path: Path, deadline: float) -> Path:
    """FILE.lock the way the shadow tools make it: a link to FILE.PID holding our PID; a lock whose
    process is gone is stale and removed."""
    lock = path.with_name(path.name + ".lock")
    _remove_stale(path)
    mine = path.with_name(f"{path.name}.{os.getpid()}")
    mine.write_text(f"{os.getpid()}")
    try:
        while True:
            try:
                os.link(mine, lock)
                return lock
            except FileExistsError:
                try:
                    holder = int(lock.read_text().strip() or 0)
                except (OSError, ValueError):
                    holder = 0
                if holder and not pid_alive(holder):
                    with contextlib.suppress(FileNotFoundError):
                        lock.unlink()
                    continue
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"{lock} is held by process {holder}",
                        "another tool is changing the host's accounts; try again when it is done",
                    ) from None
                time.sleep(0.05)
    finally:
        mine.unlink(missing_ok=True)


def _remove_stale(path: Path) -> None:
    """FILE.PID files of processes that died holding or taking the lock (killed, say): nothing else
    removes them."""
    prefix = path.name + "."
    for entry in os.listdir(path.parent):
        pid = entry[len(prefix) :] if entry.startswith(prefix) else ""
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                (path.parent / entry).unlink()


@contextlib.contextmanager
def _locked(etc: Path) -> Iterator[None]:
    deadline = time.monotonic() + LOCK_TIMEOUT
    fd = os.open(etc / ".pwd.lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    locks: list[Path] = []
    try:
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise SandboxError(
                        f"cannot lock {etc / '.pwd.lock'}: {exc.strerror}",
                        "another tool is changing the host's accounts; try again when it is done",
                    ) from exc
                time.sleep(0.05)
        for name in FILES:
            if (etc / name).exists():
                locks.append(_lock_file(etc / name, deadline))
        yield
    finally:
        for lock in reversed(locks):
            lock.unlink(missing_ok=True)
        os.close(fd)  # drops the lockf lock


def _replace(path: Path, lines: list[str]) -> None:
    """FILE- is the old file, FILE the new one, with the old one's owner and mode (shadow's way)."""
    st = os.stat(path)
    old = path.read_bytes()
    for target, data in (
        (path.with_name(path.name + "-"), old),
        (path, "".join(lines).encode("utf-8", "surrogateescape")),
    ):
        tmp = path.with_name(path.name + "+")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, st.st_mode & 0o7777)
            os.fsync(fd)
        os.replace(tmp, target)


def _read(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    return [line + "\n" for line in text.splitlines()]


def _login_defs(etc: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (etc / "login.defs").read_text(errors="replace").splitlines():
            words = line.split()
            if len(words) >= 2 and not words[0].startswith("#"):
                out[words[0]] = words[1]
    return out


def add(root: Path, accounts: Sequence[Account]) -> list[Account]:
    """Add the accounts that are missing (an account that exists with the same IDs is kept); returns
    those added.  AlreadyExists for a name or ID that some other account holds."""
    etc = root / "etc"
    if not accounts:
        return []
    with _locked(etc):
        files = {name: _read(etc / name) if (etc / name).exists() else None for name in FILES}
        passwd, group = files["passwd"] or [], files["group"] or []
        users = {line.split(":", 1)[0]: line.split(":") for line in passwd}
        groups = {line.split(":", 1)[0]: line.split(":") for line in group}
        uids = {f[2]: f[0] for f in users.values() if len(f) > 2}
        gids = {f[2]: f[0] for f in groups.values() if len(f) > 2}
        new: list[Account] = []
        for a in accounts:
            ident = str(a.id)
            user, grp = users.get(a.name), groups.get(a.name)
            if user is not None and grp is not None and user[2:4] == [ident, ident] and grp[2] == ident:
                continue
            for kind, entry, taken in (("account", user, uids), ("group", grp, gids)):
                if entry is not None:
                    raise AlreadyExists(
                        f"host {kind} {a.name} exists with other IDs "
                        f"({':'.join(entry[2:4])}, expected {a.id})",
                        f"remove it (userdel/groupdel {a.name}) or choose another sandbox name",
                    )
                if ident in taken:
                    raise AlreadyExists(f"host ID {a.id} already belongs to {taken[ident]!r}, not {a.name}")
            new.append(a)
        if not new:
            return []
        defs = _login_defs(etc)
        days = int(time.time() // 86400)
        aging = f"{defs.get('PASS_MIN_DAYS', '0')}:{defs.get('PASS_MAX_DAYS', '99999')}"
        aging += f":{defs.get('PASS_WARN_AGE', '7')}"
        added = {
            "group": [f"{a.name}:x:{a.id}:\n" for a in new],
            "gshadow": [f"{a.name}:!::\n" for a in new],
            "passwd": [f"{a.name}:x:{a.id}:{a.id}:{a.comment}:{HOME}:{SHELL}\n" for a in new],
            "shadow": [f"{a.name}:!:{days}:{aging}:::\n" for a in new],
        }
        # groups first, as groupadd runs before useradd: a user never names a group that is missing
        for name in ("group", "gshadow", "passwd", "shadow"):
            lines = files[name]
            if lines is not None:
                _replace(etc / name, lines + added[name])
    _invalidate_caches(root)
    return new


def remove(root: Path, names: Sequence[str]) -> None:
    """Remove the accounts and groups of these names, where they exist."""
    etc = root / "etc"
    gone = set(names)
    if not gone:
        return
    with _locked(etc):
        for name in ("passwd", "shadow", "group", "gshadow"):
            path = etc / name
            if not path.exists():
                continue
            lines = _read(path)
            kept = [line for line in lines if line.split(":", 1)[0] not in gone]
            if len(kept) != len(lines):
                _replace(path, kept)
    _invalidate_caches(root)


def _invalidate_caches(root: Path) -> None:
    """What useradd does after its edit: tell nscd, where it runs, that the files changed."""
    from .run import run

    if root != Path("/"):
        return
    for nscd in ("/usr/sbin/nscd", "/sbin/nscd"):
        if os.path.exists(nscd):
            run([nscd, "--invalidate", "passwd"], check=False)
            run([nscd, "--invalidate", "group"], check=False)
            return
