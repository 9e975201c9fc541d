/*
 * parsecost.c: instructions per call of the two pure parsers, for `make bench`.
 *
 *   parsecost KIND N
 *
 * parses N inputs of one KIND, the lines the bench's get/set traffic makes:
 *
 *   get      "get bench:K\r\n"                          proto_parse
 *   set      "set bench:K F 0 100\r\n" + 100-byte block  proto_parse
 *   value    "VALUE bench:K F 100\r\n" + block           reply_parse
 *   known    the same, its key given as the one expected  reply_parse_expect
 *   end      "END\r\n"                                   reply_parse
 *   stored   "STORED\r\n"                                reply_parse
 *
 * with K cycling over 0..9999 and F a 10-digit flags value, as bench/loadgen.c
 * writes them. Run it under callgrind with --toggle-collect=proto_parse (or
 * reply_parse, reply_parse_expect): the Ir collected divided by N is the
 * parser's cost per call,
 * memchr and every other callee included. Each call's result is checked, so
 * a parser that stops accepting the traffic fails here rather than looking
 * fast. Exit status 1 on a wrong result, 2 on usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luagent.h"
#include "proto.h"
#include "reply.h"

#define KEYS        10000
#define VALUE_LEN   100
#define INPUT_MAX   256

/* The KEYS inputs of one kind, each at a fixed stride in one array. */
static char   inputs[KEYS][INPUT_MAX];
static size_t lens[KEYS];

static void
make_inputs(const char *kind)
{
    char block[VALUE_LEN + 2];
    int k, n;

    memset(block, 'x', VALUE_LEN);
    memcpy(block + VALUE_LEN, "\r\n", 2);
    for (k = 0; k < KEYS; k++) {
        unsigned flags = 1000000000u + (unsigned)k * 7919u;
        char *p = inputs[k];

        if (strcmp(kind, "get") == 0)
            n = snprintf(p, INPUT_MAX, "get bench:%d\r\n", k);
        else if (strcmp(kind, "set") == 0)
            n = snprintf(p, INPUT_MAX, "set bench:%d %u 0 %d\r\n", k, flags, VALUE_LEN);
        else if (strcmp(kind, "value") == 0 || strcmp(kind, "known") == 0)
            n = snprintf(p, INPUT_MAX, "VALUE bench:%d %u %d\r\n", k, flags, VALUE_LEN);
        else if (strcmp(kind, "end") == 0)
            n = snprintf(p, INPUT_MAX, "END\r\n");
        else if (strcmp(kind, "stored") == 0)
            n = snprintf(p, INPUT_MAX, "STORED\r\n");
        else
            return;
        if (strcmp(kind, "set") == 0 || strcmp(kind, "value") == 0
            || strcmp(kind, "known") == 0) {
            memcpy(p + n, block, sizeof(block));
            n += (int)sizeof(block);
        }
        lens[k] = (size_t)n;
    }
}

static int
run_requests(const char *kind, long count)
{
    enum cmd want = strcmp(kind, "get") == 0 ? CMD_GET : CMD_SET;
    long i;

    for (i = 0; i < count; i++) {
        struct request rq;
        struct proto_error err;
        int k = (int)(i % KEYS);

        if (proto_parse(inputs[k], lens[k], ITEM_MAX_DEFAULT, &rq, &err) != PROTO_OK
            || rq.cmd != want || rq.nkeys != 1)
            return 1;
    }
    return 0;
}

/* "known": the key as a backend connection knows it, out of the line */
static char   key_of[KEYS][16];
static uint32_t key_len[KEYS];

static int
run_replies(const char *kind, long count)
{
    bool known = strcmp(kind, "known") == 0;
    enum reply_kind want = strcmp(kind, "value") == 0 || known ? REPLY_VALUE
                         : strcmp(kind, "end") == 0 ? REPLY_END : REPLY_STORED;
    long i;
    int k;

    for (k = 0; k < KEYS; k++)
        key_len[k] = (uint32_t)snprintf(key_of[k], sizeof(key_of[k]), "bench:%d", k);
    for (i = 0; i < count; i++) {
        struct reply r;
        enum reply_status st;

        k = (int)(i % KEYS);
        st = known ? reply_parse_expect(inputs[k], lens[k], UINT32_MAX - 2, key_of[k],
                                        key_len[k], &r)
                   : reply_parse(inputs[k], lens[k], UINT32_MAX - 2, &r);
        if (st != REPLY_OK_UNIT || r.kind != want || r.len != lens[k]
            || r.key_expected != known)
            return 1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    const char *kind;
    long count;
    int bad;

    if (argc != 3 || (count = atol(argv[2])) < 0) {
        fprintf(stderr, "usage: parsecost get|set|value|known|end|stored N\n");
        return 2;
    }
    kind = argv[1];
    make_inputs(kind);
    if (lens[0] == 0) {
        fprintf(stderr, "parsecost: unknown kind '%s'\n", kind);
        return 2;
    }
    if (strcmp(kind, "get") == 0 || strcmp(kind, "set") == 0)
        bad = run_requests(kind, count);
    else
        bad = run_replies(kind, count);
    if (bad) {
        fprintf(stderr, "parsecost: %s: a parse gave the wrong result\n", kind);
        return 1;
    }
    return 0;
}
