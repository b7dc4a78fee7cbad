"""A start that fails for a file the sandbox lacks says so in one line with the fix, and `copy` is the
fix: the path comes in with its owners mapped, is recorded in the spec, and the next start works."""

from __future__ import annotations

import pytest

from tests.box import SystemdBox
from tests.sandboxcli import BASE, cli, show

pytestmark = pytest.mark.box

UNIT = """[Service]
EnvironmentFile=/etc/diagtest/env
ExecStartPre=/bin/cat /srv/diagtest/config.txt
ExecStart=/bin/sleep infinity
"""


def test_a_missing_file_is_diagnosed_and_copy_fixes_it(box: SystemdBox, cleanup: list[str]) -> None:
    unit = "diagtest.service"
    box.write_file("/etc/diagtest/env", "A=1\n")
    box.write_file("/srv/diagtest/config.txt", "served\n")
    box.run(["chown", "-R", "nobody:nogroup", "/srv/diagtest"])
    box.write_file(f"/etc/systemd/system/{unit}", UNIT)
    box.run(["systemctl", "daemon-reload"])
    cleanup.append("diag")
    try:
        # create --now rolls back: the fix is named for the next create
        rc, _out, err = cli(box, "create", "diag", "--unit", unit, "--now", check=False)
        assert rc != 0
        assert "/srv/diagtest exists on the host but not in the sandbox" in err
        assert "hint: create it again with --copy /srv/diagtest" in err

        cli(box, "create", "diag", "--unit", unit)
        rc, _out, err = cli(box, "start", "diag", check=False)
        assert rc != 0 and "hint: copy it in: sandbox-service copy diag /srv/diagtest" in err
        _rc, out, _err = cli(box, "status", "diag")
        assert "Failed:      /srv/diagtest exists on the host but not in the sandbox" in out

        _rc, out, _err = cli(box, "copy", "diag", "/srv/diagtest")
        assert out.startswith("Copied 1 files: /srv/diagtest into sandbox diag")
        rc, _out, err = cli(box, "copy", "diag", "/srv/diagtest", check=False)
        assert rc != 0 and "already in sandbox 'diag'" in err  # never overwritten
        assert "/srv/diagtest" in box.run(["cat", f"{BASE}/diag/sandbox.yaml"]).stdout
        owner = box.run(["stat", "-c", "%u", f"{BASE}/diag/root/srv/diagtest/config.txt"]).stdout
        nobody_in_range = box.run(["stat", "-c", "%u", f"{BASE}/diag/root"]).stdout
        assert int(owner) == int(nobody_in_range) + 65534  # nobody, inside the sandbox's own range

        cli(box, "start", "diag")
        assert show(box, "sandbox-diag.service", "ActiveState") == "active"
        _rc, out, _err = cli(box, "status", "diag")
        assert "Failed:" not in out
    finally:
        box.run(["rm", "-rf", f"/etc/systemd/system/{unit}", "/etc/diagtest", "/srv/diagtest"])
        box.run(["systemctl", "daemon-reload"])
