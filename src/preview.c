/*
 * preview.c: a candidate policy placed beside the live one, key by key.
 *
 * Each worker runs two simulations (sim.h): one over the generation the
 * request is routed by, one over the candidate, both with every server up.
 * A key "differs" when the sets of servers that would take it (by host:port)
 * are not the same. Placement only: nothing is sent for the candidate, and
 * the live request goes on untouched.
 *
 * Counting takes the preview's lock once per key: a preview is a deliberate,
 * temporary cost (measured in docs/operating.md), and the lock keeps the
 * counts, groups and samples of all workers in one place for the readers.
 * The shown preview is reached through shown_lock, which readers hold while
 * they copy it, so it cannot be freed under them.
 */
#include "preview.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "luagent.h"
#include "request.h"
#include "route.h"
#include "sim.h"

#define PREVIEW_SERVERS_MAX 16      /* servers compared per key */

struct preview {
    int             refs;               /* atomic: the main thread + workers */
    struct config  *candidate;
    char            file[PREVIEW_NAME_MAX * 2];
    pthread_mutex_t lock;               /* everything below */
    uint64_t        keys, differ, skipped;
    struct preview_group prefixes[PREVIEW_GROUPS_MAX];  /* the last: no prefix */
    int             nprefixes;
    struct preview_group pools[PREVIEW_GROUPS_MAX];
    int             npools;
    char            samples[PREVIEW_SAMPLES][sizeof(((struct preview_view *)0)->samples[0])];
    int             nsamples;
};

struct preview_worker {
    struct route_preview rp;            /* first: the engine calls observe with it */
    struct route        *child[1];      /* the node's one child: the live root */
    struct route_counter *counter;      /* the node's slot in the wconfig */
    struct preview      *p;
    struct sim          *cand_sim, *live_sim;
    const struct config *live_cfg;      /* what live_sim simulates */
    struct sim_result    live_res, cand_res;
};

static pthread_mutex_t shown_lock = PTHREAD_MUTEX_INITIALIZER;
static struct preview *shown;

uint64_t preview_loads, preview_failures;

static char preview_name[] = "preview";

/* ---- groups ---- */

static void
group_name(struct preview_group *g, const char *name, size_t len)
{
    if (len >= sizeof(g->name))
        len = sizeof(g->name) - 1;
    memcpy(g->name, name, len);
    g->name[len] = '\0';
}

/* The prefixes both trees choose by, each once; the last group takes the rest. */
static void
collect_prefixes(struct preview *p, const struct config *cfg)
{
    int i, j, k;

    for (i = 0; i < cfg->nnodes; i++) {
        const struct route *r = cfg->nodes[i];

        for (j = 0; r->type == ROUTE_PREFIX && j < r->nprefixes; j++) {
            const struct prefix_entry *e = &r->prefixes[j];

            for (k = 0; k < p->nprefixes; k++)
                if (strlen(p->prefixes[k].name) == e->len
                    && memcmp(p->prefixes[k].name, e->prefix, e->len) == 0)
                    break;
            if (k == p->nprefixes && p->nprefixes < PREVIEW_GROUPS_MAX - 1)
                group_name(&p->prefixes[p->nprefixes++], e->prefix, e->len);
        }
    }
}

static void
restart_counts(struct preview *p, const struct config *live)
{
    p->keys = p->differ = p->skipped = 0;
    p->nprefixes = p->npools = p->nsamples = 0;
    memset(p->prefixes, 0, sizeof(p->prefixes));
    memset(p->pools, 0, sizeof(p->pools));
    collect_prefixes(p, p->candidate);
    if (live != NULL)
        collect_prefixes(p, live);
    group_name(&p->prefixes[p->nprefixes++], "*", 1);
}

/* The longest prefix group the key starts with, else the last ("*"). */
static struct preview_group *
prefix_group(struct preview *p, const char *key, uint32_t klen)
{
    struct preview_group *best = &p->prefixes[p->nprefixes - 1];
    size_t best_len = 0;
    int i;

    for (i = 0; i < p->nprefixes - 1; i++) {
        size_t len = strlen(p->prefixes[i].name);

        if (len > best_len && len <= klen && memcmp(key, p->prefixes[i].name, len) == 0) {
            best = &p->prefixes[i];
            best_len = len;
        }
    }
    return best;
}

/* The group of this name, added when new; NULL when the table is full. */
static struct preview_group *
named_group(struct preview_group *groups, int *n, const char *name)
{
    int i;

    for (i = 0; i < *n; i++)
        if (strcmp(groups[i].name, name) == 0)
            return &groups[i];
    if (*n == PREVIEW_GROUPS_MAX)
        return NULL;
    group_name(&groups[*n], name, strlen(name));
    return &groups[(*n)++];
}

/* ---- main thread ---- */

struct preview *
preview_new(struct config *candidate, const char *path, const struct config *live)
{
    struct preview *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        config_free(candidate);
        return NULL;
    }
    p->refs = 1;
    p->candidate = candidate;
    snprintf(p->file, sizeof(p->file), "%s", path);
    pthread_mutex_init(&p->lock, NULL);
    restart_counts(p, live);
    return p;
}

void
preview_ref(struct preview *p)
{
    __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
}

void
preview_release(struct preview *p)
{
    if (p == NULL || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    config_free(p->candidate);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void
preview_show(struct preview *p)
{
    struct preview *old;

    if (p != NULL)
        preview_ref(p);
    pthread_mutex_lock(&shown_lock);
    old = shown;
    shown = p;
    pthread_mutex_unlock(&shown_lock);
    preview_release(old);
}

void
preview_restart(const struct config *live)
{
    pthread_mutex_lock(&shown_lock);
    if (shown != NULL) {
        pthread_mutex_lock(&shown->lock);
        restart_counts(shown, live);
        pthread_mutex_unlock(&shown->lock);
    }
    pthread_mutex_unlock(&shown_lock);
}

bool
preview_is_live(uint32_t checksum)
{
    bool same;

    pthread_mutex_lock(&shown_lock);
    same = shown != NULL && shown->candidate->checksum == checksum;
    pthread_mutex_unlock(&shown_lock);
    return same;
}

/* ---- per key ---- */

static int
cmp_labels(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The servers that would take the key, as sorted host:port labels. */
static int
server_labels(const struct config *cfg, const struct sim *sim, const struct sim_result *res,
              const char **labels)
{
    int ids[PREVIEW_SERVERS_MAX], n = sim_servers(sim, res, ids, PREVIEW_SERVERS_MAX), i;

    for (i = 0; i < n; i++)
        labels[i] = cfg->servers[ids[i]].label;
    qsort(labels, (size_t)n, sizeof(labels[0]), cmp_labels);
    return n;
}

static size_t
labels_text(char *out, size_t size, const char **labels, int n)
{
    size_t len = 0;
    int i;

    len += (size_t)snprintf(out, size, "{");
    for (i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%s", i ? "," : "", labels[i]);
    if (len < size)
        len += (size_t)snprintf(out + len, size - len, "}");
    return len < size ? len : size - 1;
}

static void
count_key(struct preview *p, const struct call *c, const char *pools, bool differ,
          const char **live, int nlive, const char **cand, int ncand)
{
    struct preview_group *g;

    pthread_mutex_lock(&p->lock);
    p->keys++;
    p->differ += differ;
    g = prefix_group(p, c->key, c->klen);
    g->keys++;
    g->differ += differ;
    if ((g = named_group(p->pools, &p->npools, pools)) != NULL) {
        g->keys++;
        g->differ += differ;
    }
    if (differ && p->nsamples < PREVIEW_SAMPLES) {
        char *s = p->samples[p->nsamples++];
        size_t size = sizeof(p->samples[0]), len;

        len = (size_t)snprintf(s, size, "%s %.*s live ", proto_cmd_name(c->creq->req.cmd),
                               (int)(c->klen < 200 ? c->klen : 200), c->key);
        len += labels_text(s + len, size - len, live, nlive);
        len += (size_t)snprintf(s + len, size - len, " candidate ");
        labels_text(s + len, size - len, cand, ncand);
    }
    pthread_mutex_unlock(&p->lock);
}

static void
observe(struct route_preview *rp, struct route_ctx *rt, const struct call *c)
{
    struct preview_worker *pw = (struct preview_worker *)rp;
    const struct config *live = c->creq->wcfg->config;
    const char *live_labels[PREVIEW_SERVERS_MAX], *cand_labels[PREVIEW_SERVERS_MAX];
    enum cmd cmd = c->creq->req.cmd;
    char why[ERR_LEN], pools[PREVIEW_NAME_MAX];
    int nlive, ncand;
    size_t n;

    if (pw->live_cfg != live) {
        sim_free(pw->live_sim);
        pw->live_sim = sim_new((struct config *)live, rt->vm);
        pw->live_cfg = live;
    }
    if (pw->live_sim == NULL || pw->cand_sim == NULL
        || sim_run(pw->live_sim, cmd, c->key, c->klen, NULL, &pw->live_res, why, sizeof(why)) < 0
        || sim_run(pw->cand_sim, cmd, c->key, c->klen, NULL, &pw->cand_res, why,
                   sizeof(why)) < 0) {
        /* a key the text protocol cannot carry (a binary meta key), or no memory */
        pthread_mutex_lock(&pw->p->lock);
        pw->p->skipped++;
        pthread_mutex_unlock(&pw->p->lock);
        return;
    }
    nlive = server_labels(live, pw->live_sim, &pw->live_res, live_labels);
    ncand = server_labels(pw->p->candidate, pw->cand_sim, &pw->cand_res, cand_labels);
    /* the live pools that took it, "{a,b}" without the braces */
    sim_answered_by(pw->live_sim, &pw->live_res, pools, sizeof(pools));
    n = strlen(pools);
    memmove(pools, pools + 1, n);
    if (n >= 2)
        pools[n - 2] = '\0';
    count_key(pw->p, c, pools[0] ? pools : "-", !sim_same_labels(live_labels, nlive, cand_labels,
                                                            ncand),
              live_labels, nlive, cand_labels, ncand);
}

/* ---- a worker ---- */

/* Put the node in front of wc's root, in the slot after its nodes. */
static void
place(struct preview_worker *pw, struct wconfig *wc)
{
    pw->child[0] = wc->config->root;
    pw->rp.node.id = wc->config->nnodes;
    wc->routes[wc->config->nnodes] = pw->counter;
    wc->root = &pw->rp.node;
}

static void
unplace(struct wconfig *wc)
{
    wc->root = wc->config->root;
    wc->routes[wc->config->nnodes] = NULL;
}

struct preview_worker *
preview_attach(struct preview *p, struct route_ctx *rt, struct wconfig *wc)
{
    struct preview_worker *pw = calloc(1, sizeof(*pw));

    if (pw == NULL)
        return NULL;
    pw->counter = calloc(1, sizeof(*pw->counter) + sizeof(preview_name));
    pw->cand_sim = sim_new(p->candidate, rt->vm);
    if (pw->counter == NULL || pw->cand_sim == NULL) {
        sim_free(pw->cand_sim);
        free(pw->counter);
        free(pw);
        return NULL;
    }
    pw->counter->type = ROUTE_PREVIEW;
    memcpy(pw->counter->label, preview_name, sizeof(preview_name));
    pw->rp.node.type = ROUTE_PREVIEW;
    pw->rp.node.name = preview_name;
    pw->rp.node.children = pw->child;
    pw->rp.node.nchildren = 1;
    pw->rp.observe = observe;
    pw->p = p;
    place(pw, wc);
    rt->preview = &pw->rp;
    return pw;
}

void
preview_move(struct preview_worker *pw, struct wconfig *from, struct wconfig *to)
{
    /* The old generation may be freed once drained: its simulation goes now
     * (only the current generation's requests pass the preview). */
    sim_free(pw->live_sim);
    pw->live_sim = NULL;
    pw->live_cfg = NULL;
    unplace(from);
    place(pw, to);
}

void
preview_detach(struct preview_worker *pw, struct route_ctx *rt, struct wconfig *wc)
{
    unplace(wc);
    rt->preview = NULL;
    sim_free(pw->cand_sim);
    sim_free(pw->live_sim);
    free(pw->counter);
    preview_release(pw->p);
    free(pw);
}

/* ---- readers ---- */

void
preview_view(struct preview_view *v)
{
    struct preview *p;

    memset(v, 0, sizeof(*v));
    pthread_mutex_lock(&shown_lock);
    p = shown;
    if (p != NULL) {
        pthread_mutex_lock(&p->lock);
        v->loaded = true;
        snprintf(v->file, sizeof(v->file), "%s", p->file);
        v->checksum = p->candidate->checksum;
        v->load_time = p->candidate->load_time;
        v->keys = p->keys;
        v->differ = p->differ;
        v->skipped = p->skipped;
        memcpy(v->prefixes, p->prefixes, sizeof(v->prefixes));
        v->nprefixes = p->nprefixes;
        memcpy(v->pools, p->pools, sizeof(v->pools));
        v->npools = p->npools;
        memcpy(v->samples, p->samples, sizeof(v->samples));
        v->nsamples = p->nsamples;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&shown_lock);
}
