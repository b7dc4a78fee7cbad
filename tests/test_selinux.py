"""Tests for sandbox_service.selinux: the MCS pair registry, contexts, labelling and mode resolution."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox_service import selinux as se
from sandbox_service.errors import InvalidInput, NotFound, SandboxError
from sandbox_service.spec import SELinuxMode

REPO = Path(__file__).resolve().parent.parent
LEVEL = "s0:c12,c345"


def _pair(level: str) -> tuple[int, int]:
    head, _, cats = level.partition(":")
    assert head == "s0"
    first, second = cats.split(",")
    assert first.startswith("c") and second.startswith("c")
    a, b = int(first[1:]), int(second[1:])
    assert 0 <= a < b <= 1023
    return a, b


@pytest.fixture
def registry(tmp_path: Path) -> se.McsRegistry:
    return se.McsRegistry(tmp_path / "state" / ".mcs-registry.json")


# ---------------------------------------------------------------------------------------------------------
# Registry


def test_thousand_names_get_thousand_distinct_pairs(registry: se.McsRegistry) -> None:
    levels = [registry.allocate(f"svc{i}") for i in range(1000)]
    pairs = [_pair(level) for level in levels]
    assert len(set(pairs)) == 1000
    stored = registry.pairs()
    assert stored == {f"svc{i}": levels[i] for i in range(1000)}


def test_allocate_is_idempotent(registry: se.McsRegistry) -> None:
    first = registry.allocate("web")
    assert registry.allocate("web") == first
    assert registry.lookup("web") == first
    assert registry.pairs() == {"web": first}


def test_clone_gets_a_different_pair(registry: se.McsRegistry) -> None:
    source = registry.allocate("web")
    clone = registry.allocate("web-clone")
    assert clone != source
    assert _pair(clone) != _pair(source)


def test_release_forgets_the_name_and_is_idempotent(registry: se.McsRegistry) -> None:
    level = registry.allocate("web")
    registry.allocate("db")
    registry.release("web")
    assert registry.lookup("web") is None
    assert "web" not in registry.pairs()
    assert level not in registry.pairs().values()
    registry.release("web")
    registry.release("never-allocated")
    assert list(registry.pairs()) == ["db"]


def test_released_pair_is_reused(tmp_path: Path) -> None:
    # Three categories give exactly three pairs, so the fourth sandbox can only get a released one.
    reg = se.McsRegistry(tmp_path / "reg.json", categories=3)
    levels = {reg.allocate(n) for n in ("a", "b", "c")}
    assert levels == {"s0:c0,c1", "s0:c0,c2", "s0:c1,c2"}
    with pytest.raises(SandboxError) as exc:
        reg.allocate("d")
    assert exc.value.hint
    freed = reg.lookup("b")
    assert freed is not None
    reg.release("b")
    assert reg.allocate("d") == freed
    assert set(reg.pairs().values()) == levels


def test_registry_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "reg.json"
    reg = se.McsRegistry(path)
    expected = {name: reg.allocate(name) for name in ("a", "b", "c")}
    assert se.McsRegistry(path).pairs() == expected
    data = json.loads(path.read_text())
    assert data == {"version": 1, "pairs": expected}


def test_missing_registry_is_empty(registry: se.McsRegistry) -> None:
    assert registry.pairs() == {}
    assert registry.lookup("web") is None
    assert not registry.path.exists()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"version": 2, "pairs": {}}',
        '{"version": 1, "pairs": []}',
        '{"version": 1, "pairs": {"web": 7}}',
        '{"version": 1, "pairs": {"web": "s0:c5,c3"}}',
        '{"version": 1, "pairs": {"web": "s0:c1,c1024"}}',
        '{"version": 1, "pairs": {"web": "s0"}}',
        '{"version": 1, "pairs": {"Bad Name": "s0:c1,c2"}}',
        '{"version": 1, "pairs": {"a": "s0:c1,c2", "b": "s0:c1,c2"}}',
    ],
)
def test_corrupt_registry_raises_with_hint(tmp_path: Path, content: str) -> None:
    path = tmp_path / "reg.json"
    path.write_text(content)
    reg = se.McsRegistry(path)
    for call in (reg.pairs, lambda: reg.lookup("web"), lambda: reg.allocate("web"), lambda: reg.release("a")):
        with pytest.raises(SandboxError) as exc:
            call()
        assert "corrupt" in exc.value.message
        assert exc.value.hint and str(path) in exc.value.hint
    assert path.read_text() == content  # never overwritten


def test_invalid_names_are_refused(registry: se.McsRegistry) -> None:
    for bad in ("", "Web", "a/b", "../x"):
        with pytest.raises(InvalidInput):
            registry.allocate(bad)


def _allocate_many(path: str, worker: int, count: int, barrier: Barrier) -> None:
    reg = se.McsRegistry(Path(path))
    barrier.wait()
    for i in range(count):
        reg.allocate(f"w{worker}-{i}")


def test_concurrent_allocation_from_processes(tmp_path: Path) -> None:
    workers, per_worker = 4, 50
    path = tmp_path / "reg.json"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers)
    procs = [
        ctx.Process(target=_allocate_many, args=(str(path), w, per_worker, barrier)) for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    pairs = se.McsRegistry(path).pairs()
    # Without the lock, concurrent read-modify-writes lose each other's names or hand out a pair twice.
    assert set(pairs) == {f"w{w}-{i}" for w in range(workers) for i in range(per_worker)}
    assert len({_pair(level) for level in pairs.values()}) == workers * per_worker


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abcdefg")), max_size=25))
def test_random_allocate_release_keeps_pairs_unique(ops: list[tuple[bool, str]]) -> None:
    # Four categories give six pairs for seven names, so some runs hit exhaustion.
    with tempfile.TemporaryDirectory() as d:
        reg = se.McsRegistry(Path(d) / "reg.json", categories=4)
        model: dict[str, str] = {}
        for allocate, name in ops:
            if allocate:
                try:
                    level = reg.allocate(name)
                except SandboxError:
                    assert name not in model and len(model) == 6
                    continue
                assert model.setdefault(name, level) == level
            else:
                reg.release(name)
                model.pop(name, None)
            assert reg.pairs() == model
            assert len(set(model.values())) == len(model)


# ---------------------------------------------------------------------------------------------------------
# Contexts


def test_contexts() -> None:
    assert se.process_context(LEVEL) == "system_u:system_r:sandbox_service_t:s0:c12,c345"
    assert se.file_context(LEVEL) == "system_u:object_r:sandbox_service_file_t:s0:c12,c345"
    assert se.file_context("s0") == "system_u:object_r:sandbox_service_file_t:s0"


@pytest.mark.parametrize("level", ["", "s1", "s0:c1", "s0:c2,c1", "s0:c3,c3", "s0:c1,c1024", "s0:c1,c2\n"])
def test_bad_levels_are_refused(level: str) -> None:
    with pytest.raises(InvalidInput):
        se.process_context(level)
    with pytest.raises(InvalidInput):
        se.file_context(level)


# ---------------------------------------------------------------------------------------------------------
# Labelling


@pytest.fixture
def xattrs_ok(tmp_path: Path) -> None:
    """Skip unless this process may write security.* attributes here (root, xattr-capable filesystem)."""
    probe = tmp_path / ".probe"
    probe.touch()
    try:
        os.setxattr(probe, se.XATTR_NAME, se.file_context("s0").encode() + b"\0")
    except OSError as e:
        pytest.skip(f"cannot write {se.XATTR_NAME} under {tmp_path}: {os.strerror(e.errno or errno.EIO)}")
    finally:
        probe.unlink()


def _make_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    target = outside / "target"
    target.write_text("not ours\n")
    (outside / "dir" / "inner").write_text("not ours either\n")

    root = tmp_path / "tree"
    (root / "etc" / "app").mkdir(parents=True)
    (root / "var" / "lib" / "empty").mkdir(parents=True)
    (root / "etc" / "app" / "app.conf").write_text("x\n")
    (root / "etc" / "hostname").write_text("box\n")
    (root / "var" / "lib" / "state").write_bytes(b"\0\1")
    (root / "link-out").symlink_to(target)
    (root / "etc" / "link-dir-out").symlink_to(outside / "dir")
    (root / "dangling").symlink_to(tmp_path / "missing")
    return root, target, outside


@pytest.mark.usefixtures("xattrs_ok")
@pytest.mark.parametrize("bindings", [True, False], ids=["libselinux", "xattr-fallback"])
def test_label_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bindings: bool) -> None:
    if bindings:
        pytest.importorskip("selinux")
    else:
        monkeypatch.setitem(sys.modules, "selinux", None)  # makes `import selinux` fail
    root, target, outside = _make_tree(tmp_path)
    entries = [root, *(Path(d) / n for d, ds, fs in os.walk(root) for n in (*ds, *fs))]
    assert len(entries) == 12

    assert se.label_tree(root, LEVEL) == len(entries)

    want = se.file_context(LEVEL)
    for entry in entries:
        assert se.read_label(entry) == want, entry
    # Nothing the symlinks point to was touched.
    for path in (target, outside, outside / "dir", outside / "dir" / "inner"):
        assert se.read_label(path) is None, path
    # Relabelling for another sandbox replaces every label.
    assert se.label_tree(root, "s0:c1,c2") == len(entries)
    assert {se.read_label(e) for e in entries} == {se.file_context("s0:c1,c2")}


@pytest.mark.usefixtures("xattrs_ok")
def test_label_tree_on_single_file_and_symlink(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    link = tmp_path / "l"
    link.symlink_to(f)
    assert se.label_tree(link, LEVEL) == 1
    assert se.read_label(link) == se.file_context(LEVEL)
    assert se.read_label(f) is None
    assert se.label_tree(f, LEVEL) == 1
    assert se.read_label(f) == se.file_context(LEVEL)


@pytest.mark.usefixtures("xattrs_ok")
def test_libselinux_and_fallback_write_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("selinux")
    a, b = tmp_path / "a", tmp_path / "b"
    a.touch()
    b.touch()
    se.label_tree(a, LEVEL)
    monkeypatch.setitem(sys.modules, "selinux", None)
    se.label_tree(b, LEVEL)
    assert (
        os.getxattr(a, se.XATTR_NAME)
        == os.getxattr(b, se.XATTR_NAME)
        == se.file_context(LEVEL).encode() + b"\0"
    )


def test_label_tree_missing_path(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        se.label_tree(tmp_path / "nope", LEVEL)


def test_label_tree_bad_level_labels_nothing(tmp_path: Path) -> None:
    (tmp_path / "f").touch()
    with pytest.raises(InvalidInput):
        se.label_tree(tmp_path, "s0:c9,c1")
    assert se.read_label(tmp_path / "f") is None


def test_read_label_unlabelled_and_missing(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.touch()
    assert se.read_label(f) is None
    with pytest.raises(NotFound):
        se.read_label(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------------
# Host state and modes


def test_modes_with_bindings() -> None:
    selinux = pytest.importorskip("selinux")
    host = selinux.is_selinux_enabled() == 1
    assert se.selinux_enabled_on_host() is host
    assert se.resolve_mode(SELinuxMode.AUTO) is host
    assert se.resolve_mode(SELinuxMode.ENABLED) is True
    assert se.resolve_mode(SELinuxMode.DISABLED) is False


def test_modes_without_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "selinux", None)
    assert se.selinux_enabled_on_host() is False
    assert se.resolve_mode(SELinuxMode.AUTO) is False
    assert se.resolve_mode(SELinuxMode.DISABLED) is False
    with pytest.raises(InvalidInput) as exc:
        se.resolve_mode(SELinuxMode.ENABLED)
    assert exc.value.hint and "python3-selinux" in exc.value.hint


def test_module_imports_without_libselinux() -> None:
    code = (
        "import sys; sys.modules['selinux'] = None\n"
        "import sandbox_service.selinux as m\n"
        "print(m.selinux_enabled_on_host(), m.process_context('s0:c1,c2'))\n"
        "assert 'selinux' not in [k for k, v in sys.modules.items() if v is not None]\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out == "False system_u:system_r:sandbox_service_t:s0:c1,c2\n"


def test_importing_does_not_load_libselinux() -> None:
    code = "import sys\nimport sandbox_service.selinux\nprint('selinux' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out == "False\n"
