"""
The request log (docs/operating.md "Request log"): settings.log_slow_ms logs
requests slower than N ms, settings.log_sample a share of all requests; each
worker writes at most 20 such lines a second and counts the rest; `stats` and
the metrics count them.

Slow requests come from a scripted backend that holds its answer for keys
starting with "slow:".
"""
import base64
import re
import subprocess
import time

import mock_backend
from conftest import HOST, LUAGENT, free_port, set_cmd
from test_metrics import one, scrape

HOLD_S = 0.3
DEADLINE = 15.0


def held_store():
    store = mock_backend.Store()

    def handler(req):
        if any(k.startswith(b"slow:") for k in req.keys):
            time.sleep(HOLD_S)
        return store(req)
    return handler


def policy(tmp_path, server, settings=""):
    path = tmp_path / "reqlog.lua"
    path.write_text('local lg = require "luagent"\n'
                    'return lg.policy{ route = lg.pool{ name = "held", servers = { "%s" }, '
                    'timeout_ms = 4000 }, settings = { %s } }\n' % (server.addr, settings))
    return path


def lines(lg, kind):
    return [l for l in lg.log().splitlines() if "request %s:" % kind in l]


def wait_for(pred, what):
    end = time.monotonic() + DEADLINE
    while not pred():
        assert time.monotonic() < end, "timed out waiting for " + what
        time.sleep(0.02)


def test_slow_requests_are_logged_with_route_server_and_ms(mock, luagent, raw_client, tmp_path):
    be = mock(held_store())
    lg = luagent("-t", "1", "-c", policy(tmp_path, be, "log_slow_ms = 100"))
    c = raw_client(lg)
    assert c.call(set_cmd("fast:1", b"v")) == b"STORED\r\n"
    assert c.call(b"get fast:1\r\n", "get") is not None
    assert c.call(b"get slow:1 fast:1\r\n", "get") is not None
    wait_for(lambda: lines(lg, "slow"), "the slow line")
    (line,) = lines(lg, "slow")
    m = re.search(r'request slow: get "slow:1" \(\+1 keys\) route - pool held server %s: ([0-9.]+) ms$'
                  % re.escape(be.addr), line)
    assert m, line
    assert float(m.group(1)) >= 100       # the backend held it HOLD_S
    stats = c.stats()
    assert stats["slow_requests"] == "1"
    assert stats["sampled_requests"] == "0"
    assert not lines(lg, "sampled")


def test_nothing_is_timed_or_logged_when_off(mock, luagent, raw_client, tmp_path):
    be = mock(held_store())
    lg = luagent("-c", policy(tmp_path, be))
    c = raw_client(lg)
    assert c.call(b"get slow:1\r\n", "get") is not None
    stats = c.stats()
    assert (stats["slow_requests"], stats["sampled_requests"]) == ("0", "0")
    assert not lines(lg, "slow") and not lines(lg, "sampled")


def test_sampled_keys_are_cut_and_escaped(memcached, luagent, raw_client, tmp_path):
    be = memcached()
    lg = luagent("-t", "1", "-c", policy(tmp_path, be, "log_sample = 1"))
    c = raw_client(lg)
    long_key = "k" * 100
    assert c.call(b"get %s\r\n" % long_key.encode(), "get") is not None
    odd = b'a"b\\c\x01\xff d'
    c.send(b"mg %s b v\r\n" % base64.b64encode(odd))
    assert c.read_line() == b"EN\r\n"
    wait_for(lambda: len(lines(lg, "sampled")) == 2, "two sampled lines")
    first, second = lines(lg, "sampled")
    assert 'request sampled: get "%s"... route - pool held server %s:' % ("k" * 64, be.addr) in first
    assert r'request sampled: mg "a\x22b\x5cc\x01\xff\x20d" route - pool held' in second
    assert c.stats()["sampled_requests"] == "2"


def test_a_streamed_multi_get_is_logged_once_when_done(memcached, luagent, raw_client,
                                                       tmp_path):
    be = memcached()
    lg = luagent("-t", "1", "-c", policy(tmp_path, be, "log_sample = 1"))
    c = raw_client(lg)
    for k in (b"m:1", b"m:2"):
        assert c.call(b"set %s 0 0 1\r\nx\r\n" % k) == b"STORED\r\n"
    c.send(b"get m:1 m:2 m:3\r\n")
    assert c.read_line() == b"VALUE m:1 0 1\r\n"
    assert c.read_line() == b"x\r\n"
    assert c.read_line() == b"VALUE m:2 0 1\r\n"
    assert c.read_line() == b"x\r\n"
    assert c.read_line() == b"END\r\n"
    wait_for(lambda: len(lines(lg, "sampled")) == 3, "three sampled lines")
    got = lines(lg, "sampled")[2]
    assert 'request sampled: get "m:1" (+2 keys) route - pool held server %s:' % be.addr in got
    assert c.stats()["sampled_requests"] == "3"


def test_lines_are_limited_per_worker_and_the_rest_counted(mock, luagent, raw_client, tmp_path):
    be = mock(held_store())
    lg = luagent("-t", "1", "-c", policy(tmp_path, be, 'log_sample = "1/1"'))
    c = raw_client(lg)
    n = 300
    replies = c.pipeline([b"get burst:%d\r\n" % i for i in range(n)], "get")
    assert len(replies) == n
    stats = c.stats()
    assert stats["sampled_requests"] == str(n)
    suppressed = int(stats["slow_sampled_lines_suppressed"])
    assert suppressed > 0
    assert len(lines(lg, "sampled")) + suppressed == n
    # The count of held-back lines is said with the first line of a later second.
    def said():
        c.call(b"get later\r\n", "get")
        return "line(s) suppressed (at most 20 a second per worker)" in lg.log()
    wait_for(said, "the suppressed line")


def test_a_share_is_sampled(mock, luagent, raw_client, tmp_path):
    be = mock(held_store())
    lg = luagent("-t", "1", "-c", policy(tmp_path, be, 'log_sample = "1/4"'))
    c = raw_client(lg)
    n = 400
    c.pipeline([b"get share:%d\r\n" % i for i in range(n)], "get")
    sampled = int(c.stats()["sampled_requests"])
    assert 40 <= sampled <= 160, sampled       # one in four, give or take


def test_metrics_count_slow_and_sampled(mock, luagent, raw_client, tmp_path):
    be = mock(held_store())
    mport = free_port()
    lg = luagent("-t", "1", "--metrics", "%s:%d" % (HOST, mport),
                 "-c", policy(tmp_path, be, "log_slow_ms = 100, log_sample = 1"))
    c = raw_client(lg)
    c.call(b"get slow:m\r\n", "get")
    c.call(b"get fast:m\r\n", "get")
    fams, _ = scrape(mport)
    assert one(fams["luagent_slow_requests"], "_total") == 1     # slow wins over sampled
    assert one(fams["luagent_sampled_requests"], "_total") == 1
    assert one(fams["luagent_slow_sampled_lines_suppressed"], "_total") == 0


def run_check(tmp_path, settings):
    path = tmp_path / "p.lua"
    path.write_text('local lg = require "luagent"\n'
                    'return lg.policy{ route = lg.pool{ name = "a", servers = { "127.0.0.1:1" } },'
                    ' settings = { %s } }\n' % settings)
    return subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True, text=True,
                          timeout=30)


def test_check_describes_and_refuses(tmp_path):
    out = run_check(tmp_path, 'log_slow_ms = 250, log_sample = "1/1000"')
    assert out.returncode == 0, out.stderr
    assert ("request log: requests slower than 250 ms, a sample of 1/1000 "
            "(at most 20 lines a second per worker)") in out.stdout
    for bad, msg in [("log_sample = 2", "field 'settings.log_sample' must be"),
                     ('log_sample = "2/3"', "must be a number from 0 to 1 or a string \"1/N\""),
                     ('log_sample = "1/0"', "must be a number from 0 to 1"),
                     ("log_slow_ms = -1", "field 'settings.log_slow_ms' must be"),
                     ("log_slow = 5", "did you mean 'settings.log_slow_ms'?")]:
        out = run_check(tmp_path, bad)
        assert out.returncode == 1, bad
        assert msg in out.stderr, (bad, out.stderr)
