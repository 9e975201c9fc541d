"""
The first build on a bare machine: no make target reads package flags
(pkg-config) before scripts/deps.sh has installed the packages, so `make run`
and `make test` work on the first try, in the order the README gives them.

Each test builds in a copy of the tree, with two stand-ins: the copy's
scripts/deps.sh only notes that it ran (and with STANDIN_DEPS_FAIL set, stops
make there), and a pkg-config first on PATH knows no package until that deps
step has run, as on a machine where they are not installed yet; after it, it
answers as the real pkg-config. Both write what happened to one log.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import HOST, REPO, SANITIZED, RawClient, free_port, try_connect

REAL_PKG_CONFIG = shutil.which("pkg-config") or "/usr/bin/pkg-config"
BUILD_TIMEOUT = 900         # seconds for a whole build of the copy
SAN_ARGS = ["SAN=1"] if SANITIZED else []

DEPS_STANDIN = """#!/bin/sh
echo "deps $*" >> "$STANDIN_LOG"
touch "$STANDIN_STATE/installed"
# As scripts/deps.sh, which installs the npm clients into build/clients.
case "$1" in test|"") mkdir -p build/clients ;; esac
if [ -n "$STANDIN_DEPS_FAIL" ]; then
    echo "deps stand-in: stopping make here" >&2
    exit 1
fi
"""

PKG_CONFIG_STANDIN = """#!/bin/sh
if [ -e "$STANDIN_STATE/installed" ]; then
    echo "pkg-config $*" >> "$STANDIN_LOG"
    exec %s "$@"
fi
echo "pkg-config $* (before deps)" >> "$STANDIN_LOG"
echo "pkg-config stand-in: no package is installed yet" >&2
exit 1
""" % REAL_PKG_CONFIG

PYTHON_STANDIN = """#!/bin/sh
echo "python $*" >> "$STANDIN_LOG"
"""


def copy_tree(dest):
    """The repository's files (tracked, and new ones not ignored), without builds;
    everything but the build directories when the tree is not a git checkout (or
    git is not installed)."""
    p = None
    if shutil.which("git"):
        p = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=REPO, capture_output=True, timeout=60)
    if p is not None and p.returncode == 0:
        for name in p.stdout.decode().split("\0"):
            src = REPO / name
            if name and src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        shutil.copytree(REPO, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", "build", "build-san", "build-fuzz", "luagent", ".build-mode",
            "__pycache__", ".pytest_cache"))


def write_script(path, text):
    path.write_text(text)
    path.chmod(0o755)


class Tree:
    """A copy of the tree with the stand-ins in place."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "tree"
        self.dir.mkdir()
        copy_tree(self.dir)
        self.state = tmp_path / "state"
        self.state.mkdir()
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "standin.log"
        write_script(self.dir / "scripts" / "deps.sh", DEPS_STANDIN)
        write_script(self.bin / "pkg-config", PKG_CONFIG_STANDIN)
        write_script(self.bin / "python", PYTHON_STANDIN)

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "LUAGENT_DEPS_READY",
                            "SAN", "V", "LTO", "CFLAGS")}
        env.update(PATH="%s:%s" % (self.bin, os.environ.get("PATH", "/usr/bin:/bin")),
                   STANDIN_LOG=str(self.log), STANDIN_STATE=str(self.state))
        env.update(extra)
        return env

    def events(self):
        return self.log.read_text().splitlines() if self.log.exists() else []

    def make(self, *args, timeout=BUILD_TIMEOUT, **env):
        return subprocess.run(["make"] + list(args), cwd=self.dir, env=self.env(**env),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def output(p):
    return (p.stdout + p.stderr).decode("utf-8", "replace")[-3000:]


@pytest.mark.parametrize("goal, purpose", [
    (None, "build"), ("all", "build"), ("luagent", "build"), ("install", "build"),
    ("run", "run"), ("test", "test"), ("unit", "test"), ("integration", "test"),
    ("bench", "bench"), ("fuzz", "fuzz"), ("deb", "deb"), ("build/tests/test_md5", "build"),
])
def test_every_target_runs_deps_before_reading_package_flags(tmp_path, goal, purpose):
    tree = Tree(tmp_path)
    p = tree.make(*([goal] if goal else []), timeout=300, STANDIN_DEPS_FAIL="1")
    events = tree.events()
    early = [e for e in events if e.endswith("(before deps)")]
    assert not early, "make %s read package flags before the deps step: %s\n%s" % (
        goal or "", early, output(p))
    assert events and events[0] == "deps %s" % purpose, (
        "make %s: the first thing should be the deps step for %r; log: %s\n%s" % (
            goal or "", purpose, events, output(p)))
    assert p.returncode != 0, "make %s went on after the deps step failed" % (goal or "")


def wait_serving(port, proc, deadline):
    """Until luagent answers `version` on port (the build comes first)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        s = try_connect((HOST, port))
        if s is not None:
            s.close()
            return True
        time.sleep(0.2)
    return False


def test_make_run_serves_on_the_first_try(tmp_path):
    """`make run`, the README's first command, builds from nothing and serves at
    the address it prints."""
    tree = Tree(tmp_path)
    port, mc1, mc2 = free_port(), free_port(), free_port()
    out = open(tmp_path / "make-run.log", "wb")
    run = subprocess.Popen(
        ["make", "run", "V=1", "CFLAGS=-O0 -g", "LTO=", "-j2", "PORT=%d" % port,
         "MC1=%d" % mc1, "MC2=%d" % mc2] + SAN_ARGS,
        cwd=tree.dir, env=tree.env(), stdin=subprocess.DEVNULL, stdout=out,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        serving = wait_serving(port, run, BUILD_TIMEOUT)
        log = (tmp_path / "make-run.log").read_text(errors="replace")
        assert serving, "make run did not serve on %d:\n%s" % (port, log[-3000:])
        assert "127.0.0.1:%d" % port in log, "make run does not print its address"
        assert "running as root" not in log, "make run as root leaves luagent root"
        with RawClient((HOST, port)) as c:
            assert c.call(b"set first 0 0 3\r\nrun\r\n") == b"STORED\r\n"
            assert c.call(b"get first\r\n", "get") == b"VALUE first 0 3\r\nrun\r\nEND\r\n"
    finally:
        # make, scripts/run.sh, both memcached servers and luagent share the
        # session started for make; run.sh stops its children on SIGTERM.
        try:
            os.killpg(run.pid, signal.SIGTERM)
            run.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        except ProcessLookupError:
            run.wait()
        out.close()
    events = tree.events()
    assert not [e for e in events if e.endswith("(before deps)")], events
    assert events[0] == "deps run", events
    compile_lines = [l for l in log.splitlines() if " -c -o " in l and "src/script.c" in l]
    luajit = subprocess.run([REAL_PKG_CONFIG, "--cflags", "luajit"], capture_output=True,
                            timeout=30).stdout.decode().split()
    assert compile_lines and all(f in compile_lines[0].split() for f in luajit), (
        "src/script.c was not compiled with LuaJIT's flags %s: %s" % (luajit, compile_lines))


def test_make_test_works_on_the_first_try(tmp_path):
    """`make test` in a fresh tree builds luagent and the unit tests, runs them
    and reaches pytest (a stand-in here), although the deps step has already
    made build/ (for the npm clients)."""
    tree = Tree(tmp_path)
    p = tree.make("test", "CFLAGS=-O0 -g", "LTO=", "-j2", "PYTHON=%s" % (tree.bin / "python"),
                  *SAN_ARGS)
    assert p.returncode == 0, "make test failed:\n%s" % output(p)
    events = tree.events()
    assert events[0] == "deps test", events
    assert not [e for e in events if e.endswith("(before deps)")], events
    assert any(e.startswith("python -m pytest") and e.endswith("tests/integration")
               for e in events), events


# ----------------------------------------------------------------------------
# scripts/deps.sh on a bare machine, with apt-get, dpkg-query, id and npm
# stood in for: the only programs on PATH are these and the basic tools.
# ----------------------------------------------------------------------------

TOOLS = ["sh", "grep", "cmp", "rm", "mkdir", "cp", "dirname", "cat"]

APT_GET_STANDIN = """#!/bin/sh
echo "apt-get $*" >> "$STANDIN_LOG"
case " $* " in
*" install "*)
    case " $* " in *" npm "*) cp "$STANDIN_STATE/npm" "$(dirname "$0")/npm" ;; esac
    ;;
esac
"""

NPM_STANDIN = """#!/bin/sh
echo "npm $* in $(basename "$PWD")" >> "$STANDIN_LOG"
"""

BARE_DPKG_QUERY = """#!/bin/sh
exit 1
"""


def package_lists():
    """Each *_PACKAGES list of scripts/deps.sh, by name."""
    text = (REPO / "scripts" / "deps.sh").read_text()
    return {m.group(1): m.group(2).split()
            for m in re.finditer(r'^([A-Z]+)_PACKAGES="([^"]*)"', text, re.M)}


def bare_machine(tmp_path, uid):
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "deps.sh", tree / "scripts")
    (tree / "tests" / "clients").mkdir(parents=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copy2(REPO / "tests" / "clients" / f, tree / "tests" / "clients")
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for tool in TOOLS + ["basename"]:
        os.symlink(shutil.which(tool), bin_dir / tool)
    write_script(bin_dir / "apt-get", APT_GET_STANDIN)
    write_script(bin_dir / "dpkg-query", BARE_DPKG_QUERY)
    write_script(bin_dir / "id", "#!/bin/sh\necho %d\n" % uid)
    write_script(state / "npm", NPM_STANDIN)
    log = tmp_path / "standin.log"
    env = {"PATH": str(bin_dir), "STANDIN_LOG": str(log), "STANDIN_STATE": str(state),
           "HOME": str(tmp_path)}
    return tree, env, log


@pytest.mark.parametrize("purpose, lists", [
    ("build", ["BUILD"]), ("run", ["BUILD", "RUN"]),
    ("test", ["BUILD", "TEST", "CLIENT", "DEB", "BROWSER"]),
    ("bench", ["BUILD", "BENCH"]), ("fuzz", ["BUILD", "FUZZ"]), ("deb", ["BUILD", "DEB"]),
])
def test_deps_updates_then_installs_what_a_bare_machine_lacks(tmp_path, purpose, lists):
    tree, env, log = bare_machine(tmp_path, uid=0)
    p = subprocess.run(["sh", str(tree / "scripts" / "deps.sh"), purpose], env=env,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, output(p)
    events = log.read_text().splitlines()
    assert events[0] == "apt-get -o DPkg::Lock::Timeout=600 update -qq", events
    assert events[1].startswith("apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "), events
    lists_by_name = package_lists()
    want = {pkg for name in lists for pkg in lists_by_name[name]}
    assert set(events[1].split()[7:]) == want, events[1]
    npm = [e for e in events if e.startswith("npm ")]
    if purpose == "test":
        assert npm == ["npm ci --no-audit --no-fund --loglevel=error in clients"], events
        assert (tree / "build" / "clients" / "installed-lock.json").read_bytes() == (
            REPO / "tests" / "clients" / "package-lock.json").read_bytes()
        # Once installed, a second run has nothing to do with npm.
        log.write_text("")
        subprocess.run(["sh", str(tree / "scripts" / "deps.sh"), purpose], env=env,
                       capture_output=True, timeout=60)
        assert not [e for e in log.read_text().splitlines() if e.startswith("npm ")]
    else:
        assert npm == [], events


def test_deps_without_root_names_what_is_missing(tmp_path):
    tree, env, log = bare_machine(tmp_path, uid=1000)
    p = subprocess.run(["sh", str(tree / "scripts" / "deps.sh"), "build"], env=env,
                       capture_output=True, timeout=60)
    assert p.returncode == 1
    assert b"libluajit2-5.1-dev" in p.stderr and b"run as root" in p.stderr, p.stderr
    assert not log.exists() or "apt-get" not in log.read_text()


def apt_lists():
    return glob.glob("/var/lib/apt/lists/*_Packages*")


@pytest.mark.skipif(not shutil.which("apt-cache") or not apt_lists(),
                    reason="no Debian package lists to look names up in")
def test_every_package_deps_installs_exists_in_the_archive():
    names = sorted({pkg for pkgs in package_lists().values() for pkg in pkgs})
    p = subprocess.run(["apt-cache", "policy"] + names, capture_output=True, timeout=120)
    text = p.stdout.decode()
    known = {}
    for block in text.split("\n"):
        if block and not block.startswith(" ") and block.endswith(":"):
            current = block[:-1]
            known[current] = None
        elif "Candidate:" in block:
            known[current] = block.split("Candidate:")[1].strip()
    missing = [n for n in names if known.get(n) in (None, "(none)")]
    assert not missing, "no such package (apt-cache policy): %s" % missing
