"""Each sandbox's private range of host user and group IDs, and the host account of its root.

A sandbox's processes run in a user namespace that maps inner IDs 0..65535 onto host IDs BASE..BASE+65535
(spec.ID_RANGE_SIZE).  The sandbox's root is host ID BASE, which gets an account on the host
(``sb-NAME``) so that systemd can run the unit's commands as it (``User=``) and ``ps`` on the host shows
whose processes they are.  Files in the sandbox tree are owned by the shifted IDs.

The registry below makes sure no two sandboxes ever share a range; the directory name stays the
sandbox's identity: a spec file naming a range the registry does not give that name is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import AlreadyExists, InvalidInput, SandboxError
from .paths import Layout
from .registry import Registry
from .run import run
from .spec import ID_BASE_END, ID_BASE_FIRST, ID_RANGE_SIZE, check_id_base, check_name

if TYPE_CHECKING:
    from . import fswalk

_REGISTRY_VERSION = 1
ACCOUNT_MAX = 32  # useradd's limit on a user name
NOBODY = 65534


@dataclass(frozen=True)
class IdMap:
    """Inner ID <-> host ID of one sandbox."""

    base: int

    def to_host(self, inner: int) -> int:
        """An ID as stored on the host's disk; an ID the range cannot hold becomes the range's nobody."""
        return self.base + (inner if 0 <= inner < ID_RANGE_SIZE else NOBODY)

    def to_inner(self, host: int) -> int | None:
        return host - self.base if self.base <= host < self.base + ID_RANGE_SIZE else None

    def shift(self) -> fswalk.OwnerMap:
        """For copies from the host: host ID n becomes this range's n (an ID above it, its nobody)."""
        from . import fswalk

        return fswalk.remap(fswalk.HOST, fswalk.IdRange(self.base))

    def rebase_from(self, source: IdMap) -> fswalk.OwnerMap:
        """For clone: an ID of the source sandbox's range becomes the same inner ID in this one; host
        root's files (the tree's top, the launcher's) stay host root's; any other ID becomes this range's
        nobody."""
        from . import fswalk

        moved = fswalk.remap(fswalk.IdRange(source.base), fswalk.IdRange(self.base))

        def owner(uid: int, gid: int) -> tuple[int, int]:
            new_uid, new_gid = moved(uid, gid)
            return (0 if uid == 0 else new_uid), (0 if gid == 0 else new_gid)

        return owner


def account_name(name: str) -> str:
    """``sb-NAME``, or for long names a shortened form with a hash (user names have at most 32 bytes)."""
    plain = f"sb-{name}"
    if len(plain) <= ACCOUNT_MAX:
        return plain
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"sb-{name[: ACCOUNT_MAX - 3 - 9]}-{digest}"


def _parse_ranges(entries: dict[str, object]) -> dict[str, int]:
    seen: dict[int, str] = {}
    out: dict[str, int] = {}
    for name, base in entries.items():
        check_name(name)
        if not isinstance(base, int) or isinstance(base, bool):
            raise ValueError(f"the range of {name!r} is not an integer")
        check_id_base(base)
        if base in seen:
            raise ValueError(f"{name!r} and {seen[base]!r} hold the same range {base}")
        seen[base] = name
        out[name] = base
    return out


class IdRegistry:
    """Which sandbox holds which ID range (``.id-registry.json`` beside the sandboxes)."""

    def __init__(self, path: Path, passwd: Path | None = None) -> None:
        self.path = path
        self._registry: Registry[int] = Registry(
            path,
            key="ranges",
            version=_REGISTRY_VERSION,
            what="ID range registry",
            parse=_parse_ranges,
            repair_hint="each sandbox's range is also in its sandbox.yaml (id_base)",
        )
        self._passwd = passwd

    def allocate(self, name: str) -> int:
        """The range of `name`, giving it the lowest free one the first time it is asked for.  A range
        in which the host already has an account (another tool's container, say) is skipped."""
        check_name(name)
        with self._registry.locked():
            ranges = self._registry.load()
            if name in ranges:
                return ranges[name]
            base = self._first_free(ranges)
            if base is not None:
                ranges[name] = base
                self._registry.store(ranges)
                return base
        raise SandboxError(
            f"all {len(ranges)} ID ranges are in use",
            "remove sandboxes that are no longer needed to free their ranges",
        )

    def allocate_many(self, names: list[str]) -> dict[str, int]:
        """allocate() for many names under one lock, reading and writing the registry once (apply makes
        thousands of sandboxes; one read-modify-write each would be quadratic)."""
        for name in names:
            check_name(name)
        with self._registry.locked():
            ranges = self._registry.load()
            taken = set(ranges.values()) | self._host_ranges()
            free = (b for b in range(ID_BASE_FIRST, ID_BASE_END, ID_RANGE_SIZE) if b not in taken)
            out: dict[str, int] = {}
            for name in names:
                if name not in ranges:
                    base = next(free, None)
                    if base is None:
                        raise SandboxError(
                            f"all {len(ranges)} ID ranges are in use",
                            "remove sandboxes that are no longer needed to free their ranges",
                        )
                    ranges[name] = base
                out[name] = ranges[name]
            self._registry.store(ranges)
        return out

    def release_many(self, names: list[str]) -> None:
        with self._registry.locked():
            ranges = self._registry.load()
            released = [n for n in names if ranges.pop(n, None) is not None]
            if released:
                self._registry.store(ranges)

    def peek(self, name: str) -> int:
        """The range `name` holds, or the one allocate() would give it now (nothing is stored)."""
        check_name(name)
        ranges = self._registry.load()
        if name in ranges:
            return ranges[name]
        return self._first_free(ranges) or ID_BASE_FIRST

    def _first_free(self, ranges: dict[str, int]) -> int | None:
        taken = set(ranges.values()) | self._host_ranges()
        return next((b for b in range(ID_BASE_FIRST, ID_BASE_END, ID_RANGE_SIZE) if b not in taken), None)

    def claim(self, name: str, base: int) -> None:
        """Record that `name` holds `base` (offline upgrade of a spec that already names its range)."""
        check_name(name)
        check_id_base(base)
        with self._registry.locked():
            ranges = self._registry.load()
            holder = next((n for n, b in ranges.items() if b == base), None)
            if holder not in (None, name):
                raise AlreadyExists(f"ID range {base} already belongs to sandbox {holder!r}")
            ranges[name] = base
            self._registry.store(ranges)

    def release(self, name: str) -> None:
        check_name(name)
        self._registry.release(name)

    def lookup(self, name: str) -> int | None:
        return self._registry.load().get(name)

    def ranges(self) -> dict[str, int]:
        return self._registry.load()

    def _host_ranges(self) -> set[int]:
        """Range starts in which the host's passwd or group files have an ID."""
        found: set[int] = set()
        for path in (self._passwd, self._passwd.with_name("group") if self._passwd else None):
            if path is None:
                continue
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                fields = line.split(":")
                if len(fields) > 2 and fields[2].isdigit():
                    value = int(fields[2])
                    if ID_BASE_FIRST <= value < ID_BASE_END:
                        found.add(value - value % ID_RANGE_SIZE)
        return found


def registry_for(layout: Layout) -> IdRegistry:
    return IdRegistry(layout.sandbox_base / ".id-registry.json", passwd=layout.host("/etc/passwd"))


_IDENTITY_HINT = (
    "the directory name is the sandbox's identity; do not copy sandbox directories by hand "
    "(use: sandbox-service clone)"
)


def verify_range(layout: Layout, name: str, base: int, held: int | bool | None = False) -> None:
    """A spec's id_base must be the range the registry gave that name: a copied or edited spec cannot
    make one sandbox run in another's IDs.  `held`: the registry's answer when the caller read it
    already (checking many sandboxes), else it is looked up."""
    if held is False:
        held = registry_for(layout).lookup(name)
    if held != base:
        raise InvalidInput(
            f"sandbox {name!r}: its spec names ID range {base}, but the registry gives it "
            + ("none" if held is None else str(held)),
            _IDENTITY_HINT,
        )


def verify_name(path: Path, name: str, spec_name: str) -> None:
    """A spec file names the sandbox of the directory it lies in."""
    if spec_name != name:
        raise InvalidInput(
            f"{path} names sandbox {spec_name!r}, but it lies in the directory of {name!r}", _IDENTITY_HINT
        )


# --------------------------------------------------------------------------------------------------------
# The host account of the sandbox's root


def _account_tools(layout: Layout) -> list[str]:
    return [] if layout.root == Path("/") else ["--root", str(layout.root)]


def _passwd_entry(layout: Layout, account: str) -> list[str] | None:
    try:
        lines = layout.host("/etc/passwd").read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if fields[0] == account:
            return fields
    return None


def account_comment(name: str) -> str:
    return f"root of sandbox {name} (sandbox-service)"


def ensure_account(layout: Layout, name: str, base: int) -> bool:
    """Create ``sb-NAME`` with UID and GID `base` unless it exists with them; True when created."""
    account = account_name(name)
    entry = _passwd_entry(layout, account)
    if entry is not None:
        if len(entry) > 3 and entry[2] == str(base) and entry[3] == str(base):
            return False
        raise AlreadyExists(
            f"host account {account} exists with other IDs ({':'.join(entry[2:4])}, expected {base})",
            f"remove it (userdel {account}) or choose another sandbox name",
        )
    tools = _account_tools(layout)
    run(["groupadd", *tools, "--gid", str(base), account], hint="groupadd is part of the passwd package")
    useradd = ["useradd", *tools, "--uid", str(base), "--gid", str(base), "--no-create-home"]
    useradd += [
        "--no-user-group",
        "--no-log-init",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
    ]
    useradd += ["--comment", account_comment(name), account]
    try:
        run(useradd)
    except SandboxError:
        run(["groupdel", *tools, account], check=False)
        raise
    return True


def _group_entry(layout: Layout, account: str) -> list[str] | None:
    try:
        lines = layout.host("/etc/group").read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((f for f in (line.split(":") for line in lines) if f[0] == account), None)


def account_is_sandboxes(layout: Layout, name: str, base: int | None) -> bool:
    """Whether the host has an account or group ``sb-NAME`` that the tool made for sandbox `name`: the
    user by its comment (or its ID, when the range `base` is known), a group alone by its ID.  An
    account of that name that someone else made is never taken for the sandbox's."""
    account = account_name(name)
    user = _passwd_entry(layout, account)
    if user is not None:
        return (len(user) > 4 and user[4] == account_comment(name)) or (
            base is not None and len(user) > 3 and user[2] == str(base) and user[3] == str(base)
        )
    group = _group_entry(layout, account)
    return group is not None and base is not None and len(group) > 2 and group[2] == str(base)


def remove_account(layout: Layout, name: str) -> None:
    account = account_name(name)
    tools = _account_tools(layout)
    if _passwd_entry(layout, account) is not None:
        run(["userdel", *tools, account])
    if _group_entry(layout, account) is not None:
        run(["groupdel", *tools, account])
