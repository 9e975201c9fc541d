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
 * `version` answers "VERSION 1.6.18-luagent-0.1.0": clients read the leading
 * memcached version to decide which protocol features to use, and luagent
 * speaks the text protocol as memcached 1.6.18 does.
 */
#define MEMCACHED_COMPAT_VERSION "1.6.18"

#define KEY_MAX             250             /* memcached's key length limit */
#define LINE_MAX_PLAIN      2048            /* longest non-retrieval request line */
#define LINE_MAX_GET        (256 * 1024)    /* longest get/gets/gat/gats line */
#define ITEM_MAX_DEFAULT    (1024 * 1024)   /* largest value accepted */
#define MAX_MEMORY_DEFAULT  (1024ull << 20) /* buffer bytes of all clients: 1 GiB */
#define CLIENT_MEMORY_ITEMS 8               /* default client_max_memory, in item_max */
#define REPLY_LINE_MAX      2048            /* longest backend reply line */

#define DEFAULT_PORT        11211
#define DEFAULT_MAX_CONNS   4096
#define DEFAULT_MAX_IDLE    20
#define DEFAULT_THREADS_MAX 4       /* default -t: the cores, at most this */
#define DEFAULT_TIMEOUT_MS          1000
#define DEFAULT_CONNECT_TIMEOUT_MS  500
#define DEFAULT_FAILURE_LIMIT       3
#define DEFAULT_RETRY_AFTER_MS      1000
#define DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS 5000   /* a client's whole TLS handshake */

#define ERR_LEN             256             /* caller-provided error buffers */

#define ARRAY_SIZE(a)       (sizeof(a) / sizeof((a)[0]))

#endif
