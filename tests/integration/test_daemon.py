"""
Running as a service: daemon mode with a pid file, start-up errors reported
before detaching, privilege drop, the root warning, the unix socket's mode
with TCP off, and the log file with its reopening on SIGUSR1.

A daemon is not our child: it is found through its pid file and stopped by
that pid (SIGTERM, then SIGKILL if it lingers), in a finally block, so no test
leaves one behind.
"""
import os
import re
import signal
import stat
import subprocess
import time

import pytest

from conftest import (HOST, LUAGENT, SANITIZER_MARKS, Proc, RawClient, free_port, set_cmd,
                      try_connect)

ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[\d+\] "
                      r"(error|warn|info|debug): ")


def run_luagent(args, timeout=15):
    """Run ./luagent <args> (no -D: it detaches) and return (rc, stdout, stderr)
    of the starting process."""
    if not LUAGENT.exists():
        pytest.fail("%s is not built (run make)" % LUAGENT)
    p = subprocess.run([str(LUAGENT)] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def gone(pid):
    """True once pid no longer runs (absent, or a zombie nobody has reaped yet)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if gone(pid):
            return True
        time.sleep(0.02)
    return False


def kill_by_pid(pid):
    """Teardown for a daemon that a failed test left running."""
    if pid and not gone(pid):
        os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, 5.0):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 5.0)


def read_pid(path):
    return int(path.read_text().strip())


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def assert_no_sanitizer_report(text):
    for mark in SANITIZER_MARKS:
        assert mark not in text, "sanitizer report in the log:\n%s" % text


def serving(lg):
    """Wait until lg (a Luagent, or an address) answers a request. The port
    accepts as soon as it listens, a little before start-up ends (pid file,
    user switch, signal handlers); an answer means the event loop runs, so
    start-up is over. Returns lg."""
    c = RawClient(getattr(lg, "sockaddr", lg))
    try:
        assert c.call(b"version\r\n").startswith(b"VERSION ")
    finally:
        c.close()
    return lg


def port_closed(addr):
    s = try_connect(addr)
    if s is None:
        return True
    s.close()
    return False


def wait_for(predicate, what, deadline=5.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail("timed out waiting for " + what)


def test_daemon_pid_file_serves_and_stops_on_sigterm(memcached, tmp_path):
    m = memcached()
    port = free_port()
    pid_file = tmp_path / "luagent.pid"
    log_file = tmp_path / "luagent.log"
    pid = None
    try:
        rc, out, err = run_luagent(["-l", HOST, "-p", port, "-s", m.addr, "-v",
                                    "--pid-file", pid_file, "--log", log_file])
        assert rc == 0, "starting process exited %d: %s" % (rc, err)
        # The starting process exits only once the daemon serves: no polling.
        pid = read_pid(pid_file)
        assert not gone(pid)
        assert pid != os.getpid()
        st = proc_status(pid)
        assert int(st["PPid"]) != os.getpid(), "the daemon must not be our child"
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert int(fields[3]) != os.getsid(0), "the daemon must run in its own session"
        assert os.readlink("/proc/%d/fd/0" % pid) == "/dev/null"

        c = RawClient((HOST, port))
        try:
            assert c.call(set_cmd("dmn:1", "hello")) == b"STORED\r\n"
            assert c.call(b"get dmn:1\r\n", "get") == b"VALUE dmn:1 0 5\r\nhello\r\nEND\r\n"
        finally:
            c.close()
        assert m.get("dmn:1") == b"hello"

        os.kill(pid, signal.SIGTERM)
        assert wait_gone(pid), "daemon still running 10 s after SIGTERM"
        wait_for(lambda: not pid_file.exists(), "the pid file to be removed")
        log = log_file.read_text()
        assert "serving 1 server(s) on %s:%d" % (HOST, port) in log
        assert "stopped" in log
        assert_no_sanitizer_report(log)
        pid = None
    finally:
        kill_by_pid(pid)


def test_bad_policy_fails_before_detaching(tmp_path):
    policy = tmp_path / "bad.lua"
    policy.write_text('local lg = require "luagent"\n'
                      'return lg.policy{ route = lg.pool{ name = "p", servers = {} } }\n')
    pid_file = tmp_path / "luagent.pid"
    port = free_port()
    try:
        rc, out, err = run_luagent(["-l", HOST, "-p", port, "-c", policy,
                                    "--pid-file", pid_file])
        assert rc == 1, "exit status %d; stderr %r" % (rc, err)
        line = err.strip().splitlines()
        assert len(line) == 1 and line[0].startswith("luagent: ") and "bad.lua" in line[0], err
        assert not pid_file.exists(), "a failed start must not leave a pid file"
    finally:
        if pid_file.exists():
            kill_by_pid(read_pid(pid_file))


def test_port_in_use_fails_before_detaching(memcached):
    m = memcached()
    rc, out, err = run_luagent(["-l", HOST, "-p", m.port, "-s", m.addr])
    assert rc == 1
    assert re.search(r"luagent: listen on 127\.0\.0\.1:%d: Address already in use" % m.port,
                     err), err


def test_pid_file_naming_a_live_process_is_refused(tmp_path):
    pid_file = tmp_path / "busy.pid"
    pid_file.write_text("%d\n" % os.getpid())      # this test runner: alive
    rc, out, err = run_luagent(["-D", "-l", HOST, "-p", free_port(), "-s", "127.0.0.1:1",
                                "--pid-file", pid_file])
    assert rc == 1
    assert "pid file %s: process %d is running" % (pid_file, os.getpid()) in err, err
    assert pid_file.read_text() == "%d\n" % os.getpid(), "the pid file must be left alone"


def test_stale_pid_file_is_replaced(luagent, tmp_path):
    pid_file = tmp_path / "stale.pid"
    # A pid that cannot be running: above the kernel's pid_max.
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    pid_file.write_text("%d\n" % (pid_max + 1))
    lg = serving(luagent("--pid-file", pid_file, servers=["127.0.0.1:1"]))
    assert read_pid(pid_file) == lg.pid
    assert lg.stop() == 0
    assert not pid_file.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_user_switch_after_binding(luagent, tmp_path, raw_client, memcached):
    import pwd
    nobody = pwd.getpwnam("nobody")
    m = memcached()
    log_file = tmp_path / "lg.log"
    sock = str(tmp_path / "priv.sock")
    lg = serving(luagent("-u", "nobody", "--log", log_file, "--unix-mode", "0660",
                         servers=[m], unix=sock))
    st = proc_status(lg.pid)
    assert st["Uid"].split() == [str(nobody.pw_uid)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(nobody.pw_gid)] * 4, st["Gid"]
    assert st["Groups"].split() == [], st["Groups"]
    c = raw_client(lg)
    assert c.call(set_cmd("priv:1", "v")) == b"STORED\r\n"
    # The socket file belongs to the user luagent became, so 0660 is for it.
    sst = os.stat(sock)
    assert (sst.st_uid, sst.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert raw_client(sock).call(b"version\r\n").startswith(b"VERSION ")
    # The log file was opened before the switch and still takes lines.
    lg.signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP" in log_file.read_text(), "the SIGHUP line in the log file")
    assert "running as root" not in log_file.read_text()
    assert lg.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_numeric_user_and_group_as_magent_took(luagent):
    import pwd
    nobody = pwd.getpwnam("nobody")
    lg = serving(luagent("-u", str(nobody.pw_uid), "-g", str(nobody.pw_gid),
                         servers=["127.0.0.1:1"]))
    st = proc_status(lg.pid)
    assert st["Uid"].split()[0] == str(nobody.pw_uid)
    assert st["Gid"].split()[0] == str(nobody.pw_gid)


@pytest.mark.skipif(os.geteuid() != 0, reason="the warning is for root only")
def test_root_without_user_warns(luagent):
    lg = serving(luagent(servers=["127.0.0.1:1"]))
    assert "warn: running as root: use -u USER to drop privileges" in lg.log()


def test_unknown_user_fails_at_start():
    rc, out, err = run_luagent(["-D", "-l", HOST, "-p", free_port(), "-s", "127.0.0.1:1",
                                "-u", "no-such-user-here"])
    assert rc == 1
    assert err == "luagent: unknown user 'no-such-user-here' (-u)\n"


def test_unix_socket_mode_and_tcp_off(luagent, memcached, tmp_path, raw_client):
    m = memcached()
    path = str(tmp_path / "lg.sock")
    lg = luagent("--unix-mode", "0660", servers=[m], port=0, unix=path)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    c = raw_client(path)
    assert c.call(set_cmd("unix:1", "u")) == b"STORED\r\n"
    assert m.get("unix:1") == b"u"
    # -p 0: nothing listens on TCP; only the unix socket is open.
    socks = [os.readlink("/proc/%d/fd/%s" % (lg.pid, fd))
             for fd in os.listdir("/proc/%d/fd" % lg.pid)]
    tcp_listeners = [l for l in open("/proc/%d/net/tcp" % lg.pid).read().splitlines()[1:]
                     if l.split()[3] == "0A"]
    inodes = {s[len("socket:["):-1] for s in socks if s.startswith("socket:[")}
    assert not [l for l in tcp_listeners if l.split()[9] in inodes], \
        "luagent listens on TCP with -p 0"
    assert lg.stop() == 0
    assert not os.path.exists(path), "the socket file is removed at exit"


def test_unix_mode_other_value(luagent, tmp_path):
    path = str(tmp_path / "lg2.sock")
    luagent("--unix-mode", "600", servers=["127.0.0.1:1"], port=0, unix=path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("args,message", [
    (["-p", "0"], "nothing to listen on: -p 0 turns TCP off and neither -f PATH, --tls-port nor --listen NAME=ADDR:PORT was given"),
    (["--unix-mode", "0660"], "--unix-mode needs -f PATH"),
    (["-f", "/tmp/x.sock", "--unix-mode", "0999"],
     "bad mode '0999' for --unix-mode: must be octal 0-0777, e.g. 0660"),
    (["-f", "/tmp/x.sock", "--unix-mode", "1777"],
     "bad mode '1777' for --unix-mode: must be octal 0-0777, e.g. 0660"),
], ids=["p0-alone", "mode-without-f", "mode-not-octal", "mode-too-big"])
def test_listen_options_refused(args, message):
    rc, out, err = run_luagent(["-D", "-s", "127.0.0.1:1"] + args)
    assert rc == 2
    assert err.splitlines()[0] == "luagent: " + message


def test_log_file_reopened_on_sigusr1(luagent, tmp_path):
    log_file = tmp_path / "lg.log"
    lg = luagent("-v", "--log", log_file, servers=["127.0.0.1:1"])
    wait_for(lambda: "serving" in log_file.read_text(), "the start-up line in the log file")
    first = log_file.read_text()
    for line in first.splitlines():
        assert ISO_LINE.match(line), "log line not in the documented form: %r" % line
    assert "serving" not in lg.log(), "with --log, lines go to the file, not stderr"

    rotated = tmp_path / "lg.log.1"
    os.rename(log_file, rotated)
    lg.signal(signal.SIGUSR1)
    wait_for(log_file.exists, "SIGUSR1 to create a new log file")
    lg.signal(signal.SIGHUP)        # a new event after the reopen
    wait_for(lambda: "SIGHUP" in log_file.read_text(), "the SIGHUP line in the new file")
    new = log_file.read_text()
    assert "reopened" in new
    assert "SIGHUP" not in rotated.read_text(), "a line after the reopen went to the old file"
    assert lg.stop() == 0
    assert "stopped" in log_file.read_text()
    assert_no_sanitizer_report(rotated.read_text() + log_file.read_text())


def test_sigusr1_without_log_file_is_harmless(luagent, raw_client):
    lg = luagent("-v", servers=["127.0.0.1:1"])
    lg.signal(signal.SIGUSR1)
    wait_for(lambda: "SIGUSR1: no log file" in lg.log(), "the SIGUSR1 line")
    assert lg.alive()
    assert raw_client(lg).call(b"version\r\n").startswith(b"VERSION ")


def test_stderr_lines_are_timestamped(luagent):
    lg = luagent("-v", servers=["127.0.0.1:1"])
    wait_for(lambda: "serving" in lg.log(), "the start-up line")
    lines = [l for l in lg.log().splitlines() if l]
    assert lines and all(ISO_LINE.match(l) for l in lines), lines


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_failed_reopen_keeps_the_old_file(luagent, tmp_path, raw_client):
    # The log directory is root's (0700): after -u nobody, luagent cannot
    # create a new file there, so it must say so and keep the old one.
    logdir = tmp_path / "logs"
    logdir.mkdir(mode=0o700)
    log_file = logdir / "lg.log"
    lg = serving(luagent("-u", "nobody", "--log", log_file, servers=["127.0.0.1:1"]))
    rotated = logdir / "lg.log.1"
    os.rename(log_file, rotated)
    lg.signal(signal.SIGUSR1)
    wait_for(lambda: "SIGUSR1" in rotated.read_text(), "the failed reopen in the old file")
    assert ("warn: SIGUSR1: log file %s: Permission denied (still logging to the old file)"
            % log_file) in rotated.read_text()
    assert not log_file.exists()
    lg.signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP:" in rotated.read_text(), "later lines in the old file")
    assert raw_client(lg).call(b"version\r\n").startswith(b"VERSION ")


def test_pid_file_with_our_own_pid_is_stale(tmp_path):
    # A container restarted with the same pid finds its previous run's file.
    pid_file = tmp_path / "own.pid"
    port = free_port()
    p = Proc("luagent", ["/bin/sh", "-c", 'echo $$ > "$0"; exec "$1" -D -l %s -p %d '
                         '-s 127.0.0.1:1 --pid-file "$0"' % (HOST, port), pid_file, LUAGENT],
             tmp_path / "own.log")
    try:
        p.wait_listening((HOST, port))
        serving((HOST, port))
        assert read_pid(pid_file) == p.pid
    finally:
        rc = p.stop()
    assert rc == 0, p.log()
    assert not pid_file.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_failure_after_detaching_reaches_the_terminal():
    # /dev/full opens like a stale pid file but cannot be truncated: writing
    # the pid fails in the daemon, after the fork. The starting process must
    # still print why and exit 1, and nothing may keep the port.
    port = free_port()
    rc, out, err = run_luagent(["-l", HOST, "-p", port, "-s", "127.0.0.1:1",
                                "--pid-file", "/dev/full"])
    assert rc == 1
    assert err == "luagent: pid file /dev/full: Invalid argument\n"
    assert os.path.exists("/dev/full")
    wait_for(lambda: port_closed((HOST, port)), "the daemon to let go of the port")
