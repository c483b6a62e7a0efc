/* SPDX-License-Identifier: MIT */
/* The control socket: see control.h. */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "listener.h"
#include "log.h"
#include "util.h"

#define CONTROL_CONNS_MAX 8U
#define CONTROL_REQUEST_MAX 64U
/* A client that connects says what it wants at once. */
#define CONTROL_REQUEST_TIMEOUT_USEC (5 * USEC_PER_SEC)

typedef struct ControlConn ControlConn;

struct ControlServer {
        sd_event *event;
        control_reload_t reload;
        void *userdata;
        int fd;
        char *path;
        sd_event_source *accept_source;
        ControlConn *conns;
        unsigned n_conns;
};

struct ControlConn {
        ControlServer *server;
        int fd;
        sd_event_source *io, *timer;
        ControlConn *next;
};

char *control_runtime_dir(const char *runtime_dirs) {
        size_t n;

        if (!runtime_dirs || !*runtime_dirs)
                return NULL;
        n = strcspn(runtime_dirs, ":");
        return n > 0 ? strndup(runtime_dirs, n) : NULL;
}

static void control_conn_free(ControlConn *c) {
        ControlServer *s = c->server;

        for (ControlConn **p = &s->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        s->n_conns--;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        close(c->fd);
        free(c);
}

/* Only tlsgate's own user, or root, may make it reload. */
static bool peer_allowed(int fd) {
        struct ucred cred;
        socklen_t len = sizeof cred;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return false;
        return cred.uid == 0 || cred.uid == geteuid();
}

static void control_conn_reply(ControlConn *c, const char *reply) {
        if (send(c->fd, reply, strlen(reply), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                log_debug_errno(errno, "control socket: cannot answer: %m");
}

static int on_conn_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        ControlConn *c = userdata;
        ControlServer *s = c->server;
        char buf[CONTROL_REQUEST_MAX];
        ssize_t n;

        (void) es;
        (void) revents;

        n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                control_conn_free(c);
                return 0;
        }
        buf[n] = '\0';
        if (!peer_allowed(fd)) {
                log_warning("control socket: refused a request from a process of another user");
                control_conn_reply(c, "failed: not allowed");
        } else if (!streq(buf, "reload"))
                control_conn_reply(c, "failed: unknown request");
        else {
                _cleanup_free_ char *reason = NULL, *reply = NULL;

                if (s->reload(s->userdata, &reason) >= 0)
                        control_conn_reply(c, "ok");
                else {
                        if (asprintf(&reply, "failed: %.*s", (int) (CONTROL_REPLY_MAX - 16),
                                     reason ? reason : "see the log") < 0)
                                reply = NULL;
                        control_conn_reply(c, reply ? reply : "failed: out of memory");
                }
        }
        control_conn_free(c);
        return 0;
}

static int on_conn_timeout(sd_event_source *es, uint64_t usec, void *userdata) {
        (void) es;
        (void) usec;
        control_conn_free(userdata);
        return 0;
}

static int on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        ControlServer *s = userdata;
        ControlConn *c;
        int cfd, r;

        (void) es;
        (void) revents;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_debug_errno(errno, "control socket: accept failed: %m");
                return 0;
        }
        if (s->n_conns >= CONTROL_CONNS_MAX) {
                close(cfd);
                return 0;
        }
        c = calloc(1, sizeof *c);
        if (!c) {
                close(cfd);
                return 0;
        }
        c->server = s;
        c->fd = cfd;
        c->next = s->conns;
        s->conns = c;
        s->n_conns++;
        r = sd_event_add_io(s->event, &c->io, cfd, EPOLLIN, on_conn_io, c);
        if (r >= 0)
                r = sd_event_add_time_relative(s->event, &c->timer, CLOCK_MONOTONIC,
                                               CONTROL_REQUEST_TIMEOUT_USEC, 0, on_conn_timeout,
                                               c);
        if (r >= 0) {
                (void) sd_event_source_set_description(c->io, "control-conn");
                (void) sd_event_source_set_description(c->timer, "control-conn-timeout");
        } else
                control_conn_free(c);
        return 0;
}

int control_server_new(sd_event *e, control_reload_t reload, void *userdata, const char *dir,
                       ControlServer **ret, char **ret_error) {
        _cleanup_(control_server_freep) ControlServer *s = NULL;
        struct sockaddr_un un;
        socklen_t len;
        int r;

        assert(e);
        assert(reload);
        assert(dir);

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->event = e;
        s->reload = reload;
        s->userdata = userdata;
        s->fd = -EBADF;
        if (asprintf(&s->path, "%s/%s", dir, CONTROL_SOCKET_NAME) < 0) {
                s->path = NULL;
                return -ENOMEM;
        }
        if (sockaddr_un_fill(s->path, &un, &len) < 0)
                return error_set(ret_error, -ENAMETOOLONG, "control socket %s: path too long",
                                 s->path);
        s->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->fd < 0)
                return error_set(ret_error, -errno, "control socket: %s", strerror(errno));
        /* The directory is tlsgate's own: what is there is a leftover. */
        if (unlink(s->path) < 0 && errno != ENOENT)
                return error_set(ret_error, -errno, "control socket %s: cannot replace: %s",
                                 s->path, strerror(errno));
        /* Created 0600 whatever the umask, never readable by others. */
        mode_t old = umask(0177);
        r = bind(s->fd, (struct sockaddr *) &un, len);
        umask(old);
        if (r < 0)
                return error_set(ret_error, -errno, "control socket %s: %s", s->path,
                                 strerror(errno));
        if (listen(s->fd, (int) CONTROL_CONNS_MAX) < 0)
                return error_set(ret_error, -errno, "control socket %s: %s", s->path,
                                 strerror(errno));
        r = sd_event_add_io(e, &s->accept_source, s->fd, EPOLLIN, on_accept, s);
        if (r < 0)
                return error_set(ret_error, r, "control socket: %s", strerror(-r));
        (void) sd_event_source_set_description(s->accept_source, "control-accept");
        *ret = TAKE_PTR(s);
        return 0;
}

ControlServer *control_server_free(ControlServer *s) {
        if (!s)
                return NULL;
        while (s->conns)
                control_conn_free(s->conns);
        sd_event_source_disable_unref(s->accept_source);
        if (s->fd >= 0) {
                close(s->fd);
                (void) unlink(s->path);
        }
        free(s->path);
        free(s);
        return NULL;
}

int control_request_reload(const char *dir, usec_t timeout, char **ret_reason) {
        _cleanup_free_ char *path = NULL, *reply = NULL;
        struct sockaddr_un un;
        socklen_t len;
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
        ssize_t n;
        int fd, r;

        if (asprintf(&path, "%s/%s", dir, CONTROL_SOCKET_NAME) < 0)
                return -ENOMEM;
        if (sockaddr_un_fill(path, &un, &len) < 0)
                return -ENAMETOOLONG;
        reply = malloc(CONTROL_REPLY_MAX + 1);
        if (!reply)
                return -ENOMEM;
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &un, len) < 0 ||
            send(fd, "reload", strlen("reload"), MSG_NOSIGNAL) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        for (;;) {
                usec_t now = now_usec(CLOCK_MONOTONIC);
                struct pollfd p = { .fd = fd, .events = POLLIN };

                if (now >= deadline) {
                        close(fd);
                        return -ETIMEDOUT;
                }
                r = poll(&p, 1, (int) ((deadline - now + 999) / 1000));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        r = -errno;
                        close(fd);
                        return r;
                }
                if (r > 0)
                        break;
        }
        n = recv(fd, reply, CONTROL_REPLY_MAX, 0);
        r = n < 0 ? -errno : 0;
        close(fd);
        if (r < 0)
                return r;
        if (n == 0)
                return -ECONNRESET; /* tlsgate went away without an answer */
        reply[n] = '\0';
        if (streq(reply, "ok"))
                return 0;
        if (ret_reason)
                *ret_reason = strdup(startswith(reply, "failed: ") ? reply + 8 : reply);
        return -EINVAL;
}
