"""Fault injection for the box tests: stop the tool with SIGKILL at each of its steps, and compare what
the system holds afterwards.

Steps are found by the test, not by sleeps: the command runs once under strace (in the box, tracing the
tool's own process only, not its children), recording every system call that changes something (a
rename, mkdir, unlink, write or chown of a file, a message to systemd over D-Bus, the start of a helper
program); then it runs again for each chosen step with ``strace -e inject=SYSCALL:signal=KILL:when=N``,
which kills the tool as it enters the N-th call of that syscall.  Each killed run's strace log names the
call it died in, which must be the recorded one: a command whose steps change from run to run fails the
test rather than sweeping at random.

A call that commits something (a rename, a removal, a message to systemd, starting a helper) is a
boundary of its own; the calls between two of them that change one place (the 1400 symlinks and chowns
of an /etc copied into a staging directory, say) are one phase, whose first and last calls are killed.

``state`` is what the system holds for the sandboxes (files, registries, accounts, units, systemd's
view of them), with values that legitimately differ between two runs (PIDs, the MCS pair drawn at
random) normalised.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from tests.box import SystemdBox

BASE = "/var/lib/sandbox-service"
LOG = "/root/faults.strace"

# What the tool does that changes something, by syscall: where the changed thing is named (see _where).
PATH_ARG = ("rename", "mkdir", "unlink", "rmdir", "lsetxattr", "setxattr", "lchown", "chmod", "truncate")
DIR_FD_ARG = ("renameat", "renameat2", "mkdirat", "unlinkat", "fchownat", "linkat", "openat", "fchmodat")
FD_ARG = ("write", "pwrite64", "fchown", "fchmod", "fsetxattr", "ftruncate")
# A helper program (useradd, ...) is a step where it is started: how often the tool waits for one (wait4)
# depends on how fast it is, and strace counts calls.
HELPER = ("vfork", "clone", "clone3")
SYSCALLS = (*PATH_ARG, *DIR_FD_ARG, *FD_ARG, "symlink", "symlinkat", "copy_file_range", "sendmsg", *HELPER)

_CALL = re.compile(r"^(?P<name>[a-z0-9_]+)\((?P<args>.*)\) += (?P<ret>.*)$")
_PIDS = re.compile(r"(staging|deleting|tmp|upgrade)-\d+")
_ACCOUNT_LOCKS = re.compile(r"^(/etc/(?:passwd|group|shadow|gshadow))\.\d+$")  # accounts.py's FILE.PID


@dataclass(frozen=True)
class Step:
    """One call that changes something: the `nth` call of `syscall` by the command (strace's when=)."""

    syscall: str
    nth: int
    where: str  # what it changes, PIDs normalised: a path, "dbus" or "helper"
    line: str  # as strace printed it, for messages

    def __str__(self) -> str:
        return f"{self.syscall}#{self.nth} ({self.where})"


def _args(text: str) -> list[str]:
    """strace's argument list split at top-level commas (quotes, brackets and braces respected)."""
    out, depth, cur, quoted, escaped = [], 0, "", False, False
    for ch in text:
        if quoted:
            cur += ch
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _unquote(arg: str) -> str:
    return arg[1:-1].split('"...')[0] if arg.startswith('"') else arg


def _fd_path(arg: str) -> str:
    """The path strace -y shows for a descriptor: 5</etc/x> -> /etc/x; AT_FDCWD</> -> /."""
    m = re.search(r"<(.*)>$", arg)
    return m.group(1) if m else ""


def _join(directory: str, name: str) -> str:
    return name if name.startswith("/") else directory.rstrip("/") + "/" + name


def _where(name: str, args: list[str]) -> str | None:
    """What the call changes, or None for calls that change nothing of ours (reads, terminal output)."""
    if name == "sendmsg":
        return "dbus"
    if name in HELPER:
        return "helper"
    if name == "openat" and "O_CREAT" not in (args[2] if len(args) > 2 else ""):
        return None
    if name in PATH_ARG:
        path = _unquote(args[0])
    elif name in DIR_FD_ARG:
        path = _join(_fd_path(args[0]), _unquote(args[1]))
    elif name in FD_ARG:
        path = _fd_path(args[0])
    elif name == "symlink":
        path = _unquote(args[1])
    elif name == "symlinkat":
        path = _join(_fd_path(args[1]), _unquote(args[2]))
    elif name == "copy_file_range":
        path = _fd_path(args[2])
    else:
        return None
    if not path.startswith(("/var/lib/sandbox-service", "/etc/", "/run/")):
        return None  # the tool's own output, a pipe to a helper
    return _ACCOUNT_LOCKS.sub(r"\1.PID", _PIDS.sub(r"\1-PID", path))


def parse(log: str) -> list[tuple[str, str | None, str]]:
    """(syscall, where, line) of every call in an strace -y log, in order; `where` is None for a call
    that changes nothing of ours (a read, the tool's output, a call that failed)."""
    calls = []
    for line in log.splitlines():
        m = _CALL.match(line)
        if m:
            name = m.group("name")
            failed = m.group("ret").startswith("-1 ")
            calls.append((name, None if failed else _where(name, _args(m.group("args"))), line))
    return calls


def _strace(syscalls: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    return [
        "env",
        "PYTHONDONTWRITEBYTECODE=1",  # the same files opened on every run: no .pyc written meanwhile
        "strace",
        "-q",
        "-y",
        "-s",
        "256",
        "-o",
        LOG,
        "-e",
        "signal=none",
        "-e",
        "trace=" + ",".join(syscalls),
        *extra,
    ]


def tool(box: SystemdBox, *args: str) -> list[str]:
    """The tool's command line in the box, as every run of a fault test starts it."""
    return ["env", "PYTHONDONTWRITEBYTECODE=1", *box.tool_argv, *args]


def run(box: SystemdBox, *args: str) -> tuple[int, str]:
    """Run the tool in the box; its exit status and its output, stdout then stderr."""
    done = box.run(tool(box, *args), check=False)
    return done.returncode, done.stdout + done.stderr


def ok(box: SystemdBox, *args: str) -> str:
    """Run the tool in the box, which must succeed; its output."""
    rc, out = run(box, *args)
    assert rc == 0, f"{describe(args)} failed ({rc}): {out}"
    return out


def settle(box: SystemdBox) -> None:
    """Bring the cache of spec summaries (index.py) up to date, as any command may: a command that finds
    it stale rewrites it, one rename more, so every recorded and killed run must start from a fresh one."""
    box.run(tool(box, "list"))


def record(box: SystemdBox, *args: str) -> list[Step]:
    """Run the command to the end, recording its steps."""
    settle(box)
    done = box.run([*_strace(SYSCALLS), *box.tool_argv, *args], check=False)
    assert done.returncode == 0, f"{args} failed while being recorded: {done.stderr}"
    counts: dict[str, int] = {}
    steps = []
    for name, where, line in parse(box.run(["cat", LOG]).stdout):
        counts[name] = counts.get(name, 0) + 1
        if where is not None:
            steps.append(Step(name, counts[name], where, line))
    return steps


# A call that commits something (a rename, a removal, a message to systemd) is a boundary of its own.
COMMITS = ("rename", "renameat", "renameat2", "unlink", "rmdir", "link", "linkat", "sendmsg", *HELPER)


def _place(step: Step) -> str:
    """The place a step changes, coarsely: every entry below a directory beside the sandboxes (a staging
    directory, a sandbox's directory) is one place, so copying a tree is one phase."""
    if step.syscall in COMMITS:
        return f"{step.syscall}#{step.nth}"
    rel = step.where.removeprefix(BASE + "/")
    if rel != step.where and "/" in rel:
        return BASE + "/" + rel.split("/")[0] + "/..."
    return step.where


def boundaries(steps: Sequence[Step]) -> list[Step]:
    """Every step that commits something, and the first and last call of each phase between."""
    chosen: list[Step] = []
    run: list[Step] = []
    for step in [*steps, None]:
        if run and (step is None or _place(step) != _place(run[0])):
            chosen += dict.fromkeys([run[0], run[-1]])
            run = []
        if step is not None:
            run.append(step)
    return chosen


def kill_at(box: SystemdBox, step: Step, *args: str) -> None:
    """Run the command and kill it with SIGKILL as it enters `step`."""
    settle(box)
    inject = ["-e", f"inject={step.syscall}:signal=KILL:when={step.nth}"]
    argv = [*_strace([step.syscall], inject), *box.tool_argv, *args]
    done = box.run(argv, check=False)
    calls = [c for c in parse(box.run(["cat", LOG]).stdout) if c[0] == step.syscall]
    # strace shows the call the tracee died in as "= ?", and dies of the same signal itself
    killed = done.returncode in (-9, 128 + 9) and bool(calls) and calls[-1][2].endswith("= ?")
    if not killed:
        raise Diverged(f"{step}: the command was not killed (status {done.returncode}): {done.stderr}")
    if len(calls) != step.nth or calls[-1][1] != step.where:
        raise Diverged(f"{step}: killed in {calls[-1][2]!r}, call {len(calls)}, not the recorded step")


class Diverged(AssertionError):
    """A killed run did not make the calls the recorded one made (so it was not killed where meant)."""


STATE_SCRIPT = r"""
import hashlib, json, os, re, stat, subprocess, sys

BASE = "/var/lib/sandbox-service"
UNITS = "/etc/systemd/system"
names, skip = json.loads(sys.argv[1]), tuple(json.loads(sys.argv[2]))
LEVEL = re.compile(rb"s0:c[0-9]+,c[0-9]+")

def entry(p):
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode):
        content = "-> " + os.readlink(p)
    elif stat.S_ISREG(st.st_mode):
        with open(p, "rb") as f:
            content = hashlib.sha256(LEVEL.sub(b"LEVEL", f.read())).hexdigest()[:16]
    else:
        content = ""
    return f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid} {content}"

def tree(top):
    if not os.path.isdir(top):
        return None
    out = {}
    for d, dirs, files in os.walk(top):
        rel = os.path.relpath(d, top)
        dirs[:] = [n for n in dirs if os.path.normpath(os.path.join(rel, n)) not in skip]
        for n in sorted(dirs + files):
            out[os.path.normpath(os.path.join(rel, n))] = entry(os.path.join(d, n))
    return out

def listing(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else None

def read(p):
    try:
        with open(p, "rb") as f:
            return LEVEL.sub(b"LEVEL", f.read()).decode()
    except FileNotFoundError:
        return None

# the spec index is a cache any command may write or not (index.py); its temp files count
base = [n for n in listing(BASE) or [] if n != ".index.json"] if os.path.isdir(BASE) else None
state = {"base": base, "locks": listing(BASE + "/.locks"), "run": listing("/run/sandbox-service")}
for r in (".id-registry.json", ".mcs-registry.json"):
    state[r] = read(f"{BASE}/{r}")
for n in names:
    state["dir " + n] = tree(f"{BASE}/{n}")
units = {}
for n in listing(UNITS):
    p = f"{UNITS}/{n}"
    if os.path.isdir(p) and not os.path.islink(p):
        for m in listing(p):
            if "sandbox" in m:
                units[f"{n}/{m}"] = entry(f"{p}/{m}")
    elif "sandbox" in n:
        units[n] = entry(p)
state["units"] = units
accounts = []
for f in ("passwd", "group", "shadow", "gshadow"):
    for line in (read(f"/etc/{f}") or "").splitlines():
        if line.startswith("sb-"):
            fields = line.split(":")
            ids = fields[2:4] if f in ("passwd", "group") else []  # shadow: its dates change daily
            accounts.append(":".join([f, fields[0], *ids]))
state["accounts"] = accounts
# the shadow tools' locks: FILE.lock, a link to FILE.PID
state["account_locks"] = sorted(
    e for e in os.listdir("/etc") if re.fullmatch(r"(passwd|group|shadow|gshadow)\.(lock|[0-9]+)", e)
)
listed = subprocess.run(
    ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--full", "sandbox*", "run-sandbox*"],
    capture_output=True, text=True, check=True,
).stdout.split()
loaded = sorted(w for w in listed if w.endswith((".service", ".slice", ".socket", ".mount", ".target")))
files = sorted(n for n in os.listdir(UNITS) if "sandbox" in n and os.path.isfile(f"{UNITS}/{n}"))
shown = {}
props = "Id,LoadState,ActiveState,SubState,NeedDaemonReload,FragmentPath,UnitFileState"
for unit in sorted(set(loaded) | set(files)):
    out = subprocess.run(["systemctl", "show", "-p", props, unit], capture_output=True, text=True).stdout
    shown[unit] = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
state["systemd"] = shown
print(json.dumps(state, sort_keys=True))
"""


def state(box: SystemdBox, names: Sequence[str], skip: Sequence[str] = ()) -> dict[str, object]:
    """What the box holds for the sandboxes `names` (their directories leave out the paths in `skip`,
    relative to them), and the units, registries, accounts and systemd's view of every sandbox."""
    done = box.run([*box.python_argv, "-c", STATE_SCRIPT, json.dumps(list(names)), json.dumps(list(skip))])
    result: dict[str, object] = json.loads(done.stdout)
    return result


def systemd_matches_disk(snapshot: dict[str, object]) -> list[str]:
    """Where systemd's view differs from the unit files on disk: a unit file systemd has not read since
    it changed, a loaded unit whose file is gone, a unit file it does not know."""
    problems = []
    shown = snapshot["systemd"]
    assert isinstance(shown, dict)
    for unit, props in shown.items():
        if props.get("NeedDaemonReload") == "yes":
            problems.append(f"{unit}: changed on disk, not reloaded")
        fragment = props.get("FragmentPath", "")
        if (
            props.get("LoadState") == "loaded"
            and fragment.startswith("/etc/")
            and unit not in _units(snapshot)
        ):
            problems.append(f"{unit}: loaded from {fragment}, which is gone")
        if unit in _units(snapshot) and props.get("LoadState") != "loaded":
            problems.append(f"{unit}: on disk, but {props.get('LoadState')} in systemd")
    return problems


def _units(snapshot: dict[str, object]) -> set[str]:
    units = snapshot["units"]
    assert isinstance(units, dict)
    return {u for u in units if "/" not in u}


def differences(got: object, want: object, where: str = "") -> list[str]:
    """Where two states differ, as "key: got != want" lines (nested mappings compared key by key)."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = []
        for k in sorted(set(got) | set(want)):
            out += differences(got.get(k), want.get(k), f"{where}/{k}" if where else str(k))
        return out
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


def describe(args: Sequence[str]) -> str:
    return shlex.join(args)
