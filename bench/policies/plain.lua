-- bench/policies/plain.lua: the benchmark's reference policy, one ketama pool
-- over the four memcached servers and nothing else (what -k -s ... gives).
-- A template: scripts/bench.sh replaces @PORT1@..@PORT4@ with the ports of the
-- servers it started and loads the copy with -c.
local lg = require "luagent"

local main = lg.pool{
    name    = "main",
    servers = { "127.0.0.1:@PORT1@", "127.0.0.1:@PORT2@",
                "127.0.0.1:@PORT3@", "127.0.0.1:@PORT4@" },
}

return lg.policy{
    route = main,
    tests = { { "get bench:1", "main" } },
}
