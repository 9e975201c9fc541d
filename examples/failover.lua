-- Failover to a backup pool on error or timeout; with LUAGENT_MISS_FAILOVER=1
-- a read that misses in primary is also asked of backup.
-- Runs as-is against memcached on 127.0.0.1:21211, :21212 (primary) and :21213 (backup):
--   for p in 21211 21212 21213; do memcached -p $p -l 127.0.0.1 & done
--   luagent -D -p 11311 -c examples/failover.lua
local lg = require "luagent"

local primary = lg.pool{ name = "primary", servers = { "127.0.0.1:21211", "127.0.0.1:21212" },
                         timeout_ms = 200, connect_timeout_ms = 100,
                         failure_limit = 3, retry_after_ms = 2000 }
local backup  = lg.pool{ name = "backup",  servers = { "127.0.0.1:21213" }, timeout_ms = 200 }

return lg.policy{
    route = lg.failover{
        primary, backup,
        on     = { "error", "timeout" },   -- connection refused/reset, no reply in timeout_ms
        miss   = os.getenv("LUAGENT_MISS_FAILOVER") == "1",
        writes = "primary",                -- a failed write is reported, not redirected
    },
    tests = {
        { "get k", "primary" },
        { "set k", "primary" },
        { "get k", "backup", down = { "primary" } },     -- reads fail over...
        { "set k", {},       down = { "primary" } },     -- ...writes do not
    },
}
