"""A full file system under /var/lib/sandbox-service: create, clone and upgrade fail with a clear error
(exit status 17), leave nothing behind, and never change a sandbox that was there.

The box's /var/lib/sandbox-service is a small tmpfs for these tests, filled up to a chosen number of
free bytes by a file made with fallocate; each failing command runs at several fill levels, from none
free to just short of what it needs, so it runs out at different steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.box import SystemdBox
from tests.faults import differences, ok, run, state, systemd_matches_disk, tool

pytestmark = pytest.mark.box

BASE = "/var/lib/sandbox-service"
FILLER = f"{BASE}/.filler"
KEEP = "full-keep"  # a sandbox that exists all along: nothing may change in it
SKIP = ("root/var/log", "root/var/lib")


def free_bytes(box: SystemdBox) -> int:
    return int(box.run(["df", "-B1", "--output=avail", BASE]).stdout.split()[-1])


def fill(box: SystemdBox, leave: int) -> None:
    """Make the file system have `leave` bytes free (or as few above it as its page size allows)."""
    box.run(["rm", "-f", FILLER])
    size = free_bytes(box) - leave
    if size > 0:
        box.run(["fallocate", "-l", str(size), FILLER])


@pytest.fixture()
def small_disk(box: SystemdBox) -> Iterator[None]:
    box.run(["mkdir", "-p", BASE])
    box.run(["mount", "-t", "tmpfs", "-o", "size=16M,mode=0755", "sandbox-service-full", BASE])
    try:
        yield
    finally:
        box.run(["rm", "-f", FILLER], check=False)
        for name in ("full-new", "full-clone", "full-upg", KEEP):
            box.run(tool(box, "delete", name), check=False)
        box.run(["umount", BASE], check=False)


def levels(needed: int) -> list[int]:
    """Free space to leave: none, a page, a few pages, half of what is needed, just short of it."""
    return [0, 4096, 65536, needed // 2, needed - 65536]


def space_used_by(box: SystemdBox, *args: str, name: str) -> int:
    """How much the command takes on the small file system (it is run, and its sandbox deleted)."""
    before = free_bytes(box)
    ok(box, *args)
    used = before - free_bytes(box)
    ok(box, "delete", name)
    return used


def assert_full_and_nothing_left(box: SystemdBox, rc: int, out: str, what: str) -> None:
    assert rc == 17, f"{what}: exit status {rc}, not 17: {out}"
    assert "the file system is full" in out and "Traceback" not in out, out


def test_create_on_a_full_disk_fails_clearly_and_leaves_nothing(box: SystemdBox, small_disk: None) -> None:
    ok(box, "create", KEEP, "--unit", "nginx", "--now")
    args = ("create", "full-new", "--unit", "nginx")
    needed = space_used_by(box, *args, name="full-new")
    fill(box, 0)
    before = state(box, [KEEP, "full-new"], SKIP)  # the filler is in the listing from now on
    for leave in levels(needed):
        fill(box, leave)
        rc, out = run(box, *args)
        assert_full_and_nothing_left(box, rc, out, f"create with {leave} bytes free")
        assert "nothing of sandbox 'full-new' was kept" in out, out
        after = state(box, [KEEP, "full-new"], SKIP)
        assert not differences(after, before), (leave, differences(after, before))
        assert not systemd_matches_disk(after)
    box.run(["rm", FILLER])
    ok(box, *args)  # with space again, it works


def test_clone_on_a_full_disk_fails_clearly_and_leaves_nothing(box: SystemdBox, small_disk: None) -> None:
    ok(box, "create", KEEP, "--selinux", "enabled", "--", "/usr/bin/sleep", "300")
    args = ("clone", KEEP, "full-clone")
    needed = space_used_by(box, *args, name="full-clone")
    fill(box, 0)
    before = state(box, [KEEP, "full-clone"])
    for leave in levels(needed):
        fill(box, leave)
        rc, out = run(box, *args)
        assert_full_and_nothing_left(box, rc, out, f"clone with {leave} bytes free")
        after = state(box, [KEEP, "full-clone"])
        assert not differences(after, before), (leave, differences(after, before))
    box.run(["rm", FILLER])
    ok(box, *args)


BIG = "/etc/nginx/zz-fault-big.conf"  # merged last: the files before it are in place when space runs out
DROPIN = "/etc/systemd/system/nginx.service.d/fault-full.conf"


def test_an_upgrade_that_runs_out_of_space_puts_everything_back(box: SystemdBox, small_disk: None) -> None:
    """The host's update changes a small file, adds a big one and changes the unit: with room for the
    small change but not the big file, the upgrade fails, and the sandbox's /etc, spec and units are as
    before (the small change taken back too), and it keeps running; with room, it goes through."""
    name = "full-upg"
    box.run(["cp", "-a", "/etc/nginx", "/root/full-nginx-etc"])
    try:
        ok(box, "create", name, "--unit", "nginx", "--now")
        box.run(
            [
                "sh",
                "-c",
                "set -e\n"
                "printf '\\n# changed on the host\\n' >> /etc/nginx/mime.types\n"
                f"head -c 3000000 /dev/urandom | base64 > {BIG}\n"
                f"mkdir -p {DROPIN.rsplit('/', 1)[0]}\n"
                f"printf '[Service]\\nEnvironment=FULL=1\\n' > {DROPIN}\n"
                "systemctl daemon-reload\n",
            ]
        )
        fill(box, 0)
        before = state(box, [name], SKIP)
        pid = box.run(["systemctl", "show", "-P", "MainPID", f"sandbox-{name}.service"]).stdout.strip()
        for leave in (0, 65536, 1_000_000, 3_500_000):
            fill(box, leave)
            rc, out = run(box, "upgrade", name)
            assert rc == 17, f"upgrade with {leave} bytes free: {rc}: {out}"
            assert "the file system is full; nothing was changed" in out, out
            after = state(box, [name], SKIP)
            assert not differences(after, before), (leave, differences(after, before))
            assert not systemd_matches_disk(after)
            running = box.run(["systemctl", "show", "-P", "MainPID", f"sandbox-{name}.service"]).stdout
            assert running.strip() == pid, "the sandbox was restarted by an upgrade that failed"
        box.run(["rm", FILLER])
        out = ok(box, "upgrade", name)
        assert "zz-fault-big.conf" in out and "mime.types" in out, out
        merged = box.run(["cmp", BIG, f"{BASE}/{name}/root{BIG}"], check=False)
        assert merged.returncode == 0, merged.stdout
    finally:
        box.run(
            [
                "sh",
                "-c",
                f"rm -rf /etc/nginx {DROPIN} && cp -a /root/full-nginx-etc /etc/nginx && "
                "rm -rf /root/full-nginx-etc && systemctl daemon-reload",
            ],
            check=False,
        )
