"""The isolation model a spec stands for, as `status` reports it and `clone` acts on it."""

from __future__ import annotations

from dataclasses import replace

from sandbox_service import isolation, specfile
from sandbox_service.spec import ExecCommand, Kind, SandboxSpec, Security, ServiceDef, ServiceType

BASE = 0x40000000


def generic(*, user_namespace: bool = True, id_base: int | None = BASE) -> SandboxSpec:
    cmd = ExecCommand("/bin/sleep", ("/bin/sleep", "300"))
    return SandboxSpec(
        name="iso",
        kind=Kind.GENERIC,
        service=ServiceDef(type=ServiceType.EXEC, exec_start=(cmd,)),
        description="x",
        security=Security(user_namespace=user_namespace),
        id_base=id_base,
    )


def test_a_sandbox_with_a_range_runs_in_its_own_user_namespace() -> None:
    spec = generic()
    assert isolation.model(spec) is isolation.Model.USER_NAMESPACE
    assert isolation.describe(spec) == f"own user namespace (host IDs {BASE}-{BASE + 65535})"


def test_no_user_namespace_is_the_host_root_by_choice() -> None:
    spec = generic(user_namespace=False, id_base=None)
    assert isolation.model(spec) is isolation.Model.HOST_ROOT
    assert "--no-user-namespace" in isolation.describe(spec)


def test_a_chroot_sandbox_is_the_host_root() -> None:
    spec = replace(generic(id_base=None), kind=Kind.CHROOT, chroot="/srv/tree")
    assert isolation.model(spec) is isolation.Model.HOST_ROOT
    assert "chroot" in isolation.describe(spec)


def test_a_spec_written_before_id_ranges_is_recognised_and_told_how_to_move() -> None:
    """The first release wrote neither ``user_namespace`` nor ``id_base``: such a file loads as asking
    for a user namespace it does not have."""
    text = specfile.dumps(generic(user_namespace=False, id_base=None))
    old = "".join(line for line in text.splitlines(keepends=True) if "user_namespace" not in line)
    assert old != text
    spec = specfile.loads(old)
    assert spec.id_base is None and spec.security.user_namespace
    assert isolation.model(spec) is isolation.Model.BEFORE_RANGES
    assert "sandbox-service clone iso NEW" in isolation.describe(spec)
