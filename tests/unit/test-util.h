/* SPDX-License-Identifier: MIT */
#pragma once

/* A tiny assert-style harness: every check counts as passed or failed, a
 * failure prints where and why and the run goes on; test_summary() prints
 * "N passed, M failed" and gives the exit status. One test executable per
 * module, each a single translation unit, so the counters can be static. */

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static unsigned test_passed_count, test_failed_count;

static inline bool test_record(bool ok, const char *file, int line, const char *what) {
        if (ok)
                test_passed_count++;
        else {
                test_failed_count++;
                fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what);
        }
        return ok;
}

#define CHECK(expr) test_record(!!(expr), __FILE__, __LINE__, #expr)

#define CHECK_INT_EQ(a, b)                                                                     \
        do {                                                                                   \
                long long _a = (long long) (a), _b = (long long) (b);                          \
                if (!test_record(_a == _b, __FILE__, __LINE__, #a " == " #b))                  \
                        fprintf(stderr, "        got %lld, expected %lld\n", _a, _b);          \
        } while (0)

#define CHECK_U64_EQ(a, b)                                                                     \
        do {                                                                                   \
                uint64_t _a = (uint64_t) (a), _b = (uint64_t) (b);                             \
                if (!test_record(_a == _b, __FILE__, __LINE__, #a " == " #b))                  \
                        fprintf(stderr, "        got %" PRIu64 ", expected %" PRIu64 "\n", _a, \
                                _b);                                                           \
        } while (0)

#define CHECK_STR_EQ(a, b)                                                                     \
        do {                                                                                   \
                const char *_a = (a), *_b = (b);                                               \
                bool _ok = _a && _b ? strcmp(_a, _b) == 0 : _a == _b;                          \
                if (!test_record(_ok, __FILE__, __LINE__, #a " == " #b))                       \
                        fprintf(stderr, "        got \"%s\", expected \"%s\"\n",               \
                                _a ? _a : "(null)", _b ? _b : "(null)");                       \
        } while (0)

/* haystack must be non-NULL and contain needle. */
#define CHECK_CONTAINS(haystack, needle)                                                       \
        do {                                                                                   \
                const char *_h = (haystack), *_n = (needle);                                   \
                if (!test_record(_h && strstr(_h, _n), __FILE__, __LINE__,                     \
                                 #haystack " contains " #needle))                              \
                        fprintf(stderr, "        \"%s\" does not contain \"%s\"\n",            \
                                _h ? _h : "(null)", _n);                                       \
        } while (0)

static inline int test_summary(void) {
        printf("%u passed, %u failed\n", test_passed_count, test_failed_count);
        return test_failed_count == 0 && test_passed_count > 0 ? 0 : 1;
}
