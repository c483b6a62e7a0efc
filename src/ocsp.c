/* SPDX-License-Identifier: MIT */
#include <gnutls/ocsp.h>
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>

#include "backoff.h"
#include "http.h"
#include "log.h"
#include "ocsp.h"
#include "util.h"

/* Retries after a failed fetch: the last good staple (if any) serves
 * meanwhile, so gently; TLSGATE_TEST_BACKOFF_SCALE shrinks both. */
#define OCSP_BACKOFF_INITIAL (30 * USEC_PER_SEC)
#define OCSP_BACKOFF_CAP (10 * USEC_PER_MINUTE)
#define OCSP_HTTP_TIMEOUT (15 * USEC_PER_SEC)
#define OCSP_BASIC_OID "1.3.6.1.5.5.7.48.1.1"

static const char *const cert_status_table[_OCSP_CERT_STATUS_MAX] = {
        [OCSP_CERT_GOOD] = "good",
        [OCSP_CERT_REVOKED] = "revoked",
        [OCSP_CERT_UNKNOWN] = "unknown",
};

const char *ocsp_cert_status_to_string(OcspCertStatus s) {
        return s >= 0 && s < _OCSP_CERT_STATUS_MAX ? cert_status_table[s] : NULL;
}

static const char *const state_table[_OCSP_STATE_MAX] = {
        [OCSP_STATE_OFF] = "off",
        [OCSP_STATE_NO_RESPONDER] = "no responder",
        [OCSP_STATE_FETCHING] = "fetching",
        [OCSP_STATE_GOOD] = "good",
        [OCSP_STATE_REVOKED] = "revoked",
        [OCSP_STATE_FAILING] = "failing",
};

const char *ocsp_state_to_string(OcspState s) {
        return s >= 0 && s < _OCSP_STATE_MAX ? state_table[s] : NULL;
}

static char *format_time(char *buf, size_t size, time_t t) {
        struct tm tm;

        if (t < 0 || !gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(buf, size, "(none)");
        return buf;
}

/* --- pure parts ----------------------------------------------------------- */

int ocsp_responder_url(gnutls_x509_crt_t crt, char **ret) {
        /* Bounded: the extension is the certificate issuer's to fill. */
        for (unsigned seq = 0; seq < 32; seq++) {
                gnutls_datum_t d = {};
                int r = gnutls_x509_crt_get_authority_info_access(crt, seq, GNUTLS_IA_OCSP_URI, &d,
                                                                  NULL);
                if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                if (r < 0)
                        continue; /* another access method (caIssuers), or not a URI */
                bool usable = d.size > 0 && !memchr(d.data, 0, d.size) &&
                              (strncasecmp((const char *) d.data, "http://", 7) == 0 ||
                               strncasecmp((const char *) d.data, "https://", 8) == 0);
                for (unsigned i = 0; usable && i < d.size; i++)
                        if (d.data[i] <= ' ' || d.data[i] >= 0x7f)
                                usable = false;
                if (usable) {
                        char *url = strndup((const char *) d.data, d.size);
                        gnutls_free(d.data);
                        if (!url)
                                return -ENOMEM;
                        *ret = url;
                        return 0;
                }
                gnutls_free(d.data);
        }
        return -ENOENT;
}

int ocsp_find_issuer(const gnutls_pcert_st *chain, unsigned n, gnutls_x509_crt_t *ret) {
        gnutls_x509_crt_t leaf = NULL;
        int r = -ENOENT;

        if (n < 2)
                return -ENOENT;
        if (gnutls_x509_crt_init(&leaf) < 0)
                return -ENOMEM;
        if (gnutls_x509_crt_import(leaf, &chain[0].cert, GNUTLS_X509_FMT_DER) < 0) {
                gnutls_x509_crt_deinit(leaf);
                return -EINVAL;
        }
        for (unsigned i = 1; i < n && r == -ENOENT; i++) {
                gnutls_x509_crt_t c;
                if (gnutls_x509_crt_init(&c) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (gnutls_x509_crt_import(c, &chain[i].cert, GNUTLS_X509_FMT_DER) >= 0 &&
                    gnutls_x509_crt_check_issuer(leaf, c)) {
                        *ret = c;
                        r = 0;
                } else
                        gnutls_x509_crt_deinit(c);
        }
        gnutls_x509_crt_deinit(leaf);
        return r;
}

int ocsp_request_build(gnutls_x509_crt_t crt, gnutls_x509_crt_t issuer, gnutls_datum_t *ret) {
        gnutls_ocsp_req_t req;
        int r;

        if (gnutls_ocsp_req_init(&req) < 0)
                return -ENOMEM;
        /* SHA-1 CertIDs are what every responder understands (RFC 5019 2.1.1). */
        r = gnutls_ocsp_req_add_cert(req, GNUTLS_DIG_SHA1, issuer, crt);
        if (r >= 0)
                r = gnutls_ocsp_req_export(req, ret);
        gnutls_ocsp_req_deinit(req);
        return errno_from_gnutls(r < 0 ? r : 0);
}

static bool datum_eq(const gnutls_datum_t *a, const gnutls_datum_t *b) {
        return a->size == b->size && (a->size == 0 || memcmp(a->data, b->data, a->size) == 0);
}

/* Is this SingleResponse's CertID crt's? Computed with the responder's hash
 * algorithm: it may answer a SHA-1 request with SHA-256 CertIDs. */
static bool cert_id_matches(gnutls_digest_algorithm_t digest, const gnutls_datum_t *name_hash,
                            const gnutls_datum_t *key_hash, const gnutls_datum_t *serial,
                            gnutls_x509_crt_t crt, gnutls_x509_crt_t issuer) {
        gnutls_datum_t n = {}, k = {}, s = {};
        gnutls_ocsp_req_t req;
        bool eq = false;

        if (gnutls_ocsp_req_init(&req) < 0)
                return false;
        if (gnutls_ocsp_req_add_cert(req, digest, issuer, crt) >= 0 &&
            gnutls_ocsp_req_get_cert_id(req, 0, NULL, &n, &k, &s) >= 0)
                eq = datum_eq(&n, name_hash) && datum_eq(&k, key_hash) && datum_eq(&s, serial);
        gnutls_free(n.data);
        gnutls_free(k.data);
        gnutls_free(s.data);
        gnutls_ocsp_req_deinit(req);
        return eq;
}

static const char *response_status_to_string(int st) {
        /* RFC 6960 section 4.2.1 */
        switch (st) {
        case GNUTLS_OCSP_RESP_MALFORMEDREQUEST:
                return "malformedRequest";
        case GNUTLS_OCSP_RESP_INTERNALERROR:
                return "internalError";
        case GNUTLS_OCSP_RESP_TRYLATER:
                return "tryLater";
        case GNUTLS_OCSP_RESP_SIGREQUIRED:
                return "sigRequired";
        case GNUTLS_OCSP_RESP_UNAUTHORIZED:
                return "unauthorized";
        default:
                return "an unknown status";
        }
}

static void verify_reasons(unsigned v, char *buf, size_t size) {
        static const struct {
                unsigned bit;
                const char *text;
        } table[] = {
                { GNUTLS_OCSP_VERIFY_SIGNER_NOT_FOUND, "signer not found" },
                { GNUTLS_OCSP_VERIFY_SIGNER_KEYUSAGE_ERROR, "signer not certified for OCSP signing" },
                { GNUTLS_OCSP_VERIFY_UNTRUSTED_SIGNER, "signer not certified by the issuer" },
                { GNUTLS_OCSP_VERIFY_INSECURE_ALGORITHM, "insecure signature algorithm" },
                { GNUTLS_OCSP_VERIFY_SIGNATURE_FAILURE, "bad signature" },
                { GNUTLS_OCSP_VERIFY_CERT_NOT_ACTIVATED, "signer certificate not yet valid" },
                { GNUTLS_OCSP_VERIFY_CERT_EXPIRED, "signer certificate expired" },
        };
        size_t len = 0;

        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (v & table[i].bit) {
                        int n = snprintf(buf + len, size - len, "%s%s", len ? ", " : "",
                                         table[i].text);
                        if (n < 0 || (size_t) n >= size - len)
                                return;
                        len += (size_t) n;
                }
        if (len == 0)
                snprintf(buf, size, "verification status 0x%x", v);
}

static int check_single(gnutls_ocsp_resp_t resp, gnutls_x509_crt_t crt, gnutls_x509_crt_t issuer,
                        time_t now, OcspResult *ret, char **ret_error) {
        for (unsigned idx = 0; idx < 64; idx++) {
                gnutls_datum_t n = {}, k = {}, s = {};
                gnutls_digest_algorithm_t digest;
                unsigned status;
                time_t this_update, next_update, rtime;
                unsigned reason = 0;
                bool ours;
                int r;

                r = gnutls_ocsp_resp_get_single(resp, idx, &digest, &n, &k, &s, &status,
                                                &this_update, &next_update, &rtime, &reason);
                if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                if (r < 0)
                        return error_set(ret_error, -EBADMSG, "unreadable SingleResponse: %s",
                                         gnutls_strerror(r));
                ours = cert_id_matches(digest, &n, &k, &s, crt, issuer);
                gnutls_free(n.data);
                gnutls_free(k.data);
                gnutls_free(s.data);
                if (!ours)
                        continue;

                char t1[32], t2[32];
                if (this_update == (time_t) -1 || this_update > now + OCSP_CLOCK_SKEW_SEC)
                        return error_set(ret_error, -ERANGE, "thisUpdate %s is in the future",
                                         format_time(t1, sizeof t1, this_update));
                if (next_update != (time_t) -1 && next_update < this_update)
                        return error_set(ret_error, -ERANGE,
                                         "nextUpdate %s is before thisUpdate %s",
                                         format_time(t1, sizeof t1, next_update),
                                         format_time(t2, sizeof t2, this_update));
                if (next_update != (time_t) -1 && next_update <= now)
                        return error_set(ret_error, -ERANGE, "response expired at %s (nextUpdate)",
                                         format_time(t1, sizeof t1, next_update));
                if (next_update == (time_t) -1 &&
                    this_update + OCSP_NO_NEXT_UPDATE_VALIDITY_SEC <= now)
                        return error_set(ret_error, -ERANGE,
                                         "response without nextUpdate is too old (thisUpdate %s)",
                                         format_time(t1, sizeof t1, this_update));
                switch (status) {
                case GNUTLS_OCSP_CERT_GOOD:
                        ret->status = OCSP_CERT_GOOD;
                        break;
                case GNUTLS_OCSP_CERT_REVOKED:
                        ret->status = OCSP_CERT_REVOKED;
                        break;
                default:
                        ret->status = OCSP_CERT_UNKNOWN;
                }
                ret->this_update = this_update;
                ret->next_update = next_update;
                ret->revocation_time = ret->status == OCSP_CERT_REVOKED ? rtime : -1;
                ret->revocation_reason = ret->status == OCSP_CERT_REVOKED ? (int) reason : 0;
                return 0;
        }
        return error_set(ret_error, -ENOENT, "the response is not about this certificate");
}

int ocsp_response_check(const gnutls_datum_t *der, gnutls_x509_crt_t crt, gnutls_x509_crt_t issuer,
                        time_t now, OcspResult *ret, char **ret_error) {
        gnutls_ocsp_resp_t resp;
        gnutls_datum_t oid = {};
        OcspResult res = {};
        unsigned verify = 0;
        int r, st;

        if (!der || der->size == 0)
                return error_set(ret_error, -EBADMSG, "empty response");
        if (gnutls_ocsp_resp_init(&resp) < 0)
                return -ENOMEM;
        r = gnutls_ocsp_resp_import(resp, der);
        if (r < 0) {
                r = error_set(ret_error, -EBADMSG, "not a DER OCSP response: %s",
                              gnutls_strerror(r));
                goto finish;
        }
        st = gnutls_ocsp_resp_get_status(resp);
        if (st != GNUTLS_OCSP_RESP_SUCCESSFUL) {
                r = error_set(ret_error, st == GNUTLS_OCSP_RESP_TRYLATER ? -EAGAIN : -EPROTO,
                              "the responder answered %s",
                              st < 0 ? "with an unreadable status" : response_status_to_string(st));
                goto finish;
        }
        r = gnutls_ocsp_resp_get_response(resp, &oid, NULL);
        if (r < 0 || oid.size != strlen(OCSP_BASIC_OID) ||
            memcmp(oid.data, OCSP_BASIC_OID, oid.size) != 0) {
                r = error_set(ret_error, -EBADMSG, "not a basic OCSP response");
                goto finish;
        }
        /* Signed by the issuer, or by a responder certificate the issuer
         * signed with the OCSPSigning purpose (RFC 6960 section 4.2.2.2). */
        r = gnutls_ocsp_resp_verify_direct(resp, issuer, &verify, 0);
        if (r < 0) {
                r = error_set(ret_error, -EBADMSG, "cannot verify the signature: %s",
                              gnutls_strerror(r));
                goto finish;
        }
        if (verify != 0) {
                char why[256];
                verify_reasons(verify, why, sizeof why);
                r = error_set(ret_error, -EPERM, "signature not accepted: %s", why);
                goto finish;
        }
        r = check_single(resp, crt, issuer, now, &res, ret_error);
        if (r >= 0)
                *ret = res;
finish:
        gnutls_free(oid.data);
        gnutls_ocsp_resp_deinit(resp);
        return r;
}

time_t ocsp_staple_expiry(const OcspResult *r, time_t not_after) {
        time_t e = r->next_update != (time_t) -1 ? r->next_update
                                                 : r->this_update + OCSP_NO_NEXT_UPDATE_VALIDITY_SEC;
        return MIN(e, not_after);
}

time_t ocsp_next_fetch(const OcspResult *r, time_t now) {
        time_t t;

        if (r->status != OCSP_CERT_GOOD || r->next_update == (time_t) -1)
                t = now + OCSP_RECHECK_SEC;
        else {
                /* certmagic: refresh after the midpoint of thisUpdate..nextUpdate. */
                time_t mid = r->this_update + (r->next_update - r->this_update) / 2;
                if (mid > now)
                        t = mid;
                else /* a stale (cached) response: again halfway to its end */
                        t = now + MIN((r->next_update - now) / 2, (time_t) OCSP_RECHECK_SEC);
        }
        return MAX(t, now + OCSP_REFETCH_MIN_SEC);
}

/* --- the stapler ------------------------------------------------------------ */

struct OcspStapler {
        sd_event *event;
        OcspStaplerCallbacks cb;
        void *userdata;
        char *name;                     /* NULL: the leaf's subject */
        bool renewable;
        double scale;

        HttpClient *http;               /* created with the first request */
        HttpRequestHandle *request;
        sd_event_source *fetch_timer, *expiry_timer;

        CertBundle *base;               /* the tracked certificate, unstapled */
        CertBundle *stapled;            /* base plus the served staple, or NULL */
        gnutls_x509_crt_t leaf, issuer;
        char *url;
        char serial[2 * 20 + 1];

        OcspState state;
        OcspResult staple_result;       /* of the served staple */
        bool revoked;
        time_t last_success;
        Backoff backoff;
        unsigned failures;              /* in the current series */
        char *last_error;
};

#define STAPLER_FIELDS(s) (LogField[]) { { "TLSGATE_CERT_NAME", stapler_name(s) } }

static const char *stapler_name(const OcspStapler *s) {
        if (s->name)
                return s->name;
        return s->base && s->base->subject ? s->base->subject : "(unnamed)";
}

static void stapler_fetch(OcspStapler *s);

static time_t stapler_now(OcspStapler *s) {
        usec_t now = 0;

        if (sd_event_now(s->event, CLOCK_REALTIME, &now) < 0)
                now = (usec_t) time(NULL) * USEC_PER_SEC;
        return (time_t) (now / USEC_PER_SEC);
}

/* Arms a one-shot CLOCK_REALTIME timer at an absolute moment: OCSP times are
 * wall-clock times, and the kernel fires such a timer when the clock passes
 * the moment, however it got there. */
static int stapler_arm(OcspStapler *s, sd_event_source **src, usec_t when,
                       sd_event_time_handler_t handler, const char *description) {
        int r;

        if (!*src) {
                r = sd_event_add_time(s->event, src, CLOCK_REALTIME, when, 100 * USEC_PER_MSEC,
                                      handler, s);
                if (r >= 0)
                        (void) sd_event_source_set_description(*src, description);
                return r;
        }
        r = sd_event_source_set_time(*src, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(*src, SD_EVENT_ONESHOT);
        return r;
}

static int on_fetch_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        stapler_fetch(userdata);
        return 0;
}

static void stapler_schedule(OcspStapler *s, usec_t when) {
        if (stapler_arm(s, &s->fetch_timer, when, on_fetch_timer, "ocsp-fetch") < 0)
                log_fields(LOG_ERR, 0, NULL, STAPLER_FIELDS(s), 1,
                           "cannot arm the OCSP timer for %s, the staple will not be refreshed",
                           stapler_name(s));
}

/* Serves the tracked certificate with this staple, or without one (NULL). */
static void stapler_serve(OcspStapler *s, CertBundle *stapled) {
        CertBundle *old = s->stapled;

        s->stapled = cert_bundle_ref(stapled);
        cert_bundle_unref(old);
        if (!stapled)
                s->expiry_timer = sd_event_source_disable_unref(s->expiry_timer);
        s->cb.on_serve(stapled ? stapled : s->base, s->userdata);
}

static int on_expiry(sd_event_source *src, uint64_t usec, void *userdata) {
        OcspStapler *s = userdata;
        char t[32];

        if (!s->stapled)
                return 0;
        /* GnuTLS stops sending it by itself (exptime); this keeps the
         * bookkeeping and the status honest. */
        log_fields(LOG_WARNING, 0, NULL, STAPLER_FIELDS(s), 1,
                   "OCSP staple for %s expired at %s and could not be refreshed (%s); serving "
                   "without a staple",
                   stapler_name(s), format_time(t, sizeof t, s->stapled->staple.exptime),
                   s->last_error ? s->last_error : "no answer yet");
        s->state = OCSP_STATE_FAILING;
        stapler_serve(s, NULL);
        return 0;
}

static void stapler_failed(OcspStapler *s, int error, const char *message) {
        usec_t delay = 0, now = (usec_t) stapler_now(s) * USEC_PER_SEC;
        char until[64], t[32];

        free(s->last_error);
        s->last_error = strdup(message);
        if (!backoff_next(&s->backoff, &delay))
                delay = OCSP_BACKOFF_CAP;
        if (!s->stapled && s->state != OCSP_STATE_REVOKED)
                s->state = OCSP_STATE_FAILING;
        if (s->stapled)
                snprintf(until, sizeof until, "keeping the current staple until %s",
                         format_time(t, sizeof t, s->stapled->staple.exptime));
        else
                snprintf(until, sizeof until, "no staple meanwhile");
        /* Once per series of failures: a responder down for a day should
         * not fill the journal; the expiry of the staple is logged again. */
        log_fields(s->failures++ == 0 ? LOG_WARNING : LOG_DEBUG, error, NULL, STAPLER_FIELDS(s), 1,
                   "OCSP fetch for %s from %s failed: %s; %s, retrying in %.1f s",
                   stapler_name(s), s->url, message, until, (double) delay / USEC_PER_SEC);
        stapler_schedule(s, now + delay);
}

static void reason_to_string(int reason, char *buf, size_t size) {
        static const char *const table[] = {
                "unspecified", "keyCompromise", "cACompromise", "affiliationChanged",
                "superseded", "cessationOfOperation", "certificateHold", NULL,
                "removeFromCRL", "privilegeWithdrawn", "aACompromise",
        };
        if (reason >= 0 && (size_t) reason < ELEMENTSOF(table) && table[reason])
                snprintf(buf, size, "%s", table[reason]);
        else
                snprintf(buf, size, "reason %d", reason);
}

static void stapler_revoked(OcspStapler *s, const OcspResult *res, time_t now) {
        char since[32], reason[32];

        s->revoked = true;
        s->state = OCSP_STATE_REVOKED;
        format_time(since, sizeof since, res->revocation_time);
        reason_to_string(res->revocation_reason, reason, sizeof reason);
        /* Loud, and again with every check: clients that look at revocation
         * refuse this certificate. */
        if (s->renewable)
                log_fields(LOG_ERR, 0, MESSAGE_ID_OCSP_REVOKED, STAPLER_FIELDS(s), 1,
                           "certificate for %s (serial %s) is REVOKED according to its OCSP "
                           "responder %s (since %s, %s): obtaining a new certificate with a new "
                           "key",
                           stapler_name(s), s->serial, s->url, since, reason);
        else
                log_fields(LOG_CRIT, 0, MESSAGE_ID_OCSP_REVOKED, STAPLER_FIELDS(s), 1,
                           "certificate %s (serial %s) is REVOKED according to its OCSP "
                           "responder %s (since %s, %s): clients checking revocation will refuse "
                           "it; replace it and reload tlsgate",
                           stapler_name(s), s->serial, s->url, since, reason);
        /* Never staple a "good" answer we now know to be outdated. */
        if (s->stapled)
                stapler_serve(s, NULL);
        if (s->cb.on_revoked)
                s->cb.on_revoked(s->base, s->userdata);
}

static void stapler_good(OcspStapler *s, const gnutls_datum_t *der, const OcspResult *res,
                         time_t now) {
        _cleanup_(cert_bundle_unrefp) CertBundle *b = NULL;
        time_t exptime = ocsp_staple_expiry(res, s->base->not_after);
        char t1[32], t2[32], t3[32];
        int r;

        r = cert_bundle_with_staple(s->base, der, exptime, &b);
        if (r < 0)
                return stapler_failed(s, r, "out of memory");
        s->state = OCSP_STATE_GOOD;
        s->revoked = false;
        s->staple_result = *res;
        stapler_serve(s, b);
        if (stapler_arm(s, &s->expiry_timer, (usec_t) exptime * USEC_PER_SEC, on_expiry,
                        "ocsp-expiry") < 0)
                log_warning("cannot arm the OCSP staple expiry timer, ignoring");

        time_t next = ocsp_next_fetch(res, now);
        log_fields(s->failures > 0 ? LOG_NOTICE : LOG_INFO, 0, NULL, STAPLER_FIELDS(s), 1,
                   "OCSP staple for %s: good (this update %s, next update %s)%s, next check %s",
                   stapler_name(s), format_time(t1, sizeof t1, res->this_update),
                   format_time(t2, sizeof t2, res->next_update),
                   s->failures > 0 ? ", the responder answers again" : "",
                   format_time(t3, sizeof t3, next));
        stapler_schedule(s, (usec_t) next * USEC_PER_SEC);
}

/* A verified answer ends a series of failures: the next failure waits
 * the initial delay again (the first backoff_next() is the fetch itself). */
static void stapler_backoff_reset(OcspStapler *s) {
        usec_t first;

        s->failures = 0;
        backoff_reset(&s->backoff);
        (void) backoff_next(&s->backoff, &first);
}

static void on_response(const HttpResponse *resp, void *userdata) {
        OcspStapler *s = userdata;
        _cleanup_free_ char *error = NULL, *message = NULL;
        OcspResult res = {};
        time_t now = stapler_now(s);
        int r;

        s->request = NULL;
        if (resp->error < 0) {
                if (asprintf(&message, "%s", resp->error_message ? resp->error_message
                                                                 : strerror(-resp->error)) < 0)
                        message = NULL;
                return stapler_failed(s, resp->error, message ? message : "request failed");
        }
        if (resp->status != 200) {
                if (asprintf(&message, "HTTP status %ld", resp->status) < 0)
                        message = NULL;
                return stapler_failed(s, -EPROTO, message ? message : "HTTP error");
        }
        const gnutls_datum_t der = { (unsigned char *) resp->body, (unsigned) resp->body_size };
        r = ocsp_response_check(&der, s->leaf, s->issuer, now, &res, &error);
        if (r < 0)
                return stapler_failed(s, r, error ? error : strerror(-r));

        s->last_success = now;
        if (res.status == OCSP_CERT_UNKNOWN)
                return stapler_failed(s, -ENOENT,
                                      "the responder does not know the certificate (status unknown)");
        free(s->last_error);
        s->last_error = NULL;
        if (res.status == OCSP_CERT_REVOKED) {
                stapler_backoff_reset(s);
                stapler_revoked(s, &res, now);
                stapler_schedule(s, (usec_t) ocsp_next_fetch(&res, now) * USEC_PER_SEC);
                return;
        }
        stapler_good(s, &der, &res, now);
        stapler_backoff_reset(s);
}

static void stapler_fetch(OcspStapler *s) {
        gnutls_datum_t body = {};
        int r;

        if (!s->base || !s->url || s->request)
                return;
        if (!s->http) {
                r = http_client_new(s->event, &s->http);
                if (r < 0)
                        return stapler_failed(s, r, "cannot set up the HTTP client");
        }
        r = ocsp_request_build(s->leaf, s->issuer, &body);
        if (r < 0)
                return stapler_failed(s, r, "cannot build the OCSP request");
        /* POST (RFC 6960 A.1): no length limit, and no cache in between
         * handing us an old answer. */
        const HttpRequest req = {
                .method = HTTP_POST,
                .url = s->url,
                .body = body.data,
                .body_size = body.size,
                .content_type = "application/ocsp-request",
                .max_response_size = OCSP_RESPONSE_SIZE_MAX,
                .timeout = OCSP_HTTP_TIMEOUT,
                .follow_redirects = true,
        };
        log_fields(LOG_DEBUG, 0, NULL, STAPLER_FIELDS(s), 1, "OCSP: asking %s about %s (serial %s)",
                   s->url, stapler_name(s), s->serial);
        r = http_request(s->http, &req, on_response, s, &s->request);
        gnutls_free(body.data);
        if (r < 0)
                stapler_failed(s, r, strerror(-r));
}

/* Forgets the tracked certificate and everything about it. */
static void stapler_reset(OcspStapler *s) {
        http_request_cancel(s->request);
        s->request = NULL;
        s->fetch_timer = sd_event_source_disable_unref(s->fetch_timer);
        s->expiry_timer = sd_event_source_disable_unref(s->expiry_timer);
        s->stapled = cert_bundle_unref(s->stapled);
        s->base = cert_bundle_unref(s->base);
        if (s->leaf)
                gnutls_x509_crt_deinit(s->leaf);
        if (s->issuer)
                gnutls_x509_crt_deinit(s->issuer);
        s->leaf = s->issuer = NULL;
        s->url = (free(s->url), NULL);
        s->last_error = (free(s->last_error), NULL);
        s->serial[0] = 0;
        s->state = OCSP_STATE_OFF;
        s->staple_result = (OcspResult) {};
        s->revoked = false;
        s->last_success = 0;
        backoff_init(&s->backoff, (usec_t) (OCSP_BACKOFF_INITIAL * s->scale),
                     (usec_t) (OCSP_BACKOFF_CAP * s->scale), 0);
        stapler_backoff_reset(s);
}

/* The same chain, byte for byte: the issuer we ask about comes from it. */
static bool same_chain(const CertBundle *a, const CertBundle *b) {
        if (!a || !b || a->n_pcerts != b->n_pcerts)
                return false;
        for (unsigned i = 0; i < a->n_pcerts; i++)
                if (!datum_eq(&a->pcerts[i].cert, &b->pcerts[i].cert))
                        return false;
        return true;
}

/* Starts the cycle for a new certificate (s was reset). */
static void stapler_start(OcspStapler *s, CertBundle *base) {
        unsigned char serial[20];
        size_t serial_len = sizeof serial;
        int r;

        s->base = cert_bundle_ref(base);
        if (gnutls_x509_crt_init(&s->leaf) < 0 ||
            gnutls_x509_crt_import(s->leaf, &base->pcerts[0].cert, GNUTLS_X509_FMT_DER) < 0) {
                log_error("OCSP: cannot parse the certificate of %s, not stapling",
                          stapler_name(s));
                s->state = OCSP_STATE_NO_RESPONDER;
                return;
        }
        if (gnutls_x509_crt_get_serial(s->leaf, serial, &serial_len) >= 0)
                for (size_t i = 0; i < serial_len; i++)
                        snprintf(s->serial + 2 * i, 3, "%02x", serial[i]);

        r = ocsp_responder_url(s->leaf, &s->url);
        if (r < 0) {
                /* Debug: the usual case (Let's Encrypt has put no OCSP URL
                 * in its certificates since 2025), not news on every start. */
                log_fields(LOG_DEBUG, 0, NULL, STAPLER_FIELDS(s), 1,
                           "certificate %s names no OCSP responder: no OCSP stapling",
                           stapler_name(s));
                s->state = OCSP_STATE_NO_RESPONDER;
                return;
        }
        r = ocsp_find_issuer(base->pcerts, base->n_pcerts, &s->issuer);
        if (r < 0) {
                log_fields(LOG_WARNING, 0, NULL, STAPLER_FIELDS(s), 1,
                           "cannot staple OCSP for %s: its issuer is not in the served chain "
                           "(add it after the certificate)",
                           stapler_name(s));
                s->state = OCSP_STATE_NO_RESPONDER;
                return;
        }
        s->state = OCSP_STATE_FETCHING;
        /* From the loop, not from inside the caller's swap. */
        stapler_schedule(s, 0);
}

CertBundle *ocsp_stapler_track(OcspStapler *s, CertBundle *b, bool refresh) {
        CertBundle *base = cert_bundle_base(b);

        if (!b) {
                stapler_reset(s);
                return NULL;
        }
        if (!same_chain(s->base, base)) {
                stapler_reset(s);
                stapler_start(s, base);
                return cert_bundle_ref(b);
        }
        if (base != s->base) {
                /* The same certificate loaded again (a reload): serve the new
                 * bundle, with the staple we have. */
                CertBundle *stapled = NULL;
                if (s->stapled && cert_bundle_with_staple(base, &s->stapled->staple.response,
                                                          s->stapled->staple.exptime,
                                                          &stapled) < 0)
                        stapled = NULL;
                cert_bundle_unref(s->base);
                s->base = cert_bundle_ref(base);
                cert_bundle_unref(s->stapled);
                s->stapled = stapled;
                if (!stapled && s->state == OCSP_STATE_GOOD)
                        s->state = OCSP_STATE_FETCHING;
        }
        if (refresh && s->url && s->issuer && !s->request)
                stapler_schedule(s, 0);
        return cert_bundle_ref(s->stapled ? s->stapled : s->base);
}

int ocsp_stapler_new(sd_event *e, const char *name, bool renewable, const OcspStaplerCallbacks *cb,
                     void *userdata, OcspStapler **ret) {
        _cleanup_(ocsp_stapler_freep) OcspStapler *s = NULL;
        const char *scale;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->event = e;
        s->cb = *cb;
        s->userdata = userdata;
        s->renewable = renewable;
        if (name && !(s->name = strdup(name)))
                return -ENOMEM;
        s->scale = 1.0;
        /* The suite's knob (as for the renewer) to make retries fast. */
        scale = getenv("TLSGATE_TEST_BACKOFF_SCALE");
        if (scale) {
                double d = strtod(scale, NULL);
                if (d > 0 && d <= 1)
                        s->scale = d;
        }
        stapler_reset(s);
        *ret = TAKE_PTR(s);
        return 0;
}

OcspStapler *ocsp_stapler_free(OcspStapler *s) {
        if (!s)
                return NULL;
        stapler_reset(s);
        http_client_free(s->http);
        free(s->name);
        free(s);
        return NULL;
}

void ocsp_stapler_info(const OcspStapler *s, OcspInfo *ret) {
        *ret = (OcspInfo) {
                .state = s->state,
                .responder = s->url,
                .stapled = s->stapled != NULL,
                .revoked = s->revoked,
                .this_update = s->stapled ? s->staple_result.this_update : 0,
                .next_update = s->stapled ? s->staple_result.next_update : 0,
                .last_success = s->last_success,
                .last_error = s->last_error,
        };
}

bool ocsp_stapler_revoked(const OcspStapler *s) {
        return s && s->revoked;
}
