-- Builds its pools from the command line (-s, -b, -k) through lg.args.
-- "args:" keys answer SERVER_ERROR with what the script saw, so a test can
-- read lg.args back; "b:" keys go to the -b pool, the rest to the -s pool.
local lg = require "luagent"
local a = lg.args

local main   = lg.pool{ name = "main",   servers = a.servers,
                        dist = a.ketama and "ketama" or "modula" }
local backup = lg.pool{ name = "backup", servers = a.backups }
local seen   = lg.error{ msg = string.format("servers=%s backups=%s ketama=%s",
                                             table.concat(a.servers, ","),
                                             table.concat(a.backups, ","),
                                             tostring(a.ketama)) }
return lg.policy{
    route = lg.prefix{ ["args:"] = seen, ["b:"] = backup, default = main },
    tests = {
        { "get b:1",    "backup" },
        { "get user:1", "main" },
    },
}
