/*
 * test_dnsmsg.c: SRV questions and answers (src/dnsmsg.c).
 */
#include "dnsmsg.h"

#include "unit.h"

/* An answer to question 0x1234 for _memcache._tcp.c.test: two SRV records,
 * the second target compressed against the first. */
static const uint8_t ANSWER[] = {
    0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
    /* question, at 12: _memcache._tcp.c.test SRV IN */
    9, '_', 'm', 'e', 'm', 'c', 'a', 'c', 'h', 'e', 4, '_', 't', 'c', 'p',
    1, 'c', 4, 't', 'e', 's', 't', 0, 0, 33, 0, 1,
    /* answer 1: name -> 12, SRV IN ttl 30, 10 5 21001 mc1.test */
    0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 30, 0, 16,
    0, 10, 0, 5, 0x52, 0x09, 3, 'm', 'c', '1', 4, 't', 'e', 's', 't', 0,
    /* answer 2: 20 0 21002 mc2 + the "test" of the question (at 29) */
    0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 30, 0, 12,
    0, 20, 0, 0, 0x52, 0x0a, 3, 'm', 'c', '2', 0xc0, 29,
};

static void
test_query(void)
{
    uint8_t out[512];
    int n = dnsmsg_query(out, sizeof(out), 0x1234, "_memcache._tcp.c.test", DNS_TYPE_SRV);

    CHECK_EQ(n, 12 + 23 + 4);
    CHECK(memcmp(out + 12, ANSWER + 12, 27) == 0);     /* the question, as in ANSWER */
    CHECK_EQ(out[0], 0x12);
    CHECK_EQ(out[2], 0x01);                             /* recursion desired */
    CHECK_EQ(out[5], 1);
    /* A trailing dot names the same question. */
    CHECK_EQ(dnsmsg_query(out, sizeof(out), 1, "_memcache._tcp.c.test.", DNS_TYPE_SRV), n);
    CHECK_EQ(dnsmsg_query(out, sizeof(out), 1, "a..test", DNS_TYPE_SRV), -1);
    CHECK_EQ(dnsmsg_query(out, sizeof(out), 1, "", DNS_TYPE_SRV), -1);
    CHECK_EQ(dnsmsg_query(out, 20, 1, "_memcache._tcp.c.test", DNS_TYPE_SRV), -1);
}

static void
test_parse(void)
{
    struct dns_srv srv[4];
    char err[64];
    int n = dnsmsg_srv_parse(ANSWER, sizeof(ANSWER), 0x1234, srv, 4, err, sizeof(err));

    CHECK_EQ(n, 2);
    CHECK_EQ(srv[0].priority, 10);
    CHECK_EQ(srv[0].weight, 5);
    CHECK_EQ(srv[0].port, 21001);
    CHECK(strcmp(srv[0].target, "mc1.test") == 0);
    CHECK_EQ(srv[1].port, 21002);
    CHECK(strcmp(srv[1].target, "mc2.test") == 0);
    /* max bounds what is written, not the parse. */
    CHECK_EQ(dnsmsg_srv_parse(ANSWER, sizeof(ANSWER), 0x1234, srv, 1, err, sizeof(err)), 1);
    CHECK_EQ(dnsmsg_srv_parse(ANSWER, sizeof(ANSWER), 0x4321, srv, 4, err, sizeof(err)), -1);
    CHECK(strcmp(err, "answer to another question") == 0);
}

static void
test_errors(void)
{
    uint8_t msg[sizeof(ANSWER)];
    struct dns_srv srv[4];
    char err[64];
    size_t cut;

    memcpy(msg, ANSWER, sizeof(msg));
    msg[3] = 0x83;                                      /* NXDOMAIN */
    CHECK_EQ(dnsmsg_srv_parse(msg, sizeof(msg), 0x1234, srv, 4, err, sizeof(err)), -1);
    CHECK(strcmp(err, "NXDOMAIN") == 0);
    msg[3] = 0x82;
    CHECK_EQ(dnsmsg_srv_parse(msg, sizeof(msg), 0x1234, srv, 4, err, sizeof(err)), -1);
    CHECK(strcmp(err, "SERVFAIL") == 0);
    msg[3] = 0x80;
    msg[2] = 0x83;                                      /* truncated */
    CHECK_EQ(dnsmsg_srv_parse(msg, sizeof(msg), 0x1234, srv, 4, err, sizeof(err)), -1);
    /* Every cut short of the whole message fails, without reading past it. */
    for (cut = 0; cut < sizeof(ANSWER); cut++)
        if (dnsmsg_srv_parse(ANSWER, cut, 0x1234, srv, 4, err, sizeof(err)) != -1)
            break;
    CHECK_EQ(cut, sizeof(ANSWER));
    /* A pointer forwards (or to itself) would loop: refused. */
    memcpy(msg, ANSWER, sizeof(msg));
    msg[sizeof(msg) - 1] = (uint8_t)(sizeof(msg) - 2);
    CHECK_EQ(dnsmsg_srv_parse(msg, sizeof(msg), 0x1234, srv, 4, err, sizeof(err)), -1);
    CHECK(strcmp(err, "malformed answer") == 0);
}

int
main(void)
{
    test_query();
    test_parse();
    test_errors();
    return UNIT_DONE();
}
