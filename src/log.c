/*
 * log.c: timestamped leveled log lines on stderr, in a file, or to syslog.
 *
 * Lines are formatted into one buffer and written with a single write(2), so
 * lines from several worker threads never interleave. A log file is kept on
 * file descriptor 2 (stderr): reopening it for rotation is one dup2(2) onto
 * that descriptor, which the kernel does atomically, so a thread writing at
 * the same moment lands its whole line in the old file or in the new one,
 * and no lock is needed on the logging path.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_level_current = LOG_WARN;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

static char *file_path;         /* --log FILE, NULL when none */
static int file_fd = -1;        /* opened, not yet on stderr */
static bool use_syslog;
static bool silenced;

static void syslog_open(void);
static void syslog_line(enum log_level level, const char *msg);

void
log_init(int verbosity)
{
    int level = LOG_WARN + verbosity;

    log_level_current = level > LOG_DEBUG ? LOG_DEBUG : (enum log_level)level;
}

/* "2026-11-24T20:31:07.042Z [pid] level: " into line; returns its length. */
static size_t
format_prefix(char *line, size_t size, enum log_level level)
{
    struct timeval tv;
    struct tm tm;
    size_t n;
    int r;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, size, "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, size - n, ".%03dZ [%d] %s: ",
                 (int)(tv.tv_usec / 1000), (int)getpid(), level_names[level]);
    return n + (size_t)r;
}

static void
log_vwrite(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char line[1024];
    size_t n, slen = strlen(suffix);
    int r;

    if (silenced)
        return;
    /* syslog stamps the time and pid itself; the level word stays readable. */
    if (use_syslog)
        n = (size_t)snprintf(line, sizeof(line), "%s: ", level_names[level]);
    else
        n = format_prefix(line, sizeof(line), level);
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    n = (r < 0) ? n : n + (size_t)r;
    if (n > sizeof(line) - 2 - slen)
        n = sizeof(line) - 2 - slen;
    memcpy(line + n, suffix, slen);
    n += slen;
    if (use_syslog) {
        line[n] = '\0';
        syslog_line(level, line);
        return;
    }
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

/* Open path for appending, or -1 with the reason in err. */
static int
open_append(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);

    if (fd < 0) {
        snprintf(err, errlen, "log file %s: %s", path, strerror(errno));
        return -1;
    }
    return fd;
}

int
log_open_file(const char *path, char *err, size_t errlen)
{
    int fd = open_append(path, err, errlen);

    if (fd < 0)
        return -1;
    free(file_path);
    file_path = strdup(path);
    if (file_fd >= 0)
        close(file_fd);
    file_fd = fd;
    return 0;
}

void
log_to_file(void)
{
    if (file_fd < 0)
        return;
    dup2(file_fd, STDERR_FILENO);
    close(file_fd);
    file_fd = -1;
}

int
log_reopen(char *err, size_t errlen)
{
    int fd;

    if (file_path == NULL) {
        snprintf(err, errlen, "no log file (--log) to reopen");
        return -1;
    }
    fd = open_append(file_path, err, errlen);
    if (fd < 0)
        return -1;
    if (dup2(fd, STDERR_FILENO) < 0) {
        snprintf(err, errlen, "log file %s: %s", file_path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

const char *
log_file_path(void)
{
    return file_path;
}

void
log_silence(void)
{
    silenced = true;
}

void
log_to_syslog(void)
{
    syslog_open();
    use_syslog = true;
}

/*
 * syslog.h comes last: its LOG_INFO and LOG_DEBUG macros take the names of
 * our levels, so from here on those two names mean syslog's priorities.
 */
#include <syslog.h>

static void
syslog_open(void)
{
    openlog("luagent", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static void
syslog_line(enum log_level level, const char *msg)
{
    /* Indexed by enum log_level: error, warn, info, debug. */
    static const int priority[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

    syslog(priority[level], "%s", msg);
}
