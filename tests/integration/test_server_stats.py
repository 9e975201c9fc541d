"""
The servers' own figures in luagent's `stats` (docs/metrics.md): the fleet sums
(curr_items, total_items, bytes, limit_maxbytes, evictions,
servers_curr_connections) checked against each memcached's own `stats`, the
per-server lines of `stats servers`, the metrics, a server that does not
answer, a reload that removes one, a TLS server, the poller turned off; and
luagent's own bytes_read / bytes_written, counted as memcached counts them.

The poll runs every second here (--server-stats-interval 1; the fixture turns
it off unless asked); tests wait for a condition with a deadline, never for a
time.
"""
import signal

import pytest

import mock_backend
from conftest import HOST, free_port, parse_stats, set_cmd

from test_metrics import one, scrape, values
from test_policy import poll, store, write_policy
from test_stats import all_workers_on, stats_group
from test_tls import pki, tls_memcached  # noqa: F401 (pki is a fixture)

FAST = ("--server-stats-interval", "1")
FIGURES = ("curr_items", "total_items", "bytes", "limit_maxbytes", "evictions")

SHARED_POLICY = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = @A@ }
local b = lg.pool{ name = "b", servers = @B@ }
return lg.policy{ route = lg.prefix{ ["b:"] = b, default = a } }
"""


def direct_stats(m):
    with m.client() as c:
        return c.stats()


def expected_sums(servers):
    """Each server's own figures added up, each server once."""
    per = [direct_stats(m) for m in servers]
    return {f: sum(int(s[f]) for s in per) for f in FIGURES}


def sums(st):
    return {f: int(st[f]) for f in FIGURES}


def sums_match(lg, servers):
    """luagent's sums equal the servers' own right now (else False, to poll)."""
    st = lg.stats()
    return sums(st) == expected_sums(servers) and st


def test_sums_equal_the_servers_own_with_a_shared_server(memcached, luagent, raw_client,
                                                         tmp_path):
    m1, m2, m3 = memcached(extra=["-m", "64"]), memcached(extra=["-m", "32"]), \
        memcached(extra=["-m", "16"])
    pol = write_policy(tmp_path, "shared.lua", SHARED_POLICY, A=[m1, m2], B=[m2, m3])
    lg = luagent("-c", pol, *FAST)
    c = raw_client(lg)
    for i in range(40):
        assert store(c, "a:%d" % i, "x" * i) == b"STORED\r\n"
        assert store(c, "b:%d" % i, "y" * (100 + i)) == b"STORED\r\n"
    for i in range(5):          # overwrites: total_items grows, curr_items does not
        assert store(c, "a:%d" % i, "z") == b"STORED\r\n"

    # m2 is in both pools and counts once: counted twice, the sums never match
    st = poll(lambda: sums_match(lg, [m1, m2, m3]), "sums equal to the servers' own")
    assert int(st["curr_items"]) == 80
    assert int(st["limit_maxbytes"]) == (64 + 32 + 16) << 20
    assert st["servers_stats_answered"] == "3" and st["servers_stats_unanswered"] == "0"
    assert int(st["servers_stats_age_s"]) >= 0
    # luagent's own clients (c and the stats connection) keep memcached's
    # curr_connections; the servers' connections have a name of their own
    assert st["curr_connections"] == "2"
    assert int(st["servers_curr_connections"]) >= 3   # at least the poller's own

    # per server, in the style of `stats servers`: the same figures as asked directly
    srv = stats_group(lg, "servers")
    assert sorted(srv) == sorted(m.addr for m in (m1, m2, m3))
    for m in (m1, m2, m3):
        own, mine = direct_stats(m), srv[m.addr]
        assert mine["stats_poll"] == "answered"
        assert int(mine["stats_age_s"]) >= 0
        assert {f: int(mine[f]) for f in FIGURES} == {f: int(own[f]) for f in FIGURES}
        # the poller's connection stays open between polls: counted by the server
        assert int(mine["server_curr_connections"]) >= 1

    # the figures refresh: more items show within a few intervals
    for i in range(40, 60):
        assert store(c, "b:%d" % i, "w") == b"STORED\r\n"
    st = poll(lambda: sums_match(lg, [m1, m2, m3]), "sums refreshed after more sets")
    assert int(st["curr_items"]) == 100


def test_connections_sum_is_the_per_server_lines(memcached, luagent, raw_client):
    servers = [memcached() for _ in range(3)]
    lg = luagent("-k", *FAST, servers=servers)
    poll(lambda: lg.stats()["servers_stats_answered"] == "3", "every server answered")
    # one snapshot: the sum and the lines come from the same figures
    c = raw_client(lg)
    st = parse_stats(c.call(b"stats\r\n", "stats"))
    lines = [int(st["server:%s:server_curr_connections" % m.addr]) for m in servers]
    assert int(st["servers_curr_connections"]) == sum(lines)
    assert all(n >= 1 for n in lines)


def test_a_server_that_does_not_answer_is_shown_and_not_summed(memcached, luagent,
                                                               raw_client):
    live, victim = memcached(), memcached()
    dead = "%s:%d" % (HOST, free_port())       # nothing listens there
    lg = luagent("-k", *FAST, servers=[live, victim, dead])
    c = raw_client(lg)
    for i in range(30):
        c.call(set_cmd("k:%d" % i, "v"))

    st = poll(lambda: sums_match(lg, [live, victim]) if
              lg.stats()["servers_stats_answered"] == "2" else False,
              "the two live servers summed")
    assert st["servers_stats_unanswered"] == "1"
    srv = stats_group(lg, "servers")
    assert srv[dead]["stats_poll"] == "unanswered"
    assert "curr_items" not in srv[dead] and "stats_age_s" not in srv[dead]

    victim.kill()
    st = poll(lambda: (lambda s: s["servers_stats_unanswered"] == "2" and s)(lg.stats()),
              "the killed server unanswered")
    assert st["servers_stats_answered"] == "1"
    assert sums(st) == expected_sums([live]), "only the server that answers is summed"
    assert stats_group(lg, "servers")[victim.addr]["stats_poll"] == "unanswered"
    assert "stats poll %s" % victim.addr in lg.log()

    victim.restart()        # empty again, on the same port
    poll(lambda: stats_group(lg, "servers")[victim.addr]["stats_poll"] == "answered",
         "the restarted server answers again")
    poll(lambda: sums_match(lg, [live, victim]), "sums with the restarted server")


@pytest.mark.parametrize("answer", [mock_backend.HANG, b"ERROR\r\n"], ids=["hang", "error"])
def test_a_server_that_fails_the_poll_leaves_the_request_path_alone(mock, luagent, raw_client,
                                                                    answer):
    store_ = mock_backend.Store()
    m = mock(lambda req: answer if req.cmd == b"stats" else store_(req))
    lg = luagent("-t", "1", *FAST, servers=[m.addr])
    c = raw_client(lg)
    poll(lambda: stats_group(lg, "servers")[m.addr]["stats_poll"] == "unanswered",
         "the poll shown unanswered")
    for i in range(20):
        assert store(c, "p:%d" % i, "v") == b"STORED\r\n"
        assert c.call(b"get p:%d\r\n" % i, "get") == b"VALUE p:%d 0 1\r\nv\r\nEND\r\n" % i
    srv = stats_group(lg, "servers")[m.addr]
    assert (srv["state"], srv["errors"], srv["timeouts"], srv["markdowns"]) == ("up", "0", "0", "0")
    # the poll's stats went on connections that carried no request
    polled = {r.conn for r in m.requests if r.cmd == b"stats"}
    served = {r.conn for r in m.requests if r.cmd != b"stats"}
    assert polled and served and not polled & served
    if answer != mock_backend.HANG:
        assert 'answered "ERROR" to stats' in lg.log()


def test_reload_drops_a_removed_server_and_polls_a_new_one(memcached, luagent, tmp_path):
    a, b, added = memcached(), memcached(), memcached()
    text = 'local lg = require "luagent"\nreturn lg.policy{ route = lg.pool{ ' \
           'name = "main", servers = @S@ } }\n'
    pol = write_policy(tmp_path, "p.lua", text, S=[a, b])
    lg = luagent("-c", pol, *FAST)
    poll(lambda: lg.stats()["servers_stats_answered"] == "2", "both servers answered")

    write_policy(tmp_path, "p.lua", text, S=[a, added])
    lg.signal(signal.SIGHUP)
    poll(lambda: all_workers_on(lg, "2"), "reload taken by every worker")
    st = poll(lambda: (lambda s: s["servers_stats_answered"] == "2" and s)(lg.stats()),
              "the new server answered")
    assert "server:%s:stats_poll" % b.addr not in st
    assert st["server:%s:stats_poll" % added.addr] == "answered"
    poll(lambda: sums_match(lg, [a, added]), "sums over the new policy's servers")
    # the poller closed its connection to the removed server: only ours is left
    poll(lambda: direct_stats(b)["curr_connections"] == "1",
         "no connection left to the removed server")


def test_tls_server_is_polled_over_tls(memcached, luagent, raw_client, pki):  # noqa: F811
    m = tls_memcached(memcached, pki)
    lg = luagent("--backend-tls-ca", pki.path("ca"), *FAST, servers=[m])
    c = raw_client(lg)
    assert store(c, "t:1", "over tls") == b"STORED\r\n"
    st = poll(lambda: (lambda s: s["curr_items"] == "1" and s)(lg.stats()),
              "the TLS server's figures")
    assert st["servers_stats_answered"] == "1"
    assert int(st["limit_maxbytes"]) == 64 << 20


def test_metrics_carry_each_servers_figures(memcached, luagent, raw_client):
    live = memcached()
    dead = "%s:%d" % (HOST, free_port())
    mport = free_port()
    lg = luagent("--metrics", "%s:%d" % (HOST, mport), *FAST, servers=[live, dead])
    c = raw_client(lg)
    store(c, "m:1", "abc")
    own = direct_stats(live)
    poll(lambda: stats_group(lg, "servers")[live.addr].get("total_items")
         == direct_stats(live)["total_items"], "figures taken after the set")
    own = direct_stats(live)
    fams, _ = scrape(mport)
    assert one(fams["luagent_memcached_stats_answered"], server=live.addr) == 1
    assert one(fams["luagent_memcached_stats_answered"], server=dead) == 0
    for name, field in (("luagent_memcached_current_items", "curr_items"),
                        ("luagent_memcached_items", "total_items"),
                        ("luagent_memcached_current_bytes", "bytes"),
                        ("luagent_memcached_limit_bytes", "limit_maxbytes"),
                        ("luagent_memcached_items_evicted", "evictions")):
        fam = fams[name]
        suffix = "_total" if fam.type == "counter" else ""
        assert one(fam, suffix, server=live.addr) == int(own[field]), name
        # no series for a server that does not answer: a sum never takes it as 0
        assert values(fam, suffix, server=dead) == {}, name
    assert one(fams["luagent_memcached_current_connections"], server=live.addr) >= 1
    assert one(fams["luagent_memcached_stats_age_seconds"], server=live.addr) >= 0
    st = lg.stats()
    assert one(fams["luagent_read_bytes"], "_total") <= int(st["bytes_read"])
    assert one(fams["luagent_written_bytes"], "_total") <= int(st["bytes_written"])


def test_the_poll_is_on_by_default(memcached, luagent):
    m = memcached()
    lg = luagent(servers=[m], stats_poll=True)      # no --server-stats-interval
    # the first poll goes at start-up, not after the first 10 s interval
    st = poll(lambda: (lambda s: s.get("servers_stats_answered") == "1" and s)(lg.stats()),
              "the server answered the poll at start-up")
    assert int(st["limit_maxbytes"]) == int(direct_stats(m)["limit_maxbytes"])


def test_interval_zero_turns_the_poller_off(memcached, luagent, raw_client):
    m = memcached()
    mport = free_port()
    lg = luagent("--server-stats-interval", "0", "--metrics", "%s:%d" % (HOST, mport),
                 servers=[m])
    c = raw_client(lg)
    assert store(c, "off:1", "v") == b"STORED\r\n"
    st = c.stats()
    for field in FIGURES + ("servers_curr_connections", "servers_stats_age_s"):
        assert field not in st
    assert not any(k.endswith(":stats_poll") for k in st)
    _, body = scrape(mport)
    assert "luagent_memcached_" not in body


def _exchange(target, requests):
    """On a fresh connection: stats, the requests (one reply each), stats.
    Returns (bytes of the requests and the second stats, bytes of the first
    stats reply and the replies, delta of bytes_read, delta of bytes_written)."""
    c = target.client()
    try:
        first = c.call(b"stats\r\n", "stats")
        replies = b""
        for data, kind in requests:
            replies += c.call(data, kind)
        second = parse_stats(c.call(b"stats\r\n", "stats"))
    finally:
        c.close()
    before = parse_stats(first)
    sent = sum(len(d) for d, _ in requests) + len(b"stats\r\n")
    got = len(first) + len(replies)
    return (sent, got, int(second["bytes_read"]) - int(before["bytes_read"]),
            int(second["bytes_written"]) - int(before["bytes_written"]))


def test_bytes_read_and_written_counted_as_memcached_counts_them(memcached, luagent):
    backend, reference = memcached(), memcached()
    lg = luagent("-t", "1", servers=[backend])
    requests = [(set_cmd("b:1", "hello"), "line"), (b"get b:1 b:2\r\n", "get"),
                (set_cmd("b:2", "x" * 3000), "line"), (b"get b:2\r\n", "get"),
                (b"delete b:1\r\n", "line"), (b"incr nope 1\r\n", "line"),
                (b"bogus\r\n", "line")]
    for target in (reference, lg):
        sent, got, read, written = _exchange(target, requests)
        assert (read, written) == (sent, got), target
