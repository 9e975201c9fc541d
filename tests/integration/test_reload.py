"""
Policy hot reload on SIGHUP (DESIGN.md section 6.2): the main thread loads the
-c file again in fresh VMs, compiles it, runs its self-tests and dry-runs its
hooks; only a policy that passes all of that is handed to the workers, which
swap between requests. Requests in flight finish on the generation they
started on; backend connections to servers both generations name are kept;
servers no longer named are closed once the old generation drains. A failed
reload logs `reload failed (keeping generation N): <file>:<line>: <why>` and
changes nothing.

Policies are generated into tmp_path with the ports of real memcached servers
(and of a scripted slow backend for the in-flight test). "All workers
swapped" is observed from the client side: `stats` answers with the
generation of the worker that serves the connection, and the listener hands
connections to workers round robin, so THREADS connections opened one after
the other reach every worker once.

No assertion is on elapsed time: every wait is a poll with a generous
deadline that only exists to turn a hang into a failure with the log attached.
"""
import os
import re
import signal
import threading
import time

import pytest

from conftest import HOST, parse_values, report_info, set_cmd

DEADLINE = 15.0     # hang detector for every poll below


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def addr(server):
    return "%s:%d" % (HOST, server.port)


def pool_lua(name, servers, **opts):
    extra = "".join(", %s = %s" % (k, v) for k, v in sorted(opts.items()))
    return 'lg.pool{ name = "%s", servers = { %s }%s }' % (
        name, ", ".join('"%s"' % addr(s) for s in servers), extra)


def one_pool_policy(name, servers, **opts):
    """All keys -> one pool."""
    return ('local lg = require "luagent"\n'
            'local p = %s\n'
            'return lg.policy{ route = p, tests = { { "get any:key", "%s" } } }\n'
            % (pool_lua(name, servers, **opts), name))


def write_policy(path, text):
    """Replace the policy file atomically (a reload never reads half a file)."""
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, str(path))


def poll(fn, what, lg=None, deadline=DEADLINE, interval=0.005):
    """Call fn until it returns a true value; fail (with the log) after deadline."""
    end = time.monotonic() + deadline
    last = None
    while True:
        last = fn()
        if last:
            return last
        if lg is not None and not lg.alive():
            pytest.fail("%s: luagent exited with status %s\n--- log ---\n%s"
                        % (what, lg.proc.returncode, lg.log()))
        if time.monotonic() > end:
            pytest.fail("%s: still not true after %.0fs (last: %r)" % (what, deadline, last))
        time.sleep(interval)


def worker_stats(lg, threads):
    """stats from every worker: THREADS connections opened one after the other."""
    clients = []
    try:
        for _ in range(threads):
            clients.append(lg.client())
        return [c.stats() for c in clients]
    finally:
        for c in clients:
            c.close()


def wait_generation(lg, gen, threads):
    """Poll until every worker answers stats with config_generation == gen."""
    def check():
        gens = [int(s["config_generation"]) for s in worker_stats(lg, threads)]
        return all(g == gen for g in gens) or None
    poll(check, "all %d worker(s) on generation %d" % (threads, gen), lg)


def reload_to(lg, path, text, gen, threads):
    write_policy(path, text)
    lg.signal(signal.SIGHUP)
    wait_generation(lg, gen, threads)


def wait_log(lg, needle, count):
    """Poll lg's log until needle occurs at least count times; return the log."""
    def check():
        log = lg.log()
        return log if log.count(needle) >= count else None
    return poll(check, "log line %r x%d" % (needle, count), lg, interval=0.01)


def set_via(lg, key, value):
    c = lg.client()
    try:
        reply = c.call(set_cmd(key, value))
    finally:
        c.close()
    assert reply == b"STORED\r\n", "set %s through luagent answered %r" % (key, reply)


def where(key, servers):
    """Indexes of the memcached servers that hold key (asked directly)."""
    return [i for i, s in enumerate(servers) if s.get(key) is not None]


# ---------------------------------------------------------------------------
# 1. Reload 20 times under load
# ---------------------------------------------------------------------------

class Load:
    """NCONN client connections, one thread each, doing set k v / get k of its
    own keys in a loop. A set must answer STORED. A get must return exactly
    the value just set when no reload happened between the set and the get
    (the epoch was even and unchanged); across a reload the get may be
    answered by the other pool, so a miss or an older value this thread
    wrote is accepted there (and counted as `crossed`); anything else, a
    timeout or a closed connection is a failure."""

    KEYS_PER_CONN = 8

    def __init__(self, lg, nconn):
        self.lg = lg
        self.epoch = 0          # odd while a reload is on its way
        self.stop = threading.Event()
        self.ops = [0] * nconn          # set+get pairs done, per connection
        self.strict = [0] * nconn       # pairs checked exactly
        self.crossed = [0] * nconn
        self.failures = []
        self.closed = []
        self.lock = threading.Lock()
        self.clients = [lg.client() for _ in range(nconn)]
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(nconn)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        for c in self.clients:
            c.close()
        assert not any(t.is_alive() for t in self.threads), "a load thread is stuck"

    def fail(self, tid, what):
        with self.lock:
            self.failures.append("conn %d: %s" % (tid, what))

    def run(self, tid):
        c = self.clients[tid]
        n = 0
        while not self.stop.is_set():
            key = b"ld:%d:%d" % (tid, n % self.KEYS_PER_CONN)
            value = b"%s=%d" % (key, n)
            e0 = self.epoch
            try:
                r1 = c.call(set_cmd(key, value))
                r2 = c.call(b"get " + key + b"\r\n", "get")
            except (EOFError, ConnectionError) as e:
                with self.lock:
                    self.closed.append("conn %d: %s: %s" % (tid, type(e).__name__, e))
                return
            except Exception as e:      # ReplyTimeout and anything unexpected
                self.fail(tid, "%s: %s" % (type(e).__name__, e))
                return
            e1 = self.epoch
            if r1 != b"STORED\r\n":
                self.fail(tid, "set %r answered %r" % (key, r1))
            expected = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)
            if r2 != expected:
                if e0 == e1 and e0 % 2 == 0:
                    self.fail(tid, "get %r (no reload since the set) answered %r, "
                                   "expected %r" % (key, r2, expected))
                elif not self.acceptable_across_reload(key, n, r2):
                    self.fail(tid, "get %r across a reload answered %r" % (key, r2))
                else:
                    self.crossed[tid] += 1
            elif e0 == e1 and e0 % 2 == 0:
                self.strict[tid] += 1
            n += 1
            self.ops[tid] = n

    @staticmethod
    def acceptable_across_reload(key, n, reply):
        if reply == b"END\r\n":
            return True
        try:
            vals = parse_values(reply)
        except (AssertionError, ValueError):
            return False
        if len(vals) != 1 or vals[0][0] != key.decode() or vals[0][1] != 0:
            return False
        m = re.fullmatch(re.escape(key) + rb"=(\d+)", vals[0][2])
        return m is not None and int(m.group(1)) < n

    def wait_progress(self, since, at_least=2):
        """Every connection completed at least `at_least` strict pairs since."""
        poll(lambda: all(s - b >= at_least for s, b in zip(self.strict, since))
             or (self.failures or self.closed), "every load connection makes progress", self.lg)


@pytest.mark.parametrize("threads", [1, 2], ids=["t1", "t2"])
def test_reload_20_times_under_load(memcached, luagent, tmp_path, threads):
    s1, s2, s3 = memcached(), memcached(), memcached()
    servers = [s1, s2, s3]
    path = tmp_path / "policy.lua"
    policy_a = one_pool_policy("a", [s1, s2])
    policy_b = one_pool_policy("b", [s3])
    write_policy(path, policy_a)
    lg = luagent("-c", path, "-t", threads, "-v")
    wait_generation(lg, 1, threads)

    load = Load(lg, 16)
    load.start()
    try:
        load.wait_progress([0] * 16)
        for i in range(1, 21):
            use_b = i % 2 == 1
            gen = i + 1
            load.epoch += 1                     # odd: a reload is on its way
            reload_to(lg, path, policy_b if use_b else policy_a, gen, threads)
            load.epoch += 1                     # even: every worker is on gen
            # a fresh write goes to the pool the current policy names
            key = "fresh:%d" % i
            set_via(lg, key, "v%d" % i)
            held = where(key, servers)
            want = [2] if use_b else [0, 1]
            assert len(held) == 1 and held[0] in want, (
                "after reload %d (policy %s) %s is on server(s) %r, expected one of %r"
                % (i, "B" if use_b else "A", key, held, want))
            if load.failures or load.closed:
                break
            load.wait_progress(list(load.strict))
    finally:
        load.finish()

    st = worker_stats(lg, threads)
    assert not load.closed, "client connections closed by luagent: %r" % load.closed[:5]
    assert not load.failures, "%d failed request(s), e.g. %r" % (
        len(load.failures), load.failures[:5])
    for s in st:
        assert s["reloads"] == "20", s
        assert s["reload_failures"] == "0", s
        assert s["config_generation"] == "21", s
        assert s["server_errors"] == "0" and s["client_errors"] == "0", s
    # every old generation drained and was freed (-v logs "generation N retired")
    log = wait_log(lg, "generation 20 retired", 1)
    for g in range(1, 21):
        assert log.count("generation %d retired" % g) == 1, "generation %d not retired" % g
    assert log.count("reload: generation ") == 20, log
    assert "reload failed" not in log, log
    assert lg.alive()
    report_info("reload under load (-t %d): %d set+get pairs on 16 connections, "
                "%d checked exactly, %d crossed a reload (miss or older value, accepted)"
                % (threads, sum(load.ops), sum(load.strict), sum(load.crossed)))


# ---------------------------------------------------------------------------
# 2. Broken reloads are kept out
# ---------------------------------------------------------------------------

HEAD = 'local lg = require "luagent"\n'                                 # line 1


def broken_policies(s1, s2):
    """(name, text, line or None, what the reason must contain). Each would
    route to s2 if it were taken; the running policy routes to s1."""
    p2 = pool_lua("b", [s2])
    return [
        ("syntax error",
         HEAD + "local x = = 1\n", 2, "unexpected symbol"),
        ("runtime error",
         HEAD + "local p = %s\n" % p2 + 'error("x")\n', 3, ": x"),
        ("unknown field",
         HEAD + 'local p = lg.pool{ name = "b", servers = { "%s" }, timeout = 5 }\n' % addr(s2)
         + "return lg.policy{ route = p }\n", 2, "timeout"),
        ("failing self-test",
         HEAD + "local p = %s\n" % p2
         + 'return lg.policy{ route = p, tests = { { "get x", "nope" } } }\n', None, "nope"),
        ("runaway loop",
         HEAD + "local p = %s\n" % p2 + "while true do end\n"
         + "return lg.policy{ route = p }\n", 3, "instruction limit"),
        ("memory hog",
         HEAD + "local p = %s\n" % p2 + "local t = {}\n"
         + 'for i = 1, 1e9 do t[i] = string.rep("x", 1000) .. i end\n'
         + "return lg.policy{ route = p }\n", 4, "memory limit"),
        ("hook that always raises",
         HEAD + "local p = %s\n" % p2
         + "local h = lg.hook{ fn = function(req)\n"
         + '    error("hook boom")\n'                                      # line 4
         + "end, routes = { p } }\n"
         + "return lg.policy{ route = h }\n", 4, "hook boom"),
        ("script returning nothing",
         HEAD + "local p = %s\n" % p2, None, "lg.policy"),
        # one C call the instruction cap cannot interrupt: bounded by the
        # trial load's wall-clock deadline instead
        ("pattern that backtracks for hours",
         HEAD + "local p = %s\n" % p2
         + 'string.find(string.rep("a", 40), string.rep("a*", 20) .. "b")\n'
         + "return lg.policy{ route = p }\n", None, "took longer than"),
    ]


def names_file(msg, path, line):
    """msg starts with the policy file (and line). Messages raised inside Lua
    carry Lua's short_src, which keeps only the last ~56 characters of a long
    path behind "..." (LUA_IDSIZE); the ones luagent writes itself carry the
    full path. Both name the file."""
    path = str(path)
    tail = ":%d: " % line if line else ": "
    if msg.startswith(path + tail):
        return True
    if line is None and re.match(re.escape(path) + r":\d+: ", msg):
        return True         # no line expected, but one more precise is fine
    m = re.match(r"\.\.\.(\S+?)" + re.escape(tail), msg)
    return bool(m and line and path.endswith(m.group(1))
                and len(m.group(1)) >= len(os.path.basename(path)))


def test_broken_reloads_are_kept_out(memcached, luagent, tmp_path):
    s1, s2 = memcached(), memcached()
    path = tmp_path / "policy.lua"
    good = one_pool_policy("a", [s1])
    write_policy(path, good)
    lg = luagent("-c", path, "-t", 2)
    wait_generation(lg, 1, 2)
    checksum = lg.stats()["policy_checksum"]
    needle = "reload failed (keeping generation 1): "

    cases = broken_policies(s1, s2)
    for k, (name, text, line, why) in enumerate(cases, 1):
        write_policy(path, text)
        lg.signal(signal.SIGHUP)
        log = wait_log(lg, needle, k)
        msg = log.split(needle)[k].split("\n", 1)[0]
        assert names_file(msg, path, line), (
            "%s: reason %r does not start with %s:%s:" % (name, msg, path, line or ""))
        assert why in msg, "%s: reason %r does not mention %r" % (name, msg, why)
        st = lg.stats()
        assert st["reload_failures"] == str(k), (name, st)
        assert st["reloads"] == "0" and st["config_generation"] == "1", (name, st)
        assert st["policy_checksum"] == checksum, (name, st)
        # traffic still follows the running policy: all keys to s1
        key = "after:%d" % k
        set_via(lg, key, name)
        assert where(key, [s1, s2]) == [0], "%s: %s not on the old pool's server" % (name, key)
        report_info("reload refused (%s): %s" % (name, msg))

    assert lg.log().count("reload failed") == len(cases)
    assert lg.log().count("reload: generation") == 0
    # the machinery still works: a good policy is taken
    reload_to(lg, path, one_pool_policy("b", [s2]), 2, 2)
    set_via(lg, "after:good", "x")
    assert where("after:good", [s1, s2]) == [1]
    st = lg.stats()
    assert st["reloads"] == "1" and st["reload_failures"] == str(len(cases)), st
    assert lg.alive()


# ---------------------------------------------------------------------------
# 3. A multi-get in flight finishes on its generation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2], ids=["t1", "t2"])
def test_reload_while_multiget_waits_on_slow_server(memcached, luagent, mock, tmp_path,
                                                    threads):
    s1, s2 = memcached(), memcached()
    release = threading.Event()

    def slow(req):
        if req.cmd in (b"get", b"gets"):
            release.wait(DEADLINE)      # answer once the test has reloaded
            return b"".join(b"VALUE %s 7 %d\r\nslow-%s\r\n" % (k, len(k) + 5, k)
                            for k in req.keys) + b"END\r\n"
        return b"ERROR\r\n"

    slow_be = mock(slow)
    path = tmp_path / "policy.lua"
    policy_a = (HEAD
                + "local slow = %s\n" % pool_lua("slow", [slow_be], timeout_ms=5000)
                + "local fast = %s\n" % pool_lua("fast", [s1], timeout_ms=5000)
                + 'return lg.policy{ route = lg.prefix{ ["slow:"] = slow, default = fast },\n'
                + '  tests = { { "get slow:1", "slow" }, { "get fast:1", "fast" } } }\n')
    write_policy(path, policy_a)
    lg = luagent("-c", path, "-t", threads, "-v")
    wait_generation(lg, 1, threads)
    for k, v in ((b"fast:1", b"one"), (b"fast:2", b"two!")):
        c = s1.client()
        assert c.call(set_cmd(k, v, flags=3)) == b"STORED\r\n"
        c.close()

    c = lg.client(timeout=DEADLINE + 5)
    try:
        c.send(b"get fast:1 slow:1 fast:2 slow:2 none:3\r\n")
        slow_be.wait_for(lambda m: any(r.cmd == b"get" for r in m.requests), DEADLINE)
        # the slow server holds the multi-get; reload to B (everything -> s2)
        reload_to(lg, path, one_pool_policy("b", [s2]), 2, threads)
        release.set()
        reply = c.read_retrieval()
        assert reply == (b"VALUE fast:1 3 3\r\none\r\n"
                         b"VALUE slow:1 7 11\r\nslow-slow:1\r\n"
                         b"VALUE fast:2 3 4\r\ntwo!\r\n"
                         b"VALUE slow:2 7 11\r\nslow-slow:2\r\n"
                         b"END\r\n"), "multi-get in flight across the reload: %r" % reply
        # the next request on the same connection follows B
        assert c.call(b"get fast:1\r\n", "get") == b"END\r\n"
        assert c.call(set_cmd("next:1", "b")) == b"STORED\r\n"
        assert where("next:1", [s1, s2]) == [1]
    finally:
        release.set()
        c.close()
    # the slow server is not in B: its connection goes once generation 1 drains
    poll(lambda: slow_be.conns and all(cs.closed for cs in slow_be.conns),
         "luagent closes its connections to the server B no longer names", lg)
    wait_log(lg, "generation 1 retired", 1)
    assert lg.stats()["server_errors"] == "0"


# ---------------------------------------------------------------------------
# 4. Backend connections survive a reload that keeps their server
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2], ids=["t1", "t2"])
def test_backend_connections_kept_then_closed(memcached, luagent, tmp_path, threads):
    s1, s2 = memcached(), memcached()
    probe = s1.client()        # one connection for all of s1's stats: constant
    try:
        _run_connection_survival(luagent, tmp_path, threads, s1, s2, probe)
    finally:
        probe.close()


def _run_connection_survival(luagent, tmp_path, threads, s1, s2, probe):
    def s1_conns():
        st = probe.stats()
        return int(st["curr_connections"]), int(st["total_connections"])

    def traffic(tag, keys):
        """Sequential requests from one client per worker."""
        clients = [lg.client() for _ in range(threads)]
        try:
            for w, c in enumerate(clients):
                for k in keys:
                    key = "%s:%s:%d" % (k, tag, w)
                    assert c.call(set_cmd(key, "x")) == b"STORED\r\n"
                    assert c.call(b"get %s\r\n" % key.encode(), "get").startswith(b"VALUE ")
        finally:
            for c in clients:
                c.close()

    curr0, total0 = s1_conns()
    path = tmp_path / "policy.lua"
    write_policy(path, one_pool_policy("a", [s1]))
    lg = luagent("-c", path, "-t", threads, "-vv")
    wait_generation(lg, 1, threads)
    traffic("g1", ["k1", "k2", "k3"])
    curr1, total1 = s1_conns()
    assert curr1 > curr0, "luagent holds no connection to s1 after traffic"
    connected = "backend %s: connected" % addr(s1)
    n_connect = lg.log().count(connected)

    # generation 2 names s1 and s2: s1's connections are reused
    both = (HEAD + "local a = %s\n" % pool_lua("a", [s1])
            + "local b = %s\n" % pool_lua("b", [s2])
            + 'return lg.policy{ route = lg.prefix{ ["b:"] = b, default = a },\n'
            + '  tests = { { "get b:1", "b" }, { "get k", "a" } } }\n')
    reload_to(lg, path, both, 2, threads)
    traffic("g2", ["k1", "k2", "k3", "b:1"])
    curr2, total2 = s1_conns()
    assert (curr2, total2) == (curr1, total1), (
        "s1's connections changed across a reload that keeps s1: curr %d -> %d, "
        "total %d -> %d" % (curr1, curr2, total1, total2))
    assert lg.log().count(connected) == n_connect
    assert "closing connections to %s" % addr(s1) not in lg.log()

    # generation 3 does not name s1: luagent closes its connections to s1
    reload_to(lg, path, one_pool_policy("b", [s2]), 3, threads)
    traffic("g3", ["k1", "b:2"])
    poll(lambda: s1_conns()[0] == curr0 or None,
         "s1's curr_connections back to %d (before luagent)" % curr0, lg)
    assert s1_conns()[1] == total1, "luagent reconnected to s1"
    wait_log(lg, "closing connections to %s (no longer in the policy)" % addr(s1), threads)
    assert lg.log().count(connected) == n_connect
    report_info("connections survive (-t %d): s1 held %d luagent connection(s), reused "
                "across the reload, closed after it was dropped" % (threads, curr1 - curr0))


# ---------------------------------------------------------------------------
# 5. SIGHUP without -c
# ---------------------------------------------------------------------------

def test_sighup_without_policy_file(memcached, luagent, raw_client):
    s1 = memcached()
    lg = luagent(servers=[s1])
    c = raw_client(lg)
    assert c.call(set_cmd("nc:1", "one")) == b"STORED\r\n"
    needle = "no policy file to reload"
    for k in (1, 2):
        lg.signal(signal.SIGHUP)
        wait_log(lg, needle, k)
        assert c.call(b"get nc:1\r\n", "get") == b"VALUE nc:1 0 3\r\none\r\nEND\r\n"
        st = c.stats()
        assert st["config_generation"] == "1" and st["reloads"] == "0", st
        assert st["reload_failures"] == "0", st
    assert s1.get("nc:1") == b"one"
    assert lg.log().count(needle) == 2
    assert lg.alive()
