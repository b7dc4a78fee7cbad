"""Planning an apply: for every sandbox the documents list, whether it is made, changed or left as it
is; which sandboxes of the documents' groups are pruned; which start, stop or restart.  Reads only
(what `apply --dry-run` shows).

A listed sandbox is planned as `create` would plan it now (create.plan: the wrapped unit read from
systemd, the profile resolved, the networks checked against every other sandbox, those listed before it
included).  For one that exists, what it would be now is compared with its spec: equal means left
alone; different means updated the way `upgrade` brings a sandbox up to date (upgrade.plan_change), with
the new settings.  What cannot change in place (its kind, chroot, SELinux mode, user namespace) is an
error for that sandbox.  A sandbox that cannot be planned is an error for it alone.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

from .. import control, create, index
from ..discover import host as host_discovery
from ..errors import InvalidInput, SandboxError
from ..network.checks import Neighbour
from ..paths import Layout, service_unit
from ..spec import ID_BASE_FIRST, Kind, SandboxSpec
from ..systemd import Systemd
from ..upgrade.command import Planned, plan_change
from .document import Documents, Entry

# Spec fields whose change is only written down: no unit changes, nothing restarts.
BOOKKEEPING = frozenset({"enabled", "apply_group"})


class Verb(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    KEEP = "unchanged"
    DELETE = "delete"


@dataclass(frozen=True)
class Action:
    name: str
    verb: Verb
    where: str  # the document's place for it, or why it is pruned
    changes: tuple[str, ...] = ()  # spec fields that change (update)
    start: bool = False  # started once systemd has its units
    stop: bool = False  # stopped before anything of it changes
    restart: bool = False  # runs, and its settings change
    enable: bool | None = None  # enabled (True) or disabled (False); None: left as it is
    created: create.Plan | None = None  # CREATE
    spec: SandboxSpec | None = None  # UPDATE, DELETE: as it is on disk
    new_spec: SandboxSpec | None = None  # UPDATE: as it will be
    change: Planned | None = None  # UPDATE with settings that reach its units or files
    added_copies: tuple[str, ...] = ()  # UPDATE: host paths newly listed, copied in
    error: SandboxError | None = None  # planning failed: nothing is done to it


@dataclass(frozen=True)
class ApplyPlan:
    actions: tuple[Action, ...]
    groups: tuple[str, ...]
    online: bool
    host: host_discovery.HostInfo

    def count(self, verb: Verb) -> int:
        return sum(1 for a in self.actions if a.verb is verb and a.error is None)


def request(e: Entry) -> create.CreateRequest:
    """The create request that makes the sandbox an entry describes."""
    return create.CreateRequest(
        name=e.name,
        unit=e.source_unit,
        user=e.user,
        group=e.group_name,
        packages=e.packages,
        copies=e.copies,
        limits=e.limits,
        chroot=e.chroot,
        selinux=e.selinux,
        description=e.description,
        network=e.network,
        profile=e.profile,
        memory_deny_write_execute=e.memory_deny_write_execute,
        private_users=e.private_users,
        user_namespace=e.user_namespace,
        enable=e.enabled,
        service=e.service,
        apply_group=e.group,
    )


def plan_apply(layout: Layout, docs: Documents, sd: Systemd | None, *, prune: bool) -> ApplyPlan:
    host = host_discovery.probe(layout.root)  # once for every sandbox
    listed = {e.name for e in docs.entries}
    summaries = {s.name: s for s in index.summaries(layout)}
    # each listed sandbox is checked against the others as they will be: those not listed as they are,
    # those listed before it as planned (a sandbox that fails to plan stays as it is)
    others: dict[str, Neighbour] = {n: s for n, s in summaries.items() if n not in listed}
    running: set[str] = set()
    if sd is not None:
        units = sd.list_units(["sandbox-*.service"])
        running = {u.name for u in units if u.active_state in control.RUNNING_STATES}
    actions: list[Action] = []
    for e in docs.entries:
        is_running = service_unit(e.name) in running
        try:
            if e.name in summaries:
                action = _plan_update(layout, e, sd, host, list(others.values()), is_running)
            else:
                action = _plan_create(layout, e, sd, host, list(others.values()))
        except SandboxError as exc:
            verb = Verb.UPDATE if e.name in summaries else Verb.CREATE
            action = Action(e.name, verb, e.where, error=exc)
            if e.name in summaries:
                others[e.name] = summaries[e.name]
        else:
            planned = action.created.spec if action.created else action.new_spec or action.spec
            if planned is not None:
                others[e.name] = planned
        actions.append(action)
    if prune:
        for name, s in summaries.items():
            if name in listed or s.apply_group not in docs.groups:
                continue
            why = f"not listed in the documents of apply group {s.apply_group!r}"
            try:
                spec = control.load_spec(layout, name)
            except SandboxError as exc:
                actions.append(Action(name, Verb.DELETE, why, error=exc))
                continue
            actions.append(Action(name, Verb.DELETE, why, stop=service_unit(name) in running, spec=spec))
    return ApplyPlan(tuple(actions), docs.groups, sd is not None, host)


def _plan_create(
    layout: Layout,
    e: Entry,
    sd: Systemd | None,
    host: host_discovery.HostInfo,
    others: Sequence[Neighbour],
) -> Action:
    p = create.plan(request(e), layout, sd, others=others, id_base_hint=ID_BASE_FIRST, host=host)
    return Action(
        e.name,
        Verb.CREATE,
        e.where,
        start=e.started and sd is not None,
        enable=True if e.enabled else None,
        created=p,
    )


def _plan_update(
    layout: Layout,
    e: Entry,
    sd: Systemd | None,
    host: host_discovery.HostInfo,
    others: Sequence[Neighbour],
    running: bool,
) -> Action:
    existing = control.load_spec(layout, e.name)
    _refuse_in_place(e, existing)
    req = request(e)
    fresh = create.plan(
        req,
        layout,
        sd,
        allow_existing=True,
        others=others,
        id_base_hint=existing.id_base or ID_BASE_FIRST,
        host=host,
    ).spec
    copies, packages, added = _copies(existing, fresh, req)
    wanted = replace(
        fresh,
        selinux_level=existing.selinux_level,
        id_base=existing.id_base,
        copies=copies,
        packages=packages,
    )
    changes = tuple(
        f.name for f in fields(SandboxSpec) if getattr(existing, f.name) != getattr(wanted, f.name)
    )
    online = sd is not None
    start, stop = online and e.started and not running, online and not e.started and running
    enable = e.enabled if e.enabled != existing.enabled else None
    if not changes:
        return Action(e.name, Verb.KEEP, e.where, start=start, stop=stop, enable=enable, spec=existing)
    reaching = set(changes) - BOOKKEEPING
    change = plan_change(layout, existing, wanted, sd, []) if reaching else None
    return Action(
        e.name,
        Verb.UPDATE,
        e.where,
        changes=changes,
        start=start,
        stop=stop,
        restart=bool(reaching) and running and e.started,
        enable=enable,
        spec=existing,
        new_spec=wanted,
        change=change,
        added_copies=added,
    )


def _refuse_in_place(e: Entry, existing: SandboxSpec) -> None:
    """What only a new sandbox can change: its tree is built for it (owners, labels, layout)."""
    userns = e.user_namespace and e.kind is not Kind.CHROOT
    for what, old, new in (
        ("kind", existing.kind.value, e.kind.value),
        ("chroot", existing.chroot, e.chroot),
        ("selinux", existing.selinux.value, e.selinux.value),
        ("security.user_namespace", existing.security.user_namespace, userns),
    ):
        if old != new:
            raise InvalidInput(
                f"{e.where}: {what} cannot change in place ({old!r} now, {new!r} listed)",
                f"its tree is built for it: delete the sandbox (sandbox-service delete {e.name}, which "
                "removes its data) and apply again, or list it as it is",
            )


def _copies(
    existing: SandboxSpec, fresh: SandboxSpec, req: create.CreateRequest
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The copies and packages of the updated spec, and the host paths to copy in now.  What the host's
    packages bring changes only with upgrade; what the document newly lists (copies, packages) is copied
    in; what it no longer lists stays in the tree (it is the sandbox's data now)."""
    new_copies = [c for c in req.copies if c not in existing.copies]
    new_packages = [p for p in req.packages if p not in existing.packages]
    if not new_copies and not new_packages:
        return existing.copies, existing.packages, ()
    added = tuple(
        p
        for p in fresh.copies
        if p not in existing.copies and not any(p.startswith(o.rstrip("/") + "/") for o in existing.copies)
    )
    return existing.copies + added, existing.packages + tuple(new_packages), added
