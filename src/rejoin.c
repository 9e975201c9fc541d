/*
 * rejoin.c: one record per server name of the process's rejoin flushes
 * (see rejoin.h), in a list under one lock.
 *
 * The lock is taken only when a worker opens or closes its connection set
 * to a server, never on the request path: there the record is read and
 * written with atomics. The count of flushes is raised before the flag is
 * cleared, so a worker that sees the server no longer held also sees that
 * it was flushed.
 */
#include "rejoin.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t rejoin_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rejoin *rejoins;

struct rejoin *
rejoin_get(const char *label)
{
    struct rejoin *rj;

    pthread_mutex_lock(&rejoin_lock);
    for (rj = rejoins; rj != NULL && strcmp(rj->label, label) != 0; rj = rj->next)
        ;
    if (rj == NULL && (rj = calloc(1, sizeof(*rj))) != NULL) {
        rj->label = strdup(label);
        if (rj->label == NULL) {
            free(rj);
            rj = NULL;
        } else {
            rj->next = rejoins;
            rejoins = rj;
        }
    }
    if (rj != NULL)
        rj->refs++;
    pthread_mutex_unlock(&rejoin_lock);
    return rj;
}

void
rejoin_put(struct rejoin *rj)
{
    struct rejoin **p;

    if (rj == NULL)
        return;
    pthread_mutex_lock(&rejoin_lock);
    if (--rj->refs == 0) {
        for (p = &rejoins; *p != rj; p = &(*p)->next)
            ;
        *p = rj->next;
        free(rj->label);
        free(rj);
    }
    pthread_mutex_unlock(&rejoin_lock);
}

bool
rejoin_claim(struct rejoin *rj)
{
    int idle = 0;

    return __atomic_compare_exchange_n(&rj->flushing, &idle, 1, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

void
rejoin_release(struct rejoin *rj, bool ok)
{
    if (ok)
        __atomic_add_fetch(&rj->flushes, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&rj->flushing, 0, __ATOMIC_RELEASE);
}

unsigned
rejoin_epoch(const struct rejoin *rj)
{
    return __atomic_load_n(&rj->flushes, __ATOMIC_ACQUIRE);
}

bool
rejoin_flushed_since(const struct rejoin *rj, unsigned epoch)
{
    return rejoin_epoch(rj) != epoch;
}
