-- --check must reject this file: it builds a pool but returns no policy.
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "127.0.0.1:1" } }
lg.policy{ route = main }
