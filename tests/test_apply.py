"""apply's documents (parsing, refusals, where errors point), its JSON Schema, and what its plan
compares; the apply runs themselves are in test_apply_box.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from sandbox_service.apply import document, plan, schema
from sandbox_service.errors import InvalidInput, NotFound
from sandbox_service.spec import ExecCommand, Kind, Limits, SandboxSpec, Security, SELinuxMode, ServiceDef
from tests.test_man import MAN5, normalise, sections

REPO = Path(__file__).resolve().parent.parent
SHIPPED_SCHEMA = REPO / "schemas" / "sandbox-service-apply.schema.json"

SLEEP = "service: {exec_start: [{path: /usr/bin/sleep, argv: [sleep, infinity]}]}"


def write(tmp_path: Path, text: str, name: str = "doc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str) -> document.Documents:
    return document.load(write(tmp_path, text))


def test_a_list_document(tmp_path: Path) -> None:
    docs = load_text(
        tmp_path,
        f"""
version: 1
apply_group: web
sandboxes:
  - name: web
    source_unit: nginx.service
    limits: {{memory_max: 256M}}
    enabled: true
  - name: job
    {SLEEP}
    started: false
    security: {{profile: dense}}
    user: nobody
""",
    )
    assert docs.groups == ("web",)
    web, job = docs.entries
    assert (web.name, web.kind, web.source_unit, web.service) == ("web", Kind.UNIT, "nginx.service", None)
    assert web.limits == Limits(memory_max="256M") and web.enabled and web.started and web.group == "web"
    assert job.kind is Kind.GENERIC and not job.started and job.profile == "dense" and job.user == "nobody"
    assert job.service is not None and job.service.exec_start[0].argv == ("sleep", "infinity")
    req = plan.request(job)
    assert (req.name, req.unit, req.service, req.user, req.profile, req.apply_group) == (
        "job",
        None,
        job.service,
        "nobody",
        "dense",
        "web",
    )
    assert plan.request(web).unit == "nginx.service" and plan.request(web).enable


def test_single_sandbox_documents_several_per_file_and_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    write(tmp_path / "d", f"version: 1\nname: one\n{SLEEP}\n---\nversion: 1\nname: two\n{SLEEP}\n", "a.yaml")
    write(tmp_path / "d", f"version: 1\napply_group: other\nname: three\n{SLEEP}\n", "b.yml")
    write(tmp_path / "d", "not: read\n", "c.txt")
    write(tmp_path / "d", "not: read\n", ".hidden.yaml")
    docs = document.load(tmp_path / "d")
    assert [e.name for e in docs.entries] == ["one", "two", "three"]
    assert [e.group for e in docs.entries] == ["default", "default", "other"]
    assert docs.groups == ("default", "other")


def test_an_empty_list_still_names_its_group(tmp_path: Path) -> None:
    """So that --prune can empty a group."""
    docs = load_text(tmp_path, "version: 1\napply_group: gone\nsandboxes: []\n")
    assert docs.entries == () and docs.groups == ("gone",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: 2\nsandboxes: []\n", "unsupported or missing version 2"),
        ("sandboxes: []\n", "unsupported or missing version None"),
        ("- 1\n", "expected a mapping at the top level"),
        ("version: 1\nsandboxes: {}\n", "sandboxes: expected a list"),
        ("version: 1\nsandboxes: []\nname: x\n", "unknown key(s) name"),
        ("version: 1\napply_group: Bad!\nsandboxes: []\n", "apply_group: invalid apply group"),
        ("version: 1\nsandboxes: [{source_unit: x.service}]\n", "missing key name"),
        ("version: 1\nsandboxes: [{name: Bad}]\n", "sandboxes[0].name: invalid sandbox name"),
        ("version: 1\nsandboxes: [{name: a, id_base: 1073741824}]\n", "id_base is not given in an apply"),
        ("version: 1\nsandboxes: [{name: a, selinux_level: s0}]\n", "MCS pair is allocated by the tool"),
        ("version: 1\nsandboxes: [{name: a, frobnicate: 1}]\n", "unknown key 'frobnicate'"),
        ("version: 1\nsandboxes: [{name: a, apply_group: x}]\n", "apply_group is given once"),
        ("version: 1\nsandboxes: [{name: a}]\n", "missing key service"),
        (f"version: 1\nsandboxes: [{{name: a, source_unit: x.service, {SLEEP}}}]\n", "read from x.service"),
        ("version: 1\nsandboxes: [{name: a, source_unit: x.service, chroot: /srv/t}]\n", "not both"),
        (
            "version: 1\nsandboxes: [{name: a, kind: generic, source_unit: x.service}]\n",
            "make a unit sandbox",
        ),
        (
            "version: 1\nsandboxes: [{name: a, source_unit: x.service, security: {directives: []}}]\n",
            "security.directives is not given",
        ),
        (
            "version: 1\nsandboxes: [{name: a, source_unit: x.service, security: {private_ipc: false}}]\n",
            "PrivateIPC= line",
        ),
        (
            "version: 1\nsandboxes: [{name: a, source_unit: x.service, limits: {memory_max: lots}}]\n",
            "memory",
        ),
        ("version: 1\nsandboxes: [{name: a, source_unit: x.service, started: maybe}]\n", "expected true"),
        ("version: 1\nsandboxes: [{name: a, source_unit: x.service}, {name: a, source_unit: y}]\n", "twice"),
        ("version: 1\nsandboxes: [\n", "not valid YAML"),
    ],
)
def test_mistakes_are_refused_with_where_they_are(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidInput) as exc:
        document.load(path)
    assert message in exc.value.message
    assert str(path) in exc.value.message


def test_a_directory_without_documents_and_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"no \*\.yaml"):
        document.load(tmp_path)
    with pytest.raises(NotFound):
        document.load(tmp_path / "nothing.yaml")


def test_the_example_of_the_spec_file_page_loads(tmp_path: Path) -> None:
    text = sections(MAN5.read_text(), "SH")["APPLY DOCUMENTS"]
    block = text.split(".EX\n", 1)[1].split(".EE\n", 1)[0]
    docs = load_text(tmp_path, normalise(block))
    assert [e.name for e in docs.entries] == ["web", "job", "batch"]
    assert docs.groups == ("web",)
    _validate(json.loads(SHIPPED_SCHEMA.read_text()), document_data(normalise(block)))


# -- the JSON Schema ------------------------------------------------------------------------------------


def document_data(text: str) -> object:
    import yaml

    return yaml.safe_load(text)


def _validate(the_schema: object, data: object) -> None:
    jsonschema.Draft202012Validator(the_schema).validate(data)  # type: ignore[arg-type]


def test_the_shipped_schema_is_the_one_made_from_the_spec() -> None:
    assert SHIPPED_SCHEMA.read_text() == schema.text(), (
        "refresh it: python -m sandbox_service.apply.schema > schemas/sandbox-service-apply.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(schema.schema())


@pytest.mark.parametrize(
    "text",
    [
        f"version: 1\nsandboxes:\n  - name: a\n    {SLEEP}\n",
        "version: 1\napply_group: g\nsandboxes: [{name: w, source_unit: nginx.service, enabled: true}]\n",
        f"version: 1\nname: one\n{SLEEP}\nstarted: false\nsecurity: {{profile: dense}}\n",
        "version: 1\nsandboxes: [{name: w, source_unit: n.service,"
        " network: {publish: [{host_port: 80, port: 8}]}}]",
    ],
)
def test_documents_apply_reads_are_valid_in_the_schema(tmp_path: Path, text: str) -> None:
    load_text(tmp_path, text)  # apply takes it
    _validate(schema.schema(), document_data(text))


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nsandboxes: [{name: a, id_base: 1073741824}]\n",
        "version: 1\nsandboxes: [{name: a, frobnicate: 1}]\n",
        "version: 1\nsandboxes: [{name: a, security: {directives: []}}]\n",
        "sandboxes: [{name: a}]\n",
        "version: 1\nname: Bad\n",
        "version: 1\nsandboxes: [{name: a, limits: {memory: 1}}]\n",
    ],
)
def test_documents_apply_refuses_are_invalid_in_the_schema(tmp_path: Path, text: str) -> None:
    with pytest.raises(InvalidInput):
        load_text(tmp_path, text)
    with pytest.raises(jsonschema.ValidationError):
        _validate(schema.schema(), document_data(text))


# -- what the plan compares -----------------------------------------------------------------------------


def spec(**changes: object) -> SandboxSpec:
    base = SandboxSpec(
        name="a",
        kind=Kind.GENERIC,
        service=ServiceDef(exec_start=(ExecCommand("/usr/bin/sleep", ("sleep", "1")),)),
        copies=("/etc/passwd", "/etc/ssl"),
        packages=(),
        security=Security(),
        id_base=1073741824,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_copies_change_only_with_what_the_document_lists() -> None:
    existing = spec()
    fresh = spec(copies=("/etc/passwd", "/etc/ssl", "/etc/timezone", "/etc/extra"))
    req = plan.request(load_entry(copies=()))
    assert plan._copies(existing, fresh, req) == (existing.copies, (), ())  # the host changed: upgrade's
    req = plan.request(load_entry(copies=("/etc/extra",)))
    copies, _packages, added = plan._copies(existing, fresh, req)
    assert added == ("/etc/timezone", "/etc/extra") and copies == (*existing.copies, *added)
    inside = spec(copies=("/etc/passwd", "/etc/ssl", "/etc/ssl/certs/x.pem"))
    assert plan._copies(existing, inside, plan.request(load_entry(copies=("/etc/ssl/certs/x.pem",))))[2] == ()


def load_entry(**fields: object) -> document.Entry:
    from dataclasses import replace

    item = {"name": "a", "service": {"exec_start": [{"path": "/usr/bin/sleep", "argv": ["s"]}]}}
    e = document._entry(item, "t", "g")
    return replace(e, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes, entry, what",
    [
        ({"kind": Kind.CHROOT, "chroot": "/srv/t"}, {}, "kind"),
        ({}, {"selinux": SELinuxMode.ENABLED}, "selinux"),
        ({}, {"user_namespace": False}, "security.user_namespace"),
    ],
)
def test_what_cannot_change_in_place(changes: dict[str, object], entry: dict[str, object], what: str) -> None:
    with pytest.raises(InvalidInput, match=f"{what} cannot change in place"):
        plan._refuse_in_place(load_entry(**entry), spec(**changes))
    plan._refuse_in_place(load_entry(), spec())
