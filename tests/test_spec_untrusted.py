"""sandbox.yaml as untrusted input: a corrupt or hostile spec is refused before anything is rendered.

Root can edit the file, but nothing the tool does with it (render, upgrade, clone, delete) may turn it
into directives that weaken the sandbox, host paths it should not touch, or another sandbox's identity.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox_service import identity, specfile
from sandbox_service.control import delete, load_spec
from sandbox_service.errors import InvalidInput
from sandbox_service.paths import Layout
from sandbox_service.spec import ExecCommand, Limits, SandboxSpec, ServiceDef
from sandbox_service.spec import Kind as K
from sandbox_service.upgrade.command import upgrade

GOOD = SandboxSpec(
    name="web",
    kind=K.GENERIC,
    service=ServiceDef(exec_start=(ExecCommand("/usr/bin/sleep", ("sleep", "60")),)),
    copies=("/etc/hosts",),
)


def edited(change: dict[str, Any]) -> str:
    """GOOD's spec file with `change` applied (nested keys as "a.b")."""
    data = yaml.safe_load(specfile.dumps(GOOD))
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[last] = value
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    "change",
    [
        {"security.profile": "default\nExecStartPre=+/bin/sh -c id"},
        {"security.profile": "../../etc/passwd"},
        {"security.directives": [{"key": "ExecStartPre", "value": "+/bin/sh"}]},
        {"security.directives": [{"key": "RootDirectory", "value": "/"}]},
        {"security.directives": [{"key": "PrivateNetwork", "value": "no"}]},
        {"security.directives": [{"key": "AmbientCapabilities", "value": "CAP_SYS_ADMIN"}]},
        {"security.directives": [{"key": "NoNewPrivileges", "value": "no"}]},
        {"security.directives": [{"key": "PrivateUsers", "value": "no"}]},
        {"security.directives": [{"key": "ProtectSystem", "value": "false"}]},
        {"security.directives": [{"key": "ProtectHome", "value": "0"}]},
        {"security.directives": [{"key": "ReadWritePaths", "value": "/usr"}]},
        {"security.directives": [{"key": "ReadWritePaths", "value": "-/lib/x"}]},
        {"security.directives": [{"key": "CapabilityBoundingSet", "value": "@wrapped"}]},
        {"security.directives": [{"key": "SystemCallFilter", "value": "@system-service\nUser=root"}]},
        {"readonly_binds": ["/"]},
        {"readonly_binds": ["/etc"]},
        {"readonly_binds": ["/usr", "/var/lib/sandbox-service"]},
        {"limits.memory_max": "9" * 200},
        {"limits.memory_max": "9223372036854775808"},
        {"limits.memory_max": "8388608T"},
        {"limits.cpu_quota": "9" * 40 + "%"},
        {"limits.tasks_max": 10**30},
        {"name": "web\n"},
        {"copies": ["/etc/shadow"]},
        {"copies": ["/etc/ssl/private/ssl-cert-snakeoil.key"]},
        {"copies": ["/var/lib/sandbox-service/other/root"]},
        {"copies": ["/proc/1/root/etc/shadow"]},
        {"copies": ["/etc/../etc/shadow"]},
        {"id_base": 0},
        {"id_base": 1073741825},
        {"service.exec_start": [{"path": "/usr/bin/sleep", "argv": ["sleep", "1\nUser=root"]}]},
    ],
)
def test_hostile_specs_are_refused(change: dict[str, Any]) -> None:
    text = edited(change)
    with pytest.raises(InvalidInput):
        specfile.loads(text)


def test_the_good_spec_loads() -> None:
    assert specfile.loads(edited({})) == GOOD


def test_sizes_that_systemd_takes_are_accepted() -> None:
    assert Limits(memory_max="8191P".replace("P", "T")).memory_max == "8191T"
    assert Limits(memory_max="9223372036854775807").memory_max


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
        if not p.is_symlink()
    }


def test_a_copied_sandbox_directory_cannot_act_as_the_original(tmp_path: Path) -> None:
    """`delete COPY` of a directory copied by hand, whose spec still names the original, deletes nothing."""
    layout = Layout(tmp_path)
    specfile.save(layout.spec_file("web"), GOOD)
    (layout.sandbox_root("web") / "etc").mkdir(parents=True)
    specfile.save(layout.spec_file("copy"), GOOD)  # the copy's spec says name: web
    before = snapshot(tmp_path)
    with pytest.raises(InvalidInput, match="names sandbox 'web'"):
        delete(layout, ["copy"])
    with pytest.raises(InvalidInput, match="names sandbox 'web'"):
        upgrade(layout, ["copy"])
    assert snapshot(tmp_path) == before


def test_a_spec_cannot_take_another_sandboxs_id_range(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    registry = identity.registry_for(layout)
    theirs = registry.allocate("other")
    mine = registry.allocate("web")
    specfile.save(layout.spec_file("web"), SandboxSpec(**{**GOOD.__dict__, "id_base": mine}))
    assert load_spec(layout, "web").id_base == mine
    # edited to run in the other sandbox's IDs: refused wherever it is loaded
    specfile.save(layout.spec_file("web"), SandboxSpec(**{**GOOD.__dict__, "id_base": theirs}))
    before = snapshot(tmp_path)
    with pytest.raises(InvalidInput, match="registry gives it"):
        load_spec(layout, "web")
    with pytest.raises(InvalidInput, match="registry gives it"):
        upgrade(layout, ["web"])
    assert snapshot(tmp_path) == before
