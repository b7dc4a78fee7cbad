"""Generic and chroot containers, execute/connect and clone, against the real systemd box."""

from __future__ import annotations

import json

import pytest

from tests.box import SystemdBox
from tests.sandboxcli import BASE, cli, show

pytestmark = pytest.mark.box

SERVER = (
    "import http.server as h; h.HTTPServer(('127.0.0.1', 8000), h.SimpleHTTPRequestHandler).serve_forever()"
)


def status_fields(box: SystemdBox, pid: str | int) -> dict[str, str]:
    text = box.run(["cat", f"/proc/{pid}/status"]).stdout
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def test_generic_http_server_and_execute(box: SystemdBox) -> None:
    cli(box, "create", "gen", "--now", "--", "/usr/bin/python3", "-c", SERVER)
    try:
        pid = show(box, "sandbox-gen.service", "MainPID")
        box.run(
            [
                "sh",
                "-c",
                f"for i in $(seq 50); do nsenter -t {pid} -n curl -s -o /dev/null "
                "http://127.0.0.1:8000/ && exit 0; sleep 0.1; done; exit 1",
            ]
        )
        listing = box.run_in_netns_of(int(pid), ["curl", "-sS", "http://127.0.0.1:8000/"]).stdout
        assert "Directory listing" in listing

        # execute: same seccomp mode, capability bounding set and network namespace as the service
        _rc, out, _err = cli(box, "execute", "gen", "--", "/bin/cat", "/proc/self/status")
        mine = {k: v.strip() for k, v in (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)}
        theirs = status_fields(box, pid)
        assert mine["Seccomp"] == theirs["Seccomp"] == "2"
        assert mine["CapBnd"] == theirs["CapBnd"]
        _rc, out, _err = cli(box, "execute", "gen", "--", "/usr/bin/readlink", "/proc/self/ns/net")
        assert out.strip() == box.run(["readlink", f"/proc/{pid}/ns/net"]).stdout.strip()
        # ... and reaches the service on the sandbox's loopback, and cannot write /usr
        _rc, out, _err = cli(box, "execute", "gen", "--", "/usr/bin/curl", "-s", "http://127.0.0.1:8000/")
        assert "Directory listing" in out
        rc, _out, _err = cli(box, "execute", "gen", "--", "/usr/bin/touch", "/usr/x", check=False)
        assert rc != 0
        rc, _out, _err = cli(box, "execute", "gen", "--", "/bin/sh", "-c", "exit 7", check=False)
        assert rc == 7
    finally:
        cli(box, "delete", "gen")


def test_execute_on_a_stopped_sandbox_fails_clearly(box: SystemdBox) -> None:
    cli(box, "create", "idle", "--", "/usr/bin/sleep", "60")
    try:
        rc, _out, err = cli(box, "execute", "idle", "--", "/bin/true", check=False)
        assert rc == 12 and "not running" in err and "sandbox-service start idle" in err
    finally:
        cli(box, "delete", "idle")


def test_chroot_sandbox_runs_from_its_own_tree(box: SystemdBox) -> None:
    busybox = box.run(["sh", "-c", "command -v busybox"], check=False).stdout.strip()
    assert busybox, "busybox-static is installed by scripts/install-deps.sh and scripts/build-trixie.sh"
    tree = "/srv/chroot-test"
    box.run(["mkdir", "-p", f"{tree}/bin", f"{tree}/out"])
    box.run(["cp", busybox, f"{tree}/bin/busybox"])
    box.run(["ln", "-sf", "busybox", f"{tree}/bin/sh"])
    try:
        rc, _out, err = cli(box, "create", "chr", "--chroot", tree, "--", "/bin/missing", check=False)
        assert rc == 3 and "/bin/missing does not exist inside /srv/chroot-test" in err
        script = "ls /usr > /out/usr.txt 2>&1; echo ran-inside > /out/done.txt"
        cli(box, "create", "chr", "--chroot", tree, "--", "/bin/busybox", "sh", "-c", script)
        box.run(["systemctl", "start", "sandbox-chr.service"])
        box.run(
            [
                "sh",
                "-c",
                f"for i in $(seq 50); do test -s {tree}/out/done.txt && exit 0; sleep 0.1; done; exit 1",
            ]
        )
        assert box.run(["cat", f"{tree}/out/done.txt"]).stdout.strip() == "ran-inside"
        seen = box.run(["cat", f"{tree}/out/usr.txt"]).stdout.split()
        assert "bin" not in seen and "share" not in seen, seen  # the host's /usr is not there
        assert show(box, "sandbox-chr.service", "RootDirectory") == tree
    finally:
        cli(box, "delete", "chr", check=False)
        box.run(["rm", "-rf", tree])


def test_clone_of_a_running_nginx(box: SystemdBox) -> None:
    cli(box, "create", "orig", "--unit", "nginx", "--selinux", "enabled", "--now")
    try:
        box.run(["mkdir", "-p", f"{BASE}/orig/root/var/www/html"])
        box.run(["tee", f"{BASE}/orig/root/var/www/html/index.html"], input="original\n")
        before = box.run(["sh", "-c", f"cd {BASE}/orig && find . -type f | sort | xargs sha256sum"]).stdout
        cli(box, "clone", "orig", "copy")
        assert show(box, "sandbox-copy.service", "ActiveState") == "inactive"  # starts stopped
        unit = box.run(["cat", "/etc/systemd/system/sandbox-copy.service"]).stdout
        assert "/var/lib/sandbox-service/copy/root" in unit and "sandbox-orig" not in unit
        cli(box, "start", "copy")
        box.run(["tee", f"{BASE}/copy/root/var/www/html/index.html"], input="the copy\n")
        for name, page in (("orig", "original"), ("copy", "the copy")):
            pid = int(show(box, f"sandbox-{name}.service", "MainPID"))
            assert box.run_in_netns_of(pid, ["curl", "-sS", "http://127.0.0.1/"]).stdout.strip() == page
        levels = {
            n: json.loads(cli(box, "status", n, "--json")[1])["selinux_context"] for n in ("orig", "copy")
        }
        assert levels["orig"] != levels["copy"]
        cli(box, "stop", "orig")
        after = box.run(["sh", "-c", f"cd {BASE}/orig && find . -type f | sort | xargs sha256sum"]).stdout
        changed = {line.split()[1] for line in set(before.splitlines()) ^ set(after.splitlines())}
        assert all(p.startswith("./root/var/log/") for p in changed), changed  # only its own logs moved on
        rc, _out, err = cli(box, "clone", "orig", "copy", check=False)
        assert rc == 4 and "already exists" in err
    finally:
        cli(box, "delete", "orig", "copy", check=False)


def test_connect_opens_a_shell_inside(box: SystemdBox) -> None:
    cli(box, "create", "shell", "--now", "--", "/usr/bin/sleep", "300")
    try:
        pid = show(box, "sandbox-shell.service", "MainPID")
        tool = " ".join([*box.tool_argv, "connect", "shell"])
        # script(1) gives connect the terminal an interactive shell needs; the commands are typed only
        # once the shell inside had time to start, as a person would
        typed = "sleep 2; printf 'readlink /proc/self/ns/net; exit 3\\n'; sleep 5"
        done = box.run(["sh", "-c", f"({typed}) | script -qec '{tool}' /dev/null"], check=False)
        assert box.run(["readlink", f"/proc/{pid}/ns/net"]).stdout.strip() in done.stdout
        assert done.returncode == 3
    finally:
        cli(box, "delete", "shell")
