/*
 * respond.h: reply assembly (pure: no I/O, no logging): the bytes a client
 * gets for a finished request, from its slots' results, in the text
 * protocol or the binary one.
 *
 * A `stats` request is the one exception: its text is rendered by the
 * caller (stats.c sits above this layer), and only wrapped here for a
 * binary client. Counters that replies decide (get_hits, get_misses,
 * server_errors) are added to the stats given.
 */
#ifndef RESPOND_H
#define RESPOND_H

#include "counters.h"
#include "request.h"

struct buf;
struct bufq;

/* The client's text for a failure: "SERVER_ERROR backend timeout" etc. */
const char *fail_reason_line(enum fail_reason why);

/*
 * Append the reply to a finished text request (not a stats one): its local
 * line, VALUE lines in key order and END, a meta reply with the client's key
 * put back, flush_all's OK, or the server's line; luagent's own error where
 * a server could not be asked. Nothing for noreply.
 */
void respond_text(struct bufq *q, const struct creq *r, struct stats *st);

/*
 * Values at least this long go into the output by reference to the server's
 * read buffer (bufq_share); shorter ones are copied, which costs less than
 * one more piece for the writev.
 */
#define RESPOND_SHARE_MIN   1024

/*
 * A multi-get written as its keys come in: the VALUE lines of the slots
 * from `from` on that are done, up to the first that is not; returns that
 * slot's index (the next to write). respond_text then writes the rest from
 * r->nwritten on, and END. A key that fails is a miss, as it is when the
 * reply is written whole.
 */
uint32_t respond_text_values(struct bufq *q, const struct creq *r, uint32_t from,
                             struct stats *st);

/* The same for a binary request: the response packets memcached would write. */
void respond_binary(struct buf *out, const struct creq *r, struct stats *st);

/* A binary Stat with a group to show: one packet per STAT line of text (NULL:
 * the text could not be had, ENOMEM). */
void respond_binary_stats(struct buf *out, const struct creq *r, const struct buf *text);

#endif
