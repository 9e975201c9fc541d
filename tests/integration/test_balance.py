"""
lg.balance (spread reads over replicas) and pool seeds, against real memcached
servers.

Each replica is given a different value for the same key directly, so the value
a read returns names the replica that answered it. A dead replica is a
memcached stopped by PID; a busy one is a mock backend that never answers.
Health is per worker, so the tests that depend on it run luagent with -t 1.
No assertion is on elapsed time.
"""
import re
import select
import subprocess

import mock_backend
from conftest import HOST, LUAGENT, RawClient, free_port, set_cmd
from test_metrics import one, scrape
from test_policy import RUN_TIMEOUT, get1, put_direct, write_policy

REPLICAS = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = @A@, failure_limit = 1, retry_after_ms = 60000 }
local b = lg.pool{ name = "b", servers = @B@, failure_limit = 1, retry_after_ms = 60000 }
local c = lg.pool{ name = "c", servers = @C@, failure_limit = 1, retry_after_ms = 60000 }
return lg.policy{
    route = lg.by_op{ read = lg.balance{ a, b, c, by = "@BY@" }, default = lg.all_sync{ a, b, c } },
}
"""


def replicas(tmp_path, memcached, by):
    servers = [memcached() for _ in range(3)]
    path = write_policy(tmp_path, "balance-%s.lua" % by, REPLICAS, A=servers[0], B=servers[1],
                        C=servers[2], BY=by)
    return servers, path


def tag_replicas(servers, key):
    """Give key a different value on each replica: r0, r1, r2."""
    for i, m in enumerate(servers):
        put_direct([m], key, "r%d" % i)


def route_pool(path, line):
    """The pools `luagent --route` says answer line."""
    p = subprocess.run([str(LUAGENT), "--route", str(path), line], capture_output=True,
                       timeout=RUN_TIMEOUT)
    assert p.returncode == 0, p.stderr
    m = re.search(rb"answered by: \{([^}]*)\}", p.stdout)
    return m.group(1).decode().split(","), p.stdout.decode()


def stat_routes(lg):
    c = lg.client()
    try:
        return c.stats(b"routes")
    finally:
        c.close()


def test_by_key_reads_always_the_same_replica_and_spread(tmp_path, memcached, luagent):
    servers, path = replicas(tmp_path, memcached, "key")
    lg = luagent("-c", str(path))
    c = lg.client()
    seen = set()
    for i in range(40):
        key = "bk:%d" % i
        tag_replicas(servers, key)
        first = get1(c, key)
        for _ in range(5):
            assert get1(c, key) == first, "a key must keep its replica"
        pools, _ = route_pool(path, "get " + key)
        assert pools == ["abc"[int(first[1:])]], "--route must name the replica that answers"
        seen.add(first)
    assert seen == {b"r0", b"r1", b"r2"}, "keys must spread over every replica"


def test_random_uses_every_replica_and_self_test_names_all(tmp_path, memcached, luagent):
    servers, path = replicas(tmp_path, memcached, "random")
    lg = luagent("-c", str(path))
    c = lg.client()
    tag_replicas(servers, "rk")
    seen = {get1(c, "rk") for _ in range(90)}
    assert seen == {b"r0", b"r1", b"r2"}
    pools, out = route_pool(path, "get rk")
    assert sorted(pools) == ["a", "b", "c"]
    assert "balance (by random: any child)" in out


def test_writes_go_to_the_chosen_child_only(tmp_path, memcached, luagent):
    servers = [memcached() for _ in range(3)]
    path = write_policy(tmp_path, "bw.lua", """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = @A@ }
local b = lg.pool{ name = "b", servers = @B@ }
local c = lg.pool{ name = "c", servers = @C@ }
return lg.policy{ route = lg.balance{ a, b, c, by = "key" } }
""", A=servers[0], B=servers[1], C=servers[2])
    lg = luagent("-c", str(path))
    c = lg.client()
    for i in range(12):
        key = "w:%d" % i
        assert c.call(set_cmd(key, "v")) == b"STORED\r\n"
        holders = [n for n, m in zip("abc", servers) if m.get(key) is not None]
        pools, _ = route_pool(path, "set " + key)
        assert holders == pools, "a write through balance reaches its chosen child alone"


def test_down_replica_is_skipped_and_counted(tmp_path, memcached, luagent):
    servers, path = replicas(tmp_path, memcached, "key")
    mport = free_port()
    lg = luagent("-t", "1", "-c", str(path), "--metrics", "%s:%d" % (HOST, mport))
    c = lg.client()
    keys = ["dk:%d" % i for i in range(30)]
    owner = {}
    for k in keys:
        tag_replicas(servers, k)
        owner[k] = get1(c, k)
    victims = [k for k in keys if owner[k] == b"r0"]
    assert victims, "some key must read from replica a"
    servers[0].stop()
    # The first read of a victim meets the dead server and marks it down
    # (failure_limit = 1); from then on its keys read from the other two.
    get_or_error = c.call(("get %s\r\n" % victims[0]).encode(), "get")
    assert get_or_error.startswith(b"SERVER_ERROR") or get_or_error.endswith(b"END\r\n")
    for k in keys:
        v = get1(c, k)
        if owner[k] == b"r0":
            assert v in (b"r1", b"r2"), "a down replica's keys read from the live ones"
        else:
            assert v == owner[k], "keys of live replicas do not move"
    st = stat_routes(lg)
    assert st["route:balance#1:type"] == "balance"
    assert int(st["route:balance#1:skipped_down"]) >= len(victims)
    fams, _ = scrape(mport)
    assert one(fams["luagent_route_skipped_down"], "_total", route="balance#1") == \
        int(st["route:balance#1:skipped_down"])
    assert "route:a:skipped_down" not in st, "only balance nodes show skipped_down"


def _reply_within(sock_client, seconds):
    """True when the client has a reply to read within seconds (no timing
    assertion: a slow answer only makes the test count it as held)."""
    r, _, _ = select.select([sock_client.sock], [], [], seconds)
    return bool(r)


def test_least_outstanding_avoids_a_child_with_requests_in_flight(tmp_path, memcached,
                                                                  luagent, mock):
    fast = [memcached() for _ in range(2)]
    held = mock(mock_backend.hang)
    path = write_policy(tmp_path, "least.lua", """
local lg = require "luagent"
local slow = lg.pool{ name = "slow", servers = { "@SLOW@" }, timeout_ms = 60000 }
local a = lg.pool{ name = "a", servers = @A@ }
local b = lg.pool{ name = "b", servers = @B@ }
return lg.policy{ route = lg.balance{ slow, a, b, by = "least_outstanding" } }
""", SLOW=held.addr, A=fast[0], B=fast[1])
    lg = luagent("-t", "1", "-c", str(path))
    put_direct(fast, "lk", "v")
    waiting = []
    for _ in range(30):
        c = RawClient(lg.sockaddr)
        c.send(b"get lk\r\n")
        if _reply_within(c, 2.0):
            assert c.read_retrieval() == b"VALUE lk 0 1\r\nv\r\nEND\r\n"
            c.close()
        else:
            waiting.append(c)
    # The held child got one request at most: from then on it has one in
    # flight and the idle children always have fewer.
    assert len(held.received_lines()) <= 1, held.received_lines()
    for c in waiting:
        c.close()


def test_balance_field_errors(tmp_path):
    for body, want in [
        ('lg.balance{ p, p, bye = "key" }', "unknown field 'bye' (did you mean 'by'?)"),
        ('lg.balance{ p, by = "keys" }', "field 'by' must be 'random', 'key' or "
                                         "'least_outstanding' (got 'keys')"),
        ('lg.balance{ by = "key" }', "needs at least 1 route"),
    ]:
        path = write_policy(tmp_path, "bad.lua", """
local lg = require "luagent"
local p = lg.pool{ name = "p", servers = { "127.0.0.1:11211" } }
return lg.policy{ route = %s }
""" % body)
        r = subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True,
                           timeout=RUN_TIMEOUT)
        assert r.returncode != 0
        assert want in r.stderr.decode(), r.stderr
        assert "bad.lua:4: lg.balance:" in r.stderr.decode()


def test_self_tests_and_check_describe_balance(tmp_path, memcached):
    servers = [memcached() for _ in range(2)]
    text = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = @A@ }
local b = lg.pool{ name = "b", servers = @B@ }
return lg.policy{ route = lg.balance{ a, b, by = "key" }, tests = { @TESTS@ } }
"""
    path = write_policy(tmp_path, "bt.lua", text, A=servers[0], B=servers[1], TESTS="")
    pools, _ = route_pool(path, "get x")
    right = pools[0]
    wrong = "b" if right == "a" else "a"
    for want, ok in ((right, True), (wrong, False)):
        path = write_policy(tmp_path, "bt.lua", text, A=servers[0], B=servers[1],
                            TESTS='{ "get x", "%s" }' % want)
        r = subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True,
                           timeout=RUN_TIMEOUT)
        assert (r.returncode == 0) == ok, r.stderr
        if ok:
            assert "route 0: balance (by key: the key's child) (root)" in r.stdout.decode()
        else:
            assert b"expected {%s}, got {%s}" % (wrong.encode(), right.encode()) in r.stderr


# --------------------------------------------------------------------------
# Pool seed
# --------------------------------------------------------------------------

SEEDED = """
local lg = require "luagent"
return lg.policy{ route = lg.pool{ name = "main", servers = @S@@SEED@ } }
"""


def test_seed_places_keys_apart_and_serves_where_route_says(tmp_path, memcached, luagent):
    servers = [memcached() for _ in range(4)]
    plain = write_policy(tmp_path, "plain.lua", SEEDED, S=servers, SEED="")
    seeded = write_policy(tmp_path, "seeded.lua", SEEDED, S=servers, SEED=', seed = "gutter"')
    lg = luagent("-c", str(seeded))
    c = lg.client()
    moved = 0
    for i in range(60):
        key = "sk:%d" % i
        _, p_out = route_pool(plain, "get " + key)
        _, s_out = route_pool(seeded, "get " + key)
        srv = re.search(r"-> server (\S+)", s_out).group(1)
        moved += re.search(r"-> server (\S+)", p_out).group(1) != srv
        assert c.call(set_cmd(key, "v")) == b"STORED\r\n"
        assert [m.addr for m in servers if m.get(key) is not None] == [srv]
    # 4 servers: a key keeps its server by chance 1 time in 4.
    assert 25 <= moved <= 59, moved


def test_diff_reports_a_seed_change(tmp_path, memcached):
    servers = ["127.0.0.1:21211", "127.0.0.1:21212", "127.0.0.1:21213", "127.0.0.1:21214"]
    plain = write_policy(tmp_path, "plain.lua", SEEDED, S=servers, SEED="")
    seeded = write_policy(tmp_path, "seeded.lua", SEEDED, S=servers, SEED=', seed = "gutter"')
    r = subprocess.run([str(LUAGENT), "--diff", str(plain), str(seeded)], capture_output=True,
                       timeout=RUN_TIMEOUT)
    out = r.stdout.decode()
    assert "estimated: the seed changes (none -> gutter)" in out, out
    share = float(re.search(r"pool main: ([0-9.]+)% of keys move", out).group(1))
    assert 65.0 < share < 85.0, out
    r = subprocess.run([str(LUAGENT), "--diff", str(seeded), str(seeded)], capture_output=True,
                       timeout=RUN_TIMEOUT)
    assert "pool main: 0.00% of keys move" in r.stdout.decode()
