"""The SELinux policy module in selinux/ must compile with the refpolicy development Makefile.

The build runs in a copy under tmp_path so no build output lands in the repository.  Needs the Debian
packages selinux-policy-dev (Makefile and interface headers, pulls in checkpolicy, m4, semodule-utils).
If a base policy package is available (selinux-policy-default installs /usr/share/selinux/default/base.pp,
or point SANDBOX_SERVICE_BASE_PP at a base.pp or base.pp.bz2) the module is also linked against it and
the resulting policy is queried with setools (python3-setools).
"""

from __future__ import annotations

import bz2
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
POLICY_SRC = REPO / "selinux"
DEVEL_MAKEFILE = Path("/usr/share/selinux/devel/Makefile")
MODULE = "sandbox_service"

needs_devel = pytest.mark.skipif(
    not DEVEL_MAKEFILE.exists() or shutil.which("make") is None,
    reason=f"{DEVEL_MAKEFILE} or make missing (apt install selinux-policy-dev make)",
)


def _build(src: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    shutil.copytree(src, dest)
    return subprocess.run(
        ["make", "-f", str(DEVEL_MAKEFILE), f"{MODULE}.pp"],
        cwd=dest,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build directory after a successful build; the test fails (not skips) on a compile error."""
    if not DEVEL_MAKEFILE.exists() or shutil.which("make") is None:
        pytest.skip(f"{DEVEL_MAKEFILE} or make missing (apt install selinux-policy-dev make)")
    dest = tmp_path_factory.mktemp("policy") / "selinux"
    proc = _build(POLICY_SRC, dest)
    assert proc.returncode == 0, f"policy build failed:\n{proc.stdout}\n{proc.stderr}"
    return dest


def test_sources_present() -> None:
    for ext in ("te", "if", "fc"):
        assert (POLICY_SRC / f"{MODULE}.{ext}").is_file()


@needs_devel
def test_package_is_built(built: Path) -> None:
    pp = built / f"{MODULE}.pp"
    assert pp.is_file()
    assert pp.stat().st_size > 0
    # The policy package magic (PolicyPackage, little endian 0xf97cff8f).
    assert pp.read_bytes()[:4] == bytes.fromhex("8fff7cf9")


@needs_devel
def test_build_leaves_repository_clean(built: Path) -> None:
    assert sorted(p.name for p in POLICY_SRC.iterdir()) == [f"{MODULE}.fc", f"{MODULE}.if", f"{MODULE}.te"]


@needs_devel
def test_expanded_source_declares_types_and_mcs(built: Path) -> None:
    # The Makefile keeps the m4 output; it shows what the interfaces turned into.
    expanded = (built / "tmp" / f"{MODULE}.tmp").read_text()
    assert re.search(r"^type sandbox_service_t;", expanded, re.M)
    assert re.search(r"^type sandbox_service_file_t;", expanded, re.M)
    assert re.search(r"typeattribute sandbox_service_t mcs_constrained_type;", expanded)
    assert re.search(r"typeattribute sandbox_service_t .*\bdomain\b", expanded)
    assert re.search(r"typeattribute sandbox_service_file_t .*\bfile_type\b", expanded)
    assert "role system_r types sandbox_service_t;" in expanded


@needs_devel
def test_package_contents(built: Path) -> None:
    if shutil.which("semodule_unpackage") is None:
        pytest.skip("semodule_unpackage missing (apt install semodule-utils)")
    mod, fc = built / "out.mod", built / "out.fc"
    subprocess.run(["semodule_unpackage", f"{MODULE}.pp", mod.name, fc.name], cwd=built, check=True)
    lines = (line.split("#", 1)[0].strip() for line in fc.read_text().splitlines())
    contexts = [line.split() for line in lines if line]
    assert contexts == [["/var/lib/sandbox-service(/.*)?", "system_u:object_r:sandbox_service_file_t:s0"]]
    binary = mod.read_bytes()
    for name in (b"sandbox_service_t", b"sandbox_service_file_t", b"sandbox_service_bind_all_ports"):
        assert name in binary


@needs_devel
@pytest.mark.parametrize(
    "breakage",
    [
        "allow sandbox_service_t no_such_type_anywhere_t:file read;",  # type neither declared nor required
        "this is not policy;",  # syntax error
        "files_no_such_interface(sandbox_service_t)",  # unknown interface: m4 leaves it as text
    ],
)
def test_broken_policy_fails_to_build(tmp_path: Path, breakage: str) -> None:
    """Guards the build test itself: a policy with an error must make `make` fail."""
    src = tmp_path / "src"
    shutil.copytree(POLICY_SRC, src)
    te = src / f"{MODULE}.te"
    te.write_text(te.read_text() + f"\n{breakage}\n")
    dest = tmp_path / "build"
    proc = _build(src, dest)
    assert proc.returncode != 0, proc.stdout
    assert not (dest / f"{MODULE}.pp").exists()


def _base_package(tmp_path: Path) -> Path | None:
    candidates = [os.environ.get("SANDBOX_SERVICE_BASE_PP", "")]
    candidates += ["/usr/share/selinux/default/base.pp", "/usr/share/selinux/default/base.pp.bz2"]
    # scripts/install-deps.sh unpacks Debian's selinux-policy-default here without installing it
    candidates += [
        str(
            Path(__file__).resolve().parent.parent
            / ".cache/selinux-policy/usr/share/selinux/default/base.pp.bz2"
        )
    ]
    for c in candidates:
        if c and Path(c).is_file():
            if c.endswith(".bz2"):
                out = tmp_path / "base.pp"
                out.write_bytes(bz2.decompress(Path(c).read_bytes()))
                return out
            return Path(c)
    return None


@needs_devel
def test_links_against_base_policy(built: Path, tmp_path: Path) -> None:
    base = _base_package(tmp_path)
    if base is None:
        pytest.skip("no base.pp (apt install selinux-policy-default, or set SANDBOX_SERVICE_BASE_PP)")
    if shutil.which("semodule_link") is None or shutil.which("semodule_expand") is None:
        pytest.skip("semodule_link/semodule_expand missing (apt install semodule-utils)")
    setools = pytest.importorskip("setools", reason="python3-setools missing")

    linked, policy = tmp_path / "linked.lnk", tmp_path / "policy.bin"
    subprocess.run(
        ["semodule_link", "-o", str(linked), str(base), str(built / f"{MODULE}.pp")],
        check=True,
        capture_output=True,
    )
    subprocess.run(["semodule_expand", str(linked), str(policy)], check=True, capture_output=True)

    p = setools.SELinuxPolicy(str(policy))
    assert p.mls, "the module must be built for an MCS policy"
    domain = p.lookup_type("sandbox_service_t")
    attrs = {str(a) for a in domain.attributes()}
    assert {"domain", "mcs_constrained_type"} <= attrs
    p.lookup_type("sandbox_service_file_t")

    def allowed(source: str, target: str, cls: str) -> set[str]:
        """Permissions granted unconditionally (not behind a boolean), rules on attributes included."""
        perms: set[str] = set()
        query = setools.TERuleQuery(p, ruletype=["allow"], source=source, target=target, tclass=[cls])
        for rule in query.results():
            try:
                rule.conditional  # noqa: B018 - raises for unconditional rules
            except setools.exception.RuleNotConditional:
                perms |= {str(x) for x in rule.perms}
        return perms

    assert "transition" in allowed("init_t", "sandbox_service_t", "process")
    assert {"read", "write", "create", "unlink"} <= allowed(
        "sandbox_service_t", "sandbox_service_file_t", "file"
    )
    assert {"read", "getattr"} <= allowed("sandbox_service_t", "usr_t", "file")
    assert "execute" in allowed("sandbox_service_t", "bin_t", "file")
    assert "entrypoint" in allowed("sandbox_service_t", "bin_t", "file")
    assert "name_bind" in allowed("sandbox_service_t", "http_port_t", "tcp_socket")
    # Reserved ports only through the tunable.
    p.lookup_type("smtp_port_t")
    assert "name_bind" not in allowed("sandbox_service_t", "smtp_port_t", "tcp_socket")
