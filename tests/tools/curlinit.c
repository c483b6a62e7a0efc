/* SPDX-License-Identifier: MIT */
/* LD_PRELOAD shim for tests/integration/test_libcurl.py: shows when the
 * program sets up and tears down libcurl's global state, relative to the
 * threads it starts. Appends one line per event to $CURLINIT_LOG:
 *
 *   thread N     pthread_create() succeeded: N threads started so far
 *   init N       curl_global_init(), called after N threads were started
 *   cleanup N    curl_global_cleanup(), likewise
 *   multi N      curl_multi_init(): an HTTP client is being made
 *
 * Only calls that cross into libcurl from outside are seen (the program's,
 * not libcurl's own); each is passed on to the real function unchanged. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <curl/curl.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int log_fd = -1;
static unsigned threads_started;

__attribute__((constructor)) static void curlinit_setup(void) {
        const char *log = getenv("CURLINIT_LOG");

        if (log)
                log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

#define REAL(name) ((__typeof__(&name)) dlsym(RTLD_NEXT, #name))

/* One write() per line: O_APPEND keeps lines from several threads whole. */
static void event(const char *what, unsigned n) {
        char line[64];
        int len;

        if (log_fd < 0)
                return;
        len = snprintf(line, sizeof line, "%s %u\n", what, n);
        if (len > 0)
                (void) !write(log_fd, line, (size_t) len);
}

static unsigned started(void) {
        return __atomic_load_n(&threads_started, __ATOMIC_SEQ_CST);
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *),
                   void *arg) {
        int r = REAL(pthread_create)(thread, attr, start, arg);

        if (r == 0)
                event("thread", __atomic_add_fetch(&threads_started, 1, __ATOMIC_SEQ_CST));
        return r;
}

CURLcode curl_global_init(long flags) {
        event("init", started());
        return REAL(curl_global_init)(flags);
}

void curl_global_cleanup(void) {
        event("cleanup", started());
        REAL(curl_global_cleanup)();
}

CURLM *curl_multi_init(void) {
        event("multi", started());
        return REAL(curl_multi_init)();
}
