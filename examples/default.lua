-- Default policy: behaves like magent with the same -s/-b/-k flags.
--
-- luagent runs this built-in copy when started without -c, so magent-style
-- command lines keep working:
--   luagent -p 11211 -s 127.0.0.1:21211 -s 127.0.0.1:21212 [-k] [-b 127.0.0.1:21213]
-- -s servers form the pool "main" (ketama with -k, else magent's hash modulo
-- the number of servers); -b servers form the pool "backup". With
-- --backend-tls-ca FILE both pools talk TLS, verified against that CA.
local lg = require "luagent"
local a  = lg.args

local dist = a.ketama and "ketama" or "modula"
local tls  = a.backend_tls_ca and { ca = a.backend_tls_ca } or nil
local main = lg.pool{ name = "main", servers = a.servers, dist = dist, tls = tls }

if #a.backups == 0 then
    return lg.policy{ route = main }
end

-- With -b: writes reach main and backup (the client gets main's reply);
-- reads fall back to backup when main errs, times out or misses.
local backup = lg.pool{ name = "backup", servers = a.backups, dist = dist, tls = tls }
return lg.policy{
    route = lg.by_op{
        read    = lg.failover{ main, backup, miss = true },
        default = lg.all_initial{ main, backup },
    },
}
