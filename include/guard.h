/*
 * guard.h: what a reload must pass besides loading: the remap guard.
 *
 * settings.max_remap (in the serving policy, the new one, or both: the
 * lower counts) bounds the share of any pool's keys a reload may send to
 * another server. A reload over it is refused, unless the operator has
 * touched the force file, "<policy>.force", since it was last used: the
 * next reload that takes effect consumes it (removes it, or, when luagent
 * may not, remembers its time stamp, so it counts again only when touched
 * again). The main thread keeps the serving generation's placement here,
 * apart from the generation, which the workers own.
 *
 * It also tells --watch which changes of the file are worth a reload: not
 * the bytes already serving, nor the bytes a reload just refused (until the
 * file changes again or the force file is touched).
 */
#ifndef GUARD_H
#define GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;
struct settings;

/* Start-up: the policy file (NULL without -c). A force file already there is stale. */
void guard_init(const char *policy);

/* The generation now serving: call at start-up and before publishing each reload. */
void guard_serving(const struct config *cfg);

/*
 * Whether next may replace the serving generation: 0 yes (a fresh force
 * file is consumed, and said so in the log), -1 no: the reason in err
 * ("pool main would move 19.69% of its keys, over settings.max_remap
 * 10.00% ..."), and reload_refused_remap counted.
 */
int guard_admit(const struct config *next, char *err, size_t errlen);

/*
 * --check NEW --against OLD: load OLD as --check would, print each pool's
 * share, and fail (-1, why in err) as guard_admit would refuse the reload.
 */
int guard_against(const struct config *next, const struct settings *s, FILE *out,
                  char *err, size_t errlen);

/* --watch: whether a file now holding these bytes is worth a reload. */
int guard_worth_reloading(uint32_t checksum);

/* --watch: a reload of these bytes did not take effect. */
void guard_reload_failed(uint32_t checksum);

/* The force file of a policy file, "<policy>.force", into out. */
void guard_force_path(const char *policy, char *out, size_t outlen);

#endif
