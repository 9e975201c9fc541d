/*
 * trial.c: load a policy once in a forked child, under a deadline, before
 * loading it for real.
 *
 * The child inherits the proxy's memory copy-on-write, runs the whole load
 * (compile, self-tests, hook dry runs) with its log silenced, sends back its
 * verdict through a pipe and exits with _exit, touching nothing the parent
 * owns. The parent waits with poll; past the deadline it kills the child. The
 * load is therefore paid twice, which is cheap next to how rarely it happens
 * (start-up, SIGHUP, --check).
 */
#include "trial.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "script.h"

static void
trial_child(int fd, const char *path, const struct settings *s, int nworkers)
{
    char err[1024] = "";
    struct config *config;
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    size_t len;

    /* The real load logs whatever the policy logs; the trial stays quiet,
       in a log file or syslog as on stderr. */
    log_silence();
    if (devnull >= 0)
        dup2(devnull, STDERR_FILENO);
    signal(SIGHUP, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    config = script_load(path, s, nworkers, err, sizeof(err));
    len = config != NULL ? 0 : strlen(err);
    if (len > 0 && write(fd, err, len) < 0) {
        /* The parent reports the exit status alone. */
    }
    _exit(config != NULL ? 0 : 1);
}

static long
ms_since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Read the child's message until it closes the pipe or the deadline passes. */
static int
collect(int fd, char *msg, size_t cap)
{
    struct timespec t0;
    size_t len = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        long left = TRIAL_SECONDS * 1000L - ms_since(&t0);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t n;

        if (left <= 0)
            return -1;
        if (poll(&p, 1, (int)left) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (p.revents == 0)
            continue;
        n = read(fd, msg + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (len += (size_t)n) == cap - 1)
            break;
    }
    msg[len] = '\0';
    return 0;
}

static int
reap(pid_t pid)
{
    int status;

    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

struct config *
trial_load(const char *path, const struct settings *s, int nworkers, char *err, size_t errlen)
{
    const char *name = path != NULL ? path : "built-in policy";
    char msg[1024];
    int fds[2], status;
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "%s: cannot try the load: pipe: %s", name, strerror(errno));
        return NULL;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "%s: cannot try the load: fork: %s", name, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return NULL;
    }
    if (pid == 0) {
        close(fds[0]);
        trial_child(fds[1], path, s, nworkers);
    }
    close(fds[1]);
    if (collect(fds[0], msg, sizeof(msg)) < 0) {
        kill(pid, SIGKILL);
        reap(pid);
        close(fds[0]);
        snprintf(err, errlen, "%s: loading took longer than %d s and was stopped "
                 "(a Lua pattern or library call that does not return?)", name, TRIAL_SECONDS);
        return NULL;
    }
    close(fds[0]);
    status = reap(pid);
    if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return script_load(path, s, nworkers, err, errlen);
    if (status >= 0 && WIFEXITED(status) && msg[0] != '\0')
        snprintf(err, errlen, "%s", msg);
    else if (status >= 0 && WIFSIGNALED(status))
        snprintf(err, errlen, "%s: loading crashed (signal %d)", name, WTERMSIG(status));
    else
        snprintf(err, errlen, "%s: loading failed", name);
    return NULL;
}
