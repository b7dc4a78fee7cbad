"""Small host-wide registries (which sandbox holds which MCS pair, which ID range): one JSON file each.

Every change is a read-modify-write under an exclusive flock(2) on a lock file next to the registry, and
the new file replaces the old one atomically.  Readers therefore never need the lock: they always see
either the old or the new complete file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

from .atomic import write_atomic
from .errors import InvalidInput, PermissionDenied, SandboxError

V = TypeVar("V")


class Registry(Generic[V]):
    """``{sandbox name: value}`` kept in ``path`` as ``{"version": N, key: {...}}``.

    ``parse`` checks the whole mapping read from disk (raising ValueError or InvalidInput on anything
    wrong); ``what`` names the registry in messages, ``repair_hint`` says what removing it would cost.
    """

    def __init__(
        self,
        path: Path,
        *,
        key: str,
        version: int,
        what: str,
        parse: Callable[[dict[str, object]], dict[str, V]],
        repair_hint: str,
    ) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._key = key
        self._version = version
        self._what = what
        self._parse = parse
        self._repair_hint = repair_hint

    @contextmanager
    def locked(self) -> Iterator[None]:
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except PermissionError as e:
            raise PermissionDenied(
                f"cannot open the {self._what} lock {self.lock_path}: {e.strerror}", "run as root"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the only descriptor drops the lock

    def load(self) -> dict[str, V]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except PermissionError as e:
            raise PermissionDenied(
                f"cannot read the {self._what} {self.path}: {e.strerror}", "run as root"
            ) from e
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != self._version:
                raise ValueError(f"expected a JSON object with version {self._version}")
            entries = data.get(self._key)
            if not isinstance(entries, dict):
                raise ValueError(f"{self._key!r} is not an object")
            return self._parse(entries)
        except (ValueError, InvalidInput) as e:
            raise SandboxError(
                f"the {self._what} {self.path} is corrupt: {e}",
                f"repair or remove {self.path}; {self._repair_hint}",
            ) from e

    def store(self, entries: dict[str, V]) -> None:
        data = {"version": self._version, self._key: dict(sorted(entries.items()))}
        write_atomic(self.path, json.dumps(data, indent=2) + "\n", 0o644)

    def release(self, name: str) -> None:
        """Forget `name`.  Releasing a name that holds nothing does nothing."""
        with self.locked():
            entries = self.load()
            if entries.pop(name, None) is not None:
                self.store(entries)
