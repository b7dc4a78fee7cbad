"""Clone and delete of a sandbox whose service attacks its own tree while the tool copies it.

The sandbox's root user owns its tree: it can swap a directory for a symlink to the host's /etc at any
moment, or build a directory tree deeper than any recursive walk survives. Neither may make a clone read
outside the sandbox, nor make clone or delete fail.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.box import SystemdBox
from tests.sandboxcli import BASE, cli, show

pytestmark = pytest.mark.box

CLONES = 20
DEPTH = 3000

# Runs as the sandbox's service (root inside its own root): /var/race/d is a directory with a file in it
# and, as often as the loop gets round, a symlink to /etc instead.
SWAPPER = """\
import os
os.makedirs("/var/race/d", exist_ok=True)
with open("/var/race/d/own.txt", "w") as f:
    f.write("the sandbox's own file\\n")
if not os.path.exists("/var/race/fifo"):
    os.mkfifo("/var/race/fifo")
open("/var/race/ready", "w").close()
while True:
    os.rename("/var/race/d", "/var/race/d.real")
    os.symlink("/etc", "/var/race/d")
    os.unlink("/var/race/d")
    os.rename("/var/race/d.real", "/var/race/d")
"""

# Builds /var/deep/d/d/... DEPTH levels down (by descriptor: the path is longer than PATH_MAX), puts a
# file at the bottom, says so, and idles.
DEEP = f"""\
import os, time
fd = os.open("/var", os.O_RDONLY | os.O_DIRECTORY)
for name in ["deep"] + ["d"] * {DEPTH - 1}:
    os.mkdir(name, dir_fd=fd)
    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = sub
os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
open("/var/deep-ready", "w").close()
time.sleep(3600)
"""


def start_with_script(box: SystemdBox, name: str, script: str, ready: str) -> None:
    cli(box, "create", name, "--", "/usr/bin/python3", "/var/attack.py")
    box.run(["tee", f"{BASE}/{name}/root/var/attack.py"], input=script)
    cli(box, "start", name)
    box.run(
        [
            "sh",
            "-c",
            f"for i in $(seq 300); do test -e {BASE}/{name}/root{ready} && exit 0; sleep 0.1; done; exit 1",
        ]
    )


def file_hashes(box: SystemdBox, top: str) -> set[str]:
    out = box.run(["sh", "-c", 'find "$1" -type f -print0 | xargs -0 -r sha256sum', "sh", top]).stdout
    return {line.split()[0] for line in out.splitlines()}


def test_clone_of_a_sandbox_swapping_a_directory_for_a_link_to_etc(
    box: SystemdBox, cleanup: list[str]
) -> None:
    shadow = hashlib.sha256(box.run(["cat", "/etc/shadow"]).stdout.encode()).hexdigest()
    copies = [f"race-copy{i}" for i in range(CLONES)]
    cleanup += ["race", *copies]
    start_with_script(box, "race", SWAPPER, "/var/race/ready")
    try:
        for copy in copies:
            out = cli(box, "clone", "race", copy)[1]
            assert "left out root/var/race/fifo: a FIFO" in out, out
        assert show(box, "sandbox-race.service", "ActiveState") == "active"  # swapping all along
        for copy in copies:
            assert shadow not in file_hashes(box, f"{BASE}/{copy}"), f"{copy} holds the host's /etc/shadow"
            # what was copied of the swapped directory is the sandbox's: its own file or the link
            found = box.run(["find", f"{BASE}/{copy}/root/var/race", "-mindepth", "1"]).stdout.split()
            assert found, copy
            allowed = ("/var/race/d", "/var/race/d.real", "/var/race/ready")
            assert all(p.split("/root", 1)[1].startswith(allowed) for p in found), found
    finally:
        cli(box, "delete", "race", *copies, check=False)
    for name in ("race", *copies):
        assert box.run(["test", "-e", f"{BASE}/{name}"], check=False).returncode != 0, name


def test_clone_and_delete_of_a_3000_deep_tree(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup += ["deep", "deep-copy"]
    start_with_script(box, "deep", DEEP, "/var/deep-ready")
    try:
        cli(box, "clone", "deep", "deep-copy")
        levels = box.run(["find", f"{BASE}/deep-copy/root/var/deep", "-type", "d"]).stdout.splitlines()
        assert len(levels) == DEPTH
        bottom = box.run(["find", f"{BASE}/deep-copy/root/var/deep", "-name", "bottom"]).stdout.split()
        assert len(bottom) == 1
        assert bottom[0].split("/var/deep/", 1)[1].split("/") == ["d"] * (DEPTH - 1) + ["bottom"]
    finally:
        rc, _out, err = cli(box, "delete", "deep", "deep-copy", check=False)
    assert rc == 0, err
    for name in ("deep", "deep-copy"):
        assert box.run(["test", "-e", f"{BASE}/{name}"], check=False).returncode != 0, name
