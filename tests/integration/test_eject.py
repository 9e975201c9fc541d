"""Pools with eject = true: a server marked down gives its keys to the next
live server on the ring; without eject its keys fail (the ring stays put)."""

from test_policy import dead_addr, get1, holder, is_server_error, start, store  # noqa: F401

EJECT = """
local lg = require "luagent"
local p = lg.pool{ name = "p", servers = @S@, eject = @EJECT@,
                   failure_limit = 1, retry_after_ms = 60000,
                   timeout_ms = 500, connect_timeout_ms = 300 }
return lg.policy{ route = p }
"""


def test_eject_moves_keys_of_a_down_server(memcached, start):
    live = [memcached(), memcached()]
    servers = [live[0], live[1], dead_addr()]
    lg, c = start(EJECT, S=servers, EJECT="true")
    failed = []
    for i in range(300):
        line = store(c, "ej:%d" % i, "v%d" % i)
        if line != b"STORED\r\n":
            failed.append((i, line))
    # The first request to the dead server marks it down (failure_limit 1);
    # from then on its keys go to a live server.
    assert len(failed) <= 1, failed
    for i in range(300):
        if any(f[0] == i for f in failed):
            continue
        assert get1(c, "ej:%d" % i) == b"v%d" % i
        assert holder(live, "ej:%d" % i) is not None


def test_without_eject_keys_of_a_down_server_fail(memcached, start):
    live = [memcached(), memcached()]
    servers = [live[0], live[1], dead_addr()]
    lg, c = start(EJECT, S=servers, EJECT="false")
    errors = sum(1 for i in range(300) if is_server_error(store(c, "ej:%d" % i, "v")))
    assert errors > 30, "about a third of the keys belong to the dead server"
