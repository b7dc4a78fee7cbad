"""All subprocesses go through here: argv lists only, never a shell, and one failure format."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import CommandFailed, NotFound


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = 120,
    hint: str | None = None,
) -> Result:
    """Run a program, capture its output. With check=True a non-zero exit raises CommandFailed."""
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise NotFound(f"program not found: {argv[0]}", hint) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"{format_argv(argv)} timed out after {timeout}s", hint) from exc
    result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandFailed(failure_message(result), hint)
    return result


def run_interactive(argv: Sequence[str]) -> int:
    """Run a program attached to our terminal (connect, logs -f); returns its exit status."""
    try:
        return subprocess.call(list(argv))
    except FileNotFoundError as exc:
        raise NotFound(f"program not found: {argv[0]}") from exc


def format_argv(argv: Sequence[str]) -> str:
    import shlex

    return shlex.join(argv)


def failure_message(result: Result) -> str:
    detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
    tail = f": {detail[-1]}" if detail else ""
    return f"{format_argv(result.argv)} exited with status {result.returncode}{tail}"
