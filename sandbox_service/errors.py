"""Typed errors. Library code raises these; only cli.py turns them into messages and exit codes."""

from __future__ import annotations

import errno


class SandboxError(Exception):
    """Base error: a one-line message plus an optional hint telling the user what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidInput(SandboxError):
    """The user gave something we refuse (bad name, unsafe characters, malformed option)."""

    exit_code = 2


class NotFound(SandboxError):
    """A sandbox, unit, package or path that was named does not exist."""

    exit_code = 3


class AlreadyExists(SandboxError):
    exit_code = 4


class PermissionDenied(SandboxError):
    """Not root, or the system refused access."""

    exit_code = 5


class SystemdUnavailable(SandboxError):
    """systemd is not running as PID 1 or its bus cannot be reached."""

    exit_code = 6


class NotWrappable(SandboxError):
    """The host unit uses something that cannot be re-expressed inside a sandbox."""

    exit_code = 7


class DiscoveryFailed(SandboxError):
    """Nothing could be found to put into the sandbox's private /etc and /var."""

    exit_code = 8


class CommandFailed(SandboxError):
    """An external program exited non-zero (see run.py for the one failure format)."""

    exit_code = 9


class JobFailed(SandboxError):
    """A systemd job (start, stop, restart) finished with a result other than 'done'."""

    exit_code = 10

    def __init__(
        self, message: str, hint: str | None = None, unit: str | None = None, journal: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, hint)
        self.unit = unit
        self.journal = journal


class DBusError(SandboxError):
    """A D-Bus call to systemd failed; the message carries systemd's own error name and text."""

    exit_code = 11


class NotRunning(SandboxError):
    """An operation needs the sandbox to be running and it is not."""

    exit_code = 12


class TooExposed(SandboxError):
    """The sandbox's exposure score is above what --max-exposure allows."""

    exit_code = 13


class LimitReached(SandboxError):
    """Starting the sandboxes would exceed a limit of the host (PID 1's descriptors, mounts, namespaces)."""

    exit_code = 14


class ApplyIncomplete(SandboxError):
    """apply did what it could, but some sandboxes failed (the summary says which and why)."""

    exit_code = 15


class Busy(SandboxError):
    """Another run of the tool is changing the same sandbox, and --no-wait said not to wait for it."""

    exit_code = 16


class NoSpace(SandboxError):
    """A file system filled up (or a quota ran out) while the command was writing."""

    exit_code = 17


def no_space(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT error that caused `exc` (itself, or one it was raised from), if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


_UNDO_FAILED = "sandbox_service_undo_failed"


def undo_failures(exc: BaseException) -> tuple[str, ...]:
    """The rollback steps that failed after `exc` stopped a transaction (none: everything was undone)."""
    found: tuple[str, ...] = getattr(exc, _UNDO_FAILED, ())
    return found


def set_undo_failures(exc: BaseException, problems: tuple[str, ...]) -> None:
    """The error goes on; what could not be undone travels with it."""
    setattr(exc, _UNDO_FAILED, problems)
