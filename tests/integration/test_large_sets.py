"""
Large sets through luagent: what a server answers to them reaches the client
as the server wrote it, and the server connection stays in step.

A request that leaves for a server from the writable callback (the rest of
a large data block the socket would not take at once, with requests queued
behind it) is sent: a fast server's reply to it, read later in the same
loop pass, belongs to it and is no protocol error. Seen in `make bench` with
1 MiB sets and 50 connections: now and then one set got `SERVER_ERROR
backend protocol error` ("unexpected reply"), and every call queued on that
server's connection failed with it. The test's server is a plain socket
with a small receive buffer that reads only when the test says so, so
luagent's write stops part way. luagent is stopped while a second client's
set arrives and the server drains and answers both sets, so that when it
runs again one loop pass sees, in this order, the client's request, the
server's socket writable (luagent writes the rest of the first set and the
second set), and the two replies. The server answers ahead of reading the
second set, as a server on another core does between luagent's write and
its read.

memcached with its default item size (-I 1m) refuses a value of exactly
1 MiB (the item header counts), answers `SERVER_ERROR object too large for
cache` and drops the data block: luagent passes that line on, and the
connection goes on with the next request.
"""
import signal
import socket
import time

import pytest

from conftest import HOST, ITEM_MAX, free_port, set_cmd
from test_batch_failure import stop_when_idle, wait_queued

DEADLINE = 5.0


def tcp_queues(local_port, remote_port):
    """(tx_queue, rx_queue) of the loopback TCP socket local_port -> remote_port."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
            if (int(local, 16), int(remote, 16)) == (local_port, remote_port):
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16)
    raise AssertionError("no TCP socket %d -> %d" % (local_port, remote_port))


class SlowServer:
    """One accepted connection that is read only on demand."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # inherited by the accepted socket: a small window, so that a 1 MiB
        # write stops part way
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.port = free_port()
        self.lsock.bind((HOST, self.port))
        self.lsock.listen(4)
        self.lsock.settimeout(DEADLINE)
        self.conn = None
        self.received = bytearray()

    @property
    def addr(self):
        return "%s:%d" % (HOST, self.port)

    def accept(self):
        self.conn, _ = self.lsock.accept()
        self.conn.setblocking(False)
        return self.conn.getpeername()[1]

    def read_some(self):
        try:
            chunk = self.conn.recv(1 << 20)
        except BlockingIOError:
            return 0
        assert chunk, "luagent closed the server connection; got %d bytes" % len(self.received)
        self.received += chunk
        return len(chunk)

    def drain(self, peer_port):
        """Read until the peer's socket has nothing left in flight (the peer
        being stopped, nothing more comes)."""
        end = time.monotonic() + DEADLINE
        while True:
            if self.read_some() > 0:
                continue
            if tcp_queues(peer_port, self.port)[0] == 0 and self.read_some() == 0:
                return
            assert time.monotonic() < end, "server connection not drained"
            time.sleep(0.001)

    def read_until(self, total):
        end = time.monotonic() + DEADLINE
        while len(self.received) < total:
            if self.read_some() == 0:
                assert time.monotonic() < end, "server got %d of %d bytes" % (
                    len(self.received), total)
                time.sleep(0.001)

    def close(self):
        for s in (self.conn, self.lsock):
            if s is not None:
                s.close()


@pytest.fixture
def slow_server():
    s = SlowServer()
    yield s
    s.close()


BIG = 6 << 20       # more than a loopback socket takes at once (tcp_wmem: 4 MiB)
POLICY = """local lg = require "luagent"
return lg.policy{
    route = lg.pool{ name = "main", servers = lg.args.servers, timeout_ms = 4000 },
    settings = { item_max = %d },
}
""" % (8 << 20)


def test_reply_to_a_request_the_writable_callback_sent(slow_server, luagent, raw_client,
                                                       tmp_path):
    policy = tmp_path / "big.lua"
    policy.write_text(POLICY)
    lg = luagent("-t", "1", "-c", str(policy), servers=[slow_server.addr])
    big, small = raw_client(lg), raw_client(lg)
    big_set = set_cmd("big", b"v" * BIG)
    small_set = set_cmd("small", b"x")

    big.send(big_set)
    lg_port = slow_server.accept()
    # luagent has read the whole set and written what the socket took
    wait_queued(lg.port, big.sock.getsockname()[1], 0)
    slow_server.read_some()
    stop_when_idle(lg)
    try:
        tx, _ = tcp_queues(lg_port, slow_server.port)
        assert len(slow_server.received) + tx < len(big_set), \
            "the socket took the whole set: nothing is left for the writable callback"
        small.send(small_set)
        wait_queued(lg.port, small.sock.getsockname()[1], len(small_set))
        slow_server.drain(lg_port)
        slow_server.conn.sendall(b"STORED\r\nSTORED\r\n")
        wait_queued(lg_port, slow_server.port, 16)
    finally:
        lg.signal(signal.SIGCONT)

    assert small.read_line() == b"STORED\r\n"
    assert big.read_line() == b"STORED\r\n"
    # the server got both sets whole, in order, on the one connection
    slow_server.read_until(len(big_set) + len(small_set))
    assert bytes(slow_server.received) == big_set + small_set
    # and it stays in step: the next request and its reply go on it
    small.send(b"get small\r\n")
    slow_server.read_until(len(big_set) + len(small_set) + len(b"get small\r\n"))
    slow_server.conn.sendall(b"VALUE small 0 1\r\nx\r\nEND\r\n")
    assert small.read_retrieval() == b"VALUE small 0 1\r\nx\r\nEND\r\n"
    assert bytes(slow_server.received).endswith(b"get small\r\n")
    assert "unexpected reply" not in lg.log()


def test_memcached_refusing_a_large_item_is_passed_on(memcached, luagent, raw_client):
    server = memcached(extra=["-I", "1m"])
    lg = luagent("-t", "1", servers=[server])
    c, direct = raw_client(lg), raw_client(server)
    refused = b"SERVER_ERROR object too large for cache\r\n"
    connections = None
    for _ in range(3):
        c.send(set_cmd("big", b"v" * ITEM_MAX) + set_cmd("small", b"x") + b"get small\r\n")
        assert c.read_line() == refused
        assert c.read_line() == b"STORED\r\n"
        assert c.read_retrieval() == b"VALUE small 0 1\r\nx\r\nEND\r\n"
        # luagent's connection to the server was kept: it is in step
        total = direct.stats()["total_connections"]
        assert connections in (None, total)
        connections = total
    assert c.call(b"get big\r\n", "get") == b"END\r\n"
    assert "unexpected reply" not in lg.log()
