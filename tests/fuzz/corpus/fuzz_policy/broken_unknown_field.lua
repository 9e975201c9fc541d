-- --check must reject this file: a misspelt field, with a suggestion.
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { "127.0.0.1:1" },   -- ERROR LINE
                      timout_ms = 200 }
return lg.policy{ route = main }
