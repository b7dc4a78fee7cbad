"""How many more sandboxes the host lets run, and which of its limits says so.

Every running sandbox costs the host's systemd (PID 1) open descriptors, and the host's mount namespace
one mount (its /run).  When PID 1 runs out of descriptors, starts fail one by one with "Too many open
files" from systemd, halfway through a batch; so commands that start sandboxes check first
(``check_room``) and refuse the whole batch with the limit that stops it and how to lift it.

What a running sandbox costs PID 1 was measured (open descriptors of PID 1 before and after starting
sandboxes, systemd 252 and 257): one socket per service, two for the network namespace it keeps for
the sandbox (PrivateNetwork=, shared with its published ports' proxies), two for the IPC namespace
(PrivateIPC=), one listening socket per published port, and from systemd 255 on two process
descriptors (pidfds) of its processes.  Kernel limits on namespaces are per user, and the namespaces of
every sandbox are made by PID 1 as root: they are counted, as far as this system can see them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LimitReached

if TYPE_CHECKING:
    from .spec import SandboxSpec

PROC = Path("/proc")
PID1_RESERVE = 256  # descriptors left to PID 1 for itself: reloads, D-Bus clients, the journal
PIDFD_SINCE = 255  # first systemd version that keeps process descriptors of a service's processes
_NAMESPACES = (("net", "max_net_namespaces"), ("ipc", "max_ipc_namespaces"), ("mnt", "max_mnt_namespaces"))


@dataclass(frozen=True)
class Cost:
    """What one running sandbox takes of each limit."""

    descriptors: int
    mounts: int  # in PID 1's mount namespace: its /run
    namespaces: dict[str, int]  # "net", "ipc", "mnt": made by PID 1 for it


@dataclass(frozen=True)
class Limit:
    key: str  # "descriptors", "mounts", "net", ...
    what: str  # for people: "open files of PID 1 (RLIMIT_NOFILE)"
    limit: int
    in_use: int
    hint: str

    @property
    def left(self) -> int:
        reserve = PID1_RESERVE if self.key == "descriptors" else 0
        return max(0, self.limit - reserve - self.in_use)


def cost(private_network: bool, private_ipc: bool, published: int, systemd_version: int) -> Cost:
    descriptors = 1 + (2 if private_network else 0) + (2 if private_ipc else 0) + published
    if systemd_version >= PIDFD_SINCE:
        descriptors += 2
    namespaces = {"mnt": 1, "net": 1 if private_network else 0, "ipc": 1 if private_ipc else 0}
    return Cost(descriptors, 1, namespaces)


def spec_cost(spec: SandboxSpec, systemd_version: int) -> Cost:
    """The cost of a running sandbox of this spec."""
    from .isolation import private_network

    return cost(private_network(spec), spec.security.private_ipc, len(spec.network.publish), systemd_version)


def _soft_nofile(pid: int) -> int | None:
    try:
        text = (PROC / str(pid) / "limits").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return None if soft == "unlimited" else int(soft)
    return None


def _count(path: Path) -> int:
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _namespaces_in_use(kinds: Iterable[str]) -> dict[str, int]:
    """Distinct namespaces of each kind that processes of this system are in (a lower bound of what the
    kernel counts: a namespace kept only by a descriptor, or another container's, is not seen)."""
    seen: dict[str, set[str]] = {k: set() for k in kinds}
    for entry in os.listdir(PROC):
        if not entry.isdigit():
            continue
        for kind, found in seen.items():
            try:
                found.add(os.readlink(f"/proc/{entry}/ns/{kind}"))
            except OSError:
                continue
    return {k: len(v) for k, v in seen.items()}


def host_limits(*, count_namespaces: bool = False) -> list[Limit]:
    """The limits a running sandbox counts against, with what is in use now.  Needs root (PID 1's
    descriptors are readable by root only).  Namespaces in use are counted (a walk over every process)
    only with `count_namespaces`; otherwise the number of processes stands in for them, which is never
    less than the namespaces that processes are in, and is enough to check a start against limits that
    are usually far above it."""
    out: list[Limit] = []
    nofile = _soft_nofile(1)
    if nofile is not None:
        out.append(
            Limit(
                "descriptors",
                "open files of PID 1 (RLIMIT_NOFILE)",
                nofile,
                _count(PROC / "1" / "fd"),
                "raise PID 1's limit: in a container, start it with a higher RLIMIT_NOFILE "
                "(systemd-nspawn --rlimit=RLIMIT_NOFILE=N, docker --ulimit nofile=N, LimitNOFILE= of the "
                "container's unit); or use the profile 'dense' (PrivateIPC=no: two descriptors fewer "
                "per sandbox)",
            )
        )
    mount_max = _read_int(PROC / "sys/fs/mount-max")
    if mount_max is not None:
        try:
            mounts = len((PROC / "1" / "mountinfo").read_text().splitlines())
        except OSError:
            mounts = 0
        out.append(
            Limit(
                "mounts",
                "mounts in PID 1's mount namespace (fs.mount-max)",
                mount_max,
                mounts,
                "raise it: sysctl fs.mount-max=N",
            )
        )
    limits = {kind: _read_int(PROC / "sys/user" / name) for kind, name in _NAMESPACES}
    if count_namespaces:
        used = _namespaces_in_use(k for k, v in limits.items() if v is not None)
    else:
        processes = sum(1 for e in os.listdir(PROC) if e.isdigit())
        used = {kind: processes for kind in limits}
    for kind, name in _NAMESPACES:
        value = limits[kind]
        if value is not None:
            what = f"{kind} namespaces of root (user.{name})"
            out.append(Limit(kind, what, value, used[kind], f"raise it: sysctl user.{name}=N"))
    return out


def room(limits: Sequence[Limit], each: Cost) -> tuple[int, Limit | None]:
    """How many more sandboxes of this cost can start, and the limit that allows the fewest (None: no
    limit applies)."""
    best: tuple[int, Limit | None] = (2**31, None)
    for lim in limits:
        per = _per(lim, each)
        if per > 0 and lim.left // per < best[0]:
            best = (lim.left // per, lim)
    return best


def _per(lim: Limit, each: Cost) -> int:
    if lim.key == "descriptors":
        return each.descriptors
    if lim.key == "mounts":
        return each.mounts
    return each.namespaces.get(lim.key, 0)


def check_room(costs: Sequence[Cost], limits: Sequence[Limit] | None = None) -> None:
    """Refuse to start sandboxes of these costs (those not running yet) when a limit would stop some of
    them: LimitReached names the limit, how many can start, and how to lift it."""
    if not costs:
        return
    if limits is None:
        limits = host_limits()
    for lim in limits:
        needed = sum(_per(lim, c) for c in costs)
        if needed > lim.left:
            each = max(_per(lim, c) for c in costs)
            fit = lim.left // each if each else 0
            raise LimitReached(
                f"starting {len(costs)} sandbox{'es' if len(costs) != 1 else ''} needs {needed} more "
                f"{lim.what.split(' (')[0]}, but only {lim.left} are left of the limit {lim.limit} "
                f"({lim.in_use} in use): about {fit} more can start",
                lim.hint,
            )
