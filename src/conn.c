/* SPDX-License-Identifier: MIT */
/* One connection: life cycle, deadlines, dialing the target, I/O dispatch
 * (see conn-internal.h for the other parts). */

#include <netinet/tcp.h>
#include <stdio.h>

#include "address.h"
#include "bufpool.h"
#include "conn-internal.h"
#include "duration.h"
#include "metrics.h"
#include "proxy-protocol.h"
#include "util.h"
#include "verify-cache.h"

static const char *const conn_state_table[_CONN_STATE_MAX] = {
        [CONN_HANDSHAKE] = "handshake",
        [CONN_DIALING] = "dialing",
        [CONN_PIPING] = "piping",
};

const char *conn_state_to_string(ConnState s) {
        return s >= 0 && s < _CONN_STATE_MAX ? conn_state_table[s] : NULL;
}

bool conn_quiet(const Conn *c, unsigned what) {
        return (c->server->config->quiet & what) != 0;
}

/* Time since accept, for the metrics. */
usec_t conn_age(const Conn *c) {
        usec_t now = 0;

        (void) sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
        return now > c->start ? now - c->start : 0;
}

static void conn_set_state(Conn *c, ConnState s) {
        conn_log(c, LOG_DEBUG, 0, NULL, "conn %s: %s -> %s", c->id_str,
                 conn_state_to_string(c->state), conn_state_to_string(s));
        c->state = s;
}

Conn *conn_free(Conn *c) {
        ConnServer *s;

        if (!c)
                return NULL;
        s = c->server;

        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->target_io);
        sd_event_source_disable_unref(c->deadline);
        sd_event_source_disable_unref(c->lifetime);
        sd_event_source_disable_unref(c->resume);
        sd_event_source_disable_unref(c->dial_retry);
        if (c->session)
                gnutls_deinit(c->session);
        /* Only after gnutls_deinit(): GnuTLS may still point into the bundle. */
        cert_bundle_unref(c->bundle);
        creds_unref(c->creds);
        safe_close(c->fd);
        safe_close(c->target_fd);
        pipe_release(s, &c->c2t);
        for (unsigned i = 0; i < c->n_c2t_next; i++)
                gnutls_packet_deinit(c->c2t_next[i]);
        pipe_release(s, &c->t2c);
        free(c->client_cn);
        verify_verdict_done(&c->verdict);

        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        if (s->n_conns == 0)
                bufpool_trim(&s->bufpool);     /* nothing kept while nobody is connected */
        metrics_conn_closed(s->metrics, conn_age(c));
        free(c);

        if (s->on_conn_freed)
                s->on_conn_freed(s, s->userdata);
        return NULL;
}

void conn_server_close_all(ConnServer *s) {
        while (s->conns)
                conn_free(s->conns);
}

/* Both legs carry interactive traffic: a small write (a TLS handshake
 * flight, a 32-byte reply) must leave at once, not wait ~40 ms for Nagle and
 * the peer's delayed ACK. Go (Ghostunnel) does the same by default. Not a
 * TCP socket (unix): nothing to do. */
static void socket_set_nodelay(int fd, int family) {
        int one = 1;

        if (family == AF_INET || family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Ends the connection with a message; the message is already logged. */
void conn_close(Conn *c) {
        if (c->state == CONN_PIPING && !conn_quiet(c, QUIET_CONNS)) {
                char dur[DURATION_MAX];
                usec_t now = 0;
                sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
                conn_log(c, LOG_INFO, 0, NULL,
                         "closed pipe: %s -> %s (%" PRIu64 " bytes from client, %" PRIu64
                         " bytes to client, open %s)",
                         c->peer, c->server->config->target.spec, c->c2t.bytes, c->t2c.bytes,
                         format_duration(dur, sizeof dur, now - c->start));
        }
        conn_free(c);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Conn *c = userdata;

        switch (c->state) {
        case CONN_HANDSHAKE:
                metrics_handshake_failed(c->server->metrics, true);
                if (!conn_quiet(c, QUIET_HANDSHAKE_ERRS))
                        conn_log(c, LOG_WARNING, 0, MESSAGE_ID_HANDSHAKE_FAILED,
                                 "error on TLS handshake from %s: timed out after --connect-timeout",
                                 c->peer);
                break;
        case CONN_DIALING:
                metrics_dial_failed(c->server->metrics);
                if (!conn_quiet(c, QUIET_CONN_ERRS))
                        conn_log(c, LOG_WARNING, 0, MESSAGE_ID_DIAL_FAILED,
                                 "error on dial to %s for %s: timed out after --connect-timeout",
                                 c->server->config->target.spec, c->peer);
                break;
        default:
                metrics_conn_timeout(c->server->metrics);
                conn_log(c, LOG_DEBUG, 0, NULL, "conn %s: --close-timeout reached, closing",
                         c->id_str);
        }
        conn_close(c);
        return 0;
}

static int on_lifetime(sd_event_source *s, uint64_t usec, void *userdata) {
        Conn *c = userdata;

        metrics_conn_timeout(c->server->metrics);
        if (!conn_quiet(c, QUIET_CONN_ERRS))
                conn_log(c, LOG_INFO, 0, NULL, "closing connection from %s: --max-conn-lifetime reached",
                         c->peer);
        conn_close(c);
        return 0;
}

int conn_arm_deadline(Conn *c, usec_t timeout) {
        usec_t now;
        int r;

        r = sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        if (c->deadline) {
                r = sd_event_source_set_time(c->deadline, now + timeout);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->deadline, SD_EVENT_ONESHOT);
                return r;
        }
        r = sd_event_add_time(c->server->event, &c->deadline, CLOCK_MONOTONIC, now + timeout, 0,
                              on_deadline, c);
        if (r >= 0)
                (void) sd_event_source_set_description(c->deadline, "conn-deadline");
        return r;
}

void conn_log_handshake_error(Conn *c, const char *reason) {
        /* One line per refusal: a hook that refused already named the
         * reason, GnuTLS's generic error for it would only mislead. */
        if (c->refusal_logged)
                return;
        c->refusal_logged = true;
        if (!conn_quiet(c, QUIET_HANDSHAKE_ERRS))
                conn_log(c, LOG_WARNING, 0, MESSAGE_ID_HANDSHAKE_FAILED,
                         "error on TLS handshake from %s: %s", c->peer, reason);
}

/* --- dialing ------------------------------------------------------------- */

static int on_target_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static void conn_dial_failed(Conn *c, int error) {
        char e[ERRNO_GO_MAX];

        metrics_dial_failed(c->server->metrics);
        if (!conn_quiet(c, QUIET_CONN_ERRS))
                conn_log(c, LOG_WARNING, error, MESSAGE_ID_DIAL_FAILED,
                         "error on dial to %s for %s: connect: %s",
                         c->server->config->target.spec, c->peer,
                         errno_go(error, e, sizeof e));
        conn_close(c);
}

static const char *tls_version_name(gnutls_protocol_t v) {
        /* Go's tls.VersionName(), which Ghostunnel sends. */
        switch (v) {
        case GNUTLS_TLS1_2:
                return "TLS 1.2";
        case GNUTLS_TLS1_3:
                return "TLS 1.3";
        default:
                return gnutls_protocol_get_name(v);
        }
}

/* With --proxy-protocol(-mode), puts the PROXY v2 header in the
 * client-to-target buffer: the pump then sends the header before any byte
 * from the client, whom it reads only once the buffer is empty, so
 * backpressure is unchanged. A header with a large client certificate may
 * exceed PIPE_BUFFER_SIZE: it gets a buffer of its own, freed once sent
 * (reads take pool buffers). Logs its own errors, except -ENOMEM. */
static int conn_setup_c2t(Conn *c) {
        const Config *cfg = c->server->config;
        ProxyInfo info = {
                .mode = cfg->proxy_protocol ? PROXY_MODE_CONN : cfg->proxy_protocol_mode,
        };
        struct sockaddr_storage src, dst;
        socklen_t src_len = sizeof src, dst_len = sizeof dst;
        size_t size = 0;
        unsigned n_peers = 0;
        gnutls_datum_t alpn = {};
        const gnutls_datum_t *peers = NULL;
        int r;

        if (info.mode == PROXY_MODE_OFF)
                return 0;       /* the buffers are lent when data comes */

        /* The client's address and the one it connected to (for a unix
         * listener, its path); without them the header says UNSPEC. */
        if (getpeername(c->fd, (struct sockaddr *) &src, &src_len) >= 0 &&
            getsockname(c->fd, (struct sockaddr *) &dst, &dst_len) >= 0) {
                info.src = (const struct sockaddr *) &src, info.src_len = src_len;
                info.dst = (const struct sockaddr *) &dst, info.dst_len = dst_len;
        }
        if (c->sni[0])
                info.authority = c->sni;
        if (gnutls_alpn_get_selected_protocol(c->session, &alpn) >= 0)
                info.alpn = alpn.data, info.alpn_len = alpn.size;
        info.tls_version = tls_version_name(gnutls_protocol_get_version(c->session));
        info.cipher = gnutls_ciphersuite_get(c->session);
        if (c->creds->request_client_cert)
                peers = gnutls_certificate_get_peers(c->session, &n_peers);
        if (peers && n_peers > 0) {
                /* Verified on this connection, even a resumed one
                 * (conn_check_peer()): both flags, as Ghostunnel sets them. */
                info.cert_conn = info.cert_sess = true;
                info.cn = c->client_cn;
                info.cert = peers[0].data, info.cert_len = peers[0].size;
        }

        r = proxy_v2_header_size(&info, &size);
        if (r >= 0) {
                c->c2t.big = size > PIPE_BUFFER_SIZE;
                c->c2t.buf = c->c2t.big ? malloc(size) : bufpool_get(&c->server->bufpool);
                if (!c->c2t.buf)
                        return -ENOMEM;
                r = proxy_v2_header(&info, c->c2t.buf, MAX(size, (size_t) PIPE_BUFFER_SIZE),
                                    &c->c2t.len);
        }
        if (r < 0) {
                if (!conn_quiet(c, QUIET_CONN_ERRS))
                        conn_log(c, LOG_WARNING, r, NULL,
                                 r == -E2BIG ? "cannot send the PROXY protocol header to %s for %s: "
                                               "more than 64 KiB with the client certificate"
                                             : "cannot send the PROXY protocol header to %s for %s: %m",
                                 cfg->target.spec, c->peer);
                return r;
        }
        c->c2t.off = 0;
        conn_log(c, LOG_DEBUG, 0, NULL, "conn %s: PROXY protocol v2 header (%s), %zu bytes",
                 c->id_str, proxy_mode_to_string(info.mode), c->c2t.len);
        return 0;
}

static int conn_start_piping(Conn *c) {
        ConnServer *s = c->server;
        int r;

        r = conn_setup_c2t(c);
        if (r < 0)
                return r;

        conn_set_state(c, CONN_PIPING);
        metrics_piping(s->metrics);
        /* The connect timeout covered handshake and dial; from now on the
         * deadline only serves --close-timeout. */
        sd_event_source_set_enabled(c->deadline, SD_EVENT_OFF);
        if (!conn_quiet(c, QUIET_CONNS))
                conn_log(c, LOG_INFO, 0, NULL, "opening pipe: %s%s%s%s -> %s", c->peer,
                         c->client_cn ? " [CN=" : "", strempty(c->client_cn),
                         c->client_cn ? "]" : "", s->config->target.spec);
        conn_pump(c);
        return 0;
}

static void conn_dial_finished(Conn *c) {
        int error = 0, r;
        socklen_t len = sizeof error;

        if (getsockopt(c->target_fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                error = errno;
        if (error != 0)
                return conn_dial_failed(c, error);
        r = conn_start_piping(c);
        if (r < 0) {
                if (r == -ENOMEM)
                        log_oom();
                conn_close(c);
        }
}

#define DIAL_RETRY_FIRST (1 * USEC_PER_MSEC)
#define DIAL_RETRY_MAX (100 * USEC_PER_MSEC)

static void conn_dial_connect(Conn *c);

static int on_dial_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        conn_dial_connect(userdata);
        return 0;
}

/* A unix socket whose accept queue is full refuses a non-blocking connect()
 * with EAGAIN, and nothing is left pending: the socket is not connecting,
 * and no event will say when there is room (its EPOLLOUT would only report
 * an unconnected socket as writable). So connect() is tried again on a timer,
 * 1 ms doubling to 100 ms, until --connect-timeout ends the dial. */
static int conn_dial_schedule_retry(Conn *c) {
        int r;

        c->dial_retry_delay = c->dial_retry_delay == 0
                                      ? DIAL_RETRY_FIRST
                                      : MIN(2 * c->dial_retry_delay, DIAL_RETRY_MAX);
        conn_log(c, LOG_DEBUG, 0, NULL, "conn %s: the target's accept queue is full, "
                 "connecting again in %" PRIu64 " ms", c->id_str,
                 c->dial_retry_delay / USEC_PER_MSEC);
        if (c->dial_retry) {
                r = sd_event_source_set_time_relative(c->dial_retry, c->dial_retry_delay);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->dial_retry, SD_EVENT_ONESHOT);
                return r;
        }
        r = sd_event_add_time_relative(c->server->event, &c->dial_retry, CLOCK_MONOTONIC,
                                       c->dial_retry_delay, 0, on_dial_retry, c);
        if (r >= 0)
                (void) sd_event_source_set_description(c->dial_retry, "conn-dial-retry");
        return r;
}

static void conn_dial_connect(Conn *c) {
        ConnServer *s = c->server;
        int r;

        if (connect(c->target_fd, (const struct sockaddr *) &s->target, s->target_len) >= 0)
                return conn_dial_finished(c);
        if (errno == EINPROGRESS) {
                /* TCP: the connection completes (or fails) with EPOLLOUT. */
                (void) sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
                return;
        }
        if (errno != EAGAIN || s->target.ss_family != AF_UNIX)
                return conn_dial_failed(c, errno);
        r = sd_event_source_set_enabled(c->target_io, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        if (r >= 0)
                r = conn_dial_schedule_retry(c);
        if (r < 0)
                conn_dial_failed(c, -r);
}

void conn_dial(Conn *c) {
        ConnServer *s = c->server;
        int r;

        conn_set_state(c, CONN_DIALING);
        c->target_fd = socket(s->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->target_fd < 0)
                return conn_dial_failed(c, errno);
        socket_set_nodelay(c->target_fd, s->target.ss_family);

        r = sd_event_add_io(s->event, &c->target_io, c->target_fd, EPOLLOUT | EPOLLET, on_target_io, c);
        if (r < 0)
                return conn_dial_failed(c, -r);
        (void) sd_event_source_set_description(c->target_io, "conn-target");
        conn_dial_connect(c);
}

/* --- I/O dispatch -------------------------------------------------------- */

void conn_step(Conn *c) {
        if (c->state == CONN_HANDSHAKE)
                conn_handshake_step(c);
        else if (c->state == CONN_PIPING)
                conn_pump(c);
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        conn_step(userdata);
        return 0;
}

static int on_target_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Conn *c = userdata;

        if (c->state == CONN_DIALING)
                conn_dial_finished(c);
        else if (c->state == CONN_PIPING)
                conn_pump(c);
        return 0;
}

int conn_new(ConnServer *s, int fd, const struct sockaddr *peer, socklen_t peer_len, Conn **ret) {
        Conn *c;
        int r;

        c = calloc(1, sizeof *c);
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->server = s;
        c->fd = fd;
        socket_set_nodelay(fd, peer->sa_family);
        c->target_fd = -EBADF;
        c->id = atomic_fetch_add_explicit(s->next_id, 1, memory_order_relaxed) + 1;
        c->state = CONN_HANDSHAKE;
        snprintf(c->id_str, sizeof c->id_str, "%" PRIu64, c->id);
        sockaddr_format(peer, peer_len, c->peer, sizeof c->peer);
        /* Both under the lock a reload or a new certificate swaps them with;
         * the bundle is NULL until ACME has one. */
        current_creds_get(s->current, &c->creds, &c->bundle);
        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &c->start);

        /* Linked first, so that conn_free() can always unlink. */
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        metrics_conn_opened(s->metrics);

        r = conn_setup_session(c);
        if (r < 0)
                goto fail;
        /* Edge-triggered, as are all of a connection's sources: sd-event
         * dispatches one source per iteration and polls again, so with
         * level-triggered sources every ready connection was reported
         * again on each iteration; 5000 clients closing at once cost 10 s
         * of CPU. The handshake and the pump go on until EAGAIN (or a full
         * buffer, whose drain is another event), or schedule c->resume. */
        r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN | EPOLLET, on_client_io, c);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(c->io, "conn-client");
        r = conn_arm_deadline(c, s->config->connect_timeout);
        if (r < 0)
                goto fail;
        if (s->config->max_conn_lifetime > 0) {
                r = sd_event_add_time_relative(s->event, &c->lifetime, CLOCK_MONOTONIC,
                                               s->config->max_conn_lifetime, 0, on_lifetime, c);
                if (r < 0)
                        goto fail;
                (void) sd_event_source_set_description(c->lifetime, "conn-lifetime");
        }
        conn_log(c, LOG_DEBUG, 0, NULL, "conn %s: accepted from %s", c->id_str, c->peer);
        if (ret)
                *ret = c;
        return 0;
fail:
        conn_free(c);
        return r;
}
