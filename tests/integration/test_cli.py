"""
Command line (magent compatible): bad arguments exit 2 with one line naming the
problem then the usage text; -h prints usage and exits 0; --version prints
"luagent <version>"; the magent flags are accepted and the proxy serves.

Every run passes -D (foreground) so that a wrongly accepted command line can
never leave a daemon behind; such a run is stopped by PID.
"""
import os
import re
import subprocess

import pytest

from conftest import HOST, LUAGENT, Proc, free_port, set_cmd


def run(args, timeout=5):
    """Run ./luagent -D <args> expected to exit by itself; kill it (by PID) if not."""
    if not LUAGENT.exists():
        pytest.fail("%s is not built (run make)" % LUAGENT)
    p = subprocess.Popen([str(LUAGENT)] + list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail("luagent %s did not exit (it should refuse this command line); "
                    "stderr: %r" % (" ".join(args), err[-500:]))
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def usage():
    rc, out, err = run(["-h"])
    assert rc == 0, "luagent -h exited %d; stderr %r" % (rc, err)
    return out


def test_help_prints_usage_and_exits_0(usage):
    assert re.search(r"usage", usage, re.I)
    for flag in ("-p", "-s", "-b", "-l", "-n", "-i", "-k", "-f", "-D", "-v", "-t", "-h"):
        assert re.search(r"(^|\s)%s\b" % re.escape(flag), usage), "usage lacks %s" % flag


def test_version_flag():
    rc, out, err = run(["--version"])
    assert rc == 0
    assert re.fullmatch(r"luagent \d+\.\d+\.\d+\S*\n", out), repr(out)


GOOD_S = ["-s", "127.0.0.1:11311"]


@pytest.mark.parametrize("args,named", [
    (["-D", "-Z"] + GOOD_S, r"Z"),
    (["-D", "--no-such-option"] + GOOD_S, r"no-such-option"),
    (["-D", "-s", "127.0.0.1:notaport"], r"notaport"),
    (["-D", "-s", ":80"], r":80|host"),
    (["-D", "-s", "127.0.0.1:70000"], r"70000"),
    (["-D", "-s", "127.0.0.1:11211:0x"], r"0x|weight"),
    (["-D", "-b", "127.0.0.1:notaport"] + GOOD_S, r"notaport"),
    (["-D", "-l", HOST], r"-s|server"),
    (["-D"], r"-s|server"),
    (["-D", "-p", "70000"] + GOOD_S, r"70000"),
    (["-D", "-p", "abc"] + GOOD_S, r"abc"),
    (["-D", "-n", "x"] + GOOD_S, r"\bx\b|-n|conn"),
    (["-D", "-t", "zero"] + GOOD_S, r"zero"),
    (["-D", "-s"], r"-s|argument|server"),
], ids=["unknown-short", "unknown-long", "bad-port", "no-host", "port-range", "bad-weight",
        "bad-backup", "no-server", "nothing", "listen-port-range", "listen-port-text",
        "bad-max-conns", "bad-threads", "missing-arg"])
def test_bad_command_line_exits_2(usage, args, named):
    rc, out, err = run(args)
    assert rc == 2, "exit status %d for %s; stderr: %r" % (rc, args, err[:300])
    lines = err.splitlines()
    assert lines, "nothing on stderr"
    first = lines[0]
    assert re.search(named, first), "first stderr line %r does not name the problem (%s)" % (
        first, named)
    assert usage.strip() in err, "the usage text must follow the error line on stderr"
    assert not err.startswith(usage.strip()), "the error line comes first"


def test_magent_flags_accepted_and_serving(memcached, luagent, raw_client):
    a, b = memcached(), memcached()
    lg = luagent("-n", "100", "-i", "5", "-t", "2", "-v", "-k",
                 servers=["127.0.0.1:%d:2" % a.port, "127.0.0.1:%d:1" % b.port])
    c = raw_client(lg)
    for i in range(30):
        assert c.call(set_cmd("cli%d" % i, "x")) == b"STORED\r\n"
    keys = ["cli%d" % i for i in range(30)]
    assert a.present(keys) | b.present(keys) == set(keys)
    assert c.call(b"version\r\n").startswith(b"VERSION ")


def test_default_threads_are_the_cores_at_most_4(memcached, luagent, raw_client):
    lg = luagent(servers=[memcached()])
    st = raw_client(lg).stats()
    assert int(st["threads"]) == min(os.cpu_count(), 4)


def test_default_server_port_11211_accepted(luagent, raw_client):
    """-s HOST without a port means HOST:11211; nothing needs to listen there."""
    lg = luagent(servers=["127.0.0.1"])
    st = raw_client(lg).stats()
    assert "server:127.0.0.1:11211:requests" in st


def test_version_flag_matches_protocol_version(memcached, luagent, raw_client):
    """The protocol `version` reply carries luagent's version, in the form
    include/luagent.h documents: "VERSION <memcached x.y.z> luagent-<version>",
    the leading memcached version being >= 1.6 (libmemcached's tools, e.g.
    memcapable, treat a server below 1.6 as an old one and expect old replies;
    memping rejects a major version 0)."""
    rc, out, _ = run(["--version"])
    assert rc == 0
    ver = out.split()[1].encode()
    lg = luagent(servers=[memcached()])
    reply = raw_client(lg).call(b"version\r\n")
    m = re.fullmatch(rb"VERSION (\d+)\.(\d+)\.(\d+) luagent-(\S+)\r\n", reply)
    assert m, "version reply %r not in the documented form" % reply
    assert (int(m.group(1)), int(m.group(2))) >= (1, 6), reply
    assert m.group(4) == ver, "version reply %r does not carry --version's %r" % (reply, ver)


def test_sigterm_stops_luagent(memcached, tmp_path):
    m = memcached()
    port = free_port()
    p = Proc("luagent", [LUAGENT, "-D", "-l", HOST, "-p", port, "-s", m.addr],
             tmp_path / "lg.log")
    try:
        p.wait_listening((HOST, port))
        rc = p.stop()
        assert rc == 0 or rc == -15, "luagent exit status after SIGTERM: %r" % rc
    finally:
        p.stop()
