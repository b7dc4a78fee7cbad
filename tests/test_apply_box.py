"""apply against a real systemd: creating, leaving alone, updating, stopping and pruning sandboxes with
one daemon-reload; failures that stay with their sandbox; the host's limits checked before anything
starts; and what a running sandbox costs PID 1, as hostlimits.py models it."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

from sandbox_service import hostlimits
from tests.box import STATE_PARENT, STATE_PREFIX, BoxImage, SystemdBox, cleanup_stale_boxes
from tests.sandboxcli import BASE, UNIT_DIR, cli, reloads, show

DOC = "/var/tmp/apply-test.yaml"
SLEEP = "{exec_start: [{path: /usr/bin/sleep, argv: [sleep, infinity]}]}"


def apply(box: SystemdBox, text: str, *args: str) -> tuple[int, dict[str, Any], str]:
    box.write_file(DOC, text)
    rc, out, err = cli(box, "apply", DOC, "--json", *args, check=False)
    return rc, json.loads(out) if out.strip() else {}, err


def results(summary: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["result"] for s in summary["sandboxes"]}


def exists(box: SystemdBox, path: str) -> bool:
    return box.run(["test", "-e", path], check=False).returncode == 0


def account(box: SystemdBox, name: str) -> str:
    return box.run(["getent", "passwd", f"sb-{name}"], check=False).stdout.strip()


def test_apply_creates_leaves_updates_stops_and_prunes(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup += ["ap-a", "ap-b", "ap-web"]
    first = f"""version: 1
apply_group: t-apply
sandboxes:
  - name: ap-a
    service: {SLEEP}
  - name: ap-b
    started: false
    service: {SLEEP}
  - name: ap-web
    source_unit: nginx.service
    enabled: true
    network: {{publish: [{{host_port: 18080, port: 80}}]}}
"""
    box.write_file(DOC, first)
    rc, plan, _ = cli(box, "apply", DOC, "--dry-run")
    assert rc == 0 and "create    ap-a (start)" in plan and "create    ap-b\n" in plan
    assert "create    ap-web (start; enable)" in plan and "Dry run: nothing was changed." in plan
    assert not exists(box, f"{BASE}/ap-a")

    before = reloads(box)
    rc, summary, err = apply(box, first)
    assert rc == 0, err
    assert results(summary) == {"ap-a": "created", "ap-b": "created", "ap-web": "created"}
    assert summary["reloaded"] and reloads(box) == before + 1
    assert summary["started"] == 2 and summary["counts"]["created"] == 3
    assert show(box, "sandbox-ap-a.service", "ActiveState") == "active"
    assert show(box, "sandbox-ap-b.service", "ActiveState") == "inactive"
    assert show(box, "sandbox-ap-web.service", "UnitFileState") == "enabled"
    served = box.run(["curl", "-sS", "--max-time", "5", "http://127.0.0.1:18080/"], check=False)
    assert served.returncode == 0 and "nginx" in served.stdout
    spec = box.read_file(f"{BASE}/ap-a/sandbox.yaml")
    assert "apply_group: t-apply" in spec
    id_base = next(line.split()[1] for line in spec.splitlines() if line.startswith("id_base:"))
    assert account(box, "ap-a").split(":")[2:4] == [id_base, id_base]  # the batched account
    assert box.run(["grpck", "-r"], check=False).returncode == 0

    # the same document again: nothing at all
    pid = show(box, "sandbox-ap-a.service", "MainPID")
    before = reloads(box)
    rc, summary, err = apply(box, first)
    assert rc == 0 and set(results(summary).values()) == {"unchanged"}, err
    assert not summary["reloaded"] and reloads(box) == before
    assert show(box, "sandbox-ap-a.service", "MainPID") == pid

    # a changed limit (restart), a sandbox that should now run, one no longer listed (pruned)
    second = f"""version: 1
apply_group: t-apply
sandboxes:
  - name: ap-a
    limits: {{memory_max: 64M}}
    service: {SLEEP}
  - name: ap-b
    service: {SLEEP}
"""
    before = reloads(box)
    rc, summary, err = apply(box, second, "--prune")
    assert rc == 0, err
    assert results(summary) == {"ap-a": "updated", "ap-b": "unchanged", "ap-web": "deleted"}
    changed = next(s for s in summary["sandboxes"] if s["name"] == "ap-a")
    assert changed["changes"] == ["limits"] and changed["restarted"]
    assert reloads(box) == before + 1
    assert show(box, "sandbox-ap-a.slice", "MemoryMax") == str(64 << 20)
    assert show(box, "sandbox-ap-a.service", "MainPID") != pid
    assert show(box, "sandbox-ap-b.service", "ActiveState") == "active"
    wants = f"{UNIT_DIR}/sandbox.target.wants/sandbox-ap-web.service"
    for gone in (f"{BASE}/ap-web", f"{UNIT_DIR}/sandbox-ap-web.service", wants):
        assert not exists(box, gone), gone
    assert account(box, "ap-web") == ""
    assert "ap-web" not in box.read_file(f"{BASE}/.id-registry.json")

    # ap-b listed as stopped, then a document that empties the group
    rc, summary, _ = apply(box, second.replace("  - name: ap-b\n", "  - name: ap-b\n    started: false\n"))
    assert rc == 0 and next(s for s in summary["sandboxes"] if s["name"] == "ap-b")["stopped"]
    assert show(box, "sandbox-ap-b.service", "ActiveState") == "inactive"
    rc, summary, _ = apply(box, "version: 1\napply_group: t-apply\nsandboxes: []\n", "--prune")
    assert rc == 0 and results(summary) == {"ap-a": "deleted", "ap-b": "deleted"}
    listed = {e["name"] for e in json.loads(cli(box, "list", "--json")[1])}
    assert not listed & {"ap-a", "ap-b", "ap-web"}


def test_a_sandbox_that_fails_fails_alone(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup += ["af-ok", "af-missing", "af-badstart", "af-dup"]
    text = f"""version: 1
apply_group: t-fail
sandboxes:
  - name: af-ok
    service: {SLEEP}
  - name: af-missing
    service: {{exec_start: [{{path: /usr/bin/no-such-program, argv: [x]}}]}}
  - name: af-badstart
    service:
      exec_start_pre: [{{path: /usr/bin/false, argv: ["false"]}}]
      exec_start: [{{path: /usr/bin/sleep, argv: [sleep, infinity]}}]
"""
    rc, summary, err = apply(box, text)
    assert rc == 15 and "2 of 3 sandboxes failed" in err
    by_name = {s["name"]: s for s in summary["sandboxes"]}
    assert by_name["af-ok"]["result"] == "created" and by_name["af-ok"]["started"]
    missing, bad = by_name["af-missing"], by_name["af-badstart"]
    assert (
        missing["result"] == "failed" and "does not exist inside" in missing["error"] and not missing["kept"]
    )
    assert not exists(box, f"{BASE}/af-missing") and account(box, "af-missing") == ""
    assert "af-missing" not in box.read_file(f"{BASE}/.id-registry.json")
    assert (
        bad["result"] == "failed" and bad["kept"] and "start of sandbox-af-badstart.service" in bad["error"]
    )
    assert exists(box, f"{BASE}/af-badstart/sandbox.yaml")
    assert show(box, "sandbox-af-ok.service", "ActiveState") == "active"

    # the text summary names each failure with its error
    box.write_file(DOC, text)
    rc, out, _ = cli(box, "apply", DOC, check=False)
    assert rc == 15 and "failed af-missing: " in out and "failed af-badstart: " in out

    # a name another sandbox's port is taken by: refused when planned, the rest goes on
    text = f"""version: 1
apply_group: t-fail
sandboxes:
  - name: af-ok
    service: {SLEEP}
  - name: af-dup
    network: {{publish: [{{host_port: 18090, port: 80}}]}}
    service: {SLEEP}
  - name: af-dup2
    network: {{publish: [{{host_port: 18090, port: 81}}]}}
    service: {SLEEP}
"""
    cleanup.append("af-dup2")
    rc, summary, _ = apply(box, text)
    assert rc == 15
    by_name = {s["name"]: s for s in summary["sandboxes"]}
    assert by_name["af-dup"]["result"] == "created" and by_name["af-dup2"]["result"] == "failed"
    assert "already published by sandbox 'af-dup'" in by_name["af-dup2"]["error"]


def fds_of_pid1(box: SystemdBox) -> int:
    return int(box.run(["sh", "-c", "ls /proc/1/fd | wc -l"]).stdout)


def start_cost(box: SystemdBox, unit: str) -> int:
    """PID 1's descriptors held for a running unit: the most frequent difference over three starts."""
    seen = []
    for _ in range(3):
        box.run(["systemctl", "stop", unit])
        time.sleep(0.3)
        before = fds_of_pid1(box)
        box.run(["systemctl", "start", unit])
        time.sleep(0.3)
        seen.append(fds_of_pid1(box) - before)
    return Counter(seen).most_common(1)[0][0]


def test_what_a_running_sandbox_costs_pid1(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup += ["cost-default", "cost-dense"]
    version = int(box.image.systemd)
    for name, profile, private_ipc in (("cost-default", "default", True), ("cost-dense", "dense", False)):
        cli(box, "create", name, "--profile", profile, "--", "/usr/bin/sleep", "infinity")
        status = json.loads(cli(box, "status", name, "--json")[1])
        assert status["private_ipc"] is private_ipc
        expected = hostlimits.cost(True, private_ipc, 0, version).descriptors
        assert start_cost(box, f"sandbox-{name}.service") == expected, profile
    limits = json.loads(cli(box, "limits", "--json")[1])
    assert limits["systemd_version"] == version
    assert (
        limits["per_sandbox"]["dense"]["descriptors"] == limits["per_sandbox"]["default"]["descriptors"] - 2
    )
    assert {lim["key"] for lim in limits["limits"]} >= {"descriptors", "mounts"}


def test_limits_refuse_a_batch_that_does_not_fit(box_image: BoxImage) -> None:
    """In a box whose PID 1 may open few files, apply refuses the whole batch up front."""
    cleanup_stale_boxes()
    state = STATE_PARENT / f"{STATE_PREFIX}{os.getpid()}-{box_image.systemd}-limits"
    with SystemdBox(state, image=box_image, nspawn_options=["--rlimit=RLIMIT_NOFILE=440"]) as small:
        limits = json.loads(cli(small, "limits", "--json")[1])
        room = limits["room"]["default"]["sandboxes"]
        assert limits["room"]["default"]["bound_by"] == "descriptors" and 0 < room < 40
        names = [f"lim{i:02d}" for i in range(room + 1)]
        doc = "version: 1\nsandboxes:\n" + "".join(f"  - name: {n}\n    service: {SLEEP}\n" for n in names)
        small.write_file(DOC, doc)
        rc, _out, err = cli(small, "apply", DOC, check=False)
        assert rc == 14 and f"about {room} more can start" in err and "RLIMIT_NOFILE" in err
        assert small.run(["sh", "-c", f"ls {BASE} 2>/dev/null | grep -c lim || true"]).stdout.strip() == "0"
        # what fits is made, and then it is full
        small.write_file(DOC, doc.replace(f"  - name: {names[-1]}\n    service: {SLEEP}\n", ""))
        rc, _out, err = cli(small, "apply", DOC, check=False)
        assert rc == 0, err
        rc, _out, err = cli(small, "create", "one-more", "--now", "--", "/usr/bin/sleep", "9", check=False)
        assert rc == 14 and "about 0 more can start" in err
        assert small.run(["test", "-e", f"{BASE}/one-more"], check=False).returncode != 0
