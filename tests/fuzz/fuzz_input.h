/*
 * fuzz_input.h: what the parser fuzz targets share: the trap on a broken
 * invariant, and how an input's 3 header bytes choose the size limit and
 * the split point before the byte stream that follows.
 */
#ifndef FUZZ_INPUT_H
#define FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "luagent.h"

#define CHECK(c)    do { if (!(c)) __builtin_trap(); } while (0)

struct fuzz_input {
    uint32_t    limit;      /* item_max / max_value given to the parser */
    uint32_t    split;      /* where the stream is first cut */
    const char *buf;        /* the stream */
    size_t      len;
};

/* 0 when the input is too short to have a header. */
static inline int
fuzz_input(const uint8_t *data, size_t size, struct fuzz_input *in)
{
    if (size < 3)
        return 0;
    switch (data[0] & 3) {
    case 0:  in->limit = ITEM_MAX_DEFAULT; break;
    case 1:  in->limit = data[1]; break;
    case 2:  in->limit = (uint32_t)data[1] << 8 | (data[0] >> 2); break;
    default: in->limit = UINT32_MAX; break;
    }
    in->split = data[2];
    in->buf = (const char *)data + 3;
    in->len = size - 3;
    return 1;
}

#endif
