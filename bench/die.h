/*
 * die.h: the benchmark tools' fatal error. A tool defines BENCH_TOOL (its
 * name, the prefix of the message) before including this file; die() prints
 * "BENCH_TOOL: message" on stderr and exits with status 2.
 */
#ifndef BENCH_DIE_H
#define BENCH_DIE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", BENCH_TOOL);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(2);
}

#endif
