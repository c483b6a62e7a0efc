/* SPDX-License-Identifier: MIT */
/* OCSP stapling: the responder URL, the request, the checks of crafted
 * responses (ocsp-fixtures.h, made by ocsp-fixtures.py), the schedule, the
 * stapled bundles, and how the stapler follows the served certificate. */

#include <gnutls/ocsp.h>
#include <gnutls/x509.h>

#include "creds.h"
#include "ocsp.h"
#include "ocsp-fixtures.h"
#include "test-util.h"

#define HOUR ((time_t) 3600)
#define DAY (24 * HOUR)

static gnutls_x509_crt_t crt_from_pem(const char *pem) {
        const gnutls_datum_t d = { (unsigned char *) pem, (unsigned) strlen(pem) };
        gnutls_x509_crt_t c = NULL;

        if (gnutls_x509_crt_init(&c) < 0 || gnutls_x509_crt_import(c, &d, GNUTLS_X509_FMT_PEM) < 0) {
                fprintf(stderr, "cannot parse a fixture certificate\n");
                abort();
        }
        return c;
}

static gnutls_x509_crt_t leaf, leaf_noaia, ca, rogue_ca, other;

static void test_responder_url(void) {
        char *url = NULL;

        CHECK_INT_EQ(ocsp_responder_url(leaf, &url), 0);
        /* caIssuers and an ldap:// OCSP entry come first: skipped. */
        CHECK_STR_EQ(url, FIXTURE_OCSP_URL);
        free(url);

        url = NULL;
        CHECK_INT_EQ(ocsp_responder_url(leaf_noaia, &url), -ENOENT);
        CHECK(url == NULL);
        CHECK_INT_EQ(ocsp_responder_url(ca, &url), -ENOENT);
}

static CertBundle *bundle(const char *chain_pem) {
        CertBundle *b = NULL;
        char *error = NULL;
        int r = cert_bundle_from_pem(chain_pem, strlen(chain_pem), fixture_leaf_key_pem,
                                     strlen(fixture_leaf_key_pem), "fixture", &b, &error);
        if (r < 0) {
                fprintf(stderr, "cannot build a fixture bundle: %s\n", error ? error : "?");
                abort();
        }
        free(error);
        return b;
}

static char *concat(const char *a, const char *b) {
        char *s = NULL;
        if (asprintf(&s, "%s%s", a, b ? b : "") < 0)
                abort();
        return s;
}

static void test_find_issuer(void) {
        _cleanup_free_ char *with_ca = concat(fixture_leaf_pem, fixture_ca_pem);
        _cleanup_free_ char *with_rogue = concat(fixture_leaf_pem, fixture_rogue_ca_pem);
        _cleanup_free_ char *alone = concat(fixture_leaf_pem, NULL);
        _cleanup_(cert_bundle_unrefp) CertBundle *b1 = NULL, *b2 = NULL, *b3 = NULL;
        gnutls_x509_crt_t found = NULL;

        b1 = bundle(with_ca);
        CHECK_INT_EQ(ocsp_find_issuer(b1->pcerts, b1->n_pcerts, &found), 0);
        CHECK(found && gnutls_x509_crt_equals(found, ca));
        if (found)
                gnutls_x509_crt_deinit(found);

        /* Same subject name, other key: not the issuer. */
        found = NULL;
        b2 = bundle(with_rogue);
        CHECK_INT_EQ(ocsp_find_issuer(b2->pcerts, b2->n_pcerts, &found), -ENOENT);
        CHECK(found == NULL);

        b3 = bundle(alone);
        CHECK_INT_EQ(ocsp_find_issuer(b3->pcerts, b3->n_pcerts, &found), -ENOENT);
}

static void test_request(void) {
        gnutls_datum_t der = {}, name_hash = {}, key_hash = {}, serial = {}, nonce = {};
        gnutls_digest_algorithm_t digest = 0;
        unsigned char leaf_serial[64];
        size_t leaf_serial_len = sizeof leaf_serial;
        gnutls_ocsp_req_t req;

        CHECK_INT_EQ(ocsp_request_build(leaf, ca, &der), 0);
        CHECK(der.size > 0);
        CHECK(gnutls_ocsp_req_init(&req) >= 0);
        CHECK_INT_EQ(gnutls_ocsp_req_import(req, &der), 0);
        CHECK_INT_EQ(gnutls_ocsp_req_get_cert_id(req, 0, &digest, &name_hash, &key_hash, &serial),
                     0);
        CHECK_INT_EQ(digest, GNUTLS_DIG_SHA1);
        CHECK_INT_EQ(name_hash.size, 20);
        CHECK_INT_EQ(key_hash.size, 20);
        CHECK(gnutls_x509_crt_get_serial(leaf, leaf_serial, &leaf_serial_len) >= 0);
        CHECK(serial.size == leaf_serial_len && memcmp(serial.data, leaf_serial, serial.size) == 0);
        /* One certificate, no nonce. */
        CHECK_INT_EQ(gnutls_ocsp_req_get_cert_id(req, 1, NULL, NULL, NULL, NULL),
                     GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);
        CHECK_INT_EQ(gnutls_ocsp_req_get_nonce(req, NULL, &nonce),
                     GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);
        gnutls_free(name_hash.data);
        gnutls_free(key_hash.data);
        gnutls_free(serial.data);
        gnutls_free(nonce.data);
        gnutls_free(der.data);
        gnutls_ocsp_req_deinit(req);
}

/* Runs ocsp_response_check() on a fixture; returns its result. */
static int check(const unsigned char *der, size_t size, gnutls_x509_crt_t crt,
                 gnutls_x509_crt_t issuer, time_t now, OcspResult *res, char **error) {
        const gnutls_datum_t d = { (unsigned char *) der, (unsigned) size };
        free(*error);
        *error = NULL;
        *res = (OcspResult) { .status = _OCSP_CERT_STATUS_MAX };
        return ocsp_response_check(&d, crt, issuer, now, res, error);
}

#define CHECK_RESPONSE(fixture, crt, issuer, now) \
        check(fixture, sizeof fixture, crt, issuer, now, &res, &error)

static void test_good_responses(void) {
        const time_t now = FIXTURE_THIS_UPDATE + HOUR;
        _cleanup_free_ char *error = NULL;
        OcspResult res;

        /* Signed by the issuer itself, responder ID by key hash or by name. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_good_ca, leaf, ca, now), 0);
        CHECK_INT_EQ(res.status, OCSP_CERT_GOOD);
        CHECK_INT_EQ(res.this_update, FIXTURE_THIS_UPDATE);
        CHECK_INT_EQ(res.next_update, FIXTURE_NEXT_UPDATE);
        CHECK_INT_EQ(res.revocation_time, -1);
        CHECK(error == NULL);
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_good_ca_by_name, leaf, ca, now), 0);
        CHECK_INT_EQ(res.status, OCSP_CERT_GOOD);

        /* A delegated responder certified by the issuer for OCSPSigning. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_good_delegated, leaf, ca, now), 0);
        CHECK_INT_EQ(res.status, OCSP_CERT_GOOD);

        /* SHA-256 CertIDs although we asked with SHA-1. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_good_sha256, leaf, ca, now), 0);
        CHECK_INT_EQ(res.status, OCSP_CERT_GOOD);

        /* thisUpdate a little in our future: clock skew is tolerated. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_good_ca, leaf, ca, FIXTURE_THIS_UPDATE - 60), 0);
        /* Until just before nextUpdate. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_good_ca, leaf, ca, FIXTURE_NEXT_UPDATE - 1), 0);

        /* No nextUpdate: accepted for a day after thisUpdate. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_no_next, leaf, ca, now), 0);
        CHECK_INT_EQ(res.status, OCSP_CERT_GOOD);
        CHECK_INT_EQ(res.next_update, -1);
}

static void test_revoked_unknown(void) {
        const time_t now = FIXTURE_THIS_UPDATE + HOUR;
        _cleanup_free_ char *error = NULL;
        OcspResult res;

        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_revoked, leaf, ca, now), 0);
        CHECK_INT_EQ(res.status, OCSP_CERT_REVOKED);
        CHECK_INT_EQ(res.revocation_time, FIXTURE_REVOKED_AT);
        CHECK_INT_EQ(res.revocation_reason, GNUTLS_X509_CRLREASON_KEYCOMPROMISE);
        CHECK_STR_EQ(ocsp_cert_status_to_string(res.status), "revoked");

        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_unknown, leaf, ca, now), 0);
        CHECK_INT_EQ(res.status, OCSP_CERT_UNKNOWN);

        /* A revoked answer must pass every check before anyone acts on it. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_revoked, leaf, ca, FIXTURE_NEXT_UPDATE), -ERANGE);
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_revoked, other, ca, now), -ENOENT);
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_revoked, leaf, rogue_ca, now), -EPERM);
}

static void test_bad_responses(void) {
        const time_t now = FIXTURE_THIS_UPDATE + HOUR;
        _cleanup_free_ char *error = NULL;
        unsigned char tampered[sizeof fixture_resp_good_ca];
        static const unsigned char garbage[] = "<html>proxy error</html>";
        OcspResult res;

        /* About another certificate of the same issuer. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_wrong_serial, leaf, ca, now), -ENOENT);
        CHECK_CONTAINS(error, "not about this certificate");
        /* Checked against another leaf: the answer is not about it either. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_good_ca, other, ca, now), -ENOENT);

        /* Signed by a key with the issuer's name but not the issuer's key. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_rogue_ca, leaf, ca, now), -EPERM);
        CHECK_CONTAINS(error, "signature not accepted");
        /* The right answer checked against the wrong issuer. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_good_ca, leaf, rogue_ca, now), -EPERM);

        /* A delegated responder without the OCSPSigning purpose. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_delegated_noeku, leaf, ca, now), -EPERM);
        CHECK_CONTAINS(error, "OCSP signing");
        /* A delegated responder the issuer never certified. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_rogue_delegated, leaf, ca, now), -EPERM);

        /* One flipped bit in the signature. */
        memcpy(tampered, fixture_resp_good_ca, sizeof tampered);
        tampered[sizeof tampered - 3] ^= 0x01;
        CHECK(CHECK_RESPONSE(tampered, leaf, ca, now) < 0);
        CHECK(res.status == _OCSP_CERT_STATUS_MAX);

        /* Not successful, not OCSP, empty. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_try_later, leaf, ca, now), -EAGAIN);
        CHECK_CONTAINS(error, "tryLater");
        CHECK_INT_EQ(check(garbage, sizeof garbage - 1, leaf, ca, now, &res, &error), -EBADMSG);
        CHECK_CONTAINS(error, "not a DER OCSP response");
        CHECK_INT_EQ(check(garbage, 0, leaf, ca, now, &res, &error), -EBADMSG);
        /* Truncated. */
        CHECK(check(fixture_resp_good_ca, sizeof fixture_resp_good_ca / 2, leaf, ca, now, &res,
                    &error) < 0);
}

static void test_times(void) {
        _cleanup_free_ char *error = NULL;
        OcspResult res;

        /* Expired at nextUpdate. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_good_ca, leaf, ca, FIXTURE_NEXT_UPDATE), -ERANGE);
        CHECK_CONTAINS(error, "expired");
        /* thisUpdate further in the future than the skew allows. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_good_ca, leaf, ca,
                                    FIXTURE_THIS_UPDATE - OCSP_CLOCK_SKEW_SEC - 1),
                     -ERANGE);
        CHECK_CONTAINS(error, "future");
        /* Without nextUpdate: too old after a day. */
        CHECK_INT_EQ(CHECK_RESPONSE(fixture_resp_no_next, leaf, ca, FIXTURE_THIS_UPDATE + DAY),
                     -ERANGE);
        CHECK_CONTAINS(error, "too old");
}

static void test_staple_expiry(void) {
        OcspResult r = { .status = OCSP_CERT_GOOD, .this_update = 1000000, .next_update = 1000000 + 7 * DAY };

        CHECK_INT_EQ(ocsp_staple_expiry(&r, 1000000 + 30 * DAY), 1000000 + 7 * DAY);
        /* Never beyond the certificate. */
        CHECK_INT_EQ(ocsp_staple_expiry(&r, 1000000 + 2 * DAY), 1000000 + 2 * DAY);
        r.next_update = -1;
        CHECK_INT_EQ(ocsp_staple_expiry(&r, 1000000 + 30 * DAY),
                     1000000 + OCSP_NO_NEXT_UPDATE_VALIDITY_SEC);
}

static void test_next_fetch(void) {
        const time_t t0 = 1000000;
        OcspResult r = { .status = OCSP_CERT_GOOD, .this_update = t0, .next_update = t0 + 7 * DAY };

        /* certmagic: after the midpoint of thisUpdate..nextUpdate. */
        CHECK_INT_EQ(ocsp_next_fetch(&r, t0), t0 + 7 * DAY / 2);
        CHECK_INT_EQ(ocsp_next_fetch(&r, t0 + DAY), t0 + 7 * DAY / 2);
        /* A response fetched after its midpoint (a cache served an old one):
         * halfway to its end, but at least hourly. */
        CHECK_INT_EQ(ocsp_next_fetch(&r, t0 + 4 * DAY), t0 + 4 * DAY + HOUR);
        CHECK_INT_EQ(ocsp_next_fetch(&r, t0 + 7 * DAY - 1000), t0 + 7 * DAY - 500);
        /* Never sooner than the floor, however short the validity. */
        r.next_update = t0 + 4;
        CHECK_INT_EQ(ocsp_next_fetch(&r, t0), t0 + OCSP_REFETCH_MIN_SEC);
        r.next_update = t0 + 20;
        CHECK_INT_EQ(ocsp_next_fetch(&r, t0), t0 + 10);
        CHECK_INT_EQ(ocsp_next_fetch(&r, t0 + 12), t0 + 12 + OCSP_REFETCH_MIN_SEC);
        /* Revoked, unknown, no nextUpdate: certmagic's hourly check. */
        r.next_update = t0 + 7 * DAY;
        r.status = OCSP_CERT_REVOKED;
        CHECK_INT_EQ(ocsp_next_fetch(&r, t0), t0 + OCSP_RECHECK_SEC);
        r.status = OCSP_CERT_UNKNOWN;
        CHECK_INT_EQ(ocsp_next_fetch(&r, t0), t0 + OCSP_RECHECK_SEC);
        r.status = OCSP_CERT_GOOD;
        r.next_update = -1;
        CHECK_INT_EQ(ocsp_next_fetch(&r, t0 + 5), t0 + 5 + OCSP_RECHECK_SEC);
}

static void test_stapled_bundle(void) {
        _cleanup_free_ char *chain = concat(fixture_leaf_pem, fixture_ca_pem);
        CertBundle *b = bundle(chain), *s1 = NULL, *s2 = NULL;
        const gnutls_datum_t resp = { (unsigned char *) fixture_resp_good_ca,
                                      sizeof fixture_resp_good_ca };
        const gnutls_datum_t empty = {};

        CHECK(b->staple.response.data == NULL);
        CHECK(cert_bundle_base(b) == b);
        CHECK(cert_bundle_base(NULL) == NULL);
        CHECK_INT_EQ(cert_bundle_with_staple(b, &empty, 0, &s1), -EINVAL);

        CHECK_INT_EQ(cert_bundle_with_staple(b, &resp, FIXTURE_NEXT_UPDATE, &s1), 0);
        CHECK(s1 && s1 != b);
        CHECK(cert_bundle_base(s1) == b);
        CHECK_INT_EQ(b->n_ref, 2);
        /* The chain and key are shared, the response copied. */
        CHECK(s1->pcerts == b->pcerts && s1->n_pcerts == b->n_pcerts && s1->key == b->key);
        CHECK_STR_EQ(s1->subject, b->subject);
        CHECK_INT_EQ(s1->not_after, b->not_after);
        CHECK_INT_EQ(s1->staple.version, 0);
        CHECK_INT_EQ(s1->staple.exptime, FIXTURE_NEXT_UPDATE);
        CHECK(s1->staple.response.size == sizeof fixture_resp_good_ca &&
              s1->staple.response.data != fixture_resp_good_ca &&
              memcmp(s1->staple.response.data, fixture_resp_good_ca,
                     sizeof fixture_resp_good_ca) == 0);

        /* A new staple on a stapled bundle hangs off the same base. */
        CHECK_INT_EQ(cert_bundle_with_staple(s1, &resp, FIXTURE_THIS_UPDATE + DAY, &s2), 0);
        CHECK(cert_bundle_base(s2) == b);
        CHECK_INT_EQ(b->n_ref, 3);

        /* Whoever holds a stapled bundle keeps the chain alive (a connection
         * until gnutls_deinit()): drop the others first; ASan watches. */
        cert_bundle_unref(b);
        cert_bundle_unref(s1);
        CHECK(s2->pcerts[0].cert.size > 0 && s2->staple.response.size > 0);
        CHECK_INT_EQ(s2->base->n_ref, 1);
        cert_bundle_unref(s2);
}

static void on_serve(CertBundle *b, void *userdata) {
        (*(unsigned *) userdata)++;
}

static void test_stapler_track(void) {
        _cleanup_free_ char *chain = concat(fixture_leaf_pem, fixture_ca_pem);
        _cleanup_free_ char *alone = concat(fixture_leaf_pem, NULL);
        static const OcspStaplerCallbacks cb = { .on_serve = on_serve };
        CertBundle *b1 = bundle(chain), *b2 = bundle(chain), *b3 = bundle(alone), *got;
        OcspStapler *s = NULL;
        unsigned served = 0;
        sd_event *e = NULL;
        OcspInfo info;

        CHECK(sd_event_new(&e) >= 0);
        CHECK_INT_EQ(ocsp_stapler_new(e, NULL, false, &cb, &served, &s), 0);
        ocsp_stapler_info(s, &info);
        CHECK_INT_EQ(info.state, OCSP_STATE_OFF);
        CHECK(ocsp_stapler_track(s, NULL, false) == NULL);

        /* A certificate with a responder: the fetch is scheduled on the
         * loop (not run here), the bundle is served as it is meanwhile. */
        got = ocsp_stapler_track(s, b1, false);
        CHECK(got == b1);
        cert_bundle_unref(got);
        ocsp_stapler_info(s, &info);
        CHECK_INT_EQ(info.state, OCSP_STATE_FETCHING);
        CHECK_STR_EQ(info.responder, FIXTURE_OCSP_URL);
        CHECK(!info.stapled && !info.revoked);
        CHECK(!ocsp_stapler_revoked(s));
        CHECK_STR_EQ(ocsp_state_to_string(info.state), "fetching");

        /* The same certificate loaded again (reload): followed, no staple yet. */
        got = ocsp_stapler_track(s, b2, true);
        CHECK(got == b2);
        cert_bundle_unref(got);
        CHECK_INT_EQ(b1->n_ref, 1); /* the stapler let go of the old one */

        /* No issuer in the chain: no stapling. */
        got = ocsp_stapler_track(s, b3, false);
        CHECK(got == b3);
        cert_bundle_unref(got);
        ocsp_stapler_info(s, &info);
        CHECK_INT_EQ(info.state, OCSP_STATE_NO_RESPONDER);
        CHECK_INT_EQ(b2->n_ref, 1);

        CHECK(ocsp_stapler_track(s, NULL, false) == NULL);
        CHECK_INT_EQ(b3->n_ref, 1);
        CHECK_INT_EQ(served, 0);

        ocsp_stapler_free(s);
        cert_bundle_unref(b1);
        cert_bundle_unref(b2);
        cert_bundle_unref(b3);
        sd_event_unref(e);
}

int main(void) {
        leaf = crt_from_pem(fixture_leaf_pem);
        leaf_noaia = crt_from_pem(fixture_leaf_noaia_pem);
        ca = crt_from_pem(fixture_ca_pem);
        rogue_ca = crt_from_pem(fixture_rogue_ca_pem);
        other = crt_from_pem(fixture_other_pem);

        test_responder_url();
        test_find_issuer();
        test_request();
        test_good_responses();
        test_revoked_unknown();
        test_bad_responses();
        test_times();
        test_staple_expiry();
        test_next_fetch();
        test_stapled_bundle();
        test_stapler_track();

        gnutls_x509_crt_deinit(leaf);
        gnutls_x509_crt_deinit(leaf_noaia);
        gnutls_x509_crt_deinit(ca);
        gnutls_x509_crt_deinit(rogue_ca);
        gnutls_x509_crt_deinit(other);
        return test_summary();
}
