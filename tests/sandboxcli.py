"""Helpers shared by the tests that run the tool inside the systemd box."""

from __future__ import annotations

import sys

from tests.box import SystemdBox

TOOL = [sys.executable, "-m", "sandbox_service"]
UNIT_DIR = "/etc/systemd/system"
BASE = "/var/lib/sandbox-service"


def cli(box: SystemdBox, *args: str, check: bool = True) -> tuple[int, str, str]:
    """Run sandbox-service inside the box; (exit status, stdout, stderr)."""
    done = box.run([*TOOL, *args], check=check)
    return done.returncode, done.stdout, done.stderr


def show(box: SystemdBox, unit: str, prop: str) -> str:
    return box.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()


def remove_sandboxes(box: SystemdBox, names: list[str]) -> None:
    """Delete sandboxes whatever state a test left them in (also a half-made one)."""
    for n in names:
        box.run([*TOOL, "delete", n], check=False)
        box.run(
            ["rm", "-rf", f"{BASE}/{n}", f"{UNIT_DIR}/sandbox-{n}.service", f"{UNIT_DIR}/sandbox-{n}.slice"]
        )
