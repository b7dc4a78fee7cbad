"""Nothing a wrapped unit sets is silently lost: every property systemd reports for it, set away from
the defaults, has a fate (discover/properties.py), and what is carried has the same value in the
sandbox's unit, as systemd itself reports it.

Here for nginx and apache2 on both systemds; tests/test_corpus_box.py checks the same for every unit
of the service corpus (tests/unitprops.py).
"""

from __future__ import annotations

import pytest

from tests.box import SystemdBox
from tests.sandboxcli import cli
from tests.unitprops import lost_properties

pytestmark = pytest.mark.box

UNITS = ("nginx.service", "apache2.service")


def installed(box: SystemdBox, unit: str) -> bool:
    return box.run(["systemctl", "show", "-P", "LoadState", unit]).stdout.strip() == "loaded"


@pytest.mark.parametrize("unit", UNITS)
def test_every_set_property_has_a_fate_and_carried_ones_arrive(
    box: SystemdBox, cleanup: list[str], unit: str
) -> None:
    if not installed(box, unit):
        pytest.skip(f"{unit} is not installed")
    name = "prop" + unit.split(".")[0].replace("@", "")[:20]
    cleanup.append(name)
    _rc, out, _err = cli(box, "create", name, "--unit", unit)
    lost = lost_properties(box, unit, f"sandbox-{name}.service", out)
    assert lost == [], "\n".join(lost)


ACCESS_UNIT = """[Service]
ExecStart=/bin/sleep infinity
ProtectSystem=strict
ReadWritePaths=/etc/hosts
InaccessiblePaths=/etc/hostname
"""
# What the command inside reports: each file's own result, as its errno name or "ok".
ACCESS_PROBE = """
import errno, sys
def attempt(path, mode):
    try:
        open(path, mode).close()
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]
print(attempt("/etc/hosts", "a"), attempt("/etc/resolv.conf", "a"), attempt("/etc/hostname", "r"))
"""


def test_a_units_access_paths_hold_inside_its_root(box: SystemdBox, cleanup: list[str]) -> None:
    """ReadWritePaths=, ReadOnlyPaths= and InaccessiblePaths= name paths of the sandbox: systemd would
    read them on the host and drop them as outside the root unless they are marked as the root's own."""
    unit = "accesstest.service"
    box.write_file(f"/etc/systemd/system/{unit}", ACCESS_UNIT)
    box.run(["systemctl", "daemon-reload"])
    cleanup.append("access")
    try:
        cli(box, "create", "access", "--unit", unit, "--now")
        _rc, out, _err = cli(box, "execute", "access", "--", "/usr/bin/python3", "-c", ACCESS_PROBE)
        assert out.split() == ["ok", "EROFS", "EACCES"]
    finally:
        box.run(["rm", "-f", f"/etc/systemd/system/{unit}"])
        box.run(["systemctl", "daemon-reload"])


PER_COMMAND_UNIT = """[Service]
Type=oneshot
RemainAfterExit=yes
ExecStartPre=+/bin/sh -c 'mkdir -p /var/lib/percmd-made && echo made > /etc/percmd.conf'
ExecStart=/usr/bin/python3 /usr/local/lib/percmd-probe.py
ProtectSystem=strict
StateDirectory=percmd
EnvironmentFile=/etc/percmd/env
"""
# The service's own command: what it may write, and whether it can mount, as errno names.
PER_COMMAND_PROBE = """
import ctypes, errno, os
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]
libc = ctypes.CDLL(None, use_errno=True)
def remount():
    if libc.mount(b"none", b"/", None, 0x20 | 0x1000, None) != 0:
        raise OSError(ctypes.get_errno(), "mount")
out = [attempt(lambda: open("/etc/percmd-main.conf", "w").close()),
       attempt(lambda: os.mkdir("/var/lib/percmd-main")),
       attempt(remount)]
with open("/var/lib/percmd/result", "w") as f:
    f.write(" ".join(out))
"""


def test_plus_commands_are_exempt_from_the_units_protections_and_only_they(
    box: SystemdBox, cleanup: list[str]
) -> None:
    """systemd applies a unit's ProtectSystem= to every command but its '+' ones; inside a sandbox the
    launcher does the same: the '+' command writes /etc and /var, the service's own cannot, nor mount."""
    unit = "percmd.service"
    box.write_file("/usr/local/lib/percmd-probe.py", PER_COMMAND_PROBE)
    box.write_file("/etc/percmd/env", "PROBE=1\n")
    box.write_file(f"/etc/systemd/system/{unit}", PER_COMMAND_UNIT)
    box.run(["systemctl", "daemon-reload"])
    cleanup.append("percmd")
    try:
        _rc, out, _err = cli(box, "create", "percmd", "--unit", unit, "--now")
        assert "the launcher sets them up" in out
        root = "/var/lib/sandbox-service/percmd/root"
        assert box.run(["cat", f"{root}/etc/percmd.conf"]).stdout == "made\n"
        assert box.run(["test", "-d", f"{root}/var/lib/percmd-made"], check=False).returncode == 0
        assert box.run(["cat", f"{root}/var/lib/percmd/result"]).stdout.split() == ["EROFS", "EROFS", "EPERM"]
    finally:
        box.run(["rm", "-f", f"/etc/systemd/system/{unit}"])
        box.run(["systemctl", "daemon-reload"])
