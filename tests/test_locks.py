"""locks.py with real processes on a temporary directory (no systemd needed): exclusive and shared
locks, waiting and --no-wait, who holds a lock, and lock files that never outlive their runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_service import locks
from sandbox_service.errors import Busy
from sandbox_service.locks import LockPolicy
from sandbox_service.paths import Layout

HOLDER = """
import sys, time
from pathlib import Path
from sandbox_service import locks
from sandbox_service.paths import Layout
layout = Layout(Path(sys.argv[1]))
mode = sys.argv[2]
with locks.sandboxes(layout, [] if mode == "shared" else [sys.argv[3]], shared=[sys.argv[3]]):
    print("held", flush=True)
    time.sleep(float(sys.argv[4]))
"""


class Holder:
    """Another process holding a sandbox's lock."""

    def __init__(self, root: Path, name: str, *, shared: bool = False, seconds: float = 60) -> None:
        mode = "shared" if shared else "exclusive"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(root), mode, name, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "held"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def end(self) -> None:
        self.proc.terminate()
        self.proc.wait()


@pytest.fixture()
def layout(tmp_path: Path) -> Iterator[Layout]:
    yield Layout(tmp_path)


NO_WAIT = LockPolicy(wait=False)


def test_a_held_lock_makes_no_wait_fail_and_names_the_holder(layout: Layout) -> None:
    holder = Holder(layout.root, "web")
    try:
        with pytest.raises(Busy) as caught, locks.sandboxes(layout, ["web"], policy=NO_WAIT):
            pass
        assert "sandbox 'web' is being changed by another sandbox-service" in caught.value.message
        assert f"(PID {holder.proc.pid}: " in caught.value.message
        assert caught.value.exit_code == 16
        with locks.sandboxes(layout, ["other"], policy=NO_WAIT):
            pass  # another sandbox's lock is free
    finally:
        holder.end()


def test_a_second_run_waits_saying_so_once_then_gets_the_lock(layout: Layout) -> None:
    holder = Holder(layout.root, "web", seconds=1)
    told: list[str] = []
    began = time.monotonic()
    with locks.sandboxes(layout, ["web"], policy=LockPolicy(on_wait=told.append)):
        assert holder.proc.poll() is not None or time.monotonic() - began > 0.5
    holder.proc.wait()
    assert len(told) == 1 and told[0].startswith(
        "waiting: sandbox 'web' is being changed by another sandbox-service (PID "
    )


def test_shared_holders_share_and_keep_exclusive_ones_out(layout: Layout) -> None:
    holder = Holder(layout.root, "src", shared=True)
    try:
        with locks.sandboxes(layout, [], shared=["src"], policy=NO_WAIT):
            pass
        with pytest.raises(Busy), locks.sandboxes(layout, ["src"], policy=NO_WAIT):
            pass
    finally:
        holder.end()
    with locks.sandboxes(layout, ["src"], policy=NO_WAIT):
        pass


def test_no_lock_file_outlives_its_run(layout: Layout) -> None:
    """Released: the file and the lock directory go, and the base directory too when the run made it.
    Killed: the kernel drops the lock; the next run that releases a lock removes the file."""
    with locks.sandboxes(layout, ["a", "b"]), locks.host(layout):
        held = sorted(os.listdir(locks.lock_dir(layout)))
        assert held == ["all.lock", "host.lock", "sandbox-a.lock", "sandbox-b.lock"]
    assert not layout.sandbox_base.exists()
    layout.sandbox_base.mkdir(parents=True)
    holder = Holder(layout.root, "killed")
    holder.kill()
    assert sorted(os.listdir(locks.lock_dir(layout))) == ["all.lock", "sandbox-killed.lock"]
    with locks.sandboxes(layout, ["other"], policy=NO_WAIT):
        pass
    assert os.listdir(layout.sandbox_base) == []


def test_a_waiter_whose_lock_file_was_removed_locks_the_new_one(layout: Layout) -> None:
    """The holder removes its file when it releases; a run that waited on the old file must lock the file
    that is at the path now (else a third run could lock that one at the same time)."""
    holder = Holder(layout.root, "web", seconds=0.5)
    path = locks.sandbox_lock_path(layout, "web")
    with locks.sandboxes(layout, ["web"]):
        assert holder.proc.wait() == 0
        assert _locked_by_me(path)


def _locked_by_me(path: Path) -> bool:
    """Whether this process holds the flock on the file at `path` (/proc/locks)."""
    ino = str(os.stat(path).st_ino)
    rows = [line.split() for line in Path("/proc/locks").read_text().splitlines()]
    return any("->" not in r and r[4] == str(os.getpid()) and r[5].endswith(":" + ino) for r in rows)


def test_a_command_inside_another_holds_the_lock_again_instead_of_waiting_for_itself(layout: Layout) -> None:
    """apply, say, holds a sandbox's lock and runs create or upgrade, which take it too."""
    with locks.sandboxes(layout, ["web"]), locks.sandboxes(layout, ["web"], policy=NO_WAIT):
        with locks.sandboxes(layout, [], shared=["web"], policy=NO_WAIT):
            pass
        assert locks.sandbox_lock_path(layout, "web").exists()  # still held by the outer one
    assert not locks.lock_dir(layout).exists()
    with (
        locks.sandboxes(layout, [], shared=["src"]),
        pytest.raises(RuntimeError),
        locks.sandboxes(layout, ["src"]),
    ):
        pass


def test_the_lock_of_every_sandbox_keeps_out_each_sandboxs_and_the_other_way(layout: Layout) -> None:
    """apply holds it exclusively: no per-sandbox command runs beside it, and it waits for them."""
    holder = Holder(layout.root, "web")
    try:
        with (
            pytest.raises(Busy, match="every sandbox is being changed"),
            locks.every_sandbox(layout, NO_WAIT),
        ):
            pass
    finally:
        holder.end()
    with locks.every_sandbox(layout, NO_WAIT):
        with locks.sandboxes(layout, ["web"], policy=NO_WAIT):  # inside apply, as create would
            pass
        other = subprocess.run(
            [sys.executable, "-c", NO_WAIT_TRY, str(layout.root), "other"], capture_output=True, text=True
        )
        assert other.returncode == 16, other.stderr
        assert "every sandbox is being changed by another sandbox-service" in other.stdout


NO_WAIT_TRY = """
import sys
from pathlib import Path
from sandbox_service import locks
from sandbox_service.errors import Busy
from sandbox_service.paths import Layout
try:
    with locks.sandboxes(Layout(Path(sys.argv[1])), [sys.argv[2]], policy=locks.LockPolicy(wait=False)):
        pass
except Busy as exc:
    print(exc.message)
    sys.exit(exc.exit_code)
"""
