"""Classify what the corpus report recorded (tests/corpus_report.py) by root cause, with the evidence.

Pure: reads ServiceRecords, returns causes and Markdown.  A cause is one thing discovery or translation
must handle; its evidence is the log line (or tool message, or fact) that shows it.  The layer says
where the fix belongs: ``profile`` (the security profile denies something the daemon needs: default
fails, trusted works), ``layout`` (the private file tree lacks something), ``translation`` (a setting
of the host unit is dropped or refused), ``logging`` (the daemon works but its syslog lines are lost).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from tests.corpus_report import RELAXATIONS, PathFacts, RunRecord, ServiceRecord

__all__ = ["Cause", "classify", "render_markdown", "verdict"]


@dataclass(frozen=True)
class Cause:
    kind: str
    layer: str
    detail: str
    evidence: str


TITLES = {
    "refused-prefix": "refused: '+'/'!!' Exec prefix",
    "refused-generated": "refused: unit generated from an init script (no package owns it)",
    "refused-dbus": "refused: Type=dbus (expected)",
    "refused-template": "refused: template",
    "refused-other": "refused by create",
    "notify-access": "dropped NotifyAccess= (readiness from a child is ignored)",
    "pidfile": "PID file never appears where systemd looks",
    "tmpfiles": "missing file from tmpfiles.d",
    "ucf": "ucf-managed config not copied",
    "sibling": "sibling package's files not copied",
    "shared-dir": "directory shared with a sibling package not copied",
    "maintscript": "file made by a maintainer script not copied",
    "missing-path": "missing path (origin unknown)",
    "limit": "dropped Limit* setting",
    "exec-setup": "systemd could not set up the process",
    "address-family": "denied address family",
    "syscall": "denied system call",
    "capability": "denied capability",
    "profile-other": "profile directive",
    "flaky": "not reproducible",
    "no-dev-log": "syslog lines lost (no /dev/log in the sandbox)",
    "privileged-command": "'+' command needs to run outside the sandbox",
    "unclassified": "unclassified",
    "host-fails": "host unit fails in the box (not counted)",
}

_NOTIFY = re.compile(r"Got notification message from PID \d+, but reception only permitted for main PID")
_PIDFILE = re.compile(r"Can't open PID file (\S+) \(yet\?\) after start")
_LIMIT = re.compile(r"file.descriptors|Too many open files|RLIMIT_|ulimit|open files limit", re.IGNORECASE)
#: systemd's own exit codes for a failed process set-up (200-245): never the daemon's.
_EXEC_SETUP = re.compile(r"status=(2[0-3]\d|24[0-5])/([A-Z_]+)")
_AF = re.compile(r"Address family not supported", re.IGNORECASE)
_EPERM = re.compile(r"Operation not permitted|Bad system call|status=31/SYS", re.IGNORECASE)
_EACCES = re.compile(r"Permission denied|Operation not permitted", re.IGNORECASE)
_ERRORISH = re.compile(
    r"error|fail|cannot|can't|could not|couldn't|unable|no such|not found|denied|not permitted|fatal|missing"
    r"|not exist|invalid|refus",
    re.IGNORECASE,
)
#: systemd's own summary lines, which say that something failed but never why.
_SYSTEMD_SUMMARY = re.compile(
    r"systemd\[1\]: .*(Failed with result|Failed to start|Main process exited|Control process exited"
    r"|Scheduled restart|Start request repeated|Deactivated successfully"
    r"|Stopped |Stopping |Starting |Started )"
)
_PREFIX = re.compile(r"^\w{3} \d+ [\d:]+ \S+ ")
#: A line strace wrote about a failed call (the daemon's own stderr lines carry strace's name too).
_STRACE_LINE = re.compile(r"^strace\[\d+\]: (\[pid +\d+\] )?(\d+ +)?[a-z0-9_]+\(.*\) += -1 E[A-Z]+")
#: What varies between two runs of the same daemon: PIDs, times, counters.
_VOLATILE = re.compile(r"\d+")

PROFILE_KINDS = {
    "RestrictAddressFamilies": ("address-family", _AF),
    "SystemCallFilter": ("syscall", _EPERM),
    "SystemCallArchitectures": ("syscall", _EPERM),
    "CapabilityBoundingSet": ("capability", _EACCES),
}


def _strip(line: str) -> str:
    """A journal line without its date and host."""
    return _PREFIX.sub("", line).strip()


def _lines(*texts: str) -> list[str]:
    return [_strip(line) for text in texts for line in text.splitlines() if line.strip()]


def _daemon_errors(lines: Iterable[str], host: Iterable[str] = ()) -> list[str]:
    """Error-looking lines of the daemon (not systemd's summaries, nor strace) that the host run lacks."""
    usual = {_shape(line) for line in host}
    return [
        line
        for line in lines
        if _ERRORISH.search(line)
        and not _SYSTEMD_SUMMARY.search(line)
        and not _STRACE_LINE.search(line)
        and _shape(line) not in usual
    ]


def _shape(line: str) -> str:
    return _VOLATILE.sub("#", line.split("]: ", 1)[-1])


def _first(lines: Iterable[str], pattern: re.Pattern[str]) -> str:
    return next((line for line in lines if pattern.search(line)), "")


HINTED = "hinted-"


def verdict(record: ServiceRecord) -> str:
    host = record.run("host")
    if host is not None and not host.answered:
        return "host unit fails (not counted)"
    first = _pass_verdict(record, "")
    if first == "refused by create" and record.run(HINTED + "default") is not None:
        return f"{first}; with its hint: {_pass_verdict(record, HINTED)}"
    return first


def _pass_verdict(record: ServiceRecord, prefix: str) -> str:
    default, trusted = record.run(prefix + "default"), record.run(prefix + "trusted")
    if default is None or trusted is None:
        return "not run"
    if not default.created:
        return "refused by create"
    if default.answered and trusted.answered:
        return "works"
    if trusted.answered:
        again = record.run(prefix + "default-again")
        if again is not None and again.answered:
            return "works (default failed once)"
        return "fails with default profile only"
    if default.answered:
        return "fails with trusted only (!)"
    return "fails with both profiles"


def classify(record: ServiceRecord) -> list[Cause]:
    """Every cause found for ``record``; those found behind a refusal (with its hint) say so."""
    host = record.run("host")
    if host is not None and not host.answered:
        evidence = next(iter(_daemon_errors(_lines(host.journal))), host.probe_output or host.result)
        return [Cause("host-fails", "baseline", record.unit, evidence)]
    causes = _pass_causes(record, "")
    if causes and causes[0].kind.startswith("refused") and record.run(HINTED + "default") is not None:
        for cause in _pass_causes(record, HINTED):
            causes.append(
                replace(cause, detail=f"behind the refusal (with its hint): {cause.detail}".rstrip(": "))
            )
    return causes


def _pass_causes(record: ServiceRecord, prefix: str) -> list[Cause]:
    default, trusted = record.run(prefix + "default"), record.run(prefix + "trusted")
    if default is None or trusted is None:
        return []
    if not default.created:
        return [_refusal(record, default.create_output)]
    causes: list[Cause] = []
    if not default.answered and trusted.answered:
        causes += _profile_causes(record, prefix)
    if not trusted.answered:
        causes += _layout_causes(record, prefix)
    causes += _logging_causes(record, prefix)
    return causes


def _refusal(record: ServiceRecord, output: str) -> Cause:
    first = output.splitlines()[0] if output else "(no output)"
    source = record.settings.get("SourcePath", "")
    if "prefix" in first:
        return Cause("refused-prefix", "translation", _exec_with_flag(record), first)
    if "no package owns its unit file" in first and source.startswith("/etc/init.d/"):
        return Cause("refused-generated", "translation", f"SourcePath={source}", first)
    if "Type=dbus" in first:
        return Cause("refused-dbus", "translation", "Type=dbus", first)
    if "template" in first:
        return Cause("refused-template", "translation", record.unit, first)
    return Cause("refused-other", "translation", "", first)


def _exec_with_flag(record: ServiceRecord) -> str:
    for key, value in record.settings.items():
        if key.startswith("Exec") and "flags=privileged" in value:
            path = re.search(r"path=(\S+)", value)
            return f"{key.removesuffix('Ex')}=+{path.group(1) if path else '?'}"
    return ""


def _profile_causes(record: ServiceRecord, prefix: str) -> list[Cause]:
    default = record.run(prefix + "default")
    assert default is not None
    lines = _lines(default.journal)
    again = record.run(prefix + "default-again")
    if again is not None and again.answered:
        return [Cause("flaky", "profile", "default failed once, answered when tried again", default.result)]
    relaxed = {k.removeprefix(prefix): ok for k, ok in record.relaxed.items() if k.startswith(prefix)}
    fixing = [d for d, ok in relaxed.items() if ok and d in RELAXATIONS]
    if not fixing:
        evidence = next(iter(_daemon_errors(lines)), default.result)
        return [Cause("profile-other", "profile", "no single directive: several together", evidence)]
    causes = []
    for directive in fixing:
        kind, pattern = PROFILE_KINDS.get(directive, ("profile-other", _ERRORISH))
        evidence = _first(lines, pattern) or next(iter(_daemon_errors(lines)), f"result {default.result}")
        causes.append(Cause(kind, "profile", f"{directive} (relaxing it alone makes it answer)", evidence))
    return causes


def _layout_causes(record: ServiceRecord, prefix: str) -> list[Cause]:
    trusted = record.run(prefix + "trusted")
    assert trusted is not None
    revealed = record.run(prefix + "trusted+diag")
    host = record.run("host")
    host_lines = _lines(host.journal) if host else []
    journal = trusted.journal + "\n" + (revealed.journal if revealed else "")
    lines = _lines(journal)
    usual = {_shape(line) for line in host_lines}
    own_lines = [line for line in lines if not _STRACE_LINE.search(line) and _shape(line) not in usual]
    traced = [line for line in lines if _STRACE_LINE.search(line)]
    causes: list[Cause] = []
    notify = _first(lines, _NOTIFY)
    if notify:
        setting = record.settings.get("NotifyAccess", "")
        causes.append(Cause("notify-access", "translation", f"host unit has NotifyAccess={setting}", notify))
    if prefix == HINTED and "prefix" in _first_line(record.run("default")):
        causes += _privileged_commands(record, own_lines)
    seen: set[tuple[str, str]] = set()
    said: list[Cause] = []
    traced_only: list[Cause] = []
    for facts in [*trusted.paths, *(revealed.paths if revealed else [])]:
        if facts.in_sandbox:
            continue
        origin = _origin(record, facts)
        if origin is None or (origin[0], origin[2]) in seen:
            continue
        kind, detail, key = origin
        evidence = _evidence_for(facts, own_lines, traced)
        if evidence.startswith("strace: "):
            seen.add((kind, key))
            traced_only.append(Cause(kind, "layout", f"{detail} (seen by strace only)", evidence))
        elif evidence:
            seen.add((kind, key))
            said.append(Cause(kind, "layout", detail, evidence))
    # What strace saw counts when the daemon's own lines name no missing path.
    causes += said or traced_only
    pid_line = _first(lines, _PIDFILE)
    if pid_line and not any(c.kind == "tmpfiles" for c in causes):
        causes.append(Cause("pidfile", "translation", record.settings.get("PIDFile", ""), pid_line))
    limit = _first(own_lines, _LIMIT)
    if limit:
        limits = ", ".join(f"{k}={v}" for k, v in record.settings.items() if k.startswith("Limit"))
        causes.append(Cause("limit", "translation", limits or "a Limit* setting", limit))
    setup = _first(own_lines, _EXEC_SETUP)
    if setup:
        match = _EXEC_SETUP.search(setup)
        assert match is not None
        causes.append(Cause("exec-setup", "layout", f"{match.group(1)}/{match.group(2)}", setup))
    if not causes:
        errors = _daemon_errors(lines, host_lines)
        evidence = errors[0] if errors else (trusted.probe_output or f"result {trusted.result}")
        causes.append(Cause("unclassified", "layout", "", evidence))
    return causes


def _first_line(run: RunRecord | None) -> str:
    return run.create_output.splitlines()[0] if run is not None and run.create_output else ""


def _privileged_commands(record: ServiceRecord, own_lines: Sequence[str]) -> list[Cause]:
    """With the '+' taken out, the command that had it fails inside: it needed to run outside."""
    causes = []
    for key, value in record.settings.items():
        if not key.startswith("Exec") or "flags=privileged" not in value:
            continue
        path = re.search(r"path=(\S+)", value)
        name = path.group(1).rsplit("/", 1)[-1] if path else ""
        line = _first((line for line in own_lines if _ERRORISH.search(line)), re.compile(re.escape(name)))
        if name and line:
            detail = f"{key.removesuffix('Ex')}=+{path.group(1) if path else ''} fails inside the sandbox"
            causes.append(Cause("privileged-command", "translation", detail, line))
    return causes


def _evidence_for(facts: PathFacts, own_lines: Sequence[str], traced: Sequence[str]) -> str:
    """The daemon's error line naming the path (or the missing directory), else the strace line."""
    errors = [line for line in own_lines if _ERRORISH.search(line) and not _SYSTEMD_SUMMARY.search(line)]
    for needle in dict.fromkeys(p for p in (facts.path, facts.missing_from) if p):
        found = _first(errors, re.compile(re.escape(needle)))
        if found:
            return found
    name = facts.path.rsplit("/", 1)[-1]
    found = _first(errors, re.compile(re.escape(name))) if len(name) > 3 else ""
    if found:
        return found
    strace = facts.strace or _first(traced, re.compile(re.escape(f'"{facts.path}')))
    return "strace: " + strace.split("]: ", 1)[-1] if strace else ""


def _origin(record: ServiceRecord, facts: PathFacts) -> tuple[str, str, str] | None:
    """(kind, detail, key): why the sandbox lacks ``facts.path``; the key merges causes about one thing."""
    path, top = facts.path, facts.missing_from or facts.path
    if facts.tmpfiles:
        line = " ".join(facts.tmpfiles[0].split())
        return "tmpfiles", f"{path} (tmpfiles.d: {line})", line
    if facts.ucf:
        return "ucf", f"{path} (ucf registry: {facts.ucf})", path
    owner = facts.missing_from_owner if facts.missing_from else facts.dpkg_owner
    owners = [o.strip() for o in owner.split(",") if o.strip()]
    where = f"{path}, missing from {top}" if top != path else path
    if record.package in owners and len(owners) > 1:
        others = ", ".join(o for o in owners if o != record.package)
        return "shared-dir", f"{where} (owned by {record.package} and {others})", top
    if owners and record.package not in owners:
        return "sibling", f"{where} (package {owner})", top
    unowned = facts.missing_from_unowned if facts.missing_from else facts.unowned_on_host
    if unowned and facts.on_host:
        return "maintscript", f"{where} (on the host, in no package's file list)", top
    if owners:
        return "missing-path", f"{where} (package {owner}, the unit's own)", top
    return None


def _logging_causes(record: ServiceRecord, prefix: str) -> list[Cause]:
    host = record.run("host")
    if host is None or not host.syslog:
        return []
    pair = (record.run(prefix + "default"), record.run(prefix + "trusted"))
    runs = [r for r in pair if r is not None and r.created]
    lost = [r for r in runs if r.syslog_in_logs is not True]
    if not lost:
        return []
    dev_log = {r.label.removeprefix(prefix): r.dev_log_in_sandbox for r in lost}
    detail = "; ".join(f"{label}: /dev/log {'present' if ok else 'absent'}" for label, ok in dev_log.items())
    return [Cause("no-dev-log", "logging", detail, f"on the host: {host.syslog[0]}")]


#: Settings a wrapped unit should keep (or keep the meaning of): a difference is a translation gap.
CARRIED = (
    "Type",
    "User",
    "Group",
    "SupplementaryGroups",
    "NotifyAccess",
    "GuessMainPID",
    "RemainAfterExit",
    "UMask",
    "Environment",
    "WorkingDirectory",
    "RuntimeDirectoryMode",
    "RuntimeDirectoryPreserve",
    "StateDirectory",
    "CacheDirectory",
    "LogsDirectory",
    "ConfigurationDirectory",
    "AmbientCapabilities",
    "WatchdogUSec",
    "TimeoutStartUSec",
    "Restart",
    "KillMode",
    "SyslogIdentifier",
    "StandardOutput",
    "StandardError",
    "OOMScoreAdjust",
    "Nice",
    "IOSchedulingClass",
    "CPUSchedulingPolicy",
    "DevicePolicy",
    "DeviceAllow",
    "Sockets",
    "TriggeredBy",
)


def translation_gaps(record: ServiceRecord) -> list[tuple[str, str, str]]:
    """(setting, host unit's value, sandbox unit's value) where the generated unit lost or changed one."""
    sandbox = next(
        (r.settings for r in (record.run("default"), record.run(HINTED + "default")) if r and r.settings),
        None,
    )
    if sandbox is None:
        return []
    keys = [k for k in record.settings if k in CARRIED or k.startswith("Limit")]
    keys += [k for k in sandbox if k.startswith("Limit") and k not in keys]
    gaps = []
    for key in keys:
        host, inside = record.settings.get(key, ""), sandbox.get(key, "")
        if _canonical(host) != _canonical(inside):
            gaps.append((key, host or "(systemd's default)", inside or "(systemd's default)"))
    return gaps


def _canonical(value: str) -> str:
    return " ".join(sorted(value.split()))


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def render_markdown(records: Sequence[ServiceRecord], wall_seconds: float | None = None) -> str:
    out = ["# Corpus report: the current sandbox-service over the service corpus", ""]
    if wall_seconds is not None:
        out += [f"Run time: {wall_seconds:.0f} s.", ""]
    counted = [r for r in records if r.run("host") is not None and not verdict(r).startswith("host unit")]
    works = [r for r in counted if verdict(r).startswith("works")]
    out += [
        f"{len(works)} of {len(counted)} counted units answer their probe in a sandbox with the default "
        f"profile and with trusted; not counted: {len(records) - len(counted)} "
        "(host unit fails in the box, or the refusal case).",
        "",
        "| unit | verdict | host | default | trusted | syslog reaches `logs` |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        cells = []
        for label in ("host", "default", "trusted"):
            run = r.run(label)
            if run is None:
                cells.append("—")
            elif not run.created:
                cells.append(f"refused ({run.create_status})")
            else:
                cells.append(
                    f"ok {run.seconds:.1f} s" if run.answered else f"FAIL ({run.active_state}/{run.result})"
                )
        syslog = _syslog_cell(r)
        out.append(f"| {r.unit} | {verdict(r)} | {' | '.join(cells)} | {syslog} |")
    out += ["", "## Root causes", "", "| unit | layer | cause | detail | evidence |", "|---|---|---|---|---|"]
    for r in records:
        for c in classify(r):
            title = TITLES.get(c.kind, c.kind)
            out.append(f"| {r.unit} | {c.layer} | {title} | {_md(c.detail)} | `{_md(c.evidence)[:300]}` |")
    out += ["", "## Causes by kind", ""]
    by_kind: dict[str, list[str]] = {}
    for r in records:
        for c in classify(r):
            by_kind.setdefault(c.kind, []).append(r.unit)
    for kind, units in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        out.append(f"- {TITLES.get(kind, kind)}: {len(units)} — {', '.join(dict.fromkeys(units))}")
    out += ["", "## Translation: host unit against the generated sandbox unit", ""]
    out += [
        "Settings systemd reports for the host unit and for `sandbox-cNAME.service` (default profile) that "
        "differ, among those a wrapped unit should keep (the sandbox's own hardening and the remapped /run "
        "paths left out).",
        "",
        "| unit | setting | host unit | sandbox unit |",
        "|---|---|---|---|",
    ]
    for r in records:
        for key, host, inside in translation_gaps(r):
            out.append(f"| {r.unit} | {key} | {_md(_short_exec(host))} | {_md(_short_exec(inside))} |")
    out += ["", "## Journal excerpts of the failed attempts", ""]
    out += [
        "The daemon's own lines (systemd's summaries and strace left out) of the most telling failed run: "
        "`trusted+diag` (trusted profile, journald's syslog socket bound in, ExecStart under strace) when "
        "the unit fails whatever the profile, else `default`.",
        "",
    ]
    for r in records:
        excerpt = _excerpt(r)
        if excerpt:
            out += [f"### {r.unit} ({excerpt[0]})", "", "```", *excerpt[1], "```", ""]
    out += ["", "## The host units as systemd shows them", ""]
    out += [
        "Settings that differ from a bare `[Service] ExecStart=/bin/true` unit, from `systemctl show`.",
        "",
    ]
    for r in records:
        out.append(f"### {r.unit}")
        out.append("")
        for key, value in r.settings.items():
            out.append(f"- {key}={_md(_short_exec(value))}")
        out.append("")
    return "\n".join(out) + "\n"


def _excerpt(record: ServiceRecord, lines: int = 15) -> tuple[str, list[str]] | None:
    host = record.run("host")
    if host is None or not host.answered:
        return None
    for label in ("trusted+diag", "default", HINTED + "trusted+diag", HINTED + "default"):
        run = record.run(label)
        if run is None or not run.created or run.answered:
            continue
        usual = {_shape(line) for line in _lines(host.journal)}
        own = [
            line[:240]
            for line in _lines(run.journal)
            if not (_STRACE_LINE.search(line) or _SYSTEMD_SUMMARY.search(line)) and _shape(line) not in usual
        ]
        missing = [p.path for p in run.paths if not p.in_sandbox and _origin(record, p) is not None]
        if missing:
            own.append("paths the sandbox lacks (see the causes): " + " ".join(missing))
        return label, own[-lines:]
    return None


def _syslog_cell(record: ServiceRecord) -> str:
    host = record.run("host")
    if host is None or not host.syslog:
        return "n/a (no syslog on the host)"
    parts = []
    for label in ("default", "trusted"):
        run = record.run(label)
        if run is not None and run.created:
            parts.append(f"{label}: {'yes' if run.syslog_in_logs else 'no'}")
    return ", ".join(parts) or "—"


def _short_exec(value: str) -> str:
    """`{ path=/x ; argv[]=/x -a ; flags=privileged ; start_time=... }` as `/x -a [privileged]`."""
    if not value.startswith("{"):
        return value
    items = []
    for block in re.findall(r"\{([^}]*)\}", value):
        argv = re.search(r"argv\[\]=(.*?) ;", block)
        flags = re.search(r"flags=([\w:-]*)", block)
        text = argv.group(1) if argv else block
        if flags and flags.group(1):
            text += f" [{flags.group(1)}]"
        items.append(text)
    return " ; ".join(items)
