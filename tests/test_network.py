"""The network part of a sandbox without systemd: parsing, validation, the spec file round trip, the units
rendered for each mode, the host checks, and the UDP relay run as the unit runs it."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox_service import render, specfile
from sandbox_service.errors import AlreadyExists, InvalidInput, NotFound
from sandbox_service.network import checks, udprelay, units
from sandbox_service.network.model import (
    Bridge,
    NetworkMode,
    NetworkSpec,
    Protocol,
    PublishedPort,
    describe,
    parse,
    parse_publish,
)
from sandbox_service.paths import Layout
from sandbox_service.spec import Directive, ExecCommand, Kind, SandboxSpec, Security, ServiceDef
from tests import unitparse


def sandbox(name: str = "web", network: NetworkSpec | None = None, **kw: object) -> SandboxSpec:
    cmd = ExecCommand("/usr/bin/sleep", ("/usr/bin/sleep", "60"))
    return SandboxSpec(
        name=name,
        kind=Kind.GENERIC,
        service=ServiceDef(exec_start=(cmd,)),
        network=network or NetworkSpec(),
        **kw,  # type: ignore[arg-type]
    )


# -- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8080:80", PublishedPort(8080, 80)),
        ("8080:80/tcp", PublishedPort(8080, 80)),
        ("5353:53/udp", PublishedPort(5353, 53, Protocol.UDP)),
        ("5353:53/UDP", PublishedPort(5353, 53, Protocol.UDP)),
        ("127.0.0.1:8080:80", PublishedPort(8080, 80, Protocol.TCP, "127.0.0.1")),
        ("[::1]:8080:80/udp", PublishedPort(8080, 80, Protocol.UDP, "::1")),
        ("[0:0::1]:8080:80", PublishedPort(8080, 80, Protocol.TCP, "::1")),
        ("1:65535", PublishedPort(1, 65535)),
    ],
)
def test_publish_forms(text: str, expected: PublishedPort) -> None:
    assert parse_publish(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("80", "expected HOSTPORT:PORT"),
        ("a:80", "'a' is not a port number"),
        ("8080:", "'' is not a port number"),
        ("+80:80", "not a port number"),
        ("0:80", "out of range"),
        ("8080:65536", "out of range"),
        ("99999:80", "out of range"),
        ("1:2:3:4", "expected HOSTPORT:PORT"),
        ("::1:8080:80", "brackets"),
        ("[::1]8080:80", "brackets"),
        ("[::1]:8080", "HOSTPORT:PORT after the address"),
        ("[fe80::1%eth0]:8080:80", "zone index"),
        ("localhost:8080:80", "not an IPv4 or IPv6 address"),
        ("1.2.3.999:8080:80", "not an IPv4 or IPv6 address"),
        ("8080:80/sctp", "unknown protocol"),
        ("8080:80/", "unknown protocol"),
        ("\uff18\uff10:80", "not a port number"),  # fullwidth digits: str.isdigit() says yes
    ],
)
def test_malformed_publish_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse(None, [text], [], [])
    assert message in exc.value.message
    assert exc.value.hint


def test_network_modes() -> None:
    assert parse(None, [], [], []) == NetworkSpec()
    assert parse("none", [], [], []) == NetworkSpec()
    assert parse("host", [], [], []) == NetworkSpec(NetworkMode.HOST)
    assert parse("bridge=br0", [], [], []) == NetworkSpec(NetworkMode.BRIDGE, Bridge("br0"))
    assert parse("bridge=br0,address=10.1.2.3/24,gateway=10.1.2.1", [], [], []).bridge == Bridge(
        "br0", "10.1.2.3/24", "10.1.2.1"
    )
    assert parse("bridge=br0,gateway=fd00::1,address=fd00:0::2/64", [], [], []).bridge == Bridge(
        "br0", "fd00::2/64", "fd00::1"
    )


@pytest.mark.parametrize(
    "network, message",
    [
        ("bridged", "unknown network mode"),
        ("Host", "unknown network mode"),
        ("bridge=", "invalid bridge name"),
        ("bridge=a-very-long-bridge-name", "invalid bridge name"),
        ("bridge=br/0", "invalid bridge name"),
        ("bridge=br0,mtu=9000", "unknown bridge option"),
        ("bridge=br0,address", "unknown bridge option"),
        ("bridge=br0,address=10.0.0.2/24,address=10.0.0.3/24", "given twice"),
        ("bridge=br0,address=10.0.0.2", "no prefix length"),
        ("bridge=br0,address=10.0.0.2/33", "not IP/PREFIX"),
        ("bridge=br0,address=10.0.0.0/24", "network or broadcast"),
        ("bridge=br0,address=10.0.0.255/24", "network or broadcast"),
        ("bridge=br0,gateway=10.0.0.1", "gateway= needs address="),
        ("bridge=br0,address=10.0.0.2/24,gateway=10.0.1.1", "not in the sandbox's subnet"),
        ("bridge=br0,address=10.0.0.2/24,gateway=fd00::1", "not in the sandbox's subnet"),
        ("bridge=br0,address=10.0.0.2/24,gateway=10.0.0.2", "own address"),
        ("bridge=br0,address=10.0.0.2/24,gateway=router", "not an IPv4 or IPv6 address"),
    ],
)
def test_bad_network_is_refused(network: str, message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse(network, [], [], [])
    assert message in exc.value.message


def test_host_network_refuses_publish() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse("host", ["8080:80"], [], [])
    assert "--network host cannot be combined with --publish" in exc.value.message


def test_a_host_port_is_published_once_per_protocol() -> None:
    with pytest.raises(InvalidInput, match="published twice"):
        parse(None, ["8080:80", "127.0.0.1:8080:81"], [], [])
    both = parse(None, ["53:53/tcp", "53:53/udp"], [], [])
    assert {p.protocol for p in both.publish} == {Protocol.TCP, Protocol.UDP}


def test_ip_filters() -> None:
    net = parse(None, [], ["10.0.0.0/8", "192.168.1.7", "fd00:0::/8", "localhost"], ["any"])
    assert net.allow_ip == ("10.0.0.0/8", "192.168.1.7", "fd00::/8", "localhost")
    assert net.deny_ip == ("any",)
    with pytest.raises(InvalidInput) as exc:
        parse(None, [], ["10.0.0.5/8"], [])
    assert exc.value.hint == "did you mean 10.0.0.0/8?"
    for bad in ("10.0.0.0/40", "example.org", "10.0.0.0/8/8", ""):
        with pytest.raises(InvalidInput):
            parse(None, [], [], [bad])
    with pytest.raises(InvalidInput, match="twice"):
        parse(None, [], ["10.0.0.0/8", "10.0.0.0/8"], [])


def test_spec_values_must_be_canonical() -> None:
    """A hand-edited spec file is held to the one spelling parse() writes, so specs compare exactly."""
    with pytest.raises(InvalidInput) as exc:
        PublishedPort(80, 80, address="::0001")
    assert exc.value.hint == "write it as ::1"
    with pytest.raises(InvalidInput, match="canonical"):
        NetworkSpec(allow_ip=("fd00:0::/8",))
    with pytest.raises(InvalidInput, match="canonical"):
        Bridge("br0", "fd00:0::2/64")
    with pytest.raises(InvalidInput):
        PublishedPort(True, 80)
    with pytest.raises(InvalidInput, match="exactly for network mode bridge"):
        NetworkSpec(NetworkMode.BRIDGE)
    with pytest.raises(InvalidInput, match="exactly for network mode bridge"):
        NetworkSpec(NetworkMode.NONE, Bridge("br0"))


def test_describe() -> None:
    assert describe(NetworkSpec()) == "none (loopback only)"
    assert "no network isolation" in describe(NetworkSpec(NetworkMode.HOST))
    net = parse("bridge=br0,address=10.0.0.2/24,gateway=10.0.0.1", ["127.0.0.1:8080:80", "53:53/udp"], [], [])
    assert describe(net) == (
        "bridge br0 (10.0.0.2/24, gateway 10.0.0.1); publishes 127.0.0.1:8080->80/tcp, 53->53/udp"
    )
    assert describe(parse("bridge=br0", [], ["10.0.0.0/8"], ["any"])) == (
        "bridge br0 (addressed by the service); allows 10.0.0.0/8; denies any"
    )


# -- the spec file ---------------------------------------------------------------------------------------

ports = st.builds(
    PublishedPort,
    host_port=st.integers(1, 65535),
    port=st.integers(1, 65535),
    protocol=st.sampled_from(Protocol),
    address=st.one_of(st.none(), st.just("127.0.0.1"), st.just("::1"), st.just("10.1.2.3")),
)
filters = st.lists(
    st.sampled_from(["any", "localhost", "10.0.0.0/8", "192.168.1.7", "fd00::/8", "::1"]), unique=True
).map(tuple)
bridges = st.builds(
    Bridge,
    name=st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True),
    address=st.just("10.9.0.5/16"),
    gateway=st.one_of(st.none(), st.just("10.9.0.1")),
) | st.builds(Bridge, name=st.just("br0"))


@st.composite
def networks(draw: st.DrawFn) -> NetworkSpec:
    mode = draw(st.sampled_from(NetworkMode))
    publish: tuple[PublishedPort, ...] = ()
    if mode is not NetworkMode.HOST:
        publish = tuple(draw(st.lists(ports, max_size=3, unique_by=lambda p: (p.host_port, p.protocol))))
    return NetworkSpec(
        mode=mode,
        bridge=draw(bridges) if mode is NetworkMode.BRIDGE else None,
        publish=publish,
        allow_ip=draw(filters),
        deny_ip=draw(filters),
    )


@given(networks())
@settings(max_examples=150)
def test_network_round_trips_through_the_spec_file(net: NetworkSpec) -> None:
    spec = sandbox(network=net)
    assert specfile.loads(specfile.dumps(spec)) == spec


def test_spec_file_refuses_bad_network() -> None:
    text = specfile.dumps(sandbox(network=parse(None, ["8080:80"], [], [])))
    with pytest.raises(InvalidInput, match="out of range"):
        specfile.loads(text.replace("host_port: 8080", "host_port: 0"))
    with pytest.raises(InvalidInput, match="sctp"):
        specfile.loads(text.replace("protocol: tcp", "protocol: sctp"))
    with pytest.raises(InvalidInput, match="cannot be combined"):
        specfile.loads(text.replace("mode: none", "mode: host"))


# -- rendering -------------------------------------------------------------------------------------------


def unit(files: dict[str, str], name: str) -> list[tuple[str, str, str]]:
    return unitparse.lines(files[f"/etc/systemd/system/{name}"])


def values(assignments: list[tuple[str, str, str]], key: str) -> list[str]:
    return [v for _s, k, v in assignments if k == key]


def rendered(spec: SandboxSpec) -> dict[str, str]:
    return {str(p): t for p, t in render.render(spec).items()}


def test_none_is_loopback_only() -> None:
    files = rendered(sandbox())
    svc = unit(files, "sandbox-web.service")
    assert values(svc, "PrivateNetwork") == ["yes"]
    assert values(svc, "NetworkNamespacePath") == []
    assert sorted(files) == [
        "/etc/systemd/system/run-sandbox\\x2dservice-web.mount",
        "/etc/systemd/system/sandbox-web.service",
        "/etc/systemd/system/sandbox-web.slice",
        "/etc/systemd/system/sandbox.slice",
        "/etc/systemd/system/sandbox.target",
    ]


def test_host_has_no_network_namespace() -> None:
    svc = unit(rendered(sandbox(network=NetworkSpec(NetworkMode.HOST))), "sandbox-web.service")
    assert values(svc, "PrivateNetwork") == [] and values(svc, "NetworkNamespacePath") == []


def test_publish_units() -> None:
    spec = sandbox(network=parse(None, ["8080:80", "[::1]:5353:53/udp"], [], []))
    files = rendered(spec)
    svc = unit(files, "sandbox-web.service")
    assert values(svc, "Wants") == ["sandbox-web-publish-8080.socket", "sandbox-web-publish-5353-udp.socket"]
    assert values(svc, "PrivateNetwork") == ["yes"]

    sock = unit(files, "sandbox-web-publish-8080.socket")
    assert values(sock, "ListenStream") == ["8080"]
    assert values(sock, "BindsTo") == ["sandbox-web.service"]
    assert values(sock, "PartOf") == ["sandbox-web.service"]
    assert "sandbox-web.service" in values(sock, "After")
    assert values(sock, "DefaultDependencies") == ["no"]  # no ordering cycle with sockets.target at boot
    assert values(sock, "Slice") == ["sandbox-web.slice"]
    assert values(sock, "Service") == ["sandbox-web-publish-8080.service"]

    proxy = unit(files, "sandbox-web-publish-8080.service")
    assert values(proxy, "JoinsNamespaceOf") == ["sandbox-web.service"]
    assert values(proxy, "PrivateNetwork") == ["yes"]
    assert values(proxy, "BindsTo") == ["sandbox-web.service"]
    assert values(proxy, "PartOf") == ["sandbox-web.service"]
    assert set(values(proxy, "After")) == {"sandbox-web.service", "sandbox-web-publish-8080.socket"}
    assert values(proxy, "Slice") == ["sandbox-web.slice"]
    assert values(proxy, "PrivateTmp") == [] and values(proxy, "DynamicUser") == []
    (start,) = values(proxy, "ExecStart")
    assert unitparse.words(start) == [units.SOCKET_PROXYD, "127.0.0.1:80"]

    udp = unit(files, "sandbox-web-publish-5353-udp.socket")
    assert values(udp, "ListenDatagram") == ["[::1]:5353"]
    assert values(udp, "FreeBind") == ["yes"]
    relay = unit(files, "sandbox-web-publish-5353-udp.service")
    (start,) = values(relay, "ExecStart")
    assert [unitparse.undollar(w) for w in unitparse.words(unitparse.unspecifier(start))] == list(
        udprelay.argv(53)
    )
    for text in files.values():
        unitparse.lines(text)  # nothing systemd would misread


def test_bridge_units() -> None:
    spec = sandbox(network=parse("bridge=br0,address=10.0.0.2/24,gateway=10.0.0.1", ["8080:80"], [], []))
    files = rendered(spec)
    svc = unit(files, "sandbox-web.service")
    assert values(svc, "NetworkNamespacePath") == ["/run/netns/sandbox-web"]
    assert values(svc, "PrivateNetwork") == []
    assert values(svc, "BindsTo") == ["sandbox-web-netns.service"]
    assert "sandbox-web-netns.service" in values(svc, "After")

    netns = unit(files, "sandbox-web-netns.service")
    assert values(netns, "Type") == ["oneshot"] and values(netns, "RemainAfterExit") == ["yes"]
    assert values(netns, "StopWhenUnneeded") == ["yes"]
    assert values(netns, "PartOf") == ["sandbox-web.service"]
    assert values(netns, "Before") == ["sandbox-web.service"]
    starts = [unitparse.words(v) for v in values(netns, "ExecStart")]
    assert starts[0] == [units.IP, "netns", "add", "sandbox-web"]
    assert starts[1][:4] == [units.IP, "link", "add", "sb-web"] and starts[1][-2:] == ["netns", "sandbox-web"]
    assert [units.IP, "link", "set", "dev", "sb-web", "alias", "sandbox-web", "master", "br0", "up"] in starts
    assert [units.IP, "-n", "sandbox-web", "-4", "address", "add", "10.0.0.2/24", "dev", "eth0"] in starts
    assert starts[-1] == [
        *(units.IP, "-n", "sandbox-web", "-4", "route", "add", "default", "via", "10.0.0.1", "dev", "eth0")
    ]
    stop = [unitparse.words(v) for v in values(netns, "ExecStopPost")]
    assert stop == [
        ["-" + units.IP, "netns", "delete", "sandbox-web"],
        ["-" + units.IP, "link", "delete", "sb-web"],
    ]
    assert [unitparse.words(v) for v in values(netns, "ExecStartPre")] == stop

    proxy = unit(files, "sandbox-web-publish-8080.service")
    assert values(proxy, "NetworkNamespacePath") == ["/run/netns/sandbox-web"]
    assert values(proxy, "JoinsNamespaceOf") == [] and values(proxy, "PrivateNetwork") == []


def test_bridge_without_address_leaves_addressing_to_the_service() -> None:
    files = rendered(sandbox(network=parse("bridge=br0", [], [], [])))
    starts = [unitparse.words(v) for v in values(unit(files, "sandbox-web-netns.service"), "ExecStart")]
    assert not any("route" in s or ("address", "add") in itertools.pairwise(s) for s in starts)
    v6 = rendered(sandbox(network=parse("bridge=br0,address=fd00::2/64,gateway=fd00::1", [], [], [])))
    starts = [unitparse.words(v) for v in values(unit(v6, "sandbox-web-netns.service"), "ExecStart")]
    assert [
        units.IP,
        "-n",
        "sandbox-web",
        "-6",
        "address",
        "add",
        "fd00::2/64",
        "dev",
        "eth0",
        "nodad",
    ] in starts


def test_veth_names_fit_and_differ() -> None:
    assert units.host_veth("web") == "sb-web"
    assert units.host_veth("x" * 12) == "sb-" + "x" * 12
    long_a, long_b = units.host_veth("a" * 13), units.host_veth("a" * 14)
    assert len(long_a) == len(long_b) == 15 and long_a != long_b and long_a.startswith("sb.")
    mac = units.stable_mac("web", "inner")
    assert mac == units.stable_mac("web", "inner") != units.stable_mac("web", "host")
    assert int(mac[:2], 16) & 0b11 == 0b10  # locally administered, unicast


def test_ip_filters_render() -> None:
    svc = unit(rendered(sandbox(network=parse(None, [], ["10.0.0.0/8"], ["any"]))), "sandbox-web.service")
    assert values(svc, "IPAddressAllow") == ["10.0.0.0/8"]
    assert values(svc, "IPAddressDeny") == ["any"]
    # a published port arrives over the sandbox's loopback: a deny list must not cut it off
    svc = unit(rendered(sandbox(network=parse(None, ["8080:80"], [], ["any"]))), "sandbox-web.service")
    assert values(svc, "IPAddressAllow") == ["localhost"]
    profile = Security("nonetwork", directives=(Directive("IPAddressDeny", "any"),))
    svc = unit(
        rendered(sandbox(network=parse(None, ["8080:80"], [], []), security=profile)), "sandbox-web.service"
    )
    assert values(svc, "IPAddressAllow") == ["localhost"]
    svc = unit(rendered(sandbox(network=parse(None, ["8080:80"], [], []))), "sandbox-web.service")
    assert values(svc, "IPAddressAllow") == []


def test_every_network_unit_is_ours_for_delete() -> None:
    """delete removes what render() lists and carries this sandbox's marker line."""
    spec = sandbox(network=parse("bridge=br0", ["8080:80", "53:53/udp"], [], []))
    files = render.render(spec)
    extra = units.extra_units(spec)
    assert set(extra) <= set(files)
    assert len(extra) == 5
    for text in extra.values():
        assert text.startswith(render.marker_line("web") + "\n")


# -- host checks -----------------------------------------------------------------------------------------


@pytest.fixture()
def image(tmp_path: Path) -> Layout:
    """An offline image with the programs the network units run."""
    for prog in (units.SOCKET_PROXYD, units.IP, udprelay.PYTHON):
        target = tmp_path / prog.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    return Layout(tmp_path)


def test_a_host_port_is_published_by_one_sandbox(image: Layout) -> None:
    web = sandbox("web", parse(None, ["8080:80", "127.0.0.1:9000:90", "53:53/udp"], [], []))
    ok = [
        sandbox("b", parse(None, ["8081:80"], [], [])),
        sandbox("c", parse(None, ["10.0.0.1:9000:80"], [], [])),  # another address
        sandbox("d", parse(None, ["8080:80/udp", "53:53/tcp"], [], [])),  # another protocol
        sandbox("web", parse(None, ["8080:80"], [], [])),  # itself (create --exist-ok)
    ]
    checks.check_host(web, ok, image)
    checks.check_host(sandbox("v6", parse(None, ["[::1]:9000:90"], [], [])), [web], image)
    for taken in (
        "8080:1",
        "127.0.0.1:8080:1",
        "9000:1",
        "127.0.0.1:9000:1",
        "0.0.0.0:9000:1",
        "[::]:9000:1",
        "53:1/udp",
    ):
        with pytest.raises(AlreadyExists) as exc:
            checks.check_host(web, [sandbox("other", parse(None, [taken], [], []))], image)
        assert "already published by sandbox 'other'" in exc.value.message


def test_publish_needs_a_profile_with_ip_sockets(image: Layout) -> None:
    net = parse(None, ["8080:80"], [], [])
    local_only = Security("nonetwork", directives=(Directive("RestrictAddressFamilies", "AF_UNIX"),))
    with pytest.raises(InvalidInput, match="--publish needs IP sockets") as exc:
        checks.check_host(sandbox(network=net, security=local_only), [], image)
    assert "profile 'nonetwork'" in exc.value.message
    checks.check_host(sandbox(network=NetworkSpec(), security=local_only), [], image)
    for value in ("AF_UNIX AF_INET", "AF_INET6", "~AF_PACKET"):
        ok = Security("x", directives=(Directive("RestrictAddressFamilies", value),))
        checks.check_host(sandbox(network=net, security=ok), [], image)


def test_missing_programs(tmp_path: Path) -> None:
    empty = Layout(tmp_path)
    checks.check_host(sandbox(), [], empty)
    checks.check_host(sandbox(network=NetworkSpec(NetworkMode.HOST)), [], empty)
    for net, missing in (
        (parse(None, ["80:80"], [], []), units.SOCKET_PROXYD),
        (parse(None, ["80:80/udp"], [], []), udprelay.PYTHON),
        (parse("bridge=br0", [], [], []), units.IP),
    ):
        with pytest.raises(NotFound) as exc:
            checks.check_host(sandbox(network=net), [], empty)
        assert missing in exc.value.message


def test_bridge_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Layout) -> None:
    sys_net = tmp_path / "sys-class-net"
    (sys_net / "br0" / "bridge").mkdir(parents=True)
    (sys_net / "eth0").mkdir()
    monkeypatch.setattr(checks, "SYS_CLASS_NET", sys_net)
    live = Layout(Path("/"))
    monkeypatch.setattr(checks, "check_programs", lambda spec, layout: None)
    checks.check_host(sandbox(network=parse("bridge=br0", [], [], [])), [], live)
    with pytest.raises(NotFound, match="bridge 'br9' does not exist"):
        checks.check_host(sandbox(network=parse("bridge=br9", [], [], [])), [], live)
    with pytest.raises(InvalidInput, match="not a bridge"):
        checks.check_host(sandbox(network=parse("bridge=eth0", [], [], [])), [], live)
    # an image's bridges cannot be seen from here: they exist when it boots
    checks.check_host(sandbox(network=parse("bridge=br9", [], [], [])), [], image)

    a = sandbox("a", parse("bridge=br0,address=10.0.0.2/24", [], [], []))
    same = sandbox("b", parse("bridge=br0,address=10.0.0.2/16", [], [], []))
    with pytest.raises(AlreadyExists, match=r"10\.0\.0\.2 is already used by sandbox 'a'"):
        checks.check_host(same, [a], live)
    checks.check_host(sandbox("b", parse("bridge=br0,address=10.0.0.3/24", [], [], [])), [a], live)
    checks.check_host(sandbox("b", parse("bridge=br0", [], [], [])), [a], live)


# -- the UDP relay ---------------------------------------------------------------------------------------


def python_for_relay() -> str:
    return udprelay.PYTHON if os.path.exists(udprelay.PYTHON) else sys.executable


@pytest.fixture()
def echo_server() -> Iterator[int]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(0.1)
    import threading

    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = srv.recvfrom(4096)
                srv.sendto(b"echo:" + data, addr)
            except OSError:  # the timeout, or an ICMP error of an earlier answer
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def test_udp_relay_as_the_unit_runs_it(echo_server: int) -> None:
    """The ExecStart= words of the rendered relay unit, run with a datagram socket as fd 3 the way systemd
    passes it: every client gets its own answers."""
    spec = sandbox(network=parse(None, [f"127.0.0.1:9999:{echo_server}/udp"], [], []))
    text = rendered(spec)["/etc/systemd/system/sandbox-web-publish-9999-udp.service"]
    (start,) = values(unitparse.lines(text), "ExecStart")
    argv = [unitparse.undollar(w) for w in unitparse.words(unitparse.unspecifier(start))]
    argv[0] = python_for_relay()

    outer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    outer.bind(("127.0.0.1", 0))
    fd = outer.fileno()
    # what systemd does: the socket as fd 3, LISTEN_FDS=1 and LISTEN_PID naming the program's own PID
    as_systemd = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); "
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); os.execv(sys.argv[2], sys.argv[2:])"
    )
    relay = subprocess.Popen(
        [sys.executable, "-c", as_systemd, str(fd), *argv],
        env={"PATH": "/usr/bin:/bin"},
        pass_fds=(fd,),
        stderr=subprocess.PIPE,
    )
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for round_ in range(2):
            for i, c in enumerate(clients):
                c.settimeout(5)
                c.sendto(f"{i}-{round_}".encode(), outer.getsockname())
            for i, c in enumerate(clients):
                assert c.recv(4096) == f"echo:{i}-{round_}".encode()
    finally:
        relay.kill()
        _out, err = relay.communicate()
        for c in clients:
            c.close()
        outer.close()
    assert b"Traceback" not in err, err.decode()


def test_udp_relay_refuses_to_run_without_a_socket() -> None:
    done = subprocess.run(
        [python_for_relay(), *udprelay.argv(53)[1:]], capture_output=True, text=True, env={}, timeout=30
    )
    assert done.returncode == 1 and "expected one socket from systemd" in done.stderr


def test_relay_program_is_one_unit_line() -> None:
    assert all(ord(c) >= 0x20 for c in "".join(udprelay.argv(53)))
    assert shutil.which(python_for_relay())


def test_replace_keeps_network_valid() -> None:
    spec = sandbox(network=parse(None, ["8080:80"], [], []))
    with pytest.raises(InvalidInput):
        replace(spec.network, mode=NetworkMode.HOST)
