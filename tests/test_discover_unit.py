"""Translating what systemd parsed for a host unit into the sandbox's ServiceDef (pure code)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sandbox_service.discover.unit import service_def_from_settings, unit_name_for, usec_to_timespan
from sandbox_service.discover.unitfile import permissions_start_only
from sandbox_service.errors import InvalidInput, NotWrappable
from sandbox_service.spec import ExecFlag, ServiceType
from sandbox_service.systemd import RawExec, UnitSettings

NGINX = UnitSettings(
    id="nginx.service",
    names=("nginx.service",),
    load_state="loaded",
    fragment_path="/lib/systemd/system/nginx.service",
    dropin_paths=(),
    description="nginx",
    type="forking",
    exec_start_pre=(RawExec("/usr/sbin/nginx", ("/usr/sbin/nginx", "-t"), ()),),
    exec_start=(RawExec("/usr/sbin/nginx", ("/usr/sbin/nginx", "-g", "daemon on;"), ()),),
    exec_start_post=(),
    exec_reload=(),
    exec_stop=(
        RawExec("/sbin/start-stop-daemon", ("/sbin/start-stop-daemon", "--stop"), ("ignore-failure",)),
    ),
    exec_stop_post=(),
    pid_file="/run/nginx.pid",
    user="",
    group="",
    supplementary_groups=(),
    environment=("A=1", "B=x=y"),
    environment_files=(("/etc/default/nginx", True),),
    working_directory="",
    umask=0o22,
    kill_mode="mixed",
    kill_signal=15,
    timeout_start_usec=90_000_000,
    timeout_stop_usec=5_000_000,
    restart="no",
    restart_usec=100_000,
    remain_after_exit=False,
    state_directories=("nginx",),
    runtime_directories=(),
    logs_directories=(),
    cache_directories=(),
    configuration_directories=(),
    read_write_paths=(),
    dynamic_user=False,
    root_directory="",
    root_image="",
    bus_name="",
    capability_bounding_set=2**64 - 1,
    ambient_capabilities=0,
)


def test_nginx_translates() -> None:
    svc = service_def_from_settings(NGINX)
    assert svc.type is ServiceType.FORKING
    assert svc.exec_start[0].argv == ("/usr/sbin/nginx", "-g", "daemon on;")
    assert svc.exec_start[0].expand_env
    assert svc.exec_stop[0].flags == (ExecFlag.IGNORE_FAILURE,)
    assert svc.pid_file == "/run/nginx.pid"
    assert [(e.name, e.value) for e in svc.environment] == [("A", "1"), ("B", "x=y")]
    assert svc.kill_signal == "SIGTERM"
    assert (svc.timeout_start_sec, svc.timeout_stop_sec, svc.restart_sec) == ("90s", "5s", "100ms")
    assert svc.umask == "0022"
    assert svc.environment_files[0].optional


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"dynamic_user": True}, "DynamicUser"),
        ({"root_directory": "/srv/x"}, "own root"),
        ({"type": "dbus"}, "system bus"),
        ({"exec_start": ()}, "no ExecStart"),
    ],
)
def test_unwrappable_units_are_refused_with_a_reason(change: dict[str, object], reason: str) -> None:
    with pytest.raises(NotWrappable, match=reason):
        service_def_from_settings(dataclasses.replace(NGINX, **change))  # type: ignore[arg-type]


def test_privileged_prefix_runs_inside_as_the_sandboxs_root() -> None:
    """'+' would run a command outside the unit's sandboxing: it is kept as a flag that puts the command
    inside the sandbox as its root (launcher --privileged), and '!!' (no effect where the kernel has
    ambient capabilities) as no prefix at all."""
    svc = service_def_from_settings(
        dataclasses.replace(
            NGINX,
            exec_start_pre=(
                RawExec("/bin/x", ("/bin/x",), ("privileged",)),
                RawExec("/bin/y", ("/bin/y",), ("ambient",)),
            ),
        )
    )
    assert [c.flags for c in svc.exec_start_pre] == [(ExecFlag.PRIVILEGED,), ()]


def test_permissions_start_only_privileges_every_command_but_exec_start() -> None:
    svc = service_def_from_settings(dataclasses.replace(NGINX, permissions_start_only=True))
    assert svc.exec_start[0].flags == ()
    assert [c.flags for c in svc.exec_start_pre] == [(ExecFlag.PRIVILEGED,)]
    assert set(svc.exec_stop[0].flags) == {ExecFlag.IGNORE_FAILURE, ExecFlag.PRIVILEGED}


def test_permissions_start_only_is_read_from_the_files_in_order(tmp_path: Path) -> None:
    """systemd reports it over no D-Bus property: the fragment, then its drop-ins, decide."""
    fragment, dropin = tmp_path / "x.service", tmp_path / "override.conf"
    fragment.write_text("[Service]\nPermissionsStartOnly=true\nExecStart=/bin/true\n")
    dropin.write_text("[Service]\nPermissionsStartOnly=no\n")
    assert permissions_start_only((str(fragment),))
    assert not permissions_start_only((str(fragment), str(dropin)))
    assert not permissions_start_only((str(tmp_path / "missing.service"),))


def test_unit_names() -> None:
    assert unit_name_for("httpd") == "httpd.service"
    assert unit_name_for("nginx.service") == "nginx.service"
    assert unit_name_for("getty@tty1.service") == "getty@tty1.service"
    with pytest.raises(NotWrappable, match="template"):
        unit_name_for("getty@.service")
    with pytest.raises(NotWrappable, match="not a service"):
        unit_name_for("sshd.socket")
    with pytest.raises(InvalidInput):
        unit_name_for("../etc/passwd")


def test_timespans_are_exact() -> None:
    assert usec_to_timespan(2**64 - 1) == "infinity"
    assert usec_to_timespan(1_500_000) == "1500ms"
    assert usec_to_timespan(7) == "7us"
    assert usec_to_timespan(0) == "0"
