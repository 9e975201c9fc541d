/*
 * ttl.c: exptime rules (see ttl.h) and the rewrite of a request's
 * arguments under one. Only tokens whose value changes are written anew;
 * everything else is copied byte for byte.
 */
#include "ttl.h"

#include <stdio.h>
#include <string.h>

static bool rule_is_set(int32_t rule) { return rule < 0; }
static int32_t rule_seconds(int32_t rule) { return rule < 0 ? -(rule + 1) : rule; }

int64_t
ttl_apply(int32_t rule, int64_t exptime, int64_t now)
{
    int64_t most = rule_seconds(rule);

    if (rule == 0)
        return exptime;
    if (rule_is_set(rule))
        return most;
    if (exptime < 0)
        return exptime;                 /* expire at once, as asked */
    if (exptime == 0)
        return most;                    /* "never" is capped too */
    if (exptime <= TTL_RELATIVE_MAX)
        return exptime < most ? exptime : most;
    if (exptime <= now || exptime - now <= most)
        return exptime;                 /* past (expires at once) or soon enough */
    return most;
}

int32_t
ttl_compose(int32_t first, int32_t then)
{
    if (then == 0)
        return first;
    if (first == 0 || rule_is_set(then))
        return then;
    if (rule_is_set(first))             /* a fixed relative time, capped */
        return ttl_rule_set((int32_t)ttl_apply(then, rule_seconds(first), 0));
    return first < then ? first : then; /* two caps: the lower */
}

/* A signed decimal number filling [p, end) exactly, or false. */
static bool
parse_number(const char *p, const char *end, int64_t *v)
{
    bool neg = false;
    int64_t n = 0;

    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    if (p == end || end - p > 18)
        return false;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        n = n * 10 + (*p - '0');
    }
    *v = neg ? -n : n;
    return true;
}

/* Copy the number in [p, end) to out, rewritten by rule; returns the end of out. */
static char *
put_exptime(char *out, int32_t rule, const char *p, const char *end, int64_t now)
{
    int64_t v, nv;

    if (!parse_number(p, end, &v) || (nv = ttl_apply(rule, v, now)) == v) {
        memcpy(out, p, (size_t)(end - p));
        return out + (end - p);
    }
    return out + sprintf(out, "%lld", (long long)nv);
}

/* The end of the token at p (p itself when p is a space). */
static const char *
token_end(const char *p, const char *end)
{
    const char *space = memchr(p, ' ', (size_t)(end - p));

    return space != NULL ? space : end;
}

/* Which space-separated token of a classic command's args is its exptime (-1: none). */
static int
exptime_token(enum cmd cmd)
{
    switch (cmd) {
    case CMD_SET: case CMD_ADD: case CMD_REPLACE: case CMD_APPEND: case CMD_PREPEND:
    case CMD_CAS:
        return 1;                       /* <flags> <exptime> <bytes> [<cas>] */
    case CMD_TOUCH: case CMD_GAT: case CMD_GATS:
        return 0;
    default:
        return -1;
    }
}

static size_t
rewrite_classic(int32_t rule, enum cmd cmd, const char *args, size_t len, char *out,
                int64_t now)
{
    const char *p = args, *end = args + len;
    int want = exptime_token(cmd), i;
    char *o = out;

    for (i = 0; p < end; ) {
        const char *tok_end = token_end(p, end);

        if (tok_end == p) {             /* a space between tokens */
            *o++ = *p++;
            continue;
        }
        if (i++ == want) {
            o = put_exptime(o, rule, p, tok_end, now);
        } else {
            memcpy(o, p, (size_t)(tok_end - p));
            o += tok_end - p;
        }
        p = tok_end;
    }
    return (size_t)(o - out);
}

static size_t
rewrite_meta(int32_t rule, enum cmd cmd, const char *args, size_t len, char *out,
             int64_t now)
{
    const char *p = args, *end = args + len;
    bool has_t = false;
    char *o = out;

    while (p < end) {
        const char *tok_end = token_end(p, end);

        if (tok_end > p && (*p == 'T' || *p == 'N')) {
            has_t |= *p == 'T';
            *o++ = *p;
            o = put_exptime(o, rule, p + 1, tok_end, now);
        } else if (tok_end == p) {
            *o++ = *p;                  /* a space between tokens */
            tok_end++;
        } else {
            memcpy(o, p, (size_t)(tok_end - p));
            o += tok_end - p;
        }
        p = tok_end;
    }
    /* A meta store without T stores with exptime 0. */
    if (!has_t && proto_cmd_op(cmd) == OP_WRITE && ttl_apply(rule, 0, now) != 0)
        o += sprintf(o, "%sT%lld", o > out ? " " : "", (long long)ttl_apply(rule, 0, now));
    return (size_t)(o - out);
}

size_t
ttl_rewrite_args(int32_t rule, enum cmd cmd, bool meta, const char *args, size_t len,
                 char *out, int64_t now)
{
    return meta ? rewrite_meta(rule, cmd, args, len, out, now)
                : rewrite_classic(rule, cmd, args, len, out, now);
}

void
ttl_describe(int32_t rule, char *out, size_t len)
{
    if (rule == 0)
        snprintf(out, len, "%s", "");
    else
        snprintf(out, len, "%s %d s", rule_is_set(rule) ? "set" : "max", rule_seconds(rule));
}
