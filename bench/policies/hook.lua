-- bench/policies/hook.lua: the routing of prefix.lua decided by Lua on every
-- request (an lg.hook without a decision cache): the cost of one hook call.
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
