/*
 * test_statsreply.c: unit tests for reading a server's `stats` answer
 * (src/statsreply.c).
 *
 * CAPTURED is a shortened copy of what memcached 1.6.18 sent on loopback
 * after one set (the lines luagent keeps, and some it skips, in their order).
 * Every parse runs on a heap copy of exactly the bytes offered, so a read
 * past len shows up under SAN=1.
 */
#include "statsreply.h"

#include <stdlib.h>

#include "unit.h"

#define CAPTURED                                                            \
    "STAT pid 21607\r\nSTAT uptime 2\r\nSTAT version 1.6.18\r\n"            \
    "STAT libevent 2.1.12-stable\r\nSTAT rusage_user 0.007419\r\n"          \
    "STAT max_connections 1024\r\nSTAT curr_connections 1\r\n"              \
    "STAT total_connections 2\r\nSTAT cmd_set 1\r\nSTAT bytes_read 25\r\n"  \
    "STAT limit_maxbytes 67108864\r\nSTAT threads 1\r\nSTAT bytes 63\r\n"   \
    "STAT curr_items 1\r\nSTAT total_items 1\r\nSTAT evicted_unfetched 0\r\n" \
    "STAT evictions 0\r\nSTAT lru_bumps_dropped 0\r\nEND\r\n"

static enum statsreply_status
parse(const char *text, size_t len, struct server_figures *f, size_t *used,
      char *why, size_t whylen)
{
    char *copy = malloc(len ? len : 1);
    enum statsreply_status st;

    memcpy(copy, text, len);
    st = statsreply_parse(copy, len, f, used, why, whylen);
    free(copy);
    return st;
}

static void
test_captured_answer(void)
{
    const char *text = CAPTURED;
    size_t len = strlen(text), used = 0;
    struct server_figures f;
    char why[64];

    CHECK_EQ(parse(text, len, &f, &used, why, sizeof(why)), STATSREPLY_DONE);
    CHECK_EQ(used, len);
    CHECK_EQ(f.have, (1u << SERVER_STAT_COUNT) - 1);
    CHECK_U64(f.v[SERVER_STAT_CURR_ITEMS], 1);
    CHECK_U64(f.v[SERVER_STAT_TOTAL_ITEMS], 1);
    CHECK_U64(f.v[SERVER_STAT_BYTES], 63);
    CHECK_U64(f.v[SERVER_STAT_LIMIT_MAXBYTES], 67108864);
    CHECK_U64(f.v[SERVER_STAT_EVICTIONS], 0);
    CHECK_U64(f.v[SERVER_STAT_CURR_CONNECTIONS], 1);
    CHECK_STR(statsreply_name(SERVER_STAT_LIMIT_MAXBYTES), "limit_maxbytes");
}

/* Cut anywhere before its END is complete, the answer is not done. */
static void
test_every_split_needs_more(void)
{
    const char *text = CAPTURED;
    size_t len = strlen(text), cut, used;
    struct server_figures f;
    char why[64];
    int wrong = 0;

    for (cut = 0; cut < len; cut++)
        if (parse(text, cut, &f, &used, why, sizeof(why)) != STATSREPLY_NEED_MORE)
            wrong++;
    CHECK_EQ(wrong, 0);
}

/* Bytes after END are not part of the answer: used stops at END. */
static void
test_used_stops_at_end(void)
{
    const char *text = "STAT curr_items 7\r\nEND\r\nSTAT more 1\r\n";
    struct server_figures f;
    size_t used = 0;
    char why[64];

    CHECK_EQ(parse(text, strlen(text), &f, &used, why, sizeof(why)), STATSREPLY_DONE);
    CHECK_EQ(used, strlen("STAT curr_items 7\r\nEND\r\n"));
    CHECK_U64(f.v[SERVER_STAT_CURR_ITEMS], 7);
}

/* Missing or non-numeric figures are absent, not zero; near names do not count. */
static void
test_absent_figures(void)
{
    const char *text = "STAT bytes 12x\r\nSTAT curr_items\r\nSTAT\r\nSTAT \r\n"
                       "STAT evictions 18446744073709551616\r\n"
                       "STAT total_items_x 5\r\nSTAT byte 4\r\n"
                       "STAT limit_maxbytes 18446744073709551615\r\nEND\r\n";
    struct server_figures f;
    size_t used;
    char why[64];

    CHECK_EQ(parse(text, strlen(text), &f, &used, why, sizeof(why)), STATSREPLY_DONE);
    CHECK_EQ(f.have, 1u << SERVER_STAT_LIMIT_MAXBYTES);
    CHECK_U64(f.v[SERVER_STAT_LIMIT_MAXBYTES], UINT64_MAX);
}

/* What a server that refuses `stats`, or is no memcached, sends. */
static void
test_refusals(void)
{
    static const struct { const char *text, *why; } cases[] = {
        { "ERROR\r\n", "ERROR" },
        { "SERVER_ERROR out of memory\r\n", "SERVER_ERROR out of memory" },
        { "STAT pid 1\r\nCLIENT_ERROR bad command line format\r\n",
          "CLIENT_ERROR bad command line format" },
        { "STAT pid 1\r\nSTORED\r\n", "STORED" },
        { "HTTP/1.1 400 Bad Request\r\n", "HTTP/1.1 400 Bad Request" },
        { "STATS 1\r\n", "STATS 1" },
    };
    struct server_figures f;
    size_t i, used;
    char why[64];

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        why[0] = '\0';
        CHECK_EQ(parse(cases[i].text, strlen(cases[i].text), &f, &used, why, sizeof(why)),
                 STATSREPLY_BAD);
        CHECK_STR(why, cases[i].why);
    }
    /* binary bytes (a TLS server asked in plain text): refused at the line end */
    why[0] = '\0';
    CHECK_EQ(parse("\x16\x03\x01\x02\r\n", 6, &f, &used, why, sizeof(why)), STATSREPLY_BAD);
    CHECK_STR(why, "\x16\x03\x01\x02");
}

int
main(void)
{
    test_captured_answer();
    test_every_split_needs_more();
    test_used_stops_at_end();
    test_absent_figures();
    test_refusals();
    return UNIT_DONE();
}
