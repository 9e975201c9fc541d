/*
 * loadgen.c: memcached text-protocol load generator for `make bench`.
 *
 * Opens N connections to one target (a memcached server or a proxy in front of
 * several), optionally sets every key of the keyspace once (prefill), then runs
 * a get/set mix for a duration or a request count and prints one line:
 *
 *   target=... requests=... seconds=... ops=... keys=... p50_us=... p99_us=...
 *   p999_us=... max_us=... errors=... misses=... prefill_s=... [cpu_us=...
 *   servers_cpu_us=... self_cpu_us=... busy_pct=...]
 *
 * ops is requests (commands) per second; a 10-key get is one request and ten
 * keys. Latency is from the moment a request is written to the moment its whole
 * reply has been parsed.
 *
 * Every value read is verified. A value is a pure function of (key, version):
 * ten decimal digits of version, ':', then bytes from a generator seeded by
 * both, repeating every PATTERN_LEN bytes (so that checking a 1 MB value
 * costs one memcmp, not a million generator steps); the flags are a hash of
 * both too. Each set takes the next version of
 * its key, so a VALUE is accepted only if its key is the one asked at that
 * position, its length, flags and bytes match the version it carries, and that
 * version was issued (1 <= version <= highest issued). After a prefill, a miss
 * is an error too. Any error makes the exit status 1.
 *
 * With -B the requests are in memcached's binary protocol: Set, and Get (a
 * multi-get is GetKQ per key then Noop, as libmemcached batches), checked
 * the same way.
 *
 * With -t CAFILE every connection is TLS (OpenSSL), verified against that CA
 * and the name in -s; the handshake is done, blocking, when the connection
 * opens, so the timed run measures only requests.
 *
 * Threads (-T) each own an epoll loop over their share of the connections;
 * the prefill runs before they start, on the main thread. The run is always
 * bounded: by -d, by -n (with a time limit as a safety net) and by a stall
 * timeout when replies stop coming.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE                 /* memmem */
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_TOOL "loadgen"
#include "tool.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#define WIDTH_MAX       100         /* keys in one multi-get */
#define DEPTH_MAX       1024        /* requests in flight per connection */
#define PREFILL_DEPTH   64          /* default -F: sets in flight per connection in the prefill */
#define VALUE_MIN       12          /* 10 digits of version, ':', one byte */
#define VALUE_HEAD      11          /* the version and ':' */
#define PATTERN_LEN     4093        /* a prime: no power-of-two shift of a
                                     * value's bytes lines the pattern up again */
#define VALUE_MAX       (1 << 20)
#define PREFIX_MAX      64
#define KEY_MAX         250
#define LINE_MAX_BYTES  4096        /* a reply line longer than this is garbage */
#define ERR_SHOWN       5           /* errors described on stderr; the rest only counted */
#define N_LIMIT_SECONDS 300.0       /* time limit when only -n is given */
#define CPU_PIDS_MAX    16          /* processes in -M */

#define SUB_BITS        7           /* histogram: 128 linear buckets per power of two */
#define SUB_COUNT       (1 << SUB_BITS)
#define HIST_BUCKETS    ((64 - SUB_BITS + 1) * SUB_COUNT)

enum op { OP_GET, OP_SET };

struct options {
    char       *host;
    char       *port;
    int         conns;
    int         depth;
    int         gets, sets;         /* ratio */
    int         vsize;
    long        keys;
    int         width;
    double      seconds;            /* 0: not given */
    long long   count;              /* -1: not given */
    uint64_t    seed;
    int         prefill;
    int         prefill_depth;      /* -F */
    int         threads;
    const char *prefix;
    double      stall;              /* seconds without a reply before giving up */
    double      wait;               /* seconds to retry the first connect */
    const char *tls_ca;             /* -t: talk TLS, verify against this CA */
    int         binary;             /* -B: binary protocol */
    long        hot_keys;           /* -H N:PCT: reads on the first N keys... */
    int         hot_pct;            /* ...PCT% of the time, Zipf over the rest */
    const char *hot_prefix;         /* --hot-prefix: the hot keys' own prefix */
    long        cpu_pid;            /* -C: report this process's CPU per request (0: none) */
    long        server_pids[CPU_PIDS_MAX]; /* -M: ...and these processes' together */
    int         nserver_pids;
};

struct req {
    uint8_t     op;                 /* enum op */
    uint8_t     nkeys;
    uint8_t     got;                /* get: keys answered or skipped so far */
    uint32_t    ver;                /* set: version written */
    uint64_t    t0;                 /* ns, when written */
    long       *keys;               /* nkeys entries, owned by the connection */
};

struct stats {
    uint64_t    done;               /* requests completed */
    uint64_t    keys;               /* keys asked (gets) or written (sets) */
    uint64_t    errors;             /* everything wrong, misses included */
    uint64_t    misses;             /* after a prefill, a key not found */
    uint64_t    last_ns;            /* last completion */
    uint64_t    hist[HIST_BUCKETS];
};

struct conn {
    int         fd;
    SSL        *ssl;                /* -t: the connection's TLS, else NULL */
    int         id;
    int         dead;
    uint64_t    rng;
    int         window;             /* depth used now (prefill or run) */
    struct req *q;                  /* FIFO of requests in flight, window slots */
    long       *qkeys;              /* window * WIDTH_MAX keys */
    int         head, n;
    char       *out;                /* bytes to write */
    size_t      olen, opos, ocap;
    char       *in;                 /* bytes read, not yet parsed from ipos */
    size_t      ilen, ipos, icap;
    long        pf_next, pf_end;    /* prefill: keys left to set */
    int         want_out;           /* EPOLLOUT registered */
};

struct thread {
    pthread_t    tid;
    int          ep;
    struct conn **conns;
    int          nconns;
    struct stats st;
    uint64_t     start_ns;
};

static struct options opt;
static SSL_CTX *tls_ctx;            /* -t */
static uint32_t *versions;          /* per key, highest version issued */
static long long issued;            /* requests issued, for -n (atomic) */
static uint64_t deadline_ns;
static int      prefill_phase;
static int      err_shown;          /* atomic */
static char     value_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void *
xmalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);

    if (p == NULL)
        die("out of memory");
    return p;
}

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t
rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    return mix64(*s);
}

/* A uniform number below n (n > 0); the tiny modulo bias does not matter here. */
static long
rng_below(uint64_t *s, long n)
{
    return (long)(rng_next(s) % (uint64_t)n);
}

/*
 * -H N:PCT: the keys reads ask for. PCT% of them go to one of the first N
 * keys (uniformly); the rest follow Zipf (exponent 1) over the other keys,
 * by binary search in a cumulative table built once.
 */
static double *zipf_cdf;
static long zipf_n;

static void
zipf_build(long n)
{
    double sum = 0;
    long i;

    zipf_n = n;
    zipf_cdf = malloc(sizeof(*zipf_cdf) * (size_t)(n > 0 ? n : 1));
    if (zipf_cdf == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(2);
    }
    for (i = 0; i < n; i++)
        zipf_cdf[i] = (sum += 1.0 / (double)(i + 1));
    for (i = 0; i < n; i++)
        zipf_cdf[i] /= sum;
}

static long read_key(uint64_t *rng);

/* ---- values: a pure function of (key, version) ---- */

static uint32_t
value_flags(long key, uint32_t ver)
{
    return (uint32_t)mix64(((uint64_t)key << 32) ^ ver ^ 0x5bd1e995u);
}

/* The first n (<= PATTERN_LEN) bytes after a value's head. */
static void
pattern_fill(char *dst, long key, uint32_t ver, int n)
{
    uint64_t s = mix64((uint64_t)key * 0x100000001b3ull + ver);
    uint64_t r = 0;
    int i, left = 0;

    for (i = 0; i < n; i++) {
        if (left == 0) {
            r = rng_next(&s);
            left = 10;              /* 10 x 6 bits from 64 */
        }
        dst[i] = value_alphabet[r & 63];
        r >>= 6;
        left--;
    }
}

static void
value_fill(char *dst, long key, uint32_t ver, int vsize)
{
    int body = vsize - VALUE_HEAD, done;

    snprintf(dst, VALUE_HEAD + 1, "%010u:", ver);
    dst += VALUE_HEAD;
    done = body < PATTERN_LEN ? body : PATTERN_LEN;
    pattern_fill(dst, key, ver, done);
    while (done < body) {               /* the pattern again, doubling */
        int n = done < body - done ? done : body - done;

        memcpy(dst + done, dst, (size_t)n);
        done += n;
    }
}

static int
key_format(char *dst, long key)
{
    const char *prefix = key < opt.hot_keys && opt.hot_prefix ? opt.hot_prefix : opt.prefix;

    return snprintf(dst, KEY_MAX + 1, "%s%ld", prefix, key);
}

/* ---- error reporting ---- */

static void
report_error(struct stats *st, struct conn *c, const char *fmt, ...)
{
    va_list ap;

    st->errors++;
    if (__atomic_fetch_add(&err_shown, 1, __ATOMIC_RELAXED) >= ERR_SHOWN)
        return;
    fprintf(stderr, "loadgen: conn %d: ", c->id);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}

/* ---- histogram (log-linear over nanoseconds, < 1% error) ---- */

static int
hist_index(uint64_t v)
{
    int e;

    if (v < SUB_COUNT)
        return (int)v;
    e = 63 - __builtin_clzll(v);
    return (e - SUB_BITS + 1) * SUB_COUNT + (int)((v >> (e - SUB_BITS)) & (SUB_COUNT - 1));
}

static double
hist_value(int idx)
{
    int e, m;

    if (idx < SUB_COUNT)
        return idx;
    e = idx / SUB_COUNT + SUB_BITS - 1;
    m = idx % SUB_COUNT;
    /* middle of the bucket */
    return ((double)(SUB_COUNT + m) + 0.5) * (double)(1ull << (e - SUB_BITS));
}

static double
hist_percentile(const uint64_t *h, uint64_t total, double pct)
{
    uint64_t want, seen = 0;
    int i;

    if (total == 0)
        return 0;
    want = (uint64_t)((double)total * pct / 100.0);
    if (want >= total)
        want = total - 1;
    for (i = 0; i < HIST_BUCKETS; i++) {
        seen += h[i];
        if (seen > want)
            return hist_value(i);
    }
    return hist_value(HIST_BUCKETS - 1);
}

/* ---- connections ---- */

static int
connect_once(const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    int fd = -1, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        die("%s:%s: %s", host, port, gai_strerror(rc));
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* -t: a context that verifies the target against the CA file. */
static void
tls_init(void)
{
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (tls_ctx == NULL || SSL_CTX_load_verify_locations(tls_ctx, opt.tls_ca, NULL) != 1)
        die("-t %s: %s", opt.tls_ca, ERR_reason_error_string(ERR_get_error()));
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                              | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* The handshake, blocking, before the socket goes non-blocking. */
static SSL *
tls_open(int fd)
{
    SSL *ssl = SSL_new(tls_ctx);

    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_set1_host(ssl, opt.host) != 1)
        die("TLS set-up failed");
    if (SSL_connect(ssl) != 1)
        die("TLS handshake with %s:%s: %s", opt.host, opt.port,
            ERR_reason_error_string(ERR_get_error()));
    return ssl;
}

/* read()/write() conventions over TLS: -1 with errno EAGAIN when it would block. */
static ssize_t
tls_io(SSL *ssl, void *buf, size_t len, int writing)
{
    size_t n;
    int rc;

    errno = 0;
    rc = writing ? SSL_write_ex(ssl, buf, len, &n) : SSL_read_ex(ssl, buf, len, &n);

    if (rc == 1)
        return (ssize_t)n;
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        if (errno == 0)
            errno = EPROTO;
        return -1;
    }
}

static struct conn *
conn_open(int id, uint64_t wait_until)
{
    struct conn *c = xmalloc(sizeof(*c));
    int one = 1, fd;

    for (;;) {
        fd = connect_once(opt.host, opt.port);
        if (fd >= 0 || now_ns() >= wait_until)
            break;
        usleep(50000);
    }
    if (fd < 0)
        die("connect %s:%s: %s", opt.host, opt.port, strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ssl = tls_ctx ? tls_open(fd) : NULL;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd;
    c->id = id;
    c->rng = mix64(opt.seed * 0x9e3779b97f4a7c15ull + (uint64_t)id);
    c->window = opt.depth > opt.prefill_depth ? opt.depth : opt.prefill_depth;
    c->q = xmalloc(sizeof(*c->q) * (size_t)c->window);
    c->qkeys = xmalloc(sizeof(long) * (size_t)c->window * WIDTH_MAX);
    c->ocap = 65536;
    c->out = xmalloc(c->ocap);
    c->icap = 65536;
    c->in = xmalloc(c->icap);
    return c;
}

static void
out_reserve(struct conn *c, size_t n)
{
    if (c->opos > 0 && c->opos == c->olen)
        c->opos = c->olen = 0;
    if (c->olen + n <= c->ocap)
        return;
    if (c->opos > 0) {
        memmove(c->out, c->out + c->opos, c->olen - c->opos);
        c->olen -= c->opos;
        c->opos = 0;
    }
    while (c->olen + n > c->ocap)
        c->ocap *= 2;
    c->out = realloc(c->out, c->ocap);
    if (c->out == NULL)
        die("out of memory");
}

static struct req *
req_push(struct conn *c, enum op op, uint64_t t)
{
    int slot = (c->head + c->n) % c->window;
    struct req *r = &c->q[slot];

    r->op = (uint8_t)op;
    r->nkeys = 0;
    r->got = 0;
    r->ver = 0;
    r->t0 = t;
    r->keys = c->qkeys + (size_t)slot * WIDTH_MAX;
    c->n++;
    return r;
}

static void
emit_set(struct conn *c, long key, uint32_t ver, uint64_t t)
{
    struct req *r = req_push(c, OP_SET, t);
    char *p;
    int n;

    r->keys[0] = key;
    r->nkeys = 1;
    r->ver = ver;
    out_reserve(c, (size_t)KEY_MAX + 64 + (size_t)opt.vsize);
    p = c->out + c->olen;
    memcpy(p, "set ", 4);
    n = 4 + key_format(p + 4, key);
    n += sprintf(p + n, " %u 0 %d\r\n", value_flags(key, ver), opt.vsize);
    value_fill(p + n, key, ver, opt.vsize);
    n += opt.vsize;
    memcpy(p + n, "\r\n", 2);
    c->olen += (size_t)n + 2;
}

static void
emit_get(struct conn *c, uint64_t t)
{
    struct req *r = req_push(c, OP_GET, t);
    char *p;
    int i, n = 3;

    out_reserve(c, (size_t)opt.width * (KEY_MAX + 1) + 8);
    p = c->out + c->olen;
    memcpy(p, "get", 3);
    for (i = 0; i < opt.width; i++) {
        long key = read_key(&c->rng);

        r->keys[i] = key;
        p[n++] = ' ';
        n += key_format(p + n, key);
    }
    r->nkeys = (uint8_t)opt.width;
    memcpy(p + n, "\r\n", 2);
    c->olen += (size_t)n + 2;
}

/* ---- binary protocol (-B) ---- */

#define BIN_SET     0x01
#define BIN_GET     0x00
#define BIN_GETKQ   0x0d
#define BIN_NOOP    0x0a

static void
put32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static uint32_t
get32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;

    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* A request header at p (24 bytes). */
static void
bin_header(char *p, uint8_t opcode, int keylen, int extlen, uint32_t bodylen)
{
    memset(p, 0, 24);
    p[0] = (char)0x80;
    p[1] = (char)opcode;
    p[2] = (char)(keylen >> 8);
    p[3] = (char)keylen;
    p[4] = (char)extlen;
    put32(p + 8, bodylen);
}

static void
emit_set_bin(struct conn *c, long key, uint32_t ver, uint64_t t)
{
    struct req *r = req_push(c, OP_SET, t);
    char *p, kbuf[KEY_MAX + 1];
    int klen = key_format(kbuf, key);

    r->keys[0] = key;
    r->nkeys = 1;
    r->ver = ver;
    out_reserve(c, 32 + (size_t)klen + (size_t)opt.vsize);
    p = c->out + c->olen;
    bin_header(p, BIN_SET, klen, 8, (uint32_t)(8 + klen + opt.vsize));
    put32(p + 24, value_flags(key, ver));
    put32(p + 28, 0);
    memcpy(p + 32, kbuf, (size_t)klen);
    value_fill(p + 32 + klen, key, ver, opt.vsize);
    c->olen += 32 + (size_t)klen + (size_t)opt.vsize;
}

static void
emit_get_bin(struct conn *c, uint64_t t)
{
    struct req *r = req_push(c, OP_GET, t);
    uint8_t opcode = opt.width > 1 ? BIN_GETKQ : BIN_GET;
    int i;

    out_reserve(c, (size_t)opt.width * (KEY_MAX + 24) + 24);
    for (i = 0; i < opt.width; i++) {
        long key = read_key(&c->rng);
        char *p = c->out + c->olen;
        int klen = key_format(p + 24, key);

        r->keys[i] = key;
        bin_header(p, opcode, klen, 0, (uint32_t)klen);
        c->olen += 24 + (size_t)klen;
    }
    r->nkeys = (uint8_t)opt.width;
    if (opt.width > 1) {
        bin_header(c->out + c->olen, BIN_NOOP, 0, 0, 0);
        c->olen += 24;
    }
}

/* Write what is pending; 0 when all is written or the socket is full, -1 on error. */
static int
conn_flush(struct conn *c)
{
    while (c->opos < c->olen) {
        ssize_t w = c->ssl ? tls_io(c->ssl, c->out + c->opos, c->olen - c->opos, 1)
                           : write(c->fd, c->out + c->opos, c->olen - c->opos);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        c->opos += (size_t)w;
    }
    c->opos = c->olen = 0;
    return 0;
}

/* Reserve one request of the -n budget; 0 when it is spent. */
static int
budget_take(void)
{
    if (opt.count < 0)
        return 1;
    return __atomic_fetch_add(&issued, 1, __ATOMIC_RELAXED) < opt.count;
}

/* Fill the window: prefill sets, or the get/set mix. Returns requests added. */
static int
conn_issue(struct conn *c, uint64_t t, int stopping)
{
    int added = 0;

    if (c->dead)
        return 0;
    if (prefill_phase) {
        while (c->n < opt.prefill_depth && c->pf_next < c->pf_end) {
            long key = c->pf_next++;

            (opt.binary ? emit_set_bin : emit_set)(c, key,
                __atomic_add_fetch(&versions[key], 1, __ATOMIC_RELAXED), t);
            added++;
        }
        return added;
    }
    while (!stopping && c->n < opt.depth && budget_take()) {
        if (rng_below(&c->rng, opt.gets + opt.sets) < opt.gets) {
            (opt.binary ? emit_get_bin : emit_get)(c, t);
        } else {
            long key = rng_below(&c->rng, opt.keys);

            (opt.binary ? emit_set_bin : emit_set)(c, key,
                __atomic_add_fetch(&versions[key], 1, __ATOMIC_RELAXED), t);
        }
        added++;
    }
    return added;
}

/* ---- reply parsing ---- */

static int
starts(const char *p, size_t len, const char *word)
{
    size_t n = strlen(word);

    return len >= n && memcmp(p, word, n) == 0;
}

/*
 * Check one VALUE against the key expected at its position. Returns 0 if the
 * value is right.
 */
static int
value_check(struct stats *st, struct conn *c, long key, unsigned long flags,
            const char *data, long bytes)
{
    static __thread char *expect;  /* the pattern, PATTERN_LEN bytes */
    uint32_t ver, top;
    int body, at;
    char *end;
    unsigned long v;

    if (bytes != opt.vsize) {
        report_error(st, c, "key %s%ld: value of %ld bytes, expected %d", opt.prefix, key,
                     bytes, opt.vsize);
        return -1;
    }
    v = strtoul(data, &end, 10);
    if (end != data + 10 || *end != ':' || v == 0 || v > UINT32_MAX) {
        report_error(st, c, "key %s%ld: value does not start with a version: '%.12s'",
                     opt.prefix, key, data);
        return -1;
    }
    ver = (uint32_t)v;
    top = __atomic_load_n(&versions[key], __ATOMIC_RELAXED);
    if (opt.prefill && ver > top) {
        report_error(st, c, "key %s%ld: version %u was never written (highest %u)",
                     opt.prefix, key, ver, top);
        return -1;
    }
    if (flags != value_flags(key, ver)) {
        report_error(st, c, "key %s%ld: flags %lu, expected %u for version %u",
                     opt.prefix, key, flags, value_flags(key, ver), ver);
        return -1;
    }
    if (expect == NULL)
        expect = xmalloc(PATTERN_LEN);
    body = opt.vsize - VALUE_HEAD;
    pattern_fill(expect, key, ver, body < PATTERN_LEN ? body : PATTERN_LEN);
    for (at = 0; at < body; at += PATTERN_LEN) {
        int n = body - at < PATTERN_LEN ? body - at : PATTERN_LEN;

        if (memcmp(expect, data + VALUE_HEAD + at, (size_t)n) != 0) {
            report_error(st, c, "key %s%ld: value bytes differ from version %u "
                         "(in the %d bytes from byte %d)", opt.prefix, key, ver, n,
                         VALUE_HEAD + at);
            return -1;
        }
    }
    return 0;
}

/*
 * Parse the reply of the request at the head of the FIFO.
 * Returns 1 when it is complete, 0 when more bytes are needed, -1 when the
 * stream cannot be understood (the connection is then given up).
 */
static int
reply_parse(struct stats *st, struct conn *c, struct req *r)
{
    for (;;) {
        char *p = c->in + c->ipos, *eol;
        size_t avail = c->ilen - c->ipos, llen;

        eol = memmem(p, avail, "\r\n", 2);
        if (eol == NULL) {
            if (avail > LINE_MAX_BYTES) {
                report_error(st, c, "reply line longer than %d bytes", LINE_MAX_BYTES);
                return -1;
            }
            return 0;
        }
        llen = (size_t)(eol - p);

        if (r->op == OP_SET) {
            if (!(llen == 6 && memcmp(p, "STORED", 6) == 0))
                report_error(st, c, "set %s%ld: '%.*s'", opt.prefix, r->keys[0],
                             (int)(llen > 200 ? 200 : llen), p);
            c->ipos += llen + 2;
            return 1;
        }

        if (llen == 3 && memcmp(p, "END", 3) == 0) {
            c->ipos += llen + 2;
            if (r->got < r->nkeys && opt.prefill) {
                int missed = r->nkeys - r->got;

                st->misses += (uint64_t)missed;
                report_error(st, c, "get: %d of %d key(s) missing after the prefill "
                             "(first %s%ld)", missed, r->nkeys, opt.prefix, r->keys[r->got]);
                st->errors += (uint64_t)missed - 1;
            }
            return 1;
        }
        if (starts(p, llen, "VALUE ")) {
            char key[KEY_MAX + 1], kbuf[KEY_MAX + 1];
            unsigned long flags;
            long bytes;
            int klen, i, found = -1;

            if (sscanf(p + 6, "%250s %lu %ld", key, &flags, &bytes) != 3 || bytes < 0
                || bytes > VALUE_MAX) {
                report_error(st, c, "bad VALUE line '%.*s'", (int)(llen > 200 ? 200 : llen), p);
                return -1;
            }
            if (avail < llen + 2 + (size_t)bytes + 2)
                return 0;           /* wait for the whole data block */
            if (memcmp(eol + 2 + bytes, "\r\n", 2) != 0) {
                report_error(st, c, "VALUE %s: data block not followed by \\r\\n", key);
                return -1;
            }
            klen = (int)strlen(key);
            for (i = r->got; i < r->nkeys; i++) {
                if (key_format(kbuf, r->keys[i]) == klen && memcmp(kbuf, key, (size_t)klen) == 0) {
                    found = i;
                    break;
                }
            }
            if (found < 0) {
                report_error(st, c, "VALUE %s: key not asked (or out of order)", key);
            } else {
                if (found > r->got && opt.prefill) {
                    int missed = found - r->got;

                    st->misses += (uint64_t)missed;
                    report_error(st, c, "get: key %s%ld missing after the prefill",
                                 opt.prefix, r->keys[r->got]);
                    st->errors += (uint64_t)missed - 1;
                }
                value_check(st, c, r->keys[found], flags, eol + 2, bytes);
                r->got = (uint8_t)(found + 1);
            }
            c->ipos += llen + 2 + (size_t)bytes + 2;
            continue;
        }
        if (starts(p, llen, "SERVER_ERROR") || starts(p, llen, "CLIENT_ERROR")
            || (llen == 5 && memcmp(p, "ERROR", 5) == 0)) {
            report_error(st, c, "get %s%ld...: '%.*s'", opt.prefix, r->keys[0],
                         (int)(llen > 200 ? 200 : llen), p);
            c->ipos += llen + 2;
            return 1;
        }
        report_error(st, c, "unexpected reply line '%.*s'", (int)(llen > 200 ? 200 : llen), p);
        return -1;
    }
}

/* A get's key at position found was answered; keys before it missed. */
static void
get_answered(struct stats *st, struct conn *c, struct req *r, int found)
{
    if (found > r->got && opt.prefill) {
        int missed = found - r->got;

        st->misses += (uint64_t)missed;
        report_error(st, c, "get: key %s%ld missing after the prefill", opt.prefix,
                     r->keys[r->got]);
        st->errors += (uint64_t)missed - 1;
    }
    r->got = (uint8_t)(found + 1);
}

/*
 * -B: the binary replies of the request at the head: one response for a Set
 * or a single Get; for GetKQ...Noop, a response per hit, then the Noop's.
 * Same return values as reply_parse.
 */
static int
reply_parse_bin(struct stats *st, struct conn *c, struct req *r)
{
    for (;;) {
        const char *p = c->in + c->ipos;
        size_t avail = c->ilen - c->ipos;
        uint32_t body, status, extlen, keylen;
        const char *key, *value;
        uint32_t vlen;
        char kbuf[KEY_MAX + 1];
        int i, found = -1;

        if (avail < 24)
            return 0;
        body = get32(p + 8);
        if ((unsigned char)p[0] != 0x81 || body > VALUE_MAX + 1024) {
            report_error(st, c, "bad binary response header (magic 0x%02x, body %u)",
                         (unsigned char)p[0], body);
            return -1;
        }
        if (avail < 24 + (size_t)body)
            return 0;
        status = (uint32_t)(unsigned char)p[6] << 8 | (unsigned char)p[7];
        extlen = (unsigned char)p[4];
        keylen = (uint32_t)(unsigned char)p[2] << 8 | (unsigned char)p[3];
        key = p + 24 + extlen;
        value = key + keylen;
        vlen = body - extlen - keylen;
        c->ipos += 24 + (size_t)body;
        if ((unsigned char)p[1] == BIN_NOOP) {
            get_answered(st, c, r, r->nkeys);      /* keys not answered missed */
            r->got = r->nkeys;
            return 1;
        }
        if (r->op == OP_SET) {
            if (status != 0)
                report_error(st, c, "set %s%ld: status 0x%02x '%.*s'", opt.prefix, r->keys[0],
                             status, (int)(vlen > 200 ? 200 : vlen), value);
            return 1;
        }
        if (status != 0 || extlen != 4) {
            if (status == 1 && opt.width == 1) {
                get_answered(st, c, r, 1);      /* a miss of the only key */
                return 1;
            }
            report_error(st, c, "get %s%ld: status 0x%02x '%.*s'", opt.prefix, r->keys[0],
                         status, (int)(vlen > 200 ? 200 : vlen), value);
            return opt.width == 1 ? 1 : -1;
        }
        if (opt.width == 1) {
            found = 0;
        } else {
            for (i = r->got; i < r->nkeys; i++) {
                int klen = key_format(kbuf, r->keys[i]);

                if ((uint32_t)klen == keylen && memcmp(kbuf, key, keylen) == 0) {
                    found = i;
                    break;
                }
            }
        }
        if (found < 0) {
            report_error(st, c, "GetKQ %.*s: key not asked (or out of order)", (int)keylen, key);
            continue;
        }
        value_check(st, c, r->keys[found], get32(p + 24), value, vlen);
        if (opt.width == 1) {
            r->got = 1;
            return 1;
        }
        r->got = (uint8_t)(found + 1);
    }
}

/* Give up a connection: its requests in flight count as errors. */
static void
conn_kill(struct stats *st, struct conn *c, int ep)
{
    if (c->dead)
        return;
    st->errors += (uint64_t)c->n;
    c->n = 0;
    c->dead = 1;
    if (ep >= 0)
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

/* Read what is there and complete requests. Returns requests completed, -1 on EOF/error. */
static int
conn_read(struct stats *st, struct conn *c)
{
    int done = 0;
    uint64_t t;

    if (c->icap - c->ilen < 16384) {
        if (c->ipos > 0) {
            memmove(c->in, c->in + c->ipos, c->ilen - c->ipos);
            c->ilen -= c->ipos;
            c->ipos = 0;
        }
        if (c->icap - c->ilen < 16384) {
            c->icap *= 2;
            c->in = realloc(c->in, c->icap);
            if (c->in == NULL)
                die("out of memory");
        }
    }
    for (;;) {
        /* One byte is kept for a NUL, so sscanf stops at the end of what was read. */
        ssize_t n = c->ssl ? tls_io(c->ssl, c->in + c->ilen, c->icap - c->ilen - 1, 0)
                           : read(c->fd, c->in + c->ilen, c->icap - c->ilen - 1);

        if (n > 0) {
            c->ilen += (size_t)n;
            c->in[c->ilen] = '\0';
            if (c->ssl && SSL_pending(c->ssl) > 0) {
                /* Decrypted bytes epoll cannot see: take them now. */
                if (c->icap - c->ilen < 16384) {
                    c->icap *= 2;
                    c->in = realloc(c->in, c->icap);
                    if (c->in == NULL)
                        die("out of memory");
                }
                continue;
            }
            break;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        report_error(st, c, "connection %s", n == 0 ? "closed by the target" : strerror(errno));
        return -1;
    }
    t = now_ns();
    while (c->n > 0) {
        struct req *r = &c->q[c->head];
        int rc = opt.binary ? reply_parse_bin(st, c, r) : reply_parse(st, c, r);

        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        if (!prefill_phase) {
            st->hist[hist_index(t - r->t0)]++;
            st->done++;
            st->keys += r->nkeys;
            st->last_ns = t;
        }
        c->head = (c->head + 1) % c->window;
        c->n--;
        done++;
    }
    if (c->ipos == c->ilen)
        c->ipos = c->ilen = 0;
    if (c->n == 0 && c->ipos < c->ilen) {
        report_error(st, c, "%zu unexpected bytes from the target", c->ilen - c->ipos);
        return -1;
    }
    return done;
}

static void
conn_want_out(struct conn *c, int ep, int want)
{
    struct epoll_event ev;

    if (c->want_out == want || c->dead)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

/*
 * One event loop over a set of connections, until every connection is idle
 * and nothing more may be issued. Used for the prefill (main thread) and for
 * each worker thread's run.
 */
static void
loop_run(struct thread *th)
{
    struct epoll_event evs[64];
    uint64_t t = now_ns(), last_progress = t;
    int i, stopping = 0;

    for (i = 0; i < th->nconns; i++) {
        struct conn *c = th->conns[i];
        struct epoll_event ev;

        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        c->want_out = 0;
        if (epoll_ctl(th->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl: %s", strerror(errno));
        conn_issue(c, t, 0);
        if (conn_flush(c) < 0)
            conn_kill(&th->st, c, th->ep);
        conn_want_out(c, th->ep, c->olen > c->opos);
    }

    for (;;) {
        int n, busy = 0;

        for (i = 0; i < th->nconns; i++)
            busy += th->conns[i]->n;
        t = now_ns();
        if (!prefill_phase && t >= deadline_ns)
            stopping = 1;
        if (busy == 0) {
            /* Idle: everything issued has been answered and nothing more comes. */
            int more = 0;

            for (i = 0; i < th->nconns && !stopping; i++) {
                struct conn *c = th->conns[i];

                if (conn_issue(c, t, stopping) > 0) {
                    more = 1;
                    last_progress = t;
                    if (conn_flush(c) < 0)
                        conn_kill(&th->st, c, th->ep);
                    conn_want_out(c, th->ep, c->olen > c->opos);
                }
            }
            if (!more)
                break;
        }
        if (t - last_progress > (uint64_t)(opt.stall * 1e9)) {
            fprintf(stderr, "loadgen: no reply for %.1f s; giving up\n", opt.stall);
            for (i = 0; i < th->nconns; i++)
                conn_kill(&th->st, th->conns[i], th->ep);
            break;
        }

        n = epoll_wait(th->ep, evs, 64, 100);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        t = now_ns();
        if (!prefill_phase && t >= deadline_ns)
            stopping = 1;
        for (i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            int got;

            if (c->dead)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                got = conn_read(&th->st, c);
                if (got < 0) {
                    conn_kill(&th->st, c, th->ep);
                    continue;
                }
                if (got > 0) {
                    last_progress = t;
                    conn_issue(c, t, stopping);
                }
            }
            if (conn_flush(c) < 0) {
                report_error(&th->st, c, "write: %s", strerror(errno));
                conn_kill(&th->st, c, th->ep);
                continue;
            }
            conn_want_out(c, th->ep, c->olen > c->opos);
        }
    }
    for (i = 0; i < th->nconns; i++)
        if (!th->conns[i]->dead)
            epoll_ctl(th->ep, EPOLL_CTL_DEL, th->conns[i]->fd, NULL);
}

static void *
thread_main(void *arg)
{
    struct thread *th = arg;

    th->start_ns = now_ns();
    loop_run(th);
    return NULL;
}

/* ---- command line ---- */

static void
usage(FILE *f)
{
    fprintf(f,
"Usage: loadgen [options]\n"
"  -s, --server HOST:PORT   target (default 127.0.0.1:11211)\n"
"  -c, --conns N            connections (default 50)\n"
"  -P, --pipeline N         requests in flight per connection (default 1, max %d)\n"
"  -r, --ratio GETS:SETS    get:set ratio (default 10:1; 1:0 = only gets)\n"
"  -v, --value BYTES        value size (default 100, %d..%d)\n"
"  -k, --keys N             keyspace size (default 10000)\n"
"  -m, --multiget N         keys per get (default 1, max %d)\n"
"  -d, --duration SECONDS   run time (default 10; with -n only: a %.0f s limit)\n"
"  -n, --requests N         stop after N requests (0 with -f: prefill only)\n"
"  -S, --seed N             random seed (default 1)\n"
"  -f, --prefill            set every key once first (a miss is then an error)\n"
"  -F, --prefill-depth N    sets in flight per connection in the prefill (default %d)\n"
"  -T, --threads N          threads (default 1)\n"
"  -K, --key-prefix STR     key prefix (default \"bench:\")\n"
"  -W, --stall SECONDS      give up when no reply comes for this long (default 5)\n"
"  -w, --wait SECONDS       keep retrying the first connect this long (default 0)\n"
"  -t, --tls CAFILE         connect with TLS, verifying the target against CAFILE\n"
"  -B, --binary             speak memcached's binary protocol\n"
"  -H, --hot N:PCT          reads: PCT%% on the first N keys, Zipf over the rest\n"
"  -Q, --hot-prefix STR     the first N keys of -H take this prefix instead of -K's\n"
"  -C, --cpu-of PID         also print cpu_us: PID's CPU time (user + system) per request\n"
"                           over the timed run (the target's), self_cpu_us: loadgen's, and\n"
"                           busy_pct: how busy the machine's CPUs were\n"
"  -M, --servers-cpu P,P..  also print servers_cpu_us: these processes' CPU time together\n"
"                           per request (the servers behind a proxy; up to %d)\n"
"  -h, --help\n"
"Prints one line: ops (requests/s), keys (keys/s), p50_us, p99_us, errors, ...\n"
"Exit status: 0 fine, 1 verification or reply errors, 2 usage or connect failure.\n",
        DEPTH_MAX, VALUE_MIN, VALUE_MAX, WIDTH_MAX, N_LIMIT_SECONDS, PREFILL_DEPTH,
        CPU_PIDS_MAX);
}

static long
read_key(uint64_t *rng)
{
    long lo = 0, hi;
    double u;

    if (opt.hot_keys == 0)
        return rng_below(rng, opt.keys);
    if (rng_below(rng, 100) < opt.hot_pct || zipf_n == 0)
        return rng_below(rng, opt.hot_keys);
    u = (double)(rng_next(rng) >> 11) / 9007199254740992.0;
    hi = zipf_n - 1;
    while (lo < hi) {
        long mid = (lo + hi) / 2;

        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return opt.hot_keys + lo;
}

/* "A:B" in arg: cuts it at the colon and returns B (A stays in arg). */
static char *
split_pair(const char *name, const char *form, char *arg)
{
    char *colon = strchr(arg, ':');

    if (colon == NULL)
        die("%s: expected %s, got '%s'", name, form, arg);
    *colon = '\0';
    return colon + 1;
}

static void
parse_args(int argc, char **argv)
{
    static const struct option longs[] = {
        { "server", 1, NULL, 's' },   { "conns", 1, NULL, 'c' },
        { "pipeline", 1, NULL, 'P' }, { "ratio", 1, NULL, 'r' },
        { "value", 1, NULL, 'v' },    { "keys", 1, NULL, 'k' },
        { "multiget", 1, NULL, 'm' }, { "duration", 1, NULL, 'd' },
        { "requests", 1, NULL, 'n' }, { "seed", 1, NULL, 'S' },
        { "prefill", 0, NULL, 'f' },  { "threads", 1, NULL, 'T' },
        { "prefill-depth", 1, NULL, 'F' },
        { "key-prefix", 1, NULL, 'K' }, { "stall", 1, NULL, 'W' },
        { "wait", 1, NULL, 'w' },     { "help", 0, NULL, 'h' },
        { "tls", 1, NULL, 't' },      { "binary", 0, NULL, 'B' },
        { "hot", 1, NULL, 'H' },       { "hot-prefix", 1, NULL, 'Q' },
        { "cpu-of", 1, NULL, 'C' },   { "servers-cpu", 1, NULL, 'M' },
        { NULL, 0, NULL, 0 }
    };
    char *colon, *end;
    int ch;

    opt.host = "127.0.0.1";
    opt.port = "11211";
    opt.conns = 50;
    opt.depth = 1;
    opt.gets = 10;
    opt.sets = 1;
    opt.vsize = 100;
    opt.keys = 10000;
    opt.width = 1;
    opt.count = -1;
    opt.seed = 1;
    opt.threads = 1;
    opt.prefix = "bench:";
    opt.prefill_depth = PREFILL_DEPTH;
    opt.stall = 5;

    while ((ch = getopt_long(argc, argv, "s:c:P:r:v:k:m:d:n:S:fF:T:K:W:w:t:BH:Q:C:M:h", longs, NULL)) != -1) {
        switch (ch) {
        case 's':
            colon = strrchr(optarg, ':');
            if (colon == NULL || colon == optarg || colon[1] == '\0')
                die("-s: expected HOST:PORT, got '%s'", optarg);
            *colon = '\0';
            opt.host = optarg;
            opt.port = colon + 1;
            break;
        case 'c': opt.conns = (int)num_arg("-c", optarg, 1, 100000); break;
        case 'P': opt.depth = (int)num_arg("-P", optarg, 1, DEPTH_MAX); break;
        case 'r':
            colon = split_pair("-r", "GETS:SETS", optarg);
            opt.gets = (int)num_arg("-r", optarg, 0, 1000000);
            opt.sets = (int)num_arg("-r", colon, 0, 1000000);
            if (opt.gets + opt.sets == 0)
                die("-r: 0:0 issues nothing");
            break;
        case 'v': opt.vsize = (int)num_arg("-v", optarg, VALUE_MIN, VALUE_MAX); break;
        case 'k': opt.keys = (long)num_arg("-k", optarg, 1, 100000000); break;
        case 'm': opt.width = (int)num_arg("-m", optarg, 1, WIDTH_MAX); break;
        case 'd':
            opt.seconds = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(opt.seconds > 0) || opt.seconds > 86400)
                die("-d: '%s' is not a duration in seconds", optarg);
            break;
        case 'n': opt.count = num_arg("-n", optarg, 0, LLONG_MAX / 2); break;
        case 'S': opt.seed = (uint64_t)num_arg("-S", optarg, 0, LLONG_MAX); break;
        case 'f': opt.prefill = 1; break;
        case 'F': opt.prefill_depth = (int)num_arg("-F", optarg, 1, DEPTH_MAX); break;
        case 'T': opt.threads = (int)num_arg("-T", optarg, 1, 256); break;
        case 'K':
            if (strlen(optarg) > PREFIX_MAX || strpbrk(optarg, " \t\r\n") != NULL)
                die("-K: a prefix of at most %d bytes without spaces", PREFIX_MAX);
            opt.prefix = optarg;
            break;
        case 'W':
            opt.stall = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(opt.stall > 0))
                die("-W: '%s' is not a number of seconds", optarg);
            break;
        case 'w':
            opt.wait = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || opt.wait < 0)
                die("-w: '%s' is not a number of seconds", optarg);
            break;
        case 't': opt.tls_ca = optarg; break;
        case 'B': opt.binary = 1; break;
        case 'Q': opt.hot_prefix = optarg; break;
        case 'C': opt.cpu_pid = (long)num_arg("-C", optarg, 1, INT_MAX); break;
        case 'M': {
            char *pid;

            for (pid = strtok(optarg, ","); pid != NULL; pid = strtok(NULL, ",")) {
                if (opt.nserver_pids == CPU_PIDS_MAX)
                    die("-M: more than %d processes", CPU_PIDS_MAX);
                opt.server_pids[opt.nserver_pids++] = (long)num_arg("-M", pid, 1, INT_MAX);
            }
            break;
        }
        case 'H':
            colon = split_pair("-H", "N:PCT", optarg);
            opt.hot_keys = (long)num_arg("-H", optarg, 1, 100000000);
            opt.hot_pct = (int)num_arg("-H", colon, 0, 100);
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc)
        die("unexpected argument '%s'", argv[optind]);
    if (opt.count == 0 && !opt.prefill)
        die("-n 0 without -f does nothing");
    if (opt.seconds == 0)
        opt.seconds = opt.count >= 0 ? N_LIMIT_SECONDS : 10;
    if (opt.threads > opt.conns)
        opt.threads = opt.conns;
}

/*
 * Process pid's CPU time so far (user + system, in clock ticks, fields 14
 * and 15 of /proc/PID/stat), or -1 when it cannot be read. The command name
 * (field 2) may hold spaces: fields are counted from its closing ')'.
 */
static long long
cpu_ticks(long pid)
{
    char path[64], line[1024], *p;
    unsigned long long utime, stime;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    if ((p = strrchr(line, ')')) == NULL
        || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                  &utime, &stime) != 2)
        return -1;
    return (long long)(utime + stime);
}

/* The CPU ticks of the -C process, of the -M ones together, loadgen's own,
 * and the machine's: busy and all (the first line of /proc/stat). */
struct cpu_sample {
    long long target, servers, self;
    unsigned long long busy, all;
};

static void
machine_ticks(unsigned long long *busy, unsigned long long *all)
{
    unsigned long long v[8] = { 0 };
    FILE *f = fopen("/proc/stat", "r");
    int i;

    *busy = *all = 0;
    if (f == NULL)
        return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) == 8) {
        for (i = 0; i < 8; i++)
            *all += v[i];
        *busy = *all - v[3] - v[4];     /* all but idle and iowait */
    }
    fclose(f);
}

static struct cpu_sample
cpu_sample(void)
{
    struct cpu_sample cs = { -1, 0, cpu_ticks((long)getpid()), 0, 0 };
    int i;

    machine_ticks(&cs.busy, &cs.all);
    if (opt.cpu_pid > 0)
        cs.target = cpu_ticks(opt.cpu_pid);
    for (i = 0; i < opt.nserver_pids; i++) {
        long long t = cpu_ticks(opt.server_pids[i]);

        cs.servers = t < 0 || cs.servers < 0 ? -1 : cs.servers + t;
    }
    return cs;
}

/*
 * " NAME=us per request" from two readings, or " NAME=-" when a process
 * could not be read. A tick is 1/sysconf(_SC_CLK_TCK) s (10 ms): a run of a
 * few seconds at some hundreds of ticks reads to about 1%.
 */
static void
print_cpu(const char *name, long long start, long long end, uint64_t requests)
{
    if (start < 0 || end < start || requests == 0)
        printf(" %s=-", name);
    else
        printf(" %s=%.2f", name, (double)(end - start) * 1e6 / (double)sysconf(_SC_CLK_TCK)
               / (double)requests);
}

int
main(int argc, char **argv)
{
    struct thread pf, *ths;
    struct conn **conns;
    struct stats total;
    uint64_t t_prefill, t_start, t_end = 0, wait_until;
    double seconds, prefill_s = 0;
    struct cpu_sample cpu_start, cpu_end;
    int i;

    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    versions = xmalloc(sizeof(*versions) * (size_t)opt.keys);
    if (opt.hot_keys > opt.keys)
        die("-H: %ld hot keys in a keyspace of %ld", opt.hot_keys, opt.keys);
    if (opt.hot_keys > 0)
        zipf_build(opt.keys - opt.hot_keys);
    if (opt.tls_ca != NULL)
        tls_init();

    wait_until = now_ns() + (uint64_t)(opt.wait * 1e9);
    conns = xmalloc(sizeof(*conns) * (size_t)opt.conns);
    for (i = 0; i < opt.conns; i++)
        conns[i] = conn_open(i, wait_until);

    /* Prefill on the main thread: connection i sets its slice of the keyspace. */
    memset(&pf, 0, sizeof(pf));
    if (opt.prefill) {
        prefill_phase = 1;
        for (i = 0; i < opt.conns; i++) {
            conns[i]->pf_next = opt.keys * i / opt.conns;
            conns[i]->pf_end = opt.keys * (i + 1) / opt.conns;
        }
        pf.ep = epoll_create1(0);
        pf.conns = conns;
        pf.nconns = opt.conns;
        t_prefill = now_ns();
        loop_run(&pf);
        prefill_s = (double)(now_ns() - t_prefill) / 1e9;
        close(pf.ep);
        prefill_phase = 0;
        if (pf.st.errors > 0) {
            fprintf(stderr, "loadgen: %" PRIu64 " error(s) in the prefill\n", pf.st.errors);
            printf("target=%s:%s requests=0 errors=%" PRIu64 " prefill_s=%.3f\n",
                   opt.host, opt.port, pf.st.errors, prefill_s);
            return 1;
        }
    }

    memset(&total, 0, sizeof(total));
    ths = xmalloc(sizeof(*ths) * (size_t)opt.threads);
    cpu_start = cpu_sample();
    t_start = now_ns();
    deadline_ns = t_start + (uint64_t)(opt.seconds * 1e9);
    if (opt.count != 0) {
        for (i = 0; i < opt.threads; i++) {
            int j, k = 0;

            ths[i].ep = epoll_create1(0);
            ths[i].nconns = opt.conns / opt.threads + (i < opt.conns % opt.threads);
            ths[i].conns = xmalloc(sizeof(struct conn *) * (size_t)ths[i].nconns);
            for (j = i; j < opt.conns; j += opt.threads)
                ths[i].conns[k++] = conns[j];
            if (pthread_create(&ths[i].tid, NULL, thread_main, &ths[i]) != 0)
                die("pthread_create failed");
        }
        for (i = 0; i < opt.threads; i++) {
            int b;

            pthread_join(ths[i].tid, NULL);
            total.done += ths[i].st.done;
            total.keys += ths[i].st.keys;
            total.errors += ths[i].st.errors;
            total.misses += ths[i].st.misses;
            if (ths[i].st.last_ns > t_end)
                t_end = ths[i].st.last_ns;
            for (b = 0; b < HIST_BUCKETS; b++)
                total.hist[b] += ths[i].st.hist[b];
        }
    }
    cpu_end = cpu_sample();
    if (opt.count > 0 && total.done + total.errors < (uint64_t)opt.count) {
        fprintf(stderr, "loadgen: %" PRIu64 " of %lld requests done in the %.0f s limit\n",
                total.done, opt.count, opt.seconds);
        total.errors++;
    }
    if (t_end < t_start)
        t_end = t_start;
    seconds = (double)(t_end - t_start) / 1e9;
    if (seconds <= 0)
        seconds = 1e-9;
    {
        uint64_t maxv = 0;
        int b;

        for (b = HIST_BUCKETS - 1; b >= 0; b--)
            if (total.hist[b]) {
                maxv = (uint64_t)hist_value(b);
                break;
            }
        printf("target=%s:%s conns=%d pipeline=%d multiget=%d ratio=%d:%d value=%d keys=%ld "
               "requests=%" PRIu64 " seconds=%.3f ops=%.0f keys_s=%.0f p50_us=%.1f "
               "p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%" PRIu64 " misses=%" PRIu64
               " prefill_s=%.3f",
               opt.host, opt.port, opt.conns, opt.depth, opt.width, opt.gets, opt.sets,
               opt.vsize, opt.keys, total.done, seconds,
               opt.count == 0 ? 0.0 : (double)total.done / seconds,
               opt.count == 0 ? 0.0 : (double)total.keys / seconds,
               hist_percentile(total.hist, total.done, 50) / 1000.0,
               hist_percentile(total.hist, total.done, 99) / 1000.0,
               hist_percentile(total.hist, total.done, 99.9) / 1000.0,
               (double)maxv / 1000.0, total.errors, total.misses, prefill_s);
    }
    if (opt.cpu_pid > 0)
        print_cpu("cpu_us", cpu_start.target, cpu_end.target, total.done);
    if (opt.nserver_pids > 0)
        print_cpu("servers_cpu_us", cpu_start.servers, cpu_end.servers, total.done);
    if (opt.cpu_pid > 0 || opt.nserver_pids > 0) {
        print_cpu("self_cpu_us", cpu_start.self, cpu_end.self, total.done);
        if (cpu_end.all > cpu_start.all)
            printf(" busy_pct=%.0f", 100.0 * (double)(cpu_end.busy - cpu_start.busy)
                   / (double)(cpu_end.all - cpu_start.all));
    }
    printf("\n");
    fflush(stdout);
    return total.errors > 0 ? 1 : 0;
}
