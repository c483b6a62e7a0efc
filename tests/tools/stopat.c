/* SPDX-License-Identifier: MIT */
/* LD_PRELOAD shim for tests/integration/test_faults_storage.py: makes a
 * kill -9 land at an exact point of a storage write instead of wherever a
 * race puts it. Every call of the file system functions below whose path
 * (for fd-based calls: the file the fd is open on) contains $STOPAT_MATCH is
 * a step, numbered from 1 over the process' life and logged as
 * "N function path" to $STOPAT_LOG. At step $STOPAT_N, before making the
 * call, the process stops itself with SIGSTOP; the test then kills it with
 * SIGKILL. Without STOPAT_N (or 0) steps are only counted, which is how the
 * test learns how many points there are to kill at. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *match;
static long stop_at;
static int log_fd = -1;
static unsigned long steps;

__attribute__((constructor)) static void stopat_init(void) {
        const char *n = getenv("STOPAT_N"), *log = getenv("STOPAT_LOG");

        match = getenv("STOPAT_MATCH");
        stop_at = n ? strtol(n, NULL, 10) : 0;
        if (log)
                log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

#define REAL(name) ((__typeof__(&name)) dlsym(RTLD_NEXT, #name))

static void step(const char *fn, const char *path) {
        char line[4200];
        int l;

        if (!match || !path || !strstr(path, match))
                return;
        unsigned long k = __atomic_add_fetch(&steps, 1, __ATOMIC_SEQ_CST);
        l = snprintf(line, sizeof line, "%lu %s %s\n", k, fn, path);
        if (log_fd >= 0 && l > 0)
                (void) !write(log_fd, line, (size_t) l < sizeof line ? (size_t) l : sizeof line - 1);
        if (stop_at > 0 && k == (unsigned long) stop_at)
                raise(SIGSTOP);
}

static void step_fd(const char *fn, int fd) {
        char proc[64], path[4096];
        ssize_t n;

        if (!match || fd < 0)
                return;
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        n = readlink(proc, path, sizeof path - 1);
        if (n <= 0)
                return;
        path[n] = 0;
        step(fn, path);
}

static void step_at(const char *fn, int dfd, const char *name) {
        char proc[64], path[4096];
        ssize_t n;

        if (!match || !name)
                return;
        if (dfd == AT_FDCWD || name[0] == '/') {
                step(fn, name);
                return;
        }
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", dfd);
        n = readlink(proc, path, sizeof path - 1);
        if (n <= 0 || (size_t) n + 1 + strlen(name) >= sizeof path)
                return;
        path[n] = '/';
        strcpy(path + n + 1, name);
        step(fn, path);
}

ssize_t write(int fd, const void *buf, size_t n) {
        step_fd("write", fd);
        return REAL(write)(fd, buf, n);
}

int fsync(int fd) {
        step_fd("fsync", fd);
        return REAL(fsync)(fd);
}

int fchmod(int fd, mode_t mode) {
        step_fd("fchmod", fd);
        return REAL(fchmod)(fd, mode);
}

int openat(int dfd, const char *name, int flags, ...) {
        mode_t mode = 0;

        if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
                va_list ap;
                va_start(ap, flags);
                mode = va_arg(ap, mode_t);
                va_end(ap);
        }
        if (flags & (O_CREAT | O_WRONLY | O_RDWR))
                step_at("openat", dfd, name);
        return REAL(openat)(dfd, name, flags, mode);
}

char *mkdtemp(char *template) {
        step("mkdtemp", template);
        return REAL(mkdtemp)(template);
}

int mkostemp(char *template, int flags) {
        step("mkostemp", template);
        return REAL(mkostemp)(template, flags);
}

int mkdir(const char *path, mode_t mode) {
        step("mkdir", path);
        return REAL(mkdir)(path, mode);
}

int rename(const char *from, const char *to) {
        step("rename", to);
        return REAL(rename)(from, to);
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags) {
        step_at("renameat2", fd2, to);
        return REAL(renameat2)(fd1, from, fd2, to, flags);
}

int link(const char *from, const char *to) {
        step("link", to);
        return REAL(link)(from, to);
}

int linkat(int fd1, const char *from, int fd2, const char *to, int flags) {
        step_at("linkat", fd2, to);
        return REAL(linkat)(fd1, from, fd2, to, flags);
}

int unlink(const char *path) {
        step("unlink", path);
        return REAL(unlink)(path);
}

int unlinkat(int dfd, const char *name, int flags) {
        step_at("unlinkat", dfd, name);
        return REAL(unlinkat)(dfd, name, flags);
}

int rmdir(const char *path) {
        step("rmdir", path);
        return REAL(rmdir)(path);
}
