-- Route by how a client came in, and log slow requests.
-- Runs as-is against memcached on 127.0.0.1:21211 (main), :21212 (batch), :21213 (ops):
--   for p in 21211 21212 21213; do memcached -p $p -l 127.0.0.1 & done
--   luagent -D -p 11311 --listen batch=127.0.0.1:11312 -c examples/clients.lua
-- Batch jobs connect to port 11312 and get a pool of their own, so a bulk load cannot
-- evict the web tier's keys. With a mutual-TLS port (--tls-port, --tls-cert, --tls-key,
-- --tls-ca), a client whose certificate says CN=ops reaches the ops pool. Everyone else
-- gets main. Where a key goes now: `stats route get KEY` on either port.
local lg = require "luagent"

local main  = lg.pool{ name = "main",  servers = { "127.0.0.1:21211" } }
local batch = lg.pool{ name = "batch", servers = { "127.0.0.1:21212" } }
local ops   = lg.pool{ name = "ops",   servers = { "127.0.0.1:21213" } }

return lg.policy{
    route = lg.by_client{
        batch      = batch,     -- the --listen batch=ADDR:PORT listener
        ["cn:ops"] = ops,       -- a verified client certificate with CN=ops
        default    = main,      -- -p (tcp), --tls-port (tls), -f (unix)
    },
    settings = {
        log_slow_ms = 250,          -- log requests slower than 250 ms
        log_sample  = "1/10000",    -- and one request in 10,000
    },
    tests = {
        { "get page:1", "main" },
        { "set page:1", "batch", listener = "batch" },
        { "get cfg",    "ops",   listener = "tls", cn = "ops" },
        { "get cfg",    "main",  listener = "tls", cn = "someone" },
    },
}
