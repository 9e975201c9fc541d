/*
 * main.c: start-up and shut-down.
 *
 * Order matters: parse the command line, check the pid file, build the
 * configuration (resolving servers), bind the listeners and the --metrics
 * socket, load the TLS certificate, open the log and pid files and look up
 * -u/-g, all while errors still reach the terminal; then drop privileges
 * (files and sockets are already open), detach, point the log at its file or
 * syslog, start the workers and tell the starting process we serve. The main
 * thread's loop accepts connections, serves --metrics, polls the servers'
 * own stats (fleet.c) and handles signals as libevent events, never in a raw
 * signal handler.
 *
 * SIGHUP reloads the TLS listener's certificate and the policy, each on its
 * own: a certificate that fails to load keeps the old one serving (and says
 * why) without holding back a good policy, and the other way round, since
 * the two usually change for unrelated reasons.
 *
 * SIGUSR2 loads (or drops) a preview: a candidate policy placed beside the
 * live one key by key (preview.h). The candidate's path is read from the
 * file POLICY.preview next to the -c policy (written by `luagent --preview`);
 * no such file, or an empty one, drops the preview. A reload never loads the
 * candidate: SIGHUP reads the -c file as always, and when that file now is
 * the candidate (same checksum) the preview has done its job and ends.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "control.h"
#include "daemon.h"
#include "diff.h"
#include "discover.h"
#include "fleet.h"
#include "guard.h"
#include "listener.h"
#include "log.h"
#include "luagent.h"
#include "metrics.h"
#include "reqlog.h"
#include "routelive.h"
#include "preview.h"
#include "script.h"
#include "settings.h"
#include "stats.h"
#include "tls.h"
#include "client.h"
#include "trial.h"
#include "watch.h"
#include "worker.h"

/* Who to become after binding (-u/-g), looked up before detaching. */
struct identity {
    const char *user;       /* -u name, NULL = keep the user */
    uid_t       uid;        /* (uid_t)-1 = keep the user */
    gid_t       gid;        /* (gid_t)-1 = keep the group */
};

/* A name that is all digits is also tried as a number (magent took ids). */
static bool
numeric_id(const char *text, unsigned long *out)
{
    char *end;

    if (*text < '0' || *text > '9')
        return false;
    errno = 0;
    *out = strtoul(text, &end, 10);
    return errno == 0 && *end == '\0';
}

static int
identity_resolve(const struct settings *s, struct identity *id, char *err, size_t errlen)
{
    unsigned long n;

    id->user = s->user;
    id->uid = (uid_t)-1;
    id->gid = (gid_t)-1;
    if (s->group != NULL) {
        struct group *gr = getgrnam(s->group);

        if (gr == NULL && numeric_id(s->group, &n))
            gr = getgrgid((gid_t)n);

        if (gr == NULL) {
            snprintf(err, errlen, "unknown group '%s' (-g)", s->group);
            return -1;
        }
        id->gid = gr->gr_gid;
    }
    if (s->user != NULL) {
        struct passwd *pw = getpwnam(s->user);

        if (pw == NULL && numeric_id(s->user, &n))
            pw = getpwuid((uid_t)n);

        if (pw == NULL) {
            snprintf(err, errlen, "unknown user '%s' (-u)", s->user);
            return -1;
        }
        id->uid = pw->pw_uid;
        if (id->gid == (gid_t)-1)
            id->gid = pw->pw_gid;
    }
    return 0;
}

/* Group first: once the user has changed, the group can no longer be. */
static int
identity_switch(const struct identity *id, char *err, size_t errlen)
{
    if (id->gid != (gid_t)-1 && (setgroups(0, NULL) < 0 || setgid(id->gid) < 0)) {
        snprintf(err, errlen, "cannot switch to group %u: %s", (unsigned)id->gid,
                 strerror(errno));
        return -1;
    }
    if (id->user != NULL && setuid(id->uid) < 0) {
        snprintf(err, errlen, "cannot switch to user '%s': %s", id->user, strerror(errno));
        return -1;
    }
    return 0;
}

/* libevent's own messages become log lines (time-stamped, at a level). */
static void
on_libevent_log(int severity, const char *msg)
{
    enum log_level level = severity >= EVENT_LOG_ERR ? LOG_ERROR
                         : severity >= EVENT_LOG_WARN ? LOG_WARN
                         : severity >= EVENT_LOG_MSG ? LOG_INFO : LOG_DEBUG;

    if (level <= log_level_current)
        log_write(level, "libevent: %s", msg);
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct event_base *base = arg;

    log_info("signal %d: shutting down", (int)sig);
    listener_stop();
    event_base_loopbreak(base);
}

/* settings.log_level applies unless -v was given (the command line wins). */
static void
apply_log_level(const struct settings *s, const struct config *config)
{
    if (s->verbose == 0)
        log_level_current = config->log_level >= 0 ? (enum log_level)config->log_level
                                                   : LOG_WARN;
}

/* -m and --client-max-memory win over the policy's settings, as -v does. */
static void
apply_memory_limits(const struct settings *s, struct config *config)
{
    uint64_t floor = 2 * (uint64_t)config->item_max;

    if (s->max_memory_mb > 0)
        config->max_memory = (uint64_t)s->max_memory_mb << 20;
    if (s->client_max_memory_mb > 0)
        config->client_max_memory = (uint64_t)s->client_max_memory_mb << 20;
    if (config->client_max_memory < floor) {
        log_warn("--client-max-memory %d MiB is less than twice item_max: using %llu bytes",
                 s->client_max_memory_mb, (unsigned long long)floor);
        config->client_max_memory = floor;
    }
}

#define FDS_OWN_PER_WORKER  4       /* epoll, eventfd, libevent's internal pair */
#define FDS_OWN             32      /* listeners, log, pid file, metrics, reserve... */

/*
 * Descriptors: -n clients, plus one connection per server in every worker
 * and one more for the background stats poll, plus luagent's own. Raise the
 * soft limit that far when the hard one allows; otherwise say what the limit
 * allows, once, at start.
 */
static void
raise_fd_limit(const struct settings *s, const struct config *config)
{
    rlim_t pollers = s->server_stats_interval_s > 0 ? 1 : 0;
    rlim_t need = (rlim_t)s->max_conns
                + ((rlim_t)s->threads + pollers) * (rlim_t)config->nservers
                + (rlim_t)s->threads * FDS_OWN_PER_WORKER
                + FDS_OWN;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
        return;
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need)
        rl.rlim_cur = need;
    else
        rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || getrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn("descriptor limit: setrlimit: %s", strerror(errno));
    if (rl.rlim_cur >= need) {
        log_info("descriptor limit raised to %llu for -n %d", (unsigned long long)need,
                 s->max_conns);
        return;
    }
    log_warn("descriptor limit %llu (ulimit -n) allows about %lld clients, not -n %d: "
             "clients past it are told \"ERROR Too many open connections\"",
             (unsigned long long)rl.rlim_cur,
             (long long)rl.rlim_cur - (long long)(need - (rlim_t)s->max_conns),
             s->max_conns);
}

/* The TLS listener's certificate, key and client CA, from the command line. */
static struct tls_server *
load_listener_tls(const struct settings *s, char *err, size_t errlen)
{
    struct tls_server_opts o = {
        .cert = s->tls_cert, .key = s->tls_key, .ca = s->tls_ca,
        .verify_client = s->tls_verify_client,
    };

    return tls_server_new(&o, err, errlen);
}

/* The config's server names are kept resolved, by its settings. */
static void
serve_names(const struct config *config)
{
    char err[ERR_LEN];

    if (discover_serving(config->resolver, config->resolve_every_s, err, sizeof(err)) < 0)
        log_warn("discover: %s (server names are not asked again)", err);
}

/*
 * Start-up: the first load found server names without an answer. Resolve
 * them (on a loop of their own: nothing is served yet), then load again.
 */
static struct config *
load_with_names(const struct settings *s, struct config *config, char *err, size_t errlen)
{
    int pass;

    for (pass = 0; config != NULL && config->discover_pending; pass++) {
        char resolver[sizeof(config->resolver)];

        memcpy(resolver, config->resolver, sizeof(resolver));
        config_free(config);
        if (pass == 2) {
            snprintf(err, errlen, "server names still without an answer after %d tries",
                     pass);
            return NULL;
        }
        if (discover_settle(resolver, DISCOVER_SETTLE_S, err, errlen) < 0)
            return NULL;
        config = trial_load(s->policy, s, s->threads, err, errlen);
    }
    return config;
}

/* SIGHUP, TLS half: new clients get the new certificate if it loads. */
static void
reload_listener_tls(const struct settings *s)
{
    struct tls_server *tls;
    char err[ERR_LEN];

    if (s->tls_port == 0)
        return;
    tls = load_listener_tls(s, err, sizeof(err));
    if (tls == NULL) {
        log_warn("TLS reload failed (keeping the certificate loaded before): %s", err);
        return;
    }
    listener_set_tls(tls);
    log_warn("TLS reload: new clients get %s", s->tls_cert);
}

/* The newest generation handed to the workers (alive until the next one is). */
static struct config *serving;

static void
preview_drop(const char *why)
{
    worker_publish_preview(NULL);
    preview_show(NULL);
    log_warn("preview ended: %s", why);
}

/*
 * A reload took effect. When the policy file is now the previewed candidate,
 * the preview ends (and its path file goes, so that a later SIGUSR2 does not
 * bring it back); otherwise its counts start over against the new live tree.
 */
static void
preview_after_reload(const struct settings *s, const struct config *config)
{
    char path[PATH_MAX + 16];

    if (!preview_is_live(config->checksum)) {
        preview_restart(config);
        return;
    }
    snprintf(path, sizeof(path), "%s%s", s->policy, PREVIEW_FILE_SUFFIX);
    if (unlink(path) < 0 && errno != ENOENT)
        log_warn("preview file %s: %s", path, strerror(errno));
    preview_drop("the candidate is now the live policy");
}

/* The candidate path POLICY.preview names: 1, 0 (no file, or empty: drop), -1. */
static int
preview_candidate(const char *policy, char *out, size_t outlen)
{
    char path[PATH_MAX + 16];
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "%s%s", policy, PREVIEW_FILE_SUFFIX);
    if ((f = fopen(path, "r")) == NULL) {
        if (errno == ENOENT)
            return 0;
        log_warn("preview: %s: %s", path, strerror(errno));
        return -1;
    }
    n = fgets(out, (int)outlen, f) ? strcspn(out, "\r\n") : 0;
    out[n] = '\0';
    fclose(f);
    return n > 0 ? 1 : 0;
}

/* SIGUSR2: load the candidate POLICY.preview names beside the live policy, or drop it. */
static void
on_usr2(evutil_socket_t sig, short what, void *arg)
{
    const struct settings *s = arg;
    char candidate[PATH_MAX], err[ERR_LEN];
    struct config *config;
    struct preview *p;
    int rc;

    if (s->policy == NULL) {
        log_warn("SIGUSR2: started without -c, so there is no POLICY%s to read the "
                 "candidate from", PREVIEW_FILE_SUFFIX);
        return;
    }
    if ((rc = preview_candidate(s->policy, candidate, sizeof(candidate))) <= 0) {
        if (rc == 0)
            preview_drop("asked to (no candidate named)");
        return;
    }
    config = trial_load(candidate, s, s->threads, err, sizeof(err));
    if (config == NULL) {
        __atomic_add_fetch(&preview_failures, 1, __ATOMIC_RELAXED);
        log_warn("preview of %s failed (nothing previewed changes): %s", candidate, err);
        return;
    }
    if ((p = preview_new(config, candidate, serving)) == NULL) {
        __atomic_add_fetch(&preview_failures, 1, __ATOMIC_RELAXED);
        log_warn("preview of %s failed: out of memory", candidate);
        return;
    }
    preview_show(p);
    worker_publish_preview(p);
    __atomic_add_fetch(&preview_loads, 1, __ATOMIC_RELAXED);
    log_warn("preview: %s (checksum %08x) placed beside generation %u: %d pool(s), "
             "%d route node(s); `stats preview` counts the keys that would move",
             candidate, config->checksum, serving->generation, config->npools,
             config->nnodes);
    preview_release(p);
}

static unsigned generation = 1;     /* the one being served */
static int names_pass;      /* loads of this reload that waited on server names */

static int reload_policy_load(const struct settings *s);

/* The names a reload waited on have their answers (or failed): load again. */
static void
on_names_resolved(void *arg)
{
    reload_policy_load(arg);
}

/*
 * A load found server names without an answer yet: the config it built only
 * checked the policy. Resolve the names on the loop, then load again (twice
 * at most: an SRV answer's own names are asked in the same round). 0 while
 * that is under way, -1 when it cannot be.
 */
static int
reload_wait_for_names(const struct settings *s, struct config *config, char *err, size_t errlen)
{
    char resolver[sizeof(config->resolver)];

    memcpy(resolver, config->resolver, sizeof(resolver));
    config_free(config);
    if (++names_pass > 2) {
        snprintf(err, errlen, "server names still without an answer after %d tries",
                 names_pass - 1);
        return -1;
    }
    if (discover_resolve_wanted(resolver, on_names_resolved, (void *)s, err, errlen) < 0)
        return -1;
    log_info("reload: resolving the policy's new server names first");
    return 0;
}

/*
 * Load the policy again, as at start-up, in fresh VMs (SIGHUP, --watch, a
 * server name's new answer). Any failure, or the remap guard's refusal,
 * leaves the running generation alone (-1); success hands the new one to the
 * workers, which swap between requests. A policy naming servers not resolved
 * yet loads once they are (0 meanwhile).
 */
static int
reload_policy(const struct settings *s)
{
    names_pass = 0;
    discover_retry_failed();
    return reload_policy_load(s);
}

static int
reload_policy_load(const struct settings *s)
{
    struct config *config;
    char err[ERR_LEN];

    config = trial_load(s->policy, s, s->threads, err, sizeof(err));
    if (config != NULL && config->discover_pending) {
        if (reload_wait_for_names(s, config, err, sizeof(err)) == 0)
            return 0;
        config = NULL;
    }
    if (config == NULL) {
        __atomic_add_fetch(&stats_reload_failures, 1, __ATOMIC_RELAXED);
        log_warn("reload failed (keeping generation %u): %s", generation, err);
        discover_load_failed();
        return -1;
    }
    if (guard_admit(config, err, sizeof(err)) < 0) {
        __atomic_add_fetch(&stats_reload_failures, 1, __ATOMIC_RELAXED);
        log_warn("reload refused (keeping generation %u): %s", generation, err);
        config_free(config);
        discover_load_failed();
        return -1;
    }
    config->generation = ++generation;
    apply_log_level(s, config);
    apply_memory_limits(s, config);
    __atomic_add_fetch(&stats_reloads, 1, __ATOMIC_RELAXED);
    log_warn("reload: generation %u from %s (checksum %08x): %d pool(s), %d route node(s), %s",
             config->generation, config->source, config->checksum, config->npools,
             config->nnodes, config->nhooks ? "with hooks" : "no hooks");
    guard_serving(config);      /* before the workers own it */
    serve_names(config);
    fleet_set_config(config);   /* first: the workers may free the old one once they have this */
    serving = config;
    worker_publish_config(config);
    preview_after_reload(s, config);
    return 0;
}

/* A server name answered differently: rebuild the pools as a reload does. */
static void
on_names_changed(void *arg)
{
    const struct settings *s = arg;

    log_warn("discover: server addresses changed: reloading %s",
             s->policy ? s->policy : "the built-in policy");
    reload_policy(s);
}

/* SIGHUP: the TLS certificate and the policy, each on its own. */
static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
    const struct settings *s = arg;

    reload_listener_tls(s);
    if (s->policy == NULL) {
        if (s->tls_port != 0)
            return;     /* the certificate was what there was to reload */
        log_warn("SIGHUP: started without -c, so there is no policy file to reload");
        return;
    }
    reload_policy(s);
}

/* --watch: the policy file (or its force file) changed; reload if its bytes did. */
static void
on_policy_changed(void *arg)
{
    const struct settings *s = arg;
    uint32_t checksum = script_checksum(s->policy);

    if (checksum == 0 || !guard_worth_reloading(checksum)) {
        log_debug("--watch: %s changed, but not its bytes since the last reload", s->policy);
        return;
    }
    log_info("%s changed: reloading", s->policy);
    if (reload_policy(s) < 0)
        guard_reload_failed(checksum);
}

/* --check and --route: load the policy as a reload would, report, exit. */
static int
check_policy(const struct settings *s)
{
    const char *path = s->check ? s->check : s->route_file;
    char err[ERR_LEN];
    struct config *config = trial_load(strcmp(path, "-") == 0 ? NULL : path, s, 1,
                                       err, sizeof(err));
    int rc = 0;

    if (config == NULL) {
        fprintf(stderr, "luagent: %s\n", err);
        return 1;
    }
    if (s->check != NULL && s->tls_cert != NULL) {
        struct tls_server *tls = load_listener_tls(s, err, sizeof(err));

        if (tls == NULL) {
            fprintf(stderr, "luagent: %s\n", err);
            config_free(config);
            return 1;
        }
        tls_server_free(tls);
        printf("tls: %s and %s load and match\n", s->tls_cert, s->tls_key);
    }
    if (s->check != NULL) {
        script_describe(config, stdout);
        if (s->against != NULL && guard_against(config, s, stdout, err, sizeof(err)) < 0) {
            fprintf(stderr, "luagent: %s\n", err);
            rc = 1;
        } else {
            printf("ok: %s loads, compiles and passes its self-tests%s\n", path,
                   s->against ? " and the remap guard" : "");
        }
    } else if (script_explain(config, s->route_line, &s->route_cond, stdout, err, sizeof(err)) < 0) {
        fprintf(stderr, "luagent: %s\n", err);
        rc = 1;
    }
    config_free(config);
    return rc;
}

/*
 * SIGUSR1: reopen the --log file (logrotate has renamed it). Without one
 * there is nothing to do.
 */
static void
on_usr1(evutil_socket_t sig, short what, void *arg)
{
    char err[ERR_LEN];

    if (log_file_path() == NULL) {
        log_info("SIGUSR1: no log file (--log) to reopen");
        return;
    }
    if (log_reopen(err, sizeof(err)) < 0) {
        log_warn("SIGUSR1: %s (still logging to the old file)", err);
        return;
    }
    log_info("SIGUSR1: log file %s reopened", log_file_path());
}

/*
 * Everything that can fail because of the command line or the environment,
 * checked while the terminal still sees the message.
 */
static struct config *
prepare(const struct settings *s, struct identity *id, char *err, size_t errlen)
{
    struct config *config;
    struct tls_server *tls = NULL;

    if (s->pid_file != NULL && pidfile_open(s->pid_file, err, errlen) < 0)
        return NULL;
    config = trial_load(s->policy, s, s->threads, err, errlen);
    if (config != NULL && config->discover_pending)
        config = load_with_names(s, config, err, errlen);
    if (config == NULL)
        return NULL;
    apply_log_level(s, config);
    apply_memory_limits(s, config);
    if (s->tls_port != 0 && (tls = load_listener_tls(s, err, errlen)) == NULL) {
        config_free(config);
        return NULL;
    }
    listener_set_tls(tls);      /* the listener owns it from here */
    client_set_tls_handshake_timeout(s->tls_handshake_timeout_ms);
    client_set_stats_writer(stats_render);
    client_set_route_writer(routelive_stats);
    reqlog_set_where(routelive_where);
    metrics_set_route(routelive_json);
    if (listener_bind(&(struct listen_addrs){ s->bind_addr, s->port, s->tls_port,
                                              s->unix_path, s->unix_mode, s->listens,
                                              s->nlistens }, err, errlen) < 0
        || (s->metrics_addr != NULL && metrics_bind(s->metrics_addr, err, errlen) < 0)
        || (s->log_file != NULL && log_open_file(s->log_file, err, errlen) < 0)
        || identity_resolve(s, id, err, errlen) < 0
        || listener_unix_owner(id->uid, id->gid, err, errlen) < 0) {
        config_free(config);
        return NULL;
    }
    return config;
}

/* A start-up failure after the terminal is gone: log it and tell the starter. */
static int
start_failed(const char *why)
{
    log_error("start-up failed: %s", why);
    daemon_failed(why);
    listener_stop();
    pidfile_remove();
    return 1;
}

/*
 * SIGHUP and SIGUSR1 arriving during start-up (the port may accept before the
 * handlers exist) are held, not lost or fatal, and acted on once serving.
 * Worker threads start with them blocked, so the main thread receives them.
 */
static void
defer_signals(int how)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(how, &set, NULL);
}

/* "127.0.0.1:11211 and 127.0.0.1:11212 (TLS) and unix socket /run/luagent.sock". */
static void
describe_listeners(const struct settings *s, char *out, size_t outlen)
{
    int n = 0;

    out[0] = '\0';
    if (s->port > 0)
        n = snprintf(out, outlen, "%s:%d", s->bind_addr ? s->bind_addr : "*", s->port);
    if (s->tls_port > 0 && n >= 0 && (size_t)n < outlen)
        n += snprintf(out + n, outlen - (size_t)n, "%s%s:%d (TLS%s)", n > 0 ? " and " : "",
                      s->bind_addr ? s->bind_addr : "*", s->tls_port,
                      s->tls_verify_client ? ", client certificates required" : "");
    if (s->unix_path != NULL && n >= 0 && (size_t)n < outlen)
        snprintf(out + n, outlen - (size_t)n, "%sunix socket %s", n > 0 ? " and " : "",
                 s->unix_path);
}

int
main(int argc, char **argv)
{
    struct settings s;
    struct identity id;
    struct config *config;
    struct event_base *base;
    struct event *sigterm, *sigint, *sighup, *sigusr1, *sigusr2;
    struct watch *watch = NULL;
    char err[ERR_LEN], where[ERR_LEN];

    if (trial_requested(argc, argv))
        return trial_main(argc, argv);
    trial_remember_args(argc, argv);
    switch (settings_parse(&s, argc, argv)) {
    case SETTINGS_EXIT_OK:
        settings_free(&s);
        return 0;
    case SETTINGS_EXIT_USAGE:
        settings_free(&s);
        return 2;
    case SETTINGS_RUN:
        break;
    }
    log_init(s.verbose);
    event_set_log_callback(on_libevent_log);
    signal(SIGPIPE, SIG_IGN);
    defer_signals(SIG_BLOCK);
    if (s.check != NULL || s.route_file != NULL) {
        int rc = check_policy(&s);

        settings_free(&s);
        return rc;
    }
    if (s.diff_old != NULL || s.reload || s.preview != NULL || s.preview_drop) {
        int rc = s.reload ? control_reload(&s) : s.diff_old ? diff_run(&s) : control_preview(&s);

        settings_free(&s);
        return rc;
    }

    /* --watch looks from before the first read of the file: no change is missed. */
    if (s.watch)
        watch = watch_open(s.policy, ".force", err, sizeof(err));
    config = s.watch && watch == NULL ? NULL : prepare(&s, &id, err, sizeof(err));
    if (config == NULL || identity_switch(&id, err, sizeof(err)) < 0
        || (!s.foreground && daemon_detach(err, sizeof(err)) < 0)) {
        fprintf(stderr, "luagent: %s\n", err);
        watch_stop(watch);
        if (config != NULL)
            config_free(config);
        listener_stop();
        pidfile_remove();
        settings_free(&s);
        return 1;
    }
    /* From here on, the terminal may be gone: failures go to the log. */
    if (s.log_file != NULL)
        log_to_file();
    else if (!s.foreground)
        log_to_syslog();
    if (s.user == NULL && getuid() == 0)
        log_warn("running as root: use -u USER to drop privileges");
    if (pidfile_write(err, sizeof(err)) < 0)
        return start_failed(err);
    stats_init();
    raise_fd_limit(&s, config);
    base = event_base_new();
    if (base == NULL || worker_start_all(config, s.threads) < 0
        || listener_start(base, s.max_conns, worker_dispatch) < 0) {
        snprintf(err, sizeof(err), "%s", strerror(errno));
        return start_failed(err);
    }
    if (metrics_start(base, err, sizeof(err)) < 0)
        return start_failed(err);
    if (fleet_start(base, s.server_stats_interval_s, config) < 0)
        return start_failed("out of memory starting the stats poller");
    guard_init(s.policy);
    guard_serving(config);
    serving = config;
    discover_start(base, on_names_changed, &s);
    serve_names(config);
    if (watch != NULL && watch_start(watch, base, on_policy_changed, &s, err, sizeof(err)) < 0)
        return start_failed(err);
    sigterm = evsignal_new(base, SIGTERM, on_stop_signal, base);
    sigint = evsignal_new(base, SIGINT, on_stop_signal, base);
    sighup = evsignal_new(base, SIGHUP, on_hup, &s);
    sigusr1 = evsignal_new(base, SIGUSR1, on_usr1, NULL);
    sigusr2 = evsignal_new(base, SIGUSR2, on_usr2, &s);
    event_add(sigusr2, NULL);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    event_add(sighup, NULL);
    event_add(sigusr1, NULL);
    defer_signals(SIG_UNBLOCK);

    describe_listeners(&s, where, sizeof(where));
    log_info("luagent %s serving %d server(s) on %s, %d thread(s)",
             LUAGENT_VERSION, config->nservers, where, s.threads);
    daemon_ready();
    event_base_dispatch(base);

    watch_stop(watch);
    discover_stop();
    metrics_stop();
    fleet_stop();
    worker_stop_all();
    event_free(sigterm);
    event_free(sigint);
    event_free(sighup);
    event_free(sigusr1);
    event_free(sigusr2);
    preview_show(NULL);
    event_base_free(base);
    pidfile_remove();
    settings_free(&s);
    log_info("stopped");
    return 0;
}
