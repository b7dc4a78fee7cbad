"""Two runs of the tool at once, for real: one is stopped after a chosen step (strace injects SIGSTOP
there; the step is found by recording the command first, see tests/faults.py) while the other runs.

- a second run on the same sandbox waits, saying for whom, or with --no-wait fails at once (status 16);
- clones of one source run side by side (the source's lock is shared), and the source cannot be
  deleted meanwhile;
- two sandboxes cannot take the same published port, however their creates interleave (the check and
  the publication are one step under the host lock).
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests import faults
from tests.box import BASE_ENV, SystemdBox
from tests.faults import BASE, Step, state, tool

pytestmark = pytest.mark.box


def run(box: SystemdBox, *args: str) -> tuple[int, str, str]:
    done = box.run(tool(box, *args), check=False)
    return done.returncode, done.stdout, done.stderr


def ok(box: SystemdBox, *args: str) -> str:
    rc, out, err = run(box, *args)
    assert rc == 0, f"{args} failed ({rc}): {out}{err}"
    return out


def spec_written(box: SystemdBox, *args: str, name: str) -> Step:
    """The step in which the command puts the new sandbox's sandbox.yaml into its staging directory
    (everything is staged, nothing published yet; the sandbox's lock is held); the command's sandbox is
    deleted again."""
    steps = faults.record(box, *args)
    ok(box, "delete", name)
    return next(s for s in steps if s.syscall == "rename" and s.where.endswith("/.sandbox.yaml.tmp-PID"))


# Kills the processes whose command line ends with the arguments given (the tool and its strace).
KILL_BY_ARGV = """
import os, signal, sys
want = [a.encode() for a in sys.argv[1:]]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")[:-1]
    except OSError:
        continue
    if argv[-len(want):] == want and int(pid) != os.getpid():
        os.kill(int(pid), signal.SIGKILL)
"""


class HeldUp:
    """The command, started in the background and stopped (SIGSTOP, injected by strace) right after
    `step`, which it has done when this returns; release() lets it go on."""

    def __init__(self, box: SystemdBox, step: Step, name: str, *args: str) -> None:
        self.box = box
        faults.settle(box)
        inject = f"inject={step.syscall}:signal=STOP:when={step.nth}"
        argv = ["strace", "-q", "-o", "/dev/null", "-e", f"trace={step.syscall}", "-e", inject]
        self.proc = subprocess.Popen(
            box.command([*argv, *tool(box, *args)]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(BASE_ENV),
        )
        self.pid = ""
        deadline = time.monotonic() + 60
        while not self._stopped(name):
            assert self.proc.poll() is None, f"{args} ended before {step}: {self.proc.communicate()}"
            if time.monotonic() > deadline:
                self._kill(args)
                raise AssertionError(f"{args} did not get to {step}")
            time.sleep(0.05)

    def _kill(self, args: tuple[str, ...]) -> None:
        """The command stopped elsewhere: kill it (found by its command line), so it holds no lock."""
        self.box.run([*self.box.python_argv, "-c", KILL_BY_ARGV, *args], check=False)
        self.proc.communicate(timeout=60)

    def _stopped(self, name: str) -> bool:
        """The tool's process (its PID is in its staging directory's name) is stopped."""
        found = self.box.run(["sh", "-c", f"ls -d {BASE}/.{name}.staging-*"], check=False).stdout.split()
        if not found:
            return False
        self.pid = found[0].rsplit("-", 1)[1]
        status = self.box.run(["cat", f"/proc/{self.pid}/status"], check=False).stdout
        return "\nState:\tt" in status

    def release(self) -> tuple[int, str, str]:
        self.box.run(["kill", "-CONT", self.pid])
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out, err


def test_a_second_run_waits_for_the_first_or_fails_with_no_wait(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup.append("lock-one")
    create = ("create", "lock-one", "--", "/usr/bin/sleep", "300")
    step = spec_written(box, *create, name="lock-one")
    first = HeldUp(box, step, "lock-one", *create)
    try:
        rc, _out, err = run(box, "delete", "lock-one", "--no-wait")
        assert rc == 16, err
        assert "sandbox 'lock-one' is being changed by another sandbox-service (PID " in err, err
        assert "sandbox-service create lock-one" in err, err  # whose run it is
        # a delete waits for the create, then deletes what it made
        delete = subprocess.Popen(
            box.command(tool(box, "delete", "lock-one")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(BASE_ENV),
        )
        time.sleep(1)
        assert delete.poll() is None, f"the delete did not wait: {delete.communicate()}"
    finally:
        rc, out, err = first.release()
    assert rc == 0 and "Created sandbox lock-one" in out, out + err
    out, err = delete.communicate(timeout=120)
    assert delete.returncode == 0 and "Deleted sandbox lock-one." in out, out + err
    assert "waiting: sandbox 'lock-one' is being changed by another sandbox-service (PID " in err, err
    assert run(box, "status", "lock-one")[0] == 3  # the delete came second: the sandbox is gone


def test_clones_of_one_source_run_side_by_side_and_keep_it(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup += ["lock-c1", "lock-c2", "lock-src"]
    ok(box, "create", "lock-src", "--", "/usr/bin/sleep", "300")
    step = spec_written(box, "clone", "lock-src", "lock-c1", name="lock-c1")
    first = HeldUp(box, step, "lock-c1", "clone", "lock-src", "lock-c1")
    try:
        ok(box, "clone", "lock-src", "lock-c2", "--no-wait")  # the source's lock is shared
        rc, _out, err = run(box, "delete", "lock-src", "--no-wait")
        assert rc == 16 and "sandbox 'lock-src' is being changed" in err, err
        rc, _out, err = run(box, "clone", "lock-src", "lock-c1", "--no-wait")
        assert rc == 16 and "sandbox 'lock-c1' is being changed" in err, err
    finally:
        rc, out, err = first.release()
    assert rc == 0, out + err
    for name in ("lock-src", "lock-c1", "lock-c2"):
        assert run(box, "status", name)[0] == 0


def test_two_creates_cannot_publish_the_same_port(box: SystemdBox, cleanup: list[str]) -> None:
    """The second create checked the port before the first had it; it is checked again, under the host
    lock, right before the second publishes: it fails, and nothing of it is left."""
    cleanup += ["lock-pa", "lock-pb"]
    create_b = ("create", "lock-pb", "-p", "127.0.0.1:8097:80", "--", "/usr/bin/sleep", "300")
    step = spec_written(box, *create_b, name="lock-pb")
    second = HeldUp(box, step, "lock-pb", *create_b)
    try:
        ok(box, "create", "lock-pa", "-p", "127.0.0.1:8097:80", "--", "/usr/bin/sleep", "300")
    finally:
        rc, out, err = second.release()
    assert rc == 4 and "8097" in err, out + err
    after = state(box, ["lock-pb"])
    assert after["dir lock-pb"] is None
    assert "lock-pb" not in str(after["base"]), after["base"]
    assert "lock-pb" not in str(after["units"]), after["units"]
    assert "lock-pb" not in str(after["accounts"]), after["accounts"]
    assert "lock-pb" not in str(after[".id-registry.json"])
    assert run(box, "status", "lock-pa")[0] == 0
