"""Owner mapping for copies between the host and sandboxes with their own user-namespace id ranges.

A copier applies an OwnerMap to every entry it writes (files, directories, links). A sandbox with an id
range sees host id `base + n` as its own id `n`; copying from the host into it shifts ids up by its base,
and cloning from one sandbox into another re-bases them. An id that falls outside the range it is mapped
from has no meaning inside the target, so it is never kept as it is: it becomes the target's nobody.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

OwnerMap = Callable[[int, int], tuple[int, int]]  # (uid, gid) as on disk -> (uid, gid) to write

RANGE_SIZE = 65536
NOBODY = 65534  # the overflow id, as the kernel shows unmapped ids inside a user namespace


@dataclass(frozen=True)
class IdRange:
    """Host ids base .. base+size-1, which a sandbox sees as 0 .. size-1. The host itself: base 0."""

    base: int
    size: int = RANGE_SIZE

    def __post_init__(self) -> None:
        if self.base < 0 or self.size <= NOBODY or self.base + self.size > 1 << 32:
            raise ValueError(f"not an id range: base {self.base}, size {self.size}")

    def inner(self, host_id: int) -> int | None:
        """The id inside the range for a host id, None when the host id is not in it."""
        n = host_id - self.base
        return n if 0 <= n < self.size else None


HOST = IdRange(0)


def identity(uid: int, gid: int) -> tuple[int, int]:
    return uid, gid


def remap(source: IdRange, target: IdRange) -> OwnerMap:
    """Ids of the source range moved to the same place in the target range; any other id becomes the
    target's nobody. remap(HOST, r) is a copy from the host into a sandbox with range r; remap(a, b) a
    clone from a sandbox with range a into one with range b."""

    def one(host_id: int) -> int:
        n = source.inner(host_id)
        return target.base + (NOBODY if n is None or n >= target.size else n)

    def owner(uid: int, gid: int) -> tuple[int, int]:
        return one(uid), one(gid)

    return owner
