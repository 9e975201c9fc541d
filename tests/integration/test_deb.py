"""
The Debian package (`make deb`, scripts/deb.sh, scripts/debian/): built once
per run into a temporary directory, then

- its control fields, file list, conffiles and maintainer scripts are read
  with dpkg-deb, and the extracted tree's luagent answers --version and
  --check on the packaged /etc/luagent/policy.lua;
- it is installed and purged with dpkg for real, but inside a private mount
  namespace whose root is an overlay of this machine's root with its upper
  layer on a tmpfs: dpkg, adduser and the maintainer scripts see the real
  system, and everything they write vanishes with the namespace, so the test
  cannot change this machine (no package, no luagent user, no unit left
  behind), even if it is interrupted half-way.
"""
import gzip
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, SANITIZED

VERSION = re.search(r'#define LUAGENT_VERSION\s+"([^"]+)"',
                    (REPO / "include" / "luagent.h").read_text()).group(1)
POLICY = "/etc/luagent/policy.lua"
UNIT = "lib/systemd/system/luagent.service"
BUILD_TIMEOUT = 600


def git_status():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return None
    return subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                          timeout=60, check=True).stdout.decode()


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """(path of the .deb, make deb's output, git status before, git status after)."""
    out = tmp_path_factory.mktemp("deb")
    before = git_status()
    # Under `make test SAN=1` say SAN=1 too, so make keeps ./luagent's build
    # mode (the package itself is always a plain build).
    argv = ["make", "--no-print-directory", "deb", "DEB_DIR=%s" % out]
    if SANITIZED:
        argv.append("SAN=1")
    p = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=BUILD_TIMEOUT)
    text = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    assert p.returncode == 0, "make deb failed:\n" + text
    path = p.stdout.decode().strip().splitlines()[-1]
    return path, text, before, git_status()


def dpkg_deb(*args):
    p = subprocess.run(["dpkg-deb"] + [str(a) for a in args], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout.decode()


@pytest.fixture(scope="module")
def extracted(deb, tmp_path_factory):
    root = tmp_path_factory.mktemp("deb-root")
    dpkg_deb("-x", deb[0], root)
    dpkg_deb("-e", deb[0], root / "DEBIAN")
    return root


def test_make_deb_prints_the_package_path_and_leaves_the_tree_alone(deb):
    path, _text, before, after = deb
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          timeout=10).stdout.decode().strip()
    assert os.path.basename(path) == "luagent_%s_%s.deb" % (VERSION, arch)
    assert os.path.isfile(path)
    assert before == after, "make deb changed the work tree:\n%s" % after
    assert not (REPO / "debian").exists()


def test_control_fields(deb):
    fields = dict(re.findall(r"^(\S+): (.*)$", dpkg_deb("-f", deb[0]), re.M))
    assert fields["Package"] == "luagent"
    assert fields["Version"] == VERSION
    depends = [d.strip() for d in fields["Depends"].split(",")]
    names = " ".join(depends)
    # Computed by dh_shlibdeps from what the binary links.
    assert re.search(r"\blibevent-[\d.]+-\d+ ", names), depends
    assert re.search(r"\blibluajit2?-5\.1-2 ", names), depends
    assert "adduser" in depends, depends
    assert fields.get("Maintainer")


def test_files_are_where_the_design_puts_them(deb, extracted):
    listed = {line.split()[-1].lstrip(".") for line in dpkg_deb("-c", deb[0]).splitlines()}
    for f in ("/usr/bin/luagent", "/usr/share/luagent/lua/luagent.lua",
              "/usr/share/man/man1/luagent.1.gz", POLICY, "/" + UNIT):
        assert f in listed, f
    assert not [f for f in listed if f.startswith("/usr/local")]
    lib = extracted / "usr/share/luagent/lua/luagent.lua"
    assert lib.read_bytes() == (REPO / "lua" / "luagent.lua").read_bytes()
    examples = extracted / "usr/share/doc/luagent/examples"
    for f in (REPO / "examples").iterdir():
        assert (examples / f.name).read_bytes() == f.read_bytes(), f.name
    man = gzip.decompress((extracted / "usr/share/man/man1/luagent.1.gz").read_bytes())
    assert man == (REPO / "docs" / "luagent.1").read_bytes()


def test_conffile_and_maintainer_scripts(extracted):
    control = extracted / "DEBIAN"
    assert (control / "conffiles").read_text().split() == [POLICY]
    postinst = control / "postinst"
    assert os.access(postinst, os.X_OK)
    text = postinst.read_text()
    assert re.search(r"^\s*adduser --system --group .* luagent$", text, re.M), text
    for script in ("preinst", "postinst", "postrm"):
        if (control / script).exists():
            p = subprocess.run(["sh", "-n", str(control / script)], capture_output=True,
                               timeout=10)
            assert p.returncode == 0, (script, p.stderr)


def test_unit_runs_the_packaged_binary_as_luagent(extracted):
    unit = (extracted / UNIT).read_text()
    execstart = re.search(r"^ExecStart=(.*(?:\\\n.*)*)$", unit, re.M).group(1)
    assert execstart.startswith("/usr/bin/luagent ")
    assert re.search(r"\s-c %s\b" % re.escape(POLICY), execstart), execstart
    assert re.search(r"^User=luagent$", unit, re.M)
    assert re.search(r"^ExecReload=/usr/bin/luagent --check %s$" % re.escape(POLICY), unit, re.M)
    assert "/usr/local" not in unit


def test_extracted_binary_answers_version_and_checks_the_policy(extracted):
    binary = extracted / "usr/bin/luagent"
    p = subprocess.run([str(binary), "--version"], capture_output=True, timeout=10)
    assert p.returncode == 0 and p.stdout.decode().split() == ["luagent", VERSION], p
    policy = extracted / POLICY.lstrip("/")
    p = subprocess.run([str(binary), "--check", str(policy)], capture_output=True, timeout=30)
    out = p.stdout.decode() + p.stderr.decode()
    assert p.returncode == 0, out
    assert re.search(r"^ok: .*policy\.lua loads, compiles and passes its self-tests$", out, re.M)


# ---- a real dpkg -i / --purge, in a throw-away root ------------------------

# Outer part, in the new mount namespace: the overlay root, with /proc, /dev
# and empty /run (no systemd to talk to) and /tmp.
SANDBOX = r"""
set -e
scratch=$1; deb=$2; inner=$3
mount -t tmpfs tmpfs "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" \
    "$scratch/root"
mount -t proc proc "$scratch/root/proc"
mount --rbind /dev "$scratch/root/dev"
mount -t tmpfs tmpfs "$scratch/root/run"
mount -t tmpfs tmpfs "$scratch/root/tmp"
cp "$deb" "$scratch/root/tmp/luagent.deb"
cp "$inner" "$scratch/root/tmp/inner.sh"
exec chroot "$scratch/root" sh /tmp/inner.sh
"""

# Inner part, in the throw-away root: one "name: value" line per fact.
INSTALL = r"""
set -e
dpkg -i /tmp/luagent.deb
echo "passwd: $(getent passwd luagent)"
echo "group: $(getent group luagent)"
dpkg-query -W -f='${Conffiles}\n' luagent | sed -n 's/^ *\(\/[^ ]*\) .*/conffile: \1/p'
echo "version: $(/usr/bin/luagent --version)"
runuser -u luagent -- /usr/bin/luagent --check /etc/luagent/policy.lua
echo "check as luagent: $?"
echo "enabled: $(ls /etc/systemd/system/*.wants/ 2>/dev/null | grep -c luagent || true)"
dpkg --purge luagent
echo "after purge, /etc/luagent: $(ls -A /etc/luagent 2>&1 || true)"
echo "after purge, package: $(dpkg-query -W -f='${db:Status-Abbrev}' luagent 2>/dev/null || echo none)"
"""


def host_state():
    user = subprocess.run(["getent", "passwd", "luagent"], capture_output=True, timeout=10)
    pkg = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "luagent"],
                         capture_output=True, timeout=10)
    return user.stdout, pkg.stdout, os.path.exists(POLICY)


def sandbox_available(tmp_path):
    """None, or why a private overlay root cannot be made here."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces and overlayfs)"
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    probe = tmp_path / "probe"
    probe.mkdir()
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount -t tmpfs tmpfs "$1" && mkdir "$1/u" "$1/w" "$1/m" && '
                        'mount -t overlay overlay -o "lowerdir=/,upperdir=$1/u,workdir=$1/w" '
                        '"$1/m"', "sh", str(probe)], capture_output=True, timeout=30)
    if p.returncode != 0:
        return "cannot mount an overlay root here: " + p.stderr.decode(errors="replace")
    return None


def test_dpkg_installs_and_purges_it_in_a_throwaway_root(deb, tmp_path):
    why = sandbox_available(tmp_path)
    if why:
        pytest.skip(why)
    host_before = host_state()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    inner = tmp_path / "inner.sh"
    inner.write_text(INSTALL)
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", SANDBOX,
                        "sh", str(scratch), deb[0], str(inner)],
                       capture_output=True, timeout=300)
    out = p.stdout.decode(errors="replace")
    report = out + p.stderr.decode(errors="replace")
    assert p.returncode == 0, report
    facts = dict(re.findall(r"^([a-z][\w ,/]*): (.*)$", out, re.M))

    # postinst made a system user with its own group and no login.
    passwd = facts["passwd"].split(":")
    assert passwd[0] == "luagent" and passwd[6].endswith("nologin"), report
    assert int(passwd[2]) < 1000, "not a system user: %s" % facts["passwd"]
    assert facts["group"].split(":")[2] == passwd[3], report
    assert facts["conffile"] == POLICY, report
    assert facts["version"] == "luagent " + VERSION, report
    assert facts["check as luagent"] == "0", report
    assert facts["enabled"] == "0", "the unit must not be enabled at installation"
    # Purge removes the conffile and the package's record.
    assert "No such file" in facts["after purge, /etc/luagent"], report
    assert facts["after purge, package"] in ("none", "un ", "pn "), report
    # And this machine saw none of it.
    assert host_state() == host_before
