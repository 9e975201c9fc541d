"""
Live preview (docs/operating.md, "Changing the policy safely"): `luagent
--preview FILE` loads a candidate policy beside the running one; every key of
every client request is also placed by the candidate (through the route
engine against simulated servers, nothing sent), and `stats preview` counts
the keys whose servers would differ, by prefix and by live pool, with samples.

The counts are checked against the keys actually sent: an independent oracle
(conftest's Python ketama ring) says which of them the candidate's extra
server takes, and the candidate's server must never see a request.
"""
import os
import shutil

from conftest import HOST, Ketama, free_port
from test_policy import run_luagent
from test_reload import poll, wait_log, write_policy

POLICY = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { %s } }
local sess = lg.pool{ name = "sess", servers = { "%s" } }
return lg.policy{
    route = lg.prefix{ ["s:"] = sess, default = main },
    tests = { { "get s:1", "sess" }, { "get u:1", "main" } },
}
"""


def policy(main_servers, sess_server):
    return POLICY % (", ".join('"%s"' % s.addr for s in main_servers), sess_server.addr)


def preview_stats(lg):
    return lg.stats(b"preview")


def test_preview_counts_the_keys_sent(memcached, luagent, raw_client, tmp_path):
    a, b, c, s = (memcached() for _ in range(4))
    live = tmp_path / "policy.lua"
    write_policy(live, policy([a, b], s))
    cand = tmp_path / "candidate.lua"
    write_policy(cand, policy([a, b, c], s))
    pid_file = tmp_path / "luagent.pid"
    lg = luagent("-c", live, "-t", "2", "--pid-file", pid_file)

    st = preview_stats(lg)
    assert st["preview_loaded"] == "0" and st["preview_loads"] == "0"

    rc, out, err = run_luagent("--preview", cand, "--pid-file", pid_file, "-p", lg.port,
                               "-c", live)
    assert rc == 0, err
    assert "previewing %s" % cand in out
    assert open(str(live) + ".preview").read().strip() == str(cand)
    st = preview_stats(lg)
    assert st["preview_loaded"] == "1" and st["preview_file"] == str(cand)
    assert st["preview_keys"] == "0"

    # Keys through two clients (two workers), sets and multi-key gets.
    users = ["user:%d" % i for i in range(300)]
    sessions = ["s:%d" % i for i in range(40)]
    clients = [raw_client(lg), raw_client(lg)]
    for i, k in enumerate(users + sessions):
        assert clients[i % 2].call(b"set %s 0 0 1\r\nx\r\n" % k.encode()) == b"STORED\r\n"
    for i in range(0, len(users), 10):
        clients[i % 2].call(b"get " + b" ".join(k.encode() for k in users[i:i + 10]) + b"\r\n",
                            "get")
    sent = 2 * len(users) + len(sessions)       # every key: once set, once read

    old = Ketama([(HOST, m.port, 1) for m in (a, b)])
    new = Ketama([(HOST, m.port, 1) for m in (a, b, c)])
    moved = [k for k in users if new.server(k) == 2]
    assert all(old.server(k) == new.server(k) for k in users if k not in moved)
    st = poll(lambda: (lambda st: st if st["preview_keys"] == str(sent) else None)(
        preview_stats(lg)), "preview_keys == %d" % sent, lg)
    assert st["preview_differ"] == str(2 * len(moved)), (len(moved), st)
    assert st["preview_skipped"] == "0"
    assert st["prefix:s::keys"] == str(len(sessions)) and st["prefix:s::differ"] == "0"
    assert st["prefix:*:keys"] == str(2 * len(users))
    assert st["prefix:*:differ"] == str(2 * len(moved))
    assert st["pool:main:keys"] == str(2 * len(users))
    assert st["pool:main:differ"] == str(2 * len(moved))
    assert st["pool:sess:keys"] == str(len(sessions)) and st["pool:sess:differ"] == "0"
    samples = [v for k, v in st.items() if k.startswith("sample:")]
    assert 0 < len(samples) <= 8
    for line in samples:
        cmd, key, _, was, _, would = line.split(" ")
        assert key in moved
        assert would == "{%s}" % c.addr
        assert was == "{%s}" % [a, b][old.server(key)].addr

    # Placement only: the candidate's new server saw nothing, every value is live.
    direct = {m: raw_client(m).stats() for m in (a, b, c)}
    assert direct[c]["cmd_set"] == "0" and direct[c]["cmd_get"] == "0"
    assert int(direct[a]["curr_items"]) + int(direct[b]["curr_items"]) == len(users)

    # A candidate that does not load leaves the preview as it was.
    broken = tmp_path / "broken.lua"
    write_policy(broken, policy([a, b], s).replace('"sess" }', '"main" }'))
    rc, out, err = run_luagent("--preview", broken, "--pid-file", pid_file, "-p", lg.port,
                               "-c", live)
    assert rc == 1 and "did not load as a preview" in err, (out, err)
    assert 'preview of %s failed (nothing previewed changes)' % broken in lg.log()
    st = preview_stats(lg)
    assert st["preview_failures"] == "1" and st["preview_file"] == str(cand)

    # --preview --drop ends it; requests are no longer counted.
    rc, out, err = run_luagent("--preview", "--drop", "--pid-file", pid_file, "-p", lg.port,
                               "-c", live)
    assert rc == 0 and "preview ended" in out, err
    assert not os.path.exists(str(live) + ".preview")
    assert preview_stats(lg)["preview_loaded"] == "0"
    assert clients[0].call(b"get user:1\r\n", "get")
    assert "preview ended: asked to" in lg.log()


def test_reload_keeps_the_preview_and_promotion_ends_it(memcached, luagent, raw_client,
                                                        tmp_path):
    a, b, c, s = (memcached() for _ in range(4))
    live = tmp_path / "policy.lua"
    write_policy(live, policy([a, b], s))
    cand = tmp_path / "candidate.lua"
    write_policy(cand, policy([a, b, c], s))
    lg = luagent("-c", live)
    rc, out, err = run_luagent("--preview", cand, "-p", lg.port)    # the policy from stats
    assert rc == 0, err
    client = raw_client(lg)
    for i in range(50):
        client.call(b"get k:%d\r\n" % i, "get")
    assert preview_stats(lg)["preview_keys"] == "50"

    # An unrelated reload: the preview stays, its counts start over.
    write_policy(live, policy([a, b], s) + "\n-- a comment\n")
    rc, out, err = run_luagent("--reload", "-p", lg.port)
    assert rc == 0, err
    st = preview_stats(lg)
    assert st["preview_loaded"] == "1" and st["preview_keys"] == "0"
    client.call(b"get k:1\r\n", "get")
    assert preview_stats(lg)["preview_keys"] == "1"

    # Promotion: the candidate becomes the policy file, and a reload ends the preview.
    shutil.copy(str(cand), str(live))
    rc, out, err = run_luagent("--reload", "-p", lg.port)
    assert rc == 0, err
    wait_log(lg, "preview ended: the candidate is now the live policy", 1)
    assert preview_stats(lg)["preview_loaded"] == "0"
    assert not os.path.exists(str(live) + ".preview")
    assert client.call(b"set k:1 0 0 1\r\ny\r\n") == b"STORED\r\n"


def test_preview_needs_a_running_luagent(tmp_path):
    cand = tmp_path / "c.lua"
    cand.write_text("return nil\n")
    rc, out, err = run_luagent("--preview", cand, "-p", free_port())
    assert rc == 1 and "nothing answers stats" in err, err
    rc, out, err = run_luagent("--preview", cand, "--reload")
    assert rc == 2 and "--preview goes alone" in err, err
