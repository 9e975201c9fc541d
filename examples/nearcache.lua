-- Hot config keys served from each luagent's own memory.
--
-- Every front end reads the same few "cfg:" keys on nearly every page; they
-- all hash to one memcached server. lg.nearcache keeps the values of the keys
-- read more than hot_qps times a second in each worker, for at most ttl_ms,
-- so that server sees a handful of reads a second instead of all of them.
--
-- Staleness: a change made through this luagent is seen at once (it makes
-- every worker's copy stale). A change made through another luagent, or
-- straight to the server, is seen here at most ttl_ms later: the config
-- keys must tolerate half a second of staleness. `luagent --check` warns
-- about exactly this case. Sessions and everything else are not cached.
local lg = require "luagent"

local main = lg.pool{ name = "main", servers = { "127.0.0.1:21211", "127.0.0.1:21212" } }

return lg.policy{
    route = lg.prefix{
        ["cfg:"] = lg.nearcache{ to = main, ttl_ms = 500, max_items = 10000,
                                 max_bytes = "64m", hot_qps = 200 },
        default  = main,
    },
    tests = {
        { "get cfg:flags",  "main" },
        { "set cfg:flags",  "main" },
        { "get session:42", "main" },
    },
}
