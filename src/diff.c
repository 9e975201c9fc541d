/*
 * diff.c: `luagent --diff OLD NEW`: pools, routes and keys that change.
 *
 * Pools: placement.h gives each pool's share of keys that changes server.
 * Routes: every key falls in one class per policy, set by the longest prefix
 * it starts with; the prefixes named in either policy (and "none of them")
 * cover every class of both. For each class and each keyed command, the
 * route is written out as the tree below the prefix and by_op choices
 * ("failover(cfg_east, cfg_west)"), and only what differs is printed,
 * folded per operation class ("reads") or for all operations ("all") when
 * the commands agree. Keys: each line of the --keys file is routed through
 * both trees as --route would route it, and a key whose set of servers
 * differs is listed.
 *
 * Output is a function of the two policies (and the keys file) alone: no
 * addresses, times or pointers, so two runs print the same bytes.
 */
#include "diff.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "luagent.h"
#include "placement.h"
#include "proto.h"
#include "route.h"
#include "script.h"
#include "sim.h"
#include "settings.h"
#include "trial.h"
#include "ttl.h"

#define EXPR_MAX        1024    /* a route written out; longer ones end in "..." */
#define KEY_SERVERS_MAX 32      /* servers one request may reach */

/* ---- output helpers -------------------------------------------------------- */

/* A string as JSON: quotes, backslashes and bytes outside printable ASCII escaped. */
static void
json_string(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    fputc('"', out);
    for (; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void
json_labels(FILE *out, char *const *labels, int n)
{
    int i;

    fputc('[', out);
    for (i = 0; i < n; i++) {
        if (i > 0)
            fputs(", ", out);
        json_string(out, labels[i]);
    }
    fputc(']', out);
}

/* A bounded string builder: what does not fit is cut and marked "...". */
struct text {
    char   buf[EXPR_MAX];
    size_t len;
    bool   cut;
};

static void
text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->cut)
        return;
    va_start(ap, fmt);
    n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(t->buf) - t->len) {
        t->cut = true;
        t->len = sizeof(t->buf) - 4;
        memcpy(t->buf + t->len, "...", 4);
        return;
    }
    t->len += (size_t)n;
}

/* ---- pools ------------------------------------------------------------------ */

static const char *
plural(int n)
{
    return n == 1 ? "" : "s";
}

static bool
same_seed(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* "(ketama, 4 -> 5 servers)", "(ketama -> modula, 4 servers)" ... */
static void
pool_detail(FILE *out, const struct pool_change *c)
{
    if (c->kind != POOL_KEPT) {
        const char *dist = c->kind == POOL_ADDED ? c->new_dist : c->old_dist;
        int n = c->kind == POOL_ADDED ? c->new_servers : c->old_servers;

        fprintf(out, " (%s, %d server%s)", dist, n, plural(n));
        return;
    }
    if (strcmp(c->old_dist, c->new_dist) == 0)
        fprintf(out, " (%s, ", c->old_dist);
    else
        fprintf(out, " (%s -> %s, ", c->old_dist, c->new_dist);
    if (c->old_servers == c->new_servers)
        fprintf(out, "%d server%s)", c->new_servers, plural(c->new_servers));
    else
        fprintf(out, "%d -> %d servers)", c->old_servers, c->new_servers);
    if (!c->share.exact) {
        if (strcmp(c->old_hash, c->new_hash) != 0)
            fprintf(out, ", estimated: the key hash changes (%s -> %s)", c->old_hash, c->new_hash);
        else if (!same_seed(c->old_seed, c->new_seed))
            fprintf(out, ", estimated: the seed changes (%s -> %s)",
                    c->old_seed ? c->old_seed : "none", c->new_seed ? c->new_seed : "none");
        else
            fprintf(out, ", estimated: the hash tag changes");
    }
}

static void
pool_text(FILE *out, const struct pool_change *c)
{
    fprintf(out, "pool %s: ", c->name);
    switch (c->kind) {
    case POOL_KEPT:
        fprintf(out, "%.2f%% of keys move", 100.0 * c->share.share);
        break;
    case POOL_ADDED:
        fprintf(out, "added");
        break;
    case POOL_REMOVED:
        fprintf(out, "removed");
        break;
    }
    pool_detail(out, c);
    fputc('\n', out);
}

static void
pool_json_side(FILE *out, const char *what, const char *dist, const char *hash,
               const char *seed, char *const *labels, int n)
{
    if (dist == NULL)
        return;
    fprintf(out, ", \"%s\": {\"dist\": \"%s\", \"hash\": \"%s\", ", what, dist, hash);
    if (seed != NULL) {
        fprintf(out, "\"seed\": ");
        json_string(out, seed);
        fprintf(out, ", ");
    }
    fprintf(out, "\"servers\": ");
    json_labels(out, labels, n);
    fputc('}', out);
}

static void
pool_json(FILE *out, const struct pool_change *c, bool first)
{
    static const char *const kinds[] = { "kept", "added", "removed" };

    fprintf(out, "%s\n    {\"name\": ", first ? "" : ",");
    json_string(out, c->name);
    fprintf(out, ", \"change\": \"%s\"", kinds[c->kind]);
    if (c->kind == POOL_KEPT)
        fprintf(out, ", \"moved\": %.6f, \"exact\": %s", c->share.share,
                c->share.exact ? "true" : "false");
    pool_json_side(out, "old", c->old_dist, c->old_hash, c->old_seed, c->old_labels,
                   c->old_servers);
    pool_json_side(out, "new", c->new_dist, c->new_hash, c->new_seed, c->new_labels,
                   c->new_servers);
    fputc('}', out);
}

/* The pools' changes, or -1 out of memory; free *changes. */
static int
pool_changes(const struct config *old, const struct config *new, struct pool_change **changes,
             struct placement **po, struct placement **pn)
{
    *po = placement_of(old);
    *pn = placement_of(new);
    if (*po == NULL || *pn == NULL)
        return -1;
    return placement_compare(*po, *pn, changes);
}

static int
print_pools(const struct config *old, const struct config *new, bool json, FILE *out)
{
    struct placement *po, *pn;
    struct pool_change *changes = NULL;
    int n = pool_changes(old, new, &changes, &po, &pn), i;

    if (json)
        fprintf(out, ",\n  \"pools\": [");
    for (i = 0; i < n; i++) {
        if (json)
            pool_json(out, &changes[i], i == 0);
        else
            pool_text(out, &changes[i]);
    }
    if (json)
        fprintf(out, "%s]", n > 0 ? "\n  " : "");
    free(changes);
    placement_free(po);
    placement_free(pn);
    return n < 0 ? -1 : 0;
}

int
diff_print_pools(const struct config *old, const struct config *new, FILE *out)
{
    return print_pools(old, new, false, out);
}

/* ---- routes ----------------------------------------------------------------- */

static void render(const struct route *r, const char *key, size_t klen, enum cmd cmd,
                   struct text *t, int depth);

static void
render_children(const struct route *r, const char *key, size_t klen, enum cmd cmd,
                struct text *t, int depth)
{
    int i;

    for (i = 0; i < r->nchildren; i++) {
        if (i > 0)
            text_add(t, ", ");
        render(r->children[i], key, klen, cmd, t, depth + 1);
    }
}

/* What changes a node's behaviour beyond its children, after a ";". */
static void
render_options(const struct route *r, struct text *t)
{
    switch (r->type) {
    case ROUTE_FAILOVER:
        if (r->on_miss)
            text_add(t, "; miss");
        if (r->on_server_error)
            text_add(t, "; server_error");
        if (r->failover_writes)
            text_add(t, "; writes failover");
        if (r->gutter_ttl != 0)
            text_add(t, "; gutter_ttl %d", r->gutter_ttl);
        if (r->wait_ms > 0)
            text_add(t, "; wait %d ms", r->wait_ms);
        break;
    case ROUTE_ALL_FASTEST:
        if (r->wait_ms > 0)
            text_add(t, "; wait %d ms", r->wait_ms);
        break;
    case ROUTE_TTL: {
        char rule[32];

        ttl_describe(r->ttl_rule, rule, sizeof(rule));
        text_add(t, "; %s", rule);
        break;
    }
    case ROUTE_RATELIMIT:
        text_add(t, "; %g/s burst %u %s %s", r->rate_per_s, r->rate_burst,
                 r->rate_shared ? "global" : "worker", r->rate_pass ? "pass" : "error");
        break;
    case ROUTE_ALL_SYNC:
        if (r->reply_first)
            text_add(t, "; reply first");
        break;
    case ROUTE_SHADOW:
        text_add(t, "; %.4g%%", 100.0 * r->fraction / 4294967295.0);
        if (r->shadow_op != OP_COUNT)
            text_add(t, " %s", proto_op_name(r->shadow_op));
        break;
    case ROUTE_WARMUP:
        text_add(t, "; exptime %d", r->exptime);
        break;
    case ROUTE_NEARCACHE:
        text_add(t, "; ttl %u ms, hot_qps %g", r->nc_ttl_ms, r->nc_hot_qps);
        break;
    default:
        break;
    }
}

/* Every client's choice: the key says nothing about who sends it. */
static void
render_by_client(const struct route *r, const char *key, size_t klen, enum cmd cmd,
                 struct text *t, int depth)
{
    int i;

    text_add(t, "by_client(");
    for (i = 0; i < r->nclients; i++) {
        text_add(t, "%s%s: ", r->clients[i].cn ? "cn:" : "", r->clients[i].name);
        render(r->clients[i].route, key, klen, cmd, t, depth + 1);
        text_add(t, ", ");
    }
    text_add(t, "default: ");
    render(r->default_route, key, klen, cmd, t, depth + 1);
    text_add(t, ")");
}

static void
render_rewrite(const struct route *r, const char *key, size_t klen, enum cmd cmd,
               struct text *t, int depth)
{
    char next[2 * KEY_MAX + 2];
    size_t skip = 0;

    if (r->strip_len > 0 && klen >= r->strip_len && memcmp(key, r->strip, r->strip_len) == 0)
        skip = r->strip_len;
    text_add(t, "rewrite(");
    if (r->strip_len > 0)
        text_add(t, "strip \"%s\", ", r->strip);
    if (r->add_len > 0)
        text_add(t, "add \"%s\", ", r->add);
    if (r->add_len + klen - skip <= 2 * KEY_MAX) {
        if (r->add_len > 0)
            memcpy(next, r->add, r->add_len);
        memcpy(next + r->add_len, key + skip, klen - skip);
        render(r->children[0], next, r->add_len + klen - skip, cmd, t, depth + 1);
    } else {
        render(r->children[0], key, klen, cmd, t, depth + 1);
    }
    text_add(t, ")");
}

/*
 * The route a key of this class takes for this command, written out:
 * prefix and by_op choices are made (with the key and command), every other
 * node is shown with its children.
 */
static void
render(const struct route *r, const char *key, size_t klen, enum cmd cmd, struct text *t,
       int depth)
{
    int i;

    if (depth > ROUTE_HOPS_MAX) {
        text_add(t, "...");
        return;
    }
    switch (r->type) {
    case ROUTE_POOL:
        text_add(t, "%s", r->pool->name);
        return;
    case ROUTE_ERROR: {
        const char *msg = r->error_line + strlen("SERVER_ERROR ");

        text_add(t, "error(\"%.*s\")", (int)strcspn(msg, "\r\n"), msg);
        return;
    }
    case ROUTE_PREFIX:
        for (i = 0; i < r->nprefixes; i++)
            if (r->prefixes[i].len <= klen && memcmp(key, r->prefixes[i].prefix,
                                                     r->prefixes[i].len) == 0) {
                render(r->prefixes[i].route, key, klen, cmd, t, depth + 1);
                return;
            }
        render(r->default_route, key, klen, cmd, t, depth + 1);
        return;
    case ROUTE_BY_OP: {
        enum op op = proto_cmd_op(cmd);

        render(r->by_cmd[cmd] ? r->by_cmd[cmd] : r->by_op[op] ? r->by_op[op]
               : r->default_route, key, klen, cmd, t, depth + 1);
        return;
    }
    case ROUTE_REWRITE:
        render_rewrite(r, key, klen, cmd, t, depth);
        return;
    case ROUTE_BY_CLIENT:
        render_by_client(r, key, klen, cmd, t, depth);
        return;
    default:
        text_add(t, "%s(", r->name);
        render_children(r, key, klen, cmd, t, depth);
        render_options(r, t);
        text_add(t, ")");
        return;
    }
}

/* Every prefix named by a prefix node of cfg, appended to list (may repeat). */
static int
collect_prefixes(const struct config *cfg, const char ***list, int *n)
{
    int i, j;

    for (i = 0; i < cfg->nnodes; i++) {
        const struct route *r = cfg->nodes[i];

        for (j = 0; r->type == ROUTE_PREFIX && j < r->nprefixes; j++) {
            const char **grown = realloc(*list, sizeof(**list) * (size_t)(*n + 1));

            if (grown == NULL)
                return -1;
            *list = grown;
            (*list)[(*n)++] = r->prefixes[j].prefix;
        }
    }
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The prefixes of both policies, sorted, each once. */
static int
class_prefixes(const struct config *old, const struct config *new, const char ***list)
{
    int n = 0, i, kept = 0;

    *list = NULL;
    if (collect_prefixes(old, list, &n) < 0 || collect_prefixes(new, list, &n) < 0) {
        free(*list);
        return -1;
    }
    if (n == 0)
        return 0;
    qsort(*list, (size_t)n, sizeof(**list), cmp_str);
    for (i = 0; i < n; i++)
        if (kept == 0 || strcmp((*list)[kept - 1], (*list)[i]) != 0)
            (*list)[kept++] = (*list)[i];
    return kept;
}

static const char *const op_plural[OP_COUNT] = {
    [OP_READ] = "reads", [OP_WRITE] = "writes", [OP_DELETE] = "deletes",
    [OP_ARITH] = "arith", [OP_TOUCH] = "touches",
};

/* One key class: both routes for every keyed command. */
struct class_routes {
    const char  *prefix;            /* NULL: keys that start with no prefix */
    struct text  old[CMD_COUNT], new[CMD_COUNT];
};

static bool
keyed(enum cmd cmd)
{
    return proto_cmd_op(cmd) != OP_PROXY;
}

/* Whether commands a and b route alike in both policies. */
static bool
same_pair(const struct class_routes *c, enum cmd a, enum cmd b)
{
    return strcmp(c->old[a].buf, c->old[b].buf) == 0 && strcmp(c->new[a].buf, c->new[b].buf) == 0;
}

/* The first keyed command of an operation class, or CMD_COUNT. */
static enum cmd
first_of(enum op op)
{
    int i;

    for (i = 0; i < CMD_COUNT; i++)
        if (proto_cmd_op((enum cmd)i) == op)
            return (enum cmd)i;
    return CMD_COUNT;
}

static bool
class_uniform(const struct class_routes *c, enum op op)
{
    enum cmd first = first_of(op);
    int i;

    for (i = 0; i < CMD_COUNT; i++)
        if (proto_cmd_op((enum cmd)i) == op && !same_pair(c, first, (enum cmd)i))
            return false;
    return true;
}

struct route_out {
    FILE *out;
    bool  json;
    int   printed;
};

static void
route_entry(struct route_out *ro, const struct class_routes *c, const char *ops, enum cmd cmd)
{
    if (strcmp(c->old[cmd].buf, c->new[cmd].buf) == 0)
        return;
    if (ro->json) {
        fprintf(ro->out, "%s\n    {\"prefix\": ", ro->printed ? "," : "");
        if (c->prefix != NULL)
            json_string(ro->out, c->prefix);
        else
            fputs("null", ro->out);
        fprintf(ro->out, ", \"ops\": \"%s\", \"old\": ", ops);
        json_string(ro->out, c->old[cmd].buf);
        fputs(", \"new\": ", ro->out);
        json_string(ro->out, c->new[cmd].buf);
        fputc('}', ro->out);
    } else {
        fputs("route ", ro->out);
        if (c->prefix != NULL)
            json_string(ro->out, c->prefix);
        else
            fputs("default", ro->out);
        fprintf(ro->out, " %s: %s -> %s\n", ops, c->old[cmd].buf, c->new[cmd].buf);
    }
    ro->printed++;
}

/*
 * The class's changes, folded: operation classes whose commands all route
 * alike, and alike to each other, share one entry ("reads", "writes,deletes",
 * "all" for the five); a class whose commands differ gets one per command.
 */
static void
class_entries(struct route_out *ro, const struct class_routes *c)
{
    bool uniform[OP_PROXY], done[OP_PROXY] = { false };
    char ops[128];
    int op, other, folded;

    for (op = 0; op < OP_PROXY; op++)
        uniform[op] = class_uniform(c, (enum op)op);
    for (op = 0; op < OP_PROXY; op++) {
        if (!uniform[op]) {
            for (other = 0; other < CMD_COUNT; other++)
                if (proto_cmd_op((enum cmd)other) == (enum op)op)
                    route_entry(ro, c, proto_cmd_name((enum cmd)other), (enum cmd)other);
            continue;
        }
        if (done[op])
            continue;
        snprintf(ops, sizeof(ops), "%s", op_plural[op]);
        for (folded = 1, other = op + 1; other < OP_PROXY; other++) {
            if (!uniform[other] || !same_pair(c, first_of((enum op)op), first_of((enum op)other)))
                continue;
            done[other] = true;
            folded++;
            snprintf(ops + strlen(ops), sizeof(ops) - strlen(ops), ",%s", op_plural[other]);
        }
        route_entry(ro, c, folded == OP_PROXY ? "all" : ops, first_of((enum op)op));
    }
}

static void
class_fill(struct class_routes *c, const struct config *old, const struct config *new,
           const char *prefix)
{
    const char *key = prefix ? prefix : "";     /* "" starts with no prefix */
    int i;

    memset(c, 0, sizeof(*c));
    c->prefix = prefix;
    for (i = 0; i < CMD_COUNT; i++) {
        if (!keyed((enum cmd)i))
            continue;
        render(old->root, key, strlen(key), (enum cmd)i, &c->old[i], 0);
        render(new->root, key, strlen(key), (enum cmd)i, &c->new[i], 0);
    }
}

static int
print_routes(const struct config *old, const struct config *new, bool json, FILE *out)
{
    struct route_out ro = { .out = out, .json = json };
    struct class_routes *c = malloc(sizeof(*c));
    const char **prefixes;
    int n = class_prefixes(old, new, &prefixes), i;

    if (c == NULL || n < 0) {
        free(c);
        return -1;
    }
    if (json)
        fprintf(out, ",\n  \"routes\": [");
    for (i = 0; i <= n; i++) {
        class_fill(c, old, new, i < n ? prefixes[i] : NULL);
        class_entries(&ro, c);
    }
    if (json)
        fprintf(out, "%s]", ro.printed ? "\n  " : "");
    else if (ro.printed == 0)
        fprintf(out, "routes: no change\n");
    free(prefixes);
    free(c);
    return 0;
}

/* ---- keys ------------------------------------------------------------------- */

/* The servers a line reaches, as sorted distinct labels; count or -1. */
static int
key_servers(struct config *cfg, const char *line, const char **labels, char *err, size_t errlen)
{
    int ids[KEY_SERVERS_MAX], n = script_reach_servers(cfg, line, ids, KEY_SERVERS_MAX,
                                                        err, errlen), i, kept = 0;

    for (i = 0; i < n; i++)
        labels[i] = cfg->servers[ids[i]].label;
    if (n <= 0)
        return n;
    qsort(labels, (size_t)n, sizeof(*labels), cmp_str);
    for (i = 0; i < n; i++)
        if (kept == 0 || strcmp(labels[kept - 1], labels[i]) != 0)
            labels[kept++] = labels[i];
    return kept;
}

static void
labels_text(FILE *out, const char **labels, int n)
{
    int i;

    if (n == 1) {
        fputs(labels[0], out);
        return;
    }
    fputc('{', out);
    for (i = 0; i < n; i++)
        fprintf(out, "%s%s", i ? "," : "", labels[i]);
    fputc('}', out);
}

static void
key_entry(FILE *out, bool json, bool first, const char *line, const char **lo, int no,
          const char **ln, int nn)
{
    if (json) {
        fprintf(out, "%s\n      {\"key\": ", first ? "" : ",");
        json_string(out, line);
        fputs(", \"old\": ", out);
        json_labels(out, (char *const *)lo, no);
        fputs(", \"new\": ", out);
        json_labels(out, (char *const *)ln, nn);
        fputc('}', out);
        return;
    }
    fprintf(out, "key %s: ", line);
    labels_text(out, lo, no);
    fputs(" -> ", out);
    labels_text(out, ln, nn);
    fputc('\n', out);
}

static int
print_keys(struct config *old, struct config *new, const char *path, bool json, FILE *out,
           char *err, size_t errlen)
{
    const char *lo[KEY_SERVERS_MAX], *ln[KEY_SERVERS_MAX];
    char *line = NULL, why[512];
    size_t cap = 0;
    long given = 0, moved = 0, lineno = 0;
    ssize_t len;
    int no, nn, rc = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        snprintf(err, errlen, "--keys %s: %s", path, strerror(errno));
        return -1;
    }
    if (json)
        fprintf(out, ",\n  \"keys\": {\"changed\": [");
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        no = key_servers(old, line, lo, why, sizeof(why));
        nn = no < 0 ? -1 : key_servers(new, line, ln, why, sizeof(why));
        if (no < 0 || nn < 0) {
            snprintf(err, errlen, "--keys %s:%ld: %s", path, lineno, why);
            rc = -1;
            break;
        }
        given++;
        if (sim_same_labels(lo, no, ln, nn))
            continue;
        key_entry(out, json, moved == 0, line, lo, no, ln, nn);
        moved++;
    }
    free(line);
    fclose(f);
    if (json)
        fprintf(out, "%s], \"given\": %ld, \"moved\": %ld}", moved ? "\n    " : "", given, moved);
    else if (rc == 0)
        fprintf(out, "keys: %ld of %ld change server\n", moved, given);
    return rc;
}

/* ---- the whole diff ---------------------------------------------------------- */

int
diff_print(struct config *old, struct config *new, const struct diff_opts *opts, FILE *out,
           char *err, size_t errlen)
{
    if (opts->json) {
        fputs("{\n  \"old\": ", out);
        json_string(out, old->source);
        fputs(",\n  \"new\": ", out);
        json_string(out, new->source);
    }
    if (print_pools(old, new, opts->json, out) < 0 || print_routes(old, new, opts->json, out) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (opts->keys_file != NULL
        && print_keys(old, new, opts->keys_file, opts->json, out, err, errlen) < 0)
        return -1;
    if (opts->json)
        fputs("\n}\n", out);
    return 0;
}

int
diff_run(const struct settings *s)
{
    struct diff_opts opts = { .keys_file = s->keys_file, .json = s->json };
    char err[ERR_LEN];
    struct config *old = trial_load(s->diff_old, s, 1, err, sizeof(err)), *new = NULL;
    int rc = 1;

    if (old != NULL && (new = trial_load(s->diff_new, s, 1, err, sizeof(err))) != NULL)
        rc = diff_print(old, new, &opts, stdout, err, sizeof(err)) < 0;
    if (rc != 0)
        fprintf(stderr, "luagent: %s\n", err);
    config_free(new);
    config_free(old);
    return rc;
}
