"""What a sandbox's network mode adds to its units: lines in sandbox-NAME.service, and extra units."""

from __future__ import annotations

from pathlib import PurePosixPath

from ..spec import SandboxSpec
from .model import NetworkMode


def unit_lines(spec: SandboxSpec) -> tuple[tuple[str, str], ...]:
    """(key, rendered value) pairs for the [Unit] section of sandbox-NAME.service."""
    return ()


def service_lines(spec: SandboxSpec) -> tuple[tuple[str, str], ...]:
    """(key, rendered value) pairs for the [Service] section; values are already escaped."""
    if spec.network.mode is NetworkMode.HOST:
        return ()
    return (("PrivateNetwork", "yes"),)


def extra_units(spec: SandboxSpec) -> dict[PurePosixPath, str]:
    """Further units the network mode needs (socket/proxy pairs, namespace setup), by absolute path."""
    return {}
