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
from dataclasses import dataclass

from tests.corpus_report import ServiceRecord

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
    "unclassified": "unclassified",
    "host-fails": "host unit fails in the box (not counted)",
}

_NOTIFY = re.compile(r"Got notification message from PID \d+, but reception only permitted for main PID")
_PIDFILE = re.compile(r"Can't open PID file (\S+) \(yet\?\) after start")
_LIMIT = re.compile(r"file.descriptors|Too many open files|RLIMIT_|ulimit|open files limit", re.IGNORECASE)
_EXEC_SETUP = re.compile(r"status=(2\d\d)/([A-Z_]+)")
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


def _daemon_errors(lines: Iterable[str]) -> list[str]:
    """Error-looking lines the daemon (not systemd's summaries) wrote."""
    return [line for line in lines if _ERRORISH.search(line) and not _SYSTEMD_SUMMARY.search(line)]


def _first(lines: Iterable[str], pattern: re.Pattern[str]) -> str:
    return next((line for line in lines if pattern.search(line)), "")


def verdict(record: ServiceRecord) -> str:
    host, default, trusted = record.run("host"), record.run("default"), record.run("trusted")
    if host is not None and not host.answered:
        return "host unit fails (not counted)"
    if default is None or trusted is None:
        return "not run"
    if not default.created:
        return "refused by create"
    if default.answered and trusted.answered:
        return "works"
    if trusted.answered:
        again = record.run("default-again")
        if again is not None and again.answered:
            return "works (default failed once)"
        return "fails with default profile only"
    if default.answered:
        return "fails with trusted only (!)"
    return "fails with both profiles"


def classify(record: ServiceRecord) -> list[Cause]:
    causes: list[Cause] = []
    host, default, trusted = record.run("host"), record.run("default"), record.run("trusted")
    if host is not None and not host.answered:
        evidence = next(iter(_daemon_errors(_lines(host.journal))), host.probe_output or host.result)
        return [Cause("host-fails", "baseline", record.unit, evidence)]
    if default is None or trusted is None:
        return causes
    if not default.created:
        return [_refusal(record, default.create_output)]
    if not default.answered and trusted.answered:
        causes += _profile_causes(record)
    if not trusted.answered:
        causes += _layout_causes(record)
    causes += _logging_causes(record)
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


def _profile_causes(record: ServiceRecord) -> list[Cause]:
    default = record.run("default")
    assert default is not None
    lines = _lines(default.journal)
    again = record.run("default-again")
    if again is not None and again.answered:
        return [Cause("flaky", "profile", "default failed once, answered when tried again", default.result)]
    fixing = [d for d, ok in record.relaxed.items() if ok]
    if not fixing:
        evidence = next(iter(_daemon_errors(lines)), default.result)
        return [Cause("profile-other", "profile", "no single directive: several together", evidence)]
    causes = []
    for directive in fixing:
        kind, pattern = PROFILE_KINDS.get(directive, ("profile-other", _ERRORISH))
        evidence = _first(lines, pattern) or next(iter(_daemon_errors(lines)), f"result {default.result}")
        causes.append(Cause(kind, "profile", f"{directive} (relaxing it alone makes it answer)", evidence))
    return causes


def _layout_causes(record: ServiceRecord) -> list[Cause]:
    trusted = record.run("trusted")
    assert trusted is not None
    revealed = record.run("trusted+syslog")
    journal = trusted.journal + "\n" + (revealed.journal if revealed else "")
    lines = _lines(journal)
    causes: list[Cause] = []
    notify = _first(lines, _NOTIFY)
    if notify:
        setting = record.settings.get("NotifyAccess", "")
        causes.append(Cause("notify-access", "translation", f"host unit has NotifyAccess={setting}", notify))
    pid_line = _first(lines, _PIDFILE)
    path_facts = [*trusted.paths, *(revealed.paths if revealed else [])]
    seen: set[str] = set()
    for facts in path_facts:
        if facts.path in seen or facts.in_sandbox:
            continue
        seen.add(facts.path)
        evidence = _first(
            (line for line in lines if _ERRORISH.search(line)), re.compile(re.escape(facts.path))
        )
        if not evidence:
            evidence = _first(lines, re.compile(re.escape(facts.path.rsplit("/", 1)[-1])))
        if not evidence or not _ERRORISH.search(evidence):
            continue
        origin = _origin(
            record, facts.path, facts.tmpfiles, facts.ucf, facts.dpkg_owner, facts.unowned_on_host
        )
        if origin is not None:
            kind, detail = origin
            causes.append(Cause(kind, "layout", detail, evidence))
    if pid_line and not any(c.kind == "tmpfiles" for c in causes):
        causes.append(Cause("pidfile", "translation", record.settings.get("PIDFile", ""), pid_line))
    limit = _first(lines, _LIMIT)
    if limit:
        limits = ", ".join(f"{k}={v}" for k, v in record.settings.items() if k.startswith("Limit"))
        causes.append(Cause("limit", "translation", limits or "a Limit* setting", limit))
    setup = _first(lines, _EXEC_SETUP)
    if setup:
        match = _EXEC_SETUP.search(setup)
        assert match is not None
        causes.append(Cause("exec-setup", "layout", f"{match.group(1)}/{match.group(2)}", setup))
    if not causes:
        errors = _daemon_errors(lines)
        evidence = errors[0] if errors else (trusted.probe_output or f"result {trusted.result}")
        causes.append(Cause("unclassified", "layout", "", evidence))
    return causes


def _origin(
    record: ServiceRecord, path: str, tmpfiles: Sequence[str], ucf: str, owner: str, unowned: bool
) -> tuple[str, str] | None:
    if tmpfiles:
        return "tmpfiles", f"{path} ({tmpfiles[0]})"
    if ucf:
        return "ucf", f"{path} (ucf registry: {ucf})"
    if owner and owner != record.package:
        return "sibling", f"{path} (package {owner})"
    if unowned:
        return "maintscript", f"{path} (on the host, in no package's file list)"
    if owner:
        return "missing-path", f"{path} (package {owner}, the unit's own)"
    return None


def _logging_causes(record: ServiceRecord) -> list[Cause]:
    host = record.run("host")
    if host is None or not host.syslog:
        return []
    runs = [r for r in (record.run("default"), record.run("trusted")) if r is not None and r.created]
    lost = [r for r in runs if r.syslog_in_logs is not True]
    if not lost:
        return []
    dev_log = {r.label: r.dev_log_in_sandbox for r in lost}
    detail = "; ".join(f"{label}: /dev/log {'present' if ok else 'absent'}" for label, ok in dev_log.items())
    return [Cause("no-dev-log", "logging", detail, f"on the host: {host.syslog[0]}")]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def render_markdown(records: Sequence[ServiceRecord], wall_seconds: float | None = None) -> str:
    out = ["# Corpus report: the current sandbox-service over the service corpus", ""]
    if wall_seconds is not None:
        out += [f"Run time: {wall_seconds:.0f} s.", ""]
    counted = [r for r in records if not verdict(r).startswith("host unit fails")]
    works = [r for r in counted if verdict(r).startswith("works")]
    out += [
        f"{len(works)} of {len(counted)} counted units answer their probe in a sandbox with the default "
        f"profile and with trusted; {len(records) - len(counted)} not counted (host unit fails in the box).",
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
