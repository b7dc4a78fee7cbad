"""`make demo`: wrap the host's nginx.service into a sandbox inside a throwaway systemd box, show it
serving a page from its private /var/www on its private network, then remove every trace.

Run as root from the repository (the Makefile installs what it needs first).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.box import SystemdBox, hidden_in_box

REPO = Path(__file__).resolve().parent.parent
TOOL = [sys.executable, "-m", "sandbox_service"]


def step(box: SystemdBox, title: str, argv: list[str], *, input: str | None = None) -> str:
    print(f"\n\033[1m== {title}\033[0m\n$ {shlex.join(argv)}", flush=True)
    done = box.run(argv, input=input, check=False)
    print(done.stdout.rstrip())
    if done.stderr.strip():
        print(done.stderr.rstrip())
    if done.returncode != 0:
        raise SystemExit(f"demo failed at: {title} (exit status {done.returncode})")
    return done.stdout


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the demo needs root: it boots a systemd container (run: sudo make demo)")
    print("Booting a throwaway systemd container over an overlay of this machine's root ...", flush=True)
    binds = [REPO] if hidden_in_box(REPO) else []
    with SystemdBox(read_only_binds=binds) as box:
        print(f"booted in {box.boot_seconds:.1f}s; the host's nginx.service is installed but not running")
        step(
            box,
            "Wrap the host's nginx.service (its unit file stays untouched)",
            [*TOOL, "create", "web", "--unit", "nginx.service", "--memory", "256M", "--publish", "8080:80"],
        )
        step(box, "The generated unit", ["cat", "/etc/systemd/system/sandbox-web.service"])
        page = "<h1>Hello from sandbox web</h1>\n"
        box.run(["mkdir", "-p", "/var/lib/sandbox-service/web/root/var/www/html"])
        step(
            box,
            "Put a page into the sandbox's private /var/www",
            ["tee", "/var/lib/sandbox-service/web/root/var/www/html/index.html"],
            input=page,
        )
        step(box, "Start it with plain systemctl", ["systemctl", "start", "sandbox-web.service"])
        step(box, "Status", [*TOOL, "status", "web"])
        pid = box.run(["systemctl", "show", "-P", "MainPID", "sandbox-web.service"]).stdout.strip()
        step(
            box,
            "HTTP inside the sandbox's own network namespace",
            ["nsenter", "-t", pid, "-n", "curl", "-sS", "http://127.0.0.1/"],
        )
        outside = box.run(["curl", "-sS", "--max-time", "3", "http://127.0.0.1/"], check=False)
        print(
            f"\n== The same address outside the sandbox: {outside.stderr.strip() or outside.stdout.strip()}"
        )
        step(
            box,
            "...but its published port: host :8080 -> port 80 inside, through systemd-socket-proxyd",
            ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:8080/"],
        )
        step(box, "All sandboxes", [*TOOL, "list"])
        step(box, "Stop", [*TOOL, "stop", "web"])
        step(
            box, "Delete: units, slice and /var/lib/sandbox-service/web are removed", [*TOOL, "delete", "web"]
        )
        step(box, "Nothing left", ["sh", "-c", "ls /etc/systemd/system | grep sandbox-web || echo none"])
    print("\nTore the container down. Demo finished.")


if __name__ == "__main__":
    main()
