"""The tool as users install it, wrapping nginx in a real systemd (a box of its own per kind of install,
so that what one installs never leaks into the other tests): the wheel pip installs into a fresh
virtualenv outside the checkout, the RPM's file layout, and the Debian package installed with dpkg,
with its debhelper add-on building a service package whose sandbox dpkg creates, upgrades, removes
and purges, online and offline.

Nothing here imports the checkout: each run is the installed entry point, from /, with no PYTHONPATH
pointing at the source tree, and each checks where its code and data came from.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.box import STATE_PARENT, STATE_PREFIX, SystemdBox
from tests.packagebuild import VERSION, Debs, Rpms, Wheel
from tests.sandboxcli import BASE, UNIT_DIR, reloads, show

pytestmark = pytest.mark.box

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
PROBE = (
    "import sandbox_service, sandbox_service.resources as r; "
    "print(sandbox_service.__file__); print(r.data_root())"
)


def fresh_box(kind: str) -> SystemdBox:
    if os.geteuid() != 0:
        pytest.skip("the systemd box needs root")
    return SystemdBox(STATE_PARENT / f"{STATE_PREFIX}{os.getpid()}-install-{kind}")


def put(box: SystemdBox, files: Sequence[Path], directory: str) -> list[str]:
    """Copy host files into the box; their paths inside."""
    target = box.path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, target / f.name)
    return [f"{directory}/{f.name}" for f in files]


def exists(box: SystemdBox, path: str) -> bool:
    return box.run(["test", "-e", path], check=False).returncode == 0


def where(box: SystemdBox, python: str, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(the package's __init__.py, the data root) as the installed tool sees them."""
    module, data = box.run([python, "-c", PROBE], env=env).stdout.split()
    return module, data


def wrap_nginx(box: SystemdBox, tool: Sequence[str], name: str, env: Mapping[str, str] | None = None) -> None:
    """create, start, a page fetched inside the sandbox's network namespace, delete."""
    service = f"sandbox-{name}.service"
    box.run([*tool, "create", name, "--unit", "nginx.service", "--memory", "256M"], env=env)
    page = f"installed page {uuid.uuid4()}"
    box.run(["mkdir", "-p", f"{BASE}/{name}/root/var/www/html"])
    box.run(["tee", f"{BASE}/{name}/root/var/www/html/index.html"], input=page + "\n")
    box.run([*tool, "start", name], env=env)
    assert show(box, service, "ActiveState") == "active"
    pid = int(show(box, service, "MainPID"))
    got = box.run_in_netns_of(pid, ["curl", "-sS", "--max-time", "5", "http://127.0.0.1/"]).stdout
    assert got.strip() == page
    status = box.run([*tool, "status", name], env=env).stdout
    assert "active" in status
    box.run([*tool, "delete", name], env=env)
    assert show(box, service, "LoadState") == "not-found"
    assert not exists(box, f"{BASE}/{name}")
    assert not exists(box, f"{UNIT_DIR}/{service}")


# -- pip: the wheel in a fresh virtualenv ------------------------------------------------------------


def test_wheel_in_a_fresh_virtualenv(wheel: Wheel) -> None:
    """pip install of the built wheel (from the source distribution, as python -m build makes it) into
    a new virtualenv at /opt/venv: --system-site-packages for python3-selinux, and so the dependencies
    are the system's (the box has no network; --no-index proves nothing is fetched)."""
    names = wheel.names()
    assert "sandbox_service/data/templates/service.j2" in names
    assert not any(n.startswith(("templates/", "profiles/", "unitfiles/")) for n in names)
    with fresh_box("wheel") as box:
        (whl,) = put(box, [wheel.path], "/opt/wheelhouse")
        box.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", "/opt/venv"])
        box.run(
            [
                "/opt/venv/bin/pip",
                "install",
                "--no-index",
                "--no-cache-dir",
                "--disable-pip-version-check",
                whl,
            ]
        )
        site = f"/opt/venv/lib/{PY}/site-packages"
        assert where(box, "/opt/venv/bin/python") == (
            f"{site}/sandbox_service/__init__.py",
            f"{site}/sandbox_service/data",
        )
        assert (
            box.run(["/opt/venv/bin/sandbox-service", "--version"]).stdout.strip()
            == f"sandbox-service {VERSION}"
        )
        wrap_nginx(box, ["/opt/venv/bin/sandbox-service"], "wheelweb")
        # the data is the package's own, even where a stray copy lies in /usr/share
        box.write_file("/usr/share/sandbox-service/profiles/stray.conf", "NoNewPrivileges=yes\n")
        listed = box.run(["/opt/venv/bin/sandbox-service", "profiles"]).stdout
        assert "stray" not in listed and f"{site}/sandbox_service/data/profiles/default.conf" in listed


# -- the RPM's layout --------------------------------------------------------------------------------


def test_rpm_file_layout(rpms: Rpms) -> None:
    """The RPM's files unpacked onto the box's root (rpm2archive | tar): the package under
    /usr/lib/python3.X/site-packages, its data in /usr/share/sandbox-service.  Debian's python3 does not
    read site-packages, so PYTHONPATH names it; nothing else is helped along."""
    with fresh_box("rpm") as box:
        (rpm,) = put(box, [rpms.main], "/opt/rpm")
        box.run(["sh", "-c", f"rpm2archive - <{rpm} | tar -xzf - -C /"])
        site = f"/usr/lib/{PY}/site-packages"
        env = {"PYTHONPATH": site}
        assert where(box, "/usr/bin/python3", env) == (
            f"{site}/sandbox_service/__init__.py",
            "/usr/share/sandbox-service",
        )
        assert not exists(box, f"{site}/sandbox_service/data")
        wrap_nginx(box, ["/usr/bin/sandbox-service"], "rpmweb", env)


# -- the Debian packages -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deb_box(debs: Debs) -> Iterator[SystemdBox]:
    """A box with sandbox-service and dh-sandbox-service installed by dpkg (their dependencies come
    with the image: scripts/install-deps.sh installs them on the host)."""
    with fresh_box("deb") as box:
        main, helper = put(box, [debs.main, debs.helper], "/opt/debs")
        box.run(["dpkg", "-i", main, helper])
        yield box


def test_deb_installs_and_wraps_nginx(deb_box: SystemdBox) -> None:
    box = deb_box
    assert (
        box.run(["dpkg-query", "-W", "-f", "${Status}", "sandbox-service"]).stdout == "install ok installed"
    )
    assert where(box, "/usr/bin/python3") == (
        "/usr/lib/python3/dist-packages/sandbox_service/__init__.py",
        "/usr/share/sandbox-service",
    )
    assert box.run(["systemctl", "show", "-P", "LoadState", "sandbox.target"]).stdout.strip() == "loaded"
    wrap_nginx(box, ["sandbox-service"], "debweb")


DEMO = "sandbox-demo"


def build_demo(box: SystemdBox, version: str) -> str:
    """A service package made with dh and dh-sequence-sandbox-service: it ships nothing but the
    sandbox "demoweb" wrapping nginx.service (of the nginx package it depends on)."""
    src = f"/opt/demo/{DEMO}-{version}"
    files = {
        "debian/control": f"Source: {DEMO}\nSection: misc\nPriority: optional\n"
        "Maintainer: T <t@example.org>\n"
        "Build-Depends: debhelper-compat (= 13), dh-sequence-sandbox-service\n\n"
        f"Package: {DEMO}\nArchitecture: all\nDepends: ${{misc:Depends}}, nginx-light | nginx\n"
        "Description: nginx in a sandbox\n nginx in a sandbox\n",
        "debian/changelog": f"{DEMO} ({version}) unstable; urgency=medium\n\n  * demo\n\n"
        " -- T <t@example.org>  Sun, 29 Nov 2026 12:00:00 +0000\n",
        "debian/rules": "#!/usr/bin/make -f\n%:\n\tdh $@\n",
        "debian/source/format": "3.0 (native)\n",
        f"debian/{DEMO}.sandbox-service": "# the sandbox, started where systemd runs\n"
        "demoweb nginx.service --memory 256M --now\n",
    }
    for path, text in files.items():
        box.write_file(f"{src}/{path}", text, mode=0o755 if path == "debian/rules" else 0o644)
    box.run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src)
    return f"/opt/demo/{DEMO}_{version}_all.deb"


@pytest.fixture(scope="module")
def demo(deb_box: SystemdBox) -> tuple[str, str]:
    return build_demo(deb_box, "1.0"), build_demo(deb_box, "2.0")


def serves(box: SystemdBox, name: str) -> bool:
    page = f"demo page {uuid.uuid4()}"
    box.run(["mkdir", "-p", f"{BASE}/{name}/root/var/www/html"])
    box.run(["tee", f"{BASE}/{name}/root/var/www/html/index.html"], input=page + "\n")
    pid = show(box, f"sandbox-{name}.service", "MainPID")
    got = box.run_in_netns_of(int(pid), ["curl", "-sS", "--max-time", "5", "http://127.0.0.1/"]).stdout
    return got.strip() == page


def dpkg(box: SystemdBox, *args: str, offline: bool = False) -> str:
    """dpkg in the box; offline, systemd is hidden from it (an empty tmpfs on /run/systemd, so there is
    no /run/systemd/system, in a mount namespace of its own), as in an image build or a chroot: the
    tool then writes files only."""
    argv = ["dpkg", *args]
    if offline:
        argv = [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount -t tmpfs none /run/systemd && exec "$@"',
            "sh",
            *argv,
        ]
    done = box.run(argv)
    assert "internal error" not in done.stderr and "sandbox-service: error" not in done.stderr, done.stderr
    return done.stdout + done.stderr


def test_dh_helper_online(deb_box: SystemdBox, demo: tuple[str, str]) -> None:
    box, (v1, v2) = deb_box, demo
    service = "sandbox-demoweb.service"
    depends = box.run(["dpkg-deb", "-f", v1, "Depends"]).stdout
    assert "sandbox-service" in depends

    dpkg(box, "-i", v1)  # install: created and started (--now), the host's nginx left alone
    assert show(box, service, "ActiveState") == "active"
    assert show(box, "nginx.service", "ActiveState") == "inactive"
    assert serves(box, "demoweb")
    first = show(box, service, "InvocationID")

    dpkg(box, "-i", v2)  # upgrade: re-rendered and restarted
    assert show(box, service, "ActiveState") == "active"
    assert show(box, service, "InvocationID") != first
    assert serves(box, "demoweb")

    dpkg(box, "-r", DEMO)  # remove: stopped, units gone, data kept
    assert show(box, service, "LoadState") == "not-found"
    assert not exists(box, f"{UNIT_DIR}/{service}")
    assert exists(box, f"{BASE}/demoweb/sandbox.yaml")

    dpkg(box, "-i", v1)  # reinstall: the kept sandbox is back, and started
    assert show(box, service, "ActiveState") == "active"

    dpkg(box, "-P", DEMO)  # purge: everything goes
    assert show(box, service, "LoadState") == "not-found"
    assert not exists(box, f"{BASE}/demoweb")
    assert not exists(box, f"{UNIT_DIR}/{service}")


def test_dh_helper_offline(deb_box: SystemdBox, demo: tuple[str, str]) -> None:
    box, (v1, v2) = deb_box, demo
    service = "sandbox-demoweb.service"
    unit = f"{UNIT_DIR}/{service}"
    before = reloads(box)

    dpkg(box, "-i", v1, offline=True)  # files written; systemd told nothing, nothing started
    assert exists(box, unit) and exists(box, f"{BASE}/demoweb/sandbox.yaml")
    dpkg(box, "-i", v2, offline=True)  # upgrade: re-rendered, not restarted
    assert exists(box, unit)
    assert show(box, service, "ActiveState") == "inactive"
    assert reloads(box) == before

    dpkg(box, "-r", DEMO, offline=True)
    assert not exists(box, unit) and exists(box, f"{BASE}/demoweb/sandbox.yaml")
    dpkg(box, "-P", DEMO, offline=True)
    assert not exists(box, f"{BASE}/demoweb")
    assert reloads(box) == before


def test_tool_package_removal_leaves_sandboxes(deb_box: SystemdBox) -> None:
    """Removing and purging sandbox-service itself never fails, and leaves what the administrator made."""
    box = deb_box
    box.run(["sandbox-service", "create", "keepme", "--", "/usr/bin/sleep", "600"])
    assert exists(box, "/var/cache/sandbox-service/templates")  # compiled templates kept by create
    dpkg(box, "-P", "dh-sandbox-service", "sandbox-service")
    assert not exists(box, "/usr/bin/sandbox-service")
    assert not exists(box, "/var/cache/sandbox-service")  # its caches go with the tool
    assert exists(box, f"{BASE}/keepme/sandbox.yaml") and exists(box, f"{UNIT_DIR}/sandbox-keepme.service")
