"""`clone SRC DEST`: a new sandbox from an existing one.

The spec is copied with the new name and re-rendered for it (never a string replacement inside files);
private data is copied by descriptor (fswalk), never following a symlink out of the tree, also while the
source sandbox runs and changes it; what cannot be copied (sockets, FIFOs, devices) is reported. A
labelled sandbox gets a fresh MCS pair. The clone starts stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from . import fswalk, index, isolation, locks, recovery, render, selinux, specfile, tree
from .control import load_spec
from .create import publish_checked, take_id_range
from .errors import InvalidInput
from .identity import IdMap
from .install import Transaction, explaining_full_disk, refuse_existing, stage_dir, write_units
from .locks import LockPolicy
from .network import checks as network_checks
from .paths import BASE_DIR_NAME, Layout
from .spec import SandboxSpec, check_name
from .systemd import Systemd, systemd_running


@dataclass(frozen=True)
class Cloned:
    spec: SandboxSpec
    skipped: tuple[fswalk.Skipped, ...]  # entries of the source left out, paths relative to its directory


def clone(layout: Layout, src: str, dest: str, lock: LockPolicy | None = None) -> Cloned:
    """Holding DEST's lock, and SRC's shared (SRC can be cloned twice at once, but not changed).  What an
    interrupted run left of a DEST that is not a sandbox is removed first (recovery.py)."""
    check_name(dest)
    with locks.sandboxes(layout, [dest], shared=[src], policy=lock):
        online = layout.root == Path("/") and systemd_running()
        sd = Systemd() if online else None
        try:
            with explaining_full_disk(layout, dest):
                return _clone(layout, src, dest, sd)
        finally:
            if sd is not None:
                sd.__exit__(None, None, None)


def _clone(layout: Layout, src: str, dest: str, sd: Systemd | None) -> Cloned:
    source = load_spec(layout, src)
    if not recovery.is_complete(layout, src):
        raise InvalidInput(
            f"sandbox {src!r} is not complete: the run that made it was interrupted",
            f"finish it with the same create command (or: sandbox-service delete {src})",
        )
    if recovery.is_complete(layout, dest):
        refuse_existing(layout, dest)
    traces = recovery.find_traces(layout, dest)
    if not traces.empty:
        recovery.remove_traces(layout, [traces], sd)
    refuse_existing(layout, dest)
    spec = replace(source, name=dest, selinux_level=None, enabled=False, id_base=None)
    others = [s for s in index.summaries(layout) if s.name != dest]
    network_checks.check_host(spec, others, layout)
    with Transaction() as tx:
        if source.selinux_level:
            registry = selinux.McsRegistry(layout.mcs_registry)
            tx.on_rollback(lambda: registry.release(dest))
            spec = replace(spec, selinux_level=registry.allocate(dest))
        owners: fswalk.OwnerMap = fswalk.identity
        if source.id_base is not None:
            spec = replace(spec, id_base=take_id_range(tx, layout, dest))
            assert spec.id_base is not None
            owners = IdMap(spec.id_base).rebase_from(IdMap(source.id_base))
        elif isolation.model(source) is isolation.Model.BEFORE_RANGES:
            # Owned by host IDs, as create copied them then: the clone moves into a range of its own.
            spec = replace(spec, id_base=take_id_range(tx, layout, dest))
            assert spec.id_base is not None
            owners = IdMap(spec.id_base).shift()
        staging = stage_dir(tx, layout, dest)
        src_dir = layout.sandbox_dir(src)
        copied = fswalk.CopyReport()
        copied.add(fswalk.copy_path(src_dir / "root", staging / "root", owner=owners))
        if (src_dir / BASE_DIR_NAME).is_dir():  # host files, as copied at create: host IDs
            copied.add(fswalk.copy_path(src_dir / BASE_DIR_NAME, staging / BASE_DIR_NAME))
        tree.write_tree_files(staging / "root", render.tree_files(spec))
        specfile.save(staging / "sandbox.yaml", spec)
        if spec.selinux_level:
            selinux.label_tree(staging, spec.selinux_level)
        final = layout.sandbox_dir(dest)
        publish_checked(tx, layout, spec, staging, final)
        if sd is not None:
            tx.on_rollback(sd.reload)  # undone in reverse order: runs once the unit files are gone again
        write_units(tx, layout, render.render(spec), dest)
        if sd is not None:
            sd.reload()
        recovery.mark_complete(final)
        tx.commit()
    return Cloned(spec, tuple(copied.skipped))
