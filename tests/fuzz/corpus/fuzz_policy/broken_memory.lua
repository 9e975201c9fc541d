-- --check must reject this file: it allocates without bound (memory limit).
local lg = require "luagent"
local hog = {}
for i = 1, 1e9 do hog[i] = string.rep("x", 4096) .. i end   -- ERROR LINE
return lg.policy{ route = lg.pool{ name = "main", servers = { "127.0.0.1:1" } } }
