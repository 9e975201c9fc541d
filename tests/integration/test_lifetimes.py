"""
Object lifetimes: what happens when the last user of a generation, a backend
connection, a call or a client goes away while code still runs on its behalf.

- A reply (or a timeout) that arrives for a request of a generation a reload
  replaced, after its client has had its answer or has gone, releases the last
  request of that generation from inside the backend's own callback. The
  generation and the connections only it named are retired at the end of the
  loop pass, never under that callback (shadow copies, all_initial/all_async
  background children, warm-up copies, orphaned requests, timeouts).
- Every call fails at its own deadline, even queued behind a call with a longer
  one on the same connection.
- A reply unit can only belong to a call already sent: one that arrives for a
  get still being gathered is the server's error, not that get's answer.
- A client closed while its read (or parse) is on the stack is freed at the end
  of the pass.
- flush_all through a policy with no server at all.

Every wait polls a condition with a deadline; the 5 s client socket timeout is
the hang detector. A luagent that dies, or that a sanitizer reports on, fails
the test through the luagent fixture.
"""
import os
import resource
import signal
import threading

import pytest

import mock_backend
from conftest import SANITIZED, ReplyTimeout, set_cmd
from test_reload import (HEAD, one_pool_policy, poll, pool_lua, wait_generation, wait_log,
                         write_policy)

LONG_MS = 20000             # a pool timeout no test waits for
TIMEOUT_LINE = b"SERVER_ERROR backend timeout\r\n"


class Holder:
    """A mock handler that answers nothing until told: held() lists the
    requests it keeps; release(reply) answers them all. answer(req) may give
    an immediate reply (bytes) for requests that are not to be held."""

    def __init__(self, answer=None):
        self.answer = answer
        self.held = []
        self.lock = threading.Lock()

    def __call__(self, req):
        reply = self.answer(req) if self.answer is not None else None
        if reply is not None:
            return reply
        with self.lock:
            self.held.append(req)
        return None

    def count(self):
        with self.lock:
            return len(self.held)

    def release(self, reply):
        with self.lock:
            held, self.held = self.held, []
        for req in held:
            req.send(reply)

    def release_at_once(self, reply):
        """release(), in one write per connection: luagent reads every reply
        in one pass, not spread over as many passes as the writes happen to
        be read in."""
        with self.lock:
            held, self.held = self.held, []
        by_conn = {}
        for req in held:
            by_conn.setdefault(req.conn, []).append(req)
        for reqs in by_conn.values():
            reqs[0].send(reply * len(reqs))


def miss_gets(req):
    """Answer gets at once with a miss; hold everything else."""
    return b"END\r\n" if req.cmd in (b"get", b"gets") else None


# name -> (route built from pools m and late, request, reply the client gets
#          first, hold-handler answer, what releases the held request,
#          client closes before the reload)
LATE_CASES = {
    "shadow": ("lg.shadow{ main = m, shadow = late }",
               set_cmd("lt:1", "v"), b"STORED\r\n", None, b"STORED\r\n", False),
    "all_initial": ("lg.all_initial{ m, late }",
                    set_cmd("lt:1", "v"), b"STORED\r\n", None, b"STORED\r\n", False),
    "all_async": ("lg.all_async{ late, m }",
                  set_cmd("lt:1", "v"), b"STORED\r\n", None, b"STORED\r\n", False),
    "warmup": ("lg.warmup{ cold = late, warm = m, exptime = 60 }",
               b"get lt:1\r\n", b"VALUE lt:1 0 4\r\nwarm\r\nEND\r\n", miss_gets,
               b"STORED\r\n", False),
    "orphan": ("late", b"get lt:1\r\n", None, None, b"END\r\n", True),
}


def late_policy(main, late, route, late_timeout_ms):
    return (HEAD
            + "local m = %s\n" % pool_lua("main", [main])
            + "local late = %s\n" % pool_lua("late", [late], timeout_ms=late_timeout_ms)
            + "return lg.policy{ route = %s }\n" % route)


def start_late(luagent, memcached, mock, tmp_path, case, late_timeout_ms, answer):
    """luagent on generation 1 (route `case` over a real memcached and a
    holding mock), then one request through it whose late part is held."""
    route, request, first, _, _, orphan = case
    main = memcached()
    holder = Holder(answer)
    late = mock(holder)
    mc = main.client()
    assert mc.call(set_cmd("lt:1", "warm")) == b"STORED\r\n"
    mc.close()
    path = tmp_path / "policy.lua"
    write_policy(path, late_policy(main, late, route, late_timeout_ms))
    lg = luagent("-c", path, "-t", "1", "-v")
    wait_generation(lg, 1, 1)
    c = lg.client()
    c.send(request)
    if first is not None:
        got = c.read_retrieval() if request.startswith(b"get") else c.read_line()
        assert got == first, "generation 1 answered %r" % got
    poll(lambda: holder.count() == 1, "the late server holds the request", lg)
    if orphan:
        c.close()
    return lg, main, late, holder, path, c


def reload_without_late(lg, main, path, gen=2):
    """Generation gen names only the main server: the late one is kept until
    generation 1 has drained."""
    write_policy(path, one_pool_policy("main", [main]))
    lg.signal(signal.SIGHUP)
    wait_generation(lg, gen, 1)


def assert_retired_and_serving(lg, late, main):
    wait_log(lg, "closing connections to %s (no longer in the policy)" % late.addr, 1)
    wait_log(lg, "generation 1 retired", 1)
    assert lg.alive(), "luagent died:\n%s" % lg.log()
    c = lg.client()
    try:
        assert c.call(set_cmd("after:1", "ok")) == b"STORED\r\n"
        assert c.call(b"get after:1\r\n", "get") == b"VALUE after:1 0 2\r\nok\r\nEND\r\n"
    finally:
        c.close()
    assert main.get("after:1") == b"ok"


@pytest.mark.parametrize("name", sorted(LATE_CASES))
def test_late_reply_retires_old_generation_safely(name, memcached, luagent, mock, tmp_path):
    case = LATE_CASES[name]
    lg, main, late, holder, path, c = start_late(luagent, memcached, mock, tmp_path, case,
                                                 LONG_MS, case[3])
    try:
        reload_without_late(lg, main, path)
        assert not late.conns[0].closed, "the late server's connection closed before its reply"
        holder.release(case[4])     # the reply that releases generation 1's last request
        assert_retired_and_serving(lg, late, main)
    finally:
        c.close()


def test_connection_outlives_the_generation_that_last_named_it(memcached, luagent, mock,
                                                              tmp_path):
    """Generation 1 waits on the late server; generation 2 names it too (its
    connection is kept and takes generation 2's settings), generation 3 does
    not. Generation 2 drains first and is freed: the connection, still owed a
    reply for generation 1, must not keep pointing at generation 2's server
    entry."""
    lg, main, late, holder, path, c = start_late(luagent, memcached, mock, tmp_path,
                                                 LATE_CASES["orphan"], LONG_MS, None)
    try:
        write_policy(path, late_policy(main, late, 'lg.prefix{ ["gen2:"] = late, default = m }',
                                       LONG_MS))
        lg.signal(signal.SIGHUP)
        wait_generation(lg, 2, 1)
        reload_without_late(lg, main, path, gen=3)
        wait_log(lg, "generation 2 retired", 1)
        holder.release(b"END\r\n")
        assert_retired_and_serving(lg, late, main)
    finally:
        c.close()


@pytest.mark.parametrize("name", ["shadow", "orphan"])
def test_timeout_retires_old_generation_safely(name, memcached, luagent, mock, tmp_path):
    """The late server never answers: the timeout releases the last request of
    generation 1 from inside the connection's timer. The reload must land
    before that timeout; an attempt where it did not proves nothing and is
    run again with a longer timeout."""
    case = LATE_CASES[name]
    timeout_ms = 2000
    for _attempt in range(4):
        lg, main, late, holder, path, c = start_late(luagent, memcached, mock, tmp_path,
                                                     case, timeout_ms, case[3])
        try:
            reload_without_late(lg, main, path)
            if "request timeout" not in lg.log():
                wait_log(lg, "backend %s: request timeout" % late.addr, 1)
                assert_retired_and_serving(lg, late, main)
                return
        finally:
            c.close()
        lg.stop()
        timeout_ms *= 2
    pytest.fail("the reload never finished within the late pool's timeout (last %d ms)"
                % (timeout_ms // 2))


# ---------------------------------------------------------------------------
# Each call fails at its own deadline
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("request_behind", [b"get fast:1\r\n", b"flush_all\r\n"],
                         ids=["fast_pool_get", "flush_all"])
def test_short_timeout_call_behind_long_one(request_behind, luagent, mock, raw_client,
                                            tmp_path):
    """Two pools share one server; a call with a short deadline (a 100 ms
    pool's get, or flush_all's 1 s) is queued behind a get of a 20 s pool that
    the server never answers. The short call fails at its own deadline; since
    replies come in order, that closes the connection, and the call ahead of
    it fails with it (docs/policy.md)."""
    holder = Holder()
    server = mock(holder)
    path = tmp_path / "policy.lua"
    write_policy(path, HEAD
                 + "local slow = %s\n" % pool_lua("slow", [server], timeout_ms=LONG_MS)
                 + "local fast = %s\n" % pool_lua("fast", [server], timeout_ms=100)
                 + 'return lg.policy{ route = lg.prefix{ ["slow:"] = slow, default = fast } }\n')
    lg = luagent("-c", path, "-t", "1")
    a, b = raw_client(lg), raw_client(lg)
    a.send(b"get slow:1\r\n")
    poll(lambda: holder.count() == 1, "the server holds the slow get", lg)
    b.send(request_behind)
    poll(lambda: holder.count() == 2, "the server holds the call behind it", lg)
    assert b.read_line() == TIMEOUT_LINE
    assert a.read_line() == TIMEOUT_LINE
    poll(lambda: server.conns[0].closed, "luagent closes the timed-out connection", lg)
    assert lg.stats()["server:%s:timeouts" % server.addr] == "2"


# ---------------------------------------------------------------------------
# A reply unit for a get not yet sent
# ---------------------------------------------------------------------------

def _tcp_rx_queued(local_port, remote_port):
    """Bytes waiting in the receive queue of the loopback socket local->remote."""
    want_local = "%08X:%04X" % (0x0100007F, local_port)
    want_remote = "%08X:%04X" % (0x0100007F, remote_port)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                return int(fields[4].split(":")[1], 16)
    return 0


def _threads(pid):
    """(state, wchan) of every thread of pid."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        base = "/proc/%d/task/%s/" % (pid, tid)
        with open(base + "stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(base + "wchan") as f:
            out.append((state, f.read()))
    return out


def _idle_in_epoll(pid):
    return all(state == "S" and "epoll" in wchan for state, wchan in _threads(pid))


def _stopped(pid):
    return all(state == "T" for state, _ in _threads(pid))


def _get_after_stray_end(lg, server, c):
    """Freeze luagent, let the client's get and then an END nobody asked for
    reach its sockets, thaw it; return the client's reply. Frozen while idle
    in epoll_wait, it then finds both sockets ready in arrival order."""
    assert c.call(set_cmd("sk:1", "here")) == b"STORED\r\n"   # (re)opens the connection
    to_server = server.conns[-1]
    lg_port_to_server = to_server.sock.getpeername()[1]
    client_port = c.sock.getsockname()[1]
    poll(lambda: _idle_in_epoll(lg.pid), "luagent idle in epoll_wait", lg)
    lg.signal(signal.SIGSTOP)
    try:
        poll(lambda: _stopped(lg.pid), "luagent stopped by SIGSTOP")
        c.send(b"get sk:1\r\n")
        poll(lambda: _tcp_rx_queued(lg.port, client_port) > 0, "the get waits in luagent's socket")
        to_server.send(b"END\r\n")
        poll(lambda: _tcp_rx_queued(lg_port_to_server, server.port) > 0,
             "the stray END waits in luagent's socket")
    finally:
        lg.signal(signal.SIGCONT)
    return c.read_retrieval()


def test_reply_for_unsent_get_is_a_protocol_error(luagent, mock, raw_client):
    """A broken server sends an END nobody asked for while luagent is
    gathering a get for it (the get is parsed, not yet written): the END must
    not be taken as that get's answer (a false miss, and the connection's
    open batch left pointing at freed calls). It fails what is queued, as any
    reply out of step does. When luagent happens to read the END before the
    get, it drops the idle connection and the get goes out on a new one: that
    attempt proves nothing and is made again."""
    server = mock(mock_backend.Store())
    lg = luagent("-t", "1", servers=[server.addr])
    c = raw_client(lg)
    for _attempt in range(5):
        reply = _get_after_stray_end(lg, server, c)
        assert reply != b"END\r\n", "a stray END answered a get not yet sent"
        if reply == b"SERVER_ERROR backend protocol error\r\n":
            break
        assert reply == b"VALUE sk:1 0 4\r\nhere\r\nEND\r\n", reply
    else:
        pytest.fail("luagent never read the get before the stray END")
    # the connection was dropped: the next get goes out afresh and is right
    assert c.call(b"get sk:1\r\n", "get") == b"VALUE sk:1 0 4\r\nhere\r\nEND\r\n"
    assert c.call(b"get sk:2\r\n", "get") == b"END\r\n"


# ---------------------------------------------------------------------------
# A client closed from inside its own parse
# ---------------------------------------------------------------------------

def _vm_size_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize for pid %d" % pid)


HUGE_SET = b"set big:1 0 0 134217728\r\n" + b"y" * 60000
PAUSING_GETS = 1024         # requests in flight that stop a client's reads


@pytest.mark.parametrize("when", ["read", "resumed"])
def test_client_closed_when_its_buffer_cannot_grow(when, memcached, luagent, mock, raw_client,
                                                   tmp_path, monkeypatch):
    """A 128 MiB set (settings.item_max allows it) while the address space
    left to luagent (prlimit RLIMIT_AS) is far smaller: the read buffer cannot
    grow inside the parse, and the client is closed there. Its struct must
    outlive the caller still using it: the read callback ("read"), or the
    write that resumed a paused parse once the replies drained ("resumed":
    the set follows 1024 gets a server holds). Other clients go on."""
    if SANITIZED:
        # ASan dies on a failed allocation unless told to return NULL.
        opts = os.environ.get("ASAN_OPTIONS", "")
        monkeypatch.setenv("ASAN_OPTIONS", (opts + ":" if opts else "")
                           + "allocator_may_return_null=1")
    s = memcached()
    holder = Holder()
    held = mock(holder)
    path = tmp_path / "policy.lua"
    write_policy(path, HEAD
                 + "local p = %s\n" % pool_lua("p", [s])
                 + "local held = %s\n" % pool_lua("held", [held], timeout_ms=LONG_MS)
                 + 'return lg.policy{ route = lg.prefix{ ["held:"] = held, default = p },\n'
                 + "  settings = { item_max = 134217728 } }\n")
    lg = luagent("-c", path, "-t", "1")
    other, big = raw_client(lg), raw_client(lg)
    assert other.call(set_cmd("ok:1", "x" * 100000)) == b"STORED\r\n"
    assert other.call(b"get ok:1\r\n", "get").startswith(b"VALUE ok:1 0 100000\r\n")
    replies_first = b""
    if when == "resumed":
        big.send(b"".join(b"get held:%d\r\n" % i for i in range(PAUSING_GETS)) + HUGE_SET)
        held.wait_for(lambda m: sum(len(r.keys) for r in m.requests) == PAUSING_GETS)
        # Reading resumes once half the gets are answered; the set's failed
        # buffer then closes the client, and replies not yet written go with
        # it: at least half of them come first, at most all.
        replies_first = b"END\r\n" * (PAUSING_GETS // 2)
    _soft, hard = resource.prlimit(lg.pid, resource.RLIMIT_AS)
    # 96 MiB to spare: far from the 128 MiB the set's buffer needs, but room
    # for the allocator to map a new heap (64 MiB of address space) while the
    # replies before it are written.
    resource.prlimit(lg.pid, resource.RLIMIT_AS, (_vm_size_bytes(lg.pid) + (96 << 20), hard))
    try:
        if when == "resumed":
            holder.answer = lambda req: b"END\r\n"
            # All at once: with the replies read over several passes, the
            # parse resumes (at half the pausing count) and closes the client
            # before the last gets are answered, and their ENDs never come.
            holder.release_at_once(b"END\r\n")
        else:
            big.send(HUGE_SET)
        try:
            got = big.read_until_close()
        except ReplyTimeout as e:
            pytest.fail("the client that could not be served was not closed: %r" % e)
        assert got.startswith(replies_first), got[:100]
        rest = got[len(replies_first):]
        while rest.startswith(b"END\r\n"):
            rest = rest[5:]
        assert rest == b"" or rest.startswith(b"SERVER_ERROR "), rest
        assert other.call(b"get ok:1\r\n", "get").startswith(b"VALUE ok:1 0 100000\r\n")
        assert other.call(set_cmd("ok:2", "y")) == b"STORED\r\n"
    finally:
        resource.prlimit(lg.pid, resource.RLIMIT_AS, (hard, hard))
    assert lg.alive()


# ---------------------------------------------------------------------------
# flush_all with no server
# ---------------------------------------------------------------------------

def test_flush_all_through_a_policy_without_servers(luagent, raw_client, tmp_path):
    path = tmp_path / "policy.lua"
    write_policy(path, HEAD + 'return lg.policy{ route = lg.error{ msg = "nothing here" } }\n')
    lg = luagent("-c", path, "-t", "1")
    c = raw_client(lg)
    assert c.call(b"flush_all\r\n") == b"OK\r\n"
    assert c.call(b"get k\r\n", "get") == b"SERVER_ERROR nothing here\r\n"
    assert c.call(b"flush_all\r\n") == b"OK\r\n"
