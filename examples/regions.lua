-- Sessions pool, plus configuration keys shared by every front end:
-- "cfg:" keys are read from the local region (falling back to the other one)
-- and written to both regions, so an update from any front end is seen by all.
-- Runs as-is against memcached on 127.0.0.1:21211..21216 (main: 21211-21212,
-- sessions: 21213, cfg_east: 21214, cfg_west: 21215-21216):
--   for p in 21211 21212 21213 21214 21215 21216; do memcached -p $p -l 127.0.0.1 & done
--   LUAGENT_REGION=east luagent -D -p 11311 -c examples/regions.lua
local lg = require "luagent"

local here  = os.getenv("LUAGENT_REGION") or "east"
local there = (here == "east") and "west" or "east"

local main     = lg.pool{ name = "main",     servers = { "127.0.0.1:21211", "127.0.0.1:21212" } }
local sessions = lg.pool{ name = "sessions", servers = { "127.0.0.1:21213" } }
local cfg = {
    east = lg.pool{ name = "cfg_east", servers = { "127.0.0.1:21214" } },
    west = lg.pool{ name = "cfg_west", servers = { "127.0.0.1:21215", "127.0.0.1:21216" },
                    timeout_ms = 300 },
}

local cfg_route = lg.by_op{
    read    = lg.failover{ cfg[here], cfg[there] },     -- local first
    default = lg.all_sync{ cfg[here], cfg[there] },     -- writes, deletes, incr: everywhere
}

return lg.policy{
    route = lg.prefix{
        ["session:"] = sessions,
        ["cfg:"]     = cfg_route,
        default      = main,
    },
    tests = {
        { "get session:42", "sessions" },
        { "get cfg:flags",  "cfg_" .. here },
        { "set cfg:flags",  { "cfg_east", "cfg_west" } },
        { "get user:7",     "main" },
        -- the same lines with a region down: reads move, writes reach the live one
        { "get cfg:flags",  "cfg_" .. there, down = { "cfg_" .. here } },
        { "set cfg:flags",  { "cfg_" .. here }, down = { "cfg_" .. there } },
    },
}
