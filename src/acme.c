/* SPDX-License-Identifier: MIT */
/* The ACME order flow (RFC 8555) with TLS-ALPN-01 (RFC 8737), one step per
 * protocol request, driven by HTTP callbacks and one sd_event timer:
 *
 *   directory -> [newNonce] -> newAccount (unless the kid is known) -> newOrder
 *   -> for each authorization: fetch, answer tls-alpn-01, poll
 *   -> order ready? -> finalize (CSR) -> poll the order -> download the chain
 *
 * Every POST is signed with a fresh nonce; a badNonce answer is retried with
 * the nonce it carries (section 6.5). Waits are timers, bounded in number and
 * time; every size and count the CA controls is bounded too. */

#include <gnutls/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "acme.h"
#include "backoff.h"
#include "jws.h"
#include "log.h"

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

static const char *const acme_state_table[_ACME_STATE_MAX] = {
        [ACME_START] = "start",
        [ACME_DIRECTORY] = "directory",
        [ACME_NEW_ACCOUNT] = "new-account",
        [ACME_NEW_ORDER] = "new-order",
        [ACME_AUTHORIZATION] = "authorization",
        [ACME_CHALLENGE] = "challenge",
        [ACME_AUTHORIZATION_POLL] = "authorization-poll",
        [ACME_ORDER_CHECK] = "order-check",
        [ACME_ORDER_POLL_READY] = "order-poll-ready",
        [ACME_FINALIZE] = "finalize",
        [ACME_ORDER_POLL_VALID] = "order-poll-valid",
        [ACME_CERTIFICATE] = "certificate",
        [ACME_DONE] = "done",
        [ACME_FAILED] = "failed",
};

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

static void datum_freep(gnutls_datum_t *d) {
        gnutls_free(d->data);
        *d = (gnutls_datum_t) {};
}

static void *mfree(void *p) {
        free(p);
        return NULL;
}

static int free_and_strdup(char **p, const char *s) {
        char *t = NULL;

        if (s && !(t = strdup(s)))
                return -ENOMEM;
        free(*p);
        *p = t;
        return 0;
}

static void acme_set_state(AcmeOrder *o, AcmeState s) {
        if (o->state == s)
                return;
        log_debug("ACME order for %s: %s -> %s", o->domain, acme_state_table[o->state],
                  acme_state_table[s]);
        o->state = s;
}

/* ---- JSON and problem documents ---- */

static const char *json_str(json_object *j, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(j, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* Both take over v, also on failure. */
static int json_add(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int json_append(json_object *a, json_object *v) {
        if (!v || json_object_array_add(a, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int json_parse_object(const char *s, size_t n, json_object **ret) {
        _cleanup_(json_object_putp) json_object *j = NULL;
        json_tokener *tok;
        size_t end;
        bool ok;

        if (n > INT32_MAX || strlen(s) != n)
                return -EPROTO;
        tok = json_tokener_new_ex(ACME_JSON_DEPTH);
        if (!tok)
                return -ENOMEM;
        j = json_tokener_parse_ex(tok, s, (int) n);
        ok = json_tokener_get_error(tok) == json_tokener_success;
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        /* One object and nothing after it but blanks. */
        if (!ok || !json_object_is_type(j, json_type_object) ||
            s[end + strspn(s + end, " \t\r\n")] != 0)
                return -EPROTO;
        *ret = TAKE_PTR(j);
        return 0;
}

/* What the CA wrote ends up in logs and on terminals: no control characters. */
static char *string_sanitize(char *s) {
        for (char *p = s; p && *p; p++)
                if ((unsigned char) *p < ' ' || *p == 0x7f)
                        *p = ' ';
        return s;
}

/* RFC 8555 6.7 (and 6.7.1 subproblems): the type and a detail that tells
 * the whole story, since it is what the user gets to read. */
static int problem_format(json_object *problem, char **ret_type, char **ret_detail) {
        _cleanup_free_ char *detail = NULL, *type = NULL;
        json_object *subs;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&detail, &size);
        if (!f)
                return -ENOMEM;
        fputs(json_str(problem, "detail") ?: "(no detail)", f);
        if (json_object_object_get_ex(problem, "subproblems", &subs) &&
            json_object_is_type(subs, json_type_array))
                for (size_t i = 0; i < json_object_array_length(subs); i++) {
                        json_object *sub = json_object_array_get_idx(subs, i), *id;
                        const char *value = NULL;

                        if (json_object_object_get_ex(sub, "identifier", &id))
                                value = json_str(id, "value");
                        fprintf(f, "; %s: %s: %s", value ?: "?", json_str(sub, "type") ?: "?",
                                json_str(sub, "detail") ?: "");
                }
        if (json_str(problem, "instance"))
                fprintf(f, " (see %s)", json_str(problem, "instance"));
        if (fclose(f) != 0)
                return -ENOMEM;

        type = strdup(json_str(problem, "type") ?: "about:blank");
        if (!type)
                return -ENOMEM;
        *ret_type = string_sanitize(TAKE_PTR(type));
        *ret_detail = string_sanitize(TAKE_PTR(detail));
        return 0;
}

static int acme_problem_set(AcmeOrder *o, json_object *problem) {
        char *type, *detail;
        int r;

        r = problem_format(problem, &type, &detail);
        if (r < 0)
                return r;
        free(o->problem_type);
        o->problem_type = type;
        free(o->problem_detail);
        o->problem_detail = detail;
        log_debug("ACME order for %s: problem %s: %s", o->domain, o->problem_type,
                  o->problem_detail);
        return 0;
}

int acme_parse_problem(const char *json, size_t len, char **ret_type, char **ret_detail) {
        _cleanup_(json_object_putp) json_object *j = NULL;
        _cleanup_free_ char *s = NULL;
        int r;

        if (!json || !ret_type || !ret_detail)
                return -EINVAL;
        s = strndup(json, len); /* json_parse_object() wants the terminator at len */
        if (!s)
                return -ENOMEM;
        r = json_parse_object(s, len, &j);
        if (r < 0)
                return r;
        return problem_format(j, ret_type, ret_detail);
}

/* A description of our own for the user when there is no problem document. */
static int acme_detail_set(AcmeOrder *o, int error, const char *format, ...) _printf_(3, 4);
static int acme_detail_set(AcmeOrder *o, int error, const char *format, ...) {
        va_list ap;
        char *s;
        int r;

        va_start(ap, format);
        r = vasprintf(&s, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        o->problem_type = mfree(o->problem_type);
        free(o->problem_detail);
        o->problem_detail = string_sanitize(s);
        log_debug("ACME order for %s: %s", o->domain, s);
        return error;
}

static void acme_problem_clear(AcmeOrder *o) {
        o->problem_type = mfree(o->problem_type);
        o->problem_detail = mfree(o->problem_detail);
}

static bool problem_is(const AcmeOrder *o, const char *name) {
        const char *t = o->problem_type ? startswith(o->problem_type, ACME_ERROR_NS) : NULL;

        return t && streq(t, name);
}

/* ---- the end ---- */

static void challenge_withdraw(AcmeOrder *o) {
        if (!o->challenge_added)
                return;
        o->challenge_added = false;
        o->challenge_remove(o->domain, o->userdata);
}

/* Calls done last: it may free the order, so what it is handed is taken out
 * of the order first and freed only after it returns. */
static void acme_finish(AcmeOrder *o, int error, char *chain_pem) {
        _cleanup_free_ char *chain = chain_pem, *type = TAKE_PTR(o->problem_type),
                            *detail = TAKE_PTR(o->problem_detail),
                            *account_url = TAKE_PTR(o->account_url),
                            *directory_url = TAKE_PTR(o->directory_url),
                            *certificate_url = TAKE_PTR(o->certificate_url);
        _cleanup_(json_object_putp) json_object *account = TAKE_PTR(o->account);
        AcmeResult result = {
                .chain_pem = chain,
                .account_url = account_url,
                .account = account,
                .ca_directory_url = directory_url,
                .certificate_url = certificate_url,
        };

        challenge_withdraw(o);
        (void) sd_event_source_set_enabled(o->timer, SD_EVENT_OFF);
        acme_set_state(o, error < 0 ? ACME_FAILED : ACME_DONE);
        if (error < 0)
                log_debug_errno(error, "ACME order for %s failed: %s%s%s: %m", o->domain,
                                strempty(type), type ? ": " : "", strempty(detail));
        if (error >= 0)
                o->done(o, 0, NULL, NULL, &result, o->done_userdata);
        else
                o->done(o, error, type, detail, NULL, o->done_userdata);
}

/* ---- requests ---- */

static void on_http_response(const HttpResponse *resp, void *userdata);

static int acme_send(AcmeOrder *o, HttpMethod method, const char *url, const char *body) {
        static const char *const accept_pem[] = { "Accept: application/pem-certificate-chain",
                                                  NULL };
        HttpRequest req = {
                .method = method,
                .url = url,
                .body = body,
                .body_size = body ? strlen(body) : 0,
                .content_type = body ? "application/jose+json" : NULL,
                .extra_headers = method == HTTP_POST && o->post_pem ? accept_pem : NULL,
                .max_response_size = o->post_pem ? ACME_CHAIN_MAX : ACME_JSON_MAX,
                .timeout = o->request_timeout > 0 ? o->request_timeout : ACME_REQUEST_TIMEOUT,
        };
        int r;

        log_debug("ACME order for %s: %s %s", o->domain, http_method_to_string(method), url);
        o->request_method = method;
        o->request_url = url;
        o->stats.requests++;
        r = http_request(o->http, &req, on_http_response, o, &o->request);
        if (r < 0)
                return acme_detail_set(o, r, "%s %s: cannot send the request",
                                       http_method_to_string(method), url);
        return 0;
}

/* RFC 8555 7.2: a nonce when none is in hand. */
static int acme_fetch_nonce(AcmeOrder *o) {
        o->fetching_nonce = true;
        o->stats.new_nonce++;
        return acme_send(o, HTTP_HEAD, o->new_nonce_url, NULL);
}

/* RFC 8555 6.2, 6.5: signs the kept POST with the nonce in hand, which is
 * then used up. */
static int acme_post_send(AcmeOrder *o) {
        _cleanup_free_ char *body = NULL;
        int r;

        if (!o->nonce)
                return acme_fetch_nonce(o);
        r = jws_sign(o->account_key, o->post_jwk ? NULL : o->account_url, o->nonce, o->post_url,
                     o->post_payload, &body);
        o->nonce = mfree(o->nonce);
        if (r < 0)
                return r;
        return acme_send(o, HTTP_POST, o->post_url, body);
}

/* payload NULL: POST-as-GET (section 6.3). jwk: sign with the key, not the kid. */
static int acme_post(AcmeOrder *o, const char *url, json_object *payload, bool jwk, bool pem) {
        const char *body = payload ? json_object_to_json_string_ext(payload, JSON_FLAGS) : NULL;

        if ((payload && !body) || free_and_strdup(&o->post_url, url) < 0 ||
            free_and_strdup(&o->post_payload, body) < 0)
                return -ENOMEM;
        o->post_jwk = jwk;
        o->post_pem = pem;
        o->bad_nonce_retries = 0;
        return acme_post_send(o);
}

static int acme_post_as_get(AcmeOrder *o, const char *url) {
        return acme_post(o, url, NULL, false, false);
}

/* RFC 8555 6.5.1: a nonce is base64url; anything else is ignored. */
static void acme_keep_nonce(AcmeOrder *o, const HttpResponse *resp) {
        const char *n = http_response_header(resp, "Replay-Nonce");
        size_t l;

        if (!n)
                return;
        l = strlen(n);
        if (l == 0 || l > ACME_NONCE_MAX ||
            strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != l) {
                log_debug("ACME order for %s: ignoring malformed Replay-Nonce", o->domain);
                return;
        }
        (void) free_and_strdup(&o->nonce, n);
}

/* RFC 8555 6.6, 7.4, 7.5.1: waits before fetching url again, as the server
 * asks or on our gentle schedule, and gives up when polling takes too long. */
static int acme_wait(AcmeOrder *o, AcmeState state, const char *url) {
        usec_t now, delay;
        int r;

        r = sd_event_now(o->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        if (o->poll_deadline == 0)
                o->poll_deadline = now + ACME_POLL_TIMEOUT;
        if (o->state != state) {
                backoff_init(&o->poll, ACME_POLL_FIRST, ACME_POLL_CAP, 0);
                (void) backoff_next(&o->poll, &delay); /* the immediate first try was the
                                                        * request that got us here */
        }
        (void) backoff_next(&o->poll, &delay);
        if (o->retry_after > 0)
                delay = backoff_apply_retry_after(delay, o->retry_after, ACME_RETRY_AFTER_MAX);
        if (o->stats.polls >= ACME_POLL_MAX || now + delay > o->poll_deadline)
                return acme_detail_set(o, -ETIMEDOUT, "Gave up waiting for %s after %u polls",
                                       url, o->stats.polls);

        acme_set_state(o, state);
        o->poll_url = url;
        r = sd_event_source_set_time_relative(o->timer, delay);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(o->timer, SD_EVENT_ONESHOT);
}

/* ---- the flow, one step per request ---- */

static int do_directory(AcmeOrder *o);
static int do_new_account(AcmeOrder *o);
static int do_new_order(AcmeOrder *o);
static int do_authorization(AcmeOrder *o);
static int do_order_check(AcmeOrder *o);
static int do_finalize(AcmeOrder *o);
static int do_certificate(AcmeOrder *o);

/* RFC 8555 7.1.1: the directory names every other resource. */
static int do_directory(AcmeOrder *o) {
        acme_set_state(o, ACME_DIRECTORY);
        return acme_send(o, HTTP_GET, o->directory_url, NULL);
}

static int on_directory(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        if (free_and_strdup(&o->new_nonce_url, json_str(j, "newNonce")) < 0 ||
            free_and_strdup(&o->new_account_url, json_str(j, "newAccount")) < 0 ||
            free_and_strdup(&o->new_order_url, json_str(j, "newOrder")) < 0)
                return -ENOMEM;
        if (!o->new_nonce_url || !o->new_account_url || !o->new_order_url)
                return acme_detail_set(o, -EPROTO, "Directory %s lacks newNonce, newAccount "
                                       "or newOrder", o->directory_url);
        return o->account_url ? do_new_order(o) : do_new_account(o);
}

/* RFC 8555 7.3: creates the account, or finds the one this key has (200). */
static int do_new_account(AcmeOrder *o) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object(),
                                                *contact = json_object_new_array();

        if (!p || !contact || json_append(contact, json_object_new_string(o->contact)) < 0 ||
            json_add(p, "contact", json_object_get(contact)) < 0 ||
            json_add(p, "termsOfServiceAgreed", json_object_new_boolean(true)) < 0)
                return -ENOMEM;

        acme_set_state(o, ACME_NEW_ACCOUNT);
        o->stats.new_account++;
        return acme_post(o, o->new_account_url, p, true, false);
}

static int on_new_account(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        const char *status = json_str(j, "status");

        if (free_and_strdup(&o->account_url, http_response_header(resp, "Location")) < 0)
                return -ENOMEM;
        if (!o->account_url)
                return acme_detail_set(o, -EPROTO, "newAccount %s gave no Location",
                                       o->new_account_url);
        if (status && !streq(status, "valid"))
                return acme_detail_set(o, -EREMOTEIO, "Account %s is %s", o->account_url,
                                       status);
        json_object_put(o->account);
        o->account = json_object_get(j);
        log_debug("ACME order for %s: account %s (%s)", o->domain, o->account_url,
                  resp->status == 201 ? "created" : "existing");
        return do_new_order(o);
}

/* RFC 8555 7.4: asks for a certificate for one DNS name. */
static int do_new_order(AcmeOrder *o) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object(),
                                                *ids = json_object_new_array(),
                                                *id = json_object_new_object();

        if (!p || !ids || !id || json_add(id, "type", json_object_new_string("dns")) < 0 ||
            json_add(id, "value", json_object_new_string(o->domain)) < 0 ||
            json_append(ids, json_object_get(id)) < 0 ||
            json_add(p, "identifiers", json_object_get(ids)) < 0)
                return -ENOMEM;

        acme_set_state(o, ACME_NEW_ORDER);
        return acme_post(o, o->new_order_url, p, false, false);
}

static int order_advance(AcmeOrder *o, const HttpResponse *resp, json_object *order);

static int on_new_order(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        json_object *authz;
        size_t n;

        if (free_and_strdup(&o->order_url, http_response_header(resp, "Location")) < 0 ||
            free_and_strdup(&o->finalize_url, json_str(j, "finalize")) < 0)
                return -ENOMEM;
        if (!o->order_url || !o->finalize_url)
                return acme_detail_set(o, -EPROTO, "newOrder %s gave no Location or finalize URL",
                                       o->new_order_url);
        if (!json_object_object_get_ex(j, "authorizations", &authz) ||
            !json_object_is_type(authz, json_type_array) ||
            (n = json_object_array_length(authz)) == 0 || n > ACME_AUTHORIZATIONS_MAX)
                return acme_detail_set(o, -EPROTO, "Order %s has no usable authorizations",
                                       o->order_url);

        o->authz_urls = calloc(n, sizeof(char *));
        if (!o->authz_urls)
                return -ENOMEM;
        for (o->n_authz = 0; o->n_authz < n; o->n_authz++) {
                json_object *u = json_object_array_get_idx(authz, o->n_authz);

                if (!json_object_is_type(u, json_type_string))
                        return acme_detail_set(o, -EPROTO, "Order %s has a malformed "
                                               "authorization URL", o->order_url);
                if (!(o->authz_urls[o->n_authz] = strdup(json_object_get_string(u))))
                        return -ENOMEM;
        }
        log_debug("ACME order for %s: order %s", o->domain, o->order_url);
        return order_advance(o, resp, j);
}

/* RFC 8555 7.1.6: where the order stands decides the next step; used for
 * newOrder, the check after authorization, finalize and every order poll. */
static int order_advance(AcmeOrder *o, const HttpResponse *resp, json_object *order) {
        const char *status = json_str(order, "status") ?: "(none)";
        json_object *error;

        if (streq(status, "pending") && !o->authorized)
                return do_authorization(o);
        if (streq(status, "ready") && !o->finalized)
                return do_finalize(o);
        if (streq(status, "valid")) {
                if (free_and_strdup(&o->certificate_url, json_str(order, "certificate")) < 0)
                        return -ENOMEM;
                if (!o->certificate_url)
                        return acme_detail_set(o, -EPROTO, "Valid order %s has no certificate",
                                               o->order_url);
                return do_certificate(o);
        }
        if (streq(status, "pending") || streq(status, "ready") || streq(status, "processing"))
                return acme_wait(o, o->finalized ? ACME_ORDER_POLL_VALID : ACME_ORDER_POLL_READY,
                                 o->order_url);
        if (json_object_object_get_ex(order, "error", &error) && acme_problem_set(o, error) == 0)
                return -EREMOTEIO;
        return acme_detail_set(o, -EREMOTEIO, "Order %s is %s", o->order_url, status);
}

/* RFC 8555 7.5: what the CA wants proven for this identifier. */
static int do_authorization(AcmeOrder *o) {
        acme_set_state(o, ACME_AUTHORIZATION);
        return acme_post_as_get(o, o->authz_urls[o->authz_index]);
}

static json_object *authorization_challenge(json_object *authz) {
        json_object *challenges;

        if (!json_object_object_get_ex(authz, "challenges", &challenges) ||
            !json_object_is_type(challenges, json_type_array))
                return NULL;
        for (size_t i = 0; i < json_object_array_length(challenges); i++) {
                json_object *c = json_object_array_get_idx(challenges, i);

                if (streq_ptr(json_str(c, "type"), "tls-alpn-01"))
                        return c;
        }
        return NULL;
}

/* RFC 8737 3: serve the digest of the key authorization, then tell the CA
 * to look (RFC 8555 7.5.1). */
static int do_challenge(AcmeOrder *o, json_object *challenge) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object();
        _cleanup_free_ char *key_authz = NULL;
        const char *token = json_str(challenge, "token"), *url = json_str(challenge, "url");
        uint8_t digest[32];
        int r;

        if (!p)
                return -ENOMEM;
        if (!url || !token || acme_key_authorization(token, o->account_key, &key_authz) < 0)
                return acme_detail_set(o, -EPROTO, "Unusable tls-alpn-01 challenge in %s",
                                       o->authz_urls[o->authz_index]);
        r = acme_tls_alpn_digest(key_authz, digest);
        if (r < 0)
                return r;
        r = o->challenge_add(o->domain, digest, o->userdata);
        if (r < 0)
                return acme_detail_set(o, r, "Could not serve the tls-alpn-01 challenge");
        o->challenge_added = true;

        acme_set_state(o, ACME_CHALLENGE);
        return acme_post(o, url, p, false, false);
}

static int on_challenge(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        json_object *error;

        if (streq_ptr(json_str(j, "status"), "invalid") &&
            json_object_object_get_ex(j, "error", &error) && acme_problem_set(o, error) == 0)
                return -EREMOTEIO;
        return acme_wait(o, ACME_AUTHORIZATION_POLL, o->authz_urls[o->authz_index]);
}

/* For the authorization's first look and every poll of it. */
static int on_authorization(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        const char *status = json_str(j, "status") ?: "(none)";
        json_object *id, *challenge = authorization_challenge(j), *error;

        if (!json_object_object_get_ex(j, "identifier", &id) ||
            !streq_ptr(json_str(id, "type"), "dns") || !json_str(id, "value") ||
            strcasecmp(json_str(id, "value"), o->domain) != 0)
                return acme_detail_set(o, -EPROTO, "Authorization %s is not for dns:%s",
                                       o->authz_urls[o->authz_index], o->domain);

        if (streq(status, "valid")) {
                challenge_withdraw(o);
                if (++o->authz_index < o->n_authz)
                        return do_authorization(o);
                o->authorized = true;
                return do_order_check(o);
        }
        if (streq(status, "pending")) {
                if (o->state == ACME_AUTHORIZATION) {
                        if (!challenge)
                                return acme_detail_set(o, -EPROTO, "The CA offers no tls-alpn-01 "
                                                       "challenge for %s", o->domain);
                        if (streq_ptr(json_str(challenge, "status"), "pending"))
                                return do_challenge(o, challenge);
                }
                return acme_wait(o, ACME_AUTHORIZATION_POLL, o->authz_urls[o->authz_index]);
        }

        /* invalid, deactivated, expired, revoked: the challenge says why. */
        challenge_withdraw(o);
        if (challenge && json_object_object_get_ex(challenge, "error", &error) &&
            acme_problem_set(o, error) == 0)
                return -EREMOTEIO;
        return acme_detail_set(o, -EREMOTEIO, "Authorization for %s is %s", o->domain, status);
}

/* RFC 8555 7.4: with every authorization valid the order should be ready. */
static int do_order_check(AcmeOrder *o) {
        acme_set_state(o, ACME_ORDER_CHECK);
        return acme_post_as_get(o, o->order_url);
}

/* RFC 2986 via GnuTLS: CN (when it fits, RFC 5280 ub-common-name 64) and one
 * DNS SAN, signed with the certificate key; DER in base64url (7.4). */
static int csr_make(gnutls_privkey_t key, const char *domain, char **ret) {
        _cleanup_(gnutls_x509_crq_deinitp) gnutls_x509_crq_t crq = NULL;
        _cleanup_(gnutls_pubkey_deinitp) gnutls_pubkey_t pub = NULL;
        _cleanup_(datum_freep) gnutls_datum_t der = {};
        size_t l = strlen(domain);

        if (gnutls_x509_crq_init(&crq) < 0 || gnutls_pubkey_init(&pub) < 0)
                return -ENOMEM;
        if (gnutls_x509_crq_set_version(crq, 1) < 0 ||
            (l <= 64 && gnutls_x509_crq_set_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0,
                                                      domain, (unsigned) l) < 0) ||
            gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_DNSNAME, domain, (unsigned) l,
                                                 GNUTLS_FSAN_SET) < 0 ||
            gnutls_pubkey_import_privkey(pub, key, 0, 0) < 0 ||
            gnutls_x509_crq_set_pubkey(crq, pub) < 0 ||
            gnutls_x509_crq_privkey_sign(crq, key, GNUTLS_DIG_SHA256, 0) < 0 ||
            gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_DER, &der) < 0)
                return -EINVAL;
        return base64url_encode(der.data, der.size, ret);
}

/* RFC 8555 7.4: the CSR turns a ready order into a certificate. */
static int do_finalize(AcmeOrder *o) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object();
        _cleanup_free_ char *csr = NULL;
        int r;

        if (!p)
                return -ENOMEM;
        r = csr_make(o->cert_key, o->domain, &csr);
        if (r < 0)
                return acme_detail_set(o, r, "Could not make the CSR for %s", o->domain);
        if (json_add(p, "csr", json_object_new_string(csr)) < 0)
                return -ENOMEM;

        o->finalized = true;
        acme_set_state(o, ACME_FINALIZE);
        return acme_post(o, o->finalize_url, p, false, false);
}

/* RFC 8555 7.4.2: the chain, leaf first. */
static int do_certificate(AcmeOrder *o) {
        acme_set_state(o, ACME_CERTIFICATE);
        return acme_post(o, o->certificate_url, NULL, false, true);
}

/* Refuses a chain that is not for our key and name rather than serving it. */
static int chain_check(AcmeOrder *o, const HttpResponse *resp) {
        gnutls_datum_t pem = { .data = (void *) resp->body, .size = (unsigned) resp->body_size };
        _cleanup_(gnutls_pubkey_deinitp) gnutls_pubkey_t ours = NULL, leaf = NULL;
        uint8_t id_ours[64], id_leaf[64];
        size_t s_ours = sizeof id_ours, s_leaf = sizeof id_leaf;
        gnutls_x509_crt_t *crts = NULL;
        unsigned n = 0;
        int r = -EPROTO;

        if (strlen(resp->body) != resp->body_size ||
            gnutls_x509_crt_list_import2(&crts, &n, &pem, GNUTLS_X509_FMT_PEM, 0) < 0)
                return acme_detail_set(o, -EPROTO, "Unreadable certificate chain from %s",
                                       o->certificate_url);
        if (n > 0 && gnutls_pubkey_init(&ours) >= 0 && gnutls_pubkey_init(&leaf) >= 0 &&
            gnutls_pubkey_import_privkey(ours, o->cert_key, 0, 0) >= 0 &&
            gnutls_pubkey_import_x509(leaf, crts[0], 0) >= 0 &&
            gnutls_pubkey_get_key_id(ours, GNUTLS_KEYID_USE_SHA256, id_ours, &s_ours) >= 0 &&
            gnutls_pubkey_get_key_id(leaf, GNUTLS_KEYID_USE_SHA256, id_leaf, &s_leaf) >= 0 &&
            s_ours == s_leaf && memcmp(id_ours, id_leaf, s_ours) == 0 &&
            gnutls_x509_crt_check_hostname2(crts[0], o->domain,
                                            GNUTLS_VERIFY_DO_NOT_ALLOW_IP_MATCHES))
                r = 0;
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
        if (r < 0)
                return acme_detail_set(o, r, "The certificate from %s is not for our key and %s",
                                       o->certificate_url, o->domain);
        return 0;
}

/* The last step. */
static int on_certificate(AcmeOrder *o, const HttpResponse *resp) {
        char *chain;
        int r;

        r = chain_check(o, resp);
        if (r < 0)
                return r;
        chain = strdup(resp->body);
        if (!chain)
                return -ENOMEM;
        acme_finish(o, 0, chain);
        return 0;
}

/* ---- responses ---- */

static int acme_dispatch(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        switch (o->state) {
        case ACME_DIRECTORY:
                return on_directory(o, resp, j);
        case ACME_NEW_ACCOUNT:
                return on_new_account(o, resp, j);
        case ACME_NEW_ORDER:
                return on_new_order(o, resp, j);
        case ACME_AUTHORIZATION:
        case ACME_AUTHORIZATION_POLL:
                return on_authorization(o, resp, j);
        case ACME_CHALLENGE:
                return on_challenge(o, resp, j);
        case ACME_ORDER_CHECK:
        case ACME_ORDER_POLL_READY:
        case ACME_FINALIZE:
        case ACME_ORDER_POLL_VALID:
                return order_advance(o, resp, j);
        default:
                return -EPROTO;
        }
}

/* The CA refused (RFC 8555 6.7). Some refusals we can mend: a stale nonce
 * (6.5) and a kid the CA no longer knows. 1: mended, request resent. */
static int acme_refused(AcmeOrder *o, const HttpResponse *resp) {
        _cleanup_(json_object_putp) json_object *problem = NULL;
        int r;

        if (json_parse_object(resp->body, resp->body_size, &problem) < 0)
                return acme_detail_set(o, -EREMOTEIO, "HTTP %ld from %s %s", resp->status,
                                       http_method_to_string(o->request_method),
                                       o->request_url);
        r = acme_problem_set(o, problem);
        if (r < 0)
                return r;
        /* Which request the CA refused, as transport errors say too. */
        {
                char *d;

                if (asprintf(&d, "%s %s: %s", http_method_to_string(o->request_method),
                             o->request_url, o->problem_detail) < 0)
                        return -ENOMEM;
                free(o->problem_detail);
                o->problem_detail = string_sanitize(d);
        }

        if (problem_is(o, "badNonce") && o->request_method == HTTP_POST &&
            o->bad_nonce_retries < ACME_BAD_NONCE_RETRIES) {
                o->bad_nonce_retries++;
                o->stats.bad_nonce++;
                acme_problem_clear(o);
                r = acme_post_send(o);
                return r < 0 ? r : 1;
        }
        if (problem_is(o, "accountDoesNotExist") && o->state == ACME_NEW_ORDER &&
            o->account_from_caller) {
                log_debug("ACME order for %s: account %s unknown to the CA, registering anew",
                          o->domain, o->account_url);
                o->account_from_caller = false;
                o->account_url = mfree(o->account_url);
                acme_problem_clear(o);
                r = do_new_account(o);
                return r < 0 ? r : 1;
        }
        return -EREMOTEIO;
}

/* What every response needs before its step sees it (RFC 8555 6.5, 6.6,
 * 6.7). 0: on to the step; 1: taken care of (the request was resent). */
static int acme_transport(AcmeOrder *o, const HttpResponse *resp) {
        const char *ra;

        acme_keep_nonce(o, resp);
        /* Only now: a header's value lasts until the next lookup. */
        ra = http_response_header(resp, "Retry-After");
        o->retry_after = 0;
        if (ra)
                (void) http_parse_retry_after(ra, time(NULL), &o->retry_after);

        if (resp->error < 0)
                return acme_detail_set(o, resp->error, "%s %s: %s",
                                       http_method_to_string(o->request_method), o->request_url,
                                       strempty(resp->error_message));
        if (resp->status >= 400)
                return acme_refused(o, resp);
        if (resp->status / 100 != 2)
                return acme_detail_set(o, -EPROTO, "Unexpected HTTP %ld from %s", resp->status,
                                       o->request_url);
        if (o->fetching_nonce) {
                int r;

                o->fetching_nonce = false;
                if (!o->nonce)
                        return acme_detail_set(o, -EPROTO, "%s gave no nonce", o->request_url);
                r = acme_post_send(o);
                return r < 0 ? r : 1;
        }
        return 0;
}

static void on_http_response(const HttpResponse *resp, void *userdata) {
        _cleanup_(json_object_putp) json_object *j = NULL;
        AcmeOrder *o = userdata;
        int r;

        o->request = NULL;
        r = acme_transport(o, resp);
        if (r > 0)
                return;
        if (r == 0 && o->state == ACME_CERTIFICATE)
                r = on_certificate(o, resp);
        else if (r == 0) {
                r = json_parse_object(resp->body, resp->body_size, &j);
                if (r < 0)
                        r = acme_detail_set(o, r, "Invalid JSON from %s (HTTP %ld)",
                                            o->request_url, resp->status);
                else
                        r = acme_dispatch(o, resp, j);
        }
        /* After success the order may be gone: done was called, or a request is out. */
        if (r < 0)
                acme_finish(o, r, NULL);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        AcmeOrder *o = userdata;
        int r;

        if (o->state == ACME_START)
                r = do_directory(o);
        else {
                o->stats.polls++;
                r = acme_post_as_get(o, o->poll_url);
        }
        if (r < 0)
                acme_finish(o, r, NULL);
        return 0;
}

/* ---- the object ---- */

static bool string_ok(const char *s, size_t max) {
        if (!s || !*s || strlen(s) > max)
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p <= ' ' || *p == 0x7f)
                        return false;
        return true;
}

static bool key_is_p256(gnutls_privkey_t key) {
        unsigned bits = 0;

        return key && gnutls_privkey_get_pk_algorithm(key, &bits) == GNUTLS_PK_ECDSA &&
               bits == 256;
}

int acme_order_start(const AcmeOrderParams *p, acme_done_t done, void *userdata,
                     AcmeOrder **ret) {
        _cleanup_(acme_order_freep) AcmeOrder *o = NULL;
        int r;

        if (!p || !done || !ret || !p->http || !p->event || !p->challenge_add ||
            !p->challenge_remove || !string_ok(p->directory_url, 4096) ||
            !string_ok(p->email, 320) || !string_ok(p->domain, 253) ||
            startswith(p->domain, "*.") || /* RFC 8737 3: no wildcards */
            (p->account_url && !string_ok(p->account_url, 4096)) ||
            !key_is_p256(p->account_key) || !key_is_p256(p->cert_key))
                return -EINVAL;

        o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        *o = (AcmeOrder) {
                .account_key = p->account_key,
                .cert_key = p->cert_key,
                .http = p->http,
                .event = p->event,
                .challenge_add = p->challenge_add,
                .challenge_remove = p->challenge_remove,
                .userdata = p->userdata,
                .done = done,
                .done_userdata = userdata,
                .request_timeout = p->request_timeout,
                .account_from_caller = !!p->account_url,
        };
        if (asprintf(&o->contact, "%s%s", startswith(p->email, "mailto:") ? "" : "mailto:",
                     p->email) < 0) {
                o->contact = NULL;
                return -ENOMEM;
        }
        if (free_and_strdup(&o->directory_url, p->directory_url) < 0 ||
            free_and_strdup(&o->domain, p->domain) < 0 ||
            free_and_strdup(&o->account_url, p->account_url) < 0)
                return -ENOMEM;

        /* Time 0 has passed: the first step runs on the next loop iteration. */
        r = sd_event_add_time(o->event, &o->timer, CLOCK_MONOTONIC, 0, ACME_POLL_ACCURACY,
                              on_timer, o);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(o->timer, "acme-order");

        log_debug("ACME order for %s: starting with %s", o->domain, o->directory_url);
        *ret = TAKE_PTR(o);
        return 0;
}

AcmeOrder *acme_order_free(AcmeOrder *o) {
        if (!o)
                return NULL;

        http_request_cancel(o->request);
        sd_event_source_disable_unref(o->timer);
        challenge_withdraw(o);
        free(o->directory_url);
        free(o->contact);
        free(o->domain);
        free(o->new_nonce_url);
        free(o->new_account_url);
        free(o->new_order_url);
        free(o->nonce);
        free(o->account_url);
        json_object_put(o->account);
        free(o->order_url);
        free(o->finalize_url);
        free(o->certificate_url);
        for (size_t i = 0; i < o->n_authz; i++)
                free(o->authz_urls[i]);
        free(o->authz_urls);
        free(o->post_url);
        free(o->post_payload);
        free(o->problem_type);
        free(o->problem_detail);
        return mfree(o);
}

void acme_order_get_stats(const AcmeOrder *o, AcmeStats *ret) {
        *ret = o->stats;
}

usec_t acme_order_get_retry_after(const AcmeOrder *o) {
        return o->retry_after;
}

int acme_order_feed_response(AcmeOrder *o, const HttpResponse *resp) {
        int enabled = SD_EVENT_OFF;

        if (!o || !resp)
                return -EINVAL;
        if (o->state == ACME_DONE || o->state == ACME_FAILED)
                return -ESTALE;
        if (!o->request) {
                /* Waiting for the timer, as the loop would run it: once, then off. */
                if (sd_event_source_get_enabled(o->timer, &enabled) < 0 || enabled == SD_EVENT_OFF)
                        return -ESTALE;
                (void) sd_event_source_set_enabled(o->timer, SD_EVENT_OFF);
                (void) on_timer(o->timer, 0, o);
                return 1; /* o may be gone now */
        }
        http_request_cancel(o->request);
        on_http_response(resp, o);
        return 0;
}
