/*
 * listener.c: listening sockets and accept.
 *
 * The main thread accepts and hands each socket to a worker; the -n limit is
 * one atomic counter shared by all threads. A connection over the limit is
 * told "ERROR Too many open connections" (memcached's words) and closed at
 * once. When the process runs out of descriptors, accept fails while the
 * client waits in the queue, so the socket stays readable: one descriptor
 * is kept in reserve to take such a client, tell it the same and close it,
 * and without the reserve accepting pauses briefly, rather than spinning.
 *
 * The TLS listener (--tls-port) accepts the same way; each accepted socket
 * gets its TLS state here, made from the current certificate, and the
 * handshake itself runs in the worker. A reload swaps the certificate for
 * new connections only: a TLS connection keeps the context it began with.
 */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "counters.h"
#include "luagent.h"
#include "log.h"
#include "tls.h"

#define BACKLOG 1024
#define FULL_PAUSE_MS   100     /* accept pause when out of descriptors, no reserve */
#define FULL_REFUSE_MAX 64      /* waiting clients answered per readiness */

static const char too_many[] = "ERROR Too many open connections\r\n";

struct listener {
    char                    name[LISTEN_NAME_MAX + 1];
    int                     fd;
    bool                    is_unix;
    bool                    is_tls;
    struct evconnlistener  *ev;
};

static struct listener listeners[3 + LISTEN_NAMED_MAX];
static struct tls_server *tls_current;  /* certificate for new TLS clients */
static int nlisteners;
static int max_connections;
static listener_dispatch_fn *dispatch;  /* where accepted sockets go */
static int open_connections;
static int reserve_fd = -1;             /* spent to answer when descriptors run out */
static struct event *resume_timer;      /* accepting again after a pause */
static char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

uint64_t stats_rejected_connections;

static int
bind_tcp(const char *addr, int port, char *err, size_t errlen)
{
    struct addrinfo hints, *res, *ai;
    char portstr[16];
    int rc, fd = -1, one = 1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(portstr, sizeof(portstr), "%d", port);
    rc = getaddrinfo(addr, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "listen address %s: %s", addr ? addr : "*", gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, BACKLOG) == 0)
            break;
        snprintf(err, errlen, "listen on %s:%d: %s", addr ? addr : "*", port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/*
 * mode: permission bits for the socket file (--unix-mode), or -1 to keep what
 * the umask gave. They are set between bind and listen, so no client can
 * connect while the file still has the umask's bits.
 */
static int
bind_unix(const char *path, int mode, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "unix socket path too long: %s", path);
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "unix socket %s: %s", path, strerror(errno));
        return -1;
    }
    unlink(path);       /* a stale socket from an earlier run */
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0
        || (mode >= 0 && chmod(path, (mode_t)mode) < 0)
        || listen(fd, BACKLOG) < 0) {
        snprintf(err, errlen, "unix socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    strcpy(unix_path, path);
    return fd;
}

/* Keep a bound socket under its name. */
static void
listener_add(int fd, const char *name, bool is_unix, bool is_tls)
{
    struct listener *l = &listeners[nlisteners++];

    *l = (struct listener){ .fd = fd, .is_unix = is_unix, .is_tls = is_tls };
    snprintf(l->name, sizeof(l->name), "%s", name);
}

int
listener_bind(const struct listen_addrs *s, char *err, size_t errlen)
{
    int fd, i;

    if (s->port > 0) {
        fd = bind_tcp(s->bind_addr, s->port, err, errlen);
        if (fd < 0)
            return -1;
        listener_add(fd, LISTEN_NAME_TCP, false, false);
    }
    if (s->tls_port > 0) {
        fd = bind_tcp(s->bind_addr, s->tls_port, err, errlen);
        if (fd < 0)
            return -1;
        listener_add(fd, LISTEN_NAME_TLS, false, true);
    }
    if (s->unix_path != NULL) {
        fd = bind_unix(s->unix_path, s->unix_mode, err, errlen);
        if (fd < 0)
            return -1;
        listener_add(fd, LISTEN_NAME_UNIX, true, false);
    }
    for (i = 0; i < s->nnamed && i < LISTEN_NAMED_MAX; i++) {
        const struct named_listen *n = &s->named[i];
        char why[ERR_LEN];

        fd = bind_tcp(n->host, n->port, why, sizeof(why));
        if (fd < 0) {
            snprintf(err, errlen, "--listen %s: %s", n->name, why);
            return -1;
        }
        listener_add(fd, n->name, false, false);
    }
    return 0;
}

static bool
name_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
        || ch == '_' || ch == '-' || ch == '.';
}

/* "ADDR:PORT" or "[IPv6]:PORT" into out->host and out->port. */
static int
parse_host_port(const char *text, struct named_listen *out)
{
    const char *host = text, *host_end, *colon;
    char *end;
    long port;

    if (text[0] == '[') {
        host = text + 1;
        host_end = strchr(host, ']');
        colon = host_end != NULL && host_end[1] == ':' ? host_end + 1 : NULL;
    } else {
        colon = strrchr(text, ':');
        host_end = colon;
    }
    if (colon == NULL || host_end == host || (size_t)(host_end - host) >= sizeof(out->host))
        return -1;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port < 1 || port > 65535)
        return -1;
    memcpy(out->host, host, (size_t)(host_end - host));
    out->host[host_end - host] = '\0';
    out->port = (int)port;
    return 0;
}

int
listener_parse_named(const char *text, struct named_listen *out, char *err, size_t errlen)
{
    const char *eq = strchr(text, '=');
    size_t len = eq != NULL ? (size_t)(eq - text) : 0, i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < len && name_char_ok(text[i]); i++)
        ;
    if (eq == NULL || len == 0 || len > LISTEN_NAME_MAX || i < len) {
        snprintf(err, errlen, "bad --listen '%s': expected NAME=ADDR:PORT, the name 1-%d "
                 "letters, digits, '_', '-' or '.'", text, LISTEN_NAME_MAX);
        return -1;
    }
    memcpy(out->name, text, len);
    if (strcmp(out->name, LISTEN_NAME_TCP) == 0 || strcmp(out->name, LISTEN_NAME_TLS) == 0
        || strcmp(out->name, LISTEN_NAME_UNIX) == 0) {
        snprintf(err, errlen, "bad --listen '%s': the name '%s' belongs to the %s listener",
                 text, out->name, strcmp(out->name, LISTEN_NAME_TCP) == 0 ? "-p"
                 : strcmp(out->name, LISTEN_NAME_TLS) == 0 ? "--tls-port" : "-f");
        return -1;
    }
    if (parse_host_port(eq + 1, out) < 0) {
        snprintf(err, errlen, "bad --listen '%s': expected NAME=ADDR:PORT with a port "
                 "1-65535 (e.g. admin=127.0.0.1:11311)", text);
        return -1;
    }
    return 0;
}

int
listener_unix_owner(uid_t uid, gid_t gid, char *err, size_t errlen)
{
    if (unix_path[0] == '\0' || (uid == (uid_t)-1 && gid == (gid_t)-1))
        return 0;
    if (chown(unix_path, uid, gid) < 0) {
        snprintf(err, errlen, "unix socket %s: chown: %s", unix_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Tell a client it is turned away, and close it. */
static void
turn_away(int fd)
{
    if (write(fd, too_many, sizeof(too_many) - 1) < 0) {
        /* The client is being turned away anyway. */
    }
    close(fd);
    __atomic_add_fetch(&stats_rejected_connections, 1, __ATOMIC_RELAXED);
}

static void
refuse(int fd)
{
    turn_away(fd);
    log_ratelimited(LOG_WARN, &max_connections,
                    "client refused: %d connections open (-n %d)",
                    max_connections, max_connections);
}

static void
reserve_take(void)
{
    if (reserve_fd < 0)
        reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of descriptors: spend the reserve on one waiting client. False when
 * there was no reserve or no client waiting. */
static bool
refuse_with_reserve(int listen_fd)
{
    int fd;

    if (reserve_fd < 0)
        return false;
    close(reserve_fd);
    reserve_fd = -1;
    fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        turn_away(fd);
    reserve_take();
    return fd >= 0;
}

static void
on_resume(evutil_socket_t fd, short what, void *arg)
{
    int i;

    for (i = 0; i < nlisteners; i++)
        if (listeners[i].ev != NULL)
            evconnlistener_enable(listeners[i].ev);
}

/* Stop accepting for FULL_PAUSE_MS: the queue waits in the kernel meanwhile. */
static void
pause_accepting(void)
{
    struct timeval tv = { 0, FULL_PAUSE_MS * 1000 };
    int i;

    if (resume_timer == NULL)
        return;
    for (i = 0; i < nlisteners; i++)
        if (listeners[i].ev != NULL)
            evconnlistener_disable(listeners[i].ev);
    evtimer_add(resume_timer, &tv);
}

static void
on_accept(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *addr,
          int len, void *arg)
{
    struct listener *l = arg;
    struct tls_conn *tls = NULL;

    if (__atomic_add_fetch(&open_connections, 1, __ATOMIC_RELAXED) > max_connections) {
        __atomic_sub_fetch(&open_connections, 1, __ATOMIC_RELAXED);
        refuse(fd);
        return;
    }
    if (!l->is_unix) {
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (l->is_tls) {
        tls = tls_conn_accept(tls_current, fd);
        if (tls == NULL) {
            log_ratelimited(LOG_WARN, l, "TLS client refused: out of memory");
            close(fd);
            listener_conn_closed();
            return;
        }
    }
    dispatch(fd, l->is_unix, tls, l->name);
}

static void
on_accept_error(struct evconnlistener *ev, void *arg)
{
    struct listener *l = arg;
    int err = errno, i;

    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        log_ratelimited(LOG_WARN, &reserve_fd, "accept: %s: new clients are told "
                        "\"ERROR Too many open connections\" (%d connections open)",
                        strerror(err), listener_conns());
        for (i = 0; i < FULL_REFUSE_MAX && refuse_with_reserve(l->fd); i++)
            ;
        if (i == 0)
            pause_accepting();      /* no reserve: do not spin on the readable socket */
        return;
    }
    log_ratelimited(LOG_WARN, ev, "accept: %s", strerror(err));
}

int
listener_start(struct event_base *base, int max_conns, listener_dispatch_fn *to)
{
    int i;

    dispatch = to;
    max_connections = max_conns;
    reserve_take();
    resume_timer = evtimer_new(base, on_resume, NULL);
    if (resume_timer == NULL)
        return -1;
    for (i = 0; i < nlisteners; i++) {
        struct listener *l = &listeners[i];

        /* Backlog 0: the socket listens already (with BACKLOG); -1 would make
           libevent listen again and shrink the queue to its default. */
        l->ev = evconnlistener_new(base, on_accept, l,
                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                   0, l->fd);
        if (l->ev == NULL)
            return -1;
        evconnlistener_set_error_cb(l->ev, on_accept_error);
    }
    return 0;
}

void
listener_set_tls(struct tls_server *s)
{
    tls_server_free(tls_current);
    tls_current = s;
}

void
listener_stop(void)
{
    int i;

    for (i = 0; i < nlisteners; i++) {
        if (listeners[i].ev != NULL)
            evconnlistener_free(listeners[i].ev);
        else
            close(listeners[i].fd);
    }
    nlisteners = 0;
    if (resume_timer != NULL) {
        event_free(resume_timer);
        resume_timer = NULL;
    }
    listener_set_tls(NULL);
    if (unix_path[0] != '\0')
        unlink(unix_path);
}

void
listener_conn_closed(void)
{
    __atomic_sub_fetch(&open_connections, 1, __ATOMIC_RELAXED);
}

int
listener_conns(void)
{
    return __atomic_load_n(&open_connections, __ATOMIC_RELAXED);
}
