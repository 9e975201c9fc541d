#!/bin/sh
# Install what luagent needs to build, test and benchmark, from Debian packages.
# Only packages that are missing are installed, so a ready machine costs nothing.
#
# LuaJIT: we use OpenResty's maintained branch (libluajit2-5.1-dev) rather than
# the 2022 snapshot in libluajit-5.1-dev: it carries the upstream fixes since then
# and the same C API. The two packages conflict; either builds luagent.
set -e

PACKAGES="build-essential pkg-config libevent-dev libluajit2-5.1-dev luajit2 memcached \
python3-pytest python3-pymemcache libmemcached-tools nutcracker valgrind \
clang libclang-rt-14-dev libssl-dev openssl python3-prometheus-client"

# Clients that speak memcached's binary protocol (tests/integration/
# test_binary_clients.py): pylibmc, PHP's memcached extension (sessions),
# Ruby's Dalli 3.0 (binary only), and Node with npm for memjs, which npm
# installs into build/clients/ (git-ignored) below.
BINARY_CLIENT_PACKAGES="python3-pylibmc php-cli php-memcached ruby ruby-dalli"
MEMJS="memjs@1.3.2"
PACKAGES="$PACKAGES $BINARY_CLIENT_PACKAGES"

# make deb and its test (tests/integration/test_deb.py): Debian's packaging
# tools, and adduser, which the package depends on. Its build dependencies
# are in the lists above.
DEB_PACKAGES="debhelper dpkg-dev adduser"
# The status page's test loads the page in a headless browser
# (tests/integration/test_status_page.py).
BROWSER_PACKAGES="chromium"
PACKAGES="$PACKAGES $DEB_PACKAGES $BROWSER_PACKAGES"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        # Either LuaJIT flavour satisfies the build (luajit2 only adds the CLI).
        if [ "$p" = libluajit2-5.1-dev ] && dpkg-query -W -f='${Status}' libluajit-5.1-dev 2>/dev/null | grep -q "install ok installed"; then
            continue
        fi
        missing="$missing $p"
    fi
done

# Node may come from another source than Debian's package: the command counts.
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing packages:$missing (run as root to install them)" >&2
        exit 1
    fi
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

cd "$(dirname "$0")/.." || exit 1
if [ ! -f build/clients/node_modules/memjs/package.json ]; then
    echo "deps: installing $MEMJS into build/clients"
    mkdir -p build/clients
    (cd build/clients && npm install --no-audit --no-fund --silent "$MEMJS" >/dev/null)
fi
