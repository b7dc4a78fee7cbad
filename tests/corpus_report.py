"""Run the current tool over the service corpus in a box and record what happens (scripts/corpus-report.py).

For every corpus unit: the host unit first (the baseline: a unit that fails there is reported, not
counted), then `sandbox-service create cNAME --unit UNIT` with no hints under the `default` and the
`trusted` profile, `systemctl start sandbox-cNAME.service`, the unit's own probe inside the sandbox's
network namespace, and whether the daemon's syslog lines reach `sandbox-service logs cNAME`.  A failed
attempt keeps its journal and facts about the paths its error lines name; a start that fails under
`default` but works under `trusted` is retried with one directive of the profile relaxed at a time (a
drop-in in the box), which names the directive that breaks it.  The raw record goes to JSON; the
classification (tests/corpus_classify.py) reads only that record.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.box import SystemdBox
from tests.corpus import CORPUS, REFUSED, CorpusService
from tests.corpusrun import (
    Attempt,
    active_units,
    journal_cursor,
    journal_since,
    netns_pid,
    start_and_probe,
    stop_with_companions,
)
from tests.sandboxcli import TOOL

__all__ = ["RELAXATIONS", "ServiceRecord", "gather"]

#: One directive (or a few that belong together) of the `default` profile, and the drop-in lines that lift it.
RELAXATIONS: dict[str, tuple[str, ...]] = {
    "SystemCallFilter": ("SystemCallFilter=",),
    "CapabilityBoundingSet": ("CapabilityBoundingSet=~",),
    "RestrictAddressFamilies": ("RestrictAddressFamilies=",),
    "PrivateDevices": ("PrivateDevices=no",),
    "NoNewPrivileges": ("NoNewPrivileges=no",),
    "ProtectProc": ("ProtectProc=default",),
    "ProtectHome": ("ProtectHome=no",),
    "ProtectKernelTunables": ("ProtectKernelTunables=no",),
    "ProtectKernelModules": ("ProtectKernelModules=no",),
    "ProtectKernelLogs": ("ProtectKernelLogs=no",),
    "ProtectControlGroups": ("ProtectControlGroups=no",),
    "ProtectClock": ("ProtectClock=no",),
    "RestrictNamespaces": ("RestrictNamespaces=no",),
    "RestrictRealtime": ("RestrictRealtime=no",),
    "RestrictSUIDSGID": ("RestrictSUIDSGID=no",),
    "LockPersonality": ("LockPersonality=no",),
    "SystemCallArchitectures": ("SystemCallArchitectures=",),
    "KeyringMode": ("KeyringMode=shared",),
}

#: Settings of the host unit worth knowing for translation (shown when they differ from a bare unit's).
SETTINGS = (
    "Type",
    "User",
    "Group",
    "SupplementaryGroups",
    "NotifyAccess",
    "PIDFile",
    "GuessMainPID",
    "RemainAfterExit",
    "ExecStartPreEx",
    "ExecStartEx",
    "ExecStartPostEx",
    "ExecReloadEx",
    "ExecStopEx",
    "ExecStopPostEx",
    "WorkingDirectory",
    "RootDirectory",
    "EnvironmentFiles",
    "Environment",
    "UMask",
    "LimitNOFILE",
    "LimitNOFILESoft",
    "LimitNPROC",
    "LimitMEMLOCK",
    "LimitCORE",
    "LimitCORESoft",
    "LimitSTACK",
    "LimitRTPRIO",
    "LimitNICE",
    "RuntimeDirectory",
    "RuntimeDirectoryMode",
    "RuntimeDirectoryPreserve",
    "StateDirectory",
    "CacheDirectory",
    "LogsDirectory",
    "ConfigurationDirectory",
    "Requires",
    "Wants",
    "BindsTo",
    "Sockets",
    "TriggeredBy",
    "RequiresMountsFor",
    "SourcePath",
    "FragmentPath",
    "DropInPaths",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateNetwork",
    "PrivateUsers",
    "NoNewPrivileges",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "SystemCallFilter",
    "SystemCallArchitectures",
    "DevicePolicy",
    "DeviceAllow",
    "WatchdogUSec",
    "TimeoutStartUSec",
    "Restart",
    "KillMode",
    "Slice",
    "StandardOutput",
    "StandardError",
    "SyslogIdentifier",
    "OOMScoreAdjust",
    "Nice",
    "IOSchedulingClass",
    "CPUSchedulingPolicy",
)

#: Always shown, whatever a bare unit has.
ALWAYS_SHOWN = ("Type", "User", "NotifyAccess", "FragmentPath", "SourcePath")

REFERENCE_UNIT = "corpus-reference.service"
_PATH_IN_LOG = re.compile(
    r"(?<![\w.-])(/(?:etc|var|run|usr|lib|dev|proc|sys|tmp|srv|home|root)(?:/[\w.@+%-]*)*)"
)
_HOST_RUN = re.compile(r"^/run/sandbox-service/[^/]+/")
_JOURNAL_NOISE = re.compile(r"^-- (No entries|Boot|Journal begins|Logs begin)")


@dataclass
class PathFacts:
    """What a path named in an error line is: where it exists, who declares or owns it."""

    path: str
    in_sandbox: bool
    on_host: bool
    dpkg_owner: str
    tmpfiles: list[str]
    ucf: str
    #: The path (or its parent) is made by a maintainer script: on the host, owned by no package.
    unowned_on_host: bool


@dataclass
class RunRecord:
    """One attempt: the host unit ("host") or a sandbox under a profile (or the default one, relaxed)."""

    label: str
    unit: str
    created: bool = True
    create_status: int = 0
    create_output: str = ""
    answered: bool = False
    answered_while_activating: bool = False
    seconds: float = 0.0
    active_state: str = ""
    sub_state: str = ""
    result: str = ""
    probe_output: str = ""
    #: Syslog-transport journal entries of the run (identifier: message), first few.
    syslog: list[str] = field(default_factory=list)
    #: Those entries found in `sandbox-service logs cNAME` (None: nothing to look for).
    syslog_in_logs: bool | None = None
    dev_log_in_sandbox: bool | None = None
    journal: str = ""
    unit_text: str = ""
    paths: list[PathFacts] = field(default_factory=list)


@dataclass
class ServiceRecord:
    unit: str
    package: str
    settings: dict[str, str] = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)
    #: Directive of the `default` profile whose relaxation alone made the sandbox answer, if any.
    relaxed: dict[str, bool] = field(default_factory=dict)

    def run(self, label: str) -> RunRecord | None:
        return next((r for r in self.runs if r.label == label), None)


def _write_reference(box: SystemdBox) -> None:
    box.write_file(
        f"/etc/systemd/system/{REFERENCE_UNIT}",
        "[Service]\nExecStart=/bin/true\n",
    )
    box.run(["systemctl", "daemon-reload"])


def _show_all(box: SystemdBox, unit: str) -> dict[str, str]:
    out = box.run(["systemctl", "show", unit]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _settings(box: SystemdBox, unit: str, reference: dict[str, str]) -> dict[str, str]:
    shown = _show_all(box, unit)
    return {
        key: shown.get(key, "")
        for key in SETTINGS
        if key in ALWAYS_SHOWN or shown.get(key, "") != reference.get(key, "")
    }


def _syslog_entries(box: SystemdBox, cursor: str, unit: str) -> list[str]:
    raw = journal_since(box, cursor, (unit,), output="json")
    found = []
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("_TRANSPORT") == "syslog" and isinstance(entry.get("MESSAGE"), str):
            found.append(f"{entry.get('SYSLOG_IDENTIFIER', '?')}: {entry['MESSAGE']}")
    return found


def _journal_text(box: SystemdBox, cursor: str, unit: str) -> str:
    text = journal_since(box, cursor, (unit,))
    return "\n".join(line for line in text.splitlines() if not _JOURNAL_NOISE.match(line))


def _path_facts(box: SystemdBox, root: str, journal: str, limit: int = 12) -> list[PathFacts]:
    # systemd names the host side of the sandbox's /run (a PIDFile=): the path inside is what matters.
    inside = (_HOST_RUN.sub("/run/", m.rstrip(".:,'\"")) for m in _PATH_IN_LOG.findall(journal))
    paths = list(dict.fromkeys(inside))
    facts = []
    for path in paths[:limit]:
        if path.startswith(("/proc", "/sys", "/dev/pts")):
            continue
        script = r"""
p=$1; root=$2
[ -e "$root$p" ] || [ -L "$root$p" ] && echo in_sandbox
[ -e "$p" ] || [ -L "$p" ] && echo on_host
owner=$(dpkg-query -S "$p" 2>/dev/null | head -n1 | cut -d: -f1); echo "owner=$owner"
parent=${p%/*}
grep -hsE "^[a-zA-Z][-+=~^!]*[[:space:]]+($p|$parent)([[:space:]]|$)" \
    /usr/lib/tmpfiles.d/*.conf /etc/tmpfiles.d/*.conf | sed 's/^/tmpfiles=/'
ucf=$(grep -s " $p\$" /var/lib/ucf/registry | head -n1 | cut -d' ' -f1); echo "ucf=$ucf"
if [ -e "$p" ] && [ -z "$owner" ]; then echo unowned; fi
"""
        out = box.run(["sh", "-c", script, "sh", path, root], check=False).stdout.splitlines()
        values = dict(line.split("=", 1) for line in out if "=" in line and not line.startswith("tmpfiles="))
        facts.append(
            PathFacts(
                path=path,
                in_sandbox="in_sandbox" in out,
                on_host="on_host" in out,
                dpkg_owner=values.get("owner", ""),
                tmpfiles=[line.removeprefix("tmpfiles=") for line in out if line.startswith("tmpfiles=")],
                ucf=values.get("ucf", ""),
                unowned_on_host="unowned" in out,
            )
        )
    return facts


def _fill(record: RunRecord, attempt: Attempt) -> None:
    record.answered = attempt.answered
    record.answered_while_activating = attempt.answered_while_activating
    record.seconds = round(attempt.seconds, 1)
    record.active_state = attempt.active_state
    record.sub_state = attempt.sub_state
    record.result = attempt.result
    record.probe_output = attempt.probe_output[-500:]


def host_run(box: SystemdBox, service: CorpusService) -> RunRecord:
    record = RunRecord(label="host", unit=service.unit)
    before = active_units(box)
    cursor = journal_cursor(box)
    try:
        _fill(record, start_and_probe(box, service.unit, service))
        time.sleep(0.5)  # the daemon's first syslog lines
        record.syslog = _syslog_entries(box, cursor, service.unit)
    finally:
        stop_with_companions(box, service.unit, before)
    if not record.answered:
        record.journal = _journal_text(box, cursor, service.unit)
    return record


def sandbox_name(service: CorpusService) -> str:
    return f"c{service.name}"


def _create(box: SystemdBox, service: CorpusService, record: RunRecord, profile: str) -> str:
    name = sandbox_name(service)
    argv = [*TOOL, "create", name, "--unit", service.unit]
    if profile != "default":
        argv += ["--profile", profile]
    done = box.run(argv, check=False, timeout=600)
    record.create_status = done.returncode
    record.create_output = (done.stdout + done.stderr).strip()
    record.created = done.returncode == 0
    return name


def _delete(box: SystemdBox, name: str) -> None:
    box.run([*TOOL, "delete", name], check=False, timeout=300)
    box.run(["rm", "-rf", f"/etc/systemd/system/sandbox-{name}.service.d"], check=False)


def sandbox_run(
    box: SystemdBox,
    service: CorpusService,
    profile: str,
    *,
    relax: tuple[str, ...] = (),
    label: str = "",
    host_syslog: bool = False,
) -> RunRecord:
    """Create, start, probe, look at the logs, and delete one sandbox of ``service``."""
    unit = f"sandbox-{sandbox_name(service)}.service"
    record = RunRecord(label=label or profile, unit=unit)
    name = _create(box, service, record, profile)
    try:
        if not record.created:
            return record
        record.unit_text = box.run(["systemctl", "cat", unit], check=False).stdout
        if relax:
            box.write_file(
                f"/etc/systemd/system/{unit}.d/zz-corpus-relax.conf", "[Service]\n" + "\n".join(relax) + "\n"
            )
            box.run(["systemctl", "daemon-reload"])
        before = active_units(box)
        cursor = journal_cursor(box)
        try:
            attempt = start_and_probe(box, unit, service)
            _fill(record, attempt)
            pid = netns_pid(box, unit)
            if pid:
                # Resolved in the sandbox's own mount namespace and root: /dev/log is an absolute symlink.
                inside = ["nsenter", "-t", str(pid), "-m", "-r", "/usr/bin/test", "-S", "/dev/log"]
                record.dev_log_in_sandbox = box.run(inside, check=False).returncode == 0
            time.sleep(0.5)
            record.syslog = _syslog_entries(box, cursor, unit)
            if host_syslog or record.syslog:
                logs = box.run([*TOOL, "logs", name], check=False).stdout
                record.syslog_in_logs = bool(record.syslog) and all(
                    entry.split(": ", 1)[1][:60] in logs for entry in record.syslog[:3]
                )
        finally:
            # Other sandboxes may be tried in parallel: theirs are not this one's leftovers.
            own = f"sandbox-{name}"
            stop_with_companions(
                box, unit, before, others=lambda u: u.startswith("sandbox-") and not u.startswith(own)
            )
        if not record.answered:
            record.journal = _journal_text(box, cursor, unit)
            root = box.run(["systemctl", "show", "-P", "RootDirectory", unit], check=False).stdout.strip()
            record.paths = _path_facts(box, root, record.journal)
        record.syslog = record.syslog[:5]
        return record
    finally:
        _delete(box, name)


#: A diagnostic drop-in: journald's syslog socket in the sandbox, so that a daemon that reports its
#: errors only through syslog(3) shows them (the tool binds no /dev/log yet).
SYSLOG_DROP_IN = ("BindReadOnlyPaths=-/run/systemd/journal/dev-log -/run/systemd/journal/socket",)


def _bisect_profile(box: SystemdBox, service: CorpusService, record: ServiceRecord) -> None:
    control = sandbox_run(box, service, "default", label="default-again")
    record.runs.append(control)
    if control.answered:
        return  # not reproducible: the report says so instead of blaming a directive
    for directive, lines in RELAXATIONS.items():
        run = sandbox_run(box, service, "default", relax=lines, label=f"default-{directive}")
        record.relaxed[directive] = run.answered
        if run.answered:
            record.runs.append(run)


def sandbox_runs(box: SystemdBox, service: CorpusService, record: ServiceRecord, bisect: bool) -> None:
    host = record.run("host")
    expects_syslog = bool(host and host.syslog)
    for profile in ("default", "trusted"):
        record.runs.append(sandbox_run(box, service, profile, host_syslog=expects_syslog))
    default, trusted = record.run("default"), record.run("trusted")
    if bisect and default and trusted and not default.answered and default.created and trusted.answered:
        _bisect_profile(box, service, record)
    if trusted and trusted.created and not trusted.answered:
        # Fails whatever the profile: show what the daemon said through syslog.
        record.runs.append(sandbox_run(box, service, "trusted", relax=SYSLOG_DROP_IN, label="trusted+syslog"))


def gather(
    box: SystemdBox,
    services: Sequence[CorpusService] = CORPUS,
    *,
    jobs: int = 2,
    bisect: bool = True,
    progress: Callable[[str], None] = print,
) -> list[ServiceRecord]:
    """The record of every service: host baseline in turn (they share ports), then sandboxes in parallel."""
    _write_reference(box)
    reference = _show_all(box, REFERENCE_UNIT)
    records = []
    for service in services:
        record = ServiceRecord(unit=service.unit, package=service.package)
        record.settings = _settings(box, service.unit, reference)
        if service in CORPUS:
            host = host_run(box, service)
            record.runs.append(host)
            progress(f"host {service.unit}: {'answered' if host.answered else 'FAILED'} in {host.seconds} s")
        records.append(record)

    def one(pair: tuple[CorpusService, ServiceRecord]) -> None:
        service, record = pair
        sandbox_runs(box, service, record, bisect and service in CORPUS)
        verdicts = ", ".join(f"{r.label}={'ok' if r.answered else 'FAIL'}" for r in record.runs)
        progress(f"sandbox {service.unit}: {verdicts}")

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, zip(services, records, strict=True)))
    return records


def to_json(records: Sequence[ServiceRecord]) -> str:
    return json.dumps([asdict(r) for r in records], indent=1)


def from_json(text: str) -> list[ServiceRecord]:
    def run(raw: dict[str, Any]) -> RunRecord:
        paths = [PathFacts(**p) for p in raw.pop("paths", [])]
        return RunRecord(**raw, paths=paths)

    records = []
    for raw in json.loads(text):
        runs = [run(r) for r in raw.pop("runs")]
        records.append(ServiceRecord(**raw, runs=runs))
    return records


ALL_SERVICES: tuple[CorpusService, ...] = (*CORPUS, *REFUSED)
