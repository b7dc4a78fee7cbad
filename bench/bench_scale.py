"""Benchmark: sandbox-service at scale against raw systemd doing the same work, in one run.

Run as root from the repository root::

    .venv/bin/python bench/bench_scale.py [--systemd 252] [--counts 100,1000] [--max 7000]
                                          [--max-profile dense] [--chunk 500] [--rounds 3]
                                          [--max-nofile N --lift-nofile M]

Every measurement runs in a fresh throwaway systemd box (tests/box.py; its writable layer on disk,
since thousands of sandboxes hold more inodes than a tmpfs), and prints, at the end, one table:

- start-up: ``--help``, ``list`` of no sandbox, and what the launcher costs each Exec line (Python
  starting and importing what the launcher imports);
- create --now of nginx.service against the same work by hand (bench_create.py's rounds);
- apply of N generic sandboxes (``sleep infinity``) for each N of ``--counts``, against "raw": a shell
  script writing the very files apply writes (rendered by the tool's own code for each name and ID
  range), copying the same host paths with ``cp -a`` and ``chown``, appending the host accounts to
  passwd/group/shadow/gshadow, then one ``systemctl daemon-reload`` and one ``systemctl start`` of all
  units; and raw once more with each ExecStart= running the program directly instead of through the
  launcher: the difference of the two starts is the launcher's share;
- as many sandboxes as the box allows: apply in chunks of ``--chunk`` (one document and apply group
  each) until apply refuses (the host's limits, hostlimits.py) or fails, or ``--max`` is reached or the
  host runs short of memory or disk; the count reached and what stopped it; list and status at that
  count against systemctl's own; PID 1's memory and descriptors, mounts and disk per sandbox; then the
  same count by raw, in the same chunks.

After each start both variants must have every sandbox active, or the benchmark fails.  Nothing here
asserts on timings.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import bench_create  # noqa: E402
import rawsandbox  # noqa: E402

from sandbox_service import render  # noqa: E402
from sandbox_service.isolation import PYTHON  # noqa: E402
from sandbox_service.spec import ID_BASE_FIRST, ID_RANGE_SIZE, SandboxSpec  # noqa: E402
from tests.box import SystemdBox, cleanup_stale_boxes, hidden_in_box  # noqa: E402
from tests.sandboxcli import reloads  # noqa: E402

SANDBOX_BASE = "/var/lib/sandbox-service"
COMMAND = ["/usr/bin/sleep", "infinity"]
MIN_FREE_MEMORY = 3 << 30  # the host is shared: stop growing below this much available memory
MIN_FREE_DISK = 8 << 30
LAUNCHER_SHARE_UP_TO = 100  # counts whose raw start is also measured without the launcher


@dataclass
class Row:
    what: str
    tool: str
    raw: str = "-"
    ratio: str = "-"
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, what: str, tool: float | str, raw: float | str | None = None, note: str = "") -> Row:
        row = Row(what, _fmt(tool), note=note)
        if raw is not None:
            row.raw = _fmt(raw)
            if isinstance(tool, float) and isinstance(raw, float) and raw > 0:
                row.ratio = f"{tool / raw:.2f}x"
        self.rows.append(row)
        shown = f"  {what}: {row.tool}"
        if raw is not None:
            shown += f" vs raw {row.raw} ({row.ratio})"
        print(shown + (f"  [{note}]" if note else ""), flush=True)
        return row

    def table(self) -> str:
        lines = ["| measure | sandbox-service | raw systemd | ratio | note |", "|---|---|---|---|---|"]
        lines += [f"| {r.what} | {r.tool} | {r.raw} | {r.ratio} | {r.note} |" for r in self.rows]
        return "\n".join(lines)


def _fmt(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


tool = rawsandbox.tool  # the tool of this checkout in the box


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def boot(image: str, nofile: int | None = None) -> SystemdBox:
    binds = [REPO] if hidden_in_box(REPO) else []
    options = [f"--rlimit=RLIMIT_NOFILE={nofile}"] if nofile else []
    box = SystemdBox(image=image, read_only_binds=binds, upper_on_disk=True, nspawn_options=options)
    box.start()
    return box


def active_sandboxes(box: SystemdBox) -> int:
    out = box.run(
        ["systemctl", "list-units", "--state=active", "--no-legend", "--plain", "sandbox-*.service"]
    )
    return sum(1 for line in out.stdout.splitlines() if line.startswith("sandbox-"))


def require_active(box: SystemdBox, expected: int, variant: str) -> None:
    found = active_sandboxes(box)
    if found != expected:
        failed = box.run(["systemctl", "list-units", "--state=failed", "--no-legend", "--plain"], check=False)
        raise RuntimeError(
            f"{variant}: {found} sandboxes active, expected {expected}\n{failed.stdout[:2000]}"
        )


def host_room() -> tuple[int, int]:
    """Available memory and free disk (of /var/tmp, where the boxes' layers are) in bytes."""
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            mem = int(line.split()[1]) * 1024
    st = os.statvfs("/var/tmp")
    return mem, st.f_bavail * st.f_frsize


KERNEL_FIELDS = ("SUnreclaim", "Percpu", "KernelStack", "PageTables")


def kernel_memory() -> int:
    """Unreclaimable kernel memory of the whole host, in KiB (what namespaces, cgroups, processes hold)."""
    values = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return sum(int(values[k].split()[0]) for k in KERNEL_FIELDS if k in values)


def pid1(box: SystemdBox) -> dict[str, int]:
    rss = box.run(["grep", "VmRSS", "/proc/1/status"]).stdout.split()[1]
    fds = box.run(["sh", "-c", "ls /proc/1/fd | wc -l"]).stdout.strip()
    mounts = box.run(["sh", "-c", "wc -l < /proc/1/mountinfo"]).stdout.strip()
    return {"rss_kb": int(rss), "fds": int(fds), "mounts": int(mounts)}


# -- documents and raw scripts ---------------------------------------------------------------------------


def names(prefix: str, start: int, count: int) -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(start, start + count)]


def apply_document(group: str, sandbox_names: Sequence[str], profile: str) -> str:
    lines = ["version: 1", f"apply_group: {group}", "sandboxes:"]
    argv = json.dumps(COMMAND)
    for n in sandbox_names:
        lines.append(f"  - name: {n}")
        lines.append(f"    service: {{exec_start: [{{path: {COMMAND[0]}, argv: {argv}}}]}}")
        if profile != "default":
            lines.append(f"    security: {{profile: {profile}}}")
    return "\n".join(lines) + "\n"


def raw_script(
    template: SandboxSpec,
    owners: list[tuple[str, int, int]],
    sandbox_names: Sequence[str],
    first_base: int,
    *,
    launcher: bool,
) -> str:
    """The shell script that makes these sandboxes by hand (not the reload, not the start)."""
    specs = [
        rawsandbox.for_name(template, n, first_base + i * ID_RANGE_SIZE) for i, n in enumerate(sandbox_names)
    ]
    lines = rawsandbox.prologue()
    for spec in specs:
        lines += rawsandbox.make_lines(
            replace(spec, description=" ".join(COMMAND)), owners, launcher=launcher
        )
    lines += rawsandbox.account_lines(specs)
    return "\n".join(lines) + "\n"


# -- the phases ------------------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    phases: dict[str, float]
    reloads: int = 0


def tool_apply(
    box: SystemdBox, group: str, sandbox_names: Sequence[str], profile: str
) -> tuple[Run, dict[str, Any]]:
    """One apply of these sandboxes; (its timing, its --json summary).  Raises on a failed apply."""
    path = f"/var/tmp/bench-{group}.yaml"
    box.write_file(path, apply_document(group, sandbox_names, profile))
    before = reloads(box)
    began = time.perf_counter()
    done = box.run([*tool(box), "apply", path, "--json"], check=False, timeout=7200)
    seconds = time.perf_counter() - began
    if done.returncode != 0 and not done.stdout.strip():
        raise ApplyRefused(done.stderr.strip())
    summary: dict[str, Any] = json.loads(done.stdout)
    run = Run(seconds, {k: float(v) for k, v in summary["seconds"].items()}, reloads(box) - before)
    if done.returncode != 0:
        failed = [s for s in summary["sandboxes"] if s["result"] == "failed"]
        raise ApplyFailed(run, summary, failed)
    return run, summary


class ApplyRefused(Exception):
    pass


class ApplyFailed(Exception):
    def __init__(self, run: Run, summary: dict[str, Any], failed: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(failed)} sandboxes failed: {failed[0]['error'] if failed else ''}")
        self.run, self.summary, self.failed = run, summary, failed


def raw_make(
    box: SystemdBox,
    template: SandboxSpec,
    sandbox_names: Sequence[str],
    first_base: int,
    *,
    launcher: bool = True,
) -> Run:
    owners = rawsandbox.foreign_owners(box, template.copies)
    script = raw_script(template, owners, sandbox_names, first_base, launcher=launcher)
    box.write_file("/var/tmp/bench-raw.sh", script)
    units = [f"sandbox-{n}.service" for n in sandbox_names]
    phases = {
        "build": timed(lambda: box.run(["sh", "/var/tmp/bench-raw.sh"], timeout=7200)),
        "reload": timed(lambda: box.run(["systemctl", "daemon-reload"], timeout=600)),
        "start": timed(lambda: box.run(["systemctl", "start", *units], timeout=7200)),
    }
    return Run(sum(phases.values()), phases, 1)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def section_startup(image: str, report: Report, rounds: int) -> None:
    print("start-up")
    box = boot(image)
    try:
        tool_argv = tool(box)
        report.add(
            "--help", median([timed(lambda: box.run([*tool_argv, "--help"])) for _ in range(rounds * 3)])
        )
        report.add(
            "list (no sandbox)",
            median([timed(lambda: box.run([*tool_argv, "list"])) for _ in range(rounds * 3)]),
        )
        report.add(
            "entering the box (nsenter true), in every figure",
            median([timed(lambda: box.run(["true"])) for _ in range(rounds * 3)]),
        )
        launcher = str(render.LAUNCHER_SOURCE)
        started = [
            timed(lambda: box.run([PYTHON, "-I", "-S", "-B", launcher], check=False))
            for _ in range(rounds * 3)
        ]
        bare = [timed(lambda: box.run(["true"])) for _ in range(rounds * 3)]
        report.add(
            "launcher start-up per Exec line (python -I -S -B, its imports)", median(started) - median(bare)
        )
    finally:
        box.close()


def section_create(image: str, report: Report, rounds: int) -> None:
    print("create --now nginx.service")
    cleanup_stale_boxes()
    binds = [REPO] if hidden_in_box(REPO) else []
    with SystemdBox(image=image, read_only_binds=binds) as box:
        template = bench_create.load_template(box)
        bench_create.round_tool(box, "warm00")
        bench_create.round_raw(box, template, "warmraw00")
        a = [bench_create.round_tool(box, f"bench{i:02d}") for i in range(rounds)]
        b = [bench_create.round_raw(box, template, f"raw{i:02d}") for i in range(rounds)]
    report.add(f"create --now nginx.service (median of {rounds})", median(a), median(b))


def section_apply(image: str, report: Report, count: int, rounds: int) -> None:
    print(f"apply of {count} generic sandboxes")
    tool_runs, raw_runs, direct_runs = [], [], []
    for r in range(rounds):
        box = boot(image)
        try:
            run, _ = tool_apply(box, f"n{count}r{r}", names("a", 0, count), "default")
            require_active(box, count, "apply")
            tool_runs.append(run)
        finally:
            box.close()
        box = boot(image)
        try:
            template = rawsandbox.template_spec(box, ["--", *COMMAND])
            raw_runs.append(raw_make(box, template, names("r", 0, count), ID_BASE_FIRST))
            require_active(box, count, "raw")
        finally:
            box.close()
        if count > LAUNCHER_SHARE_UP_TO:
            continue
        box = boot(image)
        try:
            template = rawsandbox.template_spec(box, ["--", *COMMAND])
            direct_runs.append(raw_make(box, template, names("d", 0, count), ID_BASE_FIRST, launcher=False))
            require_active(box, count, "raw without launcher")
        finally:
            box.close()
    t = min(tool_runs, key=lambda x: x.seconds) if rounds > 1 else tool_runs[0]
    raw = min(raw_runs, key=lambda x: x.seconds) if rounds > 1 else raw_runs[0]
    direct = min(direct_runs, key=lambda x: x.seconds) if direct_runs else None
    best = "best" if rounds > 1 else "one run"
    report.add(
        f"apply {count} generic ({best} of {rounds})", t.seconds, raw.seconds, f"daemon-reloads: {t.reloads}"
    )
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in t.phases.items() if v >= 0.05)
    print(f"    apply's phases: {phases}")
    print("    raw's phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in raw.phases.items()))
    report.add(
        f"  build (apply {count}: trees, specs, units, accounts)",
        t.phases.get("build", 0.0) + t.phases.get("accounts", 0.0),
        raw.phases["build"],
    )
    report.add(f"  start of {count} (one batch of jobs)", t.phases.get("start", 0.0), raw.phases["start"])
    if direct is not None:
        share = raw.phases["start"] - direct.phases["start"]
        report.add(
            f"  launcher's share of starting {count}",
            f"{share:.1f} s of {raw.phases['start']:.1f} s ({100 * share / raw.phases['start']:.0f}%)",
            note="raw start with the launcher minus raw start with ExecStart= the program itself",
        )


@dataclass(frozen=True)
class Growth:
    limit: int  # stop at this many sandboxes
    chunk: int  # sandboxes per apply
    profile: str
    minutes: float  # the time budget of the growth
    nofile: int | None = None  # the box's PID 1 RLIMIT_NOFILE (None: what nspawn inherits)
    lift: int | None = None  # once apply refuses, grow again in a box whose PID 1 has this RLIMIT_NOFILE


def lift_nofile(image: str, report: Report, growth: Growth, refused_at: int) -> None:
    """Boot a box whose PID 1 has the descriptor limit `growth.lift` (nspawn's --rlimit, as
    `LimitNOFILE=` of the container's unit would set it) and make one chunk more than the count apply
    refused to go past: the setting the refusal names lifts it.  (Raising the running box's limit is
    no option here: root on this machine lacks CAP_SYS_RESOURCE, so no hard limit goes up.)"""
    assert growth.lift is not None
    box = boot(image, growth.lift)
    made, outcome = 0, ""
    try:
        room = json.loads(box.run([*tool(box), "limits", "--json"]).stdout)["room"]
        while made < refused_at + growth.chunk:
            n = min(growth.chunk, refused_at + growth.chunk - made)
            try:
                tool_apply(box, f"l{made // growth.chunk:03d}", names("m", made, n), growth.profile)
            except (ApplyRefused, ApplyFailed) as exc:
                outcome = f"refused or failed at {made}: {str(exc)[:200]}"
                break
            made += n
        outcome = outcome or f"{made} made, {active_sandboxes(box)} active"
    finally:
        box.close()
    report.add(
        f"the same growth with PID 1's RLIMIT_NOFILE {growth.lift}",
        outcome,
        note="room before: " + ", ".join(f"{k}: {v['sandboxes']} ({v['bound_by']})" for k, v in room.items()),
    )


def section_max(image: str, report: Report, growth: Growth, raw_too: bool) -> None:
    limit, chunk, profile, minutes = growth.limit, growth.chunk, growth.profile, growth.minutes
    print(f"as many sandboxes as the box allows (profile {profile}, chunks of {chunk}, at most {limit})")
    box = boot(image, growth.nofile)
    reached, stopped_by = 0, f"--max {limit} reached"
    tool_seconds = 0.0
    try:
        limits = json.loads(box.run([*tool(box), "limits", "--json"]).stdout)
        print(f"    room before: {limits['room']}")
        room_before = limits["room"]
        before = pid1(box)
        kernel_before = kernel_memory()
        deadline = time.monotonic() + minutes * 60
        while reached < limit:
            if time.monotonic() > deadline:
                stopped_by = f"this run's time budget (--max-minutes {minutes:g})"
                break
            mem, disk = host_room()
            if mem < MIN_FREE_MEMORY or disk < MIN_FREE_DISK:
                stopped_by = f"the bench: the host had {mem >> 20} MiB memory, {disk >> 30} GiB disk left"
                break
            n = min(chunk, limit - reached)
            try:
                run, _ = tool_apply(box, f"c{reached // chunk:03d}", names("m", reached, n), profile)
            except ApplyRefused as exc:
                stopped_by = f"apply refused: {exc}"
                break
            except ApplyFailed as exc:
                tool_seconds += exc.run.seconds
                reached += int(exc.summary["counts"]["created"])
                stopped_by = f"apply failed for {len(exc.failed)}: {exc.failed[0]['error']}"
                break
            tool_seconds += run.seconds
            reached += n
            print(f"    {reached} sandboxes ({run.seconds:.1f} s for {n})")
        refused_at = reached if stopped_by.startswith("apply refused") else None
        active = active_sandboxes(box)
        room_after = json.loads(box.run([*tool(box), "limits", "--json"]).stdout)["room"]
        after = pid1(box)
        kernel_after = kernel_memory()
        lists = [timed(lambda: box.run([*tool(box), "list"])) for _ in range(3)]
        raw_lists = [
            timed(lambda: box.run(["systemctl", "list-units", "--no-legend", "--all", "sandbox-*.service"]))
            for _ in range(3)
        ]
        one = "m00000"
        statuses = [timed(lambda: box.run([*tool(box), "status", one])) for _ in range(3)]
        raw_statuses = [
            timed(
                lambda: box.run(["systemctl", "status", "--no-pager", f"sandbox-{one}.service"], check=False)
            )
            for _ in range(3)
        ]
        sample = names("m", 0, min(10, reached))
        du = box.run(["du", "-sk", *(f"{SANDBOX_BASE}/{n}" for n in sample)]).stdout
        disk_kb = sum(int(line.split()[0]) for line in du.splitlines()) / max(len(sample), 1)
        units = box.run(
            [
                "sh",
                "-c",
                f"cd /etc/systemd/system && du -ck sandbox-{one}.* run-sandbox*{one}*.mount | tail -1",
            ]
        ).stdout.split()[0]
    finally:
        box.close()
    grown = report.add(
        f"apply in chunks of {chunk} up to the box's limit (profile {profile})",
        tool_seconds,
        note=f"{reached} made, {active} active; stopped by: {stopped_by}",
    )
    if growth.lift is not None and refused_at is not None:
        lift_nofile(image, report, growth, refused_at)
    report.add(
        "room the limits left (sandboxes more)",
        ", ".join(f"{k}: {v['sandboxes']} ({v['bound_by']})" for k, v in room_after.items()),
        note="before: "
        + ", ".join(f"{k}: {v['sandboxes']} ({v['bound_by']})" for k, v in room_before.items()),
    )
    report.add(
        f"list at {active}", median(lists), median(raw_lists), "raw: systemctl list-units sandbox-*.service"
    )
    report.add(f"status at {active}", median(statuses), median(raw_statuses), "raw: systemctl status")
    per = max(active, 1)
    report.add(
        "PID 1 memory per running sandbox",
        f"{(after['rss_kb'] - before['rss_kb']) / per:.0f} KiB",
        note=f"VmRSS {before['rss_kb']} -> {after['rss_kb']} KiB",
    )
    report.add(
        "PID 1 descriptors per running sandbox",
        f"{(after['fds'] - before['fds']) / per:.2f}",
        note=f"{before['fds']} -> {after['fds']}",
    )
    report.add(
        "mounts in PID 1's namespace per running sandbox", f"{(after['mounts'] - before['mounts']) / per:.2f}"
    )
    report.add(
        "kernel memory per running sandbox",
        f"{(kernel_after - kernel_before) / per:.0f} KiB",
        note=f"host-wide {'+'.join(KERNEL_FIELDS)} before and after (the host is shared: approximate)",
    )
    report.add(
        "disk per sandbox (tree, base, spec)", f"{disk_kb:.0f} KiB", note=f"plus {units} KiB of unit files"
    )
    if raw_too and reached:
        box = boot(image)
        try:
            template = rawsandbox.template_spec(box, ["--profile", profile, "--", *COMMAND])
            raw_seconds = 0.0
            for start in range(0, reached, chunk):
                n = min(chunk, reached - start)
                raw_seconds += raw_make(
                    box, template, names("x", start, n), ID_BASE_FIRST + start * ID_RANGE_SIZE
                ).seconds
                print(f"    raw: {start + n} sandboxes")
            require_active(box, reached, "raw")
        finally:
            box.close()
        grown.raw = _fmt(raw_seconds)
        grown.ratio = f"{tool_seconds / raw_seconds:.2f}x"
        print(f"    raw: {raw_seconds:.1f} s for {reached} ({grown.ratio})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--systemd", default="252", help="the box's systemd: 252 or 257 (default 252)")
    parser.add_argument(
        "--counts", default="100,1000", help="apply sizes compared with raw (default 100,1000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the small measurements (default 3)")
    parser.add_argument(
        "--max", type=int, default=7000, help="stop growing at this many sandboxes (default 7000)"
    )
    parser.add_argument(
        "--chunk", type=int, default=500, help="sandboxes per apply when growing (default 500)"
    )
    parser.add_argument(
        "--max-profile", default="dense", help="profile of the sandboxes grown (default dense)"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=120, help="stop growing after this long (default 120)"
    )
    parser.add_argument(
        "--max-nofile",
        type=int,
        help="RLIMIT_NOFILE of the growth box's PID 1 (default: the 20000 nspawn inherits here); a low "
        "value makes the limit come within a short run",
    )
    parser.add_argument(
        "--lift-nofile",
        type=int,
        help="once apply refuses, grow again past that count in a box whose PID 1 has this RLIMIT_NOFILE",
    )
    parser.add_argument("--skip", default="", help="sections to skip: startup,create,apply,max,maxraw")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_scale: must be run as root (it boots systemd containers)", file=sys.stderr)
        return 1
    skip = set(filter(None, args.skip.split(",")))
    cleanup_stale_boxes()
    report = Report()
    began = time.monotonic()
    sections: list[tuple[str, Callable[[], None]]] = []
    if "startup" not in skip:
        sections.append(("start-up", lambda: section_startup(args.systemd, report, args.rounds)))
    if "create" not in skip:
        sections.append(("create", lambda: section_create(args.systemd, report, args.rounds)))
    if "apply" not in skip:
        for count in (int(c) for c in args.counts.split(",") if c):
            rounds = args.rounds if count <= 100 else 1
            apply_n = functools.partial(section_apply, args.systemd, report, count, rounds)
            sections.append((f"apply {count}", apply_n))
    if "max" not in skip:
        sections.append(
            (
                "max",
                lambda: section_max(
                    args.systemd,
                    report,
                    Growth(
                        args.max,
                        args.chunk,
                        args.max_profile,
                        args.max_minutes,
                        args.max_nofile,
                        args.lift_nofile,
                    ),
                    "maxraw" not in skip,
                ),
            )
        )
    for what, section in sections:
        try:
            section()
        except Exception as exc:  # one section failing leaves the others' figures
            traceback.print_exc()
            report.add(f"{what}: failed", f"{type(exc).__name__}: {str(exc)[:200]}")
    print()
    print(f"systemd {args.systemd}, {os.cpu_count()} CPUs, {time.monotonic() - began:.0f} s in all")
    print(report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
