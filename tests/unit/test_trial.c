/*
 * Unit tests for the trial load (trial.c).
 *
 * This binary is its own trial child: trial_load runs /proc/self/exe, which
 * here is this test, so main hands a trial-mode command line to trial_main
 * as luagent's main does.
 *
 * Linked with -Wl,--wrap=pthread_mutex_unlock,--wrap=waitpid: a thread that
 * arms the wrapper stops inside its next unlock, still holding the mutex,
 * until the trial child has been reaped. That freezes the log rate limiter's
 * lock the way a worker thread holds it for a moment while it logs, at the
 * instant a trial starts, and lets it go before the real load in this
 * process needs it.
 */
#include "trial.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "script.h"
#include "settings.h"
#include "unit.h"

int __real_pthread_mutex_unlock(pthread_mutex_t *m);
int __wrap_pthread_mutex_unlock(pthread_mutex_t *m);
pid_t __real_waitpid(pid_t pid, int *status, int options);
pid_t __wrap_waitpid(pid_t pid, int *status, int options);

static pthread_t holder;
static volatile int hold_armed, hold_released = 1;
static sem_t held, release;

int
__wrap_pthread_mutex_unlock(pthread_mutex_t *m)
{
    if (hold_armed && pthread_equal(pthread_self(), holder)) {
        hold_armed = 0;
        sem_post(&held);
        while (sem_wait(&release) < 0 && errno == EINTR)
            ;
    }
    return __real_pthread_mutex_unlock(m);
}

pid_t
__wrap_waitpid(pid_t pid, int *status, int options)
{
    pid_t r = __real_waitpid(pid, status, options);

    if (hold_released == 0) {
        hold_released = 1;
        sem_post(&release);
    }
    return r;
}

/* A worker's rate-limited log line (a backend failure, a hook's lg.log). */
static void *
log_while_holding(void *arg)
{
    static int key;

    holder = pthread_self();
    hold_armed = 1;
    log_ratelimited(LOG_WARN, &key, "backend %s: connection refused", "127.0.0.1:1");
    return NULL;
}

static char policy_path[] = "/tmp/luagent-test-trial-XXXXXX";

/* A policy that logs while it loads and needs lg.args from the command line. */
static const char policy_text[] =
    "local lg = require 'luagent'\n"
    "lg.log('warn', 'loading')\n"
    "local mark = lg.args.extra[1]\n"
    "if mark ~= 'from-the-command-line' then\n"
    "    error('lg.args.extra[1] is ' .. tostring(mark))\n"
    "end\n"
    "return lg.policy{ route = lg.pool{ name = 'p', servers = lg.args.servers } }\n";

#define CMDLINE_ARGS 7

static char *cmdline[CMDLINE_ARGS + 1] = {
    "luagent", "-s", "127.0.0.1:11299", "-c", policy_path, "--", "from-the-command-line", NULL
};

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* The settings the remembered command line parses to. */
static void
parse_cmdline(struct settings *s)
{
    static char *copy[CMDLINE_ARGS + 1];     /* s->extra points into it */

    memcpy(copy, cmdline, sizeof(copy));
    optind = 0;         /* getopt starts over */
    CHECK_EQ(settings_parse(s, CMDLINE_ARGS, copy), SETTINGS_RUN);
}

/* trial_load of path (NULL: the built-in policy) succeeds. */
static void
check_loads(const char *path, int nworkers)
{
    struct settings s;
    struct config *config;
    char err[1024] = "";

    parse_cmdline(&s);
    config = trial_load(path, &s, nworkers, err, sizeof(err));
    UNIT_REPORT(config != NULL, "trial_load(%s): %s", path ? path : "built-in", err);
    if (config != NULL)
        config_free(config);
    settings_free(&s);
}

/* The child parses the remembered command line: the policy checks lg.args. */
static void
test_loads_with_args(void)
{
    check_loads(policy_path, 2);
}

/* The trial reports the load's own error, word for word. */
static void
test_error_is_the_load_error(void)
{
    char bad[] = "/tmp/luagent-test-trial-bad-XXXXXX";
    char want[1024] = "", got[1024] = "";
    struct settings s;
    int fd = mkstemp(bad);

    CHECK(fd >= 0);
    close(fd);
    write_file(bad, "local lg = require 'luagent'\nreturn lg.policy{ route = lg.pool{} }\n");
    parse_cmdline(&s);
    CHECK(script_load(bad, &s, 1, want, sizeof(want)) == NULL);
    CHECK(trial_load(bad, &s, 1, got, sizeof(got)) == NULL);
    UNIT_REPORT(want[0] != '\0' && strcmp(want, got) == 0, "trial said '%s', load said '%s'",
                got, want);
    unlink(bad);
    settings_free(&s);
}

/*
 * A lock that another thread holds when the trial starts must not reach the
 * trial: a forked child would wait on the rate limiter's lock until the
 * deadline, and the load would be refused as too slow.
 */
static void
test_lock_held_by_another_thread(void)
{
    struct timespec until;
    struct settings s;
    struct config *config;
    char err[1024] = "";
    pthread_t thread;
    int waited;

    sem_init(&held, 0, 0);
    sem_init(&release, 0, 0);
    hold_released = 0;
    CHECK_EQ(pthread_create(&thread, NULL, log_while_holding, NULL), 0);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while ((waited = sem_timedwait(&held, &until)) < 0 && errno == EINTR)
        ;
    UNIT_REPORT(waited == 0, "the logging thread never held the rate limiter's lock");
    parse_cmdline(&s);
    config = trial_load(policy_path, &s, 1, err, sizeof(err));
    UNIT_REPORT(config != NULL, "trial_load with the log lock held elsewhere: %s", err);
    if (config != NULL)
        config_free(config);
    pthread_join(thread, NULL);
    settings_free(&s);
}

/* The built-in policy (no -c) is tried too. */
static void
test_builtin_policy(void)
{
    check_loads(NULL, 1);
}

int
main(int argc, char **argv)
{
    int fd;

    if (trial_requested(argc, argv))
        return trial_main(argc, argv);
    fd = mkstemp(policy_path);
    if (fd < 0) {
        perror("mkstemp");
        return 1;
    }
    close(fd);
    write_file(policy_path, policy_text);
    trial_remember_args(CMDLINE_ARGS, cmdline);
    log_silence();
    test_loads_with_args();
    test_error_is_the_load_error();
    test_lock_held_by_another_thread();
    test_builtin_policy();
    unlink(policy_path);
    return UNIT_DONE();
}
