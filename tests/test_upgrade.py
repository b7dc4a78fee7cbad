"""The three-way merge of `upgrade`, on small trees in a temporary directory (no systemd needed).

Each test builds a host tree, copies it to a base and a sandbox tree the way `create` does (tree.copy_path),
changes the sides, and checks what the merge reports and leaves on disk. The offline command is tested at
the end, on an image tree with --root semantics (Layout(root=tmp)).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_service import selinux, specfile, tree
from sandbox_service.errors import InvalidInput, NoSpace, NotFound, SandboxError
from sandbox_service.paths import Layout
from sandbox_service.spec import ExecCommand, Kind, SandboxSpec, ServiceDef
from sandbox_service.upgrade import (
    Action,
    MergeReport,
    apply_merge,
    command,
    merge,
    plan_merge,
    restart_running,
    threeway,
    upgrade,
)

COPIES = ("/etc/app", "/etc/app.conf")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")

Snapshot = dict[str, tuple[object, ...]]


class Trees:
    def __init__(self, tmp: Path) -> None:
        self.host = tmp / "host"
        self.base = tmp / "base"
        self.sandbox = tmp / "sandbox"

    def create(self, paths: tuple[str, ...] = COPIES) -> None:
        """What create does: copy the host's paths into the sandbox's root and into the base."""
        for root in (self.sandbox, self.base):
            root.mkdir(parents=True, exist_ok=True)
        for p in paths:
            tree.copy_path(self.host, self.sandbox, p)
            tree.copy_path(self.host, self.base, p)

    def merge(self, *, dry_run: bool = False, paths: tuple[str, ...] = COPIES) -> MergeReport:
        return merge(self.base, self.host, self.sandbox, paths, dry_run=dry_run)


@pytest.fixture()
def t(tmp_path: Path) -> Trees:
    trees = Trees(tmp_path)
    write(trees.host, "etc/app.conf", "top = 1\n")
    write(trees.host, "etc/app/main.conf", "main = 1\n")
    write(trees.host, "etc/app/mime.types", "text/plain txt\n")
    write(trees.host, "etc/app/conf.d/a.conf", "a = 1\n")
    write(trees.host, "etc/app/secret.key", "key\n", mode=0o600)
    os.symlink("../main.conf", trees.host / "etc/app/conf.d/main-link")
    return trees


def write(root: Path, rel: str, text: str, mode: int = 0o644) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    os.chmod(p, mode)
    return p


def relink(root: Path, rel: str, target: str) -> None:
    (root / rel).unlink()
    os.symlink(target, root / rel)


def snapshot(root: Path) -> Snapshot:
    """Everything about a tree that a write could change: kinds, bytes, link targets, owners, modes, times."""
    out: Snapshot = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                content: object = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                content = None
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, content)
    return out


def all_snapshots(*roots: Path) -> list[Snapshot]:
    return [snapshot(r) for r in roots]


# -- the cases of the merge ---------------------------------------------------------------------------


def test_nothing_changed_on_the_host_means_nothing_happens(t: Trees) -> None:
    t.create()
    write(t.sandbox, "etc/app/main.conf", "main = sandbox\n")
    (t.sandbox / "etc/app/conf.d/a.conf").unlink()
    before = all_snapshots(t.host, t.base, t.sandbox)
    report = t.merge()
    assert report.entries == ()
    assert report.base_updates == 0 and not report.changed
    assert all_snapshots(t.host, t.base, t.sandbox) == before


def test_host_change_is_taken_where_the_sandbox_kept_the_old_version(t: Trees) -> None:
    t.create()
    write(t.host, "etc/app/mime.types", "text/plain txt text\n", mode=0o640)
    write(t.host, "etc/app.conf", "top = 2\n")
    report = t.merge()
    assert report.entries == (("/etc/app/mime.types", Action.UPDATED), ("/etc/app.conf", Action.UPDATED))
    assert report.changed
    for root in (t.sandbox, t.base):
        got = root / "etc/app/mime.types"
        assert got.read_text() == "text/plain txt text\n"
        assert stat.S_IMODE(got.stat().st_mode) == 0o640
        assert (root / "etc/app.conf").read_text() == "top = 2\n"
    # the times are the host's, as create keeps them
    assert (t.sandbox / "etc/app.conf").stat().st_mtime_ns == (t.host / "etc/app.conf").stat().st_mtime_ns
    assert t.merge().entries == ()


def test_change_on_both_sides_keeps_the_sandbox_and_puts_the_host_beside_it(t: Trees) -> None:
    t.create()
    write(t.sandbox, "etc/app/main.conf", "main = sandbox\n")
    write(t.host, "etc/app/main.conf", "main = host 2\n", mode=0o640)
    report = t.merge()
    assert report.entries == (("/etc/app/main.conf", Action.CONFLICT),)
    assert report.paths(Action.CONFLICT) == ("/etc/app/main.conf",)
    assert not report.changed  # the sandbox's own file did not change
    assert (t.sandbox / "etc/app/main.conf").read_text() == "main = sandbox\n"
    hostnew = t.sandbox / "etc/app/main.conf.hostnew"
    assert hostnew.read_text() == "main = host 2\n"
    assert stat.S_IMODE(hostnew.stat().st_mode) == 0o640
    assert (t.base / "etc/app/main.conf").read_text() == "main = host 2\n"
    assert not [p for p in (t.sandbox / "etc/app").iterdir() if ".sandbox-service-upgrade" in p.name]
    # reported once: the base moved on
    assert t.merge().entries == ()
    # a later host change is a conflict again, and replaces the .hostnew
    write(t.host, "etc/app/main.conf", "main = host 3\n")
    assert t.merge().entries == (("/etc/app/main.conf", Action.CONFLICT),)
    assert hostnew.read_text() == "main = host 3\n"


def test_same_change_on_both_sides_is_no_conflict(t: Trees) -> None:
    t.create()
    for root in (t.host, t.sandbox):
        write(root, "etc/app/main.conf", "main = 2\n")
    report = t.merge()
    assert report.entries == () and report.base_updates == 1
    assert (t.base / "etc/app/main.conf").read_text() == "main = 2\n"
    assert not (t.sandbox / "etc/app/main.conf.hostnew").exists()


@needs_root
def test_owner_and_mode_count_as_changes(t: Trees) -> None:
    t.create()
    os.chown(t.host / "etc/app/secret.key", 0, 65534)
    os.chmod(t.host / "etc/app/conf.d/a.conf", 0o600)
    os.chown(t.sandbox / "etc/app/conf.d/a.conf", 65534, 65534)  # the sandbox's own change
    report = t.merge()
    assert report.entries == (
        ("/etc/app/conf.d/a.conf", Action.CONFLICT),
        ("/etc/app/secret.key", Action.UPDATED),
    )
    st = (t.sandbox / "etc/app/secret.key").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 65534, 0o600)
    hostnew = (t.sandbox / "etc/app/conf.d/a.conf.hostnew").stat()
    assert (hostnew.st_uid, stat.S_IMODE(hostnew.st_mode)) == (0, 0o600)
    assert (t.sandbox / "etc/app/conf.d/a.conf").stat().st_uid == 65534


def test_symlinks_compare_by_target_and_are_never_followed(t: Trees) -> None:
    t.create()
    os.utime(t.host / "etc/app/conf.d/main-link", ns=(1, 1), follow_symlinks=False)  # not a change
    assert t.merge().entries == ()
    relink(t.host, "etc/app/conf.d/main-link", "../mime.types")
    assert t.merge().entries == (("/etc/app/conf.d/main-link", Action.UPDATED),)
    assert os.readlink(t.sandbox / "etc/app/conf.d/main-link") == "../mime.types"
    # changed on both: the host's link goes beside the sandbox's, as a link
    relink(t.sandbox, "etc/app/conf.d/main-link", "/etc/app/main.conf")
    relink(t.host, "etc/app/conf.d/main-link", "../secret.key")
    assert t.merge().entries == (("/etc/app/conf.d/main-link", Action.CONFLICT),)
    assert os.readlink(t.sandbox / "etc/app/conf.d/main-link") == "/etc/app/main.conf"
    assert os.readlink(t.sandbox / "etc/app/conf.d/main-link.hostnew") == "../secret.key"


def test_new_host_files_and_directories_are_added(t: Trees) -> None:
    t.create()
    write(t.host, "etc/app/conf.d/b.conf", "b = 1\n")
    write(t.host, "etc/app/sites/default/site.conf", "site\n")
    os.chmod(t.host / "etc/app/sites", 0o750)
    os.symlink("sites/default", t.host / "etc/app/current")
    report = t.merge()
    assert report.entries == (
        ("/etc/app/conf.d/b.conf", Action.ADDED),
        ("/etc/app/current", Action.ADDED),
        ("/etc/app/sites", Action.ADDED),
        ("/etc/app/sites/default", Action.ADDED),
        ("/etc/app/sites/default/site.conf", Action.ADDED),
    )
    for root in (t.sandbox, t.base):
        assert (root / "etc/app/sites/default/site.conf").read_text() == "site\n"
        assert stat.S_IMODE((root / "etc/app/sites").stat().st_mode) == 0o750
        assert os.readlink(root / "etc/app/current") == "sites/default"
    assert t.merge().entries == ()


def test_a_new_host_file_the_sandbox_made_itself_is_a_conflict(t: Trees) -> None:
    t.create()
    write(t.sandbox, "etc/app/conf.d/b.conf", "b = mine\n")
    write(t.host, "etc/app/conf.d/b.conf", "b = host\n")
    assert t.merge().entries == (("/etc/app/conf.d/b.conf", Action.CONFLICT),)
    assert (t.sandbox / "etc/app/conf.d/b.conf").read_text() == "b = mine\n"
    assert (t.sandbox / "etc/app/conf.d/b.conf.hostnew").read_text() == "b = host\n"


def test_files_gone_from_the_host_go_unless_the_sandbox_changed_them(t: Trees) -> None:
    t.create()
    (t.host / "etc/app/mime.types").unlink()
    (t.host / "etc/app/main.conf").unlink()
    write(t.sandbox, "etc/app/main.conf", "main = sandbox\n")
    report = t.merge()
    assert report.entries == (("/etc/app/main.conf", Action.KEPT), ("/etc/app/mime.types", Action.REMOVED))
    assert not (t.sandbox / "etc/app/mime.types").exists()
    assert (t.sandbox / "etc/app/main.conf").read_text() == "main = sandbox\n"
    assert not (t.base / "etc/app/main.conf").exists() and not (t.base / "etc/app/mime.types").exists()
    assert t.merge().entries == ()


def test_a_directory_gone_from_the_host_stays_while_the_sandbox_has_files_in_it(t: Trees) -> None:
    t.create()
    write(t.sandbox, "etc/app/conf.d/local.conf", "mine\n")  # the sandbox's own file
    tree.remove_tree(t.host / "etc/app/conf.d")
    report = t.merge()
    assert report.entries == (
        ("/etc/app/conf.d", Action.KEPT),
        ("/etc/app/conf.d/a.conf", Action.REMOVED),
        ("/etc/app/conf.d/main-link", Action.REMOVED),
    )
    assert sorted(os.listdir(t.sandbox / "etc/app/conf.d")) == ["local.conf"]
    assert not (t.base / "etc/app/conf.d").exists()
    assert t.merge().entries == ()
    # without files of its own, the directory goes too
    tree.remove_tree(t.host / "etc/app")
    (t.sandbox / "etc/app/conf.d/local.conf").unlink()
    (t.sandbox / "etc/app/conf.d").rmdir()  # the base no longer knows it: it would count as the sandbox's
    report = t.merge()
    assert ("/etc/app", Action.REMOVED) in report.entries and (
        "/etc/app/main.conf",
        Action.REMOVED,
    ) in report.entries
    assert not (t.sandbox / "etc/app").exists() and not (t.base / "etc/app").exists()


def test_a_directory_the_sandbox_removed_is_not_brought_back(t: Trees) -> None:
    t.create()
    tree.remove_tree(t.sandbox / "etc/app/conf.d")
    write(t.host, "etc/app/conf.d/a.conf", "a = 2\n")
    write(t.host, "etc/app/conf.d/b.conf", "b = 1\n")
    report = t.merge()
    assert report.entries == (("/etc/app/conf.d", Action.KEPT),)  # reported once, for the directory
    assert not (t.sandbox / "etc/app/conf.d").exists()
    assert (t.base / "etc/app/conf.d/b.conf").read_text() == "b = 1\n"
    assert t.merge().entries == ()


def test_a_directory_the_host_replaced_by_a_file_is_kept_whole_in_the_sandbox(t: Trees) -> None:
    t.create()
    tree.remove_tree(t.host / "etc/app/conf.d")
    write(t.host, "etc/app/conf.d", "now a file\n")
    report = t.merge()
    assert report.entries == (("/etc/app/conf.d", Action.CONFLICT),)
    assert (t.sandbox / "etc/app/conf.d/a.conf").read_text() == "a = 1\n"
    assert (t.sandbox / "etc/app/conf.d.hostnew").read_text() == "now a file\n"
    assert (t.base / "etc/app/conf.d").read_text() == "now a file\n"
    assert t.merge().entries == ()


def test_a_file_the_host_replaced_by_a_directory_is_replaced_when_unchanged(t: Trees) -> None:
    t.create()
    (t.host / "etc/app/mime.types").unlink()
    write(t.host, "etc/app/mime.types/text", "text/plain txt\n")
    report = t.merge()
    assert report.entries == (
        ("/etc/app/mime.types", Action.UPDATED),
        ("/etc/app/mime.types/text", Action.ADDED),
    )
    assert (t.sandbox / "etc/app/mime.types/text").read_text() == "text/plain txt\n"


def test_a_symlink_planted_in_the_sandbox_is_never_followed(t: Trees, tmp_path: Path) -> None:
    """The sandbox's service may write its /etc: links it plants must not make the merge write (or read)
    outside the sandbox's tree."""
    t.create()
    victim = tmp_path / "victim"
    write(victim, "main.conf", "precious\n")
    write(victim, "conf.d/a.conf", "precious\n")
    write(victim, "single", "precious\n")
    tree.remove_tree(t.sandbox / "etc/app/conf.d")
    os.symlink(victim / "conf.d", t.sandbox / "etc/app/conf.d")  # a whole directory
    (t.sandbox / "etc/app/main.conf").unlink()
    os.symlink(victim / "main.conf", t.sandbox / "etc/app/main.conf")  # a file
    (t.sandbox / "etc/app.conf").unlink()
    os.symlink(victim / "single", t.sandbox / "etc/app.conf")
    before = snapshot(victim)
    write(t.host, "etc/app/conf.d/a.conf", "a = 2\n")
    write(t.host, "etc/app/conf.d/new.conf", "new\n")
    write(t.host, "etc/app/main.conf", "main = 2\n")
    write(t.host, "etc/app.conf", "top = 2\n")
    report = t.merge()
    assert report.entries == (
        ("/etc/app/conf.d", Action.KEPT),
        ("/etc/app/main.conf", Action.CONFLICT),
        ("/etc/app.conf", Action.CONFLICT),
    )
    assert snapshot(victim) == before
    assert (t.sandbox / "etc/app/main.conf").is_symlink()
    assert not (t.sandbox / "etc/app/main.conf.hostnew").is_symlink()
    assert (t.sandbox / "etc/app/main.conf.hostnew").read_text() == "main = 2\n"


def test_a_symlinked_etc_in_the_sandbox_is_never_written_through(t: Trees, tmp_path: Path) -> None:
    t.create()
    outside = tmp_path / "outside"
    outside.mkdir()
    tree.copy_path(t.sandbox, outside, "/etc")
    tree.remove_tree(t.sandbox / "etc")
    os.symlink(outside / "etc", t.sandbox / "etc")
    before = snapshot(outside)
    write(t.host, "etc/app.conf", "top = 2\n")
    write(t.host, "etc/app/main.conf", "main = 2\n")
    report = t.merge()
    assert set(report.entries) == {("/etc/app", Action.KEPT), ("/etc/app.conf", Action.KEPT)}
    assert snapshot(outside) == before


def test_temporary_files_never_live_in_the_sandboxs_tree(t: Trees) -> None:
    """New files are written in the merge's work directory (root's, beside the trees) and renamed into
    place: an entry the sandbox plants at the name earlier versions used for their temporary file, as
    deep as it likes, is the sandbox's own and stays; the work directory is gone afterwards."""
    t.create()
    write(t.host, "etc/app/mime.types", "text/plain txt text\n")
    planted = f".sandbox-service-upgrade-{os.getpid()}"
    fd = os.open(t.sandbox / "etc/app", os.O_RDONLY | os.O_DIRECTORY)
    for name in [planted] + ["d"] * 2999:
        os.mkdir(name, dir_fd=fd)
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(fd)
    try:
        report = t.merge()
        assert report.entries == (("/etc/app/mime.types", Action.UPDATED),)
        assert (t.sandbox / "etc/app/mime.types").read_text() == "text/plain txt text\n"
        assert sorted(os.listdir(t.sandbox / "etc/app")) == sorted([*os.listdir(t.host / "etc/app"), planted])
        assert sorted(os.listdir(t.sandbox.parent)) == ["base", "host", "sandbox"]
    finally:  # pytest's own clean-up of tmp_path recurses: it must not meet the tree if this failed
        subprocess.run(["rm", "-rf", "--one-file-system", str(t.sandbox)], check=True)


def test_dry_run_writes_nothing_and_reports_what_the_merge_does(t: Trees) -> None:
    t.create()
    write(t.host, "etc/app/mime.types", "changed on the host\n")
    write(t.host, "etc/app/main.conf", "main = host\n")
    write(t.sandbox, "etc/app/main.conf", "main = sandbox\n")
    write(t.host, "etc/app/conf.d/new.conf", "new\n")
    (t.host / "etc/app/secret.key").unlink()
    tree.remove_tree(t.host / "etc/app/conf.d")
    write(t.host, "etc/app/sites/x", "x\n")
    roots = (t.host, t.base, t.sandbox)
    before = all_snapshots(*roots)
    planned = t.merge(dry_run=True)
    assert all_snapshots(*roots) == before
    assert planned.entries  # it has something to say
    assert t.merge().entries == planned.entries


def test_without_a_base_every_difference_is_a_conflict(t: Trees) -> None:
    t.create()
    tree.remove_tree(t.base)
    write(t.sandbox, "etc/app/main.conf", "main = sandbox\n")
    (t.sandbox / "etc/app/mime.types").unlink()
    report = t.merge()
    assert not report.had_base
    assert report.entries == (
        ("/etc/app/main.conf", Action.CONFLICT),
        ("/etc/app/mime.types", Action.ADDED),
    )
    assert (t.sandbox / "etc/app/main.conf").read_text() == "main = sandbox\n"
    assert (t.base / "etc/app/main.conf").read_text() == "main = 1\n"
    assert stat.S_IMODE(t.base.stat().st_mode) == 0o700  # root-only, as create makes it
    assert t.merge().entries == () and t.merge().had_base


def test_plan_refuses_paths_that_are_not_normalized(t: Trees) -> None:
    with pytest.raises(InvalidInput):
        plan_merge(t.base, t.host, t.sandbox, ["/etc/../root"])


def test_an_interrupted_merge_is_finished_by_the_next_one(t: Trees) -> None:
    """As if the last run stopped after writing the sandbox's file and before the base's."""
    t.create()
    write(t.host, "etc/app/main.conf", "main = 2\n")
    tree.copy_path(t.host, t.sandbox, "/etc/app/main.conf")
    report = t.merge()
    assert report.entries == () and report.base_updates == 1
    assert (t.base / "etc/app/main.conf").read_text() == "main = 2\n"


def contents(snap: Snapshot) -> Snapshot:
    """A snapshot without the times of directories (renames into and out of them change those)."""
    return {p: v[:3] + v[4:] if stat.S_ISDIR(int(str(v[0]))) else v for p, v in snap.items()}


def fail_on_call(monkeypatch: pytest.MonkeyPatch, name: str, n: int) -> None:
    """Make threeway's function `name` fail with ENOSPC on its n-th call."""
    real = getattr(threeway, name)
    calls = [0]

    def failing(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(threeway, name, failing)


def changes_everywhere(t: Trees) -> None:
    """Host changes of every kind: updated, added (a file in a new directory), removed."""
    t.create()
    write(t.host, "etc/app/mime.types", "text/plain txt text\n")
    write(t.host, "etc/app/sites/new.conf", "added\n")
    (t.host / "etc/app/conf.d/a.conf").unlink()
    (t.host / "etc/app/conf.d/main-link").unlink()
    write(t.host, "etc/app/zz.conf", "last\n")


@pytest.mark.parametrize(("where", "n"), [("_write_copy", 4), ("_remove", 3), ("_remove", 4)])
def test_a_merge_that_fails_halfway_puts_back_what_it_had_merged(
    t: Trees, monkeypatch: pytest.MonkeyPatch, where: str, n: int
) -> None:
    """Files written, directories made and entries removed before the failure are all put back (from the
    merge's work directory), and the error says so."""
    changes_everywhere(t)
    before = [contents(s) for s in all_snapshots(t.sandbox, t.base)]
    fail_on_call(monkeypatch, where, n)
    with pytest.raises(SandboxError, match="nothing was changed: the files merged before it were put back"):
        t.merge()
    assert [contents(s) for s in all_snapshots(t.sandbox, t.base)] == before
    assert sorted(os.listdir(t.sandbox.parent)) == ["base", "host", "sandbox"]  # no work directory left
    monkeypatch.undo()
    report = t.merge()
    assert (t.sandbox / "etc/app/zz.conf").read_text() == "last\n" and report.changed


def test_an_upgrade_that_fails_puts_back_its_merge_spec_and_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout(tmp_path)
    make_sandbox(tmp_path)
    write(tmp_path, "etc/app/main.conf", "main = 2\n")
    before = contents(snapshot(tmp_path))

    def full(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device", "/etc/systemd/system/sandbox-off.slice")

    monkeypatch.setattr(command, "write_units", full)
    with pytest.raises(NoSpace) as caught:
        upgrade(layout, ["off"])
    assert "the file system is full; nothing was changed" in caught.value.message
    assert contents(snapshot(tmp_path)) == before  # the merged file, the launcher, no units: as they were
    monkeypatch.undo()
    upgrade(layout, ["off"])
    assert (layout.sandbox_root("off") / "etc/app/main.conf").read_text() == "main = 2\n"


def test_a_killed_upgrades_work_directory_is_dropped_by_the_next(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    make_sandbox(tmp_path)
    work = layout.sandbox_dir("off") / ".upgrade-12345"
    (work / "3").mkdir(parents=True)
    write(tmp_path, "etc/app/main.conf", "main = 2\n")
    upgrade(layout, ["off"])
    assert not work.exists()
    assert sorted(p.name for p in layout.sandbox_dir("off").iterdir()) == ["base", "root", "sandbox.yaml"]


def test_written_entries_get_the_sandbox_label(t: Trees) -> None:
    """A labelled sandbox's new files carry its category pair, like everything create copied."""
    level = "s0:c1,c2"
    probe = t.host / ".probe"
    probe.touch()
    try:
        os.setxattr(probe, selinux.XATTR_NAME, selinux.file_context(level).encode() + b"\0")
    except OSError as e:
        pytest.skip(f"cannot write {selinux.XATTR_NAME} here: {os.strerror(e.errno or 0)}")
    finally:
        probe.unlink()
    t.create()
    write(t.host, "etc/app/mime.types", "updated\n")
    write(t.host, "etc/app/sites/new.conf", "added\n")
    write(t.host, "etc/app/main.conf", "main = host\n")
    write(t.sandbox, "etc/app/main.conf", "main = sandbox\n")
    report = apply_merge(plan_merge(t.base, t.host, t.sandbox, COPIES), selinux_level=level)
    assert len(report.entries) == 4
    want = selinux.file_context(level)
    for path in ("mime.types", "sites", "sites/new.conf", "main.conf.hostnew"):
        assert selinux.read_label(t.sandbox / "etc/app" / path) == want, path
    assert selinux.read_label(t.base / "etc/app/mime.types") == want
    assert selinux.read_label(t.sandbox / "etc/app/main.conf") is None  # the sandbox's own: untouched


# -- the command, offline -----------------------------------------------------------------------------


def make_sandbox(root: Path, name: str = "off", kind: Kind = Kind.GENERIC) -> SandboxSpec:
    """A sandbox in an image tree, made the way create makes one (without systemd)."""
    layout = Layout(root)
    write(root, "etc/app/main.conf", "main = 1\n")
    write(root, "etc/app.conf", "top = 1\n")
    spec = SandboxSpec(
        name=name,
        kind=kind,
        service=ServiceDef(exec_start=(ExecCommand("/usr/bin/sleep", ("sleep", "60")),)),
        source_unit="fake.service" if kind is Kind.UNIT else None,
        copies=(*COPIES, "/var/lib/app"),
    )
    write(root, "var/lib/app/state", "state\n")
    layout.sandbox_root(name).mkdir(parents=True)
    layout.base_dir(name).mkdir(mode=0o700)
    for p in spec.copies:
        tree.copy_path(root, layout.sandbox_root(name), p)
        if p.startswith("/etc/"):
            tree.copy_path(root, layout.base_dir(name), p)
    specfile.save(layout.spec_file(name), spec)
    return spec


def test_upgrade_offline_merges_and_writes_units_without_systemd(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    make_sandbox(tmp_path)
    write(tmp_path, "etc/app/main.conf", "main = 2\n")
    write(tmp_path, "var/lib/app/state", "host state\n")  # not under /etc: never merged
    before = all_snapshots(tmp_path)
    dry = upgrade(layout, ["off"], dry_run=True)
    assert all_snapshots(tmp_path) == before
    assert dry.dry_run and not dry.online
    (s,) = dry.sandboxes
    assert s.merge.entries == (("/etc/app/main.conf", Action.UPDATED),)
    assert s.units == tuple(
        f"/etc/systemd/system/{u}"
        for u in (
            "sandbox-off.service",
            "sandbox-off.slice",
            "run-sandbox\\x2dservice-off.mount",
            "sandbox.slice",
            "sandbox.target",
        )
    )

    done = upgrade(layout, ["off"])
    (s,) = done.sandboxes
    assert not done.online and not done.reloaded and not s.running
    assert restart_running(layout, done) == ()
    assert s.merge.entries == dry.sandboxes[0].merge.entries
    assert (layout.sandbox_root("off") / "etc/app/main.conf").read_text() == "main = 2\n"
    assert (layout.sandbox_root("off") / "var/lib/app/state").read_text() == "state\n"
    assert (tmp_path / "etc/systemd/system/sandbox-off.service").read_text().startswith("# Generated")
    again = upgrade(layout, [], all_sandboxes=True)
    assert [(x.name, x.merge.entries, x.units) for x in again.sandboxes] == [("off", (), ())]


def test_upgrade_offline_says_a_wrapped_unit_was_not_reread(tmp_path: Path) -> None:
    spec = make_sandbox(tmp_path, "wrapped", Kind.UNIT)
    (s,) = upgrade(Layout(tmp_path), ["wrapped"]).sandboxes
    assert any("were not re-read" in n for n in s.notes)
    assert s.service_changes == ()
    assert specfile.load(Layout(tmp_path).spec_file("wrapped")) == spec


def test_upgrade_refuses_unclear_requests(tmp_path: Path) -> None:
    make_sandbox(tmp_path)
    with pytest.raises(InvalidInput):
        upgrade(Layout(tmp_path), ["off"], all_sandboxes=True)
    with pytest.raises(InvalidInput):
        upgrade(Layout(tmp_path), [])
    with pytest.raises(NotFound):
        upgrade(Layout(tmp_path), ["off", "nothere"])


@needs_root
def test_cli_dry_run_json_and_text(tmp_path: Path) -> None:
    make_sandbox(tmp_path)
    write(tmp_path, "etc/app/main.conf", "main = 2\n")
    write(tmp_path, "etc/app.conf", "top = 2\n")
    write(Layout(tmp_path).sandbox_root("off"), "etc/app.conf", "top = mine\n")
    before = all_snapshots(tmp_path)
    tool = [sys.executable, "-m", "sandbox_service", "--root", str(tmp_path), "upgrade"]
    done = subprocess.run([*tool, "off", "--dry-run", "--json"], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    assert out["dry_run"] and not out["online"]
    assert out["sandboxes"][0]["entries"] == [
        {"path": "/etc/app/main.conf", "action": "updated", "hostnew": None},
        {"path": "/etc/app.conf", "action": "conflict", "hostnew": "/etc/app.conf.hostnew"},
    ]
    assert all_snapshots(tmp_path) == before
    done = subprocess.run([*tool, "--all"], capture_output=True, text=True, check=True)
    assert "updated   /etc/app/main.conf" in done.stdout
    assert "conflict  /etc/app.conf (sandbox's kept; host's in /etc/app.conf.hostnew)" in done.stdout
    assert "nothing reloaded or restarted" in done.stdout
    bad = subprocess.run([*tool, "off", "--all"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not both" in bad.stderr
