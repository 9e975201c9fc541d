/*
 * capserver.c: a memcached server of fixed capacity, for the hot-key benchmark
 * (scripts/bench-hot.sh).
 *
 * It stands in front of one real memcached and relays bytes both ways, one
 * upstream connection per client connection, but lets at most RATE reads a
 * second through: the memcached of a hot key that has more requests than it
 * can serve, whose replies come late rather than never. Counting runs over the
 * text protocol's request lines from the client:
 *
 * - a get/gets line costs one unit per key (luagent batches the gets of many
 *   clients into one `get k1 k2 ...`, and memcached's get_hits + get_misses
 *   count keys), a gat/gats line one per key after the exptime;
 * - any other line costs one unit; the data block of a storage command
 *   (set/add/replace/append/prepend/cas by the bytes field, ms by its datalen)
 *   passes uncharged;
 * - replies (upstream to client) are never held.
 *
 * The budget is a token bucket refilled from the monotonic clock, RATE units a
 * second, holding at most BURST (default: 100 ms worth, so that the capper
 * itself being scheduled late on a busy machine costs no capacity; under a
 * steady overload the bucket is always empty anyway). A line is let through
 * while the bucket is above zero and takes its whole cost, so a 100-key batch
 * may leave it in debt: the average stays RATE whatever the batch sizes. When
 * the bucket is empty, the connection waits in a FIFO and its client is not
 * read until a 1 ms timer tick (timerfd, armed only while someone waits) has
 * refilled the bucket and served the connections ahead of it.
 *
 * Counts (requests, units, the time at least one connection waited, ...) are
 * written as one line to whoever connects to the stats port (-s), and to
 * stdout on SIGTERM or SIGINT, which end the program.
 *
 * One thread, epoll (level-triggered), non-blocking sockets, two fixed buffers
 * of BUF_SIZE per connection. The binary protocol is not understood. A line
 * longer than the buffer is charged one unit and passed through.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE                 /* accept4, memrchr */
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BENCH_TOOL "capserver"
#include "tool.h"

#define BUF_SIZE        (64 * 1024) /* per direction and connection */
#define NS              1000000000LL
#define TICK_NS         1000000LL   /* the refill timer's period while someone waits */
#define EVENTS_MAX      64
#define WORDS_MAX       8           /* words of a line looked at for its cost */

enum kind { KIND_LISTEN, KIND_STATS, KIND_CLIENT, KIND_UPSTREAM, KIND_TIMER, KIND_SIGNAL };

struct watch {                      /* what an epoll event is about */
    enum kind    kind;
    int          fd;
    struct conn *conn;              /* KIND_CLIENT and KIND_UPSTREAM */
};

struct pipebuf {                    /* bytes in [start, end) */
    char   data[BUF_SIZE];
    size_t start, end;
};

struct conn {
    struct watch    client, upstream;
    struct pipebuf  up;             /* client to upstream: [start, released) may go */
    size_t          released;       /* [released, end) waits for the meter */
    long long       skip;           /* data-block bytes to pass uncharged */
    int             in_long_line;   /* a line longer than the buffer is passing */
    struct pipebuf  down;           /* upstream to client */
    uint32_t        cev, uev;       /* events registered for each side */
    int             waiting;        /* in the wait queue */
    int             dead;
    struct conn    *next;           /* wait queue or dead list */
};

struct meter {
    long long   rate;               /* units a second */
    long long   credit;             /* in units of 1/NS of a unit */
    long long   burst;              /* credit's ceiling, same units */
    long long   last_ns;            /* when credit was last refilled */
};

struct counts {
    unsigned long long requests;    /* request lines let through */
    unsigned long long units;       /* their cost: keys of gets, 1 for the rest */
    unsigned long long waits;       /* times a connection had to wait */
    unsigned long long conns;       /* client connections accepted */
    unsigned long long bytes_up, bytes_down;
    long long          throttled_ns;    /* time with at least one connection waiting */
    long long          throttle_start;  /* when the queue last became non-empty */
};

static int              ep;
static struct meter     meter;
static struct counts    counts;
static struct conn     *wait_head, *wait_tail;
static struct conn     *dead_list;
static struct watch     timer_watch;
static struct addrinfo *upstream_ai;
static int              running = 1;

static long long
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * NS + ts.tv_nsec;
}

/* ---- the token bucket ---- */

static void
meter_refill(long long now)
{
    long long elapsed = now - meter.last_ns;

    if (elapsed > NS)               /* past a second the bucket is full anyway */
        elapsed = NS;
    meter.last_ns = now;
    meter.credit += elapsed * meter.rate;
    if (meter.credit > meter.burst)
        meter.credit = meter.burst;
}

static int
meter_take(long long cost)          /* 1: let through (perhaps into debt), 0: wait */
{
    if (meter.credit <= 0)
        meter_refill(now_ns());
    if (meter.credit <= 0)
        return 0;
    meter.credit -= cost * NS;
    return 1;
}

/* ---- what a request line costs ---- */

static int
line_words(const char *line, size_t len, const char **w, size_t *wl, int max)
{
    size_t i = 0;
    int    n = 0;

    while (i < len) {
        while (i < len && (line[i] == ' ' || line[i] == '\r'))
            i++;
        if (i == len)
            break;
        size_t s = i;
        while (i < len && line[i] != ' ' && line[i] != '\r')
            i++;
        if (n < max) {
            w[n] = line + s;
            wl[n] = i - s;
        }
        n++;
    }
    return n;                       /* all the words, even past max */
}

static int
word_is(const char *w, size_t wl, const char *name)
{
    return wl == strlen(name) && memcmp(w, name, wl) == 0;
}

static long long
word_number(const char *w, size_t wl)   /* -1 unless all digits */
{
    long long v = 0;

    if (wl == 0 || wl > 12)
        return -1;
    for (size_t i = 0; i < wl; i++) {
        if (w[i] < '0' || w[i] > '9')
            return -1;
        v = v * 10 + (w[i] - '0');
    }
    return v;
}

/* The units a line costs, and the data-block bytes that follow it. */
static long long
line_cost(const char *line, size_t len, long long *data_bytes)
{
    const char *w[WORDS_MAX];
    size_t      wl[WORDS_MAX];
    int         n = line_words(line, len, w, wl, WORDS_MAX);
    long long   bytes = -1;

    *data_bytes = 0;
    if (n == 0)
        return 1;
    if (word_is(w[0], wl[0], "get") || word_is(w[0], wl[0], "gets"))
        return n > 2 ? n - 1 : 1;
    if (word_is(w[0], wl[0], "gat") || word_is(w[0], wl[0], "gats"))
        return n > 3 ? n - 2 : 1;
    if (n >= 5 && (word_is(w[0], wl[0], "set") || word_is(w[0], wl[0], "add") ||
                   word_is(w[0], wl[0], "replace") || word_is(w[0], wl[0], "append") ||
                   word_is(w[0], wl[0], "prepend") || word_is(w[0], wl[0], "cas")))
        bytes = word_number(w[4], wl[4]);
    else if (n >= 3 && word_is(w[0], wl[0], "ms"))
        bytes = word_number(w[2], wl[2]);
    if (bytes >= 0)
        *data_bytes = bytes + 2;    /* and its \r\n */
    return 1;
}

/* ---- connections ---- */

static void
watch_set(struct watch *w, uint32_t *have, uint32_t want)
{
    struct epoll_event ev = { .events = want, .data.ptr = w };

    if (*have == want)
        return;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, w->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    *have = want;
}

/* Read from a side only while its buffer has room (and the client only while
 * it is not waiting for the meter); write to a side while bytes wait for it. */
static void
conn_update(struct conn *c)
{
    uint32_t cev = 0, uev = 0;

    if (c->dead)
        return;
    if (!c->waiting && c->up.end - c->up.start < BUF_SIZE)
        cev |= EPOLLIN;
    if (c->down.start < c->down.end)
        cev |= EPOLLOUT;
    if (c->down.end - c->down.start < BUF_SIZE)
        uev |= EPOLLIN;
    if (c->up.start < c->released)
        uev |= EPOLLOUT;
    watch_set(&c->client, &c->cev, cev);
    watch_set(&c->upstream, &c->uev, uev);
}

static void
wait_unlink(struct conn *c)
{
    struct conn **p = &wait_head, *prev = NULL;

    while (*p != NULL && *p != c) {
        prev = *p;
        p = &(*p)->next;
    }
    if (*p == NULL)
        return;
    *p = c->next;
    if (wait_tail == c)
        wait_tail = prev;
    c->next = NULL;
    c->waiting = 0;
}

static void
timer_arm(long long period_ns)      /* 0 disarms */
{
    struct itimerspec its = {
        .it_interval = { .tv_sec = 0, .tv_nsec = period_ns },
        .it_value    = { .tv_sec = 0, .tv_nsec = period_ns },
    };

    if (timerfd_settime(timer_watch.fd, 0, &its, NULL) < 0)
        die("timerfd_settime: %s", strerror(errno));
}

static void
wait_push(struct conn *c)
{
    if (c->waiting)
        return;
    c->waiting = 1;
    c->next = NULL;
    counts.waits++;
    if (wait_tail != NULL)
        wait_tail->next = c;
    else
        wait_head = c;
    wait_tail = c;
    if (counts.throttle_start == 0) {   /* a throttled spell begins */
        counts.throttle_start = now_ns();
        timer_arm(TICK_NS);
    }
}

static void
wait_settle(void)                   /* after the queue may have emptied: the spell ends */
{
    if (wait_head != NULL || counts.throttle_start == 0)
        return;
    counts.throttled_ns += now_ns() - counts.throttle_start;
    counts.throttle_start = 0;
    timer_arm(0);
}

static void
conn_close(struct conn *c)
{
    if (c->dead)
        return;
    wait_unlink(c);
    wait_settle();
    close(c->client.fd);            /* closing drops them from the epoll set */
    close(c->upstream.fd);
    c->dead = 1;
    c->next = dead_list;            /* freed after this batch of events */
    dead_list = c;
}

static void
pipebuf_compact(struct pipebuf *b, size_t *released)
{
    if (b->start == 0)
        return;
    memmove(b->data, b->data + b->start, b->end - b->start);
    if (released != NULL)
        *released -= b->start;
    b->end -= b->start;
    b->start = 0;
}

/* Release the complete request lines (and their data blocks) the bucket pays
 * for; 0 when the connection must wait for a refill. */
static int
conn_meter(struct conn *c)
{
    struct pipebuf *b = &c->up;

    while (c->released < b->end) {
        char  *p = b->data + c->released;
        size_t avail = b->end - c->released;

        if (c->skip > 0) {
            size_t n = (long long)avail < c->skip ? avail : (size_t)c->skip;
            c->released += n;
            c->skip -= (long long)n;
            continue;
        }
        char *nl = memchr(p, '\n', avail);
        if (c->in_long_line) {
            c->released = nl != NULL ? (size_t)(nl + 1 - b->data) : b->end;
            c->in_long_line = nl == NULL;
            continue;
        }
        if (nl == NULL && avail < BUF_SIZE)
            return 1;               /* the rest of the line has not come yet */
        long long data_bytes = 0;
        long long cost = nl != NULL ? line_cost(p, (size_t)(nl - p), &data_bytes) : 1;
        if (!meter_take(cost))
            return 0;
        counts.requests++;
        counts.units += (unsigned long long)cost;
        if (nl == NULL) {           /* a whole buffer without a line end */
            c->released = b->end;
            c->in_long_line = 1;
        } else {
            c->released = (size_t)(nl + 1 - b->data);
            c->skip = data_bytes;
        }
    }
    return 1;
}

static int
fd_write(int fd, struct pipebuf *b, size_t upto, unsigned long long *counter)
{
    while (b->start < upto) {
        ssize_t n = write(fd, b->data + b->start, upto - b->start);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        b->start += (size_t)n;
        *counter += (unsigned long long)n;
    }
    return 0;
}

static int
fd_read(int fd, struct pipebuf *b, size_t *released)   /* -1: closed or failed */
{
    if (b->end == BUF_SIZE)
        pipebuf_compact(b, released);
    if (b->end == BUF_SIZE)
        return 0;
    ssize_t n = read(fd, b->data + b->end, BUF_SIZE - b->end);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0)
        return -1;
    b->end += (size_t)n;
    return 0;
}

/* Meter what the client sent and write what was released upstream. */
static void
conn_pump(struct conn *c)
{
    if (!c->waiting && !conn_meter(c))
        wait_push(c);
    if (fd_write(c->upstream.fd, &c->up, c->released, &counts.bytes_up) < 0) {
        conn_close(c);
        return;
    }
    if (c->up.start == c->up.end) {
        c->up.start = c->up.end = c->released = 0;
    }
    conn_update(c);
}

static void
conn_flush_down(struct conn *c)
{
    if (fd_write(c->client.fd, &c->down, c->down.end, &counts.bytes_down) < 0) {
        conn_close(c);
        return;
    }
    if (c->down.start == c->down.end)
        c->down.start = c->down.end = 0;
    conn_update(c);
}

/* A hang-up or an error on either side ends both: the other side's bytes
 * have nowhere to go (and a hang-up stays reported while reading waits). */
static void
conn_on_client(struct conn *c, uint32_t ev)
{
    if (ev & (EPOLLHUP | EPOLLERR)) {
        conn_close(c);
        return;
    }
    if (ev & EPOLLOUT)
        conn_flush_down(c);
    if (c->dead || !(ev & EPOLLIN))
        return;
    if (fd_read(c->client.fd, &c->up, &c->released) < 0) {
        conn_close(c);
        return;
    }
    if (wait_head != NULL && !c->waiting)
        wait_push(c);               /* behind those already waiting */
    conn_pump(c);
}

static void
conn_on_upstream(struct conn *c, uint32_t ev)
{
    if (ev & (EPOLLHUP | EPOLLERR)) {
        conn_close(c);
        return;
    }
    if (ev & EPOLLOUT)
        conn_pump(c);
    if (c->dead || !(ev & EPOLLIN))
        return;
    if (fd_read(c->upstream.fd, &c->down, NULL) < 0) {
        conn_close(c);
        return;
    }
    conn_flush_down(c);
}

/* A refill tick: serve the waiting connections in order while credit lasts. */
static void
timer_on_tick(void)
{
    uint64_t expirations;

    if (read(timer_watch.fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        die("timerfd read: %s", strerror(errno));
    meter_refill(now_ns());
    while (wait_head != NULL && meter.credit > 0) {
        struct conn *c = wait_head;

        wait_head = c->next;
        if (wait_head == NULL)
            wait_tail = NULL;
        c->next = NULL;
        c->waiting = 0;
        conn_pump(c);
    }
    wait_settle();
}

/* ---- sockets ---- */

static int
listen_on(const char *host, const char *port)
{
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE }, *ai;
    int one = 1, fd, rc = getaddrinfo(host, port, &hints, &ai);

    if (rc != 0)
        die("%s:%s: %s", host, port, gai_strerror(rc));
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0)
        die("listen on %s:%s: %s", host, port, strerror(errno));
    freeaddrinfo(ai);
    return fd;
}

static void
watch_add(struct watch *w, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = w };

    if (epoll_ctl(ep, EPOLL_CTL_ADD, w->fd, &ev) < 0)
        die("epoll_ctl add: %s", strerror(errno));
}

/* Blocking (loopback: at once), with a deadline so a stuck upstream cannot
 * freeze the loop; then non-blocking like every other socket. */
static int
upstream_connect(void)
{
    struct timeval tv = { .tv_sec = 2, .tv_usec = 0 };
    int one = 1, fd = socket(upstream_ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, upstream_ai->ai_addr, upstream_ai->ai_addrlen) < 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void
listen_on_accept(int lfd)
{
    for (;;) {
        int one = 1, cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;
        int ufd = upstream_connect();
        if (ufd < 0) {
            fprintf(stderr, "capserver: upstream connect: %s\n", strerror(errno));
            close(cfd);
            continue;
        }
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL)
            die("out of memory");
        c->client = (struct watch){ KIND_CLIENT, cfd, c };
        c->upstream = (struct watch){ KIND_UPSTREAM, ufd, c };
        c->cev = c->uev = EPOLLIN;
        watch_add(&c->client, EPOLLIN);
        watch_add(&c->upstream, EPOLLIN);
        counts.conns++;
    }
}

static void
counts_format(char *out, size_t len)
{
    long long throttled = counts.throttled_ns;

    if (counts.throttle_start != 0)
        throttled += now_ns() - counts.throttle_start;
    snprintf(out, len, "requests=%llu units=%llu throttled_ms=%lld waits=%llu conns=%llu "
             "bytes_up=%llu bytes_down=%llu rate=%lld\n", counts.requests, counts.units,
             throttled / 1000000, counts.waits, counts.conns, counts.bytes_up,
             counts.bytes_down, meter.rate);
}

static void
stats_on_accept(int lfd)
{
    char line[256];
    int  fd;

    while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        counts_format(line, sizeof line);
        if (write(fd, line, strlen(line)) < 0)
            fprintf(stderr, "capserver: stats write: %s\n", strerror(errno));
        close(fd);
    }
}

/* ---- main ---- */

static void
usage(void)
{
    fprintf(stderr,
        "usage: capserver -p PORT -u HOST:PORT -r RATE [-l HOST] [-b BURST] [-s STATS_PORT]\n"
        "  relays memcached text-protocol connections on -l:-p (127.0.0.1) to the\n"
        "  upstream -u, letting through at most RATE units a second (a get key, or\n"
        "  any other request line), at most BURST (RATE/10, at least 1) at once;\n"
        "  -s: a port that answers one line of counts to each connection\n");
    exit(2);
}

static void
upstream_resolve(const char *spec)
{
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
    char host[256];
    const char *colon = strrchr(spec, ':');
    int rc;

    if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
        usage();
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    rc = getaddrinfo(host, colon + 1, &hints, &upstream_ai);
    if (rc != 0)
        die("%s: %s", spec, gai_strerror(rc));
}

static int
signals_open(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        die("sigprocmask: %s", strerror(errno));
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        die("signalfd: %s", strerror(errno));
    return fd;
}

static void
dispatch(struct watch *w, uint32_t ev)
{
    switch (w->kind) {
    case KIND_LISTEN:   listen_on_accept(w->fd); break;
    case KIND_STATS:    stats_on_accept(w->fd); break;
    case KIND_TIMER:    timer_on_tick(); break;
    case KIND_SIGNAL:   running = 0; break;
    case KIND_CLIENT:
        if (!w->conn->dead)
            conn_on_client(w->conn, ev);
        break;
    case KIND_UPSTREAM:
        if (!w->conn->dead)
            conn_on_upstream(w->conn, ev);
        break;
    }
}

int
main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = NULL, *stats_port = NULL, *upstream = NULL;
    long long burst = 0;
    struct watch listen_watch, stats_watch, signal_watch;
    struct epoll_event evs[EVENTS_MAX];
    char line[256];
    int opt;

    while ((opt = getopt(argc, argv, "l:p:u:r:b:s:h")) != -1) {
        switch (opt) {
        case 'l': host = optarg; break;
        case 'p': port = optarg; break;
        case 'u': upstream = optarg; break;
        case 'r': meter.rate = num_arg("-r", optarg, 1, 100000000); break;
        case 'b': burst = num_arg("-b", optarg, 0, LLONG_MAX / NS); break;
        case 's': stats_port = optarg; break;
        default:  usage();
        }
    }
    if (port == NULL || upstream == NULL || optind != argc)
        usage();
    if (burst == 0)
        burst = meter.rate / 10 > 0 ? meter.rate / 10 : 1;
    meter.burst = burst * NS;
    meter.credit = meter.burst;
    meter.last_ns = now_ns();
    upstream_resolve(upstream);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    signal_watch = (struct watch){ KIND_SIGNAL, signals_open(), NULL };
    watch_add(&signal_watch, EPOLLIN);
    listen_watch = (struct watch){ KIND_LISTEN, listen_on(host, port), NULL };
    watch_add(&listen_watch, EPOLLIN);
    if (stats_port != NULL) {
        stats_watch = (struct watch){ KIND_STATS, listen_on(host, stats_port), NULL };
        watch_add(&stats_watch, EPOLLIN);
    }
    timer_watch = (struct watch){ KIND_TIMER,
                                  timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC),
                                  NULL };
    if (timer_watch.fd < 0)
        die("timerfd_create: %s", strerror(errno));
    watch_add(&timer_watch, EPOLLIN);

    while (running) {
        int n = epoll_wait(ep, evs, EVENTS_MAX, -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            dispatch(evs[i].data.ptr, evs[i].events);
        while (dead_list != NULL) {
            struct conn *c = dead_list;
            dead_list = c->next;
            free(c);
        }
    }
    counts_format(line, sizeof line);
    fputs(line, stdout);
    return 0;
}
