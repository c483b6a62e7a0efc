/* SPDX-License-Identifier: MIT */
/* LD_PRELOAD shim for tests/integration/test_watchdog.py: makes a serving
 * thread's event loop hang, as a bug or a stuck library call would. Any
 * accept()/accept4() called by a thread other than the main one never
 * returns; the main thread accepts as usual. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <sys/socket.h>
#include <unistd.h>

#define REAL(name) ((__typeof__(&name)) dlsym(RTLD_NEXT, #name))

static void hang_unless_main_thread(void) {
        if (gettid() == getpid())
                return;
        for (;;)
                (void) sleep(3600);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
        hang_unless_main_thread();
        return REAL(accept4)(fd, addr, len, flags);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len) {
        hang_unless_main_thread();
        return REAL(accept)(fd, addr, len);
}
