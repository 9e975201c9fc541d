"""
bench/capserver.c, the hot-key benchmark's server of fixed capacity: it holds
requests back rather than dropping them, counts a get by its keys and a
storage command by its line alone (the data block passes uncharged, whatever
it holds), and relays every reply intact and in order.

A test of a benchmark tool: it checks a lower bound on the time only (a
loaded machine makes everything slower, never faster than the cap allows).
"""
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import HOST, REPO, Proc, free_port

RATE = 1000             # units a second
BURST = RATE // 10      # capserver's default: 100 ms worth
GETS_PER_CONN = 1000
CONNS = 2
KEYS = 20
# The data block of a set looks like request lines: it must not be charged.
TRICKY = b"get a b c d e f g h i j\r\nset x 0 0 999999\r\n"


@pytest.fixture
def capserver_bin(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path / "capserver"
    subprocess.run([cc, "-std=gnu11", "-O2", "-Wall", "-o", str(out),
                    str(REPO / "bench" / "capserver.c")], check=True)
    return out


def value_of(i):
    return b"v%d-" % i + TRICKY if i == 0 else b"value-%04d" % i


def recv_until(s, want, count=1):
    buf = b""
    while buf.count(want) < count:
        chunk = s.recv(65536)
        assert chunk, "capserver closed the connection"
        buf += chunk
    return buf


def capserver_counts(port):
    s = socket.create_connection((HOST, port), 10)
    line = recv_until(s, b"\n").decode()
    s.close()
    return dict(w.split("=") for w in line.split())


def test_capserver_caps_the_rate_and_relays_every_reply(memcached, capserver_bin, tmp_path):
    mc = memcached()
    port, stats_port = free_port(), free_port()
    cap = Proc("capserver", [capserver_bin, "-p", port, "-s", stats_port, "-u", mc.addr,
                             "-r", RATE], tmp_path / "capserver.log")
    try:
        cap.wait_listening((HOST, port))
        cap.wait_listening((HOST, stats_port))
        start = time.monotonic()

        c = socket.create_connection((HOST, port), 30)
        for i in range(KEYS):
            v = value_of(i)
            c.sendall(b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(v), v))
        assert recv_until(c, b"STORED\r\n", KEYS) == b"STORED\r\n" * KEYS
        c.sendall(b"get " + b" ".join(b"k%d" % i for i in range(10)) + b"\r\n")
        want = b"".join(b"VALUE k%d 0 %d\r\n%s\r\n" % (i, len(value_of(i)), value_of(i))
                        for i in range(10)) + b"END\r\n"
        assert recv_until(c, b"END\r\n") == want
        c.close()

        replies = [None] * CONNS

        def client(n):
            s = socket.create_connection((HOST, port), 30)
            keys = [(n + j) % KEYS for j in range(GETS_PER_CONN)]
            s.sendall(b"".join(b"get k%d\r\n" % k for k in keys))
            got = recv_until(s, b"END\r\n", GETS_PER_CONN)
            s.close()
            replies[n] = (keys, got)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CONNS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        elapsed = time.monotonic() - start

        assert all(replies), "a client did not get all its replies"
        for keys, got in replies:
            assert got == b"".join(b"VALUE k%d 0 %d\r\n%s\r\nEND\r\n" % (k, len(value_of(k)),
                                                                        value_of(k))
                                   for k in keys)
        counts = capserver_counts(stats_port)
        units = KEYS + 10 + CONNS * GETS_PER_CONN
        assert int(counts["units"]) == units
        assert int(counts["requests"]) == KEYS + 1 + CONNS * GETS_PER_CONN
        # At RATE a second after a full bucket of BURST: (units - BURST) / RATE
        # seconds at least (1.93 s); a loaded machine only makes it longer.
        assert elapsed >= 1.5, "%d units in %.2f s at a cap of %d/s" % (units, elapsed, RATE)
        assert int(counts["throttled_ms"]) > 0
    finally:
        rc = cap.stop()
    assert rc == 0
    assert "requests=%d" % (KEYS + 1 + CONNS * GETS_PER_CONN) in cap.log()
