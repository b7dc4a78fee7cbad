"""The one place that turns values into unit-file syntax.

systemd reads a unit file line by line; within a value it expands ``%`` specifiers, in Exec*= lines it
also splits words (honouring double quotes and C escapes) and expands ``$VAR``. Every value rendered into
a unit goes through a function here, which either escapes it so systemd reads back exactly the input or
refuses it with InvalidInput. Nothing is silently dropped or altered.
"""

from __future__ import annotations

from .errors import InvalidInput
from .spec import ExecCommand, ExecFlag, check_text


def _reject_unrenderable(what: str, value: str) -> None:
    check_text(what, value)  # the same rule the spec applies when it is built


def specifiers(value: str) -> str:
    """Escape ``%`` so systemd does not expand it as a specifier."""
    return value.replace("%", "%%")


def plain(what: str, value: str) -> str:
    """A whole-line value that systemd takes as-is apart from specifiers (Description=, PIDFile=, ...).

    systemd strips surrounding whitespace and treats a trailing backslash as a line continuation, and
    neither can be escaped in such settings, so those are refused rather than changed.
    """
    _reject_unrenderable(what, value)
    if value != value.strip():
        raise InvalidInput(f"{what} has leading or trailing whitespace: {value!r}")
    if value.endswith("\\"):
        raise InvalidInput(f"{what} ends with a backslash, which systemd reads as a line continuation")
    return specifiers(value)


def quoted(what: str, value: str, *, literal_dollar: bool) -> str:
    """One double-quoted word for settings that split words with C unescaping (Exec*=, Environment=, ...)."""
    _reject_unrenderable(what, value)
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    out = specifiers(out)
    if literal_dollar:
        out = out.replace("$", "$$")
    return f'"{out}"'


def exec_line(cmd: ExecCommand) -> str:
    """Render one command for an Exec*= setting.

    The prefix characters and the executable path form the first word; ``@`` is added when argv[0]
    differs from the path. A lone ``;`` would separate commands, so it is written as ``\\;``.
    """
    prefix = "".join(flag.value for flag in cmd.flags)
    if cmd.path != cmd.argv[0]:
        prefix += "@"
    literal = not cmd.expand_env or ExecFlag.NO_ENV_EXPAND in cmd.flags
    words = [quoted("executable path", prefix + cmd.path, literal_dollar=literal)]
    if cmd.path != cmd.argv[0]:
        words.append(_exec_word(cmd.argv[0], literal))
    words.extend(_exec_word(w, literal) for w in cmd.argv[1:])
    return " ".join(words)


def _exec_word(word: str, literal_dollar: bool) -> str:
    if word == ";":
        return "\\;"
    return quoted("command argument", word, literal_dollar=literal_dollar)


def env_assignment(name: str, value: str) -> str:
    """Environment= takes quoted NAME=VALUE words; ``$`` is not expanded there."""
    return quoted(f"environment variable {name}", f"{name}={value}", literal_dollar=False)


def path_word(what: str, path: str) -> str:
    """A path inside a space-separated list (ReadWritePaths=, BindReadOnlyPaths=, ...).

    Bind settings use ``:`` to separate source and destination, so it is escaped as ``\\:``.
    """
    _reject_unrenderable(what, path)
    prefix = ""
    if path.startswith("-"):
        prefix, path = "-", path[1:]
    body = path.replace("\\", "\\\\").replace('"', '\\"').replace(":", "\\:")
    return f'"{prefix}{specifiers(body)}"'


def bind_pair(source: str, dest: str) -> str:
    """SOURCE:DEST for BindPaths=/BindReadOnlyPaths=: each side quoted on its own, since a colon inside
    quotes is part of the path rather than the separator."""
    return f"{path_word('bind source', source)}:{path_word('bind destination', dest)}"


_UNIT_NAME_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")


def path_unit_name(path: str, suffix: str) -> str:
    """The unit name systemd gives a path (what ``systemd-escape --path --suffix=...`` prints), such as
    the .mount unit of a mount point: '/' becomes '-', other unsafe bytes (and a leading '.') ``\\xNN``."""
    _reject_unrenderable("path", path)
    parts = [p for p in path.split("/") if p]
    if not path.startswith("/") or any(p in (".", "..") for p in parts):
        raise InvalidInput(f"not a normalized absolute path: {path!r}")
    if not parts:
        return "-" + suffix
    out = []
    for i, byte in enumerate("/".join(parts).encode()):
        ch = chr(byte)
        if ch == "/":
            out.append("-")
        elif ch in _UNIT_NAME_SAFE and not (ch == "." and i == 0):
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out) + suffix
