"""Checks of a network spec against the host and the other sandboxes, done before anything is written."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol as Interface

from .. import security
from ..errors import AlreadyExists, InvalidInput, NotFound
from ..paths import Layout
from ..spec import SandboxSpec
from . import udprelay
from .model import NetworkMode, NetworkSpec, Protocol, PublishedPort
from .units import IP, SOCKET_PROXYD, host_veth

SYS_CLASS_NET = Path("/sys/class/net")


class Neighbour(Interface):
    """What the checks need of the other sandboxes: a SandboxSpec, or its summary (index.Summary)."""

    @property
    def name(self) -> str: ...

    @property
    def network(self) -> NetworkSpec: ...


def _addresses_clash(a: str | None, b: str | None) -> bool:
    """Whether sockets bound to the two addresses (None: every address) would take the same port: the
    same address, or a wildcard one covers the other (0.0.0.0 covers IPv4; :: and None cover both, as a
    dual-stack IPv6 socket does)."""
    if a is None or b is None:
        return True
    x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    if x == y:
        return True
    return any(u.is_unspecified and u.version in (o.version, 6) for u, o in ((x, y), (y, x)))


def _overlaps(a: PublishedPort, b: PublishedPort) -> bool:
    """Whether two published ports want the same host socket."""
    return a.protocol is b.protocol and a.host_port == b.host_port and _addresses_clash(a.address, b.address)


def check_publish(spec: SandboxSpec, others: Sequence[Neighbour]) -> None:
    for port in spec.network.publish:
        for other in others:
            for taken in other.network.publish:
                if _overlaps(port, taken):
                    raise AlreadyExists(
                        f"host port {port.host_port}/{port.protocol.value} is already published by sandbox "
                        f"{other.name!r} ({taken})",
                        f"choose another host port, or delete sandbox {other.name!r} first",
                    )


def check_profile(spec: SandboxSpec) -> None:
    """A published port reaches the service over IP: refuse a profile that leaves it no IP sockets."""
    if not spec.network.publish:
        return
    if not security.allows_ip(spec.security.directives):
        families = " ".join(sorted(security.allowed_families(spec.security.directives) or ()))
        raise InvalidInput(
            f"--publish needs IP sockets, but profile {spec.security.profile!r} allows the service only "
            f"{families or 'no socket families'}",
            "choose a profile that allows AF_INET (such as default), or drop --publish",
        )


def check_bridge(spec: SandboxSpec, others: Sequence[Neighbour], layout: Layout) -> None:
    bridge = spec.network.bridge
    if spec.network.mode is not NetworkMode.BRIDGE or bridge is None:
        return
    # Only the running system's bridges can be checked; an image's (--root) exist when it boots.
    if layout.root == Path("/"):
        dev = SYS_CLASS_NET / bridge.name
        if not dev.exists():
            raise NotFound(
                f"bridge {bridge.name!r} does not exist",
                f"create it first (ip link add {bridge.name} type bridge; ip link set {bridge.name} up), "
                "and make it permanent with systemd-networkd or ifupdown so it exists at boot",
            )
        if not (dev / "bridge").is_dir():
            raise InvalidInput(
                f"network interface {bridge.name!r} is not a bridge",
                "--network bridge=BR needs a Linux bridge to put the sandbox's veth into",
            )
    veth = host_veth(spec.name)
    mine = bridge.interface().ip if bridge.address else None
    for other in others:
        ob = other.network.bridge
        if other.network.mode is not NetworkMode.BRIDGE or ob is None:
            continue
        if host_veth(other.name) == veth:
            raise AlreadyExists(
                f"sandbox {other.name!r} already uses the interface name {veth}",
                "choose another sandbox name",
            )
        if mine is not None and ob.address and ob.name == bridge.name and ob.interface().ip == mine:
            raise AlreadyExists(
                f"address {mine} is already used by sandbox {other.name!r} on bridge {bridge.name}",
                "give each sandbox on a bridge its own address",
            )


def _need_program(layout: Layout, path: str, why: str, hint: str) -> None:
    if not (layout.host(path).exists() or layout.host(path).is_symlink()):
        raise NotFound(f"{path} is not installed: {why}", hint)


def check_programs(spec: SandboxSpec, layout: Layout) -> None:
    protocols = {p.protocol for p in spec.network.publish}
    if Protocol.TCP in protocols:
        _need_program(
            layout,
            SOCKET_PROXYD,
            "it forwards published TCP ports into the sandbox",
            "install systemd's systemd-socket-proxyd (part of the systemd package on Debian and Fedora)",
        )
    if Protocol.UDP in protocols:
        _need_program(
            layout,
            udprelay.PYTHON,
            "it runs the relay of published UDP ports",
            "install python3, or publish TCP ports only",
        )
    if spec.network.mode is NetworkMode.BRIDGE:
        _need_program(
            layout, IP, "it sets up the sandbox's network namespace and veth pair", "install iproute2"
        )


def check_host(spec: SandboxSpec, others: Sequence[Neighbour], layout: Layout) -> None:
    """Refuse (InvalidInput/AlreadyExists/NotFound) what cannot work: a host port another sandbox
    publishes, a bridge that does not exist, an address another sandbox on the bridge has, a program the
    units need that is missing."""
    others = [o for o in others if o.name != spec.name]
    check_publish(spec, others)
    check_profile(spec)
    check_bridge(spec, others, layout)
    check_programs(spec, layout)
