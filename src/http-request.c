/* SPDX-License-Identifier: MIT */
/* See http-request.h. One pass over the lines of the head, each judged
 * alone (plus what the earlier ones set), so that a prefix of a request
 * gives either -EAGAIN or the answer for the whole. */

#include <errno.h>
#include <string.h>

#include "http-request.h"
#include "macro.h"

#define CONTENT_LENGTH_MAX ((uint64_t) INT64_MAX)

/* tchar (RFC 9110 section 5.6.2). */
static bool is_tchar(unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *p, size_t n) {
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_tchar((unsigned char) p[i]))
                        return false;
        return true;
}

/* Control bytes: everything below SP, and DEL. */
static bool is_ctl(unsigned char c) {
        return c < 0x20 || c == 0x7f;
}

static bool is_ows(char c) {
        return c == ' ' || c == '\t';
}

/* ASCII only, whatever the locale: header names and schemes are ASCII. */
static char ascii_lower(char c) {
        return c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
}

static bool ascii_case_eq(const char *p, size_t n, const char *s) {
        if (strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (ascii_lower(p[i]) != ascii_lower(s[i]))
                        return false;
        return true;
}

static bool ascii_case_prefix(const char *p, size_t n, const char *prefix) {
        size_t k = strlen(prefix);

        return n >= k && ascii_case_eq(p, k, prefix);
}

static int fail(const char **ret_reason, int r, const char *reason) {
        if (ret_reason)
                *ret_reason = reason;
        return r;
}

/* origin-form "/path?query" or absolute-form "http://authority/path?query"
 * (RFC 9112 section 3.2): sets path and query. The authority is not
 * looked at: there is one server on the status port. */
static int parse_target(HttpRequest *req, const char **ret_reason) {
        const char *p = req->target, *q;
        size_t n = req->target_len, k;

        for (size_t i = 0; i < n; i++)
                if (is_ctl((unsigned char) p[i]))
                        return fail(ret_reason, -EBADMSG, "control character in the request target");

        k = ascii_case_prefix(p, n, "http://")    ? strlen("http://")
            : ascii_case_prefix(p, n, "https://") ? strlen("https://")
                                                  : 0;
        if (k > 0) {
                /* The authority ends at the path or the query. */
                p += k, n -= k;
                while (n > 0 && *p != '/' && *p != '?')
                        p++, n--;
                if (n == 0 || *p == '?') {
                        req->path = "/";
                        req->path_len = 1;
                        if (n > 0) {
                                req->query = p + 1;
                                req->query_len = n - 1;
                        }
                        return 0;
                }
        } else if (n == 0 || *p != '/')
                return fail(ret_reason, -EBADMSG,
                            "request target is neither a path nor an http(s) URL");

        q = memchr(p, '?', n);
        req->path = p;
        req->path_len = q ? (size_t) (q - p) : n;
        if (q) {
                req->query = q + 1;
                req->query_len = n - req->path_len - 1;
        }
        return 0;
}

/* METHOD SP TARGET SP HTTP-VERSION (RFC 9112 section 3): exactly one space
 * each, as Go's net/http splits it. */
static int parse_request_line(const char *line, size_t n, HttpRequest *req,
                              const char **ret_reason) {
        const char *sp1, *sp2, *version;
        size_t version_len;

        sp1 = memchr(line, ' ', n);
        if (!sp1)
                return fail(ret_reason, -EBADMSG, "request line without a target");
        sp2 = memchr(sp1 + 1, ' ', n - (size_t) (sp1 + 1 - line));
        if (!sp2)
                return fail(ret_reason, -EBADMSG, "request line without a version");
        req->method = line;
        req->method_len = (size_t) (sp1 - line);
        req->target = sp1 + 1;
        req->target_len = (size_t) (sp2 - req->target);
        version = sp2 + 1;
        version_len = n - (size_t) (version - line);

        if (!is_token(req->method, req->method_len))
                return fail(ret_reason, -EBADMSG, "method is not a token");
        /* HTTP-version is case-sensitive (RFC 9112 section 2.3). */
        if (version_len != strlen("HTTP/1.0") || memcmp(version, "HTTP/1.", 7) != 0 ||
            version[7] < '0' || version[7] > '9')
                return fail(ret_reason, -EBADMSG, "not an HTTP/1.x request");
        req->version_minor = (unsigned) (version[7] - '0');
        return parse_target(req, ret_reason);
}

static int parse_content_length(const char *v, size_t n, uint64_t *ret) {
        uint64_t x = 0;

        if (n == 0)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                if (v[i] < '0' || v[i] > '9')
                        return -EBADMSG;
                if (x > (CONTENT_LENGTH_MAX - (uint64_t) (v[i] - '0')) / 10)
                        return -EBADMSG;
                x = x * 10 + (uint64_t) (v[i] - '0');
        }
        *ret = x;
        return 0;
}

/* field-name ":" OWS field-value OWS (RFC 9112 section 5). */
static int parse_header(const char *line, size_t n, HttpRequest *req, const char **ret_reason) {
        const char *colon, *v;
        size_t name_len, v_len;
        uint64_t length;

        if (is_ows(line[0]))
                return fail(ret_reason, -EBADMSG, "header line folded (starts with whitespace)");
        colon = memchr(line, ':', n);
        if (!colon)
                return fail(ret_reason, -EBADMSG, "header line without a colon");
        name_len = (size_t) (colon - line);
        if (!is_token(line, name_len))
                return fail(ret_reason, -EBADMSG, "header field name is not a token");

        v = colon + 1;
        v_len = n - name_len - 1;
        while (v_len > 0 && is_ows(v[0]))
                v++, v_len--;
        while (v_len > 0 && is_ows(v[v_len - 1]))
                v_len--;
        for (size_t i = 0; i < v_len; i++)
                if (is_ctl((unsigned char) v[i]) && v[i] != '\t')
                        return fail(ret_reason, -EBADMSG,
                                    "control character in a header field value");

        if (ascii_case_eq(line, name_len, "Content-Length")) {
                if (parse_content_length(v, v_len, &length) < 0)
                        return fail(ret_reason, -EBADMSG, "invalid Content-Length");
                /* Repeats must agree (RFC 9110 section 8.6). */
                if (req->has_content_length && req->content_length != length)
                        return fail(ret_reason, -EBADMSG, "conflicting Content-Length headers");
                req->has_content_length = true;
                req->content_length = length;
        } else if (ascii_case_eq(line, name_len, "Transfer-Encoding")) {
                /* chunked alone is what HTTP/1.1 requires a server to know
                 * (RFC 9112 section 6.1): a second coding, in this line or
                 * another, is one too many, as in Go's net/http. */
                if (req->chunked)
                        return fail(ret_reason, -EOPNOTSUPP, "more than one transfer coding");
                if (!ascii_case_eq(v, v_len, "chunked"))
                        return fail(ret_reason, -EOPNOTSUPP, "transfer coding other than chunked");
                req->chunked = true;
        }
        return 0;
}

int http_request_parse(const char *buf, size_t len, HttpRequest *ret, const char **ret_reason) {
        size_t window = MIN(len, (size_t) HTTP_REQUEST_HEAD_MAX), pos = 0;
        HttpRequest req = {};
        int r;

        for (bool first = true;; first = false) {
                const char *line = buf + pos, *lf;
                size_t n;

                lf = window > pos ? memchr(line, '\n', window - pos) : NULL;
                if (!lf) {
                        if (len >= HTTP_REQUEST_HEAD_MAX)
                                return fail(ret_reason, -E2BIG,
                                            "request head larger than 8 KiB");
                        return -EAGAIN;
                }
                n = (size_t) (lf - line);
                pos += n + 1;
                if (n > 0 && line[n - 1] == '\r')
                        n--;
                if (n > 0 && memchr(line, '\0', n))
                        return fail(ret_reason, -EBADMSG, "NUL byte in the request head");
                if (n > 0 && memchr(line, '\r', n))
                        return fail(ret_reason, -EBADMSG, "CR not followed by LF");

                if (first)
                        r = parse_request_line(line, n, &req, ret_reason);
                else if (n == 0)
                        break;
                else
                        r = parse_header(line, n, &req, ret_reason);
                if (r < 0)
                        return r;
        }

        /* RFC 9112 section 6.1: a server MAY reject both, and one that
         * reads no body has no reason to pick one. */
        if (req.chunked && req.has_content_length)
                return fail(ret_reason, -EBADMSG, "both Transfer-Encoding and Content-Length");
        req.head_len = pos;
        *ret = req;
        return 0;
}

int http_request_error_status(int r) {
        switch (r) {
        case -E2BIG:
                return 431;
        case -EOPNOTSUPP:
                return 501;
        default:
                return 400;
        }
}

bool http_request_method_is(const HttpRequest *req, const char *method) {
        return req->method_len == strlen(method) &&
               memcmp(req->method, method, req->method_len) == 0;
}

bool http_request_path_is(const HttpRequest *req, const char *path) {
        return req->path_len == strlen(path) && memcmp(req->path, path, req->path_len) == 0;
}
