"""Unit tests of the offline unit-file reader (sandbox_service/discover/unitfile.py) on crafted trees.

Expected values are what systemd 252 reports over D-Bus for the same files; tests/test_unitfile_box.py
checks many of the same cases against a real systemd.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox_service.discover.unitfile import (
    USEC_INFINITY,
    load_unit_settings,
    parse_timespan,
    split_assignments,
    unit_search_path,
)
from sandbox_service.errors import InvalidInput, NotFound
from sandbox_service.systemd import RawExec, UnitSettings

ETC = "/etc/systemd/system"
LIB = "/usr/lib/systemd/system"
SEC = 1_000_000
ALL_CAPS = 2**64 - 1


class Tree:
    """An image tree under tmp_path, with the helpers the tests need."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, path: str, text: str) -> Path:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    def link(self, path: str, target: str) -> None:
        where = self.root / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        where.symlink_to(target)

    def unit(self, name: str, service: str, unit: str = "", where: str = ETC) -> None:
        head = f"[Unit]\n{unit}\n" if unit else ""
        self.write(f"{where}/{name}", f"{head}[Service]\n{service}\n")

    def load(self, name: str, warnings: list[str] | None = None) -> UnitSettings:
        return load_unit_settings(self.root, name, warnings)


@pytest.fixture()
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def cmd(path: str, *argv: str, flags: tuple[str, ...] = ()) -> RawExec:
    return RawExec(path=path, argv=argv or (path,), flags=flags)


# -- lookup: search path, fragments, aliases, masks, templates ------------------------------------------


def test_search_path_order_follows_the_trees_systemd_build(tree: Tree) -> None:
    plain = unit_search_path(tree.root)
    assert plain[:5] == (
        "/etc/systemd/system.control",
        "/run/systemd/system.control",
        "/run/systemd/transient",
        "/run/systemd/generator.early",
        "/etc/systemd/system",
    )
    assert plain[-4:] == (
        "/usr/local/lib/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
        "/run/systemd/generator.late",
    )
    # Debian 12 builds systemd with /lib/systemd/system, searched before /usr/lib (its pkg-config says so)
    tree.write(
        "/usr/share/pkgconfig/systemd.pc",
        "root_prefix=\nrootprefix=${root_prefix}\nsystemd_system_unit_dir=${rootprefix}/lib/systemd/system\n",
    )
    debian = unit_search_path(tree.root)
    assert debian[-4:] == (
        "/usr/local/lib/systemd/system",
        "/lib/systemd/system",
        "/usr/lib/systemd/system",
        "/run/systemd/generator.late",
    )


def test_defaults_of_a_minimal_unit(tree: Tree) -> None:
    tree.unit("min.service", "ExecStart=/bin/true", where=LIB)
    u = tree.load("min.service")
    assert u == UnitSettings(
        id="min.service",
        names=("min.service",),
        load_state="loaded",
        fragment_path=f"{LIB}/min.service",
        dropin_paths=(),
        description="min.service",
        type="simple",
        exec_start_pre=(),
        exec_start=(cmd("/bin/true"),),
        exec_start_post=(),
        exec_reload=(),
        exec_stop=(),
        exec_stop_post=(),
        pid_file="",
        user="",
        group="",
        supplementary_groups=(),
        environment=(),
        environment_files=(),
        working_directory="",
        umask=0o022,
        kill_mode="control-group",
        kill_signal=15,
        timeout_start_usec=90 * SEC,
        timeout_stop_usec=90 * SEC,
        restart="no",
        restart_usec=100_000,
        remain_after_exit=False,
        state_directories=(),
        runtime_directories=(),
        logs_directories=(),
        cache_directories=(),
        configuration_directories=(),
        read_write_paths=(),
        dynamic_user=False,
        root_directory="",
        root_image="",
        bus_name="",
        capability_bounding_set=ALL_CAPS,
        ambient_capabilities=0,
    )


def test_first_directory_on_the_search_path_wins(tree: Tree) -> None:
    tree.unit("web.service", "ExecStart=/bin/lib", where=LIB)
    tree.unit("web.service", "ExecStart=/bin/local", where="/usr/local/lib/systemd/system")
    assert tree.load("web.service").exec_start == (cmd("/bin/local"),)
    tree.unit("web.service", "ExecStart=/bin/etc")
    u = tree.load("web.service")
    assert u.exec_start == (cmd("/bin/etc"),) and u.fragment_path == f"{ETC}/web.service"


def test_refuses_names_that_are_not_service_units(tree: Tree) -> None:
    for bad in ("nginx", "web.socket", "a/b.service", "", ".service", "x y.service"):
        with pytest.raises(InvalidInput):
            tree.load(bad)
    with pytest.raises(InvalidInput, match="template"):
        tree.load("getty@.service")


def test_missing_unit_is_not_found_even_if_the_host_has_it(tree: Tree) -> None:
    with pytest.raises(NotFound, match="not found") as err:
        tree.load("nginx.service")
    assert err.value.hint and "list-unit-files" in err.value.hint


@pytest.mark.parametrize("how", ["symlink", "empty file", "symlink to empty file"])
def test_masked_unit(tree: Tree, how: str) -> None:
    tree.unit("web.service", "ExecStart=/bin/web", where=LIB)
    if how == "symlink":
        tree.link(f"{ETC}/web.service", "/dev/null")
    elif how == "empty file":
        tree.write(f"{ETC}/web.service", "")
    else:
        tree.write("/opt/empty", "")
        tree.link(f"{ETC}/web.service", "/opt/empty")
    with pytest.raises(NotFound, match="masked"):
        tree.load("web.service")


def test_alias_symlink_resolves_to_the_target_and_names_both(tree: Tree) -> None:
    tree.unit("real.service", "ExecStart=/bin/real", where=LIB)
    tree.link(f"{ETC}/alias.service", f"{LIB}/real.service")  # absolute: resolved inside the tree
    tree.link(f"{ETC}/chain.service", "alias.service")  # an alias of an alias
    tree.link(f"{ETC}/multi-user.target.wants/real.service", f"{LIB}/real.service")  # not a name
    for asked in ("real.service", "alias.service", "chain.service"):
        u = tree.load(asked)
        assert u.id == "real.service"
        assert u.names == ("real.service", "alias.service", "chain.service")
        assert u.fragment_path == f"{LIB}/real.service"


def test_self_alias_is_ignored_and_linked_unit_keeps_the_link_path(tree: Tree) -> None:
    tree.unit("self.service", "ExecStart=/bin/self", where=LIB)
    tree.link(f"{ETC}/self.service", f"{LIB}/self.service")
    assert tree.load("self.service").fragment_path == f"{LIB}/self.service"
    # a link to a file outside the search path is a "linked unit file": the link is the fragment
    tree.write("/opt/app/app-v2.service", "[Service]\nExecStart=/opt/app/run\n")
    tree.link(f"{ETC}/app.service", "/opt/app/app-v2.service")
    u = tree.load("app.service")
    assert (u.id, u.fragment_path, u.exec_start) == (
        "app.service",
        f"{ETC}/app.service",
        (cmd("/opt/app/run"),),
    )
    tree.link(f"{ETC}/broken.service", "/opt/app/missing.service")
    with pytest.raises(NotFound):
        tree.load("broken.service")


def test_absolute_symlinks_never_reach_the_host(tree: Tree) -> None:
    # /etc/systemd/system/x.service -> /lib/systemd/system/x.service must mean the tree's /lib
    tree.link("/lib", "usr/lib")
    tree.unit("x.service", "ExecStart=/bin/in-tree", where=LIB)
    tree.link(f"{ETC}/y.service", "/lib/systemd/system/x.service")
    assert tree.load("y.service").exec_start == (cmd("/bin/in-tree"),)


def test_template_instance_falls_back_to_the_template(tree: Tree) -> None:
    tree.unit("getty@.service", "ExecStart=/sbin/agetty %I", unit="Description=Getty on %i")
    tree.link(f"{ETC}/serial-getty@.service", "getty@.service")
    u = tree.load("getty@tty1.service")
    assert u.id == "getty@tty1.service"
    assert u.fragment_path == f"{ETC}/getty@.service"
    assert set(u.names) == {"getty@tty1.service", "serial-getty@tty1.service"}
    assert u.description == "Getty on tty1"
    assert u.exec_start == (cmd("/sbin/agetty", "/sbin/agetty", "tty1"),)
    # an instance with its own file uses it
    tree.unit("getty@tty2.service", "ExecStart=/sbin/own")
    assert tree.load("getty@tty2.service").fragment_path == f"{ETC}/getty@tty2.service"


# -- drop-ins ------------------------------------------------------------------------------------------


def env_of(u: UnitSettings) -> dict[str, str]:
    return dict(e.split("=", 1) for e in u.environment)


def test_dropins_sorted_by_name_and_higher_directories_mask_lower(tree: Tree) -> None:
    tree.unit("web.service", "ExecStart=/bin/web\nEnvironment=FROM=fragment", where=LIB)
    tree.write(f"{LIB}/web.service.d/10-a.conf", "[Service]\nEnvironment=A=lib")
    tree.write(f"{ETC}/web.service.d/10-a.conf", "[Service]\nEnvironment=A=etc")  # masks the /usr/lib one
    tree.write(f"{LIB}/web.service.d/20-b.conf", "[Service]\nEnvironment=B=lib")
    tree.write("/run/systemd/system/web.service.d/05-c.conf", "[Service]\nEnvironment=FROM=run")
    tree.link(f"{ETC}/web.service.d/30-gone.conf", "/dev/null")  # masks, and is listed
    tree.write(f"{LIB}/web.service.d/30-gone.conf", "[Service]\nEnvironment=GONE=1")
    tree.write(f"{ETC}/web.service.d/.40-hidden.conf", "[Service]\nEnvironment=HIDDEN=1")
    tree.write(f"{ETC}/web.service.d/50-backup.conf~", "[Service]\nEnvironment=BACKUP=1")
    tree.write(f"{ETC}/web.service.d/60-not-conf", "[Service]\nEnvironment=NOTCONF=1")
    u = tree.load("web.service")
    assert u.dropin_paths == (
        "/run/systemd/system/web.service.d/05-c.conf",
        f"{ETC}/web.service.d/10-a.conf",
        f"{LIB}/web.service.d/20-b.conf",
        f"{ETC}/web.service.d/30-gone.conf",
    )
    assert u.environment == ("FROM=run", "A=etc", "B=lib")  # replaced in place, in file order


def test_dropin_precedence_between_name_prefix_alias_and_type_dirs(tree: Tree) -> None:
    """As systemd 252 does it: the unit's own names (its name, then its dash prefixes, longest first)
    on every search directory, then its aliases', then the unit type's "service.d"."""
    tree.unit("a-b-c.service", "ExecStart=/bin/x", where=LIB)
    tree.link(f"{ETC}/other.service", "a-b-c.service")
    files = {
        f"{LIB}/a-b-c.service.d/10.conf": "T1=lib-name",
        f"{ETC}/a-.service.d/10.conf": "T1=etc-prefix",  # wins: /etc before /usr/lib, any kind
        f"{ETC}/a-b-c.service.d/20.conf": "T2=etc-name",  # wins: the name before its prefixes
        f"{ETC}/a-b-.service.d/20.conf": "T2=etc-prefix",
        f"{ETC}/a-b-.service.d/30.conf": "T3=long-prefix",  # wins: longer prefix first
        f"{ETC}/a-.service.d/30.conf": "T3=short-prefix",
        f"{LIB}/a-b-c.service.d/40.conf": "T4=lib-name",  # wins: own names before aliases
        f"{ETC}/other.service.d/40.conf": "T4=etc-alias",
        f"{LIB}/a-.service.d/50.conf": "T5=lib-prefix",  # wins: the type's directory comes last
        f"{ETC}/service.d/50.conf": "T5=etc-type",
        f"{ETC}/other.service.d/60.conf": "T6=alias",
        f"{ETC}/service.d/70.conf": "T7=type",
        f"{ETC}/a-b-c-.service.d/80.conf": "T8=not-a-prefix",
        f"{ETC}/b-c.service.d/80.conf": "T8=not-a-prefix-either",
    }
    for path, assignment in files.items():
        tree.write(path, f"[Service]\nEnvironment={assignment}\n")
    u = tree.load("other.service")
    assert env_of(u) == {
        "T1": "etc-prefix",
        "T2": "etc-name",
        "T3": "long-prefix",
        "T4": "lib-name",
        "T5": "lib-prefix",
        "T6": "alias",
        "T7": "type",
    }
    assert len(u.dropin_paths) == 7


def test_dropins_of_a_template_instance(tree: Tree) -> None:
    tree.unit("app-t@.service", "ExecStart=/bin/app %i")
    tree.link(f"{ETC}/app-alias@.service", "app-t@.service")
    files = {
        f"{ETC}/app-t@one-two.service.d/10.conf": "A=instance",  # wins over the template's
        f"{ETC}/app-t@.service.d/10.conf": "A=template",
        f"{ETC}/app-t@.service.d/20.conf": "B=template",  # wins over the prefix's
        f"{ETC}/app-.service.d/20.conf": "B=prefix",
        f"{ETC}/app-alias@.service.d/30.conf": "C=alias-template",
        f"{ETC}/app-t@one-.service.d/40.conf": "D=not-read",  # prefixes come from before the "@"
        f"{ETC}/app-t-.service.d/40.conf": "D=not-read-either",
    }
    for path, assignment in files.items():
        tree.write(path, f"[Service]\nEnvironment={assignment}\n")
    u = tree.load("app-t@one-two.service")
    assert env_of(u) == {"A": "instance", "B": "template", "C": "alias-template"}
    assert set(u.names) == {"app-t@one-two.service", "app-alias@one-two.service"}


def test_dropin_paths_name_the_real_directory(tree: Tree) -> None:
    # systemd opens each drop-in directory with its symlinks resolved and reports that path
    tree.write(
        "/usr/share/pkgconfig/systemd.pc", "systemd_system_unit_dir=/lib/systemd/system\n"
    )  # Debian 12
    tree.link("/lib", "usr/lib")
    tree.unit("web.service", "ExecStart=/bin/web", where=LIB)
    tree.write(f"{LIB}/web.service.d/x.conf", "[Service]\nUser=www\n")
    u = tree.load("web.service")
    assert u.fragment_path == "/lib/systemd/system/web.service"
    assert u.dropin_paths == (f"{LIB}/web.service.d/x.conf",)


def test_reset_lists_with_an_empty_assignment(tree: Tree) -> None:
    tree.unit(
        "web.service",
        "ExecStart=/bin/old\nExecStartPre=/bin/pre\nEnvironment=A=1\nStateDirectory=old\n"
        "SupplementaryGroups=adm\nReadWritePaths=/srv\nEnvironmentFile=/etc/old\nUser=old",
        where=LIB,
    )
    tree.write(
        f"{ETC}/web.service.d/override.conf",
        "[Service]\nExecStart=\nExecStart=/bin/new\nExecStartPre=\nEnvironment=\nEnvironment=B=2\n"
        "StateDirectory=\nStateDirectory=new\nSupplementaryGroups=\nReadWritePaths=\nEnvironmentFile=\n"
        "User=\n",
    )
    u = tree.load("web.service")
    assert u.exec_start == (cmd("/bin/new"),) and u.exec_start_pre == ()
    assert u.environment == ("B=2",) and u.state_directories == ("new",)
    assert (u.supplementary_groups, u.read_write_paths, u.environment_files, u.user) == ((), (), (), "")


# -- syntax --------------------------------------------------------------------------------------------


def test_continuation_lines_and_comments() -> None:
    text = (
        "# comment \\\n"  # a comment never continues
        "[Service]\n"
        "ExecStart=/bin/echo a \\\n"
        "# a comment inside a continuation is skipped\n"
        "  b \\\n"
        "; so is this one \\\\\n"
        "  c\n"
        "Environment=X=1\\\\\n"  # an escaped backslash does not continue
        "Description=trailing \\ \n"  # nor does a backslash followed by a space
        "  KEY  =  spaced value  \n"
        "no equals sign\n"
        "Last=one \\"  # a continuation at the end of the file ends there
    )
    got = [(a.section, a.key, a.value, a.line) for a in split_assignments(text)]
    assert got == [
        ("Service", "ExecStart", "/bin/echo a    b    c", 3),
        ("Service", "Environment", "X=1\\\\", 8),
        ("Service", "Description", "trailing \\", 9),
        ("Service", "KEY", "spaced value", 10),
        ("Service", "Last", "one", 12),
    ]
    with pytest.raises(InvalidInput):
        split_assignments("[Service\nA=b\n")


def test_assignments_outside_sections_and_unknown_sections_are_ignored(tree: Tree) -> None:
    tree.write(
        f"{ETC}/web.service",
        "User=outside\n[X-Vendor]\nUser=vendor\n[Install]\nUser=install\n[Service]\nExecStart=/bin/w\n",
    )
    assert tree.load("web.service").user == ""


def test_exec_prefixes_become_systemds_flags(tree: Tree) -> None:
    tree.unit(
        "web.service",
        "Type=oneshot\n"
        "ExecStart=-/bin/a\n"
        "ExecStart=@/bin/b argv0 x\n"
        "ExecStart=:/bin/c\n"
        "ExecStart=+/bin/d\n"
        "ExecStart=!/bin/e\n"
        "ExecStart=!!/bin/f\n"
        "ExecStart=-:+/bin/g\n"
        "ExecStart=:-@!/bin/h zero\n",
    )
    assert tree.load("web.service").exec_start == (
        cmd("/bin/a", flags=("ignore-failure",)),
        cmd("/bin/b", "argv0", "x"),
        cmd("/bin/c", flags=("no-env-expand",)),
        cmd("/bin/d", flags=("privileged",)),
        cmd("/bin/e", flags=("no-setuid",)),
        cmd("/bin/f", flags=("ambient",)),
        cmd("/bin/g", flags=("ignore-failure", "privileged", "no-env-expand")),
        cmd("/bin/h", "zero", flags=("ignore-failure", "no-setuid", "no-env-expand")),
    )


def test_exec_quoting_escapes_and_separators(tree: Tree) -> None:
    tree.unit(
        "web.service",
        'ExecStartPre=/usr//sbin/./nginx -g \'daemon on; master_process on;\' "a b"c \'d\'"e" ""\n'
        'ExecStartPre=/bin/esc \\x41 \\101 \\u00e9 \\n\\t \\s "q\\"q" \\q trailing\\ \n'
        "ExecStartPre=/bin/one ; /bin/two \\; x;y ; relative arg\n"
        "ExecStart=/bin/start",
    )
    assert tree.load("web.service").exec_start_pre == (
        RawExec(
            "/usr/sbin/nginx",
            ("/usr//sbin/./nginx", "-g", "daemon on; master_process on;", "a bc", "de", ""),
            (),
        ),
        RawExec("/bin/esc", ("/bin/esc", "A", "A", "\u00e9", "\n\t", " ", 'q"q', "\\q", "trailing\\"), ()),
        cmd("/bin/one"),
        RawExec("/bin/two", ("/bin/two", ";", "x;y"), ()),
        RawExec("relative", ("relative", "arg"), ()),  # looked up in PATH when run
    )


@pytest.mark.parametrize(
    "line",
    [
        'ExecStart=/bin/x "unbalanced',
        "ExecStart=bin/x",
        "ExecStart=/bin/dir/",
        "ExecStart=-",
        "ExecStart=@/bin/x",
        "ExecStart=/bin/a\nExecStart=/bin/b",  # two for a simple service
        "Type=dbus\nExecStart=/bin/a",  # no BusName=
        "Type=oneshot\nExecStart=/bin/a\nRestart=always",
        "Type=simple",  # nothing to run
        "ExecStop=/bin/stop",
    ],
)
def test_settings_systemd_refuses_to_load(tree: Tree, line: str) -> None:
    tree.unit("bad.service", line)
    with pytest.raises(NotFound, match="bad-setting"):
        tree.load("bad.service")


def test_a_bad_exec_line_with_the_dash_prefix_is_ignored(tree: Tree) -> None:
    tree.unit("ok.service", 'ExecStart=/bin/ok\nExecStartPre=/bin/pre ; -/bin/x "unbalanced\nExecStop=-bin/x')
    warnings: list[str] = []
    u = tree.load("ok.service", warnings)
    assert u.exec_start_pre == (cmd("/bin/pre"),) and u.exec_stop == ()
    assert len(warnings) == 2


def test_environment_words(tree: Tree) -> None:
    tree.unit(
        "web.service",
        "ExecStart=/bin/w\n"
        "Environment=\"A=1 2\" B=x\\x41 'C=q r' 9BAD=1 NOEQ E= F=%n%% G=\"a\"'b'c\n"
        "Environment=B=second H=tab\\tnl\\n\n"
        "Environment=I=kept J=\\q K=lost\n"  # an error stops the line; words before it stay
        'Environment=L="unbalanced\n',
    )
    warnings: list[str] = []
    u = tree.load("web.service", warnings)
    assert u.environment == (
        "A=1 2",
        "B=second",
        "C=q r",
        "E=",
        "F=web.service%",
        "G=abc",
        "H=tab\tnl\n",
        "I=kept",
    )
    assert sum("ignoring" in w for w in warnings) == 4


def test_environment_files_pid_file_and_paths(tree: Tree) -> None:
    tree.unit(
        "web.service",
        "ExecStart=/bin/w\n"
        "EnvironmentFile=-/etc/default/%p\nEnvironmentFile=/etc/with space//x\nEnvironmentFile=relative\n"
        "PIDFile=/var/run/web//web.pid\n"
        "WorkingDirectory=-/srv/%p/\n"
        "RootDirectory=/srv/root/\nRootImage=/img/%N.raw\n"
        'ReadWritePaths=-/var/lib/x +/data "/with space" /a/../b /c/./d/ relative\n'
        'ReadWritePaths=/e "unbalanced\n',
    )
    u = tree.load("web.service")
    assert u.environment_files == (("/etc/default/web", True), ("/etc/with space/x", False))
    assert u.pid_file == "/run/web/web.pid"
    assert u.working_directory == "!/srv/web"  # D-Bus marks "missing is fine" with "!"
    assert (u.root_directory, u.root_image) == ("/srv/root", "/img/web.raw")
    assert u.read_write_paths == ("-/var/lib/x", "+/data", "/with space", "/c/d", "/e")


def test_pid_file_relative_and_working_directory_home(tree: Tree) -> None:
    tree.unit("web.service", "ExecStart=/bin/w\nPIDFile=web.pid\nWorkingDirectory=~")
    u = tree.load("web.service")
    assert (u.pid_file, u.working_directory) == ("/run/web.pid", "~")


def test_user_groups_and_dynamic_user(tree: Tree) -> None:
    tree.unit("web.service", "ExecStart=/bin/w\nUser=www-data\nGroup=%p\nSupplementaryGroups=adm a\\ b %u")
    u = tree.load("web.service")
    assert (u.user, u.group, u.supplementary_groups) == ("www-data", "web", ("adm", "a b", "root"))
    tree.unit("dyn-app.service", "ExecStart=/bin/w\nDynamicUser=yes")
    u = tree.load("dyn-app.service")
    assert (u.dynamic_user, u.user, u.group) == (True, "dyn-app", "dyn-app")
    # a prefix that is no valid user name is hashed (value checked against systemd 252)
    tree.unit("ufx.dyn-x.service", "ExecStart=/bin/w\nDynamicUser=on")
    assert tree.load("ufx.dyn-x.service").user == "_du11a7995b095f6008"


def test_execution_directories(tree: Tree) -> None:
    tree.unit(
        "web.service",
        "ExecStart=/bin/w\n"
        'StateDirectory=b a b a/../c /abs private/x "x y" link:target p\\:q %p\n'
        "LogsDirectory=b/c b b-c b/a\n"
        "CacheDirectory=ok bad\\ \n"
        "ConfigurationDirectory=one\nConfigurationDirectory=two\n",
    )
    u = tree.load("web.service")
    assert u.state_directories == ("a", "b", "link", "p:q", "web", "x y")
    assert u.logs_directories == ("b", "b/a", "b/c", "b-c")  # parents first, like systemd's path order
    assert u.cache_directories == ("ok",)
    assert u.configuration_directories == ("one", "two")


def test_scalars(tree: Tree) -> None:
    tree.unit(
        "web.service",
        "ExecStart=/bin/w\nType=notify\nUMask=027\nKillMode=mixed\nKillSignal=SIGQUIT\n"
        "TimeoutSec=1min 30.5s\nTimeoutStopSec=0\nRestart=on-failure\nRestartSec=1.23456789\n"
        "RemainAfterExit=yes\nBusName=org.example.Web\n",
        unit="Description=The %N server",
    )
    u = tree.load("web.service")
    assert (u.type, u.umask, u.kill_mode, u.kill_signal) == ("notify", 0o027, "mixed", 3)
    assert (u.timeout_start_usec, u.timeout_stop_usec) == (90_500_000, USEC_INFINITY)
    assert (u.restart, u.restart_usec, u.remain_after_exit) == ("on-failure", 1_234_567, True)
    assert (u.bus_name, u.description) == ("org.example.Web", "The web server")


def test_invalid_values_are_ignored_keeping_the_previous_value(tree: Tree) -> None:
    tree.unit(
        "web.service",
        "ExecStart=/bin/w\nType=simple\nType=bogus\nUMask=\nUMask=999\nKillSignal=SIGNOPE\nKillMode=all\n"
        "TimeoutStartSec=soon\nRestart=sometimes\nRemainAfterExit=maybe\nBusName=nodots\nUser=a:b\n",
    )
    warnings: list[str] = []
    u = tree.load("web.service", warnings)
    assert (u.type, u.umask, u.kill_signal, u.kill_mode) == ("simple", 0o022, 15, "control-group")
    assert (u.timeout_start_usec, u.restart, u.remain_after_exit, u.bus_name, u.user) == (
        90 * SEC,
        "no",
        False,
        "",
        "",
    )
    assert len(warnings) == 10


@pytest.mark.parametrize(
    "value, signal",
    [("SIGHUP", 1), ("TERM", 15), ("9", 9), ("RTMIN", 34), ("SIGRTMIN+2", 36), ("RTMAX-1", 63)],
)
def test_kill_signal_names_and_numbers(tree: Tree, value: str, signal: int) -> None:
    tree.unit("web.service", f"ExecStart=/bin/w\nKillSignal={value}")
    assert tree.load("web.service").kill_signal == signal


@pytest.mark.parametrize(
    "text, usec",
    [
        ("5", 5 * SEC),
        ("5s", 5 * SEC),
        ("5 s", 5 * SEC),
        ("1min 30s", 90 * SEC),
        ("1min30s", 90 * SEC),
        ("1.5h", 5400 * SEC),
        ("100ms", 100_000),
        ("2m", 120 * SEC),
        ("1M", 2_629_800 * SEC),
        ("1y", 31_557_600 * SEC),
        ("1w 2d", 9 * 86400 * SEC),
        ("10us", 10),
        ("0", 0),
        ("infinity", USEC_INFINITY),
        (" infinity ", USEC_INFINITY),
    ],
)
def test_timespans(text: str, usec: int) -> None:
    assert parse_timespan(text) == usec


@pytest.mark.parametrize("text", ["", "-5s", "5x", "infinity s", "s", "1.2.3"])
def test_invalid_timespans(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timespan(text)


def test_timeout_defaults_oneshot_and_system_conf(tree: Tree) -> None:
    tree.unit("job.service", "Type=oneshot\nExecStart=/bin/job")
    assert tree.load("job.service").timeout_start_usec == USEC_INFINITY  # unless set
    tree.unit("nothing.service", "RemainAfterExit=yes")
    u = tree.load("nothing.service")
    assert (u.type, u.exec_start) == ("oneshot", ())
    tree.unit("bus.service", "BusName=org.example.Bus\nExecStart=/bin/bus")
    assert tree.load("bus.service").type == "dbus"
    tree.write("/etc/systemd/system.conf", "[Manager]\nDefaultTimeoutStartSec=10s\nDefaultRestartSec=3s\n")
    tree.write("/usr/lib/systemd/system.conf.d/x.conf", "[Manager]\nDefaultTimeoutStopSec=20s\n")
    tree.unit("web.service", "ExecStart=/bin/w")
    u = tree.load("web.service")
    assert (u.timeout_start_usec, u.timeout_stop_usec, u.restart_usec) == (10 * SEC, 20 * SEC, 3 * SEC)


def test_capabilities(tree: Tree) -> None:
    tree.unit(
        "web.service",
        "ExecStart=/bin/w\n"
        "CapabilityBoundingSet=CAP_NET_ADMIN cap_sys_admin 3 CAP_UNKNOWN\n"  # the first assignment replaces
        "CapabilityBoundingSet=CAP_CHOWN\n"  # later ones add
        "CapabilityBoundingSet=~CAP_SYS_ADMIN\n"  # "~" takes away
        "AmbientCapabilities=~CAP_NET_RAW\n",  # "~" first: all but these
    )
    u = tree.load("web.service")
    assert u.capability_bounding_set == (1 << 12) | (1 << 3) | 1
    assert u.ambient_capabilities == ALL_CAPS & ~(1 << 13)
    tree.unit(
        "none.service", "ExecStart=/bin/w\nCapabilityBoundingSet=\nAmbientCapabilities=CAP_NET_BIND_SERVICE"
    )
    u = tree.load("none.service")
    assert (u.capability_bounding_set, u.ambient_capabilities) == (0, 1 << 10)


# -- specifiers ----------------------------------------------------------------------------------------


def test_specifiers(tree: Tree) -> None:
    tree.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    tree.write("/etc/os-release", 'ID=debian\nVERSION_ID="12"\n')
    tree.unit(
        "my-app@.service",
        "ExecStart=/bin/echo %n %N %p %P %i %I %f %j %J %%",
        unit="Description=%h %u %U %g %G %t %S %C %L %E %T %V %d %y %Y %m %o %w [%W]",
        where=LIB,
    )
    u = tree.load("my-app@var-lib\\x2dx.service")
    assert u.exec_start[0].argv[1:] == (
        "my-app@var-lib\\x2dx.service",
        "my-app@var-lib\\x2dx",
        "my-app",
        "my/app",
        "var-lib\\x2dx",
        "var/lib-x",
        "/var/lib-x",
        "app",
        "app",
        "%",
    )
    assert u.description.split(" ") == [
        "/root", "root", "0", "root", "0", "/run", "/var/lib", "/var/cache", "/var/log", "/etc", "/tmp",
        "/var/tmp", "/run/credentials/my-app@var-lib\\x2dx.service",
        f"{LIB}/my-app@.service", LIB, "0123456789abcdef0123456789abcdef", "debian", "12", "[]",
    ]  # fmt: skip


def test_specifiers_use_the_id_after_following_aliases(tree: Tree) -> None:
    tree.unit("real.service", "ExecStart=/bin/%n", where=LIB)
    tree.link(f"{ETC}/alias.service", "/usr/lib/systemd/system/real.service")
    assert tree.load("alias.service").exec_start == (cmd("/bin/real.service"),)


def test_plain_unit_filename_specifiers(tree: Tree) -> None:
    tree.unit("ab-cd.service", "ExecStart=/bin/echo [%i] [%I] %f %j")
    assert tree.load("ab-cd.service").exec_start[0].argv[1:] == ("[]", "[]", "/ab/cd", "cd")


@pytest.mark.parametrize("letter", ["H", "l", "b", "v", "a", "s", "m", "Z"])
def test_specifiers_only_the_running_system_knows_are_refused(tree: Tree, letter: str) -> None:
    tree.unit("web.service", f"ExecStart=/bin/w %{letter}")
    with pytest.raises(InvalidInput, match=f"%{letter}"):
        tree.load("web.service")  # (%m: the tree has no /etc/machine-id)


def test_lone_percent_is_refused(tree: Tree) -> None:
    tree.unit("web.service", "ExecStart=/bin/w 100%")
    with pytest.raises(InvalidInput):
        tree.load("web.service")


def test_symlinked_search_directory_is_followed_inside_the_tree(tree: Tree) -> None:
    target = tree.root / "srv/units"
    target.mkdir(parents=True)
    (tree.root / "etc/systemd").mkdir(parents=True)
    os.symlink("/srv/units", tree.root / "etc/systemd/system")
    tree.write("/srv/units/web.service", "[Service]\nExecStart=/bin/w\n")
    assert tree.load("web.service").fragment_path == f"{ETC}/web.service"
