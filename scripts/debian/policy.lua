-- luagent's policy (the systemd unit runs: luagent -c /etc/luagent/policy.lua).
--
-- Put your memcached servers in the pool below: the addresses given are
-- placeholders from the documentation range (192.0.2.0/24), which no real
-- host answers. Then check the file and start the service:
--
--   luagent --check /etc/luagent/policy.lua
--   systemctl enable --now luagent
--
-- After an edit, `systemctl reload luagent` checks the policy and reloads it
-- without dropping a connection. More policies (prefixes, failover,
-- replication, hooks) are in /usr/share/doc/luagent/examples/, the API in
-- luagent(1).
local lg = require "luagent"

local main = lg.pool{
    name    = "main",
    servers = { "192.0.2.1:11211", "192.0.2.2:11211" },
    dist    = "ketama",
}

return lg.policy{
    route = main,
    tests = {
        { "get user:1", "main" },
        { "set user:1", "main" },
    },
}
