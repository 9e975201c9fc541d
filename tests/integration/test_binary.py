"""
memcached's binary protocol through luagent, byte for byte against a direct
memcached 1.6.18: every opcode, quiet variants pipelined with Noop, refused
headers, a value over the limit, a connection cut mid-body, keys the text
protocol cannot carry, multi-gets across servers, backend failures.

For exact bytes (CAS included) luagent has one server and the direct
memcached is as fresh as it, so both hand out the same CAS values; over
several servers the CAS is masked.
"""
import struct

import pytest

import binary_client as bp
from binary_client import BinaryClient
from conftest import HOST, ITEM_MAX

VERSION_BODY = b"1.6.18"


@pytest.fixture
def pair(memcached, luagent):
    """(luagent over one fresh memcached, a fresh direct memcached)."""
    backend = memcached()
    lg = luagent(servers=[backend])
    direct = memcached()
    return lg, direct, backend


@pytest.fixture
def spread(memcached, luagent):
    """(luagent over three servers, a direct memcached, the three servers)."""
    servers = [memcached() for _ in range(3)]
    return luagent(servers=servers), memcached(), servers


def client(target):
    return BinaryClient((HOST, target.port))


def normalized(raw):
    """luagent's version string says what it is; the rest must be memcached's."""
    r = bp.Response(raw)
    if r.opcode == bp.VERSION and r.status == bp.SUCCESS and r.value != VERSION_BODY:
        assert r.value.startswith(VERSION_BODY + b" luagent-"), r.value
        return raw[:8] + struct.pack(">I", len(VERSION_BODY)) + raw[12:24] + VERSION_BODY
    return raw


def run_script(target, steps, mask_cas=False):
    """Send each step (bytes, responses to read: a number, or 'noop' to read
    up to the Noop that ends it) and return every response's bytes."""
    c = client(target)
    out = []
    try:
        for data, want in steps:
            c.send(data)
            got = c.until(bp.NOOP) if want == "noop" else [c.read() for _ in range(want)]
            out += [r.masked() if mask_cas else r.raw for r in got]
    finally:
        c.close()
    return [normalized(r) for r in out]


def every_opcode_steps():
    big = b"\x00\xff\r\n binary \x80" * 100
    return [
        (bp.request(bp.VERSION, opaque=1), 1),
        (bp.request(bp.NOOP, opaque=2), 1),
        (bp.store(bp.SET, "k1", b"v1", flags=0x1234, opaque=3), 1),
        (bp.request(bp.GET, "k1", opaque=4), 1),
        (bp.request(bp.GETK, "k1", opaque=5), 1),
        (bp.request(bp.GET, "missing", opaque=6), 1),
        (bp.request(bp.GETK, "missing", opaque=7), 1),
        (bp.store(bp.ADD, "k1", b"x", opaque=8), 1),
        (bp.store(bp.ADD, "k2", b"added", flags=7, exptime=100, opaque=9), 1),
        (bp.store(bp.REPLACE, "nope", b"x", opaque=10), 1),
        (bp.store(bp.REPLACE, "k2", b"replaced", opaque=11), 1),
        (bp.request(bp.APPEND, "k2", value=b"+end", opaque=12), 1),
        (bp.request(bp.PREPEND, "k2", value=b"start+", opaque=13), 1),
        (bp.request(bp.APPEND, "nope", value=b"x", opaque=14), 1),
        (bp.request(bp.GET, "k2", opaque=15), 1),
        # CAS: the right one stores, a stale one does not, on a missing key: not found
        (bp.store(bp.SET, "k2", b"cas ok", cas=3, opaque=16), 1),
        (bp.store(bp.SET, "k2", b"cas stale", cas=1, opaque=17), 1),
        (bp.store(bp.SET, "nope", b"x", cas=5, opaque=18), 1),
        (bp.store(bp.ADD, "k2", b"add with cas", cas=999, opaque=19), 1),
        (bp.request(bp.DELETE, "k2", cas=1, opaque=20), 1),
        (bp.request(bp.DELETE, "k2", opaque=21), 1),
        (bp.request(bp.DELETE, "k2", opaque=22), 1),
        # incr/decr: create with the initial value, or not (0xffffffff), wrap, not numeric
        (bp.arith(bp.INCR, "n", 5, initial=100, opaque=23), 1),
        (bp.arith(bp.INCR, "n", 5, initial=100, opaque=24), 1),
        (bp.arith(bp.DECR, "n", 1000, opaque=25), 1),
        (bp.arith(bp.INCR, "none", 1, exptime=0xffffffff, opaque=26), 1),
        (bp.arith(bp.DECR, "none", 1, exptime=0xffffffff, opaque=27), 1),
        (bp.store(bp.SET, "w", b"18446744073709551615", opaque=28), 1),
        (bp.arith(bp.INCR, "w", 2, opaque=29), 1),
        (bp.arith(bp.INCR, "k1", 1, opaque=30), 1),
        (bp.arith(bp.INCR, "n", 1, cas=1, opaque=31), 1),
        # touch and get-and-touch
        (bp.touch(bp.TOUCH, "k1", 1000, opaque=32), 1),
        (bp.touch(bp.TOUCH, "missing", 1000, opaque=33), 1),
        (bp.touch(bp.GAT, "k1", 1000, opaque=34), 1),
        (bp.touch(bp.GATK, "k1", 1000, opaque=35), 1),
        (bp.touch(bp.GAT, "missing", 10, opaque=36), 1),
        (bp.touch(bp.GATK, "missing", 10, opaque=37), 1),
        # values: empty, binary bytes, a large one
        (bp.store(bp.SET, "empty", b"", opaque=38), 1),
        (bp.request(bp.GETK, "empty", opaque=39), 1),
        (bp.store(bp.SET, "bin", big, flags=0xffffffff, opaque=40), 1),
        (bp.request(bp.GET, "bin", opaque=41), 1),
        (bp.store(bp.SET, "large", b"L" * 500000, opaque=42), 1),
        (bp.request(bp.GET, "large", opaque=43), 1),
        (bp.store(bp.SET, "K" * 250, b"long key", opaque=44), 1),
        (bp.request(bp.GETK, "K" * 250, opaque=45), 1),
        # unknown opcodes, SASL as memcached built without it answers them
        (bp.request(0x55, opaque=46), 1),
        (bp.request(bp.SASL_LIST, opaque=47), 1),
        (bp.request(bp.SASL_AUTH, "PLAIN", value=b"\0u\0p", opaque=48), 1),
        (bp.request(bp.STAT, "no-such-group", opaque=49), 1),
        (bp.request(bp.FLUSH, opaque=50), 1),
        (bp.request(bp.GET, "k1", opaque=51), 1),
        (bp.request(bp.FLUSH, extras=struct.pack(">I", 0), opaque=52), 1),
        (bp.request(bp.QUIT, opaque=53), 1),
    ]


def test_every_opcode_matches_memcached(pair):
    lg, direct, _ = pair
    steps = every_opcode_steps()
    want = run_script(direct, steps)
    got = run_script(lg, steps)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, "step %d: luagent %r, memcached %r" % (i, bp.Response(g), bp.Response(w))


def quiet_steps():
    pipeline = b"".join([
        bp.store(bp.SETQ, "q1", b"one", flags=1, opaque=1),
        bp.store(bp.SETQ, "q2", b"two", flags=2, opaque=2),
        bp.store(bp.ADDQ, "q1", b"exists", opaque=3),          # fails: written
        bp.store(bp.REPLACEQ, "q3", b"missing", opaque=4),     # fails: written
        bp.request(bp.GETQ, "q1", opaque=5),                   # hit: written
        bp.request(bp.GETQ, "nope", opaque=6),                 # miss: silent
        bp.request(bp.GETKQ, "q2", opaque=7),
        bp.request(bp.GETKQ, "nope2", opaque=8),
        bp.request(bp.APPENDQ, "q1", value=b"+", opaque=9),
        bp.request(bp.PREPENDQ, "q2", value=b"-", opaque=10),
        bp.arith(bp.INCRQ, "cq", 1, initial=5, opaque=11),
        bp.arith(bp.DECRQ, "cq", 1, opaque=12),
        bp.arith(bp.INCRQ, "nocq", 1, exptime=0xffffffff, opaque=13),   # written
        bp.touch(bp.GATQ, "q1", 100, opaque=14),
        bp.touch(bp.GATKQ, "nope", 100, opaque=15),
        bp.touch(bp.GATKQ, "q2", 100, opaque=16),
        bp.request(bp.DELETEQ, "q2", opaque=17),
        bp.request(bp.DELETEQ, "q2", opaque=18),               # written
        bp.request(bp.GET, "cq", opaque=19),                   # not quiet: written in place
        bp.request(bp.GETKQ, "q1", opaque=20),
        bp.request(bp.NOOP, opaque=21),
    ])
    return [(pipeline, "noop"),
            (bp.request(bp.FLUSHQ, opaque=22) + bp.request(bp.GET, "q1", opaque=23), 1),
            (bp.request(bp.QUITQ, opaque=24), 0)]


def test_quiet_pipeline_with_noop(pair):
    lg, direct, _ = pair
    want = run_script(direct, quiet_steps())
    got = run_script(lg, quiet_steps())
    assert [bp.Response(r).opaque for r in got] == [3, 4, 5, 7, 13, 14, 16, 18, 19, 20, 21, 23]
    assert got == want


def test_quiet_pipeline_across_servers(spread):
    """Replies come back in request order whichever server answers each."""
    lg, direct, servers = spread
    keys = ["key:%d" % i for i in range(60)]
    sets = b"".join(bp.store(bp.SETQ, k, k.encode() * 3, flags=i, opaque=i)
                    for i, k in enumerate(keys))
    gets = b"".join(bp.request(bp.GETKQ, k, opaque=100 + i)
                    for i, k in enumerate(keys + ["miss:%d" % i for i in range(10)]))
    steps = [(sets + bp.request(bp.NOOP, opaque=999), "noop"),
             (gets + bp.request(bp.NOOP, opaque=1000), "noop")]
    want = run_script(direct, steps, mask_cas=True)
    got = run_script(lg, steps, mask_cas=True)
    assert got == want
    assert len(got) == 1 + 60 + 1
    held = [s.present(keys) for s in servers]
    assert all(held), "the keys should be spread over every server"


def test_stat_general_group(pair):
    lg, _, _ = pair
    c = client(lg)
    try:
        c.send(bp.request(bp.GET, "x") + bp.request(bp.STAT, opaque=77))
        assert c.read().status == bp.ENOENT
        stats = c.until(bp.STAT)
        assert all(r.opaque == 77 and r.status == 0 and r.cas == 0 for r in stats)
        assert stats[-1].key == b"" and stats[-1].value == b""
        names = {r.key.decode(): r.value.decode() for r in stats[:-1]}
        assert int(names["binary_requests"]) == 2
        assert int(names["cmd_get"]) == 1
        assert int(names["get_misses"]) == 1
        pools = c.call(bp.request(bp.STAT, "pools"))
        assert pools.status == 0 and pools.key.startswith(b"pool:")
    finally:
        c.close()


def exchange_until_close(target, data):
    """After a first request answered, send data and read every response
    until the peer closes; the responses' bytes."""
    c = client(target)
    out = []
    try:
        out.append(c.call(bp.store(bp.SET, "before", b"v", opaque=9)).raw)
        c.send(data)
        while True:
            try:
                out.append(c.read().raw)
            except (EOFError, ConnectionResetError):
                return out
    finally:
        c.close()


UNTRUSTED = [
    ("bad magic", bp.request(bp.GET, "k", magic=0x81)),
    ("text after binary", bp.request(bp.NOOP) + b"get k\r\n"),
    ("key longer than body", bp.request(bp.GET, "key", bodylen=2)),
    ("key and extras longer than body", bp.request(bp.SET, "key", extras=b"12345678",
                                                   bodylen=10)),
    ("get with extras", bp.request(bp.GET, "k", extras=b"1234")),
    ("set without extras", bp.request(bp.SET, "k", value=b"v")),
    ("incr short extras", bp.request(bp.INCR, "k", extras=b"12345678")),
    ("noop with a body", bp.request(bp.NOOP, value=b"x")),
    ("key of 251 bytes", bp.request(bp.GET, "k" * 251)),
    ("unknown opcode, key of 251 bytes", bp.request(0x60, "k" * 251)),
    ("delete with an expiration", bp.request(bp.DELETE, "k", extras=b"\0\0\0\0")),
]


@pytest.mark.parametrize("name,data", UNTRUSTED, ids=[u[0] for u in UNTRUSTED])
def test_untrusted_header_closes(pair, name, data):
    lg, direct, _ = pair
    want = exchange_until_close(direct, data + bp.request(bp.NOOP))
    got = exchange_until_close(lg, data + bp.request(bp.NOOP))
    assert got == want, name


def test_untrusted_header_after_pipelined_requests(pair):
    """Replies owed before a bad header are written, then the connection closes."""
    lg, _, _ = pair
    c = client(lg)
    try:
        c.send(bp.request(bp.NOOP, opaque=1) + bp.request(bp.GET, "k", opaque=2)
               + bp.request(bp.GET, "k", magic=0x81, opaque=3) + bp.request(bp.NOOP, opaque=4))
        assert [c.read().opaque for _ in range(2)] == [1, 2]
        assert c.closed()
    finally:
        c.close()
    assert lg.alive()


def test_value_over_limit_skipped_in_sync(memcached, luagent):
    """E2BIG, the body skipped, the next request read; the old value deleted."""
    backend = memcached()
    lg = luagent(servers=[backend])
    direct = memcached()
    too_big = b"B" * (2 * ITEM_MAX + 1)         # over luagent's and memcached -I 2m's limit
    steps = [
        (bp.store(bp.SET, "big", b"old", opaque=1), 1),
        (bp.store(bp.SET, "big", too_big, opaque=2) + bp.request(bp.GET, "big", opaque=3), 2),
        (bp.store(bp.ADD, "big2", too_big, opaque=4) + bp.request(bp.NOOP, opaque=5), 2),
        (bp.request(bp.APPEND, "big", value=too_big, opaque=6) + bp.request(bp.NOOP), 2),
    ]
    want = run_script(direct, steps)
    got = run_script(lg, steps)
    assert got == want
    statuses = [bp.Response(r).status for r in got]
    assert statuses == [bp.SUCCESS, bp.E2BIG, bp.ENOENT, bp.E2BIG, bp.SUCCESS, bp.E2BIG,
                        bp.SUCCESS]
    # Just over luagent's own limit: refused by luagent, stream in step.
    c = client(lg)
    try:
        r = c.call(bp.store(bp.SETQ, "edge", b"e" * (ITEM_MAX + 1), opaque=7))
        assert (r.status, r.opaque, r.value) == (bp.E2BIG, 7, b"Too large.")
        c.send(bp.store(bp.SET, "edge", b"e" * 1000000, opaque=8))
        assert c.read().status == bp.SUCCESS
        assert len(c.call(bp.request(bp.GET, "edge")).value) == 1000000
    finally:
        c.close()


def test_unknown_opcode_body_skipped(pair):
    """memcached over-skips an unknown opcode's key and extras (and so loses
    the next request); luagent skips exactly the body and stays in step."""
    lg, _, _ = pair
    c = client(lg)
    try:
        c.send(bp.request(bp.VERBOSITY, extras=b"\0\0\0\1", opaque=1)
               + bp.request(0x70, "key", value=b"value", opaque=2)
               + bp.request(bp.NOOP, opaque=3))
        got = [c.read() for _ in range(3)]
        assert [(r.status, r.opaque) for r in got] == [
            (bp.UNKNOWN_COMMAND, 1), (bp.UNKNOWN_COMMAND, 2), (bp.SUCCESS, 3)]
        assert got[0].value == b"Unknown command"
    finally:
        c.close()


def test_connection_cut_mid_body(pair):
    lg, _, backend = pair
    c = client(lg)
    c.send(bp.store(bp.SET, "cut", b"x" * 100000)[:50000])
    c.close()
    c = client(lg)
    try:
        assert c.call(bp.request(bp.GET, "cut")).status == bp.ENOENT
        assert c.call(bp.store(bp.SET, "cut", b"whole")).status == bp.SUCCESS
        assert c.call(bp.request(bp.GET, "cut")).value == b"whole"
    finally:
        c.close()
    assert backend.get("cut") == b"whole"


def test_keys_the_text_protocol_cannot_carry(pair):
    """Spaces and control bytes in a key travel in base64: memcached holds
    the key's own bytes, as a binary client writing to it directly would."""
    lg, _, backend = pair
    keys = [b"with space", b"tab\there", b"cr\r\nlf", b"\x00nul", b"del\x7f", b"\xffhigh",
            b"a-longer-key-with-DEL-\x7f-inside", b"0123456789abcdef\x01", b"\x80" * 20 + b" "]
    c = client(lg)
    direct = client(backend)
    try:
        for i, k in enumerate(keys):
            assert c.call(bp.store(bp.SET, k, b"v%d" % i, flags=i)).status == bp.SUCCESS
        for i, k in enumerate(keys):
            via = c.call(bp.request(bp.GETK, k))
            raw = direct.call(bp.request(bp.GETK, k))
            assert (via.status, via.key, via.value, via.flags) == (0, k, b"v%d" % i, i)
            assert via.masked() == raw.masked()
        assert c.call(bp.request(bp.DELETE, b"with space")).status == bp.SUCCESS
        assert direct.call(bp.request(bp.GET, b"with space")).status == bp.ENOENT
    finally:
        c.close()
        direct.close()


def test_keys_and_numbers_of_every_length(pair):
    """Keys of 1 to 20 bytes with a byte the text protocol cannot carry at
    each place (they are scanned eight bytes at a time, the last eight
    overlapping), and flags and value lengths of every digit count (written
    two digits at a time): memcached holds each key's own bytes, flags and
    value, as a binary client writing to it directly would."""
    lg, _, backend = pair
    flags = [0, 1, 9, 10, 99, 100, 101, 999, 1000, 65535, 10**7 - 1, 10**7, 10**8 - 1, 10**8,
             10**9 - 1, 10**9, 4294967295]
    keys = []
    for n in range(1, 21):
        clean = bytes(0x61 + i % 26 for i in range(n))
        keys.append(clean)
        for pos in range(n):
            k = bytearray(clean)
            k[pos] = b" \x7f\x01"[pos % 3]
            keys.append(bytes(k))
    c = client(lg)
    direct = client(backend)
    try:
        for i, k in enumerate(keys):
            value = b"v" * (i % 130)
            r = c.call(bp.store(bp.SET, k, value, flags=flags[i % len(flags)]))
            assert r.status == bp.SUCCESS, k
        for i, k in enumerate(keys):
            raw = direct.call(bp.request(bp.GETK, k))
            assert (raw.status, raw.key, raw.value, raw.flags) == \
                (0, k, b"v" * (i % 130), flags[i % len(flags)]), k
            via = c.call(bp.request(bp.GETK, k))
            assert via.raw == raw.raw, k
    finally:
        c.close()
        direct.close()


def test_text_and_binary_share_items(pair):
    lg, _, _ = pair
    c = client(lg)
    text = lg.client()
    try:
        assert c.call(bp.store(bp.SET, "shared", b"from binary", flags=42)).status == 0
        assert text.call(b"get shared\r\n", "get") == b"VALUE shared 42 11\r\nfrom binary\r\nEND\r\n"
        assert text.call(b"set shared 7 0 9\r\nfrom text\r\n") == b"STORED\r\n"
        r = c.call(bp.request(bp.GET, "shared"))
        assert (r.flags, r.value) == (7, b"from text")
    finally:
        c.close()
        text.close()


def test_routes_by_the_classic_command(memcached, luagent, tmp_path):
    """A policy's by_op sees a binary Touch as touch and a binary Get as get."""
    reads, writes = memcached(), memcached()
    policy = tmp_path / "byop.lua"
    policy.write_text("""
local lg = require "luagent"
local reads = lg.pool{ name = "reads", servers = { "%s" } }
local writes = lg.pool{ name = "writes", servers = { "%s" } }
return lg.policy{ route = lg.by_op{ get = reads, touch = reads, default = writes } }
""" % (reads.addr, writes.addr))
    lg = luagent("-c", str(policy))
    c = client(lg)
    try:
        assert c.call(bp.store(bp.SET, "r", b"v")).status == 0     # to writes
        assert c.call(bp.request(bp.GET, "r")).status == bp.ENOENT  # asks reads
        assert c.call(bp.touch(bp.TOUCH, "r", 10)).status == bp.ENOENT
        assert c.call(bp.touch(bp.GAT, "r", 10)).status == 0       # gat: the default
    finally:
        c.close()
    assert writes.get("r") == b"v" and reads.get("r") is None


def test_backend_failure_is_a_temporary_failure(memcached, luagent):
    backend = memcached()
    lg = luagent(servers=[backend])
    backend.stop()
    c = client(lg)
    try:
        for req in (bp.request(bp.GET, "k", opaque=1), bp.request(bp.GETQ, "k", opaque=2),
                    bp.store(bp.SETQ, "k", b"v", opaque=3), bp.request(bp.FLUSH, opaque=4)):
            r = c.call(req)
            assert r.status == bp.ETMPFAIL and r.value == b"backend unavailable", r
        assert c.call(bp.request(bp.NOOP, opaque=5)).opaque == 5
    finally:
        c.close()
    st = lg.stats()
    assert int(st["server_errors"]) >= 4 and int(st["binary_requests"]) == 5
