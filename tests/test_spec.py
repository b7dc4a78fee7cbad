"""The spec: validation at construction, and a lossless round trip through the spec file."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox_service import specfile
from sandbox_service.errors import InvalidInput
from sandbox_service.spec import (
    EnvFile,
    EnvVar,
    ExecCommand,
    ExecFlag,
    Kind,
    Limits,
    SandboxSpec,
    SELinuxMode,
    ServiceDef,
    ServiceType,
    check_name,
)

text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=30)
paths = st.from_regex(r"/[a-z0-9_.-]{1,10}(/[a-z0-9_-]{1,10}){0,3}", fullmatch=True).filter(
    lambda p: "/." not in p
)
commands = st.builds(
    lambda p, args, flags, env: ExecCommand(p, (p, *args), tuple(flags), env),
    paths,
    st.lists(text, max_size=4),
    st.lists(st.sampled_from(ExecFlag), max_size=2, unique=True),
    st.booleans(),
)
services = st.builds(
    ServiceDef,
    type=st.sampled_from(ServiceType),
    exec_start=st.lists(commands, min_size=1, max_size=2).map(tuple),
    exec_stop=st.lists(commands, max_size=2).map(tuple),
    pid_file=st.one_of(st.none(), st.just("/run/x.pid")),
    user=st.one_of(st.none(), st.just("www-data")),
    environment=st.lists(
        st.builds(EnvVar, st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), text), max_size=3
    ).map(tuple),
    environment_files=st.lists(st.builds(EnvFile, paths, st.booleans()), max_size=2).map(tuple),
    state_directories=st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True), max_size=2).map(tuple),
    timeout_stop_sec=st.one_of(st.none(), st.just("5s"), st.just("infinity")),
)
specs = st.builds(
    SandboxSpec,
    name=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True),
    kind=st.just(Kind.UNIT),
    service=services,
    description=text,
    source_unit=st.one_of(st.none(), st.just("nginx.service")),
    copies=st.lists(
        st.tuples(st.sampled_from(("/etc", "/var", "/srv", "/opt", "/home")), paths).map("".join),
        max_size=3,
    ).map(tuple),
    limits=st.builds(
        Limits,
        memory_max=st.one_of(st.none(), st.just("512M"), st.just("infinity")),
        cpu_quota=st.one_of(st.none(), st.just("50%")),
        cpu_weight=st.one_of(st.none(), st.integers(1, 10000)),
        io_weight=st.one_of(st.none(), st.integers(1, 10000)),
        tasks_max=st.one_of(st.none(), st.integers(1, 4096)),
    ),
    selinux=st.sampled_from(SELinuxMode),
    selinux_level=st.one_of(st.none(), st.just("s0:c1,c2")),
    enabled=st.booleans(),
    id_base=st.one_of(st.none(), st.integers(0x4000, 0x6FFE).map(lambda slot: slot * 65536)),
)


@given(specs)
@settings(max_examples=200)
def test_spec_file_round_trips(spec: SandboxSpec) -> None:
    assert specfile.loads(specfile.dumps(spec)) == spec


@pytest.mark.parametrize("name", ["", "Web", "a b", "web/x", "-web", "x" * 41, "wéb", "web.service", "a\nb"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_name(name)


@pytest.mark.parametrize("name", ["web", "a", "web-1", "my_app", "0day", "x" * 40])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


def test_unknown_keys_are_refused() -> None:
    text = specfile.dumps(
        SandboxSpec("web", Kind.GENERIC, ServiceDef(exec_start=(ExecCommand("/bin/true", ("true",)),)))
    )
    with pytest.raises(InvalidInput, match="unknown key"):
        specfile.loads(text + "surprise: 1\n")
    with pytest.raises(InvalidInput, match="not one of"):
        specfile.loads(text.replace("kind: generic", "kind: vm"))
    with pytest.raises(InvalidInput, match="missing key"):
        specfile.loads(text.replace("name: web\n", ""))
    with pytest.raises(InvalidInput, match="version"):
        specfile.loads(text.replace("version: 1", "version: 99"))


def test_spec_validation() -> None:
    ok = (ExecCommand("/bin/true", ("true",)),)
    with pytest.raises(InvalidInput, match="PIDFile"):
        ServiceDef(exec_start=ok, pid_file="/var/tmp/x.pid")
    with pytest.raises(InvalidInput):
        ExecCommand("relative/path", ("x",))
    with pytest.raises(InvalidInput):
        EnvVar("1BAD", "x")
    with pytest.raises(InvalidInput, match="memory"):
        Limits(memory_max="lots")
    with pytest.raises(InvalidInput, match="out of range"):
        Limits(cpu_weight=0)
    with pytest.raises(InvalidInput, match="chroot"):
        SandboxSpec("x", Kind.CHROOT, ServiceDef(exec_start=ok))
