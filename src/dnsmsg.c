/*
 * dnsmsg.c: build an SRV question and read the SRV records of its answer.
 *
 * Names in answers may be compressed (a two-byte pointer to an earlier name,
 * RFC 1035 4.1.4); a pointer must point backwards, which bounds the walk, so
 * a hostile message cannot loop. Every read is checked against the length.
 */
#include "dnsmsg.h"

#include <stdio.h>
#include <string.h>

#define DNS_HEADER      12
#define DNS_CLASS_IN    1
#define DNS_FLAG_RD     0x0100      /* recursion desired */
#define DNS_FLAG_QR     0x8000      /* a response */
#define DNS_FLAG_TC     0x0200      /* truncated */

static void
put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t
get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

int
dnsmsg_query(uint8_t *out, size_t outlen, uint16_t id, const char *name, uint16_t qtype)
{
    size_t n = strlen(name), at = DNS_HEADER;
    const char *label = name;

    if (n == 0 || n > DNS_NAME_MAX || outlen < DNS_HEADER + n + 2 + 4)
        return -1;
    memset(out, 0, DNS_HEADER);
    put16(out, id);
    put16(out + 2, DNS_FLAG_RD);
    put16(out + 4, 1);                  /* one question */
    while (*label != '\0') {
        const char *dot = strchr(label, '.');
        size_t len = dot ? (size_t)(dot - label) : strlen(label);

        if (len == 0 || len > 63)
            return -1;                  /* an empty label ("a..b") or one too long */
        out[at++] = (uint8_t)len;
        memcpy(out + at, label, len);
        at += len;
        label += len + (dot != NULL);
        if (dot != NULL && *label == '\0')
            break;                      /* a trailing dot: the root, already implied */
    }
    out[at++] = 0;
    put16(out + at, qtype);
    put16(out + at + 2, DNS_CLASS_IN);
    return (int)(at + 4);
}

/*
 * The name at *at, in dotted form into out (NULL: skip it); *at moves past
 * it. -1 when it runs off the message, points forwards or is too long.
 */
static int
read_name(const uint8_t *msg, size_t len, size_t *at, char *out)
{
    size_t pos = *at, outlen = 0, end = 0;
    int jumped = 0;

    for (;;) {
        uint8_t c;

        if (pos >= len)
            return -1;
        c = msg[pos];
        if (c == 0) {
            pos++;
            break;
        }
        if ((c & 0xc0) == 0xc0) {
            size_t to;

            if (pos + 1 >= len)
                return -1;
            to = (size_t)((c & 0x3f) << 8 | msg[pos + 1]);
            if (to >= pos)
                return -1;              /* only backwards: no loops */
            if (!jumped)
                end = pos + 2;
            jumped = 1;
            pos = to;
            continue;
        }
        if ((c & 0xc0) != 0 || pos + 1 + c > len || outlen + c + 1 > DNS_NAME_MAX)
            return -1;
        if (out != NULL) {
            if (outlen > 0)
                out[outlen++] = '.';
            memcpy(out + outlen, msg + pos + 1, c);
        } else if (outlen > 0) {
            outlen++;
        }
        outlen += c;
        pos += 1 + (size_t)c;
    }
    if (out != NULL)
        out[outlen] = '\0';
    *at = jumped ? end : pos;
    return 0;
}

static const char *
rcode_name(unsigned rcode)
{
    static const char *names[] = { "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                   "NOTIMP", "REFUSED" };

    return rcode < sizeof(names) / sizeof(names[0]) ? names[rcode] : "error";
}

int
dnsmsg_srv_parse(const uint8_t *msg, size_t len, uint16_t id, struct dns_srv *srv,
                 int max, char *err, size_t errlen)
{
    unsigned flags, qd, an, i;
    size_t at = DNS_HEADER;
    int n = 0;

    if (len < DNS_HEADER || get16(msg) != id) {
        snprintf(err, errlen, "%s", len < DNS_HEADER ? "short answer" : "answer to another question");
        return -1;
    }
    flags = get16(msg + 2);
    if (!(flags & DNS_FLAG_QR) || (flags & DNS_FLAG_TC)) {
        snprintf(err, errlen, "%s", flags & DNS_FLAG_TC ? "answer truncated (too many records for UDP)"
                                                        : "not an answer");
        return -1;
    }
    if ((flags & 0xf) != 0) {
        snprintf(err, errlen, "%s", rcode_name(flags & 0xf));
        return -1;
    }
    qd = get16(msg + 4);
    an = get16(msg + 6);
    for (i = 0; i < qd; i++) {
        if (read_name(msg, len, &at, NULL) < 0 || at + 4 > len)
            goto malformed;
        at += 4;
    }
    for (i = 0; i < an; i++) {
        unsigned type, rdlen;

        if (read_name(msg, len, &at, NULL) < 0 || at + 10 > len)
            goto malformed;
        type = get16(msg + at);
        rdlen = get16(msg + at + 8);
        at += 10;
        if (at + rdlen > len)
            goto malformed;
        if (type == DNS_TYPE_SRV && n < max) {
            size_t target = at + 6;

            if (rdlen < 7)
                goto malformed;
            srv[n].priority = get16(msg + at);
            srv[n].weight = get16(msg + at + 2);
            srv[n].port = get16(msg + at + 4);
            if (read_name(msg, at + rdlen, &target, srv[n].target) < 0)
                goto malformed;
            n++;
        }
        at += rdlen;        /* other types (a CNAME on the way) are passed over */
    }
    return n;

malformed:
    snprintf(err, errlen, "malformed answer");
    return -1;
}
