/* Unit tests for the process-wide rejoin records. */
#include "rejoin.h"

#include "unit.h"

/* One record per server name, shared, freed with its last user. */
static void
test_records(void)
{
    struct rejoin *a = rejoin_get("10.0.0.1:11211");
    struct rejoin *b = rejoin_get("10.0.0.1:11211");
    struct rejoin *other = rejoin_get("10.0.0.2:11211");

    CHECK(a != NULL && a == b);
    CHECK(other != NULL && other != a);
    CHECK_EQ(a->refs, 2);
    rejoin_put(b);
    CHECK_EQ(a->refs, 1);
    rejoin_put(a);
    rejoin_put(other);
    rejoin_put(NULL);
}

/* One flush at a time; an answered one moves the epoch, a failed one does not. */
static void
test_flush(void)
{
    struct rejoin *rj = rejoin_get("10.0.0.3:11211");
    unsigned epoch = rejoin_epoch(rj);

    CHECK(!rejoin_held(rj));
    CHECK(rejoin_claim(rj));
    CHECK(rejoin_held(rj));
    CHECK(!rejoin_claim(rj));               /* another worker waits */
    rejoin_release(rj, false);
    CHECK(!rejoin_held(rj));
    CHECK(!rejoin_flushed_since(rj, epoch));
    CHECK(rejoin_claim(rj));
    rejoin_release(rj, true);
    CHECK(!rejoin_held(rj));
    CHECK(rejoin_flushed_since(rj, epoch));
    CHECK(!rejoin_flushed_since(rj, rejoin_epoch(rj)));
    rejoin_put(rj);
}

int
main(void)
{
    test_records();
    test_flush();
    return UNIT_DONE();
}
