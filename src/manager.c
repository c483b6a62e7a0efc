/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include "control.h"
#include "creds.h"
#include "duration.h"
#include "listener.h"
#include "log.h"
#include "manager.h"
#include "pkcs11.h"
#include "metrics-push.h"
#include "status.h"
#include "util.h"

unsigned manager_n_conns(Manager *m) {
        return worker_pool_n_conns(m->workers);
}

void manager_metrics(const Manager *m, Metrics *sum, MetricsExtra *ret_extra) {
        /* The main thread is the only one that replaces the credential: it
         * reads it without the lock. */
        const CertBundle *b = m->current.creds ? m->current.creds->bundle : NULL;
        MetricsExtra x = {};

        worker_pool_metrics(m->workers, sum);
        if (b) {
                x.has_cert = true;
                x.cert_expiry_seconds = (int64_t) b->not_after - (int64_t) time(NULL);
        }
        if (m->renewer) {
                RenewerStats st;

                renewer_get_stats(m->renewer, &st);
                x.acme = true;
                x.acme_renewals = st.obtained;
                x.acme_renewal_failures = st.failures;
        }
        *ret_extra = x;
}

static void on_metrics_collect(Metrics *sum, MetricsExtra *extra, void *userdata) {
        manager_metrics(userdata, sum, extra);
}

void manager_notify_status(Manager *m) {
        /* The main thread is the only one that replaces the credential: it
         * reads it without the lock. */
        const CertBundle *b = m->current.creds ? m->current.creds->bundle : NULL;
        unsigned n = manager_n_conns(m);
        char expiry[32] = "";
        struct tm tm;

        if (!b) {
                (void) sd_notifyf(false, "STATUS=Obtaining a certificate for %s (%s), listening on %s",
                                  m->config.auto_acme_cert, renewer_state(m->renewer),
                                  m->config.listen.spec);
                return;
        }
        if (gmtime_r(&b->not_after, &tm))
                strftime(expiry, sizeof expiry, "%Y-%m-%d %H:%M UTC", &tm);
        (void) sd_notifyf(false, "STATUS=%s %s -> %s, %u connection%s; certificate %s expires %s",
                          m->shutting_down ? "Draining" : "Serving", m->config.listen.spec,
                          m->config.target.spec, n, n == 1 ? "" : "s",
                          m->config.auto_acme_cert ? m->config.auto_acme_cert : strempty(b->subject),
                          expiry);
}

static void manager_ready(Manager *m) {
        if (m->ready)
                return;
        m->ready = true;
        (void) sd_notify(false, "READY=1");
}

void manager_ocsp_follow(Manager *m, bool refresh) {
        _cleanup_(cert_bundle_unrefp) CertBundle *served = NULL;

        if (!m->ocsp || !m->current.creds)
                return;
        /* The stapler may hand back the same chain with its current staple
         * (a reload of the same certificate). */
        served = ocsp_stapler_track(m->ocsp, m->current.creds->bundle, refresh);
        if (served != m->current.creds->bundle)
                current_creds_set_bundle(&m->current, served);
}

static void on_ocsp_serve(CertBundle *b, void *userdata) {
        Manager *m = userdata;

        /* A new bundle (same chain, new staple or none) for new handshakes;
         * live ones keep the bundle they hold, which GnuTLS points into
         * until gnutls_deinit() (docs/HACKING.md, "GnuTLS handshake hooks and
         * the ALPN gate"). Only if it is still the certificate the credential
         * serves. */
        if (m->current.creds &&
            cert_bundle_base(m->current.creds->bundle) == cert_bundle_base(b))
                current_creds_set_bundle(&m->current, b);
}

static void on_ocsp_revoked(CertBundle *b, void *userdata) {
        Manager *m = userdata;

        /* certmagic: a Revoked status forces renewal, with a new key. */
        if (m->renewer)
                renewer_force_renewal(m->renewer);
}

static void on_certificate(CertBundle *bundle, bool renewed, void *userdata) {
        Manager *m = userdata;

        /* New handshakes get the new certificate, on every thread; live
         * ones keep theirs. */
        current_creds_set_bundle(&m->current, bundle);
        manager_ocsp_follow(m, false);
        manager_ready(m);
        manager_notify_status(m);
}

static void on_give_up(int error, const char *message, void *userdata) {
        Manager *m = userdata;

        free(m->exit_error);
        if (asprintf(&m->exit_error, "could not obtain a certificate for %s: %s",
                     m->config.auto_acme_cert, message) < 0)
                m->exit_error = NULL;
        (void) sd_notifyf(false, "STATUS=Failed to obtain a certificate: %s", message);
        (void) sd_event_exit(m->event, EXIT_FAILURE);
}

static void on_waiting(usec_t usec, void *userdata) {
        /* Until the first certificate is served the unit is "activating":
         * extend its start timeout by the wait plus time for one order
         * instead of relying on a huge TimeoutStartSec=. */
        (void) sd_notifyf(false, "EXTEND_TIMEOUT_USEC=%llu",
                          (unsigned long long) (usec + 2 * USEC_PER_MINUTE));
        manager_notify_status(userdata);
}

/* Every thread stopped accepting after SIGTERM and its connections are gone. */
static void on_drained(void *userdata) {
        Manager *m = userdata;

        if (m->forced)
                return;
        if (!m->drain_quietly)
                log_info("all connections drained, exiting");
        (void) sd_event_exit(m->event, EXIT_SUCCESS);
}

static void manager_close_listener(Manager *m) {
        /* Every thread drops its copy of the socket (worker 0 at once, the
         * others as soon as they see the flag). */
        worker_pool_stop(m->workers);
        m->listen_fd = safe_close(m->listen_fd);
        if (m->unix_path) {
                (void) unlink(m->unix_path);
                m->unix_path = (free(m->unix_path), NULL);
        }
}

static int manager_force_exit(Manager *m) {
        m->forced = true;
        /* This thread's connections now, the other threads' as soon as they
         * see the flag; worker_pool_free() joins them after the loop. */
        worker_pool_close_all(m->workers);
        (void) sd_event_exit(m->event, EXIT_FAILURE);
        return 0;
}

static int on_shutdown_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        unsigned n = manager_n_conns(m);

        log_warning("--shutdown-timeout reached with %u connection%s still open, closing them",
                    n, n == 1 ? "" : "s");
        return manager_force_exit(m);
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        char buf[DURATION_MAX];
        unsigned n = manager_n_conns(m);
        int r;

        if (m->shutting_down) {
                log_warning("received %s again, closing %u connection%s now",
                            strsignal((int) si->ssi_signo), n, n == 1 ? "" : "s");
                return manager_force_exit(m);
        }
        m->shutting_down = true;

        /* The exit itself comes from on_drained(), once every thread has
         * dropped the socket and its connections (at once when none are
         * open); a connection a thread accepted meanwhile is waited for. */
        if (n == 0) {
                log_info("received %s, no open connections, exiting", strsignal((int) si->ssi_signo));
                m->drain_quietly = true;
        } else {
                log_info("received %s, stopped accepting; waiting up to %s for %u connection%s",
                         strsignal((int) si->ssi_signo),
                         format_duration(buf, sizeof buf, m->config.shutdown_timeout), n,
                         n == 1 ? "" : "s");
                manager_notify_status(m);
        }
        r = sd_event_add_time_relative(m->event, &m->shutdown_timer, CLOCK_MONOTONIC,
                                       m->config.shutdown_timeout, 0, on_shutdown_timeout, m);
        if (r < 0)
                return manager_force_exit(m);
        (void) sd_event_source_set_description(m->shutdown_timer, "shutdown-timeout");
        manager_close_listener(m);
        /* Only now: every thread has been told to accept nothing more, so
         * a client that connects after seeing STOPPING=1 is not served. */
        (void) sd_notify(false, "STOPPING=1");
        return 0;
}

/* WATCHDOG=1 at half of WATCHDOG_USEC, as sd-event's own watchdog would
 * send it, but only while every serving thread's loop runs, not just the
 * main one: a thread stuck for a whole WATCHDOG_USEC stops the pings, and
 * systemd restarts the service (WatchdogSec=, Restart= in the unit). */
static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        unsigned thread = 0;
        usec_t age = 0;

        if (worker_pool_stalled(m->workers, m->watchdog_usec, &thread, &age)) {
                if (!m->watchdog_withheld) {
                        char d[DURATION_MAX];
                        log_error("serving thread %u has not run its event loop for %s: "
                                  "WATCHDOG=1 withheld, so that the service manager restarts tlsgate",
                                  thread, format_duration(d, sizeof d, age));
                }
                m->watchdog_withheld = true;
        } else {
                if (m->watchdog_withheld)
                        log_notice("every serving thread runs its event loop again: WATCHDOG=1 resumed");
                m->watchdog_withheld = false;
                (void) sd_notify(false, "WATCHDOG=1");
        }
        return sd_event_source_set_time_relative(s, m->watchdog_usec / 2);
}

/* When the service has a watchdog (WATCHDOG_USEC, and WATCHDOG_PID, if
 * set, is this process); before the threads start. */
static int manager_watchdog_start(Manager *m) {
        uint64_t usec = 0;
        int r;

        if (sd_watchdog_enabled(false, &usec) <= 0 || usec == 0)
                return 0;
        m->watchdog_usec = usec;
        r = worker_pool_watch(m->workers, usec / 4);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(m->event, &m->watchdog, CLOCK_MONOTONIC, 0, usec / 4,
                                       on_watchdog, m);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(m->watchdog, "watchdog");
        return sd_event_source_set_enabled(m->watchdog, SD_EVENT_ON);
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) manager_reload(userdata);
        return 0;
}

int manager_reload(Manager *m) {
        /* Build and check everything new first, swap only when all of it
         * loaded: src/reload.c. */
        return reload_run(m, RELOAD_SIGNAL);
}

int manager_new(Config *config, Manager **ret, char **ret_error) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->listen_fd = -EBADF;
        current_creds_init(&m->current);
        m->config = *config;
        memset(config, 0, sizeof *config);

        r = sd_event_new(&m->event);
        if (r < 0)
                return r;
        m->server.event = m->event;
        m->server.config = &m->config;
        m->server.current = &m->current;

        /* One key per process: tickets don't survive a restart, which is
         * what a restart after a key compromise needs anyway. */
        r = gnutls_session_ticket_key_generate(&m->server.ticket_key);
        if (r < 0)
                return errno_from_gnutls(r);

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        status_server_free(m->status);
        control_server_free(m->control);
        metrics_pusher_free(m->metrics_push);
        /* Joins the serving threads, closing what they still hold. */
        m->workers = worker_pool_free(m->workers);
        manager_close_listener(m);
        sd_event_source_disable_unref(m->shutdown_timer);
        sd_event_source_disable_unref(m->watchdog);
        reload_done(&m->reload);
        ocsp_stapler_free(m->ocsp);
        renewer_free(m->renewer);
        current_creds_done(&m->current);
        token_key_unref(m->token);
        challenges_free(m->challenges);
        if (m->server.ticket_key.data) {
                gnutls_memset(m->server.ticket_key.data, 0, m->server.ticket_key.size);
                gnutls_free(m->server.ticket_key.data);
        }
        sd_event_unref(m->event);
        config_done(&m->config);
        free(m->exit_error);
        free(m);
        return NULL;
}

/* The --listen address as given; for an inherited socket (systemd:NAME)
 * followed by the address it is bound to, which only the socket unit
 * names: "systemd:https (0.0.0.0:443)". */
static void manager_describe_listener(Manager *m, char *buf, size_t size) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        char addr[256];

        if (m->config.listen.kind != ADDRESS_SYSTEMD ||
            getsockname(m->listen_fd, (struct sockaddr *) &sa, &len) < 0) {
                snprintf(buf, size, "%s", m->config.listen.spec);
                return;
        }
        sockaddr_format((struct sockaddr *) &sa, len, addr, sizeof addr);
        snprintf(buf, size, "%s (%s)", m->config.listen.spec, addr);
}

/* `tlsgate reload`, through the control socket: the reload of SIGHUP, with
 * its outcome for the client. */
static int on_control_reload(void *userdata, char **ret_reason) {
        Manager *m = userdata;
        int r;

        if (m->shutting_down) {
                *ret_reason = strdup("shutting down");
                return -ESHUTDOWN;
        }
        r = reload_run(m, RELOAD_SIGNAL);
        if (r < 0 && m->reload.last_error)
                *ret_reason = strdup(m->reload.last_error);
        return r;
}

int manager_load(Manager *m, char **ret_error) {
        _cleanup_(cert_bundle_unrefp) CertBundle *bundle = NULL;
        int r;

        /* The CA bundle's digest is taken before it is loaded (for
         * --timed-reload). */
        r = reload_init(m);
        if (r < 0)
                return r;
        if (m->config.auto_acme_cert) {
                static const RenewerCallbacks cb = {
                        .on_certificate = on_certificate,
                        .on_give_up = on_give_up,
                        .on_waiting = on_waiting,
                };
                r = challenges_new(&m->challenges);
                if (r < 0)
                        return r;
                m->server.challenges = m->challenges;
                r = renewer_new(m->event, &m->config, m->challenges, &cb, m, &m->renewer, ret_error);
        } else if (m->config.pkcs11_module)
                /* The login happens here, before any serving thread exists. */
                r = token_bundle_load(&m->config, &m->token, &bundle, ret_error);
        else
                r = cert_bundle_load(&m->config, &bundle, ret_error);
        if (r < 0)
                return r;
        /* No other thread runs yet: the credential is put in place unlocked. */
        return creds_new(&m->config, bundle, conn_retrieve_certificate, &m->current.creds,
                         ret_error);
}

int manager_start(Manager *m, char **ret_error) {
        const CertBundle *bundle = m->current.creds->bundle;
        char where[512];
        int r;

        {
                static const OcspStaplerCallbacks ocsp_cb = {
                        .on_serve = on_ocsp_serve,
                        .on_revoked = on_ocsp_revoked,
                };
                /* The first fetch runs from the loop; READY=1 does not wait for it. */
                r = ocsp_stapler_new(m->event, m->config.auto_acme_cert, !!m->config.auto_acme_cert,
                                     &ocsp_cb, m, &m->ocsp);
                if (r < 0)
                        return r;
                manager_ocsp_follow(m, false);
        }
        r = target_resolve(&m->config.target, &m->server.target, &m->server.target_len, ret_error);
        if (r < 0)
                return r;
        /* Resolves --metrics-graphite; the first push is an interval away. */
        r = metrics_pusher_new(m->event, &m->config, on_metrics_collect, m, &m->metrics_push,
                               ret_error);
        if (r < 0)
                return r;

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGUSR1);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        {
                static const struct {
                        int signal;
                        sd_event_signal_handler_t handler;
                        const char *description;
                } handlers[] = {
                        { SIGTERM, on_terminate, "signal-term" },
                        { SIGINT, on_terminate, "signal-int" },
                        { SIGHUP, on_reload, "signal-hup" },
                        { SIGUSR1, on_reload, "signal-usr1" },
                };

                for (size_t i = 0; i < ELEMENTSOF(handlers); i++) {
                        sd_event_source *src;

                        /* Floating: the loop owns them. */
                        r = sd_event_add_signal(m->event, &src, handlers[i].signal,
                                                handlers[i].handler, m);
                        if (r < 0)
                                return r;
                        (void) sd_event_source_set_description(src, handlers[i].description);
                        r = sd_event_source_set_floating(src, true);
                        sd_event_source_unref(src);
                        if (r < 0)
                                return r;
                }
        }
        r = listener_open(&m->config.listen, &m->listen_fd, &m->unix_path, ret_error);
        if (r < 0)
                return r;
        /* Signals are blocked by now: the threads inherit that. */
        m->n_threads = m->config.threads > 0 ? m->config.threads : worker_threads_auto();
        r = worker_pool_new(m->event, m->n_threads, &m->server, m->listen_fd, on_drained, m,
                            &m->workers);
        if (r < 0)
                return error_set(ret_error, r, "cannot set up %u serving threads: %s", m->n_threads,
                                 strerror(-r));
        log_debug("serving connections on %u thread%s", m->n_threads, m->n_threads == 1 ? "" : "s");
        r = manager_watchdog_start(m);
        if (r < 0)
                return error_set(ret_error, r, "cannot set up the watchdog: %s", strerror(-r));
        if (m->config.status_set) {
                r = status_server_new(m, &m->status, ret_error);
                if (r < 0)
                        return r;
        }
        {
                /* Without it `tlsgate reload` falls back to SIGHUP: a
                 * warning, not a reason not to serve. */
                _cleanup_free_ char *dir = control_runtime_dir(getenv("RUNTIME_DIRECTORY"));
                _cleanup_free_ char *e = NULL;

                if (dir && control_server_new(m->event, on_control_reload, m, dir, &m->control,
                                              &e) < 0)
                        log_warning("%s; systemctl reload cannot report the outcome",
                                    e ? e : "control socket: out of memory");
        }
        manager_describe_listener(m, where, sizeof where);
        log_info("listening on %s, forwarding to %s, serving %s", where, m->config.target.spec,
                 bundle ? strempty(bundle->subject) : m->config.auto_acme_cert);

        /* ACME after the listener: the CA's probes arrive on this very
         * socket, even for the first certificate (Ghostunnel, which obtains
         * it before accepting, cannot answer them on a socket-activated 443:
         * docs/HACKING.md, "Ghostunnel's observable behaviour"). */
        if (m->renewer) {
                r = renewer_start(m->renewer, ret_error);
                if (r < 0)
                        return r;
        }
        /* The other threads accept only now, when a stored ACME certificate
         * is in place: the first client of a socket-activated start must
         * not be refused for want of it. (Worker 0 accepts once the main
         * loop runs.) */
        r = worker_pool_start(m->workers);
        if (r < 0)
                return error_set(ret_error, r, "cannot start serving threads: %s", strerror(-r));
        return 0;
}

int manager_run(Manager *m) {
        int r;

        /* READY=1 only once a certificate is served. */
        if (m->current.creds->bundle)
                manager_ready(m);
        manager_notify_status(m);
        r = sd_event_loop(m->event);
        if (r < 0) {
                log_error_errno(r, "event loop failed: %m");
                return EXIT_FAILURE;
        }
        return r;
}
