"""
The trial load: every policy load (start-up, SIGHUP, --check) is first tried
in a child process that runs the serving binary again in trial mode
(/proc/self/exe), so that a load which never returns can be killed.

These tests pin what that child must have: the same command line as the
proxy (lg.args), the binary that is serving even after the file on disk was
replaced, and a way in after -u has dropped root's rights to the directory
the binary lives in. They also run the daemon, whose stdin, stdout and
stderr are /dev/null. Every policy here refuses to load unless lg.args holds
what the command line said, so a trial that saw other settings fails the
reload.
"""
import os
import pwd
import shutil
import signal
import stat
import tempfile
import time

import pytest

from conftest import HOST, LUAGENT, Proc, StartError, free_port
from test_daemon import kill_by_pid, read_pid, run_luagent, wait_gone

DEADLINE = 15.0     # hang detector for every poll below
EXTRA = ["two words", "--not-an-option"]


def args_policy(server_addr, note):
    """A policy that loads only with EXTRA as lg.args.extra and one -s server."""
    return ('local lg = require "luagent"\n'
            'local a = lg.args\n'
            'if #a.extra ~= 2 or a.extra[1] ~= %r or a.extra[2] ~= %r then\n'
            '    error("lg.args.extra is {" .. table.concat(a.extra, ",") .. "}")\n'
            'end\n'
            'if a.servers[1]:sub(1, %d) ~= %r then\n'
            '    error("lg.args.servers[1] is " .. tostring(a.servers[1]))\n'
            'end\n'
            '-- %s\n'
            'return lg.policy{ route = lg.pool{ name = "p", servers = a.servers } }\n'
            % (EXTRA[0], EXTRA[1], len(server_addr), server_addr, note))


def write_policy(path, text):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, str(path))


def wait_log(read, needle, alive=lambda: True):
    """Poll read() until needle is in it; fail on timeout or if alive() fails."""
    end = time.monotonic() + DEADLINE
    while True:
        text = read()
        if needle in text:
            return text
        if not alive():
            pytest.fail("luagent exited while waiting for %r\n--- log ---\n%s" % (needle, text))
        if time.monotonic() > end:
            pytest.fail("no %r after %.0fs\n--- log ---\n%s" % (needle, DEADLINE, text))
        time.sleep(0.01)


def reload_and_expect(read, alive, pid, policy, server_addr, generation):
    write_policy(policy, args_policy(server_addr, "generation %d" % generation))
    os.kill(pid, signal.SIGHUP)
    log = wait_log(read, "reload", alive)
    end = time.monotonic() + DEADLINE
    while "reload: generation %d" % generation not in log and "reload failed" not in log:
        assert time.monotonic() < end, log
        time.sleep(0.01)
        log = read()
    assert "reload failed" not in log, log
    return log


@pytest.fixture
def world_readable_dir():
    """A directory under /tmp that any user can read (tmp_path's parents are
    root's only), removed afterwards."""
    d = tempfile.mkdtemp(prefix="luagent-trial-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_copy(binary, args, log_path):
    """Start binary -D -l HOST -p PORT <args> and wait until it listens."""
    for _ in range(5):
        port = free_port()
        p = Proc("luagent", [binary, "-D", "-l", HOST, "-p", port] + args, log_path)
        try:
            p.wait_listening((HOST, port))
            return p
        except StartError as e:
            p.stop()
            if "in use" not in p.log().lower():
                pytest.fail(str(e))
    pytest.fail("luagent could not start")


def replace_on_disk(binary, marker):
    """Delete the binary and put at its path a program that only leaves a mark."""
    os.unlink(binary)
    with open(binary, "w") as f:
        f.write("#!/bin/sh\ntouch '%s'\nexit 1\n" % marker)
    os.chmod(binary, 0o755)


def test_reload_after_the_binary_was_replaced_on_disk(memcached, tmp_path):
    """An upgrade replaces the file while the old binary serves: the trial of a
    reload still runs the serving binary, not whatever now sits at its path."""
    m = memcached()
    binary = str(tmp_path / "luagent")
    shutil.copy(str(LUAGENT), binary)
    policy = tmp_path / "policy.lua"
    write_policy(policy, args_policy(m.addr, "generation 1"))
    marker = tmp_path / "the-new-file-ran"
    lg = start_copy(binary, ["-s", m.addr, "-c", str(policy), "--"] + EXTRA,
                    tmp_path / "luagent.log")
    try:
        replace_on_disk(binary, marker)
        reload_and_expect(lg.log, lg.alive, lg.pid, policy, m.addr, 2)
        assert not marker.exists(), "the trial ran the file now at the binary's path"
    finally:
        assert lg.stop() == 0, lg.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_reload_after_dropping_privileges(memcached, tmp_path, world_readable_dir):
    """-u nobody, binary in a directory only root may enter: the trial child
    still starts, and sees the command line."""
    m = memcached()
    private = tmp_path / "bin"
    private.mkdir(mode=0o700)
    binary = str(private / "luagent")
    shutil.copy(str(LUAGENT), binary)
    os.chmod(binary, 0o755)
    policy = os.path.join(world_readable_dir, "policy.lua")
    write_policy(policy, args_policy(m.addr, "generation 1"))
    lg = start_copy(binary, ["-u", "nobody", "-s", m.addr, "-c", policy, "--"] + EXTRA,
                    tmp_path / "luagent.log")
    try:
        with open("/proc/%d/status" % lg.pid) as f:
            uid = [line.split()[1] for line in f if line.startswith("Uid:")][0]
        assert int(uid) == pwd.getpwnam("nobody").pw_uid
        reload_and_expect(lg.log, lg.alive, lg.pid, policy, m.addr, 2)
    finally:
        assert lg.stop() == 0, lg.log()


def test_daemon_reload(memcached, tmp_path):
    """A daemon (stdio on /dev/null, its own session) tries reloads as well."""
    m = memcached()
    policy = tmp_path / "policy.lua"
    write_policy(policy, args_policy(m.addr, "generation 1"))
    pid_file, log_file = tmp_path / "luagent.pid", tmp_path / "luagent.log"
    pid = None
    try:
        rc, out, err = run_luagent(["-l", HOST, "-p", free_port(), "-s", m.addr,
                                    "--pid-file", pid_file, "--log", log_file,
                                    "-c", policy, "--"] + EXTRA)
        assert rc == 0, "starting process exited %d: %s" % (rc, err)
        pid = read_pid(pid_file)
        reload_and_expect(log_file.read_text, lambda: os.path.exists("/proc/%d" % pid),
                          pid, policy, m.addr, 2)
        os.kill(pid, signal.SIGTERM)
        assert wait_gone(pid), "daemon still running 10 s after SIGTERM"
        pid = None
    finally:
        kill_by_pid(pid)


def test_check_and_start_up_see_the_command_line(memcached, tmp_path):
    """--check and a start that fail only if the trial saw other arguments."""
    m = memcached()
    policy = tmp_path / "policy.lua"
    write_policy(policy, args_policy(m.addr, "check"))
    rc, out, err = run_luagent(["-s", m.addr, "--check", policy, "--"] + EXTRA)
    assert rc == 0 and "ok: %s loads" % policy in out, (rc, out, err)
    rc, out, err = run_luagent(["-s", m.addr, "--check", policy, "--", "other"])
    assert rc == 1 and "lg.args.extra is {other}" in err, (rc, out, err)


def test_trial_process_is_gone_after_each_load(memcached, tmp_path):
    """Each trial child is reaped: no zombie and no stray process stays behind
    after reloads."""
    m = memcached()
    policy = tmp_path / "policy.lua"
    write_policy(policy, args_policy(m.addr, "generation 1"))
    lg = start_copy(str(LUAGENT), ["-s", m.addr, "-c", str(policy), "--"] + EXTRA,
                    tmp_path / "luagent.log")
    try:
        for gen in (2, 3):
            reload_and_expect(lg.log, lg.alive, lg.pid, policy, m.addr, gen)
        with open("/proc/%d/task/%d/children" % (lg.pid, lg.pid)) as f:
            assert f.read().split() == []
    finally:
        assert lg.stop() == 0, lg.log()
