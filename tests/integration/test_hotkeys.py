"""
Hot keys: the per-worker sketch behind `stats hotkeys`, and lg.nearcache
(docs/policy.md "Near cache"): hot values kept per worker for at most ttl_ms,
made stale by any change that passes through this luagent, bypassed by gets,
gat and meta reads, bounded by max_items and max_bytes.

No assertion is on speed. Where the sketch needs traffic to call a key hot,
the test reads in bounded rounds until stats says so; where a copy must have
expired, the test waits ttl_ms after the write (the expiry is measured on the
monotonic clock when the copy is next asked for, so load cannot stretch it).
"""
import subprocess
import time

import pytest

from conftest import HOST, LUAGENT, RawClient, parse_values, report_info, set_cmd
from test_coalesce import HeldStore
from test_policy import POLL_DEADLINE, RUN_TIMEOUT, get1, holder, mc_stats, write_policy

ROUNDS = 200                # bound on read rounds while waiting for a condition


def read_many(c, key, n):
    """n pipelined gets of key; returns the distinct values seen."""
    replies = c.pipeline([("get %s\r\n" % key).encode()] * n, "get")
    return {v[0][2] if v else None for v in (parse_values(r) for r in replies)}


def route_stats(lg, label):
    """{field: value} of `stats routes` for one route label."""
    out = {}
    for k, v in lg.client().stats(b"routes").items():
        parts = k.split(":")
        if len(parts) == 3 and parts[1] == label:
            out[parts[2]] = int(v) if v.isdigit() else v
    return out


def hotkeys(lg):
    """[(key, rate, pool, server)] from `stats hotkeys`, hottest first."""
    st = lg.client().stats(b"hotkeys")
    out, rank = [], 1
    while "hotkey:%d:key" % rank in st:
        p = "hotkey:%d:" % rank
        out.append((st[p + "key"], int(st[p + "requests_per_second"]), st[p + "pool"],
                    st[p + "server"]))
        rank += 1
    return out


def warm(lg, c, key, label="nearcache#1"):
    """Read key until its near cache answers it (it is hot and kept)."""
    for _ in range(ROUNDS):
        read_many(c, key, 200)
        before = route_stats(lg, label)["hits"]
        read_many(c, key, 5)
        if route_stats(lg, label)["hits"] > before:
            return
    pytest.fail("the near cache never kept %s" % key)


NEARCACHE = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = @MAIN@ }
return lg.policy{
    route = lg.prefix{
        ["cfg:"] = lg.nearcache{ to = main, ttl_ms = @TTL@, hot_qps = @HOT@,
                                 max_bytes = "@BYTES@" },
        default = main,
    },
}
"""


def start(luagent, tmp_path, servers, ttl=60000, hot=1, max_bytes="64m", threads=1,
          name="nc.lua"):
    path = write_policy(tmp_path, name, NEARCACHE, MAIN=servers, TTL=str(ttl), HOT=str(hot),
                        BYTES=max_bytes)
    return luagent("-c", str(path), "-t", str(threads))


def test_stats_hotkeys_finds_the_heavy_keys(memcached, luagent):
    """90% of reads on three keys, the rest spread over 2,000: the top three
    of `stats hotkeys` are the heavy keys, each named with its pool and the
    server that holds it."""
    servers = [memcached(), memcached()]
    lg = luagent(servers=servers)
    c = lg.client()
    heavy = ["hot:a", "hot:b", "hot:c"]
    for k in heavy:
        assert c.call(set_cmd(k, b"v")) == b"STORED\r\n"
    reqs, i = [], 0
    while len(reqs) < 3000:
        i += 1
        key = heavy[i % 3] if i % 10 else "cold:%d" % (i * 7919 % 2000)
        reqs.append(("get %s\r\n" % key).encode())
    deadline = time.monotonic() + POLL_DEADLINE
    top = []
    while time.monotonic() < deadline:
        c.pipeline(reqs, "get")
        top = hotkeys(lg)
        if sorted(k for k, _r, _p, _s in top[:3]) == heavy:
            break
    assert sorted(k for k, _r, _p, _s in top[:3]) == heavy, top
    for key, rate, pool, server in top[:3]:
        assert rate > 0 and pool == "main"
        assert [m.addr for m in holder(servers, key)] == [server]


def test_stats_hotkeys_empty_and_unknown_group(luagent, memcached):
    lg = luagent(servers=[memcached()])
    c = lg.client()
    assert c.call(b"stats hotkeys\r\n", "stats") == b"END\r\n"
    assert c.call(b"stats hotkey\r\n") == b"ERROR\r\n"


def test_nearcache_serves_hot_key_and_write_through_this_luagent_is_seen_at_once(
        memcached, luagent, tmp_path):
    """A write on another connection (another worker, with -t 2) makes every
    worker's copy stale before its reply: the next read sees it."""
    m = memcached()
    lg = start(luagent, tmp_path, [m], threads=2)
    reader, writer = lg.client(), lg.client()
    assert writer.call(set_cmd("cfg:flags", b"one")) == b"STORED\r\n"
    warm(lg, reader, "cfg:flags")
    gets_before = int(mc_stats(m)["cmd_get"])
    assert read_many(reader, "cfg:flags", 100) == {b"one"}
    # Answered here: the server saw (almost) none of these reads.
    assert int(mc_stats(m)["cmd_get"]) - gets_before < 100
    for i, op in enumerate([set_cmd("cfg:flags", b"two"), b"touch cfg:flags 0\r\n",
                            b"delete cfg:flags\r\n"]):
        writer.call(op)
        want = {0: b"two", 1: b"two", 2: None}[i]
        assert get1(reader, "cfg:flags") == want, op
        if want is not None:
            warm(lg, reader, "cfg:flags")


def test_nearcache_write_by_another_branch_invalidates(memcached, luagent, tmp_path):
    """Writes routed around the near cache (by_op's write branch) still make
    its copies stale: the rule is by key, wherever the change goes."""
    m = memcached()
    path = write_policy(tmp_path, "branch.lua", """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = @MAIN@ }
return lg.policy{
    route = lg.by_op{ read = lg.nearcache{ to = main, hot_qps = 1, ttl_ms = 60000 },
                      default = main },
}
""", MAIN=[m])
    lg = luagent("-c", str(path), "-t", "1")
    c = lg.client()
    assert c.call(set_cmd("k", b"old")) == b"STORED\r\n"
    warm(lg, c, "k")
    assert c.call(set_cmd("k", b"new")) == b"STORED\r\n"
    assert get1(c, "k") == b"new"
    assert c.call(b"incr n 1\r\n") == b"NOT_FOUND\r\n"
    # flush_all reaches every server: every copy goes.
    warm(lg, c, "k")
    assert c.call(b"flush_all\r\n") == b"OK\r\n"
    assert get1(c, "k") is None


def test_nearcache_write_through_another_luagent_seen_within_ttl(memcached, luagent, tmp_path):
    """The staleness bound across front ends: a write through another luagent
    (or straight to the server) is seen here at most ttl_ms after it."""
    m = memcached()
    ttl_ms = 400
    a = start(luagent, tmp_path, [m], ttl=ttl_ms, name="a.lua")
    b = start(luagent, tmp_path, [m], ttl=ttl_ms, name="b.lua")
    ca, cb = a.client(), b.client()
    assert cb.call(set_cmd("cfg:flag", b"off")) == b"STORED\r\n"
    warm(a, ca, "cfg:flag")
    assert cb.call(set_cmd("cfg:flag", b"on")) == b"STORED\r\n"
    written = time.monotonic()
    seen_stale = get1(ca, "cfg:flag") == b"off"
    time.sleep(ttl_ms / 1000.0 - min(ttl_ms / 1000.0, time.monotonic() - written) + 0.02)
    assert get1(ca, "cfg:flag") == b"on"
    # The bound is not vacuous: right after the write, a copy answered (unless
    # the machine took longer than ttl_ms to ask).
    if time.monotonic() - written < ttl_ms / 1000.0:
        assert seen_stale or get1(ca, "cfg:flag") == b"on"


def test_nearcache_bypassed_by_gets_gat_and_meta(memcached, luagent, tmp_path):
    """gets (a cas unique), gat and mg go to the server: a change made
    straight on the server shows there while plain get still has its copy."""
    m = memcached()
    lg = start(luagent, tmp_path, [m])
    c = lg.client()
    assert c.call(set_cmd("cfg:x", b"a")) == b"STORED\r\n"
    warm(lg, c, "cfg:x")
    direct = m.client()
    assert direct.call(set_cmd("cfg:x", b"b")) == b"STORED\r\n"
    assert get1(c, "cfg:x") == b"a"                 # the copy (ttl 60 s)
    vals = parse_values(c.call(b"gets cfg:x\r\n", "get"))
    assert vals[0][2] == b"b" and vals[0][3] is not None
    assert c.call(b"mg cfg:x v\r\n") + c.read_line() == b"VA 1\r\nb\r\n"
    # mg may touch: it makes the copy stale like any change.
    assert get1(c, "cfg:x") == b"b"


def test_nearcache_cold_keys_not_kept(memcached, luagent, tmp_path):
    """Below hot_qps a key is read from the server every time."""
    m = memcached()
    lg = start(luagent, tmp_path, [m], hot=1000000)
    c = lg.client()
    assert c.call(set_cmd("cfg:cold", b"v")) == b"STORED\r\n"
    read_many(c, "cfg:cold", 500)
    st = route_stats(lg, "nearcache#1")
    assert st["hits"] == 0 and st["misses"] == 500 and st["bytes"] == 0


def test_nearcache_eviction_under_max_bytes(memcached, luagent, tmp_path):
    """Copies past max_bytes push out the least recently used ones; the
    bytes held never pass the bound."""
    m = memcached()
    lg = start(luagent, tmp_path, [m], hot=0, max_bytes="8k")
    c = lg.client()
    keys = ["cfg:%d" % i for i in range(40)]
    for k in keys:
        assert c.call(set_cmd(k, b"x" * 1000)) == b"STORED\r\n"
    for k in keys:
        assert get1(c, k) == b"x" * 1000
        st = route_stats(lg, "nearcache#1")
        assert 0 < st["bytes"] <= 8192
    assert st["evictions"] > 0
    # The newest is still a hit, the oldest went.
    hits = st["hits"]
    assert get1(c, keys[-1]) == b"x" * 1000
    assert route_stats(lg, "nearcache#1")["hits"] == hits + 1
    assert get1(c, keys[0]) == b"x" * 1000
    assert route_stats(lg, "nearcache#1")["hits"] == hits + 1


def test_nearcache_check_warns_and_route_describes(memcached, tmp_path):
    path = write_policy(tmp_path, "w.lua", NEARCACHE, MAIN="{ \"127.0.0.1:11999\" }",
                        TTL="250", HOT="200", BYTES="1m")
    out = subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True,
                         text=True, timeout=RUN_TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert ("route 1: nearcache (ttl 250 ms, hot_qps 200, per worker at most 10000 items "
            "and 1048576 bytes)") in out.stdout
    assert ("warning: route 1: nearcache: pool 'main' below it also takes writes; a write "
            "through another luagent, or straight to the server, is seen here only after "
            "ttl_ms (250 ms)") in out.stdout
    # Writes sent elsewhere: no warning.
    ro = write_policy(tmp_path, "ro.lua", """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "127.0.0.1:11999" } }
local writes = lg.error{ msg = "read only" }
return lg.policy{ route = lg.by_op{ read = lg.nearcache{ to = main }, default = writes } }
""")
    out = subprocess.run([str(LUAGENT), "--check", str(ro)], capture_output=True, text=True,
                         timeout=RUN_TIMEOUT)
    assert out.returncode == 0 and "warning" not in out.stdout, out.stdout
    out = subprocess.run([str(LUAGENT), "--route", str(path), "get cfg:a"],
                         capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert "nearcache (ttl 250 ms, hot_qps 200," in out.stdout
    assert "answered by: {main}" in out.stdout


def test_nearcache_hit_by_reference_outlives_its_entry(memcached, luagent, tmp_path):
    """A hit hands the client the entry's bytes by reference, not a copy.
    A client that does not read holds many such hits in its output while the
    entry is made stale by a write, replaced, then evicted: every reply it
    reads afterwards is still the value it was answered with, intact (a freed
    buffer here is what the SAN=1 build catches)."""
    m = memcached()
    lg = start(luagent, tmp_path, [m], hot=0, max_bytes="512k")
    old, new = b"o" * 200000 + b"|old", b"n" * 200000 + b"|new"
    writer = lg.client()
    assert writer.call(set_cmd("cfg:big", old)) == b"STORED\r\n"
    warm(lg, writer, "cfg:big")
    hits = route_stats(lg, "nearcache#1")["hits"]
    n = 80                                  # 16 MB: past client_max_memory (8 MiB)
    slow = lg.client()
    slow.send(b"get cfg:big\r\n" * n)
    deadline = time.monotonic() + POLL_DEADLINE
    while route_stats(lg, "nearcache#1")["hits"] < hits + 20:
        assert time.monotonic() < deadline, "the slow client's gets were not answered"
        time.sleep(0.05)
    # The entry goes stale, is replaced, then evicted by two others (512k).
    assert writer.call(set_cmd("cfg:big", new)) == b"STORED\r\n"
    assert get1(writer, "cfg:big") == new
    for k in ("cfg:e1", "cfg:e2", "cfg:e3"):
        assert writer.call(set_cmd(k, b"e" * 200000)) == b"STORED\r\n"
        assert get1(writer, k) == b"e" * 200000
    assert route_stats(lg, "nearcache#1")["evictions"] > 0
    seen = []
    for _ in range(n):
        vals = parse_values(slow.read_reply("get"))
        seen.append(vals[0][2] if vals else None)
    # The gets answered before the write saw the old value, the rest the new.
    assert seen[0] == old and set(seen) <= {old, new}, [v[-4:] if v else v for v in seen]
    assert seen == sorted(seen, key=lambda v: v != old)
    assert get1(slow, "cfg:big") == new


class HoldGetsLater(HeldStore):
    """HeldStore (test_coalesce) that answers everything at once until hold():
    from then on the answers to gets are held until release()."""

    def __init__(self):
        super().__init__()
        self.holding = False

    def __call__(self, req):
        with self.lock:
            holding = self.holding
        return super().__call__(req) if holding else self.store(req)

    def hold(self):
        with self.lock:
            self.holding = True

    def release(self):
        with self.lock:
            self.holding = False
        super().release()


LATE_REFRESH = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = @MAIN@, timeout_ms = 60000 }
return lg.policy{
    route = lg.prefix{
        ["cfg:"] = lg.nearcache{ to = main, ttl_ms = @TTL@, hot_qps = 20 },
        default = main,
    },
}
"""
LATE_TTL_MS = 300


@pytest.mark.parametrize("hold_s", [3 * LATE_TTL_MS / 1000.0, 2 * LATE_TTL_MS / 1000.0 + 8],
                         ids=["3xttl", "8s-past-grace"])
def test_nearcache_late_refresh_sends_no_burst_to_the_server(hold_s, mock, luagent, tmp_path):
    """The server sits on the refresh of a hot key's copy (3 x ttl_ms; then
    8 s past the copy's grace, long enough for the hot-key sketch to forget
    gets it did not count) while 10 clients keep reading the key, at least
    10 gets a round. The copy is served past its ttl_ms while its refresh is
    out (up to 2 x ttl_ms), then the gets wait for that refresh: the server
    sees that one read of the key, not one per get (a burst on a server that
    is already late), and every get is answered with the value once the
    server answers."""
    server = HoldGetsLater()
    m = mock(server)
    path = write_policy(tmp_path, "late.lua", LATE_REFRESH, MAIN=[m], TTL=str(LATE_TTL_MS))
    lg = luagent("-c", str(path), "-t", "1")
    c = lg.client()
    assert c.call(set_cmd("cfg:hot", b"v1")) == b"STORED\r\n"
    warm(lg, c, "cfg:hot")
    cs = [RawClient((HOST, lg.port)) for _ in range(10)]
    sent = [0]

    def get_round():
        for cl in cs:
            cl.send(b"get cfg:hot\r\n")
        sent[0] += 1
        time.sleep(0.01)

    before = route_stats(lg, "nearcache#1")
    try:
        server.hold()
        # Read until the copy's refresh reaches the server (within ttl_ms
        # of the hold, at 0.9 x ttl_ms of the copy's age).
        deadline = time.monotonic() + POLL_DEADLINE
        while server.count() == 0 and time.monotonic() < deadline:
            get_round()
        assert server.count() == 1, "the refresh never reached the server"
        # Read on: past the copy's ttl_ms and past its grace. A second read
        # at the server ends it early (it fails below).
        end = time.monotonic() + hold_s
        while time.monotonic() < end and server.count() == 1 and sent[0] < 100000:
            get_round()
        reads_while_late = server.count()
        st = route_stats(lg, "nearcache#1")
        server.release()
        for cl in cs:
            for _ in range(sent[0]):
                vals = parse_values(cl.read_retrieval())
                assert [v[2] for v in vals] == [b"v1"], vals
    finally:
        for cl in cs:
            cl.close()
    gets = sent[0] * len(cs)
    assert reads_while_late == 1, \
        "%d reads of the key reached the late server while its refresh was out (%d gets)" % (
            reads_while_late, gets)
    # Within the grace the copy answered; past it, gets waited for the
    # refresh (coalesced) instead of going to the server.
    waited = st.get("coalesced", 0) - before.get("coalesced", 0)
    assert st["hits"] > before["hits"] and waited > 0, (before, st)
    report_info("nearcache: refresh held %.1f s (ttl_ms %d), %d gets: %d read(s) reached the "
                "server, %d waited for it" % (hold_s, LATE_TTL_MS, gets, reads_while_late, waited))
