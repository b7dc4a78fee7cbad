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
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sandbox_service.discover.host import usr_layout  # noqa: E402
from sandbox_service.tree import BASE_DIRS, BASE_LINKS  # noqa: E402
from tests.box import SystemdBox, cleanup_stale_boxes, hidden_in_box  # noqa: E402

UNIT = "nginx.service"
TEMPLATE_NAME = "rawtpl"
SANDBOX_BASE = "/var/lib/sandbox-service"
UNIT_DIR = "/etc/systemd/system"
TOOL = [sys.executable, "-m", "sandbox_service"]


@dataclass(frozen=True)
class Template:
    """What `create` writes and copies for TEMPLATE_NAME, from its --dry-run --json output."""

    files: dict[str, str]
    copies: list[str]

    def files_for(self, name: str) -> dict[str, str]:
        return {p.replace(TEMPLATE_NAME, name): t.replace(TEMPLATE_NAME, name) for p, t in self.files.items()}


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


def load_template(box: SystemdBox) -> Template:
    done = box.run([*TOOL, "create", TEMPLATE_NAME, "--unit", UNIT, "--dry-run", "--json"])
    data = json.loads(done.stdout)
    files = {str(k): str(v) for k, v in data["files"].items()}
    copies = [str(c) for c in data["copies"]]
    if not any(p.endswith(f"/sandbox-{TEMPLATE_NAME}.service") for p in files):
        raise RuntimeError(f"--dry-run --json listed no service unit: {sorted(files)}")
    if not copies:
        raise RuntimeError("--dry-run --json listed nothing to copy")
    return Template(files, copies)


def raw_script(template: Template, name: str) -> str:
    """The shell script doing create's work for sandbox `name` by hand."""
    q = shlex.quote
    root = f"{SANDBOX_BASE}/{name}/root"
    layout = usr_layout(Path("/"))  # the box is an overlay of the host root: same layout
    dirs = [rel for rel, _mode in BASE_DIRS] + [link.name for link in layout if link.target is None]
    modes: dict[int, list[str]] = {}
    for rel, mode in BASE_DIRS:
        if mode != 0o755:
            modes.setdefault(mode, []).append(rel)
    links = [*BASE_LINKS, *((link.name, link.target) for link in layout if link.target is not None)]
    # As few processes as possible: the umask gives 0755; one chmod per other mode.
    lines = [
        "set -eu",
        "umask 022",
        f"mkdir -p {q(root)}",
        f"cd {q(root)}",
        f"mkdir {' '.join(map(q, dirs))}",
    ]
    lines += [f"chmod {mode:o} {' '.join(map(q, rels))}" for mode, rels in modes.items()]
    lines += [f"ln -s {q(target)} {q(rel)}" for rel, target in links]
    # Not from inside the root: there, cp 9.1 leaves the parent directories it creates at mode 0700.
    lines.append("cd /")
    lines.append(f"cp -a --parents {' '.join(q(c) for c in template.copies)} {q(root)}/")
    for path, text in template.files_for(name).items():
        lines.append(f"printf '%s' {q(text)} > {q(path)}")  # printf is built in: no process
    lines.append("systemctl daemon-reload")
    lines.append(f"systemctl start {q(f'sandbox-{name}.service')}")
    return "\n".join(lines) + "\n"


def raw_cleanup(box: SystemdBox, name: str) -> None:
    unit = f"sandbox-{name}.service"
    box.run(["systemctl", "stop", unit])
    box.run(["systemctl", "reset-failed", unit], check=False)
    box.run(["rm", "-f", f"{UNIT_DIR}/sandbox-{name}.service", f"{UNIT_DIR}/sandbox-{name}.slice"])
    box.run(["systemctl", "daemon-reload"])
    box.run(["rm", "-rf", f"{SANDBOX_BASE}/{name}"])


def round_tool(box: SystemdBox, name: str) -> float:
    seconds = timed(lambda: box.run([*TOOL, "create", name, "--unit", UNIT, "--now"]))
    require_active(box, f"sandbox-{name}.service", "create --now")
    box.run([*TOOL, "delete", name])
    return seconds


def round_raw(box: SystemdBox, template: Template, name: str) -> float:
    script = raw_script(template, name)
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
        print(
            f"create writes {len(template.files)} files and copies {len(template.copies)} host paths "
            f"for {UNIT}"
        )
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

        startup = median_of(box, [*TOOL, "--version"], args.rounds)
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
