/*
 * reply.c: memcached backend reply parser (pure: no I/O, no logging, no
 * allocation).
 *
 * reply_parse() cuts one reply unit off the front of what a server sent and
 * classifies it. A unit is one line ending in "\r\n", plus for VALUE (and the
 * meta VA) the data block of exactly <bytes> bytes and its own "\r\n".
 *
 * Invariant: REPLY_OK_UNIT is returned only when every byte of the unit is in
 * buf[0..len), and the result depends only on those bytes (never on what
 * follows), so feeding the same stream in any split gives the same units.
 * Anything a memcached server would not send is REPLY_BAD, because after it
 * the reply stream can no longer be matched to requests. *r is written only
 * for REPLY_OK_UNIT.
 */
#include "reply.h"

#include <string.h>

#include "luagent.h"
#include "scan.h"

#define LIT(s)          (s), (sizeof(s) - 1)
#define DIGITS_MAX      20      /* UINT64_MAX has 20 decimal digits */

/* The line content (without "\r\n") is exactly the word w. */
static int
line_is(const char *line, size_t n, const char *w, size_t wn)
{
    return n == wn && memcmp(line, w, wn) == 0;
}

/*
 * The line is the word w alone or w, a space and free text. The space is
 * required so that e.g. "ERRORS" or "STATS" is not taken for a known reply.
 */
static int
line_starts(const char *line, size_t n, const char *w, size_t wn)
{
    return n >= wn && memcmp(line, w, wn) == 0 && (n == wn || line[wn] == ' ');
}

/*
 * Parse a decimal number at *p (before end) into *out, advancing *p past the
 * digits. 1..20 digits fitting 64
 * bits; -1 on no digit, too many digits or overflow. 19 digits always fit,
 * so only a 20th is tested, before its multiply, which keeps the arithmetic
 * in range.
 */
static int
parse_num(const char **p, const char *end, uint64_t *out)
{
    uint64_t v;
    const char *s = digits_read(*p, end, DIGITS_MAX - 1, &v);

    if (s == *p)
        return -1;
    if (s < end && scan_is_digit(*s)) {
        unsigned d = (unsigned)(*s - '0');

        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
        if (s < end && scan_is_digit(*s))
            return -1;
    }
    *p = s;
    *out = v;
    return 0;
}

/*
 * The same test as parse_num for a number whose value is not needed: 1..20
 * digits, and 20 only up to UINT64_MAX (same length, so the text order is
 * the numeric order).
 */
static int
skip_num(const char **p, const char *end)
{
    const char *s = digit_run(*p, end);
    size_t n = (size_t)(s - *p);

    if (n == 0 || n > DIGITS_MAX ||
        (n == DIGITS_MAX && memcmp(*p, "18446744073709551615", DIGITS_MAX) > 0))
        return -1;
    *p = s;
    return 0;
}

/*
 * The data block of a VALUE or VA unit: <bytes> bytes and "\r\n" after the
 * line. Decided on the line alone, so an oversize value is refused before
 * any of its data has to be buffered; bytes <= max_value also keeps the sum
 * from overflowing, and the second test keeps len in 32 bits.
 */
static enum reply_status
take_block(const char *buf, size_t len, size_t line_len, uint64_t bytes,
           uint32_t max_value, struct reply *r)
{
    uint64_t total;

    if (bytes > max_value)
        return REPLY_BAD;
    total = line_len + bytes + 2;
    if (total > UINT32_MAX)
        return REPLY_BAD;
    if (len < total) {
        r->len = (uint32_t)total;   /* how much to wait for (reply.h) */
        r->line_len = (uint32_t)line_len;
        r->data_len = (uint32_t)bytes;
        return REPLY_NEED_MORE;
    }
    if (buf[total - 2] != '\r' || buf[total - 1] != '\n')
        return REPLY_BAD;
    r->len = (uint32_t)total;
    r->line_len = (uint32_t)line_len;
    r->data_len = (uint32_t)bytes;
    return REPLY_OK_UNIT;
}

/*
 * "VALUE <key> <flags> <bytes> [<cas>]": line[0..n) is the content without
 * "\r\n", line_len includes it. Fields are separated by exactly one space and
 * nothing trails, as memcached writes them; anything looser means we are not
 * reading what we think we are.
 */
static enum reply_status
parse_value(const char *buf, size_t len, size_t n, size_t line_len,
            uint32_t max_value, struct reply *r)
{
    const char *end = buf + n;
    const char *key = buf + sizeof("VALUE ") - 1;
    const char *p = key;
    uint64_t bytes;
    size_t key_len;
    enum reply_status st;

    /* A control byte means garbage: the request parser never lets a key
     * holding one reach a server. */
    p = key_run(key, end);
    key_len = (size_t)(p - key);
    if (key_len == 0 || p == end || *p != ' ')
        return REPLY_BAD;
    p++;

    /* Flags are 32 bits by default, but memcached built with
     * LARGE_CLIENT_FLAGS sends 64: accept both, the proxy only copies them. */
    if (skip_num(&p, end) < 0 || p == end || *p != ' ')
        return REPLY_BAD;
    p++;
    if (parse_num(&p, end, &bytes) < 0)
        return REPLY_BAD;
    if (p < end) {
        if (*p != ' ')
            return REPLY_BAD;
        p++;
        if (skip_num(&p, end) < 0 || p != end)
            return REPLY_BAD;
    }

    st = take_block(buf, len, line_len, bytes, max_value, r);
    if (st == REPLY_BAD)
        return st;
    r->kind = REPLY_VALUE;
    r->key_off = (uint32_t)(key - buf);
    r->key_len = (uint32_t)key_len;
    r->rest_off = r->key_off + r->key_len;
    r->key_expected = false;
    return st;
}

/*
 * "VALUE <key> <flags> <bytes> [<cas>]\r\n" the way a server writes nearly
 * every one of them: numbers of up to 19 digits (which always fit 64 bits).
 * Read in one pass from the front, with no search for the line's end first:
 * every byte a key, a number or a single space may be is not '\n', so the
 * "\r\n" met right after the last number ends the line that search would
 * have found, within the first REPLY_LINE_MAX bytes. Returns what
 * parse_value would return for the line, or -1 to leave the unit to the
 * general path (a longer number, any other byte, or a line not all here).
 */
static int
fast_value(const char *buf, size_t len, uint32_t max_value, const char *want,
           uint32_t want_len, struct reply *r)
{
    const char *end = buf + (len < REPLY_LINE_MAX ? len : REPLY_LINE_MAX);
    const char *key = buf + sizeof("VALUE ") - 1, *key_end, *p, *num;
    uint64_t bytes;
    size_t line_len;
    bool expected;
    enum reply_status st;

    /* The expected key holds key bytes only, so where it matches and a
     * space follows, key_run would stop at that space too. */
    expected = want_len > 0 && (size_t)(end - key) > want_len && key[want_len] == ' '
               && scan_same(key, want, want_len);
    key_end = expected ? key + want_len : key_run(key, end);
    if (key_end == key || key_end == end || *key_end != ' ')
        return -1;
    num = p = key_end + 1;
    p = digit_run(p, end);
    if (p == num || p - num > DIGITS_MAX - 1 || p == end || *p != ' ')
        return -1;
    num = ++p;
    p = digits_read_word(p, end, DIGITS_MAX - 1, &bytes);
    if (p == num || p == end)
        return -1;
    if (*p == ' ') {            /* gets: the cas unique */
        num = ++p;
        p = digit_run(p, end);
        if (p == num || p - num > DIGITS_MAX - 1)
            return -1;
    }
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
        return -1;
    line_len = (size_t)(p + 2 - buf);
    st = take_block(buf, len, line_len, bytes, max_value, r);
    if (st == REPLY_BAD)
        return st;
    r->kind = REPLY_VALUE;
    r->key_off = (uint32_t)(key - buf);
    r->key_len = (uint32_t)(key_end - key);
    r->rest_off = (uint32_t)(key_end - buf);
    r->key_expected = expected;
    return st;
}

/* A VA unit whose line (line_len bytes) says <bytes>: its block, then the reply. */
static enum reply_status
meta_value_unit(const char *buf, size_t len, size_t line_len, uint64_t bytes,
                uint32_t max_value, struct reply *r)
{
    enum reply_status st = take_block(buf, len, line_len, bytes, max_value, r);

    if (st == REPLY_BAD)
        return st;
    r->kind = REPLY_META_VA;
    r->key_off = r->key_len = r->rest_off = 0;
    r->key_expected = false;
    return st;
}

/*
 * "VA <bytes> [<flags>*]" + data block: the meta answer with a value. The
 * flags are passed on as the server wrote them.
 */
static enum reply_status
parse_meta_value(const char *buf, size_t len, size_t n, size_t line_len,
                 uint32_t max_value, struct reply *r)
{
    const char *end = buf + n, *p = buf + 3;
    uint64_t bytes;

    if (parse_num(&p, end, &bytes) < 0 || (p < end && *p != ' '))
        return REPLY_BAD;
    return meta_value_unit(buf, len, line_len, bytes, max_value, r);
}

/* Classify a complete line that is not VALUE; -1 if it is no reply at all. */
static int
line_kind(const char *line, size_t n)
{
    const char *p;
    uint64_t v;

    switch (line[0]) {
    case 'H':
        if (line_starts(line, n, LIT("HD")))
            return REPLY_META_HD;
        break;
    case 'M':
        if (line_is(line, n, LIT("MN")))
            return REPLY_META_MN;
        /* "ME <key> ...": the key is required */
        if (n > 3 && line_starts(line, n, LIT("ME")))
            return REPLY_META_ME;
        break;
    case 'E':
        /* END first: it closes every retrieval reply */
        if (line_is(line, n, LIT("END")))
            return REPLY_END;
        if (line_is(line, n, LIT("EXISTS")))
            return REPLY_EXISTS;
        if (line_starts(line, n, LIT("EN")))
            return REPLY_META_EN;
        if (line_starts(line, n, LIT("EX")))
            return REPLY_META_EX;
        /* memcached 1.6 sometimes adds a reason after ERROR */
        if (line_starts(line, n, LIT("ERROR")))
            return REPLY_ERROR;
        break;
    case 'S':
        if (line_is(line, n, LIT("STORED")))
            return REPLY_STORED;
        if (line_starts(line, n, LIT("STAT")))
            return REPLY_STAT;
        if (line_starts(line, n, LIT("SERVER_ERROR")))
            return REPLY_SERVER_ERROR;
        break;
    case 'N':
        if (line_starts(line, n, LIT("NF")))
            return REPLY_META_NF;
        if (line_starts(line, n, LIT("NS")))
            return REPLY_META_NS;
        if (line_is(line, n, LIT("NOT_FOUND")))
            return REPLY_NOT_FOUND;
        if (line_is(line, n, LIT("NOT_STORED")))
            return REPLY_NOT_STORED;
        break;
    case 'D':
        if (line_is(line, n, LIT("DELETED")))
            return REPLY_DELETED;
        break;
    case 'T':
        if (line_is(line, n, LIT("TOUCHED")))
            return REPLY_TOUCHED;
        break;
    case 'O':
        if (line_is(line, n, LIT("OK")))
            return REPLY_OK;
        break;
    case 'V':
        if (line_starts(line, n, LIT("VERSION")))
            return REPLY_VERSION;
        break;
    case 'C':
        if (line_starts(line, n, LIT("CLIENT_ERROR")))
            return REPLY_CLIENT_ERROR;
        break;
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        /* incr/decr: a 64-bit unsigned value and nothing else */
        p = line;
        if (parse_num(&p, line + n, &v) == 0 && p == line + n)
            return REPLY_NUMBER;
        break;
    }
    return -1;
}

/* A unit of one line and no data block. */
static enum reply_status
line_unit(enum reply_kind kind, size_t line_len, struct reply *r)
{
    r->kind = kind;
    r->len = (uint32_t)line_len;
    r->line_len = (uint32_t)line_len;
    r->key_off = 0;
    r->key_len = 0;
    r->rest_off = 0;
    r->data_len = 0;
    r->key_expected = false;
    return REPLY_OK_UNIT;
}

enum reply_status
reply_parse(const char *buf, size_t len, uint32_t max_value, struct reply *r)
{
    return reply_parse_expect(buf, len, max_value, NULL, 0, r);
}

/*
 * Any unit, the line's end found first. Kept out of line, so that the
 * common units above do not pay for the registers this one needs.
 */
static enum reply_status __attribute__((noinline))
parse_unit(const char *buf, size_t len, uint32_t max_value, struct reply *r)
{
    size_t scan = len < REPLY_LINE_MAX ? len : REPLY_LINE_MAX;
    const char *nl;
    size_t n, line_len;
    int kind;

    nl = memchr(buf, '\n', scan);
    if (nl == NULL)
        return len < REPLY_LINE_MAX ? REPLY_NEED_MORE : REPLY_BAD;

    /* n: content length without "\r\n"; a bare "\n" is not memcached. */
    line_len = (size_t)(nl - buf) + 1;
    if (line_len < 2 || nl[-1] != '\r')
        return REPLY_BAD;
    n = line_len - 2;
    if (n == 0)
        return REPLY_BAD;

    if (buf[0] == 'V' && n >= 6 && memcmp(buf, "VALUE ", 6) == 0)
        return parse_value(buf, len, n, line_len, max_value, r);
    if (buf[0] == 'V' && n >= 4 && memcmp(buf, "VA ", 3) == 0)
        return parse_meta_value(buf, len, n, line_len, max_value, r);

    kind = line_kind(buf, n);
    if (kind < 0)
        return REPLY_BAD;
    return line_unit((enum reply_kind)kind, line_len, r);
}

/*
 * "VA <bytes>[ <flags>]\r\n" + data block: the meta reply to nearly every
 * binary get, without parse_unit's general dispatch. The line's end is the
 * one parse_unit finds (the first '\n' within REPLY_LINE_MAX bytes, a '\r'
 * before it) and the length is read a word at a time. Returns what
 * parse_unit would return, or -1 to leave the unit to it (a line not all
 * here, a 20-digit length, anything else after the digits).
 */
static int
fast_meta_value(const char *buf, size_t len, uint32_t max_value, struct reply *r)
{
    const char *nl = memchr(buf, '\n', len < REPLY_LINE_MAX ? len : REPLY_LINE_MAX);
    const char *num = buf + 3, *end, *p;
    uint64_t bytes;

    if (nl == NULL || nl - buf < 5 || nl[-1] != '\r')
        return -1;
    end = nl - 1;
    p = digits_read_word(num, end, DIGITS_MAX - 1, &bytes);
    if (p == num || (p < end && *p != ' '))
        return -1;
    return (int)meta_value_unit(buf, len, (size_t)(nl + 1 - buf), bytes, max_value, r);
}

enum reply_status
reply_parse_expect(const char *buf, size_t len, uint32_t max_value, const char *key,
                   uint32_t klen, struct reply *r)
{
    int st;

    /* The replies to nearly every get and set, known without a scan */
    if (len >= 5 && memcmp(buf, "END\r\n", 5) == 0)
        return line_unit(REPLY_END, 5, r);
    if (len >= 8 && memcmp(buf, "STORED\r\n", 8) == 0)
        return line_unit(REPLY_STORED, 8, r);
    if (len >= 6 && memcmp(buf, "VALUE ", 6) == 0
        && (st = fast_value(buf, len, max_value, key, klen, r)) >= 0)
        return (enum reply_status)st;
    if (len >= 6 && memcmp(buf, "VA ", 3) == 0
        && (st = fast_meta_value(buf, len, max_value, r)) >= 0)
        return (enum reply_status)st;
    return parse_unit(buf, len, max_value, r);
}

static const char *const kind_names[REPLY_KIND_COUNT] = {
    [REPLY_VALUE]        = "VALUE",
    [REPLY_END]          = "END",
    [REPLY_STORED]       = "STORED",
    [REPLY_NOT_STORED]   = "NOT_STORED",
    [REPLY_EXISTS]       = "EXISTS",
    [REPLY_NOT_FOUND]    = "NOT_FOUND",
    [REPLY_DELETED]      = "DELETED",
    [REPLY_TOUCHED]      = "TOUCHED",
    [REPLY_OK]           = "OK",
    [REPLY_NUMBER]       = "NUMBER",
    [REPLY_VERSION]      = "VERSION",
    [REPLY_STAT]         = "STAT",
    [REPLY_ERROR]        = "ERROR",
    [REPLY_CLIENT_ERROR] = "CLIENT_ERROR",
    [REPLY_SERVER_ERROR] = "SERVER_ERROR",
    [REPLY_META_HD]      = "HD",
    [REPLY_META_VA]      = "VA",
    [REPLY_META_EN]      = "EN",
    [REPLY_META_NF]      = "NF",
    [REPLY_META_NS]      = "NS",
    [REPLY_META_EX]      = "EX",
    [REPLY_META_MN]      = "MN",
    [REPLY_META_ME]      = "ME",
};

const char *
reply_kind_name(enum reply_kind kind)
{
    /* kind may come from a cast or a corrupted struct: never index blindly */
    if ((unsigned)kind >= REPLY_KIND_COUNT || kind_names[kind] == NULL)
        return "UNKNOWN";
    return kind_names[kind];
}
