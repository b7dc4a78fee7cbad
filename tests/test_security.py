"""Security profiles: parsing, placeholders, capability derivation, and the systemd version table."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox_service import directives, security
from sandbox_service.errors import InvalidInput, NotFound
from sandbox_service.spec import Directive, ExecCommand, ServiceDef

NGINX_LIKE = ServiceDef(exec_start=(ExecCommand("/usr/sbin/nginx", ("/usr/sbin/nginx",)),))


NEWER = {("ProtectControlGroups", "strict"), ("BindLogSockets", "yes"), ("PrivatePIDs", "yes")}


@pytest.mark.parametrize("name", ["default", "strict", "trusted", "nonetwork"])
def test_shipped_profiles_use_only_known_directives(name: str) -> None:
    profile = security.load_profile(name, Path("/nonexistent"))
    for d in profile.directives:
        assert directives.known(d.key), d
    assert security.resolve(profile, NGINX_LIKE, 257).dropped == ()
    # on the oldest systemd we support only what systemd 257 added is left out, each with what stands in:
    # ProtectControlGroups=yes before =strict, the log sockets bound by the tool, no PID namespace
    old = security.resolve(profile, NGINX_LIKE, 252)
    assert {(d.key, d.value) for d in old.dropped} <= NEWER
    if any(d.key == "ProtectControlGroups" for d in old.dropped):
        assert ("ProtectControlGroups", "yes") in {(d.key, d.value) for d in old.directives}


def test_placeholders_resolve_against_the_wrapped_service() -> None:
    profile = security.load_profile("default", Path("/nonexistent"))
    root_daemon = dict((d.key, d.value) for d in security.resolve(profile, NGINX_LIKE, 252).directives)
    assert set(root_daemon["CapabilityBoundingSet"].split()) == set(security.ROOT_DAEMON_CAPS)
    assert root_daemon["RestrictAddressFamilies"] == security.SERVICE_FAMILIES
    as_user = ServiceDef(
        exec_start=NGINX_LIKE.exec_start, user="www-data", ambient_capabilities=("CAP_NET_BIND_SERVICE",)
    )
    got = dict((d.key, d.value) for d in security.resolve(profile, as_user, 252).directives)
    assert got["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    own = ServiceDef(exec_start=NGINX_LIKE.exec_start, capability_bounding_set=("CAP_NET_RAW",))
    got = dict((d.key, d.value) for d in security.resolve(profile, own, 252).directives)
    assert got["CapabilityBoundingSet"] == "CAP_NET_RAW"


def test_flags_override_the_profile() -> None:
    profile = security.load_profile("strict", Path("/nonexistent"))
    got = security.resolve(profile, NGINX_LIKE, 252, memory_deny_write_execute=False, private_users=True)
    keys = [(d.key, d.value) for d in got.directives]
    # switched off by the flag: left out (systemd's default), never written as "=no"
    assert not any(k == "MemoryDenyWriteExecute" for k, _v in keys)
    assert keys.count(("PrivateUsers", "yes")) == 1


def test_directives_newer_than_systemd_are_dropped_and_reported(tmp_path: Path) -> None:
    (tmp_path / "new.conf").write_text("PrivatePIDs=yes\nProtectHostname=private\nNoNewPrivileges=yes\n")
    profile = security.load_profile("new", tmp_path)
    old = security.resolve(profile, NGINX_LIKE, 252)
    assert old.directives == (Directive("NoNewPrivileges", "yes"),)
    assert {d.key for d in old.dropped} == {"PrivatePIDs", "ProtectHostname"}
    assert security.resolve(profile, NGINX_LIKE, 257).dropped == ()


def test_admin_profiles_and_bad_profiles(tmp_path: Path) -> None:
    (tmp_path / "mine.conf").write_text("# comment\nNoNewPrivileges=yes\n")
    assert security.load_profile("mine", tmp_path).directives == (
        security.ProfileLine("NoNewPrivileges", "yes"),
    )
    (tmp_path / "typo.conf").write_text("NoNewPrivilege=yes\n")
    with pytest.raises(InvalidInput, match=r"typo\.conf:1"):
        security.load_profile("typo", tmp_path)
    with pytest.raises(NotFound):
        security.load_profile("nope", tmp_path)
    with pytest.raises(InvalidInput):
        security.load_profile("../etc/passwd", tmp_path)


def test_capability_masks() -> None:
    assert security.caps_from_mask(1 << 10 | 1 << 21) == ("CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN")
    assert len(security.caps_from_mask(security.ALL_CAPS_MASK)) == len(security.CAPABILITIES)


def test_the_launcher_numbers_capabilities_as_the_tool_does() -> None:
    """launcher.py stands alone (it is copied into each root), so it keeps its own copy of the table."""
    from sandbox_service import launcher

    assert launcher.CAPABILITIES == security.CAPABILITIES


@pytest.mark.parametrize(
    "kill_mode, version, private_pids",
    [
        ("mixed", 257, False),
        ("process", 257, False),
        ("control-group", 257, True),
        (None, 257, True),
        ("mixed", directives.PRIVATE_PIDS_MAIN_IS_CHILD, True),
    ],
)
def test_pid_namespace_only_where_the_stop_stays_clean(
    kill_mode: str | None, version: int, private_pids: bool
) -> None:
    """Before systemd 258 a unit that stops its main process alone would lose its clean stop in a PID
    namespace (systemd could send SIGKILL right after SIGTERM): PrivatePIDs= is left out, with the reason."""
    profile = security.load_profile("default", Path("/nonexistent"))
    service = ServiceDef(exec_start=NGINX_LIKE.exec_start, kill_mode=kill_mode)
    got = security.resolve(profile, service, version)
    assert any(d.key == "PrivatePIDs" for d in got.directives) == private_pids
    reasons = [why for d, why in got.left_out if d.key == "PrivatePIDs"]
    assert bool(reasons) != private_pids
    if reasons:
        assert f"KillMode={kill_mode}" in reasons[0] and "SIGKILL" in reasons[0]
