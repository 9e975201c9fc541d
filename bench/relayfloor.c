/*
 * relayfloor.c: what the kernel alone charges a proxy to pass a value on,
 * for `make bench` (part 4).
 *
 * A proxy that sends a memcached value from a server connection to a client
 * connection pays the kernel for two loopback crossings: receiving the value
 * and sending it again. This tool measures that floor with the least user
 * code possible, so the proxies' own CPU per request can be set against it:
 *
 *   relayfloor -s HOST:PORT -v BYTES -n GETS [-P DEPTH] [-m copy|splice]
 *
 * It stores one value of BYTES at the memcached server, then forks a client
 * that asks for it GETS times, keeping DEPTH gets in flight (default 8, so
 * the relay finds the next request waiting and its cost is not mostly that of
 * waking up), over loopback TCP through a relay in this process. The relay knows each reply's exact length and moves
 * it with nothing else to do: -m copy reads it into one buffer and writes it
 * on (what luagent and nutcracker do); -m splice moves it through a pipe with
 * splice(2), so its bytes never reach user space. The client checks every
 * reply byte for byte. One line is printed:
 *
 *   relayfloor mode=copy value=102400 gets=2000 depth=8 relay_cpu_us=27.10 client_us=59.52
 *
 * relay_cpu_us is the relay's CPU time (user + system) per get, client_us
 * the client's wall time per get. Exit status 0, 1 if a reply was wrong, 2
 * on a usage or connection error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE                 /* splice, F_SETPIPE_SZ */
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define BENCH_TOOL "relayfloor"
#include "tool.h"

#define KEY         "relayfloor:value"
#define VALUE_MAX   (64 << 20)
#define LINE_MAX_BYTES 256

enum mode { MODE_COPY, MODE_SPLICE };

static void
usage(FILE *f)
{
    fprintf(f,
"Usage: relayfloor -s HOST:PORT -v BYTES -n GETS [-P DEPTH] [-m copy|splice]\n"
"  -s HOST:PORT   a memcached server (an IPv4 address)\n"
"  -v BYTES       value size (1..%d)\n"
"  -n GETS        gets to relay\n"
"  -P DEPTH       gets the client keeps in flight (default 8)\n"
"  -m MODE        copy (read and write, the default) or splice (through a pipe)\n"
"Prints: relayfloor mode=... value=... gets=... relay_cpu_us=... client_us=...\n",
        VALUE_MAX);
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
tcp_connect(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0)
        die("connect to %s:%d: %s", inet_ntoa(addr->sin_addr), ntohs(addr->sin_port),
            strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("write: %s", k < 0 ? strerror(errno) : "nothing written");
        p += k;
        n -= (size_t)k;
    }
}

/* Read exactly n bytes; false on EOF before any byte (the peer is done). */
static bool
read_all(int fd, char *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t k = read(fd, p + got, n - got);

        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0 && got == 0)
            return false;
        if (k <= 0)
            die("read: %s", k < 0 ? strerror(errno) : "connection closed mid-reply");
        got += (size_t)k;
    }
    return true;
}

/* The value's bytes: a pattern that a shifted or cut reply does not match. */
static char *
make_value(size_t n)
{
    char *v = malloc(n);
    size_t i;

    if (v == NULL)
        die("out of memory for a %zu-byte value", n);
    for (i = 0; i < n; i++)
        v[i] = (char)('a' + (i * 7 + i / 251) % 26);
    return v;
}

static void
store_value(int server, const char *value, size_t n)
{
    char line[LINE_MAX_BYTES];
    int len = snprintf(line, sizeof(line), "set " KEY " 0 0 %zu\r\n", n);

    write_all(server, line, (size_t)len);
    write_all(server, value, n);
    write_all(server, "\r\n", 2);
    if (!read_all(server, line, 8) || memcmp(line, "STORED\r\n", 8) != 0)
        die("the server did not store a %zu-byte value (is its item size limit, -I, large enough?)",
            n);
}

/*
 * The client: gets gets, depth of them in flight, each reply checked whole;
 * sends its wall time per get. Its requests are a few bytes each, so writing
 * them never waits for the relay.
 */
static void
client_run(const struct sockaddr_in *relay, const char *expect, size_t reply_len, long gets,
           long depth, int report)
{
    static const char get[] = "get " KEY "\r\n";
    char *reply = malloc(reply_len);
    int fd = tcp_connect(relay);
    double start = now_s(), per_get;
    long i, sent = 0;

    if (reply == NULL)
        die("out of memory for a reply");
    for (; sent < depth && sent < gets; sent++)
        write_all(fd, get, sizeof(get) - 1);
    for (i = 0; i < gets; i++) {
        if (sent < gets) {
            write_all(fd, get, sizeof(get) - 1);
            sent++;
        }
        if (!read_all(fd, reply, reply_len))
            die("the relay closed the connection");
        if (memcmp(reply, expect, reply_len) != 0) {
            fprintf(stderr, "relayfloor: reply %ld differs from the value stored\n", i + 1);
            exit(1);
        }
    }
    per_get = (now_s() - start) / (double)gets;
    write_all(report, (const char *)&per_get, sizeof(per_get));
    exit(0);
}

/* Move n bytes from one socket to another through user space. */
static void
relay_copy(int from, int to, char *buf, size_t cap, size_t n)
{
    while (n > 0) {
        ssize_t k = read(from, buf, n < cap ? n : cap);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("read from the server: %s", k < 0 ? strerror(errno) : "connection closed");
        write_all(to, buf, (size_t)k);
        n -= (size_t)k;
    }
}

/* Move n bytes from one socket to another through a pipe, by splice(2). */
static void
relay_splice(int from, int to, const int pipefd[2], size_t n)
{
    while (n > 0) {
        ssize_t k = splice(from, NULL, pipefd[1], NULL, n, SPLICE_F_MOVE), left;

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("splice from the server: %s", k < 0 ? strerror(errno) : "connection closed");
        for (left = k; left > 0;) {
            ssize_t w = splice(pipefd[0], NULL, to, NULL, (size_t)left, SPLICE_F_MOVE);

            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                die("splice to the client: %s", w < 0 ? strerror(errno) : "nothing moved");
            left -= w;
        }
        n -= (size_t)k;
    }
}

static double
cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
           + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int
main(int argc, char **argv)
{
    struct sockaddr_in server = { .sin_family = AF_INET }, relay = { .sin_family = AF_INET };
    socklen_t alen = sizeof(relay);
    enum mode mode = MODE_COPY;
    long value_len = 0, gets = 0, depth = 8, requests = 0;
    char *value, *expect, *buf = NULL, *colon, head[LINE_MAX_BYTES], req[1024 * 32];
    int ch, srv, lfd, cli, pipefd[2] = { -1, -1 }, report[2], status;
    size_t head_len, reply_len, req_len = strlen("get " KEY "\r\n"), have = 0;
    ssize_t got;
    double cpu0, cpu1, client_us = 0;
    pid_t pid;

    while ((ch = getopt(argc, argv, "s:v:n:P:m:h")) != -1) {
        switch (ch) {
        case 's':
            if ((colon = strrchr(optarg, ':')) == NULL)
                die("-s: '%s' is not HOST:PORT", optarg);
            *colon = '\0';
            if (inet_pton(AF_INET, optarg, &server.sin_addr) != 1)
                die("-s: '%s' is not an IPv4 address", optarg);
            server.sin_port = htons((uint16_t)num_arg("-s port", colon + 1, 1, 65535));
            break;
        case 'v': value_len = num_arg("-v", optarg, 1, VALUE_MAX); break;
        case 'n': gets = num_arg("-n", optarg, 1, LONG_MAX / 2); break;
        case 'P': depth = num_arg("-P", optarg, 1, 1000); break;
        case 'm':
            if (strcmp(optarg, "copy") == 0)
                mode = MODE_COPY;
            else if (strcmp(optarg, "splice") == 0)
                mode = MODE_SPLICE;
            else
                die("-m: '%s' is neither copy nor splice", optarg);
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (server.sin_port == 0 || value_len == 0 || gets == 0) {
        usage(stderr);
        return 2;
    }

    value = make_value((size_t)value_len);
    srv = tcp_connect(&server);
    store_value(srv, value, (size_t)value_len);
    head_len = (size_t)snprintf(head, sizeof(head), "VALUE " KEY " 0 %ld\r\n", value_len);
    reply_len = head_len + (size_t)value_len + 7;      /* "\r\nEND\r\n" */
    if ((expect = malloc(reply_len)) == NULL)
        die("out of memory for a reply");
    memcpy(expect, head, head_len);
    memcpy(expect + head_len, value, (size_t)value_len);
    memcpy(expect + head_len + (size_t)value_len, "\r\nEND\r\n", 7);

    relay.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&relay, sizeof(relay)) < 0
        || getsockname(lfd, (struct sockaddr *)&relay, &alen) < 0 || listen(lfd, 1) < 0)
        die("listen on 127.0.0.1: %s", strerror(errno));
    if (pipe(report) < 0)
        die("pipe: %s", strerror(errno));
    if ((pid = fork()) < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(lfd);
        close(srv);
        client_run(&relay, expect, reply_len, gets, depth, report[1]);
    }
    close(report[1]);
    if ((cli = accept(lfd, NULL, NULL)) < 0)
        die("accept: %s", strerror(errno));
    setsockopt(cli, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));

    if (mode == MODE_SPLICE) {
        if (pipe(pipefd) < 0)
            die("pipe: %s", strerror(errno));
        /* Room for a whole reply where the system allows it; a smaller pipe
         * only takes more rounds. */
        fcntl(pipefd[1], F_SETPIPE_SZ, (int)(reply_len < (1 << 20) ? reply_len : (1 << 20)));
    } else if ((buf = malloc(reply_len)) == NULL) {
        die("out of memory for the relay's buffer");
    }

    cpu0 = cpu_s();
    /* The gets that have arrived go to the server together, as a proxy
     * batches them, then their replies come back one after another. */
    while ((got = read(cli, req + have, sizeof(req) - have)) != 0) {
        size_t batch;

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            die("read from the client: %s", strerror(errno));
        have += (size_t)got;
        batch = have / req_len;
        write_all(srv, req, batch * req_len);
        if (mode == MODE_SPLICE)
            relay_splice(srv, cli, pipefd, batch * reply_len);
        else
            relay_copy(srv, cli, buf, reply_len, batch * reply_len);
        requests += (long)batch;
        have -= batch * req_len;
        memmove(req, req + batch * req_len, have);
    }
    cpu1 = cpu_s();
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
    if (read(report[0], &client_us, sizeof(client_us)) != (ssize_t)sizeof(client_us))
        die("the client did not report its time");
    if (requests != gets)
        die("relayed %ld gets of %ld", requests, gets);
    printf("relayfloor mode=%s value=%ld gets=%ld depth=%ld relay_cpu_us=%.2f client_us=%.2f\n",
           mode == MODE_SPLICE ? "splice" : "copy", value_len, gets, depth,
           (cpu1 - cpu0) * 1e6 / (double)gets, client_us * 1e6);
    return 0;
}
