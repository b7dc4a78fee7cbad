"""The sandbox against its own root: a compromised service attacks the host and a second sandbox.

Everything runs in the systemd box.  A victim sandbox (nginx, with a published port and so a proxy
process) and host processes (PID 1, journald, a non-root process) are the targets; the attacker is the
root of another sandbox, both through `execute` and as the sandbox's own service process.  The host's
files and the victim's tree are hashed before and after.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.box import SystemdBox
from tests.sandboxcli import BASE, cli, main_pid, program_pid, remove_sandboxes, show, wait_inactive

pytestmark = pytest.mark.box

ATTACK = Path(__file__).with_name("attack_inside.py")
HASHED = ("/etc", "/root", "/usr/local", f"{BASE}/victim")
# What a refused attempt may meet: the process is invisible (ENOENT, ESRCH), or visible and protected.
REFUSED = {"ENOENT", "ESRCH", "EPERM", "EACCES"}


def tree_hash(box: SystemdBox) -> str:
    """Names, owners, modes and contents of everything below HASHED (the victim's /run is its own mount)."""
    script = (
        "find " + " ".join(HASHED) + " -xdev -printf '%p %U:%G %m %y %l\\n' | sort; "
        "find " + " ".join(HASHED) + " -xdev -type f -print0 | sort -z | xargs -0 sha256sum"
    )
    out = box.run(["sh", "-c", script]).stdout
    return out


def identity(box: SystemdBox, pid: int) -> dict[str, object]:
    """A process as the attacker must name it: its PID here, start time and name (see attack_inside.py)."""
    raw = box.run(["cat", f"/proc/{pid}/stat"]).stdout
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    return {"pid": pid, "start": int(raw[raw.rindex(")") + 2 :].split()[19]), "comm": comm}


@pytest.fixture(scope="module")
def arena(box: SystemdBox) -> Iterator[dict[str, int]]:
    """The victim sandbox serving, a host process running as nobody, the attacker's sandbox running."""
    names = ["victim", "atk", "atksvc"]
    try:
        cli(box, "create", "victim", "--unit", "nginx.service", "--publish", "8081:80", "--now")
        box.run(["systemd-run", "--unit", "hostsleeper", "-p", "User=nobody", "sleep", "3600"])
        # a connection through the published port starts the proxy process
        box.run(["curl", "-s", "-o", "/dev/null", "--max-time", "5", "http://127.0.0.1:8081/"])
        victim = main_pid(box, "sandbox-victim.service")
        worker = int(box.run(["pgrep", "-P", str(victim)]).stdout.split()[0])
        targets = {
            "host_pid1": 1,
            "host_journald": main_pid(box, "systemd-journald.service"),
            "host_nobody": main_pid(box, "hostsleeper.service"),
            "victim_main": victim,
            "victim_worker": worker,
            "victim_proxy": main_pid(box, "sandbox-victim-publish-8081.service"),
        }
        cli(box, "create", "atk", "--now", "--", "/usr/bin/python3", "-c", "import time; time.sleep(10**6)")
        box.run(["tee", f"{BASE}/atk/root/var/attack_inside.py"], input=ATTACK.read_text())
        yield targets
    finally:
        box.run(["systemctl", "stop", "hostsleeper.service"], check=False)
        remove_sandboxes(box, names)


def targets_json(box: SystemdBox, targets: dict[str, int]) -> str:
    return json.dumps({"targets": {label: identity(box, pid) for label, pid in targets.items()}})


def check_refused(box: SystemdBox, result: dict[str, object], targets: dict[str, int]) -> None:
    inner, outer, count = (str(v) for v in result["uid_map"])  # type: ignore[attr-defined]
    assert result["uid"] == 0 and inner == "0" and count == "65536" and int(outer) >= 2**30
    seen = {tuple(i) for i in result["identities"]}  # type: ignore[attr-defined]
    per_target: dict[str, dict[str, str]] = result["targets"]  # type: ignore[assignment]
    for label, pid in targets.items():
        ident = identity(box, pid)
        assert (ident["start"], ident["comm"]) not in seen, f"{label} (PID {pid}) is visible from inside"
        for probe, outcome in per_target[label].items():
            assert outcome in REFUSED, f"{probe} against {label} (PID {pid}): {outcome}"
    expected = {
        "system_bus": {"ENOENT"},
        "new_user_namespace": {"EPERM"},
        "new_mount_namespace": {"EPERM"},
        "mount_tmpfs": {"EPERM"},
        "write_usr": {"EROFS"},
        "replace_launcher": {"EACCES", "EROFS"},
        "launcher_dir": {"EACCES", "EROFS"},
        "rename_etc": {"EROFS"},
        "replace_loader_link": {"EROFS"},
        "new_top_entry": {"EROFS"},
        "preload_list": {""},
        "unlink_preload": {"EBUSY"},
        "unlink_ld_cache": {"EBUSY"},
        "sysctl": {"EACCES", "EROFS"},
        "fill_run": {"ENOSPC"},
    }
    for probe, allowed in expected.items():
        assert result[probe] in allowed, f"{probe}: {result[probe]}"


def test_attacks_through_execute_fail(box: SystemdBox, arena: dict[str, int]) -> None:
    before = tree_hash(box)
    box_free = box.run(["df", "--output=avail", "/run"]).stdout.split()[-1]
    rc, _out, err = cli(
        box,
        "execute", "atk", "--", "/usr/bin/python3", "/var/attack_inside.py", "/var/attack.json",
        targets_json(box, arena),
        check=False,
    )  # fmt: skip
    assert rc == 0, err
    result = json.loads(box.run(["cat", f"{BASE}/atk/root/var/attack.json"]).stdout)
    check_refused(box, result, arena)
    # the attacker sees its own sandbox: its service (joined through execute), nothing else
    own = identity(box, main_pid(box, "sandbox-atk.service"))
    assert [own["start"], own["comm"]] in result["identities"]
    assert tree_hash(box) == before
    # filling its /run took nothing from the host's
    assert box.run(["df", "--output=avail", "/run"]).stdout.split()[-1] == box_free


def test_attacks_from_the_service_process_fail(box: SystemdBox, arena: dict[str, int]) -> None:
    argv = ["/usr/bin/python3", "/var/attack_inside.py", "/var/attack.json", targets_json(box, arena)]
    cli(box, "create", "atksvc", "--", *argv)
    box.run(["tee", f"{BASE}/atksvc/root/var/attack_inside.py"], input=ATTACK.read_text())
    before = tree_hash(box)
    box.run(["systemctl", "start", "sandbox-atksvc.service"])
    wait_inactive(box, "sandbox-atksvc.service")
    assert show(box, "sandbox-atksvc.service", "Result") == "success"
    result = json.loads(box.run(["cat", f"{BASE}/atksvc/root/var/attack.json"]).stdout)
    check_refused(box, result, arena)
    assert tree_hash(box) == before


def test_pid_file_cannot_make_systemd_adopt_a_host_process(box: SystemdBox, cleanup: list[str]) -> None:
    """The service writes a host process's PID into its PID file and exits (Type=forking): systemd must
    not take that process as the sandbox's main process, and stopping the sandbox must not kill it."""
    box.write_file(
        "/etc/systemd/system/hijack.service",
        "[Service]\nType=forking\nPIDFile=/run/hijack.pid\n"
        "ExecStart=/bin/sh -c 'cat /etc/hijack-target > /run/hijack.pid'\n",
    )
    box.write_file("/etc/hijack-target", "1\n")
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemd-run", "--unit", "hijacked", "sleep", "3600"])
    cleanup.append("hijack")
    try:
        target = main_pid(box, "hijacked.service")
        cli(box, "create", "hijack", "--unit", "hijack.service", "--copy", "/etc/hijack-target")
        box.run(["tee", f"{BASE}/hijack/root/etc/hijack-target"], input=f"{target}\n")
        started = box.run(["systemctl", "start", "sandbox-hijack.service"], check=False)
        assert show(box, "sandbox-hijack.service", "MainPID") != str(target)
        journal = box.run(["journalctl", "-u", "sandbox-hijack.service", "-o", "cat", "--no-pager"]).stdout
        assert started.returncode != 0 and "Refusing" in journal, journal
        box.run(["systemctl", "stop", "sandbox-hijack.service"], check=False)
        assert show(box, "hijacked.service", "ActiveState") == "active"
        assert main_pid(box, "hijacked.service") == target
    finally:
        box.run(["systemctl", "stop", "hijacked.service"], check=False)


EVIL_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void evil(void) {
    FILE *f = fopen("/var/evil.log", "a");
    if (f) { fprintf(f, "loaded in pid %d as uid %d\n", getpid(), getuid()); fclose(f); }
}
"""


def test_loader_tricks_do_not_reach_the_launcher(box: SystemdBox, cleanup: list[str], tmp_path: Path) -> None:
    """The sandbox's root plants a library through its environment file and the loader's preload list,
    then waits for the next start: the launcher starts with capabilities on the host, so neither may
    load anything into it (nor into anything else)."""
    box.write_file(
        "/etc/systemd/system/preload.service",
        "[Service]\nEnvironmentFile=-/etc/default/preload\nExecStart=/usr/bin/sleep 3600\n",
    )
    box.write_file("/etc/default/preload", "GREETING=hello\n")
    box.run(["systemctl", "daemon-reload"])
    cleanup.append("preload")
    cli(box, "create", "preload", "--unit", "preload.service", "--copy", "/etc/default/preload", "--now")
    # built on the host (the Debian 13 tree has no compiler); any glibc from 2.36 on loads it
    source, library = tmp_path / "evil.c", tmp_path / "evil.so"
    source.write_text(EVIL_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    box.path(f"{BASE}/preload/root/var/evil.so").write_bytes(library.read_bytes())
    plant = (
        "open('/etc/default/preload', 'a').write('LD_PRELOAD=/var/evil.so\\nLD_LIBRARY_PATH=/var\\n')\n"
        "try:\n    open('/etc/ld.so.preload', 'w').write('/var/evil.so\\n')\nexcept OSError:\n    pass\n"
        "print('preload list:', repr(open('/etc/ld.so.preload').read()))\n"
    )
    rc, out, err = cli(box, "execute", "preload", "--", "/usr/bin/python3", "-c", plant, check=False)
    assert rc == 0, err
    assert "preload list: ''" in out  # the loader's preload list stays empty
    box.run(["systemctl", "restart", "sandbox-preload.service"])
    pid = program_pid(box, "sandbox-preload.service", "sleep")
    environ = box.run(["cat", f"/proc/{pid}/environ"]).stdout.split("\0")
    assert "GREETING=hello" in environ  # the environment file is read...
    assert not any(v.startswith(("LD_PRELOAD=", "LD_LIBRARY_PATH=")) for v in environ)  # ...minus these
    assert box.run(["test", "-e", f"{BASE}/preload/root/var/evil.log"], check=False).returncode != 0
