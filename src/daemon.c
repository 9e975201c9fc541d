/*
 * daemon.c: detaching with a readiness pipe, and the pid file.
 *
 * The starting process forks, the child starts a new session and forks
 * again (so the daemon can never reacquire a terminal), and the starting
 * process blocks on a pipe whose write end only the daemon holds. The daemon
 * writes one report: 'R' (serving) or 'E' and a reason. If it dies first,
 * the pipe closes empty and the starting process reports that instead.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define REPORT_READY  'R'
#define REPORT_FAILED 'E'

static int report_fd = -1;      /* the daemon's end of the readiness pipe */
static char *pid_path;
static int pid_fd = -1;
static bool pid_created;        /* no file was there: remove it whatever happens */
static bool pid_written;

long
pidfile_pid(const char *path)
{
    char buf[32];
    ssize_t n;
    char *end;
    long pid;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    pid = strtol(buf, &end, 10);
    if (end == buf || (*end != '\0' && *end != '\n') || pid <= 0)
        return 0;
    return pid;
}

int
pidfile_open(const char *path, char *err, size_t errlen)
{
    long pid = pidfile_pid(path);

    /* Our own pid is a stale file too: a container restarted with the same
       pid (often 1) finds the file its previous run left. */
    if (pid > 0 && pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
        snprintf(err, errlen, "pid file %s: process %ld is running (another luagent?); "
                 "stop it, or remove the file if it is not luagent", path, pid);
        return -1;
    }
    pid_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    pid_created = pid_fd >= 0;
    if (pid_fd < 0 && errno == EEXIST)
        pid_fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (pid_fd < 0) {
        snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
        return -1;
    }
    pid_path = strdup(path);
    return 0;
}

int
pidfile_write(char *err, size_t errlen)
{
    char buf[32];
    int n;

    if (pid_fd < 0)
        return 0;
    n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(pid_fd, 0) < 0 || pwrite(pid_fd, buf, (size_t)n, 0) != n) {
        snprintf(err, errlen, "pid file %s: %s", pid_path, strerror(errno));
        return -1;
    }
    pid_written = true;
    return 0;
}

void
pidfile_remove(void)
{
    if (pid_fd < 0)
        return;
    if ((pid_created || pid_written) && unlink(pid_path) < 0 && ftruncate(pid_fd, 0) < 0) {
        /* Neither removable nor writable any more: a stale pid is harmless
           since start-up checks whether it is alive. */
    }
    close(pid_fd);
    pid_fd = -1;
    free(pid_path);
    pid_path = NULL;
}

/* The starting process: wait for the daemon's report and exit with it. */
static void __attribute__((noreturn))
await_report(int fd, pid_t child)
{
    char buf[1024];
    size_t got = 0;
    ssize_t n;

    /* The first child exits as soon as it has forked the daemon. */
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
        ;
    while (got < sizeof(buf) - 1) {
        n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    if (got > 0 && buf[0] == REPORT_READY)
        _exit(0);
    if (got > 0 && buf[0] == REPORT_FAILED)
        fprintf(stderr, "luagent: %s\n", buf + 1);
    else
        fprintf(stderr, "luagent: the daemon exited during start-up (see its log)\n");
    _exit(1);
}

/* Put stdin, stdout and stderr on /dev/null. */
static void
detach_stdio(void)
{
    int fd = open("/dev/null", O_RDWR);

    if (fd < 0)
        return;
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
        close(fd);
}

int
daemon_detach(char *err, size_t errlen)
{
    int pipefd[2];
    pid_t pid;

    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot daemonize: pipe: %s", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot daemonize: fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid > 0) {
        close(pipefd[1]);
        await_report(pipefd[0], pid);
    }
    close(pipefd[0]);
    report_fd = pipefd[1];
    if (setsid() < 0) {
        snprintf(err, errlen, "cannot daemonize: setsid: %s", strerror(errno));
        daemon_failed(err);
        _exit(1);
    }
    pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot daemonize: fork: %s", strerror(errno));
        daemon_failed(err);
        _exit(1);
    }
    if (pid > 0)
        _exit(0);
    detach_stdio();
    return 0;
}

static void
report(char kind, const char *why)
{
    char buf[1024];
    int n;

    if (report_fd < 0)
        return;
    n = snprintf(buf, sizeof(buf), "%c%s", kind, why);
    if (n > (int)sizeof(buf) - 1)
        n = (int)sizeof(buf) - 1;
    if (write(report_fd, buf, (size_t)n) < 0) {
        /* The starting process is gone: nobody is waiting for the report. */
    }
    close(report_fd);
    report_fd = -1;
}

void
daemon_ready(void)
{
    report(REPORT_READY, "");
}

void
daemon_failed(const char *why)
{
    report(REPORT_FAILED, why);
}
