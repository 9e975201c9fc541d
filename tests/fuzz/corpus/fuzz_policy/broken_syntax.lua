-- --check must reject this file: a syntax error on the marked line.
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "127.0.0.1:1" } }
local x = = 1   -- ERROR LINE
return lg.policy{ route = main }
