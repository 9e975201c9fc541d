"""
Route nodes that shape what passes rather than where it goes (docs/policy.md):
lg.ttl (exptime rewritten on the way to the server), lg.failover's gutter_ttl,
lg.ratelimit (token buckets) and hedged reads (wait_ms on lg.failover and
lg.all_fastest).

A TTL is checked where it lands: memcached's own "mg <key> t" says how many
seconds an item has left (-1: never expires). Slow servers are mock backends
(mock_backend.py) that hold a reply for a while; no assertion is on elapsed
time except where the figure is the point (the rate limit), and then the
bounds are derived from the time the test itself measured.
"""
import re
import threading
import time

import binary_client as bp
import mock_backend
from binary_client import BinaryClient
from conftest import HOST, RawClient, free_port, parse_values, set_cmd
from test_metrics import fetch
from test_policy import run_luagent, write_policy
from test_stats import stats_group

TTL_HEAD = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = @MAIN@ }
"""


def ttl_left(server, key):
    """Seconds the item has left on a real memcached (-1: never expires), or None."""
    c = server.client()
    try:
        line = c.call(b"mg " + key.encode() + b" t\r\n")
    finally:
        c.close()
    if line.startswith(b"EN"):
        return None
    assert line.startswith(b"HD t"), line
    return int(line.split()[1][1:])


def start_policy(luagent, raw_client, tmp_path, text, *args, name="policy.lua", **subs):
    path = write_policy(tmp_path, name, text, **subs)
    lg = luagent("-c", str(path), *args)
    return lg, raw_client(lg)


# --------------------------------------------------------------------------
# lg.ttl
# --------------------------------------------------------------------------

def test_ttl_max_caps_every_form(memcached, luagent, raw_client, tmp_path):
    """max = 100: never (0), a long relative time and a far unix time all
    land with at most 100 s left; a shorter time is kept; -1 still deletes;
    touch, gat and meta T are capped; an ms without T gets one."""
    m = memcached()
    lg, c = start_policy(luagent, raw_client, tmp_path, TTL_HEAD + """
return lg.policy{ route = lg.ttl{ to = main, max = 100 } }
""", MAIN=m)
    far = int(time.time()) + 100000

    def check(key, low, high):
        left = ttl_left(m, key)
        assert left is not None and low <= left <= high, (key, left)

    assert c.call(set_cmd("t:never", "v")) == b"STORED\r\n"
    check("t:never", 90, 100)
    assert c.call(set_cmd("t:long", "v", exptime=5000)) == b"STORED\r\n"
    check("t:long", 90, 100)
    assert c.call(set_cmd("t:short", "v", exptime=20)) == b"STORED\r\n"
    check("t:short", 10, 20)
    assert c.call(set_cmd("t:abs", "v", exptime=far)) == b"STORED\r\n"
    check("t:abs", 90, 100)
    for cmd in ("add", "replace"):
        key = "t:" + cmd
        if cmd == "replace":
            assert c.call(set_cmd(key, "v", exptime=20)) == b"STORED\r\n"
        assert c.call(set_cmd(key, "w", cmd=cmd)) == b"STORED\r\n"
        check(key, 90, 100)
    vals = parse_values(c.call(b"gets t:never\r\n", "get"))
    assert c.call(b"cas t:never 0 0 1 %d\r\nx\r\n" % vals[0][3]) == b"STORED\r\n"
    check("t:never", 90, 100)
    # expire at once stays expire at once
    assert c.call(set_cmd("t:gone", "v", exptime=-1)) == b"STORED\r\n"
    assert ttl_left(m, "t:gone") is None

    # touch and gat: from "never" to at most 100 s
    direct = m.client()
    for key in ("t:touch", "t:gat", "t:mgT"):
        assert direct.call(set_cmd(key, "v")) == b"STORED\r\n"
    direct.close()
    assert c.call(b"touch t:touch 0\r\n") == b"TOUCHED\r\n"
    check("t:touch", 90, 100)
    assert parse_values(c.call(b"gat 0 t:gat\r\n", "get"))[0][2] == b"v"
    check("t:gat", 90, 100)
    c.send(b"mg t:mgT v T0\r\n")
    assert c.read_line() == b"VA 1\r\n" and c.read_line() == b"v\r\n"
    check("t:mgT", 90, 100)

    # meta stores: T capped, and an ms without T (exptime 0) gets one
    assert c.call(b"ms t:ms1 1 T9999\r\nv\r\n") == b"HD\r\n"
    check("t:ms1", 90, 100)
    assert c.call(b"ms t:ms2 1\r\nv\r\n") == b"HD\r\n"
    check("t:ms2", 90, 100)
    # other commands are untouched: incr's delta, delete
    assert c.call(set_cmd("t:n", "5", exptime=30)) == b"STORED\r\n"
    assert c.call(b"incr t:n 7000\r\n") == b"7005\r\n"
    assert c.call(b"delete t:n\r\n") == b"DELETED\r\n"


def test_ttl_binary_protocol(memcached, luagent, tmp_path):
    """Binary requests travel as meta commands: their exptime is capped too."""
    m = memcached()
    path = write_policy(tmp_path, "p.lua", TTL_HEAD + """
return lg.policy{ route = lg.ttl{ to = main, max = 100 } }
""", MAIN=m)
    lg = luagent("-c", str(path))
    c = BinaryClient(lg.sockaddr)
    try:
        assert c.call(bp.store(bp.SET, b"b:never", b"v")).status == 0
        assert c.call(bp.store(bp.SET, b"b:long", b"v", exptime=5000)).status == 0
        assert c.call(bp.store(bp.SET, b"b:short", b"v", exptime=20)).status == 0
        assert c.call(bp.touch(bp.TOUCH, b"b:short", 0)).status == 0
    finally:
        c.close()
    for key in ("b:never", "b:long", "b:short"):
        left = ttl_left(m, key)
        assert left is not None and 90 <= left <= 100, (key, left)


def test_ttl_set_replaces(memcached, luagent, raw_client, tmp_path):
    """set = 30 replaces any exptime; set = 0 makes items never expire;
    nested nodes apply the outer one first."""
    m = memcached()
    lg, c = start_policy(luagent, raw_client, tmp_path, TTL_HEAD + """
return lg.policy{ route = lg.prefix{
    ["s30:"] = lg.ttl{ to = main, set = 30 },
    ["s0:"]  = lg.ttl{ to = main, set = 0 },
    -- set 3000 first, then capped at 50
    ["nest:"] = lg.ttl{ set = 3000, to = lg.ttl{ to = main, max = 50 } },
    default  = main,
} }
""", MAIN=m)
    assert c.call(set_cmd("s30:a", "v")) == b"STORED\r\n"
    assert 20 <= ttl_left(m, "s30:a") <= 30
    assert c.call(set_cmd("s30:b", "v", exptime=-1)) == b"STORED\r\n"
    assert 20 <= ttl_left(m, "s30:b") <= 30
    assert c.call(set_cmd("s0:a", "v", exptime=10)) == b"STORED\r\n"
    assert ttl_left(m, "s0:a") == -1
    assert c.call(set_cmd("nest:a", "v")) == b"STORED\r\n"
    assert 40 <= ttl_left(m, "nest:a") <= 50
    assert c.call(set_cmd("plain", "v")) == b"STORED\r\n"
    assert ttl_left(m, "plain") == -1


def test_ttl_exact_lines_and_batches(mock, luagent, raw_client, tmp_path):
    """The bytes a server gets: only the exptime token changes (noreply is
    luagent's own, as always); gat keys of
    differently capped routes are not batched under one exptime."""
    def handler(req):
        if req.cmd in mock_backend.STORAGE:
            return b"STORED\r\n"
        if req.cmd == b"touch":
            return b"TOUCHED\r\n"
        return b"END\r\n"
    srv = mock(handler)
    lg, c = start_policy(luagent, raw_client, tmp_path, TTL_HEAD + """
return lg.policy{ route = lg.prefix{
    ["a:"] = lg.ttl{ to = main, max = 10 },
    ["b:"] = lg.ttl{ to = main, max = 20 },
    default = main,
} }
""", MAIN=[srv.addr])
    assert c.call(b"set a:1 7 0 2\r\nxy\r\n") == b"STORED\r\n"
    assert c.call(b"cas a:1 7 86400 2 55 noreply\r\nxy\r\nset c:1 7 0 2\r\nxy\r\n") \
        == b"STORED\r\n"
    assert c.call(b"touch a:1 5\r\n") == b"TOUCHED\r\n"
    assert c.call(b"gat 3600 a:1 b:1 c:1\r\n", "get") == b"END\r\n"
    srv.wait_for(lambda s: any(l.startswith(b"gat") and b"c:1" in l for l in s.received_lines()))
    lines = srv.received_lines()
    assert lines[:4] == [b"set a:1 7 10 2", b"cas a:1 7 10 2 55", b"set c:1 7 0 2",
                         b"touch a:1 5"]
    gats = sorted(l for l in lines if l.startswith(b"gat"))
    assert gats == [b"gat 10 a:1", b"gat 20 b:1", b"gat 3600 c:1"], lines


def test_new_nodes_in_check_route_and_self_tests(tmp_path):
    """--check and --route name each new node with its parameters; self-tests
    see through lg.ttl and lg.ratelimit to their route."""
    path = write_policy(tmp_path, "p.lua", """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "127.0.0.1:21211" } }
local gut  = lg.pool{ name = "gut", servers = { "127.0.0.1:21212" } }
return lg.policy{
    route = lg.prefix{
        ["t:"] = lg.ttl{ to = main, max = 10 },
        ["s:"] = lg.ttl{ to = main, set = 0 },
        ["r:"] = lg.ratelimit{ to = main, rate = 2.5, burst = 4, scope = "global", over = "pass" },
        ["f:"] = lg.failover{ main, gut, writes = "failover", gutter_ttl = 10, wait_ms = 50 },
        ["a:"] = lg.all_fastest{ main, gut, wait_ms = 20 },
        default = main,
    },
    tests = { { "set t:1", "main" }, { "get r:1", "main" }, { "get f:1", "main" } },
}
""")
    rc, out, err = run_luagent("--check", path)
    assert rc == 0, err
    for want in ("ttl (max 10 s)", "ttl (set 0 s)", "ratelimit (2.5/s, burst 4, global, pass)",
                 "failover (wait 50 ms, gutter_ttl 10 s)", "all_fastest (wait 20 ms)"):
        assert re.search(r"^route \d+: %s$" % re.escape(want), out, re.M), (want, out)
    rc, out, err = run_luagent("--route", path, "set t:k 0 0 1")
    assert rc == 0, err
    assert "    ttl (max 10 s)\n" in out and "answered by: {main}" in out, out
    # a failing self-test through the new nodes is reported as any other
    bad = write_policy(tmp_path, "bad.lua", """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "127.0.0.1:21211" } }
return lg.policy{ route = lg.ratelimit{ to = lg.ttl{ to = main, max = 5 }, rate = 1 },
                  tests = { { "get k", "other" } } }
""")
    rc, out, err = run_luagent("--check", bad)
    assert rc == 1 and 'test 1 "get k": expected {other}, got {main}' in err, err


# --------------------------------------------------------------------------
# gutter_ttl
# --------------------------------------------------------------------------

GUTTER = """
local lg = require "luagent"
local main   = lg.pool{ name = "main", servers = @MAIN@, timeout_ms = 500,
                        connect_timeout_ms = 300, failure_limit = 1000 }
local gutter = lg.pool{ name = "gutter", servers = @GUTTER@ }
return lg.policy{ route = lg.failover{ main, gutter, writes = "failover", gutter_ttl = 10 } }
"""


def test_gutter_ttl_caps_writes_sent_to_the_gutter(memcached, luagent, raw_client, tmp_path):
    """While main is down, sets land in the gutter with at most 10 s to live;
    while main is up, they land there as written."""
    main, gutter = memcached(), memcached()
    lg, c = start_policy(luagent, raw_client, tmp_path, GUTTER, MAIN=main, GUTTER=gutter)
    assert c.call(set_cmd("g:up", "v")) == b"STORED\r\n"
    assert ttl_left(main, "g:up") == -1
    assert ttl_left(gutter, "g:up") is None
    main.kill()
    assert c.call(set_cmd("g:down", "v")) == b"STORED\r\n"
    assert c.call(set_cmd("g:down2", "v", exptime=3600)) == b"STORED\r\n"
    assert c.call(b"touch g:down 0\r\n") == b"TOUCHED\r\n"
    for key in ("g:down", "g:down2"):
        left = ttl_left(gutter, key)
        assert left is not None and 0 < left <= 10, (key, left)
    routes = stats_group(lg, "routes")
    assert int(routes["failover#1"]["gutter_capped"]) == 3


# --------------------------------------------------------------------------
# lg.ratelimit
# --------------------------------------------------------------------------

RATE = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = @MAIN@ }
return lg.policy{ route = lg.ratelimit{ to = main, rate = 100, burst = 10,
                                        scope = "@SCOPE@", over = "@OVER@" } }
"""

LIMITED = b"SERVER_ERROR rate limited\r\n"


def paced_gets(addr, n, seconds, batch=10):
    """n single-key gets in batches spread over about `seconds`: (passed,
    refused, send times of the batches, last reply) on time.monotonic()."""
    c = RawClient(addr)
    passed = refused = 0
    start = time.monotonic()
    sends = []
    try:
        for i in range(0, n, batch):
            due = start + seconds * i / n
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sends.append(time.monotonic())
            c.send(b"".join(b"get rl:%d\r\n" % (i + j) for j in range(batch)))
            for _ in range(batch):
                line = c.read_line()
                if line == LIMITED:
                    refused += 1
                else:
                    assert line == b"END\r\n", line
                    passed += 1
        return passed, refused, sends, time.monotonic()
    finally:
        c.close()


def bucket_passes(sends, batch, rate, burst):
    """What a token bucket lets through of `batch` requests at each time."""
    tokens, last, passed = float(burst), sends[0], 0
    for t in sends:
        tokens = min(burst, tokens + (t - last) * rate)
        last = t
        took = min(batch, int(tokens))
        tokens -= took
        passed += took
    return passed


def assert_rate_bounds(passed, sends, end, batch=10, rate=100, burst=10):
    """At most what the bucket can give from the first send to the last
    reply; at least most of what it would give the requests at the times
    they were sent (a client stalled by the machine's load sends less often,
    and the bucket then overflows: the bound follows it)."""
    most = burst + rate * (end - sends[0]) + 1
    least = 0.8 * bucket_passes(sends, batch, rate, burst)
    assert least <= passed <= most, (passed, least, most, end - sends[0])


def test_ratelimit_worker_bucket(memcached, luagent, tmp_path):
    """1,000 requests over about 1 s at rate 100, burst 10: about 110 pass,
    the rest get SERVER_ERROR rate limited; counted in stats and metrics."""
    m = memcached()
    mport = free_port()
    path = write_policy(tmp_path, "rl.lua", RATE, MAIN=m, SCOPE="worker", OVER="error")
    lg = luagent("-c", str(path), "-t", "1", "--metrics", "%s:%d" % (HOST, mport))
    passed, refused, sends, end = paced_gets(lg.sockaddr, 1000, 1.0)
    print("ratelimit worker: %d passed of 1000 in %.3f s" % (passed, end - sends[0]))
    assert passed + refused == 1000
    assert_rate_bounds(passed, sends, end)
    routes = stats_group(lg, "routes")
    assert int(routes["ratelimit#1"]["rate_over"]) == refused
    assert int(routes["ratelimit#1"]["rate_limited"]) == refused
    status, _, body = fetch(mport)
    assert status == 200
    assert ('luagent_route_rate_limited_total{route="ratelimit#1",type="ratelimit"} %d'
            % refused) in body, body


def test_ratelimit_global_is_shared_by_workers(memcached, luagent, tmp_path):
    """scope = "global" with two workers and two clients in parallel: one
    bucket in all, so together they get what one would."""
    m = memcached()
    path = write_policy(tmp_path, "rl.lua", RATE, MAIN=m, SCOPE="global", OVER="error")
    lg = luagent("-c", str(path), "-t", "2")
    results = [None, None]

    def run(i):
        results[i] = paced_gets(lg.sockaddr, 500, 1.0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(results), results
    passed = sum(r[0] for r in results)
    sends = sorted(results[0][2] + results[1][2])
    end = max(r[3] for r in results)
    print("ratelimit global: %d passed of 1000 in %.3f s" % (passed, end - sends[0]))
    assert_rate_bounds(passed, sends, end)


def test_ratelimit_pass_counts_only(memcached, luagent, raw_client, tmp_path):
    m = memcached()
    lg, c = start_policy(luagent, raw_client, tmp_path, RATE, MAIN=m, SCOPE="worker",
                         OVER="pass")
    c.send(b"get rl:x\r\n" * 200)
    assert all(c.read_line() == b"END\r\n" for _ in range(200))
    over = int(stats_group(lg, "routes")["ratelimit#1"]["rate_over"])
    assert 150 <= over <= 190, over     # 200 minus the burst and what refilled meanwhile
    assert int(stats_group(lg, "routes")["ratelimit#1"]["rate_limited"]) == 0


# --------------------------------------------------------------------------
# Hedged reads (wait_ms)
# --------------------------------------------------------------------------

SLOW_S = 0.3        # the slow server's delay


class SlowServer:
    """A mock that answers gets of "slow:*" keys after SLOW_S with value
    "late", others at once (from its store); late_sent counts the keys it
    has answered late (pipelined gets reach it as one multi-key line)."""

    def __init__(self, mock):
        self.store = mock_backend.Store()
        self.late_sent = 0
        self.lock = threading.Lock()
        self.backend = mock(self.handle)

    def handle(self, req):
        if req.cmd == b"get" and req.keys[0].startswith(b"slow:"):
            time.sleep(SLOW_S)
            out = b"".join(b"VALUE %s 0 4\r\nlate\r\n" % k for k in req.keys) + b"END\r\n"
            req.send(out)
            with self.lock:
                self.late_sent += len(req.keys)
            return None
        return self.store(req)


HEDGE = """
local lg = require "luagent"
local slow = lg.pool{ name = "slow", servers = @SLOW@, timeout_ms = 5000 }
local fast = lg.pool{ name = "fast", servers = @FAST@, timeout_ms = 5000 }
return lg.policy{ route = lg.@NODE@{ slow, fast, wait_ms = 50 } }
"""


def hedge_setup(mock, memcached, luagent, raw_client, tmp_path, node):
    slow = SlowServer(mock)
    fast = memcached()
    d = fast.client()
    for i in range(4):
        assert d.call(set_cmd("slow:%d" % i, "fast")) == b"STORED\r\n"
    d.close()
    lg, c = start_policy(luagent, raw_client, tmp_path, HEDGE, SLOW=[slow.backend.addr],
                         FAST=fast, NODE=node)
    return slow, lg, c


def wait_late(slow, n, deadline=10.0):
    end = time.monotonic() + deadline
    while slow.late_sent < n:
        assert time.monotonic() < end, "the slow server never answered"
        time.sleep(0.01)


def check_hedged_get(slow, lg, c, node):
    t0 = time.monotonic()
    vals = parse_values(c.call(b"get slow:0\r\n", "get"))
    elapsed = time.monotonic() - t0
    print("%s wait_ms=50 over a %.0f ms server: answered in %.0f ms"
          % (node, SLOW_S * 1000, elapsed * 1000))
    assert vals == [("slow:0", 0, b"fast", None)], vals
    # The late reply comes, is dropped, and the slow server's connection
    # stays in step: its next answer is its own.
    wait_late(slow, 1)
    slow.store.data[b"own"] = (0, b"mine")
    assert parse_values(c.call(b"get own\r\n", "get")) == [("own", 0, b"mine", None)]
    routes = stats_group(lg, "routes")
    assert int(routes[node + "#1"]["hedges"]) == 1


def test_hedged_failover(mock, memcached, luagent, raw_client, tmp_path):
    slow, lg, c = hedge_setup(mock, memcached, luagent, raw_client, tmp_path, "failover")
    check_hedged_get(slow, lg, c, "failover")


def test_hedged_all_fastest(mock, memcached, luagent, raw_client, tmp_path):
    slow, lg, c = hedge_setup(mock, memcached, luagent, raw_client, tmp_path, "all_fastest")
    check_hedged_get(slow, lg, c, "all_fastest")


def test_hedged_pipeline_late_replies_are_dropped(mock, memcached, luagent, raw_client,
                                                   tmp_path):
    """Pipelined reads, each hedged: every reply comes once, in order, from
    the fast server; the late replies that arrive after the client has moved
    on are never written; the client's stream stays exact."""
    slow, lg, c = hedge_setup(mock, memcached, luagent, raw_client, tmp_path, "failover")
    c.send(b"get slow:1\r\nget slow:2\r\nmn\r\nget slow:3\r\n")
    for i in (1, 2):
        assert parse_values(c.read_retrieval()) == [("slow:%d" % i, 0, b"fast", None)]
    assert c.read_line() == b"MN\r\n"
    assert parse_values(c.read_retrieval()) == [("slow:3", 0, b"fast", None)]
    wait_late(slow, 3)
    # nothing more was written for them: the next reply is the next request's
    assert c.call(b"version\r\n").startswith(b"VERSION ")
    assert c.call(set_cmd("after", "x")) == b"STORED\r\n"
