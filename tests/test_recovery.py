"""recovery.py on an image tree (--root semantics, no systemd): what a killed run leaves of a sandbox is
found without its sandbox.yaml, and delete removes it, and nothing of any other sandbox or the host."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sandbox_service import identity, recovery, selinux, specfile
from sandbox_service.control import delete
from sandbox_service.errors import NotFound
from sandbox_service.paths import INCOMPLETE_MARK, Layout
from sandbox_service.render import marker_line
from tests.test_spec_untrusted import GOOD


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def unit(layout: Layout, name: str, text: str) -> Path:
    path = layout.unit_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def leftovers(layout: Layout, name: str = "web") -> dict[str, Path]:
    """What a create of `name` killed at various steps leaves, all at once."""
    pid = dead_pid()
    base = layout.sandbox_base
    (base / f".{name}.staging-{pid}/root/etc").mkdir(parents=True)
    (base / f".{name}.deleting-{pid}/root").mkdir(parents=True)
    service = unit(layout, f"sandbox-{name}.service", marker_line(name) + "\n[Service]\n")
    socket = unit(layout, f"sandbox-{name}-publish-8080.socket", marker_line(name) + "\n[Socket]\n")
    temp = unit(layout, f".sandbox-{name}-publish-8080.service.tmp-{pid}", "")  # cut short: empty
    link = layout.unit_dir / "sandbox.target.wants" / f"sandbox-{name}.service"
    link.parent.mkdir()
    link.symlink_to(f"../sandbox-{name}.service")
    selinux.McsRegistry(layout.mcs_registry).allocate(name)
    identity.registry_for(layout).allocate(name)
    runtime = layout.host(f"/run/sandbox-service/{name}")
    runtime.mkdir(parents=True)
    registry_temp = layout.sandbox_base / f"..mcs-registry.json.tmp-{pid}"
    registry_temp.write_text("{")
    return {"service": service, "socket": socket, "temp": temp, "link": link, "registry_temp": registry_temp}


def others(layout: Layout) -> list[Path]:
    """Things of another sandbox and of the host that look alike: none may be touched."""
    selinux.McsRegistry(layout.mcs_registry).allocate("web2")
    identity.registry_for(layout).allocate("web2")
    (layout.sandbox_base / ".web2.staging-1").mkdir(parents=True)
    return [
        unit(layout, "sandbox-web2.service", marker_line("web2") + "\n"),
        unit(layout, "sandbox-web-extra.service", "[Service]\n# the admin's own\n"),
        unit(layout, f".sandbox-web.service.tmp-{os.getpid()}", ""),  # a live writer's
        layout.sandbox_base / ".web2.staging-1",
    ]


def test_traces_are_found_without_a_spec(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    left = leftovers(layout)
    t = recovery.find_traces(layout, "web")
    assert t.sandbox_dir is None and not t.complete
    assert sorted(d.name for d in t.side_dirs) == sorted(d.name for d in layout.sandbox_base.glob(".web.*-*"))
    assert sorted(t.unit_files) == sorted([left["service"], left["socket"]])
    assert t.unit_temps == (left["temp"],)
    assert t.enable_links == (left["link"],)
    assert t.mcs_level and t.id_base is not None
    assert t.runtime_dir == layout.host("/run/sandbox-service/web")
    assert t.shared_temps == (left["registry_temp"],)
    assert not t.account  # the image has no sb-web
    # a temp file of a registry is no sandbox's in particular: every delete removes it
    assert recovery.find_traces(layout, "other").describe() == [f"temp file {left['registry_temp']}"]


def test_delete_removes_the_traces_and_nothing_else(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    leftovers(layout)
    kept = others(layout)
    (deleted,) = delete(layout, ["web"])
    assert deleted.name == "web" and not deleted.complete
    assert any("ID range" in d for d in deleted.removed)
    assert recovery.find_traces(layout, "web").empty
    assert all(os.path.lexists(p) for p in kept)
    assert selinux.McsRegistry(layout.mcs_registry).lookup("web2")
    assert identity.registry_for(layout).lookup("web2") is not None
    assert not (layout.sandbox_base / ".locks").exists()
    with pytest.raises(NotFound, match="no sandbox named 'web'"):
        delete(layout, ["web"])


def test_an_unfinished_sandbox_directory_is_a_trace(tmp_path: Path) -> None:
    """Published, but the run that made it did not finish (the mark is still there)."""
    layout = Layout(tmp_path)
    specfile.save(layout.spec_file("web"), GOOD)
    (layout.sandbox_dir("web") / INCOMPLETE_MARK).touch()
    t = recovery.find_traces(layout, "web")
    assert t.sandbox_dir == layout.sandbox_dir("web") and not t.complete
    assert not recovery.is_complete(layout, "web")
    (deleted,) = delete(layout, ["web"])
    assert not deleted.complete and not layout.sandbox_dir("web").exists()


def test_keep_data_keeps_a_complete_sandbox_and_removes_what_killed_runs_left(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    left = leftovers(layout)
    specfile.save(layout.spec_file("web"), GOOD)
    (deleted,) = delete(layout, ["web"], keep_data=True)
    assert deleted.complete
    assert layout.spec_file("web").exists()
    assert not left["service"].exists() and not left["link"].is_symlink()
    assert not list(layout.sandbox_base.glob(".web.*"))
    assert selinux.McsRegistry(layout.mcs_registry).lookup("web")  # its files still carry the pair


def test_the_host_account_counts_only_when_the_tool_made_it(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    passwd = layout.host("/etc/passwd")
    passwd.parent.mkdir(parents=True)
    group = layout.host("/etc/group")
    base = 1_073_741_824
    comment = identity.account_comment("web")
    passwd.write_text(f"sb-web:x:{base + 5}:{base + 5}:{comment}:/nonexistent:/usr/sbin/nologin\n")
    assert identity.account_is_sandboxes(layout, "web", None)
    passwd.write_text(f"sb-web:x:{base}:{base}:someone else:/home/x:/bin/sh\n")
    assert identity.account_is_sandboxes(layout, "web", base)
    assert not identity.account_is_sandboxes(layout, "web", None)
    passwd.write_text("")
    group.write_text(f"sb-web:x:{base}:\n")  # a create killed between groupadd and useradd
    assert identity.account_is_sandboxes(layout, "web", base)
    assert not identity.account_is_sandboxes(layout, "web", base + 65536)


def test_stale_temp_files_of_shared_files_are_removed_by_the_next_write(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    registry = selinux.McsRegistry(layout.mcs_registry)
    registry.allocate("a")
    stale = layout.mcs_registry.with_name(f"..mcs-registry.json.tmp-{dead_pid()}")
    stale.write_text("half")
    registry.allocate("b")
    assert not stale.exists()
    assert set(json.loads(layout.mcs_registry.read_text())["pairs"]) == {"a", "b"}
