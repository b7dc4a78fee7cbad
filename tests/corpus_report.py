"""Run the current tool over the service corpus in a box and record what happens (scripts/corpus-report.py).

For every corpus unit: the host unit first (the baseline: a unit that fails there is reported, not
counted), then `sandbox-service create cNAME --unit UNIT` with no hints under the `default` and the
`trusted` profile, `systemctl start sandbox-cNAME.service`, the unit's own probe inside the sandbox's
network namespace, and whether the daemon's syslog lines reach `sandbox-service logs cNAME`.  A failed
attempt keeps its journal and facts about the paths its error lines name; a start that fails under
`default` but works under `trusted` is retried with one directive of the profile relaxed at a time (a
drop-in in the box), which names the directive that breaks it.  A start that fails under both is
repeated once as a diagnostic run (journald's syslog socket bound in, ExecStart under strace, new lines of
the sandbox's log files).  A refusal whose hint can be followed (the '+' taken out of the host unit,
--package for a unit made from an init script) gets the same runs with the hint ("hinted-" labels).  The
raw record goes to JSON; the classification (tests/corpus_classify.py) reads only that record.
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
from tests.corpus import CORPUS, CorpusService
from tests.corpusrun import (
    Attempt,
    active_units,
    journal_cursor,
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
    #: The topmost directory on the way to the path that the sandbox lacks (the path itself if only it
    #: is missing), which is what the tree should have had, and that directory's owner on the host.
    missing_from: str = ""
    missing_from_owner: str = ""
    missing_from_unowned: bool = False
    #: The strace line of the failed access, when strace saw one.
    strace: str = ""


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
    #: systemd's view of the generated sandbox unit (SETTINGS), for the plain runs of each pass.
    settings: dict[str, str] = field(default_factory=dict)
    #: SYSLOG_IDENTIFIERs the unit's processes log with (host run only).
    identifiers: list[str] = field(default_factory=list)


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


_UNIT_FIELDS = ("_SYSTEMD_UNIT", "UNIT", "OBJECT_SYSTEMD_UNIT")


def _entries(
    box: SystemdBox, cursor: str, unit: str, idents: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Journal entries of an attempt: those journald put under ``unit``, and those it could not put
    anywhere because the sender had exited before journald looked at it (a daemon's last syslog
    lines before it dies), known by the unit's PIDs or by the identifiers the host unit logs with."""
    argv = ["journalctl", "--no-pager", "-o", "json"]
    if cursor:
        argv.append(f"--after-cursor={cursor}")
    entries = []
    for line in box.run(argv, check=False).stdout.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    pids = {e.get("_PID") for e in entries if e.get("_SYSTEMD_UNIT") == unit}
    return [
        e
        for e in entries
        if any(e.get(f) == unit for f in _UNIT_FIELDS)
        or (
            not e.get("_SYSTEMD_UNIT")
            and e.get("_PID") != "1"
            and (e.get("_PID") in pids or e.get("SYSLOG_IDENTIFIER") in idents)
        )
    ]


def _message(entry: dict[str, Any]) -> str:
    message = entry.get("MESSAGE", "")
    if isinstance(message, list):  # journald's form for a message that is not UTF-8
        return bytes(message).decode(errors="replace")
    return str(message)


def _syslog_lines(entries: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{e.get('SYSLOG_IDENTIFIER', '?')}: {_message(e)}"
        for e in entries
        if e.get("_TRANSPORT") == "syslog"
    ]


def _journal_lines(entries: Sequence[dict[str, Any]]) -> str:
    """The entries as journalctl's short format shows them."""
    out = []
    for e in entries:
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(int(e.get("__REALTIME_TIMESTAMP", 0)) / 1e6))
        ident = e.get("SYSLOG_IDENTIFIER") or e.get("_COMM") or "?"
        pid = e.get("SYSLOG_PID") or e.get("_PID") or "?"
        for i, text in enumerate(_message(e).splitlines() or [""]):
            out.append(f"{stamp} vm {ident}[{pid}]: {text}" if i == 0 else f"    {text}")
    return "\n".join(out)


def _new_log_lines(box: SystemdBox, root: str, since: str) -> str:
    """The last lines of log files under the sandbox's /var/log written during the attempt, as
    `FILE: LINE` (many daemons log there, not to the journal)."""
    if not root:
        return ""
    script = r"""
find "$1/var/log" -type f -newermt "@$2" 2>/dev/null | while read -r f; do
    tail -n 15 "$f" | sed "s|^|${f#$1}: |"
done
"""
    out = box.run(["sh", "-c", script, "sh", root, since], check=False).stdout
    return "\n" + out if out else ""


_FACTS_SCRIPT = r"""
root=$1; shift
owner_of() { dpkg-query -S "$1" 2>/dev/null | grep -v '^diversion' | head -n1 | sed 's/: .*//'; }
for p in "$@"; do
    echo "@@$p"
    if [ -e "$root$p" ] || [ -L "$root$p" ]; then echo in_sandbox; fi
    if [ -e "$p" ] || [ -L "$p" ]; then echo on_host; fi
    owner=$(owner_of "$p"); echo "owner=$owner"
    if [ -e "$p" ] && [ -z "$owner" ]; then echo unowned; fi
    q=$p
    while :; do
        case $q in /|/run|/var|/var/lib|/var/cache|/var/log|/var/spool|/var/tmp|/etc|/tmp|"") break ;; esac
        grep -hsE "^[[:space:]]*[a-zA-Z][-+=~^!]*[[:space:]]+$q/?([[:space:]]|$)" \
            /usr/lib/tmpfiles.d/*.conf /etc/tmpfiles.d/*.conf | sed 's/^[[:space:]]*/tmpfiles=/'
        q=${q%/*}
    done
    echo "ucf=$(grep -s " $p\$" /var/lib/ucf/registry | head -n1 | cut -d' ' -f1)"
    m=$p
    while [ -n "${m%/*}" ] && [ ! -e "$root${m%/*}" ]; do m=${m%/*}; done
    if [ ! -e "$root$m" ] && [ -e "$m" ]; then
        echo "missing_from=$m"; mo=$(owner_of "$m"); echo "missing_from_owner=$mo"
        if [ -z "$mo" ]; then echo missing_from_unowned; fi
    fi
done
"""
#: Paths a daemon probes and does without, and the sandbox lacks by design: its /run is its own, the
#: shadow files are withheld, /usr (and /lib, /bin through the merged-/usr links) is the host's.
_NOISE = (
    "/proc",
    "/sys",
    "/dev/",
    "/run/systemd/",
    "/etc/selinux/",
    "/etc/ld.so.",
    "/etc/shadow",
    "/etc/gshadow",
    "/usr/",
    "/lib/",
    "/lib64/",
    "/bin/",
    "/sbin/",
)


def _path_facts(box: SystemdBox, root: str, journal: str, *, extra: Sequence[str] = ()) -> list[PathFacts]:
    """Facts about the paths the error lines name and the daemon failed to open (``extra``), kept
    only where they tell something: the host has the path, or tmpfiles.d declares it."""
    # systemd names the host side of the sandbox's /run (a PIDFile=): the path inside is what matters.
    said = "\n".join(line for line in journal.splitlines() if not _STRACE_MISS.search(line))
    inside = (_HOST_RUN.sub("/run/", m.rstrip(".:,'\"/")) for m in _PATH_IN_LOG.findall(said))
    named = [p for p in inside if p.count("/") >= 2]
    paths = [
        p.rstrip("/") for p in dict.fromkeys([*named, *extra]) if not p.startswith(_NOISE) and "*" not in p
    ]
    if not paths or not root:
        return []
    out = box.run(["sh", "-c", _FACTS_SCRIPT, "sh", root, *dict.fromkeys(paths)], check=False).stdout
    facts = []
    for block in out.split("@@")[1:]:
        path, *lines = block.splitlines()
        values = dict(
            line.split("=", 1) for line in lines if "=" in line and not line.startswith("tmpfiles=")
        )
        found = PathFacts(
            path=path,
            in_sandbox="in_sandbox" in lines,
            on_host="on_host" in lines,
            dpkg_owner=values.get("owner", ""),
            tmpfiles=[line.removeprefix("tmpfiles=") for line in lines if line.startswith("tmpfiles=")],
            ucf=values.get("ucf", ""),
            unowned_on_host="unowned" in lines,
            missing_from=values.get("missing_from", ""),
            missing_from_owner=values.get("missing_from_owner", ""),
            missing_from_unowned="missing_from_unowned" in lines,
        )
        if found.on_host or found.tmpfiles:
            found.strace = next(
                (m.group(0) for m in _STRACE_MISS.finditer(journal) if m.group(1) == path), ""
            )
            facts.append(found)
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
        record.syslog = _syslog_lines(_entries(box, cursor, service.unit))
    finally:
        stop_with_companions(box, service.unit, before)
    # Kept whatever happened: a sandbox's line that the host also logs is no sign of a problem.
    entries = _entries(box, cursor, service.unit)
    record.journal = _journal_lines(entries)
    names = {str(e.get("SYSLOG_IDENTIFIER")) for e in entries if e.get("_SYSTEMD_UNIT") == service.unit}
    record.identifiers = sorted(names - {"None", "systemd"})
    return record


def sandbox_name(service: CorpusService) -> str:
    return f"c{service.name}"


def _create(
    box: SystemdBox, service: CorpusService, record: RunRecord, profile: str, extra: Sequence[str] = ()
) -> str:
    name = sandbox_name(service)
    argv = [*TOOL, "create", name, "--unit", service.unit, *extra]
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
    timeout: float | None = None,
    create_args: Sequence[str] = (),
    idents: frozenset[str] = frozenset(),
) -> RunRecord:
    """Create, start, probe, look at the logs, and delete one sandbox of ``service``.

    ``idents``: the identifiers the host unit logs with, to find the daemon's lines that journald
    could not attribute to the unit."""
    unit = f"sandbox-{sandbox_name(service)}.service"
    record = RunRecord(label=label or profile, unit=unit)
    name = _create(box, service, record, profile, create_args)
    try:
        if not record.created:
            return record
        record.unit_text = box.run(["systemctl", "cat", unit], check=False).stdout
        if not relax and label in ("", profile, f"hinted-{profile}"):
            record.settings = _settings(box, unit, _show_all(box, REFERENCE_UNIT))
        if relax:
            box.write_file(
                f"/etc/systemd/system/{unit}.d/zz-corpus-relax.conf", "[Service]\n" + "\n".join(relax) + "\n"
            )
            box.run(["systemctl", "daemon-reload"])
        before = active_units(box)
        cursor = journal_cursor(box)
        began = box.run(["date", "+%s"]).stdout.strip()
        try:
            attempt = start_and_probe(box, unit, service, timeout=timeout)
            _fill(record, attempt)
            pid = netns_pid(box, unit)
            if pid:
                # Resolved in the sandbox's own mount namespace and root: /dev/log is an absolute symlink.
                inside = ["nsenter", "-t", str(pid), "-m", "-r", "/usr/bin/test", "-S", "/dev/log"]
                record.dev_log_in_sandbox = box.run(inside, check=False).returncode == 0
            time.sleep(0.5)
            record.syslog = _syslog_lines(_entries(box, cursor, unit, idents))
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
            root = box.run(["systemctl", "show", "-P", "RootDirectory", unit], check=False).stdout.strip()
            record.journal = _journal_lines(_entries(box, cursor, unit, idents)) + _new_log_lines(
                box, root, began
            )
            record.paths = _path_facts(box, root, record.journal, extra=failed_accesses(record.journal))
            record.journal = _trim_strace(record.journal)
        record.syslog = record.syslog[:5]
        return record
    finally:
        _delete(box, name)


#: A diagnostic drop-in: journald's syslog socket in the sandbox, so that a daemon that reports its
#: errors only through syslog(3) shows them (the tool binds no /dev/log yet).
SYSLOG_DROP_IN = ("BindReadOnlyPaths=-/run/systemd/journal/dev-log -/run/systemd/journal/socket",)
#: The diagnostic run also traces the daemon's failed file accesses (to its stderr, so to the journal).
STRACE = "/usr/bin/strace -f -qq -e trace=%%file -e status=failed"  # %% : a specifier in a unit file
DIAG_TIMEOUT = 15.0
_EXEC_START = re.compile(r"^ExecStart=(.+)$", re.MULTILINE)
_STRACE_MISS = re.compile(r'\b[a-z0-9_]+\([^"\n]*"([^"\n]+)"[^\n]*= -1 (ENOENT|EACCES|EPERM)')


def diagnostic_lines(unit_text: str) -> tuple[str, ...]:
    """Drop-in lines for the diagnostic run: syslog socket, and ExecStart= under strace."""
    found = _EXEC_START.findall(unit_text)
    if not found:
        return SYSLOG_DROP_IN
    command = found[-1]
    prefix = ""
    while command[:1] in "-@:+!":
        prefix, command = prefix + command[0], command[1:]
    if "@" in prefix or "+" in prefix or "!" in prefix:
        return SYSLOG_DROP_IN  # argv[0] games or privileged: leave the command alone
    return (*SYSLOG_DROP_IN, "ExecStart=", f"ExecStart={prefix}{STRACE} {command}")


def _trim_strace(journal: str, keep: int = 60) -> str:
    """The journal with at most ``keep`` strace lines (their paths are in the facts already)."""
    out, traced = [], 0
    for line in journal.splitlines():
        if _STRACE_MISS.search(line):
            traced += 1
            if traced > keep:
                continue
        out.append(line)
    return "\n".join(out)


def failed_accesses(journal: str) -> list[str]:
    """Paths under /etc, /var and /run the daemon looked for and could not open (from strace lines)."""
    paths = []
    for match in _STRACE_MISS.finditer(journal):
        path = match.group(1)
        if "X_OK" in match.group(0) and match.group(2) == "EACCES":
            continue  # a test for an executable bit, not a missing file
        if path.startswith(("/etc/", "/var/", "/run/")):
            paths.append(path)
    return list(dict.fromkeys(paths))


@dataclass(frozen=True)
class Pass:
    """One pass over a service's sandboxes: as the tool is (no hints), or with the hint a refusal gave."""

    prefix: str = ""
    create_args: tuple[str, ...] = ()
    #: The identifiers the host unit logs with (see sandbox_run).
    idents: frozenset[str] = frozenset()


def _bisect_profile(box: SystemdBox, service: CorpusService, record: ServiceRecord, how: Pass) -> None:
    control = sandbox_run(
        box,
        service,
        "default",
        label=f"{how.prefix}default-again",
        create_args=how.create_args,
        idents=how.idents,
    )
    record.runs.append(control)
    if control.answered:
        return  # not reproducible: the report says so instead of blaming a directive
    for directive, lines in RELAXATIONS.items():
        label = f"{how.prefix}default-{directive}"
        run = sandbox_run(
            box, service, "default", relax=lines, label=label, create_args=how.create_args, idents=how.idents
        )
        record.relaxed[f"{how.prefix}{directive}"] = run.answered
        if run.answered:
            record.runs.append(run)


def _one_pass(
    box: SystemdBox, service: CorpusService, record: ServiceRecord, bisect: bool, how: Pass
) -> None:
    host = record.run("host")
    expects_syslog = bool(host and host.syslog)
    for profile in ("default", "trusted"):
        run = sandbox_run(
            box,
            service,
            profile,
            label=how.prefix + profile,
            host_syslog=expects_syslog,
            create_args=how.create_args,
            idents=how.idents,
        )
        record.runs.append(run)
    default, trusted = record.run(how.prefix + "default"), record.run(how.prefix + "trusted")
    if bisect and default and trusted and not default.answered and default.created and trusted.answered:
        _bisect_profile(box, service, record, how)
    if trusted and trusted.created and not trusted.answered:
        # Fails whatever the profile: show what the daemon said through syslog, and what it missed.
        relax = diagnostic_lines(trusted.unit_text)
        label = f"{how.prefix}trusted+diag"
        record.runs.append(
            sandbox_run(
                box,
                service,
                "trusted",
                relax=relax,
                label=label,
                timeout=DIAG_TIMEOUT,
                create_args=how.create_args,
                idents=how.idents,
            )
        )


HINT_DROP_IN = "zz-corpus-hint.conf"


def _hint(box: SystemdBox, service: CorpusService, record: ServiceRecord) -> Pass | None:
    """What the refusal's hint says to do, done: the '+' prefix taken out of the host unit with a drop-in,
    or --package for a unit generated from an init script.  None if the refusal has no such way round."""
    default = record.run("default")
    if default is None or default.created:
        return None
    message = default.create_output
    if "prefix" in message:
        lines = _without_privileged_prefix(box.run(["systemctl", "cat", service.unit]).stdout)
        if not lines:
            return None
        box.write_file(
            f"/etc/systemd/system/{service.unit}.d/{HINT_DROP_IN}", "[Service]\n" + "\n".join(lines) + "\n"
        )
        box.run(["systemctl", "daemon-reload"])
        return Pass("hinted-", idents=_idents(record))
    source = record.settings.get("SourcePath", "")
    if "no package owns its unit file" in message and source:
        owner = box.run(["dpkg-query", "-S", source], check=False).stdout.split(":", 1)[0].strip()
        if owner:
            return Pass("hinted-", ("--package", owner), _idents(record))
    return None


def _without_privileged_prefix(unit_text: str) -> list[str]:
    """Drop-in lines re-stating every Exec*= list that has a '+' (or '!!') command, without it."""
    commands: dict[str, list[str]] = {}
    for line in unit_text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.startswith("Exec"):
            continue
        commands[key] = [] if not value else [*commands.get(key, []), value]
    out = []
    for key, values in commands.items():
        if not any(v.lstrip("-@:").startswith(("+", "!")) for v in values):
            continue
        out.append(f"{key}=")
        for value in values:
            head = len(value) - len(value.lstrip("-@:+!"))
            out.append(f"{key}={value[:head].replace('+', '').replace('!', '')}{value[head:]}")
    return out


def _idents(record: ServiceRecord) -> frozenset[str]:
    """What the daemon's own lines are tagged with: the host run's identifiers, and the names of the
    programs the unit runs (a daemon that only logs when it fails never logged on the host)."""
    host = record.run("host")
    names = set(host.identifiers) if host else set()
    for key in ("ExecStartPreEx", "ExecStartEx", "ExecStartPostEx"):
        names |= {p.rsplit("/", 1)[-1] for p in re.findall(r"path=(\S+)", record.settings.get(key, ""))}
    return frozenset(names - {"kill", "env", "sh", "bash"})


def sandbox_runs(box: SystemdBox, service: CorpusService, record: ServiceRecord, bisect: bool) -> None:
    _one_pass(box, service, record, bisect, Pass(idents=_idents(record)))
    how = _hint(box, service, record)
    if how is None:
        return
    try:
        _one_pass(box, service, record, bisect, how)
    finally:
        box.run(["rm", "-f", f"/etc/systemd/system/{service.unit}.d/{HINT_DROP_IN}"])
        box.run(["systemctl", "daemon-reload"])


def gather(
    box: SystemdBox,
    services: Sequence[CorpusService] = CORPUS,
    *,
    jobs: int = 2,
    bisect: bool = True,
    progress: Callable[[str], None] = lambda line: print(line, flush=True),
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

