"""Why a sandboxed service failed, in one line and a hint, from the journal lines of its attempt.

Pure: the caller says which paths the host and the sandbox have.  What is recognised, in this order:
the launcher's own refusal; a path the service could not find that the host has (copy it in); a path
it could not write (read-only in the sandbox); a socket family the profile denies; an operation denied
(a capability or system call the sandbox leaves out).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .spec import COPYABLE, never_copied


@dataclass(frozen=True)
class Diagnosis:
    line: str
    hint: str


_LAUNCHER = re.compile(r"sandbox-service launcher: (.+)$")
# An absolute path below the places a sandbox has copies of, up to a quote, colon, comma or space.
# (coreutils quotes with U+2018/U+2019 in a UTF-8 locale)
_PATH = re.compile(r"(?<![\w.-])(/(?:etc|var|srv|opt|home)/[^\s'\"\u2018\u2019\u201c\u201d`:,;()\[\]<>]+)")
_MISSING = ("no such file", "not found", "missing", "does not exist", "doesn't exist", "cannot open")
_READ_ONLY = "read-only file system"
_FAMILY = ("address family not supported", "eafnosupport")
_DENIED = ("operation not permitted", "eperm")


def diagnose(
    journal: Sequence[str],
    name: str,
    *,
    host_has: Callable[[str], bool],
    sandbox_has: Callable[[str], bool],
    copy_hint: Callable[[str], str] | None = None,
) -> Diagnosis | None:
    """`copy_hint` words the fix for a missing path (default: sandbox-service copy NAME PATH)."""
    lines = [line.strip() for line in journal]
    for line in lines:
        if m := _LAUNCHER.search(line):
            return Diagnosis(
                f"the launcher stopped: {m.group(1)}",
                f"the sandbox's own set-up failed; its settings are in sandbox-service status {name}",
            )
    for line in lines:
        low = line.lower()
        if any(word in low for word in _MISSING):
            for path in _PATH.findall(line):
                missing = _first_missing(path.rstrip("."), host_has, sandbox_has)
                if missing is not None:
                    return Diagnosis(
                        f"{missing} exists on the host but not in the sandbox",
                        copy_hint(missing)
                        if copy_hint
                        else f"copy it in: sandbox-service copy {name} {missing}",
                    )
    for line in lines:
        if _READ_ONLY in line.lower():
            where = _PATH.findall(line)
            return Diagnosis(
                f"{where[0] if where else 'a path'} is read-only in the sandbox",
                "the wrapped unit's ProtectSystem=/ReadOnlyPaths= or the profile make it so; a directory "
                "the service writes belongs in the host unit's StateDirectory= or ReadWritePaths= (a "
                f"drop-in), then: sandbox-service upgrade {name}",
            )
    for line in lines:
        if any(word in line.lower() for word in _FAMILY):
            return Diagnosis(
                "the service asked for a socket family the sandbox's profile denies",
                "see RestrictAddressFamilies= in: sandbox-service profiles; choose another --profile",
            )
    for line in lines:
        if any(word in line.lower() for word in _DENIED):
            return Diagnosis(
                f"an operation was denied: {line[-120:]}",
                "a capability outside the sandbox's bounding set or a system call outside its profile's "
                "filter; see: sandbox-service profiles",
            )
    return None


def _first_missing(
    path: str, host_has: Callable[[str], bool], sandbox_has: Callable[[str], bool]
) -> str | None:
    """The outermost directory (or the file) of `path` the sandbox lacks and the host has, below the
    places a sandbox gets copies of: copying it brings everything under it."""
    parts = path.split("/")
    for depth in range(3, len(parts) + 1):  # "/etc/x" at least
        candidate = "/".join(parts[:depth])
        if not (candidate + "/").startswith(COPYABLE) or never_copied(candidate):
            return None
        if not sandbox_has(candidate):
            return candidate if host_has(candidate) else None
    return None
