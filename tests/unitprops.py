"""Every property systemd reports for a wrapped unit has a fate, and what is carried arrives.

Shared by the property tests (nginx, apache2 on both systemds) and the service corpus (every corpus
unit): systemd is asked in the box, through the tool's own D-Bus code, for every property of the host
unit, of a unit that sets nothing and of the sandbox's unit.
"""

from __future__ import annotations

import json

from sandbox_service.create import DEFAULTS_PROBE
from sandbox_service.discover.properties import Fate, fate
from tests.box import SystemdBox

DUMP = """
import json, sys
from sandbox_service.systemd import Systemd
with Systemd() as sd:
    out = {name: [list(p) for p in sd.unit_properties(name).items] for name in sys.argv[1:]}
print(json.dumps(out))
"""


def properties(box: SystemdBox, *units: str) -> dict[str, dict[str, object]]:
    out = box.run([*box.python_argv, "-c", DUMP, *units]).stdout
    return {unit: {k: v for k, v in items} for unit, items in json.loads(out).items()}


def lost_properties(box: SystemdBox, unit: str, sandbox_unit: str, create_output: str) -> list[str]:
    """What the sandbox lost of ``unit``'s settings, one line each; empty when nothing was.

    A property set away from its default must have a fate; a carried one must have the host's value in
    the sandbox's unit; a dropped one must have been named by ``create`` (``create_output``).
    """
    got = properties(box, unit, DEFAULTS_PROBE, sandbox_unit)
    props, defaults, sandbox = got[unit], got[DEFAULTS_PROBE], got[sandbox_unit]
    lost = []
    for prop, value in sorted(props.items()):
        if value == defaults.get(prop):
            continue
        kind = fate(prop)
        if kind is None:
            lost.append(f"{prop}: no fate")
        elif kind is Fate.CARRIED and sandbox.get(prop) != value:
            lost.append(f"{prop}: {value!r} on the host, {sandbox.get(prop)!r} in the sandbox")
        elif kind is Fate.DROPPED and f"{prop} not carried over" not in create_output:
            lost.append(f"{prop}: dropped without a note")
    return lost
