-- --check must reject this file: a runtime error while building.
local lg = require "luagent"
local pools = nil
local main = lg.pool{ name = "main", servers = pools.main }   -- ERROR LINE
return lg.policy{ route = main }
