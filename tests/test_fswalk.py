"""Safe tree operations (sandbox_service.fswalk) on real trees in a scratch directory under /var/tmp.

The source trees stand for a sandbox's: the tests change them while they are copied (through the walker's
race hook, exactly between listing an entry and opening it, or from another process, as fast as it can),
and check that nothing outside them is ever read and nothing outside the destination ever written.
Most tests need root (owners, devices, mounts), as the tool does.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_service import fswalk, tree
from sandbox_service.errors import NotFound, SandboxError
from sandbox_service.fswalk import HOST, IdRange, Resolve, copy_path, open_beneath, remap, remove_path
from sandbox_service.fswalk import beneath as beneath_module
from sandbox_service.fswalk import copy as copy_module
from sandbox_service.fswalk.fds import DIR_FLAGS, MAX_OPEN, DirChain, TreeChanged

REPO = Path(__file__).resolve().parent.parent
DEPTH = 3000
SECRET = f"outside the sandbox {uuid.uuid4()}\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs as root, as the tool does")


def _rm_rf(path: Path) -> None:
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


@pytest.fixture()
def scratch() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="fswalk-test-", dir="/var/tmp"))
    try:
        yield d
    finally:
        _rm_rf(d)


@pytest.fixture()
def outside(scratch: Path) -> Path:
    """A directory beside the source tree, holding what a copy must never read."""
    out = scratch / "outside"
    out.mkdir()
    (out / "secret.txt").write_text(SECRET)
    (out / "passwd").write_text(SECRET)
    return out


@pytest.fixture()
def hook(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[int, str], None]], None]:
    def set_hook(fn: Callable[[int, str], None]) -> None:
        monkeypatch.setattr(copy_module, "race_hook", fn)

    return set_hook


def snapshot(top: Path) -> dict[str, tuple[object, ...]]:
    """Kind, owner, mode, mtime and content (links: target) of every entry below top, and of top."""
    out: dict[str, tuple[object, ...]] = {}
    todo = [""]
    while todo:
        rel = todo.pop()
        p = top / rel if rel else top
        s = os.lstat(p)
        if stat.S_ISLNK(s.st_mode):
            what: object = ("link", os.readlink(p))
        elif stat.S_ISDIR(s.st_mode):
            what = "dir"
            todo += [f"{rel}/{n}" if rel else n for n in os.listdir(p)]
        elif stat.S_ISREG(s.st_mode):
            what = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
        else:
            what = ("special", stat.S_IFMT(s.st_mode))
        out[rel] = (what, s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode), s.st_mtime_ns)
    return out


def contents(top: Path) -> set[str]:
    """The text of every regular file below top."""
    found = set()
    for d, _dirs, files in os.walk(top):
        for f in files:
            p = Path(d) / f
            if not p.is_symlink():
                found.add(p.read_text(errors="replace"))
    return found


def make_deep(top: Path, depth: int) -> None:
    """top/d/d/... with `depth` directories below top, and a file at the bottom (by descriptor: the path
    is longer than PATH_MAX)."""
    top.mkdir()
    fd = os.open(top, DIR_FLAGS)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", DIR_FLAGS, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    os.close(fd)


def deep_chain(top: Path) -> tuple[int, list[str]]:
    """How many single directories lead down from top, and the names at the bottom."""
    fd = os.open(top, DIR_FLAGS)
    depth = 0
    while True:
        names = os.listdir(fd)
        if names != ["d"]:
            os.close(fd)
            return depth, names
        sub = os.open("d", DIR_FLAGS, dir_fd=fd)
        os.close(fd)
        fd = sub
        depth += 1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- copying ---------------------------------------------------------------------------------------------


def build_sample(src: Path) -> None:
    (src / "etc/app/conf.d").mkdir(parents=True)
    (src / "etc/app/app.conf").write_text("listen 80\n")
    (src / "etc/app/conf.d/empty").write_bytes(b"")
    (src / "etc/app/secret").write_text("key\n")
    os.chown(src / "etc/app/secret", 1000, 1001)
    os.chmod(src / "etc/app/secret", 0o640)
    (src / "etc/app/setuid").write_bytes(b"\x7fELF")
    os.chmod(src / "etc/app/setuid", 0o4755)
    (src / "etc/app/rel").symlink_to("app.conf")
    (src / "etc/app/abs").symlink_to("/etc/passwd")
    (src / "etc/app/dangling").symlink_to("nowhere")
    os.lchown(src / "etc/app/rel", 1000, 1001)
    (src / "var/lib/app").mkdir(parents=True)
    os.chown(src / "var/lib/app", 33, 33)
    os.chmod(src / "var/lib", 0o711)
    (src / "var/tmp").mkdir()
    os.chmod(src / "var/tmp", 0o1777)
    for p in (src / "etc/app/app.conf", src / "etc/app/rel", src / "var/lib"):
        os.utime(p, ns=(1_000_000_000, 1_500_000_000_123), follow_symlinks=False)


def test_copy_keeps_kinds_owners_modes_and_times(scratch: Path) -> None:
    src, dst = scratch / "src", scratch / "dst"
    src.mkdir()
    build_sample(src)
    report = copy_path(src, dst)
    assert snapshot(dst) == snapshot(src)
    assert (report.files, report.links, report.dirs, report.skipped) == (4, 3, 8, [])
    assert report.bytes == len("listen 80\n") + len("key\n") + 4


def test_copy_of_a_single_file_link_and_missing_entry(scratch: Path) -> None:
    (scratch / "f").write_text("x")
    (scratch / "l").symlink_to("f")
    out = scratch / "out"
    out.mkdir()
    assert copy_path(scratch / "f", out / "f").files == 1
    assert copy_path(scratch / "l", out / "l").links == 1
    assert os.readlink(out / "l") == "f" and (out / "f").read_text() == "x"
    with pytest.raises(NotFound):
        copy_path(scratch / "missing", out / "missing")


def test_tree_copy_path_merges_into_the_root_and_makes_parents_like_the_host(scratch: Path) -> None:
    host, root = scratch / "host", scratch / "root"
    host.mkdir()
    build_sample(host)
    root.mkdir()
    os.symlink("../run", root / "varrun")  # a link among root's directories is followed inside root
    (root / "run").mkdir()
    (host / "varrun").mkdir()
    (host / "varrun/x.pid").write_text("1\n")
    assert tree.copy_path(host, root, "/etc/app/app.conf") == 1
    assert tree.copy_path(host, root, "/etc/app") == 7
    assert tree.copy_path(host, root, "/var/lib/app") == 0
    assert tree.copy_path(host, root, "/varrun/x.pid") == 1
    assert (root / "run/x.pid").read_text() == "1\n"
    want = snapshot(host / "etc/app")
    assert snapshot(root / "etc/app") == want
    assert os.lstat(root / "var/lib").st_mode & 0o7777 == 0o711  # a parent made like the host's
    assert os.lstat(root / "var/lib/app").st_uid == 33


def test_3000_deep_tree_copies_and_removes_with_few_descriptors(
    scratch: Path, hook: Callable[[Callable[[int, str], None]], None]
) -> None:
    src, dst = scratch / "src", scratch / "dst"
    make_deep(src, DEPTH)
    before = open_fds()
    most = [0]

    def count(_fd: int, _name: str) -> None:
        most[0] = max(most[0], open_fds())

    hook(count)
    report = copy_path(src, dst)
    assert report.dirs == DEPTH + 1 and report.files == 1
    assert deep_chain(dst) == (DEPTH, ["bottom"])
    assert most[0] - before <= 2 * MAX_OPEN + 4, most  # two chains of MAX_OPEN, and a listing or two
    assert open_fds() == before
    remove_path(dst)
    remove_path(src)
    assert not dst.exists() and not src.exists()
    assert open_fds() == before


def test_a_directory_swapped_for_a_link_between_listing_and_opening(
    scratch: Path, outside: Path, hook: Callable[[Callable[[int, str], None]], None]
) -> None:
    src, dst = scratch / "src", scratch / "dst"
    (src / "var/d").mkdir(parents=True)
    (src / "var/d/own.txt").write_text("the sandbox's\n")
    swapped: list[str] = []

    def swap(dir_fd: int, name: str) -> None:
        if name == "d" and not swapped:  # listed as a directory; now a link to the outside
            os.rename("d", "d.real", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.symlink(str(outside), "d", dir_fd=dir_fd)
            swapped.append(name)

    hook(swap)
    report = copy_path(src, dst)
    assert swapped
    assert SECRET not in contents(dst)
    assert os.readlink(dst / "var/d") == str(outside)  # looked at again: copied as the link it became
    assert os.listdir(dst / "var") == ["d"]  # d.real came after var was listed
    assert report.skipped == []


def test_a_file_swapped_for_a_link_or_a_fifo_is_never_read_through(
    scratch: Path, outside: Path, hook: Callable[[Callable[[int, str], None]], None]
) -> None:
    src, dst = scratch / "src", scratch / "dst"
    src.mkdir()
    (src / "shadow").write_text("the sandbox's\n")
    (src / "pipe").write_text("a file, for now\n")

    def swap(dir_fd: int, name: str) -> None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if name == "shadow" and stat.S_ISREG(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
            os.symlink(str(outside / "secret.txt"), name, dir_fd=dir_fd)
        if name == "pipe" and stat.S_ISREG(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
            os.mkfifo(name, dir_fd=dir_fd)  # opening it for reading would wait for a writer forever

    hook(swap)
    report = copy_path(src, dst)
    assert SECRET not in contents(dst)
    assert os.readlink(dst / "shadow") == str(outside / "secret.txt")
    assert not os.path.lexists(dst / "pipe")
    assert [(s.path, s.reason) for s in report.skipped] == [("src/pipe", "a FIFO")]


def test_a_parent_swapped_for_a_link_while_its_entries_are_copied(
    scratch: Path, outside: Path, hook: Callable[[Callable[[int, str], None]], None]
) -> None:
    src, dst = scratch / "src", scratch / "dst"
    (src / "var/d/sub").mkdir(parents=True)
    for name in ("a", "passwd", "z"):
        (src / "var/d/sub" / name).write_text(f"the sandbox's {name}\n")
    done: list[str] = []

    def swap(_fd: int, name: str) -> None:
        if name == "passwd" and not done:  # the walk is inside var/d/sub: move var/d away, link it out
            os.rename(src / "var/d", src / "var/moved")
            os.symlink(str(outside), src / "var/d")
            done.append(name)

    hook(swap)
    copy_path(src, dst)
    assert done
    assert SECRET not in contents(dst)
    names = sorted(os.listdir(dst / "var"))
    assert names in (["d", "moved"], ["d"]), names
    copied = dst / "var/d/sub"  # the copy of the directory the walk had open, wherever it moved
    assert sorted(os.listdir(copied)) == ["a", "passwd", "z"]
    assert (copied / "passwd").read_text() == "the sandbox's passwd\n"


SWAPPER = """
import os, sys
var = sys.argv[1]
target = sys.argv[2]
while True:
    os.rename(var + "/d", var + "/d.real")
    os.symlink(target, var + "/d")
    os.unlink(var + "/d")
    os.rename(var + "/d.real", var + "/d")
"""


def test_a_process_swapping_a_directory_for_a_link_never_gets_the_outside_copied(
    scratch: Path, outside: Path
) -> None:
    """As the review did it: a process swaps var/d for a link to a directory outside, as fast as it can,
    while the tree is copied again and again."""
    src = scratch / "src"
    (src / "var/d/sub").mkdir(parents=True)
    for i in range(20):
        (src / f"var/d/file{i}").write_text("the sandbox's\n")
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(src / "var"), str(outside)])
    try:
        seen = set()
        for i in range(200):
            dst = scratch / f"dst{i}"
            copy_path(src, dst)
            assert SECRET not in contents(dst), f"copy {i} read outside the tree"
            d = dst / "var/d"
            seen.add("link" if d.is_symlink() else "dir" if d.is_dir() else "none")
            _rm_rf(dst)
    finally:
        swapper.kill()
        swapper.wait()
    assert swapper.returncode == -9  # it was still swapping at the end
    assert "link" in seen, seen  # the race did happen


def test_sparse_file_stays_sparse(scratch: Path) -> None:
    src, dst = scratch / "src", scratch / "dst"
    src.mkdir()
    size = 256 << 20
    with open(src / "sparse", "wb") as f:
        for offset in (0, 100 << 20, size - 4096):
            f.seek(offset)
            f.write(os.urandom(4096))
        f.truncate(size)
    with open(src / "hole-at-end", "wb") as f:
        f.write(b"x" * 4096)
        f.truncate(64 << 20)
    report = copy_path(src, dst)
    assert report.bytes <= 3 * 4096 + 4096 + 2 * (1 << 20)  # data extents only (allocation is rounded)
    for name in ("sparse", "hole-at-end"):
        a, b = os.stat(src / name), os.stat(dst / name)
        assert b.st_size == a.st_size
        assert b.st_blocks <= a.st_blocks + 64, (name, a.st_blocks, b.st_blocks)
        assert b.st_blocks * 512 < (4 << 20)
        assert _digest(dst / name) == _digest(src / name)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def test_owner_mapping_applies_to_every_entry_kind(scratch: Path) -> None:
    src, one, two = scratch / "src", scratch / "one", scratch / "two"
    src.mkdir()
    (src / "dir").mkdir()
    (src / "dir/file").write_text("x")
    (src / "dir/link").symlink_to("file")
    (src / "big").write_text("y")
    ids = {"": (0, 0), "dir": (1000, 1001), "dir/file": (33, 65533), "dir/link": (5, 6), "big": (70000, 5)}
    for rel, (uid, gid) in ids.items():
        os.lchown(src / rel if rel else src, uid, gid)
    os.chmod(src / "dir/file", 0o4750)

    a, b = IdRange(100000), IdRange(300000)
    copy_path(src, one, owner=remap(HOST, a))  # from the host into sandbox A
    want = {
        "": (100000, 100000),
        "dir": (101000, 101001),
        "dir/file": (100033, 165533),
        "dir/link": (100005, 100006),
        "big": (165534, 100005),  # a host id beyond the range: A's nobody, never kept as it is
    }
    got = {rel: (os.lstat(one / rel).st_uid, os.lstat(one / rel).st_gid) for rel in ids}
    assert got == want
    assert stat.S_IMODE(os.lstat(one / "dir/file").st_mode) == 0o4750  # chown did not cost the set-id bit

    os.lchown(one / "dir/link", 7, 300001)  # neither in A's range
    copy_path(one, two, owner=remap(a, b))  # a clone from A into B
    got = {rel: (os.lstat(two / rel).st_uid, os.lstat(two / rel).st_gid) for rel in ids}
    assert got == {
        "": (300000, 300000),
        "dir": (301000, 301001),
        "dir/file": (300033, 365533),
        "dir/link": (365534, 365534),
        "big": (365534, 300005),
    }


def test_id_ranges() -> None:
    assert remap(HOST, IdRange(65536))(0, 65535) == (65536, 65536 + 65535)
    assert remap(IdRange(65536), HOST)(65536 + 8, 7) == (8, 65534)
    with pytest.raises(ValueError):
        IdRange(-1)
    with pytest.raises(ValueError):
        IdRange((1 << 32) - 10)


def test_hard_links_in_the_source_are_links_in_the_copy_only(scratch: Path) -> None:
    src, dst = scratch / "src", scratch / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(b"x" * (1 << 20))
    for i in range(200):  # copied once, not 201 times
        os.link(src / "a", src / f"sub/link{i}")
    (src / "single").write_text("one\n")
    report = copy_path(src, dst)
    assert report.files == 202 and report.bytes == (1 << 20) + 4
    a = os.stat(dst / "a")
    assert a.st_nlink == 201 and a.st_ino != os.stat(src / "a").st_ino
    assert {os.stat(dst / f"sub/link{i}").st_ino for i in range(200)} == {a.st_ino}
    (dst / "a").write_text("changed\n")
    assert (src / "a").read_bytes() == (src / "sub/link7").read_bytes() == b"x" * (1 << 20)


def test_a_first_copy_replaced_in_the_destination_is_not_linked_to(
    scratch: Path, outside: Path, hook: Callable[[Callable[[int, str], None]], None]
) -> None:
    src, dst = scratch / "src", scratch / "dst"
    (src / "b").mkdir(parents=True)
    (src / "a").write_text("the sandbox's\n")
    os.link(src / "a", src / "b/second")

    def swap(_fd: int, name: str) -> None:
        if name == "second":  # the first copy, dst/a, becomes a link to a file outside
            os.unlink(dst / "a")
            os.symlink(outside / "secret.txt", dst / "a")

    hook(swap)
    copy_path(src, dst)
    assert (dst / "b/second").read_text() == "the sandbox's\n"
    assert os.stat(dst / "b/second").st_ino != os.stat(outside / "secret.txt").st_ino
    assert os.stat(outside / "secret.txt").st_nlink == 1


def test_entries_already_in_the_destination_are_replaced_not_written_through(
    scratch: Path, outside: Path
) -> None:
    src, dst = scratch / "src", scratch / "dst"
    (src / "dir").mkdir(parents=True)
    for name in ("hardlinked", "linked", "dir/inner"):
        (src / name).write_text(f"new {name}\n")
    victim = outside / "victim"
    victim.write_text("must stay\n")
    dst.mkdir()
    os.link(victim, dst / "hardlinked")  # a hard link to a file elsewhere
    (dst / "linked").symlink_to(victim)
    (dst / "dir").symlink_to(outside)  # where a directory will be copied
    copy_path(src, dst)
    assert victim.read_text() == "must stay\n" and os.stat(victim).st_nlink == 1
    assert sorted(os.listdir(outside)) == ["passwd", "secret.txt", "victim"]
    for name in ("hardlinked", "linked", "dir/inner"):
        assert not (dst / name).is_symlink() and (dst / name).read_text() == f"new {name}\n"
    assert not (dst / "dir").is_symlink()


def test_special_files_are_skipped_and_reported(scratch: Path) -> None:
    src, dst = scratch / "src", scratch / "dst"
    (src / "run").mkdir(parents=True)
    os.mkfifo(src / "run/fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "run/sock"))
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(src / "disk", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    (src / "run/kept").write_text("x")
    try:
        report = copy_path(src, dst)
    finally:
        sock.close()
    assert sorted((s.path, s.reason) for s in report.skipped) == [
        ("src/disk", "a block device"),
        ("src/null", "a character device"),
        ("src/run/fifo", "a FIFO"),
        ("src/run/sock", "a socket"),
    ]
    assert sorted(os.listdir(dst)) == ["run"] and os.listdir(dst / "run") == ["kept"]


def test_unreadable_files_and_directories_are_copied(scratch: Path) -> None:
    src, dst = scratch / "src", scratch / "dst"
    (src / "locked/deeper").mkdir(parents=True)
    (src / "locked/deeper/data").write_text("still here\n")
    (src / "nobody-reads").write_text("mine\n")
    for p, mode in (("nobody-reads", 0), ("locked/deeper/data", 0), ("locked/deeper", 0), ("locked", 0)):
        os.chown(src / p, 1234, 1234)
        os.chmod(src / p, mode)
    copy_path(src, dst)
    assert snapshot(dst) == snapshot(src)
    assert (dst / "locked/deeper/data").read_text() == "still here\n"


@pytest.mark.parametrize("open_mode", [0o644, 0o000])
def test_copy_into_an_existing_directory_keeps_it_and_takes_the_sources_metadata(
    scratch: Path, open_mode: int
) -> None:
    src, dst = scratch / "src", scratch / "dst"
    src.mkdir(mode=0o750)
    (src / "f").write_text("x")
    dst.mkdir()
    (dst / "other").write_text("kept\n")
    os.chmod(dst, open_mode)
    copy_path(src, dst)
    assert sorted(os.listdir(dst)) == ["f", "other"]
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o750


# -- a property: any tree is copied exactly --------------------------------------------------------------

_names = st.text(alphabet="abz-_. \u00e9", min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))
_owners = st.sampled_from([(0, 0), (1000, 1001), (70000, 5), (65534, 65534)])
_file_modes = st.sampled_from([0o644, 0o600, 0o000, 0o4755, 0o2711, 0o777])
_dir_modes = st.sampled_from([0o755, 0o700, 0o000, 0o1777, 0o511])
_targets = st.sampled_from(["a", "../x", "/etc/passwd", "é/ü", "."])
_leaves = st.one_of(
    st.tuples(st.just("file"), st.binary(max_size=300), _file_modes, _owners),
    st.tuples(
        st.just("link"), st.sampled_from(["a", "../x", "/etc/passwd", "é/ü", "."]), st.just(0), _owners
    ),
    st.tuples(st.just("fifo"), st.just(b""), st.just(0o644), _owners),
)
_trees = st.recursive(
    _leaves,
    lambda kids: st.tuples(st.just("dir"), st.dictionaries(_names, kids, max_size=4), _dir_modes, _owners),
    max_leaves=25,
)


def _build(path: Path, node: Any) -> int:
    """Make node at path; returns how many FIFOs it holds (what a copy leaves out)."""
    kind, body, mode, (uid, gid) = node
    fifos = 0
    if kind == "dir":
        path.mkdir()
        for name, kid in body.items():
            fifos += _build(path / name, kid)
    elif kind == "file":
        path.write_bytes(body)
    elif kind == "link":
        path.symlink_to(body)
    else:
        os.mkfifo(path)
        fifos = 1
    os.lchown(path, uid, gid)
    if kind != "link":
        os.chmod(path, mode)
    os.utime(path, ns=(1, 1_234_567_891_011), follow_symlinks=False)
    return fifos


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top=st.dictionaries(_names, _trees, max_size=5), dir_mode=_dir_modes)
def test_any_tree_is_copied_exactly(top: dict[str, Any], dir_mode: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="fswalk-prop-", dir="/var/tmp"))
    try:
        fifos = _build(scratch / "src", ("dir", top, dir_mode, (0, 0)))
        report = fswalk.copy_path(scratch / "src", scratch / "dst")
        assert len(report.skipped) == fifos
        skipped = {s.path.removeprefix("src").lstrip("/") for s in report.skipped}
        want = {k: v for k, v in snapshot(scratch / "src").items() if k not in skipped}
        assert snapshot(scratch / "dst") == want
        fswalk.remove_path(scratch / "dst")
        fswalk.remove_path(scratch / "src")
        assert os.listdir(scratch) == []
    finally:
        _rm_rf(scratch)


# -- removing --------------------------------------------------------------------------------------------


def _locked_tree(top: Path) -> None:
    (top / "a/b/c").mkdir(parents=True)
    (top / "a/b/c/f").write_text("x")
    (top / "a/ro").mkdir()
    (top / "a/ro/g").write_text("y")
    os.chmod(top / "a/ro", 0o500)  # entries cannot be unlinked without write permission
    os.chmod(top / "a/b/c", 0)
    os.chmod(top / "a/b", 0)
    (top / "link").symlink_to("/etc")


def test_remove_a_tree_with_mode_000_directories(scratch: Path, outside: Path) -> None:
    top = scratch / "top"
    _locked_tree(top)
    (top / "a/out").symlink_to(outside)
    remove_path(top)
    assert not os.path.lexists(top)
    assert sorted(os.listdir(outside)) == ["passwd", "secret.txt"]  # a link is removed, not followed


REMOVE_WITHOUT_DAC = """
import shutil, sys
from pathlib import Path
if sys.argv[1] == "shutil":
    shutil.rmtree(sys.argv[2])
else:
    from sandbox_service.fswalk import remove_path
    remove_path(Path(sys.argv[2]))
"""


def test_remove_without_cap_dac_override_opens_up_000_directories_first(scratch: Path) -> None:
    """As root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH a mode-000 directory cannot even be listed:
    shutil.rmtree fails there, the removal makes it 0700 through its descriptor first."""
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", "--"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for tool, expect_ok in (("shutil", False), ("fswalk", True)):
        top = scratch / f"top-{tool}"
        _locked_tree(top)
        done = subprocess.run(
            [*drop, sys.executable, "-c", REMOVE_WITHOUT_DAC, tool, str(top)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert (done.returncode == 0) is expect_ok, (tool, done.stderr)
        assert os.path.lexists(top) is not expect_ok


def test_remove_of_a_file_a_link_and_nothing(scratch: Path, outside: Path) -> None:
    (scratch / "f").write_text("x")
    (scratch / "l").symlink_to(outside)
    remove_path(scratch / "f")
    remove_path(scratch / "l")
    remove_path(scratch / "missing")
    remove_path(scratch / "missing-parent" / "x")
    assert sorted(os.listdir(scratch)) == ["outside"]
    assert sorted(os.listdir(outside)) == ["passwd", "secret.txt"]


MOUNTED = """
import json, subprocess, sys
from pathlib import Path
from sandbox_service.errors import SandboxError
from sandbox_service.fswalk import copy_path, remove_path
src = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "fswalk-test", str(src / "mnt")], check=True)
(src / "mnt/inside").write_text("on another file system")
report = copy_path(src, src.parent / "dst")
try:
    remove_path(src)
    removed = "removed"
except SandboxError as exc:
    removed = str(exc)
print(json.dumps({
    "skipped": [(s.path, s.reason) for s in report.skipped],
    "copied": sorted(p.name for p in (src.parent / "dst").iterdir()),
    "removed": removed,
    "still_inside": (src / "mnt/inside").read_text(),
}))
"""


def test_mounts_inside_a_tree_are_neither_copied_nor_emptied(scratch: Path) -> None:
    src = scratch / "src"
    (src / "mnt").mkdir(parents=True)
    (src / "kept").write_text("x")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", MOUNTED, str(src)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["skipped"] == [["src/mnt", "another file system is mounted there"]]
    assert out["copied"] == ["kept"]
    assert "another file system is mounted at mnt" in out["removed"]
    assert out["still_inside"] == "on another file system"


# -- the descriptor chain, the walk, opening one path ----------------------------------------------------


def test_chain_reopens_parents_through_dotdot_and_notices_a_moved_directory(scratch: Path) -> None:
    make_deep(scratch / "top", 50)
    fd = os.open(scratch / "top", DIR_FLAGS)
    chain = DirChain(fd, os.fstat(fd), max_open=3)
    try:
        ids = [os.fstat(fd).st_ino]
        for _ in range(50):
            sub = os.open("d", DIR_FLAGS, dir_fd=chain.fd)
            chain.push(sub, os.fstat(sub))
            ids.append(os.fstat(sub).st_ino)
            assert chain.open_count() <= 3
        for depth in range(49, -1, -1):
            chain.pop()
            assert os.fstat(chain.fd).st_ino == ids[depth] and chain.depth == depth
            assert chain.open_count() <= 3
    finally:
        chain.close()

    fd = os.open(scratch / "top", DIR_FLAGS)
    chain = DirChain(fd, os.fstat(fd), max_open=2)  # the top and the current directory only
    try:
        for _ in range(2):
            sub = os.open("d", DIR_FLAGS, dir_fd=chain.fd)
            chain.push(sub, os.fstat(sub))
        os.rename(scratch / "top/d/d", scratch / "top/elsewhere")  # the current directory, moved up
        chain.pop()  # reopened as ".." of top/elsewhere, which is top, not the directory recorded there
    except TreeChanged:
        pass
    else:
        pytest.fail("the moved directory went unnoticed")
    finally:
        chain.close()


def test_entries_at_visits_each_entry_once_without_following_links(scratch: Path, outside: Path) -> None:
    src = scratch / "src"
    src.mkdir()
    build_sample(src)
    (src / "out").symlink_to(outside)
    parent = os.open(scratch, DIR_FLAGS)
    try:
        seen = []
        for dir_fd, name, st_ in fswalk.entries_at(parent, "src"):
            assert os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino == st_.st_ino
            seen.append(name)
    finally:
        os.close(parent)
    assert sorted(seen) == sorted(["src", *(Path(k).name for k in snapshot(src) if k)])
    assert "secret.txt" not in seen


def test_labels_go_on_every_entry_of_a_3000_deep_tree(scratch: Path) -> None:
    from sandbox_service import selinux

    make_deep(scratch / "top", DEPTH)
    try:
        count = selinux.label_tree(scratch / "top", "s0:c1,c2")
    except SandboxError as exc:
        pytest.skip(f"labels cannot be written here: {exc}")
    assert count == DEPTH + 2


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(beneath_module, "_openat2_usable", None if request.param == "openat2" else False)
    yield request.param
    if request.param == "openat2":  # the kernel's path was the one taken (Linux 5.6 and later)
        assert beneath_module._openat2_usable is True


def _read(root: Path, path: str, flags: int = os.O_RDONLY, resolve: Resolve = Resolve.NO_LINKS) -> str:
    rfd = os.open(root, DIR_FLAGS)
    try:
        fd = open_beneath(rfd, path, flags, resolve=resolve)
    finally:
        os.close(rfd)
    try:
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)


def _errno(root: Path, path: str, flags: int = os.O_RDONLY, resolve: Resolve = Resolve.NO_LINKS) -> str:
    with pytest.raises(OSError) as caught:
        _read(root, path, flags, resolve)
    return errno.errorcode[caught.value.errno or 0]


@pytest.fixture()
def rooted(scratch: Path) -> Path:
    root = scratch / "root"
    (root / "etc/app").mkdir(parents=True)
    (root / "etc/passwd").write_text("inner passwd\n")
    (root / "etc/app/conf").write_text("inner conf\n")
    (root / "abs").symlink_to("/etc")
    (root / "up").symlink_to("../../../../../etc")
    (root / "etc/app/pw").symlink_to("../passwd")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    return root


@pytest.mark.usefixtures("resolver")
def test_open_beneath_refuses_every_link_and_dotdot(rooted: Path) -> None:
    assert _read(rooted, "etc/app/conf") == "inner conf\n"
    assert _read(rooted, "/etc/app/conf") == "inner conf\n"
    assert _errno(rooted, "abs/passwd") == "ELOOP"
    assert _errno(rooted, "etc/app/pw") == "ELOOP"
    assert _errno(rooted, "etc/app/pw", os.O_RDONLY | os.O_DIRECTORY) == "ELOOP"
    assert _errno(rooted, "etc/../etc/passwd") == "EXDEV"
    assert _errno(rooted, "etc/missing") == "ENOENT"
    rfd = os.open(rooted, DIR_FLAGS)
    try:
        fd = open_beneath(rfd, "etc/app/new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        fd = open_beneath(rfd, "etc/app", os.O_RDONLY | os.O_DIRECTORY)
        assert sorted(os.listdir(fd)) == ["conf", "new", "pw"]
        os.close(fd)
    finally:
        os.close(rfd)
    assert stat.S_IMODE(os.stat(rooted / "etc/app/new").st_mode) == 0o600


@pytest.mark.usefixtures("resolver")
def test_open_beneath_in_root_follows_links_as_the_sandbox_sees_them(rooted: Path) -> None:
    for path in ("abs/passwd", "up/passwd", "../../etc/passwd", "etc/app/pw", "/abs/app/../passwd"):
        assert _read(rooted, path, resolve=Resolve.IN_ROOT) == "inner passwd\n", path
    assert _errno(rooted, "loop1", resolve=Resolve.IN_ROOT) == "ELOOP"
    assert _errno(rooted, "etc/app/pw", os.O_RDONLY | os.O_NOFOLLOW, Resolve.IN_ROOT) == "ELOOP"
    host_name = f"/fswalk-must-not-exist-{uuid.uuid4()}"
    (rooted / "dangling").symlink_to(host_name)
    rfd = os.open(rooted, DIR_FLAGS)
    try:
        os.close(open_beneath(rfd, "dangling", os.O_WRONLY | os.O_CREAT, resolve=Resolve.IN_ROOT))
    finally:
        os.close(rfd)
    assert not os.path.lexists(host_name)
    assert (rooted / host_name.lstrip("/")).is_file()  # created where the link points inside the root
