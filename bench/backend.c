/* SPDX-License-Identifier: MIT */
/* backend - the plain TCP echo server every proxy in the benchmark forwards to.
 *
 *   backend [-a ADDR] -p PORT [-t MAX_SECONDS]
 *
 * One thread, level-triggered epoll, non-blocking sockets. Echoes every byte back with
 * backpressure: while a write is pending it stops reading that connection. Exits on
 * SIGTERM/SIGINT or after MAX_SECONDS (default 3600), so it never outlives a run. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define READS_PER_EVENT 16

typedef struct Conn {
        int fd;
        size_t off, len; /* bytes buf[off..len) still to be written back */
        char *buf;       /* allocated on the first read: idle connections stay small */
} Conn;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
        (void) sig;
        stop_requested = 1;
}

static int listen_on(const char *addr, int port) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
        int fd, one = 1;

        if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
                fprintf(stderr, "backend: '%s' is not an IPv4 address\n", addr);
                return -1;
        }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &sin, sizeof sin) < 0 || listen(fd, 4096) < 0) {
                fprintf(stderr, "backend: cannot listen on %s:%d: %s\n", addr, port,
                        strerror(errno));
                close(fd);
                return -1;
        }
        return fd;
}

static void conn_free(int ep, Conn *c) {
        (void) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        free(c->buf);
        free(c);
}

static void conn_watch(int ep, Conn *c, uint32_t events) {
        struct epoll_event e = { .events = events, .data.ptr = c };

        (void) epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* 0: keep the connection, -1: close it */
static int conn_io(int ep, Conn *c) {
        ssize_t n, w;

        if (c->off < c->len) {
                n = write(c->fd, c->buf + c->off, c->len - c->off);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : -1;
                c->off += (size_t) n;
                if (c->off < c->len)
                        return 0;
                c->off = c->len = 0;
                conn_watch(ep, c, EPOLLIN | EPOLLRDHUP);
                return 0;
        }
        if (!c->buf && !(c->buf = malloc(BUF_SIZE)))
                return -1;
        for (int i = 0; i < READS_PER_EVENT; i++) {
                n = read(c->fd, c->buf, BUF_SIZE);
                if (n == 0)
                        return -1;
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : -1;
                w = write(c->fd, c->buf, (size_t) n);
                if (w < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                return -1;
                        w = 0;
                }
                if (w < n) { /* the peer reads slower than it writes: wait for room */
                        c->off = (size_t) w;
                        c->len = (size_t) n;
                        conn_watch(ep, c, EPOLLOUT);
                        return 0;
                }
        }
        return 0;
}

static void accept_all(int ep, int lfd) {
        for (int i = 0; i < 64; i++) {
                struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP };
                int fd, one = 1;
                Conn *c;

                fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                        return;
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                c = calloc(1, sizeof *c);
                if (!c) {
                        close(fd);
                        continue;
                }
                c->fd = fd;
                e.data.ptr = c;
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
                        close(fd);
                        free(c);
                }
        }
}

int main(int argc, char **argv) {
        struct sigaction sa = { .sa_handler = on_signal };
        struct epoll_event events[256], le = { .events = EPOLLIN, .data.ptr = NULL };
        const char *addr = "127.0.0.1";
        int port = 0, max_seconds = 3600, opt, lfd, ep;
        time_t deadline;

        while ((opt = getopt(argc, argv, "a:p:t:")) != -1) {
                switch (opt) {
                case 'a':
                        addr = optarg;
                        break;
                case 'p':
                        port = atoi(optarg);
                        break;
                case 't':
                        max_seconds = atoi(optarg);
                        break;
                default:
                        fprintf(stderr, "usage: backend [-a ADDR] -p PORT [-t MAX_SECONDS]\n");
                        return 2;
                }
        }
        if (port <= 0 || port > 65535 || max_seconds <= 0) {
                fprintf(stderr, "backend: -p PORT (1-65535) is required, -t must be positive\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        (void) sigaction(SIGTERM, &sa, NULL);
        (void) sigaction(SIGINT, &sa, NULL);

        lfd = listen_on(addr, port);
        if (lfd < 0)
                return 1;
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le) < 0) {
                perror("backend: epoll");
                return 1;
        }
        deadline = time(NULL) + max_seconds;
        while (!stop_requested && time(NULL) < deadline) {
                int n = epoll_wait(ep, events, 256, 1000);

                for (int i = 0; i < n; i++) {
                        Conn *c = events[i].data.ptr;

                        if (!c)
                                accept_all(ep, lfd);
                        else if (conn_io(ep, c) < 0)
                                conn_free(ep, c);
                }
        }
        return 0;
}
