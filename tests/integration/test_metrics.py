"""
--metrics ADDR:PORT (docs/metrics.md): GET /metrics in Prometheus text format
0.0.4, scraped while a load runs, parsed with prometheus_client's own parser,
and checked against `stats`; 404 elsewhere; bad addresses refused at start-up.
"""
import http.client
import re
import socket
import threading
import time

import pytest

from prometheus_client.parser import text_string_to_metric_families

from conftest import HOST, free_port, set_cmd

from test_policy import run_luagent, write_policy
from test_reload import one_pool_policy, reload_to
from test_reload import write_policy as write_reload_policy
from test_stats import ROUTES_POLICY, stats_group

LOAD_CLIENTS = 4
LOAD_ROUNDS = 250       # per client: a set, a get and a 4-key get per round


def fetch(port, path="/metrics", method="GET"):
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read().decode()
    finally:
        conn.close()


def scrape(port):
    """{family name: Metric} of one scrape (format checked by the parser)."""
    status, ctype, body = fetch(port)
    assert status == 200, body
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    return {f.name: f for f in text_string_to_metric_families(body)}, body


def values(family, suffix="", **labels):
    """{label value tuple: value} of a family's samples named name+suffix."""
    out = {}
    for s in family.samples:
        if s.name != family.name + suffix:
            continue
        if any(s.labels.get(k) != v for k, v in labels.items()):
            continue
        out[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(family, suffix="", **labels):
    got = values(family, suffix, **labels)
    assert len(got) == 1, (family.name, suffix, labels, got)
    return next(iter(got.values()))


def load(lg, errors, rounds=LOAD_ROUNDS):
    c = lg.client()
    try:
        for i in range(rounds):
            k = "ld:%d:%d" % (threading.get_ident() % 1000, i)
            assert c.call(set_cmd(k, "v" * 20)) == b"STORED\r\n"
            c.send(("get %s\r\n" % k).encode())
            c.read_values()
            c.send(("get %s a:%d b:%d c:%d\r\n" % (k, i, i, i)).encode())
            c.read_values()
    except Exception as e:      # reported by the main thread
        errors.append(e)
    finally:
        c.close()


def check_histogram(fam, server):
    buckets = sorted(((float(dict(k)["le"]), v) for k, v in
                      values(fam, "_bucket", server=server).items()))
    assert buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    assert one(fam, "_count", server=server) == counts[-1]
    assert one(fam, "_sum", server=server) >= 0
    return counts[-1]


def test_scrape_under_load_matches_stats(memcached, luagent):
    servers = [memcached(), memcached()]
    mport = free_port()
    lg = luagent("-k", "-t", "2", "--metrics", "%s:%d" % (HOST, mport), servers=servers)

    errors = []
    threads = [threading.Thread(target=load, args=(lg, errors)) for _ in range(LOAD_CLIENTS)]
    for t in threads:
        t.start()
    scrapes = 0
    last_requests = 0
    while any(t.is_alive() for t in threads):
        fams, _ = scrape(mport)
        scrapes += 1
        total = sum(values(fams["luagent_server_requests"], "_total").values())
        assert total >= last_requests, "a counter went backwards"
        last_requests = total
    for t in threads:
        t.join()
    assert not errors, errors
    assert scrapes >= 2, "the load finished before a scrape could overlap it"

    fams, body = scrape(mport)
    for name, fam in fams.items():
        assert name.startswith("luagent_"), name
        assert fam.documentation, "%s lacks HELP" % name
    assert "# TYPE luagent_server_requests_total counter" in body
    assert "# TYPE luagent_server_request_duration_seconds histogram" in body

    keys_asked = LOAD_CLIENTS * LOAD_ROUNDS * 5        # 1 + 4 keys per round
    cmds = fams["luagent_commands"]
    assert fams["luagent_commands"].type == "counter"
    assert one(cmds, "_total", command="get") == keys_asked
    assert one(cmds, "_total", command="set") == LOAD_CLIENTS * LOAD_ROUNDS

    st = lg.stats()
    srv = stats_group(lg, "servers")
    requests = values(fams["luagent_server_requests"], "_total")
    assert sum(requests.values()) == keys_asked + LOAD_CLIENTS * LOAD_ROUNDS
    for m in servers:
        label = m.addr
        assert one(fams["luagent_server_requests"], "_total", server=label) == \
            int(srv[label]["requests"])
        assert one(fams["luagent_server_errors"], "_total", server=label) == 0
        assert one(fams["luagent_server_up"], server=label) == 1
        assert one(fams["luagent_open_server_connections"], server=label) == \
            int(srv[label]["curr_connections"])
        replies = check_histogram(fams["luagent_server_request_duration_seconds"], label)
        assert replies == int(srv[label]["replies"]) == int(srv[label]["requests"])
    assert one(fams["luagent_get_hits"], "_total") == int(st["get_hits"])
    assert one(fams["luagent_get_misses"], "_total") == int(st["get_misses"])
    assert one(fams["luagent_pool_requests"], "_total", pool="main") == \
        sum(requests.values())
    assert one(fams["luagent_route_requests"], "_total", route="main", type="pool") == \
        sum(requests.values())
    assert one(fams["luagent_config_generation"]) == 1


def test_routes_and_pools_labels(memcached, luagent, raw_client, tmp_path):
    a, b = memcached(), memcached()
    pol = write_policy(tmp_path, "routes.lua", ROUTES_POLICY, MAIN=[a], SESS=[b])
    mport = free_port()
    lg = luagent("-c", pol, "--metrics", "%s:%d" % (HOST, mport))
    c = raw_client(lg)
    for i in range(6):
        assert c.call(set_cmd("sess:%d" % i, "s")) == b"STORED\r\n"
    assert c.call(set_cmd("bad:1", "x")).startswith(b"SERVER_ERROR")
    fams, _ = scrape(mport)
    assert one(fams["luagent_route_hook_calls"], "_total", route="hook#1", type="hook") == 1
    assert one(fams["luagent_route_hook_cache_hits"], "_total", route="hook#1") == 5
    assert one(fams["luagent_route_errors"], "_total", route="error#1", type="error") == 1
    assert one(fams["luagent_pool_requests"], "_total", pool="sess") == 6
    assert one(fams["luagent_pool_servers"], pool="sess") == 1
    assert one(fams["luagent_hook_calls"], "_total") == 1


def test_other_paths_and_methods(memcached, luagent):
    mport = free_port()
    luagent("--metrics", "%s:%d" % (HOST, mport), servers=[memcached()])
    for path in ("/metric", "/metrics/x", "/favicon.ico", "/index.html"):
        status, _, body = fetch(mport, path)
        assert status == 404, (path, status)
    status, ctype, _ = fetch(mport, "/")                # the status page
    assert status == 200 and ctype == "text/html; charset=utf-8"
    status, _, _ = fetch(mport, "/metrics?name=x")     # a query string is fine
    assert status == 200
    status, _, _ = fetch(mport, "/metrics", method="POST")
    assert status == 405
    status, _, body = fetch(mport, "/metrics", method="HEAD")
    assert status == 200 and body == ""


def test_policy_checksum_and_load_time(memcached, luagent, tmp_path):
    s1 = memcached()
    path = tmp_path / "policy.lua"
    write_reload_policy(path, one_pool_policy("a", [s1]))
    mport = free_port()
    started = int(time.time())
    lg = luagent("-c", path, "-t", 1, "--metrics", "%s:%d" % (HOST, mport))

    def both():
        st = lg.stats()
        fams, _ = scrape(mport)
        info = fams["luagent_policy_info"].samples
        assert len(info) == 1 and info[0].value == 1, info
        assert info[0].labels == {"policy": str(path), "checksum": st["policy_checksum"]}
        loaded = one(fams["luagent_policy_load_time_seconds"])
        assert loaded == int(st["policy_load_time"]), (loaded, st)
        return st

    first = both()
    assert re.fullmatch(r"[0-9a-f]{8}", first["policy_checksum"]), first
    assert started <= int(first["policy_load_time"]) <= int(time.time()), first
    # A reload to other bytes: another checksum, a load time not earlier.
    while int(time.time()) <= int(first["policy_load_time"]):
        time.sleep(0.05)    # until the clock's second moves on, so the times can differ
    reload_to(lg, path, one_pool_policy("b", [s1]), 2, 1)
    second = both()
    assert second["policy_checksum"] != first["policy_checksum"]
    assert int(second["policy_load_time"]) > int(first["policy_load_time"]), (first, second)


def test_bad_metrics_address_exits(memcached):
    m = memcached()
    port = free_port()
    # an address this host does not have (TEST-NET-1): bind fails, exit 1
    rc, _, err = run_luagent("-D", "-l", HOST, "-p", port, "-s", m.addr,
                             "--metrics", "192.0.2.1:%d" % free_port())
    assert rc == 1, err
    assert "--metrics 192.0.2.1:" in err and "cannot listen" in err, err
    assert err.count("\n") == 1, "one line: %r" % err

    # a port already taken: exit 1
    taken = socket.socket()
    taken.bind((HOST, 0))
    taken.listen(1)
    try:
        rc, _, err = run_luagent("-D", "-l", HOST, "-p", port, "-s", m.addr,
                                 "--metrics", "%s:%d" % (HOST, taken.getsockname()[1]))
    finally:
        taken.close()
    assert rc == 1 and "cannot listen: Address already in use" in err, err

    # an unknown host name: exit 1
    rc, _, err = run_luagent("-D", "-l", HOST, "-p", port, "-s", m.addr,
                             "--metrics", "no-such-host.invalid:9150")
    assert rc == 1 and "cannot resolve 'no-such-host.invalid'" in err, err

    # malformed: a bad flag value, like every other (exit 2 with the usage)
    for bad in ("9150", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", ":9150"):
        rc, _, err = run_luagent("-p", port, "-s", m.addr, "--metrics", bad)
        assert rc == 2, (bad, err)
        assert err.startswith("luagent: bad --metrics address '%s'" % bad), err


HOTKEYS_POLICY = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "%s" } }
return lg.policy{
    route = lg.prefix{ ["cfg:"] = lg.nearcache{ to = main, hot_qps = 1 }, default = main },
    settings = { hotkeys_sample = 1, %s },
}
"""


@pytest.mark.parametrize("export", [None, "hash", "truncate"])
def test_hotkeys_metrics_private_by_default(memcached, luagent, tmp_path, export):
    """Hot keys reach /metrics only when settings.hotkeys_metrics asks, and
    then hashed or cut to hotkeys_metrics_key_bytes; the near cache's
    counters are there either way."""
    m = memcached()
    extra = "" if export is None else \
        'hotkeys_metrics = "%s", hotkeys_metrics_key_bytes = 6, hotkeys_metrics_top = 1' % export
    pol = tmp_path / "hot.lua"
    pol.write_text(HOTKEYS_POLICY % (m.addr, extra))
    mport = free_port()
    lg = luagent("-c", str(pol), "--metrics", "%s:%d" % (HOST, mport))
    c = lg.client()
    assert c.call(b"set cfg:secret-flag 0 0 1\r\nv\r\n") == b"STORED\r\n"
    fams, body = {}, ""
    deadline = time.monotonic() + 10     # stats publish once a second
    while time.monotonic() < deadline:
        c.pipeline([b"get cfg:secret-flag\r\n"] * 300 + [b"get other\r\n"] * 100, "get")
        fams, body = scrape(mport)
        if "luagent_nearcache_hits" in fams and one(fams["luagent_nearcache_hits"], "_total") > 0 \
                and (export is None or values(fams["luagent_hotkey_requests_per_second"])):
            break
    assert one(fams["luagent_nearcache_hits"], "_total", route="nearcache#1") > 0
    assert one(fams["luagent_nearcache_bytes"], route="nearcache#1") > 0
    assert "secret-flag" not in body
    if export is None:
        assert "luagent_hotkey" not in body
        return
    got = values(fams["luagent_hotkey_requests_per_second"])
    assert len(got) == 1
    labels = dict(next(iter(got)))
    want = {"truncate": "cfg:se"}.get(export)
    if want is not None:
        assert labels["key"] == want
    else:
        assert len(labels["key"]) == 16 and int(labels["key"], 16) >= 0
    assert labels["pool"] == "main" and labels["server"] == m.addr and labels["rank"] == "1"
