/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "listener.h"
#include "macro.h"
#include "util.h"
#include "strv.h"

static int fd_nonblock_cloexec(int fd) {
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
                return -errno;
        return 0;
}

int sockaddr_un_fill(const char *path, struct sockaddr_un *un, socklen_t *ret_len) {
        size_t l = strlen(path);

        if (l == 0 || l >= sizeof un->sun_path)
                return -ENAMETOOLONG;
        memset(un, 0, sizeof *un);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, l);
        *ret_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l + 1);
        return 0;
}

/* A socket file nobody listens on (left by a crash) may be replaced; a live
 * one or any other file may not. */
static int unix_remove_stale(const char *path, const struct sockaddr_un *un, socklen_t len) {
        struct stat st;
        int fd, r;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        r = connect(fd, (const struct sockaddr *) un, len);
        safe_close(fd);
        if (r == 0 || errno == EAGAIN)
                return -EADDRINUSE;
        if (errno != ECONNREFUSED)
                return -EADDRINUSE;
        return unlink(path) < 0 ? -errno : 0;
}

static int listen_unix(const Address *a, int *ret_fd, char **ret_unlink_path, char **ret_error) {
        struct sockaddr_un un;
        socklen_t len;
        _cleanup_close_ int fd = -EBADF;
        int r;

        r = sockaddr_un_fill(a->path, &un, &len);
        if (r < 0)
                return error_set(ret_error, r, _("--listen %s: socket path too long"), a->spec);
        r = unix_remove_stale(a->path, &un, len);
        if (r < 0)
                return error_set(ret_error, r, _("--listen %s: %s exists: %s"), a->spec, a->path,
                            r == -EADDRINUSE ? _("another process is listening on it")
                            : r == -EEXIST   ? _("not a socket, refusing to replace it")
                                             : strerror(-r));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return error_set(ret_error, -errno, _("--listen %s: socket: %m"), a->spec);
        if (bind(fd, (struct sockaddr *) &un, len) < 0)
                return error_set(ret_error, -errno, _("--listen %s: bind: %m"), a->spec);
        if (listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                (void) unlink(a->path);
                return error_set(ret_error, r, _("--listen %s: listen: %s"), a->spec, strerror(-r));
        }
        *ret_unlink_path = strdup(a->path);
        if (!*ret_unlink_path) {
                (void) unlink(a->path);
                return -ENOMEM;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int listen_tcp(const Address *a, int *ret_fd, char **ret_error) {
        struct addrinfo hints = {
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_ADDRCONFIG,
        }, *res = NULL, *ai;
        _cleanup_close_ int fd = -EBADF;
        const int one = 1, zero = 0;
        int r;

        bool any = a->host[0] == '\0';
        if (any)
                hints.ai_family = AF_INET6; /* dual-stack [::], as Go does for ":PORT" */
        r = getaddrinfo(any ? NULL : a->host, a->port, &hints, &res);
        if (r != 0 && any) {
                hints.ai_family = AF_INET;
                r = getaddrinfo(NULL, a->port, &hints, &res);
        }
        if (r != 0)
                return error_set(ret_error, -EADDRNOTAVAIL, _("--listen %s: cannot resolve: %s"), a->spec,
                            gai_strerror(r));
        /* Like Go's net.Listen: for a name, the first IPv4 address wins. */
        ai = res;
        for (struct addrinfo *i = res; i; i = i->ai_next)
                if (i->ai_family == AF_INET) {
                        ai = any ? res : i;
                        break;
                }

        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                freeaddrinfo(res);
                return error_set(ret_error, r, _("--listen %s: socket: %s"), a->spec, strerror(-r));
        }
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (ai->ai_family == AF_INET6 && any)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                r = -errno;
                freeaddrinfo(res);
                return error_set(ret_error, r, _("--listen %s: bind: %s"), a->spec, strerror(-r));
        }
        freeaddrinfo(res);
        if (listen(fd, SOMAXCONN) < 0)
                return error_set(ret_error, -errno, _("--listen %s: listen: %m"), a->spec);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int listen_systemd(const Address *a, int *ret_fd, char **ret_error) {
        _cleanup_strv_free_ char **names = NULL;
        int n, found = -1, matches = 0, r;

        n = sd_listen_fds_with_names(false, &names); /* kept for --status systemd:NAME */
        if (n < 0)
                return error_set(ret_error, n, _("--listen %s: cannot read inherited sockets: %s"),
                            a->spec, strerror(-n));
        if (n == 0)
                return error_set(ret_error, -ENOENT,
                            _("--listen %s: no sockets were passed by systemd (LISTEN_FDS unset); "
                              "is the service started through its .socket unit?"),
                            a->spec);
        for (int i = 0; i < n; i++)
                if (names && names[i] && streq(names[i], a->path)) {
                        found = SD_LISTEN_FDS_START + i;
                        matches++;
                }
        if (matches != 1) {
                char list[512] = "";
                for (int i = 0; i < n && names; i++) {
                        if (i > 0)
                                strncat(list, ", ", sizeof list - strlen(list) - 1);
                        strncat(list, names[i] ? names[i] : "?", sizeof list - strlen(list) - 1);
                }
                return error_set(ret_error, matches == 0 ? -ENOENT : -ENOTUNIQ,
                            matches == 0 ? _("--listen %s: no inherited socket is named \"%s\" "
                                             "(FileDescriptorName=); passed: %s")
                                         : _("--listen %s: more than one inherited socket is "
                                             "named \"%s\"; passed: %s"),
                            a->spec, a->path, list);
        }
        r = sd_is_socket(found, AF_UNSPEC, SOCK_STREAM, 1);
        if (r <= 0)
                return error_set(ret_error, r < 0 ? r : -ENOTSOCK,
                            _("--listen %s: the inherited socket is not a listening stream socket"),
                            a->spec);
        r = fd_nonblock_cloexec(found);
        if (r < 0)
                return error_set(ret_error, r, _("--listen %s: %s"), a->spec, strerror(-r));
        *ret_fd = found;
        return 0;
}

int listener_open(const Address *a, int *ret_fd, char **ret_unlink_path, char **ret_error) {
        *ret_unlink_path = NULL;
        switch (a->kind) {
        case ADDRESS_UNIX:
                return listen_unix(a, ret_fd, ret_unlink_path, ret_error);
        case ADDRESS_SYSTEMD:
                return listen_systemd(a, ret_fd, ret_error);
        default:
                return listen_tcp(a, ret_fd, ret_error);
        }
}

int address_resolve(const Address *a, const char *flag, struct sockaddr_storage *ret,
                    socklen_t *ret_len, char **ret_error) {
        struct addrinfo hints = {
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_NUMERICSERV,
        }, *res = NULL;
        int r;

        if (a->kind == ADDRESS_UNIX) {
                struct sockaddr_un un;
                socklen_t len;
                if (sockaddr_un_fill(a->path, &un, &len) < 0)
                        return error_set(ret_error, -ENAMETOOLONG, _("%s %s: socket path too long"),
                                    flag, a->spec);
                memset(ret, 0, sizeof *ret);
                memcpy(ret, &un, len);
                *ret_len = len;
                return 0;
        }
        /* Resolved once at start-up: a blocking lookup in the loop would
         * stall every connection. */
        r = getaddrinfo(a->host, a->port, &hints, &res);
        if (r != 0)
                return error_set(ret_error, -EADDRNOTAVAIL, _("%s %s: cannot resolve: %s"), flag,
                            a->spec, gai_strerror(r));
        /* "localhost" maps to both ::1 and 127.0.0.1; backends most often
         * listen on the IPv4 one, so an IPv4 address wins as in the listener. */
        struct addrinfo *ai = res;
        for (struct addrinfo *i = res; i; i = i->ai_next)
                if (i->ai_family == AF_INET) {
                        ai = i;
                        break;
                }
        memcpy(ret, ai->ai_addr, ai->ai_addrlen);
        *ret_len = ai->ai_addrlen;
        freeaddrinfo(res);
        return 0;
}

int target_resolve(const Address *a, struct sockaddr_storage *ret, socklen_t *ret_len,
                   char **ret_error) {
        return address_resolve(a, "--target", ret, ret_len, ret_error);
}
