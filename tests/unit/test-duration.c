/* SPDX-License-Identifier: MIT */
#include "duration.h"
#include "test-util.h"

static void test_parse_valid(void) {
        static const struct {
                const char *s;
                usec_t expected;
        } table[] = {
                /* From Go's time.ParseDuration tests, non-negative ones. */
                { "0", 0 },
                { "+0", 0 },
                { "5s", 5 * USEC_PER_SEC },
                { "30s", 30 * USEC_PER_SEC },
                { "1478s", 1478 * USEC_PER_SEC },
                { "+5s", 5 * USEC_PER_SEC },
                { "0s", 0 },
                { "0ms", 0 },
                { "5.0s", 5 * USEC_PER_SEC },
                { "5.6s", 5 * USEC_PER_SEC + 600 * USEC_PER_MSEC },
                { "5.s", 5 * USEC_PER_SEC },
                { ".5s", 500 * USEC_PER_MSEC },
                { "1.0s", USEC_PER_SEC },
                { "1.00s", USEC_PER_SEC },
                { "1.004s", USEC_PER_SEC + 4 * USEC_PER_MSEC },
                { "1.0040s", USEC_PER_SEC + 4 * USEC_PER_MSEC },
                { "100.00100s", 100 * USEC_PER_SEC + 1 * USEC_PER_MSEC },
                { "10ns", 1 },          /* rounded up */
                { "1000ns", 1 },
                { "1001ns", 2 },        /* rounded up */
                { "11us", 11 },
                { "12\xc2\xb5s", 12 },  /* U+00B5 */
                { "12\xce\xbcs", 12 },  /* U+03BC */
                { "13ms", 13 * USEC_PER_MSEC },
                { "14s", 14 * USEC_PER_SEC },
                { "15m", 15 * USEC_PER_MINUTE },
                { "16h", 16 * USEC_PER_HOUR },
                { "3h30m", 3 * USEC_PER_HOUR + 30 * USEC_PER_MINUTE },
                { "10.5s4m", 4 * USEC_PER_MINUTE + 10 * USEC_PER_SEC + 500 * USEC_PER_MSEC },
                { "1m30s", 90 * USEC_PER_SEC },
                { "1h1m1s1ms1us", USEC_PER_HOUR + USEC_PER_MINUTE + USEC_PER_SEC + USEC_PER_MSEC + 1 },
                { "39h9m14.425s", 140954425 * USEC_PER_MSEC },
                { "52763797000ns", 52763797 },
                { "0.3333333333333333333h", 20 * USEC_PER_MINUTE },
                { "1.5h", 90 * USEC_PER_MINUTE },
                { "0.5m", 30 * USEC_PER_SEC },
                { "1.0000001s", USEC_PER_SEC + 1 }, /* 100ns remainder rounds up */
                { "0.0000000001s", 0 },             /* below 1ns, dropped like Go */
                { "9007199254740993ns", 9007199254741 },
                /* Largest value Go accepts: 2^63-1 ns. */
                { "9223372036854775807ns", 9223372036854776 },
                { "9223372036.854775807s", 9223372036854776 },
                { "2562047h47m16.854775807s", 9223372036854776 },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                usec_t u = 12345;
                int r = parse_duration(table[i].s, &u);

                if (!CHECK(r == 0))
                        fprintf(stderr, "        input \"%s\" -> %d\n", table[i].s, r);
                CHECK_U64_EQ(u, table[i].expected);
        }
}

static void test_parse_invalid(void) {
        static const struct {
                const char *s;
                int error;
        } table[] = {
                { "", -EINVAL },
                { "+", -EINVAL },
                { "-", -EINVAL },
                { "-5s", -EINVAL },
                { "-0", -EINVAL },
                { "3", -EINVAL },      /* missing unit */
                { "00", -EINVAL },
                { "s", -EINVAL },
                { ".", -EINVAL },
                { ".s", -EINVAL },
                { "+.s", -EINVAL },
                { "1d", -EINVAL },
                { "1S", -EINVAL },     /* units are case-sensitive */
                { "1 s", -EINVAL },
                { " 1s", -EINVAL },
                { "1s ", -EINVAL },
                { "1.5.5s", -EINVAL },
                { "abc", -EINVAL },
                { "10", -EINVAL },
                { "1h-5m", -EINVAL },
                { "\xc2\xb5s", -EINVAL },
                { "1\xc2s", -EINVAL },  /* truncated UTF-8 */
                /* One past Go's limit and beyond. */
                { "9223372036854775808ns", -ERANGE },
                { "9223372036854775.808us", -ERANGE },
                { "2562047h47m16.854775808s", -ERANGE },
                { "9999999999999999999999h", -ERANGE },
                { "3000000h", -ERANGE },
                { "2562047h2562047h", -ERANGE },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                usec_t u = 12345;
                int r = parse_duration(table[i].s, &u);

                if (r != table[i].error)
                        fprintf(stderr, "        input \"%s\" -> %d\n", table[i].s, r);
                CHECK_INT_EQ(r, table[i].error);
                CHECK_U64_EQ(u, 12345); /* untouched on error */
        }

        CHECK_INT_EQ(parse_duration(NULL, &(usec_t) { 0 }), -EINVAL);
}

static void test_format(void) {
        static const struct {
                usec_t u;
                const char *expected;
        } table[] = {
                /* Go's Duration.String() for the same values. */
                { 0, "0s" },
                { 1, "1\xc2\xb5s" },
                { 999, "999\xc2\xb5s" },
                { USEC_PER_MSEC, "1ms" },
                { 1100, "1.1ms" },
                { 1001, "1.001ms" },
                { 500 * USEC_PER_MSEC, "500ms" },
                { USEC_PER_SEC, "1s" },
                { 1500 * USEC_PER_MSEC, "1.5s" },
                { USEC_PER_SEC + 1, "1.000001s" },
                { 10 * USEC_PER_SEC, "10s" },
                { 60 * USEC_PER_SEC, "1m0s" },
                { 90 * USEC_PER_SEC, "1m30s" },
                { 90 * USEC_PER_SEC + 250 * USEC_PER_MSEC, "1m30.25s" },
                { 5 * USEC_PER_MINUTE, "5m0s" },
                { USEC_PER_HOUR, "1h0m0s" },
                { USEC_PER_HOUR + USEC_PER_SEC, "1h0m1s" },
                { 140954425 * USEC_PER_MSEC, "39h9m14.425s" },
                { 9223372036854775, "2562047h47m16.854775s" },
                { UINT64_MAX, "5124095576h1m49.551615s" },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                char buf[DURATION_MAX];
                CHECK_STR_EQ(format_duration(buf, sizeof(buf), table[i].u), table[i].expected);
        }

        /* A short buffer truncates but stays terminated. */
        char small[4];
        format_duration(small, sizeof(small), 90 * USEC_PER_SEC);
        CHECK_STR_EQ(small, "1m3");
}

static void test_round_trip(void) {
        static const usec_t values[] = {
                1, 999, 1000, 1234, 999999, USEC_PER_SEC, 61 * USEC_PER_SEC + 7,
                USEC_PER_HOUR + 59 * USEC_PER_MINUTE + 59 * USEC_PER_SEC + 999999,
                9223372036854775,
        };

        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                char buf[DURATION_MAX];
                usec_t u = 0;

                CHECK_INT_EQ(parse_duration(format_duration(buf, sizeof(buf), values[i]), &u), 0);
                CHECK_U64_EQ(u, values[i]);
        }
}

int main(void) {
        test_parse_valid();
        test_parse_invalid();
        test_format();
        test_round_trip();
        return test_summary();
}
