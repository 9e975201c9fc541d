/*
 * dcache.c: open-addressing table of hook decisions.
 *
 * The table has twice the capacity in slots, so probes stay short; when
 * `capacity` entries are held, new decisions are simply not remembered (the
 * hook then runs for them every time), which bounds memory without eviction.
 */
#include "dcache.h"

#include <stdlib.h>
#include <string.h>

struct entry {
    int32_t  route_id;          /* -1: empty slot */
    int32_t  hook;
    int16_t  op;
    uint8_t  has_delim;
    uint8_t  len;
    char     prefix[DCACHE_PREFIX_MAX];
};

struct dcache {
    unsigned      capacity;
    unsigned      count;
    unsigned      mask;         /* slots - 1 */
    struct entry *slots;
};

struct dcache *
dcache_new(unsigned capacity)
{
    struct dcache *dc = calloc(1, sizeof(*dc));
    unsigned slots = 16;

    if (dc == NULL)
        return NULL;
    while (slots < capacity * 2)
        slots *= 2;
    dc->capacity = capacity;
    dc->mask = slots - 1;
    dc->slots = malloc(sizeof(*dc->slots) * slots);
    if (dc->slots == NULL) {
        free(dc);
        return NULL;
    }
    dcache_clear(dc);
    return dc;
}

void
dcache_free(struct dcache *dc)
{
    if (dc == NULL)
        return;
    free(dc->slots);
    free(dc);
}

void
dcache_clear(struct dcache *dc)
{
    unsigned i;

    for (i = 0; i <= dc->mask; i++)
        dc->slots[i].route_id = -1;
    dc->count = 0;
}

unsigned
dcache_capacity(const struct dcache *dc)
{
    return dc->capacity;
}

unsigned
dcache_count(const struct dcache *dc)
{
    return dc->count;
}

static uint32_t
dcache_hash(int hook, int op, bool has_delim, const char *p, size_t len)
{
    uint32_t h = 2166136261u ^ (uint32_t)hook ^ ((uint32_t)(op + 1) << 16)
                 ^ ((uint32_t)has_delim << 24);
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

static bool
entry_is(const struct entry *e, int hook, int op, bool has_delim, const char *p, size_t len)
{
    return e->hook == hook && e->op == op && e->has_delim == has_delim
        && e->len == len && memcmp(e->prefix, p, len) == 0;
}

int
dcache_get(const struct dcache *dc, int hook, int op, bool has_delim,
           const char *prefix, size_t len)
{
    unsigned i;

    if (len > DCACHE_PREFIX_MAX)
        return -1;
    for (i = dcache_hash(hook, op, has_delim, prefix, len) & dc->mask;
         dc->slots[i].route_id >= 0; i = (i + 1) & dc->mask)
        if (entry_is(&dc->slots[i], hook, op, has_delim, prefix, len))
            return dc->slots[i].route_id;
    return -1;
}

void
dcache_put(struct dcache *dc, int hook, int op, bool has_delim,
           const char *prefix, size_t len, int route_id)
{
    struct entry *e;
    unsigned i;

    if (len > DCACHE_PREFIX_MAX || dc->count >= dc->capacity || route_id < 0)
        return;
    for (i = dcache_hash(hook, op, has_delim, prefix, len) & dc->mask;
         dc->slots[i].route_id >= 0; i = (i + 1) & dc->mask)
        if (entry_is(&dc->slots[i], hook, op, has_delim, prefix, len))
            return;
    e = &dc->slots[i];
    e->route_id = route_id;
    e->hook = hook;
    e->op = (int16_t)op;
    e->has_delim = has_delim;
    e->len = (uint8_t)len;
    memcpy(e->prefix, prefix, len);
    dc->count++;
}
