"""Rendering of the paths systemd reads relative to the host unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox_service import render
from sandbox_service.render import ROOT_RELATIVE, inside_root, render_service
from sandbox_service.spec import Directive, ExecCommand, Kind, SandboxSpec, Security, ServiceDef, ServiceType
from tests import unitparse

paths = st.from_regex(r"-?\+?/[a-z0-9_]{1,8}(/[a-z0-9_]{1,8}){0,2}", fullmatch=True)


@given(paths)
def test_inside_root_marks_a_path_once_and_keeps_missing_ok(path: str) -> None:
    marked = inside_root(path)
    assert marked.removeprefix("-").startswith("+") and not marked.removeprefix("-").startswith("++")
    assert marked.startswith("-") == path.startswith("-")
    assert marked.lstrip("-+") == path.lstrip("-+")
    assert inside_root(marked) == marked


def spec(directives: tuple[Directive, ...], *, user_namespace: bool = True) -> SandboxSpec:
    cmd = ExecCommand("/bin/true", ("/bin/true",))
    return SandboxSpec(
        name="paths",
        kind=Kind.GENERIC if user_namespace else Kind.CHROOT,
        service=ServiceDef(
            type=ServiceType.EXEC, exec_start=(cmd,), read_write_paths=("/srv/data", "-/etc/x")
        ),
        description="x",
        security=Security(directives=directives, user_namespace=user_namespace),
        id_base=0x40000000,
    )


@pytest.mark.parametrize("protect", ["", "full", "strict"])
def test_every_access_path_is_the_sandboxs_and_its_root_is_read_only(protect: str) -> None:
    directives: tuple[Directive, ...] = (Directive("InaccessiblePaths", "-/etc/shadow /root"),)
    if protect:
        directives += (Directive("ProtectSystem", protect),)
    lines = unitparse.lines(render_service(spec(directives)))
    values: dict[str, list[str]] = {k: [] for k in ROOT_RELATIVE}
    for _section, key, value in lines:
        if key in ROOT_RELATIVE:
            values[key] += unitparse.words(value)
    assert all(p.lstrip("-").startswith("+") for v in values.values() for p in v)
    assert values["InaccessiblePaths"] == ["-+/etc/shadow", "+/root"]
    assert {"+/srv/data", "-+/etc/x"} <= set(values["ReadWritePaths"])
    # "/" read-only: ProtectSystem=strict whatever the profile said, with the usual places writable again
    assert [v for _s, k, v in lines if k == "ProtectSystem"] == ["strict"]
    assert ("-+/var" in values["ReadWritePaths"]) == (protect != "strict")
    assert ("-+/etc" in values["ReadWritePaths"]) == (protect == "")


def test_compiled_templates_are_kept_and_render_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = spec(())
    monkeypatch.setattr(render, "TEMPLATE_CACHE", tmp_path / "templates")
    monkeypatch.setattr(render, "_ENV", None)
    first = render.render(made)
    kept = sorted(p.name for p in (tmp_path / "templates").iterdir())
    assert len(kept) >= 2  # the service's and the slice's templates at least
    monkeypatch.setattr(render, "_ENV", None)  # as a new process: compiled code read back
    assert render.render(made) == first


def test_a_template_cache_others_may_write_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "templates"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setattr(render, "TEMPLATE_CACHE", shared)
    assert render._template_cache() is None
    shared.chmod(0o755)
    assert render._template_cache() is not None
