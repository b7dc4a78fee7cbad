"""The service corpus: stock Debian services the tool must wrap unmodified, as data, in one place.

Each entry names a host unit, the package that ships its unit file (what discovery should find), the
package apt installs for it, and a probe: a shell command that succeeds only when the service answers
its own protocol on loopback.  Probes run inside the service's network namespace (``probe_argv`` makes
the argv for ``SystemdBox.run_in_netns_of``).  ``@RUN@`` in a probe stands for the service's ``/run``
as seen from outside it; ``/proc/PID/root/run`` is that path for any process, sandboxed or not.

``scripts/install-deps.sh`` installs the packages listed here (``python3 tests/corpus.py packages``),
so this module uses the standard library only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CLIENT_PACKAGES",
    "CORPUS",
    "QUIET_DEPENDENCIES",
    "REFUSED",
    "CorpusService",
    "by_unit",
    "install_packages",
    "quiet_packages",
]

#: Seconds a service gets from `systemctl start` until its probe must have answered.
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class CorpusService:
    unit: str
    #: Owner of the unit file (dpkg -S); for a unit generated from an init script, the script's owner.
    package: str
    probe: str
    #: Slow starters (a JVM, Erlang, Perl loading its rules) get longer.
    timeout: float = DEFAULT_TIMEOUT
    #: What apt installs, when not ``package`` itself (cups.service is shipped by cups-daemon).
    install: str = ""

    @property
    def name(self) -> str:
        """A short name usable in a sandbox name: the unit name without its type, '@' and '.'."""
        stem = self.unit.rsplit(".", 1)[0]
        return stem.replace("@", "").replace(".", "-")

    @property
    def apt_package(self) -> str:
        return self.install or self.package

    def probe_argv(self, run_dir: str) -> list[str]:
        """The probe as an argv, with ``@RUN@`` replaced by ``run_dir`` (the service's /run from outside)."""
        return ["sh", "-c", self.probe.replace("@RUN@", run_dir)]


def _svc(
    unit: str, package: str, probe: str, timeout: float = DEFAULT_TIMEOUT, install: str = ""
) -> CorpusService:
    return CorpusService(unit, package, probe, timeout, install)


_DIG_LOCALHOST = "dig +time=2 +tries=1 @127.0.0.1 localhost | grep -q 'status: NOERROR'"
_OPENDKIM = (
    'python3 -c "import socket,struct,sys;s=socket.socket(socket.AF_UNIX);s.settimeout(3);'
    "s.connect(sys.argv[1]);b=b'O'+struct.pack('>III',6,0x1ff,0x1fffff);"
    "s.sendall(struct.pack('>I',len(b))+b);sys.exit(s.recv(64)[4:5]!=b'O')\" "
    "@RUN@/opendkim/opendkim.sock"
)
_PROSODY = (
    "printf %s \"<stream:stream to='localhost' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\" "
    "| nc -w2 127.0.0.1 5222 | grep -q 'stream:features'"
)

CORPUS: tuple[CorpusService, ...] = (
    _svc("squid.service", "squid", "curl -sI -m3 http://127.0.0.1:3128/ | grep -qi '^Server: squid'"),
    _svc("dnsmasq.service", "dnsmasq", _DIG_LOCALHOST),
    _svc("nsd.service", "nsd", "dig +time=2 +tries=1 @127.0.0.1 . SOA | grep -q 'status:'"),
    _svc("knot.service", "knot", "knotc -s @RUN@/knot/knot.sock status | grep -q Running"),
    _svc(
        "slapd.service",
        "slapd",
        "ldapsearch -x -H ldap://127.0.0.1 -s base -b '' namingContexts | grep -q 'result: 0'",
    ),
    _svc(
        "snmpd.service",
        "snmpd",
        "snmpget -v2c -c public -t 2 -r 0 127.0.0.1 1.3.6.1.2.1.1.1.0 | grep -q STRING",
    ),
    _svc("smbd.service", "samba", "smbclient -N -L //127.0.0.1 2>&1 | grep -q 'IPC Service'"),
    _svc(
        "cups.service",
        "cups-daemon",
        "curl -s -m3 -D - -o /dev/null http://127.0.0.1:631/ | grep -qi '^Server: CUPS'",
        install="cups",
    ),
    _svc(
        "tomcat10.service",
        "tomcat10",
        "curl -s -m3 -o /dev/null -w %{http_code} http://127.0.0.1:8080/ | grep -q ^200",
        timeout=150,
    ),
    _svc(
        "rabbitmq-server.service",
        "rabbitmq-server",
        r"printf 'AMQP\0\0\11\1' | nc -w3 127.0.0.1 5672 | grep -qa RabbitMQ",
        timeout=120,
    ),
    _svc("prosody.service", "prosody", _PROSODY),
    _svc("privoxy.service", "privoxy", "curl -s -m3 -x http://127.0.0.1:8118 http://p.p/ | grep -qi privoxy"),
    _svc("opendkim.service", "opendkim", _OPENDKIM),
    _svc(
        "zabbix-agent.service",
        "zabbix-agent",
        r"printf 'ZBXD\1\12\0\0\0\0\0\0\0agent.ping' | nc -w3 127.0.0.1 10050 | grep -qa ZBXD",
    ),
    _svc("munin-node.service", "munin-node", "nc -w2 127.0.0.1 4949 </dev/null | grep -q '^# munin node at'"),
    _svc(
        "icecast2.service",
        "icecast2",
        "curl -s -m3 -D - -o /dev/null http://127.0.0.1:8000/ | grep -qi '^Server: Icecast'",
    ),
    _svc(
        "tftpd-hpa.service",
        "tftpd-hpa",
        "timeout 5 tftp 127.0.0.1 -c get no-such-file /dev/null 2>&1 | grep -q 'Error code'",
    ),
    _svc(
        "nagios-nrpe-server.service",
        "nagios-nrpe-server",
        "/usr/lib/nagios/plugins/check_nrpe -H 127.0.0.1 | grep -q NRPE",
    ),
    _svc(
        "influxdb.service",
        "influxdb",
        "curl -s -m3 -o /dev/null -w %{http_code} http://127.0.0.1:8086/ping | grep -q ^204",
        timeout=60,
    ),
    _svc("kresd@1.service", "knot-resolver", _DIG_LOCALHOST),
    _svc(
        "spamd.service",
        "spamd",
        r"printf 'PING SPAMC/1.5\r\n\r\n' | nc -w3 127.0.0.1 783 | grep -q PONG",
        timeout=90,
    ),
    _svc("mpd.service", "mpd", "nc -w2 127.0.0.1 6600 </dev/null | grep -q '^OK MPD'"),
    _svc("minidlna.service", "minidlna", "curl -s -m3 http://127.0.0.1:8200/ | grep -qi minidlna"),
    _svc(
        "transmission-daemon.service",
        "transmission-daemon",
        "curl -s -m3 -D - -o /dev/null http://127.0.0.1:9091/transmission/rpc "
        "| grep -qi '^Server: Transmission'",
    ),
    _svc(
        "apt-cacher-ng.service",
        "apt-cacher-ng",
        "curl -s -m3 http://127.0.0.1:3142/acng-report.html | grep -qi apt-cacher",
    ),
    _svc("beanstalkd.service", "beanstalkd", r"printf 'stats\r\n' | nc -w2 127.0.0.1 11300 | grep -q ^OK"),
    _svc(
        "gearman-job-server.service",
        "gearman-job-server",
        r"printf 'version\n' | nc -w2 127.0.0.1 4730 | grep -q ^OK",
    ),
    _svc(
        "ngircd.service",
        "ngircd",
        r"printf 'NICK probe\r\nUSER probe 0 * :probe\r\nQUIT\r\n' | nc -w3 127.0.0.1 6667 | grep -q ' 001 '",
    ),
)

#: Type=dbus: the tool must refuse it (no system bus inside a sandbox).
REFUSED: tuple[CorpusService, ...] = (_svc("avahi-daemon.service", "avahi-daemon", "true"),)

#: The clients the probes use.
CLIENT_PACKAGES: tuple[str, ...] = (
    "ldap-utils",
    "snmp",
    "smbclient",
    "tftp-hpa",
    "nagios-nrpe-plugin",
    "bind9-dnsutils",
    "netcat-openbsd",
    "curl",
)


#: Dependencies of the corpus packages that enable units of their own at install time.
QUIET_DEPENDENCIES: tuple[str, ...] = (
    "erlang-base",  # epmd.service, epmd.socket (rabbitmq-server's Erlang)
    "logrotate",  # logrotate.timer
)


def by_unit(unit: str) -> CorpusService:
    for service in (*CORPUS, *REFUSED):
        if service.unit == unit:
            return service
    raise KeyError(unit)


def install_packages() -> list[str]:
    """Every package apt must install for the corpus: services, the refused case, probe clients."""
    names = [s.apt_package for s in (*CORPUS, *REFUSED)]
    return list(dict.fromkeys([*names, *CLIENT_PACKAGES]))


def quiet_packages() -> list[str]:
    """Packages none of whose units or init scripts may start when a box boots."""
    services = (*CORPUS, *REFUSED)
    names = [s.package for s in services] + [s.apt_package for s in services]
    return list(dict.fromkeys([*names, *QUIET_DEPENDENCIES]))


def main(argv: Sequence[str]) -> int:
    """``packages``: what apt installs; ``quiet-packages``: whose units must not start at boot."""
    lists = {"packages": install_packages, "quiet-packages": quiet_packages}
    if len(argv) == 1 and argv[0] in lists:
        print("\n".join(lists[argv[0]]()))
        return 0
    print("usage: python3 tests/corpus.py packages|quiet-packages", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
