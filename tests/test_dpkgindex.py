"""The persistent owner index of dpkg's file lists (discover/dpkgindex.py): it answers as scanning the
lists does, is used only for the state of the info directory it was built from, and is never saved when
that state cannot be trusted."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox_service.discover import dpkgdb, dpkgindex

LISTS = {
    "base-files": ["/.", "/etc", "/etc/issue", "/usr", "/usr/share"],
    "nginx-common": [
        "/.",
        "/etc",
        "/etc/nginx",
        "/etc/nginx/nginx.conf",
        "/usr/lib/systemd/system/nginx.service",
    ],
    "libfoo1:amd64": ["/.", "/usr", "/usr/lib/libfoo.so.1", "/usr/share/doc/libfoo1"],
    "libfoo1:i386": ["/.", "/usr", "/usr/lib/i386/libfoo.so.1", "/usr/share/doc/libfoo1"],
}
PAST = time.time() - 60


def make_tree(root: Path, lists: Mapping[str, list[str]], mtime: float = PAST) -> Path:
    info = root / dpkgdb.INFO_DIR
    info.mkdir(parents=True, exist_ok=True)
    for key, paths in lists.items():
        (info / f"{key}.list").write_bytes(b"".join(os.fsencode(p) + b"\n" for p in paths))
    os.utime(info, (mtime, mtime))
    return info


def scanned(root: Path) -> dpkgdb.DpkgDatabase:
    return dpkgdb.DpkgDatabase(root)  # no index: every answer from the lists themselves


def indexed(root: Path, index: Path) -> dpkgdb.DpkgDatabase:
    return dpkgdb.DpkgDatabase(root, index)


def no_lists() -> Mapping[str, bytes]:
    raise AssertionError("the lists were read again, the saved index was not used")


def test_the_index_answers_as_the_lists_do(tmp_path: Path) -> None:
    make_tree(tmp_path, LISTS)
    index = tmp_path / "cache/owners.sqlite"
    asked = sorted({p for paths in LISTS.values() for p in paths} | {"/nowhere", "/etc/nginx/"})
    db = indexed(tmp_path, index)
    assert [db.owners(p) for p in asked] == [scanned(tmp_path).owners(p) for p in asked]
    assert db.owners("/usr/share/doc/libfoo1") == ["libfoo1"]  # both architectures: one package
    assert db.owners("/etc") == ["base-files", "nginx-common"]
    assert index.is_file() and oct(index.stat().st_mode & 0o777) == "0o644"


def test_a_saved_index_is_used_without_reading_the_lists(tmp_path: Path) -> None:
    info = make_tree(tmp_path, LISTS)
    index = tmp_path / "owners.sqlite"
    assert dpkgindex.load(info, index, lambda: dpkgdb.DpkgDatabase(tmp_path)._all()) is not None
    again = dpkgindex.load(info, index, no_lists)
    assert again is not None and again.owners("/etc/nginx") == ["nginx-common"]


def test_a_change_of_the_lists_makes_a_new_index(tmp_path: Path) -> None:
    info = make_tree(tmp_path, LISTS)
    index = tmp_path / "owners.sqlite"
    assert indexed(tmp_path, index).owners("/etc/apache2") == []
    make_tree(tmp_path, {"apache2": ["/etc", "/etc/apache2"]}, mtime=PAST + 1)  # as dpkg installs one
    with pytest.raises(AssertionError, match="read again"):  # the saved one is not taken ...
        dpkgindex.load(info, index, no_lists)
    assert indexed(tmp_path, index).owners("/etc/apache2") == ["apache2"]  # ... a new one is made


def test_no_index_is_saved_right_after_a_change(tmp_path: Path) -> None:
    info = make_tree(tmp_path, LISTS, mtime=time.time())
    index = tmp_path / "owners.sqlite"
    assert dpkgindex.load(info, index, lambda: scanned(tmp_path)._all()) is None
    assert not index.exists()
    db = indexed(tmp_path, index)  # the lists are scanned instead, with the same answers
    assert db.owners("/etc/nginx/nginx.conf") == ["nginx-common"] and not index.exists()


def test_no_index_is_saved_when_dpkg_changed_the_lists_while_they_were_read(tmp_path: Path) -> None:
    info = make_tree(tmp_path, LISTS)
    index = tmp_path / "owners.sqlite"

    def read_while_dpkg_runs() -> Mapping[str, bytes]:
        lists = scanned(tmp_path)._all()
        make_tree(tmp_path, {"apache2": ["/etc/apache2"]}, mtime=PAST + 5)
        return lists

    assert dpkgindex.load(info, index, read_while_dpkg_runs) is None
    assert not index.exists() and os.listdir(tmp_path) == ["var"]  # no temp file left either


def test_a_damaged_index_is_made_again(tmp_path: Path) -> None:
    make_tree(tmp_path, LISTS)
    index = tmp_path / "owners.sqlite"
    index.write_bytes(b"not a database at all\n" * 100)
    assert indexed(tmp_path, index).owners("/etc/issue") == ["base-files"]
    assert dpkgindex.load(tmp_path / dpkgdb.INFO_DIR, index, no_lists) is not None


def test_a_cache_directory_that_cannot_be_made_leaves_the_lists_scanned(tmp_path: Path) -> None:
    make_tree(tmp_path, LISTS)
    (tmp_path / "file").write_text("")
    db = indexed(tmp_path, tmp_path / "file/owners.sqlite")
    assert db.owners("/etc/nginx") == ["nginx-common"]


def test_a_tree_without_a_database_has_no_index(tmp_path: Path) -> None:
    index = tmp_path / "owners.sqlite"
    assert indexed(tmp_path, index).owners("/etc") == [] and not index.exists()


PATH = st.lists(st.sampled_from(["etc", "usr", "lib", "a b", "ü", "x:y", "\\n"]), min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts)
)


@settings(max_examples=40, deadline=None)
@given(
    lists=st.dictionaries(
        st.sampled_from(["a", "b", "b:i386", "c-d", "e:amd64"]), st.lists(PATH, max_size=6), max_size=5
    ),
    asked=st.lists(PATH, max_size=8),
)
def test_property_index_and_scan_agree(
    tmp_path_factory: pytest.TempPathFactory, lists: dict[str, list[str]], asked: list[str]
) -> None:
    root = tmp_path_factory.mktemp("tree")
    make_tree(root, lists)
    db = indexed(root, root / "owners.sqlite")
    questions = asked + [p for paths in lists.values() for p in paths]
    for path in questions:
        assert db.owners(path) == scanned(root).owners(path)
    assert (root / "owners.sqlite").exists() == bool(questions)  # the answers above came from the index
