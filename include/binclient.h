/*
 * binclient.h: the binary-protocol front end of a client connection.
 *
 * A connection whose first byte is 0x80 speaks memcached's binary protocol
 * (client.c decides, once). Each binary request becomes the internal request
 * the same text command would: the classic command it is (get, set, add,
 * delete, incr, touch, ...), carried to memcached as the equivalent meta
 * command (mg, ms, md, ma), or flush_all, or one luagent answers itself
 * (noop, version, stat, quit). It is routed by the same tree, and its reply
 * is written back (respond.c) as the binary response memcached would have
 * written.
 */
#ifndef BINCLIENT_H
#define BINCLIENT_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct creq;
struct route_ctx;

/*
 * What the front end asks of the connection it reads for. client.c provides
 * these: the FIFO of requests is its own.
 */
struct bin_conn_ops {
    /* A new request at the tail of the client's FIFO, routed by the current
     * generation; NULL: out of memory, and the client was closed. */
    struct creq *(*request_new)(struct client *c);
    /* Its req and buf are set: count it, then answer or route it. */
    void (*request_start)(struct client *c, struct creq *r);
    /* Its answer was decided here (local set). */
    void (*request_ready)(struct client *c, struct creq *r);
    /* Are new requests refused (buffers past max_memory)? Counts and logs it. */
    bool (*memory_refused)(struct client *c);
};

/* The connection a binary request is read for. */
struct bin_conn {
    struct client              *c;
    struct route_ctx           *rt;     /* the thread's */
    const struct bin_conn_ops  *ops;
    struct buf                 *in;     /* its read buffer: a large value is
                                         * held there by reference (creq_share_data) */
};

/* What the client's read loop does once binclient_take has looked. */
struct bin_take {
    uint32_t need;      /* > 0: nothing taken; wait until the input holds this many bytes */
    uint32_t consume;   /* bytes of the input the request used */
    uint32_t swallow;   /* bytes after them to drop unread (a refused value) */
    bool     close;     /* read nothing more: the connection closes after its replies */
};

/* Take the binary request at the start of in[0..avail) (avail > 0). */
void binclient_take(const struct bin_conn *bc, const char *in, uint32_t avail,
                    struct bin_take *t);

#endif
