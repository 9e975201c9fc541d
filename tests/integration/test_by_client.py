"""
Routing by the client's way in: named listeners (--listen NAME=ADDR:PORT, and
the default names tcp / tls / unix of -p / --tls-port / -f), lg.by_client,
req.listener and req.cn in hooks, and the client certificate's CN on a
mutual-TLS port (docs/policy.md "lg.by_client", docs/operating.md "Listeners").

Each pool is a real memcached; where a request went is read back from the
servers directly.
"""
import subprocess

import pytest

from conftest import HOST, LUAGENT, RawClient, free_port, set_cmd
from test_tls import Pki, TlsClient, client_context, listener_args, tls_connect


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.leaf("alice", "ca", "alice", None)
    return p


def policy_file(tmp_path, servers, body):
    pools = "\n".join('local %s = lg.pool{ name = "%s", servers = { "%s" } }'
                      % (name, name, m.addr) for name, m in servers.items())
    path = tmp_path / "by_client.lua"
    path.write_text('local lg = require "luagent"\n%s\nreturn lg.policy{ route = %s }\n'
                    % (pools, body))
    return path


def where(servers, key):
    """Names of the servers holding key."""
    return sorted(name for name, m in servers.items() if m.get(key) is not None)


def store(client, key):
    assert client.call(set_cmd(key, b"v")) == b"STORED\r\n"


def test_named_listeners_and_unix_choose_the_route(memcached, luagent, tmp_path):
    servers = {"main": memcached(), "admin": memcached(), "near": memcached()}
    path = policy_file(tmp_path, servers,
                       'lg.by_client{ admin = admin, unix = near, default = main }')
    admin_port = free_port()
    sock = str(tmp_path / "lg.sock")
    lg = luagent("-c", path, "--listen", "admin=%s:%d" % (HOST, admin_port), unix=sock)
    store(RawClient((HOST, lg.port)), "via:tcp")
    store(RawClient((HOST, admin_port)), "via:admin")
    store(RawClient(sock), "via:unix")
    assert where(servers, "via:tcp") == ["main"]
    assert where(servers, "via:admin") == ["admin"]
    assert where(servers, "via:unix") == ["near"]
    routes = RawClient((HOST, lg.port)).stats(b"routes")
    assert routes["route:by_client#1:requests"] == "3"


def test_hook_sees_listener_and_cn(memcached, luagent, tmp_path, pki):
    servers = {"main": memcached(), "tagged": memcached()}
    # The hook writes what it saw into the key, so the server shows it.
    path = policy_file(tmp_path, servers,
                       'lg.hook{ routes = { main }, fn = function(req) '
                       'return main, req.key .. ":" .. tostring(req.listener) .. ":" '
                       '.. tostring(req.cn) end }')
    tls_port, named = free_port(), free_port()
    lg = luagent("-c", path, "--listen", "batch=%s:%d" % (HOST, named),
                 *listener_args(pki, tls_port, "--tls-ca", pki.path("ca")))
    store(RawClient((HOST, lg.port)), "k")
    store(RawClient((HOST, named)), "k")
    store(TlsClient(tls_connect(tls_port, client_context(pki, cert="alice"))), "k")
    store(TlsClient(tls_connect(tls_port, client_context(pki))), "k")
    for key in ("k:tcp:nil", "k:batch:nil", "k:tls:alice", "k:tls:nil"):
        assert where(servers, key) == ["main"], key


def test_cached_hook_decision_by_listener_stays_per_listener(memcached, luagent, tmp_path):
    # One worker, so both listeners' clients share one decision cache.
    servers = {"pa": memcached(), "pb": memcached()}
    path = policy_file(tmp_path, servers,
                       'lg.hook{ routes = { pa, pb }, cache = "prefix", fn = function(req) '
                       'if req.listener == "b" then return pb end return pa end }')
    port_a, port_b = free_port(), free_port()
    lg = luagent("-c", path, "-t", "1", "--listen", "a=%s:%d" % (HOST, port_a),
                 "--listen", "b=%s:%d" % (HOST, port_b))
    store(RawClient((HOST, port_a)), "same:1")
    store(RawClient((HOST, port_a)), "same:2")      # a cache hit on listener a
    assert where(servers, "same:1") == ["pa"]
    servers["pa"].client().call(b"flush_all\r\n")
    store(RawClient((HOST, port_b)), "same:1")
    assert where(servers, "same:1") == ["pb"]
    stats = RawClient((HOST, lg.port)).stats()
    assert stats["hook_calls"] == "2" and stats["hook_cache_hits"] == "1"


def test_hook_decision_by_cn_is_not_reused_for_another_cn(memcached, luagent, tmp_path, pki):
    servers = {"main": memcached(), "alice": memcached()}
    path = policy_file(tmp_path, servers,
                       'lg.hook{ routes = { main, alice }, cache = "prefix", fn = function(req) '
                       'if req.cn == "alice" then return alice end return main end }')
    tls_port = free_port()
    luagent("-c", path, "-t", "1",
            *listener_args(pki, tls_port, "--tls-ca", pki.path("ca")))
    store(TlsClient(tls_connect(tls_port, client_context(pki, cert="alice"))), "same:1")
    assert where(servers, "same:1") == ["alice"]
    servers["alice"].client().call(b"flush_all\r\n")
    store(TlsClient(tls_connect(tls_port, client_context(pki, cert="client"))), "same:1")
    assert where(servers, "same:1") == ["main"]


def test_client_certificate_cn_chooses_the_route(memcached, luagent, tmp_path, pki):
    servers = {"main": memcached(), "alice": memcached(), "tlsonly": memcached()}
    path = policy_file(tmp_path, servers,
                       'lg.by_client{ ["cn:alice"] = alice, tls = tlsonly, default = main }')
    tls_port = free_port()
    lg = luagent("-c", path, *listener_args(pki, tls_port, "--tls-ca", pki.path("ca")))
    store(TlsClient(tls_connect(tls_port, client_context(pki, cert="alice"))), "cn:alice")
    store(TlsClient(tls_connect(tls_port, client_context(pki, cert="client"))), "cn:other")
    store(TlsClient(tls_connect(tls_port, client_context(pki))), "cn:none")
    store(RawClient((HOST, lg.port)), "cn:plain")
    assert where(servers, "cn:alice") == ["alice"]
    assert where(servers, "cn:other") == ["tlsonly"]       # a CN without an entry
    assert where(servers, "cn:none") == ["tlsonly"]        # no certificate at all
    assert where(servers, "cn:plain") == ["main"]


def run(*args):
    return subprocess.run([str(LUAGENT)] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=30)


def test_self_tests_and_route_state_the_client(tmp_path):
    path = tmp_path / "p.lua"
    path.write_text('local lg = require "luagent"\n'
                    'local a = lg.pool{ name = "a", servers = { "127.0.0.1:1" } }\n'
                    'local b = lg.pool{ name = "b", servers = { "127.0.0.1:2" } }\n'
                    'local c = lg.pool{ name = "c", servers = { "127.0.0.1:3" } }\n'
                    'return lg.policy{ route = lg.by_client{ admin = b, ["cn:ops"] = c, '
                    'default = a },\n'
                    '  tests = { { "get k", "a" }, { "get k", "b", listener = "admin" },\n'
                    '            { "get k", "c", listener = "tls", cn = "ops" } } }\n')
    out = run("--check", path)
    assert out.returncode == 0, out.stderr
    assert "route 0: by_client (cn:ops -> c, admin -> b, default -> a) (root)" in out.stdout
    out = run("--route", path, "get k", "--listener", "tls", "--cn", "ops")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "answered by: {c}"
    # The chosen child is shown under the node, with its server call.
    assert out.stdout.splitlines()[:4] == ["client: listener tls, cn ops", "get k",
                                           "  by_client",
                                           '    pool c -> server 127.0.0.1:3 (key "k")']
    assert run("--route", path, "get k", "--listener", "admin").stdout.endswith(
        "answered by: {b}\n")
    # A self-test that states the wrong client fails the load, naming the test.
    bad = tmp_path / "bad.lua"
    bad.write_text(path.read_text().replace('"b", listener = "admin"', '"b", listener = "x"'))
    out = run("--check", bad)
    assert out.returncode == 1
    assert 'test 2 "get k": expected {b}, got {a}' in out.stderr


@pytest.mark.parametrize("body,message", [
    ('lg.by_client{ admin = a, defualt = a }',
     "missing required field 'default' (is 'defualt' a typo?)"),
    ('lg.by_client{ ["no spaces"] = a, default = a }', "'no spaces' is not a listener name"),
    ('lg.by_client{ ["cn:"] = a, default = a }', "the common name after 'cn:' must be"),
    ('lg.by_client{ default = a }', "needs at least one listener name"),
    ('lg.by_client{ admin = 5, default = a }', "'admin' is not a route (got number)"),
])
def test_by_client_field_errors(tmp_path, body, message):
    path = tmp_path / "p.lua"
    path.write_text('local lg = require "luagent"\n'
                    'local a = lg.pool{ name = "a", servers = { "127.0.0.1:1" } }\n'
                    'return lg.policy{ route = %s }\n' % body)
    out = run("--check", path)
    assert out.returncode == 1
    assert message in out.stderr


def test_self_test_client_field_typo(tmp_path):
    path = tmp_path / "p.lua"
    path.write_text('local lg = require "luagent"\n'
                    'local a = lg.pool{ name = "a", servers = { "127.0.0.1:1" } }\n'
                    'return lg.policy{ route = a, tests = { { "get k", "a", listner = "x" } } }\n')
    out = run("--check", path)
    assert out.returncode == 1
    assert "unknown field 'tests[1].listner' (did you mean 'tests[1].listener'?)" in out.stderr


@pytest.mark.parametrize("arg,message", [
    ("tcp=127.0.0.1:1", "the name 'tcp' belongs to the -p listener"),
    ("admin=127.0.0.1", "expected NAME=ADDR:PORT with a port"),
    ("=127.0.0.1:5", "expected NAME=ADDR:PORT, the name"),
    ("a b=127.0.0.1:5", "expected NAME=ADDR:PORT, the name"),
])
def test_listen_flag_errors(arg, message):
    out = run("-s", "127.0.0.1:1", "--listen", arg)
    assert out.returncode == 2
    assert message in out.stderr


def test_listen_names_must_differ():
    out = run("-s", "127.0.0.1:1", "--listen", "a=127.0.0.1:1", "-l", "a=127.0.0.1:2")
    assert out.returncode == 2
    assert "two listeners are named 'a'" in out.stderr
