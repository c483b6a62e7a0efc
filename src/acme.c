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

#include <stdarg.h>
#include <stdio.h>

#include "acme-internal.h"
#include "jws.h"
#include "log.h"

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

static void *mfree(void *p) {
        free(p);
        return NULL;
}

void acme_set_state(AcmeOrder *o, AcmeState s) {
        if (o->state == s)
                return;
        log_debug("ACME order for %s: %s -> %s", o->domain, acme_state_table[o->state],
                  acme_state_table[s]);
        o->state = s;
}

/* ---- JSON and problem documents ---- */

const char *acme_json_str(json_object *j, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(j, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* Both take over v, also on failure. */
int acme_json_add(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int acme_json_append(json_object *a, json_object *v) {
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
        fputs(acme_json_str(problem, "detail") ?: "(no detail)", f);
        if (json_object_object_get_ex(problem, "subproblems", &subs) &&
            json_object_is_type(subs, json_type_array))
                for (size_t i = 0; i < json_object_array_length(subs); i++) {
                        json_object *sub = json_object_array_get_idx(subs, i), *id;
                        const char *value = NULL;

                        if (json_object_object_get_ex(sub, "identifier", &id))
                                value = acme_json_str(id, "value");
                        fprintf(f, "; %s: %s: %s", value ?: "?", acme_json_str(sub, "type") ?: "?",
                                acme_json_str(sub, "detail") ?: "");
                }
        if (acme_json_str(problem, "instance"))
                fprintf(f, " (see %s)", acme_json_str(problem, "instance"));
        if (fclose(f) != 0)
                return -ENOMEM;

        type = strdup(acme_json_str(problem, "type") ?: "about:blank");
        if (!type)
                return -ENOMEM;
        *ret_type = string_sanitize(TAKE_PTR(type));
        *ret_detail = string_sanitize(TAKE_PTR(detail));
        return 0;
}

int acme_problem_set(AcmeOrder *o, json_object *problem) {
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
int acme_detail_set(AcmeOrder *o, int error, const char *format, ...) {
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

void acme_challenge_withdraw(AcmeOrder *o) {
        if (!o->challenge_added)
                return;
        o->challenge_added = false;
        o->challenge_remove(o->domain, o->userdata);
}

/* Calls done last: it may free the order, so what it is handed is taken out
 * of the order first and freed only after it returns. */
void acme_finish(AcmeOrder *o, int error, char *chain_pem) {
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

        acme_challenge_withdraw(o);
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

int acme_send(AcmeOrder *o, HttpMethod method, const char *url, const char *body) {
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
int acme_post(AcmeOrder *o, const char *url, json_object *payload, bool jwk, bool pem) {
        const char *body = payload ? json_object_to_json_string_ext(payload, JSON_FLAGS) : NULL;

        if ((payload && !body) || free_and_strdup(&o->post_url, url) < 0 ||
            free_and_strdup(&o->post_payload, body) < 0)
                return -ENOMEM;
        o->post_jwk = jwk;
        o->post_pem = pem;
        o->bad_nonce_retries = 0;
        return acme_post_send(o);
}

int acme_post_as_get(AcmeOrder *o, const char *url) {
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
int acme_wait(AcmeOrder *o, AcmeState state, const char *url) {
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

/* ---- responses ---- */

static int acme_dispatch(AcmeOrder *o, const HttpResponse *resp, json_object *j) {
        switch (o->state) {
        case ACME_DIRECTORY:
                return acme_on_directory(o, resp, j);
        case ACME_NEW_ACCOUNT:
                return acme_on_new_account(o, resp, j);
        case ACME_NEW_ORDER:
                return acme_on_new_order(o, resp, j);
        case ACME_AUTHORIZATION:
        case ACME_AUTHORIZATION_POLL:
                return acme_on_authorization(o, resp, j);
        case ACME_CHALLENGE:
                return acme_on_challenge(o, resp, j);
        case ACME_ORDER_CHECK:
        case ACME_ORDER_POLL_READY:
        case ACME_FINALIZE:
        case ACME_ORDER_POLL_VALID:
                return acme_order_advance(o, resp, j);
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
                r = acme_do_new_account(o);
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
                r = acme_on_certificate(o, resp);
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
                r = acme_do_directory(o);
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
        acme_challenge_withdraw(o);
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
