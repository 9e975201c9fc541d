"""
Server names resolved through DNS (src/discover.c): hostnames and SRV names in
a pool's servers, asked of a nameserver named by settings.resolver (a small
DNS server in the test, tests/integration/dns_server.py) and asked again every
settings.resolve_every_s. A changed answer rebuilds the pools as a reload does
(a new generation, logged, counted); a failed one keeps the last answer.
"""
import signal
import subprocess
import time

import pytest

from conftest import LUAGENT, free_port
from dns_server import TYPE_A, TYPE_SRV, DnsServer

SRV_NAME = "_memcache._tcp.pool.test"
DEADLINE = 30           # seconds to wait for a condition (a loaded machine)


@pytest.fixture
def dns():
    for _ in range(10):
        try:
            server = DnsServer(free_port())
            break
        except OSError:
            continue
    yield server
    server.stop()


def wait_for(predicate, what, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def policy(tmp_path, servers, dns, every=1, name="policy.lua"):
    path = tmp_path / name
    path.write_text("""local lg = require "luagent"
return lg.policy{
    route = lg.pool{ name = "main", servers = { %s } },
    settings = { resolver = "%s", resolve_every_s = %d },
}
""" % (", ".join('"%s"' % s for s in servers), dns.addr, every))
    return path


def store(lg, keys):
    c = lg.client()
    try:
        for k in keys:
            assert c.call(b"set %s 0 0 1\r\nv\r\n" % k.encode()) == b"STORED\r\n"
    finally:
        c.close()


def holders(servers, keys):
    return [len(s.present(keys)) for s in servers]


def stat(lg, name):
    return int(lg.stats()[name])


def names_for(dns, servers):
    """mcN.test -> 127.0.0.1, and the SRV name's records for them."""
    for i, _ in enumerate(servers):
        dns.a["mc%d.test" % i] = "127.0.0.1"
    dns.srv[SRV_NAME] = [("mc%d.test" % i, s.port) for i, s in enumerate(servers)]


def test_srv_name_expands_to_its_servers(memcached, luagent, dns, tmp_path):
    servers = [memcached() for _ in range(3)]
    names_for(dns, servers[:2])
    lg = luagent("-c", policy(tmp_path, ["srv:" + SRV_NAME], dns), "-v")
    keys = ["k:%d" % i for i in range(60)]
    store(lg, keys)
    held = holders(servers, keys)
    assert held[0] and held[1] and not held[2], held
    assert stat(lg, "config_generation") == 1
    assert "discover srv:%s: mc0.test:%d mc1.test:%d" % (
        SRV_NAME, servers[0].port, servers[1].port) in lg.log()

    # A third record: the pool grows, as a reload would make it.
    names_for(dns, servers)
    wait_for(lambda: stat(lg, "config_generation") == 2, "the rebuild after the change")
    assert stat(lg, "discover_changes") == 1
    assert stat(lg, "reloads") == 1
    more = ["m:%d" % i for i in range(90)]
    store(lg, more)
    assert all(holders(servers, more)), holders(servers, more)
    log = lg.log()
    assert "discover srv:%s: now mc0.test:%d mc1.test:%d mc2.test:%d (was " % (
        SRV_NAME, servers[0].port, servers[1].port, servers[2].port) in log, log
    assert "reload: generation 2" in log


def test_failed_answers_keep_the_servers(memcached, luagent, dns, tmp_path):
    servers = [memcached() for _ in range(2)]
    names_for(dns, servers)
    lg = luagent("-c", policy(tmp_path, ["srv:" + SRV_NAME], dns), "-v")
    dns.failing = True
    wait_for(lambda: stat(lg, "discover_failures") >= 2, "failed answers")
    keys = ["f:%d" % i for i in range(40)]
    store(lg, keys)
    assert all(holders(servers, keys))
    assert stat(lg, "config_generation") == 1
    assert stat(lg, "discover_changes") == 0
    assert "SERVFAIL (keeping the last answer)" in lg.log()
    # Answers again, the same: still nothing to rebuild.
    dns.failing = False
    asked = dns.questions(SRV_NAME, TYPE_SRV)
    wait_for(lambda: dns.questions(SRV_NAME, TYPE_SRV) > asked + 1, "questions again")
    assert stat(lg, "config_generation") == 1


def test_hostname_server(memcached, luagent, dns, tmp_path):
    server = memcached()
    dns.a["cache.test"] = "127.0.0.1"
    lg = luagent("-c", policy(tmp_path, ["cache.test:%d" % server.port], dns))
    store(lg, ["h:1"])
    assert server.present(["h:1"])
    # Asked again every second, by the A question.
    asked = dns.questions("cache.test", TYPE_A)
    wait_for(lambda: dns.questions("cache.test", TYPE_A) > asked, "the name asked again")
    assert stat(lg, "config_generation") == 1


def test_unknown_name_fails_the_start(memcached, luagent, dns, tmp_path):
    path = policy(tmp_path, ["nowhere.test:11211"], dns)
    lg = luagent("-c", path, wait=False)
    wait_for(lambda: not lg.alive(), "luagent to give up")
    assert "lg.pool 'main': nowhere.test: nodename nor servname provided, or not known" \
        in lg.log(), lg.log()


def test_reload_resolves_new_names_first(memcached, luagent, dns, tmp_path):
    servers = [memcached() for _ in range(2)]
    names_for(dns, servers)
    path = policy(tmp_path, ["mc0.test:%d" % servers[0].port], dns, every=0)
    lg = luagent("-c", path, "-v")
    policy(tmp_path, ["mc0.test:%d" % servers[0].port, "mc1.test:%d" % servers[1].port],
           dns, every=0)
    lg.signal(signal.SIGHUP)
    wait_for(lambda: stat(lg, "config_generation") == 2, "the reload")
    keys = ["r:%d" % i for i in range(60)]
    store(lg, keys)
    assert all(holders(servers, keys))
    # A name that does not resolve fails the reload; the servers stay.
    policy(tmp_path, ["mc0.test:%d" % servers[0].port, "gone.test:1"], dns, every=0)
    lg.signal(signal.SIGHUP)
    wait_for(lambda: stat(lg, "reload_failures") == 1, "the failed reload")
    assert stat(lg, "config_generation") == 2
    assert "gone.test: " in lg.log()


def test_check_does_not_resolve(dns, tmp_path):
    """--check checks the policy, not DNS: no question is asked, and an srv:
    name shows as its stand-in, with a note saying so."""
    path = policy(tmp_path, ["srv:" + SRV_NAME, "cache.test:11211"], dns)
    p = subprocess.run([str(LUAGENT), "--check", str(path)], capture_output=True,
                       timeout=60)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    assert "pool main: %s:0 cache.test:11211 " % SRV_NAME in out, out
    assert "note: server DNS names are not resolved here" in out, out
    assert dns.questions(SRV_NAME, TYPE_SRV) == 0
    assert dns.questions("cache.test", TYPE_A) == 0


def test_failed_reload_names_are_not_asked_again(memcached, luagent, dns, tmp_path):
    """A name only a failed reload used is forgotten: the refreshes ask the
    serving policy's names, not it."""
    server = memcached()
    dns.a["mc0.test"] = "127.0.0.1"
    lg = luagent("-c", policy(tmp_path, ["mc0.test:%d" % server.port], dns), "-v")
    policy(tmp_path, ["mc0.test:%d" % server.port, "gone.test:1"], dns)
    lg.signal(signal.SIGHUP)
    wait_for(lambda: stat(lg, "reload_failures") == 1, "the failed reload")
    gone = dns.questions("gone.test", TYPE_A)
    assert gone > 0
    kept = dns.questions("mc0.test", TYPE_A)
    wait_for(lambda: dns.questions("mc0.test", TYPE_A) >= kept + 2, "two refreshes")
    assert dns.questions("gone.test", TYPE_A) == gone
    assert stat(lg, "config_generation") == 1
