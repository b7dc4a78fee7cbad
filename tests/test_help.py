"""--help reads well in an 80-column terminal: every command's help renders, fits, and no sentence is
broken by a newline written into a help text (the formatter wraps paragraphs itself; a hard newline
inside one ends a line early, and the sentence goes on below)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from sandbox_service.cli import app

WIDTH = 80
BOX = "│╭╮╰╯─ "


def commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    root = typer.main.get_command(app)
    yield (), root
    for name, sub in getattr(root, "commands", {}).items():
        yield (name,), sub


def texts(command: Any) -> Iterator[tuple[str, str]]:
    """Every help text of a command as written in the code: its help, epilog and each parameter's."""
    yield "help", command.help or ""
    yield "epilog", command.epilog or ""
    for param in command.params:
        yield f"help of {param.name}", getattr(param, "help", None) or ""


def render(path: tuple[str, ...]) -> str:
    done = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH), "TERM": "dumb"})
    assert done.exit_code == 0, f"{' '.join(path)} --help failed: {done.output}{done.exception!r}"
    return str(done.output)


def hard_breaks(text: str) -> list[tuple[str, str]]:
    """Pairs of lines (A, B) where B goes on with A's paragraph although the first word of B would have
    fitted on A: a line wrapper never leaves that room, so the break was written into the text."""
    found = []
    lines = text.splitlines()
    for a, b in itertools.pairwise(lines):
        a_text, b_text = a.rstrip(BOX), b.rstrip(BOX)
        b_body = b_text.lstrip(BOX)
        if not a_text.strip(BOX) or not b_body or a_text.endswith(":"):
            continue
        if b_body[0] in "-[" or not (b_body[0].isalnum() or b_body[0] in "('\"/"):
            continue  # an option, a [default: ...] note, a table rule: not a continuation
        # B continues A's paragraph when it starts where A's last column of text starts (columns are
        # two or more spaces apart: a table of options or commands)
        column = max(m.end() for m in re.finditer(r"(?:(?<=\S)  +|^[ │]*)(?=\S)", a_text))
        if len(b_text) - len(b_body) != column:
            continue
        room = WIDTH - (4 if a.startswith("│") else 2) - 2  # borders, padding, and some slack
        if len(a_text) + 1 + len(b_body.split()[0]) <= room:
            found.append((a, b))
    return found


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=lambda p: " ".join(p) or "(main)")
def test_help_fits_80_columns_without_broken_sentences(path: tuple[str, ...]) -> None:
    out = render(path)
    wide = [line for line in out.splitlines() if len(line) > WIDTH]
    assert wide == [], f"lines wider than {WIDTH} columns:\n" + "\n".join(wide)
    assert hard_breaks(out) == []


@pytest.mark.parametrize(
    "path, command", list(commands()), ids=lambda p: " ".join(p) if isinstance(p, tuple) else ""
)
def test_help_texts_have_no_newline_inside_a_paragraph(path: tuple[str, ...], command: Any) -> None:
    broken = [
        f"{' '.join(path) or 'main'}: {what}: {paragraph!r}"
        for what, text in texts(command)
        for paragraph in text.split("\n\n")
        if "\n" in paragraph.strip("\n")
    ]
    assert broken == []


def test_examples_are_shown_whole() -> None:
    """An example in an epilog is one command line: it must not be wrapped onto a second line."""
    for path, command in commands():
        examples = [p for p in (command.epilog or "").split("\n\n")[1:] if p.strip()]
        if not examples:
            continue
        shown = [line.strip(BOX) for line in render(path).splitlines()]
        for example in examples:
            assert example.strip() in shown, f"{' '.join(path)}: example wrapped: {example!r}"


def test_the_checks_notice_a_hard_newline() -> None:
    """The checks above fail on a help text with a newline in mid-sentence, in the code or on screen."""
    fake = typer.Typer(rich_markup_mode=None)

    @fake.command("a")
    def _a() -> None:
        """First line.

        A sandbox is a unit running the wrapped program in its own root under
        /var/lib/sandbox-service/NAME/root with a long enough tail to wrap once more on the way."""

    @fake.command("b")
    def _b() -> None: ...

    sub = getattr(typer.main.get_command(fake), "commands", {})["a"]
    assert any("\n" in p.strip("\n") for _, t in texts(sub) for p in t.split("\n\n"))
    sample = "  A sandbox runs in its own root under\n  /var/lib/sandbox-service/NAME/root, which it owns.\n"
    assert hard_breaks(sample) == [(sample.splitlines()[0], sample.splitlines()[1])]
    wrapped = "  " + "word " * 14 + "a sandbox\n  /var/lib/sandbox-service/NAME/root, which it owns.\n"
    assert hard_breaks(wrapped) == []
