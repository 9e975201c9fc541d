-- A policy whose own routing self-test is wrong: test 2 expects only pool
-- "a" for a write that all_sync sends to both pools. The load must fail.
-- @A@ / @B@ are replaced by server lists when the test writes the policy.
local lg = require "luagent"
local a = lg.pool{ name = "a", servers = @A@ }
local b = lg.pool{ name = "b", servers = @B@ }
return lg.policy{
    route = lg.prefix{ ["x:"] = lg.all_sync{ a, b }, default = a },
    tests = {
        { "get y:1", "a" },
        { "set x:1", { "a" } },
        { "get x:1", { "a", "b" } },
    },
}
