"""
Live route introspection (docs/operating.md "Where does this key go now?"):
`stats route CMD KEY` on the memcached port and GET /route?cmd=CMD&key=KEY on
the --metrics port name the route nodes, the pool and the server a request
would take at this moment, with the live state (a server marked down, a
failover in effect). Nothing is sent to a server to answer it.
"""
import http.client
import json
import urllib.parse

import pytest

from conftest import HOST, RawClient, free_port

FAILOVER = ('local lg = require "luagent"\n'
            'local main = lg.pool{ name = "main", servers = { "%s" }, failure_limit = 1,\n'
            '                      retry_after_ms = 600000 }\n'
            'local gutter = lg.pool{ name = "gutter", servers = { "%s" } }\n'
            'return lg.policy{ route = lg.by_op{ read = lg.failover{ main, gutter },\n'
            '                                    default = main } }\n')


def fetch(port, query, method="GET"):
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request(method, "/route?" + query if query is not None else "/route")
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read().decode()
    finally:
        conn.close()


def route_json(port, **params):
    status, ctype, body = fetch(port, urllib.parse.urlencode(params))
    assert status == 200, body
    assert ctype == "application/json"
    return json.loads(body)


def stats_route(client, line):
    client.send(b"stats route " + line.encode() + b"\r\n")
    return client.read_reply("stats")


def parse(raw):
    return dict(l.split(" ", 2)[1:] for l in raw.decode().splitlines() if l.startswith("STAT "))


def serve(luagent, tmp_path, policy, *args):
    """luagent on policy (Lua text) with a --metrics port: (luagent, the port)."""
    path = tmp_path / "p.lua"
    path.write_text(policy)
    mport = free_port()
    return luagent("-c", path, "--metrics", "%s:%d" % (HOST, mport), *args), mport


@pytest.fixture
def dead_port():
    return free_port()      # nothing listens there


def test_failover_in_effect_once_the_primary_is_marked_down(memcached, luagent, raw_client,
                                                           tmp_path, dead_port):
    gutter = memcached()
    lg, mport = serve(luagent, tmp_path, FAILOVER % ("%s:%d" % (HOST, dead_port), gutter.addr))
    c = raw_client(lg)
    dead = "%s:%d" % (HOST, dead_port)
    before = parse(stats_route(c, "get user:1"))
    assert before == {"cmd": "get", "key": "user:1", "route": "by_op#1 failover#1",
                      "pool": "main", "server": dead, "state": "up",
                      "target:1:pool": "main", "target:1:server": dead, "target:1:state": "up"}
    # Asking sent nothing: the dead server is still not marked down.
    assert route_json(mport, cmd="get", key="user:1")["state"] == ["up"]
    # A real request finds it dead: it is marked down and the read fails over.
    c.send(b"get user:1\r\n")
    assert c.read_line() == b"END\r\n"
    after = parse(stats_route(c, "get user:1"))
    assert after["pool"] == "gutter" and after["server"] == gutter.addr
    assert after["state"] == "failover"
    assert after["target:1:state"] == "down skipped"
    assert after["target:2:state"] == "up"
    # Writes go to the primary only (writes = "primary"): down, no failover.
    write = parse(stats_route(c, "set user:1"))
    assert (write["route"], write["pool"], write["state"]) == ("by_op#1", "main", "down")
    got = route_json(mport, cmd="get", key="user:1")
    assert got["route"] == [{"node": "by_op#1", "state": []},
                            {"node": "failover#1", "state": ["failover"]}]
    assert (got["pool"], got["server"], got["state"]) == ("gutter", gutter.addr, ["failover"])
    assert got["targets"] == [{"pool": "main", "server": dead, "state": ["down", "skipped"]},
                              {"pool": "gutter", "server": gutter.addr, "state": ["up"]}]


def test_ejected_key_names_the_live_server(memcached, luagent, raw_client, tmp_path, dead_port):
    live = memcached()
    path = tmp_path / "p.lua"
    path.write_text('local lg = require "luagent"\n'
                    'return lg.policy{ route = lg.pool{ name = "p", eject = true, '
                    'failure_limit = 1, retry_after_ms = 600000, dist = "ketama", '
                    'servers = { "%s:%d", "%s" } } }\n' % (HOST, dead_port, live.addr))
    lg = luagent("-c", path)
    c = raw_client(lg)
    dead = "%s:%d" % (HOST, dead_port)
    key = next(k for k in ("k%d" % i for i in range(1000))
               if parse(stats_route(c, "get " + k))["server"] == dead)
    assert parse(stats_route(c, "get " + key))["state"] == "up"
    c.send(b"get %s\r\n" % key.encode())
    c.read_line()                           # refused: the server is marked down
    now = parse(stats_route(c, "get " + key))
    assert (now["server"], now["state"]) == (live.addr, "up")


def test_keys_are_url_decoded_and_json_escaped(memcached, luagent, tmp_path):
    m = memcached()
    _, mport = serve(luagent, tmp_path,
                     'local lg = require "luagent"\n'
                     'return lg.policy{ route = lg.prefix{ ["a:"] = lg.pool{ name = "a", '
                     'servers = { "%s" } }, default = lg.error{ msg = "no" } } }\n' % m.addr)
    status, _, body = fetch(mport, "cmd=get&key=a%3A%22q%5C%7E")
    assert status == 200
    got = json.loads(body)
    assert got["key"] == 'a:"q\\~'
    assert (got["pool"], got["server"]) == ("a", m.addr)
    other = route_json(mport, cmd="delete", key="b")
    assert other["route"] == [{"node": "prefix#1", "state": []}, {"node": "error#1", "state": []}]
    assert (other["pool"], other["server"], other["targets"]) == ("", "", [])


@pytest.mark.parametrize("query,why", [
    ("cmd=get", "cmd and key are required"),
    ("key=k", "cmd and key are required"),
    (None, "cmd and key are required"),
    ("cmd=get&key=%zz", "badly %-encoded"),
    ("cmd=get&key=%4", "badly %-encoded"),
    ("cmd=get&key=a%00b", "badly %-encoded"),
    ("cmd=get&key=", "empty"),
    ("cmd=get&key=a&key=b", "given twice"),
    ("cmd=get&key=a&color=red", "unknown parameter"),
    ("cmd=get&key", "without a value"),
    ("cmd=get&key=a%20b", "key must be 1-250 bytes without spaces"),
    ("cmd=get&key=a+b", "key must be 1-250 bytes without spaces"),
    ("cmd=get&key=a%0d%0aflush_all", "key must be 1-250 bytes"),
    ("cmd=get&key=" + "k" * 251, "key must be 1-250 bytes"),
    ("cmd=stats&key=k", "cmd must be a keyed command"),
    ("cmd=nope&key=k", "cmd must be a keyed command"),
])
def test_bad_queries_get_400(memcached, luagent, tmp_path, query, why):
    m = memcached()
    mport = free_port()
    luagent("-s", m.addr, "--metrics", "%s:%d" % (HOST, mport))
    status, ctype, body = fetch(mport, query)
    assert status == 400, body
    assert ctype == "application/json"
    assert why in json.loads(body)["error"]


def test_only_get_is_allowed(memcached, luagent):
    m = memcached()
    mport = free_port()
    luagent("-s", m.addr, "--metrics", "%s:%d" % (HOST, mport))
    assert fetch(mport, "cmd=get&key=k", method="POST")[0] == 405


def test_bad_stats_route_lines(memcached, luagent, raw_client):
    m = memcached()
    c = raw_client(luagent("-s", m.addr))
    assert c.call(b"stats route get\r\n") == b"CLIENT_ERROR usage: stats route CMD KEY\r\n"
    assert c.call(b"stats route get a b\r\n") == b"CLIENT_ERROR usage: stats route CMD KEY\r\n"
    assert c.call(b"stats route version k\r\n") == (
        b"CLIENT_ERROR cmd must be a keyed command such as get, set or delete\r\n")
    assert c.call(b"stats route\r\n") == b"ERROR\r\n"     # memcached: no such group
    # The connection stays in step.
    assert parse(stats_route(c, "get k"))["server"] == m.addr


def test_hooks_run_on_the_memcached_port_not_over_http(memcached, luagent, raw_client,
                                                       tmp_path):
    a, b = memcached(), memcached()
    lg, mport = serve(luagent, tmp_path,
                      'local lg = require "luagent"\n'
                      'local a = lg.pool{ name = "a", servers = { "%s" } }\n'
                      'local b = lg.pool{ name = "b", servers = { "%s" } }\n'
                      'return lg.policy{ route = lg.hook{ routes = { a, b }, fn = function(req)\n'
                      '  if req:has_prefix("b") then return b end return a end } }\n'
                      % (a.addr, b.addr), "-t", "2")
    c = raw_client(lg)
    assert parse(stats_route(c, "get bee"))["pool"] == "b"
    assert parse(stats_route(c, "get ant"))["pool"] == "a"
    status, _, body = fetch(mport, "cmd=get&key=bee")
    assert status == 409
    assert "stats route CMD KEY" in json.loads(body)["error"]


def test_the_asking_client_is_the_client(memcached, luagent, tmp_path):
    main, admin = memcached(), memcached()
    path = tmp_path / "p.lua"
    path.write_text('local lg = require "luagent"\n'
                    'return lg.policy{ route = lg.by_client{\n'
                    '  admin = lg.pool{ name = "admin", servers = { "%s" } },\n'
                    '  default = lg.pool{ name = "main", servers = { "%s" } } } }\n'
                    % (admin.addr, main.addr))
    aport, mport = free_port(), free_port()
    lg = luagent("-c", path, "--listen", "admin=%s:%d" % (HOST, aport),
                 "--metrics", "%s:%d" % (HOST, mport))
    assert parse(stats_route(RawClient((HOST, lg.port)), "get k"))["pool"] == "main"
    assert parse(stats_route(RawClient((HOST, aport)), "get k"))["pool"] == "admin"
    assert route_json(mport, cmd="get", key="k")["pool"] == "main"
    assert route_json(mport, cmd="get", key="k", listener="admin")["pool"] == "admin"


def test_a_global_rate_limit_shows_its_tokens_left(memcached, luagent, raw_client, tmp_path):
    """A global bucket is one for all workers: introspection shows its tokens
    now. At rate 0.001/s the bucket does not refill while the test runs."""
    m = memcached()
    lg, mport = serve(luagent, tmp_path,
                      'local lg = require "luagent"\n'
                      'local main = lg.pool{ name = "main", servers = { "%s" } }\n'
                      'return lg.policy{ route = lg.ratelimit{ to = main, rate = 0.001,\n'
                      '                  burst = 5, scope = "global" } }\n' % m.addr, "-t", "2")
    c = raw_client(lg)
    assert parse(stats_route(c, "get k"))["route"] == "ratelimit#1"
    assert route_json(mport, cmd="get", key="k")["route"] == [
        {"node": "ratelimit#1", "state": ["tokens", "5"]}]
    for _ in range(2):
        c.send(b"get k\r\n")
        assert c.read_line() == b"END\r\n"
    assert route_json(mport, cmd="get", key="k")["route"] == [
        {"node": "ratelimit#1", "state": ["tokens", "3"]}]
    assert "tokens 3" in parse(stats_route(c, "get k"))["state"]
