/*
 * test_reply.c: unit tests for the backend reply parser (src/reply.c).
 *
 * Vectors marked "captured" are the exact bytes memcached 1.6.18 sent on
 * loopback for the command shown; the rest are built by hand to hit one rule.
 * Every parse runs on a heap copy of exactly the bytes offered, so a read past
 * len shows up under valgrind or SAN=1.
 */
#include "reply.h"

#include <stdlib.h>

#include "luagent.h"
#include "unit.h"

#define S(lit)      (lit), (sizeof(lit) - 1)    /* literal with embedded NULs */
#define MAXV        ITEM_MAX_DEFAULT

/* A filler that only says "untouched" if the parser did not write *r. */
static void
reply_poison(struct reply *r)
{
    memset(r, 0xa5, sizeof(*r));
}

static int
reply_untouched(const struct reply *r)
{
    struct reply p;

    reply_poison(&p);
    return memcmp(&p, r, sizeof(p)) == 0;
}

static int reply_same(const struct reply *a, const struct reply *b);

/*
 * A prefix of the unit whole: NEED_MORE leaves *r alone until a VALUE or VA
 * line is in; from then on it says what the whole unit's parse says (its
 * length, and its line's fields).
 */
static int
reply_waits_for(const struct reply *r, const struct reply *whole)
{
    struct reply p;

    if (r->len == whole->len)
        return reply_same(r, whole);
    reply_poison(&p);
    return memcmp(&p, r, sizeof(p)) == 0;
}

static int
reply_same(const struct reply *a, const struct reply *b)
{
    return a->kind == b->kind && a->len == b->len &&
           a->line_len == b->line_len && a->key_off == b->key_off &&
           a->key_len == b->key_len && a->rest_off == b->rest_off &&
           a->data_len == b->data_len;
}

/* Parse a heap copy of exactly n bytes. */
static enum reply_status
parse_n(const char *bytes, size_t n, uint32_t max_value, struct reply *r)
{
    char *copy = malloc(n ? n : 1);
    enum reply_status st;

    if (copy == NULL) {
        perror("malloc");
        exit(2);
    }
    memcpy(copy, bytes, n);
    reply_poison(r);
    st = reply_parse(copy, n, max_value, r);
    free(copy);
    return st;
}

/* One complete non-VALUE line: kind and lengths. */
static void
check_line(const char *bytes, size_t n, enum reply_kind kind)
{
    struct reply r;

    CHECK_EQ(parse_n(bytes, n, MAXV, &r), REPLY_OK_UNIT);
    CHECK_EQ(r.kind, kind);
    CHECK_EQ(r.len, n);
    CHECK_EQ(r.line_len, n);
    CHECK_EQ(r.data_len, 0);
    CHECK_EQ(r.key_len, 0);
}

/* One complete VALUE unit: every field, and that key/rest/data point where
 * the caller will slice them. */
static void
check_value(const char *bytes, size_t n, const char *key, const char *rest,
            const char *data, size_t data_len)
{
    struct reply r;

    CHECK_EQ(parse_n(bytes, n, MAXV, &r), REPLY_OK_UNIT);
    CHECK_EQ(r.kind, REPLY_VALUE);
    CHECK_EQ(r.len, n);
    CHECK_EQ(r.key_off, 6);
    CHECK_MEM(bytes + r.key_off, r.key_len, key, strlen(key));
    CHECK_EQ(r.rest_off, r.key_off + r.key_len);
    CHECK_MEM(bytes + r.rest_off, r.line_len - r.rest_off, rest, strlen(rest));
    CHECK_EQ(r.data_len, data_len);
    CHECK_MEM(bytes + r.line_len, r.data_len, data, data_len);
    CHECK_EQ(r.len, r.line_len + r.data_len + 2);
    /* rest_off..len rebuilds the unit behind "VALUE <otherkey>" */
    CHECK_EQ(r.len - r.rest_off, strlen(rest) + data_len + 2);
}

static void
check_bad(const char *bytes, size_t n, uint32_t max_value)
{
    struct reply r;

    CHECK_EQ(parse_n(bytes, n, max_value, &r), REPLY_BAD);
    CHECK(reply_untouched(&r));
}

/*
 * Every proper prefix of a complete unit is NEED_MORE and leaves *r alone
 * until the unit's line is in (reply_waits_for);
 * the whole unit, and the unit followed by more bytes, give the same result.
 * Failures are counted so a 2 KiB line costs one report, not 2048.
 */
static void
check_split(const char *bytes, size_t n, uint32_t max_value)
{
    struct reply whole, part, tail;
    size_t k, wrong = 0, first_wrong = 0;
    char *more;

    CHECK_EQ(parse_n(bytes, n, max_value, &whole), REPLY_OK_UNIT);
    CHECK_EQ(whole.len, n);
    for (k = 0; k < n; k++) {
        if (parse_n(bytes, k, max_value, &part) != REPLY_NEED_MORE ||
            !reply_waits_for(&part, &whole)) {
            if (wrong++ == 0)
                first_wrong = k;
        }
    }
    UNIT_REPORT(wrong == 0, "split: %zu prefixes not NEED_MORE, first at %zu",
                wrong, first_wrong);

    more = malloc(n + 8);
    memcpy(more, bytes, n);
    memcpy(more + n, "END\r\nVAL", 8);
    CHECK_EQ(parse_n(more, n + 8, max_value, &tail), REPLY_OK_UNIT);
    CHECK(reply_same(&whole, &tail));
    free(more);
}

/* A unit that is BAD once complete is never OK on the way there. */
static void
check_bad_split(const char *bytes, size_t n, uint32_t max_value)
{
    struct reply r;
    size_t k, wrong = 0;

    for (k = 0; k <= n; k++) {
        enum reply_status st = parse_n(bytes, k, max_value, &r);

        if (st == REPLY_OK_UNIT || (k == n && st != REPLY_BAD))
            wrong++;
    }
    UNIT_REPORT(wrong == 0, "bad split: %zu offsets wrong", wrong);
}

/* ---- vectors ---- */

struct vec {
    const char *bytes;
    size_t n;
    enum reply_kind kind;
};

/* Single-line replies, captured unless noted. */
static const struct vec lines[] = {
    { S("END\r\n"), REPLY_END },                            /* get nokey */
    { S("STORED\r\n"), REPLY_STORED },                      /* set */
    { S("NOT_STORED\r\n"), REPLY_NOT_STORED },              /* add existing */
    { S("EXISTS\r\n"), REPLY_EXISTS },                      /* cas stale */
    { S("NOT_FOUND\r\n"), REPLY_NOT_FOUND },                /* cas/delete/incr/touch miss */
    { S("DELETED\r\n"), REPLY_DELETED },
    { S("TOUCHED\r\n"), REPLY_TOUCHED },
    { S("OK\r\n"), REPLY_OK },                              /* verbosity 1, flush_all */
    { S("0\r\n"), REPLY_NUMBER },                           /* incr wrapped to 0 */
    { S("12\r\n"), REPLY_NUMBER },
    { S("18446744073709551615\r\n"), REPLY_NUMBER },        /* UINT64_MAX */
    { S("18446744073709551610\r\n"), REPLY_NUMBER },
    { S("VERSION 1.6.18\r\n"), REPLY_VERSION },
    { S("STAT pid 3450\r\n"), REPLY_STAT },
    { S("STAT libevent 2.1.12-stable\r\n"), REPLY_STAT },
    { S("ERROR\r\n"), REPLY_ERROR },                        /* unknown command */
    { S("ERROR unknown command\r\n"), REPLY_ERROR },        /* by hand: 1.6 form */
    { S("CLIENT_ERROR bad command line format\r\n"), REPLY_CLIENT_ERROR },
    { S("CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"),
      REPLY_CLIENT_ERROR },
    { S("CLIENT_ERROR bad data chunk\r\n"), REPLY_CLIENT_ERROR },
    { S("SERVER_ERROR object too large for cache\r\n"), REPLY_SERVER_ERROR },
    { S("SERVER_ERROR out of memory storing object\r\n"),   /* by hand */
      REPLY_SERVER_ERROR },
    /* meta */
    { S("HD\r\n"), REPLY_META_HD },                         /* ms, md, mg without v */
    { S("HD kfoo O5 c11\r\n"), REPLY_META_HD },             /* ms foo 2 k O5 c */
    { S("HD kAAEC b\r\n"), REPLY_META_HD },                 /* ms AAEC 2 b k */
    { S("EN\r\n"), REPLY_META_EN },                         /* mg miss */
    { S("EN knope O1\r\n"), REPLY_META_EN },                /* mg nope k O1 v */
    { S("NF\r\n"), REPLY_META_NF },                         /* md, ma miss */
    { S("NF kfoo O1\r\n"), REPLY_META_NF },                 /* ma foo k O1 */
    { S("NS\r\n"), REPLY_META_NS },                         /* ms ME on an existing key */
    { S("EX\r\n"), REPLY_META_EX },                         /* ms C1 stale */
    { S("EX c5\r\n"), REPLY_META_EX },                      /* by hand */
    { S("MN\r\n"), REPLY_META_MN },
    { S("ME foo exp=-1 la=0 cas=12 fetch=no cls=1 size=64\r\n"), REPLY_META_ME },
};

/* VALUE units, captured. */
static const struct {
    const char *bytes;
    size_t n;
    const char *key, *rest, *data;
    size_t data_len;
} values[] = {
    /* get foo */
    { S("VALUE foo 5 3\r\nbar\r\n"), "foo", " 5 3\r\n", "bar", 3 },
    /* gets foo: with cas */
    { S("VALUE foo 5 3 1\r\nbar\r\n"), "foo", " 5 3 1\r\n", "bar", 3 },
    /* data holding "\r\n" and a NUL */
    { S("VALUE crlf 0 6\r\na\r\nb\0c\r\n"), "crlf", " 0 6\r\n", "a\r\nb\0c", 6 },
    /* zero-length value, largest 32-bit flags */
    { S("VALUE empty 4294967295 0\r\n\r\n"), "empty", " 4294967295 0\r\n", "", 0 },
};

static void
test_lines(void)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(lines); i++) {
        check_line(lines[i].bytes, lines[i].n, lines[i].kind);
        check_split(lines[i].bytes, lines[i].n, MAXV);
    }
}

static void
test_values(void)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(values); i++) {
        check_value(values[i].bytes, values[i].n, values[i].key,
                    values[i].rest, values[i].data, values[i].data_len);
        check_split(values[i].bytes, values[i].n, MAXV);
    }

    /* By hand: largest cas, a long key, 64-bit flags (LARGE_CLIENT_FLAGS). */
    check_value(S("VALUE k 0 1 18446744073709551615\r\nx\r\n"), "k",
                " 0 1 18446744073709551615\r\n", "x", 1);
    check_value(S("VALUE k 18446744073709551615 1\r\nx\r\n"), "k",
                " 18446744073709551615 1\r\n", "x", 1);
    /* flags and cas are only checked, not read: 20 digits up to UINT64_MAX,
     * leading zeros included */
    check_value(S("VALUE k 00000000000000000005 1\r\nx\r\n"), "k",
                " 00000000000000000005 1\r\n", "x", 1);
    check_value(S("VALUE k 0 1 09999999999999999999\r\nx\r\n"), "k",
                " 0 1 09999999999999999999\r\n", "x", 1);
    check_value(S("VALUE k 18446744073709551614 1 1\r\nx\r\n"), "k",
                " 18446744073709551614 1 1\r\n", "x", 1);
    {
        char buf[KEY_MAX + 64], key[KEY_MAX + 1];
        int n;

        memset(key, 'k', KEY_MAX);
        key[KEY_MAX] = '\0';
        n = snprintf(buf, sizeof(buf), "VALUE %s 1 2 3\r\nab\r\n", key);
        check_value(buf, (size_t)n, key, " 1 2 3\r\n", "ab", 2);
        check_split(buf, (size_t)n, MAXV);
    }
}

/* Replies as one pipelined stream, captured: set, get of five keys (one
 * miss, one asked twice), add, a bad data chunk, set, incr, decr, a short
 * stats. */
static const char stream[] =
    "STORED\r\n"
    "VALUE foo 5 3\r\nbar\r\n"
    "VALUE empty 4294967295 0\r\n\r\n"
    "VALUE crlf 0 6\r\na\r\nb\0c\r\n"
    "VALUE foo 5 3\r\nbar\r\n"
    "END\r\n"
    "NOT_STORED\r\n"
    "CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    "STORED\r\n12\r\n0\r\n"
    "STAT pid 3450\r\nSTAT uptime 18\r\nSTAT version 1.6.18\r\nEND\r\n";

static const enum reply_kind stream_kinds[] = {
    REPLY_STORED, REPLY_VALUE, REPLY_VALUE, REPLY_VALUE, REPLY_VALUE,
    REPLY_END, REPLY_NOT_STORED, REPLY_CLIENT_ERROR, REPLY_ERROR,
    REPLY_STORED, REPLY_NUMBER, REPLY_NUMBER, REPLY_STAT, REPLY_STAT,
    REPLY_STAT, REPLY_END,
};

static void
test_stream(void)
{
    const size_t total = sizeof(stream) - 1;
    struct reply r;
    size_t off = 0, i = 0, chunk, have, wrong = 0;

    /* All bytes present: units come back to back and use up the stream. */
    while (off < total && i < ARRAY_SIZE(stream_kinds)) {
        if (parse_n(stream + off, total - off, MAXV, &r) != REPLY_OK_UNIT)
            break;
        CHECK_EQ(r.kind, stream_kinds[i]);
        off += r.len;
        i++;
    }
    CHECK_EQ(i, ARRAY_SIZE(stream_kinds));
    CHECK_EQ(off, total);
    CHECK_EQ(parse_n(stream + off, 0, MAXV, &r), REPLY_NEED_MORE);

    /* Bytes arriving in chunks of every size: the same units each time. */
    for (chunk = 1; chunk <= 32; chunk++) {
        off = 0;
        i = 0;
        have = 0;
        while (off < total) {
            enum reply_status st = parse_n(stream + off, have - off, MAXV, &r);

            if (st == REPLY_OK_UNIT) {
                if (i >= ARRAY_SIZE(stream_kinds) || r.kind != stream_kinds[i])
                    wrong++;
                off += r.len;
                i++;
            } else if (st == REPLY_NEED_MORE && have < total) {
                have = have + chunk < total ? have + chunk : total;
            } else {
                wrong++;
                break;
            }
        }
        if (i != ARRAY_SIZE(stream_kinds))
            wrong++;
    }
    UNIT_REPORT(wrong == 0, "chunked stream: %zu mismatches", wrong);
}

static void
test_bad(void)
{
    static const struct {
        const char *bytes;
        size_t n;
    } bad[] = {
        /* unknown or near-miss lines */
        { S("HELLO\r\n") },
        { S("stored\r\n") },
        { S("STORED \r\n") },
        { S("STOREDX\r\n") },
        { S(" STORED\r\n") },
        { S("ENDX\r\n") },
        { S("ERRORS\r\n") },
        { S("STATS\r\n") },
        { S("VERSIONS 1\r\n") },
        { S("CLIENT_ERRORx\r\n") },
        { S("SERVER_ERRORx\r\n") },
        { S("NOT_\r\n") },
        { S("MNO\r\n") },                       /* meta look-alikes */
        { S("HDD\r\n") },
        { S("\r\n") },
        { S("\n") },
        { S("STORED\n") },                      /* bare LF */
        { S("STOREDX\n") },                     /* ... even where the bytes */
        { S("ENDx\n") },                        /* before it form a word */
        { S("VALUE foo 5 3x\nbar\r\n") },
        { S("END\r\r\n") },
        { S("\0END\r\n") },
        /* numbers */
        { S("18446744073709551616\r\n") },      /* UINT64_MAX + 1 */
        { S("99999999999999999999\r\n") },
        { S("000000000000000000001\r\n") },     /* 21 digits */
        { S("12a\r\n") },
        { S("12 \r\n") },
        { S("1 2\r\n") },
        /* VALUE lines */
        { S("VALUE\r\n") },
        { S("VALUE \r\n") },
        { S("VALUE foo\r\n") },
        { S("VALUE foo \r\n") },
        { S("VALUE foo 5\r\n") },
        { S("VALUE foo 5 \r\n") },
        { S("VALUE  5 3\r\nbar\r\n") },         /* empty key */
        { S("VALUE foo  5 3\r\nbar\r\n") },     /* double space */
        { S("VALUE foo 5  3\r\nbar\r\n") },
        { S("VALUE foo 5 3 \r\nbar\r\n") },     /* trailing space */
        { S("VALUE foo 5 3 1 2\r\nbar\r\n") },  /* extra field */
        { S("VALUE foo x 3\r\nbar\r\n") },
        { S("VALUE foo 5 3x\r\nbar\r\n") },
        { S("VALUE foo 5 -3\r\nbar\r\n") },
        { S("VALUE foo 5 +3\r\nbar\r\n") },
        { S("VALUE foo 5 3 x\r\nbar\r\n") },
        { S("VALUE foo 18446744073709551616 3\r\nbar\r\n") },  /* flags */
        { S("VALUE foo 5 3 18446744073709551616\r\nbar\r\n") },/* cas */
        { S("VALUE foo 5 18446744073709551616\r\n") },         /* bytes */
        { S("VALUE foo 99999999999999999999 3\r\nbar\r\n") },
        { S("VALUE foo 18446744073709551625 3\r\nbar\r\n") },
        { S("VALUE foo 000000000000000000005 3\r\nbar\r\n") }, /* 21 digits */
        { S("VALUE foo 5 3 000000000000000000001\r\nbar\r\n") },
        { S("VALUE foo 5 3 18446744073709551620\r\nbar\r\n") },
        { S("VALUE foo 123456789x 3\r\nbar\r\n") },          /* after 8 digits */
        { S("VALUE foo 12345678\x80 3\r\nbar\r\n") },
        { S("VALUE fo\x01o 5 3\r\nbar\r\n") },  /* control byte in key */
        { S("VALUE fo\x7fo 5 3\r\nbar\r\n") },
        { S("VALUE foo\t5 3\r\nbar\r\n") },
        { S("VALUE foo 5 3\rx\r\nbar\r\n") },
        { S("VALUEfoo 5 3\r\nbar\r\n") },
        /* data block not followed by "\r\n" */
        { S("VALUE foo 5 3\r\nbarx\r\n") },     /* value longer than said */
        { S("VALUE foo 5 3\r\nba\r\n\r\n") },   /* shorter than said */
        { S("VALUE foo 5 3\r\nbar\n\r") },
        { S("VALUE foo 5 3\r\nbar\rx") },
        { S("VALUE foo 5 3\r\nbarx\n") },
        { S("VALUE foo 5 0\r\nEND\r\n") },
    };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(bad); i++) {
        check_bad(bad[i].bytes, bad[i].n, MAXV);
        check_bad_split(bad[i].bytes, bad[i].n, MAXV);
    }
}

/* A line may be REPLY_LINE_MAX bytes with its "\r\n", no more. */
static void
test_line_max(void)
{
    static char buf[REPLY_LINE_MAX + 16];
    struct reply r;

    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "STAT ", 5);

    /* no line end yet: wait up to the limit, then give up */
    CHECK_EQ(parse_n(buf, REPLY_LINE_MAX - 1, MAXV, &r), REPLY_NEED_MORE);
    CHECK_EQ(parse_n(buf, REPLY_LINE_MAX, MAXV, &r), REPLY_BAD);
    CHECK_EQ(parse_n(buf, REPLY_LINE_MAX + 16, MAXV, &r), REPLY_BAD);

    /* exactly REPLY_LINE_MAX with "\r\n": accepted, split included */
    memcpy(buf + REPLY_LINE_MAX - 2, "\r\n", 2);
    check_line(buf, REPLY_LINE_MAX, REPLY_STAT);
    check_split(buf, REPLY_LINE_MAX, MAXV);

    /* one byte longer: the "\r\n" falls outside the limit */
    memset(buf + REPLY_LINE_MAX - 2, 'x', 2);
    memcpy(buf + REPLY_LINE_MAX - 1, "\r\n", 2);
    CHECK_EQ(parse_n(buf, REPLY_LINE_MAX + 1, MAXV, &r), REPLY_BAD);
    CHECK(reply_untouched(&r));

    /* a number line with junk: the limit does not depend on the kind */
    memset(buf, '1', REPLY_LINE_MAX);
    CHECK_EQ(parse_n(buf, REPLY_LINE_MAX, MAXV, &r), REPLY_BAD);

    /* a VA line of flags (its own fast path): the same limit, an empty block */
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "VA 0 ", 5);
    memcpy(buf + REPLY_LINE_MAX - 2, "\r\n\r\n", 4);
    CHECK_EQ(parse_n(buf, REPLY_LINE_MAX + 2, MAXV, &r), REPLY_OK_UNIT);
    CHECK_EQ(r.kind, REPLY_META_VA);
    CHECK_EQ(r.line_len, REPLY_LINE_MAX);
    memset(buf + REPLY_LINE_MAX - 2, 'x', 2);
    memcpy(buf + REPLY_LINE_MAX - 1, "\r\n\r\n", 4);
    CHECK_EQ(parse_n(buf, REPLY_LINE_MAX + 3, MAXV, &r), REPLY_BAD);
    CHECK_EQ(parse_n(buf, REPLY_LINE_MAX - 1, MAXV, &r), REPLY_NEED_MORE);
}

/*
 * A VALUE line is read in one pass from the front when its numbers have at
 * most 19 digits; the rest (20 digits, a bare "\n", a line end past the
 * limit, a line not all here) is left to the general path. Around each of
 * those edges the answer must be the general path's.
 */
static void
test_value_one_pass(void)
{
    static char buf[REPLY_LINE_MAX + 64];
    struct reply r;
    size_t n, line;

    /* 19 and 20 digits in each number, valid both ways: the rest of the
     * line after "VALUE k" */
    static const char *const rests[] = {
        " 1234567890123456789 1\r\n", " 12345678901234567890 1\r\n",
        " 0 0000000000000000001\r\n", " 0 00000000000000000001\r\n",
        " 0 1 1234567890123456789\r\n", " 0 1 12345678901234567890\r\n",
    };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(rests); i++) {
        n = (size_t)snprintf(buf, sizeof(buf), "VALUE k%sx\r\n", rests[i]);
        check_value(buf, n, "k", rests[i], "x", 1);
    }
    /* and the bad forms around them */
    check_bad(S("VALUE k 0 1\nx\r\n"), MAXV);                  /* bare LF */
    check_bad(S("VALUE k 0 1 2\nx\r\n"), MAXV);
    check_bad(S("VALUE k 0 1\r\r\nx\r\n"), MAXV);
    check_bad(S("VALUE k 0 1\rx\r\nx\r\n"), MAXV);
    check_bad(S("VALUE k 0 1 \r\nx\r\n"), MAXV);               /* empty cas */
    check_bad(S("VALUE k 0 1 2 \r\nx\r\n"), MAXV);
    check_bad(S("VALUE k 0 9999999999999999999\r\nx\r\n"), MAXV);  /* over max */
    check_bad_split(S("VALUE k 0 1\nx\r\n"), MAXV);
    /* a cut after the "\r": wait, the "\n" may come */
    CHECK_EQ(parse_n(S("VALUE k 0 1\r"), MAXV, &r), REPLY_NEED_MORE);
    CHECK_EQ(parse_n(S("VALUE k 0 1 5\r"), MAXV, &r), REPLY_NEED_MORE);
    /* the line whole, the block not: wait for the whole unit's length */
    CHECK_EQ(parse_n(S("VALUE k 0 1\r\n"), MAXV, &r), REPLY_NEED_MORE);
    CHECK_EQ(r.len, 16);
    CHECK_EQ(parse_n(S("VALUE k 0 1 7\r\nx\r"), MAXV, &r), REPLY_NEED_MORE);
    CHECK_EQ(r.len, 18);

    /* a long key puts the line end at REPLY_LINE_MAX - 1 and one past:
     * accepted (any split too), then refused */
    for (line = REPLY_LINE_MAX - 1; line <= REPLY_LINE_MAX + 1; line++) {
        size_t key_len = line - strlen("VALUE  0 2\r\n");

        memcpy(buf, "VALUE ", 6);
        memset(buf + 6, 'k', key_len);
        memcpy(buf + 6 + key_len, " 0 2\r\nab\r\n", 10);
        n = line + 4;
        if (line <= REPLY_LINE_MAX) {
            CHECK_EQ(parse_n(buf, n, MAXV, &r), REPLY_OK_UNIT);
            CHECK_EQ(r.line_len, line);
            CHECK_EQ(r.key_len, key_len);
            CHECK_EQ(r.rest_off, 6 + key_len);
            check_split(buf, n, MAXV);
        } else {
            check_bad(buf, n, MAXV);
            check_bad_split(buf, n, MAXV);
        }
    }
}

/*
 * reply_parse_expect gives reply_parse's result for every unit and every
 * expected key, and says key_expected only for a VALUE whose key is the
 * expected one. Each unit is also cut at every length: the same there.
 */
static void
test_expect(void)
{
    static const struct {
        const char *bytes;
        size_t n;
    } units[] = {
        { S("VALUE k 0 1\r\nx\r\n") },
        { S("VALUE kk 0 1\r\nx\r\n") },
        { S("VALUE k 0 1 5\r\nx\r\n") },
        { S("VALUE k 12345678901234567890 1\r\nx\r\n") },  /* general path */
        { S("VALUE bench:1234 1000079190 100\r\n") },        /* block not in */
        { S("VALUE k\r\n") },
        { S("VALUE k \r\n") },
        { S("VALUE k 0\r\n") },
        { S("VALUE k  0 1\r\nx\r\n") },
        { S("VALUE k 0 1\nx\r\n") },
        { S("VALUE k\x01 0 1\r\nx\r\n") },
        { S("VALUE k 0 2\r\nx\r\n") },
        { S("END\r\n") },
        { S("STORED\r\n") },
        { S("SERVER_ERROR out of memory\r\n") },
    };
    /* expected keys hold key bytes only (reply.h) */
    static const char *const keys[] = { "k", "kk", "k:", "bench:1234", "kkk", "x" };
    size_t u, k, cut, wrong = 0, flagged = 0;

    for (u = 0; u < ARRAY_SIZE(units); u++) {
        for (k = 0; k < ARRAY_SIZE(keys); k++) {
            for (cut = 0; cut <= units[u].n; cut++) {
                struct reply a, b;
                enum reply_status sa, sb;
                char *copy = malloc(cut ? cut : 1);

                memcpy(copy, units[u].bytes, cut);
                reply_poison(&a);
                reply_poison(&b);
                sa = reply_parse(copy, cut, MAXV, &a);
                sb = reply_parse_expect(copy, cut, MAXV, keys[k],
                                        (uint32_t)strlen(keys[k]), &b);
                if (sa != sb || (sa == REPLY_OK_UNIT ? !reply_same(&a, &b) : a.len != b.len))
                    wrong++;
                if (sa == REPLY_OK_UNIT && a.kind == REPLY_VALUE) {
                    int want = a.key_len == strlen(keys[k]) &&
                               memcmp(units[u].bytes + a.key_off, keys[k], a.key_len) == 0;

                    if (a.key_expected || (b.key_expected && !want))
                        wrong++;
                    flagged += b.key_expected;
                }
                free(copy);
            }
        }
    }
    UNIT_REPORT(wrong == 0, "reply_parse_expect: %zu results differ from reply_parse", wrong);
    /* "VALUE k", "VALUE kk", "VALUE k ... 5" with their own keys, cut or not
     * after the unit: the 20-digit line goes the general way, unflagged */
    CHECK_EQ(flagged, 3);
}

static void
test_max_value(void)
{
    static const char v[] = "VALUE k 0 5\r\nabcde\r\n";
    struct reply r;

    /* <bytes> == max_value is fine, one over is not */
    CHECK_EQ(parse_n(S(v), 5, &r), REPLY_OK_UNIT);
    CHECK_EQ(r.data_len, 5);
    check_split(S(v), 5);
    CHECK_EQ(parse_n(S(v), 4, &r), REPLY_BAD);
    CHECK_EQ(parse_n(S(v), 0, &r), REPLY_BAD);

    /* refused as soon as the line is in, before any data arrives */
    CHECK_EQ(parse_n(S("VALUE k 0 5\r\n"), 4, &r), REPLY_BAD);
    CHECK_EQ(parse_n(S("VALUE k 0 5\r\n"), 5, &r), REPLY_NEED_MORE);
    CHECK_EQ(parse_n(S("VALUE k 0 1048577\r\n"), MAXV, &r), REPLY_BAD);
    CHECK_EQ(parse_n(S("VALUE k 0 1048576\r\n"), MAXV, &r), REPLY_NEED_MORE);
    CHECK_EQ(r.len, 19 + 1048576 + 2);     /* the whole unit: a reader sizes its buffer */
    CHECK_EQ(parse_n(S("VA 3 f\r\nab"), MAXV, &r), REPLY_NEED_MORE);
    CHECK_EQ(r.len, 8 + 3 + 2);

    /* max_value 0 still lets an empty value through */
    CHECK_EQ(parse_n(S("VALUE k 0 0\r\n\r\n"), 0, &r), REPLY_OK_UNIT);
    CHECK_EQ(r.len, 15);
    CHECK_EQ(parse_n(S("VALUE k 0 1\r\nx\r\n"), 0, &r), REPLY_BAD);

    /* the unit length must fit the 32-bit len even with no value limit */
    /* (22-byte line + 4294967271 + 2 is exactly UINT32_MAX) */
    CHECK_EQ(parse_n(S("VALUE k 0 4294967271\r\n"), UINT32_MAX, &r),
             REPLY_NEED_MORE);
    CHECK_EQ(parse_n(S("VALUE k 0 4294967272\r\n"), UINT32_MAX, &r),
             REPLY_BAD);
    CHECK_EQ(parse_n(S("VALUE k 0 4294967295\r\n"), UINT32_MAX, &r),
             REPLY_BAD);
    CHECK_EQ(parse_n(S("VALUE k 0 4294967296\r\n"), UINT32_MAX, &r),
             REPLY_BAD);
}

/* Meta VA units: the whole unit is the line, the block and its "\r\n". */
static void
test_meta(void)
{
    static const struct {
        const char *bytes;
        size_t n, line_len, data_len;
    } va[] = {
        { S("VA 2\r\nhi\r\n"), 6, 2 },                                /* captured */
        { S("VA 2 kfoo c17 f1 s2 O123\r\nhi\r\n"), 26, 2 },            /* captured */
        { S("VA 1 t-1 c5 kcnt O9\r\n0\r\n"), 21, 1 },                 /* ma ... v */
        { S("VA 0\r\n\r\n"), 6, 0 },
        { S("VA 4\r\na\r\nb\r\n"), 6, 4 },                            /* data with CRLF */
        /* the length read a word at a time: seven, eight and nineteen digits,
         * leading zeros, a line that ends right after it */
        { S("VA 0000002 f1\r\nhi\r\n"), 15, 2 },
        { S("VA 00000002 c9\r\nhi\r\n"), 16, 2 },
        { S("VA 0000000000000000002\r\nhi\r\n"), 24, 2 },
        { S("VA 00000010\r\n0123456789\r\n"), 13, 10 },
        { S("VA 2 \r\nhi\r\n"), 7, 2 },                              /* a space, no flag */
        { S("VA 2 f\r1\r\nhi\r\n"), 10, 2 },                          /* a lone '\r' in the flags */
    };
    struct reply r;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(va); i++) {
        CHECK_EQ(parse_n(va[i].bytes, va[i].n, MAXV, &r), REPLY_OK_UNIT);
        CHECK_EQ(r.kind, REPLY_META_VA);
        CHECK_EQ(r.len, va[i].n);
        CHECK_EQ(r.line_len, va[i].line_len);
        CHECK_EQ(r.data_len, va[i].data_len);
        check_split(va[i].bytes, va[i].n, MAXV);
    }
    CHECK(REPLY_IS_META(REPLY_META_HD) && REPLY_IS_META(REPLY_META_ME));
    CHECK(!REPLY_IS_META(REPLY_END) && !REPLY_IS_META(REPLY_SERVER_ERROR));

    /* what looks like a meta code but is not one */
    check_bad(S("VA\r\n"), MAXV);                 /* no length */
    check_bad(S("VA x\r\nhi\r\n"), MAXV);
    check_bad(S("VA 2x\r\nhi\r\n"), MAXV);
    check_bad(S("VA 2\r\nhix\r\n"), MAXV);      /* block longer than said */
    check_bad_split(S("VA 2\r\nhix\r\n"), MAXV);
    check_bad(S("VA 9\r\n123456789\r\n"), 8);    /* over max_value */
    check_bad(S("VA  2\r\nhi\r\n"), MAXV);         /* two spaces before the length */
    check_bad(S("VA 2\nhi\r\n"), MAXV);             /* a bare '\n' ends the line */
    check_bad(S("VA 2 f1\nhi\r\n"), MAXV);
    check_bad(S("VA 2\rhi\r\n"), MAXV);             /* '\r' right after the length */
    check_bad(S("VA 99999999999999999999\r\n"), MAXV);   /* 20 digits, over 64 bits */
    check_bad(S("VA 18446744073709551615\r\n"), UINT32_MAX);  /* 20 digits, over max_value */
    check_bad_split(S("VA 2 f1\nhi\r\n"), MAXV);
    check_bad(S("HDX\r\n"), MAXV);
    check_bad(S("ENX\r\n"), MAXV);
    check_bad(S("MNX\r\n"), MAXV);
    check_bad(S("ME\r\n"), MAXV);                 /* ME without a key */
    check_bad(S("NX\r\n"), MAXV);
    /* END and EXISTS stay themselves */
    check_line(S("END\r\n"), REPLY_END);
    check_line(S("EXISTS\r\n"), REPLY_EXISTS);
}

static void
test_kind_names(void)
{
    static const char *const want[REPLY_KIND_COUNT] = {
        [REPLY_VALUE] = "VALUE",            [REPLY_END] = "END",
        [REPLY_STORED] = "STORED",          [REPLY_NOT_STORED] = "NOT_STORED",
        [REPLY_EXISTS] = "EXISTS",          [REPLY_NOT_FOUND] = "NOT_FOUND",
        [REPLY_DELETED] = "DELETED",        [REPLY_TOUCHED] = "TOUCHED",
        [REPLY_OK] = "OK",                  [REPLY_NUMBER] = "NUMBER",
        [REPLY_VERSION] = "VERSION",        [REPLY_STAT] = "STAT",
        [REPLY_ERROR] = "ERROR",            [REPLY_CLIENT_ERROR] = "CLIENT_ERROR",
        [REPLY_SERVER_ERROR] = "SERVER_ERROR",
        [REPLY_META_HD] = "HD",             [REPLY_META_VA] = "VA",
        [REPLY_META_EN] = "EN",             [REPLY_META_NF] = "NF",
        [REPLY_META_NS] = "NS",             [REPLY_META_EX] = "EX",
        [REPLY_META_MN] = "MN",             [REPLY_META_ME] = "ME",
    };
    int k;

    for (k = 0; k < REPLY_KIND_COUNT; k++)
        CHECK_STR(reply_kind_name((enum reply_kind)k), want[k]);
    CHECK_STR(reply_kind_name(REPLY_KIND_COUNT), "UNKNOWN");
    CHECK_STR(reply_kind_name((enum reply_kind)-1), "UNKNOWN");
}

int
main(void)
{
    test_lines();
    test_values();
    test_stream();
    test_bad();
    test_line_max();
    test_max_value();
    test_value_one_pass();
    test_expect();
    test_meta();
    test_kind_names();
    return UNIT_DONE();
}
