"""
A storage command's data block on its way to the servers: a large block
(1 KiB and more) is not copied, every server it goes to is sent the bytes
where luagent read them from the client (docs/design.md, "Data blocks by
reference"). These tests check that what arrives at every server is exactly
what the client sent, through the routes that send one block several ways
(all_sync, all_async, shadow), fail over with it, or rewrite the key; when
the client sends its bytes in small fragments (a block spanning reads, the
read buffer moving on while a server still holds an earlier block); when a
server is slow to read (blocks queue up while the client goes on); and over
TLS. Run under SAN=1 they also prove that no block is freed while queued.
"""
import os
import random
import signal
import socket
import threading
import time

import mock_backend
from conftest import RawClient, parse_values, set_cmd

DEADLINE = 30.0
# Around the 1 KiB threshold, past a read, past the 64 KiB buffer cache, near item_max.
SIZES = [100, 1023, 1024, 5000, 70000, 300000, 1000000]


def value(seed, n):
    """n bytes that are hard to get right by accident: random, with "\\r\\n"
    and "END\\r\\n" inside."""
    rnd = random.Random(seed)
    b = bytearray(rnd.getrandbits(8) for _ in range(min(n, 4096)))
    b = (b * (n // len(b) + 1))[:n] if b else b
    for at in (0, n // 3, n // 2, n - 7):
        if 0 <= at and at + 5 <= n:
            b[at:at + 5] = b"END\r\n"
    if n >= 40:
        b[n // 5:n // 5 + 4] = bytes([rnd.getrandbits(8) for _ in range(4)])
    return bytes(b)


def write_policy(tmp_path, servers, route, timeout_ms=20000):
    lines = ['local lg = require "luagent"']
    for i, s in enumerate(servers):
        lines.append('local p%d = lg.pool{ name = "p%d", servers = { "%s" }, timeout_ms = %d }'
                     % (i, i, s.addr, timeout_ms))
    lines.append("return lg.policy{ route = %s }" % route)
    path = tmp_path / "data.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def poll(pred, what):
    end = time.monotonic() + DEADLINE
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def stream(keys, prefix=b""):
    """Pipelined requests: each large set followed by a small one and a get,
    so a block that swallowed or lost a byte desynchronises what follows."""
    reqs, kinds = [], []
    for i, k in enumerate(keys):
        n = SIZES[i % len(SIZES)]
        noreply = i % 3 == 2
        reqs.append(set_cmd(k, value(k, n), flags=i, noreply=noreply))
        kinds.append(None if noreply else "line")
        reqs.append(set_cmd(k + ":s", b"small-%d" % i))
        kinds.append("line")
        reqs.append(b"get " + k.encode() + b":s\r\n")
        kinds.append("get")
    return reqs, kinds


def check_replies(replies, keys):
    for i, k in enumerate(keys):
        stored, small, got = replies[3 * i:3 * i + 3]
        assert stored in (None, b"STORED\r\n"), (k, stored)
        assert small == b"STORED\r\n", (k, small)
        assert parse_values(got) == [(k + ":s", 0, b"small-%d" % i, None)], (k, got[:80])


def read_replies(c, kinds):
    return [c.read_reply(k) if k is not None else None for k in kinds]


def assert_stored_at(server, keys, prefix=""):
    """Every key's value arrived at server byte for byte, with its flags."""
    c = server.client()
    try:
        for i, k in enumerate(keys):
            c.send(b"get " + (prefix + k).encode() + b"\r\n")
            got = c.read_values()
            want = value(k, SIZES[i % len(SIZES)])
            assert len(got) == 1, "%s: missing at %s" % (k, server.addr)
            assert got[0][1] == i, (k, got[0][1])
            assert got[0][2] == want, "%s (%d bytes): wrong bytes at %s" % (k, len(want), server.addr)
    finally:
        c.close()


def send_fragments(sock, payload):
    """The payload in pieces of irregular sizes, each its own segment, so
    lines and blocks arrive split across reads at many offsets."""
    steps = [1, 5, 1023, 1, 4096, 65536, 3, 20000, 2]
    at = i = 0
    while at < len(payload):
        n = steps[i % len(steps)]
        sock.sendall(payload[at:at + n])
        at += n
        i += 1
        if n < 100:
            time.sleep(0.001)       # let this fragment be read on its own


def run_stream(lg, keys, fragments=False):
    c = RawClient(lg.sockaddr, timeout=DEADLINE)
    try:
        reqs, kinds = stream(keys)
        payload = b"".join(reqs)
        send = send_fragments if fragments else (lambda s, p: s.sendall(p))
        t = threading.Thread(target=send, args=(c.sock, payload), daemon=True)
        t.start()
        replies = read_replies(c, kinds)
        t.join(DEADLINE)
        check_replies(replies, keys)
    finally:
        c.close()


ROUTES = {
    "all_sync": "lg.all_sync{ p0, p1, p2 }",
    "all_async": "lg.all_async{ p0, p1, p2 }",
    "shadow": "lg.shadow{ main = p0, shadow = lg.all_sync{ p1, p2 } }",
}


def check_route(memcached, luagent, tmp_path, name, fragments):
    servers = [memcached(extra=["-I", "2m"]) for _ in range(3)]
    lg = luagent("-c", write_policy(tmp_path, servers, ROUTES[name]))
    keys = ["%s:%d:%d" % (name, fragments, i) for i in range(2 * len(SIZES))]
    run_stream(lg, keys, fragments)
    # all_async and shadow answer before every copy is in: wait for the last one.
    for s in servers:
        poll(lambda: s.get(keys[-1]) is not None, "the last key at " + s.addr)
        assert_stored_at(s, keys)


def test_fan_outs_deliver_every_block_byte_exact(memcached, luagent, tmp_path):
    for name in ROUTES:
        check_route(memcached, luagent, tmp_path, name, fragments=False)


def test_fan_outs_deliver_blocks_sent_in_fragments(memcached, luagent, tmp_path):
    for name in ROUTES:
        check_route(memcached, luagent, tmp_path, name, fragments=True)


def test_rewritten_keys_share_one_block(memcached, luagent, tmp_path):
    """Each copy gets its own key line; the block after it is the same bytes."""
    servers = [memcached(extra=["-I", "2m"]) for _ in range(2)]
    route = ('lg.all_sync{ lg.rewrite{ add = "a:", to = p0 }, '
             'lg.rewrite{ strip = "rw:", add = "longer-prefix:", to = p1 } }')
    lg = luagent("-c", write_policy(tmp_path, servers, route))
    keys = ["rw:%d" % i for i in range(len(SIZES))]
    run_stream(lg, keys, fragments=True)
    assert_stored_at(servers[0], keys, prefix="a:")
    c = servers[1].client()
    try:
        for i, k in enumerate(keys):
            c.send(b"get longer-prefix:%d\r\n" % i)
            assert c.read_values()[0][2] == value(k, SIZES[i % len(SIZES)])
    finally:
        c.close()


def test_failover_resends_the_block_to_the_next_server(memcached, luagent, tmp_path):
    """The first server takes each set whole, then closes instead of answering:
    luagent sends the same block again to the second."""
    broken = mock_backend.MockBackend(lambda req: mock_backend.CLOSE)
    try:
        good = memcached(extra=["-I", "2m"])
        route = 'lg.failover{ p0, p1, writes = "failover" }'
        lg = luagent("-c", write_policy(tmp_path, [broken, good], route))
        keys = ["fo:%d" % i for i in range(len(SIZES))]
        run_stream(lg, keys, fragments=False)
        assert_stored_at(good, keys)
        # The broken server did get the blocks, whole, before it closed.
        got = {r.line.split()[1].decode(): r.data for r in broken.requests
               if r.cmd == b"set" and not r.line.split()[1].endswith(b":s")}
        for i, k in enumerate(keys):
            if k in got:
                assert got[k] == value(k, SIZES[i % len(SIZES)]), k
        assert got, "no set reached the first server"
    finally:
        broken.stop()


def test_slow_server_holds_blocks_while_the_client_goes_on(memcached, luagent, tmp_path):
    """One replica stops reading: its blocks queue in luagent (the client's
    read buffers they lie in move on meanwhile) and arrive intact when it
    resumes. A small client bound makes luagent stop reading the client
    instead of holding without limit: the held blocks count."""
    servers = [memcached(extra=["-I", "2m"]) for _ in range(2)]
    lg = luagent("-c", write_policy(tmp_path, servers, "lg.all_sync{ p0, p1 }"),
                 "--client-max-memory", "4")
    keys = ["slow:%d" % i for i in range(6 * len(SIZES))]
    servers[1].proc.signal(signal.SIGSTOP)
    try:
        c = RawClient(lg.sockaddr, timeout=DEADLINE)
        reqs, kinds = stream(keys)
        t = threading.Thread(target=c.sock.sendall, args=(b"".join(reqs),), daemon=True)
        t.start()
        # The running replica has the first keys: the stopped one's copies are queued.
        poll(lambda: servers[0].get(keys[2]) is not None, "the first keys at the running server")
        with RawClient(lg.sockaddr) as s:
            poll(lambda: int(s.stats()["memory_paused_reads"]) > 0,
                 "luagent to stop reading a client whose blocks wait")
    finally:
        servers[1].proc.signal(signal.SIGCONT)
    replies = read_replies(c, kinds)
    t.join(DEADLINE)
    c.close()
    check_replies(replies, keys)
    for s in servers:
        assert_stored_at(s, keys)


def test_meta_set_blocks_by_reference(memcached, luagent, tmp_path):
    """ms with a large block (quiet, base64 key, and plain) through all_sync."""
    servers = [memcached(extra=["-I", "2m"]) for _ in range(2)]
    lg = luagent("-c", write_policy(tmp_path, servers, "lg.all_sync{ p0, p1 }"))
    big = value("ms", 300000)
    mid = value("ms2", 2048)
    c = RawClient(lg.sockaddr, timeout=DEADLINE)
    try:
        payload = (b"ms msbig %d T0 F7\r\n%s\r\n" % (len(big), big)
                   + b"ms bXNtaWQ= %d b q\r\n%s\r\n" % (len(mid), mid)
                   + b"mn\r\n")
        t = threading.Thread(target=c.sock.sendall, args=(payload,), daemon=True)
        t.start()
        assert c.read_line() == b"HD\r\n"
        assert c.read_line() == b"MN\r\n"
        t.join(DEADLINE)
    finally:
        c.close()
    for s in servers:
        assert s.get("msbig") == big
        assert s.get("msmid") == mid


def test_binary_sets_blocks_by_reference(memcached, luagent, tmp_path):
    """Binary set/setq/append with large values, pipelined and sent in
    fragments, through all_sync: the value has no "\\r\\n" after it in the
    client's bytes, luagent adds it for the server."""
    import binary_client as bp
    servers = [memcached(extra=["-I", "2m"]) for _ in range(2)]
    lg = luagent("-c", write_policy(tmp_path, servers, "lg.all_sync{ p0, p1 }"))
    keys = ["bin:%d" % i for i in range(len(SIZES))]
    payload = b""
    for i, k in enumerate(keys):
        op = bp.SETQ if i % 2 else bp.SET
        payload += bp.store(op, k, value(k, SIZES[i % len(SIZES)]), flags=i, opaque=i)
    payload += bp.request(bp.APPEND, keys[-1], b"", value("tail", 3000), opaque=99)
    payload += bp.request(bp.NOOP, opaque=100)
    c = bp.BinaryClient(lg.sockaddr, timeout=DEADLINE)
    try:
        t = threading.Thread(target=send_fragments, args=(c.sock, payload), daemon=True)
        t.start()
        got = [c.read() for _ in range(len(keys[::2]) + 2)]
        t.join(DEADLINE)
    finally:
        c.close()
    assert [p.status for p in got] == [bp.SUCCESS] * len(got)
    assert [p.opaque for p in got] == list(range(0, len(keys), 2)) + [99, 100]
    for s in servers:
        for i, k in enumerate(keys):
            want = value(k, SIZES[i % len(SIZES)])
            if k == keys[-1]:
                want += value("tail", 3000)
            assert s.get(k) == want, "%s at %s" % (k, s.addr)


def test_tls_server_gets_blocks_by_reference(memcached, luagent, tmp_path):
    """A TLS server and a plain one share each block; over TLS every block
    ends a record (memcached -Z would wait otherwise)."""
    from test_tls import Pki, tls_direct, tls_memcached
    (tmp_path / "pki").mkdir()
    pki = Pki(tmp_path / "pki")
    tls = tls_memcached(memcached, pki)
    plain = memcached(extra=["-I", "2m"])
    path = tmp_path / "tls.lua"
    path.write_text('local lg = require "luagent"\n'
                    'local t = lg.pool{ name = "t", servers = { "%s" }, timeout_ms = 20000,'
                    ' tls = { ca = "%s" } }\n'
                    'local p = lg.pool{ name = "p", servers = { "%s" }, timeout_ms = 20000 }\n'
                    'return lg.policy{ route = lg.all_sync{ t, p } }\n'
                    % (tls.addr, pki.path("ca"), plain.addr))
    lg = luagent("-c", path)
    keys = ["tls:%d" % i for i in range(len(SIZES))]
    run_stream(lg, keys, fragments=True)
    assert_stored_at(plain, keys)
    with tls_direct(tls, pki) as d:
        for i, k in enumerate(keys):
            d.send(b"get " + k.encode() + b"\r\n")
            assert d.read_values()[0][2] == value(k, SIZES[i % len(SIZES)]), k


def test_request_lines_reach_the_server_as_written_or_rebuilt(luagent, tmp_path):
    """A classic request in its plain form goes to the server as the client
    wrote it, a small data block with its line; any other form is rebuilt:
    noreply left out (luagent reads every reply), a leading or trailing space
    and a double space before the key dropped, a bare LF made CRLF, the key
    rewritten by a route, the exptime by a rule. Checked on the exact bytes
    the server reads."""
    store = mock_backend.Store()

    def handler(req):
        if req.cmd == b"incr":
            return b"6\r\n"
        if req.cmd == b"touch":
            return b"TOUCHED\r\n"
        return store(req)

    server = mock_backend.MockBackend(handler)
    try:
        route = ('lg.prefix{ ["rw:"] = lg.rewrite{ add = "a:", to = p0 }, '
                 '["t:"] = lg.ttl{ to = p0, set = 30 }, default = p0 }')
        lg = luagent("-c", write_policy(tmp_path, [server], route))
        # (sent by the client, read by the server, the client's reply or None)
        cases = [
            (b"set k1 5 0 3\r\nabc\r\n", b"set k1 5 0 3\r\nabc\r\n", b"STORED\r\n"),
            (b"set k2 5 0 3 noreply\r\nabc\r\n", b"set k2 5 0 3\r\nabc\r\n", None),
            (b"set  k3 5  0 3\r\nabc\r\n", b"set k3 5  0 3\r\nabc\r\n", b"STORED\r\n"),
            (b"set k4 5 0 3 \r\nabc\r\n", b"set k4 5 0 3\r\nabc\r\n", b"STORED\r\n"),
            (b"set k5 5 0 3\nabc\r\n", b"set k5 5 0 3\r\nabc\r\n", b"STORED\r\n"),
            (b" delete k1\r\n", b"delete k1\r\n", b"DELETED\r\n"),
            (b"delete k2\r\n", b"delete k2\r\n", b"DELETED\r\n"),
            (b"incr n 5\r\n", b"incr n 5\r\n", b"6\r\n"),
            (b"touch k3 10\r\n", b"touch k3 10\r\n", b"TOUCHED\r\n"),
            (b"set rw:1 0 0 1\r\nx\r\n", b"set a:rw:1 0 0 1\r\nx\r\n", b"STORED\r\n"),
            (b"set t:1 0 0 1\r\nx\r\n", b"set t:1 0 30 1\r\nx\r\n", b"STORED\r\n"),
            (b"get k3\r\n", b"get k3\r\n", b"VALUE k3 5 3\r\nabc\r\nEND\r\n"),
        ]
        c = RawClient(("127.0.0.1", lg.port))
        try:
            for sent, _, reply in cases:
                c.send(sent)
                if reply is not None:
                    assert c.recv_exact(len(reply)) == reply, sent
        finally:
            c.close()
        want = b"".join(read for _, read, _ in cases)
        server.wait_for(lambda m: sum(len(cs.received) for cs in m.conns) >= len(want))
        assert b"".join(bytes(cs.received) for cs in server.conns) == want
    finally:
        server.stop()
