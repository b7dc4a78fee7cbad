#!/usr/bin/env bash
# Build the RPMs (sandbox-service and sandbox-service-rpm-macros) from the source tarball.
#
# Usage: packaging/build-rpm.sh [OUTDIR]      (default: dist/ in the repository)
# Makes OUTDIR/sandbox-service-VERSION.tar.gz (scripts/make-dist.sh), runs rpmbuild in a throwaway
# _topdir (never ~/rpmbuild) and leaves OUTDIR/NAME-VERSION-RELEASE.noarch.rpm.  Prints the RPMs' paths.
#
# rpmbuild runs with --nodeps: the spec's BuildRequires are Fedora's package names, which the rpm
# database of a Debian machine does not know (it is empty: dpkg owns the system).  The build tools
# themselves come from apt (scripts/install-deps.sh: rpm, selinux-policy-dev, python3-pip,
# python3-setuptools, python3-wheel, make).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
outdir=${1:-$repo/dist}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

for need in rpmbuild /usr/share/selinux/devel/Makefile; do
    if ! command -v "$need" >/dev/null && [[ ! -e $need ]]; then
        echo "build-rpm: $need is missing; install the build dependencies with: make deps" >&2
        exit 1
    fi
done

tarball=$("$repo/scripts/make-dist.sh" "$outdir")
top=$(mktemp -d "${TMPDIR:-/tmp}/sandbox-service-rpmbuild.XXXXXX")
trap 'rm -rf "$top"' EXIT

rpmbuild -bb --nodeps \
    --define "_topdir $top" \
    --define "_sourcedir $(dirname "$tarball")" \
    --define "_rpmdir $outdir" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    "$repo/packaging/sandbox-service.spec" >"$top/build.log" 2>&1 || {
    cat "$top/build.log" >&2
    echo "build-rpm: rpmbuild failed (log above)" >&2
    exit 1
}
sed -n 's/^Wrote: //p' "$top/build.log"
