/*
 * tls.h: TLS for client listeners and backend connections (OpenSSL).
 *
 * Connections keep their own buffers and libevent events whether or not they
 * are encrypted: conn_read/conn_write below are read()/write() for a plain
 * connection and SSL_read/SSL_write for a TLS one. The plain path pays one
 * predictable branch, and the buffering (borrowed read buffers, deferred
 * flushes, batching) stays the same for both; moving everything onto
 * bufferevents would have added a layer and a copy on the plain path too.
 *
 * A TLS call that cannot go on returns -1 with errno EAGAIN and says which
 * readiness it waits for (a read may need the socket writable during a
 * handshake or key update, and the other way round); the caller arms that
 * event. Any other failure returns -1 with errno EPROTO (reason from
 * tls_error) or the socket's own errno; a clean close_notify reads as 0.
 *
 * Contexts are built on the main thread (start-up, SIGHUP, policy compile).
 * An SSL object holds its own reference to its context, so replacing or
 * freeing a context never affects connections already made with it.
 */
#ifndef TLS_H
#define TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

struct tls_server;      /* our side of client connections: certificate, key, CA */
struct tls_client;      /* our side of backend connections: CA, name, client cert */
struct tls_conn;        /* one connection's TLS state */

/* What the client listener uses (--tls-cert, --tls-key, --tls-ca, --tls-verify-client). */
struct tls_server_opts {
    const char *cert;           /* PEM certificate chain */
    const char *key;            /* PEM private key */
    const char *ca;             /* PEM CA bundle for client certificates, or NULL */
    bool        verify_client;  /* require a client certificate signed by ca */
};

/* A pool's tls = { ... } table. */
struct tls_client_opts {
    const char *ca;             /* PEM CA bundle; NULL: the system's default paths */
    const char *cert;           /* PEM client certificate, or NULL */
    const char *key;            /* its key (NULL: in the cert file) */
    const char *sni;            /* name sent and verified; NULL: the server's host */
    bool        verify;         /* check the server's certificate and name */
};

/*
 * Build a context, loading and checking every file now. Returns NULL with
 * "<option or field> <file>: <OpenSSL's reason>" in err.
 */
struct tls_server *tls_server_new(const struct tls_server_opts *o, char *err, size_t errlen);
void tls_server_free(struct tls_server *s);

struct tls_client *tls_client_new(const struct tls_client_opts *o, char *err, size_t errlen);
void tls_client_free(struct tls_client *c);

/*
 * Do two contexts describe the same transport (same files, name and
 * verification)? A backend connection is reused across reloads only then.
 * NULL is plain TCP.
 */
bool tls_client_same(const struct tls_client *a, const struct tls_client *b);

/* "tls" or "tls (no verify)" etc. for --check; NULL for plain. */
const char *tls_client_describe(const struct tls_client *c);

/* A connection on an accepted socket (server side of the handshake). */
struct tls_conn *tls_conn_accept(struct tls_server *s, int fd);

/*
 * A connection on a connected socket to a backend named host. Returns NULL
 * with a reason in err.
 */
struct tls_conn *tls_conn_connect(struct tls_client *c, int fd, const char *host,
                                  char *err, size_t errlen);

/* Free the TLS state (sends close_notify if it can without blocking). */
void tls_conn_free(struct tls_conn *t);

/* Drive the handshake: 1 done, 0 waiting (errno EAGAIN, see tls_wants_write), -1 failed. */
int tls_handshake(struct tls_conn *t);
bool tls_handshake_done(const struct tls_conn *t);

ssize_t tls_read(struct tls_conn *t, void *buf, size_t len);
ssize_t tls_write(struct tls_conn *t, const void *buf, size_t len);

/* After EAGAIN: does the last call wait for the socket to be writable (else readable)? */
bool tls_wants_write(const struct tls_conn *t);

/*
 * After the handshake: the common name of the client's certificate, when it
 * sent one and it verified against --tls-ca, copied into out (NUL-ended).
 * Returns its length, or -1 when there is none (no certificate, not
 * verified, no CN, or a CN holding a NUL or not fitting in out).
 */
int tls_conn_peer_cn(const struct tls_conn *t, char *out, size_t len);

/* Decrypted bytes already inside OpenSSL that a read would return at once. */
bool tls_pending(const struct tls_conn *t);

/* Why the last call failed (OpenSSL's reason), for logs. */
const char *tls_error(const struct tls_conn *t);

/* Why the last conn_read/conn_write on a connection with TLS state t (NULL:
 * plain) failed, for logs: OpenSSL's reason, or the socket's errno. */
const char *conn_error(const struct tls_conn *t);

/*
 * The plain calls go through syscall(): read() and write() are thread
 * cancellation points, and in a threaded process the C library switches
 * cancellation on and off around each one (some 70 instructions a call,
 * four calls a request). luagent never cancels a thread. The result and
 * errno are the same.
 */
static inline ssize_t
conn_read(int fd, struct tls_conn *t, void *buf, size_t len)
{
    if (__builtin_expect(t == NULL, 1))
        return syscall(SYS_read, fd, buf, len);
    return tls_read(t, buf, len);
}

static inline ssize_t
conn_write(int fd, struct tls_conn *t, const void *buf, size_t len)
{
    if (__builtin_expect(t == NULL, 1))
        return syscall(SYS_write, fd, buf, len);
    return tls_write(t, buf, len);
}

/* A gathered write on a plain connection (TLS writes one piece at a time). */
static inline ssize_t
conn_writev(int fd, const struct iovec *iov, int n)
{
    return syscall(SYS_writev, fd, iov, n);
}

#endif
