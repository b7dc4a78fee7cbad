"""Apply documents: YAML files that list sandboxes in the schema of sandbox.yaml.

A document is either a list of sandboxes::

    version: 1
    apply_group: web      # optional (default "default"): what `apply --prune` prunes within
    sandboxes:
      - name: web
        source_unit: nginx.service
        limits: {memory_max: 256M}
      - name: job
        service:
          exec_start: [{path: /usr/bin/sleep, argv: [sleep, infinity]}]

or one sandbox (a mapping with ``version``, ``name`` and optionally ``apply_group``).  A file may hold
several documents (``---``), a directory several files (``*.yaml`` and ``*.yml``, in name order).
Each sandbox takes the keys of sandbox.yaml that say what the sandbox should be; those the tool works
out (its ID range, MCS level, resolved directives, the wrapped unit's service) are refused, as is any
unknown key, with where it is.  One key is apply's own: ``started`` (default true), whether the
sandbox should run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, NotFound
from ..spec import Kind, Limits, SELinuxMode, ServiceDef, check_group, check_name

FORMAT_VERSION = 1
DEFAULT_GROUP = "default"
SUFFIXES = (".yaml", ".yml")

# sandbox.yaml keys an apply document gives, and those it must leave to the tool (and why)
KEYS = frozenset(
    {
        "name", "kind", "description", "source_unit", "service", "packages", "copies", "limits",
        "selinux", "chroot", "enabled", "network", "security", "user", "group", "started",
    }
)  # fmt: skip
DERIVED = {
    "source_package": "the package that owns the wrapped unit is found by the tool",
    "readonly_binds": "what is shared with the host follows from the kind of sandbox",
    "selinux_level": "each sandbox's MCS pair is allocated by the tool",
    "id_base": "each sandbox's ID range is allocated by the tool",
}
SECURITY_KEYS = frozenset({"profile", "memory_deny_write_execute", "private_users", "user_namespace"})
SECURITY_DERIVED = {
    "directives": "the profile's directives are resolved for the service by the tool",
    "private_ipc": "it follows from the profile (its PrivateIPC= line)",
}


@dataclass(frozen=True)
class Entry:
    """One sandbox as a document wants it."""

    where: str  # FILE: sandboxes[N], for messages
    name: str
    group: str
    started: bool
    kind: Kind
    description: str
    source_unit: str | None
    service: ServiceDef | None  # generic and chroot sandboxes
    packages: tuple[str, ...]
    copies: tuple[str, ...]
    limits: Limits
    selinux: SELinuxMode
    chroot: str | None
    enabled: bool
    network: Any  # NetworkSpec
    profile: str
    memory_deny_write_execute: bool | None
    private_users: bool | None
    user_namespace: bool
    user: str | None
    group_name: str | None  # the `group` key of sandbox.yaml: the service's group


def files_of(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and not p.name.startswith("."))
        if not found:
            raise NotFound(f"{path} holds no *.yaml or *.yml file", "put the apply documents there")
        return found
    if not path.exists():
        raise NotFound(f"no such file or directory: {path}")
    return [path]


@dataclass(frozen=True)
class Documents:
    entries: tuple[Entry, ...]
    groups: tuple[str, ...]  # the apply groups of the documents (also those that list no sandbox)


def load(path: Path) -> Documents:
    """Every sandbox the documents at `path` list; InvalidInput names the file and key of any mistake,
    and a name listed twice."""
    import yaml

    from ..specfile import _LOADER

    entries: list[Entry] = []
    groups: list[str] = []
    seen: dict[str, str] = {}
    for file in files_of(path):
        try:
            docs = list(yaml.load_all(file.read_text(encoding="utf-8"), Loader=_LOADER))
        except yaml.YAMLError as exc:
            raise InvalidInput(f"{file}: not valid YAML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{file}: cannot be read: {exc}") from exc
        for i, doc in enumerate(docs):
            where = f"{file}" + (f" (document {i + 1})" if len(docs) > 1 else "")
            group, listed = _document(doc, where)
            if group is not None and group not in groups:
                groups.append(group)
            for entry in listed:
                if entry.name in seen:
                    raise InvalidInput(
                        f"{entry.where}: sandbox {entry.name!r} is listed twice (also {seen[entry.name]})",
                        "list each sandbox once",
                    )
                seen[entry.name] = entry.where
                entries.append(entry)
    return Documents(tuple(entries), tuple(groups))


def _document(doc: Any, where: str) -> tuple[str | None, list[Entry]]:
    if doc is None:
        return None, []
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where}: expected a mapping at the top level")
    version = doc.get("version")
    if version != FORMAT_VERSION:
        raise InvalidInput(
            f"{where}: unsupported or missing version {version!r}",
            f"begin each document with: version: {FORMAT_VERSION}",
        )
    group = doc.get("apply_group", DEFAULT_GROUP)
    if not isinstance(group, str):
        raise InvalidInput(f"{where}: apply_group: expected a string")
    try:
        check_group(group)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: apply_group: {exc.message}", exc.hint) from None
    if "sandboxes" in doc:
        unknown = set(doc) - {"version", "apply_group", "sandboxes"}
        if unknown:
            raise InvalidInput(
                f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                "a document lists sandboxes (sandboxes:) or is one sandbox (name:), not both",
            )
        items = doc["sandboxes"]
        if not isinstance(items, list):
            raise InvalidInput(f"{where}: sandboxes: expected a list")
        return group, [_entry(item, f"{where}: sandboxes[{n}]", group) for n, item in enumerate(items)]
    one = {k: v for k, v in doc.items() if k not in ("version", "apply_group")}
    return group, [_entry(one, where, group)]


def _typed(tp: Any, data: Any, where: str) -> Any:
    """`data` as a value of `tp`; an error says where it is (the checks of the spec's dataclasses do
    not know)."""
    from ..specfile import from_data

    try:
        return from_data(tp, data, where)
    except InvalidInput as exc:
        if exc.message.startswith(where):
            raise
        raise InvalidInput(f"{where}: {exc.message}", exc.hint) from None


def _entry(item: Any, where: str, group: str) -> Entry:
    from ..network.model import NetworkSpec
    from ..spec import Security

    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: expected a mapping (one sandbox)")
    for key in item:
        if key == "apply_group":
            raise InvalidInput(f"{where}: apply_group is given once, at the top of the document")
        if key in DERIVED:
            raise InvalidInput(f"{where}: {key} is not given in an apply document: {DERIVED[key]}")
        if key not in KEYS:
            raise InvalidInput(
                f"{where}: unknown key {key!r}", "the keys are those of sandbox.yaml(5), and started"
            )
    if "name" not in item:
        raise InvalidInput(f"{where}: missing key name")
    name = _typed(str, item["name"], f"{where}.name")
    try:
        check_name(name)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}.name: {exc.message}", exc.hint) from None
    where = f"{where} ({name})"
    source_unit = _typed(str | None, item.get("source_unit"), f"{where}.source_unit")
    chroot = _typed(str | None, item.get("chroot"), f"{where}.chroot")
    if source_unit and chroot:
        raise InvalidInput(
            f"{where}: a sandbox wraps a host unit (source_unit) or runs in a chroot, not both"
        )
    kind = Kind.UNIT if source_unit else Kind.CHROOT if chroot else Kind.GENERIC
    if "kind" in item and _typed(Kind, item["kind"], f"{where}.kind") is not kind:
        raise InvalidInput(
            f"{where}.kind: {item['kind']!r} does not fit the other keys, which make a {kind.value} sandbox",
            "source_unit makes a unit sandbox, chroot a chroot one, service alone a generic one",
        )
    service = None
    if "service" in item:
        if kind is Kind.UNIT:
            raise InvalidInput(
                f"{where}.service: a unit sandbox's service is read from {source_unit}",
                "leave service out (user and group override its User= and Group=)",
            )
        service = _typed(ServiceDef, item["service"], f"{where}.service")
    elif kind is not Kind.UNIT:
        raise InvalidInput(
            f"{where}: missing key service (what a {kind.value} sandbox runs)",
            "e.g. service: {exec_start: [{path: /usr/bin/sleep, argv: [sleep, infinity]}]}",
        )
    security = item.get("security", {})
    if not isinstance(security, dict):
        raise InvalidInput(f"{where}.security: expected a mapping")
    for key in security:
        if key in SECURITY_DERIVED:
            raise InvalidInput(
                f"{where}.security.{key} is not given in an apply document: {SECURITY_DERIVED[key]}"
            )
        if key not in SECURITY_KEYS:
            raise InvalidInput(f"{where}.security: unknown key {key!r}")
    chosen: Security = _typed(Security, security, f"{where}.security")
    return Entry(
        where=where,
        name=name,
        group=group,
        started=_typed(bool, item.get("started", True), f"{where}.started"),
        kind=kind,
        description=_typed(str, item.get("description", ""), f"{where}.description"),
        source_unit=source_unit,
        service=service,
        packages=_typed(tuple[str, ...], item.get("packages", []), f"{where}.packages"),
        copies=_typed(tuple[str, ...], item.get("copies", []), f"{where}.copies"),
        limits=_typed(Limits, item.get("limits", {}), f"{where}.limits"),
        selinux=_typed(SELinuxMode, item.get("selinux", SELinuxMode.AUTO.value), f"{where}.selinux"),
        chroot=chroot,
        enabled=_typed(bool, item.get("enabled", False), f"{where}.enabled"),
        network=_typed(NetworkSpec, item.get("network", {}), f"{where}.network"),
        profile=chosen.profile,
        memory_deny_write_execute=chosen.memory_deny_write_execute,
        private_users=chosen.private_users,
        user_namespace=chosen.user_namespace,
        user=_typed(str | None, item.get("user"), f"{where}.user"),
        group_name=_typed(str | None, item.get("group"), f"{where}.group"),
    )
