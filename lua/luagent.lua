-- luagent.lua: the Lua side of luagent's policy API (DESIGN.md section 5).
--
-- A policy script does `local lg = require "luagent"`, builds a route tree with
-- the constructors below and returns lg.policy{...}. This module only runs at
-- load time and is pure Lua 5.1: it validates every argument (typos are errors,
-- reported at the caller's file:line) and returns plain tables that the C
-- compiler (src/script.c) turns into route nodes.
--
-- Table contract read by C:
--   route  = setmetatable({ _type = "<kind>", _where = "file:line" | nil,
--                           <validated fields, defaults filled> }, lg.Route)
--   kinds  = pool prefix by_op failover all_sync all_initial all_fastest
--            all_async rewrite shadow warmup error hook balance coalesce ttl ratelimit
--            nearcache
--   pool.servers = list of { host = s, port = n, weight = n, name = s|nil }
--                  or { srv = s, weight = n } (a DNS SRV name, "srv:..." in a string)
--   pool.tls     = nil (plain TCP) | { ca = s|nil, cert = s|nil, key = s|nil,
--                                      sni = s|nil, verify = b }
--   prefix.map   = list of { prefix = s, route = r }, sorted by prefix
--   by_op.ops    = { [op or command name] = route }, by_op.default = route|nil
--   failover.on  = { error = b, timeout = b, server_error = b }
--   children     = positional routes (failover, all_*, balance); hook.routes likewise
--   policy       = setmetatable({ _type = "policy", route = r,
--                                 settings = {...}, tests = {...} }, lg.Policy)
-- Routes are never copied: an object used twice is the same table.
--
-- Hooks installed by C before the script runs (all optional here):
--   lg._log(level, msg)  log sink (default: io.stderr)
--   lg.args              command line: servers, backups, ketama, extra,
--                        backend_tls_ca (--backend-tls-ca FILE, or nil)
--   lg._phase            "load" while building; "request" makes constructors fail

local lg = {}

lg.version = "0.1.0"
lg.Route   = {}
lg.Policy  = {}
lg._phase  = "load"
lg.args    = { servers = {}, backups = {}, ketama = false, extra = {} }
lg.ops     = { "read", "write", "delete", "arith", "touch" }

local PHASE_MSG = "lg.error: constructors may only run at load time"

local floor, huge = math.floor, math.huge
local format, sub, find, gsub = string.format, string.sub, string.find, string.gsub
local sort, concat = table.sort, table.concat
local getinfo = debug and debug.getinfo

---------------------------------------------------------------------------
-- Errors. Validation code calls fail(); the constructor wrapper turns that
-- into error("lg.<name>: <msg>", 2) so the position is the caller's line,
-- however deep the helper that noticed the problem.
---------------------------------------------------------------------------

local FAIL = {}     -- marker key of validation failures

local function fail(fmt, ...)
    error({ [FAIL] = true, msg = format(fmt, ...) }, 0)
end

local function is_route(x)
    return type(x) == "table" and getmetatable(x) == lg.Route
end

local function is_policy(x)
    return type(x) == "table" and getmetatable(x) == lg.Policy
end

-- What a value is, for "(got ...)": a type, or lg.<kind> for our objects.
local function kind(v)
    if is_route(v) then return "lg." .. tostring(v._type) end
    if is_policy(v) then return "lg.policy" end
    return type(v)
end

-- A value as written in a message: strings quoted, numbers as such.
local function show(v)
    if type(v) == "string" then return "'" .. v .. "'" end
    if type(v) == "number" or type(v) == "boolean" then return tostring(v) end
    return kind(v)
end

-- Edit distance with transpositions (optimal string alignment).
local function distance(a, b)
    local la, lb = #a, #b
    local prev2, prev, cur = {}, {}, {}
    for j = 0, lb do prev[j] = j end
    for i = 1, la do
        cur = { [0] = i }
        local ca = a:byte(i)
        for j = 1, lb do
            local cb = b:byte(j)
            local cost = (ca == cb) and 0 or 1
            local d = prev[j] + 1
            if cur[j - 1] + 1 < d then d = cur[j - 1] + 1 end
            if prev[j - 1] + cost < d then d = prev[j - 1] + cost end
            if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == cb
               and prev2[j - 2] + 1 < d then
                d = prev2[j - 2] + 1
            end
            cur[j] = d
        end
        prev2, prev = prev, cur
    end
    return prev[lb]
end

-- The known name closest to `word`, or nil when none is close enough.
local function suggest(word, names)
    local best, best_d
    for _, name in ipairs(names) do
        local d = distance(word, name)
        local close = (d <= 2 and d < #word)
                      or (#word >= 2 and sub(name, 1, #word) == word)
        if close and (best == nil or d < best_d or (d == best_d and name < best)) then
            best, best_d = name, d
        end
    end
    return best
end

local function unknown_field(word, names, prefix)
    prefix = prefix or ""
    local hint = suggest(word, names)
    if hint then
        fail("unknown field '%s%s' (did you mean '%s%s'?)", prefix, word, prefix, hint)
    end
    fail("unknown field '%s%s'", prefix, word)
end

local function is_index(k)
    return type(k) == "number" and k >= 1 and k == floor(k) and k < huge
end

local function is_list(t)
    if type(t) ~= "table" or is_route(t) or is_policy(t) then return false end
    local n = #t
    for k in pairs(t) do
        if not is_index(k) or k > n then return false end
    end
    return true
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    sort(keys)
    return keys
end

---------------------------------------------------------------------------
-- Checkers: function(value, label, input) -> stored value, or fail().
-- `label` is how the field is named in messages ("field 'timeout_ms'").
---------------------------------------------------------------------------

local function req(check)
    return function(v, label, t)
        if v == nil then fail("missing required %s", label) end
        return check(v, label, t)
    end
end

-- Optional; `default` may be a function of the input table (fresh tables).
local function opt(check, default)
    return function(v, label, t)
        if v == nil then
            if type(default) == "function" then return default(t) end
            return default
        end
        return check(v, label, t)
    end
end

local function integer(lo, hi)
    return function(v, label)
        if type(v) ~= "number" then
            fail("%s must be an integer (got %s)", label, kind(v))
        end
        if v ~= floor(v) or v ~= v or v == huge or v == -huge then
            fail("%s must be a whole number (got %s)", label, tostring(v))
        end
        if v < lo or v > hi then
            fail("%s must be between %d and %d (got %s)", label, lo, hi, tostring(v))
        end
        return v
    end
end

local function number(lo, hi)
    return function(v, label)
        if type(v) ~= "number" then
            fail("%s must be a number (got %s)", label, kind(v))
        end
        if not (v >= lo and v <= hi) then
            fail("%s must be between %s and %s (got %s)", label, tostring(lo),
                 tostring(hi), tostring(v))
        end
        return v
    end
end

-- A size in bytes: a whole number, or a string "<n>", "<n>k", "<n>m", "<n>g"
-- (powers of 1024), between lo and hi bytes.
local SIZE_UNITS = { [""] = 1, k = 1024, m = 1024 * 1024, g = 1024 * 1024 * 1024 }

local function size(lo, hi)
    local whole = integer(lo, hi)
    return function(v, label)
        if type(v) == "string" then
            local digits, unit = v:lower():match("^(%d+)([kmg]?)$")
            if not digits then
                fail("%s must be a size such as 65536, \"512k\" or \"64m\" (got %s)", label,
                     show(v))
            end
            v = tonumber(digits) * SIZE_UNITS[unit]
        end
        return whole(v, label)
    end
end

local function boolean(v, label)
    if type(v) ~= "boolean" then
        fail("%s must be true or false (got %s)", label, kind(v))
    end
    return v
end

local function one_of(...)
    local allowed = { ... }
    local set, quoted = {}, {}
    for i, w in ipairs(allowed) do
        set[w] = true
        quoted[i] = "'" .. w .. "'"
    end
    local words = concat(quoted, ", ", 1, #quoted - 1) .. " or " .. quoted[#quoted]
    return function(v, label)
        if type(v) ~= "string" then
            fail("%s must be %s (got %s)", label, words, kind(v))
        end
        if not set[v] then
            fail("%s must be %s (got %s)", label, words, show(v))
        end
        return v
    end
end

-- A non-empty string; `token` also forbids spaces and control characters
-- (for names and key parts), `line` forbids only CR and LF.
local function nonempty_string(v, label)
    if type(v) ~= "string" then
        fail("%s must be a non-empty string (got %s)", label, kind(v))
    end
    if v == "" then fail("%s must be a non-empty string (got '')", label) end
    return v
end

local function token(max)
    return function(v, label)
        nonempty_string(v, label)
        if find(v, "[%s%c]") then
            fail("%s must not contain spaces or control characters (got %s)", label, show(v))
        end
        if max and #v > max then
            fail("%s must be at most %d bytes long (got %d)", label, max, #v)
        end
        return v
    end
end

local function text_line(v, label)
    nonempty_string(v, label)
    if find(v, "[\r\n]") then
        fail("%s must not contain \\r or \\n", label)
    end
    return v
end

local function route(v, label)
    if not is_route(v) then
        fail("%s must be a route (got %s)", label, kind(v))
    end
    return v
end

local function func(v, label)
    if type(v) ~= "function" then
        fail("%s must be a function (got %s)", label, kind(v))
    end
    return v
end

-- A non-empty list of routes (hook.routes); `what` names an element.
local function route_list(what)
    return function(v, label)
        if not is_list(v) or #v == 0 then
            fail("%s must be a non-empty list of routes%s", label,
                 type(v) == "table" and "" or format(" (got %s)", kind(v)))
        end
        local out = {}
        for i = 1, #v do
            if not is_route(v[i]) then
                fail("%s[%d] is not a route (got %s)", what, i, kind(v[i]))
            end
            out[i] = v[i]
        end
        return out
    end
end

---------------------------------------------------------------------------
-- Field specs: every constructor has one table field -> checker.
---------------------------------------------------------------------------

-- Checks `t` against `spec` and returns the validated copy. Positional
-- entries (integer keys) are left to the caller when `positional` is set.
local function check_fields(spec, t, out, positional, label_prefix)
    local names = sorted_keys(spec)
    local bad, bad_pos = {}, nil
    for k in pairs(t) do
        if type(k) == "string" then
            if spec[k] == nil then bad[#bad + 1] = k end
        elseif not (positional and is_index(k)) then
            bad_pos = k
        end
    end
    if #bad > 0 then
        sort(bad)
        unknown_field(bad[1], names, label_prefix)
    end
    if bad_pos ~= nil then
        if positional then
            fail("unexpected key [%s] (children are listed first, options are named)",
                 tostring(bad_pos))
        end
        fail("unexpected positional value at [%s] (fields are named: field = value)",
             tostring(bad_pos))
    end
    out = out or {}
    label_prefix = label_prefix or ""
    for _, name in ipairs(names) do
        out[name] = spec[name](t[name], "field '" .. label_prefix .. name .. "'", t)
    end
    return out
end

local function new_route(kind_name, where)
    return setmetatable({ _type = kind_name, _where = where }, lg.Route)
end

-- The positional children of t: a gap-free list of at least `min` routes.
local function children_of(t, min)
    local n = 0
    for k in pairs(t) do
        if is_index(k) and k > n then n = k end
    end
    local out = {}
    for i = 1, n do
        if not is_route(t[i]) then
            fail("child %d is not a route (got %s)", i, kind(t[i]))
        end
        out[i] = t[i]
    end
    if n < min then
        fail("needs at least %d route%s (got %d)", min, min == 1 and "" or "s", n)
    end
    return out
end

---------------------------------------------------------------------------
-- lg.pool
---------------------------------------------------------------------------

local HASHES = { "md5", "fnv1a_64", "fnv1_64", "fnv1a_32", "fnv1_32", "crc32",
                 "crc32a", "murmur", "jenkins", "one_at_a_time", "hsieh", "djb" }

local PORT_MAX, WEIGHT_MAX = 65535, 1000000

local SERVER_FIELDS = {
    host   = req(token(255)),
    port   = opt(integer(1, PORT_MAX), 11211),
    weight = opt(integer(1, WEIGHT_MAX), 1),
    name   = opt(token(255), nil),
}

local function trim(s)
    return (gsub(gsub(s, "^%s+", ""), "%s+$", ""))
end

-- "host", "host:port", "host:port:weight", each optionally followed by a
-- space and a name (twemproxy); IPv6 hosts are written "[::1]:port".
-- "srv:NAME" (optionally followed by ":weight"): the servers of NAME's DNS SRV
-- records, e.g. "srv:_memcache._tcp.cache.example"; resolved by C.
local SRV_PREFIX = "srv:"

local function parse_srv(spec, s, at)
    local name, weight = sub(spec, #SRV_PREFIX + 1), 1
    local w = name:match(":(%d+)$")
    if w ~= nil then
        name, weight = sub(name, 1, #name - #w - 1), tonumber(w)
        if weight < 1 or weight > WEIGHT_MAX then fail("%s: bad weight in '%s'", at, s) end
    end
    if #name == 0 or #name > 253 or not name:match("^[%w_.-]+$") or find(name, "%.%.")
       or sub(name, 1, 1) == "." then
        fail("%s: bad SRV name in '%s' (like \"srv:_memcache._tcp.example.com\")", at, s)
    end
    return { srv = name, weight = weight }
end

local function parse_server(s, at)
    local spec = trim(s)
    if sub(spec, 1, #SRV_PREFIX) == SRV_PREFIX then return parse_srv(spec, s, at) end
    local addr, name = spec:match("^(%S+)%s+(.-)$")
    if addr == nil then addr = spec end
    if name ~= nil and find(name, "%s") then
        fail("%s: bad name in '%s' (names have no spaces)", at, s)
    end
    local host, rest
    if sub(addr, 1, 1) == "[" then
        host, rest = addr:match("^%[([^%]]+)%](.*)$")
        if host == nil or (rest ~= "" and sub(rest, 1, 1) ~= ":") then
            fail("%s: bad IPv6 address in '%s'", at, s)
        end
    else
        host, rest = addr:match("^([^:]*)(.*)$")
    end
    if host == "" then fail("%s: missing host in '%s'", at, s) end
    if find(host, "%c") then fail("%s: bad host in '%s'", at, s) end
    local parts = {}
    if rest ~= "" then
        for p in (sub(rest, 2) .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = p end
    end
    if #parts > 2 then fail("%s: too many ':' in '%s'", at, s) end
    local port, weight = 11211, 1
    if parts[1] ~= nil then
        port = parts[1]:match("^%d+$") and tonumber(parts[1])
        if not port or port < 1 or port > PORT_MAX then
            fail("%s: bad port in '%s'", at, s)
        end
    end
    if parts[2] ~= nil then
        weight = parts[2]:match("^%d+$") and tonumber(parts[2])
        if not weight or weight < 1 or weight > WEIGHT_MAX then
            fail("%s: bad weight in '%s'", at, s)
        end
    end
    return { host = host, port = port, weight = weight, name = name }
end

local function check_servers(v, label)
    if not is_list(v) or #v == 0 then
        fail("%s must be a non-empty list%s", label,
             type(v) == "table" and "" or format(" (got %s)", kind(v)))
    end
    local out, seen_addr, seen_name = {}, {}, {}
    for i = 1, #v do
        local at, e = format("servers[%d]", i), v[i]
        local srv
        if type(e) == "string" then
            srv = parse_server(e, at)
        elseif type(e) == "table" and not is_route(e) and not is_policy(e) then
            local ok, res = pcall(check_fields, SERVER_FIELDS, e, {})
            if not ok then
                if type(res) == "table" and res[FAIL] then fail("%s: %s", at, res.msg) end
                error(res, 0)
            end
            srv = res
        else
            fail("%s must be a string \"host:port\" or a table {host=, port=} (got %s)",
                 at, kind(e))
        end
        local addr = srv.srv and SRV_PREFIX .. srv.srv or srv.host .. ":" .. srv.port
        if seen_addr[addr] then
            fail("%s: server %s is listed twice (also servers[%d])", at, addr, seen_addr[addr])
        end
        seen_addr[addr] = i
        if srv.name ~= nil then
            if seen_name[srv.name] then
                fail("%s: server name '%s' is used twice (also servers[%d])", at, srv.name,
                     seen_name[srv.name])
            end
            seen_name[srv.name] = i
        end
        out[i] = srv
    end
    return out
end

-- A string of exactly n characters; `what` says it in the error message.
local function chars(n, what)
    return function(v, label)
        if type(v) ~= "string" or #v ~= n then
            fail("%s must be %s (got %s)", label, what,
                 type(v) == "string" and show(v) or kind(v))
        end
        return v
    end
end

-- tls = { ca =, cert =, key =, sni =, verify = } (or true: the system's CAs).
-- The files are read by C when the policy compiles, so a missing or bad one
-- fails the load with OpenSSL's reason.
local TLS_FIELDS = {
    ca     = opt(text_line, nil),
    cert   = opt(text_line, nil),
    key    = opt(text_line, nil),
    sni    = opt(token(255), nil),
    verify = opt(boolean, true),
}

local function check_tls(v, label)
    if v == true then v = {} end
    if v == false then return nil end
    if type(v) ~= "table" or is_route(v) or is_policy(v) then
        fail("%s must be a table {ca=, verify=, sni=, cert=, key=} or true (got %s)",
             label, kind(v))
    end
    local out = check_fields(TLS_FIELDS, v, {}, false, "tls.")
    if out.key ~= nil and out.cert == nil then
        fail("field 'tls.key' needs 'tls.cert' (the client certificate it belongs to)")
    end
    return out
end

local check_hash_tag = chars(2, "a string of exactly 2 characters, like '{}'")
local one_char = chars(1, "a single character like ':'")

local POOL_FIELDS = {
    name               = req(token(200)),
    servers            = req(check_servers),
    dist               = opt(one_of("ketama", "modula"), "ketama"),
    hash               = opt(one_of(unpack(HASHES)), function(t)
                             return t.dist == "modula" and "djb" or "md5"
                         end),
    hash_tag           = opt(check_hash_tag, nil),
    seed               = opt(token(200), nil),
    timeout_ms         = opt(integer(1, 3600000), 1000),
    connect_timeout_ms = opt(integer(1, 3600000), 500),
    max_idle           = opt(integer(0, 10000), 20),
    failure_limit      = opt(integer(1, 1000000), 3),
    retry_after_ms     = opt(integer(0, 3600000), 1000),
    retry_max_ms       = opt(integer(0, 3600000), function(t)
                             local base = t.retry_after_ms or 1000
                             return base > 30000 and base or 30000
                         end),
    rejoin             = opt(one_of("serve", "flush"), "serve"),
    rejoin_after_ms    = opt(integer(0, 86400000), nil),
    eject              = opt(boolean, false),
    tls                = opt(check_tls, nil),
    coalesce           = opt(boolean, false),
}

local build = {}    -- kind -> function(t, where) -> object

-- coalesce = true is lg.coalesce{ to = <the pool> }: every route that names
-- the returned object reaches the pool through that one coalesce node.
function build.pool(t, where)
    local r = check_fields(POOL_FIELDS, t, new_route("pool", where))
    if r.retry_max_ms < r.retry_after_ms then
        fail("field 'retry_max_ms' must be at least retry_after_ms (%d; got %d)",
             r.retry_after_ms, r.retry_max_ms)
    end
    if r.rejoin_after_ms ~= nil and r.rejoin ~= "flush" then
        fail("field 'rejoin_after_ms' is only used with rejoin = 'flush'")
    end
    r.rejoin_after_ms = r.rejoin_after_ms or 0
    if not r.coalesce then return r end
    r.coalesce = nil
    local co = new_route("coalesce", where)
    co.to = r
    return co
end

---------------------------------------------------------------------------
-- lg.prefix
---------------------------------------------------------------------------

local PREFIX_FIELDS = {
    default = req(route),
}

local KEY_MAX = 250

-- The keys of a map-like node's table but 'default', sorted (so the
-- compiled map does not depend on table order); each must be a string,
-- what a key is named in the error.
local function map_keys(t, what)
    local keys = {}
    for k in pairs(t) do
        if type(k) ~= "string" then
            fail("key %s is not %s (got %s key)", show(k), what, type(k))
        end
        if k ~= "default" then keys[#keys + 1] = k end
    end
    sort(keys)
    return keys
end

-- Without 'default', a misspelt one would be taken for a key of the map.
local function check_default_spelt(t, keys)
    if t.default ~= nil then return end
    for _, k in ipairs(keys) do
        if distance(k, "default") <= 2 then
            fail("missing required field 'default' (is '%s' a typo?)", k)
        end
    end
end

function build.prefix(t, where)
    local r = new_route("prefix", where)
    local map, keys = {}, map_keys(t, "a string prefix")
    for _, k in ipairs(keys) do
        local v = t[k]
        if k == "" then fail("the empty string is not a prefix (use 'default')") end
        if find(k, "[%s%c]") then
            fail("prefix '%s' contains spaces or control characters", k)
        end
        if #k > KEY_MAX then
            fail("prefix '%s' is longer than %d bytes", sub(k, 1, 20) .. "...", KEY_MAX)
        end
        if not is_route(v) then
            fail("prefix '%s' is not a route (got %s)", k, kind(v))
        end
        map[#map + 1] = { prefix = k, route = v }
    end
    check_default_spelt(t, keys)
    r.default = PREFIX_FIELDS.default(t.default, "field 'default'", t)
    r.map = map
    return r
end

---------------------------------------------------------------------------
-- lg.by_op
---------------------------------------------------------------------------

local OP_KEYS = { "read", "write", "delete", "arith", "touch",
                  "get", "gets", "gat", "gats", "set", "add", "replace", "append",
                  "prepend", "cas", "incr", "decr", "mg", "ms", "md", "ma", "me" }

local BY_OP_FIELDS = { default = opt(route, nil) }
for _, k in ipairs(OP_KEYS) do BY_OP_FIELDS[k] = opt(route, nil) end

function build.by_op(t, where)
    local v = check_fields(BY_OP_FIELDS, t, {})
    local r = new_route("by_op", where)
    local ops, n = {}, 0
    for _, k in ipairs(OP_KEYS) do
        if v[k] ~= nil then ops[k] = v[k]; n = n + 1 end
    end
    if n == 0 and v.default == nil then
        fail("needs at least one of 'read', 'write', 'delete', 'arith', 'touch', " ..
             "a command name or 'default'")
    end
    r.ops, r.default = ops, v.default
    return r
end

---------------------------------------------------------------------------
-- lg.by_client
---------------------------------------------------------------------------

local LISTENER_NAME_MAX, CN_MAX = 32, 255

-- Keys: a listener's name ("tcp", "tls", "unix" or a --listen name) or
-- "cn:NAME", a client certificate's common name; each value a route.
function build.by_client(t, where)
    local r = new_route("by_client", where)
    local map, keys = {}, map_keys(t, "a listener name or \"cn:NAME\"")
    for _, k in ipairs(keys) do
        local v, cn = t[k], nil
        if sub(k, 1, 3) == "cn:" then
            cn = sub(k, 4)
            if cn == "" or #cn > CN_MAX or find(cn, "%c") then
                fail("'%s': the common name after 'cn:' must be 1-%d bytes without " ..
                     "control characters", k, CN_MAX)
            end
        elseif #k > LISTENER_NAME_MAX or find(k, "[^%w_%.%-]") then
            fail("'%s' is not a listener name (1-%d letters, digits, '_', '-', '.') " ..
                 "nor \"cn:NAME\"", k, LISTENER_NAME_MAX)
        end
        if not is_route(v) then
            fail("'%s' is not a route (got %s)", k, kind(v))
        end
        map[#map + 1] = { name = cn or k, cn = cn ~= nil, route = v }
    end
    check_default_spelt(t, keys)
    if #map == 0 then
        fail("needs at least one listener name or \"cn:NAME\" besides 'default'")
    end
    r.default = req(route)(t.default, "field 'default'", t)
    r.map = map
    return r
end

---------------------------------------------------------------------------
-- lg.failover and the fan-outs (positional children + named options)
---------------------------------------------------------------------------

local FAILOVER_ON = { "error", "timeout", "server_error" }

local function check_on(v, label)
    if not is_list(v) or #v == 0 then
        fail("%s must be a non-empty list like {\"error\", \"timeout\"}%s", label,
             type(v) == "table" and "" or format(" (got %s)", kind(v)))
    end
    local set = { error = false, timeout = false, server_error = false }
    for i = 1, #v do
        local w = v[i]
        if set[w] == nil then
            fail("%s[%d] must be 'error', 'timeout' or 'server_error' (got %s)",
                 label, i, show(w))
        end
        set[w] = true
    end
    return set
end

-- Exptimes above 30 days are unix times to memcached: a TTL is at most that.
local TTL_MAX = 2592000
local WAIT_MS_MAX = 3600000

local FAILOVER_FIELDS = {
    on         = opt(check_on, function()
                     return { error = true, timeout = true, server_error = false }
                 end),
    miss       = opt(boolean, false),
    writes     = opt(one_of("primary", "failover"), "primary"),
    max_tries  = opt(integer(1, 1000), nil),
    gutter_ttl = opt(integer(1, TTL_MAX), nil),
    wait_ms    = opt(integer(1, WAIT_MS_MAX), nil),
}

function build.failover(t, where)
    local r = check_fields(FAILOVER_FIELDS, t, new_route("failover", where), true)
    r.children = children_of(t, 2)
    if r.gutter_ttl ~= nil and r.writes ~= "failover" then
        fail("field 'gutter_ttl' needs writes = \"failover\" (otherwise no write " ..
             "reaches the later children)")
    end
    return r
end

local FANOUT_FIELDS = {
    all_sync    = { reply = opt(one_of("worst", "first"), "worst") },
    all_initial = {},
    all_fastest = { wait_ms = opt(integer(1, WAIT_MS_MAX), nil) },
    all_async   = {},
}

for name, spec in pairs(FANOUT_FIELDS) do
    build[name] = function(t, where)
        local r = check_fields(spec, t, new_route(name, where), true)
        r.children = children_of(t, 1)
        return r
    end
end

-- lg.balance{ a, b, c, by = ... }: one child per request (src/balance.c).
local BALANCE_MAX = 64
local BALANCE_FIELDS = {
    by = opt(one_of("random", "key", "least_outstanding"), "random"),
}

function build.balance(t, where)
    local r = check_fields(BALANCE_FIELDS, t, new_route("balance", where), true)
    r.children = children_of(t, 1)
    if #r.children > BALANCE_MAX then
        fail("takes at most %d routes (got %d)", BALANCE_MAX, #r.children)
    end
    return r
end

---------------------------------------------------------------------------
-- lg.rewrite, lg.shadow, lg.warmup, lg.error, lg.hook
---------------------------------------------------------------------------

local REWRITE_FIELDS = {
    strip = opt(token(KEY_MAX), nil),
    add   = opt(token(KEY_MAX), nil),
    to    = req(route),
}

function build.rewrite(t, where)
    local r = check_fields(REWRITE_FIELDS, t, new_route("rewrite", where))
    if r.strip == nil and r.add == nil then
        fail("needs 'strip' or 'add' (or both)")
    end
    return r
end

local TTL_FIELDS = {
    to  = req(route),
    set = opt(integer(0, TTL_MAX), nil),
    max = opt(integer(1, TTL_MAX), nil),
}

function build.ttl(t, where)
    local r = check_fields(TTL_FIELDS, t, new_route("ttl", where))
    if (r.set == nil) == (r.max == nil) then
        fail("needs exactly one of 'set' (replace the exptime) or 'max' (cap it)")
    end
    return r
end

local RATE_MAX = 1e9

local RATELIMIT_FIELDS = {
    to    = req(route),
    rate  = req(number(0.001, RATE_MAX)),
    -- Default bucket: one second's worth of requests.
    burst = opt(integer(1, RATE_MAX), function(t)
                return type(t.rate) == "number" and math.max(1, math.ceil(t.rate)) or 1
            end),
    scope = opt(one_of("worker", "global"), "worker"),
    over  = opt(one_of("error", "pass"), "error"),
}

function build.ratelimit(t, where)
    return check_fields(RATELIMIT_FIELDS, t, new_route("ratelimit", where))
end

local SHADOW_FIELDS = {
    main     = req(route),
    shadow   = req(route),
    fraction = opt(number(0, 1), 1.0),
    ops      = opt(one_of("all", "read", "write"), "all"),
}

function build.shadow(t, where)
    local r = check_fields(SHADOW_FIELDS, t, new_route("shadow", where))
    if r.main == r.shadow then fail("'main' and 'shadow' are the same route") end
    return r
end

local WARMUP_FIELDS = {
    cold        = req(route),
    warm        = req(route),
    exptime     = req(integer(0, 2147483647)),
    delete_warm = opt(boolean, true),
}

function build.warmup(t, where)
    local r = check_fields(WARMUP_FIELDS, t, new_route("warmup", where))
    if r.cold == r.warm then fail("'cold' and 'warm' are the same route") end
    return r
end

local NEARCACHE_FIELDS = {
    to        = req(route),
    ttl_ms    = opt(integer(1, 3600 * 1000), 500),
    max_items = opt(integer(1, 100000000), 10000),
    max_bytes = opt(size(1024, 2 ^ 50), 64 * 1024 * 1024),
    hot_qps   = opt(number(0, 1e12), 200),
}

function build.nearcache(t, where)
    return check_fields(NEARCACHE_FIELDS, t, new_route("nearcache", where))
end

local function error_text(v, label)
    text_line(v, label)
    if find(v, "%c") then
        fail("%s must not contain control characters", label)
    end
    return v
end

local ERROR_FIELDS = {
    msg = req(error_text),
}

function build.error(t, where)
    return check_fields(ERROR_FIELDS, t, new_route("error", where))
end


local HOOK_FIELDS = {
    fn     = req(func),
    routes = req(route_list("routes")),
    cache  = opt(one_of("prefix", "prefix+op"), nil),
    delim  = opt(one_char, ":"),
}

function build.hook(t, where)
    return check_fields(HOOK_FIELDS, t, new_route("hook", where))
end

-- lg.coalesce{ to = route }: identical gets in flight from one worker go
-- to `to` once, and every waiting client gets the reply.
local COALESCE_FIELDS = {
    to = req(route),
}

function build.coalesce(t, where)
    return check_fields(COALESCE_FIELDS, t, new_route("coalesce", where))
end

---------------------------------------------------------------------------
-- lg.policy
---------------------------------------------------------------------------

-- settings.log_sample: a share 0..1 (0.001) or the string "1/N" (one in N).
local function check_sample(v, label)
    if type(v) == "number" then
        return number(0, 1)(v, label)
    end
    if type(v) == "string" then
        local n = tonumber(v:match("^1/(%d+)$"))
        if n and n >= 1 then return 1 / n end
    end
    fail("%s must be a number from 0 to 1 or a string \"1/N\" like \"1/1000\" (got %s)",
         label, show(v))
end

-- settings.resolver: the nameserver to ask for server names, "ip:port"
-- ("[v6]:port" for IPv6), instead of /etc/resolv.conf's.
local function check_resolver(v, label)
    local ok = type(v) == "string" and (v:match("^%d+%.%d+%.%d+%.%d+:%d+$")
                                        or v:match("^%[[%x:.]+%]:%d+$"))
    local port = ok and tonumber(v:match(":(%d+)$"))
    if not ok or port < 1 or port > PORT_MAX then
        fail("%s must be a nameserver \"ip:port\" like \"127.0.0.1:53\" (got %s)", label,
             type(v) == "string" and show(v) or kind(v))
    end
    return v
end

local SETTINGS_FIELDS = {
    hook_errors         = opt(one_of("server_error", "default"), "server_error"),
    fallback            = opt(route, nil),
    decision_cache_size = opt(integer(0, 1000000), 4096),
    item_max            = opt(integer(1024, 128 * 1024 * 1024), 1048576),
    max_memory          = opt(integer(1024 * 1024, 2 ^ 50), 1024 * 1024 * 1024),
    client_max_memory   = opt(integer(2 * 1024, 2 ^ 50), nil),
    log_level           = opt(one_of("error", "warn", "info", "debug"), nil),
    max_remap           = opt(number(0, 1), nil),
    log_slow_ms         = opt(integer(0, 3600000), nil),
    log_sample          = opt(check_sample, nil),
    resolve_every_s     = opt(integer(0, 86400), 30),
    resolver            = opt(check_resolver, nil),
    hotkeys_sample      = opt(integer(1, 1000000), 16),
    hotkeys_metrics     = opt(one_of("off", "hash", "truncate"), "off"),
    hotkeys_metrics_top = opt(integer(1, 32), 10),
    hotkeys_metrics_key_bytes = opt(integer(1, 250), 16),
}

local function check_settings(v, label)
    if type(v) ~= "table" or is_route(v) or is_policy(v) then
        fail("%s must be a table (got %s)", label, kind(v))
    end
    local s = check_fields(SETTINGS_FIELDS, v, {}, false, "settings.")
    if s.hook_errors == "default" and s.fallback == nil then
        fail("field 'settings.fallback' is required when hook_errors = 'default'")
    end
    if s.hook_errors ~= "default" and s.fallback ~= nil then
        fail("field 'settings.fallback' is only used with hook_errors = 'default'")
    end
    -- One largest value and its request's copy must fit, or it never could.
    if s.client_max_memory ~= nil and s.client_max_memory < 2 * s.item_max then
        fail("field 'settings.client_max_memory' must be at least twice settings.item_max "
             .. "(%d bytes; got %s)", 2 * s.item_max, tostring(s.client_max_memory))
    end
    return s
end

-- A test's assumed conditions: a name or a list of names (pools or servers).
local TEST_CONDITIONS = { "down", "miss", "timeout", "listener", "cn" }

local function check_condition(x, at, field)
    if field == "listener" or field == "cn" then    -- the client's way in: one name
        if x ~= nil and (type(x) ~= "string" or x == "" or find(x, "%c")) then
            fail("%s: '%s' must be a non-empty one-line string (got %s)", at, field, show(x))
        end
        return
    end
    if x == nil or (type(x) == "string" and x ~= "") then return end
    if not is_list(x) or #x == 0 then
        fail("%s: %s must be a pool or server name, or a list of them (got %s)", at, field,
             kind(x))
    end
    for j = 1, #x do
        if type(x[j]) ~= "string" or x[j] == "" then
            fail("%s: %s[%d] must be a pool or server name (got %s)", at, field, j, show(x[j]))
        end
    end
end

local function check_tests(v, label)
    if not is_list(v) then
        fail("%s must be a list of {request, expected} (got %s)", label, kind(v))
    end
    for i = 1, #v do
        local e, at = v[i], format("tests[%d]", i)
        if type(e) ~= "table" or e[1] == nil or e[2] == nil or e[3] ~= nil then
            fail("%s must be {request line, expected pool name(s)} (with optional "
                 .. "down = {...}, timeout = {...}, miss = {...})", at)
        end
        for k in pairs(e) do
            if not is_index(k) or k > 2 then
                if type(k) ~= "string" then
                    fail("%s: unexpected entry [%s]", at, tostring(k))
                end
                local known = false
                for _, field in ipairs(TEST_CONDITIONS) do known = known or k == field end
                if not known then unknown_field(k, TEST_CONDITIONS, at .. ".") end
            end
        end
        if type(e[1]) ~= "string" or e[1] == "" or find(e[1], "[\r\n]") then
            fail("%s: the request must be a one-line string like \"get foo\" (got %s)", at,
                 type(e[1]) == "string" and show(e[1]) or kind(e[1]))
        end
        local x = e[2]
        if type(x) == "string" then
            if x == "" then fail("%s: the expected pool name is empty", at) end
        elseif is_list(x) then     -- {}: no pool takes the request
            for j = 1, #x do
                if type(x[j]) ~= "string" or x[j] == "" then
                    fail("%s: expected[%d] must be a pool name (got %s)", at, j, show(x[j]))
                end
            end
        else
            fail("%s: expected must be a pool name or a list of pool names (got %s)", at,
                 kind(x))
        end
        for _, field in ipairs(TEST_CONDITIONS) do
            check_condition(e[field], at, field)
        end
    end
    return v
end

local POLICY_FIELDS = {
    route    = req(route),
    settings = opt(check_settings, function() return check_settings({}, "") end),
    tests    = opt(check_tests, function() return {} end),
}

-- The routes directly below r, for the whole-tree checks.
local function each_child(r, fn)
    local k = r._type
    if k == "prefix" or k == "by_client" then
        for _, e in ipairs(r.map or {}) do fn(e.route) end
        fn(r.default)
    elseif k == "by_op" then
        for _, name in ipairs(OP_KEYS) do
            if r.ops and r.ops[name] then fn(r.ops[name]) end
        end
        fn(r.default)
    elseif k == "rewrite" or k == "coalesce" or k == "ttl" or k == "ratelimit"
           or k == "nearcache" then
        fn(r.to)
    elseif k == "shadow" then
        fn(r.main); fn(r.shadow)
    elseif k == "warmup" then
        fn(r.cold); fn(r.warm)
    elseif k == "hook" then
        for _, c in ipairs(r.routes or {}) do fn(c) end
    else
        for _, c in ipairs(r.children or {}) do fn(c) end
    end
end

-- Two distinct pools may not share a name (names identify pools in tests
-- and stats); a tree edited by hand into a cycle is rejected here already.
local function check_tree(root, fallback)
    local state, pools = {}, {}
    local function visit(r)
        if not is_route(r) then return end
        if state[r] == "open" then
            fail("the route tree has a cycle (through lg.%s%s)", r._type,
                 r._where and (" built at " .. r._where) or "")
        end
        if state[r] then return end
        state[r] = "open"
        if r._type == "pool" then
            local other = pools[r.name]
            if other and other ~= r then
                fail("two different pools are named '%s' (built at %s and %s)", r.name,
                     other._where or "?", r._where or "?")
            end
            pools[r.name] = r
        end
        each_child(r, visit)
        state[r] = "done"
    end
    visit(root)
    visit(fallback)
end

function build.policy(t, where)
    local p = check_fields(POLICY_FIELDS, t,
                           setmetatable({ _type = "policy", _where = where }, lg.Policy))
    check_tree(p.route, p.settings.fallback)
    return p
end

---------------------------------------------------------------------------
-- Composite helpers (plain Lua over the constructors above)
---------------------------------------------------------------------------

local RLWA_FIELDS = {
    here  = req(route),
    there = req(function(v, label)
                if is_route(v) then return { v } end
                return route_list("there")(v, label)
            end),
    write = opt(one_of("all_sync", "all_initial", "all_async"), "all_sync"),
}

function build.read_local_write_all(t, where)
    local v = check_fields(RLWA_FIELDS, t, {})
    local function all()
        local list = { v.here }
        for i, r in ipairs(v.there) do list[i + 1] = r end
        return list
    end
    local fan = build[v.write]
    return build.by_op({
        read   = build.failover(all(), where),
        write  = fan(all(), where),
        delete = fan(all(), where),
        arith  = v.here,
        touch  = fan(all(), where),
    }, where)
end

---------------------------------------------------------------------------
-- Public constructors: phase rule, argument shape, caller position.
---------------------------------------------------------------------------

-- "file:line" of the code that called a constructor (nil for a tail call
-- or a call from C, where Lua keeps no position).
local function caller_where()
    local info = getinfo and getinfo(3, "Sl")
    if info and info.what ~= "C" and info.currentline and info.currentline > 0 then
        return info.short_src .. ":" .. info.currentline
    end
    return nil
end

local function constructor(name, fn)
    local prefix = "lg." .. name .. ": "
    return function(...)
        if lg._phase ~= "load" then error(PHASE_MSG, 2) end
        local t = ...
        if select("#", ...) ~= 1 or type(t) ~= "table" or is_route(t) or is_policy(t) then
            error(format("%sexpects one table argument, as in lg.%s{ ... } (got %s)", prefix,
                         name, select("#", ...) == 0 and "nothing" or kind(t)), 2)
        end
        local where = caller_where()
        local ok, res = pcall(fn, t, where)
        if ok then return res end
        if type(res) == "table" and res[FAIL] then error(prefix .. res.msg, 2) end
        error(res, 0)
    end
end

for _, name in ipairs({ "pool", "prefix", "by_op", "by_client", "failover", "all_sync", "all_initial",
                        "all_fastest", "all_async", "rewrite", "shadow", "warmup", "error",
                        "hook", "balance", "coalesce", "ttl", "ratelimit", "nearcache",
                        "policy", "read_local_write_all" }) do
    lg[name] = constructor(name, build[name])
end

lg.is_route = is_route

local LOG_LEVELS = { error = true, warn = true, info = true, debug = true }

-- lg.log(level, fmt, ...): usable at load time and in hooks. Without extra
-- arguments fmt is logged as is (so a stray '%' cannot raise).
function lg.log(level, fmt, ...)
    if not LOG_LEVELS[level] then
        error(format("lg.log: level must be 'error', 'warn', 'info' or 'debug' (got %s)",
                     show(level)), 2)
    end
    if type(fmt) ~= "string" then
        error(format("lg.log: message must be a string (got %s)", kind(fmt)), 2)
    end
    local msg = fmt
    if select("#", ...) > 0 then
        local ok, res = pcall(format, fmt, ...)
        if not ok then error("lg.log: " .. tostring(res), 2) end
        msg = res
    end
    if lg._log then
        lg._log(level, msg)
    else
        io.stderr:write(format("luagent [%s] %s\n", level, msg))
    end
end

lg.Route.__tostring = function(r)
    local s = "lg." .. tostring(r._type)
    if r._type == "pool" then s = s .. " '" .. tostring(r.name) .. "'" end
    if r._where then s = s .. " (" .. r._where .. ")" end
    return s
end

lg.Policy.__tostring = function(p)
    return "lg.policy" .. (p._where and (" (" .. p._where .. ")") or "")
end

return lg
