/* SPDX-License-Identifier: MIT */
#pragma once

/* OCSP stapling for the served certificate (RFC 6960; the staple travels in
 * the CertificateStatus message of TLS 1.2, RFC 6066 section 8, and in the
 * leaf's CertificateEntry in TLS 1.3, RFC 8446 section 4.4.2.1).
 *
 * For a certificate whose Authority Information Access names an OCSP
 * responder and whose issuer is in the served chain, the OcspStapler asks
 * the responder (HTTP POST through http.c, on the loop), checks the answer
 * (signed by the issuer or by a responder the issuer certified for OCSP
 * signing, about our serial, current), and hands the Manager a new
 * CertBundle that carries the staple (cert_bundle_with_staple()): the
 * bundle is swapped, never the credential's OCSP data, which GnuTLS would
 * free under live sessions (docs/HACKING.md, "GnuTLS handshake hooks and the
 * ALPN gate").
 *
 * Schedule (certmagic's, docs/HACKING.md, "certmagic's storage layout"): fetch
 * at once, then after the midpoint of thisUpdate..nextUpdate. A failed fetch
 * keeps the last good staple while it is valid, is logged once per series of
 * failures and is retried with backoff; a staple is dropped at its
 * nextUpdate. A Revoked answer is logged loudly (MESSAGE_ID_OCSP_REVOKED)
 * and reported through on_revoked: the Manager then forces an ACME renewal
 * with a new key; a static certificate keeps being served (without a staple)
 * and the error repeats with every check. Only Good answers are stapled.
 *
 * The pure parts (responder URL, request, response check, schedule) are
 * exposed for the unit tests; they read no clock. */

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdbool.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "creds.h"

/* A response may claim a thisUpdate this far in our future (clock skew). */
#define OCSP_CLOCK_SKEW_SEC (5 * 60)
/* How long a response without nextUpdate is served (RFC 6960 2.4 leaves
 * it open; GnuTLS accepts such a staple for some days, we stay shorter). */
#define OCSP_NO_NEXT_UPDATE_VALIDITY_SEC (24 * 60 * 60)
/* certmagic's check interval: responses without nextUpdate, revoked ones
 * and responses already past their midpoint are fetched again this often. */
#define OCSP_RECHECK_SEC (60 * 60)
/* Never fetch again sooner than this after a response, whatever it says. */
#define OCSP_REFETCH_MIN_SEC 5
/* Bounds for what a responder sends us. */
#define OCSP_RESPONSE_SIZE_MAX (64U * 1024U)

typedef enum OcspCertStatus {
        OCSP_CERT_GOOD,
        OCSP_CERT_REVOKED,
        OCSP_CERT_UNKNOWN,
        _OCSP_CERT_STATUS_MAX,
} OcspCertStatus;

const char *ocsp_cert_status_to_string(OcspCertStatus s);

typedef struct OcspResult {
        OcspCertStatus status;
        time_t this_update;
        time_t next_update;             /* -1: the responder gave none */
        time_t revocation_time;         /* revoked only, else -1 */
        int revocation_reason;          /* gnutls_x509_crl_reason_t, revoked only */
} OcspResult;

/* The first http:// or https:// OCSP responder URL in crt's Authority
 * Information Access extension: 0 and *ret, or -ENOENT when there is none. */
int ocsp_responder_url(gnutls_x509_crt_t crt, char **ret);

/* The certificate among chain[1..n) that issued chain[0] (a copy in *ret),
 * or -ENOENT. */
int ocsp_find_issuer(const gnutls_pcert_st *chain, unsigned n, gnutls_x509_crt_t *ret);

/* A DER OCSPRequest for crt (RFC 6960 section 4.1.1): one SHA-1 CertID, no
 * nonce (responders that pre-sign ignore it, and a staple is for every
 * client alike). *ret is gnutls_malloc'ed. */
int ocsp_request_build(gnutls_x509_crt_t crt, gnutls_x509_crt_t issuer, gnutls_datum_t *ret);

/* Checks a DER OCSPResponse as the responder sent it: responseStatus
 * successful, a basic response signed by issuer or by a delegated responder
 * that issuer certified with the OCSPSigning purpose (RFC 6960 section
 * 4.2.2.2), a SingleResponse whose CertID (hash algorithm as the responder
 * chose, issuer name and key hashes, serial) is crt's, thisUpdate no later
 * than now + OCSP_CLOCK_SKEW_SEC and nextUpdate, when present, after now
 * and not before thisUpdate. Good, revoked and unknown answers all pass; on
 * anything else returns a negative errno and a malloc'ed message. */
int ocsp_response_check(const gnutls_datum_t *der, gnutls_x509_crt_t crt, gnutls_x509_crt_t issuer,
                        time_t now, OcspResult *ret, char **ret_error);

/* Until when a good response may be stapled: its nextUpdate (thisUpdate +
 * OCSP_NO_NEXT_UPDATE_VALIDITY_SEC without one), never beyond the
 * certificate's notAfter. */
time_t ocsp_staple_expiry(const OcspResult *r, time_t not_after);

/* When to ask again after the response r arrived at now: good responses at
 * the midpoint of thisUpdate..nextUpdate; a response already past its
 * midpoint halfway to its nextUpdate, at most OCSP_RECHECK_SEC ahead;
 * revoked, unknown and nextUpdate-less ones after OCSP_RECHECK_SEC. Never
 * sooner than now + OCSP_REFETCH_MIN_SEC. */
time_t ocsp_next_fetch(const OcspResult *r, time_t now);

/* --- the stapler --------------------------------------------------------- */

typedef struct OcspStapler OcspStapler;

typedef struct OcspStaplerCallbacks {
        /* Serve b from now on: the tracked certificate with a new staple, or
         * without one when the staple expired or the certificate is revoked.
         * b is borrowed; take a reference to keep it. */
        void (*on_serve)(CertBundle *b, void *userdata);
        /* The responder says the tracked certificate is revoked (a verified
         * answer); called for every such answer, already logged. */
        void (*on_revoked)(CertBundle *b, void *userdata);
} OcspStaplerCallbacks;

/* name: the certificate's name in messages (the ACME domain; NULL: the
 * leaf's subject). renewable: revocation triggers a renewal (ACME); this
 * only changes what the messages say. */
int ocsp_stapler_new(sd_event *e, const char *name, bool renewable, const OcspStaplerCallbacks *cb,
                     void *userdata, OcspStapler **ret);
OcspStapler *ocsp_stapler_free(OcspStapler *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(OcspStapler *, ocsp_stapler_free);

/* Follows what the credential serves. b is the bundle it serves now: one
 * this stapler returned, a freshly loaded one, or NULL. A new certificate or
 * chain restarts the cycle (fetch at once); the same chain in a new bundle
 * (a reload) keeps the current staple, and refresh asks the responder again
 * anyway.
 * Returns a new reference to what to serve instead of b (b itself, or b's
 * chain with the current staple), NULL for NULL. Never fails: without
 * memory for a stapled copy, b is served as it is. */
CertBundle *ocsp_stapler_track(OcspStapler *s, CertBundle *b, bool refresh);

typedef enum OcspState {
        OCSP_STATE_OFF,                 /* no certificate yet */
        OCSP_STATE_NO_RESPONDER,        /* no OCSP URL in the certificate, or no issuer in the chain */
        OCSP_STATE_FETCHING,            /* the first answer is pending */
        OCSP_STATE_GOOD,                /* a good staple is served */
        OCSP_STATE_REVOKED,             /* the responder says revoked */
        OCSP_STATE_FAILING,             /* no valid staple: the last fetch failed */
        _OCSP_STATE_MAX,
} OcspState;

const char *ocsp_state_to_string(OcspState s);

/* For the status endpoint and metrics. Strings stay valid until the next
 * call into the stapler. */
typedef struct OcspInfo {
        OcspState state;
        const char *responder;          /* URL, or NULL */
        bool stapled;                   /* a staple is served now */
        bool revoked;                   /* the last verified answer said revoked */
        time_t this_update, next_update; /* the served staple's; 0 without one */
        time_t last_success;            /* the last verified answer; 0: none yet */
        const char *last_error;         /* of the current failure series, or NULL */
} OcspInfo;

void ocsp_stapler_info(const OcspStapler *s, OcspInfo *ret);
/* Shorthand for the status endpoint: the served certificate is revoked. */
bool ocsp_stapler_revoked(const OcspStapler *s);
