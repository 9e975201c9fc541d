-- A hook that rewrites keys dynamically: "acct/<id>" is stored as "a:<id>"
-- in pool main; anything else goes, unchanged, to pool other.
local lg = require "luagent"

local main  = lg.pool{ name = "main",  servers = @MAIN@ }
local other = lg.pool{ name = "other", servers = @OTHER@ }

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
