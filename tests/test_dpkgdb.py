"""dpkg's database read directly (discover/dpkgdb.py) answers as dpkg-query does, on this host's own
database: owners of files and directories (-S), and what packages list (-L)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sandbox_service.discover import dpkgdb, packages

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-query") is None or not Path("/var/lib/dpkg/status").exists(),
    reason="needs a Debian host's dpkg database and dpkg-query to compare with",
)

PATHS = [
    "/lib/systemd/system/nginx.service",
    "/usr/lib/systemd/system/nginx.service",
    "/etc/nginx",
    "/etc/nginx/nginx.conf",
    "/etc",
    "/var/lib",
    "/usr/bin/python3",
    "/bin/sh",
    "/etc/no-such-file-anywhere",
]
PACKAGES = ["nginx-common", "base-files", "libc6", "apache2", "no-such-package-here"]


def dpkg_query_owners(path: str) -> set[str]:
    done = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True, check=False)
    out: set[str] = set()
    for line in done.stdout.splitlines():
        if line.startswith("diversion") or ": " not in line:
            continue
        names, listed = line.split(": ", 1)
        if listed == path:
            out |= {n.strip().split(":")[0] for n in names.split(",")}
    return out


def dpkg_query_files(package: str) -> list[str] | None:
    done = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return [line for line in done.stdout.splitlines() if line.startswith("/")]


@pytest.mark.parametrize("path", PATHS)
def test_owners_are_dpkg_querys(path: str) -> None:
    assert set(dpkgdb.DpkgDatabase(Path("/")).owners(path)) == dpkg_query_owners(path)


@pytest.mark.parametrize("package", PACKAGES)
def test_files_are_dpkg_querys(package: str) -> None:
    ours = dpkgdb.DpkgDatabase(Path("/")).files(package)
    theirs = dpkg_query_files(package)
    assert (ours is None) == (theirs is None)
    if ours is not None and theirs is not None:
        assert sorted(ours) == sorted(set(theirs))


def test_owner_of_a_unit_file_and_its_package_paths() -> None:
    if not Path("/lib/systemd/system/nginx.service").exists():
        pytest.skip("nginx is not installed")
    pm = packages.detect(Path("/"))
    assert packages.owner_of(pm, Path("/"), "/usr/lib/systemd/system/nginx.service") == "nginx-common"
    paths = packages.package_paths(pm, Path("/"), "nginx-common")
    assert "/etc/nginx" in paths.trees


def test_a_tree_without_a_database_has_no_packages(tmp_path: Path) -> None:
    db = dpkgdb.DpkgDatabase(tmp_path)
    assert db.owners("/etc") == [] and db.files("base-files") is None
