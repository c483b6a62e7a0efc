/* SPDX-License-Identifier: MIT */
/* The client's certificate: its chain against this generation's trust
 * list, --allow-spki-pin, the access rules; what a refused client is told. */

#include "authz.h"
#include "conn-internal.h"
#include "metrics.h"
#include "verify-cache.h"

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
 * Runs in the handshake (conn_on_verify_peer) and, for a resumed session, which
 * skips that, after it: the chain may have expired or its CA changed. */
int conn_check_peer(Conn *c) {
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
int conn_on_verify_peer(gnutls_session_t session) {
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
void conn_send_refusal_alert(Conn *c, int error) {
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
void conn_close_refused(Conn *c) {
        uint8_t scratch[4096];

        for (unsigned i = 0; i < 16; i++)
                if (recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT) <= 0)
                        break;
        conn_close(c);
}

void conn_handshake_done(Conn *c) {
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
                if (!conn_quiet(c, QUIET_HANDSHAKE_ERRS))
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
