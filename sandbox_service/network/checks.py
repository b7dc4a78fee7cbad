"""Checks of a network spec against the host and the other sandboxes, done before anything is written."""

from __future__ import annotations

from collections.abc import Sequence

from ..paths import Layout
from ..spec import SandboxSpec


def check_host(spec: SandboxSpec, others: Sequence[SandboxSpec], layout: Layout) -> None:
    """Refuse (InvalidInput/AlreadyExists/NotFound) what cannot work: a host port another sandbox
    publishes, a bridge that does not exist, ..."""
