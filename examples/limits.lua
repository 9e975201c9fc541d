-- A gutter for sessions, hedged reads over two config replicas, short-lived
-- scratch keys and a rate limit on a batch job's keys.
-- Runs as-is against memcached on 127.0.0.1:21211, :21212 (main), :21213
-- (gutter), :21214 and :21215 (config replicas):
--   for p in 21211 21212 21213 21214 21215; do memcached -p $p -l 127.0.0.1 & done
--   luagent -D -p 11311 -c examples/limits.lua
local lg = require "luagent"

local main   = lg.pool{ name = "main", servers = { "127.0.0.1:21211", "127.0.0.1:21212" },
                        timeout_ms = 300, connect_timeout_ms = 100,
                        failure_limit = 2, retry_after_ms = 2000 }
local gutter = lg.pool{ name = "gutter", servers = { "127.0.0.1:21213" }, timeout_ms = 300 }
local cfg_a  = lg.pool{ name = "cfg_a", servers = { "127.0.0.1:21214" }, timeout_ms = 300 }
local cfg_b  = lg.pool{ name = "cfg_b", servers = { "127.0.0.1:21215" }, timeout_ms = 300 }

-- While a main server is failing, its keys are read from and written to the
-- gutter, where they live 10 s at most: once main is back, what the gutter
-- took meanwhile fades instead of coming back stale later.
local sessions = lg.failover{ main, gutter, writes = "failover", gutter_ttl = 10 }

-- Config lives on both replicas. A read cfg_a has not answered within 20 ms
-- is also sent to cfg_b; the first good reply wins.
local cfg = lg.by_op{
    read    = lg.all_fastest{ cfg_a, cfg_b, wait_ms = 20 },
    default = lg.all_sync{ cfg_a, cfg_b },
}

return lg.policy{
    route = lg.prefix{
        ["cfg:"]   = cfg,
        -- whatever exptime a client asks for, scratch keys live 60 s at most
        ["tmp:"]   = lg.ttl{ to = main, max = 60 },
        -- a batch job gets 500 requests a second, all workers together
        ["batch:"] = lg.ratelimit{ to = main, rate = 500, burst = 100, scope = "global" },
        default    = sessions,
    },
    tests = {
        { "get sess:1",  "main" },
        { "set sess:1",  "gutter", down = "main" },         -- capped at 10 s there
        { "get cfg:x",   "cfg_a" },                         -- cfg_b only if cfg_a is slow
        { "get cfg:x",   "cfg_b", timeout = "cfg_a" },
        { "set cfg:x",   { "cfg_a", "cfg_b" } },
        { "set tmp:1",   "main" },
        { "get batch:1", "main" },
    },
}
