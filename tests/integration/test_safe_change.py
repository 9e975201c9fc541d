"""
Changing the policy safely (docs/operating.md): `--diff OLD NEW` (pool shares
computed from the rings, routes that change, `--keys`, `--json`), the remap
guard (`settings.max_remap`: a reload moving more of a pool's keys is refused,
`--check NEW --against OLD` fails the same way, the force file and
`--reload --force` let it through once), `--watch`, and the `policy_checksum`
/ `policy_load_time` figures.

Shares are checked against an independent oracle: the Python ketama ring of
conftest places each key, and a count over the keys must agree with the exact
share within sampling error (5 standard deviations), and the keys `--keys`
lists must be exactly the keys the oracle places differently. No assertion is
on elapsed time; every wait polls a condition under a generous deadline.
"""
import json
import math
import os
import re
import shlex
import signal
import time

import pytest

from conftest import HOST, LUAGENT, REPO, Ketama, free_port, modula_index, report_info
from test_policy import run_luagent
from test_reload import Load, poll, wait_log, write_policy
from test_metrics import fetch

PORTS = [21211, 21212, 21213, 21214, 21215]


def addrs(ports):
    return ["%s:%d" % (HOST, p) for p in ports]


def pool_policy(servers, name="main", max_remap=None, dist="ketama", extra=""):
    """One pool over servers ("host:port" strings or Memcached objects)."""
    servers = [s if isinstance(s, str) else s.addr for s in servers]
    settings = "" if max_remap is None else ", settings = { max_remap = %s }" % max_remap
    return ('local lg = require "luagent"\n'
            'local p = lg.pool{ name = "%s", dist = "%s", servers = { %s } }\n'
            '%s'
            'return lg.policy{ route = p%s }\n'
            % (name, dist, ", ".join('"%s"' % s for s in servers), extra, settings))


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def pool_share(out, pool):
    m = re.search(r"^pool %s: (\d+\.\d\d)%% of keys move" % re.escape(pool), out, re.M)
    assert m, "no share line for pool %s in:\n%s" % (pool, out)
    return float(m.group(1)) / 100


def sigma(p, n):
    return math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------------------
# --diff
# ---------------------------------------------------------------------------

def test_diff_adding_a_fifth_ketama_server_moves_about_a_fifth(tmp_path):
    old = write(tmp_path, "old.lua", pool_policy(addrs(PORTS[:4])))
    new = write(tmp_path, "new.lua", pool_policy(addrs(PORTS)))
    keys = ["key:%d" % i for i in range(20000)]
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("\n".join(keys) + "\n")

    rc, out, err = run_luagent("--diff", old, new, "--keys", keyfile)
    assert rc == 0, err
    share = pool_share(out, "main")
    assert "(ketama, 4 -> 5 servers)" in out
    assert 0.15 < share < 0.25, out

    # The listed keys are exactly those the oracle places on another server.
    r4 = Ketama([(HOST, p, 1) for p in PORTS[:4]])
    r5 = Ketama([(HOST, p, 1) for p in PORTS])
    expected = {k: (PORTS[r4.server(k)], PORTS[r5.server(k)]) for k in keys
                if PORTS[r4.server(k)] != PORTS[r5.server(k)]}
    listed = {}
    for m in re.finditer(r"^key (\S+): 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:(\d+)$", out, re.M):
        listed[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    assert listed == expected
    assert "keys: %d of %d change server" % (len(expected), len(keys)) in out
    counted = len(expected) / len(keys)
    assert abs(counted - share) < 5 * sigma(share, len(keys)) + 0.00005, (counted, share)
    report_info("--diff ketama 4 -> 5 servers: %.2f%% exact, %.2f%% of %d keys counted"
                % (100 * share, 100 * counted, len(keys)))


def test_diff_shipped_example_with_a_server_added(tmp_path):
    """examples/ketama.lua, and the same with a third server: about a third of
    the keys move, as many as the oracle counts over 20,000 keys."""
    example = REPO / "examples" / "ketama.lua"
    text = example.read_text()
    assert '"127.0.0.1:21211", "127.0.0.1:21212" }' in text
    new = write(tmp_path, "ketama3.lua", text.replace(
        '"127.0.0.1:21212" }', '"127.0.0.1:21212", "127.0.0.1:21213" }'))
    rc, out, err = run_luagent("--diff", example, new)
    assert rc == 0, err
    assert "(ketama, 2 -> 3 servers)" in out and "routes: no change" in out
    share = pool_share(out, "main")
    r2 = Ketama([(HOST, p, 1) for p in PORTS[:2]])
    r3 = Ketama([(HOST, p, 1) for p in PORTS[:3]])
    keys = ["user:%d" % i for i in range(20000)]
    counted = sum(PORTS[r2.server(k)] != PORTS[r3.server(k)] for k in keys) / len(keys)
    assert abs(counted - share) < 5 * sigma(share, len(keys)) + 0.00005, (counted, share)
    assert 0.25 < share < 0.42


def test_diff_json_says_the_same(tmp_path):
    old = write(tmp_path, "old.lua", pool_policy(addrs(PORTS[:4])))
    new = write(tmp_path, "new.lua", pool_policy(addrs(PORTS)))
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("".join("key:%d\n" % i for i in range(2000)) + "set other:1\n")

    rc, text, err = run_luagent("--diff", old, new, "--keys", keyfile)
    assert rc == 0, err
    rc, out, err = run_luagent("--diff", old, new, "--keys", keyfile, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["old"] == str(old) and doc["new"] == str(new)
    (pool,) = doc["pools"]
    assert pool["name"] == "main" and pool["change"] == "kept" and pool["exact"] is True
    assert "%.2f%%" % (100 * pool["moved"]) in text
    assert pool["old"]["servers"] == addrs(PORTS[:4])
    assert pool["new"]["servers"] == addrs(PORTS)
    assert doc["routes"] == []
    listed = re.findall(r"^key (.+?): ", text, re.M)
    assert [k["key"] for k in doc["keys"]["changed"]] == listed
    assert doc["keys"]["given"] == 2001 and doc["keys"]["moved"] == len(listed)
    # stable: the same inputs print the same bytes
    assert run_luagent("--diff", old, new, "--keys", keyfile, "--json")[1] == out


def test_diff_modula_from_hash_ranges(tmp_path):
    """magent's placement: a key stays only when hash % 4 == hash % 5, a fifth
    of the 2^31 DJB values (exactly 80.00% move); the keys listed agree with
    the DJB oracle."""
    old = write(tmp_path, "old.lua", pool_policy(addrs(PORTS[:4]), dist="modula"))
    new = write(tmp_path, "new.lua", pool_policy(addrs(PORTS), dist="modula"))
    keys = ["user:%d" % i for i in range(3000)]
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("\n".join(keys))
    rc, out, err = run_luagent("--diff", old, new, "--keys", keyfile)
    assert rc == 0, err
    assert "pool main: 80.00% of keys move (modula, 4 -> 5 servers)" in out
    moved = {k for k in keys if PORTS[modula_index(k, 4)] != PORTS[modula_index(k, 5)]}
    assert set(re.findall(r"^key (\S+): ", out, re.M)) == moved


def test_diff_unchanged_pools_and_routes_say_so(tmp_path):
    for example in sorted((REPO / "examples").glob("*.lua")):
        rc, out, err = run_luagent("--diff", example, example, "-s", "127.0.0.1:21211")
        assert rc == 0, (example, err)
        pools = re.findall(r"^pool \S+: (.*)$", out, re.M)
        assert pools and all(p.startswith("0.00% of keys move") for p in pools), (example, out)
        assert out.rstrip().endswith("routes: no change"), (example, out)


REGIONS_OLD = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "127.0.0.1:21211", "127.0.0.1:21212" } }
local east = lg.pool{ name = "cfg_east", servers = { "127.0.0.1:21213" } }
return lg.policy{ route = lg.prefix{ ["cfg:"] = east, default = main } }
"""

REGIONS_NEW = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "127.0.0.1:21211", "127.0.0.1:21212" } }
local east = lg.pool{ name = "cfg_east", servers = { "127.0.0.1:21213" } }
local west = lg.pool{ name = "cfg_west", servers = { "127.0.0.1:21214" } }
local scratch = lg.pool{ name = "scratch", servers = { "127.0.0.1:21215" } }
return lg.policy{
    route = lg.prefix{
        ["cfg:"] = lg.by_op{ read = lg.failover{ east, west },
                             default = lg.all_sync{ east, west } },
        ["tmp:"] = lg.rewrite{ add = "v3:", to = scratch },
        default  = main,
    },
    tests = { { "get cfg:x", "cfg_east" } },
}
"""


def test_diff_names_the_routes_that_change(tmp_path):
    old = write(tmp_path, "old.lua", REGIONS_OLD)
    new = write(tmp_path, "new.lua", REGIONS_NEW)
    rc, out, err = run_luagent("--diff", old, new)
    assert rc == 0, err
    assert out.splitlines() == [
        "pool cfg_east: 0.00% of keys move (ketama, 1 server)",
        "pool main: 0.00% of keys move (ketama, 2 servers)",
        "pool cfg_west: added (ketama, 1 server)",
        "pool scratch: added (ketama, 1 server)",
        'route "cfg:" reads: cfg_east -> failover(cfg_east, cfg_west)',
        'route "cfg:" writes,deletes,arith,touches: cfg_east -> all_sync(cfg_east, cfg_west)',
        'route "tmp:" all: main -> rewrite(add "v3:", scratch)',
    ]
    # and back: the pools added become removed, the routes swap sides
    rc, out, err = run_luagent("--diff", new, old)
    assert rc == 0, err
    assert "pool cfg_west: removed (ketama, 1 server)" in out
    assert 'route "cfg:" reads: failover(cfg_east, cfg_west) -> cfg_east' in out


def test_diff_fails_when_new_does_not_load(tmp_path):
    old = write(tmp_path, "old.lua", REGIONS_OLD)
    bad = write(tmp_path, "bad.lua", REGIONS_NEW.replace('"cfg_east" } }', '"main" } }'))
    rc, out, err = run_luagent("--diff", old, bad)
    assert rc == 1 and out == ""
    assert re.search(r'bad\.lua: test 1 "get cfg:x": expected \{main\}, got \{cfg_east\}', err), err
    rc, out, err = run_luagent("--diff", old, tmp_path / "missing.lua")
    assert rc == 1 and "missing.lua" in err


def test_diff_keys_file_errors(tmp_path):
    old = write(tmp_path, "old.lua", REGIONS_OLD)
    keys = write(tmp_path, "keys.txt", "fine:1\nfrobnicate x\n")
    rc, out, err = run_luagent("--diff", old, old, "--keys", keys)
    assert rc == 1 and re.search(r"keys\.txt:2: .*frobnicate x", err), err
    rc, out, err = run_luagent("--diff", old, old, "--keys", tmp_path / "none.txt")
    assert rc == 1 and "none.txt" in err


@pytest.mark.parametrize("args,named", [
    (["--keys", "k.txt", "-s", "127.0.0.1:1"], "--keys"),
    (["--json", "-s", "127.0.0.1:1"], "--json"),
    (["--diff", "a.lua"], "NEW"),
    (["--against", "a.lua", "-s", "127.0.0.1:1"], "--against"),
    (["--force", "-s", "127.0.0.1:1"], "--force"),
    (["--watch", "-s", "127.0.0.1:1"], "--watch"),
], ids=["keys", "json", "diff-one-file", "against", "force", "watch"])
def test_flags_that_go_with_another(args, named):
    rc, out, err = run_luagent(*args)
    assert rc == 2 and named in err.splitlines()[0], err


# ---------------------------------------------------------------------------
# --check NEW --against OLD
# ---------------------------------------------------------------------------

def test_check_against_fails_like_the_reload_would(tmp_path):
    old = write(tmp_path, "old.lua", pool_policy(addrs(PORTS[:4]), max_remap=0.10))
    new = write(tmp_path, "new.lua", pool_policy(addrs(PORTS), max_remap=0.10))
    rc, out, err = run_luagent("--check", new, "--against", old)
    assert rc == 1
    assert re.search(r"pool main: \d+\.\d\d% of keys move \(ketama, 4 -> 5 servers\)", out)
    m = re.search(r"^luagent: .*new\.lua: pool main would move (\d+\.\d\d)% of its keys, "
                  r"over settings\.max_remap 10\.00% \(against .*old\.lua\)$", err, re.M)
    assert m, err

    # within the limit: passes; the lower of the two policies' limits counts
    loose = write(tmp_path, "loose.lua", pool_policy(addrs(PORTS), max_remap=0.25))
    rc, out, err = run_luagent("--check", loose, "--against", write(
        tmp_path, "old25.lua", pool_policy(addrs(PORTS[:4]), max_remap=0.25)))
    assert rc == 0 and "and the remap guard" in out, err
    rc, out, err = run_luagent("--check", loose, "--against", old)
    assert rc == 1 and "max_remap 10.00%" in err
    # no limit anywhere: any change passes
    free_old = write(tmp_path, "free_old.lua", pool_policy(addrs(PORTS[:4])))
    free_new = write(tmp_path, "free_new.lua", pool_policy(addrs(PORTS[2:])))
    rc, out, err = run_luagent("--check", free_new, "--against", free_old)
    assert rc == 0, err


def test_max_remap_is_checked(tmp_path):
    bad = write(tmp_path, "bad.lua", pool_policy(addrs(PORTS), max_remap=1.5))
    rc, out, err = run_luagent("--check", bad)
    assert rc == 1 and "settings.max_remap" in err and "between 0 and 1" in err, err


# ---------------------------------------------------------------------------
# The remap guard on SIGHUP, under load, and its override
# ---------------------------------------------------------------------------

def stats_of(lg):
    return lg.stats()


def wait_stat(lg, name, value):
    return poll(lambda: stats_of(lg).get(name) == str(value),
                "stats %s == %s" % (name, value), lg)


def test_guard_refuses_a_reload_under_load_then_force(memcached, luagent, tmp_path):
    servers = [memcached() for _ in range(5)]
    path = tmp_path / "policy.lua"
    write_policy(path, pool_policy(servers[:4], max_remap=0.10))
    pid_file = tmp_path / "luagent.pid"
    lg = luagent("-c", path, "-t", "2", "--pid-file", pid_file)
    assert stats_of(lg)["reload_refused_remap"] == "0"

    load = Load(lg, 8)
    load.start()
    try:
        load.wait_progress([0] * 8)
        # one more server: about a fifth of the keys would move, over 10%
        write_policy(path, pool_policy(servers, max_remap=0.10))
        lg.signal(signal.SIGHUP)
        wait_stat(lg, "reload_refused_remap", 1)
        load.wait_progress(list(load.strict), at_least=50)
        assert not load.failures and not load.closed, load.failures + load.closed
    finally:
        load.finish()
    assert not load.failures and not load.closed, load.failures + load.closed
    assert sum(load.crossed) == 0       # no reload took effect: every get was exact
    st = stats_of(lg)
    assert st["config_generation"] == "1" and st["reload_failures"] == "1"
    assert st["reloads"] == "0"
    m = re.search(r"reload refused \(keeping generation 1\): pool main would move "
                  r"(\d+\.\d\d)% of its keys, over settings\.max_remap 10\.00%; to apply it "
                  r"anyway, touch (\S+) and reload again", lg.log())
    assert m, lg.log()
    assert m.group(2) == str(path) + ".force"
    report_info("remap guard: refused a reload moving %s%% of a pool's keys under load, "
                "%d set/get pairs and 0 failures" % (m.group(1), sum(load.ops)))

    # The operator means it: --reload --force through the pid file.
    rc, out, err = run_luagent("--reload", "--force", "--pid-file", pid_file, "-p", lg.port,
                               "-c", path)
    assert rc == 0, err
    assert "force file %s.force touched" % path in out
    assert re.search(r"reload took effect: generation 2, policy checksum [0-9a-f]{8}", out), out
    assert "reload forced by %s.force: pool main would move" % path in lg.log()
    assert not os.path.exists(str(path) + ".force")     # used once
    st = stats_of(lg)
    assert st["reload_refused_remap"] == "1" and st["reloads"] == "1"

    # The force file was consumed: the next large change is refused again,
    # and --reload reports that (exit 1) through the port alone.
    write_policy(path, pool_policy(servers[:3], max_remap=0.10))
    rc, out, err = run_luagent("--reload", "-p", lg.port)
    assert rc == 1 and "refused by the remap guard" in err, (out, err)
    assert stats_of(lg)["reload_refused_remap"] == "2"


def test_touched_force_file_lets_one_sighup_through(memcached, luagent, tmp_path):
    servers = [memcached() for _ in range(3)]
    path = tmp_path / "policy.lua"
    force = tmp_path / "policy.lua.force"
    force.write_text("")            # there before start: stale, not a licence
    write_policy(path, pool_policy(servers[:1], max_remap=0.05))
    pid_file = tmp_path / "luagent.pid"
    lg = luagent("-c", path, "--pid-file", pid_file)
    write_policy(path, pool_policy(servers[:2], max_remap=0.05))
    lg.signal(signal.SIGHUP)
    wait_stat(lg, "reload_refused_remap", 1)
    os.utime(force)                 # touched: fresh
    lg.signal(signal.SIGHUP)
    wait_stat(lg, "config_generation", 2)
    assert not force.exists()
    # a change within the limit needs no force
    write_policy(path, pool_policy(servers[:2], max_remap=0.05, name="main",
                                   extra="-- comment only\n"))
    lg.signal(signal.SIGHUP)
    wait_stat(lg, "config_generation", 3)
    assert stats_of(lg)["reload_refused_remap"] == "1"

    # --reload with the pid file alone: the default -p (11211) is not this
    # luagent, so it only says it sent the signal; the reload happens.
    rc, out, err = run_luagent("--reload", "--pid-file", pid_file)
    assert rc == 0 and "sent SIGHUP to process %d" % lg.pid in out, (out, err)
    wait_stat(lg, "config_generation", 4)


def test_reload_command_finds_nothing(tmp_path):
    rc, out, err = run_luagent("--reload", "-p", free_port())
    assert rc == 1 and "nothing answers stats" in err
    pid_file = tmp_path / "none.pid"
    pid_file.write_text("999999\n")
    rc, out, err = run_luagent("--reload", "--pid-file", pid_file)
    assert rc == 1 and "names no running process" in err


# ---------------------------------------------------------------------------
# --watch
# ---------------------------------------------------------------------------

def test_watch_reloads_edits_and_refuses_broken_ones(memcached, luagent, raw_client, tmp_path):
    servers = [memcached() for _ in range(2)]
    path = tmp_path / "policy.lua"
    write_policy(path, pool_policy(servers[:1]))
    lg = luagent("-c", path, "--watch", "-vv")
    c = raw_client(lg)

    # 1. an editor that writes a new file and renames it over the old one
    t0 = time.monotonic()
    write_policy(path, pool_policy(servers[1:]))
    wait_stat(lg, "config_generation", 2)
    picked_up = time.monotonic() - t0
    assert c.call(b"set w 0 0 1\r\nx\r\n") == b"STORED\r\n"
    assert servers[1].get("w") == b"x"

    # 2. written in place
    with open(path, "w") as f:
        f.write(pool_policy(servers))
    wait_stat(lg, "config_generation", 3)

    # 3. a broken edit: refused, logged, counted; the old policy keeps serving
    with open(path, "w") as f:
        f.write(pool_policy(servers).replace("lg.pool{", "lg.pool{ timout_ms = 5, "))
    wait_stat(lg, "reload_failures", 1)
    wait_log(lg, "reload failed (keeping generation 3)", 1)
    assert "timout_ms" in lg.log()
    assert c.call(b"set w 0 0 1\r\ny\r\n") == b"STORED\r\n"
    st = stats_of(lg)
    assert st["config_generation"] == "3" and st["reloads"] == "2"

    # 4. vim's way: the old file renamed away, a new one written in its place
    os.rename(path, str(path) + "~")
    with open(path, "w") as f:
        f.write(pool_policy(servers[:1]))
    wait_stat(lg, "config_generation", 4)
    # a file touched without a change of bytes is not a reload
    os.utime(path)
    wait_log(lg, "--watch: %s changed, but not its bytes" % path, 1)
    assert stats_of(lg)["reloads"] == "3"
    report_info("--watch: an edit was serving %.0f ms after the rename" % (1000 * picked_up))


def test_watch_with_the_guard_and_the_force_file(memcached, luagent, tmp_path):
    servers = [memcached() for _ in range(3)]
    path = tmp_path / "policy.lua"
    write_policy(path, pool_policy(servers[:1], max_remap=0.10))
    lg = luagent("-c", path, "--watch")
    write_policy(path, pool_policy(servers, max_remap=0.10))
    wait_stat(lg, "reload_refused_remap", 1)
    assert stats_of(lg)["reload_failures"] == "1"
    # touching the force file is a change the watch acts on
    (tmp_path / "policy.lua.force").write_text("")
    wait_stat(lg, "config_generation", 2)
    assert not (tmp_path / "policy.lua.force").exists()


# ---------------------------------------------------------------------------
# policy_checksum and policy_load_time
# ---------------------------------------------------------------------------

def test_policy_checksum_and_load_time(memcached, luagent, tmp_path):
    server = memcached()
    text = pool_policy([server])
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_policy(a / "policy.lua", text)
    write_policy(b / "policy.lua", text)
    mport = free_port()
    before = int(time.time())
    la = luagent("-c", a / "policy.lua", "--metrics", "%s:%d" % (HOST, mport))
    lb = luagent("-c", b / "policy.lua")
    sa, sb = stats_of(la), stats_of(lb)
    assert re.fullmatch(r"[0-9a-f]{8}", sa["policy_checksum"])
    assert sa["policy_checksum"] == sb["policy_checksum"]       # equal bytes, equal checksum
    loaded = int(sa["policy_load_time"])
    assert before - 1 <= loaded <= int(time.time()) + 1

    status, _, body = fetch(mport)
    assert status == 200
    assert re.search(r'^luagent_policy_info\{policy="%s",checksum="%s"\} 1$'
                     % (re.escape(str(a / "policy.lua")), sa["policy_checksum"]), body, re.M), body
    assert re.search(r"^luagent_policy_load_time_seconds %d$" % loaded, body, re.M)
    assert re.search(r"^luagent_reload_refused_remap_total 0$", body, re.M)

    write_policy(a / "policy.lua", text + "-- changed\n")
    la.signal(signal.SIGHUP)
    wait_stat(la, "config_generation", 2)
    sa = stats_of(la)
    assert sa["policy_checksum"] != sb["policy_checksum"]
    assert int(sa["policy_load_time"]) >= loaded


# ---------------------------------------------------------------------------
# docs/operating.md, "Changing the policy safely": the worked example runs
# ---------------------------------------------------------------------------

def safe_change_section():
    doc = (REPO / "docs" / "operating.md").read_text()
    m = re.search(r"^## Changing the policy safely\n(.*?)^## ", doc, re.M | re.S)
    assert m, "docs/operating.md has no 'Changing the policy safely' section"
    return m.group(1)


def shown_run(section, command):
    """The lines a `$ luagent <command> ...` block shows, command line first."""
    m = re.search(r"^ +\$ (luagent %s[^\n]*)\n((?: +[^$\s][^\n]*\n)*)" % re.escape(command),
                  section, re.M)
    assert m, "no '$ luagent %s' run shown" % command
    return m.group(1).split(), [line.strip() for line in m.group(2).splitlines()]


def test_operating_doc_worked_example(tmp_path):
    section = safe_change_section()
    serving, new = re.findall(r"```lua\n(.*?)```", section, re.S)[:2]
    paths = {"/etc/luagent/policy.lua": str(write(tmp_path, "policy.lua", serving)),
             "/tmp/policy.new.lua": str(write(tmp_path, "policy.new.lua", new))}

    def local(text):
        for shown, real in paths.items():
            text = text.replace(shown, real)
        return text

    # step 2: --diff prints exactly what the page shows
    argv, want = shown_run(section, "--diff")
    rc, out, err = run_luagent(*[local(a) for a in argv[1:]])
    assert rc == 0, err
    assert out.splitlines() == [local(line) for line in want]

    # step 3: --check --against fails with the lines shown ("..." stands for --check's own)
    argv, want = shown_run(section, "--check")
    rc, out, err = run_luagent(*[local(a) for a in argv[1:]])
    assert rc == 1
    got = (out + err).splitlines()
    for line in want:
        if line != "...":
            assert local(line) in got, (line, got)

    # steps 4 to 6: every flag the page uses is one luagent knows
    rc, usage, _ = run_luagent("-h")
    for flag in set(re.findall(r"luagent((?: --?[a-z-]+(?: \S+)?)+)", section)):
        for name in re.findall(r"(--[a-z-]+|-[a-z])\b", flag):
            assert name in usage, name


SCENARIO_POOLS = """
local lg = require "luagent"
local east = lg.pool{ name = "cfg_east", servers = { "127.0.0.1:21211" } }
local west = lg.pool{ name = "cfg_west", servers = { "127.0.0.1:21212" } }
local old  = lg.pool{ name = "old", servers = { "127.0.0.1:21213" } }
local new  = lg.pool{ name = "new", servers = { "127.0.0.1:21214" } }
return lg.policy{
    route = lg.prefix{
        ["cfg:"] = lg.by_op{ read = lg.failover{ READS }, default = lg.all_sync{ east, west } },
        ["hot:"] = lg.warmup{ cold = new, warm = old, exptime = 60 },
        default  = old,
    },
TESTS
}
"""


def test_operating_doc_failure_scenarios_step(tmp_path):
    """Step 4: the tests shown pass on the tree they describe and catch a
    misordered failover; the --route run prints what the page shows."""
    section = safe_change_section()
    tests = re.findall(r"```lua\n(tests = \{.*?)```", section, re.S)
    assert tests, "step 4 shows a tests = {...} block"
    good = write(tmp_path, "good.lua", SCENARIO_POOLS.replace("READS", "east, west")
                 .replace("TESTS", tests[0]))
    rc, out, err = run_luagent("--check", good)
    assert rc == 0, err
    bad = write(tmp_path, "bad.lua", SCENARIO_POOLS.replace("READS", "west, east")
                .replace("TESTS", tests[0]))
    rc, out, err = run_luagent("--check", bad)
    assert rc == 1 and 'test 1 "get cfg:x": expected {cfg_east}, got {cfg_west}' in err, err

    new = re.findall(r"```lua\n(.*?)```", section, re.S)[1]
    path = write(tmp_path, "policy.new.lua", new)
    argv, want = shown_run(section, "--route")
    argv = shlex.split(" ".join(argv).replace("/tmp/policy.new.lua", str(path)))
    rc, out, err = run_luagent(*argv[1:])
    assert rc == 0, err
    assert [l.strip() for l in out.splitlines()] == want


def test_operating_doc_preview_step(memcached, luagent, raw_client, tmp_path):
    """Step 5: --preview and --preview --drop print what the page shows, the
    counts the page names are there and agree with the ketama oracle, and
    promoting (install + reload, step 6/7) ends the preview."""
    section = safe_change_section()
    serving, new = re.findall(r"```lua\n(.*?)```", section, re.S)[:2]
    policy = write(tmp_path, "policy.lua", serving)
    candidate = write(tmp_path, "policy.new.lua", new)
    pid_file = tmp_path / "luagent.pid"
    paths = {"/etc/luagent/policy.lua": str(policy), "/tmp/policy.new.lua": str(candidate),
             "/run/luagent/luagent.pid": str(pid_file)}

    def local(text):
        for shown, real in paths.items():
            text = text.replace(shown, real)
        return text

    lg = luagent("-c", policy, "--pid-file", pid_file)
    # the page's luagent answers on the default port; this one on lg.port
    argv, want = shown_run(section, "--preview /tmp")
    rc, out, err = run_luagent(*[local(a) for a in argv[1:]] + ["-p", lg.port])
    assert rc == 0, err
    assert out.splitlines() == [local(line) for line in want]

    keys = ["user:%d" % i for i in range(40)]
    c = raw_client(lg)
    c.call(("get " + " ".join(keys) + "\r\n").encode(), "get")
    four = Ketama([("10.0.0.%d" % i, 11211, 1) for i in range(1, 5)])
    five = Ketama([("10.0.0.%d" % i, 11211, 1) for i in range(1, 6)])
    moved = [k for k in keys if four.server(k) != five.server(k)]
    st = c.stats(b"preview")
    assert st["preview_keys"] == str(len(keys))
    assert st["preview_differ"] == str(len(moved))
    assert st["prefix:*:keys"] == str(len(keys)) and st["pool:main:differ"] == str(len(moved))
    for name in re.findall(r"`(preview_[a-z]+)`", section):
        assert name in st, name
    for k, v in st.items():
        if k.startswith("sample:"):
            m = re.fullmatch(r"get (\S+) live \{(\S+)\} candidate \{(\S+)\}", v)
            assert m and m.group(1) in moved, v
            assert m.group(3) == "10.0.0.%d:11211" % (five.server(m.group(1)) + 1)

    argv, want = shown_run(section, "--preview --drop")
    rc, out, err = run_luagent(*[local(a) for a in argv[1:]] + ["-p", lg.port])
    assert rc == 0, err
    assert out.splitlines() == [local(line) for line in want]
    assert c.stats(b"preview")["preview_loaded"] == "0"

    # Promote: preview again, install the candidate, reload (forced: it moves
    # more than the example's max_remap); the preview ends by itself.
    rc, out, err = run_luagent("--preview", candidate, "-c", policy, "-p", lg.port)
    assert rc == 0, err
    policy.write_text(candidate.read_text())
    rc, out, err = run_luagent("--reload", "--force", "-c", policy, "--pid-file", pid_file,
                               "-p", lg.port)
    assert rc == 0, err
    wait_log(lg, "preview ended: the candidate is now the live policy", 1)
    assert c.stats(b"preview")["preview_loaded"] == "0"
    assert not os.path.exists(str(policy) + ".preview")
