"""
Route node behaviour (DESIGN.md 5.3) against real memcached servers, and
policy loading (5.2, 5.7): self-tests, --check, --route, lg.args.

Every policy is generated into the test's temp dir with the servers' real
(free, run-time) ports substituted for @NAME@ placeholders. A "dead" server is
a free port nothing listens on; a "hanging" one is a listening socket that
never answers. Where something happens in the background (all_async, the
warm-up copy, shadow copies), the test polls with a deadline; no assertion is
on elapsed time.
"""
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import HOST, LUAGENT, REPO, free_port, parse_values, set_cmd

FIXTURES = REPO / "tests" / "fixtures"
EXAMPLES = REPO / "examples"
POLL_DEADLINE = 10.0        # seconds: bound for "eventually"
RUN_TIMEOUT = 20            # seconds: bound for a --check / failing start


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def _addrs(items):
    if isinstance(items, (list, tuple)):
        out = []
        for it in items:
            out += _addrs(it)
        return out
    return [items if isinstance(items, str) else items.addr]


def lua_servers(items):
    """A Lua list of "host:port" strings for Memcached objects / address strings."""
    return "{ " + ", ".join('"%s"' % a for a in _addrs(items)) + " }"


def render(text, **subs):
    """Replace @NAME@: a str is inserted as is (Lua code), anything else
    (Memcached, address list) becomes a Lua server list."""
    for name, v in subs.items():
        text = text.replace("@%s@" % name, v if isinstance(v, str) else lua_servers(v))
    left = re.findall(r"@[A-Z][A-Z0-9_]*@", text)
    assert not left, "unsubstituted placeholders %s" % left
    return text


def write_policy(dirpath, name, text, **subs):
    path = Path(dirpath) / name
    path.write_text(render(text, **subs))
    return path


def fixture_policy(dirpath, fixture, **subs):
    return write_policy(dirpath, fixture, (FIXTURES / fixture).read_text(), **subs)


def dead_addr():
    """An address nothing listens on (connections are refused)."""
    return "%s:%d" % (HOST, free_port())


@pytest.fixture
def hanging():
    """Factory: a listening socket that never accepts or answers -> "host:port"."""
    socks = []

    def make():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, free_port()))
        s.listen(128)
        socks.append(s)
        return "%s:%d" % s.getsockname()

    yield make
    for s in socks:
        s.close()


def store(c, key, value, **kw):
    return c.call(set_cmd(key, value, **kw))


def get1(c, key, cmd="get"):
    """Value bytes of one key through c, or None on a miss (END)."""
    vals = parse_values(c.call(("%s %s\r\n" % (cmd, key)).encode(), "get"))
    assert len(vals) <= 1 and (not vals or vals[0][0] == key), vals
    return vals[0][2] if vals else None


def mget(c, keys, cmd="get"):
    """[(key, value)] of a multi-key get, in reply order."""
    raw = c.call(("%s %s\r\n" % (cmd, " ".join(keys))).encode(), "get")
    return [(k, d) for k, _f, d, _cas in parse_values(raw)]


def put_direct(servers, key, value, flags=0, exptime=0):
    """Store key on each of these memcacheds directly."""
    for m in servers:
        c = m.client()
        try:
            assert c.call(set_cmd(key, value, flags=flags, exptime=exptime)) == b"STORED\r\n"
        finally:
            c.close()


def present(servers, keys):
    """Keys found on any of these memcacheds (asked directly)."""
    found = set()
    for m in servers:
        found |= m.present(keys)
    return found


def holder(servers, key):
    """The memcacheds (asked directly) that hold key."""
    return [m for m in servers if m.get(key) is not None]


def mc_stats(m):
    c = m.client()
    try:
        return c.stats()
    finally:
        c.close()


def meta(m, key, flags="t f"):
    """memcached meta-get: {'t': ttl, 'f': flags} or None on a miss."""
    c = m.client()
    try:
        line = c.call(("mg %s %s\r\n" % (key, flags)).encode())
    finally:
        c.close()
    if line == b"EN\r\n":
        return None
    parts = line.split()
    assert parts[0] == b"HD", line
    return {p[:1].decode(): int(p[1:]) for p in parts[1:]}


def poll(fn, what, deadline=POLL_DEADLINE):
    """Call fn until it returns something true; fail after deadline seconds."""
    end = time.monotonic() + deadline
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > end:
            raise AssertionError("%s: not true after %.0fs" % (what, deadline))
        time.sleep(0.02)


def is_server_error(line):
    return line.startswith(b"SERVER_ERROR ") and line.endswith(b"\r\n") \
        and line.count(b"\r\n") == 1


def run_luagent(*args, env=None, cwd=None):
    """Run ./luagent to completion (for --check / --route / failing starts)."""
    full_env = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)       # None: unset
        else:
            full_env[k] = v
    p = subprocess.run([str(LUAGENT)] + [str(a) for a in args], capture_output=True,
                       timeout=RUN_TIMEOUT, env=full_env, cwd=cwd)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


@pytest.fixture
def start(luagent, raw_client, tmp_path):
    """start(policy_text, **subs) -> (Luagent, RawClient) for a generated policy."""
    def make(text, name="policy.lua", args=(), **subs):
        path = write_policy(tmp_path, name, text, **subs)
        lg = luagent("-c", str(path), *args)
        return lg, raw_client(lg)
    return make


# --------------------------------------------------------------------------
# all_sync
# --------------------------------------------------------------------------

ALL_SYNC = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = @A@ }
local b = lg.pool{ name = "b", servers = @B@, timeout_ms = 300, connect_timeout_ms = 200 }
return lg.policy{ route = lg.all_sync{ @ORDER@ } }
"""


@pytest.mark.parametrize("order", ["a, b", "b, a"])
def test_all_sync_worst_reply_dead_child_wins(memcached, start, order):
    """One child pool is a dead port: the client gets SERVER_ERROR even
    though the live child stored the value (in either child order)."""
    a = memcached()
    lg, c = start(ALL_SYNC, A=a, B=[dead_addr()], ORDER=order)

    for i in range(5):
        key = "as:%d" % i
        line = store(c, key, "v%d" % i)
        assert is_server_error(line), "all_sync with a dead child answered %r" % line
        assert a.get(key) == b"v%d" % i, "the live child must have stored %s" % key
    line = c.call(b"delete as:0\r\n")
    assert is_server_error(line), line
    assert a.get("as:0") is None, "the live child must have deleted as:0"
    # the connection stays usable
    assert is_server_error(store(c, "as:x", "x"))


def test_all_sync_worst_reply_not_stored_beats_stored(memcached, start):
    a, b = memcached(), memcached()
    lg, c = start(ALL_SYNC, A=a, B=b, ORDER="a, b")
    put_direct([b], "as:only-b", "old")
    assert c.call(set_cmd("as:only-b", "new", cmd="add")) == b"NOT_STORED\r\n"
    assert a.get("as:only-b") == b"new"
    assert b.get("as:only-b") == b"old"
    assert store(c, "as:both", "v") == b"STORED\r\n"


def test_all_sync_value_readable_from_every_child(memcached, start):
    a1, a2, b, cc = memcached(), memcached(), memcached(), memcached()
    policy = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = @A@ }
local b = lg.pool{ name = "b", servers = @B@ }
local c = lg.pool{ name = "c", servers = @C@ }
return lg.policy{ route = lg.all_sync{ a, b, c } }
"""
    lg, c = start(policy, A=[a1, a2], B=b, C=cc)
    keys = ["rep:%d" % i for i in range(40)]
    for k in keys:
        assert store(c, k, "val-" + k) == b"STORED\r\n"
    # pool a: every key exactly once, spread over both servers
    on_a1, on_a2 = a1.present(keys), a2.present(keys)
    assert on_a1 | on_a2 == set(keys) and not (on_a1 & on_a2)
    assert on_a1 and on_a2, "40 keys should spread over both servers of pool a"
    assert b.present(keys) == set(keys)
    assert cc.present(keys) == set(keys)
    for k in keys[:10]:
        assert holder([a1, a2], k)[0].get(k) == b"val-" + k.encode()
        assert b.get(k) == b"val-" + k.encode() and cc.get(k) == b"val-" + k.encode()
        assert get1(c, k) == b"val-" + k.encode()
    for k in keys[:10]:
        assert c.call(("delete %s\r\n" % k).encode()) == b"DELETED\r\n"
    assert not present([a1, a2, b, cc], keys[:10])


# --------------------------------------------------------------------------
# failover
# --------------------------------------------------------------------------

def test_failover_answers_are_not_triggers(memcached, start):
    """NOT_STORED, EXISTS, NOT_FOUND, CLIENT_ERROR and a read miss are
    answers: the second child never sees any of these requests (writes are
    failed over here, so it could)."""
    a, b = memcached(), memcached()
    policy = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = @A@ }
local b = lg.pool{ name = "b", servers = @B@ }
return lg.policy{ route = lg.failover{ a, b, writes = "failover" } }
"""
    lg, c = start(policy, A=a, B=b)
    assert store(c, "fo:k", "v1") == b"STORED\r\n"
    assert store(c, "fo:text", "abc") == b"STORED\r\n"
    assert a.get("fo:k") == b"v1"

    # add of an existing key
    assert c.call(set_cmd("fo:k", "v2", cmd="add")) == b"NOT_STORED\r\n"
    # replace of a missing key
    assert c.call(set_cmd("fo:missing", "v", cmd="replace")) == b"NOT_STORED\r\n"
    # cas with a stale unique, and on a missing key
    vals = parse_values(c.call(b"gets fo:k\r\n", "get"))
    assert len(vals) == 1 and vals[0][3] is not None
    stale = vals[0][3] + 1000
    assert c.call(b"cas fo:k 0 0 2 %d\r\nv3\r\n" % stale) == b"EXISTS\r\n"
    assert c.call(b"cas fo:missing 0 0 2 %d\r\nv3\r\n" % stale) == b"NOT_FOUND\r\n"
    # delete / incr / touch of a missing key
    assert c.call(b"delete fo:missing\r\n") == b"NOT_FOUND\r\n"
    assert c.call(b"incr fo:missing 1\r\n") == b"NOT_FOUND\r\n"
    assert c.call(b"touch fo:missing 10\r\n") == b"NOT_FOUND\r\n"
    # incr of a non-number: CLIENT_ERROR from memcached
    line = c.call(b"incr fo:text 1\r\n")
    assert line.startswith(b"CLIENT_ERROR "), line
    # a read miss without miss = true
    assert get1(c, "fo:missing") is None

    assert a.get("fo:k") == b"v1"
    st = mc_stats(b)        # before anything asks b directly
    seen = {name: st[name] for name in ("cmd_get", "cmd_set", "cmd_touch", "delete_hits",
                                         "delete_misses", "incr_hits", "incr_misses",
                                         "cas_hits", "cas_misses", "cas_badval",
                                         "curr_items")}
    assert all(v == "0" for v in seen.values()), "the backup was asked: %r" % seen
    assert b.present(["fo:k", "fo:text", "fo:missing"]) == set(), "B must never see a key"


FAILOVER_DEAD = """
local lg = require "luagent"
local p = lg.pool{ name = "p", servers = @P@, timeout_ms = 200, connect_timeout_ms = 200 }
local b = lg.pool{ name = "b", servers = @B@ }
return lg.policy{ route = lg.prefix{
    ["w:"]  = lg.failover{ p, b, writes = "failover" },
    default = lg.failover{ p, b },
} }
"""


@pytest.mark.parametrize("failure", ["dead", "hanging"])
def test_failover_error_or_timeout_moves_on(memcached, start, hanging, failure):
    """Primary refuses connections (error) or never answers (timeout):
    reads come from the backup; writes="failover" writes reach the backup;
    writes="primary" (default) report the failure instead."""
    b = memcached()
    primary = dead_addr() if failure == "dead" else hanging()
    lg, c = start(FAILOVER_DEAD, P=[primary], B=b)
    for i in range(3):
        put_direct([b], "fd:%d" % i, "from-backup-%d" % i)
    for i in range(3):
        assert get1(c, "fd:%d" % i) == b"from-backup-%d" % i
    assert mget(c, ["fd:2", "fd:0", "fd:1"]) == [
        ("fd:2", b"from-backup-2"), ("fd:0", b"from-backup-0"), ("fd:1", b"from-backup-1")]
    assert store(c, "w:1", "x") == b"STORED\r\n"
    assert b.get("w:1") == b"x"
    assert is_server_error(store(c, "fd:new", "x"))
    assert b.get("fd:new") is None, "writes = 'primary' must not be redirected"


def test_failover_miss_moves_on_only_with_miss_true(memcached, start):
    a, b = memcached(), memcached()
    policy = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = @A@ }
local b = lg.pool{ name = "b", servers = @B@ }
return lg.policy{ route = lg.prefix{
    ["m:"]  = lg.failover{ a, b, miss = true },
    default = lg.failover{ a, b },
} }
"""
    lg, c = start(policy, A=a, B=b)
    put_direct([b], "m:only-b", "bb")
    put_direct([b], "n:only-b", "bb")
    put_direct([a], "m:both", "aa")
    put_direct([b], "m:both", "bb")
    assert get1(c, "m:only-b") == b"bb", "miss = true: a miss moves on"
    assert get1(c, "n:only-b") is None, "miss = false: a miss is an answer"
    assert get1(c, "m:both") == b"aa"
    assert get1(c, "m:none") is None
    assert mget(c, ["m:none", "m:only-b", "n:only-b", "m:both"]) == [
        ("m:only-b", b"bb"), ("m:both", b"aa")]


def test_failover_multiget_reasks_failed_keys_in_order(memcached, start):
    """A multi-get where some keys live on a dead primary server still
    returns their values (from the backup), in the order asked."""
    s1, s2, b = memcached(), memcached(), memcached()
    policy = """
local lg = require "luagent"
local p = lg.pool{ name = "p", servers = @P@, timeout_ms = 300, connect_timeout_ms = 200 }
local b = lg.pool{ name = "b", servers = @B@ }
return lg.policy{ route = lg.failover{ p, b } }
"""
    lg, c = start(policy, P=[s1, s2], B=b)
    keys = ["mg:%d" % i for i in range(40)]
    for k in keys:
        assert store(c, k, "p-" + k) == b"STORED\r\n"
    on_s1, on_s2 = s1.present(keys), s2.present(keys)
    assert on_s1 and on_s2 and on_s1 | on_s2 == set(keys)
    for k in keys:
        put_direct([b], k, "b-" + k)
    s2.kill()

    asked = keys[1::2] + ["mg:absent"] + keys[0::2][::-1]
    want = [(k, ("p-" if k in on_s1 else "b-").encode() + k.encode())
            for k in asked if k != "mg:absent"]
    assert mget(c, asked) == want
    # once more (the dead server may now be marked down: same answer)
    assert mget(c, asked) == want
    # and gets
    raw = c.call(("gets " + " ".join(asked) + "\r\n").encode(), "get")
    assert [(k, d) for k, _f, d, _cas in parse_values(raw)] == want


# --------------------------------------------------------------------------
# warmup
# --------------------------------------------------------------------------

WARMUP = """
local lg = require "luagent"
local cold = lg.pool{ name = "cold", servers = @COLD@ }
local warm = lg.pool{ name = "warm", servers = @WARM@ }
return lg.policy{ route = lg.warmup{ cold = cold, warm = warm, exptime = 600 } }
"""


def test_warmup_copies_warm_hits_into_cold(memcached, start):
    cold, warm = memcached(), memcached()
    lg, c = start(WARMUP, COLD=cold, WARM=warm)
    put_direct([warm], "wu:1", "warm-1", flags=42)
    put_direct([warm], "wu:2", "warm-2")
    put_direct([cold], "wu:2", "cold-2")
    put_direct([cold], "wu:3", "cold-3")

    raw = c.call(b"get wu:1\r\n", "get")
    assert parse_values(raw) == [("wu:1", 42, b"warm-1", None)]
    m = poll(lambda: meta(cold, "wu:1"), "wu:1 copied into cold")
    assert m["f"] == 42, "the copy keeps the flags"
    assert 0 < m["t"] <= 600 and m["t"] > 500, "the copy has exptime 600: ttl %r" % m["t"]
    assert cold.get("wu:1") == b"warm-1"

    # a hit in cold is answered by cold, which is never overwritten
    assert get1(c, "wu:2") == b"cold-2"
    assert get1(c, "wu:3") == b"cold-3"
    assert get1(c, "wu:none") is None
    assert mget(c, ["wu:none", "wu:3", "wu:1", "wu:2"]) == [
        ("wu:3", b"cold-3"), ("wu:1", b"warm-1"), ("wu:2", b"cold-2")]
    assert cold.get("wu:2") == b"cold-2"

    # deletes reach both
    assert c.call(b"delete wu:2\r\n") == b"DELETED\r\n"
    assert cold.get("wu:2") is None and warm.get("wu:2") is None
    # writes go to cold
    assert store(c, "wu:new", "n") == b"STORED\r\n"
    assert cold.get("wu:new") == b"n" and warm.get("wu:new") is None


# --------------------------------------------------------------------------
# shadow
# --------------------------------------------------------------------------

SHADOW_HALF = """
local lg = require "luagent"
local m = lg.pool{ name = "main",   servers = @MAIN@ }
local s = lg.pool{ name = "shadow", servers = @SHADOW@ }
return lg.policy{ route = lg.prefix{
    -- barrier: a request on the shadow server's connection, after the copies
    ["barrier:"] = s,
    default      = lg.shadow{ main = m, shadow = s, fraction = 0.5 },
} }
"""


def _shadow_run(memcached, luagent, raw_client, tmp_path, n):
    main, shadow = memcached(), memcached()
    path = write_policy(tmp_path, "shadow-%d.lua" % n, SHADOW_HALF, MAIN=main, SHADOW=shadow)
    lg = luagent("-c", str(path))
    c = raw_client(lg)
    keys = ["sh:%d" % i for i in range(200)]
    replies = c.pipeline([set_cmd(k, "v-" + k) for k in keys], "line")
    assert replies == [b"STORED\r\n"] * len(keys)
    # luagent talks to one server over one connection, in order: once the
    # barrier is stored, every shadow copy sent before it has been handled
    assert store(c, "barrier:1", "b") == b"STORED\r\n"
    assert main.present(keys) == set(keys)
    shadowed = shadow.present(keys)
    for k in sorted(shadowed)[:5]:
        assert shadow.get(k) == b"v-" + k.encode()
    # reads are shadowed too (ops = "all"): the same keys, answered by main
    before = mc_stats(shadow)
    for k in keys:
        assert get1(c, k) == b"v-" + k.encode()
    assert get1(c, "barrier:1") == b"b"
    after = mc_stats(shadow)
    gets = int(after["cmd_get"]) - int(before["cmd_get"]) - 1
    hits = int(after["get_hits"]) - int(before["get_hits"]) - 1
    assert gets == hits == len(shadowed), \
        "reads of exactly the shadowed keys reach the shadow (%d gets, %d hits, %d keys)" % (
            gets, hits, len(shadowed))
    return shadowed


def test_shadow_fraction_same_keys_every_run(memcached, luagent, raw_client, tmp_path):
    first = _shadow_run(memcached, luagent, raw_client, tmp_path, 1)
    assert 40 <= len(first) <= 160, "fraction 0.5 of 200 keys shadowed %d" % len(first)
    second = _shadow_run(memcached, luagent, raw_client, tmp_path, 2)
    assert first == second, "a second identical run shadowed different keys: %d differ" % (
        len(first ^ second))


SHADOW_BAD = """
local lg = require "luagent"
local m = lg.pool{ name = "main",   servers = @MAIN@ }
local s = lg.pool{ name = "shadow", servers = @SHADOW@, timeout_ms = 200,
                   connect_timeout_ms = 200 }
return lg.policy{ route = lg.shadow{ main = m, shadow = s } }
"""


@pytest.mark.parametrize("failure", ["dead", "hanging"])
def test_shadow_failure_never_reaches_client(memcached, start, hanging, failure):
    main = memcached()
    shadow = dead_addr() if failure == "dead" else hanging()
    lg, c = start(SHADOW_BAD, MAIN=main, SHADOW=[shadow])
    keys = ["sf:%d" % i for i in range(20)]
    for k in keys:
        assert store(c, k, "v-" + k) == b"STORED\r\n"
    assert main.present(keys) == set(keys)
    for k in keys[:5]:
        assert get1(c, k) == b"v-" + k.encode()
    assert mget(c, keys[::-1]) == [(k, b"v-" + k.encode()) for k in keys[::-1]]
    assert store(c, "sf:n", "5") == b"STORED\r\n"
    assert c.call(b"incr sf:n 2\r\n") == b"7\r\n"
    assert c.call(b"delete sf:0\r\n") == b"DELETED\r\n"
    assert c.call(b"delete sf:0\r\n") == b"NOT_FOUND\r\n"
    assert get1(c, "sf:0") is None


# --------------------------------------------------------------------------
# rewrite
# --------------------------------------------------------------------------

LONG_ADD = "L" * 240

REWRITE = """
local lg = require "luagent"
local p = lg.pool{ name = "p", servers = @P@ }
return lg.policy{ route = lg.prefix{
    ["u:"]    = lg.rewrite{ strip = "u:", add = "user:", to = p },
    ["s:"]    = lg.rewrite{ strip = "s:", to = p },
    ["long:"] = lg.rewrite{ add = "@LONG@", to = p },
    default   = lg.rewrite{ add = "ns:", to = p },
} }
"""


def test_rewrite_backend_sees_new_key_client_sees_own(memcached, start):
    s1, s2 = memcached(), memcached()
    lg, c = start(REWRITE, P=[s1, s2], LONG=LONG_ADD)
    assert store(c, "u:42", "user-42", flags=3) == b"STORED\r\n"
    assert present([s1, s2], ["user:42", "u:42", "ns:u:42"]) == {"user:42"}
    assert store(c, "s:abc", "stripped") == b"STORED\r\n"
    assert present([s1, s2], ["abc", "s:abc"]) == {"abc"}
    assert store(c, "plain", "p") == b"STORED\r\n"
    assert present([s1, s2], ["plain", "ns:plain"]) == {"ns:plain"}

    assert parse_values(c.call(b"get u:42\r\n", "get")) == [("u:42", 3, b"user-42", None)]
    vals = parse_values(c.call(b"gets u:42\r\n", "get"))
    assert [(k, f, d) for k, f, d, _ in vals] == [("u:42", 3, b"user-42")]
    assert vals[0][3] is not None

    # multi-get across both servers: VALUE lines carry the client's keys, in order
    keys = ["u:%d" % i for i in range(15)] + ["s:%d" % i for i in range(15)] + \
           ["k%d" % i for i in range(15)]
    for k in keys:
        assert store(c, k, "v-" + k) == b"STORED\r\n"
    backend = ["user:%d" % i for i in range(15)] + ["%d" % i for i in range(15)] + \
              ["ns:k%d" % i for i in range(15)]
    on1, on2 = s1.present(backend), s2.present(backend)
    assert on1 | on2 == set(backend) and on1 and on2, "keys must span both servers"
    asked = keys[::2] + ["u:absent"] + keys[1::2]
    want = [(k, b"v-" + k.encode()) for k in asked if k != "u:absent"]
    assert mget(c, asked) == want
    assert mget(c, asked, cmd="gets") == want


def test_rewrite_key_too_long(memcached, start):
    s1 = memcached()
    lg, c = start(REWRITE, P=[s1], LONG=LONG_ADD)
    ok_key = "long:" + "k" * 5            # 240 + 10 = 250 bytes after rewrite
    long_key = "long:" + "k" * 6          # 251 bytes
    assert store(c, ok_key, "fits") == b"STORED\r\n"
    assert s1.get(LONG_ADD + ok_key) == b"fits"
    assert store(c, long_key, "x") == b"CLIENT_ERROR key too long after rewrite\r\n"
    # the data block was consumed: the connection is still in step
    assert get1(c, ok_key) == b"fits"
    assert c.call(("get %s\r\n" % long_key).encode(), "get") == \
        b"CLIENT_ERROR key too long after rewrite\r\n"
    assert c.call(("delete %s\r\n" % long_key).encode()) == \
        b"CLIENT_ERROR key too long after rewrite\r\n"
    assert store(c, "u:1", "after") == b"STORED\r\n"


# --------------------------------------------------------------------------
# prefix, by_op
# --------------------------------------------------------------------------

def test_prefix_longest_match(memcached, start):
    a, ab, abc, d = memcached(), memcached(), memcached(), memcached()
    policy = """
local lg = require "luagent"
local a   = lg.pool{ name = "a",   servers = @A@ }
local ab  = lg.pool{ name = "ab",  servers = @AB@ }
local abc = lg.pool{ name = "abc", servers = @ABC@ }
local d   = lg.pool{ name = "d",   servers = @D@ }
return lg.policy{ route = lg.prefix{
    ["a:b:c:"] = abc, ["a:"] = a, ["a:b:"] = ab, default = d,
} }
"""
    lg, c = start(policy, A=a, AB=ab, ABC=abc, D=d)
    expect = {
        "a:1": a, "a:b": a, "a:bc:1": a, "a:b:1": ab, "a:b:c": ab, "a:b:cd:1": ab,
        "a:b:c:1": abc, "a:b:c:d:e": abc, "x:1": d, "a": d, "b:a:1": d,
    }
    for k in expect:
        assert store(c, k, "v") == b"STORED\r\n"
    for k, pool in expect.items():
        where = [m for m in (a, ab, abc, d) if m.get(k) is not None]
        assert where == [pool], "%s stored in the wrong pool" % k


def test_by_op_class_and_exact_command(memcached, start):
    names = ["R", "G", "W", "ADD", "DL", "AR", "DF"]
    mc = {n: memcached() for n in names}
    allm = list(mc.values())
    policy = """
local lg = require "luagent"
local function p(n, s) return lg.pool{ name = n, servers = s } end
return lg.policy{ route = lg.by_op{
    read = p("r", @R@), gets = p("g", @G@),
    write = p("w", @W@), add = p("add", @ADD@),
    delete = p("dl", @DL@), arith = p("ar", @AR@),
    default = p("df", @DF@),       -- touch has no entry: default
} }
"""
    lg, c = start(policy, **mc)

    def only(key, who):
        return [n for n in names if mc[n].get(key) is not None] == who

    assert store(c, "bo:set", "v") == b"STORED\r\n"
    assert only("bo:set", ["W"])
    assert c.call(set_cmd("bo:add", "v", cmd="add")) == b"STORED\r\n"
    assert only("bo:add", ["ADD"])
    assert c.call(set_cmd("bo:set", "vv", cmd="append")) == b"STORED\r\n"
    assert mc["W"].get("bo:set") == b"vvv"

    for n in names:
        put_direct([mc[n]], "bo:read", "from-" + n)
    assert get1(c, "bo:read") == b"from-R"
    assert get1(c, "bo:read", cmd="gets") == b"from-G"

    put_direct(allm, "bo:del", "x")
    assert c.call(b"delete bo:del\r\n") == b"DELETED\r\n"
    assert [n for n in names if mc[n].get("bo:del") is None] == ["DL"]

    put_direct(allm, "bo:num", "5")
    assert c.call(b"incr bo:num 3\r\n") == b"8\r\n"
    assert c.call(b"decr bo:num 1\r\n") == b"7\r\n"
    assert [n for n in names if mc[n].get("bo:num") != b"5"] == ["AR"]

    put_direct(allm, "bo:touch", "x")
    before = {n: int(mc_stats(mc[n])["touch_hits"]) for n in names}
    assert c.call(b"touch bo:touch 100\r\n") == b"TOUCHED\r\n"
    touched = [n for n in names if int(mc_stats(mc[n])["touch_hits"]) > before[n]]
    assert touched == ["DF"]


# --------------------------------------------------------------------------
# all_fastest, all_async, error
# --------------------------------------------------------------------------

FANOUTS = """
local lg = require "luagent"
local function p(n, s) return lg.pool{ name = n, servers = s, timeout_ms = 300,
                                       connect_timeout_ms = 200 } end
local a, b = p("a", @A@), p("b", @B@)
local d1, d2 = p("d1", @D1@), p("d2", @D2@)
return lg.policy{ route = lg.prefix{
    ["f:"]   = lg.all_fastest{ a, b },
    ["fd:"]  = lg.all_fastest{ d1, a },
    ["fdd:"] = lg.all_fastest{ d1, d2 },
    ["y:"]   = lg.all_async{ a, b },
    ["yd:"]  = lg.all_async{ d1, a },
    ["ydd:"] = lg.all_async{ d1 },
    default  = a,
} }
"""


def test_all_fastest(memcached, start):
    a, b = memcached(), memcached()
    lg, c = start(FANOUTS, A=a, B=b, D1=[dead_addr()], D2=[dead_addr()])
    assert store(c, "f:1", "both") == b"STORED\r\n"
    poll(lambda: a.get("f:1") == b"both" and b.get("f:1") == b"both", "f:1 on a and b")
    assert get1(c, "f:1") == b"both"
    # a dead child: the first non-error reply wins
    put_direct([a], "fd:1", "live")
    assert get1(c, "fd:1") == b"live"
    assert store(c, "fd:2", "x") == b"STORED\r\n"
    assert a.get("fd:2") == b"x"
    # every child dead: an error
    assert is_server_error(store(c, "fdd:1", "x"))
    line = c.call(b"get fdd:1\r\n", "get")
    assert is_server_error(line), line
    assert store(c, "plain", "ok") == b"STORED\r\n"


def test_all_async(memcached, start):
    a, b = memcached(), memcached()
    lg, c = start(FANOUTS, A=a, B=b, D1=[dead_addr()], D2=[dead_addr()])
    keys = ["y:%d" % i for i in range(10)]
    for k in keys:
        assert store(c, k, "v-" + k) == b"STORED\r\n"
    poll(lambda: a.present(keys) == set(keys) and b.present(keys) == set(keys),
         "all_async values reach every child")
    assert b.get("y:3") == b"v-y:3"
    assert c.call(b"delete y:3\r\n") == b"DELETED\r\n"
    poll(lambda: a.get("y:3") is None and b.get("y:3") is None, "delete reaches every child")
    # a dead child does not change the answer; the live one gets the value
    assert store(c, "yd:1", "live") == b"STORED\r\n"
    poll(lambda: a.get("yd:1") == b"live", "yd:1 reaches the live child")
    assert store(c, "ydd:1", "x") == b"STORED\r\n"
    assert c.call(b"delete ydd:1\r\n") == b"DELETED\r\n"
    assert store(c, "plain", "ok") == b"STORED\r\n"


def test_error_route(memcached, start):
    a = memcached()
    policy = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = @A@ }
return lg.policy{ route = lg.prefix{
    ["bad:"] = lg.error{ msg = "maintenance in progress" },
    default  = a,
} }
"""
    lg, c = start(policy, A=a)
    want = b"SERVER_ERROR maintenance in progress\r\n"
    assert c.call(b"get bad:1\r\n", "get") == want
    assert store(c, "bad:1", "payload") == want
    assert c.call(b"delete bad:1\r\n") == want
    assert c.call(b"incr bad:1 1\r\n") == want
    assert store(c, "good:1", "ok") == b"STORED\r\n"     # still in step
    assert get1(c, "good:1") == b"ok"
    assert a.present(["bad:1"]) == set()


# --------------------------------------------------------------------------
# Loading: self-tests, --check, --route, lg.args
# --------------------------------------------------------------------------

def test_selftest_mismatch_rejects_load(tmp_path):
    path = fixture_policy(tmp_path, "selftest_mismatch.lua", A=[dead_addr()], B=[dead_addr()])
    want = 'test 2 "set x:1": expected {a}, got {a,b}'
    rc, out, err = run_luagent("-D", "-l", HOST, "-p", free_port(), "-c", path)
    assert rc == 1, "a failing self-test must stop the start (rc %r)\n%s%s" % (rc, out, err)
    assert want in err, err
    assert "selftest_mismatch.lua" in err
    rc, out, err = run_luagent("--check", path)
    assert rc == 1 and want in err, (rc, out, err)


def test_selftest_pass_loads(memcached, start):
    a, b = memcached(), memcached()
    text = (FIXTURES / "selftest_mismatch.lua").read_text().replace(
        '{ "set x:1", { "a" } }', '{ "set x:1", { "b", "a" } }')
    lg, c = start(text, A=a, B=b)
    assert store(c, "x:1", "v") == b"STORED\r\n"
    assert a.get("x:1") == b"v" and b.get("x:1") == b"v"


def _example_check_cases():
    return [
        ("ketama.lua", {}, (), ["main"]),
        ("regions.lua", {}, (), ["main", "sessions", "cfg_east", "cfg_west"]),
        ("regions.lua", {"LUAGENT_REGION": "west"}, (),
         ["main", "sessions", "cfg_east", "cfg_west"]),
        ("namespace.lua", {}, (), ["main", "scratch"]),
        # tenant mode reaches only main (--check lists the pools the tree uses)
        ("namespace.lua", {"LUAGENT_TENANTS": "1"}, (), ["main"]),
        ("failover.lua", {}, (), ["primary", "backup"]),
        ("failover.lua", {"LUAGENT_MISS_FAILOVER": "1"}, (), ["primary", "backup"]),
        ("migrate.lua", {}, (), ["old", "new"]),
        ("clients.lua", {}, (), ["main", "batch", "ops"]),
        ("replicas.lua", {}, (), ["replica_a", "replica_b", "replica_c"]),
        ("gutter.lua", {}, (), ["main", "gutter"]),
        ("nearcache.lua", {}, (), ["main"]),
        ("coalesce.lua", {}, (), ["main"]),
        ("limits.lua", {}, (), ["main", "gutter", "cfg_a", "cfg_b"]),
        ("default.lua", {}, ("-s", "127.0.0.1:21211", "-s", "127.0.0.1:21212"), ["main"]),
        ("default.lua", {}, ("-k", "-s", "127.0.0.1:21211", "-b", "127.0.0.1:21213"),
         ["main", "backup"]),
    ]


def test_check_cases_cover_every_example():
    covered = {name for name, _e, _a, _p in _example_check_cases()}
    assert covered == {p.name for p in EXAMPLES.glob("*.lua")}


def _case_id(case):
    name, env, args, _pools = case
    return "-".join([name] + ["%s=%s" % kv for kv in env.items()] +
                    (["backup"] if "-b" in args else []))


@pytest.mark.parametrize("name,env,args,pools", _example_check_cases(),
                         ids=[_case_id(c) for c in _example_check_cases()])
def test_check_examples(name, env, args, pools):
    """--check loads the shipped file (it opens no connection), prints its
    pools and routes and exits 0."""
    env = dict(env)
    for var in ("LUAGENT_TENANTS", "LUAGENT_MISS_FAILOVER", "LUAGENT_REGION"):
        env.setdefault(var, None)
    rc, out, err = run_luagent(*args, "--check", EXAMPLES / name, env=env)
    assert rc == 0, "--check %s failed (rc %r):\n%s%s" % (name, rc, out, err)
    for pool in pools:
        assert re.search(r"^pool %s: 127\.0\.0\.1:\d+" % re.escape(pool), out, re.M), \
            "pool %s not listed:\n%s" % (pool, out)
    assert len(re.findall(r"^pool ", out, re.M)) == len(pools), out
    assert re.search(r"^route 0: .*\(root\)$", out, re.M), out
    assert "ok: " in out


BROKEN = [
    ("broken_syntax.lua", True, "near '='"),
    ("broken_unknown_field.lua", True,
     "lg.pool: unknown field 'timout_ms' (did you mean 'timeout_ms'?)"),
    ("broken_runtime.lua", True, "attempt to index"),
    ("broken_loop.lua", True, "instruction limit exceeded"),
    ("broken_memory.lua", True, "memory limit exceeded"),
    ("broken_noreturn.lua", False, "must return lg.policy"),
]


@pytest.mark.parametrize("name,with_line,phrase", BROKEN, ids=[b[0] for b in BROKEN])
def test_check_rejects_broken_file(name, with_line, phrase):
    """exit 1 and a message naming file:line (the line marked ERROR LINE in
    the fixture) and the problem."""
    path = FIXTURES / name
    rc, out, err = run_luagent("--check", name, cwd=str(FIXTURES))
    assert rc == 1, "--check %s: rc %r\n%s%s" % (name, rc, out, err)
    assert phrase in err, err
    if with_line:
        line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                    if "ERROR LINE" in text)
        assert "%s:%d:" % (name, line) in err, \
            "the message must name %s:%d: %r" % (name, line, err)
    else:
        assert name in err, err
    assert "ok:" not in out


def test_route_prints_path_and_server():
    env = {"LUAGENT_REGION": None, "LUAGENT_TENANTS": None}
    rc, out, err = run_luagent("--route", EXAMPLES / "regions.lua", "get cfg:flags", env=env)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "get cfg:flags"
    assert [l.strip() for l in lines[1:4]] == ["prefix", "by_op", "failover"], out
    assert re.search(r'pool cfg_east -> server 127\.0\.0\.1:21214 \(key "cfg:flags"\)', out), out
    assert lines[-1] == "answered by: {cfg_east}", out

    rc, out, err = run_luagent("--route", EXAMPLES / "regions.lua", "set cfg:flags", env=env)
    assert rc == 0 and out.splitlines()[-1] == "answered by: {cfg_east,cfg_west}", out + err
    assert "all_sync" in out

    rc, out, err = run_luagent("--route", EXAMPLES / "regions.lua", "get cfg:flags",
                               env={"LUAGENT_REGION": "west"})
    assert rc == 0 and out.splitlines()[-1] == "answered by: {cfg_west}", out + err

    rc, out, err = run_luagent("--route", EXAMPLES / "regions.lua", "get session:7", env=env)
    assert rc == 0 and out.splitlines()[-1] == "answered by: {sessions}", out + err
    assert "server 127.0.0.1:21213" in out

    rc, out, err = run_luagent("--route", EXAMPLES / "namespace.lua", "get u:42", env=env)
    assert rc == 0 and 'key "user:42"' in out and out.endswith("answered by: {main}\n"), out

    rc, out, err = run_luagent("--route", EXAMPLES / "namespace.lua", "get acme/123",
                               env={"LUAGENT_TENANTS": "1"})
    assert rc == 0 and 'key "t1:123"' in out and "hook" in out, out + err
    assert out.endswith("answered by: {main}\n"), out

    rc, out, err = run_luagent("--route", EXAMPLES / "migrate.lua", "get hot:1", env=env)
    assert rc == 0 and "warmup" in out and out.endswith("answered by: {new}\n"), out + err

    rc, out, err = run_luagent("--route", EXAMPLES / "regions.lua", "stats", env=env)
    assert rc != 0 and err, (rc, out, err)


def test_route_lists_a_node_reached_twice_once(tmp_path):
    """A node the request reached through two parents is listed in full once,
    then referred to, so each server call is listed once."""
    path = tmp_path / "twice.lua"
    path.write_text('local lg = require "luagent"\n'
                    'local a = lg.pool{ name = "a", servers = { "127.0.0.1:21211" } }\n'
                    'local b = lg.pool{ name = "b", servers = { "127.0.0.1:21212" } }\n'
                    'local c = lg.pool{ name = "c", servers = { "127.0.0.1:21213" } }\n'
                    'local fo = lg.failover{ a, b }\n'
                    'return lg.policy{ route = lg.prefix{ ["two:"] = lg.all_sync{ a, fo },\n'
                    '  default = lg.all_sync{ lg.rewrite{ add = "x:", to = fo }, fo, c } } }\n')
    rc, out, err = run_luagent("--route", path, "set two:k")
    assert rc == 0, err
    assert out.splitlines() == [
        "set two:k",
        "  prefix",
        "    all_sync",
        '      pool a -> server 127.0.0.1:21211 (key "two:k")',
        '      pool a -> server 127.0.0.1:21211 (key "two:k")',
        "      failover",
        "        pool a (shown above)",
        "answered by: {a}"], out

    rc, out, err = run_luagent("--route", path, "set k", "--down", "a")
    assert rc == 0, err
    assert out.splitlines() == [
        "set k",
        "  prefix",
        "    all_sync",
        "      rewrite",
        "        failover",
        '          pool a -> server 127.0.0.1:21211 (key "x:k") [down: backend unavailable]',
        '          pool a -> server 127.0.0.1:21211 (key "k") [down: backend unavailable]',
        "      failover (shown above)",
        '      pool c -> server 127.0.0.1:21213 (key "k")',
        "client gets: SERVER_ERROR backend unavailable",
        "answered by: {c}"], out


@pytest.mark.parametrize("ketama", [False, True], ids=["modula", "ketama"])
def test_args_reach_the_script(memcached, luagent, raw_client, tmp_path, ketama):
    """-c with -s/-b/-k: the script builds its pools from lg.args."""
    s1, s2, bk = memcached(), memcached(), memcached()
    path = FIXTURES / "args_policy.lua"
    lg = luagent(*(["-k"] if ketama else []), "-c", str(path), servers=[s1, s2], backups=[bk])
    c = raw_client(lg)
    line = c.call(b"get args:x\r\n", "get")
    m = re.match(rb"SERVER_ERROR servers=(\S*) backups=(\S*) ketama=(\w+)\r\n$", line)
    assert m, line
    servers, backups = m.group(1).decode().split(","), m.group(2).decode().split(",")
    assert len(servers) == 2 and servers[0].startswith(s1.addr) \
        and servers[1].startswith(s2.addr), servers
    assert len(backups) == 1 and backups[0].startswith(bk.addr), backups
    assert m.group(3) == (b"true" if ketama else b"false")

    keys = ["ar:%d" % i for i in range(40)]
    for k in keys:
        assert store(c, k, "v") == b"STORED\r\n"
    on1, on2 = s1.present(keys), s2.present(keys)
    assert on1 | on2 == set(keys) and on1 and on2 and not on1 & on2
    assert bk.present(keys) == set()
    assert store(c, "b:1", "backup") == b"STORED\r\n"
    assert bk.get("b:1") == b"backup" and s1.get("b:1") is None and s2.get("b:1") is None

    rc, out, err = run_luagent("-s", s1.addr, "-s", s2.addr, "-b", bk.addr,
                               "--check", path)
    assert rc == 0, err
    assert re.search(r"^pool main: %s %s " % (re.escape(s1.addr), re.escape(s2.addr)),
                     out, re.M), out
    assert re.search(r"^pool backup: %s " % re.escape(bk.addr), out, re.M), out
