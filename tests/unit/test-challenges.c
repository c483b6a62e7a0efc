/* SPDX-License-Identifier: MIT */
/* Challenge certificates parsed back with GnuTLS and checked the way an
 * ACME validator does (RFC 8737 section 3; docs/HACKING.md, "TLS-ALPN-01 as
 * a validator checks it"); the registry; and a whole TLS-ALPN-01 probe in
 * process: a GnuTLS server with the gate's two hooks and a retrieve
 * function, a GnuTLS client offering exactly acme-tls/1, over a socketpair. */

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "alpn-gate.h"
#include "challenges.h"
#include "jws.h"
#include "config.h"
#include "sni.h"
#include "test-util.h"

static const uint8_t digest_a[32] = {
        0x94, 0x23, 0x3b, 0x71, 0x9c, 0x90, 0x5d, 0xc5, 0x47, 0x2b, 0x69,
        0xe7, 0x5b, 0x78, 0xe3, 0x02, 0x13, 0x53, 0xdc, 0x5b, 0xe6, 0xd7,
        0xc5, 0x0d, 0xfa, 0x45, 0x99, 0x66, 0x49, 0xca, 0xa1, 0x83,
};

static void test_digest(void) {
        uint8_t d[ACME_TLS_ALPN_DIGEST_SIZE];

        /* A key authorization is token "." base64url(JWK thumbprint). */
        CHECK_INT_EQ(acme_tls_alpn_digest("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA."
                                      "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI",
                                      d),
                     0);
        CHECK(memcmp(d, digest_a, sizeof d) == 0);
        CHECK_INT_EQ(acme_tls_alpn_digest(NULL, d), -EINVAL);
}

static gnutls_x509_crt_t crt_of(const gnutls_datum_t *der) {
        gnutls_x509_crt_t crt;

        if (gnutls_x509_crt_init(&crt) < 0)
                abort();
        if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) < 0) {
                gnutls_x509_crt_deinit(crt);
                return NULL;
        }
        return crt;
}

/* Everything a validator looks at, plus what makes the certificate usable. */
static void check_challenge_crt(gnutls_x509_crt_t crt, const char *domain, const uint8_t *digest) {
        char san[300];
        size_t san_size = sizeof san;
        unsigned critical = 0, crit_dummy;
        gnutls_datum_t ext = {}, x = {}, y = {};
        gnutls_ecc_curve_t curve = 0;
        unsigned char serial[32];
        size_t serial_size = sizeof serial;
        unsigned key_usage = 0;
        time_t now = time(NULL);
        int r;

        /* Exactly one SAN, a dNSName equal to the domain. */
        r = gnutls_x509_crt_get_subject_alt_name(crt, 0, san, &san_size, &crit_dummy);
        CHECK_INT_EQ(r, GNUTLS_SAN_DNSNAME);
        CHECK(san_size == strlen(domain) && memcmp(san, domain, san_size) == 0);
        san_size = sizeof san;
        CHECK_INT_EQ(gnutls_x509_crt_get_subject_alt_name(crt, 1, san, &san_size, &crit_dummy),
                     GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);

        /* The acmeIdentifier extension: present once, critical, 04 20 || digest. */
        r = gnutls_x509_crt_get_extension_by_oid2(crt, ACME_IDENTIFIER_OID, 0, &ext, &critical);
        if (CHECK(r == 0)) {
                CHECK_INT_EQ(critical, 1);
                CHECK_INT_EQ(ext.size, 34);
                CHECK(ext.size == 34 && ext.data[0] == 0x04 && ext.data[1] == 0x20 &&
                      memcmp(ext.data + 2, digest, 32) == 0);
                gnutls_free(ext.data);
        }
        CHECK_INT_EQ(gnutls_x509_crt_get_extension_by_oid2(crt, ACME_IDENTIFIER_OID, 1, &ext,
                                                           &critical),
                     GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);

        /* A P-256 key. */
        CHECK_INT_EQ(gnutls_x509_crt_get_pk_algorithm(crt, NULL), GNUTLS_PK_ECDSA);
        if (CHECK(gnutls_x509_crt_get_pk_ecc_raw(crt, &curve, &x, &y) == 0)) {
                CHECK_INT_EQ(curve, GNUTLS_ECC_CURVE_SECP256R1);
                gnutls_free(x.data);
                gnutls_free(y.data);
        }

        /* Usable: v3, positive minimal serial, valid now, self-signed. */
        CHECK_INT_EQ(gnutls_x509_crt_get_version(crt), 3);
        CHECK(gnutls_x509_crt_get_serial(crt, serial, &serial_size) == 0);
        CHECK(serial_size == 16 && serial[0] >= 0x01 && serial[0] <= 0x7f);
        CHECK(gnutls_x509_crt_get_activation_time(crt) <= now - 3500);
        CHECK(gnutls_x509_crt_get_expiration_time(crt) > now + 6 * 24 * 3600);
        CHECK(gnutls_x509_crt_get_expiration_time(crt) <= now + 7 * 24 * 3600 + 60);
        CHECK(gnutls_x509_crt_get_key_usage(crt, &key_usage, &crit_dummy) >= 0 &&
              key_usage == GNUTLS_KEY_DIGITAL_SIGNATURE);
        {
                unsigned status = ~0U;
                CHECK(gnutls_x509_crt_verify(crt, &crt, 1, 0, &status) == 0 && status == 0);
        }
}

static void test_cert(void) {
        _cleanup_(cert_bundle_unrefp) CertBundle *b = NULL, *b2 = NULL;
        gnutls_x509_crt_t crt, crt2;
        const gnutls_datum_t data = { (unsigned char *) "proof of possession", 19 };
        gnutls_datum_t sig = {};
        gnutls_pubkey_t pub;

        if (!CHECK(challenge_cert_new("example.org", digest_a, &b) == 0))
                return;
        CHECK_INT_EQ(b->n_ref, 1);
        CHECK_INT_EQ(b->n_pcerts, 1);
        CHECK(b->key != NULL);
        CHECK_CONTAINS(b->subject, "CN=");
        crt = crt_of(&b->pcerts[0].cert);
        if (!CHECK(crt))
                return;
        check_challenge_crt(crt, "example.org", digest_a);
        CHECK(b->not_after == gnutls_x509_crt_get_expiration_time(crt));

        /* The bundle's key is the certificate's key. */
        CHECK_INT_EQ(gnutls_privkey_get_pk_algorithm(b->key, NULL), GNUTLS_PK_ECDSA);
        if (CHECK(gnutls_privkey_sign_data(b->key, GNUTLS_DIG_SHA256, 0, &data, &sig) == 0) &&
            CHECK(gnutls_pubkey_init(&pub) == 0)) {
                CHECK(gnutls_pubkey_import_x509(pub, crt, 0) == 0);
                CHECK(gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_ECDSA_SHA256, 0, &data, &sig) >=
                      0);
                gnutls_pubkey_deinit(pub);
        }
        gnutls_free(sig.data);

        /* Every certificate is new: fresh key, fresh serial. */
        if (CHECK(challenge_cert_new("example.org", digest_a, &b2) == 0)) {
                unsigned char s1[32], s2[32], k1[64], k2[64];
                size_t n1 = sizeof s1, n2 = sizeof s2, l1 = sizeof k1, l2 = sizeof k2;

                crt2 = crt_of(&b2->pcerts[0].cert);
                if (CHECK(crt2)) {
                        CHECK(gnutls_x509_crt_get_serial(crt, s1, &n1) == 0 &&
                              gnutls_x509_crt_get_serial(crt2, s2, &n2) == 0 &&
                              (n1 != n2 || memcmp(s1, s2, n1) != 0));
                        CHECK(gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, k1,
                                                         &l1) == 0 &&
                              gnutls_x509_crt_get_key_id(crt2, GNUTLS_KEYID_USE_SHA256, k2,
                                                         &l2) == 0 &&
                              (l1 != l2 || memcmp(k1, k2, l1) != 0));
                        gnutls_x509_crt_deinit(crt2);
                }
        }
        gnutls_x509_crt_deinit(crt);

        /* A long name (up to 253) still makes a certificate: the CN does
         * not carry it. */
        {
                char name[254];
                CertBundle *lb = NULL;

                memset(name, 'a', 253);
                for (size_t i = 63; i < 253; i += 64)
                        name[i] = '.';
                name[253] = '\0';
                if (CHECK(challenge_cert_new(name, digest_a, &lb) == 0)) {
                        crt = crt_of(&lb->pcerts[0].cert);
                        if (CHECK(crt)) {
                                check_challenge_crt(crt, name, digest_a);
                                gnutls_x509_crt_deinit(crt);
                        }
                        cert_bundle_unref(lb);
                }
        }

        /* Names that are no DNS identifier. */
        {
                static const char *const bad[] = {
                        "", "*.example.org", "a..b", ".example.org", "example.org.", "ex ample.org",
                        "exa\xc3\xa9mple.org", "example.org/x", "a:b",
                        /* a 64-character label */
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org",
                };
                char longname[256];
                CertBundle *x = NULL;

                for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                        CHECK_INT_EQ(challenge_cert_new(bad[i], digest_a, &x), -EINVAL);
                memset(longname, 'a', 254);
                for (size_t i = 63; i < 254; i += 64)
                        longname[i] = '.';
                longname[254] = '\0';
                CHECK_INT_EQ(challenge_cert_new(longname, digest_a, &x), -EINVAL);
                CHECK_INT_EQ(challenge_cert_new(NULL, digest_a, &x), -EINVAL);
                CHECK_INT_EQ(challenge_cert_new("example.org", NULL, &x), -EINVAL);
                CHECK(x == NULL);
        }
}

static void test_registry(void) {
        _cleanup_(challenges_freep) Challenges *c = NULL;
        uint8_t digest_b[32];
        CertBundle *b1, *b2, *old;
        gnutls_x509_crt_t crt;

        memset(digest_b, 0xbb, sizeof digest_b);
        if (!CHECK(challenges_new(&c) == 0))
                return;
        CHECK_INT_EQ(challenges_count(c), 0);
        CHECK(challenges_lookup(c, "example.org") == NULL);

        CHECK_INT_EQ(challenges_add(c, "example.org", digest_a), 0);
        CHECK_INT_EQ(challenges_add(c, "Other.Example", digest_b), 0);
        CHECK_INT_EQ(challenges_count(c), 2);

        /* Case-insensitive, one entry per name, a reference per lookup. */
        b1 = challenges_lookup(c, "example.org");
        b2 = challenges_lookup(c, "EXAMPLE.Org");
        CHECK(b1 && b1 == b2);
        CHECK(b1 && b1->n_ref == 3);
        cert_bundle_unref(b2);
        b2 = challenges_lookup(c, "other.example");
        if (CHECK(b2)) {
                crt = crt_of(&b2->pcerts[0].cert);
                if (CHECK(crt)) {
                        /* The SAN is the name as added. */
                        check_challenge_crt(crt, "Other.Example", digest_b);
                        gnutls_x509_crt_deinit(crt);
                }
                cert_bundle_unref(b2);
        }

        /* No partial, suffix, prefix or trailing-dot matches. */
        CHECK(challenges_lookup(c, "example.or") == NULL);
        CHECK(challenges_lookup(c, "xexample.org") == NULL);
        CHECK(challenges_lookup(c, "www.example.org") == NULL);
        CHECK(challenges_lookup(c, "example.org.") == NULL);
        CHECK(challenges_lookup(c, "example.orgx") == NULL);
        CHECK(challenges_lookup(c, "unknown.example") == NULL);
        CHECK(challenges_lookup(c, "") == NULL);
        CHECK(challenges_lookup(c, NULL) == NULL);
        CHECK(challenges_lookup(NULL, "example.org") == NULL);

        /* A new challenge for the same name replaces the old; a handshake
         * holding the old certificate keeps it intact. */
        old = b1;
        CHECK_INT_EQ(challenges_add(c, "EXAMPLE.ORG", digest_b), 0);
        CHECK_INT_EQ(challenges_count(c), 2);
        CHECK_INT_EQ(old->n_ref, 1);
        crt = crt_of(&old->pcerts[0].cert);
        if (CHECK(crt)) {
                check_challenge_crt(crt, "example.org", digest_a);
                gnutls_x509_crt_deinit(crt);
        }
        b1 = challenges_lookup(c, "example.org");
        CHECK(b1 && b1 != old);
        if (b1) {
                crt = crt_of(&b1->pcerts[0].cert);
                if (CHECK(crt)) {
                        check_challenge_crt(crt, "EXAMPLE.ORG", digest_b);
                        gnutls_x509_crt_deinit(crt);
                }
        }
        cert_bundle_unref(old);

        /* Remove; the handshake's reference stays good. */
        CHECK_INT_EQ(challenges_remove(c, "Example.org"), 0);
        CHECK_INT_EQ(challenges_count(c), 1);
        CHECK(challenges_lookup(c, "example.org") == NULL);
        CHECK_INT_EQ(challenges_remove(c, "example.org"), -ENOENT);
        CHECK_INT_EQ(challenges_remove(c, NULL), -ENOENT);
        CHECK(b1 && b1->n_ref == 1 && b1->n_pcerts == 1);
        cert_bundle_unref(b1);
        b2 = challenges_lookup(c, "other.example");
        CHECK(b2 != NULL);
        cert_bundle_unref(b2);

        /* Bad input leaves the registry alone. */
        CHECK_INT_EQ(challenges_add(c, "*.example.org", digest_a), -EINVAL);
        CHECK_INT_EQ(challenges_add(c, NULL, digest_a), -EINVAL);
        CHECK_INT_EQ(challenges_add(NULL, "example.org", digest_a), -EINVAL);
        CHECK_INT_EQ(challenges_count(c), 1);

        /* Growth, and removal from the middle. */
        for (unsigned i = 0; i < 20; i++) {
                char name[32];
                snprintf(name, sizeof name, "n%u.example", i);
                CHECK_INT_EQ(challenges_add(c, name, digest_a), 0);
        }
        CHECK_INT_EQ(challenges_count(c), 21);
        CHECK_INT_EQ(challenges_remove(c, "n7.example"), 0);
        CHECK(challenges_lookup(c, "n7.example") == NULL);
        for (unsigned i = 0; i < 20; i++) {
                char name[32];
                CertBundle *b;

                if (i == 7)
                        continue;
                snprintf(name, sizeof name, "N%u.EXAMPLE", i);
                b = challenges_lookup(c, name);
                CHECK(b != NULL);
                cert_bundle_unref(b);
        }
        /* challenges_free() with entries left: ASan checks nothing leaks. */
}

/* --- a probe end to end ---------------------------------------------------- */

/* The server side of one connection, wired the way conn.c is to wire the
 * gate (docs/HACKING.md, "GnuTLS handshake hooks and the ALPN gate"). */
typedef struct Server {
        Challenges *challenges;
        CertBundle *served;             /* for normal clients */
        gnutls_priority_t priority, priority_probe;
        gnutls_certificate_credentials_t cred;
        gnutls_datum_t ticket_key;

        /* per session */
        CertBundle *bundle;             /* what retrieve hands out */
        unsigned n_hellos, n_post_hello, n_retrieve;
        GateClass cls;
        char sni[SNI_NAME_MAX + 1];
} Server;

static int gate_pre_hook(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                         const gnutls_datum_t *msg) {
        static const gnutls_datum_t acme = { (unsigned char *) ACME_TLS_ALPN_PROTOCOL,
                                             sizeof ACME_TLS_ALPN_PROTOCOL - 1 };
        Server *sv = gnutls_session_get_ptr(s);
        GateClass cls;
        GateHello h;
        int r;

        if (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO || when != GNUTLS_HOOK_PRE || !incoming)
                return 0;
        cls = alpn_gate_parse_client_hello(msg->data, msg->size, &h) < 0 ? GATE_MALFORMED
                                                                         : alpn_gate_classify(&h);
        if (cls == GATE_MALFORMED)
                return GNUTLS_E_RECEIVED_ILLEGAL_EXTENSION;
        if (sv->n_hellos++ > 0)
                /* After a HelloRetryRequest: same class, and no second
                 * gnutls_alpn_set_protocols(). */
                return cls == sv->cls ? 0 : GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER;
        sv->cls = cls;
        if (cls != GATE_ACME_PROBE)
                return 0;
        r = gnutls_alpn_set_protocols(s, &acme, 1, GNUTLS_ALPN_MANDATORY);
        if (r < 0)
                return r;
        return gnutls_priority_set(s, sv->priority_probe);
}

static int gate_post_client_hello(gnutls_session_t s) {
        Server *sv = gnutls_session_get_ptr(s);

        sv->n_post_hello++;
        /* The name as GnuTLS parsed it, with src/sni.c's handler. */
        sni_session_get(s, sv->sni);
        if (sv->cls != GATE_ACME_PROBE)
                return 0;
        if (sv->bundle == sv->served) {
                CertBundle *b = challenges_lookup(sv->challenges, sv->sni);

                if (!b)
                        return GNUTLS_E_UNRECOGNIZED_NAME;
                cert_bundle_unref(sv->bundle);
                sv->bundle = b;
        }
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_IGNORE);
        return 0;
}

static int retrieve(gnutls_session_t s, const struct gnutls_cert_retr_st *info,
                    gnutls_pcert_st **certs, unsigned *n_certs, gnutls_ocsp_data_st **ocsp,
                    unsigned *n_ocsp, gnutls_privkey_t *key, unsigned *flags) {
        Server *sv = gnutls_session_get_ptr(s);

        sv->n_retrieve++;
        *certs = sv->bundle->pcerts;
        *n_certs = sv->bundle->n_pcerts;
        *key = sv->bundle->key;
        *ocsp = NULL;
        *n_ocsp = 0;
        *flags = 0;
        return 0;
}

typedef struct Client {
        int fd;
        const char *priority;
        const char *const *alpn;
        unsigned n_alpn;
        const char *sni;

        int result;
        bool got_ticket;
        char alpn_selected[32];
        gnutls_datum_t peer_der;        /* leaf the server sent */
} Client;

static void *client_thread(void *userdata) {
        Client *cl = userdata;
        gnutls_certificate_credentials_t cred;
        gnutls_session_t s;
        gnutls_datum_t protos[4], sel;
        const gnutls_datum_t *peers;
        unsigned n_peers = 0;

        if (gnutls_certificate_allocate_credentials(&cred) < 0 ||
            gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL) < 0)
                abort();
        if (gnutls_priority_set_direct(s, cl->priority, NULL) < 0 ||
            gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) < 0)
                abort();
        for (unsigned i = 0; i < cl->n_alpn; i++)
                protos[i] = (gnutls_datum_t) { (unsigned char *) cl->alpn[i],
                                               (unsigned) strlen(cl->alpn[i]) };
        if (cl->n_alpn > 0 && gnutls_alpn_set_protocols(s, protos, cl->n_alpn, 0) < 0)
                abort();
        if (cl->sni && gnutls_server_name_set(s, GNUTLS_NAME_DNS, cl->sni, strlen(cl->sni)) < 0)
                abort();
        gnutls_transport_set_int(s, cl->fd);
        /* Like the validator: no client certificate, no chain verification. */
        do
                cl->result = gnutls_handshake(s);
        while (cl->result < 0 && !gnutls_error_is_fatal(cl->result));
        if (cl->result == 0) {
                if (gnutls_alpn_get_selected_protocol(s, &sel) == 0 &&
                    sel.size < sizeof cl->alpn_selected) {
                        memcpy(cl->alpn_selected, sel.data, sel.size);
                        cl->alpn_selected[sel.size] = '\0';
                }
                peers = gnutls_certificate_get_peers(s, &n_peers);
                if (peers && n_peers > 0) {
                        cl->peer_der.data = malloc(peers[0].size);
                        if (!cl->peer_der.data)
                                abort();
                        memcpy(cl->peer_der.data, peers[0].data, peers[0].size);
                        cl->peer_der.size = peers[0].size;
                }
                /* Until the server's close_notify: a NewSessionTicket
                 * would come before it. */
                char b;
                while (gnutls_record_recv(s, &b, 1) > 0)
                        ;
                cl->got_ticket = gnutls_session_get_flags(s) & GNUTLS_SFLAGS_SESSION_TICKET;
                (void) gnutls_bye(s, GNUTLS_SHUT_WR);
        }
        gnutls_deinit(s);
        gnutls_certificate_free_credentials(cred);
        return NULL;
}

/* One handshake: the server in this thread, the client in another. Returns
 * the server's handshake result. */
static int run_handshake(Server *sv, Client *cl, gnutls_session_t *ret_session) {
        gnutls_session_t s;
        pthread_t t;
        int sv_fds[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv_fds) < 0)
                abort();
        cl->fd = sv_fds[1];
        if (pthread_create(&t, NULL, client_thread, cl) != 0)
                abort();

        sv->bundle = cert_bundle_ref(sv->served);
        sv->n_hellos = sv->n_post_hello = sv->n_retrieve = 0;
        sv->cls = GATE_NORMAL;
        sv->sni[0] = '\0';

        /* As conn_setup_session() does it today. */
        if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL) < 0)
                abort();
        gnutls_session_set_ptr(s, sv);
        sni_session_enable(s);
        if (gnutls_priority_set(s, sv->priority) < 0 ||
            gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, sv->cred) < 0)
                abort();
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert(s, NULL, 0);
        gnutls_handshake_set_timeout(s, 0);
        if (gnutls_session_ticket_enable_server(s, &sv->ticket_key) < 0)
                abort();
        /* The gate. */
        gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_PRE,
                                           gate_pre_hook);
        gnutls_handshake_set_post_client_hello_function(s, gate_post_client_hello);
        gnutls_transport_set_int(s, sv_fds[0]);

        do
                r = gnutls_handshake(s);
        while (r < 0 && !gnutls_error_is_fatal(r));
        if (r < 0)
                close(sv_fds[0]); /* the client sees the end */
        else {
                /* End our side, then read up to the client's close_notify. */
                char b;
                (void) gnutls_bye(s, GNUTLS_SHUT_WR);
                while (gnutls_record_recv(s, &b, 1) > 0)
                        ;
        }
        pthread_join(t, NULL);
        if (r >= 0)
                close(sv_fds[0]);
        close(sv_fds[1]);
        if (ret_session)
                *ret_session = s;
        else
                gnutls_deinit(s);
        /* Only after gnutls_deinit() may the bundle go (see conn_free()). */
        return r;
}

static void server_done_session(Server *sv, gnutls_session_t s) {
        if (s)
                gnutls_deinit(s);
        sv->bundle = cert_bundle_unref(sv->bundle);
}

/* The daemon's priority plus extra; for probes also %NO_TICKETS, which
 * replaces it in the pre hook (so anything else must be in both). */
static void server_set_priorities(Server *sv, const char *base, const char *extra,
                                  bool no_tickets) {
        _cleanup_free_ char *p = NULL, *pp = NULL;

        if (sv->priority)
                gnutls_priority_deinit(sv->priority);
        if (sv->priority_probe)
                gnutls_priority_deinit(sv->priority_probe);
        if (asprintf(&p, "%s%s", base, extra) < 0 ||
            asprintf(&pp, "%s%s%s", base, extra, no_tickets ? ":%NO_TICKETS" : "") < 0)
                abort();
        if (gnutls_priority_init(&sv->priority, p, NULL) < 0 ||
            gnutls_priority_init(&sv->priority_probe, pp, NULL) < 0)
                abort();
}

static void test_probe_end_to_end(void) {
        static const char *const probe[] = { ACME_TLS_ALPN_PROTOCOL };
        static const char *const with_h2[] = { ACME_TLS_ALPN_PROTOCOL, "h2" };
        static const char *const h2[] = { "h2" };
        _cleanup_free_ char *prio = NULL;
        Server sv = {};
        Config cfg;
        uint8_t zero[32] = {};
        gnutls_session_t s;
        int r;

        config_init(&cfg);
        if (!CHECK(creds_priority_string(&cfg, &prio) == 0))
                return;
        config_done(&cfg);
        if (gnutls_certificate_allocate_credentials(&sv.cred) < 0 ||
            challenges_new(&sv.challenges) < 0 ||
            challenge_cert_new("served.example", zero, &sv.served) < 0 ||
            gnutls_session_ticket_key_generate(&sv.ticket_key) < 0)
                abort();
        gnutls_certificate_set_retrieve_function3(sv.cred, retrieve);
        CHECK_INT_EQ(challenges_add(sv.challenges, "example.org", digest_a), 0);

        const struct {
                const char *what;
                const char *client_priority;
                const char *server_extra;      /* appended to the daemon's priority */
                unsigned hellos;
                bool no_tickets;
        } ok[] = {
                { "TLS 1.3", "NORMAL", "", 1, true },
                { "TLS 1.2", "NORMAL:-VERS-ALL:+VERS-TLS1.2", "", 1, true },
                /* The client's key shares are for X25519 and P-256. */
                { "TLS 1.3 after HelloRetryRequest", "NORMAL", ":-GROUP-ALL:+GROUP-SECP384R1", 2,
                  true },
                /* Controls: the ticket check below can fail. */
                { "TLS 1.3 without %NO_TICKETS", "NORMAL", "", 1, false },
                { "TLS 1.2 without %NO_TICKETS", "NORMAL:-VERS-ALL:+VERS-TLS1.2", "", 1, false },
        };
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                Client cl = {
                        .priority = ok[i].client_priority,
                        .alpn = probe,
                        .n_alpn = 1,
                        .sni = "Example.ORG",
                };
                gnutls_datum_t sel;

                fprintf(stderr, "probe: %s\n", ok[i].what);
                server_set_priorities(&sv, prio, ok[i].server_extra, ok[i].no_tickets);
                r = run_handshake(&sv, &cl, &s);
                CHECK_INT_EQ(r, 0);
                CHECK_INT_EQ(cl.result, 0);
                CHECK_INT_EQ(sv.n_hellos, ok[i].hellos);
                CHECK_INT_EQ(sv.n_post_hello, ok[i].hellos);
                CHECK_INT_EQ(sv.cls, GATE_ACME_PROBE);
                CHECK_STR_EQ(sv.sni, "Example.ORG"); /* as sent: the lookup ignores case */
                CHECK(sv.n_retrieve >= 1);
                CHECK_STR_EQ(cl.alpn_selected, ACME_TLS_ALPN_PROTOCOL);
                /* The server side sees the same: conn.c closes here. */
                CHECK(gnutls_alpn_get_selected_protocol(s, &sel) == 0 && sel.size == 10 &&
                      memcmp(sel.data, ACME_TLS_ALPN_PROTOCOL, 10) == 0);
                CHECK(gnutls_certificate_get_peers(s, &(unsigned) { 0 }) == NULL);
                /* A probe's session must not be resumable: it was never
                 * asked for a certificate. */
                CHECK(cl.got_ticket == !ok[i].no_tickets);
                if (CHECK(cl.peer_der.data)) {
                        gnutls_x509_crt_t crt = crt_of(&cl.peer_der);
                        if (CHECK(crt)) {
                                check_challenge_crt(crt, "example.org", digest_a);
                                gnutls_x509_crt_deinit(crt);
                        }
                }
                free(cl.peer_der.data);
                server_done_session(&sv, s);
        }

        /* Refused: a probe for a name with nothing pending; normal clients
         * without a client certificate, whatever they offer; a probe whose
         * SNI is missing. */
        static const struct {
                const char *what;
                const char *const *alpn;
                unsigned n_alpn;
                const char *sni;
                GateClass cls;
        } refused[] = {
                { "probe, unknown name", probe, 1, "unknown.example", GATE_ACME_PROBE },
                { "probe, no SNI", probe, 1, NULL, GATE_ACME_PROBE },
                { "acme-tls/1 and h2", with_h2, 2, "example.org", GATE_NORMAL },
                { "h2", h2, 1, "example.org", GATE_NORMAL },
                { "no ALPN", NULL, 0, "example.org", GATE_NORMAL },
        };
        server_set_priorities(&sv, prio, "", true);
        for (size_t v = 0; v < 2; v++)
                for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                        Client cl = {
                                .priority = v == 0 ? "NORMAL" : "NORMAL:-VERS-ALL:+VERS-TLS1.2",
                                .alpn = refused[i].alpn,
                                .n_alpn = refused[i].n_alpn,
                                .sni = refused[i].sni,
                        };

                        fprintf(stderr, "refused (%s): %s\n", v == 0 ? "TLS 1.3" : "TLS 1.2",
                                refused[i].what);
                        r = run_handshake(&sv, &cl, NULL);
                        CHECK(r < 0);
                        CHECK_INT_EQ(sv.cls, refused[i].cls);
                        /* TLS 1.3 clients may see success (the server fails on
                         * their empty Certificate), never acme-tls/1 nor a
                         * challenge certificate. */
                        CHECK_STR_EQ(cl.alpn_selected, "");
                        if (cl.peer_der.data) {
                                gnutls_x509_crt_t crt = crt_of(&cl.peer_der);
                                char san[64];
                                size_t san_size = sizeof san;
                                unsigned crit;

                                CHECK(crt && gnutls_x509_crt_get_subject_alt_name(
                                                     crt, 0, san, &san_size, &crit) >= 0 &&
                                      strcmp(san, "served.example") == 0);
                                if (crt)
                                        gnutls_x509_crt_deinit(crt);
                        }
                        free(cl.peer_der.data);
                        server_done_session(&sv, NULL);
                }

        challenges_free(sv.challenges);
        cert_bundle_unref(sv.served);
        gnutls_certificate_free_credentials(sv.cred);
        gnutls_priority_deinit(sv.priority);
        gnutls_priority_deinit(sv.priority_probe);
        gnutls_free(sv.ticket_key.data);
}

int main(void) {
        test_digest();
        test_cert();
        test_registry();
        test_probe_end_to_end();
        return test_summary();
}
