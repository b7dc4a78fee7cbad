"""%-specifiers of a system-manager unit, resolved from the image tree (and its os-release).

This module owns :class:`_Specifiers`, which expands %n, %i, %f, %m, %o and the rest for one unit the
way systemd's system manager would, reading only what the tree holds (the unit name, the fragment
path, /etc/machine-id, os-release). Specifiers that only the running system can answer (host name,
boot ID, kernel release, ...) are refused with InvalidInput rather than guessed, so that decision
lives in one place.
"""

from __future__ import annotations

import re

from ...errors import InvalidInput
from .lookup import _Name, _Tree, _unescape_name, _unescape_name_path
from .syntax import _SyntaxError, _words

_OS_RELEASE_SPECIFIERS = {"o": "ID", "w": "VERSION_ID", "W": "VARIANT_ID", "B": "BUILD_ID",
                          "M": "IMAGE_ID", "A": "IMAGE_VERSION"}  # fmt: skip
_RUNTIME_ONLY_SPECIFIERS = {
    "a": "the architecture",
    "b": "the boot ID",
    "H": "the host name",
    "l": "the short host name",
    "q": "the pretty host name",
    "v": "the kernel release",
    "s": "the manager's shell",
    "c": "the control group",
    "r": "the control group slice",
    "R": "the control group root",
}


class _Specifiers:
    """Resolves %-specifiers for one system-manager unit; what only the running system knows is refused."""

    def __init__(self, tree: _Tree, unit_id: str, fragment: str, where: str) -> None:
        name = _Name.parse(unit_id)
        assert name is not None
        stem = unit_id.removesuffix("." + name.type)
        self._tree = tree
        self._where = where
        self._fragment = fragment
        instance = name.instance or ""
        last = name.prefix.rpartition("-")[2]
        self._fixed = {
            "n": unit_id, "N": stem, "p": name.prefix, "P": _unescape_name(name.prefix),
            "i": instance, "I": _unescape_name(instance), "j": last, "J": _unescape_name(last),
            "t": "/run", "S": "/var/lib", "C": "/var/cache", "L": "/var/log", "E": "/etc",
            "T": "/tmp", "V": "/var/tmp", "h": "/root", "u": "root", "U": "0", "g": "root", "G": "0",
            "d": f"/run/credentials/{unit_id}",
        }  # fmt: skip
        self._filename_source = instance or name.prefix

    def _lookup(self, letter: str, text: str) -> str:
        if letter in self._fixed:
            return self._fixed[letter]
        if letter == "f":
            path = _unescape_name_path(self._filename_source)
            if path is None:
                raise InvalidInput(f"{self._where}: %f cannot be resolved in {text!r}")
            return path
        if letter == "y":
            return self._tree.chase(self._fragment)
        if letter == "Y":
            return self._tree.chase(self._fragment).rpartition("/")[0] or "/"
        if letter == "m":
            machine_id = (self._tree.read_text("/etc/machine-id") or "").strip()
            if not re.fullmatch(r"[0-9a-f]{32}", machine_id):
                raise InvalidInput(
                    f"{self._where}: %m in {text!r} needs the machine ID, and the tree has none",
                    "give the image an /etc/machine-id, or remove %m from the unit",
                )
            return machine_id
        if letter in _OS_RELEASE_SPECIFIERS:
            return _os_release(self._tree).get(_OS_RELEASE_SPECIFIERS[letter], "")
        what = _RUNTIME_ONLY_SPECIFIERS.get(letter)
        if what:
            raise InvalidInput(
                f"{self._where}: %{letter} in {text!r} is {what}, which only the running system knows",
                "create the sandbox on the running system, or replace the specifier with a drop-in",
            )
        raise InvalidInput(f"{self._where}: unknown specifier %{letter} in {text!r}")

    def expand(self, text: str) -> str:
        if "%" not in text:
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            c = text[i]
            if c != "%":
                out.append(c)
                i += 1
                continue
            letter = text[i + 1 : i + 2]
            if not letter:
                raise InvalidInput(f"{self._where}: {text!r} ends with a lone %")
            out.append("%" if letter == "%" else self._lookup(letter, text))
            i += 2
        return "".join(out)


def _os_release(tree: _Tree) -> dict[str, str]:
    text = tree.read_text("/etc/os-release")
    if text is None:
        text = tree.read_text("/usr/lib/os-release") or ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            words = _words(value, unquote=True)
        except _SyntaxError:
            continue
        out[key.strip()] = " ".join(words)
    return out
