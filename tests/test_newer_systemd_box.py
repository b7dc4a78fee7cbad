"""What a newer systemd adds to every sandbox (directives.py decides per version): in effect on 257,
absent on 252, and what stands in for it there."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.box import SystemdBox
from tests.sandboxcli import BASE, UNIT_DIR, cli, program_pid, show, wait_inactive

pytestmark = pytest.mark.box

# What the service sees of itself: its PID, the PIDs it can see, its cgroup.
PROBE = (
    "import json, os, time; "
    "seen = sorted(int(p) for p in os.listdir('/proc') if p.isdigit()); "
    "cgroup = open('/proc/self/cgroup').read().strip(); "
    "json.dump({'pid': os.getpid(), 'seen': seen, 'cgroup': cgroup}, open('/var/self.json', 'w')); "
    "time.sleep(600)"
)


def systemd_version(box: SystemdBox) -> int:
    return int(box.run(["systemctl", "--version"]).stdout.split()[1])


def wait_for(box: SystemdBox, path: str, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while (done := box.run(["cat", path], check=False)).returncode != 0:
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)
    return done.stdout


def test_pid_and_cgroup_namespaces(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup.append("selfview")
    cli(box, "create", "selfview", "--now", "--", "/usr/bin/python3", "-c", PROBE)
    unit = box.run(["cat", f"{UNIT_DIR}/sandbox-selfview.service"]).stdout
    seen = json.loads(wait_for(box, f"{BASE}/selfview/root/var/self.json"))
    if systemd_version(box) >= 257:
        assert "PrivatePIDs=yes" in unit and "ProtectControlGroups=strict" in unit
        # the launcher is PID 1 of the sandbox's own PID namespace, the program below it, nothing else
        assert seen["pid"] > 1 and seen["seen"] == [1, seen["pid"]]
        assert all(line.endswith(":/") for line in seen["cgroup"].splitlines())  # its own cgroup root
        # the launcher passes the stop on: the program that never asked for SIGTERM still stops at once
        began = time.monotonic()
        box.run(["systemctl", "stop", "sandbox-selfview.service"])
        assert time.monotonic() - began < 10
        assert show(box, "sandbox-selfview.service", "Result") == "success"
    else:
        assert "PrivatePIDs=" not in unit and "ProtectControlGroups=strict" not in unit
        assert "ProtectControlGroups=yes" in unit
        main = int(show(box, "sandbox-selfview.service", "MainPID"))
        assert seen["pid"] == main > 2 and seen["seen"] == [main]  # the host's PIDs, its own only
        assert any(line.endswith("/sandbox-selfview.service") for line in seen["cgroup"].splitlines())


def user_unit(kill_mode: str = "control-group") -> str:
    return (
        f"[Service]\nUser=nobody\nKillMode={kill_mode}\nTimeoutStopSec=30\n"
        "EnvironmentFile=-/etc/default/otheruser\nExecStart=/usr/bin/sleep 1000\n"
    )


def make_otheruser(box: SystemdBox, cleanup: list[str], unit_text: str) -> Iterator[tuple[str, str]]:
    """A sandbox of a unit whose program runs as nobody: (its unit, what create printed)."""
    unit = "otheruser.service"
    box.write_file(f"/etc/systemd/system/{unit}", unit_text)
    box.write_file("/etc/default/otheruser", "A=1\n")
    box.run(["systemctl", "daemon-reload"])
    cleanup.append("otheruser")
    try:
        _rc, out, _err = cli(box, "create", "otheruser", "--unit", unit)
        yield "sandbox-otheruser.service", out
    finally:
        box.run(["rm", "-f", f"/etc/systemd/system/{unit}", "/etc/default/otheruser"])
        box.run(["systemctl", "daemon-reload"])


@pytest.fixture
def otheruser(box: SystemdBox, cleanup: list[str]) -> Iterator[str]:
    for unit, _out in make_otheruser(box, cleanup, user_unit()):
        yield unit


def start_and_wait_for(box: SystemdBox, unit: str, program: str) -> None:
    box.run(["systemctl", "start", unit])
    program_pid(box, unit, program)


@pytest.mark.systemd("257")
def test_init_passes_a_signal_on_to_a_program_of_another_user(box: SystemdBox, otheruser: str) -> None:
    """The launcher as PID 1 keeps CAP_KILL: a signal sent to the main process alone reaches its program,
    which switched users, and the launcher then ends with it."""
    assert "PrivatePIDs=yes" in box.run(["cat", f"{UNIT_DIR}/{otheruser}"]).stdout
    start_and_wait_for(box, otheruser, "sleep")
    box.run(["systemctl", "kill", "--kill-whom=main", "--signal=SIGTERM", otheruser])
    wait_inactive(box, otheruser, seconds=10)
    assert show(box, otheruser, "Result") == "success"


@pytest.mark.systemd("257")
def test_a_unit_that_stops_its_main_process_alone_keeps_its_clean_stop(
    box: SystemdBox, cleanup: list[str]
) -> None:
    """systemd 257 may take a PID namespace's first process as not its child and then, with KillMode=mixed,
    send SIGKILL right after SIGTERM (it did in 5 of 8 stops here): such a unit gets no PID namespace."""
    for unit, out in make_otheruser(box, cleanup, user_unit("mixed")):
        assert "PrivatePIDs=yes left out: with KillMode=mixed" in out
        assert "PrivatePIDs=" not in box.run(["cat", f"{UNIT_DIR}/{unit}"]).stdout
        for _ in range(5):
            start_and_wait_for(box, unit, "sleep")
            box.run(["systemctl", "stop", unit])
            assert show(box, unit, "Result") == "success"


# Run in the box: start the unit and hold its launcher at its first read (its settings, made a FIFO),
# stop the unit meanwhile, then let the launcher go on.  Prints the seconds each of three stops took.
STOP_DURING_SETUP = """
import contextlib, os, subprocess, sys, time
unit, settings = sys.argv[1], sys.argv[2]
text = open(settings, "rb").read()


def main_process() -> str:
    pid = subprocess.run(["systemctl", "show", "-P", "MainPID", unit], capture_output=True, text=True).stdout
    try:
        return open(f"/proc/{pid.strip()}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        return ""



def restore() -> None:
    os.unlink(settings)
    with open(settings, "wb") as f:
        f.write(text)


for _ in range(3):
    os.unlink(settings)
    os.mkfifo(settings, 0o644)
    try:
        subprocess.run(["systemctl", "start", "--no-block", unit], check=True)
        deadline = time.monotonic() + 30
        while True:  # opening the writing end succeeds once the launcher opened the reading end
            try:
                fd = os.open(settings, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert time.monotonic() < deadline, "the launcher never read its settings"
                time.sleep(0.01)
        # systemd learns the main process of a PrivatePIDs= unit from a message of its own: until it
        # has, a stop signals the process that forked it
        while "/.sandbox-service/launch" not in main_process():
            assert time.monotonic() < deadline, "systemd never knew the launcher as the main process"
            time.sleep(0.01)
        began = time.monotonic()
        subprocess.run(["systemctl", "stop", "--no-block", unit], check=True)
        time.sleep(0.3)  # the stop signal was sent while the launcher still waits for its settings
        with contextlib.suppress(BrokenPipeError):  # gone already: systemd 257 may SIGKILL it at once
            os.write(fd, text)
        os.close(fd)
    finally:
        restore()
    state = ["systemctl", "show", "-P", "ActiveState", unit]
    while subprocess.run(state, capture_output=True, text=True).stdout.strip() not in ("inactive", "failed"):
        assert time.monotonic() - began < 60, "the stop never ended"
        time.sleep(0.05)
    print(time.monotonic() - began)
"""


@pytest.mark.systemd("257")
def test_a_stop_during_the_launchers_set_up_is_not_lost(box: SystemdBox, otheruser: str) -> None:
    """The kernel drops a signal to PID 1 that it neither handles nor blocks: the launcher blocks the stop
    signals from its first line, so a stop sent while it still sets the sandbox up waits for it (before,
    such a stop waited out TimeoutStopSec=).  When systemd 257 took the launcher as not its child it
    sends SIGKILL at once instead, which ends the stop too; so three stops, to meet the other case."""
    settings = f"{BASE}/otheruser/root/.sandbox-service/launch.json"
    took = box.run(["python3", "-c", STOP_DURING_SETUP, otheruser, settings], timeout=300).stdout.split()
    assert len(took) == 3 and all(float(t) < 10 for t in took), took


def test_forking_daemon_keeps_the_hosts_pid_namespace(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup.append("forkweb")
    _rc, out, _err = cli(box, "create", "forkweb", "--unit", "nginx.service")
    unit = box.run(["cat", f"{UNIT_DIR}/sandbox-forkweb.service"]).stdout
    assert "PrivatePIDs=" not in unit
    if systemd_version(box) >= 257:
        assert "PrivatePIDs=yes left out: a forking daemon's first process would end its PID namespace" in out


def test_syslog_reaches_the_journal(box: SystemdBox, cleanup: list[str]) -> None:
    """The journal's sockets are in every sandbox: BindLogSockets= on 257, bound by the tool on 252."""
    cleanup.append("syslogger")
    word = f"sandbox-syslog-{time.monotonic_ns()}"
    cli(box, "create", "syslogger", "--", "/usr/bin/logger", "-t", "probe", word)
    unit = box.run(["cat", f"{UNIT_DIR}/sandbox-syslogger.service"]).stdout
    if systemd_version(box) >= 257:
        assert "BindLogSockets=yes" in unit and "/run/systemd/journal/dev-log" not in unit
    else:
        assert "BindLogSockets=" not in unit and '"-/run/systemd/journal/dev-log":"/dev/log"' in unit
    box.run(["systemctl", "start", "sandbox-syslogger.service"])
    deadline = time.monotonic() + 30
    while word not in cli(box, "logs", "syslogger")[1]:
        assert time.monotonic() < deadline, "the syslog line never reached the sandbox's journal"
        time.sleep(0.3)
