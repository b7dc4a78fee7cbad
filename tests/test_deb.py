"""The Debian packages (make deb: packaging/build-deb.sh, packaging/debian/) and the maintainer-script
snippets of their debhelper add-on, dh_sandbox_service.

The packages are built once per session (tests/packagebuild.py) and inspected with dpkg-deb and
lintian.  The add-on runs from the source tree on scratch debhelper trees; the snippets it writes are
run as dpkg runs maintainer scripts (`sh -e -c SCRIPT postinst configure OLD-VERSION`, ...): with a
fake sandbox-service that logs its arguments (which command runs when, and that nothing fails the
script), and with the real tool on an image tree through DPKG_ROOT (offline, as `dpkg --root` without a
chroot).  tests/test_install_box.py installs the packages into the box and runs them online.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.packagebuild import DEB_VERSION, REPO, VERSION, Debs, data_files
from tests.test_rpm_macros import Image, image

DEBIAN = REPO / "packaging" / "debian"
DH = DEBIAN / "dh"
TOOL = "/usr/bin/sandbox-service"
SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="not a Debian system")


def listing(deb: Path) -> set[str]:
    out = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(out)) as tar:
        return {"/" + m.name.removeprefix("./") for m in tar.getmembers() if not m.isdir()}


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
    ).stdout


def control_file(deb: Path, name: str, tmp: Path) -> str:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp)], check=True)
    return (tmp / name).read_text()


# -- the packages ---------------------------------------------------------------------------------


def test_changelog_version_is_pyproject_version() -> None:
    out = subprocess.run(
        ["dpkg-parsechangelog", "-l", str(DEBIAN / "changelog"), "-S", "Version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == DEB_VERSION


def test_files_are_in_standard_places(debs: Debs) -> None:
    files = listing(debs.main)
    site = "/usr/lib/python3/dist-packages"
    expected = {
        "/usr/bin/sandbox-service",
        f"{site}/sandbox_service/cli.py",
        f"{site}/sandbox_service-{VERSION}.dist-info/METADATA",
        "/lib/systemd/system/sandbox.slice",
        "/lib/systemd/system/sandbox.target",
        "/usr/share/bash-completion/completions/sandbox-service",
        "/usr/share/zsh/vendor-completions/_sandbox-service",
        "/usr/share/fish/vendor_completions.d/sandbox-service.fish",
        "/usr/share/selinux/packages/sandbox_service.pp",
        "/usr/share/man/man1/sandbox-service.1.gz",
        "/usr/share/man/man5/sandbox-service.yaml.5.gz",
    }
    expected |= {f"{site}/{p.relative_to(REPO)}" for p in REPO.glob("sandbox_service/**/*.py")}
    expected |= {f"/usr/share/sandbox-service/{f}" for f in data_files()}
    assert expected - files == set()
    # the data is in one place: moved out of the Python package, not copied
    assert not any(f.startswith(f"{site}/sandbox_service/data") for f in files)
    assert not any(f.startswith(("/usr/local", "/etc/systemd", "/usr/lib/python3.")) for f in files), files


def test_dependencies(debs: Debs) -> None:
    depends = {d.strip().split()[0] for d in field(debs.main, "Depends").split(",")}
    assert {"systemd", "python3-typer", "python3-pystemd", "python3-jinja2", "python3-yaml"} <= depends
    assert not any("dbus" in d for d in depends), depends  # nothing the code does not import
    assert field(debs.main, "Architecture").strip() == "all"
    assert "dh-sequence-sandbox-service" in field(debs.helper, "Provides")


def test_helper_package(debs: Debs) -> None:
    assert listing(debs.helper) >= {
        "/usr/bin/dh_sandbox_service",
        "/usr/share/perl5/Debian/Debhelper/Sequence/sandbox_service.pm",
        "/usr/share/debhelper/autoscripts/postinst-sandbox-service",
        "/usr/share/debhelper/autoscripts/prerm-sandbox-service",
        "/usr/share/debhelper/autoscripts/postrm-sandbox-service",
        "/usr/share/man/man1/dh_sandbox_service.1.gz",
    }


def test_maintainer_scripts_are_guarded(debs: Debs, tmp_path: Path) -> None:
    for name in ("postinst", "postrm"):
        script = control_file(debs.main, name, tmp_path)
        assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0
        assert script.rstrip().endswith("exit 0")
        calls = [
            ln.strip() for ln in script.splitlines() if ln.strip().startswith(("semodule", "load_policy"))
        ]
        assert calls and all(c.endswith("|| true") for c in calls), calls
    # sandbox.target is neither enabled nor started by the package (the tool enables it when needed)
    postinst = control_file(debs.main, "postinst", tmp_path)
    assert "deb-systemd-helper debian-installed 'sandbox.target'" in postinst  # only if the admin enabled it
    assert "deb-systemd-invoke" not in postinst


def test_lintian_is_clean(debs: Debs) -> None:
    """build-deb.sh already fails on errors and warnings; here the finished packages are checked again,
    and every override says why."""
    done = subprocess.run(
        ["lintian", "--allow-root", "--fail-on", "error,warning", str(debs.main), str(debs.helper)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [ln for ln in done.stdout.splitlines() if ln[:2] in ("E:", "W:")] == []
    for overrides in DEBIAN.glob("**/*lintian-overrides"):
        lines = overrides.read_text().splitlines()
        for i, line in enumerate(lines):
            if line and not line.startswith("#"):
                assert i > 0 and lines[i - 1].startswith("#"), f"{overrides.name}: {line} is not explained"


# -- dh_sandbox_service ----------------------------------------------------------------------------


def source_tree(base: Path, config: str, package: str = "demo") -> Path:
    """A debhelper source tree for one binary package with debian/PACKAGE.sandbox-service."""
    debian = base / "src" / "debian"
    debian.mkdir(parents=True)
    (debian / "control").write_text(
        f"Source: {package}\nSection: misc\nPriority: optional\nMaintainer: T <t@example.org>\n"
        "Build-Depends: debhelper-compat (= 13)\n\n"
        f"Package: {package}\nArchitecture: all\nDepends: ${{misc:Depends}}\nDescription: demo\n demo\n"
    )
    (debian / "changelog").write_text(
        f"{package} (1.0) unstable; urgency=medium\n\n  * demo\n\n"
        " -- T <t@example.org>  Sun, 29 Nov 2026 12:00:00 +0000\n"
    )
    (debian / f"{package}.sandbox-service").write_text(config)
    return debian.parent


def dh_sandbox_service(src: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{DH}:/usr/sbin:/usr/bin:/sbin:/bin",
        "DH_AUTOSCRIPTDIR": str(DH),
        "DH_VERBOSE": "0",
    }
    return subprocess.run(
        [str(DH / "dh_sandbox_service")], cwd=src, env=env, capture_output=True, text=True, check=False
    )


def snippets(tmp_path: Path, config: str) -> dict[str, str]:
    """The maintainer-script snippets dh_sandbox_service writes for a config file."""
    src = source_tree(tmp_path, config)
    done = dh_sandbox_service(src)
    assert done.returncode == 0, done.stderr
    out = {s: (src / f"debian/demo.{s}.debhelper").read_text() for s in ("postinst", "prerm", "postrm")}
    assert "misc:Depends=sandbox-service" in (src / "debian/demo.substvars").read_text()
    return out


def maintscript(
    script: str, *args: str, shell: str = "sh", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shell, "-e", "-c", script, "maintscript", *args],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})},
    )


def test_create_arguments(tmp_path: Path) -> None:
    s = snippets(
        tmp_path,
        "# a comment\nweb nginx.service --memory 256M --now --enable\n\njob --now -- /usr/bin/prog --now\n",
    )
    post = s["postinst"]
    root = '${DPKG_ROOT:+--root "$DPKG_ROOT"}'
    assert f"{TOOL} {root} create web --unit nginx.service --memory 256M --enable --exist-ok ||" in post
    assert "create job --exist-ok -- /usr/bin/prog --now ||" in post
    assert post.count("# Automatically added by dh_sandbox_service") == 2
    for script in s.values():
        assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0
    assert "create web --exist-ok ||" in snippets(tmp_path / "2", "web\n")["postinst"]
    odd = snippets(tmp_path / "3", "web -- /usr/bin/echo it's $HOME\n")["postinst"]
    assert "create web --exist-ok -- /usr/bin/echo 'it'\\''s' '$HOME' ||" in odd


@pytest.mark.parametrize("config", ["WEB nginx.service\n", "../etc\n", "web\nweb other.service\n"])
def test_bad_config_fails_the_build(tmp_path: Path, config: str) -> None:
    done = dh_sandbox_service(source_tree(tmp_path, config))
    assert done.returncode != 0
    assert "dh_sandbox_service: error:" in done.stderr


class Fake:
    """A sandbox-service that logs its arguments and exits as configured; `exists` makes the files the
    snippets test for (the spec, the unit)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.log = base / "calls"
        self.tool = base / "bin" / "sandbox-service"
        self.root = base / "img"
        self.tool.parent.mkdir(parents=True)
        self.root.mkdir()
        self.configure()

    def configure(self, status: int = 0, create: int | None = None) -> None:
        self.tool.write_text(
            f'#!/bin/sh\necho "$*" >>{self.log}\n'
            f"case \"$*\" in *' create '*|create*) exit {status if create is None else create} ;; esac\n"
            f"exit {status}\n"
        )
        self.tool.chmod(0o755)

    def exists(self, name: str, unit: bool = True) -> None:
        spec = self.root / f"var/lib/sandbox-service/{name}/sandbox.yaml"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(f"name: {name}\n")
        if unit:
            u = self.root / f"etc/systemd/system/sandbox-{name}.service"
            u.parent.mkdir(parents=True, exist_ok=True)
            u.write_text("")

    def calls(self) -> list[str]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        self.log.unlink()
        return lines

    def use(self, script: str) -> str:
        assert TOOL in script
        return script.replace(TOOL, str(self.tool))


@pytest.fixture()
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path / "fake")


@pytest.mark.parametrize("shell", SHELLS)
def test_offline_commands(tmp_path: Path, fake: Fake, shell: str) -> None:
    """With DPKG_ROOT (dpkg --root without chroot) the tool gets --root and nothing is started."""
    s = {k: fake.use(v) for k, v in snippets(tmp_path, "web nginx.service --now --enable\n").items()}
    env = {"DPKG_ROOT": str(fake.root)}
    r = f"--root {fake.root}"

    def run(name: str, *args: str) -> list[str]:
        done = maintscript(s[name], *args, shell=shell, env=env)
        assert done.returncode == 0, done.stderr
        return fake.calls()

    # first install: created (--now dropped: offline nothing starts); the fake made nothing, so no more
    assert run("postinst", "configure", "") == [f"{r} create web --unit nginx.service --enable --exist-ok"]
    fake.exists("web")
    # upgrade: its unit exists, so create is a no-op and upgrade re-renders, without restart offline
    assert run("postinst", "configure", "0.9") == [
        f"{r} create web --unit nginx.service --enable --exist-ok",
        f"{r} upgrade web --no-restart",
    ]
    for args in (("upgrade", "1.1"), ("deconfigure",), ("failed-upgrade", "0.9")):
        assert run("prerm", *args) == []
    for args in (("remove",), ("upgrade", "1.1"), ("disappear",)):
        assert run("postrm", *args) == []
    assert run("prerm", "remove") == [f"{r} delete web --keep-data"]
    assert run("postrm", "purge") == [f"{r} delete web"]
    for args in (("abort-upgrade", "1.0"), ("triggered", "x")):
        assert run("postinst", *args) == []


def test_reinstall_after_remove_and_other_settings(tmp_path: Path, fake: Fake) -> None:
    s = {k: fake.use(v) for k, v in snippets(tmp_path, "web nginx.service --now\n").items()}
    env = {"DPKG_ROOT": str(fake.root)}
    r = f"--root {fake.root}"
    fake.exists("web", unit=False)  # removed, data kept: create brings the units back, nothing else
    assert maintscript(s["postinst"], "configure", "1.0", env=env).returncode == 0
    assert fake.calls() == [f"{r} create web --unit nginx.service --exist-ok"]
    fake.configure(create=4)  # it exists with other settings: kept, units re-rendered from its spec
    assert maintscript(s["postinst"], "configure", "", env=env).returncode == 0
    assert fake.calls() == [
        f"{r} create web --unit nginx.service --exist-ok",
        f"{r} upgrade web --no-restart",
    ]
    fake.configure(create=3)  # any other failure: reported by the tool, nothing else is tried
    assert maintscript(s["postinst"], "configure", "", env=env).returncode == 0
    assert fake.calls() == [f"{r} create web --unit nginx.service --exist-ok"]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("status", [1, 4, 70])
def test_failures_never_fail_the_script(tmp_path: Path, fake: Fake, shell: str, status: int) -> None:
    s = {k: fake.use(v) for k, v in snippets(tmp_path, "web nginx.service --now --enable\n").items()}
    fake.exists("web")
    fake.configure(status=status)
    for name, args in (
        ("postinst", ("configure", "")),
        ("postinst", ("configure", "0.9")),
        ("prerm", ("remove",)),
        ("postrm", ("purge",)),
    ):
        done = maintscript(s[name], *args, shell=shell, env={"DPKG_ROOT": str(fake.root)})
        assert done.returncode == 0, (name, args, done.stderr)
    assert fake.calls()  # the commands did run, and failed


def test_nothing_runs_without_the_tool(tmp_path: Path, fake: Fake) -> None:
    s = snippets(tmp_path, "web nginx.service --now\n")
    fake.exists("web")
    missing = tmp_path / "nonexistent" / "sandbox-service"
    for name, args in (("postinst", ("configure", "")), ("prerm", ("remove",))):
        done = maintscript(s[name].replace(TOOL, str(missing)), *args, env={"DPKG_ROOT": str(fake.root)})
        assert done.returncode == 0 and done.stderr == "", done.stderr
    # purge without the tool: the data stays, and the script says so
    done = maintscript(s["postrm"].replace(TOOL, str(missing)), "purge", env={"DPKG_ROOT": str(fake.root)})
    assert done.returncode == 0 and "stays" in done.stderr
    assert (fake.root / "var/lib/sandbox-service/web/sandbox.yaml").exists()
    assert fake.calls() == []


# -- the real tool on an image tree (DPKG_ROOT: offline) ---------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox-service create/delete need root")


def real_tool(base: Path) -> Path:
    """The tool of this tree, as an executable at a path the snippets can run."""
    wrapper = base / "sandbox-service"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m sandbox_service "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@needs_root
@pytest.mark.parametrize(
    "name, config", [("demo", "demo.service --enable"), ("job", "--enable -- /usr/bin/sleep 600")]
)
def test_offline_lifecycle(tmp_path: Path, name: str, config: str) -> None:
    """Install, upgrade, remove (data kept), reinstall, purge: files appear and go, and every script
    exits 0 (run with -e)."""
    root = image(tmp_path)
    tool = real_tool(tmp_path)
    s = {k: v.replace(TOOL, str(tool)) for k, v in snippets(tmp_path / "gen", f"{name} {config}\n").items()}
    img = Image(root, name)
    env = {"DPKG_ROOT": str(root)}

    def run(script: str, *args: str) -> None:
        done = maintscript(s[script], *args, env=env)
        assert done.returncode == 0, done.stderr
        assert "internal error" not in done.stderr and "error:" not in done.stderr, done.stderr

    run("postinst", "configure", "")  # install
    assert img.installed(), "create did not write the sandbox into the image"
    assert img.enabled()
    assert not Path("/var/lib/sandbox-service", name).exists()  # the host is not touched
    before = img.snapshot()
    run("prerm", "upgrade", "1.1")
    run("postrm", "upgrade", "1.1")
    assert img.snapshot() == before
    img.units[0].write_text(img.units[0].read_text() + "# stale\n")
    run("postinst", "configure", "1.0")  # upgrade: the units are rendered anew from the spec
    assert img.installed() and img.enabled() and "# stale" not in img.units[0].read_text()

    run("prerm", "remove")  # removal: units and links go, the data stays
    run("postrm", "remove")
    assert not any(u.exists() for u in img.units) and not img.wants.is_symlink()
    assert img.spec.is_file()

    run("postinst", "configure", "1.0")  # reinstall: the kept sandbox comes back
    assert img.installed() and img.enabled()
    run("prerm", "remove")
    run("postrm", "purge")  # purge: the data goes
    assert not img.data.exists() and not any(u.exists() for u in img.units)
    assert not img.wants.is_symlink()
