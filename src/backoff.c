/* SPDX-License-Identifier: MIT */
/* Exponential backoff for certificate issuance and the renewal deadline. */

#include <limits.h>
#include <stdint.h>

#include "backoff.h"

void backoff_init(Backoff *b, usec_t initial, usec_t cap, unsigned max_attempts) {
        *b = (Backoff) {
                .initial = initial,
                .cap = cap,
                .max_attempts = max_attempts,
        };
}

void backoff_reset(Backoff *b) {
        b->attempt = 0;
}

/* min(initial * 2^shift, cap) without overflow. */
static usec_t backoff_delay(usec_t initial, usec_t cap, unsigned shift) {
        if (initial == 0)
                return 0;
        if (shift >= 64 || initial > (cap >> shift))
                return cap;
        return initial << shift;
}

bool backoff_next(Backoff *b, usec_t *ret_delay) {
        usec_t delay;

        if (b->max_attempts > 0 && b->attempt >= b->max_attempts)
                return false;

        delay = b->attempt == 0 ? 0 : backoff_delay(b->initial, b->cap, b->attempt - 1);
        /* Unlimited schedules saturate instead of wrapping back to an
         * immediate retry. */
        if (b->attempt < UINT_MAX)
                b->attempt++;
        *ret_delay = delay;
        return true;
}

usec_t backoff_apply_retry_after(usec_t computed, usec_t retry_after, usec_t max) {
        return MIN(MAX(computed, retry_after), max);
}

usec_t renewal_due(time_t not_before, time_t not_after) {
        int64_t lifetime, q, r, due;

        if (not_after <= not_before)
                return 0;
        if (__builtin_sub_overflow((int64_t) not_after, (int64_t) not_before, &lifetime))
                lifetime = INT64_MAX;

        /* not_after - lifetime/3, in whole seconds and thirds of one. */
        q = lifetime / 3;
        r = lifetime % 3;
        due = (int64_t) not_after - q;
        if (due <= 0)
                return 0;
        if ((uint64_t) due > USEC_INFINITY / USEC_PER_SEC)
                return USEC_INFINITY;
        return (usec_t) due * USEC_PER_SEC - (usec_t) r * USEC_PER_SEC / 3;
}
