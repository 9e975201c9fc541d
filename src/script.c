/*
 * script.c: the Lua policy bridge: the only file that includes LuaJIT.
 *
 * Loading a policy: a fresh VM with a capped allocator and the JIT off, so an
 * instruction-count hook reliably stops runaway build code; the embedded
 * lua/luagent.lua is preloaded as "luagent", lg.args carries the command
 * line, and the script must return lg.policy{...}. The tree of route tables
 * it returns is compiled into C route nodes: a table reached twice is one
 * node, a table reached while it is being compiled is a cycle. Each VM keeps
 * a C map from its route tables' addresses to node ids (the tables anchored
 * in its registry), so a hook's return value maps to a node without a Lua
 * field read. Then the policy's self-tests run in the same VM.
 *
 * Request time: only lg.hook nodes call Lua, each worker in its own VM (the
 * load VM serves worker 0; the others run the script again and must compile
 * to the same tree). A policy without hooks never touches Lua per request.
 */
#include "script.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "balance.h"
#include "clock.h"
#include "config.h"
#include "discover.h"
#include "ketama.h"
#include "listener.h"
#include "log.h"
#include "luagent.h"
#include "ratelimit.h"
#include "reqlog.h"
#include "route.h"
#include "settings.h"
#include "sim.h"
#include "tls.h"
#include "ttl.h"

extern const unsigned char embedded_luagent[];
extern const size_t embedded_luagent_len;
extern const unsigned char embedded_default_policy[];
extern const size_t embedded_default_policy_len;

#define DEFAULT_POLICY_NAME "default.lua (built in)"

struct script_vm {
    lua_State           *L;
    size_t               mem_used;
    size_t               mem_limit;     /* 0: no cap */
    long                 instr_left;    /* instruction budget while loading */
    char                 last_where[128]; /* "file:line" last seen by the count hook */
    int                 *hook_refs;     /* hook index -> registry ref of fn */
    struct table_slot   *tables;        /* route table address -> node id */
    unsigned             tables_shift;  /* 32 - log2(slots) */
    int                  tables_ref;    /* anchors the tables the map names */
    lua_State           *caller;        /* hooks run here: its stack holds the */
    int                  caller_ref;    /* request, then each hook's fn, in order */
    struct hook_request *req;
    char                 newkey[KEY_MAX + 2];
    char                 hook_error[ERR_LEN]; /* the last hook call's error */
};

/* An open-addressing slot of a VM's route table map; free when table is NULL. */
struct table_slot {
    const void *table;
    int         id;
};

struct script_state {
    struct script_vm   *vms;            /* one per worker */
    int                 nvms;
};

/* ---- VM set-up -------------------------------------------------------- */

static void *
capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct script_vm *vm = ud;
    size_t old = ptr ? osize : 0;
    void *p;

    if (nsize == 0) {
        free(ptr);
        vm->mem_used -= old;
        return NULL;
    }
    if (vm->mem_limit != 0 && vm->mem_used - old + nsize > vm->mem_limit)
        return NULL;
    p = realloc(ptr, nsize);
    if (p != NULL)
        vm->mem_used = vm->mem_used - old + nsize;
    return p;
}

static void
count_hook(lua_State *L, lua_Debug *ar)
{
    struct script_vm *vm;

    lua_getallocf(L, (void **)&vm);
    vm->instr_left -= 1000;
    lua_getinfo(L, "Sl", ar);
    /* Remembered for errors that carry no position (out of memory). */
    snprintf(vm->last_where, sizeof(vm->last_where), "%s:%d", ar->short_src, ar->currentline);
    if (vm->instr_left < 0) {
        luaL_error(L, "%s:%d: instruction limit exceeded (%d million VM instructions): "
                   "a runaway loop?", ar->short_src, ar->currentline,
                   (int)(SCRIPT_INSTR_LIMIT / 1000000));
    }
}

static int
l_log(lua_State *L)
{
    const char *level = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    enum log_level lv = LOG_INFO;

    if (strcmp(level, "error") == 0)
        lv = LOG_ERROR;
    else if (strcmp(level, "warn") == 0)
        lv = LOG_WARN;
    else if (strcmp(level, "debug") == 0)
        lv = LOG_DEBUG;
    log_ratelimited(lv, lua_topointer(L, 2), "policy: %s", msg);
    return 0;
}

static int
load_luagent(lua_State *L)
{
    if (luaL_loadbuffer(L, (const char *)embedded_luagent, embedded_luagent_len,
                        "@lua/luagent.lua") != 0)
        return lua_error(L);
    lua_call(L, 0, 1);
    return 1;
}

static void
push_server_list(lua_State *L, const struct server_spec *specs, int n)
{
    int i;

    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushfstring(L, "%s:%d:%d", specs[i].host, specs[i].port, (int)specs[i].weight);
        lua_rawseti(L, -2, i + 1);
    }
}

/* require "luagent" and set lg.args and lg._log; leaves nothing on the stack. */
static int
setup_luagent(lua_State *L, const struct settings *s)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, load_luagent);
    lua_setfield(L, -2, "luagent");
    lua_pop(L, 2);
    lua_getglobal(L, "require");
    lua_pushstring(L, "luagent");
    if (lua_pcall(L, 1, 1, 0) != 0)
        return -1;
    lua_newtable(L);
    push_server_list(L, s ? s->servers : NULL, s ? s->nservers : 0);
    lua_setfield(L, -2, "servers");
    push_server_list(L, s ? s->backups : NULL, s ? s->nbackups : 0);
    lua_setfield(L, -2, "backups");
    lua_pushboolean(L, s && s->ketama);
    lua_setfield(L, -2, "ketama");
    lua_createtable(L, s ? s->nextra : 0, 0);
    for (int i = 0; s && i < s->nextra; i++) {
        lua_pushstring(L, s->extra[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "extra");
    if (s != NULL && s->backend_tls_ca != NULL) {
        lua_pushstring(L, s->backend_tls_ca);
        lua_setfield(L, -2, "backend_tls_ca");
    }
    lua_setfield(L, -2, "args");
    lua_pushcfunction(L, l_log);
    lua_setfield(L, -2, "_log");
    lua_pop(L, 1);
    return 0;
}

static int
vm_open(struct script_vm *vm, bool for_load)
{
    memset(vm, 0, sizeof(*vm));
    vm->mem_limit = for_load ? SCRIPT_MEM_LIMIT : 0;
    vm->instr_left = SCRIPT_INSTR_LIMIT;
    vm->caller_ref = LUA_NOREF;
    vm->tables_ref = LUA_NOREF;
    vm->L = lua_newstate(capped_alloc, vm);
    if (vm->L == NULL) {
        /* Builds whose allocator cannot be replaced: no memory cap then. */
        vm->mem_limit = 0;
        vm->L = luaL_newstate();
        if (vm->L == NULL)
            return -1;
    }
    luaL_openlibs(vm->L);
    if (for_load) {
        luaJIT_setmode(vm->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
        lua_sethook(vm->L, count_hook, LUA_MASKCOUNT, 1000);
    }
    return 0;
}

static void
vm_close(struct script_vm *vm)
{
    if (vm->L != NULL)
        lua_close(vm->L);
    free(vm->hook_refs);
    free(vm->tables);
    vm->L = NULL;
    vm->hook_refs = NULL;
    vm->tables = NULL;
}

/* The request VM: JIT on, no instruction cap (hooks must be bounded). */
static void
vm_serve(struct script_vm *vm)
{
    lua_sethook(vm->L, NULL, 0, 0);
    luaJIT_setmode(vm->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
    vm->mem_limit = 0;
}

static int
traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);

    lua_pushstring(L, msg ? msg : "(error object is not a string)");
    return 1;
}

static bool has_position(const char *msg);

/* Run the policy; leaves the policy table on the stack. */
static int
vm_run_policy(struct script_vm *vm, const char *path, const struct settings *s,
              char *err, size_t errlen)
{
    lua_State *L = vm->L;
    int rc;

    lua_pushcfunction(L, traceback);
    if (setup_luagent(L, s) < 0) {
        snprintf(err, errlen, "lua/luagent.lua: %s", lua_tostring(L, -1));
        return -1;
    }
    if (path == NULL)
        rc = luaL_loadbuffer(L, (const char *)embedded_default_policy,
                             embedded_default_policy_len, "@" DEFAULT_POLICY_NAME);
    else
        rc = luaL_loadfilex(L, path, "t");  /* source only: bytecode is unverified */
    if (rc != 0) {
        const char *msg = lua_tostring(L, -1);

        if (msg != NULL && has_position(msg))
            snprintf(err, errlen, "%s", msg);
        else if (msg != NULL && strncmp(msg, "cannot open", 11) == 0)
            snprintf(err, errlen, "%s", msg);       /* already names the file */
        else
            snprintf(err, errlen, "%s: %s", path ? path : DEFAULT_POLICY_NAME,
                     msg ? msg : "cannot load");
        return -1;
    }
    if (lua_pcall(L, 0, 1, -2) != 0) {
        const char *msg = lua_tostring(L, -1);

        if (msg && strstr(msg, "not enough memory"))
            snprintf(err, errlen, "%s: memory limit exceeded (%u MiB)",
                     vm->last_where[0] ? vm->last_where : (path ? path : DEFAULT_POLICY_NAME),
                     SCRIPT_MEM_LIMIT >> 20);
        else
            snprintf(err, errlen, "%s", msg ? msg : "error");
        return -1;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s: the script must return lg.policy{...} (got %s)",
                 path ? path : DEFAULT_POLICY_NAME, luaL_typename(L, -1));
        return -1;
    }
    lua_getfield(L, -1, "_type");
    rc = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "policy") == 0;
    lua_pop(L, 1);
    if (!rc) {
        snprintf(err, errlen, "%s: the script must return lg.policy{...}",
                 path ? path : DEFAULT_POLICY_NAME);
        return -1;
    }
    return 0;
}

/* ---- compiling route tables into nodes -------------------------------- */

struct compiler {
    lua_State        *L;
    struct script_vm *vm;
    struct config    *cfg;
    const char       *source;   /* file name for messages */
    int               memo;     /* stack index: route table -> node */
    char             *err;
    size_t            errlen;
    bool              failed;
};

static char cycle_marker;

/* Record a compile error, prefixed with where the object was built. */
static struct route *
fail(struct compiler *cc, int idx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static struct route *
fail(struct compiler *cc, int idx, const char *fmt, ...)
{
    char msg[ERR_LEN];
    const char *where = NULL;
    va_list ap;

    if (cc->failed)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (idx != 0) {
        lua_getfield(cc->L, idx, "_where");
        where = lua_tostring(cc->L, -1);
        lua_pop(cc->L, 1);
    }
    snprintf(cc->err, cc->errlen, "%s: %s", where ? where : cc->source, msg);
    cc->failed = true;
    return NULL;
}

static int
abs_index(lua_State *L, int idx)
{
    return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

static double
field_number(lua_State *L, int idx, const char *name, double dflt)
{
    double v;

    lua_getfield(L, idx, name);
    v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

/* Integer fields: the Lua side has checked that they are whole numbers. */
static lua_Integer
field_int(lua_State *L, int idx, const char *name, lua_Integer dflt)
{
    return (lua_Integer)field_number(L, idx, name, (double)dflt);
}

static bool
field_bool(lua_State *L, int idx, const char *name, bool dflt)
{
    bool v;

    lua_getfield(L, idx, name);
    v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* A string field copied (NULL when absent). */
static char *
field_str(lua_State *L, int idx, const char *name)
{
    char *v = NULL;

    lua_getfield(L, idx, name);
    if (lua_type(L, -1) == LUA_TSTRING)
        v = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return v;
}

static bool
field_is(lua_State *L, int idx, const char *name, const char *value)
{
    bool v;

    lua_getfield(L, idx, name);
    v = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), value) == 0;
    lua_pop(L, 1);
    return v;
}

static struct route *compile_route(struct compiler *cc, int idx);

/* Compile the route in field `name` of the table at idx (NULL if absent). */
static struct route *
compile_field(struct compiler *cc, int idx, const char *name, bool required)
{
    struct route *r = NULL;

    lua_getfield(cc->L, idx, name);
    if (lua_istable(cc->L, -1))
        r = compile_route(cc, -1);
    else if (required)
        fail(cc, idx, "field '%s' must be a route", name);
    lua_pop(cc->L, 1);
    return r;
}

/* Compile the list in field `name` into r->children. */
static int
compile_children(struct compiler *cc, int idx, const char *name, struct route *r)
{
    lua_State *L = cc->L;
    int i, n;

    lua_getfield(L, idx, name);
    n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    r->children = calloc((size_t)(n ? n : 1), sizeof(*r->children));
    if (r->children == NULL) {
        lua_pop(L, 1);
        fail(cc, idx, "out of memory");
        return -1;
    }
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        r->children[i] = lua_istable(L, -1) ? compile_route(cc, -1) : NULL;
        lua_pop(L, 1);
        if (r->children[i] == NULL) {
            lua_pop(L, 1);
            fail(cc, idx, "%s[%d] is not a route", name, i + 1);
            return -1;
        }
    }
    r->nchildren = n;
    lua_pop(L, 1);
    return 0;
}

/*
 * The pool's tls table (validated by lua/luagent.lua) into a client context:
 * the files are loaded now, so a bad one fails the load. 0 (pool->tls may
 * stay NULL: plain TCP) or -1 with the reason in err.
 */
static int
compile_pool_tls(lua_State *L, int idx, struct pool *pool, char *err, size_t errlen)
{
    struct tls_client_opts o;
    char *ca, *cert, *key, *sni;

    lua_getfield(L, idx, "tls");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    ca = field_str(L, -1, "ca");
    cert = field_str(L, -1, "cert");
    key = field_str(L, -1, "key");
    sni = field_str(L, -1, "sni");
    o = (struct tls_client_opts){ .ca = ca, .cert = cert, .key = key, .sni = sni,
                                  .verify = field_bool(L, -1, "verify", true) };
    lua_pop(L, 1);
    pool->tls = tls_client_new(&o, err, errlen);
    free(ca);
    free(cert);
    free(key);
    free(sni);
    return pool->tls != NULL ? 0 : -1;
}

/*
 * A server named by a DNS name gets its address from discover.c's answers
 * (config_server filled in IP literals). A name not resolved yet leaves the
 * config pending: it is compiled to be checked, then loaded again once the
 * name has an answer, never served.
 */
static int
server_resolve(struct config *cfg, int id, char *err, size_t errlen)
{
    struct server *srv = &cfg->servers[id];

    if (srv->addrlen != 0 || srv->port == 0)
        return 0;       /* an address already, or an SRV name's stand-in (srv_expand) */
    switch (discover_host(srv->host, srv->port, &srv->addr, &srv->addrlen, err, errlen)) {
    case DISCOVER_OK:
        return 0;
    case DISCOVER_PENDING:
        cfg->discover_pending = true;
        return 0;
    case DISCOVER_FAILED:
        break;
    }
    return -1;
}

/*
 * The SRV name's servers appended to *rs (*n of them so far, room for *cap),
 * or, while the name has no answer, one stand-in server of the name itself
 * on port 0, so that the pending config still compiles (and is checked).
 */
static int
srv_expand(struct compiler *cc, const char *name, unsigned weight, struct ring_server **rs,
           int *n, int *cap, char *err, size_t errlen)
{
    const struct discover_target *t = NULL;
    int nt = 0, i;

    switch (discover_srv(name, &t, &nt, err, errlen)) {
    case DISCOVER_FAILED:
        return -1;
    case DISCOVER_PENDING:
        cc->cfg->discover_pending = true;
        nt = 0;
        break;
    case DISCOVER_OK:
        break;
    }
    if (*n + (nt ? nt : 1) > *cap) {
        struct ring_server *grown;

        *cap = (*n + (nt ? nt : 1)) * 2;
        grown = realloc(*rs, sizeof(**rs) * (size_t)*cap);
        if (grown == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        *rs = grown;
    }
    if (nt == 0)
        (*rs)[(*n)++] = (struct ring_server){ .host = name, .port = 0, .weight = weight };
    for (i = 0; i < nt; i++)
        (*rs)[(*n)++] = (struct ring_server){ .host = t[i].host, .port = t[i].port,
                                              .weight = weight };
    return 0;
}

/*
 * The pool's servers (the list at the top of the stack) as ring entries in
 * *out, SRV names expanded into their records' servers. Returns how many, or
 * -1 with err.
 */
static int
pool_servers_expand(struct compiler *cc, struct ring_server **out, char *err, size_t errlen)
{
    lua_State *L = cc->L;
    int i, count = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0, n = 0, cap = count;
    struct ring_server *rs;

    if (count == 0) {
        snprintf(err, errlen, "'servers' is empty");
        return -1;
    }
    rs = calloc((size_t)cap, sizeof(*rs));
    for (i = 0; i < count && rs != NULL; i++) {
        const char *srvname;
        unsigned weight;

        lua_rawgeti(L, -1, i + 1);
        weight = (unsigned)field_int(L, -1, "weight", 1);
        lua_getfield(L, -1, "srv");
        srvname = lua_tostring(L, -1);          /* kept alive by the table */
        lua_pop(L, 1);
        if (srvname != NULL) {
            lua_pop(L, 1);
            if (srv_expand(cc, srvname, weight, &rs, &n, &cap, err, errlen) < 0) {
                free(rs);
                return -1;
            }
            continue;
        }
        lua_getfield(L, -1, "host");
        rs[n].host = lua_tostring(L, -1);
        lua_pop(L, 1);
        rs[n].port = (int)field_int(L, -1, "port", DEFAULT_PORT);
        rs[n].weight = weight;
        lua_getfield(L, -1, "name");
        rs[n].name = lua_tostring(L, -1);
        lua_pop(L, 2);
        if (rs[n].host == NULL) {
            snprintf(err, errlen, "servers[%d] has no host", i + 1);
            free(rs);
            return -1;
        }
        n++;
    }
    if (rs == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *out = rs;
    return n;
}

static struct route *
compile_pool(struct compiler *cc, int idx, struct route *r)
{
    lua_State *L = cc->L;
    struct pool *pool;
    struct ring_server *rs = NULL;
    char *hash = field_str(L, idx, "hash"), *tag = field_str(L, idx, "hash_tag");
    int i, n, h;

    pool = calloc(1, sizeof(*pool));
    if (pool == NULL || config_add_pool(cc->cfg, pool) < 0) {
        free(pool);
        free(hash);
        free(tag);
        return fail(cc, idx, "out of memory");
    }
    pool->name = field_str(L, idx, "name");
    if (pool->name == NULL)
        pool->name = strdup("?");
    h = hash_by_name(hash ? hash : "md5");
    pool->hash = h < 0 ? HASH_MD5 : (enum hash_kind)h;
    if (tag != NULL && strlen(tag) == 2)
        memcpy(pool->hash_tag, tag, 3);
    free(hash);
    free(tag);
    if (h < 0)
        return fail(cc, idx, "lg.pool '%s': unknown hash", pool->name);
    pool->seed = field_str(L, idx, "seed");
    if (pool->seed != NULL)
        pool->seed_hash = hash_seed_of(pool->seed);
    pool->key_steps = pool->hash_tag[0] != '\0' || pool->seed != NULL;
    pool->timeout_ms = (int)field_int(L, idx, "timeout_ms", DEFAULT_TIMEOUT_MS);
    pool->eject = field_bool(L, idx, "eject", false);
    {
        char err[ERR_LEN];

        if (compile_pool_tls(L, idx, pool, err, sizeof(err)) < 0)
            return fail(cc, idx, "lg.pool '%s': %s", pool->name, err);
    }

    lua_getfield(L, idx, "servers");
    {
        char err[ERR_LEN];

        n = pool_servers_expand(cc, &rs, err, sizeof(err));
        if (n < 0) {
            lua_pop(L, 1);
            return fail(cc, idx, "lg.pool '%s': %s", pool->name, err);
        }
    }
    pool->server_ids = calloc((size_t)n, sizeof(int));
    pool->nservers = n;
    for (i = 0; i < n && pool->server_ids; i++) {
        char err[ERR_LEN];
        struct server *srv;
        int id;

        id = config_server(cc->cfg, rs[i].host, rs[i].port, err, sizeof(err));
        if (id < 0 || server_resolve(cc->cfg, id, err, sizeof(err)) < 0) {
            lua_pop(L, 1);
            free(rs);
            return fail(cc, idx, "lg.pool '%s': %s", pool->name, err);
        }
        pool->server_ids[i] = id;
        srv = &cc->cfg->servers[id];
        if (srv->configured) {
            /* Shared with an earlier pool: its settings hold, but the
             * transport must agree, or one pool's TLS would be silently
             * dropped (or imposed). */
            if (!tls_client_same(srv->tls, pool->tls)) {
                lua_pop(L, 1);
                free(rs);
                return fail(cc, idx, "lg.pool '%s': server %s is also in an earlier pool "
                            "with different tls settings", pool->name, srv->label);
            }
            continue;
        }
        srv->configured = true;
        srv->tls = pool->tls;
        srv->connect_timeout_ms = (int)field_int(L, idx, "connect_timeout_ms",
                                                 DEFAULT_CONNECT_TIMEOUT_MS);
        srv->failure_limit = (int)field_int(L, idx, "failure_limit", DEFAULT_FAILURE_LIMIT);
        srv->retry_after_ms = (int)field_int(L, idx, "retry_after_ms", DEFAULT_RETRY_AFTER_MS);
        srv->retry_max_ms = (int)field_int(L, idx, "retry_max_ms", DEFAULT_RETRY_MAX_MS);
        srv->rejoin_flush = field_is(L, idx, "rejoin", "flush");
        srv->rejoin_after_ms = (int)field_int(L, idx, "rejoin_after_ms", 0);
        srv->max_idle = (int)field_int(L, idx, "max_idle", DEFAULT_MAX_IDLE);
    }
    if (pool->server_ids == NULL) {
        lua_pop(L, 1);
        free(rs);
        return fail(cc, idx, "out of memory");
    }
    {
        /* The host and name strings stay alive in the server tables, which
         * the list on the stack keeps reachable until the ring is built (and
         * SRV targets in discover.c's cache, which nothing changes meanwhile). */
        char err[ERR_LEN];
        enum dist dist = field_is(L, idx, "dist", "modula") ? DIST_MODULA : DIST_KETAMA;

        pool->ring = ring_build(dist, rs, n, err, sizeof(err));
        free(rs);
        lua_pop(L, 1);
        if (pool->ring == NULL)
            return fail(cc, idx, "lg.pool '%s': %s", pool->name, err);
    }
    r->pool = pool;
    free(r->name);
    r->name = strdup(pool->name);
    return r;
}

static int
prefix_longest_first(const void *a, const void *b)
{
    const struct prefix_entry *x = a, *y = b;

    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return memcmp(x->prefix, y->prefix, x->len);
}

static struct route *
compile_prefix(struct compiler *cc, int idx, struct route *r)
{
    lua_State *L = cc->L;
    int i, n;

    lua_getfield(L, idx, "map");
    n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    r->prefixes = calloc((size_t)(n ? n : 1), sizeof(*r->prefixes));
    for (i = 0; i < n && r->prefixes; i++) {
        lua_rawgeti(L, -1, i + 1);
        r->prefixes[i].prefix = field_str(L, -1, "prefix");
        r->prefixes[i].len = r->prefixes[i].prefix ? (uint32_t)strlen(r->prefixes[i].prefix) : 0;
        r->nprefixes = i + 1;
        r->prefixes[i].route = compile_field(cc, lua_gettop(L), "route", true);
        lua_pop(L, 1);
        if (r->prefixes[i].route == NULL || r->prefixes[i].prefix == NULL) {
            lua_pop(L, 1);
            return fail(cc, idx, "lg.prefix: entry %d is not a prefix and a route", i + 1);
        }
    }
    lua_pop(L, 1);
    qsort(r->prefixes, (size_t)r->nprefixes, sizeof(*r->prefixes), prefix_longest_first);
    r->default_route = compile_field(cc, idx, "default", true);
    return r->default_route ? r : NULL;
}

/* by_client entries of one kind (CN or listener) from the map on top of the stack. */
static int
compile_client_entries(struct compiler *cc, int idx, struct route *r, int n, bool cn)
{
    lua_State *L = cc->L;
    int i;

    for (i = 0; i < n; i++) {
        struct client_entry *e = &r->clients[r->nclients];

        lua_rawgeti(L, -1, i + 1);
        if (field_bool(L, -1, "cn", false) != cn) {
            lua_pop(L, 1);
            continue;
        }
        e->cn = cn;
        e->name = field_str(L, -1, "name");
        r->nclients++;
        e->route = compile_field(cc, lua_gettop(L), "route", true);
        lua_pop(L, 1);
        if (e->route == NULL || e->name == NULL) {
            fail(cc, idx, "lg.by_client: entry %d is not a name and a route", i + 1);
            return -1;
        }
    }
    return 0;
}

static struct route *
compile_by_client(struct compiler *cc, int idx, struct route *r)
{
    lua_State *L = cc->L;
    int n, rc = 0;

    lua_getfield(L, idx, "map");
    n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    r->clients = calloc((size_t)(n ? n : 1), sizeof(*r->clients));
    if (r->clients == NULL)
        rc = -1;
    /* CN entries first: a client's certificate says more than its port. */
    if (rc == 0)
        rc = compile_client_entries(cc, idx, r, n, true);
    if (rc == 0)
        rc = compile_client_entries(cc, idx, r, n, false);
    lua_pop(L, 1);
    if (rc < 0)
        return fail(cc, idx, "out of memory");
    r->default_route = compile_field(cc, idx, "default", true);
    return r->default_route ? r : NULL;
}

static struct route *
compile_by_op(struct compiler *cc, int idx, struct route *r)
{
    lua_State *L = cc->L;
    int i, ops;

    lua_getfield(L, idx, "ops");
    ops = lua_gettop(L);
    for (i = 0; i < OP_COUNT; i++)
        if (i != OP_PROXY)
            r->by_op[i] = compile_field(cc, ops, proto_op_name((enum op)i), false);
    for (i = 0; i < CMD_COUNT; i++)
        if (proto_cmd_op((enum cmd)i) != OP_PROXY)
            r->by_cmd[i] = compile_field(cc, ops, proto_cmd_name((enum cmd)i), false);
    lua_pop(L, 1);
    r->default_route = compile_field(cc, idx, "default", false);
    if (r->default_route == NULL) {
        /* Anything not covered answers an error rather than vanishing. */
        r->default_route = config_route_new(ROUTE_ERROR, "error");
        if (r->default_route == NULL || config_add_node(cc->cfg, r->default_route) < 0)
            return fail(cc, idx, "out of memory");
        r->default_route->error_line = strdup("SERVER_ERROR luagent: no route for this command\r\n");
    }
    return cc->failed ? NULL : r;
}

static struct route *
compile_failover(struct compiler *cc, int idx, struct route *r)
{
    lua_State *L = cc->L;

    if (compile_children(cc, idx, "children", r) < 0)
        return NULL;
    lua_getfield(L, idx, "on");
    if (lua_istable(L, -1)) {
        r->on_error = field_bool(L, -1, "error", false);
        r->on_timeout = field_bool(L, -1, "timeout", false);
        r->on_server_error = field_bool(L, -1, "server_error", false);
    } else {
        r->on_error = r->on_timeout = true;
    }
    lua_pop(L, 1);
    r->on_miss = field_bool(L, idx, "miss", false);
    r->failover_writes = field_is(L, idx, "writes", "failover");
    r->max_tries = (int)field_int(L, idx, "max_tries", 0);
    r->gutter_ttl = ttl_rule_max((int32_t)field_int(L, idx, "gutter_ttl", 0));
    r->wait_ms = (int)field_int(L, idx, "wait_ms", 0);
    return r;
}

/* A node with one child, in field `name` (rewrite's and coalesce's "to"). */
static struct route *
compile_to(struct compiler *cc, int idx, struct route *r, const char *name)
{
    r->children = calloc(1, sizeof(*r->children));
    if (r->children == NULL)
        return fail(cc, idx, "out of memory");
    r->children[0] = compile_field(cc, idx, name, true);
    r->nchildren = 1;
    return r->children[0] ? r : NULL;
}

static struct route *
compile_coalesce(struct compiler *cc, int idx, struct route *r)
{
    return compile_to(cc, idx, r, "to");
}

static struct route *
compile_rewrite(struct compiler *cc, int idx, struct route *r)
{
    r->strip = field_str(cc->L, idx, "strip");
    r->add = field_str(cc->L, idx, "add");
    r->strip_len = r->strip ? (uint32_t)strlen(r->strip) : 0;
    r->add_len = r->add ? (uint32_t)strlen(r->add) : 0;
    return compile_to(cc, idx, r, "to");
}

static struct route *
compile_ttl(struct compiler *cc, int idx, struct route *r)
{
    lua_Integer set = field_int(cc->L, idx, "set", -1);

    /* lua/luagent.lua has checked that exactly one of set and max is given */
    r->ttl_rule = set >= 0 ? ttl_rule_set((int32_t)set)
                           : ttl_rule_max((int32_t)field_int(cc->L, idx, "max", 1));
    return compile_to(cc, idx, r, "to");
}

static struct route *
compile_ratelimit(struct compiler *cc, int idx, struct route *r)
{
    r->rate_per_s = field_number(cc->L, idx, "rate", 1);
    r->rate_burst = (unsigned)field_int(cc->L, idx, "burst", 1);
    r->rate = rate_limit_make(r->rate_per_s, r->rate_burst);
    r->rate_pass = field_is(cc->L, idx, "over", "pass");
    if (field_is(cc->L, idx, "scope", "global")) {
        r->rate_shared = calloc(1, sizeof(*r->rate_shared));
        if (r->rate_shared == NULL)
            return fail(cc, idx, "out of memory");
    }
    return compile_to(cc, idx, r, "to");
}

static struct route *
compile_pair(struct compiler *cc, int idx, struct route *r, const char *a, const char *b)
{
    r->children = calloc(2, sizeof(*r->children));
    if (r->children == NULL)
        return fail(cc, idx, "out of memory");
    r->children[0] = compile_field(cc, idx, a, true);
    r->children[1] = compile_field(cc, idx, b, true);
    r->nchildren = 2;
    return cc->failed ? NULL : r;
}

static struct route *
compile_shadow(struct compiler *cc, int idx, struct route *r)
{
    double fraction;

    lua_getfield(cc->L, idx, "fraction");
    fraction = lua_isnumber(cc->L, -1) ? lua_tonumber(cc->L, -1) : 1.0;
    lua_pop(cc->L, 1);
    r->fraction = fraction >= 1.0 ? UINT32_MAX : (uint32_t)(fraction * 4294967295.0);
    r->shadow_op = field_is(cc->L, idx, "ops", "read") ? OP_READ
                 : field_is(cc->L, idx, "ops", "write") ? OP_WRITE : OP_COUNT;
    return compile_pair(cc, idx, r, "main", "shadow");
}

static struct route *
compile_warmup(struct compiler *cc, int idx, struct route *r)
{
    r->exptime = (int)field_int(cc->L, idx, "exptime", 0);
    r->delete_warm = field_bool(cc->L, idx, "delete_warm", true);
    return compile_pair(cc, idx, r, "cold", "warm");
}

static struct route *
compile_error(struct compiler *cc, int idx, struct route *r)
{
    char *msg = field_str(cc->L, idx, "msg");

    if (msg == NULL)
        return fail(cc, idx, "lg.error: 'msg' is required");
    r->error_line = malloc(strlen(msg) + 16);
    if (r->error_line != NULL)
        sprintf(r->error_line, "SERVER_ERROR %s\r\n", msg);
    free(msg);
    return r->error_line ? r : fail(cc, idx, "out of memory");
}

static struct route *
compile_hook(struct compiler *cc, int idx, struct route *r)
{
    lua_State *L = cc->L;
    int *grown;
    char *delim;

    if (compile_children(cc, idx, "routes", r) < 0)
        return NULL;
    r->hook_index = cc->cfg->nhooks++;
    grown = realloc(cc->vm->hook_refs, sizeof(int) * (size_t)cc->cfg->nhooks);
    if (grown == NULL)
        return fail(cc, idx, "out of memory");
    cc->vm->hook_refs = grown;
    lua_getfield(L, idx, "fn");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return fail(cc, idx, "lg.hook: 'fn' must be a function");
    }
    grown[r->hook_index] = luaL_ref(L, LUA_REGISTRYINDEX);
    r->hook_cache = field_is(L, idx, "cache", "prefix") ? HOOK_CACHE_PREFIX
                  : field_is(L, idx, "cache", "prefix+op") ? HOOK_CACHE_PREFIX_OP
                  : HOOK_CACHE_NONE;
    delim = field_str(L, idx, "delim");
    r->delim = delim && delim[0] ? delim[0] : ':';
    free(delim);
    return r;
}

static struct route *
compile_nearcache(struct compiler *cc, int idx, struct route *r)
{
    lua_State *L = cc->L;

    r->nc_ttl_ms = (uint32_t)field_int(L, idx, "ttl_ms", 500);
    r->nc_max_items = (uint32_t)field_int(L, idx, "max_items", 10000);
    r->nc_max_bytes = (uint64_t)field_int(L, idx, "max_bytes", 64 << 20);
    r->nc_hot_qps = field_number(L, idx, "hot_qps", 200);
    r->children = calloc(1, sizeof(*r->children));
    if (r->children == NULL)
        return fail(cc, idx, "out of memory");
    r->children[0] = compile_field(cc, idx, "to", true);
    r->nchildren = 1;
    cc->cfg->nnearcaches++;
    return r->children[0] ? r : NULL;
}

struct type_row {
    const char      *name;
    enum route_type  type;
    struct route   *(*compile)(struct compiler *, int, struct route *);
};

static struct route *
compile_fanout(struct compiler *cc, int idx, struct route *r)
{
    if (compile_children(cc, idx, "children", r) < 0)
        return NULL;
    if (r->nchildren == 0)
        return fail(cc, idx, "lg.%s: needs at least one route", r->name);
    r->reply_first = field_is(cc->L, idx, "reply", "first");
    r->wait_ms = (int)field_int(cc->L, idx, "wait_ms", 0);
    return r;
}

static struct route *
compile_balance(struct compiler *cc, int idx, struct route *r)
{
    if (compile_children(cc, idx, "children", r) < 0)
        return NULL;
    if (r->nchildren == 0 || r->nchildren > BALANCE_CHILDREN_MAX)
        return fail(cc, idx, "lg.balance: needs 1 to %d routes", BALANCE_CHILDREN_MAX);
    r->balance_by = field_is(cc->L, idx, "by", "key") ? BALANCE_KEY
                  : field_is(cc->L, idx, "by", "least_outstanding") ? BALANCE_LEAST
                  : BALANCE_RANDOM;
    return r;
}

static const struct type_row type_rows[] = {
    { "pool",        ROUTE_POOL,        compile_pool },
    { "prefix",      ROUTE_PREFIX,      compile_prefix },
    { "by_op",       ROUTE_BY_OP,       compile_by_op },
    { "failover",    ROUTE_FAILOVER,    compile_failover },
    { "all_sync",    ROUTE_ALL_SYNC,    compile_fanout },
    { "all_initial", ROUTE_ALL_INITIAL, compile_fanout },
    { "all_fastest", ROUTE_ALL_FASTEST, compile_fanout },
    { "all_async",   ROUTE_ALL_ASYNC,   compile_fanout },
    { "rewrite",     ROUTE_REWRITE,     compile_rewrite },
    { "shadow",      ROUTE_SHADOW,      compile_shadow },
    { "warmup",      ROUTE_WARMUP,      compile_warmup },
    { "error",       ROUTE_ERROR,       compile_error },
    { "hook",        ROUTE_HOOK,        compile_hook },
    { "by_client",   ROUTE_BY_CLIENT,   compile_by_client },
    { "ttl",         ROUTE_TTL,         compile_ttl },
    { "ratelimit",   ROUTE_RATELIMIT,   compile_ratelimit },
    { "balance",     ROUTE_BALANCE,     compile_balance },
    { "coalesce",    ROUTE_COALESCE,    compile_coalesce },
    { "nearcache",   ROUTE_NEARCACHE,   compile_nearcache },
};

static struct route *
compile_route(struct compiler *cc, int idx)
{
    lua_State *L = cc->L;
    const struct type_row *row = NULL;
    struct route *r;
    const char *type;
    size_t i;

    idx = abs_index(L, idx);
    if (cc->failed)
        return NULL;
    lua_pushvalue(L, idx);
    lua_rawget(L, cc->memo);
    r = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (r == (void *)&cycle_marker)
        return fail(cc, idx, "the route tree has a cycle");
    if (r != NULL)
        return r;

    lua_getfield(L, idx, "_type");
    type = lua_tostring(L, -1);
    for (i = 0; type && i < ARRAY_SIZE(type_rows); i++)
        if (strcmp(type, type_rows[i].name) == 0)
            row = &type_rows[i];
    lua_pop(L, 1);
    if (row == NULL)
        return fail(cc, idx, "not a route object (build routes with lg.pool, lg.prefix, ...)");

    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, &cycle_marker);
    lua_rawset(L, cc->memo);

    r = config_route_new(row->type, row->name);
    if (r == NULL || config_add_node(cc->cfg, r) < 0) {
        config_route_free(r);
        return fail(cc, idx, "out of memory");
    }
    if (row->compile(cc, idx, r) == NULL)
        return NULL;

    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, r);
    lua_rawset(L, cc->memo);
    return r;
}

/* settings.log_slow_ms and settings.log_sample (the Lua side made "1/N" a number). */
static void
compile_request_log(struct config *cfg, lua_State *L, int s)
{
    double share = field_number(L, s, "log_sample", 0);

    cfg->log_slow_ns = (uint64_t)field_int(L, s, "log_slow_ms", 0) * 1000000u;
    cfg->log_sample = share >= 1.0 ? UINT32_MAX : (uint32_t)(share * 4294967295.0);
    if (share > 0 && cfg->log_sample == 0)
        cfg->log_sample = 1;                /* tiny, but asked for: not off */
    cfg->reqlog = cfg->log_slow_ns > 0 || cfg->log_sample > 0;
}

static int
compile_settings(struct compiler *cc, int policy)
{
    lua_State *L = cc->L;

    lua_getfield(L, policy, "settings");
    if (lua_istable(L, -1)) {
        int s = lua_gettop(L);

        cc->cfg->item_max = (uint32_t)field_int(L, s, "item_max", ITEM_MAX_DEFAULT);
        cc->cfg->max_memory = (uint64_t)field_int(L, s, "max_memory", MAX_MEMORY_DEFAULT);
        cc->cfg->client_max_memory = (uint64_t)field_int(L, s, "client_max_memory",
                                        (lua_Integer)CLIENT_MEMORY_ITEMS * cc->cfg->item_max);
        cc->cfg->decision_cache_size = (unsigned)field_int(L, s, "decision_cache_size", 4096);
        cc->cfg->max_remap = field_number(L, s, "max_remap", -1);
        cc->cfg->resolve_every_s = (int)field_int(L, s, "resolve_every_s",
                                                  RESOLVE_EVERY_S_DEFAULT);
        {
            char *resolver = field_str(L, s, "resolver");

            snprintf(cc->cfg->resolver, sizeof(cc->cfg->resolver), "%s",
                     resolver ? resolver : "");
            free(resolver);
        }
        cc->cfg->hotkeys_sample = (unsigned)field_int(L, s, "hotkeys_sample",
                                                      HOTKEYS_SAMPLE_DEFAULT);
        cc->cfg->hotkeys_metrics = field_is(L, s, "hotkeys_metrics", "hash")
                                 ? HOTKEYS_EXPORT_HASH
                                 : field_is(L, s, "hotkeys_metrics", "truncate")
                                 ? HOTKEYS_EXPORT_TRUNCATE : HOTKEYS_EXPORT_OFF;
        cc->cfg->hotkeys_metrics_top = (unsigned)field_int(L, s, "hotkeys_metrics_top", 10);
        cc->cfg->hotkeys_metrics_key_bytes =
            (unsigned)field_int(L, s, "hotkeys_metrics_key_bytes", 16);
        cc->cfg->log_level = field_is(L, s, "log_level", "error") ? LOG_ERROR
                           : field_is(L, s, "log_level", "warn") ? LOG_WARN
                           : field_is(L, s, "log_level", "info") ? LOG_INFO
                           : field_is(L, s, "log_level", "debug") ? LOG_DEBUG : -1;
        compile_request_log(cc->cfg, L, s);
        if (field_is(L, s, "hook_errors", "default"))
            cc->cfg->fallback = compile_field(cc, s, "fallback", true);
    }
    lua_pop(L, 1);
    return cc->failed ? -1 : 0;
}

/* Fibonacci hashing of an address: the multiply mixes all bits into the top ones. */
static unsigned
table_slot_of(const struct script_vm *vm, const void *table)
{
    return (unsigned)(((uint64_t)(uintptr_t)table * 0x9E3779B97F4A7C15ull) >> 32)
           >> vm->tables_shift;
}

/* The node id of a route table of this VM's tree, or -1. */
static int
vm_route_id(const struct script_vm *vm, const void *table)
{
    unsigned mask = (1u << (32 - vm->tables_shift)) - 1, i;

    if (vm->tables == NULL)
        return -1;
    for (i = table_slot_of(vm, table); vm->tables[i].table != NULL; i = (i + 1) & mask)
        if (vm->tables[i].table == table)
            return vm->tables[i].id;
    return -1;
}

/*
 * Map the compiled tables (the memo at stack index memo: table -> node) to
 * node ids, at most half full, and keep the memo in the registry: an
 * anchored table keeps its address, and no other object can take it.
 */
static int
vm_map_tables(struct script_vm *vm, int memo)
{
    lua_State *L = vm->L;
    unsigned n = 0, bits = 1, mask, i;

    lua_pushnil(L);
    while (lua_next(L, memo)) {
        n++;
        lua_pop(L, 1);
    }
    while ((1u << bits) < 2 * n)
        bits++;
    free(vm->tables);
    vm->tables = calloc((size_t)1 << bits, sizeof(*vm->tables));
    if (vm->tables == NULL)
        return -1;
    vm->tables_shift = 32 - bits;
    mask = (1u << bits) - 1;
    lua_pushnil(L);
    while (lua_next(L, memo)) {
        const struct route *r = lua_touserdata(L, -1);

        for (i = table_slot_of(vm, lua_topointer(L, -2)); vm->tables[i].table != NULL;
             i = (i + 1) & mask)
            ;
        vm->tables[i] = (struct table_slot){ .table = lua_topointer(L, -2), .id = r->id };
        lua_pop(L, 1);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, vm->tables_ref);
    lua_pushvalue(L, memo);
    vm->tables_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int
compile_policy(struct script_vm *vm, struct config *cfg, const char *source,
               char *err, size_t errlen)
{
    struct compiler cc = { .L = vm->L, .vm = vm, .cfg = cfg, .source = source,
                           .err = err, .errlen = errlen };
    int policy = lua_gettop(vm->L);

    lua_newtable(vm->L);
    cc.memo = lua_gettop(vm->L);
    lua_getfield(vm->L, policy, "route");
    if (!lua_istable(vm->L, -1))
        fail(&cc, 0, "lg.policy: 'route' is required");
    else
        cfg->root = compile_route(&cc, -1);
    lua_pop(vm->L, 1);
    if (!cc.failed)
        compile_settings(&cc, policy);
    if (!cc.failed && vm_map_tables(vm, cc.memo) < 0)
        fail(&cc, 0, "out of memory");
    lua_pop(vm->L, 1);      /* memo */
    return cc.failed ? -1 : 0;
}

/* ---- request objects for hooks ---------------------------------------- */

/*
 * A VM has exactly one request object, reused for every call, and its
 * methods carry its address as an upvalue: an identity test is exact, and
 * cheaper than luaL_checkudata's metatable lookup by name.
 */
static struct hook_request *
check_req(lua_State *L)
{
    struct hook_request *r = lua_touserdata(L, 1);

    if (r == NULL || r != lua_touserdata(L, lua_upvalueindex(1)))
        luaL_typerror(L, 1, "luagent.request");
    return r;
}

static int
l_req_has_prefix(lua_State *L)
{
    struct hook_request *r = check_req(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);

    lua_pushboolean(L, n <= r->klen && memcmp(r->key, p, n) == 0);
    return 1;
}

static int
l_req_prefix(lua_State *L)
{
    struct hook_request *r = check_req(L);
    const char *delim = luaL_optstring(L, 2, ":");
    const char *end = memchr(r->key, delim[0] ? delim[0] : ':', r->klen);

    if (end == NULL)
        lua_pushnil(L);
    else
        lua_pushlstring(L, r->key, (size_t)(end - r->key));
    return 1;
}

/*
 * req.<field> for what the method table lacks: the method table's own
 * __index, so a method (req:prefix) is found by a table lookup inside the
 * VM, without a call into C. Lua passes the method table, not the request:
 * the request comes from the upvalue.
 */
static int
l_req_field(lua_State *L)
{
    struct hook_request *r = lua_touserdata(L, lua_upvalueindex(1));
    size_t n;
    const char *name = lua_tolstring(L, 2, &n);

    if (name == NULL)
        n = 0;                                  /* req[true]: nil, as other members */
    switch (n) {
    case 2:
        if (memcmp(name, "op", 2) == 0) {
            lua_pushstring(L, proto_op_name(proto_cmd_op(r->cmd)));
            return 1;
        }
        if (memcmp(name, "cn", 2) == 0) {
            r->reads |= HOOK_READ_CN;
            lua_pushstring(L, r->cn);           /* nil without a verified certificate */
            return 1;
        }
        break;
    case 3:
        if (memcmp(name, "key", 3) == 0) {
            lua_pushlstring(L, r->key, r->klen);
            return 1;
        }
        if (memcmp(name, "cmd", 3) == 0) {
            lua_pushstring(L, proto_cmd_name(r->cmd));
            return 1;
        }
        break;
    case 4:
        if (memcmp(name, "klen", 4) == 0) {
            lua_pushinteger(L, r->klen);
            return 1;
        }
        break;
    case 6:
        if (memcmp(name, "client", 6) == 0) {
            r->reads |= HOOK_READ_LISTENER;     /* the listener says tcp or unix */
            lua_pushstring(L, r->is_unix ? "unix" : "tcp");
            return 1;
        }
        break;
    case 8:
        if (memcmp(name, "listener", 8) == 0) {
            r->reads |= HOOK_READ_LISTENER;
            lua_pushstring(L, r->listener);     /* nil without a client */
            return 1;
        }
        break;
    }
    lua_pushnil(L);
    return 1;
}

/* The request object, on top of L's stack. */
static void
vm_make_request(struct script_vm *vm)
{
    lua_State *L = vm->L;

    vm->req = lua_newuserdata(L, sizeof(*vm->req));
    memset(vm->req, 0, sizeof(*vm->req));
    luaL_newmetatable(L, "luagent.request");
    lua_newtable(L);                            /* the methods */
    lua_pushlightuserdata(L, vm->req);
    lua_pushcclosure(L, l_req_has_prefix, 1);
    lua_setfield(L, -2, "has_prefix");
    lua_pushlightuserdata(L, vm->req);
    lua_pushcclosure(L, l_req_prefix, 1);
    lua_setfield(L, -2, "prefix");
    lua_newtable(L);                            /* the methods' metatable: the fields */
    lua_pushlightuserdata(L, vm->req);
    lua_pushcclosure(L, l_req_field, 1);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
}

/*
 * The thread hooks are called on, its stack prepared: slot 1 the request,
 * slot 2 + i the fn of hook i. A call pushes two stack slots (cheaper than
 * two registry reads) and leaves the stack as it found it.
 */
static int
vm_make_caller(struct script_vm *vm, int nhooks, char *err, size_t errlen)
{
    lua_State *L = vm->L;
    int i;

    vm->caller = lua_newthread(L);
    vm->caller_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!lua_checkstack(vm->caller, nhooks + 1)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    vm_make_request(vm);
    lua_xmove(L, vm->caller, 1);
    for (i = 0; i < nhooks; i++) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, vm->hook_refs[i]);
        lua_xmove(L, vm->caller, 1);
    }
    return 0;
}

/* Constructors refuse to run from now on. */
static void
vm_enter_request_phase(struct script_vm *vm)
{
    lua_State *L = vm->L;

    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_getfield(L, -1, "luagent");
    if (lua_istable(L, -1)) {
        lua_pushstring(L, "request");
        lua_setfield(L, -2, "_phase");
    }
    lua_pop(L, 3);
}

/* Does a Lua error message start with "file:line:"? */
static bool
has_position(const char *msg)
{
    const char *colon = strchr(msg, ':');

    if (colon == NULL || colon == msg || colon[1] < '0' || colon[1] > '9')
        return false;
    colon++;
    while (*colon >= '0' && *colon <= '9')
        colon++;
    return *colon == ':';
}

/* Where fn is defined, for errors that carry no position of their own. */
static void
hook_where(struct script_vm *vm, const struct route *hook, char *err, size_t errlen,
           const char *msg)
{
    lua_State *T = vm->caller;
    lua_Debug ar;

    lua_pushvalue(T, 2 + hook->hook_index);
    lua_getinfo(T, ">S", &ar);
    snprintf(err, errlen, "%s:%d: %s", ar.short_src, ar.linedefined, msg);
}

/*
 * Call fn on the caller thread. It is called for any number of results: the
 * usual one (a route) then needs no type test of a second.
 */
static int
vm_call_hook(struct script_vm *vm, const struct config *cfg, const struct route *hook,
             const struct hook_request *req, const struct route **route,
             const char **newkey, uint32_t *newklen, char *err, size_t errlen)
{
    lua_State *T = vm->caller;
    const int base = 1 + cfg->nhooks;       /* the request and the fns stay below
                                             * (configs sharing a VM have as many) */
    int id, nres;

    *vm->req = *req;
    vm->req->reads = 0;
    *newkey = NULL;
    lua_pushvalue(T, 2 + hook->hook_index);
    lua_pushvalue(T, 1);
    if (lua_pcall(T, 1, LUA_MULTRET, 0) != 0) {
        const char *msg = lua_tostring(T, -1);

        if (msg != NULL && has_position(msg))
            snprintf(err, errlen, "%s", msg);
        else    /* a tail call leaves no caller line: name the hook function */
            hook_where(vm, hook, err, errlen, msg ? msg : "error");
        lua_settop(T, base);
        return -1;
    }
    nres = lua_gettop(T) - base;
    /* No object but an anchored route table has a route table's address:
     * no type test needed (nil and numbers give NULL). */
    id = nres > 0 ? vm_route_id(vm, lua_topointer(T, base + 1)) : -1;
    if (id < 0 || id >= cfg->nnodes) {
        hook_where(vm, hook, err, errlen, "hook returned no route");
        lua_settop(T, base);
        return -1;
    }
    *route = cfg->nodes[id];
    if (nres > 1 && lua_type(T, base + 2) == LUA_TSTRING) {
        size_t n;
        const char *k = lua_tolstring(T, base + 2, &n);

        /* Copied: the string may be collected once popped. */
        *newklen = (uint32_t)(n > KEY_MAX + 1 ? KEY_MAX + 1 : n);
        memcpy(vm->newkey, k, *newklen);
        *newkey = vm->newkey;
        if (n > KEY_MAX)
            *newklen = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    }
    lua_settop(T, base);
    return 0;
}

static int
script_hook_call(struct config *cfg, int worker, const struct route *hook,
                 struct hook_request *req, const struct route **route,
                 const char **newkey, uint32_t *newklen)
{
    char err[ERR_LEN];
    struct script_vm *vm;
    int rc;

    if (worker < 0 || worker >= cfg->script->nvms || cfg->script->vms[worker].L == NULL)
        return -1;      /* no VM on this thread: live introspection says so */
    vm = &cfg->script->vms[worker];
    rc = vm_call_hook(vm, cfg, hook, req, route, newkey, newklen, err, sizeof(err));
    req->reads = vm->req->reads;
    if (rc == 0)
        return 0;
    snprintf(vm->hook_error, sizeof(vm->hook_error), "%s", err);
    log_ratelimited(LOG_WARN, hook, "hook %s: %s", hook->name, err);
    return -1;
}

/* ---- routing self-tests ----------------------------------------------- */

/*
 * A test runs its line through the route engine itself (sim.h), against
 * simulated servers under the test's assumed conditions, so what it checks
 * is what serves traffic.
 */

#define TEST_NAMES_MAX 32

/* The expected names (a string or a list at the top of the stack) as "{a,b}". */
static void
expected_text(lua_State *L, char *out, size_t outlen)
{
    const char *names[TEST_NAMES_MAX];
    int n = 0, i;

    if (lua_type(L, -1) == LUA_TSTRING) {
        names[n++] = lua_tostring(L, -1);
    } else if (lua_istable(L, -1)) {
        for (i = 1; i <= (int)lua_objlen(L, -1); i++) {
            lua_rawgeti(L, -1, i);
            if (lua_type(L, -1) == LUA_TSTRING)     /* the string is kept by the table */
                n = sim_name_add(names, n, TEST_NAMES_MAX, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    sim_names_text(names, n, out, outlen);
}

/*
 * One condition list of the test table at index t (down, timeout, miss):
 * a name or a list of names, each a pool or a server of cfg. The strings
 * stay in the table, which stays on the stack while the test runs.
 */
static int
test_condition(lua_State *L, int t, const struct config *cfg, const char *field,
               const char **names, int *n, char *why, size_t whylen)
{
    int i, len;

    lua_getfield(L, t, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) == LUA_TSTRING) {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, 1);
        lua_replace(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, t, field);      /* keep the list alive with the test */
    }
    len = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : -1;
    if (len < 0 || len > SIM_NAMES_MAX) {
        snprintf(why, whylen, "%s must be a list of at most %d pool or server names",
                 field, SIM_NAMES_MAX);
        return -1;
    }
    for (i = 1; i <= len; i++) {
        lua_rawgeti(L, -1, i);
        names[*n] = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (names[*n] == NULL || !sim_name_known(cfg, names[*n])) {
            snprintf(why, whylen, "%s: %s%s%s is not a pool, a server (host:port) or a host "
                     "of this policy", field, names[*n] ? "'" : "",
                     names[*n] ? names[*n] : "an entry that is not a string", names[*n] ? "'" : "");
            return -1;
        }
        (*n)++;
    }
    lua_pop(L, 1);
    return 0;
}

static int parse_route_line(const char *line, enum cmd *cmd, const char **key, uint32_t *klen);

/* Run test number n (its table is on top of the stack) through sim. */
static int
run_test(struct script_vm *vm, struct sim *sim, const struct config *cfg, const char *source,
         int n, char *err, size_t errlen)
{
    lua_State *L = vm->L;
    struct sim_conditions cond = { .ndown = 0 };
    struct sim_result *res = malloc(sizeof(*res));
    char why[ERR_LEN], want_text[512], got_text[512];
    const char *line, *key;
    uint32_t klen;
    enum cmd cmd;
    int t = lua_gettop(L), rc = -1;

    lua_rawgeti(L, t, 1);
    line = lua_tostring(L, -1);
    if (res == NULL) {
        snprintf(err, errlen, "%s: test %d: out of memory", source, n);
        return -1;
    }
    if (line == NULL) {
        snprintf(err, errlen, "%s: test %d: the first element must be a request line", source, n);
        goto out;
    }
    lua_rawgeti(L, t, 2);
    expected_text(L, want_text, sizeof(want_text));
    if (parse_route_line(line, &cmd, &key, &klen) < 0) {
        snprintf(err, errlen, "%s: test %d \"%s\": not a keyed request line", source, n, line);
        goto out;
    }
    if (test_condition(L, t, cfg, "down", cond.down, &cond.ndown, why, sizeof(why)) < 0
        || test_condition(L, t, cfg, "timeout", cond.timeout, &cond.ntimeout, why,
                          sizeof(why)) < 0
        || test_condition(L, t, cfg, "miss", cond.miss, &cond.nmiss, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: test %d \"%s\": %s", source, n, line, why);
        goto out;
    }
    lua_getfield(L, t, "listener");
    lua_getfield(L, t, "cn");       /* both stay on the stack while the test runs */
    cond.listener = lua_tostring(L, -2) ? lua_tostring(L, -2) : LISTEN_NAME_TCP;
    cond.cn = lua_tostring(L, -1);
    vm->hook_error[0] = '\0';
    if (sim_run(sim, cmd, key, klen, &cond, res, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: test %d \"%s\": %s", source, n, line, why);
        goto out;
    }
    if (res->hook_failed) {
        snprintf(err, errlen, "%s: test %d \"%s\": %s", source, n, line, vm->hook_error);
        goto out;
    }
    sim_answered_by(sim, res, got_text, sizeof(got_text));
    if (strcmp(want_text, got_text) != 0) {
        snprintf(err, errlen, "%s: test %d \"%s\"%s: expected %s, got %s (the client gets %s)",
                 source, n, line, cond.ndown + cond.ntimeout + cond.nmiss > 0
                 ? " under its conditions" : "", want_text, got_text, res->reply);
        goto out;
    }
    rc = 0;
out:
    free(res);
    lua_settop(L, t);
    return rc;
}

static int
run_tests(struct script_vm *vm, struct config *cfg, const char *source,
          char *err, size_t errlen)
{
    lua_State *L = vm->L;
    int policy = lua_gettop(L), i, n, rc = 0;
    struct sim *sim = NULL;

    lua_getfield(L, policy, "tests");
    n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    if (n > 0 && (sim = sim_new(cfg, 0)) == NULL) {
        snprintf(err, errlen, "%s: out of memory for the self-tests", source);
        rc = -1;
    }
    for (i = 1; i <= n && rc == 0; i++) {
        lua_rawgeti(L, -1, i);
        if (!lua_istable(L, -1)) {
            snprintf(err, errlen, "%s: test %d must be {request, expected}", source, i);
            rc = -1;
        } else {
            rc = run_test(vm, sim, cfg, source, i, err, errlen);
        }
        lua_settop(L, policy + 1);
    }
    sim_free(sim);
    lua_settop(L, policy);
    return rc;
}

/* ---- loading ------------------------------------------------------------ */

/* Same shape? Workers' VMs must build the very tree the load VM built. */
static bool
same_tree(const struct config *a, const struct config *b)
{
    int i;

    if (a->nnodes != b->nnodes || a->nhooks != b->nhooks)
        return false;
    for (i = 0; i < a->nnodes; i++)
        if (a->nodes[i]->type != b->nodes[i]->type
            || strcmp(a->nodes[i]->name, b->nodes[i]->name) != 0)
            return false;
    return true;
}

/* A VM for worker i > 0: run the script again and bind its hooks. */
static int
worker_vm(struct script_vm *vm, const char *path, const struct settings *s,
          const struct config *cfg, char *err, size_t errlen)
{
    struct config *twin = config_new(cfg->generation);
    const char *source = path ? path : DEFAULT_POLICY_NAME;
    int rc = -1;

    if (twin == NULL || vm_open(vm, true) < 0) {
        snprintf(err, errlen, "out of memory");
        config_free(twin);
        return -1;
    }
    if (vm_run_policy(vm, path, s, err, errlen) == 0
        && compile_policy(vm, twin, source, err, errlen) == 0) {
        if (same_tree(cfg, twin))
            rc = 0;
        else
            snprintf(err, errlen, "%s: the script built a different route tree on a "
                     "second run (does it depend on math.random or the time?)", source);
    }
    config_free(twin);
    if (rc == 0) {
        if (vm_make_caller(vm, cfg->nhooks, err, errlen) < 0)
            return -1;
        vm_enter_request_phase(vm);
        vm_serve(vm);
        lua_settop(vm->L, 0);
    }
    return rc;
}

/* FNV-1a over the policy's bytes, to tell generations apart in logs and stats. */
static uint32_t
file_checksum(const char *path)
{
    unsigned char chunk[4096];
    uint32_t h = 2166136261u;
    size_t n, i;
    FILE *f;

    if (path == NULL) {
        for (i = 0; i < embedded_default_policy_len; i++)
            h = (h ^ embedded_default_policy[i]) * 16777619u;
        return h;
    }
    if ((f = fopen(path, "rb")) == NULL)
        return 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        for (i = 0; i < n; i++)
            h = (h ^ chunk[i]) * 16777619u;
    fclose(f);
    return h;
}

uint32_t
script_checksum(const char *path)
{
    return file_checksum(path);
}

/* Call every hook once on a synthetic request, so a hook that cannot run
 * at all is caught at load time rather than on the first request. */
static int
dry_run_hooks(struct script_vm *vm, const struct config *cfg, const char *source,
              char *err, size_t errlen)
{
    static const char key[] = "luagent:dry-run";
    struct hook_request req = { .key = key, .klen = sizeof(key) - 1, .cmd = CMD_GET };
    char why[ERR_LEN];
    int i;

    for (i = 0; i < cfg->nnodes; i++) {
        const struct route *r = cfg->nodes[i], *next;
        const char *newkey;
        uint32_t newklen;

        if (r->type != ROUTE_HOOK)
            continue;
        if (vm_call_hook(vm, cfg, r, &req, &next, &newkey, &newklen, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s (hook called with \"get %s\" at load time)", why, key);
            return -1;
        }
    }
    (void)source;
    return 0;
}

static void script_free(struct config *cfg);

/* How the route engine and config_free reach a config's VMs. */
static const struct script_ops lua_ops = {
    .hook_call = script_hook_call,
    .free      = script_free,
};

struct config *
script_load(const char *path, const struct settings *s, int nworkers,
            char *err, size_t errlen)
{
    struct config *cfg = config_new(1);
    const char *source = path ? path : DEFAULT_POLICY_NAME;
    struct script_vm *vm;
    int i;

    if (cfg != NULL)
        cfg->script_ops = &lua_ops;
    if (cfg == NULL || (cfg->script = calloc(1, sizeof(*cfg->script))) == NULL
        || (cfg->script->vms = calloc((size_t)nworkers, sizeof(struct script_vm))) == NULL) {
        snprintf(err, errlen, "out of memory");
        config_free(cfg);
        return NULL;
    }
    cfg->source = strdup(source);
    cfg->script->nvms = nworkers;
    discover_compile_begin();
    vm = &cfg->script->vms[0];
    if (vm_open(vm, true) < 0) {
        snprintf(err, errlen, "cannot create a Lua VM");
        goto fail;
    }
    if (vm_run_policy(vm, path, s, err, errlen) < 0
        || compile_policy(vm, cfg, source, err, errlen) < 0
        || vm_make_caller(vm, cfg->nhooks, err, errlen) < 0)
        goto fail;
    vm_enter_request_phase(vm);
    if (run_tests(vm, cfg, source, err, errlen) < 0
        || dry_run_hooks(vm, cfg, source, err, errlen) < 0)
        goto fail;
    cfg->checksum = file_checksum(path);
    cfg->load_time = clock_unix();
    if (s != NULL && s->max_idle_given)
        for (i = 0; i < cfg->nservers; i++)
            cfg->servers[i].max_idle = s->max_idle;     /* -i wins */
    lua_settop(vm->L, 0);
    vm_serve(vm);
    for (i = 1; i < nworkers; i++)
        if (worker_vm(&cfg->script->vms[i], path, s, cfg, err, errlen) < 0)
            goto fail;
    if (cfg->nhooks == 0) {
        /* Nothing calls Lua per request: keep no VM. */
        for (i = 0; i < nworkers; i++)
            vm_close(&cfg->script->vms[i]);
    }
    return cfg;
fail:
    config_free(cfg);
    return NULL;
}

static void
script_free(struct config *cfg)
{
    int i;

    if (cfg->script == NULL)
        return;
    for (i = 0; i < cfg->script->nvms; i++)
        vm_close(&cfg->script->vms[i]);
    free(cfg->script->vms);
    free(cfg->script);
    cfg->script = NULL;
}

static enum cmd
cmd_by_name(const char *name, size_t len)
{
    int i;

    for (i = 0; i < CMD_COUNT; i++)
        if (strlen(proto_cmd_name((enum cmd)i)) == len
            && memcmp(proto_cmd_name((enum cmd)i), name, len) == 0)
            return (enum cmd)i;
    return CMD_COUNT;
}

/* Parse "cmd key" (a test or --route line); 0 or -1. */
static int
parse_route_line(const char *line, enum cmd *cmd, const char **key, uint32_t *klen)
{
    const char *sp = strchr(line, ' ');

    *cmd = cmd_by_name(line, sp ? (size_t)(sp - line) : strlen(line));
    if (*cmd == CMD_COUNT || sp == NULL || proto_cmd_op(*cmd) == OP_PROXY)
        return -1;
    if (*cmd == CMD_GAT || *cmd == CMD_GATS) {
        sp = strchr(sp + 1, ' ');       /* "gat <exptime> <key>" */
        if (sp == NULL)
            return -1;
    }
    *key = sp + 1;
    *klen = (uint32_t)strcspn(sp + 1, " \r\n");
    return *klen > 0 && *klen <= KEY_MAX ? 0 : -1;
}

/* Route a request line through cfg's tree, outside any worker: --route and the like. */
static struct sim *
run_line(struct config *cfg, const char *line, const struct sim_conditions *cond,
         struct sim_result *res, char *err, size_t errlen)
{
    const char *key;
    uint32_t klen;
    enum cmd cmd;
    struct sim_conditions client = cond != NULL ? *cond : (struct sim_conditions){ .ndown = 0 };
    struct sim *sim;
    int i;

    if (parse_route_line(line, &cmd, &key, &klen) < 0) {
        snprintf(err, errlen, "\"%s\": not a keyed request such as \"get some:key\"", line);
        return NULL;
    }
    if (cfg->nhooks > 0 && (cfg->script == NULL || cfg->script->vms[0].L == NULL)) {
        snprintf(err, errlen, "no Lua VM to run the policy's hooks");
        return NULL;
    }
    for (i = 0; cond != NULL && i < cond->ndown + cond->ntimeout + cond->nmiss; i++) {
        const char *name = i < cond->ndown ? cond->down[i]
                         : i < cond->ndown + cond->ntimeout ? cond->timeout[i - cond->ndown]
                         : cond->miss[i - cond->ndown - cond->ntimeout];

        if (!sim_name_known(cfg, name)) {
            snprintf(err, errlen, "'%s' is not a pool, a server (host:port) or a host of "
                     "this policy", name);
            return NULL;
        }
    }
    client.listener = client.listener ? client.listener : LISTEN_NAME_TCP;
    if ((sim = sim_new(cfg, 0)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (sim_run(sim, cmd, key, klen, &client, res, err, errlen) < 0) {
        sim_free(sim);
        return NULL;
    }
    return sim;
}

int
script_explain(struct config *cfg, const char *line, const struct sim_conditions *cond,
               FILE *out, char *err, size_t errlen)
{
    struct sim_result *res = malloc(sizeof(*res));
    struct sim *sim = res ? run_line(cfg, line, cond, res, err, errlen) : NULL;

    if (res == NULL)
        snprintf(err, errlen, "out of memory");
    if (sim != NULL) {
        if (cond != NULL && (cond->listener != NULL || cond->cn != NULL))
            fprintf(out, "client: listener %s%s%s\n",
                    cond->listener ? cond->listener : LISTEN_NAME_TCP,
                    cond->cn ? ", cn " : "", cond->cn ? cond->cn : "");
        fprintf(out, "%s\n", line);
        sim_explain(sim, res, out);
    }
    sim_free(sim);
    free(res);
    return sim != NULL ? 0 : -1;
}

/* route_live's nodes: those the run passed, in the tree's order, each once. */
static void
live_nodes(const struct sim *sim, const struct route *r, struct route_live *lv, int depth)
{
    const struct route *child;
    int i, at = 0;

    if (r == NULL || depth > ROUTE_HOPS_MAX || !sim_visited(sim, r))
        return;
    if (r->type != ROUTE_POOL) {
        for (i = 0; i < lv->nsteps && lv->steps[i].node != r; i++)
            ;
        if (i < lv->nsteps || lv->nsteps == ROUTE_LIVE_MAX)
            return;
        lv->steps[lv->nsteps++] = (struct route_live_step){ .node = r };
        /* A failover that went past its first child is in effect. */
        for (i = 1; r->type == ROUTE_FAILOVER && i < r->nchildren; i++)
            if (sim_visited(sim, r->children[i]))
                snprintf(lv->steps[lv->nsteps - 1].state, sizeof(lv->steps[0].state),
                         "failover");
        /* A global bucket is one for all workers: its tokens now. (A
         * worker's own bucket is that worker's alone, so none is shown.) */
        if (r->type == ROUTE_RATELIMIT && r->rate_shared != NULL)
            snprintf(lv->steps[lv->nsteps - 1].state, sizeof(lv->steps[0].state),
                     "tokens %llu", (unsigned long long)rate_tokens(
                         &r->rate, atomic_load_explicit(r->rate_shared, memory_order_relaxed),
                         clock_ns()));
    }
    while ((child = config_route_next_child(r, &at)) != NULL)
        live_nodes(sim, child, lv, depth + 1);
}

/*
 * route_live's targets: the client's request's server calls (not a shadow's
 * copies or the proxy's own). Those that took it answer; when none did and
 * no error node answered, the last one tried is what the client reads (a
 * server marked down with nowhere else to go).
 */
static void
live_targets(const struct config *cfg, const struct sim_result *res, const bool *down,
             struct route_live *lv)
{
    int i, last = -1;
    bool took = false;

    for (i = 0; i < res->nsteps && lv->ntargets < ROUTE_LIVE_MAX; i++) {
        const struct sim_step *st = &res->steps[i];

        if (st->copy || st->background || st->pool < 0)
            continue;
        last = lv->ntargets;
        took = took || sim_step_took(st);
        lv->targets[lv->ntargets++] = (struct route_live_target){
            .pool = cfg->pools[st->pool], .server = st->server,
            .down = down != NULL && down[st->server], .answers = sim_step_took(st) };
    }
    if (!took && !res->error_node && last >= 0)
        lv->targets[last].answers = true;
}

/* Has the run passed a hook node? */
static bool
live_passed_hook(const struct sim *sim, const struct config *cfg)
{
    int i;

    for (i = 0; i < cfg->nnodes; i++)
        if (cfg->nodes[i]->type == ROUTE_HOOK && sim_visited(sim, cfg->nodes[i]))
            return true;
    return false;
}

enum route_live_result
script_route_live(struct config *cfg, int vm, const char *cmd, size_t cmdlen, const char *key,
                  size_t klen, const char *listener, const char *cn, const bool *down,
                  struct route_live *live, char *err, size_t errlen)
{
    struct sim_conditions now = { .listener = listener ? listener : LISTEN_NAME_TCP, .cn = cn,
                                  .down_ids = down };
    enum cmd c = cmd_by_name(cmd, cmdlen);
    struct sim_result *res;
    struct sim *sim;
    enum route_live_result rc = ROUTE_LIVE_OK;

    memset(live, 0, sizeof(*live));
    if (c == CMD_COUNT || proto_cmd_op(c) == OP_PROXY) {
        snprintf(err, errlen, "cmd must be a keyed command such as get, set or delete");
        return ROUTE_LIVE_BAD;
    }
    if (klen == 0 || klen > KEY_MAX) {
        snprintf(err, errlen, "key must be 1-%d bytes without spaces or control characters",
                 KEY_MAX);
        return ROUTE_LIVE_BAD;
    }
    /* Hooks run in the calling worker's VM; with none (the metrics thread)
     * a hook met fails quietly (script_hook_call) and the caller is told. */
    if (vm < 0 || cfg->script == NULL || vm >= cfg->script->nvms || cfg->script->vms[vm].L == NULL)
        vm = -1;
    res = malloc(sizeof(*res));
    sim = res != NULL ? sim_new(cfg, vm) : NULL;
    if (sim == NULL) {
        snprintf(err, errlen, "out of memory");
        free(res);
        return ROUTE_LIVE_FAILED;
    }
    if (vm >= 0)
        cfg->script->vms[vm].hook_error[0] = '\0';
    if (sim_run(sim, c, key, (uint32_t)klen, &now, res, err, errlen) < 0) {
        rc = ROUTE_LIVE_FAILED;
    } else if (vm < 0 && live_passed_hook(sim, cfg)) {
        snprintf(err, errlen, "the route passes lg.hook, whose Lua runs only in a "
                 "worker: ask with \"stats route CMD KEY\" on the memcached port");
        rc = ROUTE_LIVE_NO_VM;
    } else if (res->hook_failed) {
        snprintf(err, errlen, "%s", vm >= 0 ? cfg->script->vms[vm].hook_error : "a hook failed");
        rc = ROUTE_LIVE_FAILED;
    } else {
        live_nodes(sim, cfg->root, live, 0);
        live_targets(cfg, res, down, live);
    }
    sim_free(sim);
    free(res);
    return rc;
}

int
script_reach_servers(struct config *cfg, const char *line, int *ids, int max,
                     char *err, size_t errlen)
{
    struct sim_result *res = malloc(sizeof(*res));
    char get[KEY_MAX + 8];
    struct sim *sim;
    int n = -1;

    if (strchr(line, ' ') == NULL && snprintf(get, sizeof(get), "get %s", line) < (int)sizeof(get))
        line = get;                     /* a bare key: where a get goes */
    sim = res ? run_line(cfg, line, NULL, res, err, errlen) : NULL;
    if (res == NULL)
        snprintf(err, errlen, "out of memory");
    if (sim != NULL)
        n = sim_servers(sim, res, ids, max);
    sim_free(sim);
    free(res);
    return n;
}

/* ---- --check: near cache staleness ---- */

/* Is node `node` r or below it? */
static bool
route_below(const struct route *r, const struct route *node, int depth)
{
    const struct route *child;
    int at = 0;

    if (r == NULL || depth > ROUTE_HOPS_MAX)
        return false;
    if (r == node)
        return true;
    while ((child = config_route_next_child(r, &at)) != NULL)
        if (route_below(child, node, depth + 1))
            return true;
    return false;
}

/* Mark in `pools` (by pool index) every pool below r. */
static void
mark_pools_below(const struct config *cfg, const struct route *r, bool *pools, int depth)
{
    const struct route *child;
    int i, at = 0;

    if (r == NULL || depth > ROUTE_HOPS_MAX)
        return;
    if (r->type == ROUTE_POOL) {
        for (i = 0; i < cfg->npools; i++)
            if (cfg->pools[i] == r->pool)
                pools[i] = true;
        return;
    }
    while ((child = config_route_next_child(r, &at)) != NULL)
        mark_pools_below(cfg, child, pools, depth + 1);
}

static bool
is_change_op(enum op op)
{
    return op == OP_WRITE || op == OP_DELETE || op == OP_ARITH || op == OP_TOUCH;
}

/* Mark every pool a change (write, delete, arith, touch) can reach from r. */
static void
mark_write_pools(const struct config *cfg, const struct route *r, bool *pools, int depth)
{
    const struct route *child;
    int i, at = 0;
    bool all_covered = true;

    if (r == NULL || depth > ROUTE_HOPS_MAX)
        return;
    if (r->type != ROUTE_BY_OP) {
        if (r->type == ROUTE_POOL) {
            mark_pools_below(cfg, r, pools, depth);
            return;
        }
        /* not a by_op: every child slot may carry a change */
        while ((child = config_route_next_child(r, &at)) != NULL)
            mark_write_pools(cfg, child, pools, depth + 1);
        return;
    }
    for (i = 0; i < OP_COUNT; i++) {
        if (!is_change_op((enum op)i))
            continue;
        if (r->by_op[i] != NULL)
            mark_write_pools(cfg, r->by_op[i], pools, depth + 1);
        else
            all_covered = false;
    }
    for (i = 0; i < CMD_COUNT; i++)
        if (r->by_cmd[i] != NULL && is_change_op(proto_cmd_op((enum cmd)i)))
            mark_write_pools(cfg, r->by_cmd[i], pools, depth + 1);
    if (!all_covered)
        mark_write_pools(cfg, r->default_route, pools, depth + 1);
}

/*
 * The staleness warning: a near cache whose pools also take changes through
 * this policy. Wherever this policy runs on more than one front end, a
 * change made through another one (or straight to the server) is seen here
 * only when the copy expires, ttl_ms later. A rewrite or hook below a near
 * cache is flagged too: copies are kept only when the key reaching the
 * server is the key the near cache holds.
 */
static void
describe_nearcache_warnings(const struct config *cfg, FILE *out)
{
    bool *written = calloc((size_t)cfg->npools + 1, sizeof(bool));
    bool *below = calloc((size_t)cfg->npools + 1, sizeof(bool));
    int i, j;

    if (written == NULL || below == NULL)
        goto done;
    mark_write_pools(cfg, cfg->root, written, 0);
    for (i = 0; i < cfg->nnodes; i++) {
        const struct route *r = cfg->nodes[i];

        if (r->type != ROUTE_NEARCACHE)
            continue;
        memset(below, 0, (size_t)cfg->npools * sizeof(bool));
        mark_pools_below(cfg, r->children[0], below, 0);
        for (j = 0; j < cfg->npools; j++)
            if (below[j] && written[j])
                fprintf(out, "warning: route %d: nearcache: pool '%s' below it also takes "
                        "writes; a write through another luagent, or straight to the "
                        "server, is seen here only after ttl_ms (%u ms)\n",
                        i, cfg->pools[j]->name, r->nc_ttl_ms);
    }
    for (i = 0; i < cfg->nnodes; i++)
        if (cfg->nodes[i]->type == ROUTE_REWRITE || cfg->nodes[i]->type == ROUTE_HOOK)
            for (j = 0; j < cfg->nnodes; j++)
                if (cfg->nodes[j]->type == ROUTE_NEARCACHE
                    && route_below(cfg->nodes[j]->children[0], cfg->nodes[i], 0))
                    fprintf(out, "warning: route %d: nearcache: %s below it may change the "
                            "key; such keys are never kept\n", j, cfg->nodes[i]->name);
done:
    free(written);
    free(below);
}

/* settings.log_slow_ms and settings.log_sample, when either is on. */
static void
describe_request_log(const struct config *cfg, FILE *out)
{
    double share = cfg->log_sample / 4294967295.0, inv, near;

    if (!cfg->reqlog)
        return;
    fprintf(out, "request log:");
    if (cfg->log_slow_ns > 0)
        fprintf(out, " requests slower than %llu ms%s",
                (unsigned long long)(cfg->log_slow_ns / 1000000u), cfg->log_sample ? "," : "");
    if (cfg->log_sample > 0) {
        /* "1/N" comes back as 1/N within the 32-bit share's rounding. */
        inv = 1.0 / share;
        near = (double)(uint64_t)(inv + 0.5);
        if (inv - near < inv * 1e-4 && near - inv < inv * 1e-4)
            fprintf(out, " a sample of 1/%llu", (unsigned long long)near);
        else
            fprintf(out, " a sample of %.4g%%", 100.0 * share);
    }
    fprintf(out, " (at most %d lines a second per worker)\n", REQLOG_LINES_PER_S);
}

/* by_client: who goes where, "cn:alice -> pool a, admin -> pool b, default -> ...". */
static void
describe_by_client(const struct config *cfg, const struct route *r, FILE *out)
{
    char label[ROUTE_LABEL_MAX];
    int i;

    fprintf(out, " (");
    for (i = 0; i < r->nclients; i++) {
        route_label(cfg, r->clients[i].route, label, sizeof(label));
        fprintf(out, "%s%s -> %s, ", r->clients[i].cn ? "cn:" : "", r->clients[i].name, label);
    }
    route_label(cfg, r->default_route, label, sizeof(label));
    fprintf(out, "default -> %s)", label);
}

/*
 * A pool's retry and rejoin settings: those of the servers it configured
 * (a server named by an earlier pool keeps that pool's). Shown when the
 * pool's first server differs from the defaults.
 */
static void
describe_health(const struct config *cfg, const struct pool *p, FILE *out)
{
    const struct server *srv = &cfg->servers[p->server_ids[0]];

    if (srv->retry_after_ms != DEFAULT_RETRY_AFTER_MS || srv->retry_max_ms != DEFAULT_RETRY_MAX_MS)
        fprintf(out, ", retry %d..%d ms", srv->retry_after_ms, srv->retry_max_ms);
    if (srv->rejoin_flush)
        fprintf(out, ", rejoin flush after %d ms", srv->rejoin_after_ms);
}

void
script_describe(const struct config *cfg, FILE *out)
{
    int i, j;

    fprintf(out, "policy %s: %d pool(s), %d route node(s), %d hook(s)\n",
            cfg->source, cfg->npools, cfg->nnodes, cfg->nhooks);
    describe_request_log(cfg, out);
    for (i = 0; i < cfg->npools; i++) {
        const struct pool *p = cfg->pools[i];

        fprintf(out, "pool %s:", p->name);
        for (j = 0; j < p->nservers; j++)
            fprintf(out, " %s", cfg->servers[p->server_ids[j]].label);
        fprintf(out, " (hash %s%s%s, timeout %d ms", hash_name(p->hash),
                p->seed ? ", seed " : "", p->seed ? p->seed : "", p->timeout_ms);
        describe_health(cfg, p, out);
        fprintf(out, "%s%s)\n", p->tls ? ", " : "", p->tls ? tls_client_describe(p->tls) : "");
    }
    for (i = 0; i < cfg->nnodes; i++) {
        char detail[128];

        sim_node_detail(cfg->nodes[i], detail, sizeof(detail));
        fprintf(out, "route %d: %s%s", i, cfg->nodes[i]->name, detail);
        if (cfg->nodes[i]->type == ROUTE_BY_CLIENT)
            describe_by_client(cfg, cfg->nodes[i], out);
        fprintf(out, "%s\n", cfg->nodes[i] == cfg->root ? " (root)" : "");
    }
    if (cfg->discover_pending)
        fprintf(out, "note: server DNS names are not resolved here; an srv: name stands "
                "as one server NAME:0\n");
    describe_nearcache_warnings(cfg, out);
}
