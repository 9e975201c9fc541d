/*
 * hotkeys.h: hot-key detection (pure): a bounded top-K sketch of the keys
 * one worker reads, and the merge of several workers' top lists.
 *
 * The sketch is space-saving (Metwally et al.): K counters, each holding a
 * key, its count and the overestimate it inherited when it took the counter
 * of the least counted key. Counts halve once per period (decay), so a
 * count measures the recent rate; a key read r times a second settles at a
 * count between r and 2r (samples) between two decays. Only one read in
 * `every` is counted (sampling), so the per-request cost is a countdown.
 *
 * Memory is fixed at creation: K entries with room for the longest key,
 * a heap and an index of 2K slots. Nothing is allocated after hotkeys_new.
 */
#ifndef HOTKEYS_H
#define HOTKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOTKEYS_KEY_MAX     250         /* the longest memcached key */
#define HOTKEYS_NAME_MAX    64          /* pool and server names in a view */
#define HOTKEYS_PERIOD_MS   1000        /* counts halve once per period */

struct hotkeys;

/* The start of every sketch: the sampling countdown, inline on the request path. */
struct hotkeys_head {
    unsigned    countdown;              /* reads until the next counted one */
    unsigned    every;                  /* one read in every is counted */
};

/* One key of a top list, with its estimated rate (reads per second). */
struct hotkey_view {
    double      rate;                   /* a lower bound: count less overestimate */
    uint64_t    where;                  /* the caller's tag of where it was last read */
    uint32_t    klen;
    char        key[HOTKEYS_KEY_MAX + 1];
    char        pool[HOTKEYS_NAME_MAX]; /* filled by the caller from where */
    char        server[HOTKEYS_NAME_MAX];
};

/*
 * A sketch of `capacity` keys counting one read in `every` (1: all), its
 * first period starting at now_ms. NULL out of memory.
 */
struct hotkeys *hotkeys_new(unsigned capacity, unsigned every, uint64_t now_ms);
void hotkeys_free(struct hotkeys *hk);

/* The hash the sketch indexes keys by (also good for other per-key tables). */
uint64_t hotkeys_hash(const char *key, size_t len);

/* Count one read of key (its hash given), last seen at `where` (0: keep). */
void hotkeys_count(struct hotkeys *hk, uint64_t hash, const char *key, uint32_t klen,
                   uint64_t where);

/* The sampling countdown: true for the one read in `every` to be counted. */
static inline bool
hotkeys_sampled(struct hotkeys *hk)
{
    struct hotkeys_head *head = (struct hotkeys_head *)hk;

    if (--head->countdown > 0)
        return false;
    head->countdown = head->every;
    return true;
}

/* Count a read if it is sampled (the request-path entry point). */
static inline void
hotkeys_see(struct hotkeys *hk, const char *key, uint32_t klen, uint64_t where)
{
    if (hotkeys_sampled(hk))
        hotkeys_count(hk, hotkeys_hash(key, klen), key, klen, where);
}

/* Halve the counts once for each whole period since the last decay. */
void hotkeys_decay(struct hotkeys *hk, uint64_t now_ms);

/*
 * The estimated reads per second of a key at now_ms: a lower bound (the
 * overestimate a counter inherited is left out), 0 for a key not counted.
 */
double hotkeys_rate(const struct hotkeys *hk, uint64_t hash, const char *key, uint32_t klen,
                    uint64_t now_ms);

/* The top n keys by rate, highest first, into out; returns how many. */
int hotkeys_top(const struct hotkeys *hk, struct hotkey_view *out, int n, uint64_t now_ms);

/*
 * Merge list `in` (nin keys) into `acc` (*nacc keys, room for cap): the
 * rates of one key add up; the names of the higher rate stay. The result is
 * sorted, highest rate first; keys past cap are dropped.
 */
void hotkeys_merge(struct hotkey_view *acc, int *nacc, int cap,
                   const struct hotkey_view *in, int nin);

/*
 * A key as printable text for stats and metrics: bytes outside '!'..'~'
 * and the backslash become \xNN; at most max_bytes of the key are shown.
 * out has room for outlen bytes (4 * HOTKEYS_KEY_MAX + 1 is always enough).
 */
void hotkeys_printable(const char *key, uint32_t klen, uint32_t max_bytes, char *out,
                       size_t outlen);

/* Bytes a sketch of this capacity holds (for the memory figures). */
size_t hotkeys_bytes(unsigned capacity);

/* One read in how many it counts. */
unsigned hotkeys_every(const struct hotkeys *hk);

#endif
