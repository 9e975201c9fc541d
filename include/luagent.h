/*
 * luagent.h: program-wide constants and limits.
 *
 * Every limit a client or operator can run into is defined here once, so the
 * code, the error messages and docs/operating.md agree.
 */
#ifndef LUAGENT_H
#define LUAGENT_H

#define LUAGENT_VERSION     "0.1.0"
/*
 * `version` answers "VERSION 1.6.18 luagent-0.1.0" (and `stats` the same in
 * STAT version): luagent speaks the text protocol as memcached 1.6.18 does, and
 * clients read that number to decide which features to use. It stands alone as
 * the first word: clients that split the line on spaces take the second token
 * (the npm memcached package then keeps the last x.y.z in it), and libmemcached
 * reads numbers up to the first other byte. luagent's own version follows.
 */
#define MEMCACHED_COMPAT_VERSION "1.6.18"
#define VERSION_TEXT        MEMCACHED_COMPAT_VERSION " luagent-" LUAGENT_VERSION

#define KEY_MAX             250             /* memcached's key length limit */
#define LINE_MAX_PLAIN      2048            /* longest non-retrieval request line */
#define LINE_MAX_GET        (256 * 1024)    /* longest get/gets/gat/gats line */
#define ITEM_MAX_DEFAULT    (1024 * 1024)   /* largest value accepted */
#define MAX_MEMORY_DEFAULT  (1024ull << 20) /* buffer bytes of all clients: 1 GiB */
#define CLIENT_MEMORY_ITEMS 8               /* default client_max_memory, in item_max */
#define RESOLVE_EVERY_S_DEFAULT 30          /* server names asked again this often */
#define REPLY_LINE_MAX      2048            /* longest backend reply line */

#define DEFAULT_PORT        11211
#define DEFAULT_MAX_CONNS   4096
#define DEFAULT_MAX_IDLE    20
#define DEFAULT_THREADS_MAX 4       /* default -t: the cores, at most this */
#define DEFAULT_TIMEOUT_MS          1000
#define DEFAULT_CONNECT_TIMEOUT_MS  500
#define DEFAULT_FAILURE_LIMIT       3
#define DEFAULT_RETRY_AFTER_MS      1000
#define DEFAULT_RETRY_MAX_MS        30000
#define DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS 5000   /* a client's whole TLS handshake */
#define DEFAULT_SERVER_STATS_INTERVAL_S  10     /* background `stats` to each server */
#define HOTKEYS_CAPACITY    128     /* keys each worker's hot-key sketch holds */
#define HOTKEYS_PUBLISHED   32      /* of them, published once a second for stats */
#define HOTKEYS_SAMPLE_DEFAULT 16   /* one read in this many is counted */
#define SERVER_STATS_INTERVAL_MAX_S      86400

#define ERR_LEN             256             /* caller-provided error buffers */

/*
 * A byte a key may hold: anything but a space, a control byte (below 0x20)
 * and DEL. memcached itself stores keys with tabs or control bytes, but then
 * writes them back in VALUE lines, which a reply parser cannot tell from
 * garbage on a server connection that other clients share. The request
 * parser refuses such keys and the reply parser such VALUE lines: both ask
 * this one test, so they agree on what a key is.
 */
static inline int
key_byte_ok(unsigned char c)
{
    return c > ' ' && c != 0x7f;
}

#define ARRAY_SIZE(a)       (sizeof(a) / sizeof((a)[0]))

#endif
