"""Security acceptance against the real systemd: exposure scores, seccomp, capabilities, known directives."""

from __future__ import annotations

import json

import pytest

from sandbox_service.render import ROOT_RELATIVE, inside_root
from tests.box import SystemdBox
from tests.sandboxcli import BASE, UNIT_DIR, cli, show, wait_inactive

pytestmark = pytest.mark.box

NEWER_THAN_252 = {("ProtectControlGroups", "strict"), ("BindLogSockets", "yes"), ("PrivatePIDs", "yes")}
# Directives a profile sets that the user-namespace model renders differently (isolation.unit_plan):
# the bounding set is applied inside by the launcher, the launcher makes its own namespaces.
USERNS_TRANSLATED = frozenset(
    {"CapabilityBoundingSet", "PrivateUsers", "ProtectKernelTunables", "RestrictNamespaces"}
)

# ptrace(PTRACE_TRACEME): harmless and allowed without a filter; @system-service does not include @debug
PTRACE_PROBE = (
    "import ctypes, json; libc = ctypes.CDLL(None, use_errno=True); r = libc.ptrace(0, 0, 0, 0); "
    "open('/var/probe.json', 'w').write(json.dumps([r, ctypes.get_errno()]))"
)


@pytest.mark.parametrize("host_unit, name", [("nginx.service", "secweb"), ("apache2.service", "sechttpd")])
def test_default_profile_scores_low_and_still_serves(box: SystemdBox, host_unit: str, name: str) -> None:
    cli(box, "create", name, "--unit", host_unit, "--now", "--max-exposure", "2.5")
    try:
        status = json.loads(cli(box, "status", name, "--json", "--exposure")[1])
        assert status["profile"] == "default"
        assert status["exposure"] is not None and status["exposure"] <= 2.5, status["exposure"]
        box.run(["mkdir", "-p", f"{BASE}/{name}/root/var/www/html"])
        box.run(["tee", f"{BASE}/{name}/root/var/www/html/index.html"], input="secure page\n")
        pid = status["main_pid"]
        got = box.run_in_netns_of(pid, ["curl", "-sS", "--max-time", "5", "http://127.0.0.1/"]).stdout
        assert got.strip() == "secure page"
        proc = box.run(["cat", f"/proc/{pid}/status"]).stdout
        fields = dict(line.split(":\t", 1) for line in proc.splitlines() if ":\t" in line)
        assert fields["Seccomp"].strip() == "2"  # a filter is installed
        cap_bnd = int(fields["CapBnd"], 16)
        assert not cap_bnd & (1 << 21)  # CAP_SYS_ADMIN absent
        assert not cap_bnd & (1 << 19)  # CAP_SYS_PTRACE absent
        assert cap_bnd & (1 << 10)  # CAP_NET_BIND_SERVICE kept: it serves port 80
    finally:
        cli(box, "delete", name)


def test_strict_generic_scores_at_most_1_5(box: SystemdBox) -> None:
    cli(box, "create", "strictjob", "--profile", "strict", "--", "/usr/bin/sleep", "300")
    try:
        cli(box, "start", "strictjob")
        status = json.loads(cli(box, "status", "strictjob", "--json", "--exposure")[1])
        assert status["active_state"] == "active"
        assert status["exposure"] <= 1.5, status["exposure"]
        fields = dict(
            line.split(":\t", 1)
            for line in box.run(["cat", f"/proc/{status['main_pid']}/status"]).stdout.splitlines()
            if ":\t" in line
        )
        assert int(fields["CapBnd"], 16) == 0
    finally:
        cli(box, "delete", "strictjob")


def test_syscall_outside_the_filter_is_refused(box: SystemdBox) -> None:
    cli(box, "create", "sysprobe", "--", "/usr/bin/python3", "-c", PTRACE_PROBE)
    cli(box, "create", "sysopen", "--profile", "trusted", "--", "/usr/bin/python3", "-c", PTRACE_PROBE)
    try:
        for name in ("sysprobe", "sysopen"):
            box.run(["systemctl", "start", f"sandbox-{name}.service"])
            wait_inactive(box, f"sandbox-{name}.service", seconds=10)
        filtered = json.loads(box.run(["cat", f"{BASE}/sysprobe/root/var/probe.json"]).stdout)
        unfiltered = json.loads(box.run(["cat", f"{BASE}/sysopen/root/var/probe.json"]).stdout)
        assert filtered == [-1, 1]  # EPERM from the seccomp filter
        assert unfiltered == [0, 0]  # the same call succeeds without the filter
    finally:
        cli(box, "delete", "sysprobe", "sysopen")


def test_every_profile_renders_only_directives_systemd_knows(box: SystemdBox) -> None:
    _rc, out, _err = cli(box, "profiles", "--json")
    names = [p["name"] for p in json.loads(out)]
    assert {"default", "strict", "trusted", "nonetwork"} <= set(names)
    for name in names:
        sb = f"prof-{name}"
        cli(box, "create", sb, "--profile", name, "--", "/usr/bin/sleep", "60")
        try:
            unit = f"{UNIT_DIR}/sandbox-{sb}.service"
            verify = box.run(["systemd-analyze", "verify", "--man=no", unit], check=False)
            assert verify.returncode == 0, verify.stderr
            assert "Unknown key" not in verify.stderr and "Unknown section" not in verify.stderr, (
                verify.stderr
            )
            text = box.run(["cat", unit]).stdout
            before_257 = int(box.run(["systemctl", "--version"]).stdout.split()[1]) < 257
            for d in next(p for p in json.loads(out) if p["name"] == name)["directives"]:
                if d["value"].startswith("@") or d["key"] in USERNS_TRANSLATED:
                    continue
                if before_257 and (d["key"], d["value"]) in NEWER_THAN_252:
                    assert f"{d['key']}={d['value']}" not in text  # left out: unknown to this systemd
                    continue
                value = d["value"]
                if d["key"] in ROOT_RELATIVE:  # paths of the sandbox's root, as systemd must be told
                    value = " ".join(inside_root(p) for p in value.split())
                assert f"{d['key']}={value}" in text
            # what the launcher takes over: its own entry set on the host, the service's set inside
            assert f"User=sb-{sb}\n" in text
            ambient = next(line for line in text.splitlines() if line.startswith("AmbientCapabilities="))
            assert {"CAP_SETGID", "CAP_SETUID"} <= set(ambient.split("=", 1)[1].split())
            assert "PrivateUsers=" not in text
        finally:
            cli(box, "delete", sb)


def test_max_exposure_rolls_back(box: SystemdBox) -> None:
    rc, _out, err = cli(
        box,
        "create",
        "tooopen",
        "--profile",
        "trusted",
        "--max-exposure",
        "3",
        "--",
        "/usr/bin/sleep",
        "60",
        check=False,
    )
    assert rc == 13 and "max-exposure" in err
    assert box.run(["test", "-e", f"{BASE}/tooopen"], check=False).returncode != 0
    assert box.run(["test", "-e", f"{UNIT_DIR}/sandbox-tooopen.service"], check=False).returncode != 0
    assert show(box, "sandbox-tooopen.service", "LoadState") == "not-found"


def test_every_sandbox_runs_in_a_private_id_range(box: SystemdBox) -> None:
    cli(box, "create", "userns", "--now", "--", "/usr/bin/sleep", "300")
    cli(box, "create", "userns2", "--now", "--", "/usr/bin/sleep", "300")
    try:
        maps = []
        for name in ("userns", "userns2"):
            pid = show(box, f"sandbox-{name}.service", "MainPID")
            inside = box.run(["readlink", f"/proc/{pid}/ns/user"]).stdout.strip()
            assert inside != box.run(["readlink", "/proc/1/ns/user"]).stdout.strip()
            inner, outer, count = box.run(["cat", f"/proc/{pid}/uid_map"]).stdout.split()
            assert (inner, count) == ("0", "65536") and int(outer) >= 2**30
            # the service is the sandbox's root inside, an unprivileged host ID outside
            status = box.run(["cat", f"/proc/{pid}/status"]).stdout
            assert f"Uid:\t{outer}\t{outer}\t{outer}\t{outer}" in status
            assert box.run(["ps", "-o", "user=", "-p", pid]).stdout.strip() == f"sb-{name}"
            maps.append(int(outer))
        assert abs(maps[0] - maps[1]) >= 65536  # no two sandboxes share an ID
    finally:
        cli(box, "delete", "userns", "userns2")
    assert "sb-userns" not in box.run(["cat", "/etc/passwd"]).stdout


def test_private_users_flag_without_user_namespace(box: SystemdBox) -> None:
    """--no-user-namespace runs the sandbox's root as the host's: systemd's PrivateUsers= is what is left."""
    cli(
        box,
        "create",
        "plainns",
        "--no-user-namespace",
        "--private-users",
        "--now",
        "--",
        "/usr/bin/sleep",
        "300",
    )
    try:
        text = box.run(["cat", f"{UNIT_DIR}/sandbox-plainns.service"]).stdout
        assert "PrivateUsers=yes" in text and "User=" not in text
        pid = show(box, "sandbox-plainns.service", "MainPID")
        # only root (and nobody) are mapped: uid 0 inside is the host's
        assert box.run(["cat", f"/proc/{pid}/uid_map"]).stdout.split()[:3] == ["0", "0", "1"]
    finally:
        cli(box, "delete", "plainns")


def test_a_sandbox_made_before_id_ranges_says_so_and_its_clone_gets_a_range(box: SystemdBox) -> None:
    """The first release wrote specs with neither ``user_namespace`` nor ``id_base``: such a sandbox runs
    as the host's root, `status` says so and how to move it, and `clone` gives the copy a range of its own
    with every file moved into it."""
    cli(box, "create", "legacy", "--no-user-namespace", "--", "/usr/bin/sleep", "300")
    try:
        spec = f"{BASE}/legacy/sandbox.yaml"
        text = box.run(["cat", spec]).stdout
        box.write_file(spec, "".join(ln for ln in text.splitlines(True) if "user_namespace" not in ln))
        old = json.loads(cli(box, "status", "legacy", "--json")[1])
        assert old["isolation"] == "host-root-before-ranges", old
        assert "sandbox-service clone legacy NEW" in cli(box, "status", "legacy")[1]
        assert box.run(["stat", "-c", "%u", f"{BASE}/legacy/root/etc/passwd"]).stdout.strip() == "0"

        cli(box, "clone", "legacy", "moved")
        cli(box, "start", "moved")
        new = json.loads(cli(box, "status", "moved", "--json")[1])
        assert new["isolation"] == "user-namespace", new
        base = int(new["isolation_detail"].split("host IDs ")[1].split("-")[0])
        owner = box.run(["stat", "-c", "%u", f"{BASE}/moved/root/etc/passwd"]).stdout.strip()
        assert owner == str(base)
        pid = show(box, "sandbox-moved.service", "MainPID")
        assert f"Uid:\t{base}\t" in box.run(["cat", f"/proc/{pid}/status"]).stdout
        assert box.run(["cat", f"/proc/{pid}/uid_map"]).stdout.split()[:3] == ["0", str(base), "65536"]
    finally:
        cli(box, "delete", "legacy", "moved", check=False)
