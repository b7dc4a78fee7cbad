"""The RPM: built once per session from the `make dist` tarball (packaging/build-rpm.sh, what `make rpm`
runs, into a temporary directory), then inspected with rpm -qlp / rpm -qp --scripts, and installed into
and erased from a scratch root with a static busybox as its only shell, so the scriptlets run in a real
rpm transaction (chrooted, no systemd, no SELinux tools) without touching this machine.

Needs rpmbuild (Debian package rpm), the SELinux development Makefile (selinux-policy-dev), and the
system Python's pip, setuptools and wheel (scripts/install-deps.sh installs them all).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from tests.packagebuild import Rpms

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "packaging" / "sandbox-service.spec"
MACROS = REPO / "packaging" / "macros.sandbox-service"
BUILD = REPO / "packaging" / "build-rpm.sh"
DEVEL_MAKEFILE = Path("/usr/share/selinux/devel/Makefile")
BUSYBOX = Path("/bin/busybox")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
DATA = PYPROJECT["tool"]["sandbox-service"]["data"]
SITELIB = f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
DATADIR = "/usr/share/sandbox-service"
POLICY = "/usr/share/selinux/packages/sandbox_service.pp"


@pytest.fixture(scope="session")
def built(rpms: Rpms) -> Rpms:
    """The packages, built once per session (tests/packagebuild.py, the fixture in conftest.py)."""
    return rpms


def rpm(*args: str) -> str:
    done = subprocess.run(["rpm", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"rpm {' '.join(args)}: {done.stderr}"
    return done.stdout


def listing(package: Path) -> set[str]:
    return set(rpm("-qlp", str(package)).split())


def repo_files(*patterns: str) -> list[Path]:
    return sorted(p for pattern in patterns for p in REPO.glob(pattern) if p.is_file())


# -- the spec and the tarball -----------------------------------------------------------------------


def test_spec_version_is_pyproject_version() -> None:
    if shutil.which("rpmspec") is None:
        pytest.skip("rpmspec missing (apt install rpm)")
    out = subprocess.run(
        ["rpmspec", "-q", "--srpm", "--qf", "%{VERSION}\n", str(SPEC)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == [VERSION]


def test_tarball_is_the_source_tree(built: Rpms) -> None:
    top = f"sandbox-service-{VERSION}"
    with tarfile.open(built.tarball) as tar:
        names = set(tar.getnames())
        owners = {(m.uid, m.gid) for m in tar.getmembers()}
    assert all(n.startswith(top + "/") for n in names)
    for needed in (
        "pyproject.toml",
        "setup.py",
        "MANIFEST.in",
        "packaging/sandbox-service.spec",
        "packaging/debian/rules",
        "packaging/macros.sandbox-service",
        "sandbox_service/cli.py",
        "selinux/sandbox_service.te",
        "unitfiles/sandbox.target",
    ):
        assert f"{top}/{needed}" in names
    for junk in (".venv/", "__pycache__/", ".git/", "dist/", ".mypy_cache/", ".egg-info/"):
        assert not any(junk in n for n in names), junk
    assert owners == {(0, 0)}


def test_dist_is_reproducible(built: Rpms, tmp_path: Path) -> None:
    again = subprocess.run(
        ["bash", str(REPO / "scripts" / "make-dist.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(again).read_bytes() == built.tarball.read_bytes()


# -- what the package holds -------------------------------------------------------------------------


def test_files_are_in_standard_places(built: Rpms) -> None:
    files = listing(built.main)
    expected = {
        "/usr/bin/sandbox-service",
        f"{SITELIB}/sandbox_service/cli.py",
        f"{SITELIB}/sandbox_service-{VERSION}.dist-info/METADATA",
        "/usr/lib/systemd/system/sandbox.slice",
        "/usr/lib/systemd/system/sandbox.target",
        "/usr/share/bash-completion/completions/sandbox-service",
        "/usr/share/zsh/site-functions/_sandbox-service",
        "/usr/share/fish/vendor_completions.d/sandbox-service.fish",
        POLICY,
        "/var/lib/sandbox-service",
        f"{DATADIR}/profiles",
    }
    expected |= {f"/usr/share/man/man{p.suffix[1:]}/{p.name}.gz" for p in repo_files("man/*.[1-8]")}
    for sub in DATA:
        expected |= {f"{DATADIR}/{p.relative_to(REPO)}" for p in repo_files(sub, f"{sub}/**/*")}
    assert expected - files == set()
    # the data is in one place only: moved out of the Python package, not copied
    assert not any(f.startswith(f"{SITELIB}/sandbox_service/data") for f in files)
    assert not any(f.startswith(("/usr/local", "/etc/systemd")) for f in files), files


def test_every_module_is_packaged(built: Rpms) -> None:
    files = listing(built.main)
    modules = {f"{SITELIB}/{p.relative_to(REPO)}" for p in repo_files("sandbox_service/**/*.py")}
    assert modules - files == set(), "pyproject.toml must list every package under sandbox_service/"


def test_macros_package(built: Rpms) -> None:
    assert listing(built.macros) == {"/usr/lib/rpm/macros.d/macros.sandbox-service"}


def test_scriptlets_are_guarded(built: Rpms) -> None:
    scripts = rpm("-qp", "--scripts", str(built.main))
    post = scripts.split("postinstall scriptlet")[1].split("postuninstall scriptlet")[0]
    postun = scripts.split("postuninstall scriptlet")[1]
    assert "[ -x /usr/sbin/semodule ] && [ -e /etc/selinux/config ]" in post
    assert f"semodule -n -X 200 -i {POLICY} || :" in post
    assert "[ -x /usr/sbin/selinuxenabled ] && /usr/sbin/selinuxenabled" in post
    assert '[ "$1" -eq 0 ] && [ -x /usr/sbin/semodule ]' in postun
    assert "semodule -n -X 200 -r sandbox_service" in postun
    for body in (post, postun):
        lines = [ln.strip() for ln in body.strip().splitlines() if ln.strip()]
        assert lines[-1] == ":"  # whatever happened before, the scriptlet exits 0
        commands = [ln for ln in lines if ln.startswith("/usr/sbin/")]
        assert commands and all(c.endswith("|| :") for c in commands), commands


# -- a real transaction in a scratch root -----------------------------------------------------------


def scratch_root(base: Path) -> Path:
    """A root with nothing but a static busybox as /bin/sh, /dev/null and an empty rpm database."""
    root = base / "root"
    for d in ("bin", "dev", "usr/sbin", "etc", "tmp", "var/tmp"):
        (root / d).mkdir(parents=True)
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    (root / "bin/sh").symlink_to("busybox")
    rpm("--root", str(root), "--dbpath", "/var/lib/rpm", "--initdb")
    return root


def fake(root: Path, path: str, status: int) -> None:
    """A program in the scratch root that logs its command line to /calls and exits with `status`."""
    p = root / path.lstrip("/")
    p.write_text(f'#!/bin/sh\necho "$0 $*" >>/calls\nexit {status}\n')
    p.chmod(0o755)


def transaction(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", *args],
        capture_output=True,
        text=True,
        check=False,
    )


needs_root_and_busybox = pytest.mark.skipif(
    os.geteuid() != 0 or not BUSYBOX.exists(),
    reason="installing into a scratch root needs root (chroot) and /bin/busybox (apt install busybox-static)",
)


@needs_root_and_busybox
def test_install_and_erase_without_selinux(built: Rpms, tmp_path: Path) -> None:
    root = scratch_root(tmp_path)
    done = transaction(root, "-i", "--nodeps", str(built.main))
    assert done.returncode == 0, done.stderr
    for path in ("usr/bin/sandbox-service", POLICY, f"{DATADIR}/templates/service.j2"):
        assert (root / path.lstrip("/")).is_file(), path
    assert (root / "var/lib/sandbox-service").is_dir()
    done = transaction(root, "-e", "sandbox-service")
    assert done.returncode == 0, done.stderr
    assert not (root / "usr/bin/sandbox-service").exists()


@needs_root_and_busybox
@pytest.mark.parametrize("status", [0, 1])
def test_policy_module_scriptlets(built: Rpms, tmp_path: Path, status: int) -> None:
    """With SELinux set up and enabled the module is installed, loaded and removed; when every SELinux
    tool fails, the transaction still succeeds."""
    root = scratch_root(tmp_path)
    (root / "etc/selinux").mkdir()
    (root / "etc/selinux/config").write_text("SELINUX=enforcing\nSELINUXTYPE=default\n")
    for tool in ("semodule", "load_policy", "restorecon"):
        fake(root, f"/usr/sbin/{tool}", status)
    fake(root, "/usr/sbin/selinuxenabled", 0)

    assert transaction(root, "-i", "--nodeps", str(built.main)).returncode == 0
    calls = (root / "calls").read_text().splitlines()
    assert calls == [
        "/usr/sbin/semodule -n -X 200 -i /usr/share/selinux/packages/sandbox_service.pp",
        "/usr/sbin/selinuxenabled ",
        "/usr/sbin/load_policy ",
        "/usr/sbin/restorecon -R /var/lib/sandbox-service",
    ]
    (root / "calls").unlink()
    assert transaction(root, "-e", "sandbox-service").returncode == 0
    assert (root / "calls").read_text().splitlines() == [
        "/usr/sbin/semodule -n -X 200 -r sandbox_service",
        "/usr/sbin/selinuxenabled ",
        "/usr/sbin/load_policy ",
    ]


@needs_root_and_busybox
def test_packaged_tool_imports_and_finds_its_data(built: Rpms, tmp_path: Path) -> None:
    """The installed files work together: every module imports (the dependencies come from this test's
    Python) and the data is found in /usr/share/sandbox-service (here: under the scratch root)."""
    root = scratch_root(tmp_path)
    assert transaction(root, "-i", "--nodeps", "--noscripts", str(built.main)).returncode == 0
    entry = (root / "usr/bin/sandbox-service").read_text()
    assert entry.startswith("#!/usr/bin/python3")
    assert "from sandbox_service.cli import main" in entry
    site = root / SITELIB.lstrip("/")
    probe = (
        "import sys, pkgutil, importlib\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "import sandbox_service, sandbox_service.cli\n"
        "assert sandbox_service.__file__.startswith(sys.path[0]), sandbox_service.__file__\n"
        "for m in pkgutil.walk_packages(sandbox_service.__path__, 'sandbox_service.'):\n"
        "    if m.name != 'sandbox_service.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "from sandbox_service import resources\n"
        "print(resources.INSTALLED)\n"
        f"for d in {DATA!r}:\n"
        "    print(resources.data_path(d))\n"
    )
    env = {**os.environ, "SANDBOX_SERVICE_DATADIR": str(root / DATADIR.lstrip("/"))}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    data = root / DATADIR.lstrip("/")
    assert done.stdout.split() == [DATADIR, *(str(data / d) for d in DATA)]


def test_macros_in_package_are_the_source(built: Rpms) -> None:
    with built.macros.open("rb") as package:
        tgz = subprocess.run(["rpm2archive", "-"], stdin=package, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        member = tar.extractfile("./usr/lib/rpm/macros.d/macros.sandbox-service")
        assert member is not None
        assert member.read() == MACROS.read_bytes()
