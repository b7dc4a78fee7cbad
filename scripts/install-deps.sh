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
