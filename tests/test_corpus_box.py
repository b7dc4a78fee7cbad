"""The service corpus against the box's real systemd: every stock service wraps unmodified.

For each unit of the corpus (tests/corpus.py): first the *host* unit must start in the box and answer its
own probe (a service whose host unit fails here says nothing about the tool: it is skipped, reported,
not counted); then `create` makes its sandbox with no hints (every setting of the host unit has a fate
and what is carried arrives, tests/unitprops.py), plain `systemctl start` starts it, and the
sandbox must answer the same probe inside its own network namespace.  Syslog the host unit wrote must
reach the journal from the sandbox too (`sandbox-service logs` reads it).  Each unit is stopped
afterwards, with whatever it pulled in, and its sandbox deleted.  None of them may start when the box
boots (scripts/install-deps.sh disables them on the host), and the Type=dbus avahi-daemon is refused by
`create` with one line naming D-Bus, leaving nothing behind.

The corpus is installed on this machine (Debian 12): the tests run on the box of its systemd (252).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.box import STATE_PARENT, STATE_PREFIX, SystemdBox
from tests.corpus import CORPUS, REFUSED, CorpusService, quiet_packages
from tests.corpusrun import (
    active_units,
    journal_cursor,
    journal_since,
    start_and_probe,
    stop_with_companions,
)
from tests.sandboxcli import BASE, UNIT_DIR, cli
from tests.unitprops import lost_properties

pytestmark = [pytest.mark.box, pytest.mark.systemd("252")]

_timings: dict[str, float] = {}
_scores: dict[str, tuple[float, float]] = {}  # unit: exposure of the host unit, of its sandbox


@pytest.fixture(scope="module", autouse=True)
def report_wall_time() -> Iterator[None]:
    """Prints the corpus baseline's wall time and its slowest units (shown with pytest -s or -rA)."""
    began = time.monotonic()
    yield
    slowest = sorted(_timings.items(), key=lambda kv: -kv[1])[:5]
    listed = ", ".join(f"{unit} {seconds:.1f} s" for unit, seconds in slowest)
    print(f"\ncorpus: {time.monotonic() - began:.1f} s for {len(_timings)} units; slowest: {listed}")
    for unit, (host, sandbox) in sorted(_scores.items()):
        print(f"exposure {unit}: host {host}, sandbox {sandbox}")


def _unit_states(show_output: str) -> dict[str, str]:
    """{unit: ActiveState} from `systemctl show -p Id,ActiveState U1 U2 ...` (blocks split by blank lines)."""
    states: dict[str, str] = {}
    for block in show_output.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[fields["Id"]] = fields["ActiveState"]
    return states


def _owners(box: SystemdBox, paths: set[str]) -> dict[str, str]:
    """{path: package} for the paths dpkg knows (as /lib/... or its /usr/lib/... twin), in one dpkg call."""
    candidates = {c: p for p in paths for c in (p, p.removeprefix("/usr"))}
    if not candidates:
        return {}
    out = box.run(["dpkg-query", "-S", *sorted(candidates)], check=False).stdout
    owners: dict[str, str] = {}
    for line in out.splitlines():
        package, sep, path = line.partition(": ")
        if sep and path in candidates and "diversion" not in package:
            owners.setdefault(candidates[path], package)
    return owners


def _corpus_units_after_boot(fresh: SystemdBox) -> list[str]:
    """Units of a corpus package (or of its quiet dependencies) running in a freshly booted box."""
    quiet = set(quiet_packages())
    listed = fresh.run(
        ["systemctl", "list-units", "--all", "--no-legend", "--plain", "--type=service,socket,timer,path"]
    ).stdout
    units = [line.split()[0] for line in listed.splitlines() if line.strip()]
    states = _unit_states(fresh.run(["systemctl", "show", "--property=Id,ActiveState", *units]).stdout)
    running = sorted(u for u, state in states.items() if state in ("active", "activating", "reloading"))
    sources: dict[str, set[str]] = {}
    for unit in running:
        props = fresh.run(["systemctl", "show", "-P", "FragmentPath", "-P", "SourcePath", unit]).stdout
        sources[unit] = {p for p in props.split() if p.startswith("/")}
    owners = _owners(fresh, set().union(*sources.values()))
    found = {
        f"{unit} ({owners[path]})"
        for unit, paths in sources.items()
        for path in paths
        if owners.get(path) in quiet
    }
    # The corpus units by name too (all must be installed), and the units systemd-sysv-generator made
    # from init scripts and pulled into a target.
    corpus_units = [s.unit for s in (*CORPUS, *REFUSED)]
    corpus_states = _unit_states(
        fresh.run(["systemctl", "show", "--property=Id,ActiveState", *corpus_units]).stdout
    )
    assert set(corpus_states) == set(corpus_units)
    found |= {u for u, state in corpus_states.items() if state != "inactive"}
    wants = fresh.run(["sh", "-c", "ls /run/systemd/generator.late/*.wants 2>/dev/null || true"]).stdout
    found |= {s.unit for s in CORPUS} & set(wants.split())
    return sorted(found)


def _fresh_box(suffix: str, before_boot: Callable[[Path], None] | None = None) -> SystemdBox:
    if os.geteuid() != 0:
        pytest.skip("the systemd box needs root")
    return SystemdBox(STATE_PARENT / f"{STATE_PREFIX}{os.getpid()}-{suffix}", before_boot=before_boot)


def test_no_corpus_unit_starts_at_boot() -> None:
    """A box booted over this machine's root runs no unit of a corpus package or of its quiet dependencies."""
    with _fresh_box("boot") as fresh:
        assert _corpus_units_after_boot(fresh) == []


def test_boot_check_sees_an_enabled_corpus_unit() -> None:
    """The check above can fail: enable beanstalkd in a box's image and it is reported."""

    def enable(root: Path) -> None:
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "beanstalkd.service").symlink_to("/lib/systemd/system/beanstalkd.service")

    with _fresh_box("enabled", enable) as fresh:
        assert any(u.startswith("beanstalkd.service") for u in _corpus_units_after_boot(fresh))


def test_probes_fail_without_their_service(box: SystemdBox) -> None:
    """A probe that passed with nothing listening would prove nothing."""
    running = active_units(box)
    passing = []
    for service in CORPUS:
        assert service.unit not in running
        done = box.run_in_netns_of(1, service.probe_argv("/proc/1/root/run"), check=False, timeout=60)
        if done.returncode == 0:
            passing.append(service.unit)
    assert not passing, f"probes that succeed with their service stopped: {passing}"


def _syslog_lines(box: SystemdBox, cursor: str, unit: str) -> int:
    """How many lines the unit's processes sent through syslog (/dev/log) since ``cursor``."""
    out = journal_since(box, cursor, (unit,), output="json")
    return sum(1 for line in out.splitlines() if '"_TRANSPORT":"syslog"' in line)


def _attempt(box: SystemdBox, unit: str, service: CorpusService) -> tuple[bool, int, str]:
    """Start ``unit``, wait for its probe; (answered, syslog lines, why not) with the unit stopped again."""
    before = active_units(box)
    assert unit not in before, f"{unit} was already running"
    cursor = journal_cursor(box)
    try:
        attempt = start_and_probe(box, unit, service)
        _timings[unit] = attempt.seconds
        why = (
            ""
            if attempt.answered
            else (
                f"{attempt.summary()}\nlast probe: {attempt.probe_output}\n--- journal ---\n"
                + journal_since(box, cursor, (unit,))
            )
        )
    finally:
        stop_with_companions(box, unit, before)
    return attempt.answered, _syslog_lines(box, cursor, unit), why


@pytest.mark.parametrize("service", CORPUS, ids=lambda s: s.name)
def test_service_serves_from_its_sandbox(box: SystemdBox, cleanup: list[str], service: CorpusService) -> None:
    host_answered, host_syslog, why = _attempt(box, service.unit, service)
    if not host_answered:
        pytest.skip(f"the host unit fails in this box, so its sandbox is not counted:\n{why}")
    name = f"c{service.name}"[:30]
    cleanup.append(name)
    _rc, out, _err = cli(box, "create", name, "--unit", service.unit)
    lost = lost_properties(box, service.unit, f"sandbox-{name}.service", out)
    assert lost == [], f"{service.unit} loses settings in its sandbox:\n" + "\n".join(lost)
    answered, syslog, why = _attempt(box, f"sandbox-{name}.service", service)
    assert answered, why
    if host_syslog:
        assert syslog, f"{service.unit} wrote {host_syslog} syslog lines on the host, none from its sandbox"
    host_score, sandbox_score = _exposure(box, service.unit), _exposure(box, f"sandbox-{name}.service")
    _scores[service.unit] = (host_score, sandbox_score)
    assert sandbox_score <= host_score, f"the sandbox scores {sandbox_score}, its host unit {host_score}"


def _exposure(box: SystemdBox, unit: str) -> float:
    """systemd-analyze security's overall score for a loaded unit."""
    out = box.run(["systemd-analyze", "security", "--no-pager", unit]).stdout
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert found, out
    return float(found.group(1))


@pytest.mark.parametrize("service", REFUSED, ids=lambda s: s.name)
def test_dbus_service_is_refused(box: SystemdBox, service: CorpusService) -> None:
    def snapshot() -> tuple[str, str]:
        units = box.run(["ls", "-a", UNIT_DIR]).stdout
        base = box.run(["sh", "-c", f"ls -aR {BASE} 2>/dev/null || true"]).stdout
        return units, base

    before = snapshot()
    name = f"c{service.name}"
    done = box.run([*box.tool_argv, "create", name, "--unit", service.unit], check=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert 1 <= len(lines) <= 2, done.stderr
    assert re.search(r"\bd-?bus\b", lines[0], re.IGNORECASE), lines[0]
    assert service.unit in lines[0]
    if len(lines) == 2:
        assert lines[1].startswith("hint:"), lines[1]
    assert snapshot() == before, "a refused create left files behind"
    assert box.run(["systemctl", "cat", f"sandbox-{name}.service"], check=False).returncode != 0
