"""Benchmark: `sandbox-service create NAME --unit nginx.service --now` against the same work done by hand.

Run as root from the repository root::

    .venv/bin/python bench/bench_create.py [--rounds N] [--warmup W]

One throwaway systemd box (tests/box.py) is booted for the whole run; its boot is not measured.  Each
round times, interleaved so both share the machine's noise:

A. the whole CLI process ``python -m sandbox_service create benchNN --unit nginx.service --now``
   (then, untimed: ``sandbox-service delete benchNN``);
B. the "raw equivalent": one ``sh -c`` script in the box that creates the root's base directories and
   usr-merge links, copies the very host paths the tool copies (``cp -a --parents``), writes the very files
   the tool writes (taken once from ``create rawtpl --dry-run --json``, with the name substituted), runs
   ``systemctl daemon-reload`` and ``systemctl start sandbox-rawNN.service`` (then, untimed: stop, remove
   the units, daemon-reload, remove the directory).

After each start, both variants must report ActiveState=active, or the benchmark fails.  Both timings
include the cost of entering the box (nsenter), which is printed as a baseline, as is the tool's Python
start-up alone (``python -m sandbox_service --version``).  Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _path in (REPO, REPO / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import rawsandbox  # noqa: E402

from sandbox_service.spec import ID_BASE_END, ID_RANGE_SIZE, SandboxSpec  # noqa: E402
from tests.box import SystemdBox, cleanup_stale_boxes, hidden_in_box  # noqa: E402

UNIT = "nginx.service"
TEMPLATE_NAME = "rawtpl"
SANDBOX_BASE = "/var/lib/sandbox-service"
UNIT_DIR = "/etc/systemd/system"
tool = rawsandbox.tool  # the tool of this checkout in the box


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def active_state(box: SystemdBox, unit: str) -> str:
    return box.run(["systemctl", "show", "-P", "ActiveState", unit]).stdout.strip()


def require_active(box: SystemdBox, unit: str, variant: str) -> None:
    state = active_state(box, unit)
    if state != "active":
        journal = box.run(["journalctl", "-u", unit, "-n", "30", "--no-pager"], check=False).stdout
        raise RuntimeError(f"{variant}: {unit} is {state!r} after start, not 'active'\n{journal}")


@dataclass(frozen=True)
class Template:
    """What `create` makes for UNIT, as a spec (its --dry-run --json), and the copied host entries that
    are not root's (they keep their owner, moved into the sandbox's ID range)."""

    spec: SandboxSpec
    owners: list[tuple[str, int, int]]


def load_template(box: SystemdBox) -> Template:
    spec = rawsandbox.template_spec(box, ["--unit", UNIT])
    if not spec.copies:
        raise RuntimeError("--dry-run --json listed nothing to copy")
    return Template(spec, rawsandbox.foreign_owners(box, spec.copies))


def raw_script(template: Template, name: str, id_base: int | None) -> str:
    """The shell script doing create's work for sandbox `name` by hand."""
    spec = rawsandbox.for_name(template.spec, name, id_base)
    lines = rawsandbox.prologue()
    lines += rawsandbox.make_lines(spec, template.owners, static_units=True)
    lines += rawsandbox.account_lines([spec])
    lines.append("systemctl daemon-reload")
    lines.append(f"systemctl start {shlex.quote(f'sandbox-{name}.service')}")
    return "\n".join(lines) + "\n"


def raw_cleanup(box: SystemdBox, name: str) -> None:
    unit = f"sandbox-{name}.service"
    box.run(["systemctl", "stop", unit])
    box.run(["systemctl", "reset-failed", unit], check=False)
    box.run(["sh", "-c", f"rm -f {UNIT_DIR}/sandbox-{name}.* {UNIT_DIR}/run-sandbox*-{name}.mount"])
    box.run(["systemctl", "daemon-reload"])
    box.run(["rm", "-rf", f"{SANDBOX_BASE}/{name}"])
    account = f"sb-{name}"
    box.run(["sed", "-i", f"/^{account}:/d", "/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"])


def round_tool(box: SystemdBox, name: str) -> float:
    seconds = timed(lambda: box.run([*tool(box), "create", name, "--unit", UNIT, "--now"]))
    require_active(box, f"sandbox-{name}.service", "create --now")
    box.run([*tool(box), "delete", name])
    return seconds


def round_raw(box: SystemdBox, template: Template, name: str) -> float:
    # a range of its own, far from those the tool hands out from the bottom
    id_base = None if template.spec.id_base is None else ID_BASE_END - ID_RANGE_SIZE
    script = raw_script(template, name, id_base)
    seconds = timed(lambda: box.run(["sh", "-c", script]))
    require_active(box, f"sandbox-{name}.service", "raw")
    raw_cleanup(box, name)
    return seconds


def median_of(box: SystemdBox, argv: Sequence[str], n: int) -> float:
    return statistics.median(timed(lambda: box.run(argv)) for _ in range(n))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds of each variant (default 5)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed rounds of each variant first, to warm caches (default 1)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup at least 0")
    if os.geteuid() != 0:
        print("bench_create: must be run as root (it boots a systemd container)", file=sys.stderr)
        return 1

    cleanup_stale_boxes()
    binds = [REPO] if hidden_in_box(REPO) else []
    with SystemdBox(read_only_binds=binds) as box:
        print(f"box booted in {box.boot_seconds or 0:.1f} s (not measured)")
        template = load_template(box)
        print(f"create copies {len(template.spec.copies)} host paths for {UNIT}")
        for i in range(args.warmup):
            round_tool(box, f"warm{i:02d}")
            round_raw(box, template, f"warmraw{i:02d}")

        tool_times: list[float] = []
        raw_times: list[float] = []
        print()
        print(f"{'round':>5}  {'A: create --now':>16}  {'B: raw':>16}  {'A/B':>6}")
        for i in range(1, args.rounds + 1):
            a = round_tool(box, f"bench{i:02d}")
            b = round_raw(box, template, f"raw{i:02d}")
            tool_times.append(a)
            raw_times.append(b)
            print(f"{i:>5}  {ms(a):>16}  {ms(b):>16}  {a / b:5.2f}x")

        startup = median_of(box, [*tool(box), "--version"], args.rounds)
        enter = median_of(box, ["true"], args.rounds)

    med_a, med_b = statistics.median(tool_times), statistics.median(raw_times)
    print()
    print(f"{'median A: create --now':<42}{ms(med_a)}")
    print(f"{'median B: raw (sh: cp, printf, systemctl)':<42}{ms(med_b)}")
    print(f"create --now / raw: {med_a / med_b:.2f}x   (difference {ms(med_a - med_b).strip()})")
    print(f"{'python -m sandbox_service --version':<42}{ms(startup)}   (median of {args.rounds})")
    print(f"{'entering the box (nsenter ... true)':<42}{ms(enter)}   (median of {args.rounds}; in A and B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
