/*
 * watch.c: one file watched through its directory, with inotify, debounced.
 *
 * Events name the directory entry they concern; only the watched file's
 * name and its companion's count (other files of /etc come and go). When
 * the file is a symbolic link (a Kubernetes ConfigMap mounts one that
 * points through "..data", swapped by a rename of that link), any entry of
 * the directory counts, since the change shows as a rename of another name.
 *
 * A writer's burst (create, several writes, close, rename) fires the
 * callback once: after WATCH_QUIET_MS without an event, or WATCH_BURST_MS
 * after the burst began when events keep coming, so a busy directory cannot
 * hold a change back for ever. What the callback does with a change it sees
 * twice, or a change of nothing, is its business (main.c compares bytes).
 */
#include "watch.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

#define WATCH_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_ATTRIB)

struct watch {
    int            fd;          /* inotify */
    struct event  *readable;
    struct event  *quiet;       /* the debounce timer */
    char          *name;        /* the file's name in its directory */
    char          *also;        /* the companion's name */
    bool           any_name;    /* the file is a symbolic link: every entry counts */
    struct timespec burst_began;
    watch_fn       fn;
    void          *arg;
};

static long
ms_between(const struct timespec *a, const struct timespec *b)
{
    return (b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

static bool
counts(const struct watch *w, const struct inotify_event *ev)
{
    if (ev->len == 0)
        return false;           /* the directory itself */
    return w->any_name || strcmp(ev->name, w->name) == 0 || strcmp(ev->name, w->also) == 0;
}

/* (Re)arm the debounce timer, unless the burst has gone on long enough. */
static void
note_change(struct watch *w)
{
    struct timeval quiet = { 0, WATCH_QUIET_MS * 1000 };
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!evtimer_pending(w->quiet, NULL))
        w->burst_began = now;
    else if (ms_between(&w->burst_began, &now) >= WATCH_BURST_MS)
        return;
    evtimer_add(w->quiet, &quiet);
}

static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct watch *w = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool changed = false;
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        const char *p = buf;

        while (p < buf + n) {
            const struct inotify_event *ev = (const struct inotify_event *)p;

            if ((ev->mask & IN_Q_OVERFLOW) || counts(w, ev))
                changed = true;
            p += sizeof(*ev) + ev->len;
        }
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        log_warn("--watch: reading inotify events: %s", strerror(errno));
    if (changed)
        note_change(w);
}

static void
on_quiet(evutil_socket_t fd, short what, void *arg)
{
    struct watch *w = arg;

    w->fn(w->arg);
}

/* The directory part of path ("." for a bare name), into dir. */
static void
dir_of(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        snprintf(dir, len, ".");
    else if (slash == path)
        snprintf(dir, len, "/");
    else
        snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

struct watch *
watch_open(const char *path, const char *also_suffix, char *err, size_t errlen)
{
    struct watch *w = calloc(1, sizeof(*w));
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    struct stat sb;

    if (w == NULL) {
        snprintf(err, errlen, "--watch: out of memory");
        return NULL;
    }
    w->fd = -1;
    if ((w->name = strdup(slash ? slash + 1 : path)) == NULL
        || asprintf(&w->also, "%s%s", w->name, also_suffix) < 0) {
        snprintf(err, errlen, "--watch: out of memory");
        w->also = NULL;
        watch_stop(w);
        return NULL;
    }
    w->any_name = lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode);
    dir_of(path, dir, sizeof(dir));
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0 || inotify_add_watch(w->fd, dir, WATCH_EVENTS) < 0) {
        snprintf(err, errlen, "--watch: directory %s: %s", dir, strerror(errno));
        watch_stop(w);
        return NULL;
    }
    return w;
}

int
watch_start(struct watch *w, struct event_base *base, watch_fn fn, void *arg,
            char *err, size_t errlen)
{
    w->fn = fn;
    w->arg = arg;
    w->readable = event_new(base, w->fd, EV_READ | EV_PERSIST, on_readable, w);
    w->quiet = evtimer_new(base, on_quiet, w);
    if (w->readable == NULL || w->quiet == NULL || event_add(w->readable, NULL) < 0) {
        snprintf(err, errlen, "--watch: out of memory");
        return -1;
    }
    return 0;
}

void
watch_stop(struct watch *w)
{
    if (w == NULL)
        return;
    if (w->readable != NULL)
        event_free(w->readable);
    if (w->quiet != NULL)
        event_free(w->quiet);
    if (w->fd >= 0)
        close(w->fd);
    free(w->name);
    free(w->also);
    free(w);
}
