/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

int error_set(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;

        if (!ret_error)
                return r;
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return r;
}

const char *errno_go(int error, char *buf, size_t size) {
        /* strerrordesc_np(): glibc's text before translation. */
        const char *d = strerrordesc_np(error < 0 ? -error : error);

        if (!d)
                (void) snprintf(buf, size, "errno %d", error < 0 ? -error : error);
        else {
                (void) snprintf(buf, size, "%s", d);
                buf[0] = (char) tolower((unsigned char) buf[0]);
        }
        return buf;
}

void erase_and_free(void *p, size_t n) {
        if (!p)
                return;
        explicit_bzero(p, n);
        free(p);
}

void erase_and_free_string(char *s) {
        if (s)
                erase_and_free(s, strlen(s));
}

int read_file_erasable(const char *path, size_t max, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return read_fd_erasable(fd, max, ret, ret_size);
}

int read_fd_erasable(int fd, size_t max, char **ret, size_t *ret_size) {
        struct stat st;
        size_t n = 0, allocated;
        char *buf;

        if (fstat(fd, &st) < 0)
                return -errno;
        allocated = S_ISREG(st.st_mode) && (size_t) st.st_size < max ? (size_t) st.st_size + 1 : 4096;
        buf = malloc(allocated);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k;

                if (n + 1 >= allocated) { /* grown meanwhile, or not a regular file */
                        size_t a = MIN(allocated * 2, max + 2);
                        char *p = a > allocated ? malloc(a) : NULL;

                        if (!p) {
                                erase_and_free(buf, n);
                                return a > allocated ? -ENOMEM : -EFBIG;
                        }
                        memcpy(p, buf, n);
                        erase_and_free(buf, n);
                        buf = p;
                        allocated = a;
                }
                k = read(fd, buf + n, allocated - 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int r = -errno;
                        erase_and_free(buf, n);
                        return r;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > max) {
                        erase_and_free(buf, n);
                        return -EFBIG;
                }
        }
        buf[n] = 0;
        *ret = buf;
        *ret_size = n;
        return 0;
}

int url_for_log(const char *url, char **ret) {
        _cleanup_free_ char *copy = NULL;
        char *password = NULL, *stripped = NULL;
        CURLUcode uc;
        CURLU *u;

        u = curl_url();
        if (!u)
                return -ENOMEM;
        /* Any scheme: a URL refused for its scheme (in a message of
         * config_validate()) must not show its password either. Without a
         * password, or unparsable (no scheme at all, say), the URL stays
         * exactly as written. */
        uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
        if (uc == CURLUE_OK && curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK &&
            curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) == CURLUE_OK)
                (void) curl_url_get(u, CURLUPART_URL, &stripped, 0);
        /* Never the password: only a URL without one is copied as given. */
        copy = stripped || !password ? strdup(stripped ?: url) : NULL;
        if (password)
                explicit_bzero(password, strlen(password));
        curl_free(password);
        curl_free(stripped);
        curl_url_cleanup(u);
        if (!copy)
                return -ENOMEM;
        *ret = TAKE_PTR(copy);
        return 0;
}
