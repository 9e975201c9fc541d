-- A hook that fails in several ways, chosen by key prefix (the load-time dry
-- run asks "get luagent:dry-run", which takes the healthy path):
--   boom:  raises a Lua error
--   none:  returns nothing
--   str:   returns a string, not a route
--   mk:    calls a constructor at request time
--   mktail: the same, as a tail call (return lg.error{...})
-- @SETTINGS@ is replaced by {} or by a fallback setting.
local lg = require "luagent"

local main     = lg.pool{ name = "main",     servers = @MAIN@ }
local fallback = lg.pool{ name = "fallback", servers = @FALLBACK@ }

local hook = lg.hook{
    routes = { main },
    fn = function(req)   -- LINE fn
        if req:has_prefix("boom:") then
            error("kaboom")   -- LINE boom
        end
        if req:has_prefix("none:") then return nil end
        if req:has_prefix("str:") then return "main" end
        if req:has_prefix("mk:") then
            local late = lg.pool{ name = "late", servers = { "127.0.0.1:1" } }   -- LINE mk
            return late
        end
        if req:has_prefix("mktail:") then
            return lg.error{ msg = "built too late" }   -- LINE mktail
        end
        return main
    end,
}

return lg.policy{
    route    = hook,
    settings = @SETTINGS@,
}
