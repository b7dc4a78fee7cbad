#!/usr/bin/env bash
# Make the source tarball dist/sandbox-service-VERSION.tar.gz (top directory sandbox-service-VERSION/)
# from the files git knows about: tracked files, plus new files not yet added that .gitignore does not
# exclude (so a tarball made from a working tree has every module the working tree imports).  Files
# deleted in the working tree are left out.  VERSION comes from pyproject.toml.
#
# Usage: scripts/make-dist.sh [OUTDIR]      (default: dist/ in the repository)
# Prints the tarball's path.  Reproducible: sorted names, owner root, and every mtime set to the last
# commit's time (or SOURCE_DATE_EPOCH when set).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
outdir=${1:-$repo/dist}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
name=sandbox-service-$version
tarball=$outdir/$name.tar.gz
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

list=$(mktemp)
trap 'rm -f "$list"' EXIT
git ls-files -z --cached --others --exclude-standard --deduplicate \
    | while IFS= read -r -d '' f; do
        [[ -e $f || -L $f ]] && printf '%s\0' "$f"
    done | LC_ALL=C sort -z >"$list"
if [[ ! -s $list ]]; then
    echo "make-dist: git lists no files in $repo" >&2
    exit 1
fi

tar --create --no-recursion --null --transform="s,^,$name/," --sort=name --mtime="@$epoch" \
    --owner=0 --group=0 --numeric-owner --mode='u+rwX,go+rX,go-w' --format=gnu --files-from="$list" \
    | gzip -n -9 >"$tarball.tmp"
mv "$tarball.tmp" "$tarball"
echo "$tarball"
