"""The "raw" side of the benchmarks: shell commands that make a sandbox by hand, the way an admin would
with cp, chown and printf, writing the very files the tool writes (rendered by the tool's own code for
the sandbox's name and ID range) and doing nothing the tool does not.

Per sandbox: the root's base directories and usr-merge links; the host paths the tool copies, with
``cp -a --parents``, owned by the sandbox's range (``chown -hR`` to its root, then each entry the host
gives another owner to that owner's place in the range); the pristine copy of the /etc paths
(``base/``, what upgrade merges against); the launcher and its settings; the spec and the unit files.
The host accounts of many sandboxes are appended to passwd, group, shadow and gshadow at once.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from sandbox_service import render, specfile
from sandbox_service.discover.host import usr_layout
from sandbox_service.identity import IdMap, account_comment, account_name
from sandbox_service.isolation import LAUNCHER, LAUNCHER_DIR
from sandbox_service.spec import SandboxSpec
from sandbox_service.tree import BASE_DIRS, BASE_LINKS
from tests.box import SystemdBox

SANDBOX_BASE = "/var/lib/sandbox-service"
REPO = Path(__file__).resolve().parent.parent
LAUNCHER_COPY = "/run/bench-launch"  # the launcher's source, copied once per script from the checkout


def tool(box: SystemdBox) -> list[str]:
    """The tool of this checkout in the box (not whatever an editable install of it points at)."""
    return ["/usr/bin/env", f"PYTHONPATH={REPO}", *box.python_argv, "-m", "sandbox_service"]


def template_spec(box: SystemdBox, create_args: Sequence[str]) -> SandboxSpec:
    """What `create rawtpl ARGS` would make in the box (its --dry-run --json), as a spec."""
    argv = [*tool(box), "create", "rawtpl", "--dry-run", "--json", *create_args]
    files = json.loads(box.run(argv).stdout)["files"]
    text = next(t for p, t in files.items() if p.endswith("/rawtpl/sandbox.yaml"))
    return specfile.loads(text)


def for_name(template: SandboxSpec, name: str, id_base: int | None) -> SandboxSpec:
    return replace(template, name=name, id_base=id_base)


def foreign_owners(box: SystemdBox, copies: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entries of the copied host paths (in the box's root) that are not root's: (path, uid, gid)."""
    out: list[tuple[str, int, int]] = []
    for top in copies:
        base = box.path(top)
        entries = [base]
        if base.is_dir() and not base.is_symlink():
            for dirpath, dirnames, filenames in os.walk(base):
                entries += [Path(dirpath) / n for n in dirnames + filenames]
        for entry in entries:
            st = entry.lstat()
            if st.st_uid or st.st_gid:
                out.append(("/" + str(entry.relative_to(box.merged)), st.st_uid, st.st_gid))
    return out


def prologue() -> list[str]:
    return ["set -eu", "umask 022", f"cp {shlex.quote(str(render.LAUNCHER_SOURCE))} {LAUNCHER_COPY}"]


def make_lines(
    spec: SandboxSpec,
    owners: Sequence[tuple[str, int, int]],
    *,
    launcher: bool = True,
    static_units: bool = False,
) -> list[str]:
    """The commands that make sandbox `spec` (not its account, not the reload, not the start).
    Without `launcher`, its ExecStart= runs the program directly (to measure the launcher's share)."""
    q = shlex.quote
    layout = usr_layout(Path("/"))  # the boxes are overlays of trees with the host's usr layout
    dirs = [rel for rel, _mode in BASE_DIRS] + [link.name for link in layout if link.target is None]
    modes: dict[int, list[str]] = {}
    for rel, mode in BASE_DIRS:
        if mode != 0o755:
            modes.setdefault(mode, []).append(rel)
    links = [*BASE_LINKS, *((link.name, link.target) for link in layout if link.target is not None)]
    top = f"{SANDBOX_BASE}/{spec.name}"
    root = f"{top}/root"
    etc_copies = [c for c in spec.copies if c.startswith("/etc/")]
    lines = [f"mkdir -p {q(root)}", f"cd {q(root)}", f"mkdir {' '.join(map(q, dirs))}"]
    lines += [f"chmod {mode:o} {' '.join(map(q, rels))}" for mode, rels in modes.items()]
    lines += [f"ln -s {q(str(target))} {q(rel)}" for rel, target in links]
    lines.append("cd /")
    lines.append(f"cp -a --parents {' '.join(map(q, spec.copies))} {q(root)}/")
    if spec.id_base is not None:
        ids = IdMap(spec.id_base)
        lines.append(f"chown -hR {ids.to_host(0)}:{ids.to_host(0)} {q(root)} && chown root:root {q(root)}")
        lines += [f"chown -h {ids.to_host(u)}:{ids.to_host(g)} {q(root + p)}" for p, u, g in owners]
    lines.append(
        f"mkdir -m 700 {q(top)}/base && cp -a --parents {' '.join(map(q, etc_copies))} {q(top)}/base/"
    )
    files = {
        str(p): t for p, t in render.render(spec).items() if static_units or p.name not in render.STATIC_UNITS
    }
    tree = render.tree_files(spec)
    if tree:
        lines.append(f"mkdir {q(root + LAUNCHER_DIR)} && cp {LAUNCHER_COPY} {q(root + LAUNCHER)}")
        files.update({root + path: text for path, text in tree.items() if path != LAUNCHER})
    files[f"{top}/sandbox.yaml"] = specfile.dumps(spec)
    for path, text in files.items():
        if not launcher and path.endswith(f"/sandbox-{spec.name}.service"):
            text = direct_exec(text, spec)
        lines.append(f"printf '%s' {q(text)} > {q(path)}")  # printf is built in: no process
    return lines


def account_lines(specs: Sequence[SandboxSpec]) -> list[str]:
    """One append to each of passwd, group, shadow and gshadow for the accounts of all these sandboxes."""
    entries: dict[str, list[str]] = {"passwd": [], "group": [], "shadow": [], "gshadow": []}
    for spec in specs:
        if spec.id_base is None:
            continue
        account, base = account_name(spec.name), spec.id_base
        entries["passwd"].append(
            f"{account}:x:{base}:{base}:{account_comment(spec.name)}:/nonexistent:/usr/sbin/nologin"
        )
        entries["group"].append(f"{account}:x:{base}:")
        entries["shadow"].append(f"{account}:!:19000:0:99999:7:::")
        entries["gshadow"].append(f"{account}:!::")
    return [
        f"printf '%s\\n' {' '.join(map(shlex.quote, lines))} >> /etc/{path}"
        for path, lines in entries.items()
        if lines
    ]


def direct_exec(unit: str, spec: SandboxSpec) -> str:
    """The service unit with ExecStart= running the program itself instead of through the launcher."""
    cmd = spec.service.exec_start[0]
    out = []
    for line in unit.splitlines(keepends=True):
        if line.startswith("ExecStart="):
            line = f"ExecStart={cmd.path} {' '.join(cmd.argv[1:])}\n"
        out.append(line)
    return "".join(out)
