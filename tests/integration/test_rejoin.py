"""
Flap backoff (retry_after_ms doubling up to retry_max_ms) and safe rejoin
(rejoin = "flush"), against real memcached servers.

A dead server is a memcached stopped by PID; a server cut off but keeping its
data (a network partition) is one paused with SIGSTOP, resumed with SIGCONT.
Health is per worker, so luagent runs with -t 1. Loops are bounded; waits are
for conditions, and the one wait for a minimum time (a server must stay up for
its probation) asserts nothing about speed.
"""
import os
import signal
import subprocess
import time

from conftest import HOST, LUAGENT, free_port, set_cmd
from mock_backend import CLOSE
from test_metrics import one, scrape
from test_policy import RUN_TIMEOUT, write_policy

DEADLINE = 30.0


def server_stats(lg, addr):
    c = lg.client()
    try:
        st = c.stats(b"servers")
    finally:
        c.close()
    prefix = "server:%s:" % addr
    return {k[len(prefix):]: v for k, v in st.items() if k.startswith(prefix)}


def until(what, fn, deadline=DEADLINE, step=0.02):
    end = time.monotonic() + deadline
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < end, "%s: not true after %.0f s" % (what, deadline)
        time.sleep(step)


def try_get(c, key):
    """One get through luagent: the value, None for a miss, or "error"."""
    raw = c.call(("get %s\r\n" % key).encode(), "get")
    if raw.startswith(b"SERVER_ERROR"):
        return "error"
    if raw == b"END\r\n":
        return None
    return raw.split(b"\r\n")[1]


# --------------------------------------------------------------------------
# Flap backoff
# --------------------------------------------------------------------------

BACKOFF = """
local lg = require "luagent"
return lg.policy{ route = lg.pool{ name = "main", servers = @S@, failure_limit = 1,
                                   retry_after_ms = 300, retry_max_ms = 1200 } }
"""


def test_backoff_doubles_up_to_the_max_and_starts_over_after_a_while(tmp_path, memcached,
                                                                     luagent):
    m = memcached()
    lg = luagent("-t", "1", "-c", str(write_policy(tmp_path, "backoff.lua", BACKOFF, S=m)))
    c = lg.client()
    assert c.call(set_cmd("bk", "v")) == b"STORED\r\n"
    m.stop()

    def marked(n):
        try_get(c, "bk")
        return int(server_stats(lg, m.addr)["markdowns"]) >= n

    # 300, 600, 1200, 1200, 1200 ms: the last two did not grow.
    until("five mark-downs", lambda: marked(5))
    st = server_stats(lg, m.addr)
    assert int(st["backoffs"]) == 2, st
    assert int(st["markdowns"]) >= 5
    assert "twice as long as the last time (retry_max_ms 1200)" in lg.log()
    assert "marked down for 1200 ms" in lg.log()

    m.start()
    until("served again", lambda: try_get(c, "bk") is None)
    # Up for retry_max_ms: the next request through notices it and starts over.
    up = time.monotonic()
    while time.monotonic() - up < 1.5:
        assert try_get(c, "bk") is None
        time.sleep(0.05)
    until("backoff reset logged", lambda: try_get(c, "bk") is None and
          "the next one lasts retry_after_ms (300 ms) again" in lg.log())

    before = server_stats(lg, m.addr)
    m.stop()
    until("a new mark-down", lambda: marked(int(before["markdowns"]) + 1), step=0.005)
    st = server_stats(lg, m.addr)
    assert st["backoffs"] == before["backoffs"], "a new run starts at retry_after_ms"
    assert "marked down for 300 ms" in lg.log().split("again")[-1]


def test_retry_max_below_retry_after_is_refused(tmp_path):
    path = write_policy(tmp_path, "bad.lua", """
local lg = require "luagent"
return lg.policy{ route = lg.pool{ name = "p", servers = { "127.0.0.1:11211" },
                                   retry_after_ms = 5000, retry_max_ms = 100 } }
""")
    r = subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True,
                       timeout=RUN_TIMEOUT)
    assert r.returncode != 0
    assert b"field 'retry_max_ms' must be at least retry_after_ms (5000; got 100)" in r.stderr


# --------------------------------------------------------------------------
# Safe rejoin
# --------------------------------------------------------------------------

REJOIN = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = @M@, failure_limit = 1, timeout_ms = 300,
                      retry_after_ms = 300, retry_max_ms = 300@REJOIN@ }
local spare = lg.pool{ name = "spare", servers = @S@ }
return lg.policy{ route = lg.failover{ main, spare, writes = "failover" } }
"""


def stale_scenario(tmp_path, memcached, luagent, rejoin):
    """A key written while its server was cut off goes to the spare; the
    server comes back. Returns (luagent, main memcached, what reads saw)."""
    m, spare = memcached(), memcached()
    path = write_policy(tmp_path, "rejoin.lua", REJOIN, M=m, S=spare, REJOIN=rejoin)
    mport = free_port()
    lg = luagent("-t", "1", "-c", str(path), "--metrics", "%s:%d" % (HOST, mport))
    lg.metrics_port = mport
    c = lg.client()
    assert c.call(set_cmd("session", "old")) == b"STORED\r\n"
    assert m.get("session") is not None
    os.kill(m.pid, signal.SIGSTOP)
    try:
        # A read times out and marks the server down; the write after it
        # never reaches the paused server, only the spare.
        until("marked down", lambda: try_get(c, "other") is not None or
              int(server_stats(lg, m.addr)["markdowns"]) >= 1)
        assert c.call(set_cmd("session", "new")) == b"STORED\r\n"
        assert spare.get("session") is not None
    finally:
        os.kill(m.pid, signal.SIGCONT)
    seen = []

    def back():
        seen.append(try_get(c, "session"))
        st = server_stats(lg, m.addr)
        return st["state"] == "up" and int(st["retries"]) >= 1
    until("server back", back)
    for _ in range(5):
        seen.append(try_get(c, "session"))
    return lg, m, seen


def test_rejoin_flush_keeps_a_returning_server_from_serving_stale_data(tmp_path, memcached,
                                                                      luagent):
    lg, m, seen = stale_scenario(tmp_path, memcached, luagent,
                                 ', rejoin = "flush", rejoin_after_ms = 0')
    assert b"old" not in seen, seen
    st = server_stats(lg, m.addr)
    assert int(st["rejoin_flushes"]) >= 1 and int(st["rejoins"]) == 1, st
    assert m.get("session") is None, "the returning server was flushed"
    assert "flush_all answered OK: serving again after" in lg.log()
    fams, _ = scrape(lg.metrics_port)
    assert one(fams["luagent_server_rejoins"], "_total", server=m.addr) == 1
    assert one(fams["luagent_server_rejoin_flushes"], "_total", server=m.addr) == \
        int(st["rejoin_flushes"])


def test_without_flush_the_returning_server_serves_stale_data(tmp_path, memcached, luagent):
    # What rejoin = "flush" prevents (and what rejoin_after_ms lets through
    # for short outages): the old value comes back to life.
    for n, rejoin in enumerate(["", ', rejoin = "flush", rejoin_after_ms = 600000']):
        sub = tmp_path / str(n)
        sub.mkdir()
        lg, m, seen = stale_scenario(sub, memcached, luagent, rejoin)
        assert seen[-1] == b"old", seen
        assert int(server_stats(lg, m.addr)["rejoin_flushes"]) == 0


def test_rejoin_fields_checked_and_described(tmp_path):
    base = """
local lg = require "luagent"
return lg.policy{ route = lg.pool{ name = "p", servers = { "127.0.0.1:11211" }, %s } }
"""
    for fields, want in [
        ('rejoin = "flush", rejoin_after = 5', "unknown field 'rejoin_after' (did you mean "
                                               "'rejoin_after_ms'?)"),
        ('rejoin = "flsh"', "field 'rejoin' must be 'serve' or 'flush' (got 'flsh')"),
        ('rejoin_after_ms = 5', "field 'rejoin_after_ms' is only used with rejoin = 'flush'"),
    ]:
        path = write_policy(tmp_path, "r.lua", base % fields)
        r = subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True,
                           timeout=RUN_TIMEOUT)
        assert r.returncode != 0 and want in r.stderr.decode(), r.stderr
    path = write_policy(tmp_path, "r.lua", base % 'rejoin = "flush", rejoin_after_ms = 5000, '
                                                 'retry_max_ms = 60000')
    r = subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True,
                       timeout=RUN_TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert "retry 1000..60000 ms, rejoin flush after 5000 ms" in r.stdout.decode()


# --------------------------------------------------------------------------
# One rejoin flush for the whole process (-t 2: each client on its own worker)
# --------------------------------------------------------------------------

REJOIN_T2 = REJOIN.replace("@REJOIN@", ', rejoin = "flush", rejoin_after_ms = 0')


def two_workers(luagent, tmp_path, main, spare):
    """luagent -t 2 over REJOIN_T2, and two clients: connections are dealt to
    the workers in turn, so consecutive ones land on different workers."""
    path = write_policy(tmp_path, "rejoin2.lua", REJOIN_T2, M=main, S=spare)
    lg = luagent("-t", "2", "-c", str(path))
    return lg, lg.client(), lg.client()


def test_a_returning_server_is_flushed_once_with_two_workers(tmp_path, memcached, luagent):
    m, spare = memcached(), memcached()
    lg, c1, c2 = two_workers(luagent, tmp_path, m, spare)
    assert m.client().call(set_cmd("k", "old")) == b"STORED\r\n"
    assert spare.client().call(set_cmd("k", "spare")) == b"STORED\r\n"
    os.kill(m.pid, signal.SIGSTOP)
    try:
        # Each worker's read times out and marks the server down there.
        for c in (c1, c2):
            assert try_get(c, "k") == b"spare"
        until("both workers marked it down",
              lambda: int(server_stats(lg, m.addr)["markdowns"]) >= 2)
    finally:
        os.kill(m.pid, signal.SIGCONT)
    seen = []

    def both_back():
        got = [try_get(c, "k") for c in (c1, c2)]
        seen.extend(got)
        return got == [None, None]         # served by the emptied server
    until("both workers serve from the flushed server", both_back)
    assert b"old" not in seen, seen
    flushes = m.client().stats()["cmd_flush"]
    st = server_stats(lg, m.addr)
    assert flushes == "1", (flushes, st)
    assert st["rejoin_flushes"] == "1" and st["rejoins"] == "1", st


def test_no_worker_serves_a_returning_server_before_its_flush_is_answered(
        tmp_path, memcached, mock, luagent):
    state = {"up": False, "flush": [], "flushed": False}

    def handler(req):
        if not state["up"]:
            return CLOSE
        if req.cmd == b"flush_all":
            state["flush"].append(req)
            return None                     # answered below, when the test says
        if req.cmd == b"get":
            return b"END\r\n" if state["flushed"] else b"VALUE k 0 3\r\nold\r\nEND\r\n"
        return b"ERROR\r\n"
    main, spare = mock(handler), memcached()
    assert spare.client().call(set_cmd("k", "new")) == b"STORED\r\n"
    lg, c1, c2 = two_workers(luagent, tmp_path, main, spare)
    # Only the first worker sees the server fail; the second has not used it.
    assert try_get(c1, "k") == b"new"
    until("marked down", lambda: int(server_stats(lg, main.addr)["markdowns"]) >= 1)
    state["up"] = True
    until("the rejoin flush_all sent", lambda: try_get(c1, "k") == b"new" and state["flush"])
    # Its answer is not in yet: the second worker must not read the old value.
    assert try_get(c2, "k") == b"new"
    state["flushed"] = True
    state["flush"][0].send(b"OK\r\n")
    until("both workers serve from the flushed server",
          lambda: [try_get(c, "k") for c in (c1, c2)] == [None, None])
    assert len(state["flush"]) == 1
    st = server_stats(lg, main.addr)
    assert st["rejoin_flushes"] == "1" and st["rejoins"] == "1", st
