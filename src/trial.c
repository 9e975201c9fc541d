/*
 * trial.c: load a policy once in a child process, under a deadline, before
 * loading it for real.
 *
 * The child is a fresh run of the binary that is serving (/proc/self/exe),
 * started in trial mode: its argv[1] is TRIAL_ARG, followed by the worker
 * count, the policy and the proxy's own command line, which the child parses
 * again so that the policy sees the same settings (lg.args). It loads the
 * policy (compile, self-tests, hook dry runs) with its log and output
 * silenced, writes the error, if any, to a pipe and exits. The parent waits
 * with poll; past the deadline it kills the child. The load is therefore paid
 * twice, which is cheap next to how rarely it happens (start-up, SIGHUP,
 * --check).
 *
 * Why exec and not a plain fork: a fork of this multithreaded process copies
 * every lock as it was at that instant, and a lock that a worker thread held
 * then (the log rate limiter's, the allocator's under ASan, OpenSSL's) stays
 * held forever in the child, which hangs on it until the deadline and the
 * load is refused. A fresh process has no inherited locks. /proc/self/exe
 * names the running binary even once the file has been replaced or deleted
 * on disk, and it is reached without a path lookup, so it still runs after
 * -u has dropped the rights to the directory it was started from. The path
 * it links to is tried first all the same, while it still names this binary
 * (not "... (deleted)"): under valgrind /proc/self/exe is the tool itself,
 * and only that path runs the proxy again.
 */
#include "trial.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "script.h"
#include "settings.h"

#define TRIAL_EXE       "/proc/self/exe"
#define TRIAL_ARG       "--internal-trial-load"
#define TRIAL_FIXED     4           /* argv[0], TRIAL_ARG, workers, policy */

extern char **environ;

/* The command line the proxy started with, before getopt reordered it. */
static char **saved_argv;
static int saved_argc;

void
trial_remember_args(int argc, char **argv)
{
    saved_argv = calloc((size_t)argc + 1, sizeof(*saved_argv));
    if (saved_argv == NULL)
        return;     /* trial_load says why it cannot start a trial */
    memcpy(saved_argv, argv, (size_t)argc * sizeof(*saved_argv));
    saved_argc = argc;
}

bool
trial_requested(int argc, char **argv)
{
    return argc >= TRIAL_FIXED && strcmp(argv[1], TRIAL_ARG) == 0;
}

/*
 * The policy travels as one argument: "=" and its path, or "-" for the
 * built-in policy (no path), so that no file name can be mistaken for it.
 */
static const char *
policy_from_arg(const char *arg)
{
    return arg[0] == '=' ? arg + 1 : NULL;
}

/* Point fd at /dev/null; a failure leaves it as it was. */
static void
silence_fd(int fd, int flags)
{
    int null = open("/dev/null", flags | O_CLOEXEC);

    if (null >= 0) {
        dup2(null, fd);
        close(null);
    }
}

int
trial_main(int argc, char **argv)
{
    const char *path = policy_from_arg(argv[3]);
    int nworkers = atoi(argv[2]);
    /* The verdict pipe arrives as stdout; what the policy prints goes nowhere
       (the real load prints it once). */
    int verdict = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    struct config *config = NULL;
    struct settings s;
    char err[1024] = "";
    size_t len;

    silence_fd(STDOUT_FILENO, O_WRONLY);
    log_silence();
    signal(SIGPIPE, SIG_IGN);
    argv[TRIAL_FIXED - 1] = argv[0];
    if (settings_parse(&s, argc - (TRIAL_FIXED - 1), argv + (TRIAL_FIXED - 1)) != SETTINGS_RUN)
        snprintf(err, sizeof(err), "%s: the trial load could not parse the command line",
                 path != NULL ? path : "built-in policy");
    else
        config = script_load(path, &s, nworkers, err, sizeof(err));
    len = config != NULL ? 0 : strlen(err);
    if (len > 0 && write(verdict, err, len) < 0) {
        /* The parent reports the exit status alone. */
    }
    /* _exit: nothing to flush, and no leak report for the config dropped here. */
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

/* The child's argv: argv[0], TRIAL_ARG, workers, policy, then the rest of ours. */
static char **
child_argv(const char *path, int nworkers, char *workers, size_t wlen, char **policy)
{
    char **argv = calloc((size_t)saved_argc + TRIAL_FIXED, sizeof(*argv));

    *policy = NULL;
    if (argv == NULL || asprintf(policy, "%s%s", path ? "=" : "-", path ? path : "") < 0) {
        free(argv);
        *policy = NULL;
        return NULL;
    }
    snprintf(workers, wlen, "%d", nworkers);
    argv[0] = saved_argv[0];
    argv[1] = (char *)TRIAL_ARG;
    argv[2] = workers;
    argv[3] = *policy;
    memcpy(argv + TRIAL_FIXED, saved_argv + 1, (size_t)(saved_argc - 1) * sizeof(*argv));
    return argv;
}

/* The path /proc/self/exe links to, while it is still this binary's. */
static bool
exe_path(char *path, size_t size)
{
    static const char gone[] = " (deleted)";
    ssize_t n = readlink(TRIAL_EXE, path, size - 1);

    if (n <= 0 || (size_t)n >= size - 1)
        return false;
    path[n] = '\0';
    return !((size_t)n >= sizeof(gone) - 1 && strcmp(path + n - (sizeof(gone) - 1), gone) == 0);
}

/*
 * Start the trial child with the pipe's write end as its stdout, /dev/null as
 * stdin and stderr, no blocked signals and default handlers. posix_spawn runs
 * nothing of ours between the fork and the exec, and reports a failed exec
 * as its return value.
 */
static int
spawn_child(char **argv, int out, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, deflt;
    char path[4096];
    int rc;

    sigemptyset(&none);
    sigemptyset(&deflt);
    sigaddset(&deflt, SIGHUP);
    sigaddset(&deflt, SIGTERM);
    sigaddset(&deflt, SIGINT);
    sigaddset(&deflt, SIGUSR1);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &deflt);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = exe_path(path, sizeof(path)) ? posix_spawn(pid, path, &fa, &attr, argv, environ) : -1;
    if (rc != 0)
        rc = posix_spawn(pid, TRIAL_EXE, &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

/* Start the child; its pid and the read end of its pipe, or -1 and err. */
static int
trial_start(const char *path, int nworkers, pid_t *pid, int *in, char *err, size_t errlen)
{
    const char *name = path != NULL ? path : "built-in policy";
    char workers[16], *policy, **argv;
    int fds[2], rc;

    if (saved_argv == NULL) {
        snprintf(err, errlen, "%s: cannot try the load: no command line to pass on", name);
        return -1;
    }
    argv = child_argv(path, nworkers, workers, sizeof(workers), &policy);
    if (argv == NULL) {
        snprintf(err, errlen, "%s: cannot try the load: out of memory", name);
        return -1;
    }
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "%s: cannot try the load: pipe: %s", name, strerror(errno));
        rc = -1;
    } else if ((rc = spawn_child(argv, fds[1], pid)) != 0) {
        snprintf(err, errlen, "%s: cannot try the load: %s: %s", name, TRIAL_EXE,
                 strerror(rc));
        close(fds[0]);
        close(fds[1]);
        rc = -1;
    } else {
        close(fds[1]);
        *in = fds[0];
    }
    free(policy);
    free(argv);
    return rc;
}

struct config *
trial_load(const char *path, const struct settings *s, int nworkers, char *err, size_t errlen)
{
    const char *name = path != NULL ? path : "built-in policy";
    char msg[1024];
    int in, status;
    pid_t pid;

    if (trial_start(path, nworkers, &pid, &in, err, errlen) < 0)
        return NULL;
    if (collect(in, msg, sizeof(msg)) < 0) {
        kill(pid, SIGKILL);
        reap(pid);
        close(in);
        snprintf(err, errlen, "%s: loading took longer than %d s and was stopped "
                 "(a Lua pattern or library call that does not return?)", name, TRIAL_SECONDS);
        return NULL;
    }
    close(in);
    status = reap(pid);
    if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return script_load(path, s, nworkers, err, errlen);
    if (status >= 0 && WIFEXITED(status) && msg[0] != '\0')
        snprintf(err, errlen, "%s", msg);
    else if (status >= 0 && WIFSIGNALED(status))
        snprintf(err, errlen, "%s: loading crashed (signal %d)", name, WTERMSIG(status));
    else if (status >= 0 && WIFEXITED(status))
        snprintf(err, errlen, "%s: loading failed (the trial process exited with status %d "
                 "and no message)", name, WEXITSTATUS(status));
    else
        snprintf(err, errlen, "%s: loading failed", name);
    return NULL;
}
