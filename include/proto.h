/*
 * proto.h: memcached text-protocol request parser, meta commands included
 * (pure: no I/O, no logging).
 *
 * The parser looks at the bytes a client sent and says one of: a whole request
 * line is here (and, for storage commands, how long its data block is), more
 * bytes are needed, or the line is bad (with memcached's own error reply and
 * what to do with the stream). It never copies: positions are offsets into the
 * caller's buffer. Data blocks are not parsed here; the caller waits for
 * data_len + 2 bytes after the line and checks the trailing "\r\n" with
 * proto_data_ok().
 */
#ifndef PROTO_H
#define PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cmd {
    CMD_GET, CMD_GETS, CMD_GAT, CMD_GATS,                       /* retrieval */
    CMD_SET, CMD_ADD, CMD_REPLACE, CMD_APPEND, CMD_PREPEND,     /* storage */
    CMD_CAS,
    CMD_DELETE, CMD_INCR, CMD_DECR, CMD_TOUCH,                  /* other keyed */
    CMD_MG, CMD_MS, CMD_MD, CMD_MA, CMD_ME,                     /* meta, keyed */
    CMD_FLUSH_ALL, CMD_VERSION, CMD_VERBOSITY, CMD_STATS,       /* proxy-level */
    CMD_QUIT, CMD_MN,
    CMD_COUNT
};

/* Operation classes, as policies name them (lg.by_op). */
enum op {
    OP_READ,            /* get gets gat gats mg me */
    OP_WRITE,           /* set add replace append prepend cas ms */
    OP_DELETE,          /* delete md */
    OP_ARITH,           /* incr decr ma */
    OP_TOUCH,           /* touch */
    OP_PROXY,           /* answered by the proxy itself or sent everywhere (mn too) */
    OP_COUNT
};

/* A text span inside the parsed buffer. */
struct span {
    uint32_t off;
    uint32_t len;
};

struct request {
    enum cmd    cmd;        /* CMD_COUNT when the command is unknown */
    bool        meta;       /* mg ms md ma me mn */
    bool        quiet;      /* meta: the "q" flag (the server decides what it
                             * leaves out; see backend.c) */
    bool        base64;     /* meta: the "b" flag: key is base64 of the real key */
    bool        ret_key;    /* meta: the reply carries the key ("k"; me always) */
    bool        noreply;    /* "noreply" was the last token: memcached then
                             * sends nothing for this line, errors included;
                             * also set for a line it drops silently */
    uint32_t    line_len;   /* bytes of the request line including "\r\n" */
    uint32_t    data_len;   /* storage: declared <bytes> (block is data_len + 2) */
    uint32_t    nkeys;      /* keyed commands: number of keys (>= 1; 0 only
                             * for "gat <exptime>" with no key, which
                             * memcached answers with "END"); else 0 */
    struct span key;        /* the first key */
    struct span keys;       /* all keys as written: "k1 k2 k3" (retrieval) */
    struct span args;       /* tokens after the key, "noreply" excluded:
                             * "flags exptime bytes [cas]", incr's delta,
                             * touch's exptime, delete's optional time;
                             * for gat/gats the exptime (before the keys);
                             * flush_all's delay, verbosity's level, stats'
                             * arguments. Empty (len 0) when there are none.
                             * Meta: every token after the key as written
                             * (ms: "<datalen> <flags>*"). */
};

enum proto_status {
    PROTO_OK,           /* *req describes a whole request line */
    PROTO_NEED_MORE,    /* no complete line yet (and no limit passed) */
    PROTO_ERROR,        /* bad line: reply with *err (unless req->noreply),
                         * drop req->line_len bytes, then drop
                         * req->data_len + 2 more if swallow is set */
    PROTO_CLOSE         /* reply with *err (unless req->noreply), then close:
                         * the stream cannot be resynchronised (line too
                         * long, unknown data length) */
};

struct proto_error {
    const char *msg;    /* full reply line without "\r\n", e.g. "ERROR" or
                         * "CLIENT_ERROR bad command line format" */
    bool        swallow;/* PROTO_ERROR: a data block of req->data_len + 2
                         * bytes follows the line and must be discarded */
};

/*
 * Parse the request at the start of buf[0..len). item_max bounds data_len:
 * a larger storage command is PROTO_ERROR with
 * "SERVER_ERROR object too large for cache" and swallow set.
 */
enum proto_status proto_parse(const char *buf, size_t len, uint32_t item_max,
                              struct request *req, struct proto_error *err);

/*
 * Iterate the keys of a retrieval request: start with *pos = req->keys.off;
 * each call stores the next key and returns true, or returns false at the end.
 */
bool proto_next_key(const char *buf, const struct request *req, uint32_t *pos,
                    struct span *key);

/* Does this command carry a data block (storage commands, ms)? */
bool proto_cmd_has_data(enum cmd cmd);

/* Is this a classic retrieval (get gets gat gats: many keys, VALUE...END)? */
bool proto_cmd_is_retrieval(enum cmd cmd);

/*
 * Decode a meta request's key (req->base64 set) into out, which holds at
 * least KEY_MAX bytes. Returns the decoded length (the parser has checked
 * that it decodes, so 0 only for a request it did not accept).
 */
uint32_t proto_meta_key(const char *buf, const struct request *req, char *out);

/* True when the data block of a storage request ends with "\r\n". */
bool proto_data_ok(const char *block, uint32_t data_len);

/*
 * The meta command that carries a keyed command to a server ("mg" for get,
 * gat and touch, "ms" for the storage commands, "md", "ma"; a meta command's
 * own name), for requests made meta by a front end that needs meta replies.
 */
const char *proto_meta_name(enum cmd cmd);

/* Command name ("get", "set", ...) and its operation class. */
const char *proto_cmd_name(enum cmd cmd);

/*
 * A known command's name (cmd below CMD_COUNT) sits zero-padded in
 * PROTO_NAME_ROOM readable bytes, so a writer may copy that many at once and
 * keep proto_cmd_name_len() of them: one fixed-size copy, no length scan.
 */
#define PROTO_NAME_ROOM 16
uint32_t proto_cmd_name_len(enum cmd cmd);
enum op proto_cmd_op(enum cmd cmd);
const char *proto_op_name(enum op op);

#endif
