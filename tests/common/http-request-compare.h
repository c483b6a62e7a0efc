/* SPDX-License-Identifier: MIT */
#pragma once

/* For the unit test and the fuzzer of src/http-request.c: whether two parses
 * agree, each field of a in a's buffer equal to that of b in b's (the path
 * may be the parser's static "/"), the spans at the same offsets. */

#include <stdbool.h>
#include <string.h>

#include "http-request.h"

static inline bool http_request_same(const HttpRequest *a, const char *abuf,
                                     const HttpRequest *b, const char *bbuf) {
#define SAME_SPAN(f)                                                                             \
        (a->f##_len == b->f##_len && (!a->f) == (!b->f) &&                                     \
         (!a->f || a->f##_len == 0 || memcmp(a->f, b->f, a->f##_len) == 0))
        return SAME_SPAN(method) && SAME_SPAN(target) && SAME_SPAN(path) && SAME_SPAN(query) &&
               a->method - abuf == b->method - bbuf && a->target - abuf == b->target - bbuf &&
               a->version_minor == b->version_minor &&
               a->has_content_length == b->has_content_length &&
               a->content_length == b->content_length && a->chunked == b->chunked &&
               a->head_len == b->head_len;
#undef SAME_SPAN
}
