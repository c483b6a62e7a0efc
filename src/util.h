/* SPDX-License-Identifier: MIT */
#pragma once

#include <time.h>

#include "macro.h"

/* The clock's time in microseconds; 0 if it cannot be read. */
static inline usec_t now_usec(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000U;
}

/* For functions that return a negative errno plus a message for the user:
 * sets *ret_error to a malloc'ed message (NULL if out of memory) and
 * returns r, so that `return error_set(ret_error, -EINVAL, "...", ...);`
 * reads as one statement. */
int error_set(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);

/* For buffers that held private key material or a password: zeroes n bytes
 * (explicit_bzero(), which the compiler may not drop) and frees. NULL is
 * fine. erase_and_free_string() zeroes up to the terminator. */
void erase_and_free(void *p, size_t n);
void erase_and_free_string(char *s);
static inline void erase_and_free_stringp(char **p) {
        erase_and_free_string(*p);
}
#define _cleanup_erase_free_ _cleanup_(erase_and_free_stringp)

/* Reads a whole file for something secret (a key, a keystore, a password):
 * with read(2), not stdio, whose buffers would be freed holding the data,
 * and wiping every buffer it lets go of. NUL-terminated; -EFBIG beyond max
 * bytes; a negative errno when it cannot be read. Release *ret with
 * erase_and_free(*ret, *ret_size). */
int read_file_erasable(const char *path, size_t max, char **ret, size_t *ret_size);
/* The same from an open file descriptor (read to its end). */
int read_fd_erasable(int fd, size_t max, char **ret, size_t *ret_size);

/* An errno as Go spells it (syscall.Errno's Error()): the C library's English
 * text with a lower-case first letter ("too many open files", "connection
 * refused"), never translated, whatever the locale: for the log lines
 * Ghostunnel's users grep. "errno N" for an unknown one, as Go. Writes into
 * buf (ERRNO_GO_MAX bytes are always enough) and returns it. */
#define ERRNO_GO_MAX 128
const char *errno_go(int error, char *buf, size_t size);

/* url for a message or the log: without its password when it has one
 * (user@ is kept), whatever its scheme (libcurl's URL parser); as given
 * when it has none or does not parse. Returns 0 or -ENOMEM; *ret is
 * malloc'ed. */
int url_for_log(const char *url, char **ret);
