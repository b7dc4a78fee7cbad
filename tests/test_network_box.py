"""Network modes against the real systemd of the box: published ports (TCP and UDP), isolation of
loopback-only sandboxes, a bridge between two sandboxes, the host's network, and refusals.

All traffic stays inside the box's own network namespace (systemd-nspawn --private-network): its loopback,
and a bridge with 10.231.0.0/24 made here and removed again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.box import SystemdBox
from tests.sandboxcli import BASE, UNIT_DIR, cli, show
from tests.test_core_box import snapshot

pytestmark = pytest.mark.box

BRIDGE = "br-nettest"
HTTP = (
    "import http.server as h, sys; h.HTTPServer((sys.argv[1], int(sys.argv[2])), h.SimpleHTTPRequestHandler)"
)
UDP_ECHO = (
    "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    "s.bind(('127.0.0.1', int(sys.argv[1]))); "
    "[s.sendto(b'echo:' + d, a) for d, a in iter(lambda: s.recvfrom(4096), None)]"
)
UDP_ASK = (
    "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); "
    "s.sendto(sys.argv[2].encode(), ('127.0.0.1', int(sys.argv[1]))); print(s.recv(4096).decode())"
)


def http_server(address: str, port: int) -> list[str]:
    """A generic sandbox's command: an HTTP server on ADDRESS:PORT serving its private root's /."""
    return ["/usr/bin/python3", "-c", HTTP + ".serve_forever()", address, str(port)]


def eventually(check: Callable[[], bool], what: str, seconds: float = 8) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def get(box: SystemdBox, url: str, pid: int | None = None) -> str | None:
    """The body at URL from the box's host side (or from PID's network namespace); None if unreachable."""
    argv = ["curl", "-sS", "--max-time", "3", url]
    done = box.run_in_netns_of(pid, argv, check=False) if pid else box.run(argv, check=False)
    return done.stdout if done.returncode == 0 else None


def main_pid(box: SystemdBox, name: str) -> int:
    return int(show(box, f"sandbox-{name}.service", "MainPID"))


def verify_units(box: SystemdBox, name: str) -> None:
    units = box.run(
        ["sh", "-c", f"ls {UNIT_DIR}/sandbox-{name}.* {UNIT_DIR}/sandbox-{name}-*"]
    ).stdout.split()
    done = box.run(["systemd-analyze", "verify", "--man=no", *units], check=False)
    assert done.returncode == 0, done.stderr
    assert "Unknown" not in done.stderr and "Ignoring" not in done.stderr, done.stderr


def units_left(box: SystemdBox, name: str) -> str:
    out = box.run(
        ["systemctl", "list-units", "--all", "--no-legend", f"sandbox-{name}.*", f"sandbox-{name}-*"]
    )
    return out.stdout.strip()


@pytest.fixture()
def bridge(box: SystemdBox) -> Iterator[str]:
    box.run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    box.run(["ip", "link", "set", BRIDGE, "up"])
    yield BRIDGE
    box.run(["ip", "link", "delete", BRIDGE], check=False)


def test_published_nginx(box: SystemdBox, cleanup: list[str]) -> None:
    """--publish 8080:80: HTTP on the box's 127.0.0.1:8080 through restarts, daemon-reloads and a boot-like
    start of sandbox.target; nothing on the host side once stopped or deleted."""
    name, service = "pubweb", "sandbox-pubweb.service"
    socket, proxy = "sandbox-pubweb-publish-8080.socket", "sandbox-pubweb-publish-8080.service"
    cleanup.append(name)
    cli(box, "create", name, "--unit", "nginx", "--publish", "8080:80", "--enable")
    verify_units(box, name)
    page = f"published {uuid.uuid4()}\n"
    box.run(["mkdir", "-p", f"{BASE}/{name}/root/var/www/html"])
    box.run(["tee", f"{BASE}/{name}/root/var/www/html/index.html"], input=page)
    url = "http://127.0.0.1:8080/"
    assert get(box, url) is None

    def serves(when: str) -> None:
        eventually(lambda: get(box, url) == page, f"the page on {url} {when}")
        # the proxy (started by that connection) is in the sandbox's slice and network namespace
        assert show(box, proxy, "ControlGroup") == f"/sandbox.slice/sandbox-pubweb.slice/{proxy}"
        netns = box.run(["readlink", f"/proc/{show(box, proxy, 'MainPID')}/ns/net"]).stdout
        assert netns == box.run(["readlink", f"/proc/{main_pid(box, name)}/ns/net"]).stdout, when
        assert netns != box.run(["readlink", "/proc/1/ns/net"]).stdout

    box.run(["systemctl", "start", service])  # plain systemctl: the service pulls its socket in
    serves("after systemctl start")
    status = json.loads(cli(box, "status", name, "--json")[1])
    assert status["network"] == "none (loopback only); publishes 8080->80/tcp"
    cli(box, "restart", name)
    serves("after a restart")
    # JoinsNamespaceOf= and daemon-reload: a running proxy, a proxy started anew, a restarted sandbox
    box.run(["systemctl", "daemon-reload"])
    serves("after daemon-reload")
    box.run(["systemctl", "stop", proxy])
    box.run(["systemctl", "daemon-reload"])
    serves("from a proxy started after daemon-reload")
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "restart", service])
    serves("after daemon-reload and a restart")

    cli(box, "stop", name)
    assert get(box, url) is None
    assert show(box, socket, "ActiveState") == "inactive"
    # enabled is the service only; what boot starts brings the published port with it
    assert box.run(["systemctl", "is-enabled", service]).stdout.strip() == "enabled"
    assert box.run(["systemctl", "is-enabled", socket], check=False).stdout.strip() == "static"
    box.run(["systemctl", "start", "sandbox.target"])
    serves("after starting sandbox.target")

    cli(box, "delete", name)
    cleanup.remove(name)
    assert get(box, url) is None
    assert units_left(box, name) == ""
    assert box.run(["sh", "-c", f"ls {UNIT_DIR} | grep -c '^sandbox-{name}' || true"]).stdout.strip() == "0"


def test_unpublished_and_loopback_only_sandboxes_are_unreachable(box: SystemdBox, cleanup: list[str]) -> None:
    """Without --publish nothing reaches a sandbox from the host side, and two --network none sandboxes
    cannot reach each other's loopback services."""
    cleanup += ["lone", "iso-a", "iso-b"]
    cli(box, "create", "lone", "--unit", "nginx", "--network", "none", "--now")
    assert get(box, "http://127.0.0.1:80/") is None and get(box, "http://127.0.0.1:8080/") is None
    assert get(box, "http://127.0.0.1:80/", main_pid(box, "lone")) is not None  # it does serve, inside

    cli(box, "create", "iso-a", "--now", "--", *http_server("127.0.0.1", 8001))
    cli(box, "create", "iso-b", "--now", "--", *http_server("127.0.0.1", 8002))
    a, b = main_pid(box, "iso-a"), main_pid(box, "iso-b")
    eventually(lambda: get(box, "http://127.0.0.1:8001/", a) is not None, "iso-a's server")
    eventually(lambda: get(box, "http://127.0.0.1:8002/", b) is not None, "iso-b's server")
    assert get(box, "http://127.0.0.1:8002/", a) is None
    assert get(box, "http://127.0.0.1:8001/", b) is None
    assert get(box, "http://127.0.0.1:8001/") is None and get(box, "http://127.0.0.1:8002/") is None


def test_two_sandboxes_on_a_bridge(box: SystemdBox, cleanup: list[str], bridge: str) -> None:
    cleanup += ["bra", "brb"]
    cli(
        box,
        "create",
        "bra",
        "--network",
        f"bridge={bridge},address=10.231.0.2/24",
        "--now",
        "--",
        *http_server("10.231.0.2", 8000),
    )
    cli(
        box,
        "create",
        "brb",
        "--network",
        f"bridge={bridge},address=10.231.0.3/24,gateway=10.231.0.1",
        "--now",
        "--",
        *http_server("10.231.0.3", 8000),
    )
    verify_units(box, "bra")
    a, b = main_pid(box, "bra"), main_pid(box, "brb")
    named = box.run(["stat", "-L", "-c", "%i", "/run/netns/sandbox-bra"]).stdout.strip()
    assert box.run(["readlink", f"/proc/{a}/ns/net"]).stdout.strip() == f"net:[{named}]"
    eventually(lambda: get(box, "http://10.231.0.2:8000/", b) is not None, "brb reaching bra over the bridge")
    eventually(lambda: get(box, "http://10.231.0.3:8000/", a) is not None, "bra reaching brb over the bridge")
    assert "default via 10.231.0.1 dev eth0" in box.run_in_netns_of(b, ["ip", "route"]).stdout
    # the host side has no address on the bridge: no route into the sandboxes' subnet
    assert get(box, "http://10.231.0.2:8000/") is None
    ports = box.run(["ip", "-br", "link", "show", "master", bridge]).stdout
    assert "sb-bra" in ports and "sb-brb" in ports
    assert (
        "bridge br-nettest (10.231.0.2/24)" in json.loads(cli(box, "status", "bra", "--json")[1])["network"]
    )

    # a restart makes the namespace anew with the same MAC address: brb's neighbour entry stays right
    cli(box, "restart", "bra")
    eventually(lambda: get(box, "http://10.231.0.2:8000/", b) is not None, "bra again after its restart")

    cli(box, "stop", "bra")  # the oneshot unit removes namespace and veth pair
    eventually(lambda: "sb-bra" not in box.run(["ip", "-br", "link"]).stdout, "bra's veth pair to go")
    assert "sandbox-bra" not in box.run(["ip", "netns", "list"]).stdout.split()
    eventually(
        lambda: show(box, "sandbox-bra-netns.service", "ActiveState") == "inactive", "its netns unit to stop"
    )
    cli(box, "delete", "bra", "brb")
    cleanup.clear()
    assert units_left(box, "bra") == "" and units_left(box, "brb") == ""
    assert "sb-br" not in box.run(["ip", "-br", "link"]).stdout
    assert box.run(["ip", "netns", "list"]).stdout.strip() == ""


def test_bridge_without_address(box: SystemdBox, cleanup: list[str], bridge: str) -> None:
    """Addressing is left to the service: eth0 is up in the bridge, without an IPv4 address."""
    cleanup.append("brdhcp")
    cli(box, "create", "brdhcp", "--network", f"bridge={bridge}", "--now", "--", "/usr/bin/sleep", "300")
    addrs = box.run_in_netns_of(main_pid(box, "brdhcp"), ["ip", "-br", "address", "show", "eth0"]).stdout
    assert "UP" in addrs and "10." not in addrs
    assert "sb-brdhcp" in box.run(["ip", "-br", "link", "show", "master", bridge]).stdout


def test_host_network(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup.append("hostnet")
    cli(box, "create", "hostnet", "--network", "host", "--now", "--", *http_server("127.0.0.1", 8097))
    pid = main_pid(box, "hostnet")
    assert (
        box.run(["readlink", f"/proc/{pid}/ns/net"]).stdout == box.run(["readlink", "/proc/1/ns/net"]).stdout
    )
    eventually(lambda: get(box, "http://127.0.0.1:8097/") is not None, "the service on the host's network")
    _rc, out, _err = cli(box, "status", "hostnet")
    assert "Network:     host (shares the host's network: no network isolation)" in out


def test_published_udp(box: SystemdBox, cleanup: list[str]) -> None:
    """UDP through the relay: answers reach each asker, across a restart and a daemon-reload."""
    cleanup.append("uecho")
    cli(
        box,
        "create",
        "uecho",
        "--publish",
        "127.0.0.1:5353:5300/udp",
        "--now",
        "--",
        "/usr/bin/python3",
        "-c",
        UDP_ECHO,
        "5300",
    )
    verify_units(box, "uecho")

    def ask(text: str) -> str | None:
        done = box.run(["python3", "-c", UDP_ASK, "5353", text], check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    eventually(lambda: ask("one") == "echo:one", "the UDP echo through the published port")
    assert ask("two") == "echo:two"
    cli(box, "restart", "uecho")
    eventually(lambda: ask("three") == "echo:three", "the UDP echo after a restart")
    box.run(["systemctl", "daemon-reload"])
    assert ask("four") == "echo:four"
    relay = "sandbox-uecho-publish-5353-udp.service"
    assert (
        box.run(["readlink", f"/proc/{show(box, relay, 'MainPID')}/ns/net"]).stdout
        == box.run(["readlink", f"/proc/{main_pid(box, 'uecho')}/ns/net"]).stdout
    )
    cli(box, "stop", "uecho")
    assert ask("five") is None


def test_ip_filters_reach_the_unit(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup.append("ipf")
    cli(
        box,
        "create",
        "ipf",
        "--deny-ip",
        "any",
        "--allow-ip",
        "10.0.0.0/8",
        "--allow-ip",
        "localhost",
        "--",
        "/usr/bin/sleep",
        "300",
    )
    assert set(show(box, "sandbox-ipf.service", "IPAddressDeny").split()) == {"0.0.0.0/0", "::/0"}
    assert set(show(box, "sandbox-ipf.service", "IPAddressAllow").split()) == {
        "10.0.0.0/8",
        "127.0.0.0/8",
        "::1/128",
    }


def test_bad_network_input_writes_nothing(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup.append("holder")
    cli(box, "create", "holder", "--publish", "8095:80", "--", "/usr/bin/sleep", "300")
    before = snapshot(box)
    cmd = ["--", "/usr/bin/sleep", "300"]
    cases = [
        (["--publish", "8080"], 2, "malformed --publish"),
        (["--publish", "8080:80/sctp"], 2, "unknown protocol"),
        (["--publish", "70000:80"], 2, "out of range"),
        (["--publish", "8080:0"], 2, "out of range"),
        (["--publish", "8095:81"], 4, "already published by sandbox 'holder'"),
        (["--publish", "127.0.0.1:8095:81"], 4, "already published by sandbox 'holder'"),
        (["--network", "bridge=no-such-br"], 3, "bridge 'no-such-br' does not exist"),
        (["--network", "bridge=lo"], 2, "not a bridge"),
        (["--network", "host", "--publish", "8080:80"], 2, "cannot be combined with --publish"),
        (["--network", "bridge=br0,gateway=10.0.0.1"], 2, "gateway= needs address="),
        (["--network", "wifi"], 2, "unknown network mode"),
        (["--deny-ip", "10.0.0.1/8"], 2, "host bits"),
    ]
    for args, code, text in cases:
        rc, _out, err = cli(box, "create", "badnet", *args, *cmd, check=False)
        assert rc == code, (args, rc, err)
        assert text in err and "hint:" in err, (args, err)
        assert "Traceback" not in err
        assert snapshot(box) == before, args
