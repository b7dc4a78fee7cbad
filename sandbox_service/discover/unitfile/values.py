"""Scalar values of unit settings: time spans, booleans, signals, capability masks and name checks.

This module owns the parsers and validators that turn one setting's text into a value, as systemd
does: ``parse_timespan`` (and the 0-means-infinity variant for timeouts), booleans, signal names,
capability masks, the user/group, environment and bus-name checks, and the user name that
DynamicUser=yes derives (with the SipHash-2-4 systemd uses for it). Each is a pure function of its
input, so the setting handlers stay about where a value goes, not how it is spelled.
"""

from __future__ import annotations

import re

from ...security import CAPABILITIES
from .syntax import _WHITESPACE, _words

USEC_INFINITY = 2**64 - 1
_USEC_PER_SEC = 1_000_000


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
