-- A gutter made of the main servers: when a key's server fails, the request
-- goes to the gutter pool, which places keys with a seed of its own, so the
-- failed server's keys spread over the others rather than landing on it
-- again. A server that keeps failing is retried less and less often (up to
-- 30 s), and one that comes back is flushed first, so that the values it
-- holds from before its outage, overwritten meanwhile in the gutter, never
-- come back stale.
-- Runs as-is against memcached on 127.0.0.1:21211, :21212 and :21213:
--   for p in 21211 21212 21213; do memcached -p $p -l 127.0.0.1 & done
--   luagent -D -p 11311 -c examples/gutter.lua
local lg = require "luagent"

local servers = { "127.0.0.1:21211", "127.0.0.1:21212", "127.0.0.1:21213" }

local main = lg.pool{ name = "main", servers = servers, timeout_ms = 200,
                      failure_limit = 2, retry_after_ms = 1000, retry_max_ms = 30000,
                      rejoin = "flush", rejoin_after_ms = 0 }
local gutter = lg.pool{ name = "gutter", servers = servers, timeout_ms = 200, seed = "gutter" }

return lg.policy{
    route = lg.failover{ main, gutter, writes = "failover" },
    tests = {
        { "get user:1", "main" },
        { "set user:1", "main" },
    },
}
