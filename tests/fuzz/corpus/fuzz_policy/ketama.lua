-- Plain ketama over one fixed pool, no command-line servers needed.
-- Runs as-is against memcached on 127.0.0.1:21211 and 127.0.0.1:21212:
--   memcached -p 21211 -l 127.0.0.1 & memcached -p 21212 -l 127.0.0.1 &
--   luagent -D -p 11311 -c examples/ketama.lua
local lg = require "luagent"

local main = lg.pool{ name = "main", servers = { "127.0.0.1:21211", "127.0.0.1:21212" } }

return lg.policy{
    route = main,
    tests = {
        { "get user:1", "main" },
        { "set user:1", "main" },
    },
}
