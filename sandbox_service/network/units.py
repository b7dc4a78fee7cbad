"""What a sandbox's network mode adds to its units: lines in sandbox-NAME.service, and extra units.

- none: ``PrivateNetwork=yes`` (loopback only).
- host: nothing (the host's network namespace).
- bridge: a oneshot ``sandbox-NAME-netns.service`` makes the named namespace ``sandbox-NAME`` with a veth
  pair (host end in the bridge, ``eth0`` inside) and removes both when it stops; the service is bound to
  it and joins it with ``NetworkNamespacePath=``.
- each published port: ``sandbox-NAME-publish-HOSTPORT[-udp].socket`` listens on the host and activates
  the same-named service, which runs in the sandbox's network namespace and forwards to 127.0.0.1:PORT
  there (systemd-socket-proxyd for TCP, the relay of udprelay.py for UDP). The sandbox service Wants=
  the socket, so starting the sandbox (by hand, or at boot when it is enabled) brings the port up; socket
  and proxy are BindsTo=/PartOf= the service, so stopping or restarting it takes them along.

Pure: spec in, text out. Every value passes through escape.py on its way into a unit.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

import jinja2

from .. import escape
from ..identity import account_name
from ..paths import UNIT_DIR, service_unit, slice_unit, unit_base
from ..resources import data_dir
from ..spec import ExecCommand, ExecFlag, SandboxSpec
from . import udprelay
from .model import NetworkMode, Protocol, PublishedPort

SOCKET_PROXYD = "/usr/lib/systemd/systemd-socket-proxyd"
IP = "/usr/sbin/ip"
INNER_IFNAME = "eth0"


def netns_name(name: str) -> str:
    """The named network namespace of a bridged sandbox (``ip netns`` name, under /run/netns)."""
    return unit_base(name)


def netns_path(name: str) -> str:
    return f"/run/netns/{netns_name(name)}"


def netns_unit(name: str) -> str:
    return f"{unit_base(name)}-netns.service"


def host_veth(name: str) -> str:
    """Host end of a bridged sandbox's veth pair: ``sb-NAME`` when that fits in 15 bytes, else ``sb.``
    and a hash of the name (a '.' never occurs in sandbox names, so the two forms cannot collide)."""
    short = f"sb-{name}"
    if len(short) <= 15:
        return short
    return "sb." + hashlib.sha256(name.encode()).hexdigest()[:12]


def stable_mac(name: str, end: str) -> str:
    """A locally administered unicast MAC address derived from the sandbox name and the veth end
    ("host" or "inner"): the same after every restart, so peers' ARP caches stay valid."""
    raw = bytearray(hashlib.sha256(f"sandbox-service:{name}:{end}".encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def publish_unit_base(name: str, port: PublishedPort) -> str:
    suffix = "-udp" if port.protocol is Protocol.UDP else ""
    return f"{unit_base(name)}-publish-{port.host_port}{suffix}"


def publish_units(name: str, port: PublishedPort) -> tuple[str, str]:
    """(socket unit, proxy service unit) of one published port."""
    base = publish_unit_base(name, port)
    return f"{base}.socket", f"{base}.service"


def unit_lines(spec: SandboxSpec) -> tuple[tuple[str, str], ...]:
    """(key, rendered value) pairs for the [Unit] section of sandbox-NAME.service."""
    lines: list[tuple[str, str]] = []
    net = spec.network
    if net.mode is NetworkMode.BRIDGE:
        lines += [("BindsTo", netns_unit(spec.name)), ("After", netns_unit(spec.name))]
    for port in net.publish:
        lines.append(("Wants", publish_units(spec.name, port)[0]))
    return tuple((key, escape.plain(key, value)) for key, value in lines)


def _denies_something(spec: SandboxSpec) -> bool:
    return bool(spec.network.deny_ip) or any(d.key == "IPAddressDeny" for d in spec.security.directives)


def service_lines(spec: SandboxSpec) -> tuple[tuple[str, str], ...]:
    """(key, rendered value) pairs for the [Service] section; values are already escaped."""
    net = spec.network
    lines: list[tuple[str, str]] = []
    if net.mode is NetworkMode.NONE:
        lines.append(("PrivateNetwork", "yes"))
    elif net.mode is NetworkMode.BRIDGE:
        lines.append(("NetworkNamespacePath", netns_path(spec.name)))
    allow = list(net.allow_ip)
    # Published ports arrive from the proxy over the sandbox's loopback: keep that open under any deny list.
    if net.publish and _denies_something(spec) and "localhost" not in allow:
        allow.append("localhost")
    if allow:
        lines.append(("IPAddressAllow", " ".join(allow)))
    if net.deny_ip:
        lines.append(("IPAddressDeny", " ".join(net.deny_ip)))
    return tuple((key, escape.plain(key, value)) for key, value in lines)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # unit files; escape.py does the escaping that matters
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["plain"] = lambda value, what="value": escape.plain(what, str(value))
    env.filters["exec"] = escape.exec_line
    return env


_ENV: jinja2.Environment | None = None


def _render(template: str, **values: object) -> str:
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    # render.py imports this module; its marker is looked up when rendering, once both are loaded
    from ..render import marker_line

    return _ENV.get_template(template).render(**values, marker=marker_line(str(values["name"])))


def _cmd(*argv: str, ignore_failure: bool = False) -> ExecCommand:
    flags = (ExecFlag.IGNORE_FAILURE,) if ignore_failure else ()
    return ExecCommand(path=argv[0], argv=argv, flags=flags, expand_env=False)


def proxy_command(port: PublishedPort) -> ExecCommand:
    if port.protocol is Protocol.UDP:
        return _cmd(*udprelay.argv(port.port))
    return _cmd(SOCKET_PROXYD, f"127.0.0.1:{port.port}")


def _publish_units(spec: SandboxSpec, port: PublishedPort) -> dict[str, str]:
    name = spec.name
    socket, proxy = publish_units(name, port)
    common = {
        "name": name,
        "service": service_unit(name),
        "slice": slice_unit(name),
        "socket": socket,
        "proxy": proxy,
        "port": port,
        "bridged": spec.network.mode is NetworkMode.BRIDGE,
        "netns_path": netns_path(name),
        "account": account_name(name) if spec.id_base is not None else None,
    }
    return {
        socket: _render(
            "publish-socket.j2",
            **common,
            listen_key="ListenDatagram" if port.protocol is Protocol.UDP else "ListenStream",
            listen=port.listen(),
        ),
        proxy: _render(
            "publish-service.j2",
            **common,
            command=proxy_command(port),
            udp=port.protocol is Protocol.UDP,
        ),
    }


def netns_commands(spec: SandboxSpec) -> dict[str, tuple[ExecCommand, ...]]:
    """ExecStartPre=/ExecStart=/ExecStopPost= of sandbox-NAME-netns.service."""
    bridge = spec.network.bridge
    assert bridge is not None
    ns, veth, inner = netns_name(spec.name), host_veth(spec.name), INNER_IFNAME
    cleanup = (
        _cmd(IP, "netns", "delete", ns, ignore_failure=True),
        _cmd(IP, "link", "delete", veth, ignore_failure=True),
    )
    start = [
        _cmd(IP, "netns", "add", ns),
        _cmd(
            IP,
            *("link", "add", veth, "address", stable_mac(spec.name, "host"), "type", "veth"),
            *("peer", "name", inner, "address", stable_mac(spec.name, "inner"), "netns", ns),
        ),
        _cmd(IP, "link", "set", "dev", veth, "alias", unit_base(spec.name), "master", bridge.name, "up"),
        _cmd(IP, "-n", ns, "link", "set", "dev", "lo", "up"),
        _cmd(IP, "-n", ns, "link", "set", "dev", inner, "up"),
    ]
    if bridge.address is not None:
        v6 = bridge.interface().version == 6
        family = ("-6",) if v6 else ("-4",)
        # nodad: an IPv6 address is usable at once, so a service binding to it at start does not fail
        start.append(
            _cmd(
                IP,
                "-n",
                ns,
                *family,
                "address",
                "add",
                bridge.address,
                "dev",
                inner,
                *(("nodad",) if v6 else ()),
            )
        )
        if bridge.gateway is not None:
            start.append(
                _cmd(IP, "-n", ns, *family, "route", "add", "default", "via", bridge.gateway, "dev", inner)
            )
    return {"ExecStartPre": cleanup, "ExecStart": tuple(start), "ExecStopPost": cleanup}


def _netns_unit(spec: SandboxSpec) -> str:
    bridge = spec.network.bridge
    assert bridge is not None
    return _render(
        "netns-service.j2",
        name=spec.name,
        service=service_unit(spec.name),
        slice=slice_unit(spec.name),
        bridge=bridge,
        netns=netns_name(spec.name),
        veth=host_veth(spec.name),
        commands=netns_commands(spec),
    )


def extra_units(spec: SandboxSpec) -> dict[PurePosixPath, str]:
    """Further units the network mode needs (socket/proxy pairs, namespace setup), by absolute path."""
    unit_dir = PurePosixPath(str(UNIT_DIR))
    files: dict[str, str] = {}
    if spec.network.mode is NetworkMode.BRIDGE:
        files[netns_unit(spec.name)] = _netns_unit(spec)
    for port in spec.network.publish:
        files.update(_publish_units(spec, port))
    return {unit_dir / unit: text for unit, text in files.items()}
