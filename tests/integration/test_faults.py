"""
Backend faults, scripted with mock_backend: a slow server (reply after the 1 s
pool timeout), a server that never answers, one that closes mid-value, one
that sends garbage, a VALUE whose length is wrong, an extra unrequested reply,
and a server that accepts but never reads (small SO_RCVBUF, large values, so
luagent's writes back up).

Set-up: luagent -s <mock> -s <real memcached> (magent modula placement), so
keys are chosen per server with modula_index. The mock answers keys starting
with "bad" with the fault and every other key like a tiny memcached (Store).

For each fault: the affected request gets the documented SERVER_ERROR line,
the backend connection is dropped and rebuilt (the mock sees the next request
on a new connection), another client working on the real memcached during the
fault is unaffected, and luagent's VmRSS does not grow when the fault is
repeated (generous slack). No assertion is on elapsed time: the 5 s client
socket timeout is the hang detector (the pool timeout is 1 s for the faults
that are timeouts, 4 s for the others: see conftest.UNHURRIED_POLICY).
"""
import socket
import threading
import time

import pytest

import mock_backend
from conftest import SANITIZED, modula_index, rss_kib, set_cmd, unhurried

TIMEOUT_LINE = b"SERVER_ERROR backend timeout\r\n"
CLOSED_LINE = b"SERVER_ERROR backend closed connection\r\n"
PROTO_LINE = b"SERVER_ERROR backend protocol error\r\n"
RSS_SLACK_KIB = 8 * 1024


def keys_for(idx, prefix, n):
    """n keys that magent placement sends to server idx of 2."""
    out, i = [], 0
    while len(out) < n:
        k = "%s%d" % (prefix, i)
        if modula_index(k, 2) == idx:
            out.append(k)
        i += 1
    return out


# ---- fault handlers (answer for a request on a "bad" key) -------------------

def _later(delay, req, data):
    t = threading.Timer(delay, req.send, (data,))
    t.daemon = True
    t.start()


def fault_slow(req):
    k = req.keys[0]
    _later(1.6, req, b"VALUE %s 0 1\r\nx\r\nEND\r\n" % k)
    return None


def fault_hang(req):
    return mock_backend.HANG


def fault_close_mid_value(req):
    req.send(b"VALUE %s 0 10\r\nabc" % req.keys[0])
    return mock_backend.CLOSE


def fault_garbage(req):
    return b"HELLO I AM NOT MEMCACHED \x01\x02\r\n"


def fault_wrong_length(req):
    # declares 3 bytes, sends 8: the data block does not end in CRLF
    return b"VALUE %s 0 3\r\nabcdefgh\r\nEND\r\n" % req.keys[0]


def fault_length_too_long(req):
    # declares 100 bytes, sends 3 and END: luagent waits for the rest
    return b"VALUE %s 0 100\r\nabc\r\nEND\r\n" % req.keys[0]


FAULTS = {
    "length_too_long": (fault_length_too_long, TIMEOUT_LINE),
    "slow": (fault_slow, TIMEOUT_LINE),
    "hang": (fault_hang, TIMEOUT_LINE),
    "close_mid_value": (fault_close_mid_value, CLOSED_LINE),
    "garbage": (fault_garbage, PROTO_LINE),
    "wrong_length": (fault_wrong_length, PROTO_LINE),
}


def scripted(fault):
    store = mock_backend.Store()

    def handler(req):
        if req.keys and req.keys[0].startswith(b"bad"):
            return fault(req)
        return store(req)
    return handler


def scripted_set(reply):
    """Like scripted, for sets only: a set on a "bad" key is stored and
    answered with reply(req)."""
    store = mock_backend.Store()

    def handler(req):
        if req.cmd == b"set" and req.keys[0].startswith(b"bad"):
            store(req)
            return reply(req)
        return store(req)
    return handler


@pytest.fixture
def mocks():
    started = []

    def make(handler, cls=mock_backend.MockBackend):
        m = cls(handler)
        started.append(m)
        return m
    yield make
    for m in started:
        m.stop()


def pool_args(tmp_path, expected):
    """luagent arguments for a fault whose request gets expected: the default
    1 s pool timeout when the fault is a timeout, else a 4 s one (unhurried)."""
    return () if expected == TIMEOUT_LINE else unhurried(tmp_path)


def start_pair(mocks, memcached, luagent, handler, cls=mock_backend.MockBackend, args=()):
    mock = mocks(handler, cls)
    real = memcached()
    # one worker: the test's clients then share one connection to the mock,
    # so "the connection was rebuilt" is about the connection they all use
    lg = luagent("-t", "1", *args, servers=[mock.addr, real])
    return lg, mock, real


def conn_of_last(mock, key):
    for r in reversed(mock.requests):
        if key.encode() in r.keys:
            return r.conn
    raise AssertionError("mock never saw %s: %r" % (key, mock.received_lines()))


def check_ok_on_mock(c, mock, key, value):
    assert c.call(set_cmd(key, value)) == b"STORED\r\n"
    assert c.call("get %s\r\n" % key, "get") == b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (
        key.encode(), len(value), value)
    return conn_of_last(mock, key)


def check_real(c, keys, tag):
    for k in keys:
        v = ("%s-%s" % (k, tag)).encode()
        assert c.call(set_cmd(k, v)) == b"STORED\r\n"
        assert c.call("get %s\r\n" % k, "get") == b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (
            k.encode(), len(v), v)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_isolated_and_connection_rebuilt(name, mocks, memcached, luagent, raw_client,
                                               tmp_path):
    fault, expected = FAULTS[name]
    lg, mock, real = start_pair(mocks, memcached, luagent, scripted(fault),
                                args=pool_args(tmp_path, expected))
    ok_keys = keys_for(0, "ok:", 3)
    bad_keys = keys_for(0, "bad:", 2)
    real_keys = keys_for(1, "real:", 5)
    a, b = raw_client(lg), raw_client(lg)

    conn0 = check_ok_on_mock(a, mock, ok_keys[0], b"before")
    check_real(b, real_keys, "before")

    a.send("get %s\r\n" % bad_keys[0])
    mock.wait_for(lambda m: any(bad_keys[0].encode() in r.keys for r in m.requests))
    # during the fault: another client on the other server is unaffected,
    # and a multi-get spanning both servers comes back for the healthy part
    check_real(b, real_keys, "during")
    # the affected request gets its error line, nothing else
    assert a.read_line() == expected
    assert conn_of_last(mock, bad_keys[0]) == conn0
    # the next request to the mock goes over a new connection and works
    conn1 = check_ok_on_mock(a, mock, ok_keys[1], b"after")
    assert conn1 > conn0, "backend connection was not rebuilt after %s" % name
    check_real(b, real_keys, "after")
    check_real(a, real_keys, "after-a")
    # a multi-get over both servers while the fault hits again: the healthy
    # server's hits come back, the failed key is a miss
    b.send("get %s %s %s\r\n" % (real_keys[0], bad_keys[1], ok_keys[1]))
    got = b.read_retrieval()
    v = ("%s-after-a" % real_keys[0]).encode()
    assert got.startswith(b"VALUE %s 0 %d\r\n%s\r\n" % (real_keys[0].encode(), len(v), v)), got
    assert got.endswith(b"END\r\n")
    assert b"VALUE %s " % bad_keys[1].encode() not in got
    conn2 = check_ok_on_mock(a, mock, ok_keys[2], b"again")
    assert conn2 > conn1
    assert lg.alive()


def _parallel_bad_gets(lg, clients, bad_keys, expected):
    for c, k in zip(clients, bad_keys):
        c.send("get %s\r\n" % k)
    for c in clients:
        assert c.read_line() == expected


@pytest.mark.parametrize("name", sorted(set(FAULTS) - {"length_too_long"}))
def test_fault_repeated_memory_stable(name, mocks, memcached, luagent, raw_client, tmp_path):
    fault, expected = FAULTS[name]
    lg, mock, real = start_pair(mocks, memcached, luagent, scripted(fault),
                                args=pool_args(tmp_path, expected))
    real_keys = keys_for(1, "real:", 3)
    b = raw_client(lg)
    slow = name in ("slow", "hang")
    if slow:
        # each round costs one pool timeout: make each round fail many
        # requests at once (100 clients) instead of doing 200 rounds
        clients = [raw_client(lg) for _ in range(100)]
        rounds, warm = 4, 1
    else:
        clients = [raw_client(lg)]
        rounds, warm = 200, 20
    ok_keys = keys_for(0, "ok:", rounds + warm)
    bad_keys = keys_for(0, "bad:", len(clients))
    a = clients[0]
    base = None
    last_conn = -1
    for i in range(rounds + warm):
        if i == warm:
            base = rss_kib(lg.pid)
        _parallel_bad_gets(lg, clients, bad_keys, expected)
        conn = check_ok_on_mock(a, mock, ok_keys[i], b"v%d" % i)
        assert conn > last_conn, "round %d: no new backend connection" % i
        last_conn = conn
        if i % 20 == 0:
            check_real(b, real_keys, "r%d" % i)
    after = rss_kib(lg.pid)
    assert SANITIZED or after - base <= RSS_SLACK_KIB, \
        "VmRSS grew from %d KiB to %d KiB over %d rounds of %s" % (base, after, rounds, name)
    check_real(b, real_keys, "end")
    assert lg.alive()


def test_extra_unrequested_reply_drops_connection(mocks, memcached, luagent, raw_client):
    def stored_twice(req):
        return b"STORED\r\nSTORED\r\n"      # one reply too many
    lg, mock, real = start_pair(mocks, memcached, luagent, scripted_set(stored_twice))
    ok_keys = keys_for(0, "ok:", 230)
    bad_keys = keys_for(0, "bad:", 1)
    real_keys = keys_for(1, "real:", 3)
    a, b = raw_client(lg), raw_client(lg)
    last = check_ok_on_mock(a, mock, ok_keys[0], b"first")
    base = None
    for i in range(1, 221):
        if i == 20:
            base = rss_kib(lg.pid)
        # the set itself got its genuine reply; the extra one cannot belong
        # to anything, so the connection must be dropped
        assert a.call(set_cmd(bad_keys[0], b"x")) == b"STORED\r\n"
        check_real(b, real_keys, "r%d" % i)
        conn = check_ok_on_mock(a, mock, ok_keys[i], b"v%d" % i)
        assert conn > last, "round %d: extra reply did not drop the connection" % i
        last = conn
    after = rss_kib(lg.pid)
    assert SANITIZED or after - base <= RSS_SLACK_KIB, "VmRSS grew from %d to %d KiB" % (base, after)
    assert lg.alive()


class StallBackend(mock_backend.MockBackend):
    """While .stall is true, new connections are accepted and never read
    (tiny receive buffer), so luagent's writes back up."""

    def __init__(self, handler):
        self.stall = True
        self._release = threading.Event()
        super().__init__(handler)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def _serve(self, cs):
        if self.stall:
            try:
                cs.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            except OSError:
                pass
            self._release.wait()
            cs.close()
            return
        super()._serve(cs)

    def stop(self):
        self._release.set()
        super().stop()


def test_backend_never_reads(mocks, memcached, luagent, raw_client):
    # -v: the log's "idle connection closed" tells when luagent has seen
    # the mock close its healthy connection (so the next one is a new one)
    lg, mock, real = start_pair(mocks, memcached, luagent, scripted(fault_hang),
                                cls=StallBackend, args=("-v",))
    ok_keys = keys_for(0, "ok:", 10)
    bad_keys = keys_for(0, "bad:", 8)
    real_keys = keys_for(1, "real:", 3)
    a, b = raw_client(lg), raw_client(lg)
    big = b"z" * (900 * 1024)
    base = None
    for rnd in range(5):
        if rnd == 1:
            base = rss_kib(lg.pid)
        mock.stall = True
        n_before = len(mock.conns)
        replies = a.pipeline([set_cmd(k, big) for k in bad_keys], "line")
        # the mock must have accepted the connection and read nothing
        assert len(mock.conns) == n_before + 1
        assert replies == [TIMEOUT_LINE] * len(bad_keys) or all(
            r in (TIMEOUT_LINE, CLOSED_LINE) for r in replies), replies
        check_real(b, real_keys, "r%d" % rnd)
        mock.stall = False
        check_ok_on_mock(a, mock, ok_keys[rnd], b"ok%d" % rnd)
        assert len(mock.conns) == n_before + 2, "no new connection after the stall"
        # close the healthy idle connection from the server side, so the next
        # round's requests open a new (stalled) one
        seen = lg.log().count("idle connection closed")
        mock.conns[-1].close()
        end = time.monotonic() + 5
        while lg.log().count("idle connection closed") == seen:
            assert time.monotonic() < end, "luagent did not notice an idle close"
            time.sleep(0.02)
    after = rss_kib(lg.pid)
    assert SANITIZED or after - base <= RSS_SLACK_KIB, "VmRSS grew from %d to %d KiB" % (base, after)
    assert lg.alive()


def test_unsolicited_reply_on_idle_connection(mocks, memcached, luagent, raw_client):
    """A reply arriving when nothing is outstanding cannot belong to anything:
    the connection is dropped (and the next request opens a new one)."""
    def stored_then_unsolicited(req):
        _later(0.05, req, b"VALUE bad 0 1\r\nx\r\nEND\r\n")
        return b"STORED\r\n"
    lg, mock, real = start_pair(mocks, memcached, luagent, scripted_set(stored_then_unsolicited))
    ok_keys = keys_for(0, "ok:", 30)
    bad_keys = keys_for(0, "bad:", 1)
    real_keys = keys_for(1, "real:", 2)
    a, b = raw_client(lg), raw_client(lg)
    last = check_ok_on_mock(a, mock, ok_keys[0], b"first")
    for i in range(1, 21):
        assert a.call(set_cmd(bad_keys[0], b"x")) == b"STORED\r\n"
        conn = mock.conns[conn_of_last(mock, bad_keys[0])]
        end = time.monotonic() + 5
        while not conn.closed:
            assert time.monotonic() < end, \
                "round %d: luagent kept a connection that sent an unsolicited reply" % i
            time.sleep(0.01)
        check_real(b, real_keys, "r%d" % i)
        c = check_ok_on_mock(a, mock, ok_keys[i], b"v%d" % i)
        assert c > last
        last = c
    assert lg.alive()


def test_server_that_trickles_a_value_times_out(mocks, memcached, luagent, raw_client):
    """A server that answers a get with a VALUE line, then one byte of its
    data every 0.05 s (well inside the 1 s pool timeout, so the connection is
    never quiet for a timeout) never completes a reply: the get still ends
    with the timeout line, not after the 100000 bytes would have come (over
    an hour), and the connection is rebuilt for the next request. The 5 s
    client timeout is the hang detector."""
    stop = threading.Event()

    def trickle(req):
        def run():
            req.send(b"VALUE %s 0 100000\r\n" % req.keys[0])
            while not stop.wait(0.05):
                req.send(b"t")
        threading.Thread(target=run, daemon=True).start()
        return mock_backend.HANG

    lg, mock, real = start_pair(mocks, memcached, luagent, scripted(trickle))
    try:
        a, b = raw_client(lg), raw_client(lg)
        bad = keys_for(0, "bad:", 1)[0]
        assert a.call("get %s\r\n" % bad, "get") == TIMEOUT_LINE
        check_real(b, keys_for(1, "real:", 2), "t")
        n_before = len(mock.conns)
        assert check_ok_on_mock(a, mock, keys_for(0, "ok:", 1)[0], b"fine") == n_before
        assert "request timeout: no whole reply for twice the timeout" in lg.log()
    finally:
        stop.set()


def test_value_larger_than_any_client_may_hold_is_not_buffered(mocks, memcached, luagent,
                                                                raw_client):
    """A server that answers a get with a value larger than client_max_memory
    (here 2 MiB; the value 96 MiB): no client could be given it, so luagent
    decides on the VALUE line, fails the get for memory as before (the
    documented SERVER_ERROR out of memory), and drops the value's bytes as
    they come instead of buffering them first (a broken or hostile server
    could declare up to 4 GiB). Resident memory at its peak (VmHWM: a
    buffer freed by the time the reply is read would not show in VmRSS)
    does not grow with the bytes, and the same connection goes on in step
    with the next request."""
    size = 96 * 1048576

    def flood(req):
        chunk = b"x" * 1048576
        req.send(b"VALUE %s 0 %d\r\n" % (req.keys[0], size))
        for _ in range(size // len(chunk)):
            req.send(chunk)
        req.send(b"\r\nEND\r\n")
        return None

    lg, mock, real = start_pair(mocks, memcached, luagent, scripted(flood),
                                args=("--client-max-memory", "2"))
    a = raw_client(lg)
    base = rss_kib(lg.pid, "VmHWM")
    bad = keys_for(0, "bad:", 1)[0]
    assert a.call("get %s\r\n" % bad, "get") == b"SERVER_ERROR out of memory\r\n"
    grown = rss_kib(lg.pid, "VmHWM") - base
    assert SANITIZED or grown <= RSS_SLACK_KIB, "resident memory grew %d KiB" % grown
    assert check_ok_on_mock(a, mock, keys_for(0, "ok:", 1)[0], b"fine") == 0
    assert len(mock.conns) == 1         # the first connection, still in step
    assert "larger than client_max_memory" in lg.log()
