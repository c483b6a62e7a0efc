/* SPDX-License-Identifier: MIT */
#pragma once

/* Retry schedules and the renewal deadline. Pure logic: callers arm the
 * sd_event timers; nothing here reads a clock.
 *
 * An "attempt" is one try of the whole operation (for issuance: one ACME
 * order from newOrder to certificate download). Before every attempt the
 * caller asks backoff_next() how long to wait first:
 *
 *   call 1 -> 0 (the first attempt starts at once)
 *   call 2 -> initial
 *   call k -> min(initial * 2^(k-2), cap)
 *   call max_attempts + 1 -> false: give up
 *
 * So the startup schedule backoff_init(&b, 5 s, 2 min, 5) gives 0, 5, 10,
 * 20, 40 s and then gives up, as Ghostunnel does (5 tries, waits 5, 10, 20,
 * 40 s). With max_attempts 0 it never gives up and the delay stays at cap. */

#include <stdbool.h>
#include <time.h>

#include "macro.h"

typedef struct Backoff {
        usec_t initial;         /* wait before the second attempt */
        usec_t cap;             /* no wait is longer than this */
        unsigned max_attempts;  /* 0 = unlimited */
        unsigned attempt;       /* attempts granted so far by backoff_next() */
} Backoff;

void backoff_init(Backoff *b, usec_t initial, usec_t cap, unsigned max_attempts);

/* Grants the next attempt and gives the wait before it; false (and
 * *ret_delay untouched) once max_attempts have been granted. */
bool backoff_next(Backoff *b, usec_t *ret_delay);

/* After a success: the next failure starts the schedule afresh. */
void backoff_reset(Backoff *b);

/* Honours a server's Retry-After (RFC 8555 section 6.6; a duration, 0 when
 * absent): the longer of the two waits, but never more than max, so a
 * hostile or confused server cannot park us forever. */
usec_t backoff_apply_retry_after(usec_t computed, usec_t retry_after, usec_t max);

/* certmagic's rule (docs/HACKING.md, "certmagic's storage layout"): renew
 * once less than 1/3 of the certificate's lifetime remains. Returns that moment in CLOCK_REALTIME
 * microseconds since the epoch; 0 (due already) for a certificate whose
 * notAfter is not after its notBefore, and USEC_INFINITY if the moment
 * lies beyond what usec_t can hold. */
usec_t renewal_due(time_t not_before, time_t not_after);
