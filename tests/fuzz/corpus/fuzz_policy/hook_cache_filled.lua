-- A hook with a decision cache ({ "127.0.0.1:11211" }: "prefix" or "prefix+op"):
-- "sess:" keys go to pool sess, everything else to pool main.
local lg = require "luagent"

local main = lg.pool{ name = "main", servers = { "127.0.0.1:11211" } }
local sess = lg.pool{ name = "sess", servers = { "127.0.0.1:11211" } }

return lg.policy{
    route = lg.hook{
        routes = { main, sess },
        cache = "prefix",
        delim  = ":",
        fn = function(req)
            if req:prefix(":") == "sess" then return sess end
            return main
        end,
    },
}
