/*
 * watch.h: --watch: call back when a file changes, debounced.
 *
 * The file's directory is watched (inotify, as a libevent event on the main
 * thread's base), not the file: editors and configuration tools that write
 * a new file and rename it over the old one replace the inode, and a watch
 * on the old inode would never fire again.
 */
#ifndef WATCH_H
#define WATCH_H

#include <stddef.h>

struct event_base;
struct watch;

#define WATCH_QUIET_MS  200     /* a burst of changes ends after this much quiet... */
#define WATCH_BURST_MS  1000    /* ...or this long after it began, whichever is first */

typedef void (*watch_fn)(void *arg);

/*
 * Watch path (and path + also_suffix, e.g. ".force": a second file of the
 * same directory that counts as a change), from now on: open it before the
 * file is first read, so that no change after that read goes unseen.
 * Returns NULL with a reason in err.
 */
struct watch *watch_open(const char *path, const char *also_suffix, char *err, size_t errlen);

/*
 * Deliver the changes (those since watch_open included): fn(arg) runs once
 * per burst, in the base's loop. Returns 0, or -1 with a reason in err.
 */
int watch_start(struct watch *w, struct event_base *base, watch_fn fn, void *arg,
                char *err, size_t errlen);

void watch_stop(struct watch *w);

#endif
