"""SIGTERM: luagent stops taking requests, answers those in flight, closes
idle clients at once and exits 0."""

import signal
import socket

from conftest import HOST, free_port


def test_sigterm_answers_in_flight_then_exits(luagent, raw_client):
    # A scripted server: we know luagent has the request in flight once the
    # server has received it, and we answer only after the signal.
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = free_port()
    srv.bind((HOST, int(port)))
    srv.listen(4)
    srv.settimeout(10)
    try:
        lg = luagent("-t", "2", "-s", "%s:%s" % (HOST, port))
        idle = raw_client(lg)
        busy = raw_client(lg)
        busy.send(b"get sd:1\r\n")
        conn, _ = srv.accept()
        conn.settimeout(10)
        got = b""
        while not got.endswith(b"\r\n"):
            got += conn.recv(4096)
        assert got == b"get sd:1\r\n"

        lg.signal(signal.SIGTERM)
        assert idle.read_until_close() == b""       # idle: closed at once
        conn.sendall(b"VALUE sd:1 0 3\r\nabc\r\nEND\r\n")
        assert busy.read_retrieval() == b"VALUE sd:1 0 3\r\nabc\r\nEND\r\n"
        assert busy.read_until_close() == b""       # then closed
        assert lg.proc.wait(timeout=10) == 0
        lg.stopped = True
        conn.close()
    finally:
        srv.close()
