/*
 * dnsmsg.h: DNS messages for SRV lookups (RFC 1035 wire format, RFC 2782 SRV).
 *
 * libevent's evdns resolves A and AAAA but has no SRV query, so discover.c
 * sends SRV questions itself over UDP; this module builds the question and
 * reads the answer. Pure: bytes in, bytes or records out, no I/O.
 */
#ifndef DNSMSG_H
#define DNSMSG_H

#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_MAX    255         /* a name in dotted form, without the NUL */
#define DNS_TYPE_SRV    33

struct dns_srv {
    uint16_t priority;
    uint16_t weight;
    uint16_t port;
    char     target[DNS_NAME_MAX + 1];   /* dotted, no trailing dot */
};

/*
 * A recursive question for name and qtype with this id, into out (a UDP
 * message fits in 512 bytes). Returns its length, or -1 when the name is not
 * a valid DNS name or out is too small.
 */
int dnsmsg_query(uint8_t *out, size_t outlen, uint16_t id, const char *name, uint16_t qtype);

/*
 * The SRV records of the answer msg to question id: up to max of them into
 * srv. Returns how many there were (0: the name exists with no SRV record),
 * or -1 with the reason in err: a malformed or truncated message, another
 * id, or an error code from the server (NXDOMAIN, SERVFAIL, ...).
 */
int dnsmsg_srv_parse(const uint8_t *msg, size_t len, uint16_t id, struct dns_srv *srv,
                     int max, char *err, size_t errlen);

#endif
