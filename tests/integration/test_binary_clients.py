"""
Real clients of memcached's binary protocol, through luagent over three
servers and against a direct memcached, the same sequence each, the results
compared: pylibmc with binary=True, PHP sessions with php-memcached's
default ini (binary protocol and session locking on), memjs from npm and
Ruby's Dalli 3.0.6 (both binary-only). scripts/deps.sh installs them.
"""
import json
import os
import subprocess
import time

import pytest

from conftest import HOST, ITEM_MAX, REPO
from php_session import SESSION_ID, assert_shared, php_ini, php_session_run

TOOL_TIMEOUT = 120
NODE_MODULES = REPO / "build" / "clients" / "node_modules"


@pytest.fixture
def targets(memcached, luagent):
    """(luagent over three fresh servers, the servers, a fresh direct memcached
    whose item limit is luagent's: 1 MiB)."""
    servers = [memcached() for _ in range(3)]
    lg = luagent(servers=servers)
    direct = memcached(extra=["-I", "1m"])
    return lg, servers, direct


def run(argv, timeout=TOOL_TIMEOUT, env=None):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=env)
    assert p.returncode == 0, "%s exited %d\nstdout: %s\nstderr: %s" % (
        argv[0], p.returncode, p.stdout.decode()[-2000:], p.stderr.decode()[-2000:])
    return p.stdout.decode()


def spread_over(servers, keys):
    held = [s.present(keys) for s in servers]
    assert all(held), "keys should land on every server: %r" % [len(h) for h in held]
    assert sum(len(h) for h in held) == len(keys)


# --------------------------------------------------------------------------
# pylibmc (libmemcached) with binary=True
# --------------------------------------------------------------------------

def pylibmc_sequence(port):
    import pylibmc

    c = pylibmc.Client(["%s:%d" % (HOST, port)], binary=True,
                       behaviors={"cas": True, "connect_timeout": 5000, "receive_timeout":
                                  5000000, "send_timeout": 5000000})
    out = []

    def rec(name, f):
        try:
            out.append((name, f()))
        except Exception as e:          # noqa: BLE001 - the kind of failure is the result
            out.append((name, "raised " + type(e).__name__))

    keys = ["multi:%d" % i for i in range(50)]
    rec("set", lambda: c.set("k", "v"))
    rec("get", lambda: c.get("k"))
    rec("get missing", lambda: c.get("missing"))
    rec("add existing", lambda: c.add("k", "x"))
    rec("add new", lambda: c.add("k2", "x"))
    rec("replace missing", lambda: c.replace("nope", "x"))
    rec("replace", lambda: c.replace("k2", "y"))
    rec("append", lambda: c.append("k2", "+"))
    rec("prepend", lambda: c.prepend("k2", "-"))
    rec("get k2", lambda: c.get("k2"))
    val, cas = c.gets("k")
    rec("gets", lambda: (val, cas > 0))
    rec("cas", lambda: c.cas("k", "new", cas))
    rec("cas stale", lambda: c.cas("k", "newer", cas))
    rec("after cas", lambda: c.get("k"))
    rec("delete", lambda: c.delete("k2"))
    rec("delete missing", lambda: c.delete("k2"))
    rec("set n", lambda: c.set("n", "10"))
    rec("incr", lambda: c.incr("n", 5))
    rec("decr below zero", lambda: c.decr("n", 20))
    rec("incr missing", lambda: c.incr("nothere", 1))
    rec("incr not numeric", lambda: c.incr("k", 1))
    rec("set wrap", lambda: c.set("w", str(2 ** 64 - 1)))
    rec("incr wrap", lambda: c.incr("w", 2))
    rec("touch", lambda: c.touch("k", 100))
    rec("touch missing", lambda: c.touch("missing", 100))
    rec("set_multi", lambda: c.set_multi({k: "value of " + k for k in keys}))
    rec("get_multi", lambda: c.get_multi(keys + ["multi:missing"]))
    for name, value in [("empty", b""), ("binary", bytes(range(256)) * 4),
                        ("500KB", b"h" * 500000), ("1000000B", b"m" * 1000000),
                        ("over limit", b"o" * (ITEM_MAX + 1))]:
        rec("set " + name, lambda v=value: c.set("val:" + name, v))
        rec("get " + name, lambda: c.get("val:" + name))
    rec("set 250-byte key", lambda: c.set("K" * 250, "long"))
    rec("get 250-byte key", lambda: c.get("K" * 250))
    rec("set expiring", lambda: c.set("exp", "soon", time=1))
    deadline = time.monotonic() + 10
    while c.get("exp") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    rec("expired", lambda: c.get("exp"))
    rec("flush", lambda: c.flush_all())
    rec("after flush", lambda: c.get_multi(keys + ["k"]))
    c.disconnect_all()
    return out


def test_pylibmc_binary(targets):
    lg, servers, direct = targets
    want = pylibmc_sequence(direct.port)
    got = pylibmc_sequence(lg.port)
    for (name, g), (_, w) in zip(got, want):
        assert g == w, "%s: luagent %r, memcached %r" % (name, str(g)[:200], str(w)[:200])
    assert dict(got)["get 1000000B"] == b"m" * 1000000
    assert dict(got)["set over limit"] != dict(got)["set 500KB"]


def test_pylibmc_multiget_spreads(targets):
    import pylibmc

    lg, servers, _ = targets
    c = pylibmc.Client(["%s:%d" % (HOST, lg.port)], binary=True)
    keys = ["spread:%d" % i for i in range(50)]
    c.set_multi({k: k for k in keys})
    assert c.get_multi(keys) == {k: k for k in keys}
    spread_over(servers, keys)
    assert int(lg.stats()["binary_requests"]) >= 100


# --------------------------------------------------------------------------
# PHP sessions, php-memcached's default ini
# --------------------------------------------------------------------------

def test_php_sessions_default_ini(targets, tmp_path):
    lg, servers, direct = targets
    ini = run(["php", "-r", "echo ini_get('memcached.sess_binary_protocol'), ' ', "
               "ini_get('memcached.sess_locking');"])
    assert ini == "1 1", "php-memcached's defaults: binary protocol and locking on"
    for target in (direct, lg):
        assert_shared(*php_session_run(tmp_path, php_ini("memcached", "%s:%d" % (HOST, target.port))))
    assert any(s.present(["memc.sess.key." + SESSION_ID]) for s in servers)
    assert int(lg.stats()["binary_requests"]) > 0


# --------------------------------------------------------------------------
# memjs (npm) and Dalli (Debian's ruby-dalli 3.0.6)
# --------------------------------------------------------------------------

MEMJS = r"""
const memjs = require('memjs');
const c = memjs.Client.create(process.argv[2], { retries: 0, timeout: 5, conntimeout: 5 });
const keys = Array.from({ length: 30 }, (_, i) => 'js:' + i);
(async () => {
  const out = [];
  const rec = async (name, f) => {
    try { out.push([name, await f()]); } catch (e) { out.push([name, 'error ' + e.message]); }
  };
  await rec('set', () => c.set('k', 'v', { expires: 0 }));
  await rec('get', async () => { const r = await c.get('k'); return r.value.toString(); });
  await rec('get missing', async () => (await c.get('missing')).value);
  await rec('add existing', () => c.add('k', 'x', {}));
  await rec('replace', () => c.replace('k', 'r', {}));
  await rec('delete', () => c.delete('k'));
  await rec('delete missing', () => c.delete('k'));
  await rec('incr new', async () => (await c.increment('n', 5, { initial: 10 })).value);
  await rec('incr', async () => (await c.increment('n', 5, {})).value);
  await rec('decr', async () => (await c.decrement('n', 100, {})).value);
  await rec('set many', async () => { for (const k of keys) await c.set(k, 'v-' + k, {}); return true; });
  await rec('getMulti', async () => {
    const r = await c.getMulti(keys.concat(['js:missing']));
    return Object.keys(r.values).sort().map(k => k + '=' + r.values[k].toString());
  });
  await rec('flush', async () => Object.values(await c.flush()));
  await rec('after flush', async () => (await c.get('js:1')).value);
  await rec('stats', () => new Promise((resolve, reject) => c.stats((err, server, stats) =>
    err ? reject(err) : resolve(['pid', 'uptime', 'version'].map(n => n in stats)))));
  console.log(JSON.stringify(out));
  c.close();
})();
"""

DALLI = r"""
require 'dalli'
require 'json'
c = Dalli::Client.new(ARGV[0], socket_timeout: 5, socket_max_failures: 1)
keys = (0...30).map { |i| "rb:#{i}" }
out = []
rec = lambda do |name, &f|
  begin
    out << [name, f.call]
  rescue => e
    out << [name, "raised #{e.class}"]
  end
end
rec.call('version') { Dalli::VERSION }
rec.call('set') { c.set('k', 'v') != false }
rec.call('get') { c.get('k') }
rec.call('get missing') { c.get('missing') }
rec.call('add existing') { c.add('k', 'x') }
rec.call('delete') { c.delete('k') }
rec.call('delete missing') { c.delete('k') }
rec.call('incr with initial') { c.incr('n', 1, nil, 10) }
rec.call('incr') { c.incr('n', 5) }
rec.call('decr') { c.decr('n', 100) }
rec.call('incr missing') { c.incr('none', 1) }
rec.call('set many') { keys.each { |k| c.set(k, "v-#{k}") }; true }
rec.call('get_multi') { c.get_multi(*(keys + ['rb:missing'])).sort }
rec.call('cas') { c.cas('rb:1') { |v| v + '!' } ? true : false }
rec.call('after cas') { c.get('rb:1') }
rec.call('flush') { c.flush.map { |r| r != false } }
rec.call('after flush') { c.get('rb:2') }
rec.call('stats') { c.stats.values.map { |s| s.is_a?(Hash) && s.key?('pid') } }
puts JSON.generate(out)
"""


def memjs_run(tmp_path, port):
    script = tmp_path / "memjs_seq.js"
    script.write_text(MEMJS)
    env = dict(os.environ, NODE_PATH=str(NODE_MODULES))
    return json.loads(run(["node", str(script), "%s:%d" % (HOST, port)], env=env)
                      .splitlines()[-1])


def test_memjs(targets, tmp_path):
    lg, servers, direct = targets
    want = memjs_run(tmp_path, direct.port)
    got = memjs_run(tmp_path, lg.port)
    assert got == want
    assert dict(got)["incr new"] == 10 and dict(got)["stats"] == [True, True, True]


def dalli_run(tmp_path, port):
    script = tmp_path / "dalli_seq.rb"
    script.write_text(DALLI)
    return json.loads(run(["ruby", str(script), "%s:%d" % (HOST, port)]).splitlines()[-1])


def test_dalli(targets, tmp_path):
    lg, servers, direct = targets
    want = dalli_run(tmp_path, direct.port)
    got = dalli_run(tmp_path, lg.port)
    assert got == want
    assert dict(got)["version"] == "3.0.6"
    assert dict(got)["incr with initial"] == 10 and dict(got)["get_multi"][0][0] == "rb:0"
