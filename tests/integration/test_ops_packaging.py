"""
Packaging: `make install` with DESTDIR and PREFIX puts every file where the
man page and README say, the man page renders without warnings and lists
every option `luagent -h` shows, and the systemd unit names what it needs.
"""
import os
import re
import shutil
import subprocess

import pytest

from conftest import LUAGENT, REPO, SANITIZED

MAN = REPO / "docs" / "luagent.1"


def make_install(destdir, *extra):
    # Under `make test SAN=1` the binary is the sanitizer build: say SAN=1
    # too, or make would relink ./luagent in the other mode mid-suite.
    argv = ["make", "--no-print-directory", "install", "DESTDIR=%s" % destdir] + list(extra)
    if SANITIZED:
        argv.append("SAN=1")
    p = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=600)
    assert p.returncode == 0, "make install failed:\n%s%s" % (
        p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))


@pytest.mark.parametrize("prefix", [None, "/usr"], ids=["default-prefix", "prefix-usr"])
def test_make_install_into_destdir(tmp_path, prefix):
    extra = [] if prefix is None else ["PREFIX=%s" % prefix]
    make_install(tmp_path, *extra)
    root = tmp_path / (prefix or "/usr/local").lstrip("/")
    binary = root / "bin" / "luagent"
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert binary.read_bytes() == LUAGENT.read_bytes()
    lib = root / "share" / "luagent" / "lua" / "luagent.lua"
    assert lib.read_bytes() == (REPO / "lua" / "luagent.lua").read_bytes()
    examples = root / "share" / "luagent" / "examples"
    for f in (REPO / "examples").iterdir():
        assert (examples / f.name).read_bytes() == f.read_bytes(), f.name
    assert (examples / "luagent.service").is_file()
    man = root / "share" / "man" / "man1" / "luagent.1"
    assert man.read_bytes() == MAN.read_bytes()
    for f in (binary, lib, man):
        assert oct(f.stat().st_mode & 0o777) == ("0o755" if f == binary else "0o644")
    # Nothing outside PREFIX.
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and root not in p.parents]
    assert not outside, outside
    # The installed binary runs.
    p = subprocess.run([str(binary), "--version"], capture_output=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith(b"luagent ")


def rendered_man():
    if shutil.which("man"):
        argv = ["man", "--warnings", "-l", str(MAN)]
    elif shutil.which("groff"):
        argv = ["groff", "-man", "-Tutf8", "-ww", str(MAN)]
    else:
        pytest.skip("neither man nor groff is installed")
    p = subprocess.run(argv, capture_output=True, timeout=30,
                       env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0",
                                PAGER="cat"))
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert p.stderr == b"", "the man page renders with warnings:\n%s" % p.stderr.decode()
    # Drop overstrike bold/underline, if any.
    return re.sub(r".\x08", "", p.stdout.decode("utf-8", "replace"))


def test_man_page_renders_and_lists_every_option():
    text = rendered_man()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "EXIT STATUS",
                    "FILES", "EXAMPLES"):
        assert re.search(r"^%s$" % section, text, re.M), "no %s section" % section
    usage = subprocess.run([str(LUAGENT), "-h"], capture_output=True, timeout=10).stdout.decode()
    options = re.findall(r"^\s+(?:-(\w), )?--([\w-]+)", usage, re.M)
    assert len(options) >= 20, usage
    flat = text.replace("\u2010", "-").replace("\u2212", "-")
    for short, long in options:
        if short:
            assert re.search(r"-%s, --%s\b" % (short, long), flat), "man page lacks -%s, --%s" % (
                short, long)
        else:
            assert re.search(r"^\s+--%s\b" % long, flat, re.M), "man page lacks --%s" % long
    for sig in ("SIGHUP", "SIGUSR1", "SIGTERM"):
        assert sig in flat


def test_systemd_unit_is_consistent():
    unit = (REPO / "examples" / "luagent.service").read_text()
    assert re.search(r"^Type=forking$", unit, re.M)
    pid = re.search(r"^PIDFile=(\S+)$", unit, re.M).group(1)
    assert "--pid-file %s" % pid in unit.replace("\\\n", " ").replace("  ", " ")
    assert re.search(r"^ExecReload=\S*luagent --check ", unit, re.M)
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", unit, re.M)
    assert re.search(r"^User=\S+$", unit, re.M)
    assert not re.search(r"^ExecStart=.*\s-D\b", unit, re.M), "Type=forking needs the daemon"
    assert not re.search(r"^MemoryDenyWriteExecute=yes", unit, re.M), "breaks LuaJIT's JIT"
    if shutil.which("systemd-analyze"):
        p = subprocess.run(["systemd-analyze", "verify", str(REPO / "examples" / "luagent.service")],
                           capture_output=True, timeout=60)
        errors = [l for l in p.stderr.decode().splitlines()
                  if "luagent.service" in l and "man " not in l and "Command" not in l
                  and "is not executable" not in l and "No such file" not in l]
        assert not errors, errors
