/*
 * discover.c: the cache of DNS answers for server names, and the rounds of
 * questions that fill and refresh it.
 *
 * A round asks every name it is given at once and ends when the last answer
 * (or failure) is in; its end runs from an event of its own, never from
 * inside a DNS callback, so that what it calls (a reload) may ask again. An
 * SRV answer adds its targets' names to the same round. Names are compared by
 * their answers: a host by its first address, an SRV name by its sorted
 * target:port list (priorities and weights are not used: every record is a
 * server). A failure keeps the last good answer.
 */
#include "discover.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "dnsmsg.h"
#include "log.h"
#include "stats.h"

/* evdns takes its options as text. */
#define DISCOVER_TIMEOUT_TEXT   "2"     /* DISCOVER_TIMEOUT_S */
#define DISCOVER_ATTEMPTS_TEXT  "2"     /* DISCOVER_ATTEMPTS */

enum name_kind { NAME_HOST, NAME_SRV };

struct name {
    enum name_kind       kind;
    char                *name;
    enum discover_state  state;
    bool                 asking;        /* a question of this round is out */
    bool                 serving;       /* used by the config being served */
    unsigned             mark;          /* the compile that last looked it up */
    struct sockaddr_storage addr;       /* host: the first address (port 0) */
    socklen_t            addrlen;
    struct discover_target *targets;    /* srv: sorted by host, then port */
    int                  ntargets;
    char                 why[128];      /* the last failure */
    struct name         *next;
};

/* One SRV question on the wire. */
struct srv_question {
    struct srv_question *next;          /* D.questions */
    struct name   *name;
    evutil_socket_t fd;
    struct event  *ev;
    uint16_t       id;
    int            tries;
    uint8_t        msg[512];
    int            len;
};

static struct {
    struct name          *names;
    unsigned              mark;         /* of the current compile */
    struct event_base    *base;         /* the loop rounds run on */
    struct evdns_base    *dns;
    struct srv_question  *questions;    /* SRV questions out */
    struct sockaddr_storage ns;         /* the nameserver SRV questions go to */
    socklen_t             nslen;
    char                  resolver[64]; /* D.dns's ("" = resolv.conf) */
    int                   outstanding;  /* questions of the round still out */
    bool                  changed;      /* an answer of the round changed */
    struct event         *finish;       /* the round's end, run from the loop */
    struct event         *timer;        /* the next refresh */
    int                   every_s;
    void                (*done)(void *arg); /* called at the round's end */
    void                 *done_arg;
    discover_change_fn    on_change;
    void                 *change_arg;
} D;

static struct name *
name_find(enum name_kind kind, const char *text)
{
    struct name *n;

    for (n = D.names; n != NULL; n = n->next)
        if (n->kind == kind && strcmp(n->name, text) == 0)
            return n;
    return NULL;
}

/* The entry for a name, created wanted (PENDING) when new; NULL: no memory. */
static struct name *
name_get(enum name_kind kind, const char *text)
{
    struct name *n = name_find(kind, text);

    if (n != NULL)
        return n;
    n = calloc(1, sizeof(*n));
    if (n == NULL || (n->name = strdup(text)) == NULL) {
        free(n);
        return NULL;
    }
    n->kind = kind;
    n->state = DISCOVER_PENDING;
    n->next = D.names;
    D.names = n;
    return n;
}

static void
targets_free(struct discover_target *t, int n)
{
    int i;

    for (i = 0; i < n; i++)
        free(t[i].host);
    free(t);
}

static void
name_free(struct name *n)
{
    targets_free(n->targets, n->ntargets);
    free(n->name);
    free(n);
}

void
discover_compile_begin(void)
{
    D.mark++;
}

/* The entry of a name the compile uses (err says why when it FAILED); NULL: no memory. */
static struct name *
name_used(enum name_kind kind, const char *text, char *err, size_t errlen)
{
    struct name *n = name_get(kind, text);

    if (n == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->mark = D.mark;
    if (n->state == DISCOVER_FAILED)
        snprintf(err, errlen, "%s%s: %s", kind == NAME_SRV ? DISCOVER_SRV_PREFIX : "", text,
                 n->why);
    return n;
}

enum discover_state
discover_host(const char *name, int port, struct sockaddr_storage *addr, socklen_t *addrlen,
              char *err, size_t errlen)
{
    struct name *n = name_used(NAME_HOST, name, err, errlen);

    if (n == NULL || n->state != DISCOVER_OK)
        return n ? n->state : DISCOVER_FAILED;
    memcpy(addr, &n->addr, n->addrlen);
    *addrlen = n->addrlen;
    if (addr->ss_family == AF_INET)
        ((struct sockaddr_in *)addr)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)addr)->sin6_port = htons((uint16_t)port);
    return DISCOVER_OK;
}

enum discover_state
discover_srv(const char *name, const struct discover_target **targets, int *ntargets,
             char *err, size_t errlen)
{
    struct name *n = name_used(NAME_SRV, name, err, errlen);

    if (n == NULL || n->state != DISCOVER_OK)
        return n ? n->state : DISCOVER_FAILED;
    *targets = n->targets;
    *ntargets = n->ntargets;
    return DISCOVER_OK;
}

/* ---- the end of a question ---- */

static void
question_done(void)
{
    if (--D.outstanding == 0 && D.finish != NULL)
        event_active(D.finish, EV_TIMEOUT, 0);
}

/* A question failed: a name never answered fails; one answered before keeps it. */
static void
answer_failed(struct name *n, const char *why)
{
    n->asking = false;
    snprintf(n->why, sizeof(n->why), "%s", why);
    __atomic_add_fetch(&stats_discover_failures, 1, __ATOMIC_RELAXED);
    if (n->state == DISCOVER_OK) {
        log_ratelimited(LOG_WARN, n, "discover %s%s: %s (keeping the last answer)",
                        n->kind == NAME_SRV ? DISCOVER_SRV_PREFIX : "", n->name, why);
    } else {
        log_warn("discover %s%s: %s", n->kind == NAME_SRV ? DISCOVER_SRV_PREFIX : "",
                 n->name, why);
        n->state = DISCOVER_FAILED;
    }
    question_done();
}

/* A changed answer (not the first): logged and counted; the round reloads. */
static void
answer_changed(struct name *n, const char *was, const char *now)
{
    if (n->state == DISCOVER_OK) {
        D.changed = true;
        __atomic_add_fetch(&stats_discover_changes, 1, __ATOMIC_RELAXED);
        log_warn("discover %s%s: now %s (was %s)", n->kind == NAME_SRV ? DISCOVER_SRV_PREFIX : "",
                 n->name, now, was);
    } else {
        log_info("discover %s%s: %s", n->kind == NAME_SRV ? DISCOVER_SRV_PREFIX : "",
                 n->name, now);
    }
    n->state = DISCOVER_OK;
}

/* ---- host names: evdns ---- */

static void
addr_text(const struct sockaddr_storage *a, char *out, size_t outlen)
{
    const void *raw = a->ss_family == AF_INET
                    ? (const void *)&((const struct sockaddr_in *)a)->sin_addr
                    : (const void *)&((const struct sockaddr_in6 *)a)->sin6_addr;

    if (a->ss_family == 0 || inet_ntop(a->ss_family, raw, out, (socklen_t)outlen) == NULL)
        snprintf(out, outlen, "nothing");
}

static void
on_host_answer(int result, struct evutil_addrinfo *res, void *arg)
{
    struct name *n = arg;
    struct sockaddr_storage got;
    char was[INET6_ADDRSTRLEN], now[INET6_ADDRSTRLEN];

    if (result == EVUTIL_EAI_CANCEL) {
        question_done();        /* the resolver is going away (dns_free) */
        return;
    }
    if (result != 0 || res == NULL) {
        answer_failed(n, result != 0 ? evutil_gai_strerror(result) : "no address");
        if (res != NULL)
            evutil_freeaddrinfo(res);
        return;
    }
    memset(&got, 0, sizeof(got));
    memcpy(&got, res->ai_addr, res->ai_addrlen);
    if (got.ss_family == AF_INET)
        ((struct sockaddr_in *)&got)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&got)->sin6_port = 0;
    n->asking = false;
    if (n->state != DISCOVER_OK || n->addrlen != res->ai_addrlen
        || memcmp(&n->addr, &got, res->ai_addrlen) != 0) {
        addr_text(&n->addr, was, sizeof(was));
        addr_text(&got, now, sizeof(now));
        n->addr = got;
        n->addrlen = (socklen_t)res->ai_addrlen;
        answer_changed(n, was, now);
    }
    evutil_freeaddrinfo(res);
    question_done();
}

static void
ask_host(struct name *n)
{
    struct evutil_addrinfo hints;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    n->asking = true;
    D.outstanding++;
    /* The answer may come at once (an IP literal, /etc/hosts): the callback
     * runs inside this call then, which question_done allows for. */
    evdns_getaddrinfo(D.dns, n->name, NULL, &hints, on_host_answer, n);
}

/* ---- SRV names: one UDP question each ---- */

static void ask_name(struct name *n);

static void
srv_question_free(struct srv_question *q)
{
    struct srv_question **pp = &D.questions;

    while (*pp != NULL && *pp != q)
        pp = &(*pp)->next;
    if (*pp == q)
        *pp = q->next;
    if (q->ev != NULL)
        event_free(q->ev);
    if (q->fd >= 0)
        evutil_closesocket(q->fd);
    free(q);
}

static int
target_order(const void *a, const void *b)
{
    const struct discover_target *x = a, *y = b;
    int c = strcmp(x->host, y->host);

    return c != 0 ? c : x->port - y->port;
}

/* "a:1 b:2" into out, for the log. */
static void
targets_text(const struct discover_target *t, int n, char *out, size_t outlen)
{
    size_t at = 0;
    int i;

    out[0] = '\0';
    for (i = 0; i < n && at < outlen; i++)
        at += (size_t)snprintf(out + at, outlen - at, "%s%s:%d", i ? " " : "", t[i].host,
                               t[i].port);
    if (n == 0)
        snprintf(out, outlen, "no servers");
}

static bool
targets_same(const struct discover_target *a, int na, const struct discover_target *b, int nb)
{
    int i;

    if (na != nb)
        return false;
    for (i = 0; i < na; i++)
        if (a[i].port != b[i].port || strcmp(a[i].host, b[i].host) != 0)
            return false;
    return true;
}

/* The SRV records become the name's servers; their names join the round. */
static void
srv_answered(struct name *n, const struct dns_srv *srv, int count)
{
    struct discover_target *t = calloc((size_t)count + 1, sizeof(*t));
    char was[512], now[512];
    int i, nt = 0;

    if (t == NULL) {
        answer_failed(n, "out of memory");
        return;
    }
    for (i = 0; i < count; i++) {
        if (srv[i].target[0] == '\0' || srv[i].port == 0)
            continue;           /* "." or port 0: the service is not offered there */
        t[nt].host = strdup(srv[i].target);
        t[nt].port = srv[i].port;
        if (t[nt].host == NULL) {
            targets_free(t, nt);
            answer_failed(n, "out of memory");
            return;
        }
        nt++;
    }
    if (nt == 0) {
        targets_free(t, nt);
        answer_failed(n, "no SRV record");
        return;
    }
    qsort(t, (size_t)nt, sizeof(*t), target_order);
    n->asking = false;
    if (n->state == DISCOVER_OK && targets_same(n->targets, n->ntargets, t, nt)) {
        targets_free(t, nt);
    } else {
        targets_text(n->targets, n->ntargets, was, sizeof(was));
        targets_text(t, nt, now, sizeof(now));
        targets_free(n->targets, n->ntargets);
        n->targets = t;
        n->ntargets = nt;
        answer_changed(n, was, now);
    }
    for (i = 0; i < n->ntargets; i++) {
        struct in6_addr a6;
        struct name *h;

        if (inet_pton(AF_INET, n->targets[i].host, &a6) == 1
            || inet_pton(AF_INET6, n->targets[i].host, &a6) == 1)
            continue;           /* an address already */
        h = name_get(NAME_HOST, n->targets[i].host);
        if (h != NULL && !h->asking) {
            h->mark = D.mark;   /* in use as long as the SRV name is */
            ask_name(h);
        }
    }
    question_done();
}

static int
srv_send(struct srv_question *q)
{
    struct timeval tv = { DISCOVER_TIMEOUT_S, 0 };

    q->tries++;
    if (send(q->fd, q->msg, (size_t)q->len, 0) < 0)
        return -1;
    return event_add(q->ev, &tv);
}

static void
on_srv_readable(evutil_socket_t fd, short what, void *arg)
{
    struct srv_question *q = arg;
    struct dns_srv srv[DISCOVER_TARGETS_MAX];
    uint8_t msg[4096];
    char err[128];
    ssize_t got;
    int count;

    if (what & EV_TIMEOUT) {
        if (q->tries < DISCOVER_ATTEMPTS && srv_send(q) == 0)
            return;
        answer_failed(q->name, "no answer (timed out)");
        srv_question_free(q);
        return;
    }
    got = recv(fd, msg, sizeof(msg), 0);
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (got < 0) {
        snprintf(err, sizeof(err), "%s", strerror(errno));
        count = -1;
    } else {
        count = dnsmsg_srv_parse(msg, (size_t)got, q->id, srv, DISCOVER_TARGETS_MAX,
                                 err, sizeof(err));
        if (count < 0 && strcmp(err, "answer to another question") == 0)
            return;     /* a late answer to an earlier try: keep waiting */
    }
    event_del(q->ev);
    if (count < 0)
        answer_failed(q->name, err);
    else
        srv_answered(q->name, srv, count);
    srv_question_free(q);
}

static void
ask_srv(struct name *n)
{
    struct srv_question *q = calloc(1, sizeof(*q));

    n->asking = true;
    D.outstanding++;
    if (q == NULL) {
        answer_failed(n, "out of memory");
        return;
    }
    q->name = n;
    q->fd = -1;
    q->next = D.questions;
    D.questions = q;
    evutil_secure_rng_get_bytes(&q->id, sizeof(q->id));
    q->len = dnsmsg_query(q->msg, sizeof(q->msg), q->id, n->name, DNS_TYPE_SRV);
    if (q->len < 0) {
        answer_failed(n, "not a valid DNS name");
        srv_question_free(q);
        return;
    }
    if (D.nslen == 0) {
        answer_failed(n, "no nameserver to ask");
        srv_question_free(q);
        return;
    }
    q->fd = socket(D.ns.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&D.ns, D.nslen) < 0
        || (q->ev = event_new(D.base, q->fd, EV_READ | EV_PERSIST, on_srv_readable, q)) == NULL
        || srv_send(q) < 0) {
        answer_failed(n, strerror(errno));
        srv_question_free(q);
    }
}

static void
ask_name(struct name *n)
{
    if (n->kind == NAME_SRV)
        ask_srv(n);
    else
        ask_host(n);
}

/* ---- resolvers and rounds ---- */

/* The resolver goes, with every question still out: they count as done. */
static void
dns_free(void)
{
    struct name *n;

    while (D.questions != NULL) {
        D.questions->name->asking = false;
        srv_question_free(D.questions);
        D.outstanding--;
    }
    for (n = D.names; n != NULL; n = n->next)
        n->asking = false;
    if (D.dns != NULL)
        evdns_base_free(D.dns, 1);      /* its questions end as canceled */
    D.dns = NULL;
    D.nslen = 0;
}

/* evdns on D.base, asking `resolver` ("ip:port") or /etc/resolv.conf's servers. */
static int
dns_open(const char *resolver, char *err, size_t errlen)
{
    int len = sizeof(D.ns);

    dns_free();
    if (resolver != NULL && resolver[0] != '\0') {
        D.dns = evdns_base_new(D.base, 0);
        if (D.dns == NULL || evutil_parse_sockaddr_port(resolver, (struct sockaddr *)&D.ns,
                                                       &len) < 0
            || evdns_base_nameserver_sockaddr_add(D.dns, (struct sockaddr *)&D.ns,
                                                  (ev_socklen_t)len, 0) < 0) {
            snprintf(err, errlen, "settings.resolver %s: not a usable ip:port", resolver);
            dns_free();
            return -1;
        }
        D.nslen = (socklen_t)len;
        evdns_base_load_hosts(D.dns, NULL);
    } else {
        D.dns = evdns_base_new(D.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
        if (D.dns == NULL) {
            snprintf(err, errlen, "cannot set up DNS from /etc/resolv.conf");
            return -1;
        }
        len = evdns_base_get_nameserver_addr(D.dns, 0, (struct sockaddr *)&D.ns, sizeof(D.ns));
        D.nslen = len > 0 && len <= (int)sizeof(D.ns) ? (socklen_t)len : 0;
    }
    evdns_base_set_option(D.dns, "timeout:", DISCOVER_TIMEOUT_TEXT);
    evdns_base_set_option(D.dns, "attempts:", DISCOVER_ATTEMPTS_TEXT);
    snprintf(D.resolver, sizeof(D.resolver), "%s", resolver ? resolver : "");
    return 0;
}

static void
on_round_end(evutil_socket_t fd, short what, void *arg)
{
    void (*done)(void *) = D.done;
    void *done_arg = D.done_arg;
    bool changed = D.changed;

    D.done = NULL;
    D.changed = false;
    if (done != NULL)
        done(done_arg);
    else if (changed && D.on_change != NULL)
        D.on_change(D.change_arg);
}

/* Ask the names: the wanted ones only, or (refresh) every one in use. */
static int
round_start(bool refresh)
{
    struct name *n;
    int asked = 0;

    if (D.dns == NULL)
        return 0;           /* no resolver could be set up (logged when it failed) */
    D.outstanding++;        /* held until every question is out */
    for (n = D.names; n != NULL; n = n->next) {
        if (n->asking || (!refresh && n->state != DISCOVER_PENDING))
            continue;
        ask_name(n);
        asked++;
    }
    question_done();
    return asked;
}

static void
on_refresh(evutil_socket_t fd, short what, void *arg)
{
    struct timeval tv = { D.every_s, 0 };

    if (D.outstanding == 0)
        round_start(true);
    if (D.every_s > 0)
        event_add(D.timer, &tv);
}

static void
on_settled(evutil_socket_t fd, short what, void *base)
{
    event_base_loopbreak(base);
}

void
discover_retry_failed(void)
{
    struct name *n;

    for (n = D.names; n != NULL; n = n->next)
        if (n->state == DISCOVER_FAILED)
            n->state = DISCOVER_PENDING;
}

int
discover_settle(const char *resolver, int timeout_s, char *err, size_t errlen)
{
    struct timeval limit = { timeout_s, 0 };
    struct event_base *base = event_base_new();
    struct name *n;
    int rc = -1;

    if (base == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    D.base = base;
    D.finish = event_new(base, -1, 0, on_settled, base);
    if (D.finish != NULL && dns_open(resolver, err, errlen) == 0) {
        round_start(false);
        if (D.outstanding > 0) {
            event_base_loopexit(base, &limit);
            event_base_dispatch(base);
        }
        rc = 0;
    }
    dns_free();             /* what did not answer in time fails here */
    for (n = D.names; n != NULL; n = n->next)
        if (n->state == DISCOVER_PENDING) {
            n->state = DISCOVER_FAILED;
            snprintf(n->why, sizeof(n->why), "no answer within %d s", timeout_s);
        }
    if (D.finish != NULL)
        event_free(D.finish);
    D.finish = NULL;
    D.outstanding = 0;
    D.base = NULL;
    event_base_free(base);
    return rc;
}

void
discover_start(struct event_base *base, discover_change_fn on_change, void *arg)
{
    D.base = base;
    D.on_change = on_change;
    D.change_arg = arg;
    D.finish = event_new(base, -1, 0, on_round_end, NULL);
    D.timer = evtimer_new(base, on_refresh, NULL);
}

/* Forget the names `keep` does not keep (nor one being asked: its answer is due). */
static void
names_forget(bool (*keep)(const struct name *n))
{
    struct name **pp = &D.names;

    while (*pp != NULL) {
        struct name *n = *pp;

        if (keep(n) || n->asking) {
            pp = &n->next;
            continue;
        }
        *pp = n->next;
        name_free(n);
    }
}

static bool
used_by_last_compile(const struct name *n)
{
    return n->mark == D.mark;
}

static bool
used_by_serving(const struct name *n)
{
    return n->serving;
}

/* The last compile's config serves: its names are the ones to keep resolved. */
static void
names_prune(void)
{
    struct name *n;

    names_forget(used_by_last_compile);
    for (n = D.names; n != NULL; n = n->next)
        n->serving = true;
}

void
discover_load_failed(void)
{
    names_forget(used_by_serving);
}

int
discover_serving(const char *resolver, int every_s, char *err, size_t errlen)
{
    struct timeval tv = { every_s, 0 };

    if (D.base == NULL || D.timer == NULL)
        return 0;
    names_prune();
    if (D.names == NULL) {
        evtimer_del(D.timer);       /* no name to keep resolved */
        return 0;
    }
    if ((D.dns == NULL || strcmp(D.resolver, resolver ? resolver : "") != 0)
        && D.outstanding == 0 && dns_open(resolver, err, errlen) < 0)
        return -1;
    if (every_s != D.every_s || !evtimer_pending(D.timer, NULL)) {
        D.every_s = every_s;
        evtimer_del(D.timer);
        if (every_s > 0)
            evtimer_add(D.timer, &tv);
    }
    return 0;
}

int
discover_resolve_wanted(const char *resolver, void (*done)(void *arg), void *arg,
                        char *err, size_t errlen)
{
    if (D.base == NULL || D.finish == NULL) {
        snprintf(err, errlen, "no event loop to resolve on");
        return -1;
    }
    if (D.dns == NULL || strcmp(D.resolver, resolver ? resolver : "") != 0) {
        if (D.outstanding > 0) {
            snprintf(err, errlen, "the names are being asked of another resolver; "
                     "try again in a moment");
            return -1;
        }
        if (dns_open(resolver, err, errlen) < 0)
            return -1;
    }
    /* A refresh under way is joined: its end calls done, which loads from
     * every answer, so it needs no reload of its own. */
    D.done = done;
    D.done_arg = arg;
    round_start(false);
    return 0;
}

void
discover_stop(void)
{
    struct name *n;

    dns_free();
    if (D.timer != NULL)
        event_free(D.timer);
    if (D.finish != NULL)
        event_free(D.finish);
    while ((n = D.names) != NULL) {
        D.names = n->next;
        name_free(n);
    }
    memset(&D, 0, sizeof(D));
}
