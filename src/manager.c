/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include "creds.h"
#include "duration.h"
#include "listener.h"
#include "log.h"
#include "manager.h"
#include "status.h"

/* How long accepting pauses after EMFILE/ENFILE before trying again. */
#define ACCEPT_PAUSE_USEC (250 * USEC_PER_MSEC)
/* Accepts per wake-up, so that a flood cannot starve live connections. */
#define ACCEPT_BURST 64

static void manager_update_accepting(Manager *m);

void manager_notify_status(Manager *m) {
        const CertBundle *b = m->server.creds ? m->server.creds->bundle : NULL;
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
                          m->config.target.spec, m->server.n_conns,
                          m->server.n_conns == 1 ? "" : "s",
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

        if (!m->ocsp || !m->server.creds)
                return;
        /* The stapler may hand back the same chain with its current staple
         * (a reload of the same certificate). */
        served = ocsp_stapler_track(m->ocsp, m->server.creds->bundle, refresh);
        if (served != m->server.creds->bundle)
                creds_set_bundle(m->server.creds, served);
}

static void on_ocsp_serve(CertBundle *b, void *userdata) {
        Manager *m = userdata;

        /* A new bundle (same chain, new staple or none) for new handshakes;
         * live ones keep the bundle they hold (FACTS.md section 1). Only if
         * it is still the certificate the credential serves. */
        if (m->server.creds &&
            cert_bundle_base(m->server.creds->bundle) == cert_bundle_base(b))
                creds_set_bundle(m->server.creds, b);
}

static void on_ocsp_revoked(CertBundle *b, void *userdata) {
        Manager *m = userdata;

        /* certmagic: a Revoked status forces renewal, with a new key. */
        if (m->renewer)
                renewer_force_renewal(m->renewer);
}

static void on_certificate(CertBundle *bundle, bool renewed, void *userdata) {
        Manager *m = userdata;

        /* New handshakes get the new certificate; live ones keep theirs. */
        creds_set_bundle(m->server.creds, bundle);
        manager_ocsp_follow(m, false);
        manager_ready(m);
        manager_notify_status(m);
}

static void on_give_up(int error, const char *message, void *userdata) {
        Manager *m = userdata;

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

static void on_conn_freed(ConnServer *s, void *userdata) {
        Manager *m = userdata;

        if (m->shutting_down) {
                if (s->n_conns == 0 && !m->forced) {
                        log_info("all connections drained, exiting");
                        (void) sd_event_exit(m->event, EXIT_SUCCESS);
                }
                return;
        }
        manager_update_accepting(m);
}

static void manager_update_accepting(Manager *m) {
        const Config *c = &m->config;
        bool on;

        if (!m->listen_source)
                return;
        on = !m->shutting_down && !m->accept_paused &&
             (c->max_concurrent_conns == 0 || m->server.n_conns < c->max_concurrent_conns);
        (void) sd_event_source_set_enabled(m->listen_source, on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int on_accept_pause_end(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        m->accept_paused = false;
        log_debug("resuming accepting connections");
        manager_update_accepting(m);
        return 0;
}

static void manager_pause_accepting(Manager *m, int error) {
        int r;

        /* The listening socket stays readable while the fd table is full:
         * back off instead of spinning, and try again shortly. */
        log_full_errno(m->accept_pause_logged ? LOG_DEBUG : LOG_WARNING, error,
                       "cannot accept connections: %m; pausing for %llu ms",
                       (unsigned long long) (ACCEPT_PAUSE_USEC / USEC_PER_MSEC));
        /* Once per episode: a full table can last, the journal should not fill. */
        m->accept_pause_logged = true;
        m->accept_paused = true;
        manager_update_accepting(m);
        if (m->accept_pause)
                r = sd_event_source_set_time_relative(m->accept_pause, ACCEPT_PAUSE_USEC) < 0 ? -1 :
                    sd_event_source_set_enabled(m->accept_pause, SD_EVENT_ONESHOT);
        else
                r = sd_event_add_time_relative(m->event, &m->accept_pause, CLOCK_MONOTONIC,
                                               ACCEPT_PAUSE_USEC, 0, on_accept_pause_end, m);
        if (r < 0) {
                log_error("cannot arm the accept back-off timer, resuming at once");
                m->accept_paused = false;
                manager_update_accepting(m);
        }
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        const Config *c = &m->config;

        for (unsigned i = 0; i < ACCEPT_BURST; i++) {
                struct sockaddr_storage peer;
                socklen_t len = sizeof peer;
                int cfd, r;

                if (c->max_concurrent_conns > 0 && m->server.n_conns >= c->max_concurrent_conns)
                        break;
                cfd = accept4(fd, (struct sockaddr *) &peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        if (errno == ECONNABORTED || errno == EPROTO)
                                continue;
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                            errno == ENOMEM) {
                                manager_pause_accepting(m, errno);
                                return 0;
                        }
                        log_warning_errno(errno, "accept failed: %m, ignoring");
                        break;
                }
                if (m->accept_pause_logged) {
                        log_info("accepting connections again");
                        m->accept_pause_logged = false;
                }
                r = conn_new(&m->server, cfd, (struct sockaddr *) &peer, len, NULL);
                if (r < 0)
                        log_warning_errno(r, "cannot set up connection: %m, dropping it");
        }
        manager_update_accepting(m);
        return 0;
}

static void manager_close_listener(Manager *m) {
        m->listen_source = sd_event_source_disable_unref(m->listen_source);
        m->listen_fd = safe_close(m->listen_fd);
        if (m->unix_path) {
                (void) unlink(m->unix_path);
                m->unix_path = (free(m->unix_path), NULL);
        }
}

static int manager_force_exit(Manager *m) {
        m->forced = true;
        conn_server_close_all(&m->server);
        (void) sd_event_exit(m->event, EXIT_FAILURE);
        return 0;
}

static int on_shutdown_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_warning("--shutdown-timeout reached with %u connection%s still open, closing them",
                    m->server.n_conns, m->server.n_conns == 1 ? "" : "s");
        return manager_force_exit(m);
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        char buf[DURATION_MAX];
        int r;

        if (m->shutting_down) {
                log_warning("received %s again, closing %u connection%s now",
                            strsignal((int) si->ssi_signo), m->server.n_conns,
                            m->server.n_conns == 1 ? "" : "s");
                return manager_force_exit(m);
        }
        m->shutting_down = true;
        (void) sd_notify(false, "STOPPING=1");
        manager_close_listener(m);

        if (m->server.n_conns == 0) {
                log_info("received %s, no open connections, exiting", strsignal((int) si->ssi_signo));
                return sd_event_exit(m->event, EXIT_SUCCESS);
        }
        log_info("received %s, stopped accepting; waiting up to %s for %u connection%s",
                 strsignal((int) si->ssi_signo),
                 format_duration(buf, sizeof buf, m->config.shutdown_timeout), m->server.n_conns,
                 m->server.n_conns == 1 ? "" : "s");
        manager_notify_status(m);
        r = sd_event_add_time_relative(m->event, &m->shutdown_timer, CLOCK_MONOTONIC,
                                       m->config.shutdown_timeout, 0, on_shutdown_timeout, m);
        if (r < 0)
                return manager_force_exit(m);
        return 0;
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
        m->config = *config;
        memset(config, 0, sizeof *config);

        r = sd_event_new(&m->event);
        if (r < 0)
                return r;
        m->server.event = m->event;
        m->server.config = &m->config;
        m->server.on_conn_freed = on_conn_freed;
        m->server.userdata = m;
        metrics_init(&m->metrics);
        m->server.metrics = &m->metrics;

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
        conn_server_close_all(&m->server);
        manager_close_listener(m);
        sd_event_source_disable_unref(m->accept_pause);
        sd_event_source_disable_unref(m->shutdown_timer);
        reload_done(&m->reload);
        ocsp_stapler_free(m->ocsp);
        renewer_free(m->renewer);
        creds_unref(m->server.creds);
        challenges_free(m->challenges);
        if (m->server.ticket_key.data) {
                gnutls_memset(m->server.ticket_key.data, 0, m->server.ticket_key.size);
                gnutls_free(m->server.ticket_key.data);
        }
        sd_event_unref(m->event);
        config_done(&m->config);
        free(m);
        return NULL;
}

int manager_start(Manager *m, char **ret_error) {
        _cleanup_(cert_bundle_unrefp) CertBundle *bundle = NULL;
        int r;

        /* Everything that can fail because of the configuration is checked
         * before the socket is opened. The CA bundle's digest is taken
         * before it is loaded (for --timed-reload). */
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
        } else
                r = cert_bundle_load(&m->config, &bundle, ret_error);
        if (r < 0)
                return r;
        r = creds_new(&m->config, bundle, conn_retrieve_certificate, &m->server.creds, ret_error);
        if (r < 0)
                return r;
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

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGUSR1);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        if ((r = sd_event_add_signal(m->event, NULL, SIGTERM, on_terminate, m)) < 0 ||
            (r = sd_event_add_signal(m->event, NULL, SIGINT, on_terminate, m)) < 0 ||
            (r = sd_event_add_signal(m->event, NULL, SIGHUP, on_reload, m)) < 0 ||
            (r = sd_event_add_signal(m->event, NULL, SIGUSR1, on_reload, m)) < 0)
                return r;
        /* Sends WATCHDOG=1 at half of WATCHDOG_USEC when the service has one. */
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                return r;

        r = listener_open(&m->config.listen, &m->listen_fd, &m->unix_path, ret_error);
        if (r < 0)
                return r;
        r = sd_event_add_io(m->event, &m->listen_source, m->listen_fd, EPOLLIN, on_accept, m);
        if (r < 0)
                return r;
        if (m->config.status_set) {
                r = status_server_new(m, &m->status, ret_error);
                if (r < 0)
                        return r;
        }
        log_info("listening on %s, forwarding to %s, serving %s", m->config.listen.spec,
                 m->config.target.spec,
                 bundle ? strempty(bundle->subject) : m->config.auto_acme_cert);

        /* ACME after the listener: the CA's probes arrive on this very
         * socket, even for the first certificate (FACTS.md section 5). */
        if (m->renewer)
                return renewer_start(m->renewer, ret_error);
        return 0;
}

int manager_run(Manager *m) {
        int r;

        /* READY=1 only once a certificate is served. */
        if (m->server.creds->bundle)
                manager_ready(m);
        manager_notify_status(m);
        r = sd_event_loop(m->event);
        if (r < 0) {
                log_error_errno(r, "event loop failed: %m");
                return EXIT_FAILURE;
        }
        return r;
}
