"""The corpus report's classifier, on records shaped like what the box run records."""

from __future__ import annotations

from tests.corpus import CORPUS, by_unit, install_packages, quiet_packages
from tests.corpus_classify import classify, render_markdown, translation_gaps, verdict
from tests.corpus_report import PathFacts, RunRecord, ServiceRecord, from_json, to_json

_NOTIFY = (
    "Nov 30 13:33:42 vm systemd[1]: sandbox-csquid.service: Got notification message from PID 1451, "
    "but reception only permitted for main PID 1448"
)


def _record(
    unit: str = "x.service", package: str = "x", *, syslog: bool = True, **settings: str
) -> ServiceRecord:
    record = ServiceRecord(unit=unit, package=package, settings=dict(settings))
    lines = ["x: started"] if syslog else []
    record.runs.append(RunRecord(label="host", unit=unit, answered=True, syslog=lines))
    return record


def _kinds(record: ServiceRecord) -> list[str]:
    return [c.kind for c in classify(record)]


def test_corpus_data_is_consistent() -> None:
    units = [s.unit for s in CORPUS]
    assert len(units) == len(set(units)) == 28
    assert len({s.name for s in CORPUS}) == len(CORPUS)
    assert all(s.probe_argv("/run")[:2] == ["sh", "-c"] for s in CORPUS)
    assert "@RUN@" not in by_unit("knot.service").probe_argv("/proc/7/root/run")[2]
    assert "/proc/7/root/run/knot/knot.sock" in by_unit("knot.service").probe_argv("/proc/7/root/run")[2]
    assert {"cups", "netcat-openbsd", "avahi-daemon"} <= set(install_packages())
    assert {"cups-daemon", "erlang-base"} <= set(quiet_packages())


def test_dropped_notify_access_is_named_with_the_host_setting() -> None:
    record = _record(NotifyAccess="all")
    for label in ("default", "trusted"):
        record.runs.append(RunRecord(label=label, unit="sandbox-cx.service", journal=_NOTIFY))
    causes = classify(record)
    assert causes[0].kind == "notify-access"
    assert "NotifyAccess=all" in causes[0].detail
    assert "reception only permitted" in causes[0].evidence
    assert verdict(record) == "fails with both profiles"


def test_missing_path_origin_decides_the_cause() -> None:
    line = "Nov 30 13:37:10 vm zabbix_agentd[7172]: cannot create PID file [/run/zabbix/x.pid]: No such file"
    cases = {
        "tmpfiles": PathFacts("/run/zabbix/x.pid", False, False, "", ["d /run/zabbix 0755"], "", False),
        "ucf": PathFacts("/run/zabbix/x.pid", False, True, "", [], "samba-common", True),
        "sibling": PathFacts("/run/zabbix/x.pid", False, True, "other", [], "", False),
        "maintscript": PathFacts("/run/zabbix/x.pid", False, True, "", [], "", True),
    }
    for kind, facts in cases.items():
        record = _record()
        record.runs.append(RunRecord(label="default", unit="u", journal=line, paths=[facts]))
        record.runs.append(RunRecord(label="trusted", unit="u", journal=line, paths=[facts]))
        assert kind in _kinds(record), (kind, classify(record))
    # A path the sandbox has is no cause.
    present = PathFacts("/run/zabbix/x.pid", True, True, "", ["d /run/zabbix"], "", False)
    record = _record()
    record.runs.append(RunRecord(label="trusted", unit="u", journal=line, paths=[present]))
    record.runs.append(RunRecord(label="default", unit="u", journal=line, paths=[present]))
    assert "tmpfiles" not in _kinds(record)


def test_profile_failure_names_the_relaxed_directive() -> None:
    record = _record()
    af = "Nov 30 13:33:41 vm dnsmasq[1]: netlink socket: Address family not supported by protocol"
    record.runs.append(RunRecord(label="default", unit="u", journal=af, result="exit-code"))
    record.runs.append(RunRecord(label="trusted", unit="u", answered=True, syslog_in_logs=True))
    record.runs.append(RunRecord(label="default-again", unit="u"))
    record.relaxed = {"SystemCallFilter": False, "RestrictAddressFamilies": True}
    causes = classify(record)
    assert [c.kind for c in causes if c.layer == "profile"] == ["address-family"]
    assert "Address family not supported" in causes[0].evidence
    assert verdict(record) == "fails with default profile only"
    record.runs[-1].answered = True
    assert _kinds(record)[0] == "flaky"


def test_refusals_and_lost_syslog() -> None:
    record = _record("slapd.service", "slapd", SourcePath="/etc/init.d/slapd")
    refused = "sandbox-service: error: found nothing ... of slapd.service (no package owns its unit file)"
    record.runs.append(RunRecord(label="default", unit="u", created=False, create_output=refused))
    record.runs.append(RunRecord(label="trusted", unit="u", created=False, create_output=refused))
    assert _kinds(record) == ["refused-generated"]
    assert verdict(record) == "refused by create"

    works = _record()
    works.runs.append(RunRecord(label="default", unit="u", answered=True, syslog_in_logs=False))
    works.runs.append(RunRecord(label="trusted", unit="u", answered=True, syslog_in_logs=False))
    assert _kinds(works) == ["no-dev-log"]
    assert verdict(works) == "works"


def test_report_round_trips_and_renders() -> None:
    record = _record(NotifyAccess="all")
    record.runs.append(RunRecord(label="default", unit="u", journal=_NOTIFY, paths=[]))
    record.runs.append(RunRecord(label="trusted", unit="u", journal=_NOTIFY))
    again = from_json(to_json([record]))
    assert again == [record]
    text = render_markdown(again, wall_seconds=12)
    assert "| x.service | fails with both profiles |" in text
    assert "dropped NotifyAccess=" in text


def test_strace_counts_only_when_the_daemon_names_no_missing_path() -> None:
    said = "Nov 30 14:09:09 vm acng[4]: Problem creating log files in /var/log/acng. Cannot open x.err"
    traced = 'openat(AT_FDCWD, "/etc/hosts.deny", O_RDONLY) = -1 ENOENT (No such file or directory)'
    mkdir = 'mkdir("/var/log/acng", 0755) = -1 EACCES (Permission denied)'
    log_dir = PathFacts("/var/log/acng", False, True, "", [], "", True, "/var/log/acng", "", True, mkdir)
    deny = PathFacts("/etc/hosts.deny", False, True, "", [], "", True, "/etc/hosts.deny", "", True, traced)
    record = _record("acng.service", "acng", syslog=False)
    record.runs.append(RunRecord(label="default", unit="u"))
    record.runs.append(RunRecord(label="trusted", unit="u", journal=said, paths=[log_dir, deny]))
    causes = classify(record)
    assert [(c.kind, c.detail.split(" ")[0]) for c in causes] == [("maintscript", "/var/log/acng")]
    # Without the daemon's line, what strace saw is the evidence, and says so.
    record.runs[-1].journal = ""
    causes = classify(record)
    assert {c.detail.split(" ")[0] for c in causes} == {"/var/log/acng", "/etc/hosts.deny"}
    assert all("strace only" in c.detail for c in causes)
    assert any(c.evidence == f"strace: {traced}" for c in causes)


def test_sibling_and_shared_directories_are_told_apart() -> None:
    line = "Nov 30 1:1:1 vm munin[1]: Unable to open /etc/munin/plugins: No such file or directory"
    shared = PathFacts(
        "/etc/munin/plugins",
        False,
        True,
        "munin-node, munin-plugins-core",
        [],
        "",
        False,
        "/etc/munin/plugins",
        "munin-node, munin-plugins-core",
    )
    record = _record("munin-node.service", "munin-node", syslog=False)
    record.runs.append(RunRecord(label="default", unit="u"))
    record.runs.append(RunRecord(label="trusted", unit="u", journal=line, paths=[shared]))
    assert _kinds(record) == ["shared-dir"]
    sibling = PathFacts(
        "/var/log/samba/log.smbd", False, True, "", [], "", True, "/var/log/samba", "samba-common"
    )
    record.runs[-1].paths = [sibling]
    record.runs[-1].journal = line.replace("/etc/munin/plugins", "/var/log/samba/log.smbd")
    causes = classify(record)
    assert [c.kind for c in causes] == ["sibling"]
    assert "missing from /var/log/samba (package samba-common)" in causes[0].detail


def test_behind_a_refusal_the_hinted_pass_is_classified() -> None:
    record = _record(
        "tomcat10.service",
        "tomcat10",
        syslog=False,
        ExecStartPreEx="{ path=/usr/libexec/update-policy.sh ; argv[]=/usr/libexec/x ; flags=privileged }",
    )
    refused = (
        "sandbox-service: error: tomcat10.service: ExecStartPre= runs /usr/libexec/x with the '+' prefix"
    )
    denied = "Nov 30 1:1:1 vm update-policy.sh[5]: rm: cannot remove '/var/lib/x': Permission denied"
    for label in ("default", "trusted"):
        record.runs.append(RunRecord(label=label, unit="u", created=False, create_output=refused))
    for label in ("hinted-default", "hinted-trusted"):
        record.runs.append(RunRecord(label=label, unit="u", journal=denied))
    causes = classify(record)
    assert [c.kind for c in causes] == ["refused-prefix", "privileged-command"]
    assert causes[1].detail.startswith("behind the refusal")
    assert verdict(record) == "refused by create; with its hint: fails with both profiles"


def test_translation_gaps_compare_host_and_sandbox_settings() -> None:
    record = _record(NotifyAccess="all", LimitNOFILE="1048576", Type="notify", User="knot")
    record.runs.append(
        RunRecord(
            label="default",
            unit="u",
            answered=True,
            settings={"NotifyAccess": "main", "Type": "notify", "User": "knot", "LimitNOFILE": "524288"},
        )
    )
    record.runs.append(RunRecord(label="trusted", unit="u", answered=True))
    assert translation_gaps(record) == [("NotifyAccess", "all", "main"), ("LimitNOFILE", "1048576", "524288")]
