/*
 * main.c: start-up and shut-down.
 *
 * Order matters: parse the command line, build the configuration (resolving
 * servers), bind the listeners (so a port in use is reported on the terminal),
 * daemonize, drop privileges, start the workers, then run the main thread's
 * loop: it accepts connections and handles signals as libevent events, never
 * in a raw signal handler.
 *
 * SIGHUP reloads the TLS listener's certificate and the policy, each on its
 * own: a certificate that fails to load keeps the old one serving (and says
 * why) without holding back a good policy, and the other way round, since
 * the two usually change for unrelated reasons.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "luagent.h"
#include "script.h"
#include "settings.h"
#include "stats.h"
#include "tls.h"
#include "client.h"
#include "trial.h"
#include "worker.h"

static int
drop_privileges(const struct settings *s, char *err, size_t errlen)
{
    gid_t gid = (gid_t)-1;
    struct passwd *pw = NULL;

    if (s->group != NULL) {
        struct group *gr = getgrnam(s->group);

        if (gr == NULL) {
            snprintf(err, errlen, "unknown group '%s'", s->group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if (s->user != NULL) {
        pw = getpwnam(s->user);
        if (pw == NULL) {
            snprintf(err, errlen, "unknown user '%s'", s->user);
            return -1;
        }
        if (gid == (gid_t)-1)
            gid = pw->pw_gid;
    }
    if (gid != (gid_t)-1 && (setgroups(0, NULL) < 0 || setgid(gid) < 0)) {
        snprintf(err, errlen, "cannot switch to group %u: %s", (unsigned)gid, strerror(errno));
        return -1;
    }
    if (pw != NULL && setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "cannot switch to user '%s': %s", s->user, strerror(errno));
        return -1;
    }
    if (pw == NULL && getuid() == 0)
        log_warn("running as root: use -u USER to drop privileges");
    return 0;
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

/*
 * SIGHUP: load the policy again, as at start-up, in fresh VMs. Any failure
 * leaves the running generation alone; success hands the new one to the
 * workers, which swap between requests.
 */
static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
    const struct settings *s = arg;
    static unsigned generation = 1;
    struct config *config;
    char err[ERR_LEN];

    reload_listener_tls(s);
    if (s->policy == NULL) {
        if (s->tls_port != 0)
            return;     /* the certificate was what there was to reload */
        log_warn("SIGHUP: started without -c, so there is no policy file to reload");
        return;
    }
    config = trial_load(s->policy, s, s->threads, err, sizeof(err));
    if (config == NULL) {
        __atomic_add_fetch(&stats_reload_failures, 1, __ATOMIC_RELAXED);
        log_warn("reload failed (keeping generation %u): %s", generation, err);
        return;
    }
    config->generation = ++generation;
    apply_log_level(s, config);
    __atomic_add_fetch(&stats_reloads, 1, __ATOMIC_RELAXED);
    log_warn("reload: generation %u from %s (checksum %08x): %d pool(s), %d route node(s), %s",
             config->generation, config->source, config->checksum, config->npools,
             config->nnodes, config->nhooks ? "with hooks" : "no hooks");
    worker_publish_config(config);
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
        printf("ok: %s loads, compiles and passes its self-tests\n", path);
    } else if (script_explain(config, s->route_line, stdout, err, sizeof(err)) < 0) {
        fprintf(stderr, "luagent: %s\n", err);
        rc = 1;
    }
    config_free(config);
    return rc;
}

int
main(int argc, char **argv)
{
    struct settings s;
    struct config *config;
    struct event_base *base;
    struct event *sigterm, *sigint, *sighup;
    struct tls_server *tls = NULL;
    char err[ERR_LEN];

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
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);    /* until the reload handler is in place */
    if (s.check != NULL || s.route_file != NULL) {
        int rc = check_policy(&s);

        settings_free(&s);
        return rc;
    }

    config = trial_load(s.policy, &s, s.threads, err, sizeof(err));
    if (config == NULL) {
        fprintf(stderr, "luagent: %s\n", err);
        settings_free(&s);
        return 1;
    }
    apply_log_level(&s, config);
    if (s.tls_port != 0 && (tls = load_listener_tls(&s, err, sizeof(err))) == NULL) {
        fprintf(stderr, "luagent: %s\n", err);
        config_free(config);
        settings_free(&s);
        return 1;
    }
    if (listener_bind(&s, err, sizeof(err)) < 0) {
        fprintf(stderr, "luagent: %s\n", err);
        tls_server_free(tls);
        config_free(config);
        settings_free(&s);
        return 1;
    }
    listener_set_tls(tls);
    client_set_tls_handshake_timeout(s.tls_handshake_timeout_ms);
    if (!s.foreground && daemon(1, 0) < 0) {
        fprintf(stderr, "luagent: cannot daemonize: %s\n", strerror(errno));
        return 1;
    }
    if (drop_privileges(&s, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    stats_init();
    base = event_base_new();
    if (base == NULL || worker_start_all(config, s.threads) < 0
        || listener_start(base, s.max_conns) < 0) {
        log_error("start-up failed: %s", strerror(errno));
        return 1;
    }
    sigterm = evsignal_new(base, SIGTERM, on_stop_signal, base);
    sigint = evsignal_new(base, SIGINT, on_stop_signal, base);
    sighup = evsignal_new(base, SIGHUP, on_hup, &s);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    event_add(sighup, NULL);

    log_info("luagent %s serving %d server(s) on port %d%s%s, %d thread(s)",
             LUAGENT_VERSION, config->nservers, s.port,
             s.unix_path ? " and " : "", s.unix_path ? s.unix_path : "", s.threads);
    if (s.tls_port != 0)
        log_info("TLS on port %d with %s%s", s.tls_port, s.tls_cert,
                 s.tls_verify_client ? ", client certificates required" : "");
    event_base_dispatch(base);

    worker_stop_all();
    event_free(sigterm);
    event_free(sigint);
    event_free(sighup);
    event_base_free(base);
    settings_free(&s);
    log_info("stopped");
    return 0;
}
