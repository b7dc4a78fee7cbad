"""Helpers shared by the tests that run the tool inside the systemd box."""

from __future__ import annotations

import re
import sys
import time

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


def wait_inactive(box: SystemdBox, unit: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while show(box, unit, "ActiveState") not in ("inactive", "failed"):
        assert time.monotonic() < deadline, f"{unit} still running"
        time.sleep(0.1)


def main_pid(box: SystemdBox, unit: str) -> int:
    pid = int(show(box, unit, "MainPID"))
    assert pid > 0, f"{unit} has no main process"
    return pid


def program_pid(box: SystemdBox, unit: str, comm: str, seconds: float = 30) -> int:
    """The PID of the unit's program: its main process once the launcher has become it, or the
    launcher's child where the launcher stays as PID 1 of a PID namespace of the unit's own."""
    deadline = time.monotonic() + seconds
    while True:
        main = main_pid(box, unit)
        for pid in (main, *map(int, box.run(["pgrep", "-P", str(main)], check=False).stdout.split())):
            if box.run(["cat", f"/proc/{pid}/comm"], check=False).stdout.strip() == comm:
                return pid
        assert time.monotonic() < deadline, f"{unit} did not run {comm}"
        time.sleep(0.1)


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
