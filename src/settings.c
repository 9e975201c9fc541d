/*
 * settings.c: magent-compatible command line, with defaults and --help.
 *
 * Each option is one row of the table below: its flags, its argument and its
 * help text, so `luagent -h` and the parser never disagree. A bad flag or
 * value prints one precise line and the usage, and the caller exits with 2.
 */
#include "settings.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luagent.h"
#include "metrics.h"

struct option_row {
    int         flag;       /* short flag, or a value >= 256 for long-only */
    const char *long_name;
    const char *arg;        /* argument name, NULL when none */
    const char *help;
};

enum {
    OPT_VERSION = 256, OPT_CHECK, OPT_ROUTE, OPT_METRICS, OPT_UNIX_MODE, OPT_LOG,
    OPT_PID_FILE, OPT_TLS_PORT, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_CA,
    OPT_TLS_VERIFY_CLIENT, OPT_TLS_HANDSHAKE_TIMEOUT, OPT_BACKEND_TLS_CA,
    OPT_SERVER_STATS_INTERVAL, OPT_CLIENT_MAX_MEMORY, OPT_DIFF, OPT_KEYS, OPT_JSON,
    OPT_AGAINST, OPT_WATCH, OPT_RELOAD, OPT_FORCE, OPT_ROUTE_LISTENER, OPT_ROUTE_CN,
    OPT_DOWN, OPT_MISS, OPT_TIMEOUT, OPT_PREVIEW
};

static const struct option_row option_rows[] = {
    { 'p', "port",       "PORT", "TCP port to listen on (default 11211, 0 = no TCP)" },
    { 's', "server",     "HOST[:PORT[:WEIGHT]]", "memcached server (repeatable; port 11211 when omitted)" },
    { 'b', "backup",     "HOST[:PORT[:WEIGHT]]", "backup server (repeatable): writes go to it too, reads fall back to it" },
    { 'l', "listen",     "ADDR|NAME=ADDR:PORT", "address -p, --tls-port bind (default: all); or, with '=', one more TCP listener named NAME (repeatable, for lg.by_client)" },
    { 'n', "max-conns",  "N",    "max simultaneous client connections (default 4096)" },
    { 'i', "max-idle",   "N",    "max idle connections kept per server (default 20)" },
    { 'm', "max-memory", "MB",   "buffer memory of all clients in MiB; past it new requests get SERVER_ERROR out of memory (default 1024, or settings.max_memory)" },
    { OPT_CLIENT_MAX_MEMORY, "client-max-memory", "MB", "memory one client's requests and replies may hold, in MiB (default 8 x item_max, or settings.client_max_memory)" },
    { 'k', "ketama",     NULL,   "ketama consistent hashing (default: magent's hash modulo servers)" },
    { 'f', "unix",       "PATH", "unix socket to listen on" },
    { OPT_UNIX_MODE, "unix-mode", "MODE", "permissions of the -f socket, octal such as 0660 (default: from the umask)" },
    { 'u', "user",       "USER", "user (name or id) to run as after binding" },
    { 'g', "group",      "GROUP","group (name or id) to run as after binding" },
    { 'D', "foreground", NULL,   "stay in the foreground (default: run as a daemon)" },
    { OPT_PID_FILE, "pid-file", "FILE", "write the pid to FILE, removed at exit (refused if it names a live process)" },
    { OPT_LOG,   "log",       "FILE", "log to FILE, reopened on SIGUSR1 (default: stderr, syslog as a daemon)" },
    { 'v', "verbose",    NULL,   "more log output (repeatable)" },
    { 't', "threads",    "N",    "worker threads (default: the number of cores, at most 4)" },
    { 'c', "policy",     "FILE", "Lua routing policy (default: the built-in magent policy over -s/-b/-k)" },
    { 'h', "help",       NULL,   "this help" },
    { OPT_TLS_PORT, "tls-port", "PORT", "TLS port to listen on, same address as -l (needs --tls-cert, --tls-key)" },
    { OPT_TLS_CERT, "tls-cert", "FILE", "PEM certificate chain served on --tls-port (reloaded on SIGHUP)" },
    { OPT_TLS_KEY,  "tls-key",  "FILE", "PEM private key of --tls-cert" },
    { OPT_TLS_CA,   "tls-ca",   "FILE", "PEM CA bundle that client certificates must chain to" },
    { OPT_TLS_VERIFY_CLIENT, "tls-verify-client", NULL, "require a client certificate (mutual TLS; needs --tls-ca)" },
    { OPT_TLS_HANDSHAKE_TIMEOUT, "tls-handshake-timeout", "MS", "close a client whose TLS handshake takes longer (default 5000)" },
    { OPT_BACKEND_TLS_CA, "backend-tls-ca", "FILE", "talk TLS to the -s/-b servers, verified against this CA (lg.args.backend_tls_ca)" },
    { OPT_CHECK,   "check",   "FILE", "load FILE, run its self-tests, print its pools and routes, exit 0/1" },
    { OPT_ROUTE,   "route",   "FILE", "with a request line after it (\"get some:key\"): print where it goes" },
    { OPT_ROUTE_LISTENER, "listener", "NAME", "with --route: the request came through listener NAME (tcp, tls, unix or a --listen name)" },
    { OPT_ROUTE_CN, "cn", "NAME", "with --route: the client's certificate has common name NAME" },
    { OPT_DOWN,    "down",    "NAME", "with --route, repeatable: assume the pool, HOST:PORT or HOST is down" },
    { OPT_TIMEOUT, "timeout", "NAME", "with --route, repeatable: assume the pool, HOST:PORT or HOST never answers" },
    { OPT_MISS,    "miss",    "NAME", "with --route, repeatable: assume the pool (or server) does not hold the key" },
    { OPT_AGAINST, "against", "OLD", "with --check: also fail as a reload from OLD would (settings.max_remap)" },
    { OPT_DIFF,    "diff",    "OLD", "with NEW after it: print the share of each pool's keys that moves, and the routes that change" },
    { OPT_KEYS,    "keys",    "FILE", "with --diff: list the keys of FILE (one key or request line a line) whose server changes" },
    { OPT_JSON,    "json",    NULL,   "with --diff: print one JSON object" },
    { OPT_WATCH,   "watch",   NULL,   "reload the -c policy when its file changes, as SIGHUP does" },
    { OPT_RELOAD,  "reload",  NULL,   "reload the running luagent (found by --pid-file, else -p on 127.0.0.1), report, exit" },
    { OPT_PREVIEW, "preview", "FILE", "place FILE beside the running luagent's policy, key by key, for `stats preview`; --preview --drop ends it" },
    { OPT_FORCE,   "force",   NULL,   "with --reload: let this reload move more keys than settings.max_remap" },
    { OPT_METRICS, "metrics", "ADDR:PORT", "serve Prometheus metrics at http://ADDR:PORT/metrics (default: off)" },
    { OPT_SERVER_STATS_INTERVAL, "server-stats-interval", "S", "ask each server for its stats every S seconds, for stats and metrics (default 10, 0 = off)" },
    { OPT_VERSION, "version", NULL, "print the version and exit" },
};

static void
usage(FILE *out)
{
    size_t i;

    fprintf(out, "Usage: luagent [options] -s HOST[:PORT] [-s HOST[:PORT] ...]\n"
                 "       luagent [options] -c policy.lua [-- ARGS for lg.args.extra]\n"
                 "       luagent --check policy.lua\n"
                 "       luagent --route policy.lua \"get some:key\"\n"
                 "       luagent --diff old.lua new.lua [--keys FILE] [--json]\n"
                 "       luagent --reload [--force] [-c policy.lua] [--pid-file FILE | -p PORT]\n"
                 "\nOptions:\n");
    for (i = 0; i < ARRAY_SIZE(option_rows); i++) {
        const struct option_row *o = &option_rows[i];
        char left[64];

        if (o->flag < 256)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", o->flag, o->long_name,
                     o->arg ? " " : "", o->arg ? o->arg : "");
        else
            snprintf(left, sizeof(left), "    --%s%s%s", o->long_name,
                     o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(out, "  %-34s %s\n", left, o->help);
    }
}

static enum settings_result
bad(const char *fmt, const char *what)
{
    fprintf(stderr, "luagent: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n");
    usage(stderr);
    return SETTINGS_EXIT_USAGE;
}

/* Parse a whole number written in `base` within [min, max]; -1 on any junk. */
static int
parse_in_base(const char *text, int base, long min, long max, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, base);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int
parse_int(const char *text, long min, long max, int *out)
{
    return parse_in_base(text, 10, min, max, out);
}

/* Permission bits in octal ("660" or "0660"). */
static int
parse_mode(const char *text, int *out)
{
    return parse_in_base(text, 8, 0, 0777, out);
}

int
settings_parse_server(const char *text, struct server_spec *spec,
                      char *err, size_t errlen)
{
    const char *colon = strchr(text, ':');
    size_t hostlen = colon ? (size_t)(colon - text) : strlen(text);
    int port = DEFAULT_PORT, weight = 1;

    memset(spec, 0, sizeof(*spec));
    if (hostlen == 0) {
        snprintf(err, errlen, "bad server '%s': empty host", text);
        return -1;
    }
    if (colon) {
        char portbuf[16];
        const char *wcolon = strchr(colon + 1, ':');
        size_t plen = wcolon ? (size_t)(wcolon - colon - 1) : strlen(colon + 1);

        if (plen == 0 || plen >= sizeof(portbuf)) {
            snprintf(err, errlen, "bad server '%s': bad port", text);
            return -1;
        }
        memcpy(portbuf, colon + 1, plen);
        portbuf[plen] = '\0';
        if (parse_int(portbuf, 1, 65535, &port) < 0) {
            snprintf(err, errlen, "bad server '%s': port must be 1-65535", text);
            return -1;
        }
        if (wcolon && parse_int(wcolon + 1, 1, 1000000, &weight) < 0) {
            snprintf(err, errlen, "bad server '%s': weight must be a positive number", text);
            return -1;
        }
    }
    spec->host = strndup(text, hostlen);
    spec->port = port;
    spec->weight = (unsigned)weight;
    return 0;
}

static int
add_server(struct server_spec **list, int *n, const char *text)
{
    char err[ERR_LEN];
    struct server_spec spec, *grown;

    if (settings_parse_server(text, &spec, err, sizeof(err)) < 0) {
        bad("%s", err);
        return -1;
    }
    grown = realloc(*list, sizeof(**list) * (size_t)(*n + 1));
    if (grown == NULL) {
        free(spec.host);
        bad("%s", "out of memory");
        return -1;
    }
    grown[(*n)++] = spec;
    *list = grown;
    return 0;
}

/* One more named listener (-l/--listen NAME=ADDR:PORT). */
static int
add_listen(struct settings *s, const char *text)
{
    char err[ERR_LEN];
    int i;

    if (s->nlistens == LISTEN_NAMED_MAX) {
        snprintf(err, sizeof(err), "too many --listen NAME=ADDR:PORT listeners (at most %d)",
                 LISTEN_NAMED_MAX);
        bad("%s", err);
        return -1;
    }
    if (listener_parse_named(text, &s->listens[s->nlistens], err, sizeof(err)) < 0) {
        bad("%s", err);
        return -1;
    }
    for (i = 0; i < s->nlistens; i++) {
        if (strcmp(s->listens[i].name, s->listens[s->nlistens].name) == 0) {
            bad("--listen: two listeners are named '%s'", s->listens[i].name);
            return -1;
        }
    }
    s->nlistens++;
    return 0;
}

/* --down/--timeout/--miss NAME: one more assumed condition for --route. */
static int
add_condition(struct sim_conditions *cond, const char *which, const char *name)
{
    const char **list = which[0] == 'd' ? cond->down : which[0] == 'm' ? cond->miss
                        : cond->timeout;
    int *n = which[0] == 'd' ? &cond->ndown : which[0] == 'm' ? &cond->nmiss : &cond->ntimeout;

    if (*n == SIM_NAMES_MAX) {
        char msg[64];

        snprintf(msg, sizeof(msg), "--%s: at most %d names", which, SIM_NAMES_MAX);
        bad("%s", msg);
        return -1;
    }
    list[(*n)++] = name;
    return 0;
}

/* memcached's model: a worker per core; past four the accept thread and the
 * servers are the limit, not the workers. */
static int
default_threads(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    if (cores < 1)
        return 1;
    return cores > DEFAULT_THREADS_MAX ? DEFAULT_THREADS_MAX : (int)cores;
}

static void
settings_defaults(struct settings *s)
{
    memset(s, 0, sizeof(*s));
    s->port = DEFAULT_PORT;
    s->max_conns = DEFAULT_MAX_CONNS;
    s->max_idle = DEFAULT_MAX_IDLE;
    s->threads = default_threads();
    s->unix_mode = -1;
    s->tls_handshake_timeout_ms = DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS;
    s->server_stats_interval_s = DEFAULT_SERVER_STATS_INTERVAL_S;
}

/* Build getopt's tables from option_rows. */
static void
build_getopt(char *shortopts, struct option *longopts)
{
    size_t i, n = 0;

    *shortopts++ = ':';     /* report a missing argument as ':' */
    for (i = 0; i < ARRAY_SIZE(option_rows); i++) {
        const struct option_row *o = &option_rows[i];

        if (o->flag < 256) {
            *shortopts++ = (char)o->flag;
            if (o->arg)
                *shortopts++ = ':';
        }
        longopts[n].name = o->long_name;
        longopts[n].has_arg = o->arg ? required_argument : no_argument;
        longopts[n].flag = NULL;
        longopts[n].val = o->flag;
        n++;
    }
    *shortopts = '\0';
    memset(&longopts[n], 0, sizeof(longopts[n]));
}

static enum settings_result
apply_option(struct settings *s, int c, const char *arg)
{
    switch (c) {
    case 'p':
        if (parse_int(arg, 0, 65535, &s->port) < 0)
            return bad("bad port '%s' for -p: must be 0-65535", arg);
        break;
    case 's':
        if (add_server(&s->servers, &s->nservers, arg) < 0)
            return SETTINGS_EXIT_USAGE;
        break;
    case 'b':
        if (add_server(&s->backups, &s->nbackups, arg) < 0)
            return SETTINGS_EXIT_USAGE;
        break;
    case 'l':
        if (strchr(arg, '=') == NULL) {
            s->bind_addr = arg;
        } else if (add_listen(s, arg) < 0) {
            return SETTINGS_EXIT_USAGE;
        }
        break;
    case 'n':
        if (parse_int(arg, 1, 1000000, &s->max_conns) < 0)
            return bad("bad value '%s' for -n: must be 1-1000000", arg);
        break;
    case 'm':
        if (parse_int(arg, 1, 1048576, &s->max_memory_mb) < 0)
            return bad("bad value '%s' for -m: must be 1-1048576 (MiB)", arg);
        break;
    case OPT_CLIENT_MAX_MEMORY:
        if (parse_int(arg, 1, 1048576, &s->client_max_memory_mb) < 0)
            return bad("bad value '%s' for --client-max-memory: must be 1-1048576 (MiB)", arg);
        break;
    case 'i':
        if (parse_int(arg, 0, 10000, &s->max_idle) < 0)
            return bad("bad value '%s' for -i: must be 0-10000", arg);
        s->max_idle_given = true;
        break;
    case 'k': s->ketama = true; break;
    case 'f': s->unix_path = arg; break;
    case OPT_UNIX_MODE:
        if (parse_mode(arg, &s->unix_mode) < 0)
            return bad("bad mode '%s' for --unix-mode: must be octal 0-0777, e.g. 0660", arg);
        break;
    case OPT_PID_FILE: s->pid_file = arg; break;
    case OPT_LOG: s->log_file = arg; break;
    case 'u': s->user = arg; break;
    case 'g': s->group = arg; break;
    case 'D': s->foreground = true; break;
    case 'v': s->verbose++; break;
    case 't':
        if (parse_int(arg, 1, 64, &s->threads) < 0)
            return bad("bad value '%s' for -t: must be 1-64", arg);
        break;
    case 'c': s->policy = arg; break;
    case 'h':
        usage(stdout);
        return SETTINGS_EXIT_OK;
    case OPT_TLS_PORT:
        if (parse_int(arg, 1, 65535, &s->tls_port) < 0)
            return bad("bad port '%s' for --tls-port: must be 1-65535", arg);
        break;
    case OPT_TLS_CERT: s->tls_cert = arg; break;
    case OPT_TLS_KEY: s->tls_key = arg; break;
    case OPT_TLS_CA: s->tls_ca = arg; break;
    case OPT_TLS_VERIFY_CLIENT: s->tls_verify_client = true; break;
    case OPT_TLS_HANDSHAKE_TIMEOUT:
        if (parse_int(arg, 1, 3600000, &s->tls_handshake_timeout_ms) < 0)
            return bad("bad value '%s' for --tls-handshake-timeout: must be 1-3600000 (ms)", arg);
        break;
    case OPT_BACKEND_TLS_CA: s->backend_tls_ca = arg; break;
    case OPT_SERVER_STATS_INTERVAL:
        if (parse_int(arg, 0, SERVER_STATS_INTERVAL_MAX_S, &s->server_stats_interval_s) < 0)
            return bad("bad value '%s' for --server-stats-interval: must be 0-86400 (seconds, 0 = off)", arg);
        break;
    case OPT_CHECK: s->check = arg; break;
    case OPT_ROUTE: s->route_file = arg; break;
    case OPT_DOWN:
    case OPT_TIMEOUT:
    case OPT_MISS:
        if (add_condition(&s->route_cond, c == OPT_DOWN ? "down" : c == OPT_MISS ? "miss"
                          : "timeout", arg) < 0)
            return SETTINGS_EXIT_USAGE;
        break;
    case OPT_AGAINST: s->against = arg; break;
    case OPT_ROUTE_LISTENER: s->route_cond.listener = arg; break;
    case OPT_ROUTE_CN: s->route_cond.cn = arg; break;
    case OPT_DIFF: s->diff_old = arg; break;
    case OPT_KEYS: s->keys_file = arg; break;
    case OPT_JSON: s->json = true; break;
    case OPT_WATCH: s->watch = true; break;
    case OPT_RELOAD: s->reload = true; break;
    case OPT_PREVIEW:
        if (strcmp(arg, "--drop") == 0)
            s->preview_drop = true;
        else
            s->preview = arg;
        break;
    case OPT_FORCE: s->force = true; break;
    case OPT_METRICS: {
        char host[METRICS_HOST_MAX], err[ERR_LEN];
        int port;

        if (metrics_parse_addr(arg, host, sizeof(host), &port, err, sizeof(err)) < 0)
            return bad("%s", err);
        s->metrics_addr = arg;
        break;
    }
    case OPT_VERSION:
        printf("luagent %s\n", LUAGENT_VERSION);
        return SETTINGS_EXIT_OK;
    default:
        return bad("%s", "internal: unhandled option");
    }
    return SETTINGS_RUN;
}

/*
 * The TLS flags go together: a listener needs a certificate and its key, and
 * a certificate needs a listener (except for --check, which only loads it).
 */
/* Flags that only go with another one. */
static int
check_safe_change_options(const struct settings *s)
{
    if ((s->keys_file != NULL || s->json) && s->diff_old == NULL) {
        bad("%s", "--keys and --json go with --diff OLD NEW");
        return -1;
    }
    if (s->against != NULL && s->check == NULL) {
        bad("%s", "--against OLD goes with --check NEW");
        return -1;
    }
    if ((s->route_cond.listener != NULL || s->route_cond.cn != NULL) && s->route_file == NULL) {
        bad("%s", "--listener and --cn go with --route FILE LINE");
        return -1;
    }
    if ((s->preview != NULL || s->preview_drop) && (s->reload || s->check || s->diff_old)) {
        bad("%s", "--preview goes alone (with -c POLICY, --pid-file or -p to find the process)");
        return -1;
    }
    if (s->force && !s->reload) {
        bad("%s", "--force goes with --reload");
        return -1;
    }
    if (s->watch && s->policy == NULL && s->check == NULL) {
        bad("%s", "--watch needs -c FILE (the policy file to watch)");
        return -1;
    }
    return 0;
}

static int
check_tls_options(const struct settings *s)
{
    bool files = s->tls_cert != NULL || s->tls_key != NULL;

    if (s->tls_port != 0 && (s->tls_cert == NULL || s->tls_key == NULL)) {
        bad("%s", "--tls-port needs --tls-cert FILE and --tls-key FILE");
        return -1;
    }
    if (files && (s->tls_cert == NULL || s->tls_key == NULL)) {
        bad("%s", s->tls_cert ? "--tls-cert needs --tls-key FILE" : "--tls-key needs --tls-cert FILE");
        return -1;
    }
    if (files && s->tls_port == 0 && s->check == NULL) {
        bad("%s", "--tls-cert and --tls-key need --tls-port PORT");
        return -1;
    }
    if ((s->tls_ca != NULL || s->tls_verify_client) && s->tls_cert == NULL) {
        bad("%s", "--tls-ca and --tls-verify-client need --tls-port, --tls-cert and --tls-key");
        return -1;
    }
    if (s->tls_verify_client && s->tls_ca == NULL) {
        bad("%s", "--tls-verify-client needs --tls-ca FILE (the CA client certificates chain to)");
        return -1;
    }
    if (s->tls_port != 0 && s->tls_port == s->port) {
        bad("%s", "--tls-port must differ from -p");
        return -1;
    }
    return 0;
}

enum settings_result
settings_parse(struct settings *s, int argc, char **argv)
{
    char shortopts[2 * ARRAY_SIZE(option_rows) + 2];
    struct option longopts[ARRAY_SIZE(option_rows) + 1];
    enum settings_result r;
    int c;

    settings_defaults(s);
    build_getopt(shortopts, longopts);
    opterr = 0;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (c == '?') {
            if (optopt)
                return bad("unknown option '-%s'", (char[]){ (char)optopt, 0 });
            return bad("unknown option '%s'", argv[optind - 1]);
        }
        if (c == ':')
            return bad("option '%s' needs a value", argv[optind - 1]);
        r = apply_option(s, c, optarg);
        if (r != SETTINGS_RUN)
            return r;
    }
    if (s->route_file == NULL
        && s->route_cond.ndown + s->route_cond.nmiss + s->route_cond.ntimeout > 0)
        return bad("%s", "--down, --timeout and --miss go with --route FILE LINE");
    if (s->route_file != NULL) {
        if (optind != argc - 1)
            return bad("%s", "--route FILE needs one request line, e.g. \"get some:key\"");
        s->route_line = argv[optind++];
        return check_safe_change_options(s) < 0 ? SETTINGS_EXIT_USAGE : SETTINGS_RUN;
    }
    if (s->diff_old != NULL) {
        if (optind != argc - 1)
            return bad("%s", "--diff OLD needs the new policy file after it: --diff OLD NEW");
        s->diff_new = argv[optind++];
    }
    if (optind < argc && optind > 1 && strcmp(argv[optind - 1], "--") == 0) {
        /* Everything after "--" is the policy's own (lg.args.extra). */
        s->extra = argv + optind;
        s->nextra = argc - optind;
        optind = argc;
    }
    if (optind < argc)
        return bad("unexpected argument '%s'", argv[optind]);
    if (check_tls_options(s) < 0 || check_safe_change_options(s) < 0)
        return SETTINGS_EXIT_USAGE;
    if (s->check != NULL || s->diff_old != NULL || s->reload || s->preview || s->preview_drop)
        return SETTINGS_RUN;
    if (s->nservers == 0 && s->policy == NULL)
        return bad("%s", "no server given: use -s HOST[:PORT] (or -c policy.lua)");
    if (s->port == 0 && s->unix_path == NULL && s->tls_port == 0 && s->nlistens == 0)
        return bad("%s", "nothing to listen on: -p 0 turns TCP off and neither -f PATH, "
                   "--tls-port nor --listen NAME=ADDR:PORT was given");
    if (s->unix_mode >= 0 && s->unix_path == NULL)
        return bad("%s", "--unix-mode needs -f PATH");
    return SETTINGS_RUN;
}

void
settings_free(struct settings *s)
{
    int i;

    for (i = 0; i < s->nservers; i++)
        free(s->servers[i].host);
    for (i = 0; i < s->nbackups; i++)
        free(s->backups[i].host);
    free(s->servers);
    free(s->backups);
}
