"""
`stats pools`, `stats servers`, `stats routes` (docs/metrics.md): each group
after known traffic, with exact counts where the traffic makes them exact; a
killed server; counters across a reload; unknown groups answered as memcached
answers them.
"""
import signal

from conftest import HOST, Ketama, parse_stats, set_cmd

from test_policy import get1, mget, poll, store, write_policy


def stats_group(target, group):
    """{name: {field: value}} of `stats <group>` lines "<group>:<name>:<field>"."""
    c = target.client()
    try:
        raw = c.call(b"stats " + group.encode() + b"\r\n", "stats")
    finally:
        c.close()
    out = {}
    for key, value in parse_stats(raw).items():
        prefix, _, rest = key.partition(":")
        assert prefix == group.rstrip("s"), "line %r in stats %s" % (key, group)
        name, _, field = rest.rpartition(":")
        assert name and field, "bad key %r" % key
        out.setdefault(name, {})[field] = value
    return out


def ints(group, *fields):
    return {name: {f: int(v[f]) for f in fields} for name, v in group.items()}


def all_workers_on(lg, generation, probes=8):
    """Connections go round the workers: enough open at once reach each one."""
    clients = [lg.client() for _ in range(probes)]
    try:
        return all(c.stats()["config_generation"] == generation for c in clients)
    finally:
        for c in clients:
            c.close()


def placement(servers, keys):
    ring = Ketama([(HOST, m.port, 1) for m in servers])
    counts = [0] * len(servers)
    for k in keys:
        counts[ring.server(k)] += 1
    return counts


def test_groups_after_known_traffic(cluster, raw_client):
    lg, servers = cluster(2, "-k")
    c = raw_client(lg)
    keys = ["st:%d" % i for i in range(100)]
    for k in keys:
        assert store(c, k, "v") == b"STORED\r\n"
    for k in keys:
        assert get1(c, k) == b"v"
    # one 100-key get: each key is one request to its server
    assert len(mget(c, keys)) == 100

    per_server = placement(servers, keys)
    assert all(per_server), "keys must reach both servers"

    srv = stats_group(lg, "servers")
    assert set(srv) == {m.addr for m in servers}
    for m, n in zip(servers, per_server):
        s = srv[m.addr]
        assert s["state"] == "up"
        assert int(s["requests"]) == 3 * n, (m.addr, s)
        assert int(s["replies"]) == 3 * n, (m.addr, s)
        assert int(s["errors"]) == int(s["timeouts"]) == int(s["retries"]) == 0
        assert int(s["markdowns"]) == 0
        assert int(s["curr_connections"]) == int(s["total_connections"]) == 1
        p50, p99 = int(s["latency_p50_us"]), int(s["latency_p99_us"])
        assert 0 <= p50 <= p99 < 1000000, s
    assert sum(int(s["requests"]) for s in srv.values()) == 300

    pools = stats_group(lg, "pools")
    assert list(pools) == ["main"]
    p = pools["main"]
    assert p["servers"] == ",".join(m.addr for m in servers)
    assert (p["nservers"], p["distribution"], p["hash"]) == ("2", "ketama", "md5")
    assert (int(p["requests"]), int(p["errors"])) == (300, 0)

    routes = stats_group(lg, "routes")
    assert routes == {"main": {"type": "pool", "requests": "300", "errors": "0",
                               "hook_calls": "0", "hook_cache_hits": "0"}}

    # plain `stats` keeps its server lines (the same as `stats servers`)
    st = c.stats()
    assert st["server:%s:requests" % servers[0].addr] == srv[servers[0].addr]["requests"]
    assert int(st["cmd_get"]) == 200 and int(st["cmd_set"]) == 100


def test_modula_pool_and_unknown_groups(memcached, luagent, raw_client):
    m = memcached()
    lg = luagent(servers=[m])          # no -k: magent's modula placement
    pools = stats_group(lg, "pools")
    assert pools["main"]["distribution"] == "modula"

    c = raw_client(lg)
    direct = m.client()
    try:
        for line in (b"stats foo\r\n", b"stats pools extra\r\n", b"stats items\r\n"):
            # the same answer as a real memcached gives for a group it lacks
            if line != b"stats items\r\n":
                assert direct.call(line) == b"ERROR\r\n"
            assert c.call(line) == b"ERROR\r\n", line
        # the connection stays in step
        assert c.call(b"version\r\n").startswith(b"VERSION ")
    finally:
        direct.close()


def test_killed_server_is_down_and_counted(cluster, raw_client):
    lg, servers = cluster(2, "-k")
    c = raw_client(lg)
    ring = Ketama([(HOST, m.port, 1) for m in servers])
    victim = servers[1]
    dead = [k for k in ("dk:%d" % i for i in range(200)) if ring.server(k) == 1][:10]
    live = [k for k in ("lk:%d" % i for i in range(200)) if ring.server(k) == 0][:10]
    for k in live:
        assert store(c, k, "v") == b"STORED\r\n"
    victim.kill()

    for k in dead:
        assert c.call(set_cmd(k, "x")).startswith(b"SERVER_ERROR ")

    srv = stats_group(lg, "servers")
    s = srv[victim.addr]
    assert s["state"] == "down"
    # every request to the dead server failed (refused, then refused while down)
    assert int(s["errors"]) == len(dead), s
    assert int(s["markdowns"]) >= 1
    assert int(s["replies"]) == 0
    assert srv[servers[0].addr]["state"] == "up"
    assert int(srv[servers[0].addr]["errors"]) == 0

    p = stats_group(lg, "pools")["main"]
    assert int(p["errors"]) == len(dead)
    assert int(p["requests"]) == len(dead) + len(live)

    # back after retry_after_ms: one probe, then up again
    victim.restart()
    poll(lambda: store(c, dead[0], "y") == b"STORED\r\n", "server back in service")
    s = stats_group(lg, "servers")[victim.addr]
    assert s["state"] == "up"
    assert int(s["retries"]) >= 1
    assert int(s["total_connections"]) >= 1
    assert int(s["curr_connections"]) == 1


ROUTES_POLICY = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = @MAIN@ }
local sess = lg.pool{ name = "sess", servers = @SESS@, hash = "fnv1a_64" }
local pick = lg.hook{
    routes = { main, sess },
    cache  = "prefix",
    fn = function(req)
        if req:prefix(":") == "sess" then return sess end
        return main
    end,
}
return lg.policy{
    route = lg.prefix{
        ["bad:"] = lg.error{ msg = "refused by policy" },
        default = lg.failover{ pick, main },
    },
}
"""


def test_routes_hooks_and_errors(memcached, luagent, raw_client, tmp_path):
    a, b = memcached(), memcached()
    pol = write_policy(tmp_path, "routes.lua", ROUTES_POLICY, MAIN=[a], SESS=[b])
    lg = luagent("-c", pol)
    c = raw_client(lg)
    for i in range(10):
        assert store(c, "sess:%d" % i, "s") == b"STORED\r\n"
    for i in range(5):
        assert store(c, "user:%d" % i, "u") == b"STORED\r\n"
    for i in range(3):
        assert c.call(set_cmd("bad:%d" % i, "x")) == b"SERVER_ERROR refused by policy\r\n"

    routes = stats_group(lg, "routes")
    assert {n: r["type"] for n, r in routes.items()} == {
        "prefix#1": "prefix", "error#1": "error", "failover#1": "failover",
        "hook#1": "hook", "main": "pool", "sess": "pool"}
    got = ints(routes, "requests", "errors", "hook_calls", "hook_cache_hits")
    assert got["prefix#1"] == {"requests": 18, "errors": 0, "hook_calls": 0,
                               "hook_cache_hits": 0}
    assert got["error#1"]["requests"] == 3 and got["error#1"]["errors"] == 3
    # writes are not failed over: they go on to the failover's first child
    assert got["failover#1"]["requests"] == 15
    # one Lua run per key prefix, the rest from the decision cache
    assert got["hook#1"] == {"requests": 15, "errors": 0, "hook_calls": 2,
                             "hook_cache_hits": 13}
    assert got["sess"]["requests"] == 10 and got["main"]["requests"] == 5

    pools = stats_group(lg, "pools")
    assert pools["sess"]["hash"] == "fnv1a_64"
    assert (int(pools["sess"]["requests"]), int(pools["main"]["requests"])) == (10, 5)
    assert c.stats()["hook_calls"] == "2"


def test_counters_survive_reload(memcached, luagent, raw_client, tmp_path):
    a, b = memcached(), memcached()
    text = ROUTES_POLICY
    pol = write_policy(tmp_path, "routes.lua", text, MAIN=[a], SESS=[b])
    lg = luagent("-c", pol)
    c = raw_client(lg)
    for i in range(4):
        assert store(c, "sess:%d" % i, "s") == b"STORED\r\n"
    before_srv = stats_group(lg, "servers")[b.addr]

    # the same routes plus a new pool on a new server
    extra = memcached()
    write_policy(tmp_path, "routes.lua", text.replace(
        'default = lg.failover{ pick, main },',
        'default = lg.failover{ pick, main },\n["new:"] = lg.pool{ name = "new", servers = @NEW@ },'),
        MAIN=[a], SESS=[b], NEW=[extra])
    lg.signal(signal.SIGHUP)
    poll(lambda: all_workers_on(lg, "2"), "reload taken by every worker")

    routes = stats_group(lg, "routes")
    assert int(routes["sess"]["requests"]) == 4, "a route named again keeps its counts"
    assert int(routes["hook#1"]["hook_calls"]) == 1
    assert int(routes["new"]["requests"]) == 0
    srv = stats_group(lg, "servers")
    assert srv[b.addr]["requests"] == before_srv["requests"], "servers keep theirs"
    assert extra.addr in srv

    assert store(c, "new:1", "n") == b"STORED\r\n"
    assert store(c, "sess:9", "s") == b"STORED\r\n"
    routes = stats_group(lg, "routes")
    assert int(routes["new"]["requests"]) == 1
    assert int(routes["sess"]["requests"]) == 5
