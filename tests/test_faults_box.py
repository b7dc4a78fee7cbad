"""SIGKILL at every step of create, delete, upgrade, clone and apply, then the documented recovery: it must
converge to the state a run that was never interrupted leaves (tests/faults.py finds the steps).

After each recovery: no half sandbox, no unit, staging directory, lock, registry entry (MCS pair, ID
range) or host account more or less than the uninterrupted run leaves, and systemd's view of the units
equal to the files on disk.  The sweep on systemd 252 kills every boundary (see faults.boundaries); on
257 every third one, which still reaches every phase of each command.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest

from tests import faults
from tests.box import SystemdBox
from tests.faults import Step, kill_at, ok, run, state, systemd_matches_disk

pytestmark = pytest.mark.box

STRIDE = {"252": 1, "257": 3}  # every n-th boundary is killed
NAME = "crash"
CREATE = (
    "create",
    NAME,
    "--enable",
    "--now",
    "--selinux",
    "enabled",  # labels are stored as xattrs though SELinux is off: the MCS registry is used
    "-p",
    "127.0.0.1:8085:8000",  # socket and proxy units besides the service, slice and mount
    "--",
    "/usr/bin/sleep",
    "300",
)
EXIST_OK = (*CREATE[: CREATE.index("--")], "--exist-ok", *CREATE[CREATE.index("--") :])
SKIP = ("root/var/log",)  # what the service writes while it runs


def delete_left(box: SystemdBox, name: str) -> None:
    """`delete NAME` after a killed run: it removes what is left, or says nothing is (all was gone)."""
    rc, out = run(box, "delete", name)
    assert rc == 0 or (rc == 3 and f"no sandbox named {name!r}" in out), out


def warm_up(box: SystemdBox) -> None:
    """A create and delete before anything is recorded: the base directory and the registries exist from
    then on, so the recorded run and the killed ones start from the same state."""
    ok(box, *CREATE)
    ok(box, "delete", NAME)


def chosen(box: SystemdBox, steps: list[Step]) -> list[Step]:
    points = faults.boundaries(steps)
    return points[:: STRIDE.get(box.image.systemd, 1)]


def same(got: dict[str, object], want: dict[str, object], what: str) -> None:
    diff = faults.differences(got, want)
    if diff:
        pytest.fail(f"{what}: differs from the uninterrupted run: " + "; ".join(diff[:12]))
    problems = systemd_matches_disk(got)
    assert not problems, f"{what}: systemd's view differs from the disk: {problems}"


def sweep(points: Sequence[Step], one: Callable[[int, Step], None], reset: Callable[[], None]) -> None:
    """Kill at each point and recover.  A run whose calls differ from the recorded ones (systemd was slow
    and the tool polled once more, say) is tried again once, from a clean state; twice is a failure."""
    assert points, "no steps recorded"
    print(f"killing at {len(points)} steps")  # shown with pytest -s
    for i, step in enumerate(points):
        for attempt in (1, 2):
            try:
                one(i, step)
                break
            except faults.Diverged:
                reset()
                if attempt == 2:
                    raise
            except AssertionError as exc:
                raise AssertionError(f"killed at {step} (point {i + 1} of {len(points)}): {exc}") from exc


def test_a_killed_create_is_finished_by_exist_ok_or_removed_by_delete(
    box: SystemdBox, cleanup: list[str]
) -> None:
    cleanup.append(NAME)
    warm_up(box)
    steps = faults.record(box, *CREATE)
    complete = state(box, [NAME], SKIP)
    assert not systemd_matches_disk(complete)
    ok(box, "delete", NAME)
    clean = state(box, [NAME], SKIP)

    def one(i: int, step: Step) -> None:
        kill_at(box, step, *CREATE)
        if i % 2 == 0:  # finished by create --exist-ok, then deleted
            ok(box, *EXIST_OK)
            same(state(box, [NAME], SKIP), complete, f"create --exist-ok after a kill at {step}")
            ok(box, "delete", NAME)
        else:
            delete_left(box, NAME)
        same(state(box, [NAME], SKIP), clean, f"delete after a kill at {step}")

    sweep(chosen(box, steps), one, lambda: delete_left(box, NAME))


def test_a_killed_delete_is_finished_by_delete(box: SystemdBox, cleanup: list[str]) -> None:
    cleanup.append(NAME)
    warm_up(box)
    clean = state(box, [NAME], SKIP)
    ok(box, *CREATE)
    steps = faults.record(box, "delete", NAME)
    same(state(box, [NAME], SKIP), clean, "an uninterrupted delete")

    def one(_i: int, step: Step) -> None:
        ok(box, *CREATE)
        kill_at(box, step, "delete", NAME)
        delete_left(box, NAME)
        same(state(box, [NAME], SKIP), clean, f"delete after a kill at {step}")

    sweep(chosen(box, steps), one, lambda: delete_left(box, NAME))


def test_a_killed_clone_is_removed_by_delete_or_made_by_cloning_again(
    box: SystemdBox, cleanup: list[str]
) -> None:
    src, dest = "crash-src", "crash-dst"
    cleanup += [dest, src]
    ok(box, "create", src, "--selinux", "enabled", "--", "/usr/bin/sleep", "300")
    clean = state(box, [src, dest])
    steps = faults.record(box, "clone", src, dest)
    cloned = state(box, [src, dest])
    assert not systemd_matches_disk(cloned)
    ok(box, "delete", dest)
    same(state(box, [src, dest]), clean, "an uninterrupted clone, deleted")

    def one(i: int, step: Step) -> None:
        kill_at(box, step, "clone", src, dest)
        if i % 2 == 0:  # cloned again; a clone that was complete when it was killed says so
            rc, out = run(box, "clone", src, dest)
            assert rc == 0 or (rc == 4 and f"sandbox {dest!r} already exists" in out), out
            same(state(box, [src, dest]), cloned, f"clone again after a kill at {step}")
            ok(box, "delete", dest)
        else:
            delete_left(box, dest)
        same(state(box, [src, dest]), clean, f"delete after a kill at {step}")

    sweep(chosen(box, steps), one, lambda: delete_left(box, dest))


# -- upgrade ---------------------------------------------------------------------------------------------

UPG = "crash-upg"
UPG_SKIP = ("root/var/log", "root/var/lib")
DROPIN = "/etc/systemd/system/nginx.service.d/fault.conf"
ORIGINAL = "/root/fault-nginx-etc"
HOST_CHANGES = f"""
set -e
printf '\\n# changed on the host by the fault test\\n' >> /etc/nginx/mime.types
printf 'log_format fault_test "$remote_addr";\\n' > /etc/nginx/conf.d/fault.conf
printf 'map $uri $fault {{ default 1; }}\\n' > /etc/nginx/conf.d/fault-map.conf
rm /etc/nginx/koi-win
mkdir -p {DROPIN.rsplit("/", 1)[0]}
printf '[Service]\\nEnvironment=FAULT=1\\n' > {DROPIN}
systemctl daemon-reload
"""
HOST_ORIGINAL = f"""
set -e
rm -rf /etc/nginx {DROPIN}
cp -a {ORIGINAL} /etc/nginx
systemctl daemon-reload
"""


def _upgrade_setup(box: SystemdBox) -> None:
    """A running nginx sandbox made from the host as it was, then the host's packages 'updated'."""
    box.run(["sh", "-c", HOST_ORIGINAL])
    ok(box, "create", UPG, "--unit", "nginx", "--now")
    box.run(["sh", "-c", HOST_CHANGES])


def test_a_killed_upgrade_is_finished_by_running_it_again(box: SystemdBox, cleanup: list[str]) -> None:
    """And until then each merged file is the old version or the new one, never half of either."""
    cleanup.append(UPG)
    box.run(["cp", "-a", "/etc/nginx", ORIGINAL])
    try:
        _upgrade_setup(box)
        before = state(box, [UPG], UPG_SKIP)
        steps = faults.record(box, "upgrade", UPG)
        after = state(box, [UPG], UPG_SKIP)
        assert after["dir " + UPG] != before["dir " + UPG], "the upgrade changed nothing to test"
        assert not systemd_matches_disk(after)
        ok(box, "delete", UPG)

        def one(_i: int, step: Step) -> None:
            _upgrade_setup(box)
            kill_at(box, step, "upgrade", UPG)
            _each_file_old_or_new(state(box, [UPG], UPG_SKIP), before, after, step)
            ok(box, "upgrade", UPG)
            same(state(box, [UPG], UPG_SKIP), after, f"upgrade again after a kill at {step}")
            ok(box, "delete", UPG)

        sweep(chosen(box, steps), one, lambda: delete_left(box, UPG))
    finally:
        box.run(["sh", "-c", HOST_ORIGINAL + f"rm -rf {ORIGINAL}\n"], check=False)


def _each_file_old_or_new(
    got: dict[str, object], before: dict[str, object], after: dict[str, object], step: Step
) -> None:
    tree, old, new = (s["dir " + UPG] for s in (got, before, after))
    assert isinstance(tree, dict) and isinstance(old, dict) and isinstance(new, dict)
    for path, entry in tree.items():
        if path.startswith(".upgrade-") or re.search(r"(^|/)\.[^/]+\.tmp-[0-9]+$", path):
            continue  # the killed run's work directory and temp files: the next upgrade drops them
        assert entry in (old.get(path), new.get(path)), f"kill at {step}: {path} is neither old nor new"
    for path in set(old) & set(new):
        if old[path] == new[path]:
            assert path in tree, f"kill at {step}: {path}, which no upgrade changes, is gone"


def test_apply_makes_anew_a_sandbox_whose_create_was_killed(box: SystemdBox, cleanup: list[str]) -> None:
    """apply, holding the lock of every sandbox, clears what a killed create left of a sandbox it lists
    and makes it; what apply made is complete (no mark of an unfinished run left in it)."""
    name = "crash-apply"
    cleanup.append(name)
    create = ("create", name, "--", "/usr/bin/sleep", "infinity")
    steps = faults.record(box, *create)
    ok(box, "delete", name)
    clean = state(box, [name])
    doc = "/var/tmp/crash-apply.yaml"
    box.write_file(
        doc,
        f"version: 1\napply_group: t-crash\nsandboxes:\n  - name: {name}\n    started: false\n"
        "    service: {exec_start: [{path: /usr/bin/sleep, argv: [sleep, infinity]}]}\n",
    )
    renames = [s for s in steps if s.syscall == "rename"]  # registries, staging, the publication, units
    for step in renames[:: STRIDE.get(box.image.systemd, 1)]:
        kill_at(box, step, *create)
        ok(box, "apply", doc)
        made = state(box, [name])
        tree = made["dir " + name]
        assert isinstance(tree, dict) and "sandbox.yaml" in tree and ".incomplete" not in tree, step
        assert not systemd_matches_disk(made), step
        ok(box, "delete", name)
        same(state(box, [name]), clean, f"apply, then delete, after a kill at {step}")


# -- apply -----------------------------------------------------------------------------------------------

APPLIED = ("crash-a1", "crash-a2")
APPLY_DOC = "/var/tmp/crash-apply-all.yaml"


def test_a_killed_apply_is_finished_by_applying_again(box: SystemdBox, cleanup: list[str]) -> None:
    """apply of two started sandboxes killed at any step: the same apply again leaves exactly what an
    uninterrupted one leaves, and deleting them then leaves the box as it was."""
    cleanup += list(APPLIED)
    entries = "".join(
        f"  - name: {n}\n    service: {{exec_start: [{{path: /usr/bin/sleep, argv: [sleep, '300']}}]}}\n"
        for n in APPLIED
    )
    box.write_file(APPLY_DOC, f"version: 1\napply_group: t-crash\nsandboxes:\n{entries}")
    apply = ("apply", APPLY_DOC)

    def remove() -> None:
        for n in APPLIED:
            delete_left(box, n)

    ok(box, *apply)  # warm-up: the registries and the sandboxes' slices exist from here on
    remove()
    steps = faults.record(box, *apply)
    applied = state(box, APPLIED, SKIP)
    assert not systemd_matches_disk(applied)
    remove()
    clean = state(box, APPLIED, SKIP)

    def one(_i: int, step: Step) -> None:
        kill_at(box, step, *apply)
        ok(box, *apply)
        same(state(box, APPLIED, SKIP), applied, f"apply again after a kill at {step}")
        remove()
        same(state(box, APPLIED, SKIP), clean, f"delete after a kill at {step}")

    sweep(chosen(box, steps), one, remove)
