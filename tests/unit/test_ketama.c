/*
 * test_ketama.c: known-answer tests for the server rings.
 *
 * The ketama tables below were measured, not computed: the real twemproxy
 * (Debian's nutcracker 0.5.0, amd64) ran a pool with `distribution: ketama`
 * in front of real memcached servers on 127.0.0.1; a few hundred keys were
 * set through it, then each memcached was asked which keys it holds. Every
 * table is a sample of one such run (ASCII keys plus random keys with bytes
 * >= 0x80, which pin down twemproxy's signed-char hashing). The ring only
 * sees "host:port" strings, so no server needs to be running here.
 * The modula answers are DJB hashes reduced by hand.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ketama.h"
#include "hash.h"
#include "md5.h"
#include "unit.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

struct placed {
    const char *key;
    int         server;     /* index in the server list */
};

/* One measured configuration. */
struct vset {
    const char               *what;
    enum hash_kind            hash;
    const char               *tag;        /* hash_tag or NULL */
    const struct ring_server *servers;
    int                       nservers;
    int                       npoints;    /* from twemproxy's float formula */
    const struct placed      *keys;
    size_t                    nkeys;
};

static const struct ring_server srv_4[] = {
    { "127.0.0.1", 21211, 1, NULL },
    { "127.0.0.1", 21212, 1, NULL },
    { "127.0.0.1", 21213, 1, NULL },
    { "127.0.0.1", 21214, 1, NULL },
};

static const struct ring_server srv_11211[] = {
    { "127.0.0.1", 11211, 1, NULL },
    { "127.0.0.2", 11211, 1, NULL },
    { "127.0.0.3", 11211, 1, NULL },
    { "127.0.0.4", 11211, 1, NULL },
};

static const struct ring_server srv_w123[] = {
    { "127.0.0.1", 21211, 1, NULL },
    { "127.0.0.1", 21212, 2, NULL },
    { "127.0.0.1", 21213, 3, NULL },
};

static const struct ring_server srv_w1234[] = {
    { "127.0.0.1", 21211, 1, NULL },
    { "127.0.0.1", 21212, 2, NULL },
    { "127.0.0.1", 21213, 3, NULL },
    { "127.0.0.1", 21214, 4, NULL },
};

static const struct ring_server srv_named[] = {
    { "127.0.0.1", 21211, 1, "alpha" },
    { "127.0.0.1", 21212, 1, "beta" },
    { "127.0.0.1", 21213, 1, "gamma" },
    { "127.0.0.1", 21214, 1, "delta" },
};

static const struct ring_server srv_w16666[] = {
    { "127.0.0.1", 21211, 1, NULL },
    { "127.0.0.1", 21212, 6, NULL },
    { "127.0.0.1", 21213, 6, NULL },
    { "127.0.0.1", 21214, 6, NULL },
    { "127.0.0.1", 21215, 6, NULL },
};

static const struct ring_server srv_w22777[] = {
    { "127.0.0.1", 21211, 2, NULL },
    { "127.0.0.1", 21212, 2, NULL },
    { "127.0.0.1", 21213, 7, NULL },
    { "127.0.0.1", 21214, 7, NULL },
    { "127.0.0.1", 21215, 7, NULL },
};

/* hash md5, servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_md5_4[] = {
    { "key:0", 2 },
    { "key:1", 0 },
    { "key:2", 3 },
    { "key:3", 1 },
    { "key:4", 1 },
    { "key:5", 1 },
    { "key:6", 2 },
    { "key:7", 1 },
    { "key:8", 0 },
    { "key:9", 1 },
    { "key:10", 0 },
    { "key:11", 3 },
    { "key:12", 1 },
    { "key:13", 0 },
    { "key:14", 3 },
    { "key:15", 0 },
    { "key:16", 3 },
    { "key:17", 2 },
    { "key:18", 0 },
    { "key:19", 3 },
    { "key:20", 0 },
    { "key:21", 0 },
    { "key:22", 2 },
    { "key:23", 2 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 0 },
    { "\212|", 1 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 2 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 3 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 0 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 0 },
};

/* hash md5, servers 127.0.0.1..127.0.0.4, all on port 11211, weight 1 */
static const struct placed tp_md5_11211[] = {
    { "key:0", 0 },
    { "key:1", 2 },
    { "key:2", 0 },
    { "key:3", 1 },
    { "key:4", 2 },
    { "key:5", 2 },
    { "key:6", 0 },
    { "key:7", 3 },
    { "key:8", 1 },
    { "key:9", 0 },
    { "key:10", 3 },
    { "key:11", 3 },
    { "key:12", 2 },
    { "key:13", 2 },
    { "key:14", 0 },
    { "key:15", 2 },
    { "key:16", 0 },
    { "key:17", 0 },
    { "key:18", 2 },
    { "key:19", 2 },
    { "key:20", 3 },
    { "key:21", 1 },
    { "key:22", 3 },
    { "key:23", 1 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 0 },
    { "\212|", 0 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 1 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 0 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 0 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 2 },
};

/* hash md5, servers 127.0.0.1:21211:1, :21212:2, :21213:3 */
static const struct placed tp_md5_w123[] = {
    { "key:0", 2 },
    { "key:1", 0 },
    { "key:2", 1 },
    { "key:3", 1 },
    { "key:4", 1 },
    { "key:5", 1 },
    { "key:6", 2 },
    { "key:7", 2 },
    { "key:8", 2 },
    { "key:9", 1 },
    { "key:10", 1 },
    { "key:11", 2 },
    { "key:12", 1 },
    { "key:13", 0 },
    { "key:14", 1 },
    { "key:15", 2 },
    { "key:16", 1 },
    { "key:17", 2 },
    { "key:18", 2 },
    { "key:19", 2 },
    { "key:20", 0 },
    { "key:21", 2 },
    { "key:22", 2 },
    { "key:23", 2 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 2 },
    { "\212|", 1 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 2 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 2 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 0 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 1 },
};

/* hash md5, servers 127.0.0.1:21211..21214 with weights 1, 2, 3, 4 */
static const struct placed tp_md5_w1234[] = {
    { "key:0", 2 },
    { "key:1", 0 },
    { "key:2", 3 },
    { "key:3", 3 },
    { "key:4", 1 },
    { "key:5", 1 },
    { "key:6", 2 },
    { "key:7", 2 },
    { "key:8", 2 },
    { "key:9", 1 },
    { "key:10", 1 },
    { "key:11", 3 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 3 },
    { "\212|", 1 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 2 },
};

/* hash md5, servers 127.0.0.1:21211..21214:1 named alpha, beta, gamma, delta */
static const struct placed tp_md5_named[] = {
    { "key:0", 2 },
    { "key:1", 0 },
    { "key:2", 2 },
    { "key:3", 3 },
    { "key:4", 0 },
    { "key:5", 2 },
    { "key:6", 0 },
    { "key:7", 0 },
    { "key:8", 3 },
    { "key:9", 0 },
    { "key:10", 0 },
    { "key:11", 2 },
    { "key:12", 2 },
    { "key:13", 1 },
    { "key:14", 0 },
    { "key:15", 2 },
    { "key:16", 0 },
    { "key:17", 3 },
    { "key:18", 2 },
    { "key:19", 2 },
    { "key:20", 3 },
    { "key:21", 3 },
    { "key:22", 0 },
    { "key:23", 2 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 0 },
    { "\212|", 0 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 2 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 0 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 0 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 1 },
};

/* hash md5, servers 127.0.0.1:21211..21215, weights 1, 6, 6, 6, 6
 * (float rounding: 780 points, not 800; key:28, key:106, key:115 move
 * if the shares are computed in double) */
static const struct placed tp_md5_w16666[] = {
    { "key:0", 2 },
    { "key:1", 0 },
    { "key:2", 3 },
    { "key:3", 4 },
    { "key:4", 1 },
    { "key:5", 4 },
    { "key:6", 2 },
    { "key:7", 2 },
    { "key:8", 4 },
    { "key:9", 1 },
    { "key:10", 4 },
    { "key:11", 1 },
    { "key:12", 1 },
    { "key:13", 4 },
    { "key:14", 3 },
    { "key:15", 4 },
    { "key:16", 3 },
    { "key:17", 2 },
    { "key:18", 2 },
    { "key:19", 3 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 4 },
    { "\212|", 1 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 4 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 4 },
    { "key:28", 2 },
    { "key:106", 4 },
    { "key:115", 4 },
};

/* hash md5, servers 127.0.0.1:21211..21215, weights 2, 2, 7, 7, 7
 * (792 points in float; key:98 moves if computed in double) */
static const struct placed tp_md5_w22777[] = {
    { "key:0", 2 },
    { "key:1", 0 },
    { "key:2", 3 },
    { "key:3", 4 },
    { "key:4", 1 },
    { "key:5", 4 },
    { "key:6", 2 },
    { "key:7", 2 },
    { "key:8", 4 },
    { "key:9", 1 },
    { "key:10", 4 },
    { "key:11", 4 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 3 },
    { "\212|", 1 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 4 },
    { "key:98", 2 },
};

/* hash fnv1a_64 (twemproxy's default), servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_fnv1a_64_4[] = {
    { "key:0", 2 },
    { "key:1", 2 },
    { "key:2", 2 },
    { "key:3", 2 },
    { "key:4", 2 },
    { "key:5", 2 },
    { "key:6", 2 },
    { "key:7", 2 },
    { "key:8", 2 },
    { "key:9", 2 },
    { "key:10", 1 },
    { "key:11", 1 },
    { "key:12", 1 },
    { "key:13", 1 },
    { "key:14", 1 },
    { "key:15", 1 },
    { "key:16", 1 },
    { "key:17", 1 },
    { "key:18", 1 },
    { "key:19", 1 },
    { "key:20", 1 },
    { "key:21", 1 },
    { "key:22", 1 },
    { "key:23", 1 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 3 },
    { "\212|", 0 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 1 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 1 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 2 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 0 },
};

/* hash fnv1a_64, servers 127.0.0.1:21211:1, :21212:2, :21213:3 */
static const struct placed tp_fnv1a_64_w123[] = {
    { "key:0", 2 },
    { "key:1", 2 },
    { "key:2", 2 },
    { "key:3", 2 },
    { "key:4", 2 },
    { "key:5", 2 },
    { "key:6", 2 },
    { "key:7", 2 },
    { "key:8", 2 },
    { "key:9", 2 },
    { "key:10", 1 },
    { "key:11", 1 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 2 },
    { "\212|", 0 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 1 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 1 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 2 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 2 },
};

/* hash fnv1_64, servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_fnv1_64_4[] = {
    { "key:0", 3 },
    { "key:1", 3 },
    { "key:2", 3 },
    { "key:3", 3 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 1 },
    { "\212|", 3 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 3 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 1 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 1 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 2 },
};

/* hash fnv1a_32, servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_fnv1a_32_4[] = {
    { "key:0", 2 },
    { "key:1", 3 },
    { "key:2", 3 },
    { "key:3", 1 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 1 },
    { "\212|", 0 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 0 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 0 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 3 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 3 },
};

/* hash fnv1_32, servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_fnv1_32_4[] = {
    { "key:0", 0 },
    { "key:1", 0 },
    { "key:2", 0 },
    { "key:3", 0 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 2 },
    { "\212|", 2 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 2 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 2 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 0 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 0 },
};

/* hash crc32, servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_crc32_4[] = {
    { "key:0", 1 },
    { "key:1", 1 },
    { "key:2", 1 },
    { "key:3", 1 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 1 },
    { "\212|", 1 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 1 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 1 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 1 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 1 },
};

/* hash crc32a, servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_crc32a_4[] = {
    { "key:0", 0 },
    { "key:1", 2 },
    { "key:2", 3 },
    { "key:3", 3 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 3 },
    { "\212|", 2 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 2 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 2 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 2 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 0 },
};

/* hash murmur, servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_murmur_4[] = {
    { "key:0", 0 },
    { "key:1", 0 },
    { "key:2", 0 },
    { "key:3", 0 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 1 },
    { "\212|", 3 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 0 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 2 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 0 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 0 },
};

/* hash jenkins, servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_jenkins_4[] = {
    { "key:0", 1 },
    { "key:1", 2 },
    { "key:2", 1 },
    { "key:3", 1 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 3 },
    { "\212|", 3 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 0 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 1 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 3 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 2 },
};

/* hash one_at_a_time, servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_one_at_a_time_4[] = {
    { "key:0", 1 },
    { "key:1", 2 },
    { "key:2", 0 },
    { "key:3", 2 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 1 },
    { "\212|", 0 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 1 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 0 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 0 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 3 },
};

/* hash hsieh, servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_hsieh_4[] = {
    { "key:0", 0 },
    { "key:1", 1 },
    { "key:2", 3 },
    { "key:3", 1 },
    { "\363\347wc\361G~\331\343\377\200v%\134\325\317n\272@\377", 3 },
    { "\212|", 1 },
    { "m\320\2746O@(Tt!]mn\365\214\210V\363\230\301\321\334\313\201", 1 },
    { "\370`\375\327/\341\264c\200h\202[\367X", 1 },
    { "G\217\321/\363\377\314\374\202(u\363\324\246\211}9\314", 2 },
    { "\331\222u\3540>\262\274O\3210\356\313\315", 0 },
    { "\350\216\354\314\365\230\340", 2 },
    { "\305B\254>\304xaC\357W\224", 2 },
    { "i\326\301\215v4!0\223\266\322(\205\365\342", 1 },
};

/* hash md5, hash_tag "{}", servers 127.0.0.1:21211..21214:1 */
static const struct placed tp_md5_tag[] = {
    { "pre{user0}post", 2 },
    { "pre{user1}post", 1 },
    { "pre{user2}post", 0 },
    { "pre{user3}post", 2 },
    { "pre{user4}post", 3 },
    { "pre{user5}post", 1 },
    { "user0", 2 },
    { "user1", 1 },
    { "user2", 0 },
    { "user3", 2 },
    { "user4", 3 },
    { "user5", 1 },
    { "a{}b{c0}", 1 },
    { "a{}b{c1}", 0 },
    { "a{}b{c2}", 0 },
    { "{x0", 0 },
    { "{x1", 0 },
    { "{x2", 3 },
};

#define VSET(what, hash, tag, srv, npoints, keys) \
    { what, hash, tag, srv, (int)NELEM(srv), npoints, keys, NELEM(keys) }

static const struct vset measured[] = {
    VSET("md5 x4", HASH_MD5, NULL, srv_4, 640, tp_md5_4),
    VSET("md5 port 11211", HASH_MD5, NULL, srv_11211, 640, tp_md5_11211),
    VSET("md5 w1,2,3", HASH_MD5, NULL, srv_w123, 480, tp_md5_w123),
    VSET("md5 w1,2,3,4", HASH_MD5, NULL, srv_w1234, 640, tp_md5_w1234),
    VSET("md5 named", HASH_MD5, NULL, srv_named, 640, tp_md5_named),
    VSET("md5 w1,6,6,6,6", HASH_MD5, NULL, srv_w16666, 780, tp_md5_w16666),
    VSET("md5 w2,2,7,7,7", HASH_MD5, NULL, srv_w22777, 792, tp_md5_w22777),
    VSET("fnv1a_64 x4", HASH_FNV1A_64, NULL, srv_4, 640, tp_fnv1a_64_4),
    VSET("fnv1a_64 w1,2,3", HASH_FNV1A_64, NULL, srv_w123, 480,
         tp_fnv1a_64_w123),
    VSET("fnv1_64 x4", HASH_FNV1_64, NULL, srv_4, 640, tp_fnv1_64_4),
    VSET("fnv1a_32 x4", HASH_FNV1A_32, NULL, srv_4, 640, tp_fnv1a_32_4),
    VSET("fnv1_32 x4", HASH_FNV1_32, NULL, srv_4, 640, tp_fnv1_32_4),
    VSET("crc32 x4", HASH_CRC32, NULL, srv_4, 640, tp_crc32_4),
    VSET("crc32a x4", HASH_CRC32A, NULL, srv_4, 640, tp_crc32a_4),
    VSET("murmur x4", HASH_MURMUR, NULL, srv_4, 640, tp_murmur_4),
    VSET("jenkins x4", HASH_JENKINS, NULL, srv_4, 640, tp_jenkins_4),
    VSET("one_at_a_time x4", HASH_ONE_AT_A_TIME, NULL, srv_4, 640,
         tp_one_at_a_time_4),
    VSET("hsieh x4", HASH_HSIEH, NULL, srv_4, 640, tp_hsieh_4),
    VSET("md5 hash_tag", HASH_MD5, "{}", srv_4, 640, tp_md5_tag),
};

/* Server index for key on ring r, as a pool would compute it. */
static int
place(const struct ring *r, enum hash_kind kind, const char *tag,
      const char *key)
{
    size_t len = strlen(key);

    hash_tag_apply(tag, &key, &len);
    return ring_lookup(r, hash_key(kind, key, len));
}

static struct ring *
build(enum dist dist, const struct ring_server *s, int n)
{
    char err[128] = "";
    struct ring *r = ring_build(dist, s, n, err, sizeof(err));

    UNIT_REPORT(r != NULL, "ring_build: %s", err);
    return r;
}

static void
test_design_answers(void)
{
    struct ring *r;

    /* DESIGN.md section 3. */
    r = build(DIST_KETAMA, srv_4, 4);
    if (r != NULL) {
        CHECK_EQ(srv_4[place(r, HASH_MD5, NULL, "key:0")].port, 21213);
        CHECK_EQ(srv_4[place(r, HASH_MD5, NULL, "key:1")].port, 21211);
        CHECK_EQ(srv_4[place(r, HASH_MD5, NULL, "key:2")].port, 21214);
        ring_free(r);
    }
    r = build(DIST_KETAMA, srv_11211, 4);
    if (r != NULL) {
        CHECK_STR(srv_11211[place(r, HASH_MD5, NULL, "key:0")].host, "127.0.0.1");
        CHECK_STR(srv_11211[place(r, HASH_MD5, NULL, "key:1")].host, "127.0.0.3");
        CHECK_STR(srv_11211[place(r, HASH_MD5, NULL, "key:2")].host, "127.0.0.1");
        ring_free(r);
    }
}

static void
test_measured(void)
{
    size_t v, k;

    for (v = 0; v < NELEM(measured); v++) {
        const struct vset *m = &measured[v];
        struct ring *r = build(DIST_KETAMA, m->servers, m->nservers);

        if (r == NULL) {
            continue;
        }
        UNIT_REPORT(ring_points(r) == m->npoints, "%s: %d points, want %d",
                    m->what, ring_points(r), m->npoints);
        for (k = 0; k < m->nkeys; k++) {
            int got = place(r, m->hash, m->tag, m->keys[k].key);

            UNIT_REPORT(got == m->keys[k].server, "%s: key #%zu -> %d, "
                        "twemproxy %d", m->what, k, got, m->keys[k].server);
        }
        ring_free(r);
    }
}

static void
test_id_spelling(void)
{
    struct ring_server s[4];
    struct ring *r;
    size_t k;
    int i, same;

    /* A name equal to the host is the port-11211 spelling itself. */
    memcpy(s, srv_11211, sizeof(s));
    for (i = 0; i < 4; i++) {
        s[i].name = s[i].host;
    }
    r = build(DIST_KETAMA, s, 4);
    if (r != NULL) {
        for (k = 0; k < NELEM(tp_md5_11211); k++) {
            CHECK_EQ(place(r, HASH_MD5, NULL, tp_md5_11211[k].key),
                     tp_md5_11211[k].server);
        }
        ring_free(r);
    }

    /* An empty name counts as no name. */
    memcpy(s, srv_4, sizeof(s));
    for (i = 0; i < 4; i++) {
        s[i].name = "";
    }
    r = build(DIST_KETAMA, s, 4);
    if (r != NULL) {
        for (k = 0; k < NELEM(tp_md5_4); k++) {
            CHECK_EQ(place(r, HASH_MD5, NULL, tp_md5_4[k].key),
                     tp_md5_4[k].server);
        }
        ring_free(r);
    }

    /* Spelling ":11211" out gives another ring: many keys move. */
    memcpy(s, srv_11211, sizeof(s));
    s[0].name = "127.0.0.1:11211";
    s[1].name = "127.0.0.2:11211";
    s[2].name = "127.0.0.3:11211";
    s[3].name = "127.0.0.4:11211";
    r = build(DIST_KETAMA, s, 4);
    if (r != NULL) {
        same = 0;
        for (k = 0; k < NELEM(tp_md5_11211); k++) {
            same += place(r, HASH_MD5, NULL, tp_md5_11211[k].key) ==
                    tp_md5_11211[k].server;
        }
        UNIT_REPORT(same < (int)NELEM(tp_md5_11211), "%d of %zu unchanged",
                    same, NELEM(tp_md5_11211));
        ring_free(r);
    }
}

/* The md5 point group i of a server, as DESIGN.md spells its label. */
static uint32_t
point_of(const char *label, int h)
{
    unsigned char d[16];

    md5_digest(label, strlen(label), d);
    return (uint32_t)d[4 * h] | (uint32_t)d[4 * h + 1] << 8 |
           (uint32_t)d[4 * h + 2] << 16 | (uint32_t)d[4 * h + 3] << 24;
}

static void
test_ketama_edges(void)
{
    struct ring *r;
    uint32_t p;
    int h;

    r = build(DIST_KETAMA, srv_4, 4);
    if (r == NULL) {
        return;
    }
    /* A hash equal to a point belongs to that point's server. */
    for (h = 0; h < 4; h++) {
        p = point_of("127.0.0.1:21213-0", h);
        CHECK_EQ(ring_lookup(r, p), 2);
        p = point_of("127.0.0.1:21211-39", h);
        CHECK_EQ(ring_lookup(r, p), 0);
    }
    /* Past the last point the ring wraps to the first one, where 0 goes. */
    CHECK_EQ(ring_lookup(r, UINT32_MAX), ring_lookup(r, 0));
    ring_free(r);

    /* One server takes every key. */
    r = build(DIST_KETAMA, srv_4, 1);
    if (r != NULL) {
        CHECK_EQ(ring_points(r), 160);
        CHECK_EQ(ring_lookup(r, 0), 0);
        CHECK_EQ(ring_lookup(r, 0x80000000u), 0);
        CHECK_EQ(ring_lookup(r, UINT32_MAX), 0);
        ring_free(r);
    }

    /*
     * A tiny share floors to no points at all (1/1001 * 40 * 2 < 1), as in
     * twemproxy: that server never gets a key.
     */
    {
        static const struct ring_server lopsided[] = {
            { "127.0.0.1", 21211, 1, NULL },
            { "127.0.0.1", 21212, 1000, NULL },
        };
        uint32_t x;
        int on0 = 0;

        r = build(DIST_KETAMA, lopsided, 2);
        if (r != NULL) {
            CHECK_EQ(ring_points(r), 316);
            for (x = 0; x < 64; x++) {
                on0 += ring_lookup(r, x * 0x04000000u) == 0;
            }
            CHECK_EQ(on0, 0);
            ring_free(r);
        }
    }
}

static void
test_modula(void)
{
    /* DJB values: key:0 264809144, key:1 ...145, key:2 ...146, apple 253337143. */
    static const struct ring_server two[] = {
        { "a", 1, 1, NULL }, { "b", 1, 1, NULL },
    };
    static const struct ring_server five[] = {
        { "a", 1, 1, NULL }, { "b", 1, 1, NULL }, { "c", 1, 1, NULL },
        { "d", 1, 1, NULL }, { "e", 1, 1, NULL },
    };
    static const struct ring_server w12[] = {
        { "a", 1, 1, NULL }, { "b", 1, 2, NULL },
    };
    static const struct ring_server w213[] = {
        { "a", 1, 2, NULL }, { "b", 1, 1, NULL }, { "c", 1, 3, NULL },
    };
    struct ring *r;

    r = build(DIST_MODULA, two, 2);
    if (r != NULL) {
        CHECK_EQ(ring_points(r), 2);
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:0"), 0);
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:1"), 1);
        CHECK_EQ(place(r, HASH_DJB, NULL, "apple"), 1);
        ring_free(r);
    }
    r = build(DIST_MODULA, srv_4, 3);
    if (r != NULL) {
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:0"), 2);   /* digit sum 38 */
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:1"), 0);
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:2"), 1);
        CHECK_EQ(place(r, HASH_DJB, NULL, "apple"), 1);
        ring_free(r);
    }
    r = build(DIST_MODULA, srv_4, 4);
    if (r != NULL) {
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:0"), 0);
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:3"), 3);
        CHECK_EQ(place(r, HASH_DJB, NULL, "apple"), 3);
        ring_free(r);
    }
    r = build(DIST_MODULA, five, 5);
    if (r != NULL) {
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:0"), 4);   /* ends in 4 */
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:1"), 0);
        CHECK_EQ(place(r, HASH_DJB, NULL, "apple"), 3);
        CHECK_EQ(ring_lookup(r, 0), 0);
        CHECK_EQ(ring_lookup(r, UINT32_MAX), 0);          /* 4294967295 % 5 */
        ring_free(r);
    }
    /* Weighted: slots 0 | 1 2 for weights 1, 2 (hash % 3). */
    r = build(DIST_MODULA, w12, 2);
    if (r != NULL) {
        CHECK_EQ(ring_points(r), 2);
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:0"), 1);   /* slot 2 */
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:1"), 0);   /* slot 0 */
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:2"), 1);   /* slot 1 */
        ring_free(r);
    }
    /* Weights 2, 1, 3: slots 0 1 | 2 | 3 4 5 (hash % 6). */
    r = build(DIST_MODULA, w213, 3);
    if (r != NULL) {
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:0"), 1);   /* slot 2 */
        CHECK_EQ(place(r, HASH_DJB, NULL, "key:1"), 2);   /* slot 3 */
        CHECK_EQ(place(r, HASH_DJB, NULL, "apple"), 0);   /* slot 1 */
        CHECK_EQ(ring_lookup(r, 0), 0);
        CHECK_EQ(ring_lookup(r, 2), 1);
        CHECK_EQ(ring_lookup(r, 5), 2);
        CHECK_EQ(ring_lookup(r, 6), 0);
        ring_free(r);
    }
}

static void
test_build_errors(void)
{
    struct ring_server s[2] = {
        { "127.0.0.1", 21211, 1, NULL },
        { "127.0.0.1", 21212, 1, NULL },
    };
    char err[128];
    int d;

    for (d = DIST_KETAMA; d <= DIST_MODULA; d++) {
        err[0] = '\0';
        CHECK(ring_build((enum dist)d, s, 0, err, sizeof(err)) == NULL);
        CHECK(err[0] != '\0');
        CHECK(ring_build((enum dist)d, NULL, 2, err, sizeof(err)) == NULL);

        s[1].weight = 0;
        err[0] = '\0';
        CHECK(ring_build((enum dist)d, s, 2, err, sizeof(err)) == NULL);
        CHECK(strstr(err, "weight") != NULL);
        s[1].weight = 1;

        s[0].host = "";
        err[0] = '\0';
        CHECK(ring_build((enum dist)d, s, 2, err, sizeof(err)) == NULL);
        CHECK(strstr(err, "host") != NULL);
        s[0].host = NULL;
        CHECK(ring_build((enum dist)d, s, 2, err, sizeof(err)) == NULL);
        s[0].host = "127.0.0.1";

        s[0].port = 70000;
        CHECK(ring_build((enum dist)d, s, 2, err, sizeof(err)) == NULL);
        s[0].port = 21211;

        /* No error buffer is fine too. */
        CHECK(ring_build((enum dist)d, s, 0, NULL, 0) == NULL);
    }
    ring_free(NULL);
}

/* Marking a server dead walks on the ring exactly as a ring rebuilt
 * without it places the keys (what ejecting a server means). With equal
 * weights every server keeps its 160 points in both rings. */
static bool
live_except(int server, void *ctx)
{
    return server != *(const int *)ctx;
}

static void
test_lookup_live_matches_rebuilt_ring(void)
{
    static const struct ring_server all[] = {
        { "127.0.0.1", 21211, 1, NULL }, { "127.0.0.1", 21212, 1, NULL },
        { "127.0.0.1", 21213, 1, NULL }, { "127.0.0.1", 21214, 1, NULL },
    };
    char err[256], key[32];
    int dead, i, mismatches = 0, moved = 0;

    for (dead = 0; dead < 4; dead++) {
        struct ring_server rest[3];
        int orig[3], n = 0;
        struct ring *full, *without;

        for (i = 0; i < 4; i++)
            if (i != dead) {
                orig[n] = i;
                rest[n++] = all[i];
            }
        full = ring_build(DIST_KETAMA, all, 4, err, sizeof(err));
        without = ring_build(DIST_KETAMA, rest, 3, err, sizeof(err));
        for (i = 0; i < 2000; i++) {
            uint32_t h;

            snprintf(key, sizeof(key), "key:%d", i);
            h = hash_key(HASH_MD5, key, strlen(key));
            if (ring_lookup_live(full, h, live_except, &dead) != orig[ring_lookup(without, h)])
                mismatches++;
            if (ring_lookup(full, h) == dead)
                moved++;
        }
        ring_free(full);
        ring_free(without);
    }
    CHECK_EQ(mismatches, 0);
    CHECK(moved > 1000);        /* about a quarter of 4 x 2000 keys moved */

    /* Modula: the next live server in order; none live gives -1. */
    {
        struct ring *m = ring_build(DIST_MODULA, all, 2, err, sizeof(err));
        int d = 0;

        CHECK_EQ(ring_lookup(m, 0), 0);
        CHECK_EQ(ring_lookup_live(m, 0, live_except, &d), 1);
        ring_free(m);
        m = ring_build(DIST_MODULA, all, 1, err, sizeof(err));
        CHECK_EQ(ring_lookup_live(m, 7, live_except, &d), -1);
        ring_free(m);
    }
}

/*
 * The reference: the server of the first point at or above hash, found by a
 * plain binary search over all the sorted points (as lookups were made
 * before the bucket index), wrapping to the first point.
 */
static int
lookup_by_walk(const struct ring *r, uint32_t hash)
{
    int lo = 0, hi = ring_points(r);
    uint32_t value;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;

        ring_point(r, mid, &value);
        if (value < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return ring_point(r, lo == ring_points(r) ? 0 : lo, &value);
}

/* Every hash near a point, a bucket edge or the ends agrees with the reference. */
static void
check_lookups_walk(const struct ring *r)
{
    uint32_t value, x = 12345;
    int i, wrong = 0, d;

    for (i = 0; i < ring_points(r); i++) {
        ring_point(r, i, &value);
        for (d = -1; d <= 1; d++)
            wrong += ring_lookup(r, value + (uint32_t)d) != lookup_by_walk(r, value + (uint32_t)d);
    }
    for (i = 0; i < 1 << 15; i++) {
        uint32_t edge = (uint32_t)i << 17;

        wrong += ring_lookup(r, edge) != lookup_by_walk(r, edge);
        wrong += ring_lookup(r, edge - 1) != lookup_by_walk(r, edge - 1);
        x = x * 1103515245u + 12345u;
        wrong += ring_lookup(r, x) != lookup_by_walk(r, x);
    }
    wrong += ring_lookup(r, 0) != lookup_by_walk(r, 0);
    wrong += ring_lookup(r, UINT32_MAX) != lookup_by_walk(r, UINT32_MAX);
    CHECK_EQ(wrong, 0);
}

/* The bucket index finds what a search over all points finds, copied or not. */
static void
test_lookup_matches_walk(void)
{
    static const int sizes[] = { 1, 3, 4, 64, 512 };
    struct ring_server servers[512];
    char hosts[512][32];
    char err[128];
    size_t k;
    int i;

    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        struct ring *r, *copy;

        for (i = 0; i < sizes[k]; i++) {
            snprintf(hosts[i], sizeof(hosts[i]), "10.0.%d.%d", i / 256, i % 256);
            servers[i].host = hosts[i];
            servers[i].port = 11211;
            servers[i].weight = 1 + (unsigned)(i % 3);
            servers[i].name = NULL;
        }
        r = ring_build(DIST_KETAMA, servers, sizes[k], err, sizeof(err));
        CHECK(r != NULL);
        if (r == NULL)
            continue;
        check_lookups_walk(r);
        copy = ring_copy(r);
        CHECK(copy != NULL);
        if (copy != NULL)
            check_lookups_walk(copy);
        ring_free(copy);
        ring_free(r);
    }
}

int
main(void)
{
    test_design_answers();
    test_measured();
    test_id_spelling();
    test_ketama_edges();
    test_modula();
    test_build_errors();
    test_lookup_live_matches_rebuilt_ring();
    test_lookup_matches_walk();
    return UNIT_DONE();
}
