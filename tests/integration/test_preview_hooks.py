"""
The live preview of a candidate whose route is a Lua hook: each worker calls
the candidate's hook in its own VM of the candidate, as it would once live.
"""
from test_policy import run_luagent
from test_preview import preview_stats
from test_reload import poll, write_policy

LIVE = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = { "%s" } }
return lg.policy{ route = a }
"""

HOOKED = """
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = { "%s" } }
local b = lg.pool{ name = "b", servers = { "%s" } }
return lg.policy{
    route = lg.hook{ routes = { a, b }, fn = function(req)
        if req:has_prefix("to-b:") then return b end
        return a
    end },
}
"""


def test_preview_runs_the_candidates_hook_on_every_worker(memcached, luagent, raw_client,
                                                          tmp_path):
    m1, m2 = memcached(), memcached()
    live = tmp_path / "policy.lua"
    write_policy(live, LIVE % m1.addr)
    cand = tmp_path / "hooked.lua"
    write_policy(cand, HOOKED % (m1.addr, m2.addr))
    lg = luagent("-c", live, "-t", "2")
    rc, out, err = run_luagent("--preview", cand, "-p", lg.port)
    assert rc == 0, err
    clients = [raw_client(lg) for _ in range(4)]      # spread over both workers
    for i, c in enumerate(clients):
        c.call(b"get to-b:%d stay:%d\r\n" % (i, i), "get")
    st = poll(lambda: (lambda s: s if s["preview_keys"] == "8" else None)(preview_stats(lg)),
              "8 keys previewed", lg)
    assert st["preview_differ"] == "4", st
    assert st["prefix:*:differ"] == "4"
    samples = sorted(v for k, v in st.items() if k.startswith("sample:"))
    assert all(s.startswith("get to-b:") and s.endswith("candidate {%s}" % m2.addr)
               for s in samples), samples
