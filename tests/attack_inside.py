"""What a compromised service tries from inside its sandbox, as its root (run by tests/test_attack_box.py).

Standard library only: it runs on the host's /usr/bin/python3 inside a sandbox.  Every attempt is
recorded as "ok" (it worked: the sandbox failed) or the error it met; nothing here is destructive when
it is refused, and the probes that would do harm if they worked use harmless variants (signal 0 and
SIGURG, reading instead of writing, a file of our own instead of the host's).

Usage: python3 attack_inside.py RESULT_PATH TARGETS_JSON
TARGETS_JSON: {"targets": {"label": {"pid": PID, "start": START, "comm": COMM}, ...}}, PIDs as the host
sees them.  In a PID namespace of its own a number names another process (or none): a target is the
process with the host's start time and name, and the attacker reports every process it can see that way.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import sys
from collections.abc import Callable

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
PTRACE_ATTACH = 16
MS_RDONLY = 1


def attempt(action: Callable[[], object]) -> str:
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "ok"


def c_call(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def write(path: str, text: str, mode: str = "w") -> None:
    with open(path, mode) as f:
        f.write(text)


def fill(path: str, limit: int) -> str:
    """Write up to `limit` bytes; the error that stopped it, or "ok"."""
    chunk = b"x" * (1 << 20)
    written = 0
    try:
        with open(path, "wb") as f:
            while written < limit:
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, "?")
    finally:
        os.unlink(path) if os.path.exists(path) else None
    return "ok"


def identity(pid: int) -> tuple[int, str] | None:
    """(start time, name) of a visible process: the same in every PID namespace."""
    try:
        raw = read(f"/proc/{pid}/stat")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    return int(raw[raw.rindex(")") + 2 :].split()[19]), comm


def probe_process(pid: int, target: tuple[int, str], visible: list[int]) -> dict[str, str]:
    """Every way at another process: see it, signal it, read through its /proc entries, trace it."""
    seen = identity(pid)
    if seen is not None and seen != target:
        # that number is another process here (the attacker's own namespace): the target has none
        return dict.fromkeys(("visible", "signal0", "sigurg", "root", "mem", "environ", "ptrace"), "ENOENT")

    def bus() -> None:
        socket.socket(socket.AF_UNIX).connect(f"/proc/{pid}/root/run/dbus/system_bus_socket")

    return {
        "visible": "ok" if pid in visible else "ENOENT",
        "signal0": attempt(lambda: os.kill(pid, 0)),
        "sigurg": attempt(lambda: os.kill(pid, signal.SIGURG)),
        "root": attempt(lambda: os.listdir(f"/proc/{pid}/root/")),
        "mem": attempt(lambda: read(f"/proc/{pid}/mem")),
        "environ": attempt(lambda: read(f"/proc/{pid}/environ")),
        "ptrace": attempt(lambda: c_call(libc.ptrace(PTRACE_ATTACH, pid, None, None))),
        "bus_through_proc": attempt(bus),
    }


def main() -> None:
    result_path, targets = sys.argv[1], json.loads(sys.argv[2])
    me = os.getpid()
    visible = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    out: dict[str, object] = {
        "uid": os.getuid(),
        "uid_map": read("/proc/self/uid_map").split(),
        "capeff": next(line for line in read("/proc/self/status").splitlines() if line.startswith("CapEff")),
        "visible_pids": visible,
        "self": me,
    }
    per_target: dict[str, dict[str, str]] = {}
    for label, t in targets["targets"].items():
        per_target[label] = probe_process(int(t["pid"]), (int(t["start"]), str(t["comm"])), visible)
    out["identities"] = [list(ident) for pid in visible if (ident := identity(pid)) is not None]
    out["targets"] = per_target
    out["system_bus"] = attempt(lambda: socket.socket(socket.AF_UNIX).connect("/run/dbus/system_bus_socket"))
    out["new_user_namespace"] = attempt(lambda: c_call(libc.unshare(CLONE_NEWUSER)))
    out["new_mount_namespace"] = attempt(lambda: c_call(libc.unshare(CLONE_NEWNS)))
    out["mount_tmpfs"] = attempt(lambda: c_call(libc.mount(b"tmpfs", b"/mnt", b"tmpfs", 0, None)))
    out["write_usr"] = attempt(lambda: write("/usr/bin/sandbox-attack", ""))
    out["replace_launcher"] = attempt(lambda: write("/.sandbox-service/launch", "", "a"))
    out["launcher_dir"] = attempt(lambda: write("/.sandbox-service/evil", ""))
    out["rename_etc"] = attempt(lambda: os.rename("/etc", "/etc.moved"))
    # the kernel follows /lib64 (or /lib) to the loader when systemd starts the next command as host root
    out["replace_loader_link"] = attempt(lambda: os.rename("/lib", "/lib.moved"))
    out["new_top_entry"] = attempt(lambda: os.mkdir("/lib64.new"))
    # a write may "succeed" into /dev/null, bound there: what counts is what the loader reads back
    attempt(lambda: write("/etc/ld.so.preload", "/var/evil.so\n"))
    out["preload_list"] = read("/etc/ld.so.preload")
    out["unlink_preload"] = attempt(lambda: os.unlink("/etc/ld.so.preload"))
    out["unlink_ld_cache"] = attempt(lambda: os.unlink("/etc/ld.so.cache"))
    out["sysctl"] = attempt(lambda: write("/proc/sys/kernel/hostname", "owned"))
    out["fill_run"] = fill("/run/fill", 256 << 20)
    with open(result_path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
