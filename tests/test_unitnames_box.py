"""A create that names a service as Fedora/RHEL does, on Debian (the box): the error says what Debian
calls it and how to use that, and nothing is written."""

from __future__ import annotations

import pytest

from tests.box import SystemdBox
from tests.sandboxcli import BASE, UNIT_DIR, cli

pytestmark = pytest.mark.box


def refused(box: SystemdBox, *args: str) -> str:
    status, _out, err = cli(box, "create", *args, check=False)
    assert status == 3, err  # NotFound
    name = args[0]
    assert box.run(["test", "-e", f"{BASE}/{name}"], check=False).returncode != 0
    assert box.run(["test", "-e", f"{UNIT_DIR}/sandbox-{name}.service"], check=False).returncode != 0
    return err


def test_fedora_names_on_debian(box: SystemdBox) -> None:
    # httpd: apache2 is installed here, so the hint is the command that works ...
    err = refused(box, "httpd")
    assert "unit httpd.service is not available (load state: not-found)" in err
    assert "hint: Debian calls it apache2.service: sandbox-service create httpd --unit apache2.service" in err
    # ... and it does
    assert box.run(["systemctl", "cat", "apache2.service"], check=False).returncode == 0
    # the same through --unit, and for a service that is not installed: the package to install
    err = refused(box, "jobs", "--unit", "crond")
    assert "hint: Debian calls it cron.service (package cron), which is not installed" in err
    # a name no family uses keeps the plain hint
    err = refused(box, "nosuch")
    assert "hint: check the name with: systemctl list-unit-files" in err
