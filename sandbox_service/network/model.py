"""The network part of the spec, and parsing of the command-line forms into it.

Every value is stored in one canonical spelling (``127.0.0.1``, ``10.0.0.0/8``, ``fd00::2/64``), so two
specs that mean the same network compare equal and the spec file round-trips exactly. ``parse`` turns
what a user typed into that spelling; the dataclasses refuse anything else (a hand-edited spec file).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidInput

PORT_MIN, PORT_MAX = 1, 65535
# IPAddressAllow=/IPAddressDeny= keywords of systemd.resource-control(5), besides addresses and prefixes
IP_KEYWORDS = ("any", "localhost", "link-local", "multicast")
# A Linux interface name: at most 15 bytes (IFNAMSIZ - 1); we allow the characters bridges are named with.
_IFNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
PUBLISH_FORM = "[ADDR:]HOSTPORT:PORT[/tcp|/udp]"
BRIDGE_FORM = "bridge=BR[,address=IP/PREFIX][,gateway=IP]"


class NetworkMode(enum.Enum):
    NONE = "none"  # a private network namespace with loopback only
    HOST = "host"  # the host's network namespace
    BRIDGE = "bridge"  # a private namespace with a veth pair into a host bridge


class Protocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"


def _canonical_address(what: str, value: str) -> str:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidInput(
            f"{what} {value!r} is not an IPv4 or IPv6 address",
            "write the address in numbers, such as 127.0.0.1 or ::1 (names are not resolved)",
        ) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        raise InvalidInput(
            f"{what} {value!r} has a zone index, which cannot be used here",
            "use an address without %ZONE",
        )
    return str(addr)


def _canonical_filter(what: str, value: str) -> str:
    """An IPAddressAllow=/IPAddressDeny= entry: a keyword, an address, or a prefix without host bits."""
    if value in IP_KEYWORDS:
        return value
    if "/" not in value:
        return _canonical_address(what, value)
    try:
        net = ipaddress.ip_network(value)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise InvalidInput(
                f"{what} {value!r} is not an address or CIDR prefix",
                "use e.g. 10.0.0.0/8, 192.168.1.7, fd00::/8, or one of " + ", ".join(IP_KEYWORDS),
            ) from None
        raise InvalidInput(f"{what} {value!r} has host bits set", f"did you mean {loose}?") from None
    return str(net)


def _require_canonical(what: str, value: str, canonical: str) -> None:
    if value != canonical:
        raise InvalidInput(f"{what} {value!r} is not written in canonical form", f"write it as {canonical}")


def _check_port(what: str, value: int) -> None:
    if isinstance(value, bool) or not PORT_MIN <= value <= PORT_MAX:
        raise InvalidInput(f"{what} {value} is out of range", f"use a port from {PORT_MIN} to {PORT_MAX}")


@dataclass(frozen=True)
class PublishedPort:
    """A host port whose connections (or datagrams) reach a port on the sandbox's loopback."""

    host_port: int
    port: int
    protocol: Protocol = Protocol.TCP
    address: str | None = None  # the host address listened on; None: every address

    def __post_init__(self) -> None:
        _check_port("host port", self.host_port)
        _check_port("sandbox port", self.port)
        if self.address is not None:
            what = f"address of published port {self.host_port}"
            _require_canonical(what, self.address, _canonical_address(what, self.address))

    def listen(self) -> str:
        """The host side as ListenStream=/ListenDatagram= takes it."""
        if self.address is None:
            return str(self.host_port)
        if ":" in self.address:
            return f"[{self.address}]:{self.host_port}"
        return f"{self.address}:{self.host_port}"

    def __str__(self) -> str:
        return f"{self.listen()}->{self.port}/{self.protocol.value}"


@dataclass(frozen=True)
class Bridge:
    """A host bridge the sandbox's veth pair joins, and optionally a static address inside."""

    name: str
    address: str | None = None  # IP/PREFIX of the sandbox's eth0; None: the service configures it
    gateway: str | None = None  # default route inside; needs address, in its subnet

    def __post_init__(self) -> None:
        if not _IFNAME_RE.fullmatch(self.name):
            raise InvalidInput(
                f"invalid bridge name {self.name!r}",
                "a network interface name has 1 to 15 letters, digits, '_', '.' and '-'",
            )
        if self.address is not None:
            iface = self.interface()
            _require_canonical("bridge address", self.address, str(iface))
            net = iface.network
            if (
                iface.version == 4
                and net.prefixlen <= 30
                and iface.ip
                in (
                    net.network_address,
                    net.broadcast_address,
                )
            ):
                raise InvalidInput(
                    f"bridge address {self.address} is the network or broadcast address of {net}",
                    "choose a host address inside the subnet",
                )
        if self.gateway is not None:
            gw = _canonical_address("gateway", self.gateway)
            _require_canonical("gateway", self.gateway, gw)
            if self.address is None:
                raise InvalidInput(
                    "gateway= needs address=",
                    "without a static address the service configures its own network (e.g. by DHCP)",
                )
            iface = self.interface()
            gw_ip = ipaddress.ip_address(gw)
            if gw_ip.version != iface.version or gw_ip not in iface.network:
                raise InvalidInput(
                    f"gateway {gw} is not in the sandbox's subnet {iface.network}",
                    "the gateway must be reachable on the bridge: give an address inside the subnet",
                )
            if gw_ip == iface.ip:
                raise InvalidInput(f"gateway {gw} is the sandbox's own address")

    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        assert self.address is not None
        try:
            return ipaddress.ip_interface(self.address)
        except ValueError:
            raise InvalidInput(
                f"bridge address {self.address!r} is not IP/PREFIX", "e.g. address=10.0.0.2/24"
            ) from None


@dataclass(frozen=True)
class NetworkSpec:
    mode: NetworkMode = NetworkMode.NONE
    bridge: Bridge | None = None  # set exactly when mode is BRIDGE
    publish: tuple[PublishedPort, ...] = ()
    allow_ip: tuple[str, ...] = ()  # IPAddressAllow=
    deny_ip: tuple[str, ...] = ()  # IPAddressDeny=

    def __post_init__(self) -> None:
        if (self.mode is NetworkMode.BRIDGE) != (self.bridge is not None):
            raise InvalidInput("a bridge is given exactly for network mode bridge")
        if self.mode is NetworkMode.HOST and self.publish:
            raise InvalidInput(
                "--network host cannot be combined with --publish",
                "with the host's network the service's ports are host ports already; drop --publish",
            )
        seen: set[tuple[int, Protocol]] = set()
        for p in self.publish:
            key = (p.host_port, p.protocol)
            if key in seen:
                raise InvalidInput(
                    f"host port {p.host_port}/{p.protocol.value} is published twice",
                    "publish each host port once per protocol",
                )
            seen.add(key)
        for what, values in (("--allow-ip", self.allow_ip), ("--deny-ip", self.deny_ip)):
            for v in values:
                _require_canonical(what, v, _canonical_filter(what, v))
            if len(set(values)) != len(values):
                raise InvalidInput(f"{what} lists an entry twice: {' '.join(values)}")


def parse_publish(text: str) -> PublishedPort:
    """``[ADDR:]HOSTPORT:PORT[/tcp|/udp]``; an IPv6 ADDR is written in brackets."""

    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"malformed --publish {text!r}: {why}", f"use {PUBLISH_FORM}, e.g. 8080:80")

    body, slash, proto_text = text.partition("/")
    protocol = Protocol.TCP
    if slash:
        try:
            protocol = Protocol(proto_text.lower())
        except ValueError:
            raise bad(f"unknown protocol {proto_text!r} (tcp or udp)") from None
    address: str | None = None
    if body.startswith("["):
        inner, bracket, rest = body[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise bad("an IPv6 address in brackets must be followed by ':HOSTPORT:PORT'")
        address = _canonical_address("--publish address", inner)
        parts = rest[1:].split(":")
        if len(parts) != 2:
            raise bad("expected HOSTPORT:PORT after the address")
    else:
        parts = body.split(":")
        if len(parts) == 3:
            address = _canonical_address("--publish address", parts.pop(0))
        elif len(parts) != 2:
            raise bad("expected HOSTPORT:PORT (write an IPv6 address in brackets: [::1]:8080:80)")
    for part in parts:
        if not part.isascii() or not part.isdigit():
            raise bad(f"{part!r} is not a port number")
    return PublishedPort(int(parts[0]), int(parts[1]), protocol, address)


def parse_bridge(value: str) -> Bridge:
    """The part after ``bridge=``: ``BR[,address=IP/PREFIX][,gateway=IP]``."""
    name, *options = value.split(",")
    fields: dict[str, str] = {}
    for opt in options:
        key, eq, val = opt.partition("=")
        if not eq or key not in ("address", "gateway"):
            raise InvalidInput(f"unknown bridge option {opt!r}", f"use --network {BRIDGE_FORM}")
        if key in fields:
            raise InvalidInput(f"bridge option {key}= is given twice")
        fields[key] = val
    address = fields.get("address")
    if address is not None:
        if "/" not in address:
            raise InvalidInput(
                f"bridge address {address!r} has no prefix length", f"write it as {address}/24 or similar"
            )
        try:
            address = str(ipaddress.ip_interface(address))
        except ValueError:
            raise InvalidInput(f"bridge address {address!r} is not IP/PREFIX", "e.g. 10.0.0.2/24") from None
    gateway = fields.get("gateway")
    if gateway is not None:
        gateway = _canonical_address("gateway", gateway)
    return Bridge(name, address, gateway)


def parse(
    network: str | None, publish: Sequence[str], allow_ip: Sequence[str], deny_ip: Sequence[str]
) -> NetworkSpec:
    """Build a NetworkSpec from the create options; anything malformed is refused here."""
    bridge = None
    if network in (None, "none"):
        mode = NetworkMode.NONE
    elif network == "host":
        mode = NetworkMode.HOST
    elif network.startswith("bridge="):
        mode = NetworkMode.BRIDGE
        bridge = parse_bridge(network.removeprefix("bridge="))
    else:
        raise InvalidInput(f"unknown network mode {network!r}", f"use none, host or {BRIDGE_FORM}")
    return NetworkSpec(
        mode=mode,
        bridge=bridge,
        publish=tuple(parse_publish(p) for p in publish),
        allow_ip=tuple(_canonical_filter("--allow-ip", v) for v in allow_ip),
        deny_ip=tuple(_canonical_filter("--deny-ip", v) for v in deny_ip),
    )


def describe(net: NetworkSpec) -> str:
    """One line for `status`."""
    if net.mode is NetworkMode.HOST:
        parts = ["host (shares the host's network: no network isolation)"]
    elif net.mode is NetworkMode.BRIDGE and net.bridge is not None:
        addressing = net.bridge.address or "addressed by the service"
        via = f", gateway {net.bridge.gateway}" if net.bridge.gateway else ""
        parts = [f"bridge {net.bridge.name} ({addressing}{via})"]
    else:
        parts = ["none (loopback only)"]
    if net.publish:
        parts.append("publishes " + ", ".join(str(p) for p in net.publish))
    if net.allow_ip:
        parts.append("allows " + " ".join(net.allow_ip))
    if net.deny_ip:
        parts.append("denies " + " ".join(net.deny_ip))
    return "; ".join(parts)
