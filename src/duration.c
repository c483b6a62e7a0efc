/* SPDX-License-Identifier: MIT */
/* Go's time.ParseDuration and Duration.String(), over microseconds.
 *
 * Parsing follows Go exactly (same grammar, same int64-nanosecond limit), so
 * that any value Ghostunnel accepts is accepted here, then converts to
 * microseconds rounding up. Only negative values are refused on top. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "duration.h"

#define NSEC_PER_USEC 1000ULL
#define NSEC_MAX ((uint64_t) INT64_MAX) /* Go's time.Duration is int64 ns */

/* A unit is m * 10^e nanoseconds; keeping the factors apart lets the fraction
 * be scaled without 128-bit arithmetic. */
typedef struct DurationUnit {
        const char *name;
        uint64_t nsec;
        uint64_t mult;
        unsigned exp10;
} DurationUnit;

static const DurationUnit units[] = {
        { "ns", 1ULL, 1, 0 },
        { "us", 1000ULL, 1, 3 },
        { "\xc2\xb5s", 1000ULL, 1, 3 }, /* U+00B5 MICRO SIGN */
        { "\xce\xbcs", 1000ULL, 1, 3 }, /* U+03BC GREEK SMALL LETTER MU */
        { "ms", 1000000ULL, 1, 6 },
        { "s", 1000000000ULL, 1, 9 },
        { "m", 60000000000ULL, 6, 10 },
        { "h", 3600000000000ULL, 36, 11 },
};

/* Fraction digits kept: 10^17 * 36 still fits in 64 bits, and digits past
 * the 17th are far below a nanosecond even for hours (Go drops them too). */
#define FRACTION_DIGITS_MAX 17

static uint64_t pow10_u64(unsigned n) {
        uint64_t r = 1;
        while (n-- > 0)
                r *= 10;
        return r;
}

static const DurationUnit *unit_lookup(const char *s, size_t n) {
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strlen(units[i].name) == n && memcmp(units[i].name, s, n) == 0)
                        return &units[i];
        return NULL;
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* Parses one "<number>[.<fraction>]<unit>" component at *p, advancing it,
 * and returns its value in nanoseconds (fraction truncated, as Go does). */
static int parse_component(const char **p, uint64_t *ret_nsec) {
        const char *s = *p;
        uint64_t v = 0, f = 0;
        unsigned digits = 0;
        bool pre = false, post = false, overflow = false;

        for (; is_digit(*s); s++) {
                pre = true;
                if (v > (NSEC_MAX - (uint64_t) (*s - '0')) / 10)
                        overflow = true;
                else
                        v = v * 10 + (uint64_t) (*s - '0');
        }

        if (*s == '.')
                for (s++; is_digit(*s); s++) {
                        post = true;
                        if (digits >= FRACTION_DIGITS_MAX)
                                continue;
                        f = f * 10 + (uint64_t) (*s - '0');
                        digits++;
                }

        if (!pre && !post)
                return -EINVAL; /* ".s", "s" */

        /* The unit runs up to the next digit or '.', like Go. */
        const char *u = s;
        while (*s && *s != '.' && !is_digit(*s))
                s++;
        if (s == u)
                return -EINVAL; /* missing unit */

        const DurationUnit *unit = unit_lookup(u, (size_t) (s - u));
        if (!unit)
                return -EINVAL;

        if (overflow || v > NSEC_MAX / unit->nsec)
                return -ERANGE;
        v *= unit->nsec;

        if (f > 0) {
                /* f / 10^digits * mult * 10^exp10 */
                uint64_t frac;
                if (digits <= unit->exp10)
                        frac = f * unit->mult * pow10_u64(unit->exp10 - digits);
                else
                        frac = f * unit->mult / pow10_u64(digits - unit->exp10);

                if (frac > NSEC_MAX - v)
                        return -ERANGE;
                v += frac;
        }

        *p = s;
        *ret_nsec = v;
        return 0;
}

int parse_duration(const char *s, usec_t *ret) {
        uint64_t total = 0;

        if (!s || !ret)
                return -EINVAL;

        if (*s == '+')
                s++;
        else if (*s == '-')
                return -EINVAL; /* Go accepts negative durations; no flag of ours does. */

        if (streq(s, "0")) {
                *ret = 0;
                return 0;
        }
        if (*s == '\0')
                return -EINVAL;

        while (*s) {
                uint64_t v;
                int r;

                r = parse_component(&s, &v);
                if (r < 0)
                        return r;
                if (v > NSEC_MAX - total)
                        return -ERANGE;
                total += v;
        }

        /* Round sub-microsecond remainders up: "1ns" must not become "off". */
        *ret = total / NSEC_PER_USEC + (total % NSEC_PER_USEC != 0);
        return 0;
}

/* Writes the decimal v / 10^prec with trailing fractional zeros (and a bare
 * '.') removed, as Go's fmtFrac/fmtInt pair does. */
static int format_fraction(char *buf, size_t size, uint64_t v, unsigned prec) {
        uint64_t div = pow10_u64(prec);
        uint64_t frac = v % div;
        char digits[24];
        int n;

        if (frac == 0)
                return snprintf(buf, size, "%llu", (unsigned long long) (v / div));

        n = snprintf(digits, sizeof(digits), "%0*llu", (int) prec, (unsigned long long) frac);
        while (n > 0 && digits[n - 1] == '0')
                digits[--n] = '\0';

        return snprintf(buf, size, "%llu.%s", (unsigned long long) (v / div), digits);
}

const char *format_duration(char *buf, size_t size, usec_t u) {
        size_t n;

        if (!buf || size == 0)
                return NULL;

        if (u == 0) {
                snprintf(buf, size, "0s");
                return buf;
        }

        if (u < USEC_PER_MSEC) {
                snprintf(buf, size, "%llu\xc2\xb5s", (unsigned long long) u);
                return buf;
        }

        if (u < USEC_PER_SEC) {
                int w = format_fraction(buf, size, u, 3);
                if (w >= 0 && (size_t) w < size)
                        snprintf(buf + w, size - (size_t) w, "ms");
                return buf;
        }

        /* [<h>h][<m>m]<s>s: once a larger unit is printed, smaller ones are too. */
        uint64_t hours = u / USEC_PER_HOUR;
        uint64_t minutes = (u % USEC_PER_HOUR) / USEC_PER_MINUTE;
        uint64_t secs_usec = u % USEC_PER_MINUTE;

        buf[0] = '\0';
        n = 0;
        if (hours > 0)
                n += (size_t) snprintf(buf, size, "%lluh", (unsigned long long) hours);
        if ((hours > 0 || minutes > 0) && n < size)
                n += (size_t) snprintf(buf + n, size - n, "%llum", (unsigned long long) minutes);
        if (n < size) {
                int w = format_fraction(buf + n, size - n, secs_usec, 6);
                if (w >= 0)
                        n += (size_t) w;
        }
        if (n < size)
                snprintf(buf + n, size - n, "s");
        return buf;
}
