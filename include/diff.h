/*
 * diff.h: `luagent --diff OLD NEW`: what a policy change does to keys.
 *
 * For each pool named in either policy, the exact share of its keys whose
 * server changes (placement.h); for each key class (a prefix named in
 * either policy, or none) and operation class, the route that changes; and,
 * given a file of keys, the keys whose servers change. Text for people, or
 * one JSON object (--json) for scripts; both stable for the same inputs.
 */
#ifndef DIFF_H
#define DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config;
struct settings;

struct diff_opts {
    const char *keys_file;      /* --keys FILE: one key or request line per line, or NULL */
    bool        json;           /* --json */
};

/*
 * Print what changes from old to new (both loaded, their self-tests
 * passed). Returns 0, or -1 with a reason in err (a keys file that cannot be
 * read or holds a line that is neither a key nor a keyed request).
 */
int diff_print(struct config *old, struct config *new, const struct diff_opts *opts,
               FILE *out, char *err, size_t errlen);

/*
 * --diff OLD NEW [--keys FILE] [--json]: load both as --check does, print,
 * and return the exit status (1 when either fails to load).
 */
int diff_run(const struct settings *s);

/*
 * Each pool's line as --diff prints it ("pool main: 19.69% of keys move
 * (ketama, 4 -> 5 servers)"), for --check --against. Returns 0, or -1 out of
 * memory.
 */
int diff_print_pools(const struct config *old, const struct config *new, FILE *out);

#endif
