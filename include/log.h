/*
 * log.h: leveled logging, one line per event, subject first.
 *
 * The level comes from -v repetitions. Per-request problems go through
 * log_ratelimited so a dead server cannot flood the log.
 *
 * Lines go to stderr until start-up chooses a destination: a file (--log,
 * reopened on SIGUSR1 for log rotation) or syslog (a daemon without --log).
 * Every line written to stderr or a file starts with an ISO-8601 UTC time
 * with milliseconds, the pid and the level.
 */
#ifndef LOG_H
#define LOG_H

#include <stddef.h>

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

/*
 * Open (create, append to) the --log file, checking it can be written; lines
 * still go to stderr until log_to_file(). Call before dropping privileges.
 * Returns 0, or -1 with a reason in err.
 */
int log_open_file(const char *path, char *err, size_t errlen);

/*
 * From now on, log lines (and anything else written to stderr, such as a
 * sanitizer's report) go to the file log_open_file() opened.
 */
void log_to_file(void);

/*
 * Open the log file's path again and put it in place of the current one
 * (SIGUSR1, after logrotate renamed the file). Threads logging meanwhile
 * write whole lines to either the old file or the new one. Returns 0, or -1
 * with a reason in err (the old file stays in use).
 */
int log_reopen(char *err, size_t errlen);

/* The --log file in use, or NULL when lines go to stderr or syslog. */
const char *log_file_path(void);

/* From now on, log lines go to syslog ("luagent", facility daemon, with pid). */
void log_to_syslog(void);

/* Drop every log line from now on, wherever they were going (a trial child). */
void log_silence(void);

#endif
