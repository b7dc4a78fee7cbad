"""The journal of a sandbox's units, read with journalctl (through run.py)."""

from __future__ import annotations

from .paths import service_unit, slice_unit, unit_base
from .run import run, run_interactive


def unit_args(name: str) -> list[str]:
    return ["-u", service_unit(name), "-u", slice_unit(name), "-u", f"{unit_base(name)}-*"]


def tail(unit: str, since: float | None = None, lines: int = 15) -> tuple[str, ...]:
    """The unit's last journal lines, only those logged after `since` (a time.time() value) if given."""
    argv = ["journalctl", "--no-pager", "-o", "short", "-n", str(lines), "-u", unit]
    if since is not None:
        argv += ["--since", f"@{since:.6f}"]
    res = run(argv, check=False)
    return tuple(line for line in res.stdout.splitlines() if line and not line.startswith("-- "))


def show(name: str, lines: int | None, follow: bool) -> int:
    argv = ["journalctl", "--no-pager", *unit_args(name)]
    if lines is not None:
        argv += ["-n", str(lines)]
    if follow:
        argv.append("-f")
    return run_interactive(argv)
