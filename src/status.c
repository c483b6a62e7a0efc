/* SPDX-License-Identifier: MIT */
/* The status port: see status.h. One StatusConn per client connection, a
 * state machine driven by one I/O source and one deadline timer:
 *
 *   accept -> [HANDSHAKE] -> READING --/_status--> CHECKING --+
 *                               |                              |
 *                               +--other paths, errors---------+--> WRITING
 *   WRITING -> BYE (close_notify, FIN) -> DRAINING (read until EOF) -> freed
 *
 * DRAINING reads what the client may still send (a POST body, say) before
 * closing, so that the kernel does not answer unread data with a reset that
 * could destroy the response on its way. */

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <stdio.h>

#include "backend-check.h"
#include "http-request.h"
#include "listener.h"
#include "log.h"
#include "manager.h"
#include "metrics.h"
#include "sni.h"
#include "status-json.h"
#include "status.h"
#include "util.h"

#define STATUS_CONNS_MAX 64U
#define STATUS_ACCEPT_BURST 16U
#define STATUS_LINGER_USEC (2 * USEC_PER_SEC)
#define STATUS_ACCEPT_PAUSE_USEC (250 * USEC_PER_MSEC)
#define STATUS_ROUNDS_MAX 16U


typedef enum StatusConnState {
        SC_HANDSHAKE,
        SC_READING,
        SC_CHECKING,    /* waiting for the backend check */
        SC_WRITING,
        SC_BYE,         /* close_notify and FIN */
        SC_DRAINING,
} StatusConnState;

typedef struct StatusConn StatusConn;

struct StatusConn {
        StatusServer *server;
        StatusConn *prev, *next;
        StatusConnState state;
        int fd;
        gnutls_session_t session;       /* NULL: plain HTTP */
        Creds *creds;                   /* HTTPS: priorities of the served credential */
        CertBundle *bundle;             /* HTTPS: what status_retrieve_certificate hands out */
        sd_event_source *io, *deadline;
        bool head;                      /* HEAD: no body */
        bool shutdown_after;            /* POST /_shutdown: SIGTERM once answered */
        char *out;
        size_t out_len, out_off;
        char peer[INET6_ADDRSTRLEN + 16];
        size_t in_len;
        char in[HTTP_REQUEST_HEAD_MAX];
};

struct StatusServer {
        Manager *manager;
        int fd;
        char *unlink_path;
        sd_event_source *listen_source, *pause;
        bool paused;
        gnutls_certificate_credentials_t x509; /* NULL: plain HTTP */
        BackendCheck *check;            /* one at a time; the requests in SC_CHECKING share it */
        StatusConn *conns;
        unsigned n_conns;
};

static void sc_step(StatusConn *c);
static void status_update_accepting(StatusServer *s);

/* --- connections ------------------------------------------------------------ */

static StatusConn *sc_free(StatusConn *c) {
        StatusServer *s;

        if (!c)
                return NULL;
        s = c->server;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->deadline);
        if (c->session)
                gnutls_deinit(c->session);
        /* Only after gnutls_deinit(), as in conn.c. */
        cert_bundle_unref(c->bundle);
        creds_unref(c->creds);
        safe_close(c->fd);
        free(c->out);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        free(c);
        status_update_accepting(s);
        return NULL;
}

static int status_retrieve_certificate(gnutls_session_t session,
                                       const struct gnutls_cert_retr_st *info,
                                       gnutls_pcert_st **certs, unsigned *n_certs,
                                       gnutls_ocsp_data_st **ocsp, unsigned *n_ocsp,
                                       gnutls_privkey_t *key, unsigned *flags) {
        StatusConn *c = gnutls_session_get_ptr(session);

        if (!c || !c->bundle)
                return -1;
        /* Valid until gnutls_deinit(): the connection holds the bundle. */
        *certs = c->bundle->pcerts;
        *n_certs = c->bundle->n_pcerts;
        *key = c->bundle->key;
        *ocsp = c->bundle->staple.response.data ? &c->bundle->staple : NULL;
        *n_ocsp = c->bundle->staple.response.data ? 1 : 0;
        *flags = 0;
        return 0;
}

/* Sets the events the connection waits for; 0 disables its source. */
static int sc_want(StatusConn *c, uint32_t events) {
        int r;

        if (events == 0)
                return sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        r = sd_event_source_set_io_events(c->io, events);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->io, SD_EVENT_ON);
        return r;
}

/* After -EAGAIN: what the transport waits for. */
static void sc_wait(StatusConn *c, uint32_t plain) {
        uint32_t ev = plain;

        if (c->session)
                ev = gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN;
        if (sc_want(c, ev) < 0)
                sc_free(c);
}

static int sc_arm_deadline(StatusConn *c, usec_t timeout) {
        int r = sd_event_source_set_time_relative(c->deadline, timeout);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->deadline, SD_EVENT_ONESHOT);
        return r;
}

/* >0: bytes, 0: end of stream, -EAGAIN: wait, other <0: broken. */
static ssize_t sc_recv(StatusConn *c, void *buf, size_t n) {
        ssize_t k;

        if (c->session) {
                k = gnutls_record_recv(c->session, buf, n);
                if (k >= 0)
                        return k;
                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
                        return -EAGAIN;
                return k == GNUTLS_E_PREMATURE_TERMINATION ? 0 : -EIO;
        }
        k = recv(c->fd, buf, n, 0);
        if (k >= 0)
                return k;
        return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
}

static ssize_t sc_send(StatusConn *c, const void *buf, size_t n) {
        ssize_t k;

        if (c->session) {
                k = gnutls_record_send(c->session, buf, n);
                if (k >= 0)
                        return k;
                return k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED ? -EAGAIN : -EIO;
        }
        k = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (k >= 0)
                return k;
        return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
}

static void sc_drain(StatusConn *c) {
        char buf[4096];

        for (unsigned i = 0; i < STATUS_ROUNDS_MAX; i++) {
                ssize_t k = sc_recv(c, buf, sizeof buf);
                if (k == -EAGAIN)
                        return sc_wait(c, EPOLLIN);
                if (k <= 0)
                        break;
        }
        /* End of stream, an error, or more than we care to read. */
        sc_free(c);
}

static void sc_write(StatusConn *c) {
        int r;

        while (c->out_off < c->out_len) {
                ssize_t k = sc_send(c, c->out + c->out_off, c->out_len - c->out_off);
                if (k == -EAGAIN)
                        return sc_wait(c, EPOLLOUT);
                if (k < 0) {
                        log_debug("status: cannot send the response to %s", c->peer);
                        sc_free(c);
                        return;
                }
                c->out_off += (size_t) k;
        }
        c->state = SC_BYE;
        if (c->session) {
                r = gnutls_bye(c->session, GNUTLS_SHUT_WR);
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
                        return sc_wait(c, EPOLLOUT);
        }
        (void) shutdown(c->fd, SHUT_WR);
        if (c->shutdown_after) {
                /* The answer is out: shut down exactly as SIGTERM does (the
                 * signal is blocked and read by the loop's signal source). */
                c->shutdown_after = false;
                log_info("shutdown requested by POST /_shutdown from %s", c->peer);
                (void) kill(getpid(), SIGTERM);
        }
        c->state = SC_DRAINING;
        if (sc_arm_deadline(c, STATUS_LINGER_USEC) < 0) {
                sc_free(c);
                return;
        }
        sc_drain(c);
}

static const char *reason_phrase(int code) {
        switch (code) {
        case 200:
                return "OK";
        case 400:
                return "Bad Request";
        case 404:
                return "Not Found";
        case 405:
                return "Method Not Allowed";
        case 431:
                return "Request Header Fields Too Large";
        case 500:
                return "Internal Server Error";
        case 501:
                return "Not Implemented";
        case 503:
                return "Service Unavailable";
        default:
                return "Unknown";
        }
}

/* Queues the whole response and starts writing. allow: the Allow header's
 * value for 405, else NULL. */
static void sc_respond(StatusConn *c, int code, const char *content_type, const char *body,
                       size_t body_len, const char *allow) {
        _cleanup_free_ char *head = NULL;
        int n;

        n = asprintf(&head,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "%s%s%s"
                     "Connection: close\r\n"
                     "\r\n",
                     code, reason_phrase(code), content_type, body_len, allow ? "Allow: " : "",
                     strempty(allow), allow ? "\r\n" : "");
        if (n < 0) {
                log_oom();
                sc_free(c);
                return;
        }
        if (c->head)
                body_len = 0;
        c->out = malloc((size_t) n + body_len);
        if (!c->out) {
                log_oom();
                sc_free(c);
                return;
        }
        memcpy(c->out, head, (size_t) n);
        if (body_len > 0)
                memcpy(c->out + n, body, body_len);
        c->out_len = (size_t) n + body_len;
        c->out_off = 0;
        log_debug("status: %d for %s", code, c->peer);

        c->state = SC_WRITING;
        if (sc_arm_deadline(c, c->server->manager->config.connect_timeout) < 0) {
                sc_free(c);
                return;
        }
        sc_write(c);
}

static void sc_respond_text(StatusConn *c, int code, const char *text, const char *allow) {
        sc_respond(c, code, "text/plain; charset=utf-8", text, strlen(text), allow);
}

static void sc_respond_json(StatusConn *c, json_object *o, bool ok) {
        const char *text;

        text = o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE)
                 : NULL;
        if (!text)
                sc_respond_text(c, 500, "out of memory\n", NULL);
        else
                sc_respond(c, ok ? 200 : 503, "application/json", text, strlen(text), NULL);
        json_object_put(o);
}

static void sc_respond_status(StatusConn *c, bool backend_ok, const char *backend_error) {
        json_object *o;
        bool ok = false;

        o = status_json(c->server->manager, backend_ok, backend_error, &ok);
        sc_respond_json(c, o, ok);
}

/* --- the backend check ---------------------------------------------------------- */

static void on_backend_checked(bool ok, const char *error, void *userdata) {
        StatusServer *s = userdata;

        /* Answering may free that connection, never another one. */
        for (StatusConn *c = s->conns, *next; c; c = next) {
                next = c->next;
                if (c->state == SC_CHECKING)
                        sc_respond_status(c, ok, error);
        }
}

/* --- requests ------------------------------------------------------------------ */

static void sc_metrics(StatusConn *c, bool prometheus) {
        const Manager *m = c->server->manager;
        _cleanup_free_ char *text = NULL;
        MetricsExtra x;
        char hostname[256] = "unknown";
        Metrics sum;
        int r;

        /* Every serving thread's counters, added up. */
        metrics_init(&sum);
        manager_metrics(m, &sum, &x);
        if (prometheus)
                r = metrics_render_prometheus(&sum, &x, m->config.metrics_prefix, &text);
        else {
                if (gethostname(hostname, sizeof hostname) < 0)
                        snprintf(hostname, sizeof hostname, "unknown");
                hostname[sizeof hostname - 1] = '\0';
                r = metrics_render_json(&sum, &x, m->config.metrics_prefix, hostname,
                                        (int64_t) time(NULL), &text);
        }
        metrics_done(&sum);
        if (r < 0)
                return sc_respond_text(c, 500, "out of memory\n", NULL);
        sc_respond(c, 200,
                   prometheus ? "text/plain; version=0.0.4; charset=utf-8" : "application/json",
                   text, strlen(text), NULL);
}

/* format=prometheus anywhere in the query; anything else is JSON, as in
 * Ghostunnel. */
static bool query_wants_prometheus(const char *q, size_t n) {
        const char *end;

        if (!q)
                return false;
        for (end = q + n; q < end;) {
                const char *amp = memchr(q, '&', (size_t) (end - q));
                size_t k = amp ? (size_t) (amp - q) : (size_t) (end - q);

                if (k == strlen("format=prometheus") && memcmp(q, "format=prometheus", k) == 0)
                        return true;
                q += k + (amp ? 1 : 0);
        }
        return false;
}

static void sc_handle(StatusConn *c, const HttpRequest *req) {
        const Config *cfg = &c->server->manager->config;
        bool get;

        c->head = http_request_method_is(req, "HEAD");
        get = c->head || http_request_method_is(req, "GET");
        /* The method is a token and the target holds no control byte:
         * both are safe to log as they are. */
        log_debug("status: %.*s %.*s from %s", (int) req->method_len, req->method,
                  (int) req->target_len, req->target, c->peer);

        if (http_request_path_is(req, "/_status")) {
                if (!get)
                        return sc_respond_text(c, 405, "method not allowed\n", "GET, HEAD");
                c->state = SC_CHECKING;
                /* The check has its own timeout; this only guards against a bug. */
                if (sc_want(c, 0) < 0 || sc_arm_deadline(c, 2 * cfg->connect_timeout) < 0) {
                        sc_free(c);
                        return;
                }
                return backend_check_start(c->server->check);
        }
        if (http_request_path_is(req, "/_status/tlsgate")) {
                if (!get)
                        return sc_respond_text(c, 405, "method not allowed\n", "GET, HEAD");
                return sc_respond_json(c, status_details_json(c->server->manager), true);
        }
        if (http_request_path_is(req, "/_metrics") || http_request_path_is(req, "/_metrics/json") ||
            http_request_path_is(req, "/_metrics/prometheus")) {
                if (!get)
                        return sc_respond_text(c, 405, "method not allowed\n", "GET, HEAD");
                return sc_metrics(c, http_request_path_is(req, "/_metrics/prometheus") ||
                                             (http_request_path_is(req, "/_metrics") &&
                                              query_wants_prometheus(req->query, req->query_len)));
        }
        if (http_request_path_is(req, "/_shutdown") && cfg->enable_shutdown) {
                if (!http_request_method_is(req, "POST"))
                        return sc_respond_text(c, 405, "method not allowed\n", "POST");
                c->shutdown_after = true;
                return sc_respond_text(c, 200, "shutting down\n", NULL);
        }
        sc_respond_text(c, 404, "404 page not found\n", NULL);
}

/* A request the parser refused: its status, and the reason in the body
 * (a fixed text, never a byte of the request), as Go's net/http does. */
static void sc_refuse(StatusConn *c, int r, const char *reason) {
        int code = http_request_error_status(r);
        char text[160];

        log_debug("status: refusing the request from %s: %s", c->peer, strempty(reason));
        if (code == 431)
                return sc_respond_text(c, code, "request header fields too large\n", NULL);
        snprintf(text, sizeof text, "%s: %s\n", code == 501 ? "not implemented" : "bad request",
                 strempty(reason));
        sc_respond_text(c, code, text, NULL);
}

static void sc_read(StatusConn *c) {
        for (unsigned i = 0; i < STATUS_ROUNDS_MAX; i++) {
                const char *reason = NULL;
                HttpRequest req;
                ssize_t k;
                int r;

                if (c->in_len >= sizeof c->in)
                        return sc_refuse(c, -E2BIG, NULL);
                k = sc_recv(c, c->in + c->in_len, sizeof c->in - c->in_len);
                if (k == -EAGAIN)
                        return sc_wait(c, EPOLLIN);
                if (k <= 0) {
                        /* Gone before a whole request: nobody to answer. */
                        sc_free(c);
                        return;
                }
                c->in_len += (size_t) k;
                /* The parser's answer changes only when a line ends or the
                 * buffer is full: a client sending a byte at a time costs
                 * one parse per line, not one per byte. */
                if (!memchr(c->in + c->in_len - (size_t) k, '\n', (size_t) k) &&
                    c->in_len < sizeof c->in)
                        continue;
                r = http_request_parse(c->in, c->in_len, &req, &reason);
                if (r == 0)
                        return sc_handle(c, &req);
                if (r != -EAGAIN)
                        return sc_refuse(c, r, reason);
        }
        sc_wait(c, EPOLLIN); /* more later: let others run */
}

static void sc_handshake(StatusConn *c) {
        for (unsigned i = 0; i < STATUS_ROUNDS_MAX; i++) {
                int r = gnutls_handshake(c->session);

                if (r == GNUTLS_E_SUCCESS) {
                        c->state = SC_READING;
                        return sc_read(c);
                }
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
                        return sc_wait(c, EPOLLIN);
                if (gnutls_error_is_fatal(r)) {
                        log_debug("status: TLS handshake from %s failed: %s", c->peer,
                                  gnutls_strerror(r));
                        sc_free(c);
                        return;
                }
        }
        sc_wait(c, EPOLLIN);
}

static void sc_step(StatusConn *c) {
        switch (c->state) {
        case SC_HANDSHAKE:
                return sc_handshake(c);
        case SC_READING:
                return sc_read(c);
        case SC_WRITING:
        case SC_BYE:
                return sc_write(c);
        case SC_DRAINING:
                return sc_drain(c);
        case SC_CHECKING:
                return;
        }
}

static int on_conn_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        sc_step(userdata);
        return 0;
}

static int on_conn_deadline(sd_event_source *source, uint64_t usec, void *userdata) {
        StatusConn *c = userdata;

        if (c->state != SC_DRAINING)
                log_debug("status: connection from %s timed out, closing", c->peer);
        sc_free(c);
        return 0;
}

static int sc_setup_tls(StatusConn *c) {
        StatusServer *s = c->server;
        Creds *cr = s->manager->current.creds;  /* main thread: no lock needed */
        int r;

        /* ACME before the first certificate: nothing to serve yet. */
        if (!cr || !cr->bundle)
                return -ENOKEY;
        c->creds = creds_ref(cr);
        c->bundle = cert_bundle_ref(cr->bundle);
        r = gnutls_init(&c->session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
        if (r < 0)
                return errno_from_gnutls(r);
        gnutls_session_set_ptr(c->session, c);
        /* Server names with '_', as on the serving port (src/sni.c). */
        sni_session_enable(c->session);
        r = gnutls_priority_set(c->session, c->creds->priority);
        if (r >= 0)
                r = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, s->x509);
        if (r < 0)
                return errno_from_gnutls(r);
        gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_IGNORE);
        gnutls_handshake_set_timeout(c->session, 0);
        gnutls_transport_set_int(c->session, c->fd);
        return 0;
}

static void sc_new(StatusServer *s, int fd, const struct sockaddr *peer, socklen_t peer_len) {
        StatusConn *c;
        int r;

        c = calloc(1, sizeof *c);
        if (!c) {
                safe_close(fd);
                log_oom();
                return;
        }
        c->server = s;
        c->fd = fd;
        sockaddr_format(peer, peer_len, c->peer, sizeof c->peer);
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->n_conns++;

        c->state = s->x509 ? SC_HANDSHAKE : SC_READING;
        r = s->x509 ? sc_setup_tls(c) : 0;
        if (r >= 0)
                r = sd_event_add_io(s->manager->event, &c->io, fd, EPOLLIN, on_conn_io, c);
        if (r >= 0)
                r = sd_event_add_time_relative(s->manager->event, &c->deadline, CLOCK_MONOTONIC,
                                               s->manager->config.connect_timeout, 0,
                                               on_conn_deadline, c);
        if (r >= 0) {
                (void) sd_event_source_set_description(c->io, "status-conn");
                (void) sd_event_source_set_description(c->deadline, "status-conn-deadline");
        }
        if (r < 0) {
                log_debug_errno(r, "status: cannot serve %s: %m", c->peer);
                sc_free(c);
        }
}

/* --- the listener ---------------------------------------------------------------- */

static void status_update_accepting(StatusServer *s) {
        bool on = !s->paused && s->n_conns < STATUS_CONNS_MAX;

        if (s->listen_source)
                (void) sd_event_source_set_enabled(s->listen_source, on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int on_pause_end(sd_event_source *source, uint64_t usec, void *userdata) {
        StatusServer *s = userdata;

        s->paused = false;
        status_update_accepting(s);
        return 0;
}

static int on_accept(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        StatusServer *s = userdata;

        for (unsigned i = 0; i < STATUS_ACCEPT_BURST && s->n_conns < STATUS_CONNS_MAX; i++) {
                struct sockaddr_storage peer = {};
                socklen_t len = sizeof peer;
                int cfd = accept4(fd, (struct sockaddr *) &peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (cfd >= 0) {
                        sc_new(s, cfd, (struct sockaddr *) &peer, len);
                        continue;
                }
                if (errno == EAGAIN || errno == EINTR)
                        break;
                if (errno == ECONNABORTED || errno == EPROTO)
                        continue;
                /* EMFILE and friends: the socket stays readable; pause instead of spinning. */
                log_debug_errno(errno, "status: accept failed: %m, pausing");
                s->paused = true;
                if (s->pause) {
                        if (sd_event_source_set_time_relative(s->pause, STATUS_ACCEPT_PAUSE_USEC) < 0 ||
                            sd_event_source_set_enabled(s->pause, SD_EVENT_ONESHOT) < 0)
                                s->paused = false;
                } else if (sd_event_add_time_relative(s->manager->event, &s->pause, CLOCK_MONOTONIC,
                                                      STATUS_ACCEPT_PAUSE_USEC, 0, on_pause_end, s) < 0)
                        s->paused = false;
                else
                        (void) sd_event_source_set_description(s->pause, "status-accept-pause");
                break;
        }
        status_update_accepting(s);
        return 0;
}

int status_server_new(Manager *m, StatusServer **ret, char **ret_error) {
        _cleanup_(status_server_freep) StatusServer *s = NULL;
        _cleanup_free_ char *error = NULL;
        const Config *cfg = &m->config;
        const char *rest;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->manager = m;
        s->fd = -EBADF;

        if (!cfg->status_http) {
                r = gnutls_certificate_allocate_credentials(&s->x509);
                if (r < 0)
                        return errno_from_gnutls(r);
                gnutls_certificate_set_retrieve_function3(s->x509, status_retrieve_certificate);
        }
        r = backend_check_new(m->event,
                              &(BackendCheckParams) {
                                      .target = (const struct sockaddr *) &m->server.target,
                                      .target_len = m->server.target_len,
                                      .target_spec = cfg->target.spec,
                                      .url = cfg->target_status,
                                      .timeout = cfg->connect_timeout,
                              },
                              on_backend_checked, s, &s->check);
        if (r < 0)
                return r;

        r = listener_open(&cfg->status, &s->fd, &s->unlink_path, &error);
        if (r < 0) {
                /* listener.c names the flag --listen. */
                rest = error ? startswith(error, "--listen ") : NULL;
                return error_set(ret_error, r, "--status %s",
                                 rest ? rest : error ? error : strerror(-r));
        }
        r = sd_event_add_io(m->event, &s->listen_source, s->fd, EPOLLIN, on_accept, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->listen_source, "status-accept");
        log_info("status on %s%s (%s)", cfg->status_http && cfg->status.kind == ADDRESS_TCP
                                                ? "http://" : "",
                 cfg->status.spec, cfg->status_http ? "HTTP" : "HTTPS");
        *ret = TAKE_PTR(s);
        return 0;
}

StatusServer *status_server_free(StatusServer *s) {
        if (!s)
                return NULL;
        /* No callbacks from here on: the connections are going away. */
        s->check = backend_check_free(s->check);
        while (s->conns)
                sc_free(s->conns);
        s->listen_source = sd_event_source_disable_unref(s->listen_source);
        sd_event_source_disable_unref(s->pause);
        safe_close(s->fd);
        if (s->unlink_path) {
                (void) unlink(s->unlink_path);
                free(s->unlink_path);
        }
        if (s->x509)
                gnutls_certificate_free_credentials(s->x509);
        free(s);
        return NULL;
}
