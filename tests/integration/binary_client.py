"""
A byte-level client for memcached's binary protocol, for the integration
tests: builds requests, reads whole response packets with a socket timeout
(a proxy that hangs fails the test), and keeps the raw bytes so tests can
compare them with a direct memcached's.
"""
import socket
import struct

HEADER = struct.Struct(">BBHBBHIIQ")    # magic opcode keylen extlen datatype status/vbucket body opaque cas

GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH, GETQ, NOOP, VERSION = range(12)
GETK, GETKQ, APPEND, PREPEND, STAT, SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ = range(12, 23)
QUITQ, FLUSHQ, APPENDQ, PREPENDQ, VERBOSITY, TOUCH, GAT, GATQ = range(23, 31)
SASL_LIST, SASL_AUTH, SASL_STEP, GATK, GATKQ = 0x20, 0x21, 0x22, 0x23, 0x24

SUCCESS, ENOENT, EEXISTS, E2BIG, EINVAL, NOT_STORED, DELTA_BADVAL = range(7)
UNKNOWN_COMMAND, ENOMEM, ETMPFAIL = 0x81, 0x82, 0x86


def _b(s):
    return s if isinstance(s, (bytes, bytearray)) else str(s).encode()


def request(opcode, key=b"", extras=b"", value=b"", cas=0, opaque=0, magic=0x80,
            bodylen=None, keylen=None):
    key, extras, value = _b(key), _b(extras), _b(value)
    body = len(extras) + len(key) + len(value) if bodylen is None else bodylen
    return HEADER.pack(magic, opcode, len(key) if keylen is None else keylen, len(extras),
                       0, 0, body, opaque, cas) + extras + key + value


def store(opcode, key, value, flags=0, exptime=0, cas=0, opaque=0):
    return request(opcode, key, struct.pack(">II", flags, exptime), value, cas, opaque)


def arith(opcode, key, delta, initial=0, exptime=0, cas=0, opaque=0):
    return request(opcode, key, struct.pack(">QQI", delta, initial, exptime), b"", cas, opaque)


def touch(opcode, key, exptime, opaque=0):
    return request(opcode, key, struct.pack(">I", exptime), opaque=opaque)


class Response:
    def __init__(self, raw):
        (self.magic, self.opcode, keylen, extlen, _dt, self.status, body, self.opaque,
         self.cas) = HEADER.unpack(raw[:24])
        self.raw = raw
        self.extras = raw[24:24 + extlen]
        self.key = raw[24 + extlen:24 + extlen + keylen]
        self.value = raw[24 + extlen + keylen:24 + body]
        self.flags = struct.unpack(">I", self.extras)[0] if extlen == 4 else None

    def __repr__(self):
        return "Response(op=0x%02x status=0x%02x opaque=%d cas=%d key=%r value=%r)" % (
            self.opcode, self.status, self.opaque, self.cas, self.key, self.value[:60])

    def masked(self):
        """The raw bytes with the CAS zeroed (CAS values differ between servers)."""
        return self.raw[:16] + b"\0" * 8 + self.raw[24:]


class BinaryClient:
    def __init__(self, addr, timeout=5.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed; buffered %r" % bytes(self.buf[:100]))
        self.buf += chunk

    def read(self):
        """One whole response packet."""
        while len(self.buf) < 24:
            self._fill()
        body = struct.unpack(">I", self.buf[8:12])[0]
        while len(self.buf) < 24 + body:
            self._fill()
        raw = bytes(self.buf[:24 + body])
        del self.buf[:24 + body]
        return Response(raw)

    def call(self, data, n=1):
        self.send(data)
        return [self.read() for _ in range(n)] if n != 1 else self.read()

    def until(self, opcode):
        """Responses up to and including the first with this opcode (Noop, Stat end)."""
        out = []
        while True:
            r = self.read()
            out.append(r)
            if r.opcode == opcode and (opcode != STAT or not r.key):
                return out

    def closed(self):
        """True when the peer closed the connection with nothing more to read."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return not self.buf
                self.buf += chunk
        except ConnectionResetError:
            return not self.buf
