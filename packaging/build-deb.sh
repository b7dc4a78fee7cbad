#!/usr/bin/env bash
# Build the Debian packages (sandbox-service and dh-sandbox-service) from the source tarball.
#
# Usage: packaging/build-deb.sh [OUTDIR]      (default: dist/ in the repository)
# Makes OUTDIR/sandbox-service-VERSION.tar.gz (scripts/make-dist.sh), unpacks it in a throwaway
# directory as Debian's orig tarball, puts packaging/debian/ there as debian/ (upstream keeps its
# packaging under packaging/, the RPM spec beside it, so a distribution's own debian/ never clashes
# with it), runs dpkg-buildpackage (source and binaries, unsigned), then lintian.  Leaves the .deb,
# .dsc and the source tarballs in OUTDIR and prints the .deb paths.  Fails when lintian reports an
# error or a warning that packaging/debian/*lintian-overrides does not explain.
#
# The build dependencies come from apt (scripts/install-deps.sh): debhelper, dh-python,
# pybuild-plugin-pyproject, python3-all, selinux-policy-dev, lintian.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Debian's own tools and Python only: a python3 earlier in PATH (a virtualenv, pyenv) would build for
# another interpreter than the one the package depends on.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
outdir=${1:-$repo/dist}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

for need in dpkg-buildpackage dh pybuild lintian /usr/share/selinux/devel/Makefile; do
    if ! command -v "$need" >/dev/null && [[ ! -e $need ]]; then
        echo "build-deb: $need is missing; install the build dependencies with: make deps" >&2
        exit 1
    fi
done

tarball=$("$repo/scripts/make-dist.sh" "$outdir")
version=$(basename "$tarball" .tar.gz)
version=${version#sandbox-service-}
top=$(mktemp -d "${TMPDIR:-/tmp}/sandbox-service-debbuild.XXXXXX")
trap 'rm -rf "$top"' EXIT

cp "$tarball" "$top/sandbox-service_$version.orig.tar.gz"
tar -xzf "$tarball" -C "$top"
src=$top/sandbox-service-$version
cp -a "$src/packaging/debian" "$src/debian"
changelog=$(cd "$src" && dpkg-parsechangelog -S Version)
if [[ ${changelog%-*} != "$version" ]]; then
    echo "build-deb: packaging/debian/changelog says $changelog, pyproject.toml $version" >&2
    exit 1
fi

(cd "$src" && dpkg-buildpackage -us -uc -sa) >"$top/build.log" 2>&1 || {
    cat "$top/build.log" >&2
    echo "build-deb: dpkg-buildpackage failed (log above)" >&2
    exit 1
}
changes=$top/sandbox-service_${changelog}_$(dpkg --print-architecture).changes
lintian --allow-root --info --display-experimental --fail-on error,warning "$changes" >"$top/lintian.log" 2>&1 || {
    cat "$top/lintian.log" >&2
    echo "build-deb: lintian found problems (above)" >&2
    exit 1
}
if [[ -s $top/lintian.log ]]; then
    cat "$top/lintian.log" >&2
fi

for f in "$top"/*.deb "$top"/*.dsc "$top"/*.debian.tar.* "$top"/*.orig.tar.gz; do
    cp "$f" "$outdir/"
done
for f in "$top"/*.deb; do
    echo "$outdir/$(basename "$f")"
done
