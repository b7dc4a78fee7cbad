"""The network part of the spec, and parsing of the command-line forms into it."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidInput


class NetworkMode(enum.Enum):
    NONE = "none"  # a private network namespace with loopback only
    HOST = "host"  # the host's network namespace
    BRIDGE = "bridge"  # a private namespace with a veth pair into a host bridge


@dataclass(frozen=True)
class NetworkSpec:
    mode: NetworkMode = NetworkMode.NONE

    def __post_init__(self) -> None:
        pass


def parse(
    network: str | None, publish: Sequence[str], allow_ip: Sequence[str], deny_ip: Sequence[str]
) -> NetworkSpec:
    """Build a NetworkSpec from the create options; anything malformed is refused here."""
    if network in (None, "none"):
        return NetworkSpec()
    if network == "host":
        return NetworkSpec(NetworkMode.HOST)
    raise InvalidInput(f"unknown network mode {network!r}", "use none, host or bridge=BR")


def describe(net: NetworkSpec) -> str:
    """One line for `status`."""
    if net.mode is NetworkMode.HOST:
        return "host (shares the host's network: no network isolation)"
    return "none (loopback only)"
