/*
 * log.c: timestamped leveled log lines on stderr.
 *
 * Lines are formatted into one buffer and written with a single write(2), so
 * lines from several worker threads never interleave.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_level_current = LOG_WARN;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
log_init(int verbosity)
{
    int level = LOG_WARN + verbosity;

    log_level_current = level > LOG_DEBUG ? LOG_DEBUG : (enum log_level)level;
}

static void
log_vwrite(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char line[1024];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int r;

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03d [%d] %s: ",
                 (int)(tv.tv_usec / 1000), (int)getpid(), level_names[level]);
    n += (size_t)r;
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    n = (r < 0) ? n : n + (size_t)r;
    if (n > sizeof(line) - 2 - strlen(suffix))
        n = sizeof(line) - 2 - strlen(suffix);
    memcpy(line + n, suffix, strlen(suffix));
    n += strlen(suffix);
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* Nowhere left to report a failing log. */
    }
}

void
log_write(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level > log_level_current)
        return;
    va_start(ap, fmt);
    log_vwrite(level, "", fmt, ap);
    va_end(ap);
}

/* A small table of recent keys; a collision just shares a budget. */
#define RATE_SLOTS 64

struct rate_slot {
    const void *key;
    time_t      second;
    unsigned    dropped;
};

static struct rate_slot rate_slots[RATE_SLOTS];
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;

void
log_ratelimited(enum log_level level, const void *key, const char *fmt, ...)
{
    struct rate_slot *slot = &rate_slots[((uintptr_t)key >> 4) % RATE_SLOTS];
    time_t now = time(NULL);
    unsigned dropped;
    char suffix[64] = "";
    va_list ap;

    if (level > log_level_current)
        return;
    pthread_mutex_lock(&rate_lock);
    if (slot->key == key && slot->second == now) {
        slot->dropped++;
        pthread_mutex_unlock(&rate_lock);
        return;
    }
    dropped = (slot->key == key) ? slot->dropped : 0;
    slot->key = key;
    slot->second = now;
    slot->dropped = 0;
    pthread_mutex_unlock(&rate_lock);

    if (dropped > 0)
        snprintf(suffix, sizeof(suffix), " (%u similar lines dropped)", dropped);
    va_start(ap, fmt);
    log_vwrite(level, suffix, fmt, ap);
    va_end(ap);
}
