"""The man pages and shell completions: they render without warnings and cover every command, option,
spec key and exit status that the code has, so a new option or key cannot land undocumented."""

from __future__ import annotations

import dataclasses
import inspect
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from sandbox_service import errors, specfile
from sandbox_service.cli import app
from sandbox_service.spec import EnvFile, EnvVar, ExecCommand, Limits, SandboxSpec, ServiceDef

REPO = Path(__file__).resolve().parent.parent
MAN1 = REPO / "man" / "sandbox-service.1"
MAN5 = REPO / "man" / "sandbox-service.yaml.5"
COMPLETIONS = {
    "bash": REPO / "completions" / "sandbox-service.bash",
    "zsh": REPO / "completions" / "_sandbox-service",
    "fish": REPO / "completions" / "sandbox-service.fish",
}
# Options that typer adds by itself; documenting them is welcome but not required.
TYPER_OPTIONS = {"--help", "-h", "--install-completion", "--show-completion"}

_FONT_ESCAPE = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)")


def normalise(roff: str) -> str:
    """Roff source as plain text for searching: font escapes dropped, '\\-' read as '-'."""
    text = _FONT_ESCAPE.sub("", roff)
    for escape, plain in (("\\-", "-"), ("\\&", ""), ("\\%", ""), ("\\(aq", "'"), ("\\(ti", "~")):
        text = text.replace(escape, plain)
    return text.replace("\\e", "\\")


def sections(roff: str, macro: str) -> dict[str, str]:
    """Normalised text of each `.SH` (or `.SS`) section, keyed by its heading."""
    out: dict[str, str] = {}
    heading: str | None = None
    for line in normalise(roff).splitlines():
        if line.startswith(f".{macro} "):
            heading = line[len(macro) + 2 :].strip().strip('"')
            out[heading] = ""
        elif macro == "SS" and line.startswith(".SH "):
            heading = None
        elif heading is not None:
            out[heading] += line + "\n"
    return out


def mentions(text: str, word: str) -> bool:
    """True when word stands on its own in text (so '--copy' is not found inside '--copy-all')."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def tag_words(section_text: str) -> set[str]:
    """Identifiers in the tag lines of `.TP` paragraphs (the line after each `.TP`)."""
    lines = section_text.splitlines()
    return {
        word
        for i, line in enumerate(lines[:-1])
        if line.strip() == ".TP"
        for word in re.findall(r"[a-z][a-z0-9_]*", lines[i + 1])
    }


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of a click-style tree, the root included, with its path of command names.

    The typer in use vendors click as typer._click, where TyperGroup derives from Command rather than a
    click Group, so subcommands are found by their ``commands`` mapping, not by class.
    """
    yield path, command
    subcommands: Mapping[str, Any] = getattr(command, "commands", {})
    for name, sub in subcommands.items():
        if not getattr(sub, "hidden", False):
            yield from walk(sub, (*path, name))


def option_names(command: Any) -> list[str]:
    names: list[str] = []
    for param in command.params:
        if param.param_type_name == "option" and not getattr(param, "hidden", False):
            names += [*param.opts, *param.secondary_opts]
    return [n for n in names if n not in TYPER_OPTIONS]


def undocumented(cli: typer.Typer, roff: str) -> list[str]:
    """What the page lacks: a subsection per command, each option in its command's subsection, each
    global option under GLOBAL OPTIONS, each command in the SYNOPSIS."""
    top = sections(roff, "SH")
    subsections = sections(top["COMMANDS"], "SS")
    missing: list[str] = []
    for path, command in walk(typer.main.get_command(cli)):
        if not path:
            documented = top["GLOBAL OPTIONS"]
            missing += [f"global option {o}" for o in option_names(command) if not mentions(documented, o)]
            continue
        name = " ".join(path)
        if not mentions(top["SYNOPSIS"], path[-1]):
            missing.append(f"command {name} in SYNOPSIS")
        bodies = [body for heading, body in subsections.items() if heading.split()[: len(path)] == list(path)]
        if not bodies:
            missing.append(f"command {name} (a '.SS {name} ...' subsection under COMMANDS)")
            continue
        missing += [f"{name} {o}" for o in option_names(command) if not mentions(bodies[0], o)]
    return missing


@pytest.mark.parametrize("page", [MAN1, MAN5], ids=lambda p: p.name)
def test_man_page_renders_without_warnings(page: Path) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    text = page.read_text()
    assert text.isascii(), f"{page.name}: use roff escapes for non-ASCII characters"
    argv = [groff, "-man", "-ww", "-z"] + (["-t"] if ".TS" in text else []) + [str(page)]
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert res.returncode == 0 and res.stderr == "", f"{' '.join(argv)}:\n{res.stderr}"


def test_every_command_and_option_is_in_the_man_page() -> None:
    assert undocumented(app, MAN1.read_text()) == []


def test_the_check_notices_an_undocumented_option() -> None:
    fake = typer.Typer()

    # declared as sandbox_service/cli.py declares its options, which every typer reads
    @fake.callback()
    def _main(root: str = typer.Option("/", "--root")) -> None: ...

    @fake.command("create")
    def _create(frob: bool = typer.Option(False, "--frobnicate", "-F")) -> None: ...

    @fake.command("fly")
    def _fly() -> None: ...

    assert undocumented(fake, MAN1.read_text()) == [
        "create --frobnicate",
        "create -F",
        "command fly in SYNOPSIS",
        "command fly (a '.SS fly ...' subsection under COMMANDS)",
    ]


def test_every_exit_status_is_in_the_man_page() -> None:
    exit_status = sections(MAN1.read_text(), "SH")["EXIT STATUS"]
    listed = {int(n) for n in re.findall(r"^\.TP\n\.B (\d+)$", exit_status, re.MULTILINE)}
    codes = {
        cls.exit_code
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.SandboxError)
    }
    assert {0, 2} | codes <= listed  # 0 success, 2 also typer's usage errors


def test_every_spec_key_is_in_the_spec_file_page() -> None:
    top = sections(MAN5.read_text(), "SH")
    expected = {
        "TOP-LEVEL KEYS": {"version", *(f.name for f in dataclasses.fields(SandboxSpec))},
        "SERVICE KEYS": {f.name for f in dataclasses.fields(ServiceDef)},
        "LIMITS KEYS": {f.name for f in dataclasses.fields(Limits)},
        "COMMAND ENTRIES": {f.name for f in dataclasses.fields(ExecCommand)},
    }
    for section, keys in expected.items():
        assert keys - tag_words(top[section]) == set(), f"keys missing from {section}"
    entry_keys = {f.name for cls in (EnvVar, EnvFile) for f in dataclasses.fields(cls)}
    assert {k for k in entry_keys if not mentions(top["SERVICE KEYS"], k)} == set()


def test_spec_file_example_is_what_the_tool_writes() -> None:
    """The EXAMPLE of the spec file page loads, and writing it back gives the same text: no key is
    missing from it, and none is left that the tool no longer knows."""
    example = sections(MAN5.read_text(), "SH")["EXAMPLE"]
    block = example.split(".EX\n", 1)[1].split(".EE\n", 1)[0]
    spec = specfile.loads(block, "EXAMPLE")
    assert specfile.dumps(spec) == block


@pytest.mark.parametrize("shell", sorted(COMPLETIONS))
def test_completion_knows_every_command_and_option(shell: str) -> None:
    script = COMPLETIONS[shell].read_text()
    missing = []
    for path, command in walk(typer.main.get_command(app)):
        if path and not mentions(script, path[-1]):
            missing.append(" ".join(path))
        for option in option_names(command):
            if option.startswith("--"):
                spelled = f"-l {option[2:]}" if shell == "fish" else option
                if spelled not in script:
                    missing.append(f"{' '.join(path) or 'global'} {option}")
    assert missing == []


@pytest.mark.parametrize("shell", sorted(COMPLETIONS))
def test_completion_script_syntax(shell: str) -> None:
    interpreter = shutil.which(shell)
    if interpreter is None:
        if shell == "bash":
            pytest.fail("bash is not installed")
        pytest.skip(f"{shell} is not installed")
    argv = [interpreter, "-n", str(COMPLETIONS[shell])]
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert res.returncode == 0 and res.stderr == "", res.stderr
