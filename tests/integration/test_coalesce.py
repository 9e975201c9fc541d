"""
Request coalescing (lg.coalesce): identical gets in flight from one worker
reach the server once, every waiting client gets the reply, and a write to
the key makes later gets go to the server after it.

Servers that must keep a get in flight are mock backends that hold their
replies until the test releases them (a reply is computed when the request
arrives, as a real server would, and sent later). Counts are read from the
server (the mock's log, memcached's cmd_get) and from `stats routes`; every
wait polls a condition.
"""
import signal
import threading

import pytest

import binary_client as bc
from conftest import HOST, RawClient, report_info, set_cmd
from mock_backend import Store
from test_policy import mc_stats
from test_lifetimes import assert_retired_and_serving
from test_reload import HEAD, poll, wait_generation, wait_log, write_policy

LONG_MS = 20000             # a pool timeout no test waits for
KEY = "hot:missing"


class HeldStore:
    """A mock handler over a tiny memcached (mock_backend.Store): every
    request is carried out when it arrives, but the answers to gets are held
    until release(), and so are those of anything after a held get on the
    same connection (a server answers in order); the rest at once."""

    def __init__(self):
        self.store = Store()
        self.held = []
        self.gets = 0
        self.lock = threading.Lock()

    def __call__(self, req):
        reply = b"EN\r\n" if req.cmd == b"mg" else self.store(req)
        is_get = req.cmd in (b"get", b"gets", b"mg")
        with self.lock:
            self.gets += is_get
            if not is_get and not any(r.conn == req.conn for r, _ in self.held):
                return reply
            self.held.append((req, reply))
        return None

    def count(self):
        with self.lock:
            return len(self.held)

    def release(self):
        with self.lock:
            held, self.held = self.held, []
        for req, reply in held:
            req.send(reply)


def policy(server, route="lg.coalesce{ to = p }", timeout_ms=LONG_MS, pool_opts=""):
    return (HEAD + 'local p = lg.pool{ name = "p", servers = { "%s" }, timeout_ms = %d%s }\n'
            % (server.addr, timeout_ms, pool_opts)
            + "return lg.policy{ route = %s }\n" % route)


def start(luagent, tmp_path, server, threads=1, **kw):
    path = tmp_path / "policy.lua"
    write_policy(path, policy(server, **kw))
    return luagent("-c", path, "-t", threads, "-v"), path


def route_counts(lg, label="coalesce#1"):
    """(coalesced, leaders) of a coalesce node, over all workers."""
    c = lg.client()
    try:
        s = c.stats(b"routes")
    finally:
        c.close()
    return int(s["route:%s:coalesced" % label]), int(s["route:%s:leaders" % label])


def arrived(lg, n, label="coalesce#1"):
    """Wait until n gets reached the coalesce node."""
    poll(lambda: sum(route_counts(lg, label)) >= n, "%d gets at the coalesce node" % n, lg)


def clients(lg, n):
    return [RawClient((HOST, lg.port)) for _ in range(n)]


def close_all(cs):
    for c in cs:
        c.close()


def queue_behind_leader(lg, held, cs, key=b"k"):
    """cs[0] gets key and the server holds it; then the others get it and
    wait for that reply at the coalesce node."""
    cs[0].send(b"get %s\r\n" % key)
    poll(lambda: held.count() == 1, "the first get is out", lg)
    for c in cs[1:]:
        c.send(b"get %s\r\n" % key)
    arrived(lg, len(cs))


# --------------------------------------------------------------------------
# the thundering herd
# --------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
def test_burst_of_gets_reaches_slow_server_once_per_worker(threads, luagent, mock, tmp_path):
    """1,000 clients get one missing key while the server sits on the first
    get: at most 10 gets per worker reach it (here: one), and all 1,000
    clients get the miss."""
    held = HeldStore()
    server = mock(held)
    lg, _ = start(luagent, tmp_path, server, threads=threads)
    cs = clients(lg, 1000)
    try:
        for c in cs:
            c.send(b"get %s\r\n" % KEY.encode())
        arrived(lg, 1000)
        poll(lambda: held.count() >= 1, "the server holds a get", lg)
        coalesced, leaders = route_counts(lg)
        assert leaders <= threads, "one get per worker while the first is out"
        held.release()
        for c in cs:
            assert c.read_retrieval() == b"END\r\n"
    finally:
        close_all(cs)
    assert held.gets <= 10 * threads
    assert held.gets == leaders and coalesced == 1000 - leaders
    report_info("coalesce: 1000 gets of a missing key, held server, -t %d: %d reached the "
                "server" % (threads, held.gets))


def test_burst_of_gets_of_missing_key_real_memcached(memcached, luagent, tmp_path):
    """The same burst against a real (fast) memcached: all 1,000 gets are in
    the sockets before luagent reads any of them (it is stopped meanwhile),
    so the worker takes them in a few loop passes, and each pass sends at
    most one get of the key."""
    m = memcached()
    lg, _ = start(luagent, tmp_path, m, threads=1)
    cs = clients(lg, 1000)
    try:
        poll(lambda: int(lg.stats()["curr_connections"]) >= 1001, "1000 clients accepted", lg)
        before = int(mc_stats(m)["cmd_get"])
        lg.signal(signal.SIGSTOP)
        try:
            for c in cs:
                c.send(b"get %s\r\n" % KEY.encode())
        finally:
            lg.signal(signal.SIGCONT)
        for c in cs:
            assert c.read_retrieval() == b"END\r\n"
    finally:
        close_all(cs)
    reached = int(mc_stats(m)["cmd_get"]) - before
    coalesced, leaders = route_counts(lg)
    assert coalesced + leaders == 1000 and leaders == reached
    assert reached <= 10
    report_info("coalesce: 1000 gets of a missing key, memcached, -t 1: %d reached the server"
                % reached)


# --------------------------------------------------------------------------
# writes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["lg.coalesce{ to = p }",
                                   "lg.by_op{ read = lg.coalesce{ to = p }, default = p }"])
def test_get_after_a_write_sees_the_write(route, luagent, mock, tmp_path):
    """A get in flight answers the gets that came before a set of its key,
    never one that came after: that one goes to the server after the set,
    whether the set passes the coalesce node or goes around it."""
    held = HeldStore()
    server = mock(held)
    lg, _ = start(luagent, tmp_path, server, route=route)
    a, b, w, c, d = clients(lg, 5)
    try:
        w.send(set_cmd("k", "old"))
        assert w.read_line() == b"STORED\r\n"
        a.send(b"get k\r\n")
        poll(lambda: held.count() == 1, "the first get is out", lg)
        b.send(b"get k\r\n")
        arrived(lg, 2)
        w.send(set_cmd("k", "new"))
        poll(lambda: held.count() == 2, "the set reaches the server", lg)
        c.send(b"get k\r\n")
        poll(lambda: held.count() == 3, "the get after the set goes to the server", lg)
        d.send(b"get k\r\n")
        arrived(lg, 4)
        held.release()
        assert w.read_line() == b"STORED\r\n"
        assert a.read_retrieval() == b"VALUE k 0 3\r\nold\r\nEND\r\n"
        assert b.read_retrieval() == b"VALUE k 0 3\r\nold\r\nEND\r\n"
        assert c.read_retrieval() == b"VALUE k 0 3\r\nnew\r\nEND\r\n"
        assert d.read_retrieval() == b"VALUE k 0 3\r\nnew\r\nEND\r\n"
    finally:
        close_all((a, b, w, c, d))
    assert route_counts(lg) == (2, 2)
    assert held.gets == 2


@pytest.mark.parametrize("write", [b"delete k\r\n", b"incr k 1\r\n", b"touch k 0\r\n",
                                   b"gat 0 k\r\n", b"flush_all\r\n", b"mg k v\r\n"])
def test_every_change_closes_the_window(write, luagent, mock, tmp_path):
    """Not only set: anything that may change the key (and gat, and meta
    reads, which are not coalesced) sends the next get to the server."""
    held = HeldStore()
    server = mock(held)
    lg, _ = start(luagent, tmp_path, server)
    a, w, c = clients(lg, 3)
    try:
        a.send(b"get k\r\n")
        poll(lambda: held.count() == 1, "the first get is out", lg)
        w.send(write)
        poll(lambda: held.count() == 2, "the %r reaches the server" % write, lg)
        c.send(b"get k\r\n")
        poll(lambda: held.count() == 3 and route_counts(lg)[1] == 2,
             "the get after %r leads" % write, lg)
        held.release()
        assert a.read_retrieval() == b"END\r\n"
        assert c.read_retrieval() == b"END\r\n"
    finally:
        close_all((a, w, c))
    assert route_counts(lg)[0] == 0


def test_pipelined_write_between_gets_in_a_burst(memcached, luagent, tmp_path):
    """One client pipelines get, set, get of a key while 300 others get it, all
    taken in one burst: the client sees the old value, then its own write."""
    m = memcached()
    lg, _ = start(luagent, tmp_path, m, threads=1)
    direct = m.client()
    assert direct.call(set_cmd("k", "old")) == b"STORED\r\n"
    direct.close()
    cs = clients(lg, 300)
    mine = RawClient((HOST, lg.port))
    try:
        poll(lambda: int(lg.stats()["curr_connections"]) >= 302, "clients accepted", lg)
        lg.signal(signal.SIGSTOP)
        try:
            for i, c in enumerate(cs):
                c.send(b"get k\r\n")
                if i == 150:
                    mine.send(b"get k\r\n" + set_cmd("k", "new") + b"get k\r\n")
        finally:
            lg.signal(signal.SIGCONT)
        assert mine.read_retrieval() == b"VALUE k 0 3\r\nold\r\nEND\r\n"
        assert mine.read_line() == b"STORED\r\n"
        assert mine.read_retrieval() == b"VALUE k 0 3\r\nnew\r\nEND\r\n"
        for c in cs:
            assert c.read_retrieval() in (b"VALUE k 0 3\r\nold\r\nEND\r\n",
                                          b"VALUE k 0 3\r\nnew\r\nEND\r\n")
    finally:
        close_all(cs + [mine])


# --------------------------------------------------------------------------
# waiters and leaders that go, fail, or outlive their generation
# --------------------------------------------------------------------------

@pytest.mark.parametrize("gone", ["waiter", "leader"])
def test_client_that_disconnects_while_waiting(gone, luagent, mock, tmp_path):
    """A waiting client (or the one whose get went out) disconnects: the
    others still get the reply, and luagent serves on."""
    held = HeldStore()
    server = mock(held)
    lg, _ = start(luagent, tmp_path, server)
    held.store.data[b"k"] = (7, b"value")
    leader, w1, w2, w3 = clients(lg, 4)
    try:
        queue_behind_leader(lg, held, [leader, w1, w2, w3])
        staying = [leader, w1, w3]
        staying.remove(leader if gone == "leader" else w1)
        (leader if gone == "leader" else w1).close()
        w2.close()
        poll(lambda: int(lg.stats()["curr_connections"]) <= 3, "the clients are gone", lg)
        held.release()
        for c in staying:
            assert c.read_retrieval() == b"VALUE k 7 5\r\nvalue\r\nEND\r\n"
        assert staying[0].call(set_cmd("after", "ok")) == b"STORED\r\n"
    finally:
        close_all((leader, w1, w2, w3))
    assert route_counts(lg) == (3, 1)


def test_leader_timeout_fails_every_waiter(luagent, mock, tmp_path):
    """The server never answers: the first get times out, and so does every
    get that waited for it (they are not retried); the next get leads anew.
    The waiters must arrive before the timeout; an attempt where they did not
    proves nothing and is run again with a longer one."""
    for timeout_ms in (1000, 4000, 16000):
        held = HeldStore()
        server = mock(held)
        lg, _ = start(luagent, tmp_path, server, timeout_ms=timeout_ms)
        cs = clients(lg, 5)
        try:
            queue_behind_leader(lg, held, cs)
            in_time = route_counts(lg) == (4, 1)
            for c in cs:
                assert c.read_line() == b"SERVER_ERROR backend timeout\r\n"
            if not in_time:
                continue
            assert held.gets == 1
            cs[0].send(b"get k\r\n")
            poll(lambda: held.gets == 2, "the next get goes to the server", lg)
            assert route_counts(lg) == (4, 2)
            return
        finally:
            close_all(cs)
            lg.stop()
    pytest.fail("the waiting gets never arrived before the first one's timeout")


def test_reload_while_gets_wait(luagent, mock, tmp_path):
    """Gets wait on a leader of generation 1 when generation 2 arrives: a get
    routed by generation 2 is not joined to them; all are answered, and
    generation 1 retires once its last get is."""
    held = HeldStore()
    server = mock(held)
    held.store.data[b"k"] = (0, b"v")
    lg, path = start(luagent, tmp_path, server)
    a, b, c = clients(lg, 3)
    try:
        queue_behind_leader(lg, held, [a, b])
        write_policy(path, policy(server, timeout_ms=LONG_MS + 1))
        lg.signal(signal.SIGHUP)
        wait_generation(lg, 2, 1)
        c.send(b"get k\r\n")
        poll(lambda: held.count() == 2, "generation 2's get goes to the server", lg)
        held.release()
        for cl in (a, b, c):
            assert cl.read_retrieval() == b"VALUE k 0 1\r\nv\r\nEND\r\n"
        wait_log(lg, "generation 1 retired", 1)
    finally:
        close_all((a, b, c))


def test_orphaned_waiters_outlive_their_generation(luagent, mock, memcached, tmp_path):
    """The leader and its waiters belong to generation 1, whose only server
    generation 2 no longer names; their clients have all gone. The held
    reply, coming after the reload, answers nobody, frees generation 1's last
    requests from inside the old connection's callback, and the generation
    and that connection are retired safely."""
    held = HeldStore()
    server = mock(held)
    lg, path = start(luagent, tmp_path, server)
    cs = clients(lg, 4)
    try:
        queue_behind_leader(lg, held, cs)
    finally:
        close_all(cs)
    poll(lambda: int(lg.stats()["curr_connections"]) == 1, "the clients are gone", lg)
    m = memcached()
    write_policy(path, policy(m))
    lg.signal(signal.SIGHUP)
    wait_generation(lg, 2, 1)
    held.release()
    assert_retired_and_serving(lg, server, m)


def test_meta_and_binary_gets_are_not_coalesced(luagent, mock, tmp_path):
    """mg carries per-request flags (opaque, key echo), and a binary get
    travels as an mg: each one goes to the server on its own. A binary
    delete (an md) closes the window of its key like a text one."""
    held = HeldStore()
    server = mock(held)
    lg, _ = start(luagent, tmp_path, server)
    a, b = bc.BinaryClient((HOST, lg.port)), bc.BinaryClient((HOST, lg.port))
    t1, t2 = clients(lg, 2)
    try:
        a.send(bc.request(bc.GET, b"k"))
        b.send(bc.request(bc.GET, b"k"))
        t1.send(b"mg k v O1\r\n")
        t2.send(b"mg k v O2\r\n")
        poll(lambda: held.count() == 4, "every meta and binary get reaches the server", lg)
        t1.send(b"get j\r\n")
        poll(lambda: held.count() == 5, "a text get of j is out", lg)
        a.send(bc.request(bc.DELETE, b"j"))
        poll(lambda: held.count() == 6, "the binary delete of j reaches the server", lg)
        t2.send(b"get j\r\n")
        poll(lambda: held.count() == 7, "the text get of j after it goes too", lg)
        held.release()
        for t in (t1, t2):
            assert t.read_line() == b"EN\r\n"
            assert t.read_retrieval() == b"END\r\n"
    finally:
        close_all((a, b, t1, t2))
    assert route_counts(lg) == (0, 2)


def test_pool_option_coalesce(luagent, mock, tmp_path):
    """lg.pool{ coalesce = true } is lg.coalesce{ to = <pool> }: a key asked
    three times in one get, and by two clients, reaches the server once."""
    held = HeldStore()
    server = mock(held)
    held.store.data[b"k"] = (0, b"v")
    lg, _ = start(luagent, tmp_path, server, route="lg.prefix{ ['x:'] = p, default = p }",
                  pool_opts=", coalesce = true")
    a, b = clients(lg, 2)
    try:
        a.send(b"get k k k\r\n")
        poll(lambda: held.count() == 1, "the get is out", lg)
        b.send(b"get k\r\n")
        arrived(lg, 4)
        held.release()
        assert a.read_retrieval() == b"VALUE k 0 1\r\nv\r\n" * 3 + b"END\r\n"
        assert b.read_retrieval() == b"VALUE k 0 1\r\nv\r\nEND\r\n"
    finally:
        close_all((a, b))
    assert held.gets == 1
    assert server.received_lines() == [b"get k"]
