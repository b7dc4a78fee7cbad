"""The exposure score systemd itself assigns to a unit (`systemd-analyze security`)."""

from __future__ import annotations

import re

from .errors import SandboxError
from .run import run

_OVERALL = re.compile(r"Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?) (\S+)")


def exposure(unit: str) -> tuple[float, str]:
    """(score 0.0-10.0, systemd's word for it such as OK or EXPOSED) for a loaded unit."""
    res = run(["systemd-analyze", "security", "--no-pager", unit], check=False)
    m = _OVERALL.search(res.stdout)
    if not m:
        hint = res.stderr.strip() or None
        raise SandboxError(f"systemd-analyze security printed no score for {unit}", hint)
    return float(m.group(1)), m.group(2)
