-- Moving keys from an old pool to a new one without a cold start:
-- "hot:" keys are served from the new pool, filled from the old one on a
-- miss; everything else stays on the old pool while 5% of keys (always the
-- same ones) are mirrored to the new pool to warm it.
-- Runs as-is against memcached on 127.0.0.1:21211, :21212 (old) and
-- 127.0.0.1:21213, :21214, :21215 (new):
--   for p in 21211 21212 21213 21214 21215; do memcached -p $p -l 127.0.0.1 & done
--   luagent -D -p 11311 -c examples/migrate.lua
local lg = require "luagent"

local old = lg.pool{ name = "old", servers = { "127.0.0.1:21211", "127.0.0.1:21212" } }
local new = lg.pool{ name = "new", servers = { "127.0.0.1:21213", "127.0.0.1:21214",
                                              "127.0.0.1:21215" } }

return lg.policy{
    route = lg.prefix{
        -- Step 2 for hot keys: serve from new, fill it from old on a miss.
        ["hot:"] = lg.warmup{ cold = new, warm = old, exptime = 600 },
        -- Step 1 for everything else: old stays authoritative, 5% mirrored to new.
        default  = lg.shadow{ main = old, shadow = new, fraction = 0.05, ops = "all" },
    },
    tests = {
        { "get hot:1",   "new" },
        { "get other:1", "old" },
        { "get hot:1",   "old", miss = { "new" } },     -- a cold miss is read from old
    },
}
