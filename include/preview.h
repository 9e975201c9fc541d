/*
 * preview.h: a candidate policy loaded beside the live one (`luagent
 * --preview FILE`). Every key of every client request is also placed by the
 * candidate's route tree, through the route engine against simulated servers
 * (sim.h): no request is sent for it. Keys whose servers would differ are
 * counted, by key prefix and by live pool, with a few samples, for `stats
 * preview` and the metrics.
 *
 * The main thread loads the candidate (preview_new) and hands it to every
 * worker, which puts a preview node in front of its generation's root
 * (preview_attach); a reload keeps the preview (preview_move) and starts its
 * counts over, since the live side changed. Without a preview nothing of this
 * runs. The candidate config lives until the main thread and every worker
 * have let it go.
 */
#ifndef PREVIEW_H
#define PREVIEW_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct preview;
struct preview_worker;
struct route_ctx;
struct wconfig;

#define PREVIEW_SAMPLES     8       /* differing keys kept as examples */
#define PREVIEW_GROUPS_MAX  64      /* prefixes, and pools, counted apart */
#define PREVIEW_NAME_MAX    128

/* POLICY + this names the candidate's path (`luagent --preview` writes it). */
#define PREVIEW_FILE_SUFFIX ".preview"

/* ---- main thread ---- */

/*
 * A preview of candidate (taken over) read from path, against the live
 * config; it holds one reference for the caller. NULL out of memory (the
 * candidate is then freed).
 */
struct preview *preview_new(struct config *candidate, const char *path,
                            const struct config *live);

/* One more holder (a worker it is handed to). */
void preview_ref(struct preview *p);

/* A holder lets go; the last frees the candidate. */
void preview_release(struct preview *p);

/* The preview stats show (NULL: none); the previous one is released. */
void preview_show(struct preview *p);

/* The live side changed (a reload): the counts start over. */
void preview_restart(const struct config *live);

/* Is the shown preview's candidate the policy with this checksum? */
bool preview_is_live(uint32_t checksum);

/* Counted when a preview loads / fails to load. */
extern uint64_t preview_loads, preview_failures;

/* ---- a worker (its own thread) ---- */

/*
 * Put p in front of wc's root for this thread; NULL out of memory (then no
 * preview runs on this worker).
 */
struct preview_worker *preview_attach(struct preview *p, struct route_ctx *rt,
                                      struct wconfig *wc);

/* A new generation: the preview moves from one wconfig to the other. */
void preview_move(struct preview_worker *pw, struct wconfig *from, struct wconfig *to);

/* Take the preview away from wc and free it (its preview is released). */
void preview_detach(struct preview_worker *pw, struct route_ctx *rt, struct wconfig *wc);

/* ---- readers (stats, metrics) ---- */

struct preview_group {
    char     name[PREVIEW_NAME_MAX];
    uint64_t keys;          /* keys seen */
    uint64_t differ;        /* keys whose servers would differ */
};

struct preview_view {
    bool     loaded;
    char     file[PREVIEW_NAME_MAX * 2];
    uint32_t checksum;
    int64_t  load_time;
    uint64_t keys, differ, skipped;
    struct preview_group prefixes[PREVIEW_GROUPS_MAX];
    int      nprefixes;
    struct preview_group pools[PREVIEW_GROUPS_MAX];
    int      npools;
    char     samples[PREVIEW_SAMPLES][2 * PREVIEW_NAME_MAX + 300];
    int      nsamples;
};

/* A copy of what the shown preview has counted (v->loaded false: none). */
void preview_view(struct preview_view *v);

#endif
