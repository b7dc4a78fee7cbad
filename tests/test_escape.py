"""Property tests: whatever text a user or a host unit supplies, the rendered unit says exactly that
and nothing more. No value can start a new line, a new directive or a specifier."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox_service import escape
from sandbox_service.errors import InvalidInput
from sandbox_service.render import render_service
from sandbox_service.spec import (
    EnvVar,
    ExecCommand,
    Kind,
    SandboxSpec,
    ServiceDef,
    ServiceType,
)
from tests import unitparse

printable = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
nasty = st.text(
    alphabet=string.printable.replace("\n", "")
    .replace("\t", "")
    .replace("\r", "")
    .replace("\x0b", "")
    .replace("\x0c", "")
    + "%$\\\"';:=[]é€",
    min_size=1,
    max_size=40,
)
any_text = st.one_of(printable, nasty)
names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,39}", fullmatch=True)
env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
abs_paths = st.lists(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"),
        min_size=1,
        max_size=12,
    ).filter(lambda s: s not in (".", "..")),
    min_size=1,
    max_size=4,
).map(lambda parts: "/" + "/".join(parts))


@given(any_text, st.booleans())
def test_quoted_word_round_trips(value: str, literal_dollar: bool) -> None:
    rendered = escape.quoted("v", value, literal_dollar=literal_dollar)
    (word,) = unitparse.words(unitparse.unspecifier(rendered))
    assert (unitparse.undollar(word) if literal_dollar else word) == value


@given(st.text(min_size=1, max_size=20).filter(lambda s: any(ord(c) < 32 or ord(c) == 127 for c in s)))
def test_control_characters_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput):
        escape.quoted("v", value, literal_dollar=True)
    with pytest.raises(InvalidInput):
        escape.plain("v", value)


@given(
    names,
    abs_paths,
    st.lists(any_text, min_size=0, max_size=5),
    st.lists(st.tuples(env_names, any_text), max_size=4),
    any_text,
)
@settings(max_examples=300)
def test_no_value_can_inject_a_directive(
    name: str, path: str, args: list[str], env: list[tuple[str, str]], description: str
) -> None:
    cmd = ExecCommand(path=path, argv=(path, *args), expand_env=False)
    try:
        spec = SandboxSpec(
            name=name,
            kind=Kind.GENERIC,
            service=ServiceDef(
                type=ServiceType.EXEC, exec_start=(cmd,), environment=tuple(EnvVar(k, v) for k, v in env)
            ),
            description=description.strip() or "x",
        )
        text = render_service(spec)
    except InvalidInput:
        # refused, never altered: only a description with a trailing backslash may be refused here
        assert description.strip().endswith("\\")
        return
    assignments = unitparse.lines(text)
    keys = [k for _s, k, _v in assignments]
    assert keys.count("ExecStart") == 1
    assert keys.count("Environment") == len(env)
    assert keys.count("Description") == 1
    (exec_value,) = [v for _s, k, v in assignments if k == "ExecStart"]
    decoded = [unitparse.undollar(w) for w in unitparse.words(unitparse.unspecifier(exec_value))]
    assert decoded == [path, *args]
    env_values = [unitparse.words(unitparse.unspecifier(v)) for _s, k, v in assignments if k == "Environment"]
    assert [w[0] for w in env_values] == [f"{k}={v}" for k, v in env]
    (desc,) = [v for _s, k, v in assignments if k == "Description"]
    assert unitparse.unspecifier(desc) == f"Sandbox {name}: {description.strip() or 'x'}"


def test_host_unit_words_keep_variable_syntax() -> None:
    cmd = ExecCommand("/usr/bin/app", ("/usr/bin/app", "$MAINPID", "${OPTS}", "100%"), expand_env=True)
    assert escape.exec_line(cmd) == '"/usr/bin/app" "$MAINPID" "${OPTS}" "100%%"'


def test_user_words_are_literal() -> None:
    cmd = ExecCommand("/bin/sh", ("sh", "-c", "echo $HOME; true"))
    assert escape.exec_line(cmd) == '"@/bin/sh" "sh" "-c" "echo $$HOME; true"'


def test_lone_semicolon_is_not_a_separator() -> None:
    cmd = ExecCommand("/usr/bin/find", ("/usr/bin/find", ".", "-exec", "true", ";"))
    assert escape.exec_line(cmd).endswith(' "true" \\;')


def test_bind_pair_quotes_each_side() -> None:
    assert escape.bind_pair("/run/a:b", "/run") == '"/run/a\\:b":"/run"'


def test_plain_refuses_trailing_backslash() -> None:
    with pytest.raises(InvalidInput):
        escape.plain("Description", "ends with \\")
