"""Where a system-manager unit lives in an image tree: the tree, the search path, names and drop-ins.

This module owns every file-system question the offline reader asks: :class:`_Tree` gives access below
the image root and resolves symlinks inside it (never on the host), ``unit_search_path`` builds systemd's
unit search path (with the data directory its pkg-config file names), ``_Name`` parses and checks unit
names, the path helpers mirror systemd's path_simplify()/path_compare(), and ``_Finder``/``_dropins`` find a
unit's fragment, aliases, masks and drop-ins the way systemd does. Keeping the lookup apart from parsing
lets the syntax and settings modules work on text only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_MAX_SYMLINK_HOPS = 40


# -- where units live ------------------------------------------------------------------------------------

_BEFORE_DATA_DIRS = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
)
_AFTER_DATA_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system", "/run/systemd/generator.late")
_PKGCONFIG_FILES = ("/usr/share/pkgconfig/systemd.pc", "/usr/lib/pkgconfig/systemd.pc")
_SYSTEM_CONF_DROPIN_DIRS = (
    "/etc/systemd/system.conf.d",
    "/run/systemd/system.conf.d",
    "/usr/local/lib/systemd/system.conf.d",
    "/usr/lib/systemd/system.conf.d",
    "/lib/systemd/system.conf.d",
)


class _Tree:
    """File access below an image root; absolute symlinks are resolved inside the root, never on the host."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def host(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def chase(self, path: str, *, follow_last: bool = True) -> str:
        """The path with every symlink resolved inside the root (missing components are kept as they are)."""
        todo = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join([*done, part])
            if (todo or follow_last) and self.host(candidate).is_symlink():
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:  # a loop: leave the rest unresolved (it will not be found)
                    return "/" + "/".join([*done, part, *todo])
                target = os.readlink(self.host(candidate))
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p] + todo
                continue
            done.append(part)
        return "/" + "/".join(done)

    def is_null_or_empty(self, path: str) -> bool:
        """systemd's mask test: /dev/null, or an empty regular file (symlinks followed)."""
        real = self.chase(path)
        if real == "/dev/null":
            return True
        host = self.host(real)
        return host.is_file() and host.stat().st_size == 0

    def read_text(self, path: str) -> str | None:
        real = self.chase(path)
        if real == "/dev/null":
            return ""
        try:
            return self.host(real).read_bytes().decode("utf-8", "surrogateescape")
        except OSError:
            return None

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.host(self.chase(path))))
        except OSError:
            return []


def _substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{([^}]*)\}", lambda v: variables.get(v[1], ""), value)


def _data_unit_dir(tree: _Tree) -> str:
    """The unit directory systemd was built with (its pkg-config file says), searched before /usr/lib.

    Debian 12 builds systemd with /lib/systemd/system, so its FragmentPaths start with /lib even though
    /lib is a symlink to usr/lib; other distributions use /usr/lib/systemd/system.
    """
    for pc in _PKGCONFIG_FILES:
        text = tree.read_text(pc)
        if not text:
            continue
        variables: dict[str, str] = {}
        for line in text.splitlines():
            m = re.fullmatch(r"([A-Za-z0-9_.]+)=(.*)", line.strip())
            if m:
                variables[m[1]] = _substitute(m[2], variables)
        for key in ("systemd_system_unit_dir", "systemdsystemunitdir"):
            value = variables.get(key, "")
            if value.startswith("/"):
                return _simplify(value)
    return "/usr/lib/systemd/system"


def unit_search_path(root: Path) -> tuple[str, ...]:
    """The system manager's unit search path, highest priority first, as absolute paths inside ``root``."""
    tree = _Tree(root)
    dirs = [*_BEFORE_DATA_DIRS, _data_unit_dir(tree), *_AFTER_DATA_DIRS]
    return tuple(dict.fromkeys(dirs))


# -- unit names ------------------------------------------------------------------------------------------

_NAME_CHARS = re.compile(r"[A-Za-z0-9:_.\\-]+")
_INSTANCE_CHARS = re.compile(r"[A-Za-z0-9:_.\\@-]+")
_UNIT_TYPES = (
    "service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope",
)  # fmt: skip


@dataclass(frozen=True)
class _Name:
    """A parsed unit name: prefix@instance.type (instance None: plain, "" : template)."""

    prefix: str
    instance: str | None
    type: str

    @classmethod
    def parse(cls, name: str) -> _Name | None:
        stem, dot, utype = name.rpartition(".")
        if not dot or utype not in _UNIT_TYPES or len(name) >= 256:
            return None
        prefix, at, instance = stem.partition("@")
        if not prefix or not _NAME_CHARS.fullmatch(prefix):
            return None
        if at and instance and not _INSTANCE_CHARS.fullmatch(instance):
            return None
        return cls(prefix, instance if at else None, utype)

    @property
    def template(self) -> str:
        return f"{self.prefix}@.{self.type}"

    def with_instance(self, instance: str) -> str:
        return f"{self.prefix}@{instance}.{self.type}"


def _unescape_name(text: str) -> str:
    """unit-name unescaping: "-" is "/", "\\xNN" is that byte."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "-":
            out += b"/"
            i += 1
        elif text[i] == "\\" and re.fullmatch(r"x[0-9a-fA-F]{2}", text[i + 1 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out += text[i].encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _unescape_name_path(text: str) -> str | None:
    if text == "-":
        return "/"
    inner = _unescape_name(text)
    if not inner or inner.startswith("/") or inner.endswith("/") or not _is_normalized("/" + inner):
        return None
    return "/" + inner


# -- paths -----------------------------------------------------------------------------------------------


def _simplify(path: str) -> str:
    """systemd's path_simplify(): drop duplicate slashes, "." components and trailing slashes; keep ".."."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    joined = "/".join(parts)
    if path.startswith("/"):
        return "/" + joined
    return joined or "."


def _is_normalized(path: str) -> bool:
    return bool(path) and ".." not in path.split("/")


def _path_key(path: str) -> list[str]:
    """Sort key of systemd's path_compare(): component by component, parents first."""
    return [p for p in path.split("/") if p]


# -- finding the unit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """What one name maps to on the search path: a fragment path, a mask, or another name (an alias)."""

    path: str = ""
    masked: bool = False
    alias: str = ""


class _Finder:
    def __init__(self, tree: _Tree, search: tuple[str, ...]) -> None:
        self.tree = tree
        self.search = search
        self._resolved: dict[str, _Entry | None] = {}

    def entry(self, name: str) -> _Entry | None:
        """The first usable entry for ``name`` on the search path (before following aliases)."""
        for directory in self.search:
            path = f"{directory}/{name}"
            host = self.tree.host(self.tree.chase(directory) + "/" + name)
            if not host.is_symlink():
                if host.exists() and not host.is_dir():
                    return _Entry(path=path)
                continue
            target = os.readlink(host)
            if not target.startswith("/"):
                target = f"{directory}/{target}"
            simplified = self.tree.chase(target, follow_last=False)
            if self.tree.is_null_or_empty(simplified):
                return _Entry(masked=True)
            inside = [d for d in self.search if simplified.startswith(self.tree.chase(d) + "/")]
            if not inside:
                return _Entry(path=path)  # a linked unit file: systemd reports the link, not its target
            target_name = simplified.rpartition("/")[2]
            if target_name == name or not _valid_alias(name, target_name):
                continue  # a self-alias has no effect; a bad alias is ignored
            return _Entry(alias=target_name)
        return None

    def resolve(self, name: str) -> _Entry | None:
        """Follow aliases to a fragment path or a mask."""
        if name not in self._resolved:
            current, result = name, None
            for _ in range(_MAX_SYMLINK_HOPS):
                result = self.entry(current)
                if result is None or not result.alias:
                    break
                current = result.alias
            else:
                result = None
            self._resolved[name] = result
        return self._resolved[name]

    def names_of(self, fragment: str) -> set[str]:
        """Every name on the search path that resolves to ``fragment``'s basename (its aliases)."""
        basename = fragment.rpartition("/")[2]
        suffix = "." + basename.rpartition(".")[2]
        found = {basename}
        for directory in self.search:
            real = self.tree.chase(directory)
            for entry in self.tree.listdir(real):
                # only symlinks name something else (a name that is a file here may be a link higher up,
                # and is then found when that directory is listed)
                if not entry.endswith(suffix) or not self.tree.host(f"{real}/{entry}").is_symlink():
                    continue
                if _Name.parse(entry) is not None:
                    r = self.resolve(entry)
                    if r is not None and r.path and r.path.rpartition("/")[2] == basename:
                        found.add(entry)
        return found


def _valid_alias(alias: str, target: str) -> bool:
    a, t = _Name.parse(alias), _Name.parse(target)
    if a is None or t is None or a.type != t.type:
        return False
    if a.instance == "" or t.instance == "":  # templates alias only templates (or an instance's own)
        return t.instance == "" and a.instance is not None
    return (a.instance is None) == (t.instance is None) and (a.instance is None or a.instance == t.instance)


def _conf_files(tree: _Tree, dirs: Iterable[str]) -> list[str]:
    """*.conf in dirs (highest priority first): a name in an earlier dir masks it in later ones; by name."""
    chosen: dict[str, str] = {}
    for directory in dirs:
        real = tree.chase(directory)
        for entry in tree.listdir(real):
            wanted = entry.endswith(".conf") and not entry.startswith(".") and entry not in chosen
            if wanted and not tree.host(f"{real}/{entry}").is_dir():
                chosen[entry] = f"{real}/{entry}"
    return [chosen[k] for k in sorted(chosen)]


def _dropin_dirs(directory: str, name: str) -> list[str]:
    """Drop-in directories for one name in one search directory: the name, its template, its prefixes."""
    parsed = _Name.parse(name)
    assert parsed is not None
    out = [f"{directory}/{name}.d"]
    if parsed.instance:
        out.append(f"{directory}/{parsed.template}.d")
    prefix = parsed.prefix
    for i in range(len(prefix) - 2, -1, -1):  # "a-b-c" gives "a-b-" then "a-"
        if prefix[i] == "-":
            out.append(f"{directory}/{prefix[: i + 1]}.{parsed.type}.d")
    return out


def _dropins(tree: _Tree, search: tuple[str, ...], unit_id: str, aliases: list[str]) -> list[str]:
    """The id's directories on every search path first, then each alias's, then the unit type's own."""
    dirs = [d for name in (unit_id, *aliases) for s in search for d in _dropin_dirs(s, name)]
    dirs += [f"{s}/service.d" for s in search]
    return _conf_files(tree, dict.fromkeys(dirs))
