/*
 * listener.h: the TCP and unix listeners, the -n connection limit, and the
 * hand-off of accepted sockets to workers.
 */
#ifndef LISTENER_H
#define LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct tls_conn;
struct tls_server;

#define LISTEN_NAME_MAX     32      /* bytes of a listener's name */
#define LISTEN_NAMED_MAX    16      /* --listen NAME=ADDR:PORT listeners */

/* The names of the listeners the other flags make (lg.by_client, req.listener). */
#define LISTEN_NAME_TCP     "tcp"   /* -p */
#define LISTEN_NAME_TLS     "tls"   /* --tls-port */
#define LISTEN_NAME_UNIX    "unix"  /* -f */

/* One --listen NAME=ADDR:PORT: a plain TCP listener with a name of its own. */
struct named_listen {
    char        name[LISTEN_NAME_MAX + 1];
    char        host[256];          /* as written, without [] around IPv6 */
    int         port;
};

/*
 * Parse "NAME=ADDR:PORT" (ADDR may be [IPv6]). The name is 1-32 letters,
 * digits, '_', '-' or '.', and none of tcp, tls, unix (the other flags'
 * listeners). Returns 0, or -1 with a one-line reason in err.
 */
int listener_parse_named(const char *text, struct named_listen *out, char *err, size_t errlen);

/* Where to listen (the command line's -l, -p, --tls-port, -f, --unix-mode, --listen). */
struct listen_addrs {
    const char *bind_addr;      /* NULL: all addresses */
    int         port;           /* TCP; 0: none */
    int         tls_port;       /* TLS; 0: none */
    const char *unix_path;      /* unix socket, or NULL */
    int         unix_mode;      /* its permission bits; -1: from the umask */
    const struct named_listen *named;   /* --listen, in order */
    int         nnamed;
};

/* Create and bind the sockets (before daemonizing and dropping privileges). */
int listener_bind(const struct listen_addrs *a, char *err, size_t errlen);

/*
 * Where accepted sockets go (the workers'), with a TLS client's state or NULL,
 * and the name of the listener it came through (valid for the process's life).
 */
typedef void listener_dispatch_fn(int fd, bool is_unix, struct tls_conn *tls,
                                  const char *name);

/*
 * Give the unix socket file to the user and group luagent is about to become
 * (-u/-g; (uid_t)-1 or (gid_t)-1 keeps one), so its --unix-mode bits apply to
 * them. No-op without -f. Returns 0, or -1 with err.
 */
int listener_unix_owner(uid_t uid, gid_t gid, char *err, size_t errlen);

/* Start accepting on the main thread's event base, handing sockets to dispatch. */
int listener_start(struct event_base *base, int max_conns, listener_dispatch_fn *dispatch);

/*
 * The certificate for new clients of the TLS listener (taken over; the one
 * it replaces is freed, connections made with it keep working). Main thread.
 */
void listener_set_tls(struct tls_server *s);

/* Stop accepting and close the sockets (unlinks the unix socket). */
void listener_stop(void);

/* A client connection ended (any thread). */
void listener_conn_closed(void);

/* Client connections open now. */
int listener_conns(void);

#endif
