/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <gnutls/x509.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/un.h>

#include "address.h"
#include "alpn-gate.h"
#include "authz.h"
#include "challenges.h"
#include "conn.h"
#include "duration.h"
#include "log.h"
#include "metrics.h"
#include "proxy-protocol.h"
#include "util.h"
#include "sni.h"
#include "verify-cache.h"

/* What one read from the target may bring: four full TLS records' worth,
 * which go out to the client as one train of segments (conn_push()), and
 * still small enough that a slow peer holds back the fast one
 * (backpressure). The buffers come from the server's BufPool only while
 * bytes are in flight. */
#define PIPE_BUFFER_SIZE BUFPOOL_BUFFER_SIZE
/* Decrypted records written to the target in one call, at most: fewer,
 * larger writes and segments (bench/run.sh: ~20 % less CPU per GB). */
#define C2T_BATCH 4
/* Work done per wake-up before yielding to other connections. */
#define PUMP_ROUNDS_MAX 16

typedef struct Pipe {
        uint8_t *buf;           /* NULL while nothing is pending: idle pipes hold no memory */
        gnutls_packet_t packet; /* c2t: the decrypted record buf points into, if any */
        size_t off, len;        /* pending bytes are buf[off..len) */
        uint64_t bytes;         /* moved so far, for the log */
        bool eof;               /* the source ended */
        bool shut;              /* the end was passed on to the sink */
        bool big;               /* buf is our own malloc(), not the pool's (a large PROXY header) */
} Pipe;

struct Conn {
        ConnServer *server;
        Conn *prev, *next;
        uint64_t id;
        ConnState state;

        int fd;                 /* client */
        int target_fd;
        gnutls_session_t session;
        Creds *creds;           /* the credential this handshake uses */
        CertBundle *bundle;     /* what conn_retrieve_certificate hands out */

        sd_event_source *io, *target_io;
        sd_event_source *deadline;      /* --connect-timeout, then --close-timeout */
        sd_event_source *lifetime;      /* --max-conn-lifetime */
        sd_event_source *resume;        /* continues a pump that used up its rounds */
        sd_event_source *dial_retry;    /* connect() again: a unix target's queue was full */
        usec_t dial_retry_delay;
        usec_t start;

        Pipe c2t, t2c;
        /* Records decrypted right after the one c2t holds, written to the
         * target together with it; a read result (an end, an error) met
         * while gathering them waits until they are written. */
        gnutls_packet_t c2t_next[C2T_BATCH - 1];
        unsigned n_c2t_next;
        ssize_t c2t_deferred;
        bool c2t_has_deferred;
        GateClass gate;         /* the first ClientHello's class (ALPN gate) */
        bool gate_decided;
        bool bundle_chosen;     /* a probe's certificate is picked once, even across HRR */
        bool refusal_logged;    /* a hook refused the handshake and said why */
        bool peer_checked;      /* verdict holds the client chain's verification and rules */
        VerifyVerdict verdict;
        unsigned verify_status; /* why verification failed (GNUTLS_CERT_*), or 0 */
        const char *verify_error; /* or this, when there is no status to print */
        bool send_blocked;      /* a TLS send (or bye) is waiting for POLLOUT */
        bool send_more;         /* more records follow this one at once: MSG_MORE */
        bool recv_wants_write;  /* a TLS read must write first (key update) */
        bool client_fin;        /* the client's TCP FIN, kept from GnuTLS (conn_pull()) */

        char sni[SNI_NAME_MAX + 1];     /* as the client sent it; "" for none */
        char peer[INET6_ADDRSTRLEN + 16];
        char id_str[24];
        char *client_cn;
};

static const char *const conn_state_table[_CONN_STATE_MAX] = {
        [CONN_HANDSHAKE] = "handshake",
        [CONN_DIALING] = "dialing",
        [CONN_PIPING] = "piping",
};

const char *conn_state_to_string(ConnState s) {
        return s >= 0 && s < _CONN_STATE_MAX ? conn_state_table[s] : NULL;
}

static bool quiet(const Conn *c, unsigned what) {
        return (c->server->config->quiet & what) != 0;
}

/* Time since accept, for the metrics. */
static usec_t conn_age(const Conn *c) {
        usec_t now = 0;

        (void) sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
        return now > c->start ? now - c->start : 0;
}

#define CONN_FIELDS(c)                                                                    \
        (LogField[]) {                                                                    \
                { "TLSGATE_PEER", (c)->peer }, { "TLSGATE_CONN_ID", (c)->id_str },         \
                        { "TLSGATE_CLIENT_CN", (c)->client_cn },                          \
                        { "TLSGATE_SNI", (c)->sni[0] ? (c)->sni : NULL },                 \
        }
#define conn_log(c, level, error, message_id, ...) \
        log_fields(level, error, message_id, CONN_FIELDS(c), 4, __VA_ARGS__)

static void conn_set_state(Conn *c, ConnState s) {
        conn_log(c, LOG_DEBUG, 0, NULL, "conn %s: %s -> %s", c->id_str,
                 conn_state_to_string(c->state), conn_state_to_string(s));
        c->state = s;
}

/* Gives the buffer back once its bytes are out (or the connection ends). */
static void pipe_release(ConnServer *s, Pipe *p) {
        if (p->packet) {
                gnutls_packet_deinit(p->packet);
                p->packet = NULL;
        } else if (p->big)
                free(p->buf);
        else
                bufpool_put(&s->bufpool, p->buf);
        p->buf = NULL;
        p->big = false;
        p->off = p->len = 0;
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

int conn_retrieve_certificate(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
                              gnutls_pcert_st **certs, unsigned *n_certs,
                              gnutls_ocsp_data_st **ocsp, unsigned *n_ocsp,
                              gnutls_privkey_t *key, unsigned *flags) {
        Conn *c = gnutls_session_get_ptr(session);

        if (!c || !c->bundle)
                return -1;
        /* The pointers stay valid until gnutls_deinit(): the connection holds
         * a reference to the bundle until then. */
        *certs = c->bundle->pcerts;
        *n_certs = c->bundle->n_pcerts;
        *key = c->bundle->key;
        /* The leaf's OCSP staple, if the bundle carries one (src/ocsp.c): it
         * lives as long as the bundle, and GnuTLS skips it after exptime. */
        if (c->bundle->staple.response.data) {
                *ocsp = &c->bundle->staple;
                *n_ocsp = 1;
        } else {
                *ocsp = NULL;
                *n_ocsp = 0;
        }
        *flags = 0;
        return 0;
}

static int conn_update_events(Conn *c);
static void conn_pump(Conn *c);
static int conn_schedule_resume(Conn *c);

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
static void conn_close(Conn *c) {
        if (c->state == CONN_PIPING && !quiet(c, QUIET_CONNS)) {
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
                if (!quiet(c, QUIET_HANDSHAKE_ERRS))
                        conn_log(c, LOG_WARNING, 0, MESSAGE_ID_HANDSHAKE_FAILED,
                                 "error on TLS handshake from %s: timed out after --connect-timeout",
                                 c->peer);
                break;
        case CONN_DIALING:
                metrics_dial_failed(c->server->metrics);
                if (!quiet(c, QUIET_CONN_ERRS))
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
        if (!quiet(c, QUIET_CONN_ERRS))
                conn_log(c, LOG_INFO, 0, NULL, "closing connection from %s: --max-conn-lifetime reached",
                         c->peer);
        conn_close(c);
        return 0;
}

static int conn_arm_deadline(Conn *c, usec_t timeout) {
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
        return sd_event_add_time(c->server->event, &c->deadline, CLOCK_MONOTONIC, now + timeout,
                                 0, on_deadline, c);
}

static void conn_log_handshake_error(Conn *c, const char *reason) {
        /* One line per refusal: a hook that refused already named the
         * reason, GnuTLS's generic error for it would only mislead. */
        if (c->refusal_logged)
                return;
        c->refusal_logged = true;
        if (!quiet(c, QUIET_HANDSHAKE_ERRS))
                conn_log(c, LOG_WARNING, 0, MESSAGE_ID_HANDSHAKE_FAILED,
                         "error on TLS handshake from %s: %s", c->peer, reason);
}

/* --- dialing ------------------------------------------------------------- */

static int on_target_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static void conn_dial_failed(Conn *c, int error) {
        char e[ERRNO_GO_MAX];

        metrics_dial_failed(c->server->metrics);
        if (!quiet(c, QUIET_CONN_ERRS))
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
                if (!quiet(c, QUIET_CONN_ERRS))
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
        if (!quiet(c, QUIET_CONNS))
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

static void conn_dial(Conn *c) {
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
        conn_dial_connect(c);
}

/* --- handshake ----------------------------------------------------------- */

static gnutls_typed_vdata_st client_purpose[] = {
        { .type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (unsigned char *) GNUTLS_KP_TLS_WWW_CLIENT },
};

/* The earliest notAfter of the chain and of the trust anchor that verified
 * it: a cached verdict must not outlive either. 0 if the anchor cannot be
 * found (then nothing is cached). */
static time_t chain_expiry(Conn *c, const gnutls_datum_t *peers, unsigned n) {
        gnutls_x509_trust_list_t tl = NULL;
        gnutls_x509_crt_t crt = NULL, issuer = NULL;
        time_t expires = (time_t) INT64_MAX;

        for (unsigned i = 0; i < n; i++) {
                if (gnutls_x509_crt_init(&crt) < 0)
                        return 0;
                if (gnutls_x509_crt_import(crt, &peers[i], GNUTLS_X509_FMT_DER) < 0) {
                        gnutls_x509_crt_deinit(crt);
                        return 0;
                }
                expires = MIN(expires, gnutls_x509_crt_get_expiration_time(crt));
                if (i + 1 < n)
                        gnutls_x509_crt_deinit(crt);
        }
        /* The anchor belongs to the trust list (no copy, no deinit). */
        gnutls_certificate_get_trust_list(c->creds->x509, &tl);
        if (!tl || gnutls_x509_trust_list_get_issuer(tl, crt, &issuer, 0) < 0 || !issuer)
                expires = 0;
        else
                expires = MIN(expires, gnutls_x509_crt_get_expiration_time(issuer));
        gnutls_x509_crt_deinit(crt);
        return expires > 0 ? expires : 0;
}

/* --allow-spki-pin (Ghostunnel's pin mode): the leaf's key must have one of
 * the pins, and that is all: neither the chain nor the leaf's dates or key
 * usage are checked, the trust list is not used. A mismatch fails the
 * handshake with bad_certificate, as Go's VerifyPeerCertificate error does.
 * Nothing is cached (creds_new() makes no cache with pins): hashing the key
 * costs about what the cache's lookup, a hash of the whole chain, does. */
static int conn_check_pin(Conn *c, const gnutls_datum_t *leaf) {
        gnutls_x509_crt_t crt = NULL;
        PeerIdentity id = {};
        int r;

        r = gnutls_x509_crt_init(&crt);
        if (r >= 0)
                r = gnutls_x509_crt_import(crt, leaf, GNUTLS_X509_FMT_DER);
        if (r < 0) {
                if (crt)
                        gnutls_x509_crt_deinit(crt);
                c->verify_error = "cannot parse the client certificate";
                return -EBADMSG;
        }
        r = spki_pins_match(c->creds->pins, c->creds->n_pins, crt);
        if (r < 0)
                c->verify_error = "cannot read the public key of the client certificate";
        else if (r > 0 && peer_identity_from_x509(crt, &id) < 0) {
                c->verify_error = "cannot parse the client certificate";
                r = -EBADMSG;
        }
        gnutls_x509_crt_deinit(crt);
        if (r < 0)
                return r;
        if (r == 0) {
                /* Ghostunnel's words for it. */
                c->verify_error = "unauthorized: pin verification failed";
                return -EPERM;
        }

        c->verdict.allowed = true;
        c->verdict.rule = "allow-spki-pin";
        c->verdict.cn = TAKE_PTR(id.cn);
        peer_identity_done(&id);
        c->peer_checked = true;
        return 0;
}

/* Verifies the client's chain with this connection's trust list and
 * applies its access rules, unless this exact chain was judged before by
 * the same generation (src/verify-cache.c): the result is in c->verdict.
 * With pins, checks the pins instead (conn_check_pin()).
 * Runs in the handshake (on_verify_peer) and, for a resumed session, which
 * skips that, after it: the chain may have expired or its CA changed. */
static int conn_check_peer(Conn *c) {
        const gnutls_datum_t *peers;
        unsigned n = 0, status = 0;
        gnutls_x509_crt_t crt = NULL;
        PeerIdentity id = {};
        time_t now = time(NULL), expires;
        int r;

        verify_verdict_done(&c->verdict);
        c->peer_checked = false;
        peers = gnutls_certificate_get_peers(c->session, &n);
        if (!peers || n == 0) {
                c->verify_error = "client did not present a certificate";
                return -ENOENT;
        }
        if (c->creds->n_pins > 0)
                return conn_check_pin(c, &peers[0]);
        r = verify_cache_lookup(c->creds->verified, peers, n, now, &c->verdict);
        if (r > 0) {
                metrics_verify_cached(c->server->metrics);
                c->peer_checked = true;
                return 0;
        }

        r = gnutls_certificate_verify_peers(c->session, client_purpose, 1, &status);
        if (r < 0) {
                c->verify_error = gnutls_strerror(r);
                return -EPERM;
        }
        if (status != 0) {
                c->verify_status = status;
                return -EPERM;
        }

        if (gnutls_x509_crt_init(&crt) < 0 ||
            gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) < 0 ||
            peer_identity_from_x509(crt, &id) < 0) {
                if (crt)
                        gnutls_x509_crt_deinit(crt);
                c->verify_error = "cannot parse the client certificate";
                return -EBADMSG;
        }
        gnutls_x509_crt_deinit(crt);
        c->verdict.allowed = authz_check(c->creds->access, &id, &c->verdict.rule) == AUTHZ_ALLOW;
        c->verdict.cn = TAKE_PTR(id.cn);
        peer_identity_done(&id);
        c->peer_checked = true;

        expires = chain_expiry(c, peers, n);
        if (expires > now)
                (void) verify_cache_insert(c->creds->verified, peers, n, expires, &c->verdict);
        return 0;
}

/* GnuTLS calls this when the client's Certificate arrives (before its
 * CertificateVerify is checked): a chain we do not trust ends the
 * handshake there. The verdict of the access rules is acted on once the
 * handshake is complete (conn_handshake_done). */
static int on_verify_peer(gnutls_session_t session) {
        Conn *c = gnutls_session_get_ptr(session);

        if (!c || conn_check_peer(c) < 0)
                return GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR;
        return 0;
}

/* Tells a refused client why, as Go (Ghostunnel) does, instead of a bare
 * TCP close: certificate_required (TLS 1.3) or bad_certificate (1.2) when
 * it showed none, unknown_ca / certificate_expired / bad_certificate when
 * its chain failed, GnuTLS's mapping for the rest (a malformed or
 * unexpected message, no shared cipher, ...). Nothing when the client is
 * gone or sent an alert itself. Best effort: the socket is closed next. */
static void conn_send_refusal_alert(Conn *c, int error) {
        gnutls_alert_description_t alert;
        unsigned n_peers = 0;

        switch (error) {
        case GNUTLS_E_PREMATURE_TERMINATION:
        case GNUTLS_E_PULL_ERROR:
        case GNUTLS_E_PUSH_ERROR:
        case GNUTLS_E_FATAL_ALERT_RECEIVED:
                return;
        case GNUTLS_E_CERTIFICATE_REQUIRED:
        case GNUTLS_E_NO_CERTIFICATE_FOUND:
        no_certificate:
                alert = gnutls_protocol_get_version(c->session) == GNUTLS_TLS1_3
                                ? GNUTLS_A_CERTIFICATE_REQUIRED
                                : GNUTLS_A_BAD_CERTIFICATE;
                break;
        case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
                if (c->verify_status & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED))
                        alert = GNUTLS_A_CERTIFICATE_EXPIRED;
                else if (c->verify_status & GNUTLS_CERT_SIGNER_NOT_FOUND)
                        alert = GNUTLS_A_UNKNOWN_CA;
                else if (c->verify_status == 0 &&
                         !gnutls_certificate_get_peers(c->session, &n_peers))
                        goto no_certificate;
                else
                        alert = GNUTLS_A_BAD_CERTIFICATE;
                break;
        default:
                (void) gnutls_alert_send_appropriate(c->session, error);
                return;
        }
        (void) gnutls_alert_send(c->session, GNUTLS_AL_FATAL, alert);
}

/* Closing a socket with unread bytes makes the kernel answer with a reset,
 * which can reach the client before it reads the alert just sent (its
 * next write then fails with a bare EOF). What the client sent so far (the
 * rest of its flight, a first request) is read and dropped first, a
 * bounded amount, so that the close is a FIN right behind the alert. */
static void conn_close_refused(Conn *c) {
        uint8_t scratch[4096];

        for (unsigned i = 0; i < 16; i++)
                if (recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT) <= 0)
                        break;
        conn_close(c);
}

static void conn_handshake_done(Conn *c) {
        /* The rules of the credential this connection was accepted with,
         * whose trust list also verified the chain: a reload during the
         * handshake changes neither. */
        const char *reason = NULL, *rule = NULL;

        if (c->gate == GATE_ACME_PROBE) {
                gnutls_datum_t alpn = {};
                bool ok = gnutls_alpn_get_selected_protocol(c->session, &alpn) >= 0 &&
                          alpn.size == strlen(ACME_TLS_ALPN_PROTOCOL) &&
                          memcmp(alpn.data, ACME_TLS_ALPN_PROTOCOL, alpn.size) == 0;
                /* A probe never reaches the target and gets no data. */
                conn_log(c, ok ? LOG_INFO : LOG_WARNING, 0, NULL,
                         ok ? "challenge probe from %s for %s completed"
                            : "challenge probe from %s for %s did not negotiate acme-tls/1, closing",
                         c->peer, c->sni[0] ? c->sni : "(no SNI)");
                (void) gnutls_bye(c->session, GNUTLS_SHUT_WR);
                return conn_close(c);
        }

        if (!c->creds->request_client_cert)
                goto allowed;

        /* A resumed session skipped the verification in the handshake. */
        if (!c->peer_checked && conn_check_peer(c) < 0) {
                if (c->verify_status)
                        reason = c->verify_status & GNUTLS_CERT_EXPIRED
                                         ? "resumed session's client certificate has expired"
                                         : "resumed session's client certificate is no longer trusted";
                else
                        reason = c->verify_error;
                conn_log_handshake_error(c, reason);
                metrics_handshake_failed(c->server->metrics, false);
                return conn_close(c);
        }
        /* The identity is the client's only now that it proved it holds the key. */
        c->client_cn = TAKE_PTR(c->verdict.cn);
        rule = c->verdict.rule;

        if (!c->verdict.allowed) {
                if (!quiet(c, QUIET_HANDSHAKE_ERRS))
                        conn_log(c, LOG_WARNING, 0, MESSAGE_ID_CLIENT_DENIED,
                                 "access denied for %s (CN=%s): no --allow rule matches the client certificate",
                                 c->peer, c->client_cn ? c->client_cn : "(none)");
                /* Best effort: tell a TLS 1.3 client, which saw the handshake
                 * succeed, why it is closed. */
                (void) gnutls_alert_send(c->session, GNUTLS_AL_FATAL, GNUTLS_A_ACCESS_DENIED);
                metrics_denied(c->server->metrics);
                return conn_close_refused(c);
        }
        conn_log(c, LOG_DEBUG, 0, NULL, "conn %s: client allowed by %s", c->id_str, rule);

allowed:
        conn_dial(c);
}

/* Takes the server name from the session once GnuTLS has parsed the
 * ClientHello (src/sni.c): for TLSGATE_SNI, a probe's challenge and the
 * PROXY header's authority. Kept when the session has none (yet). */
static void conn_update_sni(Conn *c) {
        char name[SNI_NAME_MAX + 1];

        sni_session_get(c->session, name);
        if (name[0])
                memcpy(c->sni, name, sizeof name);
}

static void conn_handshake_step(Conn *c) {
        int r;

        for (unsigned i = 0; i < PUMP_ROUNDS_MAX; i++) {
                r = gnutls_handshake(c->session);
                conn_update_sni(c);
                if (r == GNUTLS_E_SUCCESS) {
                        metrics_handshake_done(c->server->metrics, conn_age(c));
                        return conn_handshake_done(c);
                }
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                        (void) sd_event_source_set_io_events(
                                c->io, (gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN) | EPOLLET);
                        return;
                }
                if (!gnutls_error_is_fatal(r))
                        continue; /* a warning alert: go on */

                if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR && c->verify_status == 0 &&
                    c->verify_error)
                        conn_log_handshake_error(c, c->verify_error);
                else if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
                        gnutls_datum_t out = {};
                        if (gnutls_certificate_verification_status_print(
                                    c->verify_status, GNUTLS_CRT_X509, &out, 0) >= 0) {
                                _cleanup_free_ char *msg = NULL;
                                if (asprintf(&msg, "client certificate rejected: %s", out.data) >= 0)
                                        conn_log_handshake_error(c, msg);
                                gnutls_free(out.data);
                        } else
                                conn_log_handshake_error(c, gnutls_strerror(r));
                } else if (r == GNUTLS_E_NO_CERTIFICATE_FOUND || r == GNUTLS_E_CERTIFICATE_REQUIRED)
                        /* One wording for TLS 1.2 and 1.3 (whose GnuTLS
                         * error reads "Certificate is required."). */
                        conn_log_handshake_error(c, "client did not present a certificate");
                else
                        conn_log_handshake_error(c, gnutls_strerror(r));
                conn_send_refusal_alert(c, r);
                metrics_handshake_failed(c->server->metrics, false);
                return conn_close_refused(c);
        }
        /* Too many warnings in a row: let the loop breathe and come back
         * on the next iteration; the sources are edge-triggered, so no new
         * event would come for data that is already there. */
        if (conn_schedule_resume(c) < 0)
                conn_close(c);
}

/* --- piping -------------------------------------------------------------- */

/* Returns >0 on progress, 0 when blocked, <0 when the connection must end. */
static int pipe_read_tls(Conn *c) {
        Pipe *p = &c->c2t;
        ssize_t n;

        if (p->eof || p->len > 0)
                return 0;
        if (c->c2t_has_deferred) {
                n = c->c2t_deferred;
                c->c2t_has_deferred = false;
        } else {
                /* The decrypted record itself, not a copy of it: it is passed
                 * on as it is, and freed once written (pipe_release()). */
                n = gnutls_record_recv_packet(c->session, &p->packet);
                c->recv_wants_write = false;
        }
        if (n > 0) {
                gnutls_datum_t d;
                gnutls_packet_get(p->packet, &d, NULL);
                p->buf = d.data;
                p->off = 0;
                p->len = d.size;
                p->bytes += d.size;
                /* Whatever else already came goes out in the same write. */
                while (c->n_c2t_next < ELEMENTSOF(c->c2t_next)) {
                        gnutls_packet_t next = NULL;
                        n = gnutls_record_recv_packet(c->session, &next);
                        if (n <= 0) {
                                if (next)
                                        gnutls_packet_deinit(next);
                                if ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) &&
                                    !c->client_fin)
                                        c->recv_wants_write =
                                                gnutls_record_get_direction(c->session) == 1;
                                else {
                                        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                                                n = GNUTLS_E_PREMATURE_TERMINATION;
                                        c->c2t_deferred = n;
                                        c->c2t_has_deferred = true;
                                }
                                break;
                        }
                        gnutls_packet_get(next, &d, NULL);
                        p->bytes += d.size;
                        c->c2t_next[c->n_c2t_next++] = next;
                }
                return 1;
        }
        pipe_release(c->server, p);     /* an empty c2t holds nothing */
        if ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) && c->client_fin)
                n = GNUTLS_E_PREMATURE_TERMINATION;     /* all before the FIN is read */
        if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION) {
                /* close_notify, or a TCP FIN without one (conn_pull()): the
                 * client is done sending; pass the end on as a half-close
                 * and go on sending it what the target says. */
                conn_log(c, LOG_DEBUG, 0, NULL, "conn %s: client ended its side (%s)", c->id_str,
                         n == 0 ? "close_notify" : "TCP FIN without close_notify");
                p->eof = true;
                return 1;
        }
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                c->recv_wants_write = gnutls_record_get_direction(c->session) == 1;
                return 0;
        }
        if (n == GNUTLS_E_REHANDSHAKE) {
                /* A TLS 1.2 renegotiation could swap the client certificate
                 * under the authorization we made: refuse it. */
                if (!quiet(c, QUIET_CONN_ERRS))
                        conn_log(c, LOG_WARNING, 0, NULL,
                                 "closing connection from %s: client attempted renegotiation",
                                 c->peer);
                return -EPROTO;
        }
        if (!gnutls_error_is_fatal((int) n))
                return 1;
        if (!quiet(c, QUIET_CONN_ERRS))
                conn_log(c, LOG_INFO, 0, NULL, "error reading from client %s: %s", c->peer,
                         gnutls_strerror((int) n));
        return -EIO;
}

static int pipe_write_target(Conn *c) {
        Pipe *p = &c->c2t;
        ssize_t n;

        if (p->off < p->len) {
                struct iovec iov[C2T_BATCH];
                struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 1 };
                size_t done;

                iov[0] = (struct iovec) { p->buf + p->off, p->len - p->off };
                for (unsigned i = 0; i < c->n_c2t_next; i++) {
                        gnutls_datum_t d;
                        gnutls_packet_get(c->c2t_next[i], &d, NULL);
                        iov[mh.msg_iovlen++] = (struct iovec) { d.data, d.size };
                }
                n = sendmsg(c->target_fd, &mh, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        if (!quiet(c, QUIET_CONN_ERRS)) {
                                char e[ERRNO_GO_MAX];

                                conn_log(c, LOG_INFO, errno, NULL,
                                         "error writing to target %s for %s: %s",
                                         c->server->config->target.spec, c->peer,
                                         errno_go(errno, e, sizeof e));
                        }
                        return -errno;
                }
                /* Whole records written are freed; the first one left over
                 * takes the pipe's place. */
                for (done = (size_t) n;;) {
                        gnutls_datum_t d;

                        if (done < p->len - p->off) {
                                p->off += done;
                                break;
                        }
                        done -= p->len - p->off;
                        pipe_release(c->server, p);
                        if (c->n_c2t_next == 0)
                                break;
                        p->packet = c->c2t_next[0];
                        memmove(c->c2t_next, c->c2t_next + 1,
                                --c->n_c2t_next * sizeof c->c2t_next[0]);
                        gnutls_packet_get(p->packet, &d, NULL);
                        p->buf = d.data;
                        p->off = 0;
                        p->len = d.size;
                }
                return 1;
        }
        if (p->eof && !p->shut) {
                (void) shutdown(c->target_fd, SHUT_WR);
                p->shut = true;
                return 1;
        }
        return 0;
}

static int pipe_read_target(Conn *c) {
        Pipe *p = &c->t2c;
        ssize_t n;
        int error;

        if (p->eof || p->len > 0)
                return 0;
        if (!p->buf && !(p->buf = bufpool_get(&c->server->bufpool)))
                return log_oom();
        n = recv(c->target_fd, p->buf, PIPE_BUFFER_SIZE, 0);
        if (n > 0) {
                p->off = 0;
                p->len = (size_t) n;
                p->bytes += (uint64_t) n;
                return 1;
        }
        error = errno;
        pipe_release(c->server, p);     /* nothing came: hold no buffer while waiting */
        if (n == 0) {
                p->eof = true;
                return 1;
        }
        if (error == EAGAIN || error == EINTR)
                return 0;
        if (!quiet(c, QUIET_CONN_ERRS)) {
                char e[ERRNO_GO_MAX];

                conn_log(c, LOG_INFO, error, NULL, "error reading from target %s for %s: %s",
                         c->server->config->target.spec, c->peer, errno_go(error, e, sizeof e));
        }
        return -error;
}

static int pipe_write_tls(Conn *c) {
        Pipe *p = &c->t2c;
        ssize_t n;

        if (p->off < p->len) {
                /* After GNUTLS_E_AGAIN the same data must be offered again,
                 * which it is: off only moves on success. */
                c->send_more = p->len - p->off > gnutls_record_get_max_size(c->session);
                n = gnutls_record_send(c->session, p->buf + p->off, p->len - p->off);
                c->send_more = false;
                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                        c->send_blocked = true;
                        return 0;
                }
                c->send_blocked = false;
                if (n < 0) {
                        if (!quiet(c, QUIET_CONN_ERRS))
                                conn_log(c, LOG_INFO, 0, NULL, "error writing to client %s: %s",
                                         c->peer, gnutls_strerror((int) n));
                        return -EIO;
                }
                p->off += (size_t) n;
                if (p->off == p->len)
                        pipe_release(c->server, p);
                return 1;
        }
        if (p->eof && !p->shut) {
                /* close_notify, keeping the TCP connection open for the other
                 * direction. */
                n = gnutls_bye(c->session, GNUTLS_SHUT_WR);
                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                        c->send_blocked = true;
                        return 0;
                }
                c->send_blocked = false;
                p->shut = true;
                if (n < 0)
                        return -EIO;
                return 1;
        }
        return 0;
}

static int conn_update_events(Conn *c) {
        uint32_t ev = 0, tev = 0;
        int r;

        if ((!c->c2t.eof && c->c2t.len == 0) && !c->recv_wants_write)
                ev |= EPOLLIN;
        if (c->send_blocked || c->recv_wants_write)
                ev |= EPOLLOUT;
        if (!c->t2c.eof && c->t2c.len == 0)
                tev |= EPOLLIN;
        if (c->c2t.off < c->c2t.len)
                tev |= EPOLLOUT;

        /* A source with no events would still report EPOLLHUP and spin. */
        if (ev) {
                r = sd_event_source_set_io_events(c->io, ev | EPOLLET);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->io, SD_EVENT_ON);
        } else
                r = sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        if (r < 0)
                return r;
        if (tev) {
                r = sd_event_source_set_io_events(c->target_io, tev | EPOLLET);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->target_io, SD_EVENT_ON);
        } else
                r = sd_event_source_set_enabled(c->target_io, SD_EVENT_OFF);
        return r;
}

static int on_resume(sd_event_source *s, void *userdata) {
        Conn *c = userdata;

        if (c->state == CONN_HANDSHAKE)
                conn_handshake_step(c);
        else if (c->state == CONN_PIPING)
                conn_pump(c);
        return 0;
}

/* A pump that still had work when it used up its rounds continues on the
 * next loop iteration, after other connections had their turn: no epoll
 * event would wake it, since nothing it waits for is blocked. */
static int conn_schedule_resume(Conn *c) {
        if (c->resume)
                return sd_event_source_set_enabled(c->resume, SD_EVENT_ONESHOT);
        return sd_event_add_defer(c->server->event, &c->resume, on_resume, c);
}

static void conn_pump(Conn *c) {
        const Config *cfg = c->server->config;
        bool was_half_closed = c->c2t.shut || c->t2c.shut, moved = false;
        unsigned i;
        int r;

        for (i = 0; i < PUMP_ROUNDS_MAX; i++) {
                int progress = 0;

                /* Write before read: a buffer is refilled only once empty. */
                r = pipe_write_target(c);
                if (r < 0)
                        return conn_close(c);
                progress += r;
                r = pipe_write_tls(c);
                if (r < 0)
                        return conn_close(c);
                progress += r;
                r = pipe_read_tls(c);
                if (r < 0)
                        return conn_close(c);
                progress += r;
                r = pipe_read_target(c);
                if (r < 0)
                        return conn_close(c);
                progress += r;

                if (progress == 0)
                        break;
                moved = true;
        }

        if (c->c2t.shut && c->t2c.shut)
                return conn_close(c);

        if (c->c2t.shut || c->t2c.shut) {
                /* One direction ended: the other may idle for --close-timeout
                 * (0: close at once). The timer restarts whenever bytes move,
                 * so that it ends connections nobody uses any more, never a
                 * transfer still under way (a reply streamed after the
                 * client's end may take much longer than the timeout). */
                if (cfg->close_timeout == 0)
                        return conn_close(c);
                if ((!was_half_closed || moved) && conn_arm_deadline(c, cfg->close_timeout) < 0)
                        return conn_close(c);
        }

        if (conn_update_events(c) < 0 || (i == PUMP_ROUNDS_MAX && conn_schedule_resume(c) < 0))
                conn_close(c);
}

/* --- I/O dispatch -------------------------------------------------------- */

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Conn *c = userdata;

        if (c->state == CONN_HANDSHAKE)
                conn_handshake_step(c);
        else if (c->state == CONN_PIPING)
                conn_pump(c);
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

/* --- the ALPN gate (docs/HACKING.md, "GnuTLS handshake hooks and the ALPN gate") */

static int on_client_hello(gnutls_session_t session, unsigned htype, unsigned when,
                           unsigned incoming, const gnutls_datum_t *msg) {
        Conn *c = gnutls_session_get_ptr(session);
        GateHello hello;
        GateClass class;
        int r;

        if (!incoming || htype != GNUTLS_HANDSHAKE_CLIENT_HELLO || when != GNUTLS_HOOK_PRE)
                return 0;
        if (alpn_gate_parse_client_hello(msg->data, msg->size, &hello) < 0) {
                conn_log_handshake_error(c, "malformed ClientHello");
                return GNUTLS_E_UNEXPECTED_PACKET;
        }
        class = alpn_gate_classify(&hello);
        if (class == GATE_MALFORMED) {
                conn_log_handshake_error(c, "malformed ALPN extension");
                return GNUTLS_E_UNEXPECTED_PACKET;
        }
        if (c->gate_decided) {
                /* The second ClientHello after a HelloRetryRequest runs the
                 * hooks again: it must not change its class. */
                if (class != c->gate) {
                        conn_log_handshake_error(c, "second ClientHello changed its ALPN class");
                        return GNUTLS_E_UNEXPECTED_PACKET;
                }
                return 0;
        }
        c->gate = class;
        c->gate_decided = true;

        if (class == GATE_ACME_PROBE) {
                const gnutls_datum_t proto = { (unsigned char *) ACME_TLS_ALPN_PROTOCOL,
                                               sizeof(ACME_TLS_ALPN_PROTOCOL) - 1 };
                /* Only acme-tls/1, no fallback; no ticket, no cache entry. */
                r = gnutls_alpn_set_protocols(session, &proto, 1, GNUTLS_ALPN_MANDATORY);
                if (r >= 0)
                        r = gnutls_priority_set(session, c->creds->priority_probe);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int on_post_client_hello(gnutls_session_t session) {
        Conn *c = gnutls_session_get_ptr(session);

        conn_update_sni(c);
        if (c->gate == GATE_ACME_PROBE) {
                /* After a HelloRetryRequest this runs again, but GnuTLS keeps
                 * the certificate it retrieved the first time: swapping (and
                 * unreferencing) it now would free it under GnuTLS. */
                if (!c->bundle_chosen) {
                        CertBundle *b = challenges_lookup(c->server->challenges, c->sni);
                        /* No challenge pending for that name (a late or stray
                         * probe): the regular certificate, which any client sees
                         * anyway before it has to show its own, and nothing else. */
                        if (b) {
                                cert_bundle_unref(c->bundle);
                                c->bundle = b;
                        } else if (!c->bundle) {
                                conn_log_handshake_error(
                                        c, "challenge probe for a name with no pending challenge");
                                return GNUTLS_E_INSUFFICIENT_CREDENTIALS;
                        }
                        c->bundle_chosen = true;
                }
                gnutls_certificate_server_set_request(session, GNUTLS_CERT_IGNORE);
                return 0;
        }
        if (!c->bundle) {
                conn_log_handshake_error(c, "no certificate yet, the first one is still being obtained");
                return GNUTLS_E_INSUFFICIENT_CREDENTIALS;
        }
        return 0;
}

/* GnuTLS's reads from the client. Once piping, a TCP FIN is not shown to
 * GnuTLS as the end of the stream: without a close_notify before it, GnuTLS
 * would report a premature termination and invalidate the session, and the
 * rest of the target's reply could no longer be sent. The FIN is noted
 * instead and GnuTLS told to try again; pipe_read_tls() takes it as the
 * client's end. During the handshake a FIN stays an error, as it should. */
static ssize_t conn_pull(gnutls_transport_ptr_t ptr, void *buf, size_t size) {
        Conn *c = ptr;
        ssize_t n;

        n = recv(c->fd, buf, size, 0);
        if (n == 0 && c->state == CONN_PIPING) {
                c->client_fin = true;
                gnutls_transport_set_errno(c->session, EAGAIN);
                return -1;
        }
        if (n < 0)
                gnutls_transport_set_errno(c->session, errno);
        return n;
}

/* GnuTLS's writes to the client: records with more of them right behind
 * (a buffer from the target longer than one record) go out with MSG_MORE,
 * so that the kernel sends them as one segment train, not one each. */
static ssize_t conn_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt) {
        Conn *c = ptr;
        struct msghdr mh = { .msg_iov = (struct iovec *) iov, .msg_iovlen = (size_t) iovcnt };

        return sendmsg(c->fd, &mh, MSG_NOSIGNAL | (c->send_more ? MSG_MORE : 0));
}

static int conn_setup_session(Conn *c) {
        Creds *cr = c->creds;
        int r;

        r = gnutls_init(&c->session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
        if (r < 0)
                return errno_from_gnutls(r);
        gnutls_session_set_ptr(c->session, c);
        /* Server names with '_' are accepted (src/sni.c). */
        sni_session_enable(c->session);
        r = gnutls_priority_set(c->session, cr->priority);
        if (r >= 0)
                r = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, cr->x509);
        if (r >= 0 && c->server->ticket_key.size > 0)
                r = gnutls_session_ticket_enable_server(c->session, &c->server->ticket_key);
        if (r < 0)
                return errno_from_gnutls(r);
        if (cr->request_client_cert) {
                gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_REQUIRE);
                /* Chain verification during the handshake (conn_check_peer):
                 * no hostname, but the leaf must be fit for TLS client
                 * authentication (an absent extended key usage allows any
                 * purpose), as in Go. */
                gnutls_session_set_verify_function(c->session, on_verify_peer);
                /* With pins the CA bundle authenticates nobody: naming its
                 * CAs in the CertificateRequest would only make a strict
                 * client withhold a pinned certificate they did not issue. */
                if (cr->n_pins > 0)
                        gnutls_certificate_send_x509_rdn_sequence(c->session, 1);
        } else
                gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_IGNORE);
        if (c->server->challenges) {
                gnutls_handshake_set_hook_function(c->session, GNUTLS_HANDSHAKE_CLIENT_HELLO,
                                                   GNUTLS_HOOK_PRE, on_client_hello);
                gnutls_handshake_set_post_client_hello_function(c->session, on_post_client_hello);
        }
        /* Our own timer enforces --connect-timeout. */
        gnutls_handshake_set_timeout(c->session, 0);
        /* Reads through conn_pull(), writes through conn_push(). */
        gnutls_transport_set_ptr(c->session, c);
        gnutls_transport_set_pull_function(c->session, conn_pull);
        gnutls_transport_set_vec_push_function(c->session, conn_push);
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
        r = conn_arm_deadline(c, s->config->connect_timeout);
        if (r < 0)
                goto fail;
        if (s->config->max_conn_lifetime > 0) {
                r = sd_event_add_time_relative(s->event, &c->lifetime, CLOCK_MONOTONIC,
                                               s->config->max_conn_lifetime, 0, on_lifetime, c);
                if (r < 0)
                        goto fail;
        }
        conn_log(c, LOG_DEBUG, 0, NULL, "conn %s: accepted from %s", c->id_str, c->peer);
        if (ret)
                *ret = c;
        return 0;
fail:
        conn_free(c);
        return r;
}
