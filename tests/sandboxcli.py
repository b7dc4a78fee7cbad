"""Helpers shared by the tests that run the tool inside the systemd box."""

from __future__ import annotations

import re
import sys

from tests.box import SystemdBox

#: The tool on the host itself (for --root trees); inside a box it is ``box.tool_argv``.
HOST_TOOL = [sys.executable, "-m", "sandbox_service"]
UNIT_DIR = "/etc/systemd/system"
BASE = "/var/lib/sandbox-service"

# Known failures of the tool (not of the harness) in the Debian 13 box, for @pytest.mark.xfail_systemd.
# Strict: once the tool is fixed these tests pass, fail as XPASS, and the marker is to be removed.
#
# Debian 13's python3-typer 0.15.2 (click 8.1.8) refuses a plain enum.Enum as an option's default value:
# create's --selinux defaults to SELinuxMode.AUTO (spec.py), so every create without --selinux exits 2
# with "Invalid value for '--selinux': <SELinuxMode.AUTO: 'auto'> is not one of 'auto', 'enabled',
# 'disabled'".  The virtualenv's typer 0.29 accepts it; an enum that is also a str works with both.
# Checked: with SELinuxMode(str, enum.Enum) every test marked with this passes on 257.
TYPER_ENUM_DEFAULT_257 = "Debian 13's typer 0.15.2 rejects create's enum default --selinux (exit 2)"
# create --root, run on the host, learns the image's systemd version by running the image's own
# usr/bin/systemctl --version (discover/host.py, systemd_version), which cannot load the image's
# libsystemd-shared-257.so with the host's libraries: exit 127, so every offline create into the
# Debian 13 tree fails.  Checked: with the version read without running the image's binary, these pass.
OFFLINE_SYSTEMCTL_257 = "create --root runs the image's systemctl on the host for its version (exit 127)"


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
