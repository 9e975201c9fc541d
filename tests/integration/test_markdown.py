"""
Mark-down of a server whose failures come with bytes: garbage, or the start
of a reply and then a stall or a close. Only a reply unit matched to a
request shows the server is healthy; bytes alone do not. So after
failure_limit such failures in a row the server is marked down, and its
requests fail at once without a new connection each.

The pool marks down for a minute (retry_after_ms), so no probe happens while
the test runs; every count below is exact, none depends on timing. The
request timeout is short only where a stall is the failure under test: where
the server answers (garbage, a close), a loaded machine may take well over
300 ms to run the mock's answer, and a timeout would come first.
"""
import pytest

import mock_backend
from test_policy import write_policy

POLICY = """
local lg = require "luagent"
return lg.policy{ route = lg.pool{ name = "p", servers = @S@, timeout_ms = @TIMEOUT@,
    failure_limit = 3, retry_after_ms = 60000 } }
"""
LIMIT = 3
REQUESTS = 10
UNAVAILABLE = b"SERVER_ERROR backend unavailable\r\n"
STALL_TIMEOUT_MS = 300      # the stall faults wait for it, three times
ANSWER_TIMEOUT_MS = 4000    # below the client's 5 s hang detector


def garbage(req):
    return b"HELLO I AM NOT MEMCACHED\r\n"


def partial_then_stall(req):
    req.send(b"VALUE %s 0 10\r\nab" % req.keys[0])
    return mock_backend.HANG


def partial_line_then_stall(req):
    req.send(b"VAL")
    return mock_backend.HANG


def partial_then_close(req):
    req.send(b"VALUE %s 0 10\r\nab" % req.keys[0])
    return mock_backend.CLOSE


FAULTS = {      # name: (handler, the reply it causes, the pool's request timeout)
    "garbage": (garbage, b"SERVER_ERROR backend protocol error\r\n", ANSWER_TIMEOUT_MS),
    "partial_then_stall": (partial_then_stall, b"SERVER_ERROR backend timeout\r\n",
                           STALL_TIMEOUT_MS),
    "partial_line_then_stall": (partial_line_then_stall, b"SERVER_ERROR backend timeout\r\n",
                                STALL_TIMEOUT_MS),
    "partial_then_close": (partial_then_close, b"SERVER_ERROR backend closed connection\r\n",
                           ANSWER_TIMEOUT_MS),
}


def start(luagent, raw_client, tmp_path, server, timeout_ms=ANSWER_TIMEOUT_MS):
    path = write_policy(tmp_path, "markdown.lua", POLICY, S=[server.addr],
                        TIMEOUT=str(timeout_ms))
    lg = luagent("-t", "1", "-c", str(path))
    return lg, raw_client(lg)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_failures_with_bytes_mark_the_server_down(name, mock, luagent, raw_client, tmp_path):
    fault, line, timeout_ms = FAULTS[name]
    server = mock(fault)
    lg, c = start(luagent, raw_client, tmp_path, server, timeout_ms)
    replies = [c.call(b"get k%d\r\n" % i) for i in range(REQUESTS)]
    assert replies == [line] * LIMIT + [UNAVAILABLE] * (REQUESTS - LIMIT), replies
    assert len(server.conns) == LIMIT, \
        "%d connections for %d requests to a failing server" % (len(server.conns), REQUESTS)
    st = c.stats(b"servers")
    server = "server:%s" % server.addr
    assert (st[server + ":state"], st[server + ":markdowns"]) == ("down", "1"), st
    assert "marked down for 60000 ms after 3 failures" in lg.log()


def test_a_matched_reply_resets_the_failure_count(mock, luagent, raw_client, tmp_path):
    """Failures separated by good replies never add up to a mark-down."""
    def alternate(req):
        if req.keys[0].startswith(b"bad"):
            return garbage(req)
        return b"END\r\n"
    server = mock(alternate)
    lg, c = start(luagent, raw_client, tmp_path, server)
    for i in range(2 * LIMIT):
        assert c.call(b"get bad%d\r\n" % i) == FAULTS["garbage"][1]
        assert c.call(b"get good%d\r\n" % i, "get") == b"END\r\n"
    # each failure closes its connection, the next good request opens one
    assert len(server.conns) == 2 * LIMIT + 1
    assert "marked down" not in lg.log()
