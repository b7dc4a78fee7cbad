"""Locate the data shipped with the tool: templates/, unitfiles/, profiles/, and any other file or
directory that pyproject.toml lists under [tool.sandbox-service] data.

Where the data is depends on how the tool was installed; the first of these that exists is used, and
the data is never mixed from two of them (a stray copy of another version stays out of the way):

1. ``$SANDBOX_SERVICE_DATADIR`` (tests, unusual layouts);
2. the package's own ``data/`` directory: a wheel carries the data there (setup.py copies it in), so
   pip, pipx and ``pip install sandbox-service`` installs find it through the package;
3. the checkout: the top-level directories beside the package, when pyproject.toml is there too
   (``python -m sandbox_service`` from a clone, editable installs);
4. ``/usr/share/sandbox-service``: the RPM and the Debian package move the data there.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "SANDBOX_SERVICE_DATADIR"
PACKAGE_DATA = "data"
INSTALLED = Path("/usr/share/sandbox-service")
_CHECKOUT = Path(__file__).resolve().parent.parent


def _package_data() -> Path | None:
    # The data is bound into sandboxes and read by path, so it must be a real directory; a package
    # imported from a zip file has none and falls through to the other places.  (Not through
    # importlib.resources, whose import costs more than this whole lookup.)
    found = Path(__file__).resolve().parent / PACKAGE_DATA
    return found if found.is_dir() else None


def data_root() -> Path:
    """The directory that holds this installation's data."""
    override = os.environ.get(ENV)
    if override:
        return Path(override)
    packaged = _package_data()
    if packaged is not None:
        return packaged
    # a checkout is recognised by its pyproject.toml, so an installed copy never mistakes a stray
    # site-packages/templates for its own data
    if (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT
    return INSTALLED


def data_path(relative: str) -> Path:
    """A shipped file or directory, by its path relative to the data root (``templates``,
    ``profiles/default.conf``)."""
    if relative.startswith("/") or ".." in Path(relative).parts:
        raise ValueError(f"not a relative data path: {relative!r}")
    root = data_root()
    path = root / relative
    if not os.path.lexists(path):
        raise FileNotFoundError(
            f"sandbox-service data {relative!r} not found in {root} "
            f"(looked for ${ENV}, the package's {PACKAGE_DATA}/, a checkout, {INSTALLED})"
        )
    return path


def data_dir(name: str) -> Path:
    """A shipped directory (``templates``, ``unitfiles``, ``profiles``)."""
    path = data_path(name)
    if not path.is_dir():
        raise NotADirectoryError(f"sandbox-service data {name!r} in {data_root()} is not a directory")
    return path
