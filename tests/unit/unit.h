/*
 * unit.h: a tiny TAP-style harness for luagent's C unit tests.
 *
 * Each CHECK prints "ok N" or "not ok N - file:line: what"; UNIT_DONE() prints
 * the plan and a closing "N passed, N failed" line and returns the exit status.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>
#include <string.h>
#include <inttypes.h>

static int unit_run, unit_failed;

#define UNIT_REPORT(ok, ...) do {                                           \
    unit_run++;                                                             \
    if (ok) {                                                               \
        printf("ok %d\n", unit_run);                                        \
    } else {                                                                \
        unit_failed++;                                                      \
        printf("not ok %d - %s:%d: ", unit_run, __FILE__, __LINE__);        \
        printf(__VA_ARGS__);                                                \
        printf("\n");                                                       \
    }                                                                       \
} while (0)

#define CHECK(cond) UNIT_REPORT((cond), "%s", #cond)

#define CHECK_EQ(a, b) do {                                                 \
    long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);           \
    UNIT_REPORT(unit_a_ == unit_b_, "%s == %s: %lld != %lld",               \
                #a, #b, unit_a_, unit_b_);                                  \
} while (0)

#define CHECK_U64(a, b) do {                                                \
    uint64_t unit_a_ = (uint64_t)(a), unit_b_ = (uint64_t)(b);              \
    UNIT_REPORT(unit_a_ == unit_b_, "%s == %s: %" PRIu64 " != %" PRIu64,    \
                #a, #b, unit_a_, unit_b_);                                  \
} while (0)

#define CHECK_STR(a, b) do {                                                \
    const char *unit_a_ = (a), *unit_b_ = (b);                              \
    UNIT_REPORT(unit_a_ && unit_b_ && strcmp(unit_a_, unit_b_) == 0,        \
                "%s == %s: \"%s\" != \"%s\"", #a, #b,                       \
                unit_a_ ? unit_a_ : "(null)", unit_b_ ? unit_b_ : "(null)");\
} while (0)

#define CHECK_MEM(a, alen, b, blen) do {                                    \
    size_t unit_al_ = (alen), unit_bl_ = (blen);                            \
    UNIT_REPORT(unit_al_ == unit_bl_ && memcmp((a), (b), unit_al_) == 0,    \
                "%s == %s (lengths %zu, %zu)", #a, #b, unit_al_, unit_bl_); \
} while (0)

#define UNIT_DONE() (printf("1..%d\n%d passed, %d failed\n",                \
                            unit_run, unit_run - unit_failed, unit_failed), \
                     unit_failed ? 1 : 0)

#endif
