/*
 * binclient.h: the binary-protocol front end of a client connection.
 *
 * A connection whose first byte is 0x80 speaks memcached's binary protocol
 * (client.c decides, once). Each binary request becomes the internal request
 * the same text command would: the classic command it is (get, set, add,
 * delete, incr, touch, ...), carried to memcached as the equivalent meta
 * command (mg, ms, md, ma), or flush_all, or one luagent answers itself
 * (noop, version, stat, quit). It is routed by the same tree, and its reply
 * is written back as the binary response memcached would have written.
 */
#ifndef BINCLIENT_H
#define BINCLIENT_H

#include <stdbool.h>
#include <stdint.h>

struct buf;
struct client;
struct creq;
struct worker;

/* What the client's read loop does once binclient_take has looked. */
struct bin_take {
    uint32_t need;      /* > 0: nothing taken; wait until the input holds this many bytes */
    uint32_t consume;   /* bytes of the input the request used */
    uint32_t swallow;   /* bytes after them to drop unread (a refused value) */
    bool     close;     /* read nothing more: the connection closes after its replies */
};

/* Take the binary request at the start of in[0..avail) (avail > 0). */
void binclient_take(struct client *c, struct worker *w, const char *in, uint32_t avail,
                    struct bin_take *t);

/* Write a binary request's response (nothing for a quiet success). */
void binclient_write(struct worker *w, struct buf *out, const struct creq *r);

#endif
