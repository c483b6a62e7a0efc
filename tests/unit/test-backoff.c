/* SPDX-License-Identifier: MIT */
/* The issuance retry schedule, Retry-After and the renewal deadline. */

#include <limits.h>

#include "backoff.h"
#include "test-util.h"

#define SEC USEC_PER_SEC
#define DAY (24 * USEC_PER_HOUR)

/* Ghostunnel's start-up schedule: 5 tries, 5 s doubling, so it waits 5, 10,
 * 20, 40 s (docs/HACKING.md, "Ghostunnel's observable behaviour"). */
static void test_startup_schedule(void) {
        const usec_t expected[] = { 0, 5 * SEC, 10 * SEC, 20 * SEC, 40 * SEC };
        Backoff b;
        usec_t d;

        backoff_init(&b, 5 * SEC, 2 * USEC_PER_MINUTE, 5);
        for (size_t i = 0; i < ELEMENTSOF(expected); i++) {
                d = 4711;
                CHECK(backoff_next(&b, &d));
                CHECK_U64_EQ(d, expected[i]);
                CHECK_INT_EQ(b.attempt, i + 1);
        }

        /* The sixth attempt is refused, and stays refused. */
        d = 4711;
        CHECK(!backoff_next(&b, &d));
        CHECK_U64_EQ(d, 4711);
        CHECK(!backoff_next(&b, &d));
        CHECK_INT_EQ(b.attempt, 5);
}

static void test_single_attempt(void) {
        Backoff b;
        usec_t d;

        backoff_init(&b, 5 * SEC, 2 * USEC_PER_MINUTE, 1);
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 0);
        CHECK(!backoff_next(&b, &d));
}

/* Renewal keeps trying: 0, 5, 10, 20, 40, 80 s, then 2 min forever. */
static void test_renewal_schedule(void) {
        const usec_t expected[] = { 0, 5 * SEC, 10 * SEC, 20 * SEC, 40 * SEC, 80 * SEC, 120 * SEC,
                                    120 * SEC, 120 * SEC };
        Backoff b;
        usec_t d;

        backoff_init(&b, 5 * SEC, 2 * USEC_PER_MINUTE, 0);
        for (size_t i = 0; i < ELEMENTSOF(expected); i++) {
                CHECK(backoff_next(&b, &d));
                CHECK_U64_EQ(d, expected[i]);
        }
        bool steady = true;
        for (unsigned i = 0; i < 10000; i++)
                if (!backoff_next(&b, &d) || d != 120 * SEC)
                        steady = false;
        CHECK(steady);
        CHECK_INT_EQ(b.attempt, ELEMENTSOF(expected) + 10000);
}

static void test_reset(void) {
        Backoff b;
        usec_t d;

        backoff_init(&b, 5 * SEC, 2 * USEC_PER_MINUTE, 5);
        for (unsigned i = 0; i < 5; i++)
                CHECK(backoff_next(&b, &d));
        CHECK(!backoff_next(&b, &d));

        backoff_reset(&b);
        CHECK_INT_EQ(b.attempt, 0);
        CHECK_U64_EQ(b.initial, 5 * SEC);
        CHECK_U64_EQ(b.cap, 2 * USEC_PER_MINUTE);
        CHECK_INT_EQ(b.max_attempts, 5);
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 0);
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 5 * SEC);
}

/* Large shifts, huge initial values and an uncapped schedule saturate; the
 * attempt counter does not wrap back to "immediately". */
static void test_overflow(void) {
        Backoff b;
        usec_t d;

        backoff_init(&b, 5 * SEC, 2 * USEC_PER_MINUTE, 0);
        b.attempt = 63;
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 2 * USEC_PER_MINUTE);
        b.attempt = 64;
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 2 * USEC_PER_MINUTE);
        b.attempt = 65;
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 2 * USEC_PER_MINUTE);
        b.attempt = UINT_MAX - 1;
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 2 * USEC_PER_MINUTE);
        CHECK_INT_EQ(b.attempt, UINT_MAX);
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 2 * USEC_PER_MINUTE);
        CHECK_INT_EQ(b.attempt, UINT_MAX);

        /* No cap at all: doubling up to the largest usec_t, never wrapping. */
        backoff_init(&b, 5 * SEC, USEC_INFINITY, 0);
        usec_t prev = 0;
        bool monotonic = true;
        for (unsigned i = 0; i < 200; i++) {
                if (!backoff_next(&b, &d) || d < prev)
                        monotonic = false;
                prev = d;
        }
        CHECK(monotonic);
        CHECK_U64_EQ(d, USEC_INFINITY);

        /* initial above cap: cap from the second attempt on. */
        backoff_init(&b, USEC_INFINITY - 1, 2 * USEC_PER_MINUTE, 0);
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 0);
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 2 * USEC_PER_MINUTE);
        CHECK(backoff_next(&b, &d));
        CHECK_U64_EQ(d, 2 * USEC_PER_MINUTE);

        /* initial 0: retry at once, always. */
        backoff_init(&b, 0, 2 * USEC_PER_MINUTE, 0);
        bool immediate = true;
        for (unsigned i = 0; i < 70; i++)
                if (!backoff_next(&b, &d) || d != 0)
                        immediate = false;
        CHECK(immediate);
}

static void test_retry_after(void) {
        const usec_t max = 10 * USEC_PER_MINUTE;

        /* The server asks for longer than we would wait: obey. */
        CHECK_U64_EQ(backoff_apply_retry_after(5 * SEC, 30 * SEC, max), 30 * SEC);
        /* The server asks for less: keep our own backoff. */
        CHECK_U64_EQ(backoff_apply_retry_after(40 * SEC, 3 * SEC, max), 40 * SEC);
        /* No Retry-After header. */
        CHECK_U64_EQ(backoff_apply_retry_after(20 * SEC, 0, max), 20 * SEC);
        CHECK_U64_EQ(backoff_apply_retry_after(0, 0, max), 0);
        /* A day is too long: cut to max. */
        CHECK_U64_EQ(backoff_apply_retry_after(5 * SEC, DAY, max), max);
        CHECK_U64_EQ(backoff_apply_retry_after(5 * SEC, USEC_INFINITY, max), max);
        /* max bounds the computed value too. */
        CHECK_U64_EQ(backoff_apply_retry_after(2 * max, 0, max), max);
        CHECK_U64_EQ(backoff_apply_retry_after(max, max, max), max);
        /* Unbounded. */
        CHECK_U64_EQ(backoff_apply_retry_after(5 * SEC, DAY, USEC_INFINITY), DAY);
}

static void test_renewal_due(void) {
        /* 2025-01-01T00:00:00Z */
        const time_t t0 = 1735689600;

        /* Let's Encrypt's 90 days: due after 60 days, with 30 left. */
        CHECK_U64_EQ(renewal_due(t0, t0 + 90 * 86400), (usec_t) t0 * SEC + 60 * DAY);
        /* Pebble with certificateValidityPeriod 30: due after 20 s. */
        CHECK_U64_EQ(renewal_due(t0, t0 + 30), (usec_t) t0 * SEC + 20 * SEC);
        /* A lifetime not divisible by 3: 10 s gives 6.666666 s. */
        CHECK_U64_EQ(renewal_due(t0, t0 + 10), (usec_t) t0 * SEC + 6666667);
        CHECK_U64_EQ(renewal_due(t0, t0 + 1), (usec_t) t0 * SEC + 666667);
        CHECK_U64_EQ(renewal_due(t0, t0 + 2), (usec_t) t0 * SEC + 1333334);
        /* Broken certificates are due at once. */
        CHECK_U64_EQ(renewal_due(t0, t0), 0);
        CHECK_U64_EQ(renewal_due(t0 + 1, t0), 0);
        /* Dates before the epoch clamp to 0; far-future ones saturate. */
        CHECK_U64_EQ(renewal_due(-3000, -3), 0);
        CHECK_U64_EQ(renewal_due(-30, 30), 10 * SEC);
        /* GnuTLS's "no well-defined expiration", 9999-12-31T23:59:59Z */
        CHECK_U64_EQ(renewal_due(0, 253402300799), (usec_t) 168934867199 * SEC + SEC / 3 + 1);
        CHECK_U64_EQ(renewal_due(0, INT64_MAX), USEC_INFINITY);
        CHECK_U64_EQ(renewal_due(INT64_MIN, INT64_MAX), USEC_INFINITY);
}

int main(void) {
        test_startup_schedule();
        test_single_attempt();
        test_renewal_schedule();
        test_reset();
        test_overflow();
        test_retry_after();
        test_renewal_due();
        return test_summary();
}
