"""
Keys with control bytes (a tab, CR, 0x01, DEL...). memcached stores them, but
its VALUE lines would then carry them, and a reply line with a control byte
in its key cannot be told from garbage: luagent refuses such keys when it
parses the request (CLIENT_ERROR bad command line format), so they never
reach a server connection that other clients share.

Set-up for the shared-connection tests: one worker (-t 1), idle connections
kept (-i), so every client's requests go over the same connection to the
server. The server is a mock that holds its answer to a get on a key with a
control byte until the next request arrives, then answers both in one write:
the two replies are then parsed from one read, in FIFO order, so a reply
that poisons the connection would fail the other client's request too.
"""
import select
import threading
import time

import pytest

from conftest import set_cmd
from test_policy import write_policy

BAD = b"CLIENT_ERROR bad command line format\r\n"
BAD_KEY_AFTER_REWRITE = b"SERVER_ERROR luagent: bad key after rewrite\r\n"
CONTROL_KEYS = [b"a\tb", b"a\x01b", b"a\x7fb", b"a\rb", b"\x1f"]
DEADLINE = 5.0


def has_control(key):
    return any(c <= 0x20 or c == 0x7F for c in key)


class GatedStore:
    """A small memcached that splits only at spaces (as memcached does, so a
    tab is part of a key). A retrieval that names a key with a control byte
    is answered only when the next request arrives, in the same write."""

    def __init__(self):
        self.data = {}
        self.held = None            # (request, its answer) waiting for company
        self.lock = threading.Lock()
        self.bad_seen = 0           # requests naming a key with a control byte

    def answer(self, req):
        parts = [p for p in req.line.split(b" ") if p]
        cmd = parts[0]
        if cmd in (b"get", b"gets", b"gat", b"gats"):
            keys = parts[2:] if cmd in (b"gat", b"gats") else parts[1:]
            out = b""
            for k in keys:
                if k in self.data:
                    flags, v = self.data[k]
                    out += b"VALUE %s %d %d%s\r\n%s\r\n" % (
                        k, flags, len(v), b" 7" if cmd in (b"gets", b"gats") else b"", v)
            return out + b"END\r\n", keys
        if cmd == b"set":
            self.data[parts[1]] = (int(parts[2]), req.data)
            return b"STORED\r\n", parts[1:2]
        if cmd == b"mg":
            k = parts[1]
            if k not in self.data:
                return b"EN\r\n", [k]
            v = self.data[k][1]
            return b"VA %d k%s\r\n%s\r\n" % (len(v), k, v), [k]
        return b"ERROR\r\n", parts[1:2]

    def __call__(self, req):
        with self.lock:
            reply, keys = self.answer(req)
            bad = any(has_control(k) for k in keys)
            if bad:
                self.bad_seen += 1
            held, self.held = self.held, None
            if held is not None:
                return held + reply
            if bad and req.cmd in (b"get", b"gets", b"gat", b"gats"):
                self.held = reply
                return None
            return reply


def wait_forwarded_or_answered(store, client):
    """Until the mock holds a request or the client has a reply to read."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        with store.lock:
            if store.held is not None:
                return
        if client.buf or select.select([client.sock], [], [], 0.01)[0]:
            return
    raise AssertionError("the request was neither forwarded nor answered")


@pytest.fixture
def shared(luagent, mock):
    """(luagent, GatedStore, mock) with every client on one server connection."""
    store = GatedStore()
    server = mock(store)
    lg = luagent("-t", "1", "-i", "4", servers=[server.addr])
    return lg, store, server


@pytest.mark.parametrize("cmd", [b"get", b"gets", b"gat 0", b"gats 0"])
@pytest.mark.parametrize("key", CONTROL_KEYS[:3])
def test_control_byte_key_cannot_poison_a_shared_connection(shared, raw_client, cmd, key):
    lg, store, mock = shared
    store.data[key] = (0, b"x")     # as if memcached had stored it
    a, b = raw_client(lg), raw_client(lg)
    assert b.call(set_cmd("ok", b"hi")) == b"STORED\r\n"
    for i in range(3):
        a.send(b"%s %s\r\n" % (cmd, key))
        wait_forwarded_or_answered(store, a)
        # another client's set and get on the same server connection
        v = b"v%d" % i
        assert b.call(set_cmd("ok", v)) == b"STORED\r\n"
        assert b.call(b"get ok\r\n", "get") == b"VALUE ok 0 2\r\n%s\r\nEND\r\n" % v
        assert a.read_reply("get") == BAD
        # a multi-get naming the key is refused whole, as for a long key
        assert a.call(b"%s ok %s ok\r\n" % (cmd, key)) == BAD
        # a storage command's refused block is dropped with its line
        assert a.call(set_cmd(key, b"x") + b"get ok\r\n", "line") == BAD
        assert a.read_reply("get") == b"VALUE ok 0 2\r\n%s\r\nEND\r\n" % v
    assert store.bad_seen == 0, "a key with a control byte reached the server"
    assert len(mock.conns) == 1, "the shared server connection was dropped"


# Every keyed command, with a key that has a control byte, against a real
# memcached: one refusal each, nothing sent, the connection stays in step.
REFUSED = [
    b"get %s\r\n", b"get ok %s\r\n", b"gets %s\r\n", b"gat 10 %s\r\n", b"gats 10 ok %s\r\n",
    b"set %s 0 0 3\r\nabc\r\n", b"add %s 0 0 1\r\nz\r\n", b"replace %s 0 0 1\r\nz\r\n",
    b"append %s 0 0 1\r\nz\r\n", b"prepend %s 0 0 1\r\nz\r\n", b"cas %s 0 0 1 5\r\nz\r\n",
    b"delete %s\r\n", b"incr %s 1\r\n", b"decr %s 1\r\n", b"touch %s 10\r\n",
    b"mg %s v\r\n", b"mg %s k v q\r\n", b"ms %s 3 T0\r\nabc\r\n", b"md %s\r\n",
    b"ma %s\r\n", b"me %s\r\n",
]


@pytest.mark.parametrize("key", CONTROL_KEYS)
def test_control_byte_keys_refused_by_every_command(memcached, luagent, raw_client, key):
    m = memcached()
    lg = luagent("-t", "1", servers=[m])
    c = raw_client(lg)
    assert c.call(set_cmd("ok", b"fine")) == b"STORED\r\n"
    for req in REFUSED:
        line = req % key
        assert c.call(line) == BAD, line
        assert c.call(b"get ok\r\n", "get") == b"VALUE ok 0 4\r\nfine\r\nEND\r\n", line
    # noreply silences the refusal, as it does memcached's other errors
    c.send(b"set %s 0 0 1 noreply\r\nz\r\ndelete %s noreply\r\n" % (key, key))
    assert c.call(b"get ok\r\n", "get") == b"VALUE ok 0 4\r\nfine\r\nEND\r\n"
    with m.client() as direct:
        direct.send(b"get %s\r\n" % key)
        assert direct.read_retrieval() == b"END\r\n", "the key reached the server"
    # bytes above 0x7f are fine: they come back in VALUE lines unharmed
    high = b"k\xc3\xa9\xff"
    assert c.call(set_cmd(high, b"u")) == b"STORED\r\n"
    assert c.call(b"get %s\r\n" % high, "get") == b"VALUE %s 0 1\r\nu\r\nEND\r\n" % high


BAD_HOOK = """
local lg = require "luagent"
local p = lg.pool{ name = "p", servers = @S@, max_idle = 4 }
return lg.policy{ route = lg.hook{ routes = { p }, fn = function(req)
    if req.key == "tab" then return p, "a\\tb" end
    if req.key == "del" then return p, "a\\127b" end
    if req.key == "bin" then return p, "a\\tb" end
    return p
end } }
"""


def test_hook_key_with_control_byte_cannot_poison_a_shared_connection(
        luagent, raw_client, mock, tmp_path):
    store = GatedStore()
    server = mock(store)
    path = write_policy(tmp_path, "hook.lua", BAD_HOOK, S=[server.addr])
    lg = luagent("-t", "1", "-c", str(path))
    a, b = raw_client(lg), raw_client(lg)
    assert b.call(set_cmd("ok", b"hi")) == b"STORED\r\n"
    for req in (b"get tab\r\n", b"gets del\r\n", b"mg tab v\r\n", b"get ok tab\r\n"):
        a.send(req)
        wait_forwarded_or_answered(store, a)
        assert b.call(set_cmd("ok", b"v2")) == b"STORED\r\n"
        assert b.call(b"get ok\r\n", "get") == b"VALUE ok 0 2\r\nv2\r\nEND\r\n"
        want = b"VALUE ok 0 2\r\nv2\r\nEND\r\n" if req.startswith(b"get ok") \
            else BAD_KEY_AFTER_REWRITE
        assert a.read_reply("get") == want, req
    # a base64 meta key may hold any byte: it goes to the server encoded
    assert a.call(b"mg Ymlu b v\r\n") == b"EN\r\n"
    assert store.bad_seen == 0, "a key with a control byte reached the server"
    assert len(server.conns) == 1, "the shared server connection was dropped"
