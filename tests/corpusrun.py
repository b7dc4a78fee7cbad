"""Start a corpus unit in the box and wait until it answers its probe; shared by the corpus test and report.

A unit counts as up when systemd says it is active *and* its probe succeeds inside its own network
namespace.  Everything is bounded by the service's timeout, not by the unit's TimeoutStartSec=, so a
unit that never reports readiness costs seconds, not minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.box import SystemdBox
from tests.corpus import CorpusService

__all__ = [
    "Attempt",
    "active_units",
    "journal_cursor",
    "journal_since",
    "netns_pid",
    "start_and_probe",
    "stop_with_companions",
]

POLL_SECONDS = 0.5
#: Kinds of unit whose leftovers a test stops: they run or listen after the unit that pulled them in stopped.
_LEFTOVER_TYPES = ("service", "socket", "timer", "path")


@dataclass(frozen=True)
class Attempt:
    unit: str
    #: Active, and the probe succeeded in the unit's network namespace.
    answered: bool
    seconds: float
    active_state: str
    sub_state: str
    result: str
    main_pid: int
    #: The probe succeeded at least once while systemd still waited for the unit to become ready.
    answered_while_activating: bool
    #: Output of the last probe run (empty if none ran: the unit never had a process).
    probe_output: str

    def summary(self) -> str:
        verdict = "answered" if self.answered else "did not answer"
        return (
            f"{self.unit} {verdict} after {self.seconds:.1f} s "
            f"(state {self.active_state}/{self.sub_state}, result {self.result}, main PID {self.main_pid})"
        )


def _show(box: SystemdBox, unit: str, *props: str) -> dict[str, str]:
    out = box.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)]).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {p: values.get(p, "") for p in props}


def netns_pid(box: SystemdBox, unit: str) -> int:
    """A process of ``unit`` (its main PID, else any PID in its control group), or 0 if it has none."""
    props = _show(box, unit, "MainPID", "ControlGroup")
    pid = int(props["MainPID"] or 0)
    if pid > 0 or not props["ControlGroup"]:
        return pid
    group = props["ControlGroup"]
    procs = box.run(
        [
            "sh",
            "-c",
            'cat "/sys/fs/cgroup/systemd$1/cgroup.procs" 2>/dev/null || cat "/sys/fs/cgroup$1/cgroup.procs"',
            "sh",
            group,
        ],
        check=False,
    ).stdout.split()
    return int(procs[0]) if procs else 0


def journal_cursor(box: SystemdBox) -> str:
    """The journal's current end, to read an attempt's entries only."""
    out = box.run(["journalctl", "--no-pager", "-n", "0", "--show-cursor"]).stdout
    for line in out.splitlines():
        if line.startswith("-- cursor: "):
            return line.removeprefix("-- cursor: ").strip()
    return ""


def journal_since(box: SystemdBox, cursor: str, units: tuple[str, ...], *, output: str = "short") -> str:
    """Entries of ``units`` (systemd's messages about them and their processes') after ``cursor``."""
    argv = ["journalctl", "--no-pager", "-o", output]
    if cursor:
        argv.append(f"--after-cursor={cursor}")
    for unit in units:
        argv += ["-u", unit]
    return box.run(argv, check=False).stdout


def active_units(box: SystemdBox) -> set[str]:
    """Services, sockets, timers and paths that are active (or on their way) in the box."""
    out = box.run(
        [
            "systemctl",
            "list-units",
            "--no-legend",
            "--plain",
            "--state=active,activating,reloading",
            *(f"--type={t}" for t in _LEFTOVER_TYPES),
        ]
    ).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def stop_with_companions(
    box: SystemdBox, unit: str, before: set[str], *, others: Callable[[str], bool] = lambda _: False
) -> None:
    """Stop ``unit`` and whatever became active beside it (its sockets, helpers it wanted).

    ``others`` tells units that became active meanwhile for another reason (attempts running in
    parallel), which are left alone.
    """
    box.run(["systemctl", "stop", unit], check=False, timeout=180)
    leftovers = sorted(u for u in active_units(box) - before - {unit} if not others(u))
    if leftovers:
        box.run(["systemctl", "stop", *leftovers], check=False, timeout=180)
    box.run(["systemctl", "reset-failed", unit], check=False)


def start_and_probe(
    box: SystemdBox, unit: str, service: CorpusService, *, timeout: float | None = None
) -> Attempt:
    """Start ``unit`` without waiting for its job, then poll its state and its probe until it answers.

    Gives up when the unit fails, when it stops without having answered, or after ``timeout``
    (default: the service's own).  The unit is left as it is: the caller stops it.
    """
    limit = service.timeout if timeout is None else timeout
    began = time.monotonic()
    box.run(["systemctl", "start", "--no-block", unit])
    answered_early = False
    output = ""
    props: dict[str, str] = {}
    pid = 0
    while True:
        props = _show(box, unit, "ActiveState", "SubState", "Result")
        state = props["ActiveState"]
        pid = netns_pid(box, unit) if state in ("active", "activating", "reloading") else 0
        if pid > 0:
            probe = box.run_in_netns_of(
                pid, service.probe_argv(f"/proc/{pid}/root/run"), check=False, timeout=60
            )
            output = (probe.stdout + probe.stderr).strip()
            if probe.returncode == 0:
                if state == "active":
                    return _attempt(unit, True, began, props, pid, answered_early, output)
                answered_early = True
        if state == "failed" or (state == "inactive" and time.monotonic() - began > 2):
            break
        if time.monotonic() - began > limit:
            break
        time.sleep(POLL_SECONDS)
    return _attempt(unit, False, began, props, pid, answered_early, output)


def _attempt(
    unit: str, answered: bool, began: float, props: dict[str, str], pid: int, early: bool, output: str
) -> Attempt:
    return Attempt(
        unit=unit,
        answered=answered,
        seconds=time.monotonic() - began,
        active_state=props.get("ActiveState", ""),
        sub_state=props.get("SubState", ""),
        result=props.get("Result", ""),
        main_pid=pid,
        answered_while_activating=early,
        probe_output=output,
    )
