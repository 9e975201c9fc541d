/*
 * settings.h: the command line (magent-compatible flags plus luagent's own).
 */
#ifndef SETTINGS_H
#define SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "listener.h"
#include "sim.h"

struct server_spec {
    char     *host;         /* as written */
    int       port;         /* 11211 when omitted */
    unsigned  weight;       /* 1 when omitted */
    char     *name;         /* optional "host:port:weight name" spelling; NULL */
};

struct settings {
    int         port;               /* -p: TCP port, 0 = none */
    const char *bind_addr;          /* -l ADDR: NULL = all addresses */
    struct named_listen listens[LISTEN_NAMED_MAX]; /* --listen NAME=ADDR:PORT */
    int         nlistens;
    const char *unix_path;          /* -f: unix socket path or NULL */
    int         unix_mode;          /* --unix-mode: permission bits, -1 = from the umask */
    int         max_conns;          /* -n */
    int         max_memory_mb;      /* -m: settings.max_memory in MiB, 0 = the policy's */
    int         client_max_memory_mb; /* --client-max-memory: MiB, 0 = the policy's */
    int         max_idle;           /* -i: idle backend connections kept per server */
    bool        max_idle_given;     /* -i was on the command line: it wins */
    bool        ketama;             /* -k */
    const char *user;               /* -u */
    const char *group;              /* -g */
    bool        foreground;         /* -D */
    const char *log_file;           /* --log: log file, NULL = stderr (or syslog as a daemon) */
    const char *pid_file;           /* --pid-file: NULL = none */
    int         verbose;            /* -v count */
    int         threads;            /* -t */
    const char *policy;             /* -c / --policy */
    const char *metrics_addr;       /* --metrics ADDR:PORT, or NULL (off) */
    const char *check;              /* --check FILE: load, test, describe, exit */
    const char *route_file;         /* --route FILE LINE: explain routing, exit */
    const char *route_line;
    struct sim_conditions route_cond; /* --down/--timeout/--miss (with --route) */
    const char *against;            /* --against OLD (with --check): the remap guard's test */
    const char *diff_old;           /* --diff OLD NEW: what the change does, exit */
    const char *diff_new;
    const char *keys_file;          /* --keys FILE (with --diff) */
    bool        json;               /* --json (with --diff) */
    bool        watch;              /* --watch: reload when the -c file changes */
    bool        reload;             /* --reload: signal the running luagent, exit */
    bool        force;              /* --force (with --reload): past the remap guard */
    const char *preview;            /* --preview FILE: preview it in the running luagent, exit */
    bool        preview_drop;       /* --preview --drop: end the running luagent's preview */
    struct server_spec *servers;    /* -s, in order */
    int         nservers;
    struct server_spec *backups;    /* -b, in order */
    int         nbackups;
    int         tls_port;           /* --tls-port: TLS listener, 0 = none */
    const char *tls_cert;           /* --tls-cert */
    const char *tls_key;            /* --tls-key */
    const char *tls_ca;             /* --tls-ca: client certificates' CA, or NULL */
    bool        tls_verify_client;  /* --tls-verify-client */
    int         tls_handshake_timeout_ms; /* --tls-handshake-timeout */
    const char *backend_tls_ca;     /* --backend-tls-ca: lg.args.backend_tls_ca */
    int         server_stats_interval_s; /* --server-stats-interval: 0 = off */
    char      **extra;              /* arguments after "--", for lg.args.extra */
    int         nextra;
};

enum settings_result {
    SETTINGS_RUN,       /* serve */
    SETTINGS_EXIT_OK,   /* -h or --version was answered */
    SETTINGS_EXIT_USAGE /* a message and the usage were printed: exit 2 */
};

/* Fill *s from argv. Prints its own messages. */
enum settings_result settings_parse(struct settings *s, int argc, char **argv);

/*
 * Parse "host[:port[:weight]]" into *spec (allocates host). Returns 0, or -1
 * with a reason in err.
 */
int settings_parse_server(const char *text, struct server_spec *spec,
                          char *err, size_t errlen);

void settings_free(struct settings *s);

#endif
