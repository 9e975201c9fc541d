/*
 * replay.c: the part of libFuzzer that replaying saved inputs needs, so that
 * `make unit` runs them with the normal compiler (and with the sanitizers
 * under SAN=1), where clang and libFuzzer may be missing.
 *
 * Linked with one fuzz target, it feeds each file named on the command line
 * to LLVMFuzzerTestOneInput, after LLVMFuzzerInitialize if the target has
 * one. Each input runs in a child process of its own (this process has a
 * single thread, so a fork is safe), so one input that traps, aborts on a
 * sanitizer report or hangs is reported by name and the others still run.
 *
 * An input passes when its child exits 0 within REPLAY_SECONDS. A reproducer
 * whose name holds "-timeout-" (libFuzzer's timeout class) is a load that
 * nothing inside the target can bound, such as a backtracking pattern in one
 * C call; the trial load's deadline bounds it (trial.c). For those, what the
 * replay can check is that the input neither crashes nor fails before
 * TIMEOUT_CLASS_SECONDS; it is stopped then.
 *
 * Output is TAP-like, as the unit tests': "ok N - file" or "not ok N - file:
 * why", then "N passed, N failed".
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REPLAY_SECONDS          30      /* a hang detector, not a speed test */
#define TIMEOUT_CLASS_SECONDS   2

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* The whole file, or NULL; *size is its length. */
static uint8_t *
read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t cap = 0, len = 0, n;

    if (f == NULL)
        return NULL;
    do {
        if (len == cap) {
            uint8_t *bigger = realloc(data, cap = cap ? 2 * cap : 4096);

            if (bigger == NULL) {
                free(data);
                fclose(f);
                return NULL;
            }
            data = bigger;
        }
        n = fread(data + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *size = len;
    return data;
}

static void
run_input(const char *path)
{
    size_t size;
    uint8_t *data = read_file(path, &size);

    if (data == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        _exit(2);
    }
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    exit(0);        /* exit, not _exit: LeakSanitizer looks at exit */
}

static double
seconds_since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (now.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * Wait for pid up to limit seconds. Returns its wait status, or -1 when it
 * was still running at the deadline (it is killed and reaped then).
 */
static int
wait_bounded(pid_t pid, double limit)
{
    const struct timespec tick = { 0, 5 * 1000 * 1000 };
    struct timespec t0;
    int status;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);

        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return 0x7f00;      /* cannot happen: report it as a failure */
        if (seconds_since(&t0) >= limit) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            return -1;
        }
        nanosleep(&tick, NULL);
    }
}

/* 1 when the input at path passes; prints its line either way. */
static int
replay(int n, const char *path)
{
    int timeout_class = strstr(path, "-timeout-") != NULL;
    double limit = timeout_class ? TIMEOUT_CLASS_SECONDS : REPLAY_SECONDS;
    pid_t pid;
    int status;

    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        printf("not ok %d - %s: fork: %s\n", n, path, strerror(errno));
        return 0;
    }
    if (pid == 0)
        run_input(path);
    status = wait_bounded(pid, limit);
    if (status == -1 && timeout_class) {
        printf("ok %d - %s (a timeout reproducer: ran %d s without failing, then stopped)\n",
               n, path, TIMEOUT_CLASS_SECONDS);
        return 1;
    }
    if (status == -1)
        printf("not ok %d - %s: still running after %d s\n", n, path, REPLAY_SECONDS);
    else if (WIFSIGNALED(status))
        printf("not ok %d - %s: killed by signal %d\n", n, path, WTERMSIG(status));
    else if (WEXITSTATUS(status) != 0)
        printf("not ok %d - %s: exit status %d\n", n, path, WEXITSTATUS(status));
    else
        printf("ok %d - %s\n", n, path);
    return status == 0;
}

int
main(int argc, char **argv)
{
    int i, passed = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s INPUT...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (i = 1; i < argc; i++)
        passed += replay(i, argv[i]);
    printf("1..%d\n%d passed, %d failed\n", argc - 1, passed, argc - 1 - passed);
    return passed == argc - 1 ? 0 : 1;
}
