"""
lg.hook (DESIGN.md 5.4, 5.6): Lua picks a route per request, against real
memcached servers. The policies are tests/fixtures/hook_*.lua, written into
the test's temp dir with the servers' run-time ports substituted.

Hook failures are logged rate-limited (per hook, per second), so each kind of
failure is checked in its own luagent process.
"""
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from conftest import RawClient, parse_values, set_cmd

from test_policy import FIXTURES, fixture_policy, get1, mget, present, put_direct, store

HOOK_FAILED = b"SERVER_ERROR luagent: route hook failed\r\n"
LOG_DEADLINE = 3.0     # the log line is written before the reply; this is slack


def marker_line(fixture, marker):
    """Line number of the line carrying `-- LINE <marker>` in a fixture."""
    for i, text in enumerate((FIXTURES / fixture).read_text().splitlines(), 1):
        if "-- LINE %s" % marker in text:
            return i
    raise AssertionError("no marker %r in %s" % (marker, fixture))


def wait_log(proc, pattern, deadline=LOG_DEADLINE):
    """Poll proc's log until the regex pattern shows up; return the match."""
    end = time.monotonic() + deadline
    while True:
        m = re.search(pattern, proc.log())
        if m:
            return m
        if time.monotonic() > end:
            raise AssertionError("log has no %r after %.0fs:\n%s" % (pattern, deadline,
                                                                    proc.log()))
        time.sleep(0.02)


def stat_ints(lg, *names):
    st = lg.stats()
    return {n: int(st[n]) for n in names}


@pytest.fixture
def short_dir():
    """A short directory for unix sockets (sun_path is ~108 bytes)."""
    d = tempfile.mkdtemp(prefix="lgh", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_hook(luagent, raw_client, tmp_path):
    """start_hook(fixture, unix=None, **subs) -> (Luagent, RawClient) running
    the policy tests/fixtures/<fixture> with its @NAME@ placeholders filled."""
    def make(fixture, unix=None, **subs):
        path = fixture_policy(tmp_path, fixture, **subs)
        lg = luagent("-c", str(path), unix=unix)
        return lg, raw_client(lg)
    return make


# --------------------------------------------------------------------------
# Choosing a pool per request
# --------------------------------------------------------------------------

POOLS = ["MAIN", "UNIX", "ADD", "DEL", "EXACT", "SESS", "IMG", "LONG"]


def test_hook_picks_pool_from_request(short_dir, memcached, start_hook):
    mc = {n: memcached() for n in POOLS}
    sock = str(short_dir / "lg.sock")
    lg, c = start_hook("hook_select.lua", unix=sock, **mc)

    def where(key):
        return [n for n in POOLS if mc[n].get(key) is not None]

    cases = {
        "sess:1": "SESS",                   # req:has_prefix
        "img:1": "IMG",                     # req:prefix(":")
        "img2:1": "MAIN",                   # another prefix
        "imgx": "MAIN",                     # no delimiter: req:prefix -> nil
        "exact-key": "EXACT",               # req.key
        "k" * 40: "LONG",                   # req.klen
        "k" * 39: "MAIN",
        "plain": "MAIN",
    }
    for key, pool in cases.items():
        assert store(c, key, "v-" + pool) == b"STORED\r\n", key
    for key, pool in cases.items():
        assert where(key) == [pool], "%s went to %s, not %s" % (key, where(key), pool)
        assert get1(c, key) == b"v-" + pool.encode()     # reads take the same branch
    # req.cmd
    assert c.call(set_cmd("added", "a", cmd="add")) == b"STORED\r\n"
    assert where("added") == ["ADD"]
    # req.op
    put_direct(mc.values(), "sess:del", "x")
    assert c.call(b"delete sess:del\r\n") == b"DELETED\r\n"
    assert [n for n in POOLS if mc[n].get("sess:del") is None] == ["DEL"]
    # multi-get: each key is routed on its own
    keys = list(cases)
    assert mget(c, keys[::-1]) == [(k, b"v-" + cases[k].encode()) for k in keys[::-1]]

    # req.client: the same keys through the unix socket go to pool unixp
    u = RawClient(sock)
    try:
        assert store(u, "sess:1", "via-unix") == b"STORED\r\n"
        assert mc["UNIX"].get("sess:1") == b"via-unix"
        assert mc["SESS"].get("sess:1") == b"v-SESS"
        assert get1(u, "sess:1") == b"via-unix"
        assert get1(u, "plain") is None
    finally:
        u.close()
    assert get1(c, "sess:1") == b"v-SESS"


def test_hook_dynamic_rewrite(memcached, start_hook):
    m1, m2, other = memcached(), memcached(), memcached()
    lg, c = start_hook("hook_rewrite.lua", MAIN=[m1, m2], OTHER=other)

    ids = ["%d" % i for i in range(30)]
    for i in ids:
        assert store(c, "acct/" + i, "acct-" + i, flags=9) == b"STORED\r\n"
    stored = ["a:" + i for i in ids]
    on1, on2 = m1.present(stored), m2.present(stored)
    assert on1 | on2 == set(stored) and on1 and on2, "rewritten keys span pool main"
    assert present([m1, m2, other], ["acct/" + i for i in ids]) == set(), \
        "no server may hold the client's key"
    assert store(c, "plain", "p") == b"STORED\r\n"
    assert other.get("plain") == b"p"

    assert parse_values(c.call(b"get acct/7\r\n", "get")) == [("acct/7", 9, b"acct-7", None)]
    vals = parse_values(c.call(b"gets acct/7\r\n", "get"))
    assert vals[0][:3] == ("acct/7", 9, b"acct-7") and vals[0][3] is not None
    asked = ["acct/%s" % i for i in ids[::3]] + ["plain", "acct/nope"] + \
            ["acct/%s" % i for i in ids[1::3]]
    want = [(k, b"p" if k == "plain" else b"acct-" + k[5:].encode())
            for k in asked if k != "acct/nope"]
    assert mget(c, asked) == want
    assert mget(c, asked, cmd="gets") == want
    assert c.call(b"delete acct/7\r\n") == b"DELETED\r\n"
    assert present([m1, m2], ["a:7"]) == set()


# --------------------------------------------------------------------------
# Failing hooks
# --------------------------------------------------------------------------

FAILURES = [
    # key prefix, marker of the line the log must name, what the log must say
    ("boom:", "boom", "kaboom"),
    ("none:", "fn", "hook returned no route"),
    ("str:", "fn", "hook returned no route"),
    ("lone:", "fn", "hook returned no route"),
    ("forged:", "fn", "hook returned no route"),
    ("mk:", "mk", "lg.error: constructors may only run at load time"),
    # a tail call leaves Lua no caller line: the hook's own line will do
    ("mktail:", None, "lg.error: constructors may only run at load time"),
    ("self:", "self", "bad argument #1 to 'prefix' (luagent.request expected, got string)"),
]


@pytest.mark.parametrize("prefix,marker,phrase", FAILURES, ids=[f[0] for f in FAILURES])
def test_hook_failure_answers_server_error(memcached, start_hook, prefix, marker, phrase):
    main, fb = memcached(), memcached()
    lg, c = start_hook("hook_errors.lua", MAIN=main, FALLBACK=fb, SETTINGS="{}")
    before = stat_ints(lg, "hook_errors", "hook_calls")

    assert c.call(("get %s1\r\n" % prefix).encode(), "get") == HOOK_FAILED
    line = r"\d+" if marker is None else "%d" % marker_line("hook_errors.lua", marker)
    wait_log(lg, r"hook_errors\.lua:%s:[^\n]*%s" % (line, re.escape(phrase)))

    assert store(c, prefix + "2", "payload") == HOOK_FAILED
    assert c.call(("delete %s1\r\n" % prefix).encode()) == HOOK_FAILED
    after = stat_ints(lg, "hook_errors", "hook_calls")
    assert after["hook_errors"] - before["hook_errors"] == 3
    # the connection is still in step, healthy keys still work
    assert store(c, "ok:1", "fine") == b"STORED\r\n"
    assert get1(c, "ok:1") == b"fine"
    assert main.get("ok:1") == b"fine"
    assert present([main, fb], [prefix + "1", prefix + "2"]) == set()


def test_hook_errors_default_uses_fallback(memcached, start_hook):
    main, fb = memcached(), memcached()
    lg, c = start_hook("hook_errors.lua", MAIN=main, FALLBACK=fb,
                       SETTINGS='{ hook_errors = "default", fallback = fallback }')
    before = stat_ints(lg, "hook_errors")
    for prefix, _m, _p in FAILURES:
        key = prefix + "1"
        assert store(c, key, "fb-" + key) == b"STORED\r\n", key
        assert fb.get(key) == b"fb-" + key.encode() and main.get(key) is None
        assert get1(c, key) == b"fb-" + key.encode()
    assert stat_ints(lg, "hook_errors")["hook_errors"] - before["hook_errors"] == \
        2 * len(FAILURES)
    assert store(c, "ok:1", "fine") == b"STORED\r\n"
    assert main.get("ok:1") == b"fine" and fb.get("ok:1") is None


# --------------------------------------------------------------------------
# Decision cache
# --------------------------------------------------------------------------

def test_hook_decision_cache_prefix(memcached, start_hook):
    main, sess = memcached(), memcached()
    lg, c = start_hook("hook_cache.lua", MAIN=main, SESS=sess, CACHE='"prefix"')
    names = ("hook_calls", "hook_cache_hits")
    s0 = stat_ints(lg, *names)

    keys = ["sess:1", "user:1", "sess:2", "img:1", "sess:3", "user:2", "user:3"]
    for k in keys:
        assert store(c, k, "v-" + k) == b"STORED\r\n"
    s1 = stat_ints(lg, *names)
    assert s1["hook_calls"] - s0["hook_calls"] == 3, "once per distinct prefix (sess, user, img)"
    assert s1["hook_cache_hits"] - s0["hook_cache_hits"] == 4
    assert sess.present(keys) == {"sess:1", "sess:2", "sess:3"}
    assert main.present(keys) == {"user:1", "user:2", "user:3", "img:1"}

    # cached decisions route exactly as the hook did; reads share them
    for k in keys:
        assert get1(c, k) == b"v-" + k.encode()
    s2 = stat_ints(lg, *names)
    assert s2["hook_calls"] == s1["hook_calls"]
    assert s2["hook_cache_hits"] - s1["hook_cache_hits"] == len(keys)

    assert store(c, "new:1", "n") == b"STORED\r\n"
    s3 = stat_ints(lg, *names)
    assert s3["hook_calls"] - s2["hook_calls"] == 1
    assert main.get("new:1") == b"n"


def test_hook_decision_cache_prefix_op(memcached, start_hook):
    main, sess = memcached(), memcached()
    lg, c = start_hook("hook_cache.lua", MAIN=main, SESS=sess, CACHE='"prefix+op"')
    names = ("hook_calls", "hook_cache_hits")
    s0 = stat_ints(lg, *names)
    for k in ("sess:1", "sess:2", "sess:3"):
        assert store(c, k, "v") == b"STORED\r\n"
    for k in ("sess:1", "sess:2", "sess:3"):
        assert get1(c, k) == b"v"
    s1 = stat_ints(lg, *names)
    assert s1["hook_calls"] - s0["hook_calls"] == 2, "one call per (prefix, op)"
    assert s1["hook_cache_hits"] - s0["hook_cache_hits"] == 4
    assert sess.present(["sess:1", "sess:2", "sess:3"]) == {"sess:1", "sess:2", "sess:3"}
