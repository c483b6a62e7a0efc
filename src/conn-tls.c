/* SPDX-License-Identifier: MIT */
/* The GnuTLS session of a connection: its transport, the certificate it
 * serves, the ALPN gate's hooks and the handshake. */

#include <stdio.h>

#include "alpn-gate.h"
#include "challenges.h"
#include "conn-internal.h"
#include "metrics.h"
#include "sni.h"

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

/* Takes the server name from the session once GnuTLS has parsed the
 * ClientHello (src/sni.c): for TLSGATE_SNI, a probe's challenge and the
 * PROXY header's authority. Kept when the session has none (yet). */
static void conn_update_sni(Conn *c) {
        char name[SNI_NAME_MAX + 1];

        sni_session_get(c->session, name);
        if (name[0])
                memcpy(c->sni, name, sizeof name);
}

void conn_handshake_step(Conn *c) {
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
ssize_t conn_pull(gnutls_transport_ptr_t ptr, void *buf, size_t size) {
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

int conn_setup_session(Conn *c) {
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
                gnutls_session_set_verify_function(c->session, conn_on_verify_peer);
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
