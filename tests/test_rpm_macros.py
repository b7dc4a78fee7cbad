"""The packager macros (packaging/macros.sandbox-service), expanded with `rpm --eval` and run as rpm runs
scriptlets: `sh -c SCRIPT` with $1 = 1 (install), 2 (upgrade) or 0 (erase); here with -e as well, so a
command that is not guarded would end the run with its status.

Two kinds of tests.  With a fake sandbox-service that logs its arguments: which command each macro runs
for each $1, offline and online, and that nothing ever makes the expansion fail.  With the real tool on
a --root tree (offline: systemd is not running for it, nothing is started): the files appear and go.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.images import scratch_image

REPO = Path(__file__).resolve().parent.parent
MACROS = REPO / "packaging" / "macros.sandbox-service"
TOOL = f"{sys.executable} -m sandbox_service"
SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]

pytestmark = pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm missing (apt install rpm)")


def expand(call: str, defines: Mapping[str, str]) -> str:
    argv = ["rpm", "--load", str(MACROS)]
    for k, v in defines.items():
        argv += ["--define", f"{k} {v}"]
    done = subprocess.run([*argv, "--eval", call], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "error:" not in done.stderr, done.stderr
    return done.stdout


def scriptlet(script: str, arg: int, shell: str = "sh") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shell, "-e", "-c", script, "scriptlet", str(arg)], capture_output=True, text=True, check=False
    )


# -- expansion --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        "%sandbox_service_post",
        "%sandbox_service_post WEB nginx.service",
        "%sandbox_service_preun",
        "%sandbox_service_preun web -p",  # options come first
        "%sandbox_service_postun_with_restart",
        "%sandbox_service_postun_with_restart web --now",
        "%sandbox_service_postun ../etc",
    ],
)
def test_bad_arguments_fail_the_build(call: str) -> None:
    done = subprocess.run(
        ["rpm", "--load", str(MACROS), "--eval", call], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "error:" in done.stderr


def test_create_arguments() -> None:
    text = expand("%sandbox_service_post web nginx.service --memory 256M --now --enable", {})
    assert (
        "/usr/bin/sandbox-service create web --unit nginx.service --memory 256M --enable --exist-ok ||"
        in text
    )
    assert '[ -x "/usr/bin/sandbox-service" ]' in text
    command = expand("%sandbox_service_post job --now -- /usr/bin/prog --now", {})
    assert "create job --exist-ok -- /usr/bin/prog --now ||" in command
    assert "create web --exist-ok ||" in expand("%sandbox_service_post web", {})


def test_requires() -> None:
    lines = [ln.strip() for ln in expand("%sandbox_service_requires", {}).strip().splitlines()]
    assert lines == [
        "Requires(post): sandbox-service",
        "Requires(preun): sandbox-service",
        "Requires(postun): sandbox-service",
    ]


# -- which commands run: a fake tool ---------------------------------------------------------------


class Fake:
    """A sandbox-service (and systemctl) that log their arguments and exit as configured."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.log = base / "calls"
        self.tool = base / "bin" / "sandbox-service"
        self.systemctl = base / "bin" / "systemctl"
        self.tool.parent.mkdir()
        self.configure()
        self.systemctl.write_text(f'#!/bin/sh\necho "systemctl $*" >>{self.log}\n')
        self.systemctl.chmod(0o755)

    def configure(self, status: int = 0, create: int | None = None, has_upgrade: bool = True) -> None:
        self.tool.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >>{self.log}\n'
            'case "$*" in\n'
            f"    *'upgrade --help') exit {0 if has_upgrade else 2} ;;\n"
            f"    *' create '*) exit {status if create is None else create} ;;\n"
            "esac\n"
            f"exit {status}\n"
        )
        self.tool.chmod(0o755)

    def calls(self) -> list[str]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        self.log.unlink()
        return lines


@pytest.fixture()
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


def offline(fake: Fake) -> dict[str, str]:
    """An image tree at base/img, as the tests' --root."""
    (fake.base / "img").mkdir(exist_ok=True)
    return {"__sandbox_service": str(fake.tool), "_sandbox_service_root": str(fake.base / "img")}


def online(fake: Fake) -> dict[str, str]:
    """As if systemd were running (the guard is overridden; nothing here talks to a real systemd)."""
    return {
        "__sandbox_service": str(fake.tool),
        "__sandbox_service_online": "true",
        "__sandbox_service_statedir": str(fake.base / "state"),
        "__sandbox_service_systemctl": str(fake.systemctl),
    }


def make_spec(fake: Fake, name: str, defines: Mapping[str, str]) -> None:
    state = defines.get("_sandbox_service_root", "") + defines.get(
        "__sandbox_service_statedir", "/var/lib/sandbox-service"
    )
    spec = Path(state) / name / "sandbox.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text("name: " + name + "\n")


@pytest.mark.parametrize("shell", SHELLS)
def test_post_offline(fake: Fake, shell: str) -> None:
    d = offline(fake)
    r = f"--root {fake.base / 'img'}"
    script = expand("%sandbox_service_post web nginx.service --memory 256M --now --enable", d)
    for arg in (2, 0):
        assert scriptlet(script, arg, shell).returncode == 0
        assert fake.calls() == []
    assert scriptlet(script, 1, shell).returncode == 0
    # offline, --now is dropped and nothing is started
    assert fake.calls() == [f"{r} create web --unit nginx.service --memory 256M --enable --exist-ok"]


def test_post_refreshes_a_sandbox_with_other_settings(fake: Fake) -> None:
    d = offline(fake)
    r = f"--root {fake.base / 'img'}"
    script = expand("%sandbox_service_post web nginx.service", d)
    fake.configure(create=4)
    assert scriptlet(script, 1).returncode == 0
    create = f"{r} create web --unit nginx.service --exist-ok"
    assert fake.calls() == [create, f"{r} upgrade --help", f"{r} upgrade web --no-restart"]
    fake.configure(create=4, has_upgrade=False)
    assert scriptlet(script, 1).returncode == 0
    assert fake.calls() == [create, f"{r} upgrade --help"]
    fake.configure(create=3)  # any other failure: reported by the tool, nothing else is tried
    assert scriptlet(script, 1).returncode == 0
    assert fake.calls() == [create]


def test_post_online_starts_only_when_asked(fake: Fake) -> None:
    d = online(fake)
    plain = expand("%sandbox_service_post web nginx.service", d)
    now = expand("%sandbox_service_post web nginx.service --now", d)
    create = "create web --unit nginx.service --exist-ok"
    assert scriptlet(now, 1).returncode == 0
    assert fake.calls() == [create]  # the create failed to make it (no spec): nothing to start
    make_spec(fake, "web", d)
    assert scriptlet(plain, 1).returncode == 0
    assert fake.calls() == [create]
    assert scriptlet(now, 1).returncode == 0
    assert fake.calls() == [create, "start web"]
    assert scriptlet(now, 2).returncode == 0
    assert fake.calls() == []


@pytest.mark.parametrize("shell", SHELLS)
def test_preun(fake: Fake, shell: str) -> None:
    d = offline(fake)
    r = f"--root {fake.base / 'img'}"
    keep = expand("%sandbox_service_preun web other", d)
    purge = expand("%sandbox_service_preun -p web other", d)
    assert scriptlet(keep, 0, shell).returncode == 0
    assert fake.calls() == []  # neither exists
    make_spec(fake, "web", d)
    for arg in (1, 2):
        assert scriptlet(keep, arg, shell).returncode == 0
        assert scriptlet(purge, arg, shell).returncode == 0
        assert fake.calls() == []
    assert scriptlet(keep, 0, shell).returncode == 0
    assert fake.calls() == [f"{r} delete web --keep-data"]
    assert scriptlet(purge, 0, shell).returncode == 0
    assert fake.calls() == [f"{r} delete web"]


@pytest.mark.parametrize("shell", SHELLS)
def test_postun_offline_never_restarts(fake: Fake, shell: str) -> None:
    d = offline(fake)
    r = f"--root {fake.base / 'img'}"
    make_spec(fake, "web", d)
    for macro in ("%sandbox_service_postun_with_restart", "%sandbox_service_postun"):
        script = expand(f"{macro} web missing", d)
        assert scriptlet(script, 0, shell).returncode == 0
        assert fake.calls() == []
        for arg in (1, 2):
            assert scriptlet(script, arg, shell).returncode == 0
            assert fake.calls() == [f"{r} upgrade --help", f"{r} upgrade web --no-restart"]
        fake.configure(has_upgrade=False)
        assert scriptlet(script, 1, shell).returncode == 0
        assert fake.calls() == [f"{r} upgrade --help"]
        fake.configure()


def test_postun_online(fake: Fake) -> None:
    d = online(fake)
    make_spec(fake, "web", d)
    restart = expand("%sandbox_service_postun_with_restart web", d)
    norestart = expand("%sandbox_service_postun web", d)
    assert scriptlet(restart, 1).returncode == 0
    assert fake.calls() == ["upgrade --help", "upgrade web"]
    assert scriptlet(norestart, 1).returncode == 0
    assert fake.calls() == ["upgrade --help", "upgrade web --no-restart"]
    fake.configure(has_upgrade=False)  # a sandbox-service without `upgrade`: restart if running
    assert scriptlet(restart, 2).returncode == 0
    assert fake.calls() == ["upgrade --help", "systemctl try-restart sandbox-web.service"]
    assert scriptlet(norestart, 2).returncode == 0
    assert fake.calls() == ["upgrade --help"]


CALLS = [
    "%sandbox_service_post web nginx.service --now --enable",
    "%sandbox_service_preun web",
    "%sandbox_service_preun -p web",
    "%sandbox_service_postun_with_restart web",
    "%sandbox_service_postun web",
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("status", [1, 4, 70])
def test_failures_never_fail_the_scriptlet(fake: Fake, shell: str, status: int) -> None:
    for defines in (offline(fake), online(fake)):
        make_spec(fake, "web", defines)
        fake.configure(status=status)
        for call in CALLS:
            script = expand(call, defines)
            for arg in (1, 2, 0):
                done = scriptlet(script, arg, shell)
                assert done.returncode == 0, (call, arg, done.stderr)
        assert fake.calls()  # the commands did run, and failed


@pytest.mark.parametrize("shell", SHELLS)
def test_nothing_runs_without_the_tool(fake: Fake, shell: str) -> None:
    missing = fake.base / "nonexistent" / "sandbox-service"
    for defines in (offline(fake), online(fake)):
        make_spec(fake, "web", defines)
        defines["__sandbox_service"] = f"{missing} --debug"
        for call in CALLS:
            script = expand(call, defines)
            assert f'[ -x "{missing}" ]' in script
            for arg in (1, 2, 0):
                done = scriptlet(script, arg, shell)
                assert done.returncode == 0 and done.stderr == "", (call, arg, done.stderr)
    assert fake.calls() == []


# -- the real tool on an image tree ----------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox-service create/delete need root")


def image(base: Path) -> Path:
    """An image tree: usr-merged, a user database, sleep, and a package "demo" (dpkg database) that
    ships demo.service and its /etc/demo."""
    root = scratch_image(base / "img")
    for d in ("etc/demo", "usr/lib/systemd/system", "var/lib/dpkg/info"):
        (root / d).mkdir(parents=True)
    (root / "etc/demo/demo.conf").write_text("greeting = hello\n")
    (root / "usr/lib/os-release").write_text("ID=demo\nNAME=Demo\n")
    (root / "usr/lib/systemd/system/demo.service").write_text(
        "[Unit]\nDescription=Demo daemon\n\n[Service]\nExecStart=/usr/bin/sleep 600\n"
        "StateDirectory=demo\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    (root / "var/lib/dpkg/status").write_text(
        "Package: demo\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
        "Maintainer: Demo <demo@example.org>\nArchitecture: all\nVersion: 1.0\nDescription: demo\n\n"
    )
    (root / "var/lib/dpkg/info/demo.list").write_text(
        "/.\n/etc\n/etc/demo\n/etc/demo/demo.conf\n/usr\n/usr/lib\n/usr/lib/systemd\n"
        "/usr/lib/systemd/system\n/usr/lib/systemd/system/demo.service\n"
    )
    return root


class Image:
    """What the macros leave in the tree for one sandbox."""

    def __init__(self, root: Path, name: str) -> None:
        units = root / "etc/systemd/system"
        self.root = root
        self.units = [units / f"sandbox-{name}.service", units / f"sandbox-{name}.slice"]
        self.wants = units / "sandbox.target.wants" / f"sandbox-{name}.service"
        self.data = root / "var/lib/sandbox-service" / name
        self.spec = self.data / "sandbox.yaml"

    def installed(self) -> bool:
        return all(u.is_file() for u in self.units) and self.spec.is_file()

    def enabled(self) -> bool:
        return self.wants.is_symlink() and str(self.wants.readlink()) == f"../{self.units[0].name}"

    def snapshot(self) -> dict[str, tuple[str, int]]:
        out = {}
        for p in sorted(self.root.rglob("*")):
            kind = "l" if p.is_symlink() else "d" if p.is_dir() else "f"
            size = p.lstat().st_size if kind == "f" else 0
            out[str(p.relative_to(self.root))] = (kind, size)
        return out


def lifecycle(tmp_path: Path, name: str, post_args: str) -> None:
    """Install, upgrade, erase (data kept), reinstall, erase with purge: files appear and go, and every
    scriptlet exits 0 (run with -e)."""
    root = image(tmp_path)
    d = {"__sandbox_service": TOOL, "_sandbox_service_root": str(root)}
    post = expand(f"%sandbox_service_post {name} {post_args}", d)
    preun = expand(f"%sandbox_service_preun {name}", d)
    purge = expand(f"%sandbox_service_preun -p {name}", d)
    postun = expand(f"%sandbox_service_postun_with_restart {name}", d)
    img = Image(root, name)

    def run(script: str, arg: int) -> None:
        done = scriptlet(script, arg)
        assert done.returncode == 0, done.stderr
        assert "internal error" not in done.stderr, done.stderr

    run(post, 1)  # install
    assert img.installed(), "create did not write the sandbox into the image"
    assert img.enabled()
    assert not Path("/var/lib/sandbox-service", name).exists()  # the host is not touched
    before = img.snapshot()
    run(post, 2)  # an upgrade's %post does nothing
    run(preun, 1)
    run(preun, 2)
    assert img.snapshot() == before

    img.units[0].unlink()  # upgrade: the units are rendered anew from the spec
    run(postun, 1)
    assert img.installed() and img.enabled()

    run(preun, 0)  # erase: units and links go, the data stays
    assert not any(u.exists() for u in img.units) and not img.wants.is_symlink()
    assert img.spec.is_file()
    run(postun, 0)

    run(post, 1)  # reinstall: the kept sandbox comes back
    assert img.installed() and img.enabled()
    run(post, 1)  # ... and again: idempotent
    assert img.installed()

    run(purge, 0)
    assert not img.data.exists() and not any(u.exists() for u in img.units)
    assert not img.wants.is_symlink()


@needs_root
def test_offline_lifecycle_of_a_command_sandbox(tmp_path: Path) -> None:
    lifecycle(tmp_path, "job", "--enable -- /usr/bin/sleep 600")


@needs_root
def test_offline_lifecycle_of_a_unit_sandbox(tmp_path: Path) -> None:
    lifecycle(tmp_path, "demo", "demo.service --enable")
