/*
 * trial.h: a policy load bounded in wall-clock time.
 *
 * The Lua instruction cap cannot see time spent inside one C library call (a
 * pathological string pattern can run for hours), and a load runs on the
 * accepting thread. So every load is first tried in a forked child with a
 * deadline; only a policy whose trial finished in time is loaded for real.
 */
#ifndef TRIAL_H
#define TRIAL_H

#include <stddef.h>

struct config;
struct settings;

#define TRIAL_SECONDS   5       /* wall-clock bound on one policy load */

/*
 * script_load (see script.h), after a trial load in a child process that
 * must finish within TRIAL_SECONDS. A trial that fails, runs out of time or
 * crashes returns NULL with the reason in err; nothing is loaded then.
 */
struct config *trial_load(const char *path, const struct settings *s, int nworkers,
                          char *err, size_t errlen);

#endif
