/*
 * guard.c: the remap guard, its force file, and --watch's sense of which
 * file changes need a reload. Main thread only.
 *
 * The guard compares placements (placement.h): a copy of the serving
 * generation's, taken before it is published, against the candidate's. The
 * force file is recognised by its identity and time stamp (device, inode,
 * modification time to the nanosecond), so a touch, or a new file put in
 * place, makes it fresh again even where luagent cannot remove it (a policy
 * directory that -u or systemd's ProtectSystem makes read-only).
 */
#include "guard.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "diff.h"
#include "log.h"
#include "luagent.h"
#include "placement.h"
#include "settings.h"
#include "stats.h"
#include "trial.h"

#define FORCE_SUFFIX ".force"

struct stamp {
    bool            set;
    dev_t           dev;
    ino_t           ino;
    struct timespec mtime;
};

static struct placement *serving;           /* the serving generation's, or NULL */
static double            serving_limit = -1;
static uint32_t          serving_checksum;
static char             *force_path;        /* NULL without -c */
static struct stamp      force_used;        /* the force file as last used (or stale) */
static uint32_t          failed_checksum;   /* bytes the last watched reload refused */
static bool              failed_set;

void
guard_force_path(const char *policy, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s%s", policy, FORCE_SUFFIX);
}

/* The force file's stamp now; set is false when there is none. */
static struct stamp
force_stamp(void)
{
    struct stamp st = { .set = false };
    struct stat sb;

    if (force_path != NULL && stat(force_path, &sb) == 0) {
        st.set = true;
        st.dev = sb.st_dev;
        st.ino = sb.st_ino;
        st.mtime = sb.st_mtim;
    }
    return st;
}

static bool
same_stamp(const struct stamp *a, const struct stamp *b)
{
    return a->set == b->set && a->dev == b->dev && a->ino == b->ino
        && a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* A force file that was not there, or was touched, since its last use. */
static bool
force_fresh(struct stamp *now)
{
    *now = force_stamp();
    return now->set && !same_stamp(now, &force_used);
}

/* Used: remove it; where that is not allowed, remember it as used. */
static void
force_consume(const struct stamp *now)
{
    force_used = *now;
    if (unlink(force_path) < 0 && errno != ENOENT)
        log_info("force file %s: cannot remove it (%s); it counts again once touched again",
                 force_path, strerror(errno));
}

void
guard_init(const char *policy)
{
    char path[ERR_LEN];

    if (policy == NULL)
        return;
    guard_force_path(policy, path, sizeof(path));
    force_path = strdup(path);
    force_used = force_stamp();
}

void
guard_serving(const struct config *cfg)
{
    placement_free(serving);
    serving = placement_of(cfg);
    if (serving == NULL)
        log_warn("remap guard: out of memory copying generation %u's placement: "
                 "the next reload is not checked", cfg->generation);
    serving_limit = cfg->max_remap;
    serving_checksum = cfg->checksum;
    failed_set = false;
}

/* The lower of two limits, a negative one meaning none. */
static double
lower_limit(double a, double b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

/*
 * 1 when next moves more than the limit of some pool's keys (why says
 * which pool and how much), 0 when not, -1 out of memory.
 */
static int
over_limit(const struct placement *old, double old_limit, const struct config *next,
           char *why, size_t whylen)
{
    double limit = lower_limit(old_limit, next->max_remap);
    struct placement *pn;
    struct pool_change *changes = NULL;
    const struct pool_change *worst;
    int n, over = 0;

    if (limit < 0)
        return 0;
    if ((pn = placement_of(next)) == NULL || (n = placement_compare(old, pn, &changes)) < 0) {
        placement_free(pn);
        return -1;
    }
    worst = placement_worst(changes, n);
    if (worst != NULL && worst->share.share > limit) {
        snprintf(why, whylen, "pool %s would move %.2f%% of its keys%s, over settings.max_remap "
                 "%.2f%%", worst->name, 100.0 * worst->share.share,
                 worst->share.exact ? "" : " (estimated: its key hash changes)", 100.0 * limit);
        over = 1;
    }
    free(changes);
    placement_free(pn);
    return over;
}

int
guard_admit(const struct config *next, char *err, size_t errlen)
{
    char why[ERR_LEN];
    struct stamp now;
    bool fresh = force_fresh(&now);
    int over = serving ? over_limit(serving, serving_limit, next, why, sizeof(why)) : 0;

    if (over < 0) {
        log_warn("remap guard: out of memory comparing placements: reload not checked");
        over = 0;
    }
    if (over && !fresh) {
        __atomic_add_fetch(&stats_reload_refused_remap, 1, __ATOMIC_RELAXED);
        snprintf(err, errlen, "%s; to apply it anyway, touch %s and reload again "
                 "(or run luagent --reload --force)", why, force_path ? force_path : "FORCE");
        return -1;
    }
    if (fresh) {
        if (over)
            log_warn("reload forced by %s: %s", force_path, why);
        else
            log_info("force file %s: not needed by this reload, removed", force_path);
        force_consume(&now);
    }
    return 0;
}

int
guard_against(const struct config *next, const struct settings *s, FILE *out,
              char *err, size_t errlen)
{
    struct config *old = trial_load(s->against, s, 1, err, errlen);
    struct placement *po;
    char why[ERR_LEN];
    int over;

    if (old == NULL)
        return -1;
    po = placement_of(old);
    over = po == NULL || diff_print_pools(old, next, out) < 0 ? -1
         : over_limit(po, old->max_remap, next, why, sizeof(why));
    placement_free(po);
    config_free(old);
    if (over < 0)
        snprintf(err, errlen, "out of memory comparing %s with %s", next->source, s->against);
    else if (over)
        snprintf(err, errlen, "%s: %s (against %s)", next->source, why, s->against);
    return over ? -1 : 0;
}

int
guard_worth_reloading(uint32_t checksum)
{
    struct stamp now;

    if (checksum == serving_checksum)
        return 0;
    return !failed_set || checksum != failed_checksum || force_fresh(&now);
}

void
guard_reload_failed(uint32_t checksum)
{
    failed_checksum = checksum;
    failed_set = true;
}
