"""Facts about the host (or the image under --root), detected once per command and passed along."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..run import run
from ..spec import SHARED_ETC
from . import packages

# Top-level directories that usr-merged systems turn into links into /usr.
USR_MERGE_NAMES = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class UsrLink:
    name: str  # "bin"
    target: str | None  # "usr/bin" when a link; None when a real directory that must be bound


@dataclass(frozen=True)
class HostInfo:
    root: Path
    systemd_version: int
    package_manager: packages.PackageManager
    usr_layout: tuple[UsrLink, ...]

    @property
    def readonly_binds(self) -> tuple[str, ...]:
        """Host paths bound read-only into every sandbox that shares the host's software: /usr, the
        top-level directories that are not links into it, and the shared data under /etc it has."""
        software = ("/usr", *(f"/{link.name}" for link in self.usr_layout if link.target is None))
        data = tuple(p for p in SHARED_ETC if os.path.lexists(self.root / p.lstrip("/")))
        return (*software, *data)


def systemd_version(root: Path) -> int:
    """The version of systemd installed in the tree (the running one when root is /).

    An image's version is read from the name of its shared systemd library, never by running the image's
    own systemctl: that binary would need the image's libraries, which the host's loader does not use."""
    if root != Path("/"):
        for lib in ("usr/lib/systemd", "usr/lib/*/systemd", "usr/lib64/systemd"):  # Debian: multiarch
            for found in sorted(root.glob(f"{lib}/libsystemd-shared-*.so")):
                m = re.fullmatch(r"libsystemd-shared-(\d+)(?:[.-].*)?\.so", found.name)
                if m:
                    return int(m.group(1))
    out = run(["systemctl", "--version"]).stdout
    m = re.match(r"systemd (\d+)", out)
    return int(m.group(1)) if m else 0


def usr_layout(root: Path) -> tuple[UsrLink, ...]:
    out = []
    for name in USR_MERGE_NAMES:
        p = root / name
        if p.is_symlink():
            out.append(UsrLink(name, os.readlink(p)))
        elif p.is_dir():
            out.append(UsrLink(name, None))
    return tuple(out)


def probe(root: Path = Path("/")) -> HostInfo:
    return HostInfo(
        root=root,
        systemd_version=systemd_version(root),
        package_manager=packages.detect(root),
        usr_layout=usr_layout(root),
    )
