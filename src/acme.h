/* SPDX-License-Identifier: MIT */
#pragma once

/* One ACME order (RFC 8555) for one DNS name, answered with TLS-ALPN-01
 * (RFC 8737): directory, account, order, authorization, challenge,
 * finalize, download. The whole flow runs on the sd_event loop through
 * http.h; nothing blocks. The caller serves the challenge certificate
 * (challenges.h) when told to, stores what comes back, and decides about
 * retries (backoff.h): one AcmeOrder is one attempt.
 *
 * The keys, the HttpClient and the event loop are borrowed and must outlive
 * the order; all strings are copied. */

#include <gnutls/abstract.h>
#include <json-c/json.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "http.h"
#include "macro.h"

typedef struct AcmeOrder AcmeOrder;

typedef struct AcmeOrderParams {
        const char *directory_url;
        const char *email;              /* "user@example.org" or "mailto:..."; required */
        const char *domain;             /* one DNS identifier */
        gnutls_privkey_t account_key;   /* P-256 */
        /* The account URL ("kid") if known, else NULL: newAccount (RFC 8555 7.3), which
         * returns the existing account for a known key. A known URL the CA has
         * forgotten (accountDoesNotExist, e.g. a restarted test CA) is replaced by
         * newAccount once. */
        const char *account_url;
        gnutls_privkey_t cert_key;      /* P-256, for the certificate */
        HttpClient *http;
        sd_event *event;
        /* Serve the tls-alpn-01 response: called with SHA-256 of the key authorization
         * before the challenge is POSTed. A negative return fails the order. */
        int (*challenge_add)(const char *domain, const uint8_t digest[32], void *userdata);
        /* Withdraw it: called once for every successful challenge_add, as soon as the
         * authorization is decided, or when the order fails or is freed. */
        void (*challenge_remove)(const char *domain, void *userdata);
        void *userdata;                 /* for both; neither may free the order */
        usec_t request_timeout;         /* per request; 0: 30 s */
} AcmeOrderParams;

/* Valid during the done callback only; copy what you keep. */
typedef struct AcmeResult {
        const char *chain_pem;          /* leaf first, as downloaded (checked: parses, leaf
                                         * carries cert_key and the domain) */
        const char *account_url;        /* kid; store it */
        /* The account object as newAccount returned it (status, contact, orders,
         * termsOfServiceAgreed ...); NULL when params.account_url was used as is. */
        json_object *account;
        const char *ca_directory_url;
        const char *certificate_url;    /* where the chain came from (certmagic: issuer_data.url) */
} AcmeResult;

/* Requests made so far, for logs and tests. */
typedef struct AcmeStats {
        unsigned requests;              /* every HTTP request, retries included */
        unsigned new_nonce;             /* HEAD newNonce */
        unsigned new_account;           /* newAccount POSTs */
        unsigned bad_nonce;             /* requests repeated after badNonce */
        unsigned polls;                 /* authorization and order polls */
} AcmeStats;

/* error: 0 on success (result set), else a negative errno (result NULL):
 *   -EREMOTEIO  the CA refused: problem_type and detail say why (RFC 8555 6.7; the
 *               detail includes subproblems and the "instance" URL when present).
 *               An invalid authorization or order also ends here, with the problem
 *               the CA recorded in the challenge or order.
 *   -EPROTO     the CA answered something this client cannot use (bad JSON, missing
 *               fields, no tls-alpn-01 challenge, a chain that does not match)
 *   -ETIMEDOUT  a request timed out, or polling gave up
 *   -ECONNREFUSED, -EHOSTUNREACH, -EPERM (TLS verification) ... as in http.h
 *   anything challenge_add returned.
 * problem_type is set only when the CA sent a problem document. detail is then
 * the CA's text; otherwise it says what went wrong when there is more to say
 * than the errno (the failing URL, curl's message, the missing field), or NULL.
 * Both are for the user: log them in full (control characters are replaced
 * by blanks).
 * Called exactly once, from the event loop, unless the order is freed first.
 * The callback may free the order. */
typedef void (*acme_done_t)(AcmeOrder *o, int error, const char *problem_type,
                            const char *detail, const AcmeResult *result, void *userdata);

/* Starts the order. The first request goes out from the event loop, so done
 * is never called from inside this function. Returns 0, -EINVAL (missing or
 * malformed parameters, keys that are not P-256, a wildcard domain: RFC 8737
 * section 3 rules tls-alpn-01 out for those), or -ENOMEM; on error nothing was
 * started and done is never called. */
int acme_order_start(const AcmeOrderParams *p, acme_done_t done, void *userdata,
                     AcmeOrder **ret);

/* Cancels a running order: the request in flight is aborted, a challenge
 * still being served is withdrawn (challenge_remove), done is not called.
 * Accepts NULL, returns NULL; may be called from the done callback. */
AcmeOrder *acme_order_free(AcmeOrder *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(AcmeOrder *, acme_order_free);

void acme_order_get_stats(const AcmeOrder *o, AcmeStats *ret);

/* The Retry-After of the last response (RFC 8555 6.6, e.g. with rateLimited),
 * 0 if it had none; for the caller's backoff after a failure. */
usec_t acme_order_get_retry_after(const AcmeOrder *o);

/* RFC 8555 6.7: the type ("about:blank" when absent) and the detail as
 * acme_done_t reports them (subproblems and "instance" folded in, control
 * characters replaced by blanks) of the problem document in json (len
 * bytes, no terminator needed). Both malloc'ed. -EPROTO when json is not a
 * JSON object as an ACME response body must be (at most 16 levels deep,
 * nothing after it but blanks, no NUL), -ENOMEM. */
int acme_parse_problem(const char *json, size_t len, char **ret_type, char **ret_detail);

/* For the fuzzer and tests: plays the network. When o waits for its timer
 * (the first step, a poll), that step runs now, sending the next request,
 * and 1 is returned without looking at resp: call again to answer the
 * request. Otherwise resp answers the request in flight (which is
 * cancelled, so nothing goes out) exactly as if it had arrived, and 0 is
 * returned. done may run in either case, and may free o; then o must not
 * be used again. -ESTALE when o has finished (nothing in flight, no timer). */
int acme_order_feed_response(AcmeOrder *o, const HttpResponse *resp);
