/*
 * log.h: leveled logging, one line per event, subject first.
 *
 * The level comes from -v repetitions. Per-request problems go through
 * log_ratelimited so a dead server cannot flood the log.
 */
#ifndef LOG_H
#define LOG_H

enum log_level {
    LOG_ERROR,      /* the proxy cannot do what it was asked */
    LOG_WARN,       /* something is wrong but serving goes on (default) */
    LOG_INFO,       /* -v: lifecycle events (start, backend up/down) */
    LOG_DEBUG       /* -vv: per-connection detail */
};

extern enum log_level log_level_current;

void log_init(int verbosity);
void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Like log_write, but at most one line per `key` per second; the number of
 * lines dropped meanwhile is reported with the next one. key is any stable
 * pointer naming the event source (a backend, a hook).
 */
void log_ratelimited(enum log_level level, const void *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...)  do { if (log_level_current >= LOG_INFO) log_write(LOG_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_level_current >= LOG_DEBUG) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
