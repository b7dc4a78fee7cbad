"""Unit-file syntax: lines, sections and assignments, word splitting with quoting and C unescaping.

This module owns how the text of a unit file becomes data: ``split_assignments`` turns it into
:class:`Assignment` records (sections, comments, continuation lines), and ``_next_word``/``_iter_words``/
``_words`` split a value into words the way systemd's extract_first_word() does, with its quoting and
escape flags. It knows nothing about what any setting means, so the values and settings modules share
one tokenizer and ``_SyntaxError`` reports every malformed word the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import InvalidInput

_WHITESPACE = " \t\n\r"
_COMMENTS = "#;"


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
