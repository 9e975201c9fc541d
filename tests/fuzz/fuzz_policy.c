/*
 * fuzz_policy.c: libFuzzer target for the policy loader (script_load: Lua
 * bridge, lua/luagent.lua, route compiler, config building).
 *
 * Each input is written to a temporary file and loaded as a policy for one
 * worker; a loaded config is freed. A load must never crash, hang or leak: it
 * runs under the 64 MiB memory cap and the 10M instruction cap.
 *
 * Linked with --wrap so that fuzzing stays offline, fast and about luagent:
 *   - getaddrinfo gets AI_NUMERICHOST: only numeric hosts resolve, a name
 *     fails at once (a policy file is trusted, but no lookup may be made here);
 *   - luaL_openlibs then removes what would let an input hurt the fuzzer
 *     rather than test luagent: os.exit/execute/remove/rename/tmpname, io
 *     (io.read and dofile() block on stdin), loadfile/dofile, debug.sethook
 *     (lifts the instruction cap), ffi, package.loadlib, string.dump and
 *     loading bytecode (LuaJIT does not verify bytecode).
 * Inputs holding a 0x1b byte are skipped: luaL_loadfile would take a file
 * starting with it as bytecode.
 */
#include <lauxlib.h>
#include <lua.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "luagent.h"
#include "script.h"
#include "settings.h"

int __real_getaddrinfo(const char *node, const char *service,
                       const struct addrinfo *hints, struct addrinfo **res);
void __real_luaL_openlibs(lua_State *L);

int
__wrap_getaddrinfo(const char *node, const char *service,
                   const struct addrinfo *hints, struct addrinfo **res)
{
    struct addrinfo h;

    if (hints != NULL)
        h = *hints;
    else
        memset(&h, 0, sizeof(h));
    h.ai_flags |= AI_NUMERICHOST;
    return __real_getaddrinfo(node, service, &h, res);
}

static const char sandbox[] =
    "os.exit, os.execute, os.remove, os.rename, os.tmpname = nil\n"
    "io, package.loaded.io, dofile, loadfile, string.dump = nil\n"
    "if debug then debug.sethook = nil end\n"
    "package.loadlib, package.preload.ffi, package.loaded.ffi = nil\n"
    "package.cpath = ''\n"
    "local loadstring, type = loadstring, type\n"
    "local function textonly(s, name)\n"
    "    if type(s) ~= 'string' then return nil, 'fuzz: load(function) disabled' end\n"
    "    if s:byte(1) == 27 then return nil, 'fuzz: bytecode disabled' end\n"
    "    return loadstring(s, name)\n"
    "end\n"
    "_G.loadstring, _G.load = textonly, textonly\n";

void
__wrap_luaL_openlibs(lua_State *L)
{
    __real_luaL_openlibs(L);
    if (luaL_dostring(L, sandbox) != 0)
        __builtin_trap();
}

static char path[64];
static struct settings settings;
static struct server_spec servers[2] = {
    { (char *)"127.0.0.1", 11211, 1, NULL },
    { (char *)"127.0.0.1", 11212, 1, NULL },
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int fd;

    snprintf(path, sizeof(path), "/tmp/fuzz_policy.%d.XXXXXX", (int)getpid());
    fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        exit(1);
    }
    close(fd);
    unlink(path);       /* each input creates it again */
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ERR_LEN];
    struct config *cfg;
    FILE *f;

    if (size > 64 * 1024 || memchr(data, 0x1b, size) != NULL)
        return -1;      /* not added to the corpus */
    f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        __builtin_trap();
    /* Inputs ending in an even byte (a newline) see -s 127.0.0.1:11211 -s 127.0.0.1:11212 as lg.args.servers. */
    memset(&settings, 0, sizeof(settings));
    if (size > 0 && !(data[size - 1] & 1)) {
        settings.servers = servers;
        settings.nservers = 2;
    }
    err[0] = '\0';
    cfg = script_load(path, &settings, 1, err, sizeof(err));
    unlink(path);       /* none left behind when a later input crashes */
    if (getenv("FUZZ_POLICY_VERBOSE") != NULL)     /* for a look at one input */
        fprintf(stderr, "fuzz_policy: %s\n", cfg != NULL ? "loaded" : err);
    if (cfg != NULL)
        config_free(cfg);
    else if (err[0] == '\0')
        __builtin_trap();   /* a failed load always says why */
    return 0;
}
