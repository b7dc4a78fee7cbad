"""Shared fixtures: the repository root, and one throwaway systemd box per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.box import SystemdBox, cleanup_stale_boxes, hidden_in_box
from tests.packagebuild import (
    Debs,
    Rpms,
    Wheel,
    build_debs,
    build_rpms,
    build_wheel,
    deb_missing_tools,
    rpm_missing_tools,
    wheel_missing_tools,
)
from tests.sandboxcli import remove_sandboxes

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (on the host; the same path inside the box)."""
    return REPO


@pytest.fixture(scope="session")
def box() -> Iterator[SystemdBox]:
    """A booted systemd container on a throwaway overlay of the host root, shared by the session.

    Everything a test changes inside lasts until the session ends, so tests
    clean up the units they start.  The host's /tmp is not visible inside (the
    box has its own tmpfs there); the repository is, at the same path.
    """
    if os.geteuid() != 0:
        pytest.skip("the systemd box needs root (mounts, systemd-nspawn, nsenter)")
    cleanup_stale_boxes()
    # A checkout under /tmp would be hidden by the box's own /tmp: pass it in.
    binds = [REPO] if hidden_in_box(REPO) else []
    with SystemdBox(read_only_binds=binds) as booted:
        yield booted


def _host_sandbox_traces() -> set[str]:
    base = Path("/var/lib/sandbox-service")
    units = Path("/etc/systemd/system")
    found = {str(p) for p in base.iterdir()} if base.is_dir() else set()
    found |= {str(p) for p in units.glob("sandbox*")} if units.is_dir() else set()
    return found


@pytest.fixture(scope="session", autouse=True)
def host_stays_untouched() -> Iterator[None]:
    """Tests run the tool inside the box or against --root trees; none may leave a sandbox on the host."""
    before = _host_sandbox_traces()
    yield
    leaked = _host_sandbox_traces() - before
    assert not leaked, f"tests left sandbox files on the host: {sorted(leaked)}"


@pytest.fixture()
def cleanup(box: SystemdBox) -> Iterator[list[str]]:
    """Sandboxes named here are removed after the test, whatever happened."""
    names: list[str] = []
    yield names
    remove_sandboxes(box, names)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    """The wheel (and source distribution) of this tree, built once per session."""
    why = wheel_missing_tools()
    if why:
        pytest.skip(why)
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> Rpms:
    """The RPMs (make rpm), built once per session."""
    why = rpm_missing_tools()
    if why:
        pytest.skip(why)
    return build_rpms(tmp_path_factory.mktemp("rpm"))


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Debs:
    """The Debian packages (make deb, lintian included), built once per session."""
    why = deb_missing_tools()
    if why:
        pytest.skip(why)
    return build_debs(tmp_path_factory.mktemp("deb"))
