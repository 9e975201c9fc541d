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
    int8_t   llen;              /* listener name's length; -1: any listener */
    char     prefix[DCACHE_PREFIX_MAX];
    char     listener[DCACHE_LISTENER_MAX];
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

/* The length of a listener name as an entry holds it; -1 when too long. */
static int
listener_len(const char *l)
{
    size_t n = strnlen(l, DCACHE_LISTENER_MAX + 1);

    return n > DCACHE_LISTENER_MAX ? -1 : (int)n;
}

/* Does the entry hold for a client of listener l? Measured without strlen:
 * most entries hold for any listener. */
static bool
entry_serves(const struct entry *e, const char *l)
{
    return e->llen < 0
        || (strncmp(e->listener, l, (size_t)e->llen) == 0 && l[e->llen] == '\0');
}

/* Is the entry's listener (llen -1: any listener) exactly this one? */
static bool
entry_listener_is(const struct entry *e, int llen, const char *l)
{
    return e->llen == llen && (llen <= 0 || memcmp(e->listener, l, (size_t)llen) == 0);
}

int
dcache_get(const struct dcache *dc, int hook, int op, bool has_delim,
           const char *prefix, size_t len, const char *listener)
{
    unsigned i;

    if (len > DCACHE_PREFIX_MAX)
        return -1;
    for (i = dcache_hash(hook, op, has_delim, prefix, len) & dc->mask;
         dc->slots[i].route_id >= 0; i = (i + 1) & dc->mask) {
        const struct entry *e = &dc->slots[i];

        if (entry_is(e, hook, op, has_delim, prefix, len) && entry_serves(e, listener))
            return e->route_id;
    }
    return -1;
}

void
dcache_put(struct dcache *dc, int hook, int op, bool has_delim,
           const char *prefix, size_t len, const char *listener, int route_id)
{
    int llen = listener != NULL ? listener_len(listener) : -1;
    struct entry *e;
    unsigned i;

    if (len > DCACHE_PREFIX_MAX || dc->count >= dc->capacity || route_id < 0
        || (listener != NULL && llen < 0))
        return;
    for (i = dcache_hash(hook, op, has_delim, prefix, len) & dc->mask;
         dc->slots[i].route_id >= 0; i = (i + 1) & dc->mask)
        if (entry_is(&dc->slots[i], hook, op, has_delim, prefix, len)
            && entry_listener_is(&dc->slots[i], llen, listener))
            return;
    e = &dc->slots[i];
    e->route_id = route_id;
    e->hook = hook;
    e->op = (int16_t)op;
    e->has_delim = has_delim;
    e->len = (uint8_t)len;
    memcpy(e->prefix, prefix, len);
    e->llen = (int8_t)llen;
    if (llen > 0)
        memcpy(e->listener, listener, (size_t)llen);
    dc->count++;
}
