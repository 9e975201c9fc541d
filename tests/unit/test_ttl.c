/* Unit tests for exptime rules and the rewrite of request arguments. */
#include "ttl.h"

#include <string.h>

#include "unit.h"

#define NOW 1800000000LL        /* a unix time, for absolute exptimes */

static void
test_apply(void)
{
    int32_t max10 = ttl_rule_max(10), set5 = ttl_rule_set(5);

    CHECK_EQ(ttl_apply(0, 1234, NOW), 1234);
    CHECK_EQ(ttl_apply(set5, 0, NOW), 5);
    CHECK_EQ(ttl_apply(set5, 100, NOW), 5);
    CHECK_EQ(ttl_apply(set5, -1, NOW), 5);
    CHECK_EQ(ttl_apply(ttl_rule_set(0), 100, NOW), 0);
    CHECK_EQ(ttl_apply(max10, 0, NOW), 10);         /* never: capped */
    CHECK_EQ(ttl_apply(max10, 3, NOW), 3);
    CHECK_EQ(ttl_apply(max10, 11, NOW), 10);
    CHECK_EQ(ttl_apply(max10, -1, NOW), -1);        /* expire at once */
    CHECK_EQ(ttl_apply(max10, TTL_RELATIVE_MAX, NOW), 10);
    /* Unix times: by the time left. */
    CHECK_EQ(ttl_apply(max10, NOW + 5, NOW), NOW + 5);
    CHECK_EQ(ttl_apply(max10, NOW + 10, NOW), NOW + 10);
    CHECK_EQ(ttl_apply(max10, NOW + 11, NOW), 10);
    CHECK_EQ(ttl_apply(max10, NOW - 100, NOW), NOW - 100);
}

static void
test_compose(void)
{
    CHECK_EQ(ttl_compose(0, 0), 0);
    CHECK_EQ(ttl_compose(ttl_rule_max(10), 0), ttl_rule_max(10));
    CHECK_EQ(ttl_compose(0, ttl_rule_set(3)), ttl_rule_set(3));
    CHECK_EQ(ttl_compose(ttl_rule_max(10), ttl_rule_max(20)), ttl_rule_max(10));
    CHECK_EQ(ttl_compose(ttl_rule_max(30), ttl_rule_max(20)), ttl_rule_max(20));
    CHECK_EQ(ttl_compose(ttl_rule_max(10), ttl_rule_set(60)), ttl_rule_set(60));
    CHECK_EQ(ttl_compose(ttl_rule_set(60), ttl_rule_max(10)), ttl_rule_set(10));
    CHECK_EQ(ttl_compose(ttl_rule_set(5), ttl_rule_max(10)), ttl_rule_set(5));
    CHECK_EQ(ttl_compose(ttl_rule_set(0), ttl_rule_max(10)), ttl_rule_set(10));
}

/* Rewrite args under rule and compare with want. */
static void
check_rewrite(int32_t rule, enum cmd cmd, bool meta, const char *args, const char *want)
{
    char out[TTL_ARGS_ROOM(256)];
    size_t n = ttl_rewrite_args(rule, cmd, meta, args, strlen(args), out, NOW);

    out[n] = '\0';
    CHECK_STR(out, want);
}

static void
test_rewrite_classic(void)
{
    int32_t max10 = ttl_rule_max(10), set7 = ttl_rule_set(7);

    check_rewrite(max10, CMD_SET, false, "5 0 3", "5 10 3");
    check_rewrite(max10, CMD_SET, false, "5 4 3", "5 4 3");
    check_rewrite(max10, CMD_ADD, false, "5  100 3", "5  10 3");   /* two spaces */
    check_rewrite(set7, CMD_CAS, false, "0 100 3 99", "0 7 3 99");
    check_rewrite(max10, CMD_SET, false, "0 -1 3", "0 -1 3");
    check_rewrite(max10, CMD_TOUCH, false, "0", "10");
    check_rewrite(max10, CMD_GAT, false, "3600", "10");
    check_rewrite(set7, CMD_INCR, false, "100", "100");             /* a delta */
    check_rewrite(set7, CMD_DELETE, false, "0", "0");
    check_rewrite(max10, CMD_SET, false, "0 1x 3", "0 1x 3");        /* not a number */
}

static void
test_rewrite_meta(void)
{
    int32_t max10 = ttl_rule_max(10), set7 = ttl_rule_set(7);

    check_rewrite(max10, CMD_MS, true, "3 T0 F5", "3 T10 F5");
    check_rewrite(max10, CMD_MS, true, "3 F5", "3 F5 T10");          /* no T: 0 */
    check_rewrite(ttl_rule_set(0), CMD_MS, true, "3 F5", "3 F5");    /* 0 is 0 */
    check_rewrite(max10, CMD_MS, true, "3 T5 q", "3 T5 q");
    check_rewrite(set7, CMD_MG, true, "v T100 k", "v T7 k");
    check_rewrite(set7, CMD_MG, true, "v k", "v k");                 /* no touch */
    check_rewrite(max10, CMD_MA, true, "N0 J5 D1", "N10 J5 D1");
    check_rewrite(max10, CMD_SET, true, "4 c F1", "4 c F1 T10");     /* binary set */
    check_rewrite(max10, CMD_TOUCH, true, "f c T3600", "f c T10");   /* binary touch */
    check_rewrite(max10, CMD_MS, true, "3 T", "3 T");                /* empty value */
}

int
main(void)
{
    test_apply();
    test_compose();
    test_rewrite_classic();
    test_rewrite_meta();
    return UNIT_DONE();
}
