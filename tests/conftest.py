"""Shared fixtures: the repository root, and one throwaway systemd box per image and test session.

Every test that uses the ``box`` fixture (or ``box_image``) runs once per systemd the boxes boot (see
tests/box.py: ``252``, the host's root, and ``257``, the Debian 13 tree), with the version in its id:
``test_x[252]``, ``test_x[257]``.  ``--systemd=252`` or ``--systemd=257`` (or the environment variable
SANDBOX_TEST_SYSTEMD, for make) runs one of them only.  A test says what it needs of the version with
markers:

- ``@pytest.mark.systemd("257")``: runs on these versions only;
- ``@pytest.mark.xfail_systemd("257", reason=...)``: fails there, for the reason given, and must
  (a strict xfail: once it passes, the marker has to go).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.box import IMAGES, REPO, BoxImage, SystemdBox, cleanup_stale_boxes
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

SYSTEMD_ENV = "SANDBOX_TEST_SYSTEMD"
ALL = "all"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--systemd",
        choices=[*sorted(IMAGES), ALL],
        default=os.environ.get(SYSTEMD_ENV) or ALL,
        help=f"run the box tests on one systemd only (default: ${SYSTEMD_ENV}, else {ALL})",
    )


def _selected(config: pytest.Config) -> list[str]:
    chosen: str = config.getoption("--systemd")
    if chosen != ALL and chosen not in IMAGES:
        raise pytest.UsageError(f"{SYSTEMD_ENV}/--systemd: {chosen!r} is none of {[*sorted(IMAGES), ALL]}")
    return sorted(IMAGES) if chosen == ALL else [chosen]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "box_image" not in metafunc.fixturenames:
        return
    versions = _selected(metafunc.config)
    for only in metafunc.definition.iter_markers("systemd"):
        versions = [v for v in versions if v in only.args]
    params = []
    for version in versions:
        marks = [
            pytest.mark.xfail(strict=True, reason=f"on {version}: {m.kwargs['reason']}")
            for m in metafunc.definition.iter_markers("xfail_systemd")
            if version in m.args
        ]
        params.append(pytest.param(version, marks=marks, id=version))
    metafunc.parametrize("box_image", params, indirect=True, scope="session")


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (on the host; the same path inside the box)."""
    return REPO


@pytest.fixture(scope="session")
def box_image(request: pytest.FixtureRequest) -> BoxImage:
    """The image the test's boxes boot: one of tests.box.IMAGES, by the parameter the test got."""
    if os.geteuid() != 0:
        pytest.skip("the systemd box needs root (mounts, systemd-nspawn, nsenter)")
    image = IMAGES[request.param]
    why = image.missing()
    if why is not None:
        pytest.fail(why)
    return image


@pytest.fixture(scope="session")
def box(box_image: BoxImage) -> Iterator[SystemdBox]:
    """A booted systemd container on a throwaway overlay of the image, shared by the session.

    Everything a test changes inside lasts until the session ends, so tests
    clean up the units they start.  The host's /tmp is not visible inside (the
    box has its own tmpfs there); the repository is, at the same path.
    """
    cleanup_stale_boxes()
    with SystemdBox(image=box_image) as booted:
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


@pytest.fixture(scope="session", autouse=True)
def caches_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tool's caches on the running system (the dpkg owner index, compiled templates), which tests
    that render or look at the host's own packages would fill: kept in the session's temporary
    directory, not in the host's /var/cache."""
    from sandbox_service import render
    from sandbox_service.discover import dpkgdb

    saved = dpkgdb.INDEX_FILE, render.TEMPLATE_CACHE
    cache = tmp_path_factory.mktemp("cache")
    dpkgdb.INDEX_FILE, render.TEMPLATE_CACHE = cache / "dpkg-owners.sqlite", cache / "templates"
    yield
    dpkgdb.INDEX_FILE, render.TEMPLATE_CACHE = saved


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
