/* SPDX-License-Identifier: MIT */
#pragma once

/* HTTP(S) requests for ACME, OCSP, the backend check and --metrics-url:
 * libcurl's multi interface driven by the sd_event loop, so that no request
 * ever blocks it. curl's sockets become sd_event I/O sources and its single
 * timeout one sd_event timer; a finished request calls its callback from the
 * loop.
 *
 * TLS uses libcurl's defaults (the system trust store, peer and host name
 * verification on). When SSL_CERT_FILE is set in the environment at
 * http_client_new() time, that PEM bundle replaces the default trust store
 * (CURLOPT_CAINFO): this is how tests trust a private CA such as Pebble's.
 * http_client_set_ca_file() gives one client a bundle of its own instead
 * (--metrics-url trusts --cacert, as Ghostunnel does).
 * libcurl's proxy variables (https_proxy, no_proxy, ...) apply as usual.
 *
 * The program calls curl_global_init() once, before it starts any thread
 * and before the first http_client_new(), and curl_global_cleanup() at exit
 * (main(), and the main() of every test that uses this module): clients are
 * made on whichever loop needs one, a worker's included, and only the one
 * up-front initialization is safe with every libcurl build. */

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "macro.h"

#define HTTP_RESPONSE_SIZE_DEFAULT (1024U * 1024U)
#define HTTP_TIMEOUT_DEFAULT (30 * USEC_PER_SEC)

typedef struct HttpClient HttpClient;
typedef struct HttpRequestHandle HttpRequestHandle;

typedef enum HttpMethod {
        HTTP_GET,
        HTTP_HEAD,
        HTTP_POST,
        _HTTP_METHOD_MAX,
} HttpMethod;

const char *http_method_to_string(HttpMethod m);

typedef struct HttpRequest {
        HttpMethod method;              /* HTTP_GET is 0, the default */
        const char *url;                /* http:// or https:// only */
        /* POST only (must be NULL/0 otherwise); copied by http_request(). */
        const void *body;
        size_t body_size;
        const char *content_type;       /* POST: e.g. "application/jose+json"; NULL: none */
        /* Further request headers, "Name: value" each, NULL-terminated; may be NULL. */
        const char *const *extra_headers;
        size_t max_response_size;       /* body bytes; 0: HTTP_RESPONSE_SIZE_DEFAULT */
        usec_t timeout;                 /* whole request; 0: HTTP_TIMEOUT_DEFAULT */
        bool follow_redirects;          /* default off; on: at most 5, http(s) only */
} HttpRequest;

typedef struct HttpHeader {
        const char *name;               /* as the server spelled it */
        const char *value;              /* without CRLF and surrounding blanks */
} HttpHeader;

/* Valid only during the callback; copy what you keep. */
typedef struct HttpResponse {
        /* 0, or a negative errno:
         *   -ETIMEDOUT     the request timeout passed
         *   -ECONNREFUSED, -EHOSTUNREACH, -ENETUNREACH   no connection
         *                  (-EHOSTUNREACH also when the name does not resolve)
         *   -EPERM         TLS peer verification failed (untrusted, wrong name)
         *   -EPROTO        other TLS handshake failures
         *   -EFBIG         the body or the headers exceed their limits
         *   -ECONNRESET    the connection broke off mid-request
         *   -EBADMSG       not understandable as HTTP
         *   -ELOOP         more than 5 redirects (follow_redirects only)
         *   -ENOMEM, -EINVAL (curl rejected a setting, e.g. a bad CA file), -EIO
         * An HTTP error status (4xx, 5xx) is not an error here: error is 0 and
         * status says what happened. */
        int error;
        const char *error_message;      /* curl's text, for logs; NULL when error is 0 */
        long status;                    /* of the final response; 0 when none arrived */
        /* On error the fields below hold whatever arrived before it: logs only. */
        const char *body;               /* never NULL, NUL-terminated */
        size_t body_size;
        /* Headers: look them up with http_response_header(), which asks
         * curl (curl_easy_header()) about the final response. */
        void *transfer;                 /* private: the curl handle */
        /* A response made up without a transfer (the ACME fuzzer) lists its
         * headers here instead; NULL for the responses of an HttpClient. */
        const HttpHeader *headers;
        size_t n_headers;
} HttpResponse;

/* Called once per request from the event loop, unless the request is
 * cancelled or its client freed first. The handle is gone once the callback
 * runs (cancelling it from inside the callback is a harmless no-op). The
 * callback may start new requests, cancel others, and free the client. */
typedef void (*http_callback_t)(const HttpResponse *response, void *userdata);

int http_client_new(sd_event *e, HttpClient **ret);
/* For this client's requests from now on, the PEM bundle at path replaces
 * the trust store (and SSL_CERT_FILE). Returns 0 or -ENOMEM. */
int http_client_set_ca_file(HttpClient *c, const char *path);
/* Cancels every pending request WITHOUT calling its callback, like
 * http_request_cancel(); handles of pending requests become invalid. */
HttpClient *http_client_free(HttpClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpClient *, http_client_free);

/* Starts a request. Returns 0, or -EINVAL (bad URL, body for GET/HEAD, CR
 * or LF in a header), -EPROTONOSUPPORT (neither http nor https), -ENOMEM,
 * -EIO (curl refused the transfer).
 * Errors found later (DNS, connect, TLS, timeout) go to the callback, never
 * synchronously. ret_handle (optional) is valid until the callback runs or
 * the request is cancelled. */
int http_request(HttpClient *c, const HttpRequest *req, http_callback_t cb, void *userdata,
                 HttpRequestHandle **ret_handle);

/* Aborts a pending request; its callback is not called. NULL is a no-op. */
void http_request_cancel(HttpRequestHandle *h);

/* The value of the first header with that name (case-insensitive), or NULL.
 * Values come without CRLF and surrounding blanks, folded lines joined. A
 * value is valid until the next lookup on the same response (and only
 * during the callback): copy what you keep. */
const char *http_response_header(const HttpResponse *r, const char *name);
/* Every value of a header that may repeat, in order. Start with *iter = 0:
 *     size_t i = 0;
 *     for (const char *v; (v = http_response_header_next(r, "Link", &i)); )
 *             ...
 */
const char *http_response_header_next(const HttpResponse *r, const char *name, size_t *iter);

/* Retry-After (RFC 9110 section 10.2.3): delta-seconds, or an HTTP-date
 * compared with now (a date already past gives 0). Returns the delay in
 * *ret, or -EINVAL for anything else, -ERANGE when it does not fit. */
int http_parse_retry_after(const char *value, time_t now, usec_t *ret);
