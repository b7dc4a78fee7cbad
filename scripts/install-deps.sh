#!/usr/bin/env bash
# Install everything the project's tests and demo need on a Debian 12 machine,
# and the development virtualenv at .venv.  Idempotent, and quick when nothing
# is missing.  Run as root.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

packages=(
    systemd systemd-container libsystemd-dev pkg-config gcc python3-dev python3-venv
    python3-selinux nginx-light apache2 curl iproute2 selinux-policy-dev rpm groff-base
    busybox-static make semodule-utils zsh fish python3-pip python3-setuptools python3-wheel
    # the Debian packages: their build (make deb) and, for the tests that install them into the box,
    # what they depend on
    debhelper dh-python pybuild-plugin-pyproject python3-all lintian
    python3-typer python3-pystemd python3-jinja2 python3-yaml
    # the second systemd of the box tests: a Debian 13 tree (scripts/build-trixie.sh)
    debootstrap debian-archive-keyring
    # the fault-injection tests stop the tool at each of its steps (strace -e inject=...:signal=KILL)
    strace
)

# Services installed by apt (nginx, apache2, ...) must not be started on this
# machine: the tests run them inside throwaway containers only, and a host copy
# would hold their ports and state.  invoke-rc.d asks policy-rc.d first, and
# exit status 101 means "action forbidden".  An existing policy is left as is.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# Written by sandbox-service scripts/install-deps.sh: no service starts during apt.\nexit 101\n' \
        >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
fi

# The service corpus: stock services the tool must wrap unmodified, and the clients their probes use.
# tests/corpus.py is the one list (standard library only, so the system python3 reads it).  They are
# test fixtures on this machine, never run on it (see quiet_corpus below).
if ! command -v python3 >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update && apt-get install -y --no-install-recommends python3
fi
corpus_list() {
    local out
    out=$(python3 tests/corpus.py "$1") && [[ -n $out ]] || { echo "install-deps: tests/corpus.py $1 failed" >&2; exit 1; }
    printf '%s\n' "$out"
}
mapfile -t corpus_packages < <(corpus_list packages)
((${#corpus_packages[@]})) || exit 1
packages+=("${corpus_packages[@]}")

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${packages[@]}"
fi

# The corpus services are fixtures for the tests, which start each one inside a throwaway box booted
# over this machine's root: none may start when such a box boots (several want port 53 or 8080, and
# they slow the boot down).  Disable, on this file system, every unit and init script of the corpus
# packages and of the dependencies that enable units of their own (tests/corpus.py quiet-packages,
# checked by tests/test_corpus_box.py in a freshly booted box): native units with their sockets,
# timers and paths through systemctl --root, and init scripts through update-rc.d, whose S links
# would make systemd-sysv-generator pull the generated units into multi-user.target.  Done on every
# run (it is quick and idempotent), so an interrupted install or a package upgrade cannot leave one on.
mapfile -t quiet_packages < <(corpus_list quiet-packages)
((${#quiet_packages[@]})) || exit 1
quiet_corpus() {
    local path name units=() scripts=()
    while read -r path; do
        name=${path##*/}
        case $path in
            /lib/systemd/system/*.* | /usr/lib/systemd/system/*.*)
                # Only real unit files: aliases (smb.service -> smbd.service) go with their unit.
                case $name in *.service | *.socket | *.timer | *.path | *.target) ;; *) continue ;; esac
                [[ ${path%/*} == */systemd/system && -f $path && ! -L $path ]] && units+=("$name")
                ;;
            /etc/init.d/*) [[ -f $path ]] && scripts+=("$name") ;;
        esac
    done < <(dpkg-query -L "${quiet_packages[@]}" 2>/dev/null || true)
    if ((${#units[@]})); then
        systemctl --root=/ --quiet --no-reload disable "${units[@]}" >/dev/null 2>&1 \
            || echo "install-deps: systemctl --root=/ disable failed for some corpus units" >&2
    fi
    for name in "${scripts[@]}"; do
        update-rc.d "$name" disable >/dev/null 2>&1 || echo "install-deps: update-rc.d $name disable failed" >&2
    done
}
quiet_corpus

if [[ ! -x .venv/bin/python ]]; then
    # System site packages: Debian's python3-selinux has no PyPI build.
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.deps-stamp
if [[ ! $stamp -nt pyproject.toml ]]; then
    # --upgrade-strategy eager: the newest dependencies from the index, as pip gives them to users,
    # rather than the older ones Debian installs for its own package (python3-typer is 0.7); the tests
    # that install the wheel and the .deb into a box run against Debian's.
    .venv/bin/pip install --quiet --disable-pip-version-check --upgrade --upgrade-strategy eager -e '.[test]'
    touch "$stamp"
fi

# The policy module test links against a full base policy. Unpack Debian's selinux-policy-default into
# .cache/ instead of installing it: installed, it would set up a policy store on this machine (and in
# every systemd box booted over its root).
policy_cache=.cache/selinux-policy
if [[ ! -e $policy_cache/usr/share/selinux/default/base.pp.bz2 ]]; then
    mkdir -p "$policy_cache"
    (cd "$policy_cache" && apt-get download selinux-policy-default >/dev/null && dpkg-deb -x selinux-policy-default_*.deb .) \
        || echo "install-deps: could not unpack selinux-policy-default; the policy link test will be skipped" >&2
fi

# The Debian 13 tree the box tests boot as their second systemd (257); cached in .cache/trixie.
bash scripts/build-trixie.sh
