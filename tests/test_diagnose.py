"""The diagnosis of a failed start, from journal lines (pure)."""

from __future__ import annotations

from collections.abc import Callable

from sandbox_service.diagnose import Diagnosis, diagnose

HOST = {
    "/var/lib",
    "/srv/data",
    "/srv/data/config.txt",
    "/var/lib/app",
    "/var/lib/app/db",
    "/etc/shadow",
    "/etc/app",
}
SANDBOX = {"/var/lib", "/var/lib/app", "/etc/app"}


def run(*lines: str, copy_hint: Callable[[str], str] | None = None) -> Diagnosis | None:
    return diagnose(
        lines, "web", host_has=HOST.__contains__, sandbox_has=SANDBOX.__contains__, copy_hint=copy_hint
    )


def test_a_missing_path_names_the_outermost_directory_the_host_has() -> None:
    d = run("Nov 30 vm app[1]: cat: /srv/data/config.txt: No such file or directory")
    assert d is not None
    assert d.line == "/srv/data exists on the host but not in the sandbox"
    assert d.hint == "copy it in: sandbox-service copy web /srv/data"
    # a directory the sandbox has already: the file inside it is what is missing
    d = run("open(\u2018/var/lib/app/db\u2019) failed: No such file or directory")
    assert d is not None and d.line.startswith("/var/lib/app/db ")


def test_create_words_the_fix_for_the_next_create() -> None:
    d = run("cannot open /srv/data/config.txt", copy_hint=lambda p: f"create it again with --copy {p}")
    assert d is not None and d.hint == "create it again with --copy /srv/data"


def test_what_the_host_lacks_or_never_gives_is_no_copy_hint() -> None:
    assert run("/srv/other: No such file or directory") is None
    assert run("/etc/shadow: No such file or directory") is None
    assert run("/usr/lib/x.so: cannot open shared object file: No such file or directory") is None


def test_launcher_read_only_family_and_denials() -> None:
    d = run("sandbox-service launcher: cannot mount /x: Operation not permitted")
    assert d is not None and d.line.startswith("the launcher stopped: cannot mount")
    d = run("mkdir: cannot create directory '/var/lib/app/x': Read-only file system")
    assert d is not None and d.line == "/var/lib/app/x is read-only in the sandbox"
    d = run("socket(AF_PACKET): Address family not supported by protocol")
    assert d is not None and "socket family" in d.line
    d = run("chroot: Operation not permitted")
    assert d is not None and d.line.startswith("an operation was denied")
    assert run("started fine", "listening on port 80") is None
