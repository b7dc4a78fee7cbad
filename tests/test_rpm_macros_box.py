"""The packager macros against a real systemd (the throwaway box of tests/box.py): expanded on the host
with `rpm --eval`, run inside the box as rpm runs scriptlets (`sh -c SCRIPT scriptlet $1`, here with -e
too) for install ($1=1), upgrade ($1=2 in %post, 1 in %postun) and erase ($1=0), wrapping the box's
real nginx.service.  In the box systemd runs, so the macros are online: the tool talks D-Bus.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.box import SystemdBox
from tests.sandboxcli import BASE, UNIT_DIR, show

pytestmark = [
    pytest.mark.box,
    pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm missing (apt install rpm)"),
]

REPO = Path(__file__).resolve().parent.parent
MACROS = REPO / "packaging" / "macros.sandbox-service"


def expand(call: str, tool: list[str]) -> str:
    """The macro call expanded on the host, with ``tool`` as the sandbox-service command."""
    done = subprocess.run(
        ["rpm", "--load", str(MACROS), "--define", f"__sandbox_service {' '.join(tool)}", "--eval", call],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "error:" not in done.stderr, done.stderr
    return done.stdout


def scriptlet(box: SystemdBox, script: str, arg: int) -> subprocess.CompletedProcess[str]:
    done = box.run(["sh", "-e", "-c", script, "scriptlet", str(arg)], check=False)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "internal error" not in done.stderr, done.stderr
    return done


def exists(box: SystemdBox, path: str) -> bool:
    return box.run(["test", "-e", path], check=False).returncode == 0


def test_install_upgrade_erase(box: SystemdBox, cleanup: list[str]) -> None:
    name = "rpmweb"
    service = f"sandbox-{name}.service"
    cleanup.append(name)
    post = expand(f"%sandbox_service_post {name} nginx.service --memory 256M", box.tool_argv)
    preun = expand(f"%sandbox_service_preun {name}", box.tool_argv)
    postun = expand(f"%sandbox_service_postun_with_restart {name}", box.tool_argv)

    # install: the sandbox is created and registered, but not started
    scriptlet(box, post, 1)
    assert show(box, service, "LoadState") == "loaded"
    assert show(box, service, "ActiveState") == "inactive"
    assert exists(box, f"{BASE}/{name}/sandbox.yaml")
    assert show(box, "nginx.service", "ActiveState") == "inactive"  # the host unit is left alone

    # upgrade of a stopped sandbox: nothing starts
    scriptlet(box, post, 2)
    scriptlet(box, postun, 1)
    assert show(box, service, "ActiveState") == "inactive"

    # upgrade of a running sandbox: it is restarted
    box.run(["systemctl", "start", service])
    first = show(box, service, "InvocationID")
    assert show(box, service, "ActiveState") == "active"
    scriptlet(box, preun, 1)  # the old package's %preun on upgrade: nothing happens
    assert show(box, service, "InvocationID") == first
    scriptlet(box, postun, 1)
    assert show(box, service, "ActiveState") == "active"
    assert show(box, service, "InvocationID") != first

    # erase: stopped, unit gone, data kept
    scriptlet(box, preun, 0)
    scriptlet(box, postun, 0)
    assert show(box, service, "LoadState") == "not-found"
    assert not exists(box, f"{UNIT_DIR}/{service}")
    assert exists(box, f"{BASE}/{name}/sandbox.yaml")

    # reinstall: the kept sandbox is registered again; erase with purge removes everything
    scriptlet(box, post, 1)
    assert show(box, service, "LoadState") == "loaded"
    scriptlet(box, expand(f"%sandbox_service_preun -p {name}", box.tool_argv), 0)
    assert show(box, service, "LoadState") == "not-found"
    assert not exists(box, f"{BASE}/{name}")


def test_install_starts_when_asked(box: SystemdBox, cleanup: list[str]) -> None:
    name = "rpmnow"
    service = f"sandbox-{name}.service"
    cleanup.append(name)
    scriptlet(box, expand(f"%sandbox_service_post {name} nginx.service --now --enable", box.tool_argv), 1)
    assert show(box, service, "ActiveState") == "active"
    assert show(box, service, "UnitFileState") == "enabled"
    scriptlet(box, expand(f"%sandbox_service_preun -p {name}", box.tool_argv), 0)
    assert show(box, service, "LoadState") == "not-found"
    assert not exists(box, f"{BASE}/{name}")
    assert not exists(box, f"{UNIT_DIR}/sandbox.target.wants/{service}")


def test_nothing_happens_without_the_tool(box: SystemdBox) -> None:
    for call in (
        "%sandbox_service_post rpmnone nginx.service --now",
        "%sandbox_service_preun rpmnone",
        "%sandbox_service_postun_with_restart rpmnone",
    ):
        script = expand(call, ["/nonexistent/sandbox-service"])
        for arg in (1, 2, 0):
            assert scriptlet(box, script, arg).stderr == ""
    assert show(box, "sandbox-rpmnone.service", "LoadState") == "not-found"
