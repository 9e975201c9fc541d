-- A hook that rewrites keys dynamically: "acct/<id>" is stored as "a:<id>"
-- in pool main; anything else goes, unchanged, to pool other.
local lg = require "luagent"

local main  = lg.pool{ name = "main",  servers = { "127.0.0.1:11211" } }
local other = lg.pool{ name = "other", servers = { "127.0.0.1:11211" } }

return lg.policy{
    route = lg.hook{
        routes = { main, other },
        fn = function(req)
            if req:prefix("/") == "acct" then
                return main, "a:" .. req.key:sub(6)
            end
            return other
        end,
    },
    tests = {
        { "get acct/1", "main" },
        { "get x",      "other" },
    },
}
