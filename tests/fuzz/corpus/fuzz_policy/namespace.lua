-- Key namespacing: static prefix rewrites (no Lua per request), or, with
-- LUAGENT_TENANTS=1, a per-tenant namespace chosen by a Lua hook
-- ("acme/123" is stored as "t1:123"). Clients always see their own keys.
-- Runs as-is against memcached on 127.0.0.1:21211, :21212 (main) and :21213 (scratch):
--   for p in 21211 21212 21213; do memcached -p $p -l 127.0.0.1 & done
--   luagent -D -p 11311 -c examples/namespace.lua
local lg = require "luagent"

local main    = lg.pool{ name = "main",    servers = { "127.0.0.1:21211", "127.0.0.1:21212" } }
local scratch = lg.pool{ name = "scratch", servers = { "127.0.0.1:21213" } }

-- Static rewrites: no Lua at request time.
local static = lg.prefix{
    ["u:"]   = lg.rewrite{ strip = "u:", add = "user:", to = main },   -- legacy rename
    ["tmp:"] = lg.rewrite{ add = "v3:", to = scratch },                -- version bump
    default  = lg.rewrite{ add = "app1:", to = main },                 -- app namespace
}

-- Dynamic variant: namespace per tenant id, decided in Lua.
local tenants = { acme = "t1:", globex = "t2:" }
local unknown = lg.error{ msg = "unknown tenant" }    -- built at load time, returned later
local dynamic = lg.hook{
    routes = { main, unknown },
    -- no cache: the new key depends on the whole key
    fn = function(req)
        local t  = req:prefix("/")
        local ns = t and tenants[t]
        if not ns then return unknown end
        return main, ns .. req.key:sub(#t + 2)
    end,
}

local tenant_mode = os.getenv("LUAGENT_TENANTS") == "1"
return lg.policy{
    route = tenant_mode and dynamic or static,
    tests = tenant_mode and {
        { "get acme/123",  "main" },
        { "get nobody/1",  "error" },
    } or {
        { "get u:42",      "main" },
        { "get tmp:x",     "scratch" },
        { "get other",     "main" },
    },
}
