"""
Ketama placement compatibility with twemproxy (DESIGN.md section 3): luagent -k
over the same servers must place every key where nutcracker (hash: md5,
distribution: ketama) places it, so users migrating from twemproxy find their
keys. Placement is observed by asking each memcached directly.
"""
import pytest

from conftest import (HOST, NUTCRACKER, Ketama, Proc, RawClient, free_port, parse_values, placement,
                      set_cmd)

NKEYS = 2000


def nutcracker_conf(path, listen_port, servers, weights):
    lines = [
        "luagent_compat:",
        "  listen: %s:%d" % (HOST, listen_port),
        "  hash: md5",
        "  distribution: ketama",
        "  timeout: 1000",
        "  auto_eject_hosts: false",
        "  preconnect: false",
        "  servers:",
    ]
    for s, w in zip(servers, weights):
        lines.append("   - %s:%d:%d" % (HOST, s.port, w))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def nutcracker(request, tmp_path):
    """Factory: nutcracker(servers, weights) -> Proc with .port; stopped by PID."""
    started = []
    procs = request.node.__dict__.setdefault("_logged_procs", [])

    def make(servers, weights):
        port = free_port()
        conf = tmp_path / ("nutcracker-%d.yml" % port)
        nutcracker_conf(conf, port, servers, weights)
        p = Proc("nutcracker", [NUTCRACKER, "-c", conf, "-s", free_port(), "-a", HOST,
                                "-o", tmp_path / ("nutcracker-%d.log" % port)],
                 tmp_path / ("nutcracker-%d.out" % port))
        started.append(p)
        procs.append(p)
        p.wait_listening((HOST, port))
        p.port = port
        return p

    yield make
    for p in started:
        p.stop()


def keys_and_values():
    keys = ["user:%d:profile" % i for i in range(NKEYS // 2)] + \
           ["k%d" % i for i in range(NKEYS // 2)]
    return keys, {k: ("v:" + k).encode() for k in keys}


def set_all(addr, keys, values):
    c = RawClient(addr)
    try:
        replies = c.pipeline([set_cmd(k, values[k]) for k in keys], "line")
    finally:
        c.close()
    bad = [(k, r) for k, r in zip(keys, replies) if r != b"STORED\r\n"]
    assert not bad, "%d sets failed, e.g. %r" % (len(bad), bad[:3])


def placement_of_all(servers, keys):
    """placement() of keys that must all be stored somewhere."""
    where = placement(servers, keys)
    assert len(where) == len(keys), "%d keys stored nowhere" % (len(keys) - len(where))
    return where


def flush_direct(servers):
    for s in servers:
        c = s.client()
        assert c.call(b"flush_all\r\n") == b"OK\r\n"
        c.close()


@pytest.mark.parametrize("weights", [(1, 1, 1, 1), (1, 2, 1, 3)], ids=["equal", "weighted"])
def test_nutcracker_writes_luagent_reads_and_same_placement(memcached, luagent, nutcracker,
                                                            weights):
    servers = [memcached() for _ in range(4)]
    nc = nutcracker(servers, weights)
    specs = ["%s:%d:%d" % (HOST, s.port, w) for s, w in zip(servers, weights)]
    lg = luagent("-k", servers=specs)
    keys, values = keys_and_values()

    # 1. set through nutcracker, get each key through luagent: all hit
    set_all((HOST, nc.port), keys, values)
    by_nutcracker = placement_of_all(servers, keys)
    assert len(set(by_nutcracker.values())) == 4
    c = RawClient(lg.sockaddr)
    try:
        replies = c.pipeline([b"get %s\r\n" % k.encode() for k in keys], "get")
    finally:
        c.close()
    missed = []
    for k, r in zip(keys, replies):
        vals = parse_values(r)
        if not vals or vals[0][2] != values[k]:
            missed.append(k)
    assert not missed, "%d of %d keys set through nutcracker missed through luagent -k, " \
        "e.g. %s" % (len(missed), len(keys), missed[:5])

    # 2. set through luagent: each key lands where nutcracker put it
    flush_direct(servers)
    set_all(lg.sockaddr, keys, values)
    by_luagent = placement_of_all(servers, keys)
    differ = [k for k in keys if by_luagent[k] != by_nutcracker[k]]
    assert not differ, "%d of %d keys placed differently from nutcracker, e.g. %s: " \
        "luagent server %d, nutcracker server %d" % (
            len(differ), len(keys), differ[0], by_luagent[differ[0]], by_nutcracker[differ[0]])


def test_python_ketama_oracle_matches_nutcracker(memcached, nutcracker):
    """The Python Ketama used by test_multiget is checked against nutcracker here."""
    servers = [memcached() for _ in range(4)]
    nc = nutcracker(servers, (1, 1, 1, 1))
    keys, values = keys_and_values()
    keys = keys[::4]
    set_all((HOST, nc.port), keys, values)
    got = placement_of_all(servers, keys)
    ring = Ketama([(HOST, s.port, 1) for s in servers])
    assert all(got[k] == ring.server(k) for k in keys)


def test_python_ketama_oracle_known_answers():
    """DESIGN.md section 3 known answers (no servers needed)."""
    ring = Ketama([("127.0.0.1", p, 1) for p in (21211, 21212, 21213, 21214)])
    ports = (21211, 21212, 21213, 21214)
    assert [ports[ring.server("key:%d" % i)] for i in range(3)] == [21213, 21211, 21214]
    hosts = ["127.0.0.%d" % i for i in range(1, 5)]
    ring = Ketama([(h, 11211, 1) for h in hosts])
    assert [hosts[ring.server("key:%d" % i)] for i in range(3)] == \
        ["127.0.0.1", "127.0.0.3", "127.0.0.1"]
