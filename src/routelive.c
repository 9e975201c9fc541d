/*
 * routelive.c: `stats route CMD KEY` and GET /route (routelive.h).
 *
 * The walk itself is script_route_live's; this file takes the live state
 * (which servers are marked down, read under the workers' read lock, as
 * stats are) and writes the answer. The first target that answers is "the"
 * pool and server; every target is listed, with "skipped" for those a
 * failover passes over.
 */
#include "routelive.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "luagent.h"
#include "proto.h"
#include "request.h"
#include "route.h"
#include "script.h"
#include "snapshot.h"
#include "stats.h"
#include "worker.h"

/* The answering target, or NULL (an error node answered). */
static const struct route_live_target *
answering(const struct route_live *lv)
{
    int i;

    for (i = 0; i < lv->ntargets; i++)
        if (lv->targets[i].answers)
            return &lv->targets[i];
    return NULL;
}

/* The request's state words: "down" for its server, then each node's. */
static void
state_words(const struct route_live *lv, char *out, size_t len)
{
    const struct route_live_target *t = answering(lv);
    size_t n = 0;
    int i;

    out[0] = '\0';
    if (t != NULL && t->down)
        n += (size_t)snprintf(out + n, len - n, "down");
    for (i = 0; i < lv->nsteps && n < len; i++)
        if (lv->steps[i].state[0] != '\0')
            n += (size_t)snprintf(out + n, len - n, "%s%s", n ? " " : "", lv->steps[i].state);
    if (out[0] == '\0')
        snprintf(out, len, "up");
}

/* "pool:server" targets' own words: up/down, skipped. */
static const char *
target_words(const struct route_live_target *t)
{
    if (t->answers)
        return t->down ? "down" : "up";
    return t->down ? "down skipped" : "up skipped";
}

#define BAD_KEY "key must be 1-250 bytes without spaces or control characters"
_Static_assert(KEY_MAX == 250, "BAD_KEY names KEY_MAX");

/* A key as a client could send it in a text command (no spaces, no control bytes). */
static bool
key_text_ok(const char *key, size_t klen)
{
    size_t i;

    for (i = 0; i < klen && key_byte_ok((unsigned char)key[i]); i++)
        ;
    return i == klen;
}

/*
 * Walk under the live state; cfg must stay alive (a worker's own generation,
 * or under the read lock). locked: the caller holds worker_read_lock already
 * (taking it again could wait behind a swapping worker that waits on us).
 */
static enum route_live_result
walk(const struct config *cfg, int vm, const char *cmd, size_t cmdlen, const char *key,
     size_t klen, const char *listener, const char *cn, bool locked, struct route_live *lv,
     char *err, size_t errlen)
{
    bool *down = calloc((size_t)cfg->nservers + 1, sizeof(*down));
    enum route_live_result rc;

    if (down == NULL) {
        snprintf(err, errlen, "out of memory");
        return ROUTE_LIVE_FAILED;
    }
    if (!locked)
        worker_read_lock();     /* the other workers' connections are read */
    snapshot_servers_down(cfg, down);
    if (!locked)
        worker_read_unlock();
    rc = script_route_live((struct config *)cfg, vm, cmd, cmdlen, key, klen, listener, cn,
                           down, lv, err, errlen);
    free(down);
    return rc;
}

/* ---- STAT lines ---- */

static void
stats_answer(struct buf *out, const struct config *cfg, const struct route_live *lv,
             const char *cmd, size_t cmdlen, const char *key, size_t klen)
{
    const struct route_live_target *t = answering(lv);
    char label[ROUTE_LABEL_MAX], name[64], words[256], path[1024];
    size_t n = 0;
    int i;

    snprintf(words, sizeof(words), "%.*s", (int)cmdlen, cmd);
    stats_line(out, "cmd", words);
    snprintf(path, sizeof(path), "%.*s", (int)klen, key);
    stats_line(out, "key", path);
    path[0] = '\0';
    for (i = 0; i < lv->nsteps && n < sizeof(path); i++) {
        route_label(cfg, lv->steps[i].node, label, sizeof(label));
        n += (size_t)snprintf(path + n, sizeof(path) - n, "%s%s", i ? " " : "", label);
    }
    stats_line(out, "route", path[0] ? path : "-");
    stats_line(out, "pool", t ? t->pool->name : "-");
    stats_line(out, "server", t ? cfg->servers[t->server].label : "-");
    state_words(lv, words, sizeof(words));
    stats_line(out, "state", words);
    for (i = 0; i < lv->ntargets; i++) {
        const struct route_live_target *x = &lv->targets[i];

        snprintf(name, sizeof(name), "target:%d:pool", i + 1);
        stats_line(out, name, x->pool->name);
        snprintf(name, sizeof(name), "target:%d:server", i + 1);
        stats_line(out, name, cfg->servers[x->server].label);
        snprintf(name, sizeof(name), "target:%d:state", i + 1);
        stats_line(out, name, target_words(x));
    }
    buf_append_str(out, "END\r\n");
}

void
routelive_stats(struct buf *out, const struct config *cfg, int vm, const char *args, size_t len,
                const char *listener, const char *cn)
{
    const char *end = args + len, *cmd, *cmd_end, *key, *p;
    struct route_live lv;
    char err[ERR_LEN], line[ERR_LEN + 32];

    /* "route CMD KEY": three words, one space or more between. */
    for (p = args; p < end && *p != ' '; p++)
        ;
    for (; p < end && *p == ' '; p++)
        ;
    cmd = p;
    for (; p < end && *p != ' '; p++)
        ;
    cmd_end = key = p;
    for (; key < end && *key == ' '; key++)
        ;
    for (p = key; p < end && *p != ' '; p++)
        ;
    if (key == end || p != end) {
        buf_append_str(out, "CLIENT_ERROR usage: stats route CMD KEY\r\n");
        return;
    }
    if (!key_text_ok(key, (size_t)(end - key))) {
        buf_append_str(out, "CLIENT_ERROR " BAD_KEY "\r\n");
        return;
    }
    switch (walk(cfg, vm, cmd, (size_t)(cmd_end - cmd), key, (size_t)(end - key),
                 listener, cn, false, &lv, err, sizeof(err))) {
    case ROUTE_LIVE_OK:
        stats_answer(out, cfg, &lv, cmd, (size_t)(cmd_end - cmd), key, (size_t)(end - key));
        return;
    case ROUTE_LIVE_BAD:
        snprintf(line, sizeof(line), "CLIENT_ERROR %s\r\n", err);
        break;
    default:
        snprintf(line, sizeof(line), "SERVER_ERROR %s\r\n", err);
        break;
    }
    buf_append_str(out, line);
}

/* ---- the request log's "route ... pool ... server ..." ---- */

void
routelive_where(const struct config *cfg, int vm, const struct creq *r, const char *listener,
                const char *cn, char *route, char *pool, char *server, size_t len)
{
    const char *cmd = proto_cmd_name(r->req.cmd);
    const struct route_live_target *t;
    char label[ROUTE_LABEL_MAX], err[ERR_LEN];
    struct route_live lv;
    size_t n = 0;
    int i;

    if (walk(cfg, vm, cmd, strlen(cmd), r->slots[0].key, r->slots[0].klen, listener, cn,
             false, &lv, err, sizeof(err)) != ROUTE_LIVE_OK)
        return;
    for (i = 0; i < lv.nsteps && n < len; i++) {
        route_label(cfg, lv.steps[i].node, label, sizeof(label));
        n += (size_t)snprintf(route + n, len - n, "%s%s", i ? ">" : "", label);
    }
    t = answering(&lv);
    if (t != NULL) {
        snprintf(pool, len, "%s", t->pool->name);
        snprintf(server, len, "%s", cfg->servers[t->server].label);
    }
}

/* ---- JSON ---- */

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void
json_string(struct buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    buf_append(out, "\"", 1);
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch == '"' || ch == '\\') {
            char esc[2] = { '\\', (char)ch };

            buf_append(out, esc, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            char esc[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };

            buf_append(out, esc, 6);
        } else {
            buf_append(out, (const char *)&ch, 1);
        }
    }
    buf_append(out, "\"", 1);
}

static void
json_field(struct buf *out, const char *name, const char *value, bool comma)
{
    if (comma)
        buf_append(out, ",", 1);
    json_string(out, name, strlen(name));
    buf_append(out, ":", 1);
    json_string(out, value, strlen(value));
}

/* "a b c" as ["a","b","c"]. */
static void
json_words(struct buf *out, const char *words)
{
    const char *p = words;
    bool first = true;

    buf_append(out, "[", 1);
    while (*p != '\0') {
        size_t n = strcspn(p, " ");

        if (!first)
            buf_append(out, ",", 1);
        json_string(out, p, n);
        first = false;
        p += n;
        p += *p == ' ';
    }
    buf_append(out, "]", 1);
}

static void
json_answer(struct buf *out, const struct config *cfg, const struct route_live *lv,
            const char *cmd, const char *key)
{
    const struct route_live_target *t = answering(lv);
    char label[ROUTE_LABEL_MAX], words[256], gen[32];
    int i;

    buf_append(out, "{", 1);
    json_field(out, "cmd", cmd, false);
    json_field(out, "key", key, true);
    snprintf(gen, sizeof(gen), ",\"generation\":%u,\"route\":[", cfg->generation);
    buf_append_str(out, gen);
    for (i = 0; i < lv->nsteps; i++) {
        route_label(cfg, lv->steps[i].node, label, sizeof(label));
        if (i > 0)
            buf_append(out, ",", 1);
        buf_append_str(out, "{");
        json_field(out, "node", label, false);
        buf_append_str(out, ",\"state\":");
        json_words(out, lv->steps[i].state);
        buf_append_str(out, "}");
    }
    buf_append(out, "]", 1);
    json_field(out, "pool", t ? t->pool->name : "", true);
    json_field(out, "server", t ? cfg->servers[t->server].label : "", true);
    state_words(lv, words, sizeof(words));
    buf_append_str(out, ",\"state\":");
    json_words(out, words);
    buf_append_str(out, ",\"targets\":[");
    for (i = 0; i < lv->ntargets; i++) {
        const struct route_live_target *x = &lv->targets[i];

        buf_append_str(out, i > 0 ? ",{" : "{");
        json_field(out, "pool", x->pool->name, false);
        json_field(out, "server", cfg->servers[x->server].label, true);
        buf_append_str(out, ",\"state\":");
        json_words(out, target_words(x));
        buf_append_str(out, "}");
    }
    buf_append_str(out, "]}\n");
}

int
routelive_json(struct buf *out, const char *cmd, const char *key, const char *listener,
               const char *cn)
{
    struct route_live lv;
    char err[ERR_LEN];
    const struct config *cfg;
    enum route_live_result rc;

    if (!key_text_ok(key, strlen(key))) {
        snprintf(err, sizeof(err), "%s", BAD_KEY);
        rc = ROUTE_LIVE_BAD;
    } else {
        worker_read_lock();
        cfg = worker_generation(0)->config;     /* alive while it is current */
        rc = walk(cfg, -1, cmd, strlen(cmd), key, strlen(key), listener, cn, true, &lv,
                  err, sizeof(err));
        if (rc == ROUTE_LIVE_OK)
            json_answer(out, cfg, &lv, cmd, key);
        worker_read_unlock();
    }
    if (rc == ROUTE_LIVE_OK)
        return 200;
    buf_append(out, "{", 1);
    json_field(out, "error", err, false);
    buf_append_str(out, "}\n");
    return rc == ROUTE_LIVE_BAD ? 400 : rc == ROUTE_LIVE_NO_VM ? 409 : 500;
}
