/* SPDX-License-Identifier: MIT */
/* LD_PRELOAD shim for tests/integration/test_secrets.py: wraps free() and
 * realloc() and records every heap block that still holds private key PEM
 * text ("PRIVATE KEY-----") or the string in $FREECHECK_SECRET (a test's
 * keystore password) when it is released, i.e. was not wiped first. One
 * line per hit and a backtrace go to $FREECHECK_LOG; the test asserts that
 * file stays empty. Blocks are scanned up to malloc_usable_size(), so what
 * sat in a block before a shorter string was written over it counts too.
 *
 * GnuTLS handles keys as DER internally (and frees some of it unwiped); DER
 * is not what this looks for. It does free copies of the PKCS#12 password
 * unwiped (gnutls_utf8_password_normalize()'s result, in 3.7.9), which we
 * cannot change: a block freed directly by code in an object whose file
 * name contains $FREECHECK_IGNORE_CALLER (say "libgnutls") is logged as
 * "ignored:" instead of as a hit. A block of ours that GnuTLS frees for us
 * would be missed that way; tlsgate never hands GnuTLS such a block, and
 * stdio buffers (which gnutls_load_file() used to leave holding the key)
 * are freed by libc, so they count. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PEM_MARK "PRIVATE KEY-----"

static void (*real_free)(void *);
static void *(*real_realloc)(void *, size_t);
static const char *secret, *ignore_caller;
static size_t secret_len;
static int log_fd = -1;
static __thread int busy;

__attribute__((constructor)) static void freecheck_init(void) {
        const char *log = getenv("FREECHECK_LOG");

        busy++;
        real_free = (void (*)(void *)) dlsym(RTLD_NEXT, "free");
        real_realloc = (void *(*)(void *, size_t)) dlsym(RTLD_NEXT, "realloc");
        secret = getenv("FREECHECK_SECRET");
        ignore_caller = getenv("FREECHECK_IGNORE_CALLER");
        secret_len = secret ? strlen(secret) : 0;
        if (log)
                log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        busy--;
}

/* What the block holds that it should not, or NULL. */
static const char *holds_secret(void *p) {
        size_t n = malloc_usable_size(p);

        if (memmem(p, n, PEM_MARK, strlen(PEM_MARK)))
                return "private key PEM";
        if (secret_len > 0 && memmem(p, n, secret, secret_len))
                return "the secret string";
        return NULL;
}

static void report(const char *how, void *p, const char *what, void *caller) {
        void *frames[32];
        char line[512];
        Dl_info info = {};
        bool ignored;
        int n, l;

        if (log_fd < 0)
                return;
        (void) dladdr(caller, &info);
        ignored = ignore_caller && *ignore_caller && info.dli_fname &&
                  strstr(info.dli_fname, ignore_caller);
        l = snprintf(line, sizeof line,
                     "%sfreecheck: %s of a %zu-byte block at %p holding %s, pid %d, called from %s\n",
                     ignored ? "ignored: " : "", how, malloc_usable_size(p), p, what, (int) getpid(),
                     info.dli_fname ? info.dli_fname : "?");
        if (write(log_fd, line, (size_t) l) < 0)
                return;
        n = backtrace(frames, 32);
        backtrace_symbols_fd(frames, n, log_fd);
        (void) !write(log_fd, "\n", 1);
}

void free(void *p) {
        const char *what;

        if (!real_free)
                return; /* only during our own dlsym(): leak it */
        if (p && !busy) {
                busy++;
                what = holds_secret(p);
                if (what)
                        report("free()", p, what, __builtin_return_address(0));
                busy--;
        }
        real_free(p);
}

void *realloc(void *p, size_t n) {
        const char *what = NULL;
        void *q;

        if (!real_realloc)
                return NULL;
        if (p && !busy) {
                busy++;
                what = holds_secret(p);
                busy--;
        }
        q = real_realloc(p, n);
        /* Moved: the old block was released as it was. */
        if (what && q && q != p) {
                busy++;
                report("realloc()", q, what, __builtin_return_address(0));
                busy--;
        }
        return q;
}
