"""Scratch image trees for tests of offline use (--root): the smallest tree the tool writes sandboxes into.

The tool reads only what is under the image's root, never the host's files, so the programs a test's
sandboxes name are copied in: a sandbox's commands, and python3, which its launcher runs on (the image is
only written by these tests, never booted).
"""

from __future__ import annotations

import shutil
from pathlib import Path


def scratch_image(root: Path, programs: tuple[str, ...] = ("/usr/bin/sleep",)) -> Path:
    """A usr-merged tree with a user database, an empty unit directory, python3 and `programs`."""
    for d in ("etc/systemd/system", "usr/bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        if not (root / link).is_symlink():
            (root / link).symlink_to(f"usr/{link}")
    for program in (*programs, "/usr/bin/python3"):
        shutil.copy2(Path(program).resolve(), root / program.lstrip("/"))
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    return root
