-- bench/policies/prefix.lua: the same placement as plain.lua, reached through
-- an lg.prefix node (declarative routing, no Lua per request). The benchmark's
-- keys ("bench:N") match the "bench:" entry; "sess:" goes to a second pool on
-- the same servers so the table has more than one entry.
-- A template: scripts/bench.sh replaces @PORT1@..@PORT4@.
local lg = require "luagent"

local servers = { "127.0.0.1:@PORT1@", "127.0.0.1:@PORT2@",
                  "127.0.0.1:@PORT3@", "127.0.0.1:@PORT4@" }
local main     = lg.pool{ name = "main",     servers = servers }
local sessions = lg.pool{ name = "sessions", servers = servers }

return lg.policy{
    route = lg.prefix{
        ["bench:"] = main,
        ["sess:"]  = sessions,
        default    = main,
    },
    tests = {
        { "get bench:1", "main" },
        { "get sess:1",  "sessions" },
        { "get other",   "main" },
    },
}
