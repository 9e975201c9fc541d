"""
Failure-scenario self-tests (docs/policy.md section 7): a test entry states
servers or pools that are down, time out or miss, and the route engine itself
(run against simulated servers) must reach the expected pools. The same runs
back `--route --down/--timeout/--miss`.
"""
import os
import subprocess
from pathlib import Path

import pytest

LUAGENT = Path(__file__).resolve().parents[2] / "luagent"

# One route of each node type under its own prefix. Nothing listens on these
# ports: --check and --route never connect.
POLICY = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = { "127.0.0.1:21211" } }
local b = lg.pool{ name = "b", servers = { "127.0.0.1:21212" } }
local c = lg.pool{ name = "c", servers = { "127.0.0.2:21213" } }
local e = lg.pool{ name = "e", servers = { "127.0.0.1:21214", "127.0.0.1:21215" }, eject = true }
local oops = lg.error{ msg = "no copy left" }
local ab = lg.failover{ a, b }
return lg.policy{
    route = lg.prefix{
        ["fo:"]    = lg.failover{ a, b, c },
        ["fm:"]    = lg.failover{ a, b, miss = true },
        ["fe:"]    = lg.failover{ a, b, on = { "error" } },
        ["fw:"]    = lg.failover{ a, b, writes = "failover" },
        ["ft:"]    = lg.failover{ a, b, c, max_tries = 2 },
        ["sync:"]  = lg.all_sync{ a, b },
        ["init:"]  = lg.all_initial{ a, b },
        ["fast:"]  = lg.all_fastest{ a, b },
        ["async:"] = lg.all_async{ a, b },
        ["warm:"]  = lg.warmup{ cold = b, warm = a, exptime = 60 },
        ["sh:"]    = lg.shadow{ main = a, shadow = b },
        ["rw:"]    = lg.rewrite{ add = "x:", to = ab },
        ["err:"]   = lg.failover{ a, oops },
        ["op:"]    = lg.by_op{ read = ab, write = lg.all_sync{ a, b } },
        ["hk:"]    = lg.hook{ routes = { ab, c }, fn = function(req)
                         if req:has_prefix("hk:c") then return c end
                         return ab
                     end },
        ["ej:"]    = e,
        ["bk:"]    = lg.balance{ a, b, by = "key" },
        ["br:"]    = lg.balance{ a, b, by = "random" },
        ["hf:"]    = lg.failover{ a, b, wait_ms = 50 },
        ["hfa:"]   = lg.all_fastest{ a, b, wait_ms = 50 },
        ["gt:"]    = lg.failover{ a, b, writes = "failover", gutter_ttl = 10 },
        ["rl:"]    = lg.ratelimit{ to = a, rate = 0.001, burst = 1, scope = "global" },
        ["ttl:"]   = lg.ttl{ to = ab, max = 5 },
        ["co:"]    = lg.coalesce{ to = ab },
        default    = c,
    },
    tests = { TESTS },
}
"""

# (test entry, what it means); every one must pass --check.
PASSING = [
    # failover: the next child on error, in order; none left: nothing answers
    ('{ "get fo:1", "a" }', "plain: the first child"),
    ('{ "get fo:1", "b", down = { "a" } }', "a down: b"),
    ('{ "get fo:1", "c", down = { "a", "127.0.0.1:21212" } }', "a and b's server down: c"),
    ('{ "get fo:1", "c", down = "127.0.0.1" }', "a host: every server on it"),
    ('{ "get fo:1", {}, down = { "a", "b", "c" } }', "all down: no pool"),
    ('{ "get fo:1", "b", timeout = { "a" } }', "a timeout fails over too (default on)"),
    ('{ "set fo:1", {}, down = { "a" } }', "writes are not failed over by default"),
    ('{ "get fo:1", "a", miss = { "a" } }', "a miss is an answer without miss = true"),
    # miss = true
    ('{ "get fm:1", "b", miss = { "a" } }', "miss failover: b"),
    ('{ "get fm:1", "b", miss = { "a", "b" } }', "both miss: the last child's miss"),
    ('{ "delete fm:1", "a", miss = { "a" } }', "only reads move on a miss"),
    # on = { "error" }: a timeout is the answer
    ('{ "get fe:1", {}, timeout = { "a" } }', "on error only: a timeout stays"),
    ('{ "get fe:1", "b", down = { "a" } }', "on error only: down moves on"),
    # writes = "failover"
    ('{ "set fw:1", "b", down = { "a" } }', "writes fail over when asked"),
    # max_tries
    ('{ "get ft:1", {}, down = { "a", "b" } }', "max_tries = 2: c is never tried"),
    # all_*: every live child
    ('{ "set sync:1", { "a", "b" } }', "all_sync: both"),
    ('{ "set sync:1", "a", down = { "b" } }', "all_sync: the live one"),
    ('{ "set init:1", "b", down = { "a" } }', "all_initial"),
    ('{ "get fast:1", "b", down = { "a" } }', "all_fastest"),
    ('{ "set async:1", "a", timeout = { "b" } }', "all_async"),
    # warmup: cold, then warm on a miss
    ('{ "get warm:1", "b" }', "warmup: cold"),
    ('{ "get warm:1", "a", miss = { "b" } }', "warmup: a cold miss reads warm"),
    ('{ "get warm:1", "a", down = { "b" } }', "warmup: cold down reads warm"),
    ('{ "delete warm:1", { "a", "b" } }', "warmup: deletes reach both"),
    # shadow: main only; the copy never counts
    ('{ "get sh:1", "a" }', "shadow: main"),
    ('{ "get sh:1", {}, down = { "a" } }', "shadow: main down, the copy does not answer"),
    # rewrite, by_op, hook: choices, then the child's behaviour
    ('{ "get rw:1", "b", down = { "a" } }', "rewrite to a failover"),
    ('{ "get op:1", "b", down = { "a" } }', "by_op read: failover"),
    ('{ "set op:1", "b", down = { "a" } }', "by_op write: all_sync"),
    ('{ "get hk:1", "b", down = { "a" } }', "hook returns the failover"),
    ('{ "get hk:c1", "c", down = { "a" } }', "hook returns c"),
    # error nodes
    ('{ "get err:1", "error", down = { "a" } }', "failover into an error node"),
    # balance: a down child is passed over; by chance, any live child may answer
    ('{ "get bk:1", "b", down = { "a" } }', "by key: the live replica"),
    ('{ "get bk:1", "a", down = { "b" } }', "by key: the live replica"),
    ('{ "get br:1", { "a", "b" } }', "random: either"),
    ('{ "get br:1", "b", down = { "a" } }', "random: the live one"),
    # pool with eject: another server of the same pool
    ('{ "get ej:1", "e", down = { "127.0.0.1:21214" } }', "eject: same pool"),
    ('{ "get ej:1", "e", down = { "127.0.0.1:21215" } }', "eject: same pool"),
    # hedging (wait_ms): the first child answers; the next only after a failure
    ('{ "get hf:1", "a" }', "hedged failover: the first child"),
    ('{ "get hf:1", "b", timeout = { "a" } }', "hedged failover: a timeout moves on"),
    ('{ "get hfa:1", "a" }', "hedged all_fastest: reads go to one child at a time"),
    ('{ "get hfa:1", "b", down = { "a" } }', "hedged all_fastest: the live one"),
    ('{ "set gt:1", "b", down = { "a" } }', "gutter failover: writes to the gutter"),
    # a rate limit takes no tokens in tests: the third request still passes
    ('{ "get rl:1", "a" }', "rate limit: within the limit"),
    ('{ "get rl:2", "a" }', "rate limit: still within (no tokens taken)"),
    ('{ "get rl:3", "a" }', "rate limit: still within (no tokens taken)"),
    ('{ "set ttl:1", "a" }', "ttl: its to route"),
    ('{ "get ttl:1", "b", down = { "a" } }', "ttl over a failover"),
    ('{ "get co:1", "b", down = { "a" } }', "coalesce over a failover"),
]


def check(tmp_path, tests, name="p.lua"):
    path = tmp_path / name
    path.write_text(POLICY.replace("TESTS", ",\n        ".join(tests)))
    p = subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def route(tmp_path, line, *conditions):
    path = tmp_path / "r.lua"
    path.write_text(POLICY.replace("TESTS", ""))
    p = subprocess.run([str(LUAGENT), "--route", str(path), line] + list(conditions),
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_every_node_type_under_failure(tmp_path):
    rc, out, err = check(tmp_path, [t for t, _ in PASSING])
    assert rc == 0, err
    assert "passes its self-tests" in out


@pytest.mark.parametrize("entry,want", [
    ('{ "get fo:1", "a", down = { "a" } }', 'test 1 "get fo:1" under its conditions: '
                                             'expected {a}, got {b}'),
    ('{ "get fe:1", "b", timeout = { "a" } }', 'expected {b}, got {} '
                                               '(the client gets SERVER_ERROR backend timeout)'),
    ('{ "get fm:1", "a", miss = { "a" } }', "expected {a}, got {b}"),
    ('{ "set sync:1", { "a", "b" }, down = { "b" } }', "expected {a,b}, got {a}"),
    ('{ "get warm:1", "b", miss = { "b" } }', "expected {b}, got {a}"),
    ('{ "get ej:1", {}, down = { "127.0.0.1:21214" } }', "expected {}, got {e}"),
])
def test_a_wrong_expectation_is_refused(tmp_path, entry, want):
    rc, out, err = check(tmp_path, [entry])
    assert rc == 1 and want in err, err


@pytest.mark.parametrize("entry,want", [
    ('{ "get fo:1", "a", down = { "nosuch" } }',
     "down: 'nosuch' is not a pool, a server (host:port) or a host of this policy"),
    ('{ "get fo:1", "a", dwon = { "a" } }', "unknown field 'tests[1].dwon' (did you mean "
                                           "'tests[1].down'?)"),
    ('{ "get fo:1", "a", miss = { 3 } }', "tests[1]: miss[1] must be a pool or server name"),
])
def test_bad_conditions_are_named(tmp_path, entry, want):
    rc, out, err = check(tmp_path, [entry])
    assert rc == 1 and want in err, err


# Local-first reads with a remote copy and a last-resort backup, written in the
# wrong order: a plain test still passes, only the down = test catches it.
MISORDERED = """
local lg = require "luagent"
local east   = lg.pool{ name = "cfg_east", servers = { "127.0.0.1:21211" } }
local west   = lg.pool{ name = "cfg_west", servers = { "127.0.0.1:21212" } }
local backup = lg.pool{ name = "backup",   servers = { "127.0.0.1:21213" } }
return lg.policy{
    route = lg.by_op{ read = lg.failover{ ORDER }, default = lg.all_sync{ east, west } },
    tests = {
        { "get cfg:x", "cfg_east" },
        { "get cfg:x", "cfg_west", down = { "cfg_east" } },
        { "get cfg:x", "backup",   down = { "cfg_east", "cfg_west" } },
        { "set cfg:x", { "cfg_east" }, down = { "cfg_west" } },
    },
}
"""


def test_misordered_failover_is_caught_at_check(tmp_path):
    good = tmp_path / "good.lua"
    good.write_text(MISORDERED.replace("ORDER", "east, west, backup"))
    p = subprocess.run([str(LUAGENT), "--check", str(good)], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()

    bad = tmp_path / "bad.lua"
    bad.write_text(MISORDERED.replace("ORDER", "east, backup, west"))
    p = subprocess.run([str(LUAGENT), "--check", str(bad)], capture_output=True, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 1
    assert 'test 2 "get cfg:x" under its conditions: expected {cfg_west}, got {backup}' in err


def test_route_explains_conditions(tmp_path):
    rc, out, err = route(tmp_path, "get fo:1", "--down", "a", "--timeout", "127.0.0.1:21212")
    assert rc == 0, err
    lines = [l.strip() for l in out.splitlines()]
    assert lines[:3] == ["get fo:1", "prefix", "failover"], out
    assert lines[3] == 'pool a -> server 127.0.0.1:21211 (key "fo:1") [down: backend unavailable]'
    assert lines[4] == 'pool b -> server 127.0.0.1:21212 (key "fo:1") [timeout]'
    assert lines[5] == 'pool c -> server 127.0.0.2:21213 (key "fo:1")'
    assert lines[-2:] == ["client gets: VALUE fo:1 (a hit)", "answered by: {c}"]

    rc, out, err = route(tmp_path, "get warm:7", "--miss", "b")
    assert rc == 0, err
    assert 'pool b -> server 127.0.0.1:21212 (key "warm:7") [miss: passed on]' in out
    assert 'pool b -> server 127.0.0.1:21212 (add, key "warm:7") [the proxy\'s own copy]' in out
    assert out.endswith("answered by: {a}\n"), out

    rc, out, err = route(tmp_path, "get sh:1")
    assert rc == 0 and out.endswith("answered by: {a}\n"), out

    rc, out, err = route(tmp_path, "set fo:1", "--down", "a")
    assert rc == 0 and "client gets: SERVER_ERROR backend unavailable" in out, out
    assert out.endswith("answered by: {}\n"), out

    rc, out, err = route(tmp_path, "get fo:1", "--down", "nosuch")
    assert rc == 1 and "'nosuch' is not a pool" in err, err
    path = tmp_path / "r.lua"
    p = subprocess.run([str(LUAGENT), "--check", str(path), "--down", "a"], capture_output=True,
                       timeout=60)
    assert p.returncode == 2 and b"go with --route" in p.stderr


def test_a_hook_loop_fails_its_test_as_it_would_serve(tmp_path):
    path = tmp_path / "loop.lua"
    path.write_text('''
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "127.0.0.1:21211" } }
local h
h = lg.hook{ routes = { main }, fn = function(req) return h end }
return lg.policy{ route = h, tests = { { "get a", "main" } } }
''')
    p = subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True, timeout=60)
    assert p.returncode == 1
    assert ('test 1 "get a": expected {main}, got {} (the client gets SERVER_ERROR luagent: '
            'route loop)') in p.stderr.decode()
