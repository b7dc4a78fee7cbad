"""Benchmark: copying nginx's sandbox tree with the copier before fswalk and with fswalk.

Run as root from the repository root::

    .venv/bin/python bench/bench_copy.py [--rounds N]

A sandbox directory for nginx is made once in a scratch directory under /var/tmp, the way `create` makes
it (base layout, the host paths `create nginx --dry-run --json` lists, the /etc part again as the merge
base). Then each round copies its `root` and `base`, as `clone` does, with both copiers, interleaved so
both share the machine's noise (which goes first alternates; the file systems are synced before each),
into fresh directories (removed afterwards, not timed):

A. the copier `tree.copy_path` had before fswalk (kept here as the reference): recursive, by path,
   shutil.copyfile for the bytes;
B. fswalk.copy_path: by descriptor, iterative, data extents by copy_file_range.

Both copies are checked to be the same tree. Wall-clock and CPU time (user and system, of this
process) are printed; on a shared machine the second is the steadier one. Nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sandbox_service import fswalk, tree  # noqa: E402
from sandbox_service.discover.host import usr_layout  # noqa: E402

UNIT = "nginx.service"


# -- the copier before fswalk (reference) ----------------------------------------------------------------


def old_copy_meta(src_st: os.stat_result, dst: Path) -> None:
    os.lchown(dst, src_st.st_uid, src_st.st_gid)
    if not stat.S_ISLNK(src_st.st_mode):
        os.chmod(dst, stat.S_IMODE(src_st.st_mode))
    os.utime(dst, ns=(src_st.st_atime_ns, src_st.st_mtime_ns), follow_symlinks=False)


def old_copy_one(src: Path, st: os.stat_result, dst: Path) -> int:
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        old_copy_meta(st, dst)
        return 1
    if stat.S_ISDIR(st.st_mode):
        if not dst.is_dir():
            dst.mkdir()
        count = 0
        with os.scandir(src) as entries:
            for entry in entries:
                count += old_copy_one(Path(entry.path), entry.stat(follow_symlinks=False), dst / entry.name)
        old_copy_meta(st, dst)
        return count
    if stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
        old_copy_meta(st, dst)
        return 1
    return 0


# -- the rounds ------------------------------------------------------------------------------------------


def make_sandbox_dir(top: Path) -> None:
    argv = ["create", "benchsrc", "--unit", UNIT, "--dry-run", "--json"]
    dry = subprocess.run(
        [sys.executable, "-m", "sandbox_service", *argv],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    copies: list[str] = json.loads(dry.stdout)["copies"]
    root, base = top / "root", top / "base"
    tree.make_base(root, usr_layout(Path("/")))
    base.mkdir(mode=0o700)
    for path in copies:
        tree.copy_path(Path("/"), root, path)
        if path.startswith("/etc/"):
            tree.copy_path(Path("/"), base, path)


def count_entries(top: Path) -> tuple[int, int, int]:
    files = links = dirs = 0
    for d, ds, fs in os.walk(top):
        for name in (*ds, *fs):
            p = Path(d) / name
            if p.is_symlink():
                links += 1
            elif p.is_dir():
                dirs += 1
            else:
                files += 1
    return files, links, dirs


def run_old(src: Path, dst: Path) -> None:
    dst.mkdir()
    for part in ("root", "base"):
        old_copy_one(src / part, os.lstat(src / part), dst / part)


def run_new(src: Path, dst: Path) -> None:
    dst.mkdir()
    for part in ("root", "base"):
        fswalk.copy_path(src / part, dst / part)


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process, user and system): on a shared machine the wall clock
    mostly measures the neighbours, the CPU time what the copier itself costs."""
    os.sync()  # what the previous copy left to write does not land in this one's time
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def listing(top: Path) -> list[tuple[str, int, int, int, int, str]]:
    out = []
    for d, ds, fs in os.walk(top):
        for name in (*ds, *fs):
            p = Path(d) / name
            s = os.lstat(p)
            target = os.readlink(p) if p.is_symlink() else ""
            out.append((str(p.relative_to(top)), s.st_mode, s.st_uid, s.st_size, s.st_mtime_ns, target))
    return sorted(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_copy: must be run as root (it keeps owners)", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="bench-copy-", dir="/var/tmp"))
    try:
        src = scratch / "src"
        src.mkdir()
        make_sandbox_dir(src)
        files, links, dirs = count_entries(src)
        print(f"nginx sandbox directory (root and base): {files} files, {links} links, {dirs} directories")
        run_old(src, scratch / "check-old")
        run_new(src, scratch / "check-new")
        if listing(scratch / "check-old") != listing(scratch / "check-new"):
            print("bench_copy: the two copies differ", file=sys.stderr)
            return 1
        print()
        print(f"{'':>5}  {'wall clock':^32}  {'CPU time':^32}")
        head = f"{'A: old copier':>12}  {'B: fswalk':>10}  {'A/B':>6}"
        print(f"{'round':>5}  {head}  {head}")
        old_times: list[tuple[float, float]] = []
        new_times: list[tuple[float, float]] = []
        for i in range(1, args.rounds + 1):
            old = functools.partial(run_old, src, scratch / f"old{i}")
            new = functools.partial(run_new, src, scratch / f"new{i}")
            if i % 2:
                a, b = timed(old), timed(new)
            else:
                b, a = timed(new), timed(old)
            old_times.append(a)
            new_times.append(b)
            cells = [
                f"{x * 1000:>9.1f} ms  {y * 1000:>7.1f} ms  {x / y:5.2f}x" for x, y in zip(a, b, strict=True)
            ]
            print(f"{i:>5}  " + "  ".join(cells))
            fswalk.remove_path(scratch / f"old{i}")
            fswalk.remove_path(scratch / f"new{i}")
        print()
        for k, what in ((0, "wall clock"), (1, "CPU time")):
            med_a = statistics.median(t[k] for t in old_times)
            med_b = statistics.median(t[k] for t in new_times)
            print(
                f"{what:<10}  median A (old copier) {med_a * 1000:.1f} ms, B (fswalk) {med_b * 1000:.1f} ms, "
                f"A/B {med_a / med_b:.2f} (above 1: fswalk is faster)"
            )
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(scratch)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
