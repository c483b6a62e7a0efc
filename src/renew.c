/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "acme.h"
#include "backoff.h"
#include "http.h"
#include "jws.h"
#include "log.h"
#include "renew.h"
#include "storage.h"
#include "util.h"

/* Start-up: 5 attempts, waits of 5, 10, 20, 40 s (Ghostunnel's schedule). */
#define OBTAIN_ATTEMPTS 5
#define OBTAIN_BACKOFF_INITIAL (5 * USEC_PER_SEC)
#define OBTAIN_BACKOFF_CAP (2 * USEC_PER_MINUTE)
/* Renewal: the old certificate still serves, so keep trying, gently. */
#define RENEW_BACKOFF_INITIAL (5 * USEC_PER_SEC)
#define RENEW_BACKOFF_CAP (30 * USEC_PER_MINUTE)
/* renewer_force_renewal(): at most one forced order per this interval, so a
 * CA that keeps issuing certificates its responder calls revoked cannot
 * make us order in a loop. */
#define FORCE_INTERVAL_MIN (1 * USEC_PER_HOUR)

typedef enum RenewerState {
        RENEWER_IDLE,           /* serving a certificate, renewal timer armed */
        RENEWER_LOCKING,        /* waiting for another process's lock */
        RENEWER_ORDERING,       /* an ACME order is running */
        RENEWER_BACKOFF,        /* waiting to retry after a failure */
        _RENEWER_STATE_MAX,
} RenewerState;

struct Renewer {
        sd_event *event;
        const Config *config;
        Challenges *challenges;
        RenewerCallbacks cb;
        void *userdata;

        HttpClient *http;
        char *root, *issuer_key;
        const char *domain, *directory;

        gnutls_privkey_t account_key;
        char *account_url;
        bool account_stored;

        CertBundle *bundle;     /* what we serve, NULL until the first one */
        time_t not_before, not_after;

        RenewerState state;
        AcmeOrder *order;
        gnutls_privkey_t cert_key;
        StorageLock *lock;
        sd_event_source *timer, *lock_refresh;
        Backoff backoff;
        double scale;           /* TLSGATE_TEST_BACKOFF_SCALE, 1 in production */
        usec_t request_timeout; /* TLSGATE_TEST_ACME_TIMEOUT, 0: acme.c's default */
        usec_t retry_after;     /* the CA's Retry-After with the last failure (rateLimited) */
        uint64_t n_obtained, n_failures; /* renewer_get_stats() */
        char *last_error;       /* the last failure's message; NULL after a success */
        bool force;             /* renewer_force_renewal(): order at the next timer, due or not */
        usec_t last_forced;     /* CLOCK_MONOTONIC of the last forced order, 0: none */

        /* A certificate that is served but could not be stored (a full disk,
         * say): storing it is retried on store_timer until it succeeds, rather
         * than ordering another one. pending_key is key material. */
        char *pending_chain, *pending_key, *pending_url, *pending_orders;
        sd_event_source *store_timer;
        Backoff store_backoff;
};

static const char *const state_table[_RENEWER_STATE_MAX] = {
        [RENEWER_IDLE] = "valid",
        [RENEWER_LOCKING] = "waiting for lock",
        [RENEWER_ORDERING] = "ordering",
        [RENEWER_BACKOFF] = "retrying",
};

void renewer_get_stats(const Renewer *r, RenewerStats *ret) {
        *ret = (RenewerStats) { r->n_obtained, r->n_failures, r->last_error };
}

const char *renewer_state(const Renewer *r) {
        if (!r->bundle && r->state != RENEWER_BACKOFF)
                return "obtaining";
        return state_table[r->state];
}

#define CERT_FIELDS(r) (LogField[]) { { "TLSGATE_CERT_NAME", (r)->domain } }

static void renewer_obtain(Renewer *r);
static void renewer_schedule_renewal(Renewer *r);

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Renewer *r = userdata;

        if (r->state == RENEWER_IDLE && r->bundle && !r->force &&
            storage_now() < renewal_due(r->not_before, r->not_after))
                renewer_schedule_renewal(r); /* a periodic re-check, not due yet */
        else {
                if (r->force) {
                        r->force = false;
                        (void) sd_event_now(r->event, CLOCK_MONOTONIC, &r->last_forced);
                }
                renewer_obtain(r);
        }
        return 0;
}

/* Arms the single timer for a CLOCK_MONOTONIC delay. */
static int renewer_arm(Renewer *r, usec_t delay) {
        usec_t now;
        int q;

        q = sd_event_now(r->event, CLOCK_MONOTONIC, &now);
        if (q < 0)
                return q;
        if (!r->timer) {
                q = sd_event_add_time(r->event, &r->timer, CLOCK_MONOTONIC, now + delay,
                                      USEC_PER_MSEC, on_timer, r);
                if (q >= 0)
                        (void) sd_event_source_set_description(r->timer, "acme-renewer");
                return q;
        }
        q = sd_event_source_set_time(r->timer, now + delay);
        if (q >= 0)
                q = sd_event_source_set_enabled(r->timer, SD_EVENT_ONESHOT);
        return q;
}

static void renewer_schedule_renewal(Renewer *r) {
        usec_t due = renewal_due(r->not_before, r->not_after), now = storage_now();
        usec_t delay = due > now ? due - now : 0;

        r->state = RENEWER_IDLE;
        /* Re-check at least every --auto-acme-renew-check-interval, so that a
         * clock jump (a suspend, say) cannot make us late. */
        if (delay > r->config->auto_acme_renew_check_interval)
                delay = r->config->auto_acme_renew_check_interval;
        if (renewer_arm(r, delay) < 0)
                log_error("cannot arm the renewal timer for %s", r->domain);
        if (delay == 0)
                return;
        log_debug("certificate for %s: renewal due in %" PRIu64 " s (checked again in %" PRIu64
                  " s)",
                  r->domain, (due > now ? due - now : 0) / USEC_PER_SEC, delay / USEC_PER_SEC);
}

static void renewer_serve(Renewer *r, CertBundle *b) {
        bool renewed = r->bundle != NULL;

        r->force = false;

        r->not_before = b->not_before;
        r->not_after = b->not_after;
        cert_bundle_unref(r->bundle);
        r->bundle = cert_bundle_ref(b);
        backoff_init(&r->backoff, (usec_t) (RENEW_BACKOFF_INITIAL * r->scale),
                     (usec_t) (RENEW_BACKOFF_CAP * r->scale), 0);
        usec_t first;
        (void) backoff_next(&r->backoff, &first); /* the first renewal attempt is due, not delayed */
        r->cb.on_certificate(b, renewed, r->userdata);
        renewer_schedule_renewal(r);
}

void renewer_force_renewal(Renewer *r) {
        usec_t now = 0, delay = 0, interval = (usec_t) (FORCE_INTERVAL_MIN * r->scale);

        /* Ordering, waiting for the lock or retrying already: that order's
         * certificate gets a new key anyway. Nothing served: nothing to replace. */
        if (!r->bundle || r->state != RENEWER_IDLE || r->force)
                return;
        (void) sd_event_now(r->event, CLOCK_MONOTONIC, &now);
        if (r->last_forced > 0 && now - r->last_forced < interval) {
                delay = interval - (now - r->last_forced);
                log_fields(LOG_WARNING, 0, NULL, CERT_FIELDS(r), 1,
                           "forced renewal for %s: the last one ran %" PRIu64
                           " s ago, the next in %" PRIu64 " s",
                           r->domain, (now - r->last_forced) / USEC_PER_SEC, delay / USEC_PER_SEC);
        }
        r->force = true;
        if (renewer_arm(r, delay) < 0) {
                r->force = false;
                log_error("cannot arm the renewal timer for %s", r->domain);
        }
}

/* --- storage -------------------------------------------------------------- */

static int renewer_load_account(Renewer *r, char **ret_error) {
        _cleanup_(stored_account_done) StoredAccount a = {};
        int q;

        q = storage_load_account(r->root, r->issuer_key, r->config->auto_acme_email, &a, ret_error);
        if (q == -ENOENT) {
                free(*ret_error);
                *ret_error = NULL;
                return 0; /* registered on the first order */
        }
        if (q < 0)
                return q; /* never replace an account whose key we cannot use */
        q = acme_key_from_pem(a.key_pem, a.key_len, &r->account_key);
        if (q < 0) {
                char *path = NULL;
                (void) storage_account_path(r->root, r->issuer_key, r->config->auto_acme_email,
                                            STORAGE_ACCOUNT_KEY, &path);
                if (asprintf(ret_error, _("%s: not a usable P-256 account key; restore it or "
                                          "remove the account files"),
                             path ? path : "account key") < 0)
                        *ret_error = NULL;
                free(path);
                return q;
        }
        r->account_url = a.location ? strdup(a.location) : NULL;
        r->account_stored = true;
        return 0;
}

/* Returns 1 when a usable, unexpired certificate was loaded and is served. */
static int renewer_load_cert(Renewer *r) {
        _cleanup_(stored_cert_done) StoredCert sc = {};
        _cleanup_(cert_bundle_unrefp) CertBundle *b = NULL;
        _cleanup_free_ char *error = NULL, *what = NULL;
        int q;

        q = storage_load_cert(r->root, r->issuer_key, r->domain, &sc, &error);
        if (q == -ENOENT)
                return 0;
        if (q < 0) {
                log_fields(LOG_WARNING, q, NULL, CERT_FIELDS(r), 1,
                           "stored certificate for %s is unusable, obtaining a new one: %s",
                           r->domain, error ? error : strerror(-q));
                return 0;
        }
        (void) storage_cert_path(r->root, r->issuer_key, r->domain, STORAGE_CERT_CRT, &what);
        q = cert_bundle_from_pem(sc.cert_pem, sc.cert_len, sc.key_pem, sc.key_len,
                                 what ? what : r->domain, &b, &error);
        gnutls_memset(sc.key_pem, 0, sc.key_len);
        if (q < 0) {
                log_warning("stored certificate for %s is unusable, obtaining a new one: %s",
                            r->domain, error ? error : strerror(-q));
                return 0;
        }
        if ((usec_t) b->not_after * USEC_PER_SEC <= storage_now()) {
                log_warning("stored certificate for %s expired, obtaining a new one", r->domain);
                return 0;
        }
        log_fields(LOG_INFO, 0, NULL, CERT_FIELDS(r), 1, "serving stored certificate for %s from %s",
                   r->domain, what ? what : "storage");
        renewer_serve(r, b);
        return 1;
}

/* Stores the account (unless stored already) and the certificate; on
 * failure *ret_error names the file and the error. */
static int renewer_store(Renewer *r, const char *chain, const char *key_pem, const char *cert_url,
                         const char *orders, char **ret_error) {
        char *sans[] = { (char *) r->domain, NULL };
        StoredCert sc = {
                .cert_pem = (char *) chain,
                .cert_len = strlen(chain),
                .key_pem = (char *) key_pem,
                .key_len = strlen(key_pem),
                .sans = sans,
                .issuer_url = (char *) strempty(cert_url),
                .ca = (char *) r->directory,
                .account = r->account_url,
        };
        int q;

        if (!r->account_stored) {
                _cleanup_(acme_key_pem_freep) char *akey = NULL;
                _cleanup_free_ char *contact = NULL, *error = NULL;
                char *contacts[] = { NULL, NULL };
                StoredAccount a = {
                        .status = (char *) "valid",
                        .terms_of_service_agreed = true,
                        .orders = (char *) strempty(orders),
                        .location = r->account_url,
                };

                if (asprintf(&contact, "mailto:%s", r->config->auto_acme_email) < 0)
                        return -ENOMEM;
                contacts[0] = contact;
                a.contact = contacts;
                q = acme_key_to_pem(r->account_key, &akey);
                if (q < 0)
                        return q;
                a.key_pem = akey;
                a.key_len = strlen(akey);
                q = storage_save_account(r->root, r->issuer_key, &a, &error);
                if (q < 0) {
                        if (asprintf(ret_error, "cannot store the ACME account: %s",
                                     error ? error : strerror(-q)) < 0)
                                *ret_error = NULL;
                        return q;
                }
                r->account_stored = true;
        }
        return storage_save_cert(r->root, r->issuer_key, r->domain, &sc, ret_error);
}

static void renewer_pending_clear(Renewer *r) {
        r->store_timer = sd_event_source_disable_unref(r->store_timer);
        free(r->pending_chain);
        erase_and_free_string(r->pending_key);
        free(r->pending_url);
        free(r->pending_orders);
        r->pending_chain = r->pending_key = r->pending_url = r->pending_orders = NULL;
}

static int on_store_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* One attempt at storing the pending certificate; arms the next on failure. */
static void renewer_store_pending(Renewer *r) {
        _cleanup_free_ char *error = NULL, *path = NULL;
        usec_t delay = 0;
        int q;

        q = renewer_store(r, r->pending_chain, r->pending_key, r->pending_url, r->pending_orders,
                          &error);
        if (q >= 0) {
                if (r->store_backoff.attempt > 1) {
                        (void) storage_cert_path(r->root, r->issuer_key, r->domain,
                                                 STORAGE_CERT_CRT, &path);
                        log_fields(LOG_NOTICE, 0, NULL, CERT_FIELDS(r), 1,
                                   "stored the certificate for %s in %s after %u attempts",
                                   r->domain, path ? path : "storage", r->store_backoff.attempt);
                }
                renewer_pending_clear(r);
                return;
        }
        (void) backoff_next(&r->store_backoff, &delay);
        log_fields(LOG_ERR, q, NULL, CERT_FIELDS(r), 1,
                   "cannot store the certificate for %s: %s; serving it from memory, "
                   "retrying in %.1f s",
                   r->domain, error ? error : strerror(-q), (double) delay / USEC_PER_SEC);
        if (!r->store_timer) {
                q = sd_event_add_time_relative(r->event, &r->store_timer, CLOCK_MONOTONIC, delay,
                                               USEC_PER_MSEC, on_store_timer, r);
                if (q >= 0)
                        (void) sd_event_source_set_description(r->store_timer, "acme-store-retry");
        } else {
                q = sd_event_source_set_time_relative(r->store_timer, delay);
                if (q >= 0)
                        q = sd_event_source_set_enabled(r->store_timer, SD_EVENT_ONESHOT);
        }
        if (q < 0)
                log_error("cannot arm the storage retry timer for %s", r->domain);
}

static int on_store_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        renewer_store_pending(userdata);
        return 0;
}

/* Keeps what the order brought until it is stored. */
static int renewer_store_new(Renewer *r, const AcmeResult *res, const char *key_pem) {
        json_object *o = NULL;

        renewer_pending_clear(r);
        if (res->account)
                (void) json_object_object_get_ex(res->account, "orders", &o);
        r->pending_chain = strdup(res->chain_pem);
        r->pending_key = strdup(key_pem);
        r->pending_url = res->certificate_url ? strdup(res->certificate_url) : NULL;
        r->pending_orders = o ? strdup(json_object_get_string(o)) : NULL;
        if (!r->pending_chain || !r->pending_key) {
                renewer_pending_clear(r);
                return -ENOMEM;
        }
        backoff_init(&r->store_backoff, (usec_t) (RENEW_BACKOFF_INITIAL * r->scale),
                     (usec_t) (RENEW_BACKOFF_CAP * r->scale), 0);
        usec_t first;
        (void) backoff_next(&r->store_backoff, &first); /* attempt 1 is now */
        renewer_store_pending(r);
        return 0;
}

/* --- ordering ------------------------------------------------------------- */

static void renewer_unlock(Renewer *r) {
        r->lock_refresh = sd_event_source_disable_unref(r->lock_refresh);
        if (r->lock) {
                (void) storage_unlock(r->lock);
                r->lock = storage_lock_free(r->lock);
        }
}

static int on_lock_refresh(sd_event_source *s, uint64_t usec, void *userdata) {
        Renewer *r = userdata;

        if (r->lock && storage_lock_refresh(r->lock, storage_now()) < 0)
                log_warning("lost the storage lock for %s while ordering", r->domain);
        (void) sd_event_source_set_time_relative(s, STORAGE_LOCK_REFRESH_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

static int challenge_add(const char *domain, const uint8_t digest[32], void *userdata) {
        Renewer *r = userdata;
        return challenges_add(r->challenges, domain, digest);
}

static void challenge_remove(const char *domain, void *userdata) {
        Renewer *r = userdata;
        (void) challenges_remove(r->challenges, domain);
}

static void renewer_failed(Renewer *r, int error, const char *message) {
        usec_t delay = 0;
        char when[64] = "";

        r->state = RENEWER_BACKOFF;
        r->n_failures++;
        free(r->last_error);
        r->last_error = strdup(message);
        if (!backoff_next(&r->backoff, &delay)) {
                log_fields(LOG_ERR, error, MESSAGE_ID_RENEWAL_FAILED, CERT_FIELDS(r), 1,
                           "could not obtain a certificate for %s after %u attempts: %s",
                           r->domain, r->backoff.attempt, message);
                r->cb.on_give_up(error, message, r->userdata);
                return;
        }
        /* The CA said when to come back (RFC 8555 6.6): not earlier. */
        delay = backoff_apply_retry_after(delay, r->retry_after, 24 * USEC_PER_HOUR);
        r->retry_after = 0;
        if (r->bundle)
                snprintf(when, sizeof when, ", still serving the current one");
        log_fields(LOG_WARNING, error, MESSAGE_ID_RENEWAL_FAILED, CERT_FIELDS(r), 1,
                   "could not %s certificate for %s: %s; retrying in %.1f s%s",
                   r->bundle ? "renew the" : "obtain a", r->domain, message,
                   (double) delay / USEC_PER_SEC, when);
        if (r->cb.on_waiting && !r->bundle)
                r->cb.on_waiting(delay, r->userdata);
        if (renewer_arm(r, delay) < 0)
                r->cb.on_give_up(-EIO, "cannot arm the retry timer", r->userdata);
}

static void on_order_done(AcmeOrder *o, int error, const char *problem_type, const char *detail,
                          const AcmeResult *res, void *userdata) {
        Renewer *r = userdata;
        _cleanup_(cert_bundle_unrefp) CertBundle *b = NULL;
        _cleanup_(acme_key_pem_freep) char *key_pem = NULL;
        _cleanup_free_ char *message = NULL;
        bool renewed = r->bundle != NULL;
        usec_t retry_after = acme_order_get_retry_after(o);
        int q;

        r->order = acme_order_free(r->order);

        if (error < 0) {
                renewer_unlock(r);
                if (problem_type)
                        q = asprintf(&message, "%s: %s (%s)", strempty(detail), problem_type,
                                     strerror(-error));
                else
                        q = asprintf(&message, "%s", detail ? detail : strerror(-error));
                gnutls_privkey_deinit(r->cert_key);
                r->cert_key = NULL;
                r->retry_after = retry_after;
                return renewer_failed(r, error, q >= 0 ? message : strerror(-error));
        }

        q = acme_key_to_pem(r->cert_key, &key_pem);
        if (q >= 0)
                q = cert_bundle_from_pem(res->chain_pem, strlen(res->chain_pem), key_pem,
                                         strlen(key_pem), r->domain, &b, &message);
        gnutls_privkey_deinit(r->cert_key);
        r->cert_key = NULL;
        if (q < 0) {
                renewer_unlock(r);
                return renewer_failed(r, q, message ? message : strerror(-q));
        }

        if (!streq_ptr(r->account_url, res->account_url)) {
                free(r->account_url);
                r->account_url = strdup(res->account_url);
                r->account_stored = false; /* new, or registered anew */
        }
        /* Stored while the lock is held: a process waiting for it finds the new
         * certificate. When storing fails it is retried; the certificate is served
         * from memory meanwhile. */
        if (renewer_store_new(r, res, key_pem) < 0)
                log_error("cannot keep the certificate for %s to store it", r->domain);
        renewer_unlock(r);

        char expiry[32] = "?";
        struct tm tm;
        if (gmtime_r(&b->not_after, &tm))
                strftime(expiry, sizeof expiry, "%Y-%m-%d %H:%M:%S UTC", &tm);
        log_fields(LOG_NOTICE, 0, renewed ? MESSAGE_ID_CERT_RENEWED : MESSAGE_ID_CERT_OBTAINED,
                   CERT_FIELDS(r), 1, "certificate for %s %s, expires %s", r->domain,
                   renewed ? "renewed" : "obtained", expiry);
        r->n_obtained++;
        free(r->last_error);
        r->last_error = NULL;
        renewer_serve(r, b);
}

static void renewer_order(Renewer *r) {
        AcmeOrderParams p = {
                .directory_url = r->directory,
                .email = r->config->auto_acme_email,
                .domain = r->domain,
                .account_url = r->account_url,
                .http = r->http,
                .event = r->event,
                .challenge_add = challenge_add,
                .challenge_remove = challenge_remove,
                .userdata = r,
        };
        int q;

        if (!r->account_key) {
                q = acme_key_generate(&r->account_key);
                if (q < 0)
                        return renewer_failed(r, q, "cannot generate the account key");
        }
        /* A fresh key for every certificate. */
        q = acme_key_generate(&r->cert_key);
        if (q < 0)
                return renewer_failed(r, q, "cannot generate the certificate key");
        p.account_key = r->account_key;
        p.cert_key = r->cert_key;
        p.request_timeout = r->request_timeout;

        r->state = RENEWER_ORDERING;
        log_fields(LOG_INFO, 0, NULL, CERT_FIELDS(r), 1, "%s certificate for %s from %s",
                   r->bundle ? "renewing the" : "obtaining a", r->domain, r->directory);
        q = acme_order_start(&p, on_order_done, r, &r->order);
        if (q < 0)
                return renewer_failed(r, q, "cannot start the ACME order");
}

/* Certmagic's lock: two processes sharing the storage never order the same
 * name at once; whoever waited re-reads storage afterwards. */
static void renewer_obtain(Renewer *r) {
        _cleanup_free_ char *name = NULL;
        int q;

        if (r->order)
                return;
        q = storage_lock_name_issue_cert(r->domain, &name);
        if (q >= 0)
                q = storage_lock_try(r->root, name, storage_now(), &r->lock);
        if (q == -EBUSY) {
                if (r->state != RENEWER_LOCKING)
                        log_info("another process is obtaining the certificate for %s, waiting",
                                 r->domain);
                r->state = RENEWER_LOCKING;
                if (renewer_arm(r, STORAGE_LOCK_POLL_USEC) < 0)
                        r->cb.on_give_up(-EIO, "cannot arm the lock poll timer", r->userdata);
                return;
        }
        if (q < 0) {
                log_warning_errno(q, "cannot take the storage lock for %s: %m, ordering anyway",
                                  r->domain);
        } else {
                if (sd_event_add_time_relative(r->event, &r->lock_refresh, CLOCK_MONOTONIC,
                                               STORAGE_LOCK_REFRESH_USEC, USEC_PER_SEC,
                                               on_lock_refresh, r) >= 0)
                        (void) sd_event_source_set_description(r->lock_refresh,
                                                               "acme-lock-refresh");
                /* Someone may have stored a fresh certificate while we waited. */
                if (r->state == RENEWER_LOCKING || !r->bundle) {
                        time_t before = r->not_after;
                        if (renewer_load_cert(r) > 0 && r->not_after != before &&
                            storage_now() < renewal_due(r->not_before, r->not_after)) {
                                renewer_unlock(r);
                                return;
                        }
                }
        }
        renewer_order(r);
}

/* --- life cycle ----------------------------------------------------------- */

int renewer_new(sd_event *e, const Config *c, Challenges *challenges,
                const RenewerCallbacks *cb, void *userdata, Renewer **ret, char **ret_error) {
        _cleanup_(renewer_freep) Renewer *r = NULL;
        const char *scale;
        int q;

        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->event = e;
        r->config = c;
        r->challenges = challenges;
        r->cb = *cb;
        r->userdata = userdata;
        r->domain = c->auto_acme_cert;
        r->directory = config_acme_directory(c);
        r->scale = 1.0;
        /* Test suites shrink the start-up schedule (5 s ... 40 s) with this. */
        scale = getenv("TLSGATE_TEST_BACKOFF_SCALE");
        if (scale) {
                double d = strtod(scale, NULL);
                if (d > 0 && d <= 1)
                        r->scale = d;
        }
        backoff_init(&r->backoff, (usec_t) (OBTAIN_BACKOFF_INITIAL * r->scale),
                     (usec_t) (OBTAIN_BACKOFF_CAP * r->scale), OBTAIN_ATTEMPTS);
        /* And the wait for each answer of the CA (30 s), for the fault tests. */
        scale = getenv("TLSGATE_TEST_ACME_TIMEOUT");
        if (scale) {
                double d = strtod(scale, NULL);
                if (d > 0 && d <= 30)
                        r->request_timeout = (usec_t) (d * USEC_PER_SEC);
        }

        q = storage_root(&r->root);
        if (q < 0) {
                if (asprintf(ret_error, _("cannot find the certificate storage: set XDG_DATA_HOME "
                                          "or HOME to an absolute path")) < 0)
                        *ret_error = NULL;
                return q;
        }
        q = issuer_key_from_directory_url(r->directory, &r->issuer_key);
        if (q < 0) {
                if (asprintf(ret_error, _("ACME directory URL \"%s\" has no host"), r->directory) < 0)
                        *ret_error = NULL;
                return q;
        }
        q = http_client_new(e, &r->http);
        if (q < 0)
                return q;
        *ret = TAKE_PTR(r);
        return 0;
}

int renewer_start(Renewer *r, char **ret_error) {
        int q;

        q = renewer_load_account(r, ret_error);
        if (q < 0)
                return q;
        if (renewer_load_cert(r) > 0) {
                /* Due already (e.g. after a long downtime)? Renew in the
                 * background; the stored certificate serves meanwhile. */
                return 0;
        }
        usec_t first;
        (void) backoff_next(&r->backoff, &first); /* attempt 1 is immediate */
        if (r->cb.on_waiting)
                r->cb.on_waiting(0, r->userdata);
        renewer_obtain(r);
        return 0;
}

Renewer *renewer_free(Renewer *r) {
        if (!r)
                return NULL;
        acme_order_free(r->order);
        renewer_unlock(r);
        renewer_pending_clear(r);
        sd_event_source_disable_unref(r->timer);
        http_client_free(r->http);
        if (r->account_key)
                gnutls_privkey_deinit(r->account_key);
        if (r->cert_key)
                gnutls_privkey_deinit(r->cert_key);
        cert_bundle_unref(r->bundle);
        free(r->account_url);
        free(r->last_error);
        free(r->root);
        free(r->issuer_key);
        free(r);
        return NULL;
}
