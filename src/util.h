/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* For functions that return a negative errno plus a message for the user:
 * sets *ret_error to a malloc'ed message (NULL if out of memory) and
 * returns r, so that `return error_set(ret_error, -EINVAL, "...", ...);`
 * reads as one statement. */
int error_set(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
