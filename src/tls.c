/*
 * tls.c: OpenSSL contexts and per-connection TLS I/O.
 *
 * Owns every SSL_CTX and SSL the proxy makes; the rest of the program sees
 * only struct tls_server / tls_client / tls_conn. Policy, in one place:
 * - TLS 1.2 at least, OpenSSL's default cipher suites and groups (the
 *   system's policy; with TLS 1.2+ they exclude the weak ones), no
 *   renegotiation (so a read never waits on a write after the handshake).
 * - Writes may be partial and the buffer may move between retries: our output
 *   buffers grow and compact while a write waits, as with write(2).
 * - Idle connections give their record buffers back (RELEASE_BUFFERS), so
 *   10,000 idle TLS clients do not pin 10,000 x 34 KiB.
 * - A peer that closes without close_notify reads as end-of-file, as with
 *   plain TCP: memcached framing is length-based, so a cut reply is detected
 *   as incomplete anyway.
 * Invariant: an SSL holds a reference to its SSL_CTX, so freeing a context
 * (reload, config retired) never affects connections made with it.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct tls_server {
    SSL_CTX *ctx;
};

struct tls_client {
    SSL_CTX *ctx;
    char    *sni;               /* name to send and verify, or NULL: the host */
    bool     verify;
    char    *identity;          /* files, name and verify flag, for tls_client_same */
};

struct tls_conn {
    SSL  *ssl;
    bool  want_write;           /* the last EAGAIN waits for writability */
    bool  broken;               /* a fatal error: no close_notify on free */
};

/* The reason of the last failure on this thread (connections are per worker). */
static __thread char last_error[256];

/* OpenSSL's first queued reason (the most specific), then clear the queue. */
static const char *
openssl_reason(void)
{
    static __thread char text[160];
    unsigned long e = ERR_get_error();
    const char *r;

    if (e == 0) {
        ERR_clear_error();
        return "unknown OpenSSL error";
    }
    r = ERR_reason_error_string(e);
    if (r != NULL)
        snprintf(text, sizeof(text), "%s", r);
    else
        ERR_error_string_n(e, text, sizeof(text));
    ERR_clear_error();
    return text;
}

/* A file OpenSSL is about to read: report "cannot open" in the system's words. */
static int
check_readable(const char *what, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");

    if (f == NULL) {
        snprintf(err, errlen, "%s %s: %s", what, file, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

static int
load_failed(const char *what, const char *file, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s %s: %s", what, file, openssl_reason());
    return -1;
}

/* Settings shared by both sides: versions, renegotiation, buffers, EOF. */
static SSL_CTX *
ctx_new(const SSL_METHOD *method, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(method);

    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create a TLS context: %s", openssl_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                          | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                          | SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* Certificate chain and key: readable, parseable, and matching each other. */
static int
ctx_use_cert(SSL_CTX *ctx, const char *cert_what, const char *cert,
             const char *key_what, const char *key, char *err, size_t errlen)
{
    if (check_readable(cert_what, cert, err, errlen) < 0)
        return -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return load_failed(cert_what, cert, err, errlen);
    if (check_readable(key_what, key, err, errlen) < 0)
        return -1;
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return load_failed(key_what, key, err, errlen);
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "%s %s does not match %s %s: %s", key_what, key,
                 cert_what, cert, openssl_reason());
        return -1;
    }
    return 0;
}

static int
ctx_use_ca(SSL_CTX *ctx, const char *what, const char *ca, char *err, size_t errlen)
{
    if (check_readable(what, ca, err, errlen) < 0)
        return -1;
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        return load_failed(what, ca, err, errlen);
    return 0;
}

struct tls_server *
tls_server_new(const struct tls_server_opts *o, char *err, size_t errlen)
{
    struct tls_server *s;
    SSL_CTX *ctx = ctx_new(TLS_server_method(), err, errlen);

    if (ctx == NULL)
        return NULL;
    if (ctx_use_cert(ctx, "--tls-cert", o->cert, "--tls-key", o->key, err, errlen) < 0)
        goto fail;
    if (o->ca != NULL) {
        STACK_OF(X509_NAME) *names;

        if (ctx_use_ca(ctx, "--tls-ca", o->ca, err, errlen) < 0)
            goto fail;
        names = SSL_load_client_CA_file(o->ca);
        if (names == NULL) {
            load_failed("--tls-ca", o->ca, err, errlen);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        /* With a CA, a client certificate is checked when sent; with
         * --tls-verify-client it is also required. */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER
                                | (o->verify_client ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
    }
    s = malloc(sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->ctx = ctx;
    return s;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void
tls_server_free(struct tls_server *s)
{
    if (s == NULL)
        return;
    SSL_CTX_free(s->ctx);
    free(s);
}

struct tls_client *
tls_client_new(const struct tls_client_opts *o, char *err, size_t errlen)
{
    struct tls_client *c;
    SSL_CTX *ctx = ctx_new(TLS_client_method(), err, errlen);
    size_t idlen;

    if (ctx == NULL)
        return NULL;
    if (o->ca != NULL) {
        if (ctx_use_ca(ctx, "tls.ca", o->ca, err, errlen) < 0)
            goto fail;
    } else if (o->verify && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "tls: cannot load the system's CA certificates: %s",
                 openssl_reason());
        goto fail;
    }
    if (o->cert != NULL
        && ctx_use_cert(ctx, "tls.cert", o->cert, o->key ? "tls.key" : "tls.cert",
                        o->key ? o->key : o->cert, err, errlen) < 0)
        goto fail;
    SSL_CTX_set_verify(ctx, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    c = calloc(1, sizeof(*c));
    idlen = 64 + (o->ca ? strlen(o->ca) : 0) + (o->cert ? strlen(o->cert) : 0)
            + (o->key ? strlen(o->key) : 0) + (o->sni ? strlen(o->sni) : 0);
    if (c == NULL || (c->identity = malloc(idlen)) == NULL
        || (o->sni != NULL && (c->sni = strdup(o->sni)) == NULL)) {
        snprintf(err, errlen, "out of memory");
        if (c != NULL) {
            free(c->identity);
            free(c);
        }
        goto fail;
    }
    snprintf(c->identity, idlen, "ca=%s\ncert=%s\nkey=%s\nsni=%s\nverify=%d",
             o->ca ? o->ca : "", o->cert ? o->cert : "", o->key ? o->key : "",
             o->sni ? o->sni : "", (int)o->verify);
    c->ctx = ctx;
    c->verify = o->verify;
    return c;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void
tls_client_free(struct tls_client *c)
{
    if (c == NULL)
        return;
    SSL_CTX_free(c->ctx);
    free(c->sni);
    free(c->identity);
    free(c);
}

bool
tls_client_same(const struct tls_client *a, const struct tls_client *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a->identity, b->identity) == 0;
}

const char *
tls_client_describe(const struct tls_client *c)
{
    if (c == NULL)
        return NULL;
    return c->verify ? "tls" : "tls, certificate not verified";
}

static struct tls_conn *
conn_new(SSL_CTX *ctx, int fd)
{
    struct tls_conn *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->ssl = SSL_new(ctx);
    if (t->ssl == NULL || SSL_set_fd(t->ssl, fd) != 1) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    return t;
}

struct tls_conn *
tls_conn_accept(struct tls_server *s, int fd)
{
    struct tls_conn *t = conn_new(s->ctx, fd);

    if (t != NULL)
        SSL_set_accept_state(t->ssl);
    return t;
}

static bool
is_ip_literal(const char *name)
{
    unsigned char addr[16];

    return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

struct tls_conn *
tls_conn_connect(struct tls_client *c, int fd, const char *host, char *err, size_t errlen)
{
    struct tls_conn *t = conn_new(c->ctx, fd);
    const char *name = c->sni ? c->sni : host;
    bool ip = is_ip_literal(name);

    if (t == NULL) {
        snprintf(err, errlen, "cannot start TLS: out of memory");
        return NULL;
    }
    SSL_set_connect_state(t->ssl);
    /* SNI carries host names only (RFC 6066); an address is checked
     * against the certificate's IP entries instead. */
    if (!ip && SSL_set_tlsext_host_name(t->ssl, name) != 1)
        goto fail;
    if (c->verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);

        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name) != 1
               : X509_VERIFY_PARAM_set1_host(param, name, 0) != 1)
            goto fail;
    }
    return t;
fail:
    snprintf(err, errlen, "cannot start TLS for %s: %s", name, openssl_reason());
    SSL_free(t->ssl);
    free(t);
    return NULL;
}

void
tls_conn_free(struct tls_conn *t)
{
    if (t == NULL)
        return;
    /* One non-blocking close_notify, best effort; never after a fatal error. */
    if (!t->broken && SSL_is_init_finished(t->ssl))
        SSL_shutdown(t->ssl);
    SSL_free(t->ssl);
    ERR_clear_error();
    free(t);
}

/*
 * Turn a failed SSL call into the read()/write() convention: -1 with errno
 * EAGAIN (and which readiness to wait for), 0 for end-of-file, -1 with errno
 * set for a failure, its reason kept for tls_error.
 */
static ssize_t
tls_failed(struct tls_conn *t, int rc)
{
    int saved = errno;

    switch (SSL_get_error(t->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        t->want_write = false;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        t->want_write = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_SYSCALL:
        t->broken = true;
        ERR_clear_error();
        if (saved == 0)
            return 0;           /* EOF (OpenSSL reports it this way mid-handshake) */
        snprintf(last_error, sizeof(last_error), "%s", strerror(saved));
        errno = saved;
        return -1;
    default: {
        long vr = SSL_get_verify_result(t->ssl);

        t->broken = true;
        if (vr != X509_V_OK)
            snprintf(last_error, sizeof(last_error), "%s (%s)", openssl_reason(),
                     X509_verify_cert_error_string(vr));
        else
            snprintf(last_error, sizeof(last_error), "%s", openssl_reason());
        errno = EPROTO;
        return -1;
    }
    }
}

int
tls_conn_peer_cn(const struct tls_conn *t, char *out, size_t len)
{
    X509 *cert;
    X509_NAME *subject;
    int n = -1;

    if (!SSL_is_init_finished(t->ssl) || SSL_get_verify_result(t->ssl) != X509_V_OK)
        return -1;
    cert = SSL_get_peer_certificate(t->ssl);
    if (cert == NULL)
        return -1;
    subject = X509_get_subject_name(cert);
    if (subject != NULL && X509_NAME_get_index_by_NID(subject, NID_commonName, -1) >= 0)
        n = X509_NAME_get_text_by_NID(subject, NID_commonName, out, (int)len);
    X509_free(cert);
    /* An embedded NUL would make the name read as a shorter one. */
    if (n < 0 || (size_t)n >= len - 1 || strlen(out) != (size_t)n)
        return -1;
    return n;
}

int
tls_handshake(struct tls_conn *t)
{
    int rc;
    ssize_t n;

    errno = 0;
    rc = SSL_do_handshake(t->ssl);
    if (rc == 1)
        return 1;
    n = tls_failed(t, rc);
    if (n < 0 && errno == EAGAIN)
        return 0;
    if (n == 0) {
        t->broken = true;
        snprintf(last_error, sizeof(last_error), "connection closed during the TLS handshake");
    }
    return -1;
}

bool
tls_handshake_done(const struct tls_conn *t)
{
    return SSL_is_init_finished(t->ssl);
}

ssize_t
tls_read(struct tls_conn *t, void *buf, size_t len)
{
    size_t got = 0, n;

    /* Decrypted bytes OpenSSL already holds come along in the same call. */
    while (got < len) {
        int rc;

        errno = 0;
        rc = SSL_read_ex(t->ssl, (char *)buf + got, len - got, &n);
        if (rc != 1) {
            if (got > 0)
                break;          /* report what arrived; the error comes again */
            /* A peer that leaves mid-handshake reads as a plain EOF: TCP
             * health checks on the TLS port do just that, quietly. */
            return tls_failed(t, rc);
        }
        got += n;
        if (SSL_pending(t->ssl) == 0)
            break;
    }
    return (ssize_t)got;
}

ssize_t
tls_write(struct tls_conn *t, const void *buf, size_t len)
{
    size_t n;
    int rc;

    errno = 0;
    rc = SSL_write_ex(t->ssl, buf, len, &n);
    if (rc == 1)
        return (ssize_t)n;
    if (tls_failed(t, rc) == 0) {
        errno = EPIPE;          /* the peer closed while we still had replies */
        snprintf(last_error, sizeof(last_error), "%s", strerror(EPIPE));
    }
    return -1;
}

bool
tls_wants_write(const struct tls_conn *t)
{
    return t->want_write;
}

bool
tls_pending(const struct tls_conn *t)
{
    return SSL_pending(t->ssl) > 0;
}

const char *
tls_error(const struct tls_conn *t)
{
    return last_error[0] ? last_error : "TLS error";
}

const char *
conn_error(const struct tls_conn *t)
{
    if (t != NULL && errno == EPROTO)
        return tls_error(t);
    return strerror(errno);
}
