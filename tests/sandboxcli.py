"""Helpers shared by the tests that run the tool inside the systemd box."""

from __future__ import annotations

import re
import sys

from tests.box import SystemdBox

#: The tool on the host itself (for --root trees); inside a box it is ``box.tool_argv``.
HOST_TOOL = [sys.executable, "-m", "sandbox_service"]
UNIT_DIR = "/etc/systemd/system"
BASE = "/var/lib/sandbox-service"


def cli(box: SystemdBox, *args: str, check: bool = True) -> tuple[int, str, str]:
    """Run sandbox-service inside the box; (exit status, stdout, stderr)."""
    done = box.run([*box.tool_argv, *args], check=check)
    return done.returncode, done.stdout, done.stderr


def show(box: SystemdBox, unit: str, prop: str) -> str:
    return box.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()


#: The line PID 1 logs when a reload begins: "Reloading." (systemd 252), "Reloading..." (257, which also
#: logs "Reloading finished in N ms." when it ends).
RELOAD_STARTED = re.compile(r"Reloading\.+")


def reloads(box: SystemdBox) -> int:
    """How many times the box's systemd has reloaded its units so far (daemon-reload)."""
    box.run(["journalctl", "--sync"])
    out = box.run(["journalctl", "_PID=1", "-o", "cat", "--no-pager"]).stdout
    return sum(1 for line in out.splitlines() if RELOAD_STARTED.fullmatch(line))


def remove_sandboxes(box: SystemdBox, names: list[str]) -> None:
    """Delete sandboxes whatever state a test left them in (also a half-made one)."""
    for n in names:
        box.run([*box.tool_argv, "delete", n], check=False)
        box.run(
            ["rm", "-rf", f"{BASE}/{n}", f"{UNIT_DIR}/sandbox-{n}.service", f"{UNIT_DIR}/sandbox-{n}.slice"]
        )
