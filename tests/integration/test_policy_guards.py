"""Guards against policies that would hurt the proxy or the servers: route
loops, keys a server would misread, and the command-line overrides."""

import subprocess

import pytest

from conftest import LUAGENT
from test_policy import poll, run_luagent, start, write_policy  # noqa: F401

LOOPY = """
local lg = require "luagent"
local p = lg.pool{ name = "p", servers = @S@ }
local h
h = lg.hook{ routes = { p }, fn = function(req)
    if req.key == "loop" then return h end
    if req.key == "inject" then return p, "zz\\r\\nset injected 0 0 1\\r\\nX" end
    if req.key == "space" then return p, "a b" end
    if req.key == "empty" then return p, "" end
    return p
end }
return lg.policy{ route = h }
"""


def test_hook_route_loop_is_answered_not_spun(memcached, start):
    m = memcached()
    lg, c = start(LOOPY, S=[m])
    assert c.call(b"get loop\r\n") == b"SERVER_ERROR luagent: route loop\r\n"
    # the worker is still serving
    assert c.call(b"set ok 0 0 1\r\n1\r\n") == b"STORED\r\n"
    assert "leads back to it" in lg.log()


def test_hook_keys_that_servers_would_misread_are_refused(memcached, start):
    m = memcached()
    lg, c = start(LOOPY, S=[m])
    for key in (b"inject", b"space", b"empty"):
        assert c.call(b"get " + key + b"\r\n") == \
            b"SERVER_ERROR luagent: bad key after rewrite\r\n", key
    assert m.get("injected") is None, "a key must never carry a second command"
    assert c.call(b"get fine\r\n") == b"END\r\n"


ARGS = """
local lg = require "luagent"
local p = lg.pool{ name = "p", servers = @S@ }
assert(lg.args.extra[1] == "alpha" and lg.args.extra[2] == "beta" and #lg.args.extra == 2,
       "extra args: " .. table.concat(lg.args.extra, ","))
return lg.policy{ route = p, tests = { { "gat 10 some:key", "p" } } }
"""


def test_args_after_double_dash_reach_the_policy(memcached, tmp_path):
    m = memcached()
    path = write_policy(tmp_path, "args.lua", ARGS, S=[m])
    rc, out, err = run_luagent("--check", path)
    assert rc == 1 and "extra args" in err, (rc, out, err)
    plain = write_policy(tmp_path, "plain.lua", ARGS.replace("assert(", "local _ = (")
                         .replace(',\n       "extra args: " .. table.concat(lg.args.extra, ","))', ")"),
                         S=[m])
    rc, out, err = run_luagent("--route", plain, "gat 10 some:key")
    assert rc == 0 and "answered by: {p}" in out, (out, err)


def test_args_after_double_dash_serve(memcached, luagent, raw_client, tmp_path):
    m = memcached()
    path = write_policy(tmp_path, "args.lua", ARGS, S=[m])
    lg = luagent("-c", str(path), "--", "alpha", "beta")
    c = raw_client(lg)
    assert c.call(b"set x 0 0 1\r\n1\r\n") == b"STORED\r\n"


@pytest.mark.parametrize("idle,extra", [("0", 0), ("3", 1)])
def test_max_idle_decides_whether_idle_connections_stay(memcached, luagent, raw_client,
                                                         idle, extra):
    m = memcached()
    mc = m.client()             # one connection of our own, for stats
    try:
        base = int(mc.stats()["curr_connections"])
        lg = luagent("-i", idle, servers=[m])
        c = raw_client(lg)
        assert c.call(b"set x 0 0 1\r\n1\r\n") == b"STORED\r\n"
        assert c.call(b"get x\r\n", kind="get") == b"VALUE x 0 1\r\n1\r\nEND\r\n"
        # -i 0: luagent closed its connection once nothing was outstanding.
        poll(lambda: int(mc.stats()["curr_connections"]) == base + extra,
             "server connections == %d" % (base + extra))
    finally:
        mc.close()


STRIP_ONLY = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = @S@ }
return lg.policy{
    route = lg.prefix{ ["u:"] = lg.rewrite{ strip = "u:", to = main }, default = main },
    tests = { { "get u:x", "main" }, { "get other", "main" } },
}
"""


def test_strip_only_rewrite_in_self_tests(memcached, tmp_path):
    # Found by fuzzing: the self-test walk copied a missing `add` prefix.
    # Under `make test SAN=1` the old code aborted here.
    m = memcached()
    path = write_policy(tmp_path, "strip.lua", STRIP_ONLY, S=[m])
    rc, out, err = run_luagent("--check", path)
    assert rc == 0, (out, err)
    rc, out, err = run_luagent("--route", path, "get u:x")
    assert rc == 0 and 'key "x"' in out, (out, err)


def test_bytecode_policy_is_refused(tmp_path):
    # Precompiled bytecode is not verified by LuaJIT: only source is loaded.
    path = tmp_path / "bytecode.lua"
    path.write_bytes(b"\x1bLJ\x02\x00garbage")
    rc, out, err = run_luagent("--check", path)
    assert rc == 1 and "wrong mode" in err, (out, err)


def test_check_of_a_load_that_never_returns_is_bounded(tmp_path):
    """A backtracking pattern spends its time in one C call, where the
    instruction cap cannot stop it: the trial load's deadline does."""
    path = tmp_path / "slow.lua"
    path.write_text('local lg = require "luagent"\n'
                    'string.find(string.rep("a", 40), string.rep("a*", 20) .. "b")\n'
                    'return lg.policy{ route = lg.pool{ name = "m", servers = { "127.0.0.1:1" } } }\n')
    # the subprocess timeout is the hang detector
    r = subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r
    assert r.stderr.startswith("luagent: %s: loading took longer than 5 s" % path), r.stderr
