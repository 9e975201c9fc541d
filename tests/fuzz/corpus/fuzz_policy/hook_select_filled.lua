-- A hook that picks a pool from each request attribute in turn; every pool
-- is a different memcached, so a test sees which branch a request took.
-- The @...@ placeholders are replaced by server lists when a test writes it.
local lg = require "luagent"

local main  = lg.pool{ name = "main",  servers = { "127.0.0.1:11211" } }
local unixp = lg.pool{ name = "unixp", servers = { "127.0.0.1:11212" } }
local addp  = lg.pool{ name = "addp",  servers = { "127.0.0.1:11211" } }
local delp  = lg.pool{ name = "delp",  servers = { "127.0.0.1:11211" } }
local exact = lg.pool{ name = "exact", servers = { "127.0.0.1:11211" } }
local sess  = lg.pool{ name = "sess",  servers = { "127.0.0.1:11211" } }
local img   = lg.pool{ name = "img",   servers = { "127.0.0.1:11211" } }
local long  = lg.pool{ name = "long",  servers = { "127.0.0.1:11211" } }

return lg.policy{
    route = lg.hook{
        routes = { main, unixp, addp, delp, exact, sess, img, long },
        fn = function(req)
            if req.client == "unix" then return unixp end
            if req.cmd == "add" then return addp end
            if req.op == "delete" then return delp end
            if req.key == "exact-key" then return exact end
            if req:has_prefix("sess:") then return sess end
            if req:prefix(":") == "img" then return img end
            if req.klen >= 40 then return long end
            return main
        end,
    },
    tests = {
        { "get sess:1",               "sess" },
        { "get img:1",                "img" },
        { "get img2:1",               "main" },
        { "add x",                    "addp" },
        { "delete sess:1",            "delp" },
        { "get exact-key",            "exact" },
        { "get " .. ("k"):rep(40),    "long" },
        { "get " .. ("k"):rep(39),    "main" },
    },
}
