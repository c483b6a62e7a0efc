/* SPDX-License-Identifier: MIT */
/* LD_PRELOAD shim for tests/integration/test_watchdog.py: makes a serving
 * thread's event loop hang, as a bug or a stuck library call would. Any
 * accept()/accept4() called by a thread other than the main one never
 * returns; the main thread accepts as usual. Before hanging it appends a
 * line to $HANGACCEPT_LOG, if set, so that the test knows a thread is stuck
 * (which thread gets to a new connection first is a race). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define REAL(name) ((__typeof__(&name)) dlsym(RTLD_NEXT, #name))

static void hang_unless_main_thread(void) {
        const char *log = getenv("HANGACCEPT_LOG");

        if (gettid() == getpid())
                return;
        if (log) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        dprintf(fd, "thread %d hangs in accept()\n", (int) gettid());
                        close(fd);
                }
        }
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
