"""Where things live on disk. Every path is computed under an optional image root (--root, offline mode)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SANDBOX_BASE = Path("/var/lib/sandbox-service")
UNIT_DIR = Path("/etc/systemd/system")
VENDOR_UNIT_DIR = Path("/usr/lib/systemd/system")  # where the package installs the static units
RUNTIME_BASE = Path("/run/sandbox-service")
CACHE_BASE = Path("/var/cache/sandbox-service")  # what only makes runs faster: removable at any time
SPEC_FILE_NAME = "sandbox.yaml"
BASE_DIR_NAME = "base"  # NAME/base: the host's /etc files as they were when copied (upgrade's merge base)
UNIT_PREFIX = "sandbox-"
# NAME/.incomplete: present from staging until the run that makes the sandbox has finished (recovery.py)
INCOMPLETE_MARK = ".incomplete"
STAGING = "staging"  # .NAME.staging-PID: a sandbox being built, renamed to NAME/ when complete
DELETING = "deleting"  # .NAME.deleting-PID: a sandbox directory being removed


def unit_base(name: str) -> str:
    return f"{UNIT_PREFIX}{name}"


def service_unit(name: str) -> str:
    return f"{unit_base(name)}.service"


def sandbox_name_of(unit: str) -> str | None:
    """The sandbox a service unit of ours belongs to (sandbox-NAME.service), or None."""
    if unit.startswith(UNIT_PREFIX) and unit.endswith(".service"):
        return unit[len(UNIT_PREFIX) : -len(".service")] or None
    return None


def slice_unit(name: str) -> str:
    return f"{unit_base(name)}.slice"


@dataclass(frozen=True)
class Layout:
    """Absolute paths as seen from the running system, prefixed by `root` for file access."""

    root: Path = Path("/")

    def host(self, path: Path | str) -> Path:
        """The on-disk location of an absolute path of the (possibly offline) system."""
        return self.root / Path(path).relative_to("/")

    @property
    def sandbox_base(self) -> Path:
        return self.host(SANDBOX_BASE)

    @property
    def unit_dir(self) -> Path:
        return self.host(UNIT_DIR)

    def sandbox_dir(self, name: str) -> Path:
        return self.sandbox_base / name

    def side_dir(self, name: str, what: str, pid: int) -> Path:
        """``.NAME.staging-PID`` or ``.NAME.deleting-PID``, beside the sandbox directories (so a rename
        moves a whole tree in or out of place)."""
        return self.sandbox_base / f".{name}.{what}-{pid}"

    def spec_file(self, name: str) -> Path:
        return self.sandbox_dir(name) / SPEC_FILE_NAME

    @property
    def mcs_registry(self) -> Path:
        return self.sandbox_base / ".mcs-registry.json"

    def base_dir(self, name: str) -> Path:
        return self.sandbox_dir(name) / BASE_DIR_NAME

    def sandbox_root(self, name: str) -> Path:
        return self.sandbox_dir(name) / "root"


def sandbox_root_path(name: str) -> str:
    """The sandbox root as systemd sees it (never prefixed by --root: it is what goes into unit files)."""
    return str(SANDBOX_BASE / name / "root")


def runtime_dir_path(name: str) -> str:
    """Host-visible directory bound over /run inside the sandbox, so PID files written there reach systemd."""
    return str(RUNTIME_BASE / name)
