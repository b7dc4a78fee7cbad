"""The spec file on disk (sandbox.yaml): a faithful, versioned round trip of SandboxSpec.

Conversion is driven by the dataclass field types, so a new field in spec.py needs no code here.
Unknown keys and wrong types are refused with the key's path, never ignored.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from .atomic import write_atomic
from .errors import InvalidInput, NotFound, SandboxError
from .spec import SandboxSpec

FORMAT_VERSION = 1
# libyaml's C parser and emitter where PyYAML was built with them (Debian's and the wheels are): ten
# times faster than the pure-Python ones, which `list` and `apply` of thousands of sandboxes feel.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@functools.cache
def _shape(tp: type) -> tuple[dict[str, Any], frozenset[str], frozenset[str]]:
    """(type hints, field names, required field names) of a spec dataclass, worked out once."""
    fields = dataclasses.fields(tp)
    required = frozenset(
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    return typing.get_type_hints(tp), frozenset(f.name for f in fields), required


def to_data(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [to_data(v) for v in value]
    return value


def from_data(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return from_data(inner, data, where)
    if origin is tuple:
        if not isinstance(data, list):
            raise InvalidInput(f"{where}: expected a list, got {type(data).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_data(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        if len(args) != len(data):
            raise InvalidInput(f"{where}: expected {len(args)} items")
        return tuple(
            from_data(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True))
        )
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in tp)
            raise InvalidInput(f"{where}: {data!r} is not one of {allowed}") from None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, dict):
            raise InvalidInput(f"{where}: expected a mapping")
        hints, known, required = _shape(tp)
        unknown = set(data) - known
        if unknown:
            raise InvalidInput(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        missing = required - set(data)
        if missing:
            raise InvalidInput(f"{where}: missing key(s) {', '.join(sorted(missing))}")
        kwargs = {k: from_data(hints[k], v, f"{where}.{k}") for k, v in data.items()}
        return tp(**kwargs)
    if tp is bool:
        if not isinstance(data, bool):
            raise InvalidInput(f"{where}: expected true or false")
        return data
    if tp is int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise InvalidInput(f"{where}: expected an integer")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise InvalidInput(f"{where}: expected a string")
        return data
    raise TypeError(f"{where}: unsupported type {tp!r}")


def dumps(spec: SandboxSpec) -> str:
    data = {"version": FORMAT_VERSION, **to_data(spec)}
    header = (
        "# sandbox-service spec: the single source of truth for this sandbox.\n"
        "# Its units are rendered from this file; see sandbox-service.yaml(5).\n"
    )
    return header + yaml.dump(
        data, Dumper=_DUMPER, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def loads(text: str, where: str = "spec") -> SandboxSpec:
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{where}: expected a mapping at the top level")
    version = data.pop("version", None)
    if version != FORMAT_VERSION:
        raise InvalidInput(
            f"{where}: unsupported spec format version {version!r} (this tool reads {FORMAT_VERSION})"
        )
    spec: SandboxSpec = from_data(SandboxSpec, data, where)
    return spec


def load(path: Path) -> SandboxSpec:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NotFound(f"no spec file at {path}") from None
    except OSError as exc:
        raise SandboxError(f"cannot read {path}: {exc.strerror}") from exc
    return loads(text, str(path))


def save(path: Path, spec: SandboxSpec) -> None:
    write_atomic(path, dumps(spec), mode=0o644)
