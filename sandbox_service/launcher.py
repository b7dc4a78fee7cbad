"""The sandbox launcher: every command of a sandbox passes through it on its way in.

systemd starts each Exec*= command of a sandbox as root inside the sandbox's own root, network and IPC
namespaces, with seccomp and NoNewPrivileges already applied.  This script, run there by the host's
/usr/bin/python3, finishes the job in two phases:

1. As host root (trusted): give the process a user namespace of its own that maps the sandbox's private
   ID range (inner 0..65535 to host BASE..BASE+65535), together with a mount namespace owned by it.  A
   helper process that stays outside writes the ID maps, which needs CAP_SETUID/CAP_SETGID there.
2. As the sandbox's root (an unprivileged host ID with capabilities only inside its own namespace):
   create the service's directories, drop the capabilities the wrapped unit does not need, forbid
   further namespaces, switch to the service's user and exec the command.

The sandbox's root can then neither signal, trace nor open /proc entries of any process outside its
sandbox (they run under other IDs, in other user namespaces), and a PID file it writes is not owned by
root, so systemd never adopts a process outside the sandbox's cgroup through it.

This file is copied into each sandbox (``/.sandbox-service/launch``, owned by host root in a directory
the sandbox cannot write) next to ``launch.json``, its settings.  It must therefore stand alone: the
Python standard library only, nothing from the rest of the package, and Python 3.9 syntax.  It reads
nothing from the sandbox while it is still host root, so files the sandbox controls cannot steer it.
"""

from __future__ import annotations

import os
import signal

FORWARDED = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGWINCH, signal.SIGCONT,
)  # fmt: skip

# With PrivatePIDs= the launcher is PID 1 of its PID namespace, and the kernel drops a signal sent to PID
# 1 that it neither handles nor blocks: a stop that came while the launcher set up the sandbox was lost
# and the stop waited out TimeoutStopSec.  Blocked, the signal waits for stay_as_init().  So this comes
# first, before the slower imports; only the interpreter's own start-up is left uncovered.
if os.getpid() == 1:
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)

import contextlib  # noqa: E402
import ctypes  # noqa: E402
import errno  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
from typing import NoReturn  # noqa: E402

CONFIG = "/.sandbox-service/launch.json"
CONFIG_VERSION = 1
ID_COUNT = 65536

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
NAMESPACE_FLAGS = (
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
    | CLONE_NEWNET | CLONE_NEWTIME
)  # fmt: skip

PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
SECCOMP_MODE_FILTER = 2
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_RELATIME = 0x200000
# A remount must repeat the flags the mount was locked with (statvfs() reports them).
STATVFS_TO_MOUNT = (
    (os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME),
)  # fmt: skip
LINUX_CAPABILITY_VERSION_3 = 0x20080522

# systemd's exit statuses for the same failures (systemd.exec(5)), so that `systemctl status` and our
# diagnosis read them the same way.
EXIT_CHDIR = 200
EXIT_EXEC = 203
EXIT_GROUP = 216
EXIT_USER = 217
EXIT_CAPABILITIES = 218
EXIT_SECCOMP = 228
EXIT_NAMESPACE = 226
EXIT_CONFIG = 210  # "CHROOT" in systemd's table; here: the launcher's own settings are unusable

# Linux capability numbers (linux/capability.h)
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

# (audit arch, syscall numbers of unshare, clone, clone3, setns, of mount, umount2, pivot_root and the
# new mount API, and a mask applied to the number first) for install_filter(); other architectures run
# without it (systemd's own filter still applies).
_NEW_MOUNT_API = (428, 429, 430, 431, 432, 433, 442)  # open_tree ... fspick, mount_setattr (all arches)
SECCOMP_ARCHES = {
    # the mask folds x32's numbers onto x86-64's
    "x86_64": (0xC000003E, 272, 56, 435, 308, (165, 166, 155, *_NEW_MOUNT_API), 0xBFFFFFFF),
    "aarch64": (0xC00000B7, 97, 220, 435, 268, (40, 39, 41, *_NEW_MOUNT_API), 0xFFFFFFFF),
}

# What systemd sets for the account it runs us as (the sandbox's host account): replaced by the service
# user's, or dropped when the wrapped unit names no user, unless the unit sets them itself.
ACCOUNT_VARIABLES = frozenset({"USER", "LOGNAME", "HOME", "SHELL"})

DIRECTORY_ENV = {
    "runtime": "RUNTIME_DIRECTORY",
    "state": "STATE_DIRECTORY",
    "cache": "CACHE_DIRECTORY",
    "logs": "LOGS_DIRECTORY",
    "configuration": "CONFIGURATION_DIRECTORY",
}

_libc = ctypes.CDLL(None, use_errno=True)


class LaunchError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def fail(status: int, message: str) -> NoReturn:
    raise LaunchError(status, message)


def _check(result: int, status: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        fail(status, f"{what}: {os.strerror(err)}")


# ---------------------------------------------------------------------------------------------------
# Settings


class Settings:
    """launch.json, validated before anything is done with it."""

    def __init__(self, data: object) -> None:
        if not isinstance(data, dict) or data.get("version") != CONFIG_VERSION:
            fail(EXIT_CONFIG, f"{CONFIG}: expected a JSON object with version {CONFIG_VERSION}")
        self.id_base = _int(data, "id_base")
        if self.id_base <= 0 or self.id_base % ID_COUNT or self.id_base + ID_COUNT > 2**31:
            fail(EXIT_CONFIG, f"{CONFIG}: id_base {self.id_base} is not a valid ID range")
        self.user = _opt_str(data, "user")
        self.group = _opt_str(data, "group")
        self.supplementary_groups = _str_list(data, "supplementary_groups")
        bounding = data.get("bounding")
        self.bounding = None if bounding is None else _caps(_str_list(data, "bounding"))
        self.ambient = _caps(_str_list(data, "ambient"))
        self.control = _caps(_str_list(data, "control"))
        self.unprivileged_ports = bool(data.get("unprivileged_ports", False))
        self.forbid_namespaces = bool(data.get("forbid_namespaces", True))
        self.unit_environment = set(_str_list(data, "unit_environment"))
        # systemd would change directory as the host account, which may not enter the service's own
        # directories: the launcher does it inside, as the service's user ("-": may be missing, "~": home)
        self.working_directory = _opt_str(data, "working_directory")
        self.mounts = _mount_settings(data.get("mounts"))
        self.directories: list[tuple[str, str, int]] = []
        for entry in data.get("directories", []):
            if not isinstance(entry, dict):
                fail(EXIT_CONFIG, f"{CONFIG}: a directory entry is not an object")
            kind, path, mode = entry.get("kind"), entry.get("path"), entry.get("mode")
            if kind not in DIRECTORY_ENV or not isinstance(path, str) or not path.startswith("/"):
                fail(EXIT_CONFIG, f"{CONFIG}: invalid directory entry {entry!r}")
            if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
                fail(EXIT_CONFIG, f"{CONFIG}: invalid mode in {entry!r}")
            self.directories.append((kind, path, mode))


class MountSettings:
    """The unit's own ProtectSystem= and ReadOnlyPaths=, with the paths it keeps writable."""

    def __init__(self, protect_system: str | None, read_only: list[str], writable: list[str]) -> None:
        self.protect_system = protect_system
        self.read_only = read_only
        self.writable = writable


def _mount_settings(value: object) -> MountSettings | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        fail(EXIT_CONFIG, f"{CONFIG}: mounts is not an object")
    level = _opt_str(value, "protect_system")
    if level is not None and level not in PROTECTED_TOPS:
        fail(EXIT_CONFIG, f"{CONFIG}: unknown protect_system {level!r}")
    paths = {key: _str_list(value, key) for key in ("read_only", "writable")}
    for path in (*paths["read_only"], *paths["writable"]):
        if not path.lstrip("-+").startswith("/"):
            fail(EXIT_CONFIG, f"{CONFIG}: {path!r} is not an absolute path")
    return MountSettings(level, paths["read_only"], paths["writable"])


def _int(data: dict[str, object], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        fail(EXIT_CONFIG, f"{CONFIG}: {key} is not an integer")
    return value


def _opt_str(data: dict[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        fail(EXIT_CONFIG, f"{CONFIG}: {key} is not a string")
    return value


def _str_list(data: dict[str, object], key: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        fail(EXIT_CONFIG, f"{CONFIG}: {key} is not a list of strings")
    return list(value)


def _caps(names: list[str]) -> set[int]:
    out = set()
    for name in names:
        if name not in CAPABILITIES:
            fail(EXIT_CONFIG, f"{CONFIG}: unknown capability {name!r}")
        out.add(CAPABILITIES.index(name))
    return out


def load_settings() -> Settings:
    # Owned by host root in a directory the sandbox cannot write: read while still host root.
    try:
        with open(CONFIG, encoding="utf-8") as f:
            return Settings(json.load(f))
    except (OSError, ValueError) as exc:
        fail(EXIT_CONFIG, f"cannot read {CONFIG}: {exc}")


# ---------------------------------------------------------------------------------------------------
# Phase 1: host root


def allow_unprivileged_ports() -> None:
    """In the sandbox's private network namespace, let its root (an unprivileged host ID) bind ports
    below 1024, as a root daemon expects to.  The setting belongs to that namespace alone."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f:
            f.write("0")
    except OSError as exc:
        fail(EXIT_NAMESPACE, f"cannot allow ports below 1024 in the sandbox's network namespace: {exc}")


def _write_proc(pid: int, name: str, text: str) -> None:
    fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_new_namespaces(id_base: int) -> None:
    """unshare() a user and a mount namespace; a child still outside writes the ID maps."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(ready_w)
        os.close(done_r)
        status = 0
        try:
            if os.read(ready_r, 1) == b"u":
                mapping = f"0 {id_base} {ID_COUNT}\n"
                _write_proc(parent, "uid_map", mapping)
                _write_proc(parent, "gid_map", mapping)
                os.write(done_w, b"m")
        except OSError as exc:
            print(f"sandbox-service launcher: cannot write the ID map: {exc}", file=sys.stderr)
            status = 1
        os._exit(status)
    os.close(ready_r)
    os.close(done_w)
    result = _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)
    err = ctypes.get_errno()
    os.write(ready_w, b"u" if result == 0 else b"x")
    os.close(ready_w)
    mapped = os.read(done_r, 1) == b"m"
    os.close(done_r)
    os.waitpid(child, 0)
    if result != 0:
        fail(EXIT_NAMESPACE, f"cannot create the sandbox's user namespace: {os.strerror(err)}")
    if not mapped:
        fail(EXIT_NAMESPACE, "the sandbox's ID map could not be written")


def join_namespaces(pid: int, id_base: int, *, optional: bool = False) -> bool:
    """Enter the user and mount namespace of a process of the same sandbox (execute, connect, reload).
    With `optional`, a process that is gone is no error: False, and nothing was done."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        if optional and exc.errno == errno.ESRCH:
            return False
        fail(EXIT_NAMESPACE, f"cannot find process {pid} of the sandbox: {exc.strerror}")
    try:
        user_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        mnt_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        # In a PID namespace of its own (PrivatePIDs=) the main process's /proc shows that namespace,
        # in which this process has no entry (no /proc/self): then only its user namespace is joined.
        same_pids = os.stat(f"/proc/{pid}/ns/pid").st_ino == os.stat("/proc/self/ns/pid").st_ino
        # Still the same process (its PID was not reused meanwhile): the pidfd can still signal it.
        if _libc.syscall(424, pidfd, 0, None, 0) != 0:  # pidfd_send_signal(pidfd, 0)
            fail(EXIT_NAMESPACE, f"process {pid} of the sandbox went away")
    except OSError as exc:
        fail(EXIT_NAMESPACE, f"cannot open the namespaces of process {pid}: {exc.strerror}")
    finally:
        os.close(pidfd)
    _check(_libc.setns(user_fd, CLONE_NEWUSER), EXIT_NAMESPACE, "cannot join the sandbox's user namespace")
    with open("/proc/self/uid_map", encoding="ascii") as f:
        fields = f.read().split()
    if fields != ["0", str(id_base), str(ID_COUNT)]:
        fail(EXIT_NAMESPACE, f"process {pid} does not belong to this sandbox (ID map {' '.join(fields)})")
    become_root_inside()
    if same_pids:
        _check(_libc.setns(mnt_fd, CLONE_NEWNS), EXIT_NAMESPACE, "cannot join the sandbox's mount namespace")
    os.close(user_fd)
    os.close(mnt_fd)
    return True


def oldest_in_sandbox() -> int | None:
    """The longest-running process of this unit that is inside the sandbox (in a user namespace other
    than the one systemd started us in), or None: what reload and stop commands join when systemd
    knows no main process.  Whatever is joined must still show the sandbox's ID map (join_namespaces)."""
    own = os.stat("/proc/self/ns/user").st_ino
    best: tuple[int, int] | None = None
    for pid in _unit_processes():
        try:
            if pid == os.getpid() or os.stat(f"/proc/{pid}/ns/user").st_ino == own:
                continue
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                started = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if best is None or started < best[0]:
            best = (started, pid)
    return None if best is None else best[1]


def _unit_processes() -> list[int]:
    """The processes of this unit's control group, on the unified hierarchy or systemd's legacy one."""
    places = []
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f:
            hierarchy, controllers, path = line.rstrip("\n").split(":", 2)
            if hierarchy == "0" and not controllers:
                places += [f"/sys/fs/cgroup{path}", f"/sys/fs/cgroup/unified{path}"]
            elif "name=systemd" in controllers.split(","):
                places.append(f"/sys/fs/cgroup/systemd{path}")
    for place in places:
        try:
            with open(f"{place.rstrip('/')}/cgroup.procs", encoding="ascii") as f:
                return [int(line) for line in f if line.strip()]
        except OSError:
            continue
    return []


def become_root_inside() -> None:
    """Be the sandbox's root (host ID BASE) with its capabilities in the namespace.  systemd started us as
    host ID BASE, which the map makes 0: usually nothing is left to do, and then no set*id() call is
    made at all (profiles may forbid them)."""
    if set(os.getgroups()) - {0}:  # systemd's initgroups() for the host account gives its own group only
        os.setgroups([])
    if os.getresgid() != (0, 0, 0):
        os.setresgid(0, 0, 0)
    if os.getresuid() != (0, 0, 0):
        os.setresuid(0, 0, 0)


# ---------------------------------------------------------------------------------------------------
# Phase 2: the sandbox's root


class Account:
    def __init__(self, uid: int, gid: int, groups: list[int], home: str, shell: str, name: str) -> None:
        self.uid, self.gid, self.groups = uid, gid, groups
        self.home, self.shell, self.name = home, shell, name


def _table(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def _find(rows: list[list[str]], name: str, min_fields: int) -> list[str] | None:
    for row in rows:
        if len(row) >= min_fields and (row[0] == name or (name.isdigit() and row[2] == name)):
            return row
    return None


def resolve_account(settings: Settings) -> Account | None:
    """User=, Group= and SupplementaryGroups= resolved in the sandbox's own /etc (read as its root)."""
    if settings.user is None and settings.group is None and not settings.supplementary_groups:
        return None
    passwd, group = _table("/etc/passwd"), _table("/etc/group")
    name, uid, gid, home, shell = "root", 0, 0, "/root", "/bin/sh"
    if settings.user is not None:
        row = _find(passwd, settings.user, 7)
        if row is not None:
            name, uid, gid, home, shell = row[0], int(row[2]), int(row[3]), row[5], row[6]
        elif settings.user.isdigit():
            name, uid, gid, home, shell = (
                settings.user,
                int(settings.user),
                int(settings.user),
                "/",
                "/bin/sh",
            )
        else:
            fail(EXIT_USER, f"user {settings.user!r} is not in the sandbox's /etc/passwd")
    if settings.group is not None:
        row = _find(group, settings.group, 3)
        if row is not None:
            gid = int(row[2])
        elif settings.group.isdigit():
            gid = int(settings.group)
        else:
            fail(EXIT_GROUP, f"group {settings.group!r} is not in the sandbox's /etc/group")
    groups = []
    if settings.user is not None:  # initgroups(): the groups that list the user as a member
        groups = [int(row[2]) for row in group if len(row) >= 4 and name in row[3].split(",")]
    for extra in settings.supplementary_groups:
        row = _find(group, extra, 3)
        if row is None and not extra.isdigit():
            fail(EXIT_GROUP, f"group {extra!r} is not in the sandbox's /etc/group")
        groups.append(int(row[2]) if row is not None else int(extra))
    for value in (uid, gid, *groups):
        if not 0 <= value < ID_COUNT:
            fail(EXIT_USER, f"ID {value} is outside the sandbox's ID range (0-{ID_COUNT - 1})")
    return Account(uid, gid, sorted(set(groups)), home, shell, name)


def make_directories(settings: Settings, account: Account | None) -> dict[str, str]:
    """StateDirectory= and friends, as systemd makes them: created if missing and owned by the service's
    user (configuration directories stay root's).  Returns the $*_DIRECTORY variables."""
    env: dict[str, list[str]] = {}
    for kind, path, mode in settings.directories:
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
            st = os.lstat(path)
            if (
                kind != "configuration"
                and account is not None
                and (st.st_uid, st.st_gid)
                != (
                    account.uid,
                    account.gid,
                )
            ):
                _chown_tree(path, account.uid, account.gid)
            os.chmod(path, mode)
        except OSError as exc:
            fail(EXIT_NAMESPACE, f"cannot prepare {path}: {exc.strerror}")
        env.setdefault(DIRECTORY_ENV[kind], []).append(path)
    return {key: ":".join(paths) for key, paths in env.items()}


# ---------------------------------------------------------------------------------------------------
# The unit's file-system protections, for a unit whose '+' commands must be exempt from them


PROTECTED_TOPS = {
    "yes": ("/usr", "/boot", "/efi"),
    "full": ("/usr", "/boot", "/efi", "/etc"),
    "strict": ("/",),
}
# What ProtectSystem=strict leaves to other settings, and the sandbox's own mounts for /run and /tmp.
LEFT_WRITABLE = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/home", "/root")


def protect_mounts(settings: MountSettings) -> None:
    """What systemd does for ProtectSystem= and ReadOnlyPaths=, in this command's own mount namespace:
    the named trees become read-only, but for the writable paths inside them.  As under systemd, only a
    process with CAP_SYS_ADMIN could undo it."""
    read_only = [*PROTECTED_TOPS.get(settings.protect_system or "", ()), *settings.read_only]
    writable = [*LEFT_WRITABLE, *settings.writable]
    existing = set(_mount_points())
    for setting in (*settings.writable, *read_only):
        optional = setting.startswith("-")
        path = setting.lstrip("-+")
        if not os.path.lexists(path):
            if optional or setting in PROTECTED_TOPS.get(settings.protect_system or "", ()):
                continue
            fail(EXIT_NAMESPACE, f"{path} does not exist (named by the unit's protections)")
        if path not in existing:  # a mount point of its own, so its flags can differ from its parent's
            _mount(path, path, MS_BIND | MS_REC)
            existing.add(path)
    tops = [(p.lstrip("-+"), True) for p in read_only] + [(p.lstrip("-+"), False) for p in writable]
    for point in _mount_points():
        within = [(len(top), ro) for top, ro in tops if _is_within(point, top)]
        if within and max(within)[1]:  # the deepest setting decides; read-only wins a tie
            _remount_read_only(point)


def _is_within(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return [_unescape(line.split()[4]) for line in f if line.strip()]


def _unescape(field: str) -> str:
    out, i = [], 0
    while i < len(field):  # the kernel writes space, tab, newline and backslash as \ooo
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mount(source: str, target: str, flags: int) -> None:
    if _libc.mount(os.fsencode(source), os.fsencode(target), None, flags, None) != 0:
        fail(EXIT_NAMESPACE, f"cannot mount {target}: {os.strerror(ctypes.get_errno())}")


def _remount_read_only(point: str) -> None:
    try:
        current = os.statvfs(point).f_flag
    except OSError as exc:
        fail(EXIT_NAMESPACE, f"cannot read the flags of {point}: {exc.strerror}")
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    for st_flag, ms_flag in STATVFS_TO_MOUNT:
        if current & st_flag:
            flags |= ms_flag
    _mount("none", point, flags)


def _chown_tree(top: str, uid: int, gid: int) -> None:
    os.lchown(top, uid, gid)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for entry in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, entry), uid, gid)


def drop_bounding_set(keep: set[int]) -> None:
    # the kernel's last capability: the first number PR_CAPBSET_READ refuses (/proc/sys may be hidden)
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0:
            break
        if cap not in keep:
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), EXIT_CAPABILITIES, "cannot drop a capability")


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def install_filter(namespaces: bool, mounts: bool) -> None:
    """A seccomp filter against new namespaces (systemd had to allow user and mount namespaces for
    phase 1, the service itself needs none) and, where the launcher mounted the unit's protections
    (protect_mounts), against mounting (systemd had to allow that for it).  clone3() answers ENOSYS so
    that libc falls back to clone(), whose flags a filter can see."""
    arch = SECCOMP_ARCHES.get(os.uname().machine)
    if arch is None or not (namespaces or mounts):
        return
    audit_arch, nr_unshare, nr_clone, nr_clone3, nr_setns, mount_nrs, mask = arch
    ld_w_abs, jeq_k, jset_k, ret_k, alu_and_k = 0x20, 0x15, 0x45, 0x06, 0x54
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS

    def refuse(nr: int, action: int) -> list[bytes]:
        return [_bpf(jeq_k, 0, 1, nr), _bpf(ret_k, 0, 0, action)]

    def refuse_flags(nr: int) -> list[bytes]:  # clone() and unshare(): by the flags of the first argument
        return [
            _bpf(jeq_k, 0, 4, nr),
            _bpf(ld_w_abs, 0, 0, 16),  # the low half of the first argument
            _bpf(jset_k, 0, 1, NAMESPACE_FLAGS),
            _bpf(ret_k, 0, 0, eperm),
            _bpf(ret_k, 0, 0, allow),
        ]

    prog = [
        _bpf(ld_w_abs, 0, 0, 4),  # arch
        _bpf(jeq_k, 1, 0, audit_arch),
        _bpf(ret_k, 0, 0, allow),  # another ABI: systemd's SystemCallArchitectures= decides
        _bpf(ld_w_abs, 0, 0, 0),  # syscall number
        _bpf(alu_and_k, 0, 0, mask),
    ]
    if namespaces:
        prog += [*refuse(nr_setns, eperm), *refuse(nr_clone3, enosys)]
        prog += [*refuse_flags(nr_unshare), *refuse_flags(nr_clone)]
    if mounts:
        for nr in mount_nrs:
            prog += refuse(nr, eperm)
    prog.append(_bpf(ret_k, 0, 0, allow))
    code = b"".join(prog)
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.addressof(buf))
    _check(
        _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
        EXIT_SECCOMP,
        "cannot install the seccomp filter",
    )


def _capset(caps: set[int]) -> None:
    """Effective, permitted and inheritable sets all = `caps` (the ambient set needs all three)."""
    header = struct.pack("=Ii", LINUX_CAPABILITY_VERSION_3, 0)
    words = []
    for word in (0, 1):
        bits = sum(1 << (cap % 32) for cap in caps if cap // 32 == word)
        words.append(struct.pack("=III", bits, bits, bits))
    hdr = ctypes.create_string_buffer(header, len(header))
    data = ctypes.create_string_buffer(b"".join(words), 24)
    _check(_libc.capset(hdr, data), EXIT_CAPABILITIES, "cannot set capabilities")


def switch_user(account: Account, ambient: set[int]) -> None:
    try:
        os.setgroups(account.groups)
        os.setresgid(account.gid, account.gid, account.gid)
        if ambient and account.uid != 0:
            _check(_libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), EXIT_CAPABILITIES, "cannot keep capabilities")
        os.setresuid(account.uid, account.uid, account.uid)
    except OSError as exc:
        fail(EXIT_USER, f"cannot switch to user {account.name}: {exc.strerror}")
    if ambient and account.uid != 0:
        _capset(ambient)
        for cap in sorted(ambient):
            _check(
                _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0),
                EXIT_CAPABILITIES,
                f"cannot raise {CAPABILITIES[cap]}",
            )


def change_directory(setting: str, account: Account | None) -> None:
    optional = setting.startswith("-")
    path = setting[1:] if optional else setting
    if path == "~":
        path = account.home if account is not None else "/root"
    try:
        os.chdir(path)
    except OSError as exc:
        if not optional:
            fail(EXIT_CHDIR, f"cannot change to working directory {path}: {exc.strerror}")


CLEAN_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE})


def stay_as_init() -> None:
    """With PrivatePIDs= the launcher is PID 1 of the unit's PID namespace, and the kernel delivers a
    signal to PID 1 only if it handles it: a program without a SIGTERM handler would ignore the stop.
    So the launcher stays: it forks the command, passes signals on to it, reaps what is orphaned, and
    exits with the command's status.  Returns in the child only."""
    child = os.fork()
    if child == 0:
        # Python's own SIGINT handler would turn a forwarded ^C into a traceback before the exec
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        return
    # It keeps CAP_KILL only: its command may run under another user, whom it could not signal without.
    with contextlib.suppress(LaunchError):  # a profile may forbid capset()
        _capset({CAPABILITIES.index("CAP_KILL")})

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):  # gone already: systemd signals the whole unit
            os.kill(child, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)  # what came meanwhile is passed on now
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            # systemd takes a main process killed by these as a clean stop; PID 1 cannot die by a
            # signal of its own, so it says so with status 0
            os._exit(0 if -code in CLEAN_SIGNALS else code if code >= 0 else 128 - code)


# ---------------------------------------------------------------------------------------------------


class Command:
    """The launcher's own arguments: [--as-root] [--join PID|--join-main] -- PATH ARGV0 [ARGS...]"""

    def __init__(self, argv: list[str]) -> None:
        self.as_root = False  # the wrapped line had '!' or '+': no user switch
        self.full_caps = False  # '+': keep every capability of the sandbox's root
        self.join: int | None = None
        self.join_optional = False  # --join-main: the main process may be gone (ExecStopPost)
        self.unit_command = True  # one of the unit's Exec lines (not execute's): WorkingDirectory= applies
        rest = list(argv)
        while rest and rest[0] != "--":
            opt = rest.pop(0)
            if opt == "--as-root":
                self.as_root = True
            elif opt == "--privileged":
                self.as_root = self.full_caps = True
            elif opt == "--join-main":
                main = os.environ.get("MAINPID", "")
                self.join = int(main) if main.isdigit() and int(main) > 0 else None
                self.join_optional = True
            elif opt == "--join" and rest and rest[0].isdigit():
                self.join = int(rest.pop(0))
                self.unit_command = False
            else:
                fail(EXIT_CONFIG, f"unknown launcher option {opt!r}")
        if len(rest) < 3 or not rest[1]:
            fail(EXIT_CONFIG, "usage: launch [OPTIONS] -- PATH ARGV0 [ARGS...]")
        self.path = rest[1]
        self.argv = rest[2:]


def launch(argv: list[str]) -> NoReturn:
    command = Command(argv)
    settings = load_settings()
    if command.join is None and command.join_optional:
        command.join = oldest_in_sandbox()  # systemd knows no main process (a forking init script)
    joined = command.join is not None and join_namespaces(
        command.join, settings.id_base, optional=command.join_optional
    )
    if not joined:
        if settings.unprivileged_ports:
            allow_unprivileged_ports()
        enter_new_namespaces(settings.id_base)
        become_root_inside()
    # From here on the process is the sandbox's root: whatever it reads can only hurt the sandbox itself.
    # Entering the namespace made it undumpable, which would hide it (as PID 1 of a PID namespace) from the
    # sandbox's own ps; it holds nothing of the host's any more.
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    service_account = resolve_account(settings)
    account = None if command.as_root else service_account
    env = {
        k: v for k, v in os.environ.items() if k not in ACCOUNT_VARIABLES or k in settings.unit_environment
    }
    env.update(make_directories(settings, service_account))
    if settings.mounts is not None and not joined and not command.full_caps:
        protect_mounts(settings.mounts)
    if settings.bounding is not None and not command.full_caps:
        control = settings.control if command.join_optional else set()  # reload, stop: find the service
        drop_bounding_set(settings.bounding | settings.ambient | control)
    install_filter(settings.forbid_namespaces, settings.mounts is not None)
    if os.getpid() == 1:
        stay_as_init()  # from here on in the command's process; the launcher waits as PID 1
    if account is not None:
        switch_user(account, settings.ambient)
        env.update(HOME=account.home, USER=account.name, LOGNAME=account.name, SHELL=account.shell)
    if command.unit_command and settings.working_directory:
        change_directory(settings.working_directory, service_account)
    try:
        if "/" in command.path:
            os.execve(command.path, command.argv, env)
        os.execvpe(command.path, command.argv, env)  # a command typed for execute: looked up in $PATH
    except OSError as exc:
        fail(EXIT_EXEC, f"cannot execute {command.path}: {exc.strerror}")


def main() -> None:
    try:
        launch(sys.argv[1:])
    except LaunchError as exc:
        print(f"sandbox-service launcher: {exc}", file=sys.stderr)
        sys.exit(exc.status)


if __name__ == "__main__":
    main()
