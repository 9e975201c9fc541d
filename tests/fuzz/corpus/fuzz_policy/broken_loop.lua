-- --check must reject this file: a runaway loop (instruction limit).
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "127.0.0.1:1" } }
while true do end   -- ERROR LINE
return lg.policy{ route = main }
