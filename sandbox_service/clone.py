"""`clone SRC DEST`: a new sandbox from an existing one.

The spec is copied with the new name and re-rendered for it (never a string replacement inside files);
private data is copied by descriptor (fswalk), never following a symlink out of the tree, also while the
source sandbox runs and changes it; what cannot be copied (sockets, FIFOs, devices) is reported. A
labelled sandbox gets a fresh MCS pair. The clone starts stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from . import fswalk, index, render, selinux, specfile, tree
from .control import load_spec
from .create import take_id_range
from .identity import IdMap
from .install import Transaction, publish_dir, refuse_existing, stage_dir, write_units
from .network import checks as network_checks
from .paths import BASE_DIR_NAME, Layout
from .spec import SandboxSpec, check_name
from .systemd import Systemd, systemd_running


@dataclass(frozen=True)
class Cloned:
    spec: SandboxSpec
    skipped: tuple[fswalk.Skipped, ...]  # entries of the source left out, paths relative to its directory


def clone(layout: Layout, src: str, dest: str) -> Cloned:
    source = load_spec(layout, src)
    check_name(dest)
    refuse_existing(layout, dest)
    spec = replace(source, name=dest, selinux_level=None, enabled=False, id_base=None)
    others = index.summaries(layout)
    network_checks.check_host(spec, others, layout)
    online = layout.root == Path("/") and systemd_running()
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
        publish_dir(tx, staging, layout.sandbox_dir(dest))
        write_units(tx, layout, render.render(spec), dest)
        if online:
            with Systemd() as sd:
                tx.on_rollback(sd.reload)
                sd.reload()
        tx.commit()
    return Cloned(spec, tuple(copied.skipped))
