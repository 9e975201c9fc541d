-- Request coalescing for hot keys: while a get of a "cfg:" key (feature flags,
-- settings every page reads) is out to memcached, identical gets that arrive at
-- the same luagent worker wait for its reply instead of going to the server too.
-- A miss, or a slow server, then costs the server one get per worker, not one
-- per client. Writes are never coalesced, and a write to a key makes the next
-- get of it go to the server after the write.
-- Runs as-is against memcached on 127.0.0.1:21211 and :21212:
--   for p in 21211 21212; do memcached -p $p -l 127.0.0.1 & done
--   luagent -D -p 11311 -c examples/coalesce.lua
local lg = require "luagent"

local main = lg.pool{ name = "main", servers = { "127.0.0.1:21211", "127.0.0.1:21212" },
                      timeout_ms = 300 }

return lg.policy{
    route = lg.prefix{
        ["cfg:"] = lg.coalesce{ to = main },   -- hot, read by everyone
        default  = main,                       -- the rest: no table look-up at all
    },
    tests = {
        { "get cfg:flags",  "main" },
        { "set cfg:flags",  "main" },
        { "get user:42",    "main" },
    },
}
