"""`upgrade` against a real systemd (the throwaway box of tests/box.py) and the real nginx.service.

The box's root is an overlay: host files changed here change only inside the box, and each test puts
back what it changed, since the box is shared by the whole session.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.box import SystemdBox
from tests.sandboxcli import BASE, UNIT_DIR, cli, reloads, show

pytestmark = pytest.mark.box

SAVED = "/root/upgrade-test-saved"


def cat(box: SystemdBox, path: str) -> str:
    return box.run(["cat", path]).stdout


def append(box: SystemdBox, path: str, line: str) -> None:
    box.run(["sh", "-c", 'printf "%s\\n" "$1" >> "$2"', "sh", line, path])


def upgrade_json(box: SystemdBox, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cli(box, "upgrade", *args, "--json")[1])
    return data


def snapshot(box: SystemdBox, name: str) -> str:
    """What upgrade may write: the sandbox's /etc, its base and spec, the unit directory (kinds, owners,
    modes, times, link targets and content hashes)."""
    paths = [f"{BASE}/{name}/root/etc", f"{BASE}/{name}/base", f"{BASE}/{name}/sandbox.yaml", UNIT_DIR]
    script = (
        'find "$@" -printf "%p %y %m %U %G %T@ %l\\n" | sort; '
        'find "$@" -type f -print0 | sort -z | xargs -0 sha256sum'
    )
    return box.run(["sh", "-c", script, "sh", *paths]).stdout


@pytest.fixture()
def keep(box: SystemdBox) -> Iterator[Callable[[str], None]]:
    """keep(PATH) saves a host file of the box (owner, mode, times, content); it is put back afterwards."""
    saved: list[str] = []

    def save(path: str) -> None:
        box.run(["mkdir", "-p", f"{SAVED}{path.rsplit('/', 1)[0]}"])
        box.run(["cp", "-a", path, f"{SAVED}{path}"])
        saved.append(path)

    yield save
    for path in saved:
        box.run(["cp", "-a", f"{SAVED}{path}", path], check=False)
    box.run(["rm", "-rf", SAVED], check=False)


def test_upgrade_merges_host_changes_and_restarts(
    box: SystemdBox, cleanup: list[str], keep: Callable[[str], None]
) -> None:
    """The acceptance test: a config file changed on the host only is taken from the host; one changed
    in the sandbox and on the host is kept, with the host's beside it as .hostnew; nginx runs again."""
    name = "upweb"
    service = f"sandbox-{name}.service"
    root = f"{BASE}/{name}/root"
    host_only, both = "/etc/nginx/mime.types", "/etc/nginx/nginx.conf"
    cleanup.append(name)
    cli(box, "create", name, "--unit", "nginx.service", "--now")

    keep(host_only)
    keep(both)
    tag = uuid.uuid4().hex
    append(box, host_only, f"# host change {tag}")
    append(box, both, f"# host change {tag}")
    append(box, f"{root}{both}", f"# sandbox change {tag}")
    host_only_text, both_host, both_sandbox = cat(box, host_only), cat(box, both), cat(box, f"{root}{both}")
    pid = show(box, service, "MainPID")

    before = snapshot(box, name)
    _rc, out, _err = cli(box, "upgrade", name, "--dry-run")
    assert f"updated   {host_only}" in out
    assert f"conflict  {both} (sandbox's kept; host's in {both}.hostnew)" in out
    assert "Dry run: nothing was written." in out
    assert snapshot(box, name) == before
    assert show(box, service, "MainPID") == pid

    data = upgrade_json(box, name)
    assert data["online"] and not data["dry_run"]
    (s,) = data["sandboxes"]
    assert {e["path"]: e["action"] for e in s["entries"]} == {host_only: "updated", both: "conflict"}
    assert s["running"] and s["restarted"]
    assert cat(box, f"{root}{host_only}") == host_only_text
    assert cat(box, f"{root}{both}") == both_sandbox
    assert cat(box, f"{root}{both}.hostnew") == both_host
    assert cat(box, f"{BASE}/{name}/base{both}") == both_host
    # written for the sandbox's root: owned by its own host account, as everything it may change
    assert (
        box.run(["stat", "-c", "%U:%G %a", f"{root}{both}.hostnew"]).stdout.strip()
        == f"sb-{name}:sb-{name} 644"
    )

    assert show(box, service, "ActiveState") == "active"
    assert show(box, service, "MainPID") not in ("0", pid)

    # the conflict is reported once: the next upgrade has nothing to say
    (s,) = upgrade_json(box, name, "--no-restart")["sandboxes"]
    assert s["entries"] == [] and s["units"] == [] and not s["restarted"]


def test_upgrade_picks_up_a_changed_host_unit(box: SystemdBox, cleanup: list[str]) -> None:
    """A drop-in added to the host unit reaches the sandbox's unit and spec; one reload, no restart."""
    name = "upunit"
    service = f"sandbox-{name}.service"
    dropin_dir = f"{UNIT_DIR}/nginx.service.d"
    cleanup.append(name)
    cli(box, "create", name, "--unit", "nginx.service", "--now")
    pid = show(box, service, "MainPID")
    box.write_file(f"{dropin_dir}/upgrade-test.conf", "[Service]\nEnvironment=UPGRADE_TEST=yes\n")
    try:
        box.run(["systemctl", "daemon-reload"])
        first = reloads(box)
        (s,) = upgrade_json(box, name, "--no-restart")["sandboxes"]
        assert reloads(box) == first + 1
        assert s["service_changes"] == ["environment"]
        # the unit, and the launcher's settings (which name the unit's environment variables)
        assert s["units"] == [f"{UNIT_DIR}/{service}", f"{BASE}/{name}/root/.sandbox-service/launch.json"]
        assert s["running"] and not s["restarted"]
        assert 'Environment="UPGRADE_TEST=yes"\n' in cat(box, f"{UNIT_DIR}/{service}")
        assert "UPGRADE_TEST" in cat(box, f"{BASE}/{name}/sandbox.yaml")
        assert show(box, service, "NeedDaemonReload") == "no"
        assert show(box, service, "Environment") == "UPGRADE_TEST=yes"  # systemd has the new unit
        assert show(box, service, "MainPID") == pid  # --no-restart
    finally:
        box.run(["rm", "-rf", dropin_dir])
        box.run(["systemctl", "daemon-reload"])


def test_upgrade_offline_merges_but_tells_systemd_nothing(box: SystemdBox, cleanup: list[str]) -> None:
    """With --root (here: the box's own root bound to another directory) files and units are merged
    and written, and systemd is neither reloaded nor asked to restart anything."""
    name = "upoff"
    service = f"sandbox-{name}.service"
    image = "/mnt/upgrade-test-image"
    cleanup.append(name)
    box.run(["mkdir", "-p", "/etc/upgrade-test"])
    box.run(["sh", "-c", "echo 1 > /etc/upgrade-test/a; echo 1 > /etc/upgrade-test/gone"])
    try:
        cli(box, "create", name, "--copy", "/etc/upgrade-test", "--", "/usr/bin/sleep", "600")
        cli(box, "start", name)
        pid = show(box, service, "MainPID")
        box.run(["sh", "-c", "echo 2 > /etc/upgrade-test/a; echo 1 > /etc/upgrade-test/new"])
        box.run(["rm", "/etc/upgrade-test/gone"])
        box.run(["mkdir", "-p", image])
        box.run(["mount", "--bind", "/", image])
        try:
            first = reloads(box)
            data = json.loads(cli(box, "--root", image, "upgrade", name, "--json")[1])
            _rc, out, _err = cli(box, "--root", image, "upgrade", name)
        finally:
            box.run(["umount", image])
        assert not data["online"] and not data["reloaded"]
        (s,) = data["sandboxes"]
        mine = {e["path"]: e["action"] for e in s["entries"] if e["path"].startswith("/etc/upgrade-test")}
        assert mine == {
            "/etc/upgrade-test/a": "updated",
            "/etc/upgrade-test/gone": "removed",
            "/etc/upgrade-test/new": "added",
        }
        assert not s["restarted"]
        assert "nothing reloaded or restarted" in out and "up to date" in out
        root = f"{BASE}/{name}/root/etc/upgrade-test"
        assert box.run(["ls", root]).stdout.split() == ["a", "new"]
        assert cat(box, f"{root}/a") == "2\n"
        assert reloads(box) == first
        assert show(box, service, "MainPID") == pid
    finally:
        box.run(["rm", "-rf", "/etc/upgrade-test"])
