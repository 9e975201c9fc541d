-- A hook with a decision cache (@CACHE@: "prefix" or "prefix+op"):
-- "sess:" keys go to pool sess, everything else to pool main.
local lg = require "luagent"

local main = lg.pool{ name = "main", servers = @MAIN@ }
local sess = lg.pool{ name = "sess", servers = @SESS@ }

return lg.policy{
    route = lg.hook{
        routes = { main, sess },
        cache  = @CACHE@,
        delim  = ":",
        fn = function(req)
            if req:prefix(":") == "sess" then return sess end
            return main
        end,
    },
}
