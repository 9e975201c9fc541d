/*
 * trial.h: a policy load bounded in wall-clock time.
 *
 * The Lua instruction cap cannot see time spent inside one C library call (a
 * pathological string pattern can run for hours), and a load runs on the
 * accepting thread. So every load is first tried in a child process (this
 * same binary, run again in trial mode) with a deadline; only a policy whose
 * trial finished in time is loaded for real.
 */
#ifndef TRIAL_H
#define TRIAL_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct settings;

#define TRIAL_SECONDS   5       /* wall-clock bound on one policy load */

/*
 * Keep the command line the process started with (before settings_parse),
 * for the trial child to parse again. Call once, first thing in main.
 */
void trial_remember_args(int argc, char **argv);

/* Whether this process was started as a trial child (see trial_main). */
bool trial_requested(int argc, char **argv);

/*
 * The trial child's whole life: parse the remembered command line, load the
 * policy, write the error (if any) to stdout, exit 0 (loaded) or 1.
 * Does not return.
 */
int trial_main(int argc, char **argv);

/*
 * script_load (see script.h), after a trial load in a child process that
 * must finish within TRIAL_SECONDS. The child rebuilds its settings from the
 * remembered command line, so s must be what that command line parses to.
 * A trial that fails, runs out of time or crashes returns NULL with the
 * reason in err; nothing is loaded then.
 */
struct config *trial_load(const char *path, const struct settings *s, int nworkers,
                          char *err, size_t errlen);

#endif
