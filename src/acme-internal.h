/* SPDX-License-Identifier: MIT */
#pragma once

/* One ACME order in two files: acme.c (the order object, its requests with
 * nonces and retries, the responses and problem documents) and acme-flow.c
 * (the protocol's steps: directory, account, order, authorizations, the
 * challenge, finalize, the certificate). Internal to them: the rest of
 * tlsgate uses acme.h. */

#include <gnutls/x509.h>
#include <json-c/json.h>

#include "acme.h"
#include "backoff.h"

#define ACME_REQUEST_TIMEOUT (30 * USEC_PER_SEC)
#define ACME_JSON_MAX (256U * 1024U)
#define ACME_CHAIN_MAX (1024U * 1024U)
#define ACME_JSON_DEPTH 16
#define ACME_NONCE_MAX 512
#define ACME_BAD_NONCE_RETRIES 20       /* per request; Pebble tests reject 50 % */
#define ACME_AUTHORIZATIONS_MAX 16      /* we ask for one identifier */
#define ACME_POLL_FIRST (50 * USEC_PER_MSEC)
#define ACME_POLL_CAP (1 * USEC_PER_SEC)
#define ACME_POLL_ACCURACY (1 * USEC_PER_MSEC) /* 0 would mean sd-event's default, 250 ms */
#define ACME_POLL_MAX 300               /* polls per order */
#define ACME_POLL_TIMEOUT (3 * USEC_PER_MINUTE) /* from the first wait */
#define ACME_RETRY_AFTER_MAX (2 * USEC_PER_MINUTE)

#define ACME_ERROR_NS "urn:ietf:params:acme:error:"
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

typedef enum AcmeState {
        ACME_START,                     /* waiting for the loop to run the first step */
        ACME_DIRECTORY,
        ACME_NEW_ACCOUNT,
        ACME_NEW_ORDER,
        ACME_AUTHORIZATION,             /* first look at authorization authz_index */
        ACME_CHALLENGE,
        ACME_AUTHORIZATION_POLL,
        ACME_ORDER_CHECK,               /* authorized: is the order ready? */
        ACME_ORDER_POLL_READY,
        ACME_FINALIZE,
        ACME_ORDER_POLL_VALID,
        ACME_CERTIFICATE,
        ACME_DONE,
        ACME_FAILED,
        _ACME_STATE_MAX,
} AcmeState;

struct AcmeOrder {
        AcmeState state;

        /* Parameters: strings owned, the rest borrowed. */
        char *directory_url, *contact, *domain;
        gnutls_privkey_t account_key, cert_key;
        HttpClient *http;
        sd_event *event;
        int (*challenge_add)(const char *domain, const uint8_t digest[32], void *userdata);
        void (*challenge_remove)(const char *domain, void *userdata);
        void *userdata;
        acme_done_t done;
        void *done_userdata;
        usec_t request_timeout;

        /* The directory (section 7.1.1). */
        char *new_nonce_url, *new_account_url, *new_order_url;

        /* The nonce in hand: the last valid Replay-Nonce the CA sent, used up
         * by the next signed POST; NULL: ask newNonce for one first. */
        char *nonce;
        char *account_url;
        bool account_from_caller;       /* may be stale: fall back to newAccount once */
        json_object *account;

        char *order_url, *finalize_url, *certificate_url;
        char **authz_urls;
        size_t n_authz, authz_index;
        bool authorized, finalized;
        bool challenge_added;

        /* The request in flight; a POST is kept so it can be re-signed. */
        HttpRequestHandle *request;
        HttpMethod request_method;
        const char *request_url;        /* directory_url, new_nonce_url or post_url */
        bool fetching_nonce;
        char *post_url, *post_payload;  /* payload NULL: POST-as-GET */
        bool post_jwk, post_pem;
        unsigned bad_nonce_retries;

        /* One timer: the first step, then every poll. */
        sd_event_source *timer;
        const char *poll_url;           /* points at authz_urls[i] or order_url */
        Backoff poll;
        usec_t poll_deadline;
        usec_t retry_after;

        char *problem_type, *problem_detail;
        AcmeStats stats;
};

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
DEFINE_TRIVIAL_CLEANUP_FUNC(gnutls_x509_crq_t, gnutls_x509_crq_deinit);
DEFINE_TRIVIAL_CLEANUP_FUNC(gnutls_pubkey_t, gnutls_pubkey_deinit);

static inline void datum_freep(gnutls_datum_t *d) {
        gnutls_free(d->data);
        *d = (gnutls_datum_t) {};
}

static inline int free_and_strdup(char **p, const char *s) {
        char *t = NULL;

        if (s && !(t = strdup(s)))
                return -ENOMEM;
        free(*p);
        *p = t;
        return 0;
}

int acme_detail_set(AcmeOrder *o, int error, const char *format, ...) _printf_(3, 4);
void acme_finish(AcmeOrder *o, int error, char *chain_pem);
int acme_post(AcmeOrder *o, const char *url, json_object *payload, bool jwk, bool pem);
int acme_post_as_get(AcmeOrder *o, const char *url);
int acme_problem_set(AcmeOrder *o, json_object *problem);
int acme_send(AcmeOrder *o, HttpMethod method, const char *url, const char *body);
void acme_set_state(AcmeOrder *o, AcmeState s);
int acme_wait(AcmeOrder *o, AcmeState state, const char *url);
void acme_challenge_withdraw(AcmeOrder *o);
int acme_do_directory(AcmeOrder *o);
int acme_do_new_account(AcmeOrder *o);
int acme_json_add(json_object *o, const char *key, json_object *v);
int acme_json_append(json_object *a, json_object *v);
const char *acme_json_str(json_object *j, const char *key);
int acme_on_authorization(AcmeOrder *o, const HttpResponse *resp, json_object *j);
int acme_on_certificate(AcmeOrder *o, const HttpResponse *resp);
int acme_on_challenge(AcmeOrder *o, const HttpResponse *resp, json_object *j);
int acme_on_directory(AcmeOrder *o, const HttpResponse *resp, json_object *j);
int acme_on_new_account(AcmeOrder *o, const HttpResponse *resp, json_object *j);
int acme_on_new_order(AcmeOrder *o, const HttpResponse *resp, json_object *j);
int acme_order_advance(AcmeOrder *o, const HttpResponse *resp, json_object *order);
