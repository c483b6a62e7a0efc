/* SPDX-License-Identifier: MIT */
#pragma once

/* The Manager owns everything of one running server: the event loop, the
 * configuration, the listening socket, the served credentials and the
 * serving threads with their connections (src/worker.c). No global mutable
 * state lives outside it. Everything here runs on the main thread; what the
 * serving threads share with it is thread-safe (CurrentCreds, Challenges,
 * the WorkerPool's counters). */

#include <systemd/sd-event.h>

#include "challenges.h"
#include "config.h"
#include "conn.h"
#include "metrics.h"
#include "ocsp.h"
#include "reload.h"
#include "renew.h"
#include "worker.h"

typedef struct Manager {
        sd_event *event;
        Config config;

        /* What every serving thread's ConnServer starts from (config, current
         * credential, ticket key, challenges, target); serves nothing itself. */
        ConnServer server;
        CurrentCreds current;           /* server.current points here */
        /* --pkcs11-module: the key on the token, opened once, re-used by reloads. */
        struct TokenKey *token;

        int listen_fd;
        char *unix_path;                /* removed on exit */
        /* --threads: worker 0 on this loop, the others on threads of their own. */
        WorkerPool *workers;
        unsigned n_threads;

        /* --auto-acme-cert: certificate maintenance and the gate's challenges. */
        Renewer *renewer;
        Challenges *challenges;
        bool ready;                     /* READY=1 sent: a certificate is served */

        bool shutting_down;
        bool forced;
        bool drain_quietly;             /* nothing was open at SIGTERM */
        sd_event_source *shutdown_timer;

        /* WATCHDOG_USEC: pings only while every thread's loop runs. */
        sd_event_source *watchdog;
        usec_t watchdog_usec;
        bool watchdog_withheld;         /* a thread is stuck: logged, no pings */

        /* SIGHUP/SIGUSR1/--timed-reload (src/reload.c); main() sets argc/argv. */
        ReloadState reload;

        /* OCSP stapling of the served certificate (src/ocsp.c). */
        OcspStapler *ocsp;

        /* --status (src/status.c); the counters it serves are the workers'. */
        struct StatusServer *status;
        /* --metrics-url, --metrics-graphite (src/metrics-push.c). */
        struct MetricsPusher *metrics_push;
        /* `tlsgate reload` under the units ($RUNTIME_DIRECTORY, src/control.c). */
        struct ControlServer *control;

        /* Why the loop ended with a failure (ACME gave up at start-up), for
         * main.c to print under --quiet=all, which kept it out of the log. */
        char *exit_error;
} Manager;

/* Takes ownership of *config (it is moved into the manager). On failure
 * returns a negative errno and sets *ret_error. */
int manager_new(Config *config, Manager **ret, char **ret_error);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Loads what the settings name: the served certificate and key (or the
 * token's key, or the ACME renewer's set-up, without any request), the CA
 * bundle, the access rules and priorities. A failure is the settings'
 * fault (but -ENOMEM), and main.c exits with status 2 for it. Opens no
 * socket and starts nothing: `tlsgate server --check` stops after it. */
int manager_load(Manager *m, char **ret_error);
/* After manager_load(): resolves the target, opens the listener, starts the
 * serving threads, the status port and ACME. */
int manager_start(Manager *m, char **ret_error);

/* Runs the loop until shutdown; returns the process exit status. */
int manager_run(Manager *m);

/* SIGHUP/SIGUSR1: re-reads the settings, certificate, key and CA bundle and
 * applies what can change while running (reload_run()); keeps the old state
 * on error. */
int manager_reload(Manager *m);

/* Sends STATUS= describing what is served now. */
void manager_notify_status(Manager *m);

/* Connections open now, on all serving threads. */
unsigned manager_n_conns(Manager *m);

/* What /_metrics and the pushes report: every serving thread's counters
 * added to sum (metrics_init() done by the caller), and the certificate's
 * and the renewer's figures in *ret_extra. */
void manager_metrics(const Manager *m, Metrics *sum, MetricsExtra *ret_extra);

/* After the served bundle changed (start, reload, renewal): lets the OCSP
 * stapler follow it, and serves its stapled copy when it has one for the
 * same certificate. refresh asks the responder again at once (reload). */
void manager_ocsp_follow(Manager *m, bool refresh);
