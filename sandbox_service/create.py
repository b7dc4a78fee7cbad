"""`create`: discover what the service needs, build the private root, write the units, register them.

Discovery only reads (the host or the --root image); everything is built in a staging directory and
published by rename, and every step registers its undo with a Transaction, so a failure at any point
leaves no half sandbox behind.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from . import fswalk, identity, index, isolation, locks, recovery, render, security, selinux, specfile, tree
from .control import check_room, load_spec, run_job, units_to_wait_for
from .discover import host as host_discovery
from .discover import packages, related, unitnames
from .discover.unit import Translated, translate, unit_name_for, with_overrides
from .discover.unitfile import load_unit_settings, permissions_start_only
from .errors import (
    AlreadyExists,
    DiscoveryFailed,
    InvalidInput,
    NotFound,
    SystemdUnavailable,
    TooExposed,
)
from .exposure import exposure
from .identity import IdMap
from .install import (
    Transaction,
    enable_offline,
    explaining_full_disk,
    publish_dir,
    refuse_existing,
    stage_dir,
    write_units,
)
from .locks import LockPolicy
from .network import checks as network_checks
from .network.model import NetworkSpec
from .paths import BASE_DIR_NAME, Layout, service_unit
from .spec import (
    ExecCommand,
    Kind,
    Limits,
    SandboxSpec,
    Security,
    SELinuxMode,
    ServiceDef,
    ServiceType,
    check_abs_path,
    check_name,
)
from .systemd import Systemd, UnitSettings, systemd_running

# A unit name systemd does not know: what it reports for it are the defaults of a service that sets nothing.
DEFAULTS_PROBE = "sandbox-service-defaults-probe.service"


@dataclass(frozen=True)
class CreateRequest:
    name: str
    unit: str | None = None
    command: tuple[str, ...] = ()
    user: str | None = None
    group: str | None = None
    packages: tuple[str, ...] = ()
    copies: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    chroot: str | None = None
    selinux: SELinuxMode = SELinuxMode.AUTO
    description: str = ""
    network: NetworkSpec = field(default_factory=NetworkSpec)
    profile: str = security.DEFAULT_PROFILE
    memory_deny_write_execute: bool | None = None
    private_users: bool | None = None
    user_namespace: bool = True
    max_exposure: float | None = None
    enable: bool = False
    now: bool = False
    exist_ok: bool = False  # an existing sandbox with the same settings is success (idempotent scriptlets)
    service: ServiceDef | None = None  # instead of a command: the service as a spec file gives it (apply)
    apply_group: str | None = None  # made by apply, for this group of its documents


@dataclass(frozen=True)
class Plan:
    """Everything create will do, computed without writing anything (what --dry-run shows)."""

    spec: SandboxSpec
    copies: tuple[str, ...]
    owned_dirs: tuple[tree.OwnedDir, ...]
    notes: tuple[str, ...]
    host: host_discovery.HostInfo

    @functools.cached_property
    def files(self) -> dict[PurePosixPath, str]:
        """The unit files (rendered when asked for: create renders them again for the final spec)."""
        return render.render(self.spec)


@dataclass(frozen=True)
class Created:
    spec: SandboxSpec
    written: tuple[Path, ...]
    copied_files: int
    started: bool
    online: bool
    notes: tuple[str, ...]


def plan(
    req: CreateRequest,
    layout: Layout,
    sd: Systemd | None,
    *,
    allow_existing: bool = False,
    others: Sequence[network_checks.Neighbour] | None = None,
    id_base_hint: int | None = None,
    host: host_discovery.HostInfo | None = None,
) -> Plan:
    """What create would do; `others`: the sandboxes to check against (default: those on disk);
    `id_base_hint`: the provisional ID range to show (default: the one the registry would give now);
    `host`: what the host looks like, when the caller probed it already (apply: once for all)."""
    name = check_name(req.name)
    if not allow_existing:
        refuse_existing(layout, name)
    hostinfo = host or host_discovery.probe(layout.root)
    notes: list[str] = []
    source_unit = None
    source_package = None
    pkgs = list(req.packages)
    unit_paths: list[str] = []

    if req.unit and (req.command or req.service):
        raise InvalidInput("give either --unit or a command after --, not both")
    if req.unit:
        source_unit = unit_name_for(req.unit)
        try:
            settings = _unit_settings(source_unit, layout, sd)
        except NotFound as exc:
            # httpd on Debian, apache2 on Fedora: say what this system calls it
            other_name = unitnames.hint(source_unit, layout.root, name)
            if other_name is None:
                raise
            raise NotFound(exc.message, other_name) from exc
        translated = translate_unit(settings, sd)
        service = translated.service
        notes += translated.notes
        # a unit a generator made from an init script belongs to nobody: its script's package is it
        origin = settings.source_path or settings.fragment_path
        source_package = packages.owner_of(hostinfo.package_manager, layout.root, origin)
        if source_package:
            # the packages built from the same source come along: their files are the service's too
            family = related.siblings(hostinfo.package_manager, layout.root, source_package)
            pkgs = [*family, *(p for p in pkgs if p not in family)]
        unit_paths = _unit_named_paths(service)
        description = req.description or settings.description
    elif req.command:
        if req.chroot:
            _check_chroot(layout, req.chroot, req.command[0])
        service = ServiceDef(
            type=ServiceType.EXEC,
            exec_start=(_user_command(req.command, layout, req.chroot),),
            user=req.user,
            group=req.group,
        )
        description = req.description or " ".join(req.command)[:80]
    elif req.service:
        if not req.service.exec_start:
            raise InvalidInput("the service has no ExecStart= command")
        if req.chroot:
            _check_chroot(layout, req.chroot, req.service.exec_start[0].path)
        service = req.service
        description = req.description or " ".join(service.exec_start[0].argv)[:80]
    else:
        raise InvalidInput("nothing to run", "name a host unit with --unit UNIT, or give a command after --")
    service = with_overrides(service, req.user, req.group)

    copies: list[str] = []
    tmpfiles: list[str] = []
    ours = frozenset(pkgs)
    for pkg in pkgs:
        paths = packages.package_paths(hostinfo.package_manager, layout.root, pkg, ours)
        copies.extend(paths.trees)
        copies.extend(p for p in paths.files if not any(p.startswith(t + "/") for t in paths.trees))
        tmpfiles.extend(paths.tmpfiles)
    if req.unit:
        # what dpkg does not list: ucf's configuration, what maintainer scripts name and what they made
        # for the account
        copies.extend(related.ucf_paths(layout.root, tuple(pkgs)))
        copies.extend(related.script_paths(hostinfo.package_manager, layout.root, tuple(pkgs)))
        copies.extend(related.dependency_conffiles(hostinfo.package_manager, layout.root, tuple(pkgs)))
        account = related.account_ids(layout.root, service.user, service.group)
        copies.extend(related.account_paths(layout.root, *account))
    for p in unit_paths:
        if os.path.lexists(layout.host(p)):
            copies.append(p)
    for p in req.copies:
        check_abs_path("--copy", p)
        if not os.path.lexists(layout.host(p)):
            raise NotFound(f"--copy {p}: no such file or directory")
        copies.append(p)
    if req.unit and not copies:
        raise DiscoveryFailed(
            f"found nothing to put into the private /etc and /var of {source_unit}"
            + ("" if source_package else " (no package owns its unit file)"),
            "name what the service needs with --package PKG and/or --copy PATH (both repeatable)",
        )
    userns = req.user_namespace and not req.chroot
    wanted = [] if req.chroot else [*tree.BASE_ETC, *([] if userns else [tree.LOADER_CACHE])]
    base = [p for p in wanted if os.path.lexists(layout.host(p))]
    shared = () if req.chroot else hostinfo.readonly_binds
    # what the host shares read-only is seen through its bind, never copied under it
    kept = [p for p in _outermost(copies) if not any(p == s or p.startswith(s + "/") for s in shared)]
    all_copies = tuple(dict.fromkeys(base + kept))

    if req.user_namespace and req.chroot:
        notes.append("a chroot sandbox runs without a user namespace: its root is the host's root")
    chosen = Security(req.profile, req.memory_deny_write_execute, req.private_users, user_namespace=userns)
    resolved = security.settle(
        chosen,
        service,
        hostinfo.systemd_version,
        layout.host(security.ADMIN_PROFILES),
        tuple(dict.fromkeys(tmpfiles)),
    )
    notes += resolved.notes
    for d in resolved.dropped:
        notes.append(f"{d.key}={d.value} left out: systemd {hostinfo.systemd_version} does not know it")
    for d, why in resolved.left_out:
        notes.append(f"{d.key}={d.value} left out: {why}")

    spec = SandboxSpec(
        name=name,
        kind=Kind.CHROOT if req.chroot else (Kind.UNIT if req.unit else Kind.GENERIC),
        service=service,
        description=description,
        source_unit=source_unit,
        source_package=source_package,
        packages=tuple(pkgs),
        copies=all_copies,
        limits=req.limits,
        selinux=req.selinux,
        chroot=req.chroot,
        readonly_binds=() if req.chroot else hostinfo.readonly_binds,
        enabled=req.enable,
        network=req.network,
        security=resolved.applied_to(chosen),
        user=req.user,
        group=req.group,
        # provisional (what --dry-run shows): _apply takes the range for real
        id_base=(id_base_hint or identity.registry_for(layout).peek(name)) if userns else None,
        tmpfiles=tuple(dict.fromkeys(tmpfiles)),
        apply_group=req.apply_group,
    )
    if userns and not layout.host(isolation.PYTHON).exists():
        raise NotFound(
            f"{isolation.PYTHON} is missing: sandboxes run their commands through a Python launcher",
            "install python3 (the distribution's package), or create the sandbox with --no-user-namespace",
        )
    if others is None:
        others = index.summaries(layout)  # not every spec parsed: thousands of them take seconds
    network_checks.check_host(spec, others, layout)
    if spec.service.pid_file:
        notes.append(
            f"PIDFile {spec.service.pid_file} inside is {render.service_view(spec).pid_file} on the host"
        )
    return Plan(spec, all_copies, _owned_dirs(service), tuple(notes), hostinfo)


def create(req: CreateRequest, layout: Layout, lock: LockPolicy | None = None) -> Created:
    """Make the sandbox, holding its lock.  What an interrupted run left of a sandbox of that name is
    removed first (recovery.py); --exist-ok finishes a complete one (units, registration)."""
    name = check_name(req.name)
    online = layout.root == Path("/") and systemd_running()
    if req.now and not online:
        raise SystemdUnavailable("--now needs a running systemd", "drop --now, or run on the booted system")
    if req.max_exposure is not None and not online:
        raise SystemdUnavailable(
            "--max-exposure needs the running systemd to score the unit",
            "drop it here, and check the score on the booted system with: sandbox-service status NAME",
        )
    with locks.sandboxes(layout, [name], policy=lock):
        sd = Systemd() if online else None
        try:
            with explaining_full_disk(layout, name):
                if recovery.is_complete(layout, name):
                    if req.exist_ok:
                        return _finish_existing(req, layout, sd)
                    refuse_existing(layout, name)
                notes = []
                traces = recovery.find_traces(layout, name)
                if not traces.empty:
                    recovery.remove_traces(layout, [traces], sd)
                    notes.append("removed what an interrupted run had left: " + "; ".join(traces.describe()))
                p = plan(req, layout, sd)
                if req.now and sd is not None:
                    check_room(sd, [p.spec])  # before anything is made: refused, the sandbox is not half made
                created = _apply(p, req, layout, sd)
                return replace(created, notes=(*notes, *created.notes))
        finally:
            if sd is not None:
                sd.__exit__(None, None, None)


def _apply(p: Plan, req: CreateRequest, layout: Layout, sd: Systemd | None) -> Created:
    with Transaction() as tx:
        if sd is not None:
            tx.on_rollback(sd.reload)  # undone in reverse order: runs once the unit files are gone again
        made = install(tx, p, layout)
        # systemd loads a unit file it has never seen when the unit is first asked for (it rebuilds
        # its map of unit files once their directories changed): a reload is needed only when a
        # unit file that was there already changed, such as the shared sandbox.slice
        started = _register(tx, layout, sd, req, made.spec, reload=made.replaced_units)
        recovery.mark_complete(layout.sandbox_dir(made.spec.name))
        tx.commit()
    return Created(made.spec, tuple(made.written), made.copied, started, sd is not None, p.notes)


@dataclass(frozen=True)
class Installed:
    spec: SandboxSpec  # final: its ID range and MCS level taken
    written: list[Path]  # unit files written
    copied: int  # files copied from the host
    replaced_units: bool  # a unit file that was there before was changed (systemd must reload)


def install(tx: Transaction, p: Plan, layout: Layout, *, id_base: int | None = None) -> Installed:
    """Make the sandbox of a plan on disk: its ID range and account (unless `id_base` was taken for it
    already, with its account: apply does that for many at once), its tree, spec file and units; every
    step undone by `tx`.  Nothing is told to systemd.  The sandbox stays marked incomplete: the caller
    removes the mark (recovery.mark_complete) once it has registered it."""
    spec = p.spec
    if selinux.resolve_mode(spec.selinux):
        registry = selinux.McsRegistry(layout.mcs_registry)
        tx.on_rollback(lambda: registry.release(spec.name))
        spec = replace(spec, selinux_level=registry.allocate(spec.name))
    if spec.security.user_namespace:
        if id_base is None:
            id_base = take_id_range(tx, layout, spec.name)
        spec = replace(spec, id_base=id_base)
    files = render.render(spec)
    staging = stage_dir(tx, layout, spec.name)
    root = staging / "root"
    hostinfo = p.host
    copied = 0
    ids = IdMap(spec.id_base) if spec.id_base is not None else None
    if spec.kind is Kind.CHROOT:
        root.mkdir(mode=0o755)
    else:
        tree.make_base(root, hostinfo.usr_layout, ids)
        base = staging / BASE_DIR_NAME
        base.mkdir(mode=0o700)
        for path in p.copies:
            copied += tree.copy_path(layout.root, root, path, owner=ids.shift() if ids else fswalk.identity)
            if path.startswith("/etc/"):
                # the pristine copy `upgrade` merges against: what the host had when we copied
                tree.copy_path(layout.root, base, path)
        tree.make_owned_dirs(root, p.owned_dirs, ids)
        tree.write_tree_files(root, render.tree_files(spec))
        _check_executables(spec, root, layout.root)
    specfile.save(staging / "sandbox.yaml", spec)
    if spec.selinux_level:
        selinux.label_tree(staging, spec.selinux_level)
    final = layout.sandbox_dir(spec.name)
    publish_checked(tx, layout, spec, staging, final)
    replaced = [path for path in files if os.path.lexists(layout.host(str(path)))]
    written = write_units(tx, layout, files, spec.name)
    return Installed(spec, written, copied, any(layout.host(str(p)) in written for p in replaced))


def publish_checked(tx: Transaction, layout: Layout, spec: SandboxSpec, staging: Path, final: Path) -> None:
    """Put a staged sandbox in place, after checking again, under the host lock, what it shares with the
    other sandboxes (published ports): a sandbox published meanwhile is seen, and none can follow
    until this one is in place."""
    with locks.host(layout):
        others = [s for s in index.summaries(layout) if s.name != spec.name]
        network_checks.check_host(spec, others, layout)
        publish_dir(tx, staging, final)


def take_id_range(tx: Transaction, layout: Layout, name: str) -> int:
    """The sandbox's ID range and the host account of its root; both given back on rollback."""
    registry = identity.registry_for(layout)
    tx.on_rollback(lambda: registry.release(name))
    base = registry.allocate(name)
    if identity.ensure_account(layout, name, base):
        tx.on_rollback(lambda: identity.remove_account(layout, name))
    return base


def _finish_existing(req: CreateRequest, layout: Layout, sd: Systemd | None) -> Created:
    """create --exist-ok on a sandbox that exists: success when it has the settings asked for, after
    finishing whatever an interrupted run left undone (units, enable links, registration) and removing
    what killed runs left beside it (staging directories, temp files, units it no longer has)."""
    existing = load_spec(layout, req.name)
    p = plan(req, layout, sd, allow_existing=True)
    wanted = replace(
        p.spec,
        selinux_level=existing.selinux_level,
        copies=existing.copies,
        id_base=existing.id_base,
        apply_group=existing.apply_group,
    )
    if wanted != existing:
        raise AlreadyExists(
            f"sandbox {req.name!r} exists with different settings",
            f"see: sandbox-service create {req.name} ... --dry-run; delete it first to change them",
        )
    recovery.remove_side_dirs(layout, existing.name)
    files = render.render(existing)
    with Transaction() as tx:
        written = write_units(tx, layout, files, existing.name, replace=True)
        recovery.remove_stray_units(layout, existing.name, files)
        started = _register(tx, layout, sd, req, existing)
        tx.commit()
    return Created(
        existing, tuple(written), 0, started, sd is not None, ("already existed with these settings",)
    )


def _register(
    tx: Transaction,
    layout: Layout,
    sd: Systemd | None,
    req: CreateRequest,
    spec: SandboxSpec,
    *,
    reload: bool = True,
) -> bool:
    """Enable as asked, tell systemd (one reload, unless only new unit files were written and nothing
    was enabled), check the exposure, start as asked; offline, make the enable links. Returns whether
    the service was started."""
    service = service_unit(spec.name)
    if sd is None:
        if req.enable:
            enable_offline(tx, layout, [service])
        return False
    if req.enable:
        tx.on_rollback(lambda: sd.disable([service]))  # while its unit file is still there
        sd.enable(["sandbox.target", service])
    # after enabling: the running sandbox.target gets its new dependency, and systemd 257 counts the new
    # enable links as a change on disk that needs a reload
    if reload or req.enable:
        sd.reload()
    if req.max_exposure is not None:
        score, word = exposure(service)
        if score > req.max_exposure:
            raise TooExposed(
                f"{service} scores {score} ({word}) in systemd-analyze security, "
                f"above --max-exposure {req.max_exposure}; nothing was kept",
                "choose a stricter --profile, or see: systemd-analyze security " + service,
            )
    if req.now:
        tx.on_rollback(lambda: _stop_quietly(sd, service))
        # what the start found missing is named for the next create: this one is rolled back
        run_job(sd, "start", units_to_wait_for(spec), layout, lambda p: f"create it again with --copy {p}")
        return True
    return False


def _stop_quietly(sd: Systemd, unit: str) -> None:
    try:
        sd.stop([unit])
    finally:
        sd.reset_failed(unit)


def translate_unit(settings: UnitSettings, sd: Systemd | None) -> Translated:
    """The sandbox's service for a host unit: over D-Bus from every property systemd reports (compared
    with those of a unit that sets nothing), offline from the unit files."""
    if sd is None:
        return translate(settings)
    files = (settings.fragment_path, *settings.dropin_paths) if settings.fragment_path else ()
    settings = replace(settings, permissions_start_only=permissions_start_only(files))
    return translate(settings, sd.unit_properties(settings.id), sd.unit_properties(DEFAULTS_PROBE))


def _unit_settings(unit: str, layout: Layout, sd: Systemd | None) -> UnitSettings:
    """What systemd parsed for the unit: asked over D-Bus when it runs, else read from the tree's own
    unit files (offline, or --root), never from the host's."""
    if sd is not None:
        return sd.unit_settings(unit)
    return load_unit_settings(layout.root, unit)


def _check_chroot(layout: Layout, chroot: str, program: str) -> None:
    check_abs_path("--chroot", chroot)
    tree_dir = layout.host(chroot)
    if not tree_dir.is_dir():
        raise NotFound(f"--chroot {chroot}: no such directory")
    if not program.startswith("/"):
        raise InvalidInput(f"{program!r}: give the command's absolute path inside the chroot")
    if tree.resolve_inside(tree_dir, program, tree_dir, ()) is None:
        raise NotFound(
            f"{program} does not exist inside {chroot}",
            "a chroot sandbox sees only its own tree: install the program there first",
        )


def _user_command(command: tuple[str, ...], layout: Layout, chroot: str | None) -> ExecCommand:
    prog = command[0]
    if prog.startswith("/"):
        path = prog
    elif chroot:
        raise InvalidInput(f"{prog!r}: give the command's absolute path inside the chroot")
    else:
        found = shutil.which(
            prog, path=os.pathsep.join(str(layout.host(d)) for d in ("/usr/bin", "/usr/sbin"))
        )
        if not found:
            raise NotFound(f"command {prog!r} not found in /usr/bin or /usr/sbin", "give its absolute path")
        path = "/" + str(Path(found).relative_to(layout.root))
    return ExecCommand(path=path, argv=command, expand_env=False)


def _unit_named_paths(service: ServiceDef) -> list[str]:
    """Host paths the unit names: its state, log, cache and config directories, env files, work dir."""
    out = [f"/var/lib/{d}" for d in service.state_directories]
    out += [f"/var/log/{d}" for d in service.logs_directories]
    out += [f"/var/cache/{d}" for d in service.cache_directories]
    out += [f"/etc/{d}" for d in service.configuration_directories]
    out += [f.path for f in service.environment_files]
    out += [p.removeprefix("-") for p in service.read_write_paths]
    wd = (service.working_directory or "").removeprefix("-")
    if wd.startswith("/"):
        out.append(wd)
    return [p for p in out if p.startswith(("/etc/", "/var/", "/srv/", "/opt/", "/home/"))]


def _owned_dirs(service: ServiceDef) -> tuple[tree.OwnedDir, ...]:
    u, g = service.user, service.group
    dirs = [tree.OwnedDir(f"/var/lib/{d}", u, g) for d in service.state_directories]
    dirs += [tree.OwnedDir(f"/var/log/{d}", u, g) for d in service.logs_directories]
    dirs += [tree.OwnedDir(f"/var/cache/{d}", u, g) for d in service.cache_directories]
    dirs += [tree.OwnedDir(f"/etc/{d}", None, None) for d in service.configuration_directories]
    return tuple(dirs)


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths already inside another copied directory tree; keep order."""
    unique = list(dict.fromkeys(paths))
    return [p for p in unique if not any(p != o and p.startswith(o.rstrip("/") + "/") for o in unique)]


def _check_executables(spec: SandboxSpec, root: Path, host_root: Path) -> None:
    seen = set()
    for _key, cmd in render.exec_settings(spec):
        if cmd.path in seen:
            continue
        seen.add(cmd.path)
        found = tree.resolve_inside(root, cmd.path, host_root, spec.readonly_binds)
        if found is None:
            raise NotFound(
                f"{cmd.path} does not exist inside the sandbox",
                "only the host's /usr is shared; bring other programs in with --copy PATH",
            )
