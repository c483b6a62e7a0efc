/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "backend-check.h"
#include "http.h"
#include "log.h"
#include "util.h"

struct BackendCheck {
        sd_event *event;
        struct sockaddr_storage target;
        socklen_t target_len;
        char *target_spec, *url;
        char *url_shown;                /* url without its password: for /_status and the log */
        usec_t timeout;
        backend_check_callback_t cb;
        void *userdata;

        HttpClient *http;               /* url only */
        bool running;
        int fd;
        sd_event_source *io, *timer;
        HttpRequestHandle *request;
};

static void check_reset(BackendCheck *k) {
        if (k->request)
                http_request_cancel(k->request);
        k->request = NULL;
        k->io = sd_event_source_disable_unref(k->io);
        k->timer = sd_event_source_disable_unref(k->timer);
        k->fd = safe_close(k->fd);
        k->running = false;
}

static void check_finish(BackendCheck *k, bool ok, const char *error) {
        check_reset(k);
        if (!ok)
                log_debug("backend check failed: %s", error);
        k->cb(ok, error, k->userdata);
}

/* The system's errors in backend_error are spelled as Go spells them,
 * whatever the locale: /_status is read by programs. */
static void check_fail_errno(BackendCheck *k, int error) {
        char msg[512], e[ERRNO_GO_MAX];

        snprintf(msg, sizeof msg, "connect to %s: %s", k->target_spec,
                 errno_go(error, e, sizeof e));
        check_finish(k, false, msg);
}

static int on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        BackendCheck *k = userdata;
        int error = 0;
        socklen_t len = sizeof error;

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                error = errno;
        if (error != 0)
                check_fail_errno(k, error);
        else
                check_finish(k, true, NULL);
        return 0;
}

static int on_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        BackendCheck *k = userdata;
        char msg[1024];

        snprintf(msg, sizeof msg, "%s %s: timed out after --connect-timeout",
                 k->url ? "GET" : "connect to", k->url ? k->url_shown : k->target_spec);
        check_finish(k, false, msg);
        return 0;
}

static void on_http(const HttpResponse *resp, void *userdata) {
        BackendCheck *k = userdata;
        char msg[1024], e[ERRNO_GO_MAX];

        k->request = NULL; /* gone once the callback runs */
        if (resp->error < 0)
                snprintf(msg, sizeof msg, "GET %s: %s", k->url_shown,
                         resp->error_message ?: errno_go(resp->error, e, sizeof e));
        else if (resp->status >= 200 && resp->status < 300)
                return check_finish(k, true, NULL);
        else
                snprintf(msg, sizeof msg, "GET %s: target returned status %ld", k->url_shown,
                         resp->status);
        check_finish(k, false, msg);
}

void backend_check_start(BackendCheck *k) {
        int r;

        if (k->running)
                return;
        k->running = true;
        r = sd_event_add_time_relative(k->event, &k->timer, CLOCK_MONOTONIC, k->timeout, 0,
                                       on_timeout, k);
        if (r < 0)
                return check_fail_errno(k, -r);
        (void) sd_event_source_set_description(k->timer, "backend-check-timeout");

        if (k->url) {
                HttpRequest req = {
                        .method = HTTP_GET,
                        .url = k->url,
                        .timeout = k->timeout + USEC_PER_SEC, /* ours ends it first */
                };
                char msg[1024], e[ERRNO_GO_MAX];

                r = http_request(k->http, &req, on_http, k, &k->request);
                if (r < 0) {
                        snprintf(msg, sizeof msg, "GET %s: %s", k->url_shown,
                                 errno_go(r, e, sizeof e));
                        check_finish(k, false, msg);
                }
                return;
        }

        k->fd = socket(k->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (k->fd < 0)
                return check_fail_errno(k, errno);
        if (connect(k->fd, (const struct sockaddr *) &k->target, k->target_len) >= 0)
                return check_finish(k, true, NULL);
        /* A unix socket with a full backlog says EAGAIN, as in conn.c. */
        if (errno != EINPROGRESS && errno != EAGAIN)
                return check_fail_errno(k, errno);
        r = sd_event_add_io(k->event, &k->io, k->fd, EPOLLOUT, on_io, k);
        if (r < 0)
                return check_fail_errno(k, -r);
        (void) sd_event_source_set_description(k->io, "backend-check-connect");
}

bool backend_check_running(const BackendCheck *k) {
        return k->running;
}

int backend_check_new(sd_event *e, const BackendCheckParams *p, backend_check_callback_t cb,
                      void *userdata, BackendCheck **ret) {
        _cleanup_(backend_check_freep) BackendCheck *k = NULL;
        int r;

        if (p->target_len > sizeof k->target)
                return -EINVAL;
        k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        k->event = e;
        k->fd = -EBADF;
        memcpy(&k->target, p->target, p->target_len);
        k->target_len = p->target_len;
        k->timeout = p->timeout;
        k->cb = cb;
        k->userdata = userdata;
        k->target_spec = strdup(p->target_spec);
        if (!k->target_spec)
                return -ENOMEM;
        if (p->url) {
                k->url = strdup(p->url);
                if (!k->url)
                        return -ENOMEM;
                /* backend_error is served to whoever reaches the status port. */
                r = url_for_log(p->url, &k->url_shown);
                if (r < 0)
                        return r;
                r = http_client_new(e, &k->http);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(k);
        return 0;
}

BackendCheck *backend_check_free(BackendCheck *k) {
        if (!k)
                return NULL;
        check_reset(k);
        http_client_free(k->http);
        free(k->target_spec);
        free(k->url);
        free(k->url_shown);
        free(k);
        return NULL;
}
