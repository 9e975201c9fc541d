/*
 * proto.c: memcached text-protocol request parser (pure: no I/O, no logging).
 *
 * One request line is parsed in three steps: find its end (memchr, bounded by
 * LINE_MAX_PLAIN, or LINE_MAX_GET once the line is known to be a retrieval),
 * split it into space-separated tokens in a single pass that also notes
 * whether any byte could not be part of a key (so that the key checks of a
 * clean line cost nothing), then check the tokens against the command's row
 * in cmd_table (name, class, token counts, shape). Every reply text and every "is the data block swallowed" decision
 * was recorded from memcached 1.6.18 itself; where we differ on purpose the
 * code says so.
 *
 * Invariants: nothing is copied or allocated, all positions are offsets into
 * the caller's buffer; a result never depends on how the bytes were split
 * across reads (limits look only at the first LINE_MAX_* bytes); whenever the
 * length of a data block is known and the line is rejected, the caller is
 * told whether memcached would throw the block away (swallow) or read it as
 * the next command; every key accepted is one a server's VALUE line can
 * carry back (key_byte_ok), so the reply parser never meets it as garbage.
 */
#include "proto.h"

#include <stdint.h>
#include <string.h>

#include "base64.h"
#include "luagent.h"
#include "scan.h"

/* Error replies, byte for byte as memcached 1.6.18 sends them. */
#define MSG_ERROR       "ERROR"
#define MSG_FORMAT      "CLIENT_ERROR bad command line format"
#define MSG_EXPTIME     "CLIENT_ERROR invalid exptime argument"
#define MSG_DELTA       "CLIENT_ERROR invalid numeric delta argument"
#define MSG_DELETE      "CLIENT_ERROR bad command line format.  " \
                        "Usage: delete <key> [noreply]"
#define MSG_TOO_LARGE   "SERVER_ERROR object too large for cache"
#define MSG_TOO_LONG    "CLIENT_ERROR line too long"    /* ours: see below */
/* Meta commands (memcached 1.6.18's own words, two spellings included) */
#define MSG_DUP_FLAG    "CLIENT_ERROR duplicate flag"
#define MSG_BAD_FLAG    "CLIENT_ERROR invalid flag"
#define MSG_BAD_FLAGS   "CLIENT_ERROR invalid or duplicate flag"
#define MSG_DECODE      "CLIENT_ERROR error decoding key"
#define MSG_BAD_TOKEN   "CLIENT_ERROR bad token in command line format"
#define MSG_M_LENGTH    "CLIENT_ERROR incorrect length for M token"
#define MSG_INITIAL     "CLIENT_ERROR invalid numeric initial value"
#define MSG_META_DELTA  "CLIENT_ERROR invalid numeric delta value"
#define MSG_MG_TOO_MANY "CLIENT_ERROR options flags are too long"
#define MSG_TOO_MANY    "CLIENT_ERROR options flags too long"

/* memcached refuses a meta line of this many tokens or more. */
#define META_TOKENS_MAX 20

/*
 * memcached's tokenizer stops after 23 tokens and keeps the rest of the line
 * as one piece; only its "HTTP/" check can see the difference, and it looks
 * at the 23rd token. Fixed-shape commands need at most 7.
 */
#define TOK_KEEP        23

/* Largest <bytes> memcached accepts before "bad command line format". */
#define DATA_LEN_MAX    (INT32_MAX - 2)

/* How the tokens after the command are checked (one function each). */
enum shape {
    SHAPE_KEYS,         /* get gets: <key>+ */
    SHAPE_TIME_KEYS,    /* gat gats: <exptime> <key>* */
    SHAPE_STORE,        /* <key> <flags> <exptime> <bytes> [noreply] */
    SHAPE_CAS,          /* <key> <flags> <exptime> <bytes> <cas> [noreply] */
    SHAPE_DELETE,       /* <key> [0] [noreply] */
    SHAPE_ARITH,        /* <key> <delta> [noreply] */
    SHAPE_TOUCH,        /* <key> <exptime> [noreply] */
    SHAPE_FLUSH,        /* [delay] [noreply] */
    SHAPE_VERBOSITY,    /* <level> [noreply] */
    SHAPE_STATS,        /* [args...], passed on as written */
    SHAPE_META,         /* mg md ma: <key> <flag>* */
    SHAPE_META_SET,     /* ms: <key> <datalen> <flag>* */
    SHAPE_META_DEBUG,   /* me: <key> [b] */
    SHAPE_META_NOOP,    /* mn: anything after the name is ignored */
    SHAPE_BARE          /* anything after the name is ignored */
};

struct cmd_def {
    char        name[PROTO_NAME_ROOM];  /* zero-padded (proto.h) */
    uint8_t     name_len;
    enum cmd    cmd;
    enum op     op;
    uint8_t     min_tokens; /* command name included */
    uint8_t     max_tokens; /* 0: unbounded */
    uint8_t     shape;      /* enum shape */
    bool        noreply;    /* a last token "noreply" counts */
};

#define ROW(n, c, o, lo, hi, s, nr) \
    [c] = { n, sizeof(n) - 1, c, o, lo, hi, s, nr }

/* Token counts are memcached's own; outside them the reply is "ERROR". */
static const struct cmd_def cmd_table[CMD_COUNT] = {
    ROW("get",       CMD_GET,       OP_READ,   2, 0, SHAPE_KEYS,      false),
    ROW("gets",      CMD_GETS,      OP_READ,   2, 0, SHAPE_KEYS,      false),
    ROW("gat",       CMD_GAT,       OP_READ,   2, 0, SHAPE_TIME_KEYS, false),
    ROW("gats",      CMD_GATS,      OP_READ,   2, 0, SHAPE_TIME_KEYS, false),
    ROW("set",       CMD_SET,       OP_WRITE,  5, 6, SHAPE_STORE,     true),
    ROW("add",       CMD_ADD,       OP_WRITE,  5, 6, SHAPE_STORE,     true),
    ROW("replace",   CMD_REPLACE,   OP_WRITE,  5, 6, SHAPE_STORE,     true),
    ROW("append",    CMD_APPEND,    OP_WRITE,  5, 6, SHAPE_STORE,     true),
    ROW("prepend",   CMD_PREPEND,   OP_WRITE,  5, 6, SHAPE_STORE,     true),
    ROW("cas",       CMD_CAS,       OP_WRITE,  6, 7, SHAPE_CAS,       true),
    ROW("delete",    CMD_DELETE,    OP_DELETE, 2, 4, SHAPE_DELETE,    true),
    ROW("incr",      CMD_INCR,      OP_ARITH,  3, 4, SHAPE_ARITH,     true),
    ROW("decr",      CMD_DECR,      OP_ARITH,  3, 4, SHAPE_ARITH,     true),
    ROW("touch",     CMD_TOUCH,     OP_TOUCH,  3, 4, SHAPE_TOUCH,     true),
    ROW("mg",        CMD_MG,        OP_READ,   2, 0, SHAPE_META,      false),
    ROW("ms",        CMD_MS,        OP_WRITE,  2, 0, SHAPE_META_SET,  false),
    ROW("md",        CMD_MD,        OP_DELETE, 2, 0, SHAPE_META,      false),
    ROW("ma",        CMD_MA,        OP_ARITH,  2, 0, SHAPE_META,      false),
    ROW("me",        CMD_ME,        OP_READ,   1, 0, SHAPE_META_DEBUG, false),
    ROW("flush_all", CMD_FLUSH_ALL, OP_PROXY,  1, 3, SHAPE_FLUSH,     true),
    ROW("version",   CMD_VERSION,   OP_PROXY,  1, 0, SHAPE_BARE,      false),
    ROW("verbosity", CMD_VERBOSITY, OP_PROXY,  2, 3, SHAPE_VERBOSITY, true),
    ROW("stats",     CMD_STATS,     OP_PROXY,  1, 0, SHAPE_STATS,     false),
    ROW("quit",      CMD_QUIT,      OP_PROXY,  1, 0, SHAPE_BARE,      false),
    ROW("mn",        CMD_MN,        OP_PROXY,  1, 0, SHAPE_META_NOOP, false),
};

static const char *const op_names[OP_COUNT] = {
    [OP_READ]   = "read",
    [OP_WRITE]  = "write",
    [OP_DELETE] = "delete",
    [OP_ARITH]  = "arith",
    [OP_TOUCH]  = "touch",
    [OP_PROXY]  = "proxy",
};

struct tokens {
    uint32_t    n;              /* tokens on the line, command included */
    struct span t[TOK_KEEP];    /* the first TOK_KEEP of them */
    struct span last;           /* the last one */
    uint32_t    longest1;       /* longest token from index 1 on */
    uint32_t    longest2;       /* longest token from index 2 on */
    bool        dirty;          /* a byte other than a space that no key may
                                 * hold (key_byte_ok) is on the line */
};

/* ---- small helpers ---------------------------------------------------- */

static enum proto_status
fail(struct proto_error *err, enum proto_status st, const char *msg,
     bool swallow)
{
    err->msg = msg;
    err->swallow = swallow;
    return st;
}

/*
 * Names are at most 9 bytes and the length and first byte rule out all rows
 * but one or two, so the bytes are compared inline rather than by memcmp.
 */
static const struct cmd_def *
cmd_lookup(const char *name, uint32_t len)
{
    int i;

    for (i = 0; i < CMD_COUNT; i++) {
        const struct cmd_def *d = &cmd_table[i];
        uint32_t j = 1;

        if (d->name_len != len || d->name[0] != name[0])
            continue;
        while (j < len && d->name[j] == name[j])
            j++;
        if (j == len)
            return d;
    }
    return NULL;
}

static bool
tok_is(const char *buf, struct span s, const char *word, uint32_t wlen)
{
    return s.len == wlen && memcmp(buf + s.off, word, wlen) == 0;
}

/* Span from the start of a to the end of b (b at or after a). */
static struct span
span_join(struct span a, struct span b)
{
    struct span s = { a.off, b.off + b.len - a.off };

    return s;
}

/* isspace() in the C locale: what strtol() skips and stops at. */
static inline bool
is_c_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/*
 * Numbers are read the way memcached reads them (strtol/strtoul/strtoull on a
 * 64-bit long, then "the next character must be whitespace or the end"),
 * because a proxy that is stricter or looser than the server changes which
 * requests get an error. Observed consequences we keep: leading tabs and a
 * '+' are fine, "2\tjunk" reads as 2, "-0" is a valid unsigned 0, flags of
 * 2^32 are accepted (the server truncates them), and <bytes> is truncated to
 * 32 bits, so "4294967298" means 2.
 *
 * Signed: *val is the value as memcached's int32_t ends up holding it.
 * Unsigned: only validity matters to callers; *val is the 64-bit value.
 */
static bool
num_parse(const char *buf, struct span s, bool is_signed, int64_t *val)
{
    const char *p = buf + s.off, *end = p + s.len;
    const char *digits;
    uint64_t v = 0;
    bool neg = false, overflow = false;

    while (p < end && is_c_space(*p))
        p++;
    if (p < end && (*p == '+' || *p == '-')) {
        neg = *p == '-';
        p++;
    }
    digits = p;
    /* 19 digits always fit in 64 bits: no overflow test before the 20th */
    p = digits_read(p, end, 19, &v);
    while (p < end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');

        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
        p++;
    }
    if (p == digits || (p < end && !is_c_space(*p)))
        return false;
    if (is_signed) {
        /* strtol's ERANGE, then the store into an int32_t */
        if (overflow || v > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
            return false;
        *val = (int32_t)(uint32_t)(neg ? 0 - v : v);
        return true;
    }
    if (overflow)
        return false;
    v = neg ? 0 - v : v;
    /* memcached refuses a '-' only when the result looks negative */
    if ((int64_t)v < 0 && memchr(buf + s.off, '-', s.len) != NULL)
        return false;
    *val = (int64_t)v;
    return true;
}

static bool
num_ok(const char *buf, struct span s, bool is_signed)
{
    int64_t unused;

    return num_parse(buf, s, is_signed, &unused);
}

/*
 * The end of the token starting at p: the next space, or stop. A NUL ends
 * the line's text (memcached hands the line to strlen), so *stop moves to
 * it. Other bytes no key may hold belong to the token (memcached treats a
 * tab as part of one) and mark the line dirty.
 */
static const char *
token_end(const char *p, const char **stop, bool *dirty)
{
    for (;;) {
        p = key_run(p, *stop);
        if (p == *stop || *p == ' ')
            return p;
        if (*p == '\0') {
            *stop = p;
            return p;
        }
        *dirty = true;
        p++;
    }
}

/*
 * Split line[0..end) at spaces (only ' ') in one pass, stopping at a NUL,
 * and note whether any byte on the way is one no key may hold, so that the
 * key checks of a clean line cost nothing.
 */
static void
tokenize(const char *line, uint32_t end, struct tokens *tk)
{
    const char *p = line, *stop = line + end;

    tk->n = 0;
    tk->longest1 = tk->longest2 = 0;
    tk->dirty = false;
    for (;;) {
        const char *tok_end;
        struct span s;

        while (p < stop && *p == ' ')
            p++;
        if (p == stop || *p == '\0')
            break;
        tok_end = token_end(p, &stop, &tk->dirty);
        s.off = (uint32_t)(p - line);
        s.len = (uint32_t)(tok_end - p);
        if (tk->n < TOK_KEEP)
            tk->t[tk->n] = s;
        if (tk->n >= 1 && s.len > tk->longest1)
            tk->longest1 = s.len;
        if (tk->n >= 2 && s.len > tk->longest2)
            tk->longest2 = s.len;
        tk->last = s;
        tk->n++;
        p = tok_end;
    }
}

/*
 * True when the first n bytes hold a complete retrieval command name, so a
 * long line may grow to LINE_MAX_GET. Deciding on the first n bytes only
 * keeps the answer independent of how the line arrives.
 */
static bool
starts_retrieval(const char *buf, size_t n)
{
    const char *p = buf, *end = buf + n, *sp;
    const struct cmd_def *d;

    while (p < end && *p == ' ')
        p++;
    sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL)
        return false;
    d = cmd_lookup(p, (uint32_t)(sp - p));
    return d != NULL && proto_cmd_is_retrieval(d->cmd);
}

/*
 * An unknown command: memcached closes the connection without a word when
 * the last token (the 23rd on longer lines) starts with "HTTP/", unless the
 * name is one of its own families (first letter g s a c i d t, or a two-letter
 * meta command), which answer "ERROR". Names shorter than two bytes are
 * "ERROR" before any of that.
 */
static enum proto_status
unknown_command(const char *line, const struct tokens *tk,
                struct request *req, struct proto_error *err)
{
    struct span name = tk->t[0];
    struct span probe = tk->n > TOK_KEEP ? tk->t[TOK_KEEP - 1] : tk->last;
    char first = line[name.off];

    if (name.len < 2 || memchr("gsacidt", first, 7) != NULL ||
        (first == 'm' && name.len == 2))
        return fail(err, PROTO_ERROR, MSG_ERROR, false);
    if (probe.len >= 5 && memcmp(line + probe.off, "HTTP/", 5) == 0) {
        req->noreply = true;        /* memcached says nothing */
        return fail(err, PROTO_CLOSE, MSG_ERROR, false);
    }
    return fail(err, PROTO_ERROR, MSG_ERROR, false);
}

/* ---- keys --------------------------------------------------------------- */

/*
 * Keys as written, one or several with their separating spaces: every other
 * byte must be one a key may hold (key_byte_ok). memcached takes a tab or a
 * control byte in a key, then writes it back in VALUE lines that the reply
 * parser must refuse as garbage, failing every request queued on that
 * server connection, other clients' included. So such a key is refused here,
 * with the answer memcached gives its other bad keys (too long).
 */
static bool
keys_clean(const char *line, const struct tokens *tk, struct span keys)
{
    const unsigned char *p = (const unsigned char *)line + keys.off;
    uint32_t i;

    if (!tk->dirty)
        return true;
    for (i = 0; i < keys.len; i++)
        if (!key_byte_ok(p[i]) && p[i] != ' ')
            return false;
    return true;
}

static bool
key_ok(const char *line, const struct tokens *tk, struct span key)
{
    return key.len <= KEY_MAX && keys_clean(line, tk, key);
}

/* ---- one checker per shape -------------------------------------------- */

/* Keys from token `from` to the end of the line. */
static enum proto_status
set_keys(const char *line, const struct tokens *tk, uint32_t from,
         uint32_t longest, struct request *req, struct proto_error *err)
{
    req->nkeys = tk->n - from;
    if (req->nkeys == 0) {
        /* "gat 10": memcached answers END; keys stays empty */
        req->keys.off = tk->last.off + tk->last.len;
        return PROTO_OK;
    }
    req->key = tk->t[from];
    req->keys = span_join(tk->t[from], tk->last);
    if (longest > KEY_MAX || !keys_clean(line, tk, req->keys))
        return fail(err, PROTO_ERROR, MSG_FORMAT, false);
    return PROTO_OK;
}

static enum proto_status
check_keys(const char *line, const struct tokens *tk, struct request *req,
           struct proto_error *err)
{
    return set_keys(line, tk, 1, tk->longest1, req, err);
}

/* gat/gats: the exptime is checked before any key, as memcached does. */
static enum proto_status
check_time_keys(const char *line, const struct tokens *tk,
                struct request *req, struct proto_error *err)
{
    req->args = tk->t[1];
    if (!num_ok(line, tk->t[1], true))
        return fail(err, PROTO_ERROR, MSG_EXPTIME, false);
    return set_keys(line, tk, 2, tk->longest2, req, err);
}

/*
 * Storage. memcached checks the key, then flags/exptime/bytes, then cas, then
 * the size; every failure but the size leaves the data block unread, so it is
 * parsed as the next command. We mirror that, except:
 *  - <bytes> unreadable or negative: the block's length is unknown, so we
 *    close instead of guessing (memcached would read the block as commands);
 *  - key longer than KEY_MAX with a valid <bytes>: we swallow the block
 *    (memcached does not: it answers "CLIENT_ERROR bad command line format"
 *    and then "ERROR" or worse for the block); one reply, stream in sync.
 *    The same for a key with a control byte, which memcached would store.
 */
static enum proto_status
check_store(const char *line, const struct tokens *tk, uint32_t item_max,
            bool with_cas, struct request *req, struct proto_error *err)
{
    uint32_t last_arg = with_cas ? 5 : 4;
    int64_t len;

    req->nkeys = 1;
    req->key = req->keys = tk->t[1];
    req->args = span_join(tk->t[2], tk->t[last_arg]);

    if (!num_parse(line, tk->t[4], true, &len) || len < 0 || len > DATA_LEN_MAX)
        return fail(err, PROTO_CLOSE, MSG_FORMAT, false);
    req->data_len = (uint32_t)len;

    if (!key_ok(line, tk, tk->t[1]))
        return fail(err, PROTO_ERROR, MSG_FORMAT, true);
    if (!num_ok(line, tk->t[2], false) || !num_ok(line, tk->t[3], true) ||
        (with_cas && !num_ok(line, tk->t[5], false)))
        return fail(err, PROTO_ERROR, MSG_FORMAT, false);
    if (req->data_len > item_max)
        return fail(err, PROTO_ERROR, MSG_TOO_LARGE, true);
    return PROTO_OK;
}

/*
 * delete <key> [0] [noreply]: the only hold time memcached still takes is
 * the exact token "0"; its argument check comes before the key check.
 */
static enum proto_status
check_delete(const char *line, const struct tokens *tk, struct request *req,
             struct proto_error *err)
{
    req->nkeys = 1;
    req->key = req->keys = tk->t[1];
    if (tk->n > 2) {
        bool zero = tok_is(line, tk->t[2], "0", 1);
        bool valid = (tk->n == 3 && (zero || req->noreply)) ||
                     (tk->n == 4 && zero && req->noreply);

        if (!valid)
            return fail(err, PROTO_ERROR, MSG_DELETE, false);
        if (zero)
            req->args = tk->t[2];
    }
    if (!key_ok(line, tk, tk->t[1]))
        return fail(err, PROTO_ERROR, MSG_FORMAT, false);
    return PROTO_OK;
}

/* incr/decr and touch: <key> <number> [anything]; a 4th token is ignored. */
static enum proto_status
check_key_num(const char *line, const struct tokens *tk, bool is_signed,
              const char *bad_num, struct request *req,
              struct proto_error *err)
{
    req->nkeys = 1;
    req->key = req->keys = tk->t[1];
    req->args = tk->t[2];
    if (!key_ok(line, tk, tk->t[1]))
        return fail(err, PROTO_ERROR, MSG_FORMAT, false);
    if (!num_ok(line, tk->t[2], is_signed))
        return fail(err, PROTO_ERROR, bad_num, false);
    return PROTO_OK;
}

/* flush_all: the delay is read unless the line is just "flush_all [noreply]". */
static enum proto_status
check_flush(const char *line, const struct tokens *tk, struct request *req,
            struct proto_error *err)
{
    if (tk->n == (req->noreply ? 2u : 1u))
        return PROTO_OK;
    req->args = tk->t[1];
    if (!num_ok(line, tk->t[1], true))
        return fail(err, PROTO_ERROR, MSG_EXPTIME, false);
    return PROTO_OK;
}

static enum proto_status
check_verbosity(const char *line, const struct tokens *tk,
                struct request *req, struct proto_error *err)
{
    req->args = tk->t[1];
    if (!num_ok(line, tk->t[1], false))
        return fail(err, PROTO_ERROR, MSG_FORMAT, false);
    return PROTO_OK;
}

/* ---- meta commands ---------------------------------------------------- */

/* Is the request's key valid base64 (as memcached decodes it)? */
static bool
key_decodes(const char *line, const struct request *req)
{
    char key[KEY_MAX];

    return proto_meta_key(line, req, key) > 0;
}

/*
 * memcached checks meta flags in one pass over the tokens after the key
 * (after <datalen> for ms), each flag being the first byte of its token: a
 * repeated or non-ASCII flag and an unknown flag stop the pass at once;
 * the other problems (a bad number after N T R C F J D, a bad M, a key that
 * is not base64) are noted, the pass goes on, and the last one noted is the
 * reply. mg and ms say which; md and ma only say "invalid or duplicate
 * flag". The checks that need the item (opaque length, M's mode letter)
 * are left to the server, which answers them the same way to us.
 */
static const char *
meta_flags(const char *line, const struct tokens *tk, uint32_t first,
           struct request *req)
{
    bool seen[128] = { false };
    const char *noted = NULL;
    bool bad = false;
    uint32_t i;

    for (i = first; i < tk->n; i++) {
        struct span t = tk->t[i];
        struct span num = { t.off + 1, t.len - 1 };
        unsigned char flag = (unsigned char)line[t.off];
        const char *why = NULL;

        if (flag >= 127 || seen[flag])
            return MSG_DUP_FLAG;
        seen[flag] = true;
        switch (flag) {
        case 'b':
            req->base64 = true;
            if (!key_decodes(line, req))
                why = MSG_DECODE;
            break;
        case 'N': case 'T': case 'R':
            if (!num_ok(line, num, true))
                why = MSG_BAD_TOKEN;
            break;
        case 'C':
            if (!num_ok(line, num, false))
                why = MSG_BAD_TOKEN;
            break;
        case 'F':
            /* refused, but memcached names no reason of its own */
            bad = bad || !num_ok(line, num, false);
            break;
        case 'M':
            if (t.len != 2)
                why = MSG_M_LENGTH;
            break;
        case 'J':
            if (!num_ok(line, num, false))
                why = MSG_INITIAL;
            break;
        case 'D':
            if (!num_ok(line, num, false))
                why = MSG_META_DELTA;
            break;
        case 'q':
            req->quiet = true;
            break;
        case 'k':
            req->ret_key = true;
            break;
        case 'c': case 'f': case 'h': case 'l': case 's': case 't': case 'u':
        case 'v': case 'I': case 'L': case 'O': case 'P':
            break;
        default:
            return MSG_BAD_FLAG;
        }
        if (why != NULL) {
            noted = why;
            bad = true;
        }
    }
    if (!bad)
        return NULL;
    return noted != NULL ? noted : MSG_FORMAT;
}

/* args: every token from `from` on, as written. */
static void
meta_args(const struct tokens *tk, uint32_t from, struct request *req)
{
    if (tk->n > from)
        req->args = span_join(tk->t[from], tk->last);
}

/* mg md ma: <key> <flag>*. */
static enum proto_status
check_meta(const char *line, const struct tokens *tk, struct request *req,
           struct proto_error *err)
{
    const char *msg;

    req->meta = true;
    req->nkeys = 1;
    req->key = req->keys = tk->t[1];
    if (!key_ok(line, tk, tk->t[1]))
        return fail(err, PROTO_ERROR, MSG_FORMAT, false);
    if (tk->n >= META_TOKENS_MAX)
        return fail(err, PROTO_ERROR,
                    req->cmd == CMD_MG ? MSG_MG_TOO_MANY : MSG_TOO_MANY, false);
    meta_args(tk, 2, req);
    msg = meta_flags(line, tk, 2, req);
    if (msg != NULL)
        return fail(err, PROTO_ERROR, req->cmd == CMD_MG ? msg : MSG_BAD_FLAGS, false);
    return PROTO_OK;
}

/*
 * ms <key> <datalen> <flag>*. memcached reads <datalen> only after the key
 * length and token count checks, and swallows the data block only for the
 * errors found after it. We read <datalen> first so that, as for the
 * classic storage commands, a block whose length is known is always
 * swallowed with its refused line (one reply, stream in step), and a line
 * whose block length is unknown (missing, not a number, negative) closes
 * the connection instead of having its data read as commands.
 */
static enum proto_status
check_meta_set(const char *line, const struct tokens *tk, uint32_t item_max,
               struct request *req, struct proto_error *err)
{
    const char *msg;
    int64_t len;

    req->meta = true;
    req->nkeys = 1;
    req->key = req->keys = tk->t[1];
    if (tk->n < 3 || !num_parse(line, tk->t[2], true, &len) || len < 0
        || len > DATA_LEN_MAX)
        return fail(err, PROTO_CLOSE, MSG_FORMAT, false);
    req->data_len = (uint32_t)len;
    if (!key_ok(line, tk, tk->t[1]))
        return fail(err, PROTO_ERROR, MSG_FORMAT, true);
    if (tk->n >= META_TOKENS_MAX)
        return fail(err, PROTO_ERROR, MSG_TOO_MANY, true);
    meta_args(tk, 2, req);
    msg = meta_flags(line, tk, 3, req);
    if (msg != NULL)
        return fail(err, PROTO_ERROR, msg, true);
    if (req->data_len > item_max)
        return fail(err, PROTO_ERROR, MSG_TOO_LARGE, true);
    return PROTO_OK;
}

/*
 * me <key> [b]: memcached looks at no other flag, and takes "b" only as the
 * exact token right after the key.
 */
static enum proto_status
check_meta_debug(const char *line, const struct tokens *tk, struct request *req,
                 struct proto_error *err)
{
    req->meta = true;
    if (tk->n < 2 || !key_ok(line, tk, tk->t[1]))
        return fail(err, PROTO_ERROR, MSG_FORMAT, false);
    req->nkeys = 1;
    req->key = req->keys = tk->t[1];
    req->ret_key = true;            /* "ME <key> ..." */
    meta_args(tk, 2, req);
    if (tk->n >= 3 && tok_is(line, tk->t[2], "b", 1)) {
        req->base64 = true;
        if (!key_decodes(line, req))
            return fail(err, PROTO_ERROR, MSG_FORMAT, false);
    }
    return PROTO_OK;
}

static enum proto_status
check_shape(const char *line, const struct cmd_def *d,
            const struct tokens *tk, uint32_t item_max, struct request *req,
            struct proto_error *err)
{
    switch ((enum shape)d->shape) {
    case SHAPE_KEYS:
        return check_keys(line, tk, req, err);
    case SHAPE_TIME_KEYS:
        return check_time_keys(line, tk, req, err);
    case SHAPE_STORE:
        return check_store(line, tk, item_max, false, req, err);
    case SHAPE_CAS:
        return check_store(line, tk, item_max, true, req, err);
    case SHAPE_DELETE:
        return check_delete(line, tk, req, err);
    case SHAPE_ARITH:
        return check_key_num(line, tk, false, MSG_DELTA, req, err);
    case SHAPE_TOUCH:
        return check_key_num(line, tk, true, MSG_EXPTIME, req, err);
    case SHAPE_FLUSH:
        return check_flush(line, tk, req, err);
    case SHAPE_VERBOSITY:
        return check_verbosity(line, tk, req, err);
    case SHAPE_STATS:
        if (tk->n > 1)
            req->args = span_join(tk->t[1], tk->last);
        return PROTO_OK;
    case SHAPE_META:
        return check_meta(line, tk, req, err);
    case SHAPE_META_SET:
        return check_meta_set(line, tk, item_max, req, err);
    case SHAPE_META_DEBUG:
        return check_meta_debug(line, tk, req, err);
    case SHAPE_META_NOOP:
        req->meta = true;
        return PROTO_OK;
    case SHAPE_BARE:
        return PROTO_OK;
    }
    return fail(err, PROTO_ERROR, MSG_ERROR, false);
}

/*
 * memcached's noreply test: the last token is "noreply", whatever position it
 * is in ("incr k noreply" silences the delta error). It never names a key:
 * "delete noreply" deletes the key "noreply".
 */
static bool
wants_noreply(const char *line, const struct cmd_def *d,
              const struct tokens *tk)
{
    uint32_t key_pos = d->op == OP_PROXY ? 0 : 1;

    return d->noreply && tk->n - 1 > key_pos &&
           tok_is(line, tk->last, "noreply", 7);
}

/*
 * Find the end of the request line. Returns PROTO_OK with *nl set, or the
 * status to return (need more, or close because the line is too long).
 * memcached itself closes silently after 2048 bytes without a newline unless
 * the line starts with "get " or "gets ", and takes any length then; we answer
 * "CLIENT_ERROR line too long" first and cap retrievals at LINE_MAX_GET.
 */
static enum proto_status
find_line(const char *buf, size_t len, const char **nl,
          struct proto_error *err)
{
    size_t lim = len < LINE_MAX_PLAIN ? len : LINE_MAX_PLAIN;

    *nl = memchr(buf, '\n', lim);
    if (*nl != NULL)
        return PROTO_OK;
    if (len < LINE_MAX_PLAIN)
        return PROTO_NEED_MORE;
    if (!starts_retrieval(buf, LINE_MAX_PLAIN))
        return fail(err, PROTO_CLOSE, MSG_TOO_LONG, false);
    lim = len < LINE_MAX_GET ? len : LINE_MAX_GET;
    *nl = memchr(buf + LINE_MAX_PLAIN, '\n', lim - LINE_MAX_PLAIN);
    if (*nl != NULL)
        return PROTO_OK;
    if (len < LINE_MAX_GET)
        return PROTO_NEED_MORE;
    return fail(err, PROTO_CLOSE, MSG_TOO_LONG, false);
}

/* ---- the common lines, in one pass ------------------------------------- */

/*
 * Almost every request is "get <key>...", "gets <key>..." or "set <key>
 * <flags> <exptime> <bytes> [noreply]" written the plain way: single
 * spaces, nothing but key bytes in the keys, plain digits in the numbers,
 * "\r\n" at the end. Those lines are read here in one pass over their
 * bytes, with no search for the line's end first: no byte a key, a number
 * or a single space may be is a '\n', so the "\r\n" met where the line
 * may end is the first '\n' find_line would find, and it lies inside lim,
 * the first LINE_MAX_PLAIN bytes (or fewer, what is there), as find_line
 * requires. A fast reader takes a line only when the general path
 * (find_line, tokenize, cmd_lookup, check_shape) would accept it and fill
 * *req with the very same fields; for any other line (a longer one, a bare
 * "\n", a line not all here yet) it returns false having written nothing,
 * and the general path decides, errors included.
 */

/* Skip 1..max plain digits at *p (before stop). */
static bool
plain_digits(const char **p, const char *stop, uint32_t max)
{
    const char *s = digit_run(*p, stop);

    if (s == *p || s - *p > (long)max)
        return false;
    *p = s;
    return true;
}

/* The line ends at p: "\r\n" there, inside lim. */
static bool
crlf_at(const char *p, const char *lim)
{
    return lim - p >= 2 && p[0] == '\r' && p[1] == '\n';
}

/*
 * get/gets: keys of 1..KEY_MAX key bytes, one space before each. Two
 * spaces, a trailing space or any other byte go the general way.
 */
static bool
fast_get(const char *buf, const char *lim, struct request *req)
{
    const char *keys, *p, *first_end = NULL;
    enum cmd cmd;
    uint32_t n = 0;

    if (lim - buf > 4 && memcmp(buf, "get ", 4) == 0) {
        cmd = CMD_GET;
        keys = buf + 4;
    } else if (lim - buf > 5 && memcmp(buf, "gets ", 5) == 0) {
        cmd = CMD_GETS;
        keys = buf + 5;
    } else {
        return false;
    }
    for (p = keys;; p++) {
        const char *key = p;

        p = key_run(p, lim);
        if (p == key || p - key > KEY_MAX || p == lim)
            return false;
        if (first_end == NULL)
            first_end = p;
        n++;
        if (*p != ' ')
            break;
    }
    if (!crlf_at(p, lim))
        return false;
    req->cmd = cmd;
    req->line_len = (uint32_t)(p - buf) + 2;
    req->nkeys = n;
    req->key.off = (uint32_t)(keys - buf);
    req->key.len = (uint32_t)(first_end - keys);
    req->keys.off = req->key.off;
    req->keys.len = (uint32_t)(p - keys);
    return true;
}

/*
 * set: flags of up to 19 digits are always valid (unsigned 64-bit), an
 * exptime of up to 18 (signed), and <bytes> of up to 9 is its own value
 * (below DATA_LEN_MAX); a value over item_max is an error the general
 * path words.
 */
static bool
fast_set(const char *buf, const char *lim, uint32_t item_max, struct request *req)
{
    const char *key = buf + 4, *args, *p, *num, *args_end;
    uint64_t bytes;
    bool noreply = false;

    if (lim - buf < 13 || memcmp(buf, "set ", 4) != 0)
        return false;
    p = key_run(key, lim);
    if (p == key || p - key > KEY_MAX || p == lim || *p != ' ')
        return false;
    args = ++p;
    if (!plain_digits(&p, lim, 19) || p == lim || *p++ != ' ' ||
        !plain_digits(&p, lim, 18) || p == lim || *p++ != ' ')
        return false;
    num = p;
    p = digits_read_word(num, lim, 9, &bytes);
    if (p == num || bytes > item_max)
        return false;
    args_end = p;
    if (lim - p >= 8 && memcmp(p, " noreply", 8) == 0) {
        noreply = true;
        p += 8;
    }
    if (!crlf_at(p, lim))
        return false;
    req->cmd = CMD_SET;
    req->line_len = (uint32_t)(p - buf) + 2;
    req->noreply = noreply;
    req->nkeys = 1;
    req->key.off = 4;
    req->key.len = (uint32_t)(args - 1 - key);
    req->keys = req->key;
    req->args.off = (uint32_t)(args - buf);
    req->args.len = (uint32_t)(args_end - args);
    req->data_len = (uint32_t)bytes;
    return true;
}

/* ---- public ----------------------------------------------------------- */

/*
 * Any request, its line's end found first. Kept out of line, so that the
 * plain lines do not pay for the frame the token table needs.
 */
static enum proto_status __attribute__((noinline))
parse_general(const char *buf, size_t len, uint32_t item_max,
              struct request *req, struct proto_error *err)
{
    const char *nl;
    const struct cmd_def *d;
    struct tokens tk;
    enum proto_status st;
    uint32_t end;

    req->cmd = CMD_COUNT;
    st = find_line(buf, len, &nl, err);
    if (st != PROTO_OK)
        return st;
    req->line_len = (uint32_t)(nl - buf) + 1;

    /* "\r\n" or a bare "\n"; the text stops at a NUL (tokenize) */
    end = req->line_len - 1;
    if (end > 0 && buf[end - 1] == '\r')
        end--;

    tokenize(buf, end, &tk);
    if (tk.n == 0)
        return fail(err, PROTO_ERROR, MSG_ERROR, false);
    d = cmd_lookup(buf + tk.t[0].off, tk.t[0].len);
    if (d == NULL)
        return unknown_command(buf, &tk, req, err);
    req->cmd = d->cmd;
    if (tk.n < d->min_tokens || (d->max_tokens != 0 && tk.n > d->max_tokens))
        return fail(err, PROTO_ERROR, MSG_ERROR, false);
    req->noreply = wants_noreply(buf, d, &tk);
    return check_shape(buf, d, &tk, item_max, req, err);
}

enum proto_status
proto_parse(const char *buf, size_t len, uint32_t item_max,
            struct request *req, struct proto_error *err)
{
    const char *lim = buf + (len < LINE_MAX_PLAIN ? len : LINE_MAX_PLAIN);

    memset(req, 0, sizeof(*req));
    err->msg = NULL;
    err->swallow = false;
    if (fast_get(buf, lim, req) || fast_set(buf, lim, item_max, req))
        return PROTO_OK;
    return parse_general(buf, len, item_max, req, err);
}

bool
proto_next_key(const char *buf, const struct request *req, uint32_t *pos,
               struct span *key)
{
    uint32_t p = *pos, end = req->keys.off + req->keys.len;
    const char *q;

    /* the first key is the parse's own: no second scan over it */
    if (p == req->keys.off && p == req->key.off && req->key.len > 0) {
        *key = req->key;
        *pos = p + key->len;
        return true;
    }
    while (p < end && buf[p] == ' ')
        p++;
    if (p >= end)
        return false;
    /* accepted keys hold only key bytes, but the key ends at a space alone */
    q = key_run(buf + p, buf + end);
    while (q < buf + end && *q != ' ')
        q = key_run(q + 1, buf + end);
    key->off = p;
    key->len = (uint32_t)(q - buf) - p;
    *pos = p + key->len;
    return true;
}

/*
 * memcached reads exactly data_len + 2 bytes whatever they hold. When they do
 * not end in "\r\n" it answers "CLIENT_ERROR bad data chunk" (silenced by
 * noreply like its other errors) and parses whatever follows those bytes as
 * the next command: "set k 0 0 2\r\nabc\r\n" gets the error, then "ERROR" for
 * the leftover "\n". Callers drop the block and carry on the same way.
 */
bool
proto_data_ok(const char *block, uint32_t data_len)
{
    return block[data_len] == '\r' && block[(size_t)data_len + 1] == '\n';
}

bool
proto_cmd_has_data(enum cmd cmd)
{
    return cmd == CMD_MS || proto_cmd_op(cmd) == OP_WRITE;
}

bool
proto_cmd_is_retrieval(enum cmd cmd)
{
    return cmd == CMD_GET || cmd == CMD_GETS || cmd == CMD_GAT || cmd == CMD_GATS;
}

uint32_t
proto_meta_key(const char *buf, const struct request *req, char *out)
{
    return (uint32_t)base64_decode(buf + req->key.off, req->key.len,
                                   (unsigned char *)out, KEY_MAX);
}

static const char *const meta_names[CMD_COUNT] = {
    [CMD_GET] = "mg", [CMD_GETS] = "mg", [CMD_GAT] = "mg", [CMD_GATS] = "mg",
    [CMD_TOUCH] = "mg", [CMD_MG] = "mg",
    [CMD_SET] = "ms", [CMD_ADD] = "ms", [CMD_REPLACE] = "ms", [CMD_APPEND] = "ms",
    [CMD_PREPEND] = "ms", [CMD_CAS] = "ms", [CMD_MS] = "ms",
    [CMD_DELETE] = "md", [CMD_MD] = "md",
    [CMD_INCR] = "ma", [CMD_DECR] = "ma", [CMD_MA] = "ma",
    [CMD_ME] = "me", [CMD_MN] = "mn",
};

const char *
proto_meta_name(enum cmd cmd)
{
    return (unsigned)cmd < CMD_COUNT && meta_names[cmd] ? meta_names[cmd] : "mn";
}

const char *
proto_cmd_name(enum cmd cmd)
{
    return (unsigned)cmd < CMD_COUNT ? cmd_table[cmd].name : "unknown";
}

uint32_t
proto_cmd_name_len(enum cmd cmd)
{
    return (unsigned)cmd < CMD_COUNT ? cmd_table[cmd].name_len : 0;
}

enum op
proto_cmd_op(enum cmd cmd)
{
    return (unsigned)cmd < CMD_COUNT ? cmd_table[cmd].op : OP_PROXY;
}

const char *
proto_op_name(enum op op)
{
    return (unsigned)op < OP_COUNT ? op_names[op] : "unknown";
}
