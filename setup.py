"""Build hook: the wheel carries the data the tool reads at run time.

The data stays at the top of the source tree (templates/, unitfiles/, profiles/: whatever
pyproject.toml lists under [tool.sandbox-service] data).  build_py copies it into the built package as
sandbox_service/data/, where sandbox_service/resources.py finds it through the package, so an install
from a wheel (pip, pipx, python -m build) has it.  Everything else is declared in pyproject.toml.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PACKAGE = "sandbox_service"
PACKAGE_DATA = "data"  # sandbox_service/resources.py: PACKAGE_DATA


def shipped_data() -> list[str]:
    """The data files, as paths relative to the source tree, sorted."""
    names = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["sandbox-service"]["data"]
    files: list[str] = []
    for name in names:
        top = Path(name)
        if not top.exists():
            raise SystemExit(f"setup.py: {name}, listed in pyproject.toml as data, is not in the source tree")
        found = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        files += [str(p) for p in found if "__pycache__" not in p.parts]
    return sorted(files)


class BuildPyWithData(build_py):
    """build_py, plus the data copied into the package."""

    def _data_targets(self) -> list[tuple[str, str]]:
        base = os.path.join(self.build_lib, PACKAGE, PACKAGE_DATA)
        return [(f, os.path.join(base, f)) for f in shipped_data()]

    def run(self) -> None:
        super().run()
        # An editable install runs from the checkout, where resources.py finds the data beside it.
        if getattr(self, "editable_mode", False):
            return
        for source, target in self._data_targets():
            self.mkpath(os.path.dirname(target))
            self.copy_file(source, target, preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs: list[str] = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [target for _source, target in self._data_targets()]


setup(cmdclass={"build_py": BuildPyWithData})
