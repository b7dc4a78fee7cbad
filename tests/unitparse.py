"""A small reader of unit-file syntax for tests: the way systemd splits lines, words and escapes.

It is deliberately independent of sandbox_service.escape, so the property tests compare two
implementations; the integration tests then compare against systemd itself.
"""

from __future__ import annotations

_C_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "r": "\r",
    "v": "\v",
    "s": " ",
    ";": ";",
    ":": ":",
}


def lines(text: str) -> list[tuple[str, str, str]]:
    """(section, key, raw value) for every assignment; raises on anything systemd would misread."""
    out = []
    section = ""
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            continue
        if stripped.endswith("\\"):
            raise ValueError(f"continuation line: {line!r}")
        key, sep, value = stripped.partition("=")
        if not sep:
            raise ValueError(f"not an assignment: {line!r}")
        out.append((section, key.strip(), value.strip()))
    return out


def unspecifier(value: str) -> str:
    out = []
    i = 0
    while i < len(value):
        if value[i] == "%":
            if value[i + 1 : i + 2] != "%":
                raise ValueError(f"unescaped specifier in {value!r}")
            out.append("%")
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def words(value: str) -> list[str]:
    """Split like extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE): double quotes, C escapes."""
    result: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t":
            i += 1
        if i >= n:
            break
        word: list[str] = []
        quote = None
        while i < n:
            c = value[i]
            if quote is None and c in " \t":
                break
            if c == "\\":
                nxt = value[i + 1]
                if nxt not in _C_ESCAPES:
                    raise ValueError(f"unknown escape \\{nxt} in {value!r}")
                word.append(_C_ESCAPES[nxt])
                i += 2
                continue
            if c == quote:
                quote = None
            elif quote is None and c in "\"'":
                quote = c
            else:
                word.append(c)
            i += 1
        if quote is not None:
            raise ValueError(f"unterminated quote in {value!r}")
        result.append("".join(word))
    return result


def undollar(word: str) -> str:
    if "$" in word.replace("$$", ""):
        raise ValueError(f"unescaped $ in {word!r}")
    return word.replace("$$", "$")
