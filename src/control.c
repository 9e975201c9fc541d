/*
 * control.c: `luagent --reload [--force]` and `luagent --preview FILE|--drop`,
 * for shells and deploy scripts.
 *
 * The reload itself is the running process's SIGHUP: this only finds the
 * process, touches its force file first when asked (guard.h: the path is -c
 * POLICY plus ".force", or, without -c, the policy the process names in its
 * `stats`, taken relative to its working directory), and reads the outcome
 * back from the counters `stats` shows (reloads, reload_failures,
 * reload_refused_remap) when the port answers as that same process. A port
 * answered by some other process is not trusted for anything.
 *
 * --preview writes the candidate's absolute path into POLICY.preview (found
 * like the force file) and sends SIGUSR2; --preview --drop removes that file
 * and sends SIGUSR2. The outcome is read back from `stats preview`.
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "guard.h"
#include "luagent.h"
#include "preview.h"
#include "settings.h"
#include "trial.h"

#define CONTROL_TIMEOUT_MS  2000                    /* one stats exchange */
#define CONTROL_STATS_MAX   (1024 * 1024)           /* a stats answer we read */
#define OUTCOME_WAIT_MS     ((2 * TRIAL_SECONDS + 5) * 1000)    /* trial and real load */
#define OUTCOME_POLL_MS     50

/* What the running process's `stats` says. */
struct remote {
    long     pid;
    char     policy[PATH_MAX];
    uint64_t reloads, failures, refused, generation;
    char     checksum[16];
    uint64_t preview_loads, preview_failures, preview_loaded;  /* stats preview */
    char     preview_checksum[16];
};

static int
connect_port(const struct settings *s)
{
    const char *host = s->bind_addr != NULL && strcmp(s->bind_addr, "0.0.0.0") != 0
                       && strcmp(s->bind_addr, "::") != 0 ? s->bind_addr : "127.0.0.1";
    struct timeval tv = { CONTROL_TIMEOUT_MS / 1000, 0 };
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST }, *ai;
    char port[16];
    int fd;

    snprintf(port, sizeof(port), "%d", s->port);
    if (s->port <= 0 || getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0
                    || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0
                    || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Read until a line "END\r\n"; the answer, NUL-terminated, or NULL. */
static char *
read_stats(int fd)
{
    size_t len = 0, cap = 16384;
    char *buf = malloc(cap), *grown;
    ssize_t n;

    while (buf != NULL) {
        if (len + 1 == cap) {
            if (cap >= CONTROL_STATS_MAX || (grown = realloc(buf, cap * 2)) == NULL)
                break;
            buf = grown;
            cap *= 2;
        }
        n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if ((len == 5 && memcmp(buf, "END\r\n", 5) == 0) || strstr(buf, "\r\nEND\r\n") != NULL)
            return buf;
    }
    free(buf);
    return NULL;
}

static void
remote_field(struct remote *r, const char *name, const char *value)
{
    if (strcmp(name, "pid") == 0)
        r->pid = strtol(value, NULL, 10);
    else if (strcmp(name, "policy") == 0)
        snprintf(r->policy, sizeof(r->policy), "%s", value);
    else if (strcmp(name, "reloads") == 0)
        r->reloads = strtoull(value, NULL, 10);
    else if (strcmp(name, "reload_failures") == 0)
        r->failures = strtoull(value, NULL, 10);
    else if (strcmp(name, "reload_refused_remap") == 0)
        r->refused = strtoull(value, NULL, 10);
    else if (strcmp(name, "config_generation") == 0)
        r->generation = strtoull(value, NULL, 10);
    else if (strcmp(name, "policy_checksum") == 0)
        snprintf(r->checksum, sizeof(r->checksum), "%s", value);
    else if (strcmp(name, "preview_loads") == 0)
        r->preview_loads = strtoull(value, NULL, 10);
    else if (strcmp(name, "preview_failures") == 0)
        r->preview_failures = strtoull(value, NULL, 10);
    else if (strcmp(name, "preview_loaded") == 0)
        r->preview_loaded = strtoull(value, NULL, 10);
    else if (strcmp(name, "preview_checksum") == 0)
        snprintf(r->preview_checksum, sizeof(r->preview_checksum), "%s", value);
}

/* Send a stats command to the port and read the fields r knows; 0, or -1. */
static int
remote_stats(const struct settings *s, const char *command, struct remote *r)
{
    int fd = connect_port(s);
    char *answer = NULL, *line, *save = NULL;
    ssize_t len = (ssize_t)strlen(command);

    memset(r, 0, sizeof(*r));
    if (fd < 0)
        return -1;
    if (send(fd, command, (size_t)len, MSG_NOSIGNAL) == len)
        answer = read_stats(fd);
    close(fd);
    for (line = answer ? strtok_r(answer, "\r\n", &save) : NULL; line != NULL;
         line = strtok_r(NULL, "\r\n", &save)) {
        char *name = line + 5, *value;

        if (strncmp(line, "STAT ", 5) != 0 || (value = strchr(name, ' ')) == NULL)
            continue;
        *value++ = '\0';
        remote_field(r, name, value);
    }
    free(answer);
    return answer != NULL ? 0 : -1;
}

/* Ask the port's `stats`; 0, or -1 when nothing (or not luagent) answers. */
static int
remote_ask(const struct settings *s, struct remote *r)
{
    return remote_stats(s, "stats\r\n", r) == 0 && r->pid > 0 ? 0 : -1;
}

static bool
alive(long pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* The running luagent's pid; r is filled when its port answers as it. */
static long
find_process(const struct settings *s, struct remote *r, bool *observed)
{
    long pid;

    *observed = remote_ask(s, r) == 0;
    if (s->pid_file == NULL) {
        if (!*observed)
            fprintf(stderr, "luagent: nothing answers stats on port %d; give --pid-file FILE "
                    "or the -p PORT luagent serves\n", s->port);
        return *observed ? r->pid : 0;
    }
    pid = pidfile_pid(s->pid_file);
    if (!alive(pid)) {
        fprintf(stderr, "luagent: pid file %s names no running process\n", s->pid_file);
        return 0;
    }
    *observed = *observed && r->pid == pid;
    return pid;
}

/*
 * The running process's policy file, for the files beside it (POLICY.force,
 * POLICY.preview): -c POLICY's, else the one its stats name.
 */
static int
policy_file(const struct settings *s, const struct remote *r, bool observed, long pid,
            const char *option, const char *suffix, char *policy, size_t size)
{
    char cwd[PATH_MAX], link[64];
    ssize_t n;

    if (s->policy != NULL) {
        snprintf(policy, size, "%s", s->policy);
        return 0;
    }
    if (!observed || r->policy[0] == '\0' || strstr(r->policy, "(built in)") != NULL) {
        fprintf(stderr, "luagent: %s: give -c POLICY (the file read is POLICY%s)\n", option,
                suffix);
        return -1;
    }
    snprintf(policy, size, "%s", r->policy);
    snprintf(link, sizeof(link), "/proc/%ld/cwd", pid);
    if (r->policy[0] != '/' && (n = readlink(link, cwd, sizeof(cwd) - 1)) > 0) {
        cwd[n] = '\0';
        snprintf(policy, size, "%s/%s", cwd, r->policy);
    }
    return 0;
}

/* The force file's path: -c POLICY's, else the running process's policy. */
static int
force_file(const struct settings *s, const struct remote *r, bool observed, long pid,
           char *out, size_t outlen)
{
    char policy[PATH_MAX + PATH_MAX];

    if (policy_file(s, r, observed, pid, "--force", ".force", policy, sizeof(policy)) < 0)
        return -1;
    guard_force_path(policy, out, outlen);
    return 0;
}

/* Create the file, or give it a new modification time. */
static int
touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

    if (fd < 0 || futimens(fd, NULL) < 0) {
        fprintf(stderr, "luagent: force file %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Poll the counters until the reload's outcome shows; the exit status. */
static int
await_outcome(const struct settings *s, const struct remote *before, long pid)
{
    struct remote now;
    long waited;

    for (waited = 0; waited < OUTCOME_WAIT_MS; waited += OUTCOME_POLL_MS) {
        sleep_ms(OUTCOME_POLL_MS);
        if (remote_ask(s, &now) < 0 || now.pid != pid)
            continue;
        if (now.reloads != before->reloads) {
            printf("luagent: reload took effect: generation %llu, policy checksum %s\n",
                   (unsigned long long)now.generation, now.checksum);
            return 0;
        }
        if (now.failures != before->failures) {
            fprintf(stderr, "luagent: reload %s; generation %llu keeps serving (the log says why)\n",
                    now.refused != before->refused ? "refused by the remap guard "
                    "(settings.max_remap; --force applies it)" : "failed",
                    (unsigned long long)now.generation);
            return 1;
        }
    }
    fprintf(stderr, "luagent: sent SIGHUP to process %ld; no outcome seen in its stats "
            "within %d s\n", pid, OUTCOME_WAIT_MS / 1000);
    return 1;
}

/*
 * Send sig to pid. -1 (said on stderr) if it cannot be sent; 0 when it was
 * sent but the process cannot be watched (observed false: its log has the
 * outcome, said on stdout); 1 when the caller should wait for the outcome.
 */
static int
signal_process(long pid, int sig, const char *name, bool observed)
{
    if (kill((pid_t)pid, sig) < 0) {
        fprintf(stderr, "luagent: process %ld: %s: %s\n", pid, name, strerror(errno));
        return -1;
    }
    if (!observed) {
        printf("luagent: sent %s to process %ld (its -p port does not answer as it: "
               "the outcome is in its log)\n", name, pid);
        return 0;
    }
    fflush(stdout);
    return 1;
}

int
control_reload(const struct settings *s)
{
    struct remote before;
    char path[PATH_MAX + 16];
    bool observed;
    long pid = find_process(s, &before, &observed);
    int sent;

    if (pid <= 0)
        return 1;
    if (s->force) {
        if (force_file(s, &before, observed, pid, path, sizeof(path)) < 0 || touch(path) < 0)
            return 1;
        printf("luagent: force file %s touched\n", path);
    }
    sent = signal_process(pid, SIGHUP, "SIGHUP", observed);
    if (sent <= 0)
        return sent < 0 ? 1 : 0;
    return await_outcome(s, &before, pid);
}

/* Write the candidate's absolute path into the preview file, atomically. */
static int
write_preview_file(const char *path, const char *candidate)
{
    char abs[PATH_MAX], tmp[3 * PATH_MAX];
    bool written;
    FILE *f;

    if (realpath(candidate, abs) == NULL) {
        fprintf(stderr, "luagent: --preview %s: %s\n", candidate, strerror(errno));
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid());
    if ((f = fopen(tmp, "w")) == NULL) {
        fprintf(stderr, "luagent: preview file %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    written = fprintf(f, "%s\n", abs) >= 0;
    written = fclose(f) == 0 && written;
    if (!written || rename(tmp, path) < 0) {
        fprintf(stderr, "luagent: preview file %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Poll `stats preview` until the load (or drop) shows; the exit status. */
static int
await_preview(const struct settings *s, const struct remote *before, long pid)
{
    struct remote now;
    long waited;

    for (waited = 0; waited < OUTCOME_WAIT_MS; waited += OUTCOME_POLL_MS) {
        sleep_ms(OUTCOME_POLL_MS);
        if (remote_stats(s, "stats preview\r\n", &now) < 0)
            continue;
        if (s->preview_drop && now.preview_loaded == 0) {
            printf("luagent: preview ended; nothing else changed\n");
            return 0;
        }
        if (!s->preview_drop && now.preview_loads != before->preview_loads) {
            printf("luagent: previewing %s (checksum %s) beside the live policy; "
                   "`stats preview` counts the keys that would move\n", s->preview,
                   now.preview_checksum);
            return 0;
        }
        if (!s->preview_drop && now.preview_failures != before->preview_failures) {
            fprintf(stderr, "luagent: %s did not load as a preview (the log says why); "
                    "the live policy is untouched\n", s->preview);
            return 1;
        }
    }
    fprintf(stderr, "luagent: sent SIGUSR2 to process %ld; no outcome seen in its stats "
            "within %d s\n", pid, OUTCOME_WAIT_MS / 1000);
    return 1;
}

int
control_preview(const struct settings *s)
{
    struct remote before, counts;
    char policy[PATH_MAX + PATH_MAX], path[PATH_MAX + PATH_MAX + 16];
    bool observed;
    long pid = find_process(s, &before, &observed);
    int sent;

    if (pid <= 0
        || policy_file(s, &before, observed, pid, "--preview", PREVIEW_FILE_SUFFIX, policy,
                       sizeof(policy)) < 0)
        return 1;
    snprintf(path, sizeof(path), "%s%s", policy, PREVIEW_FILE_SUFFIX);
    if (s->preview_drop) {
        if (unlink(path) < 0 && errno != ENOENT) {
            fprintf(stderr, "luagent: preview file %s: %s\n", path, strerror(errno));
            return 1;
        }
    } else if (write_preview_file(path, s->preview) < 0) {
        return 1;
    }
    if (observed && remote_stats(s, "stats preview\r\n", &counts) < 0)
        observed = false;
    sent = signal_process(pid, SIGUSR2, "SIGUSR2", observed);
    if (sent <= 0)
        return sent < 0 ? 1 : 0;
    return await_preview(s, &counts, pid);
}
