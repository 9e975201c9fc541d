/*
 * daemon.h: running in the background: detaching from the terminal while the
 * starting process waits for a readiness report, and the pid file.
 *
 * Everything that can fail is checked before detaching, so the command that
 * started luagent prints the reason and exits 1; it exits 0 only once the
 * daemon serves.
 */
#ifndef DAEMON_H
#define DAEMON_H

#include <stddef.h>

/*
 * Refuse a pid file that names a live process, then open (create) it for
 * writing, before privileges are dropped. Returns 0, or -1 with err.
 */
int pidfile_open(const char *path, char *err, size_t errlen);

/* The pid a pid file names, or 0 when it is missing, empty or junk. */
long pidfile_pid(const char *path);

/* Write this process's pid into the opened pid file. 0, or -1 with err. */
int pidfile_write(char *err, size_t errlen);

/*
 * Remove the pid file at a clean exit. When the directory no longer lets us
 * (privileges dropped), empty it instead, so it names no process.
 */
void pidfile_remove(void);

/*
 * Fork into the background: new session, no controlling terminal, stdin,
 * stdout and stderr on /dev/null, working directory kept (relative paths on
 * the command line stay valid for reloads). Returns 0 in the daemon only;
 * the starting process waits for daemon_ready() (exit 0) or daemon_failed()
 * (prints the reason, exit 1). -1 with err if the fork itself failed.
 */
int daemon_detach(char *err, size_t errlen);

/* Tell the starting process the daemon serves; it exits 0. */
void daemon_ready(void);

/* Tell the starting process start-up failed, and why; it exits 1. */
void daemon_failed(const char *why);

#endif
