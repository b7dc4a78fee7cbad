"""`copy`: add host paths to an existing sandbox, such as what its service turned out to need (the
diagnosis names them), and record them in its spec so that `upgrade` and `clone` keep them.

A path already in the sandbox is left alone: the sandbox's own copy may have changed since, and nothing
of it is overwritten.  Copies go in as `create` makes them: owners shifted into the sandbox's ID range,
secrets left out, a pristine copy of /etc files kept for upgrade's three-way merge.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from . import fswalk, locks, specfile, tree
from .errors import AlreadyExists, InvalidInput, NotFound
from .identity import IdMap
from .paths import Layout
from .spec import Kind, check_copy_path


@dataclass(frozen=True)
class CopyResult:
    name: str
    paths: tuple[str, ...]  # the host paths added, in the order given
    files: int  # files and links copied (0 for a dry run)
    dry_run: bool


def copy_into(
    layout: Layout,
    name: str,
    paths: Sequence[str],
    *,
    dry_run: bool = False,
    lock: locks.LockPolicy | None = None,
) -> CopyResult:
    """Copy `paths` from the host (or --root image) into sandbox `name` and record them in its spec,
    holding the sandbox's lock (not for a dry run, which writes nothing)."""
    held = contextlib.nullcontext() if dry_run else locks.sandboxes(layout, [name], policy=lock)
    with held:
        return _copy_into(layout, name, paths, dry_run=dry_run)


def _copy_into(layout: Layout, name: str, paths: Sequence[str], *, dry_run: bool) -> CopyResult:
    spec = specfile.load(layout.spec_file(name))
    if spec.kind is Kind.CHROOT:
        raise InvalidInput(
            f"sandbox {name!r} is a chroot sandbox: its tree is the directory it was made from",
            "put the files into that directory yourself",
        )
    root = layout.sandbox_root(name)
    wanted = list(dict.fromkeys(check_copy_path("copy", p.rstrip("/") or p) for p in paths))
    for path in wanted:
        if not os.path.lexists(layout.host(path)):
            raise NotFound(f"{path} does not exist on the host", "give a path the host has")
        if tree.has_path(root, path):
            raise AlreadyExists(
                f"{path} is already in sandbox {name!r}; its own copy is kept",
                f"to take the host's instead, remove it inside first: sandbox-service execute {name} -- "
                f"rm -r {path}",
            )
    new_spec = replace(spec, copies=tuple(dict.fromkeys((*spec.copies, *wanted))))
    if dry_run:
        return CopyResult(name, tuple(wanted), 0, True)
    owner = IdMap(spec.id_base).shift() if spec.id_base is not None else fswalk.identity
    copied = 0
    for path in wanted:
        copied += tree.copy_path(layout.root, root, path, owner=owner)
        base = layout.base_dir(name)
        if path.startswith("/etc/") and base.is_dir() and not tree.has_path(base, path):
            # the pristine copy upgrade merges against, as create keeps it
            tree.copy_path(layout.root, base, path)
    specfile.save(layout.spec_file(name), new_spec)
    return CopyResult(name, tuple(wanted), copied, False)
