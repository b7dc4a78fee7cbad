"""What `list` and the checks against other sandboxes need of every sandbox, without parsing every spec.

A summary (name, kind, wrapped unit, network) of each sandbox is cached in ``.index.json`` beside the
sandboxes, each entry stamped with the inode, size, modification and change times of the sandbox.yaml it
was read from.  A reader stats every spec file (cheap) and parses only those whose stamp differs (new or
rewritten since), so the cache is never trusted past a change of its file and needs no writer to keep it
up to date: every spec write replaces the file (atomic rename: a new inode and times).  Root refreshes
the cache file when it found stale entries; anyone else just reads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .paths import SPEC_FILE_NAME, Layout

if TYPE_CHECKING:
    from .network.model import NetworkSpec

INDEX_NAME = ".index.json"
_VERSION = 1


@dataclass(frozen=True)
class Summary:
    """One sandbox as `list` shows it, what the network checks compare (NetworkSpec data), and the
    group of apply documents it was made for."""

    name: str
    spec_name: str  # the name its spec file gives (differs only in a copied or edited spec)
    kind: str
    source_unit: str | None
    id_base: int | None
    network_data: dict[str, Any]
    apply_group: str | None

    @functools.cached_property
    def network(self) -> NetworkSpec:
        """Decoded only when a check asks for it (most sandboxes have the default: no decoding)."""
        from .network.model import NetworkSpec
        from .specfile import from_data

        if self.network_data == _default_network_data():
            return NetworkSpec()
        spec: NetworkSpec = from_data(NetworkSpec, self.network_data, f"index entry of {self.name}.network")
        return spec


@functools.cache
def _default_network_data() -> dict[str, Any]:
    from .network.model import NetworkSpec
    from .specfile import to_data

    data: dict[str, Any] = to_data(NetworkSpec())
    return data


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _entry(summary: Summary, stamp: list[int]) -> dict[str, Any]:
    return {
        "stamp": stamp,
        "spec_name": summary.spec_name,
        "kind": summary.kind,
        "source_unit": summary.source_unit,
        "id_base": summary.id_base,
        "network": summary.network_data,
        "apply_group": summary.apply_group,
    }


def _from_entry(name: str, entry: Any) -> Summary | None:
    try:
        return Summary(
            name=name,
            spec_name=str(entry["spec_name"]),
            kind=str(entry["kind"]),
            source_unit=None if entry["source_unit"] is None else str(entry["source_unit"]),
            id_base=None if entry["id_base"] is None else int(entry["id_base"]),
            network_data=dict(entry["network"]),
            apply_group=None if entry["apply_group"] is None else str(entry["apply_group"]),
        )
    except (KeyError, TypeError, ValueError):
        return None  # an entry we cannot read is parsed anew


def _summarise(layout: Layout, name: str) -> Summary:
    from . import specfile

    spec = specfile.load(layout.spec_file(name))
    return Summary(
        name=name,
        spec_name=spec.name,
        kind=spec.kind.value,
        source_unit=spec.source_unit,
        id_base=spec.id_base,
        network_data=specfile.to_data(spec.network),
        apply_group=spec.apply_group,
    )


def _load(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        return {}
    entries = data.get("sandboxes")
    return entries if isinstance(entries, dict) else {}


def _spec_files(layout: Layout) -> Iterator[tuple[str, os.stat_result]]:
    try:
        with os.scandir(layout.sandbox_base) as it:
            dirs = sorted(
                e.name for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:
        return
    base = str(layout.sandbox_base)  # one path built, not one per sandbox: thousands of them
    for name in dirs:
        try:
            st = os.stat(f"{base}/{name}/{SPEC_FILE_NAME}", follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            continue
        yield name, st


def summaries(layout: Layout) -> list[Summary]:
    """Every sandbox on disk (a directory with a sandbox.yaml), by name; specs changed since the cache was
    written are parsed (raising for a broken one, as loading it would)."""
    path = layout.sandbox_base / INDEX_NAME
    cached = _load(path)
    fresh: dict[str, Any] = {}
    out: list[Summary] = []
    changed = False
    for name, st in _spec_files(layout):
        stamp = _stamp(st)
        entry = cached.get(name)
        summary = (
            _from_entry(name, entry) if isinstance(entry, dict) and entry.get("stamp") == stamp else None
        )
        if summary is None:
            summary = _summarise(layout, name)
            changed = True
        fresh[name] = _entry(summary, stamp)
        out.append(summary)
    if (changed or len(fresh) != len(cached)) and os.geteuid() == 0:
        _store(path, fresh)
    return out


def _store(path: Path, entries: dict[str, Any]) -> None:
    from .atomic import write_atomic

    text = json.dumps({"version": _VERSION, "sandboxes": entries}, separators=(",", ":"))
    with contextlib.suppress(OSError):  # a cache: a read-only tree (--root image) just goes without
        write_atomic(path, text + "\n", mode=0o644)
