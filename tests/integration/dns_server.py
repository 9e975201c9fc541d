"""
A tiny DNS server for the server-name tests: UDP on 127.0.0.1, in a thread of
the test process, answering from tables the test changes while it runs.

    dns = DnsServer(port)           # started; dns.stop() at the end
    dns.a["mc1.test"] = "127.0.0.1"
    dns.srv["_memcache._tcp.pool.test"] = [("mc1.test", 21001), ("mc2.test", 21002)]
    dns.failing = True              # every answer SERVFAIL from now on

A names its A record; SRV names their records (priority 10, weight 1 each);
AAAA questions get an empty answer, other names NXDOMAIN. dns.asked counts
the questions per (name, type), for tests that wait for a question.
"""
import collections
import socket
import struct
import threading

TYPE_A, TYPE_AAAA, TYPE_SRV = 1, 28, 33
RCODE_SERVFAIL, RCODE_NXDOMAIN = 2, 3


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def read_question(msg):
    """(id, name, qtype, the question's bytes) of a query."""
    qid, = struct.unpack("!H", msg[:2])
    at, labels = 12, []
    while msg[at] != 0:
        n = msg[at]
        labels.append(msg[at + 1:at + 1 + n].decode())
        at += 1 + n
    qtype, = struct.unpack("!H", msg[at + 1:at + 3])
    return qid, ".".join(labels).lower(), qtype, msg[12:at + 5]


class DnsServer:
    def __init__(self, port):
        self.a = {}
        self.srv = {}
        self.failing = False
        self.asked = collections.Counter()
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.addr = "127.0.0.1:%d" % port
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def answer(self, msg):
        qid, name, qtype, question = read_question(msg)
        with self.lock:
            self.asked[(name, qtype)] += 1
            records, rcode = [], 0
            if self.failing:
                rcode = RCODE_SERVFAIL
            elif qtype == TYPE_SRV and name in self.srv:
                for target, port in self.srv[name]:
                    rdata = struct.pack("!HHH", 10, 1, port) + encode_name(target)
                    records.append((TYPE_SRV, rdata))
            elif name in self.a:
                if qtype == TYPE_A:
                    records.append((TYPE_A, socket.inet_aton(self.a[name])))
            else:
                rcode = RCODE_NXDOMAIN
        head = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(records), 0, 0)
        body = b"".join(struct.pack("!HHHIH", 0xc00c, rtype, 1, 0, len(rdata)) + rdata
                        for rtype, rdata in records)
        return head + question + body

    def serve(self):
        while self.running:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self.answer(msg), peer)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue        # not a question we read: no answer, as a server might

    def questions(self, name, qtype):
        with self.lock:
            return self.asked[(name, qtype)]

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()
