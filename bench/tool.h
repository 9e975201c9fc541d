/*
 * tool.h: what the benchmark tools share: their fatal error and their number
 * arguments. A tool defines BENCH_TOOL (its name, the prefix of a message)
 * before including this file; die() prints "BENCH_TOOL: message" on stderr
 * and exits with status 2.
 */
#ifndef BENCH_TOOL_H
#define BENCH_TOOL_H

#include <errno.h>
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

/* The number in s, which must lie in lo..hi, or die naming the option. */
static inline long long
num_arg(const char *name, const char *s, long long lo, long long hi)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        die("%s: '%s' is not a number in %lld..%lld", name, s, lo, hi);
    return v;
}

#endif
