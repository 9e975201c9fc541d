#!/bin/sh
# Install what luagent needs, from Debian packages (and the npm client of the
# real-client suite from npm), for one purpose at a time:
#
#   sh scripts/deps.sh build    compile ./luagent            (make, make install)
#   sh scripts/deps.sh run      build + memcached            (make run)
#   sh scripts/deps.sh test     build + every test's tools   (make test)
#   sh scripts/deps.sh bench    build + make bench's tools
#   sh scripts/deps.sh fuzz     build + clang's libFuzzer    (make fuzz)
#   sh scripts/deps.sh deb      build + debhelper            (make deb)
#   sh scripts/deps.sh          all of the above
#
# Only what is missing is installed, so a ready machine costs nothing. The
# Makefile runs this before it reads any package flags (pkg-config).
#
# LuaJIT: we use OpenResty's maintained branch (libluajit2-5.1-dev) rather than
# the 2022 snapshot in libluajit-5.1-dev: it carries the upstream fixes since then
# and the same C API. The two packages conflict; either builds luagent.
set -e
cd "$(dirname "$0")/.."

# Package lists, one purpose each.
BUILD_PACKAGES="build-essential pkg-config libevent-dev libluajit2-5.1-dev libssl-dev"
RUN_PACKAGES="memcached libmemcached-tools"
TEST_PACKAGES="luajit2 memcached python3-pytest python3-pymemcache libmemcached-tools
nutcracker openssl python3-prometheus-client man-db"
# The real-client suites (tests/clients/, test_binary_clients.py): one client
# library per line; pylibmc, PHP's memcached extension (sessions) and Dalli 3.0
# (binary only) also speak the binary protocol. php-memcache is PHP's older
# extension (its own protocol code, not libmemcached's); gomemcache is Go source
# that the suite builds offline with Debian's Go (GOPATH /usr/share/gocode).
CLIENT_PACKAGES="python3-pylibmc
libcache-memcached-fast-perl
libcache-memcached-perl
php-cli php-memcached php-memcache
ruby ruby-dalli
nodejs npm
golang-go golang-github-bradfitz-gomemcache-dev"
# gnuplot draws bench/results/*.svg from the runs' tables (scripts/plot.sh).
BENCH_PACKAGES="memcached nutcracker valgrind openssl gnuplot-nox"
FUZZ_PACKAGES="clang libclang-rt-14-dev"
# make deb and its test (tests/integration/test_deb.py): Debian's packaging
# tools, and adduser, which the package depends on (its build dependencies are
# BUILD_PACKAGES).
DEB_PACKAGES="debhelper dpkg-dev adduser"
# The status page's test loads the page in a headless browser
# (tests/integration/test_status_page.py).
BROWSER_PACKAGES="chromium"

# npm packages of the suite, pinned by tests/clients/package-lock.json and
# installed into build/clients/node_modules (git-ignored).
NPM_DIR=build/clients

purpose=${1:-all}
case "$purpose" in
    build) wanted="$BUILD_PACKAGES" ;;
    run)   wanted="$BUILD_PACKAGES $RUN_PACKAGES" ;;
    test)  wanted="$BUILD_PACKAGES $TEST_PACKAGES $CLIENT_PACKAGES $DEB_PACKAGES \
$BROWSER_PACKAGES" ;;
    bench) wanted="$BUILD_PACKAGES $BENCH_PACKAGES" ;;
    fuzz)  wanted="$BUILD_PACKAGES $FUZZ_PACKAGES" ;;
    deb)   wanted="$BUILD_PACKAGES $DEB_PACKAGES" ;;
    all)   wanted="$BUILD_PACKAGES $RUN_PACKAGES $TEST_PACKAGES $CLIENT_PACKAGES \
$BENCH_PACKAGES $FUZZ_PACKAGES $DEB_PACKAGES $BROWSER_PACKAGES" ;;
    *)     echo "deps: unknown purpose '$purpose' (build, run, test, bench, fuzz, deb)" >&2; exit 2 ;;
esac

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# A package counts as present when something else already does its job.
satisfied() {
    installed "$1" && return 0
    case "$1" in
        # Either LuaJIT flavour builds luagent (luajit2 only adds the CLI).
        libluajit2-5.1-dev) installed libluajit-5.1-dev ;;
        # Node.js from another source (nodesource, nvm) ships its own npm.
        nodejs|npm) command -v "$1" >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

missing=""
for p in $wanted; do
    case " $missing " in *" $p "*) continue ;; esac
    satisfied "$p" || missing="$missing $p"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing packages:$missing (run as root to install them)" >&2
        exit 1
    fi
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has no package lists yet: install finds nothing without them.
    # Another apt (a second make, unattended upgrades) may hold dpkg's lock:
    # wait for it rather than fail.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    # shellcheck disable=SC2086
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
fi

case "$purpose" in test|all) ;; *) exit 0 ;; esac

# The lock file is copied next to node_modules once npm has installed it, so a
# changed lock file (a new client, a new version) or a broken install installs again.
if ! cmp -s tests/clients/package-lock.json "$NPM_DIR/installed-lock.json" 2>/dev/null; then
    echo "deps: npm: installing tests/clients/package.json into $NPM_DIR"
    rm -rf "$NPM_DIR"
    mkdir -p "$NPM_DIR"
    cp tests/clients/package.json tests/clients/package-lock.json "$NPM_DIR"/
    (cd "$NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp tests/clients/package-lock.json "$NPM_DIR/installed-lock.json"
fi
