/* SPDX-License-Identifier: MIT */
#pragma once

/* Certificate maintenance for --auto-acme-cert: serve the stored
 * certificate at once when there is a usable one, otherwise obtain one
 * (answered on our own socket through the challenges registry); renew when
 * a third of the lifetime is left; retry failures with backoff while the old
 * certificate keeps serving. Everything runs on sd-event timers. */

#include <systemd/sd-event.h>

#include "challenges.h"
#include "config.h"
#include "creds.h"

typedef struct Renewer Renewer;

typedef struct RenewerCallbacks {
        /* A certificate to serve: the cached one at start, or a new one.
         * renewed is false for the first certificate this process serves. */
        void (*on_certificate)(CertBundle *bundle, bool renewed, void *userdata);
        /* The first certificate could not be obtained within the attempts:
         * the process should exit non-zero with message. */
        void (*on_give_up)(int error, const char *message, void *userdata);
        /* An attempt starts and the next deadline is known: for
         * EXTEND_TIMEOUT_USEC while no certificate is served yet. */
        void (*on_waiting)(usec_t usec, void *userdata);
} RenewerCallbacks;

/* Sets up storage paths and the HTTP client. Errors carry a message. */
int renewer_new(sd_event *e, const Config *c, Challenges *challenges,
                const RenewerCallbacks *cb, void *userdata, Renewer **ret, char **ret_error);
Renewer *renewer_free(Renewer *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Renewer *, renewer_free);

/* Loads the account and certificate from storage; serves a usable
 * certificate at once (on_certificate is called before this returns) and
 * schedules its renewal, or starts obtaining one. Fails only for problems
 * an operator must fix (an account file whose key is missing, unreadable
 * storage), with a message naming the file. */
int renewer_start(Renewer *r, char **ret_error);

/* Orders a new certificate (with a new key, as every order) now, due or
 * not: its OCSP responder said the served one is revoked. No-op while an
 * order, a lock wait or a retry is under way, or nothing is served; at most
 * one forced order per hour (scaled by TLSGATE_TEST_BACKOFF_SCALE). */
void renewer_force_renewal(Renewer *r);

/* "obtaining", "valid", "renewing", "retrying": for STATUS= and logs. */
const char *renewer_state(const Renewer *r);

/* For /_status and /_metrics: certificates obtained from the CA by this
 * process, failed attempts, and the last failure's message (NULL when the
 * last attempt succeeded or none failed yet). */
typedef struct RenewerStats {
        uint64_t obtained;
        uint64_t failures;
        const char *last_error;         /* valid until the Renewer changes */
} RenewerStats;
void renewer_get_stats(const Renewer *r, RenewerStats *ret);
