/* SPDX-License-Identifier: MIT */
#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <strings.h>
#include <sys/epoll.h>

#include "build-config.h"
#include "http.h"
#include "log.h"
#include "util.h"

/* Response headers are as much the peer's to choose as the body: bound them
 * (lines and bytes of one response). */
#define HTTP_HEADERS_MAX 128U
#define HTTP_HEADERS_SIZE_MAX (64U * 1024U)
#define HTTP_REDIRECTS_MAX 5L
#define HTTP_USER_AGENT PACKAGE_NAME "/" PACKAGE_VERSION

#define LIST_PREPEND(head, item)                                \
        do {                                                    \
                (item)->prev = NULL;                            \
                (item)->next = (head);                          \
                if (head)                                       \
                        (head)->prev = (item);                  \
                (head) = (item);                                \
        } while (0)

#define LIST_REMOVE(head, item)                                 \
        do {                                                    \
                if ((item)->prev)                               \
                        (item)->prev->next = (item)->next;      \
                else                                            \
                        (head) = (item)->next;                  \
                if ((item)->next)                               \
                        (item)->next->prev = (item)->prev;      \
                (item)->prev = (item)->next = NULL;             \
        } while (0)

/* One socket curl asked us to watch; curl keeps the pointer (curl_multi_assign). */
typedef struct HttpSocket HttpSocket;
struct HttpSocket {
        HttpClient *client;
        HttpSocket *prev, *next;
        sd_event_source *io;
};

struct HttpClient {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;         /* curl's one timeout, re-armed as curl asks */
        char *ca_file;                  /* from SSL_CERT_FILE */
        HttpRequestHandle *requests;
        HttpSocket *sockets;
        uint64_t next_serial;
        unsigned dispatching;           /* inside client_socket_action(): callbacks may run */
        bool free_pending;              /* http_client_free() was called by a callback */
};

struct HttpRequestHandle {
        HttpClient *client;
        HttpRequestHandle *prev, *next;
        CURL *easy;
        uint64_t serial;                /* order of creation */
        struct curl_slist *request_headers;
        HttpMethod method;
        http_callback_t callback;
        void *userdata;
        bool attached;                  /* added to the multi handle and linked */
        bool completing;                /* the callback is running */

        char *body;
        size_t body_size, body_allocated, body_max;

        /* curl keeps the headers (curl_easy_header()); this only counts them. */
        size_t n_header_lines, headers_size;

        int abort_error;                /* why our curl callback stopped the transfer */
        char abort_message[96];
        char error_buffer[CURL_ERROR_SIZE];
};

static const char *const http_method_table[_HTTP_METHOD_MAX] = {
        [HTTP_GET] = "GET",
        [HTTP_HEAD] = "HEAD",
        [HTTP_POST] = "POST",
};

const char *http_method_to_string(HttpMethod m) {
        return m >= 0 && m < _HTTP_METHOD_MAX ? http_method_table[m] : NULL;
}

/* ---- response assembly (curl's write and header callbacks) ---- */

static size_t request_abort(HttpRequestHandle *h, int error, const char *message) {
        h->abort_error = error;
        snprintf(h->abort_message, sizeof h->abort_message, "%s", message);
        return 0; /* a short count makes curl stop with CURLE_WRITE_ERROR */
}

static size_t on_curl_write(char *data, size_t size, size_t nmemb, void *userdata) {
        HttpRequestHandle *h = userdata;
        size_t n = size * nmemb;

        if (n > h->body_max - h->body_size)
                return request_abort(h, -EFBIG, "response body exceeds the size limit");
        if (h->body_size + n + 1 > h->body_allocated) {
                size_t a = MIN(MAX(h->body_allocated * 2, h->body_size + n + 1), h->body_max + 1);
                char *p = realloc(h->body, a);

                if (!p)
                        return request_abort(h, -ENOMEM, "out of memory");
                h->body = p;
                h->body_allocated = a;
        }
        memcpy(h->body + h->body_size, data, n);
        h->body_size += n;
        h->body[h->body_size] = 0;
        return n;
}

/* CURLOPT_HEADERFUNCTION: curl stores and parses the headers itself; this
 * only bounds them. curl hands over one line per call; a status line starts
 * a new response (a 1xx, a redirect, a proxy's CONNECT answer) and a new
 * count, the way only the last response's headers are looked up; trailers
 * count with the response they end. */
static size_t on_curl_header(char *data, size_t size, size_t nitems, void *userdata) {
        HttpRequestHandle *h = userdata;
        size_t n = size * nitems;

        if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
                h->n_header_lines = 0;
                h->headers_size = 0;
                return n;
        }
        if (n > 0 && data[0] != '\r' && data[0] != '\n')
                h->n_header_lines++;
        h->headers_size += n;
        if (h->n_header_lines > HTTP_HEADERS_MAX || h->headers_size > HTTP_HEADERS_SIZE_MAX)
                return request_abort(h, -EFBIG, "response headers exceed the size limit");
        return n;
}

/* ---- requests ---- */

static void request_detach(HttpRequestHandle *h) {
        if (!h->attached)
                return;
        /* May call our socket and timer functions; never from inside curl. */
        (void) curl_multi_remove_handle(h->client->multi, h->easy);
        LIST_REMOVE(h->client->requests, h);
        h->attached = false;
}

static HttpRequestHandle *request_free(HttpRequestHandle *h) {
        if (!h)
                return NULL;
        request_detach(h);
        if (h->easy)
                curl_easy_cleanup(h->easy);
        curl_slist_free_all(h->request_headers);
        free(h->body);
        free(h);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpRequestHandle *, request_free);

static int errno_or(long os_errno, int fallback, const int *accepted, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (os_errno == accepted[i])
                        return -accepted[i];
        return fallback;
}

static int curl_code_to_errno(CURL *easy, CURLcode code) {
        static const int connect_errors[] = {
                ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ENETDOWN, EADDRNOTAVAIL, ETIMEDOUT,
        };
        static const int io_errors[] = { ECONNRESET, EPIPE, ETIMEDOUT };
        long os_errno = 0;

        switch (code) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_COULDNT_CONNECT:
                (void) curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
                return errno_or(os_errno, -ECONNREFUSED, connect_errors,
                                ELEMENTSOF(connect_errors));
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
                (void) curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
                return errno_or(os_errno, -ECONNRESET, io_errors, ELEMENTSOF(io_errors));
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
                return -EPERM;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_USE_SSL_FAILED:
                return -EPROTO;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_BAD_CONTENT_ENCODING:
                return -EBADMSG;
        case CURLE_TOO_MANY_REDIRECTS:
                return -ELOOP;
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EPROTONOSUPPORT;
        case CURLE_URL_MALFORMAT:
        case CURLE_BAD_FUNCTION_ARGUMENT:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CRL_BADFILE:
                return -EINVAL;
        case CURLE_ABORTED_BY_CALLBACK:
                return -ECANCELED;
        default:
                return -EIO;
        }
}

/* Hands the response to the callback and frees the request. */
static void request_finish(HttpRequestHandle *h, int error, const char *message) {
        HttpResponse response = {
                .error = error,
                .error_message = error < 0 ? message : NULL,
                .body = h->body ?: "",
                .body_size = h->body_size,
                .transfer = h->easy,
        };
        _cleanup_free_ char *shown = NULL;
        const char *url = NULL;

        (void) curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &response.status);
        (void) curl_easy_getinfo(h->easy, CURLINFO_EFFECTIVE_URL, &url);
        /* A password in the URL (--metrics-url) stays out of the log. */
        if (url)
                (void) url_for_log(url, &shown);
        if (error < 0)
                log_debug_errno(error, "HTTP %s %s failed: %s", http_method_to_string(h->method),
                                strempty(shown), strempty(message));
        else
                log_debug("HTTP %s %s: %ld, %zu bytes", http_method_to_string(h->method),
                          strempty(shown), response.status, response.body_size);

        /* Out of the multi handle first, so that the callback may do anything. */
        request_detach(h);
        h->completing = true;
        h->callback(&response, h->userdata);
        request_free(h);
}

static void request_finish_curl(HttpRequestHandle *h, CURLcode code) {
        int error;

        if (code == CURLE_WRITE_ERROR && h->abort_error < 0)
                return request_finish(h, h->abort_error, h->abort_message);
        error = curl_code_to_errno(h->easy, code);
        request_finish(h, error, h->error_buffer[0] ? h->error_buffer : curl_easy_strerror(code));
}

/* Completes what curl finished; callbacks run here and only here (and in
 * client_fail_all()), never inside a curl callback. */
static void client_process_done(HttpClient *c) {
        CURLMsg *msg;
        int left;

        while (!c->free_pending && (msg = curl_multi_info_read(c->multi, &left))) {
                CURLcode code = msg->data.result;
                char *p = NULL;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                (void) curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
                /* msg is invalid from here on (the handle leaves the multi). */
                request_finish_curl((HttpRequestHandle *) p, code);
        }
}

/* The multi handle failed as a whole: no request can complete normally.
 * Requests the callbacks start meanwhile are left alone (no retry loop). */
static void client_fail_all(HttpClient *c, int error, const char *message) {
        uint64_t limit = c->next_serial;

        while (!c->free_pending) {
                HttpRequestHandle *h = c->requests;

                while (h && h->serial >= limit)
                        h = h->next;
                if (!h)
                        break;
                request_finish(h, error, message);
        }
}

static void client_destroy(HttpClient *c);

static void client_socket_action(HttpClient *c, curl_socket_t fd, int flags) {
        CURLMcode mc;
        int running;

        c->dispatching++;
        mc = curl_multi_socket_action(c->multi, fd, flags, &running);
        if (mc != CURLM_OK) {
                log_error("HTTP client failed: %s, failing all pending requests",
                          curl_multi_strerror(mc));
                client_fail_all(c, mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO,
                                curl_multi_strerror(mc));
        } else
                client_process_done(c);
        c->dispatching--;

        if (c->free_pending && c->dispatching == 0)
                client_destroy(c);
}

/* ---- curl's sockets and timer on sd_event ---- */

static HttpSocket *http_socket_free(HttpSocket *s) {
        if (!s)
                return NULL;
        sd_event_source_disable_unref(s->io);
        LIST_REMOVE(s->client->sockets, s);
        free(s);
        return NULL;
}

static int on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        int flags = 0;

        if (revents & (EPOLLIN | EPOLLHUP))
                flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                flags |= CURL_CSELECT_ERR;
        client_socket_action(userdata, fd, flags);
        return 0;
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        client_socket_action(userdata, CURL_SOCKET_TIMEOUT, 0);
        return 0;
}

/* CURLMOPT_SOCKETFUNCTION: watch, re-watch or forget one of curl's sockets. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userdata, void *socketp) {
        HttpClient *c = userdata;
        HttpSocket *s = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                http_socket_free(s);
                return 0;
        }
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                events |= EPOLLIN;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                events |= EPOLLOUT;

        if (s) {
                r = sd_event_source_set_io_events(s->io, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(s->io, SD_EVENT_ON);
        } else {
                s = calloc(1, sizeof *s);
                if (!s) {
                        log_oom();
                        return -1;
                }
                r = sd_event_add_io(c->event, &s->io, fd, events, on_io, c);
                if (r < 0) {
                        free(s);
                        s = NULL;
                } else {
                        s->client = c;
                        LIST_PREPEND(c->sockets, s);
                        (void) sd_event_source_set_description(s->io, "http-socket");
                        if (curl_multi_assign(c->multi, fd, s) != CURLM_OK) {
                                http_socket_free(s);
                                r = -ENOMEM;
                        }
                }
        }
        if (r < 0) {
                log_error_errno(r, "cannot watch HTTP socket %d: %m", fd);
                return -1; /* curl then fails the transfers using it */
        }
        return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 disarms, anything else (0 too) arms the timer;
 * the loop calls back into curl, never this function. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userdata) {
        HttpClient *c = userdata;
        usec_t usec;
        int r;

        if (timeout_ms < 0) {
                if (c->timer)
                        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                return 0;
        }
        usec = (usec_t) timeout_ms * USEC_PER_MSEC;
        if (!c->timer) {
                r = sd_event_add_time_relative(c->event, &c->timer, CLOCK_MONOTONIC, usec,
                                               USEC_PER_MSEC, on_timer, c);
                if (r >= 0)
                        (void) sd_event_source_set_description(c->timer, "http-timer");
        } else {
                r = sd_event_source_set_time_relative(c->timer, usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        }
        if (r < 0) {
                log_error_errno(r, "cannot arm the HTTP timer: %m");
                return -1;
        }
        return 0;
}

/* ---- the client ---- */

int http_client_new(sd_event *e, HttpClient **ret) {
        _cleanup_(http_client_freep) HttpClient *c = NULL;
        const char *ca;

        if (!e || !ret)
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->multi = curl_multi_init();
        if (!c->multi)
                return -ENOMEM;
        if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK)
                return -EIO;

        /* The way to trust a private CA (tests, Pebble): see http.h. */
        ca = secure_getenv("SSL_CERT_FILE");
        if (ca && *ca) {
                c->ca_file = strdup(ca);
                if (!c->ca_file)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int http_client_set_ca_file(HttpClient *c, const char *path) {
        char *copy = strdup(path);

        if (!copy)
                return -ENOMEM;
        free(c->ca_file);
        c->ca_file = copy;
        return 0;
}

static void client_destroy(HttpClient *c) {
        while (c->requests)
                request_free(c->requests);
        /* May still call on_curl_socket() and on_curl_timer(): c stays whole. */
        if (c->multi)
                curl_multi_cleanup(c->multi);
        while (c->sockets)
                http_socket_free(c->sockets);
        sd_event_source_disable_unref(c->timer);
        sd_event_unref(c->event);
        free(c->ca_file);
        free(c);
}

HttpClient *http_client_free(HttpClient *c) {
        if (!c)
                return NULL;
        if (c->dispatching > 0) {
                /* Called from a request callback: cancel the rest now, free
                 * when client_socket_action() unwinds. */
                while (c->requests)
                        request_free(c->requests);
                c->free_pending = true;
                return NULL;
        }
        client_destroy(c);
        return NULL;
}

static int check_url(const char *url) {
        CURLU *u;
        CURLUcode uc;
        char *scheme = NULL;
        int r;

        u = curl_url();
        if (!u)
                return -ENOMEM;
        uc = curl_url_set(u, CURLUPART_URL, url, 0);
        if (uc == CURLUE_OK)
                uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
        if (uc == CURLUE_OUT_OF_MEMORY)
                r = -ENOMEM;
        else if (uc != CURLUE_OK)
                r = -EINVAL;
        else if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
                r = -EPROTONOSUPPORT;
        else
                r = 0;
        curl_free(scheme);
        curl_url_cleanup(u);
        return r;
}

static int add_request_header(struct curl_slist **l, const char *line) {
        struct curl_slist *n;

        /* No header injection: one line, and it must be a header. */
        if (strpbrk(line, "\r\n") || !strchr(line, ':'))
                return -EINVAL;
        n = curl_slist_append(*l, line);
        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

static int request_set_headers(HttpRequestHandle *h, const HttpRequest *req) {
        int r;

        /* No "Expect: 100-continue" round trip before larger POST bodies. */
        r = add_request_header(&h->request_headers, "Expect:");
        if (r >= 0 && req->method == HTTP_POST) {
                _cleanup_free_ char *line = NULL;

                /* Without a type, drop curl's default form type rather than lie. */
                if (asprintf(&line, "Content-Type:%s%s", req->content_type ? " " : "",
                             strempty(req->content_type)) < 0)
                        return -ENOMEM;
                r = add_request_header(&h->request_headers, line);
        }
        for (const char *const *e = req->extra_headers; r >= 0 && e && *e; e++)
                r = add_request_header(&h->request_headers, *e);
        return r;
}

#define SETOPT(easy, option, value)                                           \
        do {                                                                  \
                CURLcode _cc = curl_easy_setopt(easy, option, value);         \
                if (_cc != CURLE_OK)                                          \
                        return _cc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL; \
        } while (0)

static int request_setup(HttpRequestHandle *h, const HttpRequest *req, const char *ca_file) {
        usec_t timeout = req->timeout > 0 ? req->timeout : HTTP_TIMEOUT_DEFAULT;
        long timeout_ms = (long) MIN((timeout + USEC_PER_MSEC - 1) / USEC_PER_MSEC,
                                     (usec_t) LONG_MAX);
        CURL *e = h->easy;
        int r;

        r = request_set_headers(h, req);
        if (r < 0)
                return r;

        SETOPT(e, CURLOPT_PRIVATE, h);
        SETOPT(e, CURLOPT_ERRORBUFFER, h->error_buffer);
        SETOPT(e, CURLOPT_NOSIGNAL, 1L);
        SETOPT(e, CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85 */
        SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
        SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
        SETOPT(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
        SETOPT(e, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        SETOPT(e, CURLOPT_FOLLOWLOCATION, req->follow_redirects ? 1L : 0L);
        SETOPT(e, CURLOPT_MAXREDIRS, HTTP_REDIRECTS_MAX);
        SETOPT(e, CURLOPT_USERAGENT, HTTP_USER_AGENT);
        SETOPT(e, CURLOPT_HTTPHEADER, h->request_headers);
        SETOPT(e, CURLOPT_TIMEOUT_MS, timeout_ms);
        SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) h->body_max);
        SETOPT(e, CURLOPT_WRITEFUNCTION, on_curl_write);
        SETOPT(e, CURLOPT_WRITEDATA, h);
        SETOPT(e, CURLOPT_HEADERFUNCTION, on_curl_header);
        SETOPT(e, CURLOPT_HEADERDATA, h);
        if (ca_file) {
                /* Replaces the store: without CAPATH NULL, libcurl-gnutls also
                 * parses its default directory (/etc/ssl/certs) per connection. */
                SETOPT(e, CURLOPT_CAINFO, ca_file);
                SETOPT(e, CURLOPT_CAPATH, NULL);
        }

        switch (req->method) {
        case HTTP_GET:
                SETOPT(e, CURLOPT_HTTPGET, 1L);
                break;
        case HTTP_HEAD:
                SETOPT(e, CURLOPT_NOBODY, 1L);
                break;
        case HTTP_POST:
                SETOPT(e, CURLOPT_POST, 1L);
                /* The size first: COPYPOSTFIELDS then copies that many bytes. */
                SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_size);
                SETOPT(e, CURLOPT_COPYPOSTFIELDS, req->body ?: "");
                break;
        default:
                return -EINVAL;
        }
        return 0;
}

int http_request(HttpClient *c, const HttpRequest *req, http_callback_t cb, void *userdata,
                 HttpRequestHandle **ret_handle) {
        _cleanup_(request_freep) HttpRequestHandle *h = NULL;
        CURLMcode mc;
        int r;

        if (!c || c->free_pending || !req || !req->url || !cb)
                return -EINVAL;
        if (req->method < 0 || req->method >= _HTTP_METHOD_MAX)
                return -EINVAL;
        if (req->method != HTTP_POST && (req->body || req->body_size > 0))
                return -EINVAL;
        if (req->body_size > 0 && !req->body)
                return -EINVAL;
        r = check_url(req->url);
        if (r < 0)
                return r;

        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->client = c;
        h->serial = c->next_serial++;
        h->method = req->method;
        h->callback = cb;
        h->userdata = userdata;
        /* SSIZE_MAX: body_max + 1 must not wrap, and it must fit curl_off_t. */
        h->body_max = req->max_response_size > 0 ? MIN(req->max_response_size, (size_t) SSIZE_MAX) :
                                                   HTTP_RESPONSE_SIZE_DEFAULT;
        h->easy = curl_easy_init();
        if (!h->easy)
                return -ENOMEM;
        r = request_setup(h, req, c->ca_file);
        if (r < 0)
                return r;

        /* Calls on_curl_timer() with 0: the transfer starts from the loop. */
        mc = curl_multi_add_handle(c->multi, h->easy);
        if (mc != CURLM_OK)
                return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
        LIST_PREPEND(c->requests, h);
        h->attached = true;

        if (ret_handle)
                *ret_handle = h;
        TAKE_PTR(h);
        return 0;
}

void http_request_cancel(HttpRequestHandle *h) {
        /* Inside its own callback the handle is already on its way out. */
        if (!h || h->completing)
                return;
        request_free(h);
}

const char *http_response_header_next(const HttpResponse *r, const char *name, size_t *iter) {
        struct curl_header *h;

        if (!r || !name || !iter)
                return NULL;
        if (r->transfer) {
                /* The final response's own headers (not a 1xx's, a
                 * redirect's, a proxy's or trailers), any case of the name,
                 * every instance in arrival order. */
                if (curl_easy_header(r->transfer, name, *iter, CURLH_HEADER, -1, &h) != CURLHE_OK)
                        return NULL;
                *iter = h->index + 1 < h->amount ? h->index + 1 : SIZE_MAX;
                /* Before 8.6.0 (curl pull request 12675) an empty value kept
                 * the line's CR: it is empty. */
                return h->value[strspn(h->value, "\r\n")] == 0 ? "" : h->value;
        }
        for (size_t i = *iter; i < r->n_headers; i++)
                if (strcasecmp(r->headers[i].name, name) == 0) {
                        *iter = i + 1;
                        return r->headers[i].value;
                }
        *iter = r->n_headers;
        return NULL;
}

const char *http_response_header(const HttpResponse *r, const char *name) {
        size_t i = 0;

        return http_response_header_next(r, name, &i);
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

static void trim_blanks(const char **p, size_t *n) {
        while (*n > 0 && (is_blank((*p)[*n - 1]) || (*p)[*n - 1] == '\r' || (*p)[*n - 1] == '\n'))
                (*n)--;
        while (*n > 0 && is_blank(**p)) {
                (*p)++;
                (*n)--;
        }
}

int http_parse_retry_after(const char *value, time_t now, usec_t *ret) {
        _cleanup_free_ char *s = NULL;
        size_t n;
        time_t t;

        if (!value || !ret)
                return -EINVAL;
        n = strlen(value);
        trim_blanks(&value, &n);
        if (n == 0)
                return -EINVAL;

        /* delta-seconds = 1*DIGIT. No HTTP-date starts with a digit. */
        if (value[0] >= '0' && value[0] <= '9') {
                usec_t secs = 0;

                for (size_t i = 0; i < n; i++) {
                        if (value[i] < '0' || value[i] > '9')
                                return -EINVAL;
                        if (secs > (USEC_INFINITY / USEC_PER_SEC - 9) / 10)
                                return -ERANGE;
                        secs = secs * 10 + (usec_t) (value[i] - '0');
                }
                *ret = secs * USEC_PER_SEC;
                return 0;
        }

        s = strndup(value, n);
        if (!s)
                return -ENOMEM;
        t = curl_getdate(s, NULL);
        if (t < 0)
                return -EINVAL;
        if (t <= now) {
                *ret = 0;
                return 0;
        }
        if ((uint64_t) (t - now) >= USEC_INFINITY / USEC_PER_SEC)
                return -ERANGE;
        *ret = (usec_t) (t - now) * USEC_PER_SEC;
        return 0;
}
