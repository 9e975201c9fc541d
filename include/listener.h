/*
 * listener.h: the TCP and unix listeners, the -n connection limit, and the
 * hand-off of accepted sockets to workers.
 */
#ifndef LISTENER_H
#define LISTENER_H

#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct settings;
struct tls_server;

/* Create and bind the sockets (before daemonizing and dropping privileges). */
int listener_bind(const struct settings *s, char *err, size_t errlen);

/*
 * Give the unix socket file to the user and group luagent is about to become
 * (-u/-g; (uid_t)-1 or (gid_t)-1 keeps one), so its --unix-mode bits apply to
 * them. No-op without -f. Returns 0, or -1 with err.
 */
int listener_unix_owner(uid_t uid, gid_t gid, char *err, size_t errlen);

/* Start accepting on the main thread's event base. */
int listener_start(struct event_base *base, int max_conns);

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
