"""The test harness itself: the box boots, is isolated from the host, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.box import DEFAULT_QUIET_UNITS, REPO, STATE_PARENT, STATE_PREFIX, BoxImage, SystemdBox

pytestmark = pytest.mark.box

HOST_WANTS = Path("/etc/systemd/system/multi-user.target.wants")


@pytest.fixture
def host_tmp_marker() -> Iterator[Path]:
    """A file in the host's /tmp, which a systemd booted carelessly would delete."""
    fd, name = tempfile.mkstemp(prefix="sandbox-service-box-marker-", dir="/tmp")
    os.close(fd)
    marker = Path(name)
    yield marker
    marker.unlink(missing_ok=True)


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as info:
        return any(line.split()[4] == str(path) for line in info)


def _system_state(box: SystemdBox) -> str:
    return box.run(["systemctl", "is-system-running"], check=False).stdout.strip()


def _installed(box: SystemdBox, unit: str) -> bool:
    return box.path(f"/usr/lib/systemd/system/{unit}").is_file()


def test_box_is_up(box: SystemdBox) -> None:
    assert _system_state(box) in ("running", "degraded")


def test_pid1_inside_is_systemd(box: SystemdBox) -> None:
    assert box.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    assert box.run(["readlink", "/proc/1/exe"]).stdout.strip().endswith("/systemd")


def test_box_boots_the_systemd_it_is_named_after(box: SystemdBox) -> None:
    first = box.run(["systemctl", "--version"]).stdout.splitlines()[0]
    assert first.startswith(f"systemd {box.image.systemd} "), first
    # the manager that runs, not only the client: PID 1 answers over D-Bus
    version = box.run(["systemctl", "show", "-P", "Version"]).stdout.strip()
    assert version.startswith(box.image.systemd), version


def test_tool_runs_from_the_checkout(box: SystemdBox) -> None:
    where = "import sandbox_service, sys; print(sandbox_service.__file__); print(sys.executable)"
    package, python = box.run([*box.python_argv, "-c", where]).stdout.split()
    assert package == str(REPO / "sandbox_service" / "__init__.py")
    assert python == box.image.python
    assert "Usage" in box.run([*box.tool_argv, "--help"]).stdout


def test_box_tmp_cleanup_spares_host_tmp(box: SystemdBox, host_tmp_marker: Path) -> None:
    # What systemd-tmpfiles-setup.service runs at boot (it refuses a manual restart),
    # which empties /tmp, and the periodic clean-up unit.
    box.run(["systemd-tmpfiles", "--create", "--remove", "--boot"])
    box.run(["systemctl", "restart", "systemd-tmpfiles-clean.service"])
    assert host_tmp_marker.exists()
    # ...and the box's /tmp is its own.
    assert box.run(["test", "-e", str(host_tmp_marker)], check=False).returncode == 1


def test_repo_visible_inside(box: SystemdBox, repo: Path) -> None:
    pyproject = repo / "pyproject.toml"
    assert box.run(["cat", str(pyproject)]).stdout == pyproject.read_text()


def test_quiet_units_are_not_enabled(box: SystemdBox) -> None:
    for unit in DEFAULT_QUIET_UNITS:
        if not _installed(box, unit):
            pytest.fail(f"{unit} is not installed in {box.image.description}; run scripts/install-deps.sh")
        # The unit file is still there and loads...
        fragment = box.run(["systemctl", "show", "-P", "FragmentPath", unit]).stdout.strip()
        assert fragment and box.run(["test", "-f", fragment], check=False).returncode == 0
        # ...but nothing pulls it in at boot.
        enabled = box.run(["systemctl", "is-enabled", unit], check=False).stdout.strip()
        assert enabled != "enabled"
        assert not box.path(f"{HOST_WANTS}/{unit}").is_symlink()


def test_files_written_through_the_overlay_are_seen_inside(box: SystemdBox) -> None:
    host_side = box.write_file("/etc/sandbox-service-box-test.conf", "hello\n")
    try:
        assert box.run(["cat", "/etc/sandbox-service-box-test.conf"]).stdout == "hello\n"
        assert box.read_file("/etc/sandbox-service-box-test.conf") == "hello\n"
        assert not Path("/etc/sandbox-service-box-test.conf").exists()
    finally:
        host_side.unlink()


def test_second_box_boots_quietly_and_tears_down_cleanly(box_image: BoxImage, host_tmp_marker: Path) -> None:
    state_dir = STATE_PARENT / f"{STATE_PREFIX}{os.getpid()}-second-{box_image.systemd}"
    image_wants = box_image.root / HOST_WANTS.relative_to("/")
    host_links = {unit: os.path.lexists(image_wants / unit) for unit in DEFAULT_QUIET_UNITS}
    with SystemdBox(state_dir, image=box_image) as second:
        assert _system_state(second) in ("running", "degraded")
        assert _mounted(second.merged)
        for unit in DEFAULT_QUIET_UNITS:
            if not _installed(second, unit):
                continue
            active = second.run(["systemctl", "is-active", unit], check=False).stdout.strip()
            assert active == "inactive", unit
            # Not even started and stopped again during boot.
            entered = second.run(["systemctl", "show", "-P", "ActiveEnterTimestampMonotonic", unit])
            assert entered.stdout.strip() == "0", unit
        nspawn_pid = second.nspawn_pid
    assert host_tmp_marker.exists()
    # The box removed wants links in its overlay only; the image's configuration is as it was.
    assert host_links == {unit: os.path.lexists(image_wants / unit) for unit in DEFAULT_QUIET_UNITS}
    assert not state_dir.exists()
    assert not _mounted(state_dir / "merged") and not _mounted(state_dir)
    alive = subprocess.run(["ps", "-o", "stat=", "-p", str(nspawn_pid)], capture_output=True, text=True)
    assert alive.stdout.strip() in ("", "Z"), "systemd-nspawn outlived the box"


def test_command_line_up_exec_down(box_image: BoxImage, repo: Path) -> None:
    state_dir = STATE_PARENT / f"{STATE_PREFIX}{os.getpid()}-cli-{box_image.systemd}"
    cli = [sys.executable, "-m", "tests.box"]

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], cwd=repo, capture_output=True, text=True, timeout=180)

    up = call("up", str(state_dir), "--systemd", box_image.systemd)
    try:
        assert up.returncode == 0, up.stderr
        leader = int(up.stdout)
        assert (state_dir / "leader").read_text().strip() == str(leader)
        inside = call("exec", str(state_dir), "--cwd", str(repo), "--", "sh", "-c", "pwd; exit 7")
        assert (inside.returncode, inside.stdout) == (7, f"{repo}\n")
        version = call("exec", str(state_dir), "--", "systemctl", "--version")
        assert version.stdout.startswith(f"systemd {box_image.systemd} "), version.stdout
    finally:
        down = call("down", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert not state_dir.exists()
