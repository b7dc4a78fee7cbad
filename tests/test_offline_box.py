"""Offline use: create into an image tree with --root (no systemd, no D-Bus), then boot that tree."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.box import BoxImage, SystemdBox
from tests.images import scratch_image
from tests.sandboxcli import HOST_TOOL

pytestmark = pytest.mark.box

SERVER = (
    "import http.server as h; h.HTTPServer(('127.0.0.1', 8000), h.SimpleHTTPRequestHandler).serve_forever()"
)


def offline(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HOST_TOOL, "--root", str(root), *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def image_box(box_image: BoxImage) -> Iterator[tuple[SystemdBox, list[subprocess.CompletedProcess[str]]]]:
    """A box whose image got an enabled sandbox (twice: idempotent) before it booted.

    The tool that installs them runs on the host, as in an image build: only the image's files tell it
    what the image holds."""
    results: list[subprocess.CompletedProcess[str]] = []

    def install(root: Path) -> None:
        for _ in range(2):
            results.append(
                offline(
                    root, "create", "offweb", "--enable", "--exist-ok", "--", "/usr/bin/python3", "-c", SERVER
                )
            )
        results.append(offline(root, "create", "offidle", "--", "/usr/bin/sleep", "600"))
        # a wrapped unit, read from the image's own unit files and package database
        results.append(offline(root, "create", "offnginx", "--unit", "nginx.service", "--enable"))

    with SystemdBox(
        state_dir=f"/var/tmp/sandbox-service-offline-box-{box_image.systemd}",
        image=box_image,
        before_boot=install,
    ) as box:
        yield box, results


def test_offline_create_says_what_happens_next(
    image_box: tuple[SystemdBox, list[subprocess.CompletedProcess[str]]],
) -> None:
    _box, results = image_box
    first, second, idle, wrapped = results
    assert first.returncode == 0, first.stderr
    assert "next boot" in first.stdout
    assert second.returncode == 0, second.stderr  # the same command again: same result
    assert idle.returncode == 0, idle.stderr
    assert wrapped.returncode == 0, wrapped.stderr


def test_enabled_sandbox_runs_after_boot(
    image_box: tuple[SystemdBox, list[subprocess.CompletedProcess[str]]],
) -> None:
    box, _results = image_box
    for unit in ("sandbox-offweb.service", "sandbox-offnginx.service"):
        wait = f"for i in $(seq 100); do systemctl is-active -q {unit} && exit 0; sleep 0.1; done; exit 1"
        box.run(["sh", "-c", wait])
    status = json.loads(box.run([*box.tool_argv, "status", "offweb", "--json"]).stdout)
    assert status["active_state"] == "active"
    assert status["unit_file_state"] == "enabled"
    assert (
        box.run(["systemctl", "is-active", "sandbox-offidle.service"], check=False).stdout.strip()
        == "inactive"
    )
    listed = {
        e["name"]: e["active_state"] for e in json.loads(box.run([*box.tool_argv, "list", "--json"]).stdout)
    }
    assert listed == {"offweb": "active", "offidle": "inactive", "offnginx": "active"}
    nginx = json.loads(box.run([*box.tool_argv, "status", "offnginx", "--json"]).stdout)
    assert nginx["source_unit"] == "nginx.service" and nginx["main_pid"] > 0
    page = box.run_in_netns_of(
        nginx["main_pid"], ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1/"]
    ).stdout
    assert page in ("200", "404")  # nginx answers (its default site's page is not part of its package)


def test_offline_enable_disable_and_delete(tmp_path: Path) -> None:
    """Against a bare tree: links appear and go like `systemctl --root enable` makes them."""
    root = scratch_image(tmp_path / "img")
    done = offline(root, "create", "img", "--", "/usr/bin/sleep", "60")
    assert done.returncode == 0, done.stderr
    wants = root / "etc/systemd/system/sandbox.target.wants/sandbox-img.service"
    assert not wants.is_symlink()
    assert offline(root, "enable", "img").returncode == 0
    assert wants.is_symlink() and str(wants.readlink()) == "../sandbox-img.service"
    assert (root / "etc/systemd/system/multi-user.target.wants/sandbox.target").is_symlink()
    assert offline(root, "disable", "img").returncode == 0
    assert not wants.is_symlink()
    assert offline(root, "delete", "img").returncode == 0
    assert not (root / "var/lib/sandbox-service/img").exists()
    assert not (root / "etc/systemd/system/sandbox-img.service").exists()
    # the host account of the sandbox's root came and went with it, in the image's user database
    assert "sb-img:" not in (root / "etc/passwd").read_text()
