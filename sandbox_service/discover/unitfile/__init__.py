"""Read a service unit from an image tree's own unit files, the way systemd's system manager would.

Offline mode (no running systemd, or ``--root DIR``) cannot ask PID 1 over D-Bus what it parsed, so this
package does the parsing itself and returns the same :class:`~sandbox_service.systemd.UnitSettings` that
``Systemd.unit_settings()`` returns for the same unit:

- the fragment found on systemd's search path, with aliases, masks, linked unit files and templates;
- the drop-ins, in systemd's order and precedence;
- unit-file syntax: sections, comments, continuation lines, quoting, C escapes, ";" between commands,
  specifiers;
- the settings the tool uses, with systemd's defaults, what it derives (the Type= default, the user of
  DynamicUser=yes, the capabilities PrivateDevices= and the Protect*= switches take away) and the checks
  that make it refuse a unit (reported as NotFound, as the D-Bus path does for a unit that did not load).

Every path is looked up under ``root`` and symlinks are resolved inside it, never on the host. Behaviour
follows systemd 252 as observed through D-Bus (tests/test_unitfile_box.py compares the two).

What cannot be known without the running system (the hostname, the boot ID, the kernel release, ...) is
refused with InvalidInput rather than guessed. ``warnings``, when given, collects what systemd would log
while loading (assignments it ignores).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ...errors import InvalidInput, NotFound
from ...systemd import UnitSettings
from .lookup import _dropins, _Finder, _Name, _Tree, unit_search_path
from .settings import _apply, _Ctx, _Fatal, _finish, _manager_defaults, _Service, _settings
from .specifiers import _Specifiers
from .syntax import Assignment as Assignment
from .syntax import split_assignments
from .values import USEC_INFINITY as USEC_INFINITY
from .values import _parse_bool, parse_timespan

__all__ = [
    "load_unit_settings", "parse_timespan", "permissions_start_only", "split_assignments", "unit_search_path"
]  # fmt: skip


def permissions_start_only(files: tuple[str, ...]) -> bool:
    """PermissionsStartOnly= as the unit's files (fragment, then drop-ins) leave it: systemd reports it
    over no D-Bus property, yet it runs the unit's other commands without its sandboxing."""
    value = False
    for path in files:
        try:
            text = Path(path).read_text(errors="replace")
            assignments = split_assignments(text, path)
        except (OSError, InvalidInput):
            continue
        for a in assignments:
            if a.section == "Service" and a.key == "PermissionsStartOnly":
                with contextlib.suppress(ValueError):  # systemd ignores an invalid value
                    value = _parse_bool(a.value.strip())
    return value


def load_unit_settings(root: Path, name: str, warnings: list[str] | None = None) -> UnitSettings:
    """What systemd would report over D-Bus for service ``name``, read from the unit files under ``root``.

    Raises InvalidInput for a name that is not a service instance or plain service unit, or for a
    specifier only the running system can resolve; NotFound for a missing or masked unit, or one systemd
    would refuse to load (bad setting).
    """
    warns = [] if warnings is None else warnings
    parsed = _Name.parse(name)
    if parsed is None or parsed.type != "service":
        raise InvalidInput(
            f"{name!r} is not a valid service unit name", "name a unit ending in .service, e.g. nginx.service"
        )
    if parsed.instance == "":
        raise InvalidInput(
            f"{name} is a template", "name an instance instead, for example " + name.replace("@.", "@main.")
        )
    tree = _Tree(root)
    search = unit_search_path(root)
    finder = _Finder(tree, search)
    entry = finder.resolve(name)
    template_fallback = entry is None and parsed.instance is not None
    if template_fallback:
        entry = finder.resolve(parsed.template)
    if entry is None:
        raise NotFound(
            f"unit {name} not found in the unit files under {root}",
            f"check the name with: systemctl --root={root} list-unit-files '*.service'",
        )
    if entry.masked:
        raise NotFound(
            f"unit {name} is masked under {root}", f"unmask it with: systemctl --root={root} unmask {name}"
        )
    fragment = entry.path
    text = tree.read_text(fragment)
    if text is None:
        raise NotFound(f"unit {name}: cannot read its unit file {fragment} under {root}")
    if tree.is_null_or_empty(fragment):
        raise NotFound(f"unit {name} is masked under {root} (its unit file is empty)")

    basename = fragment.rpartition("/")[2]
    base_name = _Name.parse(basename)
    if base_name is None:
        raise NotFound(f"unit {name}: {fragment} is not a valid unit file name")
    unit_id = base_name.with_instance(parsed.instance or "") if base_name.instance == "" else basename
    names = {name, unit_id}
    for alias in finder.names_of(fragment):
        alias_name = _Name.parse(alias)
        if parsed.instance is None or alias_name is None:
            names.add(alias)
        elif alias_name.instance == "":
            instance = alias_name.with_instance(parsed.instance)
            own = finder.resolve(instance)
            if own is None or own.path == fragment:
                names.add(instance)
    aliases = sorted(names - {unit_id})

    dropins = _dropins(tree, search, unit_id, aliases)
    ctx = _Ctx(_Specifiers(tree, unit_id, fragment, unit_id), warns)
    svc = _Service(defaults=_manager_defaults(tree))
    try:
        _apply(svc, fragment, text, ctx)
        for path in dropins:
            _apply(svc, path, tree.read_text(path) or "", ctx)
        _finish(svc, unit_id)
    except _Fatal as exc:
        raise NotFound(
            f"unit {name} is not available (load state: bad-setting): {exc}",
            "systemd refuses to load this unit; fix the setting with a drop-in",
        ) from None
    return _settings(svc, unit_id, (unit_id, *aliases), fragment, dropins)
