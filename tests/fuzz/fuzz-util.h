/* SPDX-License-Identifier: MIT */
#pragma once

/* Helpers shared by the fuzz targets: a CHECK that aborts (libFuzzer then
 * keeps the input), a reader that takes bytes, numbers and strings off the
 * front of the input, splitting at a separator, and a scratch directory. */

#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(x)                                                                               \
        do {                                                                                   \
                if (!(x)) {                                                                    \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
                        abort();                                                               \
                }                                                                              \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Seed files separate their parts with this line, so they stay readable. */
#define FUZZ_SEPARATOR "\n%%\n"

typedef struct FuzzInput {
        const uint8_t *p;
        size_t n;
} FuzzInput;

static inline uint8_t fuzz_u8(FuzzInput *in) {
        uint8_t v = 0;

        if (in->n > 0) {
                v = in->p[0];
                in->p++, in->n--;
        }
        return v;
}

static inline uint16_t fuzz_u16(FuzzInput *in) {
        return (uint16_t) (fuzz_u8(in) << 8 | fuzz_u8(in));
}

/* Up to n bytes (fewer at the end of the input). */
static inline const uint8_t *fuzz_bytes(FuzzInput *in, size_t n, size_t *ret_n) {
        const uint8_t *p = in->p;

        n = n < in->n ? n : in->n;
        in->p += n, in->n -= n;
        *ret_n = n;
        return p;
}

/* The next part up to FUZZ_SEPARATOR (or the end), as a malloc'ed,
 * NUL-terminated copy; *ret_n excludes the terminator. NULL when the input
 * is used up. */
static inline char *fuzz_part(FuzzInput *in, size_t *ret_n) {
        const size_t sep_len = sizeof FUZZ_SEPARATOR - 1;
        const uint8_t *sep;
        size_t n;
        char *s;

        if (in->n == 0 && !in->p)
                return NULL;
        sep = memmem(in->p, in->n, FUZZ_SEPARATOR, sep_len);
        n = sep ? (size_t) (sep - in->p) : in->n;
        s = malloc(n + 1);
        if (!s)
                abort();
        memcpy(s, in->p, n);
        s[n] = 0;
        if (ret_n)
                *ret_n = n;
        if (sep) {
                in->p = sep + sep_len;
                in->n -= n + sep_len;
        } else
                *in = (FuzzInput) {}; /* used up: the next call returns NULL */
        return s;
}

static inline int fuzz_rm_rf_one(const char *path, const struct stat *st, int flag,
                                 struct FTW *ftw) {
        return remove(path);
}

/* Empties dir (keeps dir itself). */
static inline void fuzz_clear_dir(const char *dir) {
        char buf[4096];
        int r;

        r = nftw(dir, fuzz_rm_rf_one, 16, FTW_DEPTH | FTW_PHYS);
        CHECK(r == 0);
        snprintf(buf, sizeof buf, "%s", dir);
        CHECK(mkdir(buf, 0700) == 0);
}

/* A private scratch directory, on tmpfs when there is one (the targets write
 * files on every run and storage fsyncs them). run-fuzzer.sh points
 * $TLSGATE_FUZZ_SCRATCH at a directory it removes afterwards, so that not
 * even a crash leaves anything behind; the targets clean up after a normal
 * exit themselves. */
static inline char *fuzz_scratch_dir(void) {
        const char *base = getenv("TLSGATE_FUZZ_SCRATCH");
        char *d;

        if (!base)
                base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
                       getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        if (asprintf(&d, "%s/tlsgate-fuzz-XXXXXX", base) < 0 || !mkdtemp(d))
                abort();
        return d;
}

static inline void fuzz_write_file(const char *path, const void *p, size_t n) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        CHECK(fd >= 0);
        CHECK(n == 0 || write(fd, p, n) == (ssize_t) n);
        CHECK(close(fd) == 0);
}
