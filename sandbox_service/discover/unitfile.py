"""Read a service unit from an image tree's own unit files, the way systemd's system manager would.

Offline mode (no running systemd, or ``--root DIR``) cannot ask PID 1 over D-Bus what it parsed, so this
module does the parsing itself and returns the same :class:`~sandbox_service.systemd.UnitSettings` that
``Systemd.unit_settings()`` returns for the same unit:

- the fragment found on systemd's search path, with aliases, masks, linked unit files and templates;
- the drop-ins, in systemd's order and precedence;
- unit-file syntax: sections, comments, continuation lines, quoting, C escapes, ";" between commands,
  specifiers;
- the settings the tool uses, with systemd's defaults, what it derives (the Type= default, the user of
  DynamicUser=yes, the capabilities PrivateDevices= and the Protect*= switches take away) and the checks
  that make it refuse a unit (reported as NotFound, as the D-Bus path does for a unit that did not load).

Every path is looked up under ``root`` and symlinks are resolved inside it, never on the host. Behaviour
follows systemd 252 as observed through D-Bus (tests/test_unitfile_box.py compares the two).

What cannot be known without the running system (the hostname, the boot ID, the kernel release, ...) is
refused with InvalidInput rather than guessed. ``warnings``, when given, collects what systemd would log
while loading (assignments it ignores).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput, NotFound
from ..security import CAPABILITIES
from ..systemd import RawExec, UnitSettings

__all__ = ["load_unit_settings", "parse_timespan", "split_assignments", "unit_search_path"]

USEC_INFINITY = 2**64 - 1
_USEC_PER_SEC = 1_000_000
_WHITESPACE = " \t\n\r"
_COMMENTS = "#;"
_MAX_SYMLINK_HOPS = 40

# -- where units live ------------------------------------------------------------------------------------

_BEFORE_DATA_DIRS = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
)
_AFTER_DATA_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system", "/run/systemd/generator.late")
_PKGCONFIG_FILES = ("/usr/share/pkgconfig/systemd.pc", "/usr/lib/pkgconfig/systemd.pc")
_SYSTEM_CONF_DROPIN_DIRS = (
    "/etc/systemd/system.conf.d",
    "/run/systemd/system.conf.d",
    "/usr/local/lib/systemd/system.conf.d",
    "/usr/lib/systemd/system.conf.d",
    "/lib/systemd/system.conf.d",
)


class _Tree:
    """File access below an image root; absolute symlinks are resolved inside the root, never on the host."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def host(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def chase(self, path: str, *, follow_last: bool = True) -> str:
        """The path with every symlink resolved inside the root (missing components are kept as they are)."""
        todo = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join([*done, part])
            if (todo or follow_last) and self.host(candidate).is_symlink():
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:  # a loop: leave the rest unresolved (it will not be found)
                    return "/" + "/".join([*done, part, *todo])
                target = os.readlink(self.host(candidate))
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p] + todo
                continue
            done.append(part)
        return "/" + "/".join(done)

    def is_null_or_empty(self, path: str) -> bool:
        """systemd's mask test: /dev/null, or an empty regular file (symlinks followed)."""
        real = self.chase(path)
        if real == "/dev/null":
            return True
        host = self.host(real)
        return host.is_file() and host.stat().st_size == 0

    def read_text(self, path: str) -> str | None:
        real = self.chase(path)
        if real == "/dev/null":
            return ""
        try:
            return self.host(real).read_bytes().decode("utf-8", "surrogateescape")
        except OSError:
            return None

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.host(self.chase(path))))
        except OSError:
            return []


def _substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{([^}]*)\}", lambda v: variables.get(v[1], ""), value)


def _data_unit_dir(tree: _Tree) -> str:
    """The unit directory systemd was built with (its pkg-config file says), searched before /usr/lib.

    Debian 12 builds systemd with /lib/systemd/system, so its FragmentPaths start with /lib even though
    /lib is a symlink to usr/lib; other distributions use /usr/lib/systemd/system.
    """
    for pc in _PKGCONFIG_FILES:
        text = tree.read_text(pc)
        if not text:
            continue
        variables: dict[str, str] = {}
        for line in text.splitlines():
            m = re.fullmatch(r"([A-Za-z0-9_.]+)=(.*)", line.strip())
            if m:
                variables[m[1]] = _substitute(m[2], variables)
        for key in ("systemd_system_unit_dir", "systemdsystemunitdir"):
            value = variables.get(key, "")
            if value.startswith("/"):
                return _simplify(value)
    return "/usr/lib/systemd/system"


def unit_search_path(root: Path) -> tuple[str, ...]:
    """The system manager's unit search path, highest priority first, as absolute paths inside ``root``."""
    tree = _Tree(root)
    dirs = [*_BEFORE_DATA_DIRS, _data_unit_dir(tree), *_AFTER_DATA_DIRS]
    return tuple(dict.fromkeys(dirs))


# -- unit names ------------------------------------------------------------------------------------------

_NAME_CHARS = re.compile(r"[A-Za-z0-9:_.\\-]+")
_INSTANCE_CHARS = re.compile(r"[A-Za-z0-9:_.\\@-]+")
_UNIT_TYPES = (
    "service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope",
)  # fmt: skip


@dataclass(frozen=True)
class _Name:
    """A parsed unit name: prefix@instance.type (instance None: plain, "" : template)."""

    prefix: str
    instance: str | None
    type: str

    @classmethod
    def parse(cls, name: str) -> _Name | None:
        stem, dot, utype = name.rpartition(".")
        if not dot or utype not in _UNIT_TYPES or len(name) >= 256:
            return None
        prefix, at, instance = stem.partition("@")
        if not prefix or not _NAME_CHARS.fullmatch(prefix):
            return None
        if at and instance and not _INSTANCE_CHARS.fullmatch(instance):
            return None
        return cls(prefix, instance if at else None, utype)

    @property
    def template(self) -> str:
        return f"{self.prefix}@.{self.type}"

    def with_instance(self, instance: str) -> str:
        return f"{self.prefix}@{instance}.{self.type}"


def _unescape_name(text: str) -> str:
    """unit-name unescaping: "-" is "/", "\\xNN" is that byte."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "-":
            out += b"/"
            i += 1
        elif text[i] == "\\" and re.fullmatch(r"x[0-9a-fA-F]{2}", text[i + 1 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out += text[i].encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _unescape_name_path(text: str) -> str | None:
    if text == "-":
        return "/"
    inner = _unescape_name(text)
    if not inner or inner.startswith("/") or inner.endswith("/") or not _is_normalized("/" + inner):
        return None
    return "/" + inner


# -- paths -----------------------------------------------------------------------------------------------


def _simplify(path: str) -> str:
    """systemd's path_simplify(): drop duplicate slashes, "." components and trailing slashes; keep ".."."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    joined = "/".join(parts)
    if path.startswith("/"):
        return "/" + joined
    return joined or "."


def _is_normalized(path: str) -> bool:
    return bool(path) and ".." not in path.split("/")


def _path_key(path: str) -> list[str]:
    """Sort key of systemd's path_compare(): component by component, parents first."""
    return [p for p in path.split("/") if p]


# -- unit-file syntax --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """One KEY=VALUE of a unit file, with its section and the line it starts on."""

    section: str
    key: str
    value: str
    line: int


class _SyntaxError(Exception):
    pass


def split_assignments(text: str, where: str = "unit file") -> list[Assignment]:
    """Sections, comments (# and ;, also between continued lines), backslash continuation, KEY=VALUE.

    A line ending in an unescaped backslash continues on the next line; the backslash becomes a space.
    Keys and values are stripped of surrounding whitespace. Lines outside a section or without "=" are
    dropped, as systemd does (with a warning).
    """
    out: list[Assignment] = []
    section = ""
    pending = ""
    start = 0
    lines = re.split(r"\r\n|\r|\n", text.removeprefix("\ufeff"))
    for number, raw in enumerate(lines, 1):
        if raw.lstrip(_WHITESPACE)[:1] in tuple(_COMMENTS):
            continue
        if not pending:
            start = number
        joined = pending + raw
        trailing = len(joined) - len(joined.rstrip("\\"))
        if trailing % 2 == 1:
            pending = joined[:-1] + " "
            continue
        pending = ""
        section = _parse_line(joined, section, start, where, out)
    if pending:
        _parse_line(pending, section, start, where, out)
    return out


def _parse_line(line: str, section: str, number: int, where: str, out: list[Assignment]) -> str:
    text = line.strip(_WHITESPACE)
    if not text or text[0] in _COMMENTS:
        return section
    if text[0] == "[":
        if not text.endswith("]"):
            raise InvalidInput(f"{where}:{number}: invalid section header {text!r}")
        return text[1:-1]
    key, sep, value = text.partition("=")
    if section and sep and key.strip(_WHITESPACE):
        out.append(Assignment(section, key.strip(_WHITESPACE), value.strip(_WHITESPACE), number))
    return section


_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", '"': '"', "'": "'", "s": " ",
}  # fmt: skip


def _cunescape_one(s: str, i: int) -> tuple[bytes, int]:
    """Decode the C escape whose letter is s[i] (after the backslash): (bytes, characters used)."""
    c = s[i : i + 1]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c].encode(), 1
    if c == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", s[i + 1 : i + 3]):
        value = int(s[i + 1 : i + 3], 16)
        if value:
            return bytes([value]), 3
    if c in ("u", "U"):
        width = 4 if c == "u" else 8
        digits = s[i + 1 : i + 1 + width]
        if re.fullmatch(rf"[0-9a-fA-F]{{{width}}}", digits):
            value = int(digits, 16)
            if 0 < value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF:
                return chr(value).encode(), 1 + width
    if re.fullmatch(r"[0-7]{3}", s[i : i + 3]):
        value = int(s[i : i + 3], 8)
        if 0 < value <= 255:
            return bytes([value]), 3
    raise _SyntaxError(f"invalid escape sequence \\{c}")


def _next_word(
    s: str,
    pos: int,
    *,
    separators: str = _WHITESPACE,
    unquote: bool = False,
    cunescape: bool = False,
    relax: bool = False,
    retain_escape: bool = False,
    unescape_separators: bool = False,
) -> tuple[str | None, int]:
    """The next word of s from pos, and the position after it and the separators that follow.

    unquote: '...' and "..." group (also in the middle of a word); cunescape: C escapes are decoded,
    otherwise a backslash takes the next character literally; relax: an unknown escape or a trailing
    backslash is kept as written; retain_escape: backslashes are ordinary characters.
    """
    n = len(s)
    while pos < n and s[pos] in separators:
        pos += 1
    if pos >= n:
        return None, pos
    out = bytearray()
    quote = ""
    while pos < n:
        c = s[pos]
        if c == "\\" and not retain_escape:
            if pos + 1 >= n:
                if relax and not quote:
                    out += b"\\"
                    pos += 1
                    break
                raise _SyntaxError("trailing backslash")
            nxt = s[pos + 1]
            if not cunescape or (unescape_separators and nxt in separators):
                out += nxt.encode("utf-8", "surrogateescape")
                pos += 2
                continue
            try:
                decoded, used = _cunescape_one(s, pos + 1)
            except _SyntaxError:
                if not relax:
                    raise
                decoded, used = ("\\" + nxt).encode("utf-8", "surrogateescape"), 1
            out += decoded
            pos += 1 + used
            continue
        if quote:
            if c == quote:
                quote = ""
            else:
                out += c.encode("utf-8", "surrogateescape")
        elif unquote and c in "'\"":
            quote = c
        elif c in separators:
            break
        else:
            out += c.encode("utf-8", "surrogateescape")
        pos += 1
    if quote:
        raise _SyntaxError("unbalanced quoting")
    while pos < n and s[pos] in separators:
        pos += 1
    return out.decode("utf-8", "surrogateescape"), pos


def _iter_words(s: str, *, separators: str = _WHITESPACE, **flags: bool) -> Iterator[str]:
    """The words of s one by one; a syntax error is raised when reached, after the words before it."""
    pos = 0
    while True:
        word, pos = _next_word(s, pos, separators=separators, **flags)
        if word is None:
            return
        yield word


def _words(s: str, *, separators: str = _WHITESPACE, **flags: bool) -> list[str]:
    return list(_iter_words(s, separators=separators, **flags))


# -- values ------------------------------------------------------------------------------------------------

_USEC_PER_MIN = 60 * _USEC_PER_SEC
_USEC_PER_HOUR = 60 * _USEC_PER_MIN
_USEC_PER_DAY = 24 * _USEC_PER_HOUR
# First match wins, in this order (so "ms" is milliseconds and "m" minutes, "M" months).
_TIME_UNITS = (
    ("seconds", _USEC_PER_SEC), ("second", _USEC_PER_SEC), ("sec", _USEC_PER_SEC), ("s", _USEC_PER_SEC),
    ("minutes", _USEC_PER_MIN), ("minute", _USEC_PER_MIN), ("min", _USEC_PER_MIN),
    ("months", 2_629_800 * _USEC_PER_SEC), ("month", 2_629_800 * _USEC_PER_SEC),
    ("M", 2_629_800 * _USEC_PER_SEC),
    ("msec", 1000), ("ms", 1000), ("m", _USEC_PER_MIN),
    ("hours", _USEC_PER_HOUR), ("hour", _USEC_PER_HOUR), ("hr", _USEC_PER_HOUR), ("h", _USEC_PER_HOUR),
    ("days", _USEC_PER_DAY), ("day", _USEC_PER_DAY), ("d", _USEC_PER_DAY),
    ("weeks", 7 * _USEC_PER_DAY), ("week", 7 * _USEC_PER_DAY), ("w", 7 * _USEC_PER_DAY),
    ("years", 31_557_600 * _USEC_PER_SEC), ("year", 31_557_600 * _USEC_PER_SEC),
    ("y", 31_557_600 * _USEC_PER_SEC),
    ("usec", 1), ("us", 1), ("\u03bcs", 1), ("\u00b5s", 1),
)  # fmt: skip


_TIMESPAN_NUMBER = re.compile(r"(\d*)(?:\.(\d*))?")


def parse_timespan(text: str) -> int:
    """A systemd time span ("90", "1min 30s", "1.5h", "infinity") in microseconds; ValueError if invalid."""
    s = text.strip(_WHITESPACE)
    if s.startswith("infinity"):
        if s[len("infinity") :].strip(_WHITESPACE):
            raise ValueError(f"invalid time span {text!r}")
        return USEC_INFINITY
    if not s:
        raise ValueError("empty time span")
    total = 0
    pos = 0
    while pos < len(s):
        m = _TIMESPAN_NUMBER.match(s, pos)
        assert m is not None  # every part of the pattern is optional
        if not m[1] and not m[2]:
            raise ValueError(f"invalid time span {text!r}")
        pos = m.end()
        after_space = len(s) - len(s[pos:].lstrip(_WHITESPACE))
        multiplier = 0
        for suffix, usec in _TIME_UNITS:
            if s.startswith(suffix, after_space):
                multiplier = usec
                pos = after_space + len(suffix)
                break
        else:  # no unit: seconds, but "1.2.3" is no time span ("1.2 .3" is)
            if after_space == pos and pos < len(s):
                raise ValueError(f"invalid time span {text!r}")
            multiplier = _USEC_PER_SEC
        value = int(m[1] or "0") * multiplier
        step = multiplier // 10
        for digit in m[2] or "":
            value += int(digit) * step
            step //= 10
        total += value
        while pos < len(s) and s[pos] in _WHITESPACE:
            pos += 1
    return min(total, USEC_INFINITY)


def _timespan_fix_0(text: str) -> int:
    """TimeoutStartSec=/TimeoutStopSec=: 0 means no timeout."""
    usec = parse_timespan(text)
    return USEC_INFINITY if usec == 0 else usec


_BOOLEANS = {
    **dict.fromkeys(("1", "yes", "y", "true", "t", "on"), True),
    **dict.fromkeys(("0", "no", "n", "false", "f", "off"), False),
}


def _parse_bool(text: str) -> bool:
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise ValueError(f"invalid boolean {text!r}") from None


_SIGNALS = (
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
    "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
    "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
)  # fmt: skip  # Linux numbering: index + 1
_SIGRTMIN, _SIGRTMAX = 34, 64  # as glibc (and so systemd) sees them


def _parse_signal(text: str) -> int:
    name = text.removeprefix("SIG")
    if name in _SIGNALS:
        return _SIGNALS.index(name) + 1
    m = re.fullmatch(r"RTMIN(?:\+(\d+))?|RTMAX(?:-(\d+))?", name)
    if m:
        num = _SIGRTMIN + int(m[1] or 0) if name.startswith("RTMIN") else _SIGRTMAX - int(m[2] or 0)
        if _SIGRTMIN <= num <= _SIGRTMAX:
            return num
    if text.isdigit() and 0 < int(text) <= _SIGRTMAX:
        return int(text)
    raise ValueError(f"invalid signal {text!r}")


def _capability_mask(text: str) -> int:
    mask = 0
    for word in _words(text, unquote=True):
        if word.isdigit():
            bit = int(word)
        elif word.upper() in CAPABILITIES:
            bit = CAPABILITIES.index(word.upper())
        else:
            continue  # systemd ignores names it does not know
        if bit < 64:
            mask |= 1 << bit
    return mask


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BUS_NAME = re.compile(
    r"(?:[A-Za-z_-][A-Za-z0-9_-]*)(?:\.[A-Za-z_-][A-Za-z0-9_-]*)+|:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+"
)


def _valid_env_value(value: str) -> bool:
    """Valid UTF-8 without control characters other than tab and newline."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any((ord(c) < 32 and c not in "\t\n") or ord(c) == 127 for c in value)


def _valid_user_group(name: str) -> bool:
    """The relaxed user/group name check systemd applies to User=, Group=, SupplementaryGroups=."""
    return (
        bool(name)
        and name not in (".", "..")
        and not name.startswith("-")
        and name == name.strip(_WHITESPACE)
        and not any(c in ":/" or ord(c) < 32 or ord(c) == 127 for c in name)
    )


def _dynamic_user_name(prefix: str) -> str:
    """The user name systemd derives for DynamicUser=yes when User= is not set."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,30}", prefix):
        return prefix
    return f"_du{_siphash24(prefix.encode('utf-8', 'surrogateescape'), _DYNAMIC_USER_HASH_KEY):016x}"


_DYNAMIC_USER_HASH_KEY = bytes.fromhex("581aafe628584e96b44ef53b8c9207ec")  # systemd's fixed key for this
_M64 = 2**64 - 1


def _siphash24(data: bytes, key: bytes) -> int:
    """SipHash-2-4 (Aumasson and Bernstein), as used by systemd to name dynamic users."""
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & _M64

    def sipround() -> None:
        v[0] = (v[0] + v[1]) & _M64
        v[1] = rotl(v[1], 13) ^ v[0]
        v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & _M64
        v[3] = rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & _M64
        v[3] = rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & _M64
        v[1] = rotl(v[1], 17) ^ v[2]
        v[2] = rotl(v[2], 32)

    tail = len(data) % 8
    blocks = [data[i : i + 8] for i in range(0, len(data) - tail, 8)]
    blocks.append(data[len(data) - tail :] + bytes(7 - tail) + bytes([len(data) & 0xFF]))
    for block in blocks:
        m = int.from_bytes(block, "little")
        v[3] ^= m
        sipround()
        sipround()
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        sipround()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


# -- specifiers --------------------------------------------------------------------------------------------

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


# -- settings ----------------------------------------------------------------------------------------------


class _Ignored(Exception):
    """An assignment systemd would log and ignore."""


class _Fatal(Exception):
    """An error that makes systemd refuse to load the unit (load state bad-setting)."""


_EXEC_KEYS = ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost")
_DIRECTORY_KEYS = {
    "StateDirectory": "state_directories",
    "RuntimeDirectory": "runtime_directories",
    "LogsDirectory": "logs_directories",
    "CacheDirectory": "cache_directories",
    "ConfigurationDirectory": "configuration_directories",
}
_SERVICE_TYPES = ("simple", "exec", "forking", "oneshot", "dbus", "notify", "notify-reload", "idle")
_KILL_MODES = ("control-group", "process", "mixed", "none")
_RESTARTS = ("no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always")
_EXEC_FLAG_ORDER = ("ignore-failure", "privileged", "no-setuid", "ambient", "no-env-expand")


@dataclass
class _Manager:
    """The manager defaults units inherit (system.conf)."""

    timeout_start_usec: int = 90 * _USEC_PER_SEC
    timeout_stop_usec: int = 90 * _USEC_PER_SEC
    restart_usec: int = 100_000


@dataclass
class _Service:
    """The settings as they accumulate, assignment by assignment."""

    defaults: _Manager
    description: str = ""
    success_action: bool = False
    type: str = ""
    execs: dict[str, list[RawExec]] = field(default_factory=lambda: {k: [] for k in _EXEC_KEYS})
    pid_file: str = ""
    user: str = ""
    group: str = ""
    supplementary_groups: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    environment_files: list[tuple[str, bool]] = field(default_factory=list)
    working_directory: str = ""
    umask: int = 0o022
    kill_mode: str = "control-group"
    kill_signal: int = 15
    timeout_start_usec: int | None = None  # None: not set (oneshot units then have no start timeout)
    timeout_stop_usec: int | None = None
    restart: str = "no"
    restart_usec: int | None = None
    remain_after_exit: bool = False
    directories: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in _DIRECTORY_KEYS})
    read_write_paths: list[str] = field(default_factory=list)
    dynamic_user: bool = False
    root_directory: str = ""
    root_image: str = ""
    bus_name: str = ""
    capability_bounding_set: int = 2**64 - 1
    ambient_capabilities: int = 0
    # Settings not reported, but that take capabilities out of the bounding set (see _IMPLIED_CAP_DROPS)
    private_devices: bool = False
    protect_kernel_modules: bool = False
    protect_kernel_logs: bool = False
    protect_clock: bool = False


@dataclass(frozen=True)
class _Ctx:
    spec: _Specifiers
    warns: list[str]


_Handler = Callable[[_Service, str, str, _Ctx], None]


def _absolute_path(value: str, spec: _Specifiers) -> str:
    path = _simplify(spec.expand(value))
    if not path.startswith("/") or not _is_normalized(path):
        raise _Ignored(f"{path!r} is not a normalized absolute path")
    return path


def _set_path(attr: str) -> _Handler:
    def handle(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
        setattr(svc, attr, _absolute_path(value, ctx.spec) if value else "")

    return handle


def _set_choice(attr: str, choices: tuple[str, ...]) -> _Handler:
    def handle(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
        if value not in choices:
            raise _Ignored(f"unknown value {value!r}")
        setattr(svc, attr, value)

    return handle


def _set_parsed(attr: str, parse: Callable[[str], object]) -> _Handler:
    def handle(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
        try:
            setattr(svc, attr, parse(value))
        except ValueError as exc:
            raise _Ignored(str(exc)) from None

    return handle


def _handle_description(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    svc.description = ctx.spec.expand(value)


def _handle_success_action(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    svc.success_action = value not in ("", "none")


def _handle_user_group(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    name = ctx.spec.expand(value)
    if name and not _valid_user_group(name):
        raise _Ignored(f"invalid user/group name {name!r}")
    setattr(svc, key.lower(), name)


def _handle_groups(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.supplementary_groups.clear()
        return
    for word in _iter_words(value):
        name = ctx.spec.expand(word)
        if _valid_user_group(name):
            svc.supplementary_groups.append(name)
        else:
            ctx.warns.append(f"{key}=: invalid group name {name!r}, ignoring")


def _handle_environment(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.environment.clear()
        return
    for word in _iter_words(value, unquote=True, cunescape=True):  # words before an error stay applied
        assignment = ctx.spec.expand(word)
        name, sep, env_value = assignment.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name) or not _valid_env_value(env_value):
            ctx.warns.append(f"{key}=: invalid environment assignment {assignment!r}, ignoring")
            continue
        for i, existing in enumerate(svc.environment):
            if existing.partition("=")[0] == name:
                svc.environment[i] = assignment
                break
        else:
            svc.environment.append(assignment)


def _handle_environment_file(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.environment_files.clear()
        return
    expanded = ctx.spec.expand(value)
    optional = expanded.startswith("-")
    path = _simplify(expanded.removeprefix("-"))
    if not path.startswith("/") or not _is_normalized(path):
        raise _Ignored(f"{path!r} is not a normalized absolute path")
    svc.environment_files.append((path, optional))


def _handle_pid_file(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.pid_file = ""
        return
    path = _simplify(ctx.spec.expand(value))
    path = path if path.startswith("/") else _simplify(f"/run/{path}")  # relative: below /run
    if not _is_normalized(path):
        raise _Ignored(f"{path!r} is not a normalized path")
    if path == "/var/run" or path.startswith("/var/run/"):
        path = "/run" + path.removeprefix("/var/run")  # systemd rewrites the legacy directory
    svc.pid_file = path


def _handle_working_directory(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.working_directory = ""
        return
    missing_ok = value.startswith("-")
    rest = value.removeprefix("-")
    path = "~" if rest == "~" else _absolute_path(rest, ctx.spec)
    svc.working_directory = ("!" if missing_ok else "") + path  # D-Bus marks "missing is fine" with "!"


def _handle_umask(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not re.fullmatch(r"[0-7]+", value) or int(value, 8) > 0o7777:
        raise _Ignored(f"invalid mode {value!r}")
    svc.umask = int(value, 8)


def _handle_timeout(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    try:
        usec = _timespan_fix_0(value)
    except ValueError as exc:
        raise _Ignored(str(exc)) from None
    if key in ("TimeoutSec", "TimeoutStartSec"):
        svc.timeout_start_usec = usec
    if key in ("TimeoutSec", "TimeoutStopSec"):
        svc.timeout_stop_usec = usec


def _handle_directories(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    items = svc.directories[key]
    if not value:
        items.clear()
        return
    for word in _iter_words(value, unquote=True, retain_escape=True):
        # SOURCE[:SYMLINK]; only the source is reported over D-Bus
        parts = _words(word, separators=":", cunescape=True, unescape_separators=True)
        if not 1 <= len(parts) <= 2:
            raise _Ignored(f"invalid syntax: {word!r}")
        path = _simplify(ctx.spec.expand(parts[0]))
        if path.startswith("/") or not _is_normalized(path) or path == ".":
            ctx.warns.append(f"{key}=: {path!r} is not a normalized relative path, ignoring")
        elif path == "private" or path.startswith("private/"):
            ctx.warns.append(f"{key}=: path can't be 'private', ignoring")
        elif path not in items:
            items.append(path)


def _handle_read_write_paths(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.read_write_paths.clear()
        return
    for word in _iter_words(value, unquote=True):
        ignore_missing = word.startswith("-")
        word = word.removeprefix("-")
        below_root = word.startswith("+")
        word = word.removeprefix("+")
        try:
            path = _absolute_path(word, ctx.spec)
        except _Ignored as exc:
            ctx.warns.append(f"{key}=: {exc}, ignoring")
            continue
        svc.read_write_paths.append(("-" if ignore_missing else "") + ("+" if below_root else "") + path)


def _handle_capabilities(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    attr = "capability_bounding_set" if key == "CapabilityBoundingSet" else "ambient_capabilities"
    initial = 2**64 - 1 if attr == "capability_bounding_set" else 0
    invert = value.startswith("~")
    mask = _capability_mask(value.removeprefix("~"))
    current: int = getattr(svc, attr)
    if mask == 0 or current == initial:  # the first assignment (or an empty one) replaces the set
        setattr(svc, attr, (~mask & _M64) if invert else mask)
    else:  # later ones add to it, or take away with "~"
        setattr(svc, attr, current & ~mask if invert else current | mask)


def _handle_bus_name(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    name = ctx.spec.expand(value)
    if name and (len(name) > 255 or not _BUS_NAME.fullmatch(name)):
        raise _Ignored(f"invalid bus name {name!r}")
    svc.bus_name = name


def _handle_exec(svc: _Service, key: str, value: str, ctx: _Ctx) -> None:
    if not value:
        svc.execs[key].clear()
        return
    svc.execs[key].extend(_parse_exec_line(value, key, ctx))


def _exec_prefixes(word: str) -> tuple[set[str], bool, str]:
    """The flags of the prefixes "-", ":", "+", "!", "!!", whether "@" was given, and the rest of the word."""
    flags: set[str] = set()
    own_argv0 = False
    for i, c in enumerate(word):
        if c == "-" and "ignore-failure" not in flags:
            flags.add("ignore-failure")
        elif c == "@" and not own_argv0:
            own_argv0 = True
        elif c == ":" and "no-env-expand" not in flags:
            flags.add("no-env-expand")
        elif c in "+!" and not flags & {"privileged", "no-setuid", "ambient"}:
            flags.add("privileged" if c == "+" else "no-setuid")
        elif c == "!" and not flags & {"privileged", "ambient"}:  # the second "!" of "!!"
            flags.discard("no-setuid")
            flags.add("ambient")
        else:
            return flags, own_argv0, word[i:]
    return flags, own_argv0, ""


def _parse_exec_line(value: str, key: str, ctx: _Ctx) -> list[RawExec]:
    """One Exec*= value: commands separated by a lone ";", each with its prefixes, quoting and escapes.

    An error makes systemd refuse the unit, unless the command has the "-" prefix: then the rest of the
    line is ignored (commands before it on the same line stay).
    """
    out: list[RawExec] = []
    pos = 0
    while True:
        ignore = False
        try:
            first, pos = _next_word(value, pos, unquote=True, cunescape=True, relax=True)
            if first is None:
                return out
            flags, own_argv0, rest = _exec_prefixes(first)
            ignore = "ignore-failure" in flags
            path = ctx.spec.expand(rest)
            if not path:
                raise _SyntaxError("empty executable path")
            if not path.startswith("/") and ("/" in path or path in (".", "..") or len(path) > 255):
                raise _SyntaxError(f"neither a valid executable name nor an absolute path: {path!r}")
            if path.endswith("/"):
                raise _SyntaxError(f"executable path specifies a directory: {path!r}")
            argv = [] if own_argv0 else [path]
            more = False
            while pos < len(value):
                if value[pos] == ";" and value[pos + 1 : pos + 2] in ("", *_WHITESPACE):
                    pos += 1
                    more = True
                    break
                if value.startswith("\\;", pos) and value[pos + 2 : pos + 3] in ("", *_WHITESPACE):
                    argv.append(";")
                    pos += 2
                    while pos < len(value) and value[pos] in _WHITESPACE:
                        pos += 1
                    continue
                word, pos = _next_word(value, pos, unquote=True, cunescape=True, relax=True)
                if word is None:
                    break
                argv.append(ctx.spec.expand(word))
            if not argv:
                raise _SyntaxError("empty executable name or zeroeth argument")
        except _SyntaxError as exc:
            if ignore:
                ctx.warns.append(f"{key}=: {exc}, ignoring")
                return out
            raise _Fatal(f"{key}=: {exc}") from None
        ordered = tuple(f for f in _EXEC_FLAG_ORDER if f in flags)
        out.append(RawExec(path=_simplify(path), argv=tuple(argv), flags=ordered))
        if not more:
            return out


def _caps(*names: str) -> int:
    return sum(1 << CAPABILITIES.index(n) for n in names)


# Sandboxing switches that systemd turns into capabilities dropped from the bounding set at load time
_IMPLIED_CAP_DROPS = {
    "PrivateDevices": ("private_devices", _caps("CAP_MKNOD", "CAP_SYS_RAWIO")),
    "ProtectKernelModules": ("protect_kernel_modules", _caps("CAP_SYS_MODULE")),
    "ProtectKernelLogs": ("protect_kernel_logs", _caps("CAP_SYSLOG")),
    "ProtectClock": ("protect_clock", _caps("CAP_SYS_TIME", "CAP_WAKE_ALARM")),
}

_HANDLERS: dict[tuple[str, str], _Handler] = {
    ("Unit", "Description"): _handle_description,
    ("Unit", "SuccessAction"): _handle_success_action,
    **{("Service", k): _handle_exec for k in _EXEC_KEYS},
    ("Service", "Type"): _set_choice("type", _SERVICE_TYPES),
    ("Service", "PIDFile"): _handle_pid_file,
    ("Service", "User"): _handle_user_group,
    ("Service", "Group"): _handle_user_group,
    ("Service", "SupplementaryGroups"): _handle_groups,
    ("Service", "Environment"): _handle_environment,
    ("Service", "EnvironmentFile"): _handle_environment_file,
    ("Service", "WorkingDirectory"): _handle_working_directory,
    ("Service", "UMask"): _handle_umask,
    ("Service", "KillMode"): _set_choice("kill_mode", _KILL_MODES),
    ("Service", "KillSignal"): _set_parsed("kill_signal", _parse_signal),
    ("Service", "TimeoutSec"): _handle_timeout,
    ("Service", "TimeoutStartSec"): _handle_timeout,
    ("Service", "TimeoutStopSec"): _handle_timeout,
    ("Service", "Restart"): _set_choice("restart", _RESTARTS),
    ("Service", "RestartSec"): _set_parsed("restart_usec", parse_timespan),
    ("Service", "RemainAfterExit"): _set_parsed("remain_after_exit", _parse_bool),
    **{("Service", k): _handle_directories for k in _DIRECTORY_KEYS},
    ("Service", "ReadWritePaths"): _handle_read_write_paths,
    ("Service", "DynamicUser"): _set_parsed("dynamic_user", _parse_bool),
    ("Service", "RootDirectory"): _set_path("root_directory"),
    ("Service", "RootImage"): _set_path("root_image"),
    ("Service", "BusName"): _handle_bus_name,
    ("Service", "CapabilityBoundingSet"): _handle_capabilities,
    ("Service", "AmbientCapabilities"): _handle_capabilities,
    **{("Service", k): _set_parsed(attr, _parse_bool) for k, (attr, _) in _IMPLIED_CAP_DROPS.items()},
}


def _apply(svc: _Service, path: str, text: str, ctx: _Ctx) -> None:
    try:
        assignments = split_assignments(text, path)
    except InvalidInput as exc:
        raise _Fatal(str(exc)) from None
    for a in assignments:
        handler = _HANDLERS.get((a.section, a.key))
        if handler is None:
            continue
        try:
            handler(svc, a.key, a.value, ctx)
        except (_Ignored, _SyntaxError) as exc:
            ctx.warns.append(f"{path}:{a.line}: {a.key}={a.value}: {exc}, ignoring")
        except _Fatal as exc:
            raise _Fatal(f"{path}:{a.line}: {exc}") from None


def _manager_defaults(tree: _Tree) -> _Manager:
    manager = _Manager()
    files = ["/etc/systemd/system.conf", *_conf_files(tree, _SYSTEM_CONF_DROPIN_DIRS)]
    keys = {
        "DefaultTimeoutStartSec": ("timeout_start_usec", _timespan_fix_0),
        "DefaultTimeoutStopSec": ("timeout_stop_usec", _timespan_fix_0),
        "DefaultRestartSec": ("restart_usec", parse_timespan),
    }
    for path in files:
        try:
            assignments = split_assignments(tree.read_text(path) or "", path)
        except InvalidInput:
            continue
        for a in assignments:
            if a.section == "Manager" and a.key in keys:
                attr, parse = keys[a.key]
                with contextlib.suppress(ValueError):
                    setattr(manager, attr, parse(a.value))
    return manager


# -- finding the unit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """What one name maps to on the search path: a fragment path, a mask, or another name (an alias)."""

    path: str = ""
    masked: bool = False
    alias: str = ""


class _Finder:
    def __init__(self, tree: _Tree, search: tuple[str, ...]) -> None:
        self.tree = tree
        self.search = search
        self._resolved: dict[str, _Entry | None] = {}

    def entry(self, name: str) -> _Entry | None:
        """The first usable entry for ``name`` on the search path (before following aliases)."""
        for directory in self.search:
            path = f"{directory}/{name}"
            host = self.tree.host(self.tree.chase(directory) + "/" + name)
            if not host.is_symlink():
                if host.exists() and not host.is_dir():
                    return _Entry(path=path)
                continue
            target = os.readlink(host)
            if not target.startswith("/"):
                target = f"{directory}/{target}"
            simplified = self.tree.chase(target, follow_last=False)
            if self.tree.is_null_or_empty(simplified):
                return _Entry(masked=True)
            inside = [d for d in self.search if simplified.startswith(self.tree.chase(d) + "/")]
            if not inside:
                return _Entry(path=path)  # a linked unit file: systemd reports the link, not its target
            target_name = simplified.rpartition("/")[2]
            if target_name == name or not _valid_alias(name, target_name):
                continue  # a self-alias has no effect; a bad alias is ignored
            return _Entry(alias=target_name)
        return None

    def resolve(self, name: str) -> _Entry | None:
        """Follow aliases to a fragment path or a mask."""
        if name not in self._resolved:
            current, result = name, None
            for _ in range(_MAX_SYMLINK_HOPS):
                result = self.entry(current)
                if result is None or not result.alias:
                    break
                current = result.alias
            else:
                result = None
            self._resolved[name] = result
        return self._resolved[name]

    def names_of(self, fragment: str) -> set[str]:
        """Every name on the search path that resolves to ``fragment``'s basename (its aliases)."""
        basename = fragment.rpartition("/")[2]
        suffix = "." + basename.rpartition(".")[2]
        found = {basename}
        for directory in self.search:
            real = self.tree.chase(directory)
            for entry in self.tree.listdir(real):
                # only symlinks name something else (a name that is a file here may be a link higher up,
                # and is then found when that directory is listed)
                if not entry.endswith(suffix) or not self.tree.host(f"{real}/{entry}").is_symlink():
                    continue
                if _Name.parse(entry) is not None:
                    r = self.resolve(entry)
                    if r is not None and r.path and r.path.rpartition("/")[2] == basename:
                        found.add(entry)
        return found


def _valid_alias(alias: str, target: str) -> bool:
    a, t = _Name.parse(alias), _Name.parse(target)
    if a is None or t is None or a.type != t.type:
        return False
    if a.instance == "" or t.instance == "":  # templates alias only templates (or an instance's own)
        return t.instance == "" and a.instance is not None
    return (a.instance is None) == (t.instance is None) and (a.instance is None or a.instance == t.instance)


def _conf_files(tree: _Tree, dirs: Iterable[str]) -> list[str]:
    """*.conf in dirs (highest priority first): a name in an earlier dir masks it in later ones; by name."""
    chosen: dict[str, str] = {}
    for directory in dirs:
        real = tree.chase(directory)
        for entry in tree.listdir(real):
            wanted = entry.endswith(".conf") and not entry.startswith(".") and entry not in chosen
            if wanted and not tree.host(f"{real}/{entry}").is_dir():
                chosen[entry] = f"{real}/{entry}"
    return [chosen[k] for k in sorted(chosen)]


def _dropin_dirs(directory: str, name: str) -> list[str]:
    """Drop-in directories for one name in one search directory: the name, its template, its prefixes."""
    parsed = _Name.parse(name)
    assert parsed is not None
    out = [f"{directory}/{name}.d"]
    if parsed.instance:
        out.append(f"{directory}/{parsed.template}.d")
    prefix = parsed.prefix
    for i in range(len(prefix) - 2, -1, -1):  # "a-b-c" gives "a-b-" then "a-"
        if prefix[i] == "-":
            out.append(f"{directory}/{prefix[: i + 1]}.{parsed.type}.d")
    return out


def _dropins(tree: _Tree, search: tuple[str, ...], unit_id: str, aliases: list[str]) -> list[str]:
    """The id's directories on every search path first, then each alias's, then the unit type's own."""
    dirs = [d for name in (unit_id, *aliases) for s in search for d in _dropin_dirs(s, name)]
    dirs += [f"{s}/service.d" for s in search]
    return _conf_files(tree, dict.fromkeys(dirs))


def load_unit_settings(root: Path, name: str, warnings: list[str] | None = None) -> UnitSettings:
    """What systemd would report over D-Bus for service ``name``, read from the unit files under ``root``.

    Raises InvalidInput for a name that is not a service instance or plain service unit, or for a
    specifier only the running system can resolve; NotFound for a missing or masked unit, or one systemd
    would refuse to load (bad setting).
    """
    warns = [] if warnings is None else warnings
    parsed = _Name.parse(name)
    if parsed is None or parsed.type != "service":
        raise InvalidInput(
            f"{name!r} is not a valid service unit name", "name a unit ending in .service, e.g. nginx.service"
        )
    if parsed.instance == "":
        raise InvalidInput(
            f"{name} is a template", "name an instance instead, for example " + name.replace("@.", "@main.")
        )
    tree = _Tree(root)
    search = unit_search_path(root)
    finder = _Finder(tree, search)
    entry = finder.resolve(name)
    template_fallback = entry is None and parsed.instance is not None
    if template_fallback:
        entry = finder.resolve(parsed.template)
    if entry is None:
        raise NotFound(
            f"unit {name} not found in the unit files under {root}",
            f"check the name with: systemctl --root={root} list-unit-files '*.service'",
        )
    if entry.masked:
        raise NotFound(
            f"unit {name} is masked under {root}", f"unmask it with: systemctl --root={root} unmask {name}"
        )
    fragment = entry.path
    text = tree.read_text(fragment)
    if text is None:
        raise NotFound(f"unit {name}: cannot read its unit file {fragment} under {root}")
    if tree.is_null_or_empty(fragment):
        raise NotFound(f"unit {name} is masked under {root} (its unit file is empty)")

    basename = fragment.rpartition("/")[2]
    base_name = _Name.parse(basename)
    if base_name is None:
        raise NotFound(f"unit {name}: {fragment} is not a valid unit file name")
    unit_id = base_name.with_instance(parsed.instance or "") if base_name.instance == "" else basename
    names = {name, unit_id}
    for alias in finder.names_of(fragment):
        alias_name = _Name.parse(alias)
        if parsed.instance is None or alias_name is None:
            names.add(alias)
        elif alias_name.instance == "":
            instance = alias_name.with_instance(parsed.instance)
            own = finder.resolve(instance)
            if own is None or own.path == fragment:
                names.add(instance)
    aliases = sorted(names - {unit_id})

    dropins = _dropins(tree, search, unit_id, aliases)
    ctx = _Ctx(_Specifiers(tree, unit_id, fragment, unit_id), warns)
    svc = _Service(defaults=_manager_defaults(tree))
    try:
        _apply(svc, fragment, text, ctx)
        for path in dropins:
            _apply(svc, path, tree.read_text(path) or "", ctx)
        _finish(svc, unit_id)
    except _Fatal as exc:
        raise NotFound(
            f"unit {name} is not available (load state: bad-setting): {exc}",
            "systemd refuses to load this unit; fix the setting with a drop-in",
        ) from None
    return _settings(svc, unit_id, (unit_id, *aliases), fragment, dropins)


def _finish(svc: _Service, unit_id: str) -> None:
    """What systemd derives and checks once all files are read."""
    starts = svc.execs["ExecStart"]
    if not svc.type:
        svc.type = "dbus" if svc.bus_name else "simple" if starts else "oneshot"
    if svc.timeout_start_usec is None:
        svc.timeout_start_usec = USEC_INFINITY if svc.type == "oneshot" else svc.defaults.timeout_start_usec
    if svc.timeout_stop_usec is None:
        svc.timeout_stop_usec = svc.defaults.timeout_stop_usec
    if svc.restart_usec is None:
        svc.restart_usec = svc.defaults.restart_usec
    if svc.dynamic_user:
        parsed = _Name.parse(unit_id)
        assert parsed is not None
        svc.user = svc.user or _dynamic_user_name(parsed.prefix)
        svc.group = svc.group or svc.user
    for items in svc.directories.values():
        items.sort(key=_path_key)
    for attr, dropped in _IMPLIED_CAP_DROPS.values():
        if getattr(svc, attr):
            svc.capability_bounding_set &= ~dropped
    if not starts and not svc.remain_after_exit and not svc.success_action:
        raise _Fatal("Service has no ExecStart=, no SuccessAction= and no RemainAfterExit=yes")
    if svc.type != "oneshot" and not starts:
        raise _Fatal("Service has no ExecStart= setting, which is only allowed for Type=oneshot services")
    if svc.type != "oneshot" and len(starts) > 1:
        raise _Fatal("Service has more than one ExecStart= setting, which is only allowed for Type=oneshot")
    if svc.type == "oneshot" and svc.restart in ("always", "on-success"):
        raise _Fatal("Restart=always or on-success is not allowed for Type=oneshot services")
    if svc.type == "dbus" and not svc.bus_name:
        raise _Fatal("Service is of type D-Bus but no D-Bus service name has been specified")


def _settings(
    svc: _Service, unit_id: str, names: tuple[str, ...], fragment: str, dropins: list[str]
) -> UnitSettings:
    assert svc.timeout_start_usec is not None and svc.timeout_stop_usec is not None
    assert svc.restart_usec is not None
    dirs = {k: tuple(v) for k, v in svc.directories.items()}
    return UnitSettings(
        id=unit_id,
        names=names,
        load_state="loaded",
        fragment_path=fragment,
        dropin_paths=tuple(dropins),
        description=svc.description or unit_id,
        type=svc.type,
        exec_start_pre=tuple(svc.execs["ExecStartPre"]),
        exec_start=tuple(svc.execs["ExecStart"]),
        exec_start_post=tuple(svc.execs["ExecStartPost"]),
        exec_reload=tuple(svc.execs["ExecReload"]),
        exec_stop=tuple(svc.execs["ExecStop"]),
        exec_stop_post=tuple(svc.execs["ExecStopPost"]),
        pid_file=svc.pid_file,
        user=svc.user,
        group=svc.group,
        supplementary_groups=tuple(svc.supplementary_groups),
        environment=tuple(svc.environment),
        environment_files=tuple(svc.environment_files),
        working_directory=svc.working_directory,
        umask=svc.umask,
        kill_mode=svc.kill_mode,
        kill_signal=svc.kill_signal,
        timeout_start_usec=svc.timeout_start_usec,
        timeout_stop_usec=svc.timeout_stop_usec,
        restart=svc.restart,
        restart_usec=svc.restart_usec,
        remain_after_exit=svc.remain_after_exit,
        state_directories=dirs["StateDirectory"],
        runtime_directories=dirs["RuntimeDirectory"],
        logs_directories=dirs["LogsDirectory"],
        cache_directories=dirs["CacheDirectory"],
        configuration_directories=dirs["ConfigurationDirectory"],
        read_write_paths=tuple(svc.read_write_paths),
        dynamic_user=svc.dynamic_user,
        root_directory=svc.root_directory,
        root_image=svc.root_image,
        bus_name=svc.bus_name,
        capability_bounding_set=svc.capability_bounding_set,
        ambient_capabilities=svc.ambient_capabilities,
    )
