/*
 * statsreply.c: reading the figures luagent keeps out of a server's answer
 * to `stats`.
 *
 * Lines are cut by reply_parse(), the same parser that reads every other
 * server reply, so a line too long or not a memcached reply at all is
 * refused the same way. The answer is parsed from its start on each call:
 * it is a few kilobytes, asked once per interval.
 */
#include "statsreply.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "reply.h"

static const char *const stat_names[SERVER_STAT_COUNT] = {
    [SERVER_STAT_CURR_ITEMS]       = "curr_items",
    [SERVER_STAT_TOTAL_ITEMS]      = "total_items",
    [SERVER_STAT_BYTES]            = "bytes",
    [SERVER_STAT_LIMIT_MAXBYTES]   = "limit_maxbytes",
    [SERVER_STAT_EVICTIONS]        = "evictions",
    [SERVER_STAT_CURR_CONNECTIONS] = "curr_connections",
};

const char *
statsreply_name(enum server_stat stat)
{
    return stat_names[stat];
}

/* A whole unsigned decimal number filling p[0..n), as memcached prints them. */
static bool
parse_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (n == 0 || n > 20)
        return false;
    for (i = 0; i < n; i++) {
        unsigned d = (unsigned)(p[i] - '0');

        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* "STAT <name> <value>\r\n" (line_len with the CRLF): keep it if it is ours. */
static void
take_stat(const char *line, size_t line_len, struct server_figures *out)
{
    const char *name = line + 5, *end = line + line_len - 2, *sp;
    int i;

    if (line_len < 8)
        return;             /* "STAT" alone, or no room for a name and a value */
    sp = memchr(name, ' ', (size_t)(end - name));
    if (sp == NULL)
        return;
    for (i = 0; i < SERVER_STAT_COUNT; i++) {
        size_t nlen = strlen(stat_names[i]);

        if ((size_t)(sp - name) == nlen && memcmp(name, stat_names[i], nlen) == 0) {
            if (parse_u64(sp + 1, (size_t)(end - sp - 1), &out->v[i]))
                out->have |= 1u << i;
            return;
        }
    }
}

/* Bytes before the first CR or LF in p[0..n) (a refused line, for why). */
static size_t
line_length(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && p[i] != '\r' && p[i] != '\n')
        i++;
    return i;
}

enum statsreply_status
statsreply_parse(const char *buf, size_t len, struct server_figures *out, size_t *used,
                 char *why, size_t whylen)
{
    size_t at = 0;

    memset(out, 0, sizeof(*out));
    while (at < len) {
        struct reply r;
        enum reply_status st = reply_parse(buf + at, len - at, 0, &r);

        if (st == REPLY_NEED_MORE)
            return STATSREPLY_NEED_MORE;
        if (st == REPLY_BAD || (r.kind != REPLY_STAT && r.kind != REPLY_END)) {
            size_t n = st == REPLY_OK_UNIT ? r.line_len - 2 : line_length(buf + at, len - at);

            snprintf(why, whylen, "%.*s", (int)n, buf + at);
            return STATSREPLY_BAD;
        }
        if (r.kind == REPLY_END) {
            *used = at + r.len;
            return STATSREPLY_DONE;
        }
        take_stat(buf + at, r.line_len, out);
        at += r.len;
    }
    return STATSREPLY_NEED_MORE;
}
