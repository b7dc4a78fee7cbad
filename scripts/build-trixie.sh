#!/usr/bin/env bash
# Build the Debian 13 (trixie, systemd 257) tree that tests/box.py boots as its second image, into
# .cache/trixie/root.  Called by scripts/install-deps.sh; run as root.
#
# Cached: nothing happens while .cache/trixie/stamp matches what this script would build (suite,
# mirror, package set, recipe).  A changed list rebuilds.  The build goes into a temporary directory
# beside the cache, renamed into place only when complete, so an interrupted build never leaves a tree
# that looks done.  The boxes never write into the tree: they boot it as the lower layer of an overlay.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

suite=trixie
mirror=http://deb.debian.org/debian
# Bump when the steps after debootstrap change what the tree holds.
recipe=1

packages=(
    # systemd as PID 1, and the system bus the tool talks to; kmod for libkmod, which systemd 257 loads
    # at run time (without it systemd-modules-load.service fails and the box boots "degraded")
    systemd systemd-sysv dbus kmod
    # the tool runs from the checkout with Debian's Python and these Debian packages as its dependencies
    python3 python3-pystemd python3-typer python3-jinja2 python3-yaml python3-selinux
    # the services the tests wrap, and what the tests use inside
    nginx apache2 curl iproute2 procps util-linux busybox-static
    # the fault-injection tests stop the tool at each of its steps (strace -e inject=...:signal=KILL)
    strace
)

cache=.cache/trixie
stamp_text=$(
    printf 'suite %s\nmirror %s\nrecipe %s\n' "$suite" "$mirror" "$recipe"
    printf 'package %s\n' "${packages[@]}" | sort -u
)
if [[ -f $cache/stamp && -d $cache/root ]] && [[ $(<"$cache/stamp") == "$stamp_text" ]]; then
    exit 0
fi

mkdir -p .cache
# One build at a time (two make runs in one checkout).
exec 9>".cache/trixie.lock"
flock 9
if [[ -f $cache/stamp && -d $cache/root ]] && [[ $(<"$cache/stamp") == "$stamp_text" ]]; then
    exit 0 # built by the run we waited for
fi

# Unmount whatever an interrupted debootstrap left mounted below $1 (/proc, /sys, bound device nodes),
# deepest first, so that removing the tree can never reach into them.
unmount_below() {
    local dir mounts
    dir=$(realpath -m "$1")
    mapfile -t mounts < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    for m in "${mounts[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
}

remove_tree() {
    [[ -e $1 ]] || return 0
    unmount_below "$1"
    rm -rf --one-file-system "$1"
}

# Left by an interrupted build (we hold the lock: no other build is running).
for leftover in .cache/trixie.new.* .cache/trixie.old; do
    remove_tree "$leftover"
done

build=.cache/trixie.new.$$
trap 'remove_tree "$build"' EXIT
mkdir -p "$build"

echo "build-trixie: debootstrap $suite into $cache/root (about a minute)" >&2
include=$(
    IFS=,
    echo "${packages[*]}"
)
# debootstrap itself keeps the installed services from starting while it installs them (a policy-rc.d
# that forbids every action and a start-stop-daemon that does nothing, both removed when it is done).
if ! debootstrap --variant=minbase --include="$include" "$suite" "$build/root" "$mirror" >"$build/debootstrap.log" 2>&1; then
    tail -n 30 "$build/debootstrap.log" >&2
    echo "build-trixie: debootstrap failed; the whole log was $build/debootstrap.log (now removed)" >&2
    exit 1
fi
root=$build/root

# Services apt installs later inside a box must not start either, as on the host (install-deps.sh).
printf '#!/bin/sh\n# Written by sandbox-service scripts/build-trixie.sh: no service starts during apt.\nexit 101\n' \
    >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

# The wrapped services stay down at boot: tests start them, or their sandboxes, themselves.
systemctl --root="$root" disable --quiet nginx.service apache2.service

# No identity of this machine in the tree: each box writes its own machine ID and gets its host name
# from systemd-nspawn.  The package cache is not needed to boot.
: >"$root/etc/machine-id"
echo sandbox-service-trixie >"$root/etc/hostname"
rm -f "$root"/var/cache/apt/archives/*.deb

printf '%s\n' "$stamp_text" >"$build/stamp"
rm -f "$build/debootstrap.log"

# Swap the finished tree in.  Between the two renames there is no .cache/trixie, which the next run
# rebuilds: at no point does an incomplete tree sit where the boxes look.
if [[ -e $cache ]]; then
    mv "$cache" .cache/trixie.old
fi
mv "$build" "$cache"
trap - EXIT
remove_tree .cache/trixie.old
echo "build-trixie: $cache/root ready ($(du -sh "$cache/root" | cut -f1))" >&2
