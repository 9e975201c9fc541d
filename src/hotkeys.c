/*
 * hotkeys.c: hot-key detection (pure): a space-saving top-K sketch with
 * decay, sampling, and the merge of top lists.
 *
 * Owns: the entries (key, count, overestimate), a min-heap of them by count
 * (the root is the counter a new key takes over) and an open-addressing
 * index by key hash (linear probing, backward-shift deletion, so no
 * tombstones pile up). Invariant: every entry in use is in the heap and in
 * the index exactly once, and a parent's count is never above its
 * children's. Halving every count keeps that order, so decay needs no
 * re-heapify.
 */
#include "hotkeys.h"

#include <stdlib.h>
#include <string.h>

#define NO_ENTRY UINT32_MAX

struct hotkey_entry {
    uint64_t    hash;
    uint64_t    count;                  /* samples, halved every period */
    uint64_t    err;                    /* of count: inherited from the key it replaced */
    uint64_t    where;
    uint32_t    heap_pos;
    uint32_t    klen;
    char        key[HOTKEYS_KEY_MAX];
};

struct hotkeys {
    struct hotkeys_head  head;          /* first: hotkeys_sampled reads it */
    unsigned             cap;           /* entries */
    unsigned             n;             /* entries in use */
    uint64_t             decayed_ms;    /* start of the current period */
    uint32_t             mask;          /* index slots - 1 */
    struct hotkey_entry *entries;
    uint32_t            *heap;          /* entry numbers, min-heap on count */
    uint32_t            *index;         /* entry numbers by hash, NO_ENTRY when free */
};

static unsigned
index_slots(unsigned capacity)
{
    unsigned slots = 8;

    while (slots < 2 * capacity)
        slots *= 2;
    return slots;
}

size_t
hotkeys_bytes(unsigned capacity)
{
    return sizeof(struct hotkeys) + capacity * (sizeof(struct hotkey_entry) + sizeof(uint32_t))
         + index_slots(capacity) * sizeof(uint32_t);
}

struct hotkeys *
hotkeys_new(unsigned capacity, unsigned every, uint64_t now_ms)
{
    struct hotkeys *hk = calloc(1, sizeof(*hk));
    unsigned slots = index_slots(capacity ? capacity : 1);

    if (hk == NULL)
        return NULL;
    hk->cap = capacity ? capacity : 1;
    hk->head.every = every ? every : 1;
    hk->head.countdown = hk->head.every;
    hk->decayed_ms = now_ms;
    hk->mask = slots - 1;
    hk->entries = calloc(hk->cap, sizeof(*hk->entries));
    hk->heap = calloc(hk->cap, sizeof(*hk->heap));
    hk->index = malloc(slots * sizeof(*hk->index));
    if (hk->entries == NULL || hk->heap == NULL || hk->index == NULL) {
        hotkeys_free(hk);
        return NULL;
    }
    memset(hk->index, 0xff, slots * sizeof(*hk->index));
    return hk;
}

void
hotkeys_free(struct hotkeys *hk)
{
    if (hk == NULL)
        return;
    free(hk->entries);
    free(hk->heap);
    free(hk->index);
    free(hk);
}

/*
 * Eight bytes a step, each mixed by a multiply and a shift: a few
 * instructions per word, and the low bits (the index slot) depend on every
 * byte of the key.
 */
uint64_t
hotkeys_hash(const char *key, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len, w;

    while (len >= 8) {
        memcpy(&w, key, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        key += 8;
        len -= 8;
    }
    w = 0;
    while (len-- > 0)
        w = (w << 8) | (unsigned char)key[len];
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

unsigned
hotkeys_every(const struct hotkeys *hk)
{
    return hk->head.every;
}

/* ---- the index ---- */

static bool
entry_is(const struct hotkey_entry *e, uint64_t hash, const char *key, uint32_t klen)
{
    return e->hash == hash && e->klen == klen && memcmp(e->key, key, klen) == 0;
}

/* The entry number of key, or NO_ENTRY. */
static uint32_t
index_find(const struct hotkeys *hk, uint64_t hash, const char *key, uint32_t klen)
{
    uint32_t slot = (uint32_t)hash & hk->mask, e;

    while ((e = hk->index[slot]) != NO_ENTRY) {
        if (entry_is(&hk->entries[e], hash, key, klen))
            return e;
        slot = (slot + 1) & hk->mask;
    }
    return NO_ENTRY;
}

static void
index_add(struct hotkeys *hk, uint32_t e)
{
    uint32_t slot = (uint32_t)hk->entries[e].hash & hk->mask;

    while (hk->index[slot] != NO_ENTRY)
        slot = (slot + 1) & hk->mask;
    hk->index[slot] = e;
}

/* Take entry e out of the index, moving later probes back into the hole. */
static void
index_remove(struct hotkeys *hk, uint32_t e)
{
    uint32_t hole = (uint32_t)hk->entries[e].hash & hk->mask, slot, home, f;

    while (hk->index[hole] != e)
        hole = (hole + 1) & hk->mask;
    hk->index[hole] = NO_ENTRY;
    for (slot = (hole + 1) & hk->mask; (f = hk->index[slot]) != NO_ENTRY;
         slot = (slot + 1) & hk->mask) {
        home = (uint32_t)hk->entries[f].hash & hk->mask;
        /* f may move to the hole when its home is not in (hole, slot]. */
        if (((slot - home) & hk->mask) >= ((slot - hole) & hk->mask)) {
            hk->index[hole] = f;
            hk->index[slot] = NO_ENTRY;
            hole = slot;
        }
    }
}

/* ---- the heap ---- */

static void
heap_set(struct hotkeys *hk, uint32_t pos, uint32_t e)
{
    hk->heap[pos] = e;
    hk->entries[e].heap_pos = pos;
}

static uint64_t
heap_count(const struct hotkeys *hk, uint32_t pos)
{
    return hk->entries[hk->heap[pos]].count;
}

/* Entry at pos grew: move it down below its smaller children. */
static void
heap_down(struct hotkeys *hk, uint32_t pos)
{
    uint32_t e = hk->heap[pos], child;
    uint64_t count = hk->entries[e].count;

    while ((child = 2 * pos + 1) < hk->n) {
        if (child + 1 < hk->n && heap_count(hk, child + 1) < heap_count(hk, child))
            child++;
        if (heap_count(hk, child) >= count)
            break;
        heap_set(hk, pos, hk->heap[child]);
        pos = child;
    }
    heap_set(hk, pos, e);
}

/* A new entry at pos: move it up above larger parents. */
static void
heap_up(struct hotkeys *hk, uint32_t pos)
{
    uint32_t e = hk->heap[pos];
    uint64_t count = hk->entries[e].count;

    while (pos > 0 && heap_count(hk, (pos - 1) / 2) > count) {
        heap_set(hk, pos, hk->heap[(pos - 1) / 2]);
        pos = (pos - 1) / 2;
    }
    heap_set(hk, pos, e);
}

/* ---- counting ---- */

void
hotkeys_count(struct hotkeys *hk, uint64_t hash, const char *key, uint32_t klen,
              uint64_t where)
{
    struct hotkey_entry *entry;
    bool fresh = false;
    uint32_t e;

    if (klen > HOTKEYS_KEY_MAX)
        return;
    e = index_find(hk, hash, key, klen);
    if (e != NO_ENTRY) {
        entry = &hk->entries[e];
        entry->count++;
        if (where != 0)
            entry->where = where;
        heap_down(hk, entry->heap_pos);
        return;
    }
    if (hk->n < hk->cap) {
        e = hk->n++;
        entry = &hk->entries[e];
        entry->count = entry->err = 0;
        heap_set(hk, hk->n - 1, e);
        fresh = true;
    } else {
        /* Space-saving: the least counted key gives up its counter, and
         * the newcomer inherits its count as a possible overestimate. */
        e = hk->heap[0];
        entry = &hk->entries[e];
        index_remove(hk, e);
        entry->err = entry->count;
    }
    entry->hash = hash;
    entry->klen = klen;
    entry->where = where;
    memcpy(entry->key, key, klen);
    entry->count++;
    index_add(hk, e);
    if (fresh)
        heap_up(hk, entry->heap_pos);
    else
        heap_down(hk, entry->heap_pos);
}

void
hotkeys_decay(struct hotkeys *hk, uint64_t now_ms)
{
    uint64_t periods;
    unsigned i, shift;

    if (now_ms < hk->decayed_ms + HOTKEYS_PERIOD_MS)
        return;
    periods = (now_ms - hk->decayed_ms) / HOTKEYS_PERIOD_MS;
    hk->decayed_ms += periods * HOTKEYS_PERIOD_MS;
    shift = periods > 63 ? 63 : (unsigned)periods;
    for (i = 0; i < hk->n; i++) {
        hk->entries[i].count >>= shift;
        hk->entries[i].err >>= shift;
    }
}

/*
 * Between two decays a steady rate r (samples per period) has count
 * r * (1 + f), f the share of the period gone: so r = count / (1 + f).
 */
static double
entry_rate(const struct hotkeys *hk, const struct hotkey_entry *e, uint64_t now_ms)
{
    double f = now_ms > hk->decayed_ms
             ? (double)(now_ms - hk->decayed_ms) / HOTKEYS_PERIOD_MS : 0.0;

    if (f > 1.0)
        f = 1.0;
    return (double)(e->count - e->err) * hk->head.every * (1000.0 / HOTKEYS_PERIOD_MS) / (1.0 + f);
}

double
hotkeys_rate(const struct hotkeys *hk, uint64_t hash, const char *key, uint32_t klen,
             uint64_t now_ms)
{
    uint32_t e = index_find(hk, hash, key, klen);

    return e == NO_ENTRY ? 0.0 : entry_rate(hk, &hk->entries[e], now_ms);
}

static int
by_rate_desc(const void *a, const void *b)
{
    const struct hotkey_view *x = a, *y = b;

    if (x->rate != y->rate)
        return x->rate > y->rate ? -1 : 1;
    if (x->klen != y->klen)
        return x->klen < y->klen ? -1 : 1;
    return memcmp(x->key, y->key, x->klen);
}

int
hotkeys_top(const struct hotkeys *hk, struct hotkey_view *out, int n, uint64_t now_ms)
{
    struct hotkey_view *all;
    unsigned i;
    int k = 0;

    if (n <= 0 || hk->n == 0)
        return 0;
    all = malloc(hk->n * sizeof(*all));
    if (all == NULL)
        return 0;
    for (i = 0; i < hk->n; i++) {
        const struct hotkey_entry *e = &hk->entries[i];
        struct hotkey_view *v = &all[k];

        v->rate = entry_rate(hk, e, now_ms);
        if (v->rate <= 0.0)
            continue;
        v->where = e->where;
        v->klen = e->klen;
        memcpy(v->key, e->key, e->klen);
        v->key[e->klen] = '\0';
        v->pool[0] = v->server[0] = '\0';
        k++;
    }
    qsort(all, (size_t)k, sizeof(*all), by_rate_desc);
    if (k > n)
        k = n;
    memcpy(out, all, (size_t)k * sizeof(*out));
    free(all);
    return k;
}

void
hotkeys_printable(const char *key, uint32_t klen, uint32_t max_bytes, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    uint32_t i;

    for (i = 0; i < klen && i < max_bytes && n + 5 <= outlen; i++) {
        unsigned char b = (unsigned char)key[i];

        if (b > ' ' && b <= '~' && b != '\\') {
            out[n++] = (char)b;
        } else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[b >> 4];
            out[n++] = hex[b & 15];
        }
    }
    if (outlen > 0)
        out[n < outlen ? n : outlen - 1] = '\0';
}

void
hotkeys_merge(struct hotkey_view *acc, int *nacc, int cap, const struct hotkey_view *in, int nin)
{
    int i, j, low;

    for (i = 0; i < nin; i++) {
        for (j = 0; j < *nacc; j++)
            if (acc[j].klen == in[i].klen && memcmp(acc[j].key, in[i].key, in[i].klen) == 0)
                break;
        if (j < *nacc) {
            if (in[i].rate > acc[j].rate) {
                double sum = acc[j].rate + in[i].rate;

                acc[j] = in[i];
                acc[j].rate = sum;
            } else {
                acc[j].rate += in[i].rate;
            }
            continue;
        }
        if (*nacc < cap) {
            acc[(*nacc)++] = in[i];
            continue;
        }
        for (low = 0, j = 1; j < *nacc; j++)
            if (acc[j].rate < acc[low].rate)
                low = j;
        if (cap > 0 && in[i].rate > acc[low].rate)
            acc[low] = in[i];
    }
    qsort(acc, (size_t)*nacc, sizeof(*acc), by_rate_desc);
}
