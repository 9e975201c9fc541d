"""
A server's reply to a get batch that fails part way (a stall, a close, bytes
that are no reply) delivers none of the batch's values: the reply stream is
no longer trusted, so a value parsed from it may be anything (for a VALUE
that declares more bytes than it has, it is the bytes that happen to
follow). The batch's keys are misses in a multi-key get, and a single get
answers the failure's SERVER_ERROR line.

Set-up as in test_faults.py: luagent -t 1 -s <mock> -s <real memcached>
(magent modula placement); the mock answers gets naming keys that start with
"bad" with the fault, everything else like a small memcached.
"""
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
