"""
Multi-get across servers: one get is split per server and merged back in the
order the keys were asked, duplicates answered twice, one END (DESIGN.md
section 2); placement is magent's modula without -k and ketama with -k
(section 3), checked by asking each memcached directly.
"""
import random

import pytest

from conftest import Ketama, RawClient, modula_index, run_in_threads, set_cmd


def store_keys(c, keys, size=lambda i: 10):
    values = {}
    for i, k in enumerate(keys):
        v = (b"%s=%d;" % (k.encode(), i) * 200)[:size(i)]
        values[k] = v
        assert c.call(set_cmd(k, v, flags=i)) == b"STORED\r\n"
    return values


def expected_reply(ask, values, keys_index):
    out = bytearray()
    for k in ask:
        if k in values:
            out += b"VALUE %s %d %d\r\n%s\r\n" % (k.encode(), keys_index[k], len(values[k]),
                                                  values[k])
    return bytes(out + b"END\r\n")


@pytest.mark.parametrize("ketama", [False, True], ids=["modula", "ketama"])
def test_multiget_200_keys_in_asked_order(memcached, luagent, raw_client, ketama):
    servers = [memcached() for _ in range(3)]
    lg = luagent(*(["-k"] if ketama else []), servers=servers)
    c = raw_client(lg)
    keys = ["mg:%d" % i for i in range(200)]
    values = store_keys(c, keys, size=lambda i: 1 + (i * 37) % 300)
    index = {k: i for i, k in enumerate(keys)}

    # placement: every key on exactly one server, all servers used, as the oracle says
    placed = {}
    for i, s in enumerate(servers):
        held = s.present(keys)
        assert held, "server %d (%s) holds none of the 200 keys" % (i, s.addr)
        for k in held:
            assert k not in placed, "%s stored on two servers" % k
            placed[k] = i
    assert len(placed) == 200
    if ketama:
        ring = Ketama([("127.0.0.1", s.port, 1) for s in servers])
        oracle = {k: ring.server(k) for k in keys}
    else:
        oracle = {k: modula_index(k, len(servers)) for k in keys}
    wrong = [k for k in keys if placed[k] != oracle[k]]
    assert not wrong, "%d of 200 keys not where %s puts them, e.g. %s on %d, expected %d" % (
        len(wrong), "ketama" if ketama else "magent modula", wrong[0], placed[wrong[0]],
        oracle[wrong[0]])

    rng = random.Random(42)
    ask = keys + rng.sample(keys, 40) + ["missing:%d" % i for i in range(20)]
    rng.shuffle(ask)
    reply = c.call(("get " + " ".join(ask) + "\r\n").encode(), "get")
    assert reply == expected_reply(ask, values, index)

    # gets: same order, each with a cas unique
    c.send(("gets " + " ".join(ask) + "\r\n").encode())
    vals = c.read_values()
    assert [v[0] for v in vals] == [k for k in ask if k in values]
    assert all(v[3] is not None for v in vals)


def test_multiget_all_misses_and_single_server(memcached, luagent, raw_client):
    servers = [memcached() for _ in range(3)]
    lg = luagent(servers=servers)
    c = raw_client(lg)
    assert c.call(b"get a b c d e f g h\r\n", "get") == b"END\r\n"
    keys = ["one:%d" % i for i in range(60)]
    values = store_keys(c, keys)
    on0 = [k for k in keys if k in servers[0].present(keys)]
    assert on0
    ask = on0 + on0[::-1]
    assert c.call(("get " + " ".join(ask) + "\r\n").encode(), "get") == \
        expected_reply(ask, values, {k: i for i, k in enumerate(keys)})


def test_multiget_long_line_many_keys(memcached, luagent, raw_client):
    """A get line far over 2048 bytes (get lines may be long): 3000 keys."""
    servers = [memcached() for _ in range(3)]
    lg = luagent(servers=servers)
    c = raw_client(lg)
    keys = ["long:%d" % i for i in range(300)]
    values = store_keys(c, keys)
    rng = random.Random(4)
    ask = [rng.choice(keys) for _ in range(2500)] + ["nokey:%d" % i for i in range(500)]
    rng.shuffle(ask)
    line = ("get " + " ".join(ask) + "\r\n").encode()
    assert len(line) > 20000
    assert c.call(line, "get") == expected_reply(ask, values, {k: i for i, k in enumerate(keys)})


def test_multiget_large_values_pipelined(memcached, luagent, raw_client):
    """Big replies from several servers at once, several multi-gets in one send."""
    servers = [memcached() for _ in range(3)]
    lg = luagent(servers=servers)
    c = raw_client(lg)
    keys = ["big:%d" % i for i in range(30)]
    rng = random.Random(9)
    values = {}
    for k in keys:
        v = rng.randbytes(rng.randrange(20000, 120000))
        values[k] = v
        assert c.call(set_cmd(k, v)) == b"STORED\r\n"
    asks = []
    for _ in range(5):
        ask = rng.sample(keys, 20) + rng.sample(keys, 5)
        asks.append(ask)
    c.send(b"".join(("get " + " ".join(a) + "\r\n").encode() for a in asks))
    for ask in asks:
        vals = c.read_values()
        assert [v[0] for v in vals] == ask
        assert all(v[2] == values[v[0]] for v in vals)


def test_multiget_many_clients_at_once(memcached, luagent):
    """Several clients with multi-gets in flight to the same servers at once get
    their own replies."""
    servers = [memcached() for _ in range(3)]
    lg = luagent(servers=servers)
    setup = RawClient(lg.sockaddr)
    keys = ["mc:%d" % i for i in range(100)]
    values = store_keys(setup, keys, size=lambda i: 50 + i)
    setup.close()
    index = {k: i for i, k in enumerate(keys)}

    def worker(n):
        rng = random.Random(n)
        with RawClient(lg.sockaddr) as c:
            asks = [rng.sample(keys, rng.randrange(1, 40)) + ["nope%d" % n] for _ in range(30)]
            c.send(b"".join(("get " + " ".join(a) + "\r\n").encode() for a in asks))
            for a in asks:
                if c.read_retrieval() != expected_reply(a, values, index):
                    return "client %d: wrong reply" % n
        return None

    run_in_threads(worker, 12)
