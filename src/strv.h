/* SPDX-License-Identifier: MIT */
#pragma once

/* NULL-terminated string vectors (char **), as repeatable flags store them. */

#include <stdbool.h>
#include <stddef.h>

char **strv_free(char **l);
size_t strv_length(char * const *l);
/* Appends a copy of value. Returns 0 or -ENOMEM. */
int strv_extend(char ***l, const char *value);
bool strv_contains(char * const *l, const char *value);

#define STRV_FOREACH(s, l) for (char * const *s = (l); s && *s; s++)

static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ __attribute__((cleanup(strv_freep)))
