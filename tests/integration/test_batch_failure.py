"""
A server's reply to a get batch that fails part way (a stall, a close, bytes
that are no reply) delivers no value that the stream did not go on in step
after: a value parsed from a stream that then fails may be anything (for a
VALUE that declares more bytes than it has, it is the bytes that happen to
follow). A VALUE is vouched for by the next unit parsing (the next VALUE, or
END), so the values before the last one still reach the client as they
stream; the rest of the batch's keys are misses in a multi-key get, and a
single get answers the failure's SERVER_ERROR line.

Set-up as in test_faults.py: luagent -t 1 -s <mock> -s <real memcached>
(magent modula placement); the mock answers gets naming keys that start with
"bad" with the fault, everything else like a small memcached.
"""
import os
import signal
import time

import pytest

import mock_backend
from conftest import set_cmd
from test_faults import keys_for, scripted

TIMEOUT_LINE = b"SERVER_ERROR backend timeout\r\n"
CLOSED_LINE = b"SERVER_ERROR backend closed connection\r\n"
PROTO_LINE = b"SERVER_ERROR backend protocol error\r\n"


def honest_hits(keys):
    return b"".join(b"VALUE %s 0 1\r\nx\r\n" % k for k in keys)


def length_longer_then_stall(req):
    """The first VALUE declares exactly the bytes of the rest of the reply
    (the other hits and END), so they parse as its data; then nothing."""
    follow = b"abc\r\n" + honest_hits(req.keys[1:]) + b"END"
    req.send(b"VALUE %s 0 %d\r\n%s\r\n" % (req.keys[0], len(follow), follow))
    return mock_backend.HANG


def close_after_a_hit(req):
    req.send(honest_hits(req.keys[:1]))
    return mock_backend.CLOSE


def garbage_after_a_hit(req):
    return honest_hits(req.keys[:1]) + b"HELLO I AM NOT MEMCACHED\r\n"


FAULTS = {
    "length_longer_then_stall": (length_longer_then_stall, TIMEOUT_LINE),
    "close_after_a_hit": (close_after_a_hit, CLOSED_LINE),
    "garbage_after_a_hit": (garbage_after_a_hit, PROTO_LINE),
}


@pytest.fixture
def pair(mock, memcached, luagent, raw_client, request):
    fault, line = FAULTS[request.param]
    server = mock(scripted(fault))
    real = memcached()
    lg = luagent("-t", "1", servers=[server.addr, real])
    return lg, server, raw_client(lg), line


@pytest.mark.parametrize("pair", sorted(FAULTS), indirect=True)
def test_failed_batch_values_never_reach_the_client(pair):
    lg, server, c, line = pair
    bad = keys_for(0, "bad:", 6)
    ok = keys_for(0, "ok:", 2)
    real = keys_for(1, "real:", 2)
    for k in real:
        assert c.call(set_cmd(k, k.encode())) == b"STORED\r\n"
    assert c.call(set_cmd(ok[0], b"fine")) == b"STORED\r\n"

    def healthy_again():
        # a new connection to the failing server serves again, values intact
        # (and the good reply keeps the server from being marked down)
        conns = len(server.conns)
        assert c.call("get %s %s\r\n" % (ok[0], ok[1]), "get") == \
            b"VALUE %s 0 4\r\nfine\r\nEND\r\n" % ok[0].encode()
        assert len(server.conns) == conns + 1

    # a multi-key get: the batch to the failing server is one request line,
    # and every key of it is a miss; the other server's hits come back
    got = c.call("get %s %s %s %s\r\n" % (real[0], bad[0], bad[1], real[1]), "get")
    assert got == b"".join(b"VALUE %s 0 %d\r\n%s\r\n" % (k.encode(), len(k), k.encode())
                           for k in real) + b"END\r\n"
    assert server.requests[-1].line == b"get %s %s" % (bad[0].encode(), bad[1].encode())
    healthy_again()

    # three keys, all on the failing server: END alone
    assert c.call("get %s %s %s\r\n" % tuple(bad[2:5]), "get") == b"END\r\n"
    healthy_again()

    # a single get: the failure itself, not the bytes before it
    assert c.call("get %s\r\n" % bad[5], "get") == line
    healthy_again()


def wait_threads(pid, what, ok):
    """Until ok(state, wchan) holds for every thread of pid."""
    end = time.monotonic() + 5
    while True:
        seen = []
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open("/proc/%d/task/%s/wchan" % (pid, task)) as f:
                seen.append((state, f.read()))
        if all(ok(state, wchan) for state, wchan in seen):
            return
        assert time.monotonic() < end, "luagent threads not %s: %r" % (what, seen)
        time.sleep(0.01)


def stop_when_idle(lg):
    """SIGSTOP luagent once every thread sleeps in epoll_wait: the loop has
    then looked at every descriptor it was told about since, so what
    arrives next is reported in arrival order when it runs again."""
    wait_threads(lg.pid, "idle", lambda state, wchan: state == "S" and "ep" in wchan)
    lg.signal(signal.SIGSTOP)
    wait_threads(lg.pid, "stopped", lambda state, wchan: state in ("T", "t"))


def wait_queued(local_port, remote_port, n):
    """Until the loopback TCP socket local_port -> remote_port holds n unread
    bytes (/proc/net/tcp: rx_queue)."""
    end = time.monotonic() + 5
    while True:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
                if (int(local, 16), int(remote, 16)) == (local_port, remote_port):
                    if int(fields[4].split(":")[1], 16) == n:
                        return
        assert time.monotonic() < end, "bytes not queued on %d -> %d" % (local_port, remote_port)
        time.sleep(0.01)


def test_reply_before_the_request_was_sent_is_a_protocol_error(mock, luagent, raw_client):
    """A server's unrequested END that arrives in the same loop pass as a
    client's get, after it was queued but before it was written, answers
    nothing: the connection is out of step and fails. luagent is stopped
    meanwhile so that both arrive in one pass, the client's first."""
    server = mock(mock_backend.Store())
    lg = luagent("-t", "1", servers=[server.addr])
    c = raw_client(lg)
    for rnd in range(3):
        assert c.call(set_cmd("k", b"v%d" % rnd)) == b"STORED\r\n"
        try:
            stop_when_idle(lg)
            c.send(b"get k\r\n")
            conn = server.conns[-1]
            conn.send(b"END\r\n")
            # both wait in luagent's receive queues, the client's first
            wait_queued(lg.port, c.sock.getsockname()[1], 7)
            wait_queued(conn.sock.getpeername()[1], server.port, 5)
        finally:
            lg.signal(signal.SIGCONT)
        assert c.read_reply("get") == PROTO_LINE
        assert c.call(b"get k\r\n", "get") == b"VALUE k 0 2\r\nv%d\r\nEND\r\n" % rnd


BIG = 200000        # several reads per value


def big_value(key):
    return (key * (BIG // len(key) + 1))[:BIG]


def dies_in_the_third_value(req):
    """Two whole large values, half of a third, then the connection closes."""
    head = b"".join(b"VALUE %s 0 %d\r\n%s\r\n" % (k, BIG, big_value(k)) for k in req.keys[:2])
    k = req.keys[2]
    req.send(head + b"VALUE %s 0 %d\r\n%s" % (k, BIG, big_value(k)[:BIG // 2]))
    return mock_backend.CLOSE


def test_server_dies_in_the_middle_of_a_streamed_value(mock, memcached, luagent, raw_client):
    """A multi-get over large values whose server closes in the middle of
    the third: the first value, vouched for by the second's whole unit, is
    written; the second (nothing whole after it) and the rest are misses;
    the reply ends with END, the client stays in step, and the next get
    goes to a new connection."""
    server = mock(scripted(dies_in_the_third_value))
    lg = luagent("-t", "1", servers=[server.addr, memcached()])
    c = raw_client(lg)
    bad = [k.encode() for k in keys_for(0, "bad:", 4)]
    got = c.call(b"get " + b" ".join(bad) + b"\r\n", "get")
    assert got == b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (bad[0], BIG, big_value(bad[0]))
    ok = keys_for(0, "ok:", 1)[0]
    assert c.call(set_cmd(ok, b"fine")) == b"STORED\r\n"
    assert c.call("get %s\r\n" % ok, "get") == b"VALUE %s 0 4\r\nfine\r\nEND\r\n" % ok.encode()
    assert lg.alive()
