"""
mock_backend: a scripted fake memcached server for failover and timeout tests.

A MockBackend listens on 127.0.0.1 (a free port in 20000-32000 it binds itself),
splits what each connection sends into requests (a line, plus the data block
for storage commands), records them, and asks a handler what to do with each:

    handler(req) -> bytes        write these bytes back
                    HANG         never answer anything on this connection again
                                 (keep reading and recording)
                    CLOSE        close the connection now
                    None         answer nothing for this request

req has .conn (0-based connection number), .index (request number on that
connection), .line (request line without CRLF), .data (data block or None),
.cmd, .keys, .send(bytes) (write now, e.g. an answer for an earlier request).

Stock handlers: hang, fixed(reply), close_mid_value(...), Store (a tiny
memcached: get/gets/set/delete), and delayed(...) variants built with closures.
Threads only; stop() closes everything and joins.
"""
import random
import socket
import threading

HOST = "127.0.0.1"
HANG = object()
CLOSE = object()
STORAGE = {b"set", b"add", b"replace", b"append", b"prepend", b"cas"}


class Request:
    def __init__(self, conn_state, index, line, data):
        self._cs = conn_state
        self.conn = conn_state.number
        self.index = index
        self.line = line
        self.data = data
        parts = line.split()
        self.cmd = parts[0] if parts else b""
        if self.cmd in (b"get", b"gets"):
            self.keys = parts[1:]
        elif self.cmd in (b"gat", b"gats"):
            self.keys = parts[2:]
        else:
            self.keys = parts[1:2]

    def send(self, data):
        self._cs.send(data)


class _Conn:
    def __init__(self, backend, sock, number):
        self.backend = backend
        self.sock = sock
        self.number = number
        self.received = bytearray()
        self.lock = threading.Lock()
        self.closed = False

    def send(self, data):
        with self.lock:
            if not self.closed:
                try:
                    self.sock.sendall(data)
                except OSError:
                    pass

    def close(self):
        with self.lock:
            if not self.closed:
                self.closed = True
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.sock.close()


class MockBackend:
    def __init__(self, handler):
        self.handler = handler
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(200):
            port = random.randint(20000, 32000)
            try:
                self.lsock.bind((HOST, port))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("mock_backend: no free port")
        self.port = port
        self.lsock.listen(64)
        self.conns = []
        self.requests = []      # every Request, in arrival order
        self.cond = threading.Condition()
        self.threads = []
        self.stopping = False
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)

    @property
    def addr(self):
        return "%s:%d" % (HOST, self.port)

    @property
    def sockaddr(self):
        return (HOST, self.port)

    def _accept_loop(self):
        while not self.stopping:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            with self.cond:
                cs = _Conn(self, sock, len(self.conns))
                self.conns.append(cs)
                self.cond.notify_all()
            t = threading.Thread(target=self._serve, args=(cs,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, cs):
        buf = bytearray()
        hung = False
        index = 0
        while True:
            try:
                chunk = cs.sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            with self.cond:
                cs.received += chunk
                self.cond.notify_all()
            buf += chunk
            while True:
                i = buf.find(b"\r\n")
                if i < 0:
                    break
                line = bytes(buf[:i])
                parts = line.split()
                data = None
                need = i + 2
                if parts and parts[0] in STORAGE and len(parts) >= 5 and parts[4].isdigit():
                    n = int(parts[4])
                    need = i + 2 + n + 2
                    if len(buf) < need:
                        break
                    data = bytes(buf[i + 2:i + 2 + n])
                del buf[:need]
                req = Request(cs, index, line, data)
                index += 1
                with self.cond:
                    self.requests.append(req)
                    self.cond.notify_all()
                if hung:
                    continue
                action = self.handler(req)
                if action is HANG:
                    hung = True
                elif action is CLOSE:
                    cs.close()
                    return
                elif action:
                    cs.send(action)
        cs.close()

    def wait_for(self, pred, timeout=5.0):
        """Wait until pred(self) is true (checked whenever something arrives)."""
        with self.cond:
            ok = self.cond.wait_for(lambda: pred(self), timeout=timeout)
        if not ok:
            raise AssertionError("mock_backend: condition not met within %.0fs; requests: %r"
                                 % (timeout, [r.line for r in self.requests]))

    def received_lines(self):
        with self.cond:
            return [r.line for r in self.requests]

    def stop(self):
        self.stopping = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)   # wakes the blocked accept()
        except OSError:
            pass
        try:
            self.lsock.close()
        except OSError:
            pass
        for cs in list(self.conns):
            cs.close()
        for t in self.threads:
            t.join(timeout=5)


# ---- stock handlers -------------------------------------------------------

def hang(req):
    """Accept, read, never answer."""
    return HANG


def fixed(reply):
    """Answer every request with the same bytes."""
    def handler(req):
        return reply
    return handler


def close_mid_value(key=b"k", total=10, sent=b"abc"):
    """Answer a get with the start of a value, then close the connection."""
    def handler(req):
        if req.cmd in (b"get", b"gets"):
            req.send(b"VALUE %s 0 %d\r\n%s" % (key, total, sent))
            return CLOSE
        return b"ERROR\r\n"
    return handler


class Store:
    """A tiny memcached (get/gets/set/add/delete/version) for scripted tests;
    override hooks by wrapping: handler = lambda req: special(req) or store(req)."""

    def __init__(self):
        self.data = {}
        self.lock = threading.Lock()

    def __call__(self, req):
        with self.lock:
            if req.cmd in (b"get", b"gets"):
                out = b""
                for k in req.keys:
                    if k in self.data:
                        flags, v = self.data[k]
                        out += b"VALUE %s %d %d%s\r\n%s\r\n" % (
                            k, flags, len(v), b" 1" if req.cmd == b"gets" else b"", v)
                return out + b"END\r\n"
            noreply = req.line.endswith(b" noreply")
            if req.cmd in (b"set", b"add"):
                parts = req.line.split()
                if req.cmd == b"add" and parts[1] in self.data:
                    r = b"NOT_STORED\r\n"
                else:
                    self.data[parts[1]] = (int(parts[2]), req.data)
                    r = b"STORED\r\n"
                return None if noreply else r
            if req.cmd == b"delete":
                r = b"DELETED\r\n" if self.data.pop(req.keys[0], None) else b"NOT_FOUND\r\n"
                return None if noreply else r
            if req.cmd == b"version":
                return b"VERSION mock\r\n"
            return b"ERROR\r\n"
