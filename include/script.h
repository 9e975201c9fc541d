/*
 * script.h: the Lua policy bridge (the only module that includes LuaJIT).
 *
 * A policy script builds a route tree out of lg.* objects; script_load runs it
 * in a fresh VM (memory cap, JIT off, instruction cap), compiles the tree
 * into C route nodes, runs the policy's self-tests and returns a config. Only
 * lg.hook nodes call back into Lua at request time, each worker in its own VM.
 */
#ifndef SCRIPT_H
#define SCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto.h"

struct config;
struct route;
struct settings;

#define SCRIPT_MEM_LIMIT    (64u * 1024 * 1024)     /* bytes per load VM */
#define SCRIPT_INSTR_LIMIT  10000000L               /* VM instructions per load */

/*
 * Load a policy (path NULL: the built-in default policy, fed by -s/-b/-k)
 * and compile it into a config for nworkers workers. Returns NULL with
 * "<file>:<line>: <why>" in err.
 */
struct config *script_load(const char *path, const struct settings *s, int nworkers,
                           char *err, size_t errlen);

/*
 * --route: print where "cmd key" would go (each route node, then the pool and
 * server). Returns 0, or -1 with a reason in err.
 */
int script_explain(struct config *config, const char *line, FILE *out,
                   char *err, size_t errlen);

/*
 * The same for a request from listener (NULL: "tcp") with client certificate
 * CN cn (NULL: none), as lg.by_client and hooks would see it.
 */
int script_explain_as(struct config *config, const char *line, const char *listener,
                      const char *cn, FILE *out, char *err, size_t errlen);

/*
 * The servers a request reaches on its answering path, as --route shows it:
 * line is "cmd key", or a bare key (taken as "get key"). Fills ids with
 * config server ids in the order reached (at most max) and returns their
 * number, or -1 with a reason in err.
 */
int script_reach_servers(struct config *config, const char *line, int *ids, int max,
                         char *err, size_t errlen);

/* FNV-1a of a policy file's bytes (NULL: the built-in policy), 0 if unreadable. */
uint32_t script_checksum(const char *path);

/* Describe a config's pools and routes (for --check). */
void script_describe(const struct config *config, FILE *out);

#endif
