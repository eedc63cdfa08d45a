#!/usr/bin/env bash
# `make deb`: builds the Debian package (debian/) with dpkg-buildpackage -b
# -us -uc in a copy of the tree, so the results land in OUTDIR and the
# package's own `make clean` never touches the tree's build/.
# Usage: scripts/deb.sh [--lintian] [OUTDIR]     (OUTDIR default: build/deb)
#   --lintian   then run lintian on the .deb; fails on an error (warnings and
#               the rest are printed)
# The copy holds the files git knows (tracked, or untracked and not ignored),
# so neither .env nor build/ goes into it; outside git, the tree without
# .git, build/ and .env*. Prints the path of the .deb last. DEB_BUILD_OPTIONS
# is passed through (nocheck skips the unit tests).
set -euo pipefail

lintian=0
if [ "${1:-}" = --lintian ]; then lintian=1; shift; fi
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)

for tool in dpkg-buildpackage dh; do
	command -v "$tool" >/dev/null ||
		{ echo "deb: $tool not found: run scripts/deps.sh deb (as root)" >&2; exit 1; }
done

version=$(cd "$root" && dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
# dpkg-buildpackage writes into the parent directory of the tree: OUTDIR.
src=$out/neonfcgi-$version
rm -rf "$src"
mkdir -p "$src"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$root" && git ls-files -z --cached --others --exclude-standard) |
		(cd "$root" && xargs -0 -r tar -cf - --no-recursion --) | tar -C "$src" -xf -
else
	tar -C "$root" -cf - --exclude=./.git --exclude=./build --exclude='./.env*' . | tar -C "$src" -xf -
fi

rm -f "$out"/neonfcgi_"$version"_* "$out"/neonfcgi-dbgsym_"$version"_*
echo "deb: building neonfcgi $version in $src" >&2
(cd "$src" && dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1 ||
	{ tail -n 40 "$out/build.log" >&2; echo "deb: dpkg-buildpackage failed (log: $out/build.log)" >&2; exit 1; }
deb=$out/neonfcgi_${version}_$arch.deb
[ -f "$deb" ] || { echo "deb: $deb was not built (log: $out/build.log)" >&2; exit 1; }
rm -rf "$src"

if [ "$lintian" = 1 ]; then
	command -v lintian >/dev/null ||
		{ echo "deb: lintian not found: run scripts/deps.sh deb (as root)" >&2; exit 1; }
	echo "deb: lintian $deb" >&2
	lintian --fail-on error --display-info "$deb" >&2 ||
		{ echo "deb: lintian reports errors" >&2; exit 1; }
fi
echo "$deb"
