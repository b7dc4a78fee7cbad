"""The Fedora/RHEL and Debian names of well-known services: what a create that names the other family's
unit is told.  On scratch trees (an os-release and unit files); tests/test_unitnames_box.py runs the
tool itself in the box."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox_service.discover import unitnames
from sandbox_service.discover.unitnames import NAMINGS, Family


def tree(base: Path, os_id: str, units: list[str], id_like: str = "") -> Path:
    (base / "etc").mkdir(parents=True)
    (base / "etc/os-release").write_text(f"ID={os_id}\n" + (f'ID_LIKE="{id_like}"\n' if id_like else ""))
    lib = base / "usr/lib/systemd/system"
    lib.mkdir(parents=True)
    for unit in units:
        (lib / unit).write_text("[Service]\nExecStart=/bin/true\n")
    return base


@pytest.mark.parametrize(
    "os_id, id_like, expected",
    [("debian", "", Family.DEBIAN), ("ubuntu", "debian", Family.DEBIAN), ("rocky", "rhel centos fedora",
     Family.FEDORA), ("fedora", "", Family.FEDORA), ("arch", "", None)],
)  # fmt: skip
def test_family(tmp_path: Path, os_id: str, id_like: str, expected: Family | None) -> None:
    assert unitnames.family(tree(tmp_path, os_id, [], id_like)) is expected


def test_debian_with_the_unit_installed(tmp_path: Path) -> None:
    root = tree(tmp_path, "debian", ["apache2.service"])
    assert unitnames.hint("httpd.service", root, "web") == (
        "Debian calls it apache2.service: sandbox-service create web --unit apache2.service"
    )


def test_debian_without_it(tmp_path: Path) -> None:
    root = tree(tmp_path, "debian", [])
    hint = unitnames.hint("crond.service", root, "jobs")
    assert hint == (
        "Debian calls it cron.service (package cron), which is not installed: install it, then: "
        "sandbox-service create jobs --unit cron.service"
    )


def test_fedora_the_other_way(tmp_path: Path) -> None:
    root = tree(tmp_path, "fedora", ["httpd.service", "sshd.service"])
    assert unitnames.hint("apache2.service", root, "web") == (
        "Fedora and RHEL call it httpd.service: sandbox-service create web --unit httpd.service"
    )
    assert unitnames.hint("ssh.service", root, "s") is not None
    assert unitnames.hint("cron.service", root, "c") is not None and "cronie" in str(
        unitnames.hint("cron.service", root, "c")
    )


def test_versions_are_carried_over(tmp_path: Path) -> None:
    root = tree(tmp_path, "debian", ["postgresql@.service", "php8.2-fpm.service"])
    assert unitnames.hint("postgresql-15.service", root, "db") == (
        "Debian calls it postgresql@15-main.service: "
        "sandbox-service create db --unit postgresql@15-main.service"
    )
    assert unitnames.hint("php-fpm.service", root, "php") == (
        "Debian calls it php8.2-fpm.service: sandbox-service create php --unit php8.2-fpm.service"
    )
    fedora = tree(tmp_path / "f", "rhel", [])
    hint = unitnames.hint("postgresql@15-main.service", fedora, "db")
    assert hint is not None and "postgresql-15.service (package postgresql15-server)" in hint


def test_no_hint_for_unknown_names_installed_units_or_unknown_systems(tmp_path: Path) -> None:
    debian = tree(tmp_path / "d", "debian", ["httpd.service"])
    assert unitnames.hint("httpd.service", debian, "web") is None  # it is there: not the table's business
    assert unitnames.hint("nosuch.service", debian, "web") is None
    assert unitnames.hint("apache2.service", debian, "web") is None  # a Debian name on Debian
    assert unitnames.hint("httpd.service", tree(tmp_path / "a", "arch", []), "web") is None


def test_table_is_consistent() -> None:
    for n in NAMINGS:
        for unit in (n.fedora, n.debian):
            assert unit.endswith(".service") and unit.count("{v}") <= 1, n
        # a version in a package name must come from the unit name
        assert ("{v}" in n.debian_package) <= ("{v}" in n.debian), n
        assert ("{v}" in n.fedora_package) <= ("{v}" in n.fedora), n
    assert len({n.fedora for n in NAMINGS}) == len(NAMINGS)
