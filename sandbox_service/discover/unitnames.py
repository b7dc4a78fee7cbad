"""Well-known services that Fedora/RHEL and Debian name differently (httpd there, apache2 here).

Consulted only when a unit is not found: the hint then says what this system's family of distributions
calls the service, whether a unit of that name is installed, and how to use it.  The table is data: a
row per service, "{v}" standing for a version that is part of the name (carried over when the name
given has one, "VERSION" in the hint when it has none).
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .unitfile.lookup import unit_search_path


class Family(enum.Enum):
    FEDORA = "Fedora and RHEL"
    DEBIAN = "Debian"


@dataclass(frozen=True)
class Naming:
    """One service: its unit and package on each family."""

    fedora: str
    debian: str
    fedora_package: str
    debian_package: str

    def unit(self, family: Family) -> str:
        return self.fedora if family is Family.FEDORA else self.debian

    def package(self, family: Family) -> str:
        return self.fedora_package if family is Family.FEDORA else self.debian_package


NAMINGS: tuple[Naming, ...] = (
    Naming("httpd.service", "apache2.service", "httpd", "apache2"),
    Naming("crond.service", "cron.service", "cronie", "cron"),
    Naming("sshd.service", "ssh.service", "openssh-server", "openssh-server"),
    Naming("named.service", "bind9.service", "bind", "bind9"),
    Naming("mysqld.service", "mariadb.service", "mysql-server", "mariadb-server"),
    Naming("postgresql.service", "postgresql@{v}-main.service", "postgresql-server", "postgresql"),
    Naming("postgresql-{v}.service", "postgresql@{v}-main.service", "postgresql{v}-server", "postgresql-{v}"),
    Naming("php-fpm.service", "php{v}-fpm.service", "php-fpm", "php{v}-fpm"),
    Naming("chronyd.service", "chrony.service", "chrony", "chrony"),
    Naming("ntpd.service", "ntpsec.service", "ntpsec", "ntpsec"),
    Naming("redis.service", "redis-server.service", "redis", "redis-server"),
    Naming("smb.service", "smbd.service", "samba", "samba"),
    Naming("nmb.service", "nmbd.service", "samba", "samba"),
    Naming("dhcpd.service", "isc-dhcp-server.service", "dhcp-server", "isc-dhcp-server"),
    Naming("clamd@scan.service", "clamav-daemon.service", "clamd", "clamav-daemon"),
    Naming("spamassassin.service", "spamd.service", "spamassassin", "spamd"),
    Naming("radiusd.service", "freeradius.service", "freeradius", "freeradius"),
    Naming("krb5kdc.service", "krb5-kdc.service", "krb5-server", "krb5-kdc"),
    Naming("kadmin.service", "krb5-admin-server.service", "krb5-server", "krb5-admin-server"),
    Naming("openvswitch.service", "openvswitch-switch.service", "openvswitch", "openvswitch-switch"),
)

_VERSION = "{v}"


def family(root: Path) -> Family | None:
    """The family of the system in root, from its os-release (ID, then ID_LIKE)."""
    for name in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (root / name).read_text()
        except OSError:
            continue
        fields = dict(
            (k, v.strip().strip("\"'")) for k, _, v in (ln.partition("=") for ln in text.splitlines()) if v
        )
        for key in ("ID", "ID_LIKE"):
            for word in fields.get(key, "").split():
                if word in ("debian", "ubuntu"):
                    return Family.DEBIAN
                if word in ("fedora", "rhel", "centos"):
                    return Family.FEDORA
        return None
    return None


def _match(pattern: str, name: str) -> str | None:
    """The version part of name if it matches pattern ("" when the pattern has none), else None."""
    regex = re.escape(pattern).replace(re.escape(_VERSION), r"([0-9][0-9.]*)")
    m = re.fullmatch(regex, name)
    if m is None:
        return None
    return m.group(1) if m.groups() else ""


@dataclass(frozen=True)
class Suggestion:
    unit: str  # as the family names it; "VERSION" where the version is not known
    package: str
    installed: tuple[str, ...]  # units of that name found in the system's unit directories


def suggestions(unit: str, root: Path) -> tuple[Family, list[Suggestion]] | None:
    """What the system in root calls the service that the other family calls unit, or None when the
    table has nothing to say (an unknown family, a name it does not know, a unit that is installed)."""
    here = family(root)
    if here is None or _installed(root, unit):
        return None
    other = Family.DEBIAN if here is Family.FEDORA else Family.FEDORA
    found: list[Suggestion] = []
    for naming in NAMINGS:
        version = _match(naming.unit(other), unit)
        if version is None:
            continue
        target = naming.unit(here)
        glob = target.replace(_VERSION, version or "*")
        shown = target.replace(_VERSION, version or "VERSION")
        package = naming.package(here).replace(_VERSION, version or "VERSION")
        installed = tuple(n.replace("*", "VERSION") for n in _installed(root, glob))
        suggestion = Suggestion(shown, package, installed)
        if suggestion not in found:
            found.append(suggestion)
    return (here, found) if found else None


def _installed(root: Path, pattern: str) -> tuple[str, ...]:
    """Unit names matching a glob pattern that have a unit file in root.  An instance (a@b.service,
    or a@*.service) is there when its template (a@.service) is: it is returned as given."""
    prefix, at, rest = pattern.partition("@")
    template = f"{prefix}@.{rest.rpartition('.')[2]}" if at else None
    names: set[str] = set()
    for directory in unit_search_path(root):
        base = root / directory.lstrip("/")
        if not base.is_dir():
            continue
        if template is None:
            names |= {p.name for p in base.glob(pattern)}
        elif os.path.lexists(base / template):
            names.add(pattern)
    return tuple(sorted(names))


def hint(unit: str, root: Path, sandbox: str) -> str | None:
    """The hint for a create of sandbox that named unit, which was not found; None if there is none."""
    found = suggestions(unit, root)
    if found is None:
        return None
    here, items = found
    usable = [name for s in items for name in s.installed]
    if usable:
        return (
            f"{here.value} call{'s' if here is Family.DEBIAN else ''} it {' or '.join(usable)}: "
            f"sandbox-service create {sandbox} --unit {usable[0]}"
        )
    known = "; ".join(f"{s.unit} (package {s.package})" for s in items)
    return (
        f"{here.value} call{'s' if here is Family.DEBIAN else ''} it {known}, which is not installed: "
        f"install it, then: sandbox-service create {sandbox} --unit {items[0].unit}"
    )
