"""The pieces that make many sandboxes cheap: batched host accounts (accounts.py), batched ID ranges,
the spec index (index.py), the host's limits (hostlimits.py), deferred syncs (atomic.py), and the
profile's PrivateIPC= choice."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox_service import accounts, atomic, hostlimits, identity, index, render, security, specfile
from sandbox_service.errors import AlreadyExists, InvalidInput, LimitReached, SandboxError
from sandbox_service.paths import Layout
from sandbox_service.spec import (
    ID_BASE_FIRST,
    ID_RANGE_SIZE,
    ExecCommand,
    Kind,
    SandboxSpec,
    Security,
    ServiceDef,
)

# -- accounts -------------------------------------------------------------------------------------------

PASSWD = "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nwww-data:x:33:\n"
SHADOW = "root:*:19000:0:99999:7:::\nwww-data:*:19000:0:99999:7:::\n"
GSHADOW = "root:*::\nwww-data:*::\n"


@pytest.fixture()
def etc_root(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    for name, text, mode in (
        ("passwd", PASSWD, 0o644),
        ("group", GROUP, 0o644),
        ("shadow", SHADOW, 0o640),
        ("gshadow", GSHADOW, 0o640),
    ):
        (etc / name).write_text(text)
        os.chmod(etc / name, mode)
    (etc / "login.defs").write_text("PASS_MAX_DAYS\t90\nPASS_MIN_DAYS 1\n# PASS_WARN_AGE 3\n")
    return tmp_path


def test_accounts_are_added_in_one_edit_as_useradd_writes_them(etc_root: Path) -> None:
    etc = etc_root / "etc"
    made = [
        accounts.Account(f"sb-{n}", ID_BASE_FIRST + i * ID_RANGE_SIZE, f"root of {n}")
        for i, n in enumerate("ab")
    ]
    assert accounts.add(etc_root, made) == made
    days = int(time.time() // 86400)
    b = ID_BASE_FIRST + ID_RANGE_SIZE
    assert (etc / "passwd").read_text() == PASSWD + (
        f"sb-a:x:{ID_BASE_FIRST}:{ID_BASE_FIRST}:root of a:/nonexistent:/usr/sbin/nologin\n"
        f"sb-b:x:{b}:{b}:root of b:/nonexistent:/usr/sbin/nologin\n"
    )
    assert (etc / "group").read_text().endswith(f"sb-b:x:{ID_BASE_FIRST + ID_RANGE_SIZE}:\n")
    assert (etc / "shadow").read_text().endswith(f"sb-b:!:{days}:1:90:7:::\n")  # login.defs, then defaults
    assert (etc / "gshadow").read_text().endswith("sb-b:!::\n")
    assert (etc / "passwd-").read_text() == PASSWD  # the old file kept, as shadow's tools keep it
    assert stat.S_IMODE(os.stat(etc / "shadow").st_mode) == 0o640
    leftovers = [p.name for pattern in ("*.lock", "*+", "*.[0-9]*") for p in etc.glob(pattern)]
    assert leftovers == [".pwd.lock"]  # lckpwdf(3)'s lock file stays, as glibc leaves it
    assert accounts.add(etc_root, made) == []  # there already, with the same IDs: nothing to do
    accounts.remove(etc_root, ["sb-a", "sb-b"])
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("shadow", SHADOW), ("gshadow", GSHADOW)):
        assert (etc / name).read_text() == text


@pytest.mark.parametrize(
    "account, message",
    [
        (accounts.Account("www-data", ID_BASE_FIRST, "x"), "exists with other IDs"),
        (accounts.Account("sb-new", 33, "x"), "already belongs to 'www-data'"),
    ],
)
def test_accounts_that_clash_are_refused_and_nothing_is_written(
    etc_root: Path, account: accounts.Account, message: str
) -> None:
    with pytest.raises(AlreadyExists, match=message):
        accounts.add(etc_root, [accounts.Account("sb-fine", ID_BASE_FIRST + ID_RANGE_SIZE, "x"), account])
    assert (etc_root / "etc/passwd").read_text() == PASSWD


def test_the_lock_of_a_live_process_is_waited_for_and_a_stale_one_taken(
    etc_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = etc_root / "etc"
    holder = subprocess.Popen(["sleep", "30"])
    try:
        (etc / "group.lock").write_text(str(holder.pid))
        monkeypatch.setattr(accounts, "LOCK_TIMEOUT", 0.3)
        with pytest.raises(SandboxError, match=f"held by process {holder.pid}"):
            accounts.add(etc_root, [accounts.Account("sb-x", ID_BASE_FIRST, "x")])
        assert (etc / "group.lock").exists() and not (etc / "passwd.lock").exists()
    finally:
        holder.kill()
        holder.wait()
    accounts.add(etc_root, [accounts.Account("sb-x", ID_BASE_FIRST, "x")])  # its process is gone: stale
    assert "sb-x:" in (etc / "group").read_text() and not (etc / "group.lock").exists()


def test_the_accounts_pass_the_shadow_tools_own_checks(etc_root: Path) -> None:
    for tool in ("pwck", "grpck"):
        if not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.skip(f"{tool} is not installed")
    accounts.add(
        etc_root, [accounts.Account(f"sb-{i}", ID_BASE_FIRST + i * ID_RANGE_SIZE, "c") for i in range(50)]
    )
    done = subprocess.run(["pwck", "-r", "-R", str(etc_root)], capture_output=True, text=True, check=False)
    # pwck complains about the home directories of the test's fake root, never about the entries
    assert "invalid" not in done.stdout + done.stderr and "duplicate" not in done.stdout + done.stderr
    done = subprocess.run(["grpck", "-r", "-R", str(etc_root)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# -- ID ranges in one edit ------------------------------------------------------------------------------


def test_ranges_are_allocated_and_given_back_many_at_once(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text(f"other:x:{ID_BASE_FIRST + 5}:0::/:/bin/sh\n")
    reg = identity.IdRegistry(tmp_path / "ids.json", passwd=tmp_path / "passwd")
    assert reg.allocate("first") == ID_BASE_FIRST + ID_RANGE_SIZE  # the host's account holds the first
    got = reg.allocate_many(["a", "b", "first", "c"])
    assert got["first"] == ID_BASE_FIRST + ID_RANGE_SIZE
    assert sorted(got[n] for n in "abc") == [ID_BASE_FIRST + k * ID_RANGE_SIZE for k in (2, 3, 4)]
    assert len(set(got.values())) == 4 and reg.ranges() == got
    reg.release_many(["a", "c", "never"])
    assert sorted(reg.ranges()) == ["b", "first"]
    with pytest.raises(InvalidInput):
        reg.allocate_many(["Bad"])


# -- the index ------------------------------------------------------------------------------------------


def make_spec(name: str, **changes: object) -> SandboxSpec:
    base = SandboxSpec(
        name=name,
        kind=Kind.GENERIC,
        service=ServiceDef(exec_start=(ExecCommand("/usr/bin/sleep", ("sleep", "1")),)),
        id_base=None,
        security=Security(user_namespace=False),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_index_parses_only_specs_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = Layout(tmp_path)
    for n in ("one", "two"):
        specfile.save(layout.spec_file(n), make_spec(n, source_unit=None, apply_group="g"))
    (layout.sandbox_base / ".two.staging-1").mkdir()  # not a sandbox
    (layout.sandbox_base / "empty").mkdir()  # not a sandbox either: no spec
    first = index.summaries(layout)
    assert [(s.name, s.kind, s.apply_group) for s in first] == [
        ("one", "generic", "g"),
        ("two", "generic", "g"),
    ]
    assert (layout.sandbox_base / index.INDEX_NAME).is_file()
    parsed: list[str] = []
    real = index._summarise

    def counting(lay: Layout, name: str) -> index.Summary:
        parsed.append(name)
        return real(lay, name)

    monkeypatch.setattr(index, "_summarise", counting)
    assert index.summaries(layout) == first and parsed == []  # everything from the cache
    specfile.save(layout.spec_file("two"), make_spec("two", description="changed", apply_group=None))
    again = index.summaries(layout)
    assert parsed == ["two"] and again[1].apply_group is None
    layout.spec_file("one").unlink()
    assert [s.name for s in index.summaries(layout)] == ["two"]


def test_a_damaged_index_is_rebuilt_and_a_broken_spec_still_refused(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    specfile.save(layout.spec_file("one"), make_spec("one"))
    (layout.sandbox_base / index.INDEX_NAME).parent.mkdir(parents=True, exist_ok=True)
    (layout.sandbox_base / index.INDEX_NAME).write_text('{"version": 1, "sandboxes": {"one": {"stamp": 5}}}')
    assert [s.name for s in index.summaries(layout)] == ["one"]
    layout.spec_file("one").write_text("version: 1\nname: one\n")
    with pytest.raises(InvalidInput, match="missing key"):
        index.summaries(layout)


def test_summaries_give_the_checks_the_network(tmp_path: Path) -> None:
    from sandbox_service.network.model import NetworkSpec, PublishedPort

    layout = Layout(tmp_path)
    net = NetworkSpec(publish=(PublishedPort(8080, 80),))
    specfile.save(layout.spec_file("pub"), make_spec("pub", network=net))
    specfile.save(layout.spec_file("plain"), make_spec("plain"))
    by_name = {s.name: s for s in index.summaries(layout)}
    assert by_name["pub"].network == net and by_name["plain"].network == NetworkSpec()


# -- the host's limits ----------------------------------------------------------------------------------


def test_what_a_sandbox_costs() -> None:
    assert hostlimits.cost(True, True, 0, 252).descriptors == 5  # measured: tests/test_apply_box.py
    assert hostlimits.cost(True, False, 0, 252).descriptors == 3
    assert hostlimits.cost(True, True, 0, 257).descriptors == 7
    assert hostlimits.cost(False, False, 2, 252).descriptors == 3
    assert hostlimits.cost(True, False, 0, 252).namespaces == {"mnt": 1, "net": 1, "ipc": 0}


def limit(key: str, value: int, used: int) -> hostlimits.Limit:
    return hostlimits.Limit(key, f"the {key}", value, used, f"raise {key}")


def test_room_and_the_limit_that_decides() -> None:
    each = hostlimits.cost(True, True, 0, 252)
    limits = [limit("descriptors", 20000, 1000), limit("mounts", 100000, 50), limit("net", 1000, 10)]
    room, bound = hostlimits.room(limits, each)
    assert (room, bound and bound.key) == (990, "net")
    room, bound = hostlimits.room(limits[:2], each)
    assert (room, bound and bound.key) == ((20000 - 256 - 1000) // 5, "descriptors")


def test_a_batch_that_does_not_fit_is_refused_whole() -> None:
    each = hostlimits.cost(True, True, 0, 252)
    limits = [limit("descriptors", 1000, 700)]  # 44 left after the reserve: 8 sandboxes
    hostlimits.check_room([each] * 8, limits)
    with pytest.raises(LimitReached) as exc:
        hostlimits.check_room([each] * 9, limits)
    assert "needs 45 more" in exc.value.message and "about 8 more can start" in exc.value.message
    assert exc.value.hint == "raise descriptors" and exc.value.exit_code == 14
    hostlimits.check_room([], limits)


def test_the_limits_are_read_from_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = tmp_path / "proc"
    (proc / "1" / "fd").mkdir(parents=True)
    for n in range(40):
        (proc / "1" / "fd" / str(n)).touch()
    (proc / "1" / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max open files            20000                524288               files\n"
    )
    (proc / "1" / "mountinfo").write_text("x\n" * 12)
    (proc / "sys/fs").mkdir(parents=True)
    (proc / "sys/fs/mount-max").write_text("100000\n")
    (proc / "sys/user").mkdir(parents=True)
    (proc / "sys/user/max_net_namespaces").write_text("500\n")
    for pid in ("1", "17", "23"):
        (proc / pid).mkdir(exist_ok=True)
    monkeypatch.setattr(hostlimits, "PROC", proc)
    found = {lim.key: lim for lim in hostlimits.host_limits()}
    assert (found["descriptors"].limit, found["descriptors"].in_use) == (20000, 40)
    assert (found["mounts"].limit, found["mounts"].in_use) == (100000, 12)
    assert (found["net"].limit, found["net"].in_use) == (500, 3)  # processes stand in for namespaces
    assert set(found) == {"descriptors", "mounts", "net"}


# -- deferred syncs -------------------------------------------------------------------------------------


def test_deferred_writes_sync_once_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    fsyncs: list[int] = []
    monkeypatch.setattr(atomic, "sync_filesystem", synced.append)
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    with atomic.deferred_sync():
        for n in range(5):
            atomic.write_atomic(tmp_path / f"f{n}", f"text {n}")
        with atomic.deferred_sync():  # nested: the outer one syncs
            atomic.write_atomic(tmp_path / "inner", "x")
        assert synced == [] and fsyncs == []
    assert synced == [tmp_path] and fsyncs == []
    assert (tmp_path / "f3").read_text() == "text 3" and not list(tmp_path.glob(".*tmp*"))
    atomic.write_atomic(tmp_path / "plain", "y")
    assert len(fsyncs) == 2  # the file and its directory, outside


def test_sync_filesystem_runs(tmp_path: Path) -> None:
    atomic.sync_filesystem(tmp_path)
    atomic.sync_filesystem(tmp_path / "missing")  # falls back to sync(2)


# -- PrivateIPC= in profiles ----------------------------------------------------------------------------


def test_a_profile_may_give_up_the_ipc_namespace(tmp_path: Path) -> None:
    lines = security.parse_profile("NoNewPrivileges=yes\nPrivateIPC=no\n", "p.conf")
    profile = security.Profile("p", tmp_path / "p.conf", lines)
    svc = ServiceDef(exec_start=(ExecCommand("/usr/bin/sleep", ("sleep", "1")),))
    resolved = security.resolve(profile, svc, 252)
    assert not resolved.private_ipc and all(d.key != "PrivateIPC" for d in resolved.directives)
    assert security.resolve(security.Profile("d", tmp_path, ()), svc, 252).private_ipc
    with pytest.raises(InvalidInput, match="give yes or no"):
        security.parse_profile("PrivateIPC=maybe\n", "p.conf")
    with pytest.raises(InvalidInput, match="does not harden"):
        security.parse_profile("NoNewPrivileges=no\n", "p.conf")


def test_the_dense_profile_and_the_unit(tmp_path: Path) -> None:
    settled = security.settle(
        Security("dense"), ServiceDef(exec_start=(ExecCommand("/usr/bin/true", ("true",)),)), 252, tmp_path
    )
    spec = make_spec("dense", security=settled.applied_to(Security("dense", user_namespace=False)))
    assert spec.security.private_ipc is False
    unit = render.render_service(spec)
    assert "\nPrivateIPC=no\n" in unit and "\nPrivateIPC=yes\n" not in unit
    default = make_spec("plain")
    assert "\nPrivateIPC=yes\n" in render.render_service(default)
    assert specfile.loads(specfile.dumps(spec)) == spec
