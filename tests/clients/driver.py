#!/usr/bin/python3
"""
Real-client driver (tests/clients/steps.txt) for the Python clients:

    driver.py pymemcache HOST:PORT
    driver.py pylibmc HOST:PORT          (libmemcached, text protocol)
    driver.py pylibmc-ketama HOST:PORT   (the same with the ketama behaviour)

Prints "client<TAB><name and version>", then "<step><TAB><result>" per step.
"""
import hashlib
import re
import sys
import time


def blob(n):
    """n bytes of md5 hex digits of 0, 1, 2, ...: incompressible enough that no
    client's compression shrinks it below the size asked, and plain ASCII."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.md5(str(i).encode()).hexdigest().encode()
        i += 1
    return bytes(out[:n])


BINARY = bytes(range(256)) + b"\r\n" + b"\r\nEND\r\n" + bytes(range(255, -1, -1))
KEY_250 = ("k" * 246 + ":250").encode()
MULTI = {("mk:%d" % i).encode(): ("value %d" % i).encode() * (i + 1) for i in range(50)}


def show(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        v = v.encode()
    return '"%s"' % v.decode("latin-1")


def value(v, expected):
    if v is None:
        return "miss"
    if isinstance(v, str):
        v = v.encode("latin-1")
    if v == expected and len(v) <= 24 and re.fullmatch(rb"[ -~]*", v):
        return '"%s"' % v.decode()
    return "<%d bytes, %s>" % (len(v), "intact" if v == expected else "differs")


def error(e):
    text = re.sub(r"\S*127\.0\.0\.1:\d+\S*", "<server>", str(e))
    text = " ".join(text.split())[:90]
    return "error: %s%s" % (type(e).__name__, ": " + text if text else "")


class Python:
    """The calls the steps make, on top of one client library."""

    def __init__(self, kind, addr):
        host, port = addr.rsplit(":", 1)
        self.kind = kind
        if kind == "pymemcache":
            import pymemcache
            from pymemcache.client.base import Client
            self.c = Client((host, int(port)), connect_timeout=5, timeout=5,
                            default_noreply=False)
            self.name = "pymemcache %s" % pymemcache.__version__
        else:
            import pylibmc
            # gets needs the cas behaviour.
            behaviors = {"cas": True}
            if kind == "pylibmc-ketama":
                behaviors["ketama"] = True
            self.c = pylibmc.Client([addr], binary=False, behaviors=behaviors)
            self.name = "pylibmc %s (libmemcached %s)%s" % (
                pylibmc.__version__, pylibmc.libmemcached_version,
                ", ketama" if "ketama" in behaviors else "")

    @property
    def libmc(self):
        return self.kind != "pymemcache"

    def key(self, k):
        return k.decode() if self.libmc and isinstance(k, bytes) else k

    def set(self, k, v, exp=0):
        return self.c.set(self.key(k), v, exp) if self.libmc else self.c.set(k, v, exp)

    def get(self, k):
        return self.c.get(self.key(k))

    def gets(self, k):
        return self.c.gets(self.key(k))

    def cas(self, k, v, token):
        return self.c.cas(self.key(k), v, token)

    def get_multi(self, keys):
        if self.libmc:
            got = self.c.get_multi([k.decode() for k in keys])
            return {k.encode(): v for k, v in got.items()}
        return self.c.get_many(keys)

    def set_multi(self, data):
        if self.libmc:
            return self.c.set_multi({k.decode(): v for k, v in data.items()})
        return self.c.set_many(data)

    def version(self):
        if self.libmc:
            raise NotImplementedError     # pylibmc has no version call
        return self.c.version()


def outcome(fn, *args):
    """The call's return value, or the exception it raised (the client's error
    is the result)."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as e:
        return e


def res(v):
    return error(v) if isinstance(v, Exception) else show(v)


def val(v, expected):
    return error(v) if isinstance(v, Exception) else value(v, expected)


def steps(c):
    """(name, function) per step of tests/clients/steps.txt."""
    token = {}

    def call(method, key, *args):
        return outcome(getattr(c.c, method), c.key(key), *args)

    def gets():
        got = outcome(c.gets, b"k:set")
        if isinstance(got, Exception):
            return error(got)
        token["k:set"] = got[1]
        return "%s, %s" % (value(got[0], b">> hello world"), "token" if got[1] else "no token")

    def incr():
        outcome(c.set, b"k:n", b"10")
        return res(call("incr", b"k:n", 5))

    def multi_get():
        stored = outcome(c.set_multi, MULTI)
        if isinstance(stored, Exception):
            return error(stored)
        asked = list(MULTI) + [("mk:none:%d" % i).encode() for i in range(5)]
        got = outcome(c.get_multi, asked)
        if isinstance(got, Exception):
            return error(got)
        right = sum(1 for k, v in got.items() if MULTI.get(k) == v)
        return "%d hits, %d right" % (len(got), right)

    def set_get(k, v):
        return "%s / %s" % (res(outcome(c.set, k, v)), val(outcome(c.get, k), v))

    def expiry():
        stored = res(outcome(c.set, b"k:ttl", b"brief", 3))
        first = val(outcome(c.get, b"k:ttl"), b"brief")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            if outcome(c.get, b"k:ttl") is None:
                return "%s / %s, then miss" % (stored, first)
            time.sleep(0.1)
        return "%s / %s, still there after 8 s" % (stored, first)

    return [
        ("set", lambda: res(outcome(c.set, b"k:set", b"hello"))),
        ("get", lambda: val(outcome(c.get, b"k:set"), b"hello")),
        ("get missing", lambda: val(outcome(c.get, b"k:none"), None)),
        ("add new", lambda: res(call("add", b"k:add", b"a1", 0))),
        ("add existing", lambda: res(call("add", b"k:add", b"a2", 0))),
        ("get after add", lambda: val(outcome(c.get, b"k:add"), b"a1")),
        ("replace", lambda: res(call("replace", b"k:add", b"r1", 0))),
        ("replace missing", lambda: res(call("replace", b"k:none", b"x", 0))),
        ("append", lambda: res(call("append", b"k:set", b" world"))),
        ("prepend", lambda: res(call("prepend", b"k:set", b">> "))),
        ("get after append", lambda: val(outcome(c.get, b"k:set"), b">> hello world")),
        ("append missing", lambda: res(call("append", b"k:none", b"x"))),
        ("gets", gets),
        ("cas", lambda: res(outcome(c.cas, b"k:set", b"swapped", token.get("k:set")))),
        ("cas stale", lambda: res(outcome(c.cas, b"k:set", b"late", token.get("k:set")))),
        ("cas missing", lambda: res(outcome(c.cas, b"k:none", b"x", token.get("k:set")))),
        ("get after cas", lambda: val(outcome(c.get, b"k:set"), b"swapped")),
        ("delete", lambda: res(call("delete", b"k:set"))),
        ("delete missing", lambda: res(call("delete", b"k:set"))),
        ("incr", incr),
        ("decr below zero", lambda: res(call("decr", b"k:n", 100))),
        ("incr missing", lambda: res(call("incr", b"k:none", 1))),
        ("incr non-numeric", lambda: res(call("incr", b"k:add", 1))),
        ("touch", lambda: res(call("touch", b"k:add", 100))),
        ("touch missing", lambda: res(call("touch", b"k:none", 100))),
        ("multi-get 50 keys", multi_get),
        ("value 0 B", lambda: set_get(b"k:empty", b"")),
        ("binary value", lambda: set_get(b"k:binary", BINARY)),
        ("value 500 KB", lambda: set_get(b"k:big", blob(512000))),
        ("value 1,000,000 B", lambda: set_get(b"k:big", blob(1000000))),
        ("value 1 MiB + 1", lambda: res(outcome(c.set, b"k:big", blob(1048577)))),
        ("get after too big", lambda: val(outcome(c.get, b"k:big"), blob(1000000))),
        ("key 250 bytes", lambda: set_get(KEY_250, b"long key")),
        ("expiry", expiry),
        ("flush_all", lambda: res(outcome(c.c.flush_all))),
        ("get after flush", lambda: val(outcome(c.get, b"k:add"), None)),
        ("version", lambda: res(outcome(c.version))),
    ]


def main():
    kind, addr = sys.argv[1], sys.argv[2]
    c = Python(kind, addr)
    print("client\t%s" % c.name, flush=True)
    for name, fn in steps(c):
        try:
            out = fn()
        except NotImplementedError:
            out = "n/a"
        print("%s\t%s" % (name, out), flush=True)


if __name__ == "__main__":
    main()
