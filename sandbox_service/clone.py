"""`clone SRC DEST`: a new sandbox from an existing one.

The spec is copied with the new name and re-rendered for it (never a string replacement inside files);
private data is copied without following any symlink out of the tree; a labelled sandbox gets a fresh
MCS pair. The clone starts stopped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from . import render, selinux, specfile, tree
from .control import load_spec, sandbox_names
from .create import take_id_range
from .identity import IdMap
from .install import Transaction, publish_dir, refuse_existing, stage_dir, write_units
from .network import checks as network_checks
from .paths import BASE_DIR_NAME, Layout
from .spec import SandboxSpec, check_name
from .systemd import Systemd, systemd_running


def clone(layout: Layout, src: str, dest: str) -> SandboxSpec:
    source = load_spec(layout, src)
    check_name(dest)
    refuse_existing(layout, dest)
    spec = replace(source, name=dest, selinux_level=None, enabled=False, id_base=None)
    others = [load_spec(layout, n) for n in sandbox_names(layout)]
    network_checks.check_host(spec, others, layout)
    online = layout.root == Path("/") and systemd_running()
    with Transaction() as tx:
        if source.selinux_level:
            registry = selinux.McsRegistry(layout.mcs_registry)
            tx.on_rollback(lambda: registry.release(dest))
            spec = replace(spec, selinux_level=registry.allocate(dest))
        owners = None
        if source.id_base is not None:
            spec = replace(spec, id_base=take_id_range(tx, layout, dest))
            assert spec.id_base is not None
            owners = IdMap(spec.id_base).rebase_from(IdMap(source.id_base))
        staging = stage_dir(tx, layout, dest)
        src_dir = layout.sandbox_dir(src)
        tree.copy_path(src_dir, staging, "/root", owners)
        if (src_dir / BASE_DIR_NAME).is_dir():
            tree.copy_path(src_dir, staging, f"/{BASE_DIR_NAME}")  # host files, as copied at create
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
    return spec
