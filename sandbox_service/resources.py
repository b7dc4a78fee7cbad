"""Locate the data shipped with the tool: templates/, unitfiles/, profiles/.

In a checkout they sit beside the package; an installed package finds them under /usr/share.
"""

from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
_INSTALLED = Path("/usr/share/sandbox-service")


def data_dir(name: str) -> Path:
    override = os.environ.get("SANDBOX_SERVICE_DATADIR")
    # a checkout is recognised by its pyproject.toml, so an installed copy never mistakes a stray
    # site-packages/templates for its own data
    in_checkout = (_CHECKOUT / "pyproject.toml").is_file()
    for base in (
        (Path(override),) if override else ((_CHECKOUT, _INSTALLED) if in_checkout else (_INSTALLED,))
    ):
        if (base / name).is_dir():
            return base / name
    raise FileNotFoundError(
        f"sandbox-service data directory {name!r} not found under {_CHECKOUT} or {_INSTALLED}"
    )
