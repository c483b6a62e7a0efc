/* SPDX-License-Identifier: MIT */
/* --metrics-url and --metrics-graphite: see metrics-push.h. */

#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "duration.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "metrics-push.h"
#include "util.h"

/* However long the interval, a push gets at most this long. */
#define PUSH_TIMEOUT_MAX (30 * USEC_PER_SEC)
/* The receiver's answer to a POST is not used: it need not be large. */
#define PUSH_RESPONSE_MAX (64U * 1024U)

/* One destination's health, for logging state changes only. */
typedef struct PushSink {
        char *what;                     /* "metrics post to URL", for messages */
        bool failing;
} PushSink;

struct MetricsPusher {
        sd_event *event;
        sd_event_source *timer;
        usec_t interval, timeout, next; /* next: CLOCK_MONOTONIC */
        char *prefix;
        metrics_collect_t collect;
        void *userdata;

        /* --metrics-url */
        char *url;
        HttpClient *http;
        HttpRequestHandle *post;        /* in flight */
        PushSink url_sink;

        /* --metrics-graphite: one connection per push. */
        struct sockaddr_storage graphite;
        socklen_t graphite_len;
        bool graphite_set;
        int graphite_fd;
        bool graphite_connected;
        sd_event_source *graphite_io, *graphite_deadline;
        char *graphite_buf;             /* the lines of this push */
        size_t graphite_size, graphite_sent;
        MetricsRates rates;
        PushSink graphite_sink;
};

/* "what failed: detail: error", either part optional. */
static void sink_failed(PushSink *s, int error, const char *detail) {
        /* Once per change from working to failing; the rest for debugging. */
        int level = s->failing ? LOG_DEBUG : LOG_WARNING;

        if (detail && error != 0)
                log_full_errno(level, error, "%s failed: %s: %m", s->what, detail);
        else if (detail)
                log_full_errno(level, 0, "%s failed: %s", s->what, detail);
        else
                log_full_errno(level, error, "%s failed: %m", s->what);
        s->failing = true;
}

static void sink_worked(PushSink *s) {
        if (s->failing)
                log_info("%s works again", s->what);
        else
                log_debug("%s done", s->what);
        s->failing = false;
}

static void sink_timed_out(MetricsPusher *p, PushSink *s) {
        char buf[DURATION_MAX], detail[64];

        snprintf(detail, sizeof detail, "timed out after %s",
                 format_duration(buf, sizeof buf, p->timeout));
        sink_failed(s, 0, detail);
}

/* --- --metrics-url ------------------------------------------------------------ */

static void on_posted(const HttpResponse *resp, void *userdata) {
        MetricsPusher *p = userdata;
        char detail[64];

        p->post = NULL;
        /* curl's text says what went wrong in TLS; for the rest the errno
         * adds the reason curl leaves out ("Couldn't connect to server"). */
        if (resp->error == -EPERM || resp->error == -EPROTO)
                return sink_failed(&p->url_sink, 0, resp->error_message);
        if (resp->error < 0)
                return sink_failed(&p->url_sink, resp->error, resp->error_message);
        if (resp->status < 200 || resp->status > 299) {
                snprintf(detail, sizeof detail, "HTTP status %ld", resp->status);
                return sink_failed(&p->url_sink, 0, detail);
        }
        sink_worked(&p->url_sink);
}

static void push_url(MetricsPusher *p, const Metrics *sum, const MetricsExtra *x) {
        _cleanup_free_ char *body = NULL;
        char hostname[256] = "unknown";
        HttpRequest req = {
                .method = HTTP_POST,
                .url = p->url,
                .content_type = "application/json",
                .max_response_size = PUSH_RESPONSE_MAX,
                .timeout = p->timeout,
        };
        int r;

        if (p->post) {
                /* Its time is up (the HTTP timeout and this tick raced). */
                http_request_cancel(p->post);
                p->post = NULL;
                sink_timed_out(p, &p->url_sink);
        }
        if (gethostname(hostname, sizeof hostname) < 0)
                snprintf(hostname, sizeof hostname, "unknown");
        hostname[sizeof hostname - 1] = '\0';
        r = metrics_render_json(sum, x, p->prefix, hostname, (int64_t) time(NULL), &body);
        if (r >= 0) {
                req.body = body;
                req.body_size = strlen(body);
                /* The client copies the body. */
                r = http_request(p->http, &req, on_posted, p, &p->post);
        }
        if (r < 0)
                sink_failed(&p->url_sink, r, "request");
}

/* --- --metrics-graphite -------------------------------------------------------- */

static void graphite_close(MetricsPusher *p) {
        p->graphite_io = sd_event_source_disable_unref(p->graphite_io);
        if (p->graphite_deadline)
                (void) sd_event_source_set_enabled(p->graphite_deadline, SD_EVENT_OFF);
        p->graphite_fd = safe_close(p->graphite_fd);
        p->graphite_connected = false;
        p->graphite_buf = (free(p->graphite_buf), NULL);
        p->graphite_size = p->graphite_sent = 0;
}

static void graphite_fail(MetricsPusher *p, int error, const char *step) {
        graphite_close(p);
        sink_failed(&p->graphite_sink, error, step);
}

/* Connected (or failed to): write what is left, then close. */
static int on_graphite_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        MetricsPusher *p = userdata;
        int error = 0;
        socklen_t len = sizeof error;

        if (!p->graphite_connected) {
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        error = errno;
                if (error != 0) {
                        graphite_fail(p, error, "connect");
                        return 0;
                }
                p->graphite_connected = true;
        }
        while (p->graphite_sent < p->graphite_size) {
                ssize_t n = send(fd, p->graphite_buf + p->graphite_sent,
                                 p->graphite_size - p->graphite_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0; /* EPOLLOUT again */
                if (n < 0) {
                        graphite_fail(p, errno, "send");
                        return 0;
                }
                p->graphite_sent += (size_t) n;
        }
        /* All of it is with the kernel: the receiver sees an orderly end. */
        graphite_close(p);
        sink_worked(&p->graphite_sink);
        return 0;
}

static int on_graphite_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        MetricsPusher *p = userdata;

        graphite_close(p);
        sink_timed_out(p, &p->graphite_sink);
        return 0;
}

static void push_graphite(MetricsPusher *p, const Metrics *sum, const MetricsExtra *x,
                          usec_t now) {
        const struct sockaddr *sa = (const struct sockaddr *) &p->graphite;
        int r;

        if (p->graphite_fd >= 0) {
                graphite_close(p);
                sink_timed_out(p, &p->graphite_sink);
        }
        metrics_rates_update(&p->rates, sum, now);
        r = metrics_render_graphite(sum, x, &p->rates, p->prefix, p->interval,
                                    (int64_t) time(NULL), &p->graphite_buf);
        if (r < 0)
                return sink_failed(&p->graphite_sink, r, "rendering");
        p->graphite_size = strlen(p->graphite_buf);

        p->graphite_fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (p->graphite_fd < 0)
                return graphite_fail(p, errno, "socket");
        if (connect(p->graphite_fd, sa, p->graphite_len) < 0 && errno != EINPROGRESS)
                return graphite_fail(p, errno, "connect");
        /* Writable once connected (or failed: then SO_ERROR says why). */
        r = sd_event_add_io(p->event, &p->graphite_io, p->graphite_fd, EPOLLOUT, on_graphite_io,
                            p);
        if (r >= 0)
                (void) sd_event_source_set_description(p->graphite_io, "metrics-graphite");
        if (r >= 0)
                r = sd_event_source_set_time_relative(p->graphite_deadline, p->timeout);
        if (r >= 0)
                r = sd_event_source_set_enabled(p->graphite_deadline, SD_EVENT_ONESHOT);
        if (r < 0)
                return graphite_fail(p, r, "watching the socket");
        (void) sd_event_source_set_description(p->graphite_io, "metrics-graphite");
}

/* --- the schedule ---------------------------------------------------------------- */

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        MetricsPusher *p = userdata;
        MetricsExtra x = {};
        Metrics sum;
        usec_t now;

        if (sd_event_now(p->event, CLOCK_MONOTONIC, &now) < 0)
                now = usec;
        /* A steady rhythm; when the loop was held up past a tick, that
         * tick is skipped, as Go's time.Ticker drops them. */
        p->next += p->interval;
        if (p->next <= now)
                p->next = now + p->interval;
        (void) sd_event_source_set_time(s, p->next);

        metrics_init(&sum);
        p->collect(&sum, &x, p->userdata);
        if (p->url)
                push_url(p, &sum, &x);
        if (p->graphite_set)
                push_graphite(p, &sum, &x, now);
        metrics_done(&sum);
        return 0;
}

static int sink_init(PushSink *s, const char *fmt, ...) _printf_(2, 3);
static int sink_init(PushSink *s, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s->what, fmt, ap);
        va_end(ap);
        if (r < 0) {
                s->what = NULL;
                return -ENOMEM;
        }
        return 0;
}

int metrics_pusher_new(sd_event *e, const Config *c, metrics_collect_t collect, void *userdata,
                       MetricsPusher **ret, char **ret_error) {
        _cleanup_(metrics_pusher_freep) MetricsPusher *p = NULL;
        _cleanup_free_ char *url_shown = NULL;
        char d[DURATION_MAX];
        usec_t now;
        int r;

        if (!c->metrics_url && !c->metrics_graphite_set) {
                *ret = NULL;
                return 0;
        }
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->graphite_fd = -EBADF;
        p->event = sd_event_ref(e);
        p->collect = collect;
        p->userdata = userdata;
        p->interval = c->metrics_interval;
        p->timeout = MIN(p->interval, PUSH_TIMEOUT_MAX);
        p->prefix = strdup(c->metrics_prefix);
        if (!p->prefix)
                return -ENOMEM;

        if (c->metrics_graphite_set) {
                r = address_resolve(&c->metrics_graphite, "--metrics-graphite", &p->graphite,
                                    &p->graphite_len, ret_error);
                if (r < 0)
                        return r;
                p->graphite_set = true;
                r = sink_init(&p->graphite_sink, "metrics push to Graphite at %s",
                              c->metrics_graphite.spec);
                if (r < 0)
                        return r;
                r = sd_event_add_time_relative(e, &p->graphite_deadline, CLOCK_MONOTONIC,
                                               p->timeout, 0, on_graphite_deadline, p);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(p->graphite_deadline,
                                                       "metrics-graphite-deadline");
                (void) sd_event_source_set_enabled(p->graphite_deadline, SD_EVENT_OFF);
        }
        if (c->metrics_url) {
                p->url = strdup(c->metrics_url);
                if (!p->url)
                        return -ENOMEM;
                r = url_for_log(p->url, &url_shown);
                if (r < 0)
                        return r;
                r = sink_init(&p->url_sink, "metrics post to %s", url_shown);
                if (r < 0)
                        return r;
                r = http_client_new(e, &p->http);
                if (r < 0)
                        return r;
                /* As Ghostunnel: an https receiver is verified against
                 * --cacert when given, else the system store (SSL_CERT_FILE). */
                if (c->cacert) {
                        r = http_client_set_ca_file(p->http, c->cacert);
                        if (r < 0)
                                return r;
                }
        }

        r = sd_event_now(e, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        metrics_rates_init(&p->rates, now);
        /* The first push one interval after the start, as Ghostunnel's ticker. */
        p->next = now + p->interval;
        r = sd_event_add_time(e, &p->timer, CLOCK_MONOTONIC, p->next,
                              MIN(p->interval / 10, USEC_PER_SEC), on_tick, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(p->timer, "metrics-push");
        r = sd_event_source_set_enabled(p->timer, SD_EVENT_ON);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(p->timer, "metrics-push");

        format_duration(d, sizeof d, p->interval);
        if (p->url)
                log_info("posting metrics to %s every %s", url_shown, d);
        if (p->graphite_set)
                log_info("sending metrics to Graphite at %s every %s", c->metrics_graphite.spec, d);
        *ret = TAKE_PTR(p);
        return 0;
}

MetricsPusher *metrics_pusher_free(MetricsPusher *p) {
        if (!p)
                return NULL;
        sd_event_source_disable_unref(p->timer);
        /* Cancels a POST in flight without calling back. */
        http_client_free(p->http);
        graphite_close(p);
        sd_event_source_disable_unref(p->graphite_deadline);
        free(p->url);
        free(p->url_sink.what);
        free(p->graphite_sink.what);
        free(p->prefix);
        sd_event_unref(p->event);
        free(p);
        return NULL;
}
