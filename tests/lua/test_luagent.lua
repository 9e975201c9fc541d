-- Tests for lua/luagent.lua, the build-time half of the policy API.
-- Run from the repository root:  luajit tests/lua/test_luagent.lua
-- Prints "ok N - ..." / "not ok N - ...", then "P passed, F failed"; exits 1 on failure.

package.path = "lua/?.lua;" .. package.path
local lg = require "luagent"

local SRC = debug.getinfo(1, "S").short_src
local count, passed, failed = 0, 0, 0

local function check(cond, name, detail)
    count = count + 1
    if cond then
        passed = passed + 1
        print("ok " .. count .. " - " .. name)
    else
        failed = failed + 1
        print("not ok " .. count .. " - " .. name .. (detail and (": " .. detail) or ""))
    end
end

local function show(v)
    if type(v) == "string" then return string.format("%q", v) end
    return tostring(v)
end

local function deep_eq(a, b)
    if a == b then return true end
    if type(a) ~= "table" or type(b) ~= "table" then return false end
    for k, v in pairs(a) do
        if not deep_eq(v, b[k]) then return false end
    end
    for k in pairs(b) do
        if a[k] == nil then return false end
    end
    return true
end

local function eq(got, want, name)
    check(deep_eq(got, want), name, "got " .. show(got) .. ", want " .. show(want))
end

-- The error f raises, or nil.
local function err_of(f)
    local ok, e = pcall(f)
    if ok then return nil end
    return e
end

-- f must be a one-line function calling the constructor on its first line:
-- the error must be exactly "<this file>:<that line>: <msg>".
local function fails(name, msg, f)
    local line = debug.getinfo(f, "S").linedefined
    local want = SRC .. ":" .. line .. ": " .. msg
    local got = err_of(f)
    check(got == want, name, "got " .. show(got) .. ", want " .. show(want))
end

local LOCAL = "127.0.0.1"
local function P(name, n)          -- a small pool on 127.0.0.1
    local servers = {}
    for i = 1, (n or 1) do servers[i] = LOCAL .. ":" .. (21210 + i) end
    return lg.pool{ name = name, servers = servers }
end

---------------------------------------------------------------------------
-- module basics
---------------------------------------------------------------------------

check(type(lg) == "table" and package.loaded.luagent == lg, "require returns the module")
eq(lg.version, "0.1.0", "lg.version")
eq(lg.ops, { "read", "write", "delete", "arith", "touch" }, "lg.ops")
eq(lg._phase, "load", "phase defaults to load")
eq(lg.args, { servers = {}, backups = {}, ketama = false, extra = {} }, "default lg.args")
check(type(lg.Route) == "table" and type(lg.Policy) == "table", "lg.Route and lg.Policy exist")
check(not lg.is_route({}) and not lg.is_route("x") and not lg.is_route(nil),
      "is_route rejects non-routes")

---------------------------------------------------------------------------
-- lg.pool
---------------------------------------------------------------------------

do
    local input = { "10.0.0.1", "10.0.0.2:11212", "10.0.0.3:11213:5",
                    "10.0.0.4:11214:2 server4", { host = "h5" },
                    { host = "h6", port = 7, weight = 3, name = "six" }, "[::1]:11215",
                    "  10.0.0.8:11216  " }
    local p = lg.pool{ name = "main", servers = input }
    check(lg.is_route(p) and getmetatable(p) == lg.Route, "pool is a route")
    eq(p._type, "pool", "pool _type")
    eq(p._where, SRC .. ":" .. (debug.getinfo(1, "l").currentline - 3), "pool _where")
    eq(p.name, "main", "pool name")
    eq(p.dist, "ketama", "pool dist default")
    eq(p.hash, "md5", "pool hash default for ketama")
    eq(p.hash_tag, nil, "pool hash_tag default")
    eq(p.timeout_ms, 1000, "pool timeout_ms default")
    eq(p.connect_timeout_ms, 500, "pool connect_timeout_ms default")
    eq(p.max_idle, 20, "pool max_idle default")
    eq(p.failure_limit, 3, "pool failure_limit default")
    eq(p.retry_after_ms, 1000, "pool retry_after_ms default")
    eq(p.eject, false, "pool eject default")
    eq(p.servers, {
        { host = "10.0.0.1", port = 11211, weight = 1 },
        { host = "10.0.0.2", port = 11212, weight = 1 },
        { host = "10.0.0.3", port = 11213, weight = 5 },
        { host = "10.0.0.4", port = 11214, weight = 2, name = "server4" },
        { host = "h5", port = 11211, weight = 1 },
        { host = "h6", port = 7, weight = 3, name = "six" },
        { host = "::1", port = 11215, weight = 1 },
        { host = "10.0.0.8", port = 11216, weight = 1 },
    }, "server strings and tables normalised")
    check(p.servers ~= input and input[1] == "10.0.0.1" and input[5].port == nil,
          "the caller's server list is not modified")

    local m = lg.pool{ name = "m", servers = { "a:1" }, dist = "modula" }
    eq(m.hash, "djb", "pool hash default for modula")
    local q = lg.pool{ name = "q", servers = { "a:1" }, dist = "modula", hash = "fnv1a_64",
                       hash_tag = "{}", timeout_ms = 200, connect_timeout_ms = 100,
                       max_idle = 0, failure_limit = 1, retry_after_ms = 0, eject = true }
    eq({ q.dist, q.hash, q.hash_tag, q.timeout_ms, q.connect_timeout_ms, q.max_idle,
         q.failure_limit, q.retry_after_ms, q.eject },
       { "modula", "fnv1a_64", "{}", 200, 100, 0, 1, 0, true }, "pool explicit fields kept")
    local all_ok = true
    for _, h in ipairs({ "md5", "fnv1a_64", "fnv1_64", "fnv1a_32", "fnv1_32", "crc32",
                         "crc32a", "murmur", "jenkins", "one_at_a_time", "hsieh", "djb" }) do
        local ok = pcall(lg.pool, { name = "h", servers = { "a" }, hash = h })
        all_ok = all_ok and ok
    end
    check(all_ok, "every documented hash is accepted")
    eq(lg.pool{ name = "w", servers = { "a:1:1000000" } }.servers[1].weight, 1000000,
       "large weight accepted")
end

fails("pool: unknown field with suggestion",
      "lg.pool: unknown field 'timout_ms' (did you mean 'timeout_ms'?)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, timout_ms = 5 } end)
fails("pool: unknown field, transposition suggestion",
      "lg.pool: unknown field 'nmae' (did you mean 'name'?)",
      function() local _ = lg.pool{ nmae = "p", servers = { "a" } } end)
fails("pool: unknown field, prefix suggestion",
      "lg.pool: unknown field 'connect' (did you mean 'connect_timeout_ms'?)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, connect = 5 } end)
fails("pool: unknown field without suggestion",
      "lg.pool: unknown field 'zzzzzz'",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, zzzzzz = 5 } end)
fails("pool: positional value",
      "lg.pool: unexpected positional value at [1] (fields are named: field = value)",
      function() local _ = lg.pool{ "a:1", name = "p", servers = { "a" } } end)
fails("pool: missing name", "lg.pool: missing required field 'name'",
      function() local _ = lg.pool{ servers = { "a" } } end)
fails("pool: empty name", "lg.pool: field 'name' must be a non-empty string (got '')",
      function() local _ = lg.pool{ name = "", servers = { "a" } } end)
fails("pool: name wrong type", "lg.pool: field 'name' must be a non-empty string (got number)",
      function() local _ = lg.pool{ name = 1, servers = { "a" } } end)
fails("pool: name with a space",
      "lg.pool: field 'name' must not contain spaces or control characters (got 'a b')",
      function() local _ = lg.pool{ name = "a b", servers = { "a" } } end)
fails("pool: missing servers", "lg.pool: missing required field 'servers'",
      function() local _ = lg.pool{ name = "p" } end)
fails("pool: empty servers", "lg.pool: field 'servers' must be a non-empty list",
      function() local _ = lg.pool{ name = "p", servers = {} } end)
fails("pool: servers wrong type", "lg.pool: field 'servers' must be a non-empty list (got string)",
      function() local _ = lg.pool{ name = "p", servers = "10.0.0.1:1" } end)
fails("pool: servers not a list", "lg.pool: field 'servers' must be a non-empty list",
      function() local _ = lg.pool{ name = "p", servers = { a = "10.0.0.1" } } end)
fails("pool: bad port", "lg.pool: servers[2]: bad port in '10.0.0.1:x'",
      function() local _ = lg.pool{ name = "p", servers = { "a", "10.0.0.1:x" } } end)
fails("pool: port out of range", "lg.pool: servers[1]: bad port in 'a:65536'",
      function() local _ = lg.pool{ name = "p", servers = { "a:65536" } } end)
fails("pool: port zero", "lg.pool: servers[1]: bad port in 'a:0'",
      function() local _ = lg.pool{ name = "p", servers = { "a:0" } } end)
fails("pool: empty port", "lg.pool: servers[1]: bad port in 'a:'",
      function() local _ = lg.pool{ name = "p", servers = { "a:" } } end)
fails("pool: SRV name with an empty label",
      "lg.pool: servers[1]: bad SRV name in 'srv:_m._tcp..x' (like \"srv:_memcache._tcp.example.com\")",
      function() local _ = lg.pool{ name = "p", servers = { "srv:_m._tcp..x" } } end)
fails("pool: SRV name missing", "lg.pool: servers[1]: bad SRV name in 'srv:' "
      .. "(like \"srv:_memcache._tcp.example.com\")",
      function() local _ = lg.pool{ name = "p", servers = { "srv:" } } end)
fails("pool: SRV weight zero", "lg.pool: servers[1]: bad weight in 'srv:_m._tcp.x:0'",
      function() local _ = lg.pool{ name = "p", servers = { "srv:_m._tcp.x:0" } } end)
fails("pool: SRV name twice", "lg.pool: servers[2]: server srv:_m._tcp.x is listed twice "
      .. "(also servers[1])",
      function() local _ = lg.pool{ name = "p", servers = { "srv:_m._tcp.x", "srv:_m._tcp.x:2" } } end)
do
    local p = lg.pool{ name = "p", servers = { "srv:_memcache._tcp.c.example:3", "a:1" } }
    eq(p.servers[1], { srv = "_memcache._tcp.c.example", weight = 3 }, "pool: SRV name parsed")
end
fails("policy: resolver without a port",
      "lg.policy: field 'settings.resolver' must be a nameserver \"ip:port\" like "
      .. "\"127.0.0.1:53\" (got '10.0.0.2')",
      function() local _ = lg.policy{ route = lg.pool{ name = "p", servers = { "a" } },
                                      settings = { resolver = "10.0.0.2" } } end)
fails("policy: resolve_every_s negative",
      "lg.policy: field 'settings.resolve_every_s' must be between 0 and 86400 (got -1)",
      function() local _ = lg.policy{ route = lg.pool{ name = "p", servers = { "a" } },
                                      settings = { resolve_every_s = -1 } } end)
fails("pool: bad weight", "lg.pool: servers[1]: bad weight in 'a:1:0'",
      function() local _ = lg.pool{ name = "p", servers = { "a:1:0" } } end)
fails("pool: weight not a number", "lg.pool: servers[1]: bad weight in 'a:1:w'",
      function() local _ = lg.pool{ name = "p", servers = { "a:1:w" } } end)
fails("pool: too many colons", "lg.pool: servers[1]: too many ':' in 'a:1:2:3'",
      function() local _ = lg.pool{ name = "p", servers = { "a:1:2:3" } } end)
fails("pool: missing host", "lg.pool: servers[1]: missing host in ':11211'",
      function() local _ = lg.pool{ name = "p", servers = { ":11211" } } end)
fails("pool: name with spaces", "lg.pool: servers[1]: bad name in 'a:1:1 b c' (names have no spaces)",
      function() local _ = lg.pool{ name = "p", servers = { "a:1:1 b c" } } end)
fails("pool: bad IPv6", "lg.pool: servers[1]: bad IPv6 address in '[::1'",
      function() local _ = lg.pool{ name = "p", servers = { "[::1" } } end)
fails("pool: server entry wrong type",
      "lg.pool: servers[1] must be a string \"host:port\" or a table {host=, port=} (got number)",
      function() local _ = lg.pool{ name = "p", servers = { 11211 } } end)
fails("pool: server table unknown field",
      "lg.pool: servers[1]: unknown field 'prot' (did you mean 'port'?)",
      function() local _ = lg.pool{ name = "p", servers = { { host = "a", prot = 1 } } } end)
fails("pool: server table missing host", "lg.pool: servers[1]: missing required field 'host'",
      function() local _ = lg.pool{ name = "p", servers = { { port = 1 } } } end)
fails("pool: server table bad port",
      "lg.pool: servers[1]: field 'port' must be between 1 and 65535 (got 70000)",
      function() local _ = lg.pool{ name = "p", servers = { { host = "a", port = 70000 } } } end)
fails("pool: server table port wrong type",
      "lg.pool: servers[1]: field 'port' must be an integer (got string)",
      function() local _ = lg.pool{ name = "p", servers = { { host = "a", port = "1" } } } end)
fails("pool: duplicate server",
      "lg.pool: servers[3]: server a:1 is listed twice (also servers[1])",
      function() local _ = lg.pool{ name = "p", servers = { "a:1", "b:1", { host = "a", port = 1 } } } end)
fails("pool: duplicate server name",
      "lg.pool: servers[2]: server name 's' is used twice (also servers[1])",
      function() local _ = lg.pool{ name = "p", servers = { "a:1:1 s", "b:1:1 s" } } end)
fails("pool: bad dist",
      "lg.pool: field 'dist' must be 'ketama' or 'modula' (got 'ring')",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, dist = "ring" } end)
fails("pool: bad hash",
      "lg.pool: field 'hash' must be 'md5', 'fnv1a_64', 'fnv1_64', 'fnv1a_32', 'fnv1_32', " ..
      "'crc32', 'crc32a', 'murmur', 'jenkins', 'one_at_a_time', 'hsieh' or 'djb' (got 'sha1')",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, hash = "sha1" } end)
fails("pool: bad hash_tag",
      "lg.pool: field 'hash_tag' must be a string of exactly 2 characters, like '{}' (got '{')",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, hash_tag = "{" } end)
do
    local p = lg.pool{ name = "p", servers = { "a" } }
    eq(p.tls, nil, "pool tls default: plain TCP")
    p = lg.pool{ name = "p", servers = { "a" }, tls = { ca = "ca.pem", sni = "cache.example" } }
    eq(p.tls, { ca = "ca.pem", sni = "cache.example", verify = true }, "pool tls table, verify default on")
    p = lg.pool{ name = "p", servers = { "a" }, tls = { verify = false, cert = "c.pem", key = "k.pem" } }
    eq(p.tls, { verify = false, cert = "c.pem", key = "k.pem" }, "pool tls with a client certificate")
    eq(lg.pool{ name = "p", servers = { "a" }, tls = true }.tls, { verify = true },
       "pool tls = true: the system's CAs")
    eq(lg.pool{ name = "p", servers = { "a" }, tls = false }.tls, nil, "pool tls = false: plain")
end
fails("pool: tls unknown field",
      "lg.pool: unknown field 'tls.cq' (did you mean 'tls.ca'?)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, tls = { cq = "x" } } end)
fails("pool: tls unknown field far from any",
      "lg.pool: unknown field 'tls.ciphers'",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, tls = { ciphers = "x" } } end)
fails("pool: tls key without cert",
      "lg.pool: field 'tls.key' needs 'tls.cert' (the client certificate it belongs to)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, tls = { key = "k.pem" } } end)
fails("pool: tls verify not boolean",
      "lg.pool: field 'tls.verify' must be true or false (got string)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, tls = { verify = "no" } } end)
fails("pool: tls sni with a space",
      "lg.pool: field 'tls.sni' must not contain spaces or control characters (got 'a b')",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, tls = { sni = "a b" } } end)
fails("pool: tls not a table",
      "lg.pool: field 'tls' must be a table {ca=, verify=, sni=, cert=, key=} or true (got string)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, tls = "on" } end)
fails("pool: timeout wrong type",
      "lg.pool: field 'timeout_ms' must be an integer (got string)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, timeout_ms = "5" } end)
fails("pool: timeout not whole",
      "lg.pool: field 'timeout_ms' must be a whole number (got 1.5)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, timeout_ms = 1.5 } end)
fails("pool: timeout out of range",
      "lg.pool: field 'timeout_ms' must be between 1 and 3600000 (got 0)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, timeout_ms = 0 } end)
fails("pool: max_idle out of range",
      "lg.pool: field 'max_idle' must be between 0 and 10000 (got 10001)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, max_idle = 10001 } end)
fails("pool: failure_limit out of range",
      "lg.pool: field 'failure_limit' must be between 1 and 1000000 (got 0)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, failure_limit = 0 } end)
fails("pool: retry_after_ms infinite",
      "lg.pool: field 'retry_after_ms' must be a whole number (got inf)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, retry_after_ms = math.huge } end)
fails("pool: eject wrong type",
      "lg.pool: field 'eject' must be true or false (got string)",
      function() local _ = lg.pool{ name = "p", servers = { "a" }, eject = "yes" } end)
fails("pool: not a table",
      "lg.pool: expects one table argument, as in lg.pool{ ... } (got string)",
      function() local _ = lg.pool("main") end)
fails("pool: no argument",
      "lg.pool: expects one table argument, as in lg.pool{ ... } (got nothing)",
      function() local _ = lg.pool() end)
fails("pool: two arguments",
      "lg.pool: expects one table argument, as in lg.pool{ ... } (got table)",
      function() local _ = lg.pool({ name = "p", servers = { "a" } }, 2) end)

---------------------------------------------------------------------------
-- lg.prefix
---------------------------------------------------------------------------

do
    local a, b, c = P("a"), P("b"), P("c")
    local r = lg.prefix{ ["session:"] = a, ["cfg:"] = b, ["c"] = b, default = c }
    eq(r._type, "prefix", "prefix _type")
    check(#r.map == 3 and r.map[1].prefix == "c" and r.map[2].prefix == "cfg:"
          and r.map[3].prefix == "session:", "prefix map sorted by prefix")
    check(r.map[1].route == b and r.map[2].route == b and r.map[3].route == a,
          "prefix map routes are the objects given")
    check(r.default == c, "prefix default")
    local only = lg.prefix{ default = a }
    eq(#only.map, 0, "prefix with only a default")
    check(lg.prefix{ ["x:"] = a, default = b }.map[1].route == a, "prefix to a pool")
end

do
    local a = P("a")
    fails("prefix: missing default", "lg.prefix: missing required field 'default'",
          function() local _ = lg.prefix{ ["x:"] = a } end)
    fails("prefix: misspelt default",
          "lg.prefix: missing required field 'default' (is 'defualt' a typo?)",
          function() local _ = lg.prefix{ ["x:"] = a, defualt = a } end)
    fails("prefix: default not a route", "lg.prefix: field 'default' must be a route (got string)",
          function() local _ = lg.prefix{ default = "main" } end)
    fails("prefix: non-string key", "lg.prefix: key 1 is not a string prefix (got number key)",
          function() local _ = lg.prefix{ a, default = a } end)
    fails("prefix: empty prefix", "lg.prefix: the empty string is not a prefix (use 'default')",
          function() local _ = lg.prefix{ [""] = a, default = a } end)
    fails("prefix: prefix with a space",
          "lg.prefix: prefix 'a b' contains spaces or control characters",
          function() local _ = lg.prefix{ ["a b"] = a, default = a } end)
    fails("prefix: value not a route", "lg.prefix: prefix 'x:' is not a route (got table)",
          function() local _ = lg.prefix{ ["x:"] = {}, default = a } end)
    fails("prefix: value is a policy", "lg.prefix: prefix 'x:' is not a route (got lg.policy)",
          function() local _ = lg.prefix{ ["x:"] = lg.policy{ route = a }, default = a } end)
end

---------------------------------------------------------------------------
-- lg.by_op
---------------------------------------------------------------------------

do
    local a, b, c = P("a"), P("b"), P("c")
    local r = lg.by_op{ read = a, write = b }
    eq(r._type, "by_op", "by_op _type")
    check(r.ops.read == a and r.ops.write == b, "by_op ops")
    eq(r.default, nil, "by_op default absent")
    local n = 0
    for _ in pairs(r.ops) do n = n + 1 end
    eq(n, 2, "by_op stores only the keys given")
    local all = {}
    for _, k in ipairs({ "read", "write", "delete", "arith", "touch", "get", "gets", "gat",
                         "gats", "set", "add", "replace", "append", "prepend", "cas", "incr",
                         "decr" }) do
        all[k] = c
    end
    all.default = a
    local r2 = lg.by_op(all)
    check(r2.ops.get == c and r2.ops.decr == c and r2.ops.touch == c and r2.default == a
          and r2.ops.default == nil, "by_op accepts every op class and command name")
    check(lg.by_op{ default = a }.default == a, "by_op with only a default")
end

do
    local a = P("a")
    fails("by_op: empty",
          "lg.by_op: needs at least one of 'read', 'write', 'delete', 'arith', 'touch', " ..
          "a command name or 'default'",
          function() local _ = lg.by_op{} end)
    fails("by_op: unknown op with suggestion",
          "lg.by_op: unknown field 'reed' (did you mean 'read'?)",
          function() local _ = lg.by_op{ reed = a } end)
    fails("by_op: unknown command", "lg.by_op: unknown field 'flush_all'",
          function() local _ = lg.by_op{ flush_all = a } end)
    fails("by_op: not a route", "lg.by_op: field 'get' must be a route (got string)",
          function() local _ = lg.by_op{ get = "a" } end)
    fails("by_op: positional", "lg.by_op: unexpected positional value at [1] (fields are named: field = value)",
          function() local _ = lg.by_op{ a } end)
end

---------------------------------------------------------------------------
-- lg.failover and the fan-outs
---------------------------------------------------------------------------

do
    local a, b, c = P("a"), P("b"), P("c")
    local f = lg.failover{ a, b }
    eq(f._type, "failover", "failover _type")
    check(#f.children == 2 and f.children[1] == a and f.children[2] == b, "failover children")
    eq(f.on, { error = true, timeout = true, server_error = false }, "failover on default")
    eq(f.miss, false, "failover miss default")
    eq(f.writes, "primary", "failover writes default")
    eq(f.max_tries, nil, "failover max_tries default")
    check(f[1] == nil, "failover keeps children only in .children")
    local g = lg.failover{ a, b, c, on = { "server_error", "timeout" }, miss = true,
                           writes = "failover", max_tries = 2 }
    eq(g.on, { error = false, timeout = true, server_error = true }, "failover on as a set")
    eq({ g.miss, g.writes, g.max_tries, #g.children }, { true, "failover", 2, 3 },
       "failover options kept")
    local f2 = lg.failover{ a, a }
    check(f2.children[1] == a and f2.children[2] == a, "failover may repeat a child")

    for _, name in ipairs({ "all_sync", "all_initial", "all_fastest", "all_async" }) do
        local r = lg[name]{ a, b, c }
        check(r._type == name and #r.children == 3 and r.children[3] == c,
              name .. " children")
        check(#lg[name]{ a }.children == 1, name .. " with one child")
    end
    eq(lg.all_sync{ a }.reply, "worst", "all_sync reply default")
    eq(lg.all_sync{ a, reply = "first" }.reply, "first", "all_sync reply first")
    eq(lg.all_initial{ a }.reply, nil, "all_initial has no reply field")
end

do
    local a, b = P("a"), P("b")
    fails("failover: one child", "lg.failover: needs at least 2 routes (got 1)",
          function() local _ = lg.failover{ a } end)
    fails("failover: child not a route", "lg.failover: child 2 is not a route (got string)",
          function() local _ = lg.failover{ a, "b" } end)
    fails("failover: hole in the list", "lg.failover: child 2 is not a route (got nil)",
          function() local _ = lg.failover{ a, nil, b } end)
    fails("failover: unknown option with suggestion",
          "lg.failover: unknown field 'mis' (did you mean 'miss'?)",
          function() local _ = lg.failover{ a, b, mis = true } end)
    fails("failover: non-integer key",
          "lg.failover: unexpected key [1.5] (children are listed first, options are named)",
          function() local _ = lg.failover{ a, b, [1.5] = a } end)
    fails("failover: bad on word",
          "lg.failover: field 'on'[2] must be 'error', 'timeout' or 'server_error' (got 'miss')",
          function() local _ = lg.failover{ a, b, on = { "error", "miss" } } end)
    fails("failover: on not a list",
          "lg.failover: field 'on' must be a non-empty list like {\"error\", \"timeout\"} (got string)",
          function() local _ = lg.failover{ a, b, on = "error" } end)
    fails("failover: on empty",
          "lg.failover: field 'on' must be a non-empty list like {\"error\", \"timeout\"}",
          function() local _ = lg.failover{ a, b, on = {} } end)
    fails("failover: bad writes",
          "lg.failover: field 'writes' must be 'primary' or 'failover' (got 'all')",
          function() local _ = lg.failover{ a, b, writes = "all" } end)
    fails("failover: miss not boolean", "lg.failover: field 'miss' must be true or false (got number)",
          function() local _ = lg.failover{ a, b, miss = 1 } end)
    fails("failover: max_tries zero",
          "lg.failover: field 'max_tries' must be between 1 and 1000 (got 0)",
          function() local _ = lg.failover{ a, b, max_tries = 0 } end)
    fails("all_sync: no child", "lg.all_sync: needs at least 1 route (got 0)",
          function() local _ = lg.all_sync{} end)
    fails("all_sync: bad reply",
          "lg.all_sync: field 'reply' must be 'worst' or 'first' (got 'best')",
          function() local _ = lg.all_sync{ a, reply = "best" } end)
    fails("all_initial: no reply option",
          "lg.all_initial: unknown field 'reply'",
          function() local _ = lg.all_initial{ a, reply = "first" } end)
    fails("all_fastest: child not a route", "lg.all_fastest: child 1 is not a route (got table)",
          function() local _ = lg.all_fastest{ { a } } end)
    fails("all_async: child not a route", "lg.all_async: child 2 is not a route (got boolean)",
          function() local _ = lg.all_async{ a, true } end)
end

---------------------------------------------------------------------------
-- lg.rewrite, lg.shadow, lg.warmup, lg.error, lg.hook
---------------------------------------------------------------------------

do
    local a, b = P("a"), P("b")
    local r = lg.rewrite{ strip = "u:", add = "user:", to = a }
    eq({ r._type, r.strip, r.add }, { "rewrite", "u:", "user:" }, "rewrite fields")
    check(r.to == a, "rewrite to")
    local r2 = lg.rewrite{ add = "v3:", to = a }
    eq({ r2.strip, r2.add }, { nil, "v3:" }, "rewrite add only")
    eq(lg.rewrite{ strip = "x", to = a }.strip, "x", "rewrite strip only")

    fails("rewrite: neither strip nor add", "lg.rewrite: needs 'strip' or 'add' (or both)",
          function() local _ = lg.rewrite{ to = a } end)
    fails("rewrite: missing to", "lg.rewrite: missing required field 'to'",
          function() local _ = lg.rewrite{ add = "x" } end)
    fails("rewrite: empty add", "lg.rewrite: field 'add' must be a non-empty string (got '')",
          function() local _ = lg.rewrite{ add = "", to = a } end)
    fails("rewrite: add with space",
          "lg.rewrite: field 'add' must not contain spaces or control characters (got 'a b')",
          function() local _ = lg.rewrite{ add = "a b", to = a } end)
    fails("rewrite: unknown field", "lg.rewrite: unknown field 'route'",
          function() local _ = lg.rewrite{ add = "x", route = a } end)

    local s = lg.shadow{ main = a, shadow = b }
    check(s._type == "shadow" and s.main == a and s.shadow == b, "shadow main/shadow")
    eq({ s.fraction, s.ops }, { 1.0, "all" }, "shadow defaults")
    local s2 = lg.shadow{ main = a, shadow = b, fraction = 0, ops = "write" }
    eq({ s2.fraction, s2.ops }, { 0, "write" }, "shadow options kept")
    fails("shadow: fraction too big", "lg.shadow: field 'fraction' must be between 0 and 1 (got 1.5)",
          function() local _ = lg.shadow{ main = a, shadow = b, fraction = 1.5 } end)
    fails("shadow: fraction wrong type", "lg.shadow: field 'fraction' must be a number (got string)",
          function() local _ = lg.shadow{ main = a, shadow = b, fraction = "5%" } end)
    fails("shadow: bad ops", "lg.shadow: field 'ops' must be 'all', 'read' or 'write' (got 'reads')",
          function() local _ = lg.shadow{ main = a, shadow = b, ops = "reads" } end)
    fails("shadow: missing shadow", "lg.shadow: missing required field 'shadow'",
          function() local _ = lg.shadow{ main = a } end)
    fails("shadow: same route twice", "lg.shadow: 'main' and 'shadow' are the same route",
          function() local _ = lg.shadow{ main = a, shadow = a } end)

    local nc = lg.nearcache{ to = a }
    check(nc._type == "nearcache" and nc.to == a, "nearcache to")
    eq({ nc.ttl_ms, nc.max_items, nc.max_bytes, nc.hot_qps }, { 500, 10000, 64 * 1048576, 200 },
       "nearcache defaults")
    eq(lg.nearcache{ to = a, max_bytes = "512k" }.max_bytes, 524288, "nearcache size in k")
    eq(lg.nearcache{ to = a, max_bytes = "2G" }.max_bytes, 2 * 1073741824, "nearcache size in G")
    fails("nearcache: typo", "lg.nearcache: unknown field 'ttl_m' (did you mean 'ttl_ms'?)",
          function() local _ = lg.nearcache{ to = a, ttl_m = 5 } end)
    fails("nearcache: bad size",
          "lg.nearcache: field 'max_bytes' must be a size such as 65536, \"512k\" or \"64m\" (got '64mb')",
          function() local _ = lg.nearcache{ to = a, max_bytes = "64mb" } end)
    fails("nearcache: ttl 0", "lg.nearcache: field 'ttl_ms' must be between 1 and 3600000 (got 0)",
          function() local _ = lg.nearcache{ to = a, ttl_ms = 0 } end)
    fails("nearcache: no route", "lg.nearcache: missing required field 'to'",
          function() local _ = lg.nearcache{ ttl_ms = 5 } end)

    local w = lg.warmup{ cold = a, warm = b, exptime = 600 }
    check(w._type == "warmup" and w.cold == a and w.warm == b, "warmup cold/warm")
    eq({ w.exptime, w.delete_warm }, { 600, true }, "warmup defaults")
    eq(lg.warmup{ cold = a, warm = b, exptime = 0, delete_warm = false }.delete_warm, false,
       "warmup delete_warm false")
    fails("warmup: missing exptime", "lg.warmup: missing required field 'exptime'",
          function() local _ = lg.warmup{ cold = a, warm = b } end)
    fails("warmup: negative exptime",
          "lg.warmup: field 'exptime' must be between 0 and 2147483647 (got -1)",
          function() local _ = lg.warmup{ cold = a, warm = b, exptime = -1 } end)
    fails("warmup: cold not a route", "lg.warmup: field 'cold' must be a route (got string)",
          function() local _ = lg.warmup{ cold = "new", warm = b, exptime = 1 } end)

    local e = lg.error{ msg = "unknown tenant" }
    eq({ e._type, e.msg }, { "error", "unknown tenant" }, "error msg")
    fails("error: missing msg", "lg.error: missing required field 'msg'",
          function() local _ = lg.error{} end)
    fails("error: CRLF in msg", "lg.error: field 'msg' must not contain \\r or \\n",
          function() local _ = lg.error{ msg = "a\r\nb" } end)
    fails("error: msg wrong type", "lg.error: field 'msg' must be a non-empty string (got number)",
          function() local _ = lg.error{ msg = 5 } end)
    fails("error: unknown field with suggestion",
          "lg.error: unknown field 'mgs' (did you mean 'msg'?)",
          function() local _ = lg.error{ mgs = "x" } end)
    fails("error: unknown field too far for a suggestion", "lg.error: unknown field 'message'",
          function() local _ = lg.error{ message = "x" } end)

    local fn = function() return a end
    local h = lg.hook{ fn = fn, routes = { a, b } }
    check(h._type == "hook" and h.fn == fn and #h.routes == 2 and h.routes[2] == b, "hook fields")
    eq({ h.cache, h.delim }, { nil, ":" }, "hook defaults")
    local h2 = lg.hook{ fn = fn, routes = { a }, cache = "prefix+op", delim = "/" }
    eq({ h2.cache, h2.delim }, { "prefix+op", "/" }, "hook options kept")
    fails("hook: missing fn", "lg.hook: missing required field 'fn'",
          function() local _ = lg.hook{ routes = { a } } end)
    fails("hook: fn not a function", "lg.hook: field 'fn' must be a function (got string)",
          function() local _ = lg.hook{ fn = "main", routes = { a } } end)
    fails("hook: missing routes", "lg.hook: missing required field 'routes'",
          function() local _ = lg.hook{ fn = fn } end)
    fails("hook: empty routes", "lg.hook: field 'routes' must be a non-empty list of routes",
          function() local _ = lg.hook{ fn = fn, routes = {} } end)
    fails("hook: routes is one route",
          "lg.hook: field 'routes' must be a non-empty list of routes",
          function() local _ = lg.hook{ fn = fn, routes = a } end)
    fails("hook: route not a route", "lg.hook: routes[2] is not a route (got string)",
          function() local _ = lg.hook{ fn = fn, routes = { a, "b" } } end)
    fails("hook: bad cache", "lg.hook: field 'cache' must be 'prefix' or 'prefix+op' (got 'key')",
          function() local _ = lg.hook{ fn = fn, routes = { a }, cache = "key" } end)
    fails("hook: empty delim",
          "lg.hook: field 'delim' must be a single character like ':' (got '')",
          function() local _ = lg.hook{ fn = fn, routes = { a }, delim = "" } end)
end

---------------------------------------------------------------------------
-- lg.ttl, lg.ratelimit, failover gutter_ttl / wait_ms, all_fastest wait_ms
---------------------------------------------------------------------------

do
    local a, b = P("ta"), P("tb")
    local t = lg.ttl{ to = a, max = 10 }
    eq({ t._type, t.to == a, t.max, t.set }, { "ttl", true, 10, nil }, "ttl max")
    eq(lg.ttl{ to = a, set = 0 }.set, 0, "ttl set 0 (never expires) accepted")
    local r = lg.ratelimit{ to = a, rate = 100, burst = 10 }
    eq({ r._type, r.rate, r.burst, r.scope, r.over }, { "ratelimit", 100, 10, "worker", "error" },
       "ratelimit defaults")
    eq(lg.ratelimit{ to = a, rate = 2.5 }.burst, 3, "ratelimit burst defaults to a second's worth")
    eq(lg.ratelimit{ to = a, rate = 0.01 }.burst, 1, "ratelimit burst is at least 1")
    local f = lg.failover{ a, b, writes = "failover", gutter_ttl = 10, wait_ms = 50 }
    eq({ f.gutter_ttl, f.wait_ms }, { 10, 50 }, "failover gutter_ttl and wait_ms")
    eq(lg.all_fastest{ a, b, wait_ms = 20 }.wait_ms, 20, "all_fastest wait_ms")
    -- the tree walk sees through the new nodes
    local p = lg.policy{ route = lg.ratelimit{ to = lg.ttl{ to = a, max = 5 }, rate = 1 } }
    eq(p.route.to.to, a, "policy over ratelimit and ttl")
end

fails("ttl: unknown field with suggestion",
      "lg.ttl: unknown field 'mx' (did you mean 'max'?)",
      function() local _ = lg.ttl{ to = P("x"), mx = 5 } end)
fails("ttl: set and max together",
      "lg.ttl: needs exactly one of 'set' (replace the exptime) or 'max' (cap it)",
      function() local _ = lg.ttl{ to = P("x"), max = 5, set = 5 } end)
fails("ttl: neither set nor max",
      "lg.ttl: needs exactly one of 'set' (replace the exptime) or 'max' (cap it)",
      function() local _ = lg.ttl{ to = P("x") } end)
fails("ttl: max 0 is not a cap",
      "lg.ttl: field 'max' must be between 1 and 2592000 (got 0)",
      function() local _ = lg.ttl{ to = P("x"), max = 0 } end)
fails("ttl: over 30 days",
      "lg.ttl: field 'set' must be between 0 and 2592000 (got 2592001)",
      function() local _ = lg.ttl{ to = P("x"), set = 2592001 } end)
fails("ratelimit: unknown field with suggestion",
      "lg.ratelimit: unknown field 'brust' (did you mean 'burst'?)",
      function() local _ = lg.ratelimit{ to = P("x"), rate = 5, brust = 5 } end)
fails("ratelimit: rate required",
      "lg.ratelimit: missing required field 'rate'",
      function() local _ = lg.ratelimit{ to = P("x") } end)
fails("ratelimit: scope",
      "lg.ratelimit: field 'scope' must be 'worker' or 'global' (got 'all')",
      function() local _ = lg.ratelimit{ to = P("x"), rate = 5, scope = "all" } end)
fails("ratelimit: over",
      "lg.ratelimit: field 'over' must be 'error' or 'pass' (got 'drop')",
      function() local _ = lg.ratelimit{ to = P("x"), rate = 5, over = "drop" } end)
fails("failover: wait_ms suggestion",
      "lg.failover: unknown field 'wait' (did you mean 'wait_ms'?)",
      function() local _ = lg.failover{ P("x"), P("y"), wait = 5 } end)
fails("failover: gutter_ttl needs failed-over writes",
      "lg.failover: field 'gutter_ttl' needs writes = \"failover\" (otherwise no write reaches the later children)",
      function() local _ = lg.failover{ P("x"), P("y"), gutter_ttl = 10 } end)
fails("all_fastest: wait_ms range",
      "lg.all_fastest: field 'wait_ms' must be between 1 and 3600000 (got 0)",
      function() local _ = lg.all_fastest{ P("x"), P("y"), wait_ms = 0 } end)

---------------------------------------------------------------------------
-- lg.policy
---------------------------------------------------------------------------

do
    local a, b = P("a"), P("b")
    local tests = { { "get x", "a" }, { "set x", { "a", "b" } } }
    local p = lg.policy{ route = a, tests = tests }
    check(getmetatable(p) == lg.Policy and p._type == "policy", "policy type and metatable")
    check(not lg.is_route(p), "a policy is not a route")
    check(p.route == a, "policy route")
    check(p.tests == tests, "policy tests stored as given")
    eq(p.settings, { hook_errors = "server_error", decision_cache_size = 4096,
                     item_max = 1048576, max_memory = 1073741824, resolve_every_s = 30,
                     hotkeys_sample = 16, hotkeys_metrics = "off", hotkeys_metrics_top = 10,
                     hotkeys_metrics_key_bytes = 16 },
       "policy settings defaults")
    local p0 = lg.policy{ route = a }
    eq(p0.tests, {}, "policy tests default")
    local fb = lg.error{ msg = "hook failed" }
    local s = lg.policy{ route = a, settings = { hook_errors = "default", fallback = fb,
                         decision_cache_size = 0, item_max = 1024, log_level = "debug" } }.settings
    check(s.fallback == fb, "settings fallback")
    eq({ s.hook_errors, s.decision_cache_size, s.item_max, s.log_level },
       { "default", 0, 1024, "debug" }, "settings kept")
    local settings_in = { item_max = 2048 }
    check(lg.policy{ route = a, settings = settings_in }.settings ~= settings_in,
          "settings are stored as a validated copy")

    fails("policy: missing route", "lg.policy: missing required field 'route'",
          function() local _ = lg.policy{} end)
    fails("policy: route not a route", "lg.policy: field 'route' must be a route (got string)",
          function() local _ = lg.policy{ route = "a" } end)
    fails("policy: unknown field", "lg.policy: unknown field 'test' (did you mean 'tests'?)",
          function() local _ = lg.policy{ route = a, test = {} } end)
    fails("policy: settings wrong type", "lg.policy: field 'settings' must be a table (got string)",
          function() local _ = lg.policy{ route = a, settings = "fast" } end)
    fails("policy: unknown setting",
          "lg.policy: unknown field 'settings.item_maxx' (did you mean 'settings.item_max'?)",
          function() local _ = lg.policy{ route = a, settings = { item_maxx = 1 } } end)
    fails("policy: bad hook_errors",
          "lg.policy: field 'settings.hook_errors' must be 'server_error' or 'default' (got 'ignore')",
          function() local _ = lg.policy{ route = a, settings = { hook_errors = "ignore" } } end)
    eq({ lg.policy{ route = a, settings = { item_max = 2048, client_max_memory = 4096,
                                            max_memory = 2 ^ 40 } }.settings.client_max_memory },
       { 4096 }, "settings client_max_memory at twice item_max")
    fails("policy: client_max_memory below twice item_max",
          "lg.policy: field 'settings.client_max_memory' must be at least twice "
          .. "settings.item_max (2097152 bytes; got 2000000)",
          function() local _ = lg.policy{ route = a, settings = { client_max_memory = 2000000 } } end)
    fails("policy: max_memory below 1 MiB",
          "lg.policy: field 'settings.max_memory' must be between 1048576 and 1125899906842624 (got 1000)",
          function() local _ = lg.policy{ route = a, settings = { max_memory = 1000 } } end)
    fails("policy: fallback required",
          "lg.policy: field 'settings.fallback' is required when hook_errors = 'default'",
          function() local _ = lg.policy{ route = a, settings = { hook_errors = "default" } } end)
    fails("policy: fallback without default",
          "lg.policy: field 'settings.fallback' is only used with hook_errors = 'default'",
          function() local _ = lg.policy{ route = a, settings = { fallback = b } } end)
    fails("policy: fallback not a route",
          "lg.policy: field 'settings.fallback' must be a route (got string)",
          function() local _ = lg.policy{ route = a, settings = { hook_errors = "default", fallback = "b" } } end)
    fails("policy: decision_cache_size range",
          "lg.policy: field 'settings.decision_cache_size' must be between 0 and 1000000 (got -1)",
          function() local _ = lg.policy{ route = a, settings = { decision_cache_size = -1 } } end)
    fails("policy: item_max too small",
          "lg.policy: field 'settings.item_max' must be between 1024 and 134217728 (got 1000)",
          function() local _ = lg.policy{ route = a, settings = { item_max = 1000 } } end)
    eq(lg.policy{ route = a, settings = { max_remap = 0.1 } }.settings.max_remap, 0.1,
       "settings max_remap kept")
    fails("policy: max_remap range",
          "lg.policy: field 'settings.max_remap' must be between 0 and 1 (got 10)",
          function() local _ = lg.policy{ route = a, settings = { max_remap = 10 } } end)
    eq(lg.policy{ route = a, settings = { log_sample = "1/4" } }.settings.log_sample, 0.25,
       "settings log_sample \"1/N\" becomes a share")
    eq(lg.policy{ route = a, settings = { log_sample = 0.5 } }.settings.log_sample, 0.5,
       "settings log_sample number kept")
    fails("policy: bad log_sample",
          "lg.policy: field 'settings.log_sample' must be a number from 0 to 1 or a string \"1/N\" like \"1/1000\" (got '1/x')",
          function() local _ = lg.policy{ route = a, settings = { log_sample = "1/x" } } end)
    fails("policy: test client field typo",
          "lg.policy: unknown field 'tests[1].cm' (did you mean 'tests[1].cn'?)",
          function() local _ = lg.policy{ route = a, tests = { { "get x", "a", cm = "x" } } } end)
    eq(#lg.policy{ route = a, tests = { { "get x", "a", listener = "admin", cn = "ops" } } }.tests,
       1, "a test may state its client")
    local bc = lg.by_client{ admin = a, ["cn:ops"] = b, default = a }
    eq(#bc.map, 2, "by_client entries")
    fails("by_client: default typo",
          "lg.by_client: missing required field 'default' (is 'defalt' a typo?)",
          function() local _ = lg.by_client{ defalt = a } end)
    fails("by_client: not a route",
          "lg.by_client: 'admin' is not a route (got string)",
          function() local _ = lg.by_client{ admin = "a", default = a } end)
    fails("policy: bad log_level",
          "lg.policy: field 'settings.log_level' must be 'error', 'warn', 'info' or 'debug' (got 'trace')",
          function() local _ = lg.policy{ route = a, settings = { log_level = "trace" } } end)
    fails("policy: tests not a list",
          "lg.policy: field 'tests' must be a list of {request, expected} (got string)",
          function() local _ = lg.policy{ route = a, tests = "get x" } end)
    fails("policy: test entry shape",
          "lg.policy: tests[1] must be {request line, expected pool name(s)} (with optional "
          .. "down = {...}, timeout = {...}, miss = {...})",
          function() local _ = lg.policy{ route = a, tests = { { "get x" } } } end)
    fails("policy: test request not a string",
          "lg.policy: tests[2]: the request must be a one-line string like \"get foo\" (got number)",
          function() local _ = lg.policy{ route = a, tests = { { "get x", "a" }, { 5, "a" } } } end)
    fails("policy: test expected wrong type",
          "lg.policy: tests[1]: expected must be a pool name or a list of pool names (got number)",
          function() local _ = lg.policy{ route = a, tests = { { "get x", 1 } } } end)
    fails("policy: test expected list entry",
          "lg.policy: tests[1]: expected[2] must be a pool name (got 2)",
          function() local _ = lg.policy{ route = a, tests = { { "get x", { "a", 2 } } } } end)
    fails("policy: test condition misspelt",
          "lg.policy: unknown field 'tests[1].dwon' (did you mean 'tests[1].down'?)",
          function() local _ = lg.policy{ route = a, tests = { { "get x", "a", dwon = "a" } } } end)
    fails("policy: test condition not names",
          "lg.policy: tests[1]: timeout must be a pool or server name, or a list of them (got number)",
          function() local _ = lg.policy{ route = a, tests = { { "get x", "a", timeout = 3 } } } end)
    local scenario = { "get x", {}, down = "a", miss = { "a" } }
    check(lg.policy{ route = a, tests = { scenario } }.tests[1] == scenario,
          "policy: a test with conditions and an empty expected list is kept")

    local twin = P("a")
    local where_a, where_twin = a._where, twin._where
    fails("policy: two pools with one name",
          "lg.policy: two different pools are named 'a' (built at " .. where_a .. " and " ..
          where_twin .. ")",
          function() local _ = lg.policy{ route = lg.failover{ a, twin } } end)
    local loop = lg.prefix{ ["x:"] = a, default = b }
    loop.default = loop           -- only possible by editing a built table
    local ok, e = pcall(lg.policy, { route = loop })
    check(not ok and e:find("lg.policy: the route tree has a cycle", 1, true) ~= nil,
          "policy: cycle rejected", tostring(e))
end

---------------------------------------------------------------------------
-- read_local_write_all
---------------------------------------------------------------------------

do
    local a, b, c = P("a"), P("b"), P("c")
    local r = lg.read_local_write_all{ here = a, there = { b, c } }
    local r_line = debug.getinfo(1, "l").currentline - 1
    eq(r._type, "by_op", "rlwa is a by_op")
    local read = r.ops.read
    check(read._type == "failover" and #read.children == 3 and read.children[1] == a
          and read.children[2] == b and read.children[3] == c, "rlwa read = failover{here, there...}")
    eq(read.on, { error = true, timeout = true, server_error = false }, "rlwa read failover defaults")
    for _, op in ipairs({ "write", "delete", "touch" }) do
        local w = r.ops[op]
        check(w._type == "all_sync" and #w.children == 3 and w.children[1] == a
              and w.children[3] == c and w.reply == "worst", "rlwa " .. op .. " = all_sync{...}")
    end
    check(r.ops.arith == a, "rlwa arith = here")
    eq(r.default, nil, "rlwa has no default")
    check(r.ops.write ~= r.ops.delete, "rlwa builds one fan-out per op")
    eq(r._where, SRC .. ":" .. r_line, "rlwa _where is the caller")
    eq(r.ops.read._where, r._where, "rlwa children carry the caller's position")

    local r2 = lg.read_local_write_all{ here = a, there = b, write = "all_async" }
    check(r2.ops.read._type == "failover" and #r2.ops.read.children == 2
          and r2.ops.read.children[2] == b, "rlwa there = one route")
    check(r2.ops.write._type == "all_async" and r2.ops.delete._type == "all_async"
          and r2.ops.touch._type == "all_async", "rlwa write = all_async")
    eq(lg.read_local_write_all{ here = a, there = b, write = "all_initial" }.ops.write._type,
       "all_initial", "rlwa write = all_initial")

    fails("rlwa: bad write",
          "lg.read_local_write_all: field 'write' must be 'all_sync', 'all_initial' or 'all_async' (got 'all_fastest')",
          function() local _ = lg.read_local_write_all{ here = a, there = b, write = "all_fastest" } end)
    fails("rlwa: missing there", "lg.read_local_write_all: missing required field 'there'",
          function() local _ = lg.read_local_write_all{ here = a } end)
    fails("rlwa: there not routes", "lg.read_local_write_all: there[2] is not a route (got string)",
          function() local _ = lg.read_local_write_all{ here = a, there = { b, "c" } } end)
    fails("rlwa: unknown field", "lg.read_local_write_all: unknown field 'hre' (did you mean 'here'?)",
          function() local _ = lg.read_local_write_all{ hre = a, there = b } end)
end

---------------------------------------------------------------------------
-- shared objects
---------------------------------------------------------------------------

do
    local shared = P("shared", 2)
    local other = P("other")
    local tree = lg.prefix{
        ["a:"] = lg.failover{ shared, other },
        ["b:"] = lg.all_sync{ other, shared },
        default = shared,
    }
    check(tree.map[1].route.children[1] == shared and tree.map[2].route.children[2] == shared
          and tree.default == shared, "the same pool object appears in three places")
    local p = lg.policy{ route = tree }
    check(p.route == tree, "policy over shared objects builds")
    local rw = lg.rewrite{ add = "x:", to = shared }
    check(lg.by_op{ read = rw, write = rw }.ops.read == lg.by_op{ read = rw }.ops.read,
          "a route shared by two parents stays one table")
end

---------------------------------------------------------------------------
-- lg.log
---------------------------------------------------------------------------

do
    local got = {}
    lg._log = function(level, msg) got[#got + 1] = { level, msg } end
    lg.log("info", "pool %s has %d servers", "main", 2)
    lg.log("warn", "100% plain")
    eq(got, { { "info", "pool main has 2 servers" }, { "warn", "100% plain" } },
       "lg.log formats and calls lg._log")
    lg._log = nil
    local real = io.stderr
    local written = {}
    io.stderr = { write = function(_, s) written[#written + 1] = s end }
    lg.log("error", "x=%d", 7)
    io.stderr = real
    eq(written, { "luagent [error] x=7\n" }, "lg.log without _log writes to io.stderr")
    fails("log: bad level",
          "lg.log: level must be 'error', 'warn', 'info' or 'debug' (got 'loud')",
          function() lg.log("loud", "x") end)
end

---------------------------------------------------------------------------
-- positions: errors point at the line that called the constructor
---------------------------------------------------------------------------

do
    local function make_pool(name, servers)       -- a user's own helper
        local p = lg.pool{ name = name, servers = servers }
        return p
    end
    local helper_line = debug.getinfo(1, "l").currentline - 3
    local e = err_of(function() local _ = make_pool("x", { "a:b" }) end)
    eq(e, SRC .. ":" .. helper_line .. ": lg.pool: servers[1]: bad port in 'a:b'",
       "error points at the user's helper line that called lg.pool")

    -- A helper that tail-calls the constructor: Lua drops the helper's frame,
    -- so the position is the helper's caller (still this file).
    local function tail_pool(name, servers) return lg.pool{ name = name, servers = servers } end
    local tail_line = debug.getinfo(1, "l").currentline + 1
    local et = err_of(function() local _ = tail_pool("x", { "a:b" }) end)
    eq(et, SRC .. ":" .. tail_line .. ": lg.pool: servers[1]: bad port in 'a:b'",
       "tail-called constructor: error points at the helper's caller")

    local start = debug.getinfo(1, "l").currentline + 2
    local e2 = err_of(function()
        local _ = lg.pool{
            name = "p",
            servers = { "a" },
            timout_ms = 5,
        }
    end)
    local line = e2 and tonumber(e2:match("^" .. SRC:gsub("%p", "%%%0") .. ":(%d+): lg%.pool: "))
    check(line ~= nil and line >= start and line <= start + 4,
          "multi-line call: error carries this file and a line of the call", tostring(e2))

    -- A script with a typo, loaded under its own name: DESIGN 5.1's message.
    local chunk = assert(loadstring(table.concat({
        'local lg = require "luagent"',
        'local x = 1',
        'local main = lg.pool{ name = "main", servers = { "127.0.0.1:21211" }, timout_ms = 5 }',
        'return lg.policy{ route = main }',
    }, "\n"), "=policy.lua"))
    local ok, msg = pcall(chunk)
    check(not ok and msg == "policy.lua:3: lg.pool: unknown field 'timout_ms' (did you mean 'timeout_ms'?)",
          "script error names the script and line", tostring(msg))

    local chunk2 = assert(loadstring('local lg = require "luagent"\n' ..
                                     'local p = lg.pool{ name = "main", servers = { "127.0.0.1" } }\n' ..
                                     'return p', "=policy.lua"))
    check(chunk2()._where == "policy.lua:2", "_where is script:line")

    -- `return lg.policy{...}` is a tail call: Lua keeps no caller line for it.
    local chunk3 = assert(loadstring('local lg = require "luagent"\nreturn lg.policy{ route = 1 }',
                                     "=policy.lua"))
    local ok3, msg3 = pcall(chunk3)
    check(not ok3 and msg3:find("lg.policy: field 'route' must be a route (got number)", 1, true),
          "tail-called constructor still reports its message", tostring(msg3))
end

---------------------------------------------------------------------------
-- phase rule
---------------------------------------------------------------------------

do
    local a = P("a")
    local names = { "pool", "prefix", "by_op", "failover", "all_sync", "all_initial",
                    "all_fastest", "all_async", "rewrite", "shadow", "warmup", "error",
                    "hook", "policy", "read_local_write_all" }
    lg._phase = "request"
    for _, name in ipairs(names) do
        fails("phase: lg." .. name .. " refused at request time",
              "lg.error: constructors may only run at load time",
              function() local _ = lg[name]{ name = "x", servers = { "a" } } end)
    end
    local logged = false
    lg._log = function() logged = true end
    lg.log("info", "hooks may log")
    lg._log = nil
    check(logged, "lg.log still works at request time")
    check(lg.is_route(a), "is_route still works at request time")
    lg._phase = "load"
    check(lg.is_route(P("again")), "constructors work again in the load phase")
end

---------------------------------------------------------------------------
-- The example policies: examples/*.lua, plus the cookbook's per-prefix hook
---------------------------------------------------------------------------

local EXAMPLES = {}

EXAMPLES.hook_cache = [[
local lg = require "luagent"
local main     = lg.pool{ name = "main",     servers = { "127.0.0.1:21211" } }
local sessions = lg.pool{ name = "sessions", servers = { "127.0.0.1:21212" } }
local big      = lg.pool{ name = "big",      servers = { "127.0.0.1:21213" } }

local heavy = { img = true, html = true }            -- captured as an upvalue, not a global

return lg.policy{
    route = lg.hook{
        routes = { main, sessions, big },
        cache  = "prefix", delim = ":",               -- fn runs once per distinct prefix
        fn = function(req)
            local p = req:prefix(":")
            if p == "sess" then return sessions end
            if heavy[p] then return big end
            return main
        end,
    },
}
]]

-- Runs an example with the given environment variables; returns the policy.
-- The shipped ones are read from examples/ (the tests run from the repository
-- root); EXAMPLES holds the cookbook ones that have no file.
local function run_example(name, env)
    local chunk = EXAMPLES[name] and assert(loadstring(EXAMPLES[name], "=" .. name .. ".lua"))
                  or assert(loadfile("examples/" .. name .. ".lua"))
    local fake_os = setmetatable({ getenv = function(k) return env and env[k] end },
                                 { __index = os })
    setfenv(chunk, setmetatable({ os = fake_os }, { __index = _G }))
    local ok, p = pcall(chunk)
    check(ok and getmetatable(p) == lg.Policy, "example " .. name .. " builds", tostring(p))
    return ok and p or nil
end

-- A stand-in for the C request object, to call hooks from the examples.
local function fake_req(key)
    return {
        key = key,
        prefix = function(self, delim)
            local i = self.key:find(delim, 1, true)
            return i and self.key:sub(1, i - 1) or nil
        end,
    }
end

local function pool_names(list)
    local out = {}
    for i, r in ipairs(list) do out[i] = r.name end
    return out
end

do
    local saved = lg.args
    lg.args = { servers = { "127.0.0.1:21211:1", "127.0.0.1:21212:1" }, backups = {},
                ketama = false, extra = {} }
    local p = run_example("default")
    if p then
        check(p.route._type == "pool" and p.route.dist == "modula" and p.route.hash == "djb"
              and p.route.servers[2].port == 21212, "default: one modula pool from -s")
    end
    lg.args = { servers = { "127.0.0.1:21211:1" }, backups = { "127.0.0.1:21213:1" },
                ketama = true, extra = {} }
    p = run_example("default")
    if p then
        local r = p.route
        check(r._type == "by_op" and r.ops.read._type == "failover" and r.ops.read.miss == true
              and r.default._type == "all_initial"
              and r.ops.read.children[1] == r.default.children[1]
              and r.default.children[2].name == "backup" and r.default.children[2].dist == "ketama",
              "default with -b -k: failover reads, all_initial writes, shared pools")
    end
    lg.args = { servers = { "127.0.0.1:21211:1" }, backups = { "127.0.0.1:21213:1" },
                ketama = true, extra = {}, backend_tls_ca = "ca.pem" }
    p = run_example("default")
    if p then
        local r = p.route
        eq({ r.default.children[1].tls, r.default.children[2].tls },
           { { ca = "ca.pem", verify = true }, { ca = "ca.pem", verify = true } },
           "default with --backend-tls-ca: both pools talk TLS")
    end
    lg.args = saved
end

do
    local p = run_example("ketama")
    if p then eq(pool_names({ p.route }), { "main" }, "ketama: one pool") end

    for _, region in ipairs({ "east", "west" }) do
        p = run_example("regions", { LUAGENT_REGION = region })
        if p then
            local r = p.route
            eq({ r.map[1].prefix, r.map[2].prefix }, { "cfg:", "session:" },
               "regions (" .. region .. "): prefixes")
            local cfg = r.map[1].route
            eq(pool_names(cfg.ops.read.children),
               region == "east" and { "cfg_east", "cfg_west" } or { "cfg_west", "cfg_east" },
               "regions (" .. region .. "): local pool read first")
            eq(p.tests[2][2], "cfg_" .. region, "regions (" .. region .. "): tests kept")
            eq(#p.tests, 6, "regions (" .. region .. "): six tests")
            eq(p.tests[5].down, { "cfg_" .. region }, "regions (" .. region .. "): local down")
        end
    end

    p = run_example("namespace")
    if p then
        local r = p.route
        check(r._type == "prefix" and r.map[1].prefix == "tmp:" and r.map[2].route.strip == "u:"
              and r.default.add == "app1:", "namespace: static rewrites")
    end
    p = run_example("namespace", { LUAGENT_TENANTS = "1" })
    if p then
        local h = p.route
        check(h._type == "hook" and #h.routes == 2 and h.cache == nil, "namespace: dynamic hook")
        local route, key = h.fn(fake_req("acme/123"))
        check(route == h.routes[1] and key == "t1:123", "namespace: hook maps acme/123 to t1:123")
        check(h.fn(fake_req("nobody/1")) == h.routes[2], "namespace: unknown tenant -> lg.error")
    end

    p = run_example("failover")
    if p then
        eq({ p.route.miss, p.route.writes }, { false, "primary" }, "failover: options")
        eq(pool_names(p.route.children), { "primary", "backup" }, "failover: children")
    end
    p = run_example("failover", { LUAGENT_MISS_FAILOVER = "1" })
    if p then eq(p.route.miss, true, "failover: miss from the environment") end

    p = run_example("migrate")
    if p then
        local r = p.route
        check(r.map[1].route._type == "warmup" and r.map[1].route.exptime == 600
              and r.default._type == "shadow" and r.default.fraction == 0.05
              and r.default.shadow == r.map[1].route.cold, "migrate: warmup and shadow share 'new'")
    end

    p = run_example("hook_cache")
    if p then
        local h = p.route
        eq({ h.cache, h.delim }, { "prefix", ":" }, "hook_cache: cache settings")
        eq(pool_names({ h.fn(fake_req("sess:1")), h.fn(fake_req("img:2")), h.fn(fake_req("x")) }),
           { "sessions", "big", "main" }, "hook_cache: decisions")
        -- A constructor inside a hook at request time is refused.
        lg._phase = "request"
        local e = err_of(function() local _ = lg.pool{ name = "late", servers = { "a" } } end)
        lg._phase = "load"
        check(e and e:find("lg.error: constructors may only run at load time", 1, true) ~= nil,
              "hook_cache: constructors refused at request time", tostring(e))
    end
end

print(passed .. " passed, " .. failed .. " failed")
if failed > 0 then os.exit(1) end
