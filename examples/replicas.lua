-- Three replicas of the same data: every write goes to all three, and each
-- read goes to one of them, always the same one for a key (by = "key"), or
-- to another live one while it is marked down.
-- Runs as-is against memcached on 127.0.0.1:21211, :21212 and :21213:
--   for p in 21211 21212 21213; do memcached -p $p -l 127.0.0.1 & done
--   luagent -D -p 11311 -c examples/replicas.lua
local lg = require "luagent"

local function replica(name, server)
    return lg.pool{ name = name, servers = { server }, failure_limit = 1,
                    retry_after_ms = 1000, retry_max_ms = 30000 }
end

local a = replica("replica_a", "127.0.0.1:21211")
local b = replica("replica_b", "127.0.0.1:21212")
local c = replica("replica_c", "127.0.0.1:21213")

return lg.policy{
    route = lg.by_op{
        read    = lg.balance{ a, b, c, by = "key" },
        default = lg.all_sync{ a, b, c },
    },
    tests = {
        { "get user:1", "replica_c" },      -- the key's replica, all up
        { "set user:1", { "replica_a", "replica_b", "replica_c" } },
    },
}
