"""The JSON Schema of apply documents, for editors (schemas/sandbox-service-apply.schema.json).

It is made from the spec's dataclasses and the keys document.py accepts, so it cannot drift from what
apply reads (tests/test_apply.py compares the shipped file with this); to refresh the file::

    python -m sandbox_service.apply.schema > schemas/sandbox-service-apply.schema.json
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any, Union

from ..spec import SandboxSpec, Security
from .document import DERIVED, FORMAT_VERSION, KEYS, SECURITY_DERIVED, SECURITY_KEYS

SCHEMA_ID = "https://sandbox-service.invalid/schemas/sandbox-service-apply.schema.json"
NAME_PATTERN = "^[a-z0-9][a-z0-9_-]*$"


def _type(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        (one,) = inner
        return {"anyOf": [_type(one, defs), {"type": "null"}]}
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _type(args[0], defs)}
        return {"type": "array", "prefixItems": [_type(a, defs) for a in args], "items": False}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # a placeholder while its fields are worked out
            defs[name] = _object(tp, defs, {f.name for f in dataclasses.fields(tp)})
        return {"$ref": f"#/$defs/{name}"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is str:
        return {"type": "string"}
    raise TypeError(f"no JSON Schema for {tp!r}")


def _object(tp: type, defs: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    hints = typing.get_type_hints(tp)
    fields = [f for f in dataclasses.fields(tp) if f.name in keys]
    out: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: _type(hints[f.name], defs) for f in fields},
        "additionalProperties": False,
    }
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if required:
        out["required"] = required
    if tp.__doc__:
        out["description"] = " ".join(tp.__doc__.split())
    return out


def schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    hints = typing.get_type_hints(SandboxSpec)
    spec_keys = {f.name for f in dataclasses.fields(SandboxSpec)} & KEYS
    sandbox: dict[str, Any] = {
        "type": "object",
        "description": "One sandbox: the keys of sandbox.yaml that say what it should be.",
        "properties": {k: _type(hints[k], defs) for k in sorted(spec_keys - {"security"})},
        "required": ["name"],
    }
    sandbox["properties"]["name"] = {"type": "string", "pattern": NAME_PATTERN, "maxLength": 40}
    sandbox["properties"]["security"] = _object(Security, defs, set(SECURITY_KEYS))
    sandbox["properties"]["started"] = {
        "type": "boolean",
        "description": "Whether the sandbox should run (default true).",
    }
    for key in (*DERIVED, "apply_group"):
        sandbox["properties"].pop(key, None)
    for key in SECURITY_DERIVED:
        sandbox["properties"]["security"]["properties"].pop(key, None)
    defs["Sandbox"] = sandbox
    group = {"type": "string", "pattern": NAME_PATTERN, "maxLength": 40}
    version = {"const": FORMAT_VERSION}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "sandbox-service apply document",
        "description": (
            "Sandboxes for `sandbox-service apply`: a list (sandboxes:) or one sandbox; "
            "see sandbox-service.yaml(5)."
        ),
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "version": version,
                    "apply_group": group,
                    "sandboxes": {
                        "type": "array",
                        "items": {"$ref": "#/$defs/Sandbox", "unevaluatedProperties": False},
                    },
                },
                "required": ["version", "sandboxes"],
                "additionalProperties": False,
            },
            {
                "allOf": [{"$ref": "#/$defs/Sandbox"}],
                "type": "object",
                "properties": {"version": version, "apply_group": group},
                "required": ["version", "name"],
                "unevaluatedProperties": False,
            },
        ],
        "$defs": dict(sorted(defs.items())),
    }


def text() -> str:
    return json.dumps(schema(), indent=2) + "\n"


if __name__ == "__main__":
    print(text(), end="")
