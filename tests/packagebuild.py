"""Build the project's packages the way a user or a distribution gets them, once per test session: the
wheel (python -m build: source distribution, then a wheel from it), the RPMs (packaging/build-rpm.sh,
what `make rpm` runs) and the Debian packages (packaging/build-deb.sh, what `make deb` runs).  The
session fixtures in conftest.py call these; a build failure fails the tests that need it, it never
skips them (a missing build tool skips)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION: str = PYPROJECT["project"]["version"]
#: What the tool reads at run time, as pyproject.toml lists it (relative to the source tree).
DATA: list[str] = PYPROJECT["tool"]["sandbox-service"]["data"]
DEB_VERSION = f"{VERSION}-1"

PROBE_BUILD_MODULES = (
    "import importlib.util as u, sys; "
    "sys.exit(any(u.find_spec(m) is None for m in ('pip', 'setuptools', 'wheel')))"
)


def data_files() -> list[str]:
    """Every shipped data file, relative to the source tree (templates/service.j2, ...)."""
    out: list[str] = []
    for name in DATA:
        top = REPO / name
        found = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        out += [str(p.relative_to(REPO)) for p in found if "__pycache__" not in p.parts]
    return out


def _run(argv: list[str], what: str, timeout: float = 600) -> tuple[str, float]:
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)
    seconds = time.monotonic() - began
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-60:])
    assert done.returncode == 0, f"{what} failed; the end of its output:\n{tail}"
    return done.stdout, seconds


@dataclass(frozen=True)
class Wheel:
    path: Path
    sdist: Path
    seconds: float

    def names(self) -> set[str]:
        with zipfile.ZipFile(self.path) as z:
            return set(z.namelist())


def wheel_missing_tools() -> str | None:
    import importlib.util

    if importlib.util.find_spec("build") is None:
        return "the build module is missing (make deps installs the test extras)"
    return None


def build_wheel(outdir: Path) -> Wheel:
    """sdist, then the wheel built from it (what `python -m build` does, and PyPI users get)."""
    _out, seconds = _run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), "."], "build"
    )
    wheels = sorted(outdir.glob("sandbox_service-*.whl"))
    sdists = sorted(outdir.glob("sandbox_service-*.tar.gz")) or sorted(
        outdir.glob("sandbox-service-*.tar.gz")
    )
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in outdir.iterdir())
    return Wheel(wheels[0], sdists[0], seconds)


@dataclass(frozen=True)
class Rpms:
    outdir: Path
    tarball: Path
    main: Path
    macros: Path
    seconds: float


def rpm_missing_tools() -> str | None:
    if shutil.which("rpmbuild") is None:
        return "rpmbuild missing (apt install rpm)"
    if not Path("/usr/share/selinux/devel/Makefile").exists():
        return "/usr/share/selinux/devel/Makefile missing (apt install selinux-policy-dev)"
    probe = subprocess.run(["/usr/bin/python3", "-c", PROBE_BUILD_MODULES], capture_output=True, check=False)
    if probe.returncode != 0:
        return "the system Python lacks pip, setuptools or wheel (apt install python3-pip python3-wheel)"
    return None


def build_rpms(outdir: Path) -> Rpms:
    out, seconds = _run(["bash", str(REPO / "packaging" / "build-rpm.sh"), str(outdir)], "build-rpm.sh")
    release = f"{VERSION}-1.noarch.rpm"
    built = Rpms(
        outdir,
        outdir / f"sandbox-service-{VERSION}.tar.gz",
        outdir / f"sandbox-service-{release}",
        outdir / f"sandbox-service-rpm-macros-{release}",
        seconds,
    )
    for p in (built.tarball, built.main, built.macros):
        assert p.is_file(), f"{p.name} not built; build output:\n{out}"
    assert sorted(out.split()) == sorted([str(built.main), str(built.macros)])
    return built


@dataclass(frozen=True)
class Debs:
    outdir: Path
    main: Path
    helper: Path
    seconds: float


def deb_missing_tools() -> str | None:
    for tool in ("dpkg-buildpackage", "dh", "pybuild", "lintian"):
        if shutil.which(tool) is None:
            return f"{tool} missing (make deps installs the Debian build tools)"
    if not Path("/usr/share/selinux/devel/Makefile").exists():
        return "/usr/share/selinux/devel/Makefile missing (apt install selinux-policy-dev)"
    return None


def build_debs(outdir: Path) -> Debs:
    """packaging/build-deb.sh, which fails on a lintian error or warning that no override explains."""
    out, seconds = _run(["bash", str(REPO / "packaging" / "build-deb.sh"), str(outdir)], "build-deb.sh")
    built = Debs(
        outdir,
        outdir / f"sandbox-service_{DEB_VERSION}_all.deb",
        outdir / f"dh-sandbox-service_{DEB_VERSION}_all.deb",
        seconds,
    )
    assert sorted(out.split()) == sorted([str(built.main), str(built.helper)]), out
    return built
