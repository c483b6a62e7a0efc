/* SPDX-License-Identifier: MIT */
#pragma once

/* Go-syntax durations ("500ms", "10s", "1m30s", "1.5h", "0"), as
 * time.ParseDuration accepts them, minus negative values. */

#include "macro.h"

/* Returns 0, or -EINVAL for a malformed string, -ERANGE for an overflow.
 * Sub-microsecond remainders are rounded up to the next microsecond. */
int parse_duration(const char *s, usec_t *ret);

/* Formats like Go's Duration.String() ("1m30s", "500ms", "0s") into buf. */
const char *format_duration(char *buf, size_t size, usec_t u);
#define DURATION_MAX 32
