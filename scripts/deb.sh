#!/bin/sh
# make deb: build luagent's Debian package with dpkg-buildpackage and debhelper.
#
#   sh scripts/deb.sh [DIR]     (DIR: build/deb by default)
#
# The sources are copied to DIR/luagent-VERSION/ with scripts/debian/ as its
# debian/ directory, and the package is built there, so the work tree is left
# as it was. The last line printed is the .deb's path,
# DIR/luagent_VERSION_ARCH.deb; the build's output is in DIR/build.log.
# The version is LUAGENT_VERSION from include/luagent.h.
set -e
cd "$(dirname "$0")/.."

dir=${1:-build/deb}
version=$(sed -n 's/^#define LUAGENT_VERSION *"\([^"]*\)".*/\1/p' include/luagent.h)
arch=$(dpkg --print-architecture)
if [ -z "$version" ]; then
    echo "deb: no LUAGENT_VERSION in include/luagent.h" >&2
    exit 1
fi
src="$dir/luagent-$version"

rm -rf "$dir"
mkdir -p "$src"
cp -R Makefile README.md src include lua examples docs scripts "$src"/
rm -rf "$src/scripts/debian"
cp -R scripts/debian "$src/debian"

# The changelog carries the version (and the date every file in the package
# gets): the last commit's date when the tree is a git checkout, else now.
when=$(git log -1 --format=%ct 2>/dev/null || date +%s)
cat > "$src/debian/changelog" <<END
luagent ($version) unstable; urgency=medium

  * Built from the luagent source tree by make deb.

 -- luagent <luagent@localhost>  $(date -R -u -d "@$when")
END

# A package is always a plain build: make's own variables from an outer make
# (SAN=1, V=1, a jobserver) stay out of it.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES LUAGENT_DEPS_READY SAN LTO
log="$(cd "$dir" && pwd)/build.log"
echo "deb: building luagent $version in $src (log: $log)"
if ! (cd "$src" && dpkg-buildpackage -b -us -uc -j2) > "$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "deb: dpkg-buildpackage failed (log: $log)" >&2
    exit 1
fi
echo "$dir/luagent_${version}_$arch.deb"
