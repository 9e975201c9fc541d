-- bench/policies/hook_cached.lua: hook.lua with the per-prefix decision cache
-- (cache = "prefix"): the hook runs once per distinct prefix, later requests
-- with that prefix are routed by the C cache.
-- A template: scripts/bench.sh replaces @PORT1@..@PORT4@.
local lg = require "luagent"

local servers = { "127.0.0.1:@PORT1@", "127.0.0.1:@PORT2@",
                  "127.0.0.1:@PORT3@", "127.0.0.1:@PORT4@" }
local main     = lg.pool{ name = "main",     servers = servers }
local sessions = lg.pool{ name = "sessions", servers = servers }

local by_prefix = { bench = main, sess = sessions }    -- an upvalue, not a global

return lg.policy{
    route = lg.hook{
        routes = { main, sessions },
        cache  = "prefix", delim = ":",
        fn = function(req)
            return by_prefix[req:prefix(":")] or main
        end,
    },
    tests = {
        { "get bench:1", "main" },
        { "get sess:1",  "sessions" },
        { "get other",   "main" },
    },
}
