/* SPDX-License-Identifier: MIT */
#pragma once

/* The request head the status port reads (RFC 9112), parsed by a pure
 * function: bytes in, a request or a verdict out, no I/O and no state kept
 * between calls. The caller passes everything received so far; the answer
 * for a prefix of a request is either "read more" or exactly the answer for
 * the whole request, so it never matters how the bytes were split up on the
 * way. The unit tests and the fuzzer drive it directly.
 *
 * What is read:
 *   - lines end with LF, with or without CR before it; a CR anywhere else
 *     is refused (RFC 9112 section 2.2);
 *   - the request line: METHOD SP TARGET SP HTTP/1.x, the method a token,
 *     the target in origin form (/path?query) or in absolute form
 *     (http://authority/path?query, scheme in any case), without control
 *     bytes;
 *   - header lines: a token, a colon, a value without control bytes but
 *     HTAB; folded lines (a line starting with whitespace) are refused
 *     (RFC 9112 section 5.2), and so is whitespace before the colon
 *     (section 5.1);
 *   - Content-Length: digits, at most 2^63-1, repeated only with the same
 *     value; Transfer-Encoding: only "chunked", once, and not together with
 *     a Content-Length (RFC 9112 section 6);
 *   - an empty line ends the head. Whatever follows (a body) is not looked at.
 * The head, empty line included, must fit HTTP_REQUEST_HEAD_MAX bytes. No
 * header is required (a bare "GET /_status HTTP/1.0" is served, as before).
 *
 * Errors are decided line by line, in order, as soon as a line is whole:
 * the first problem in the head is the one reported. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_REQUEST_HEAD_MAX (8U * 1024U)

typedef struct HttpRequest {
        /* Pointers into the caller's buffer, but path, which may be a
         * static "/" for an absolute-form target without a path. */
        const char *method;             /* a token (RFC 9110 section 5.6.2) */
        size_t method_len;
        const char *target;             /* the request-target as sent */
        size_t target_len;
        const char *path;               /* starts with '/', ends before '?' */
        size_t path_len;
        const char *query;              /* after '?'; NULL without one */
        size_t query_len;
        unsigned version_minor;         /* HTTP/1.x */
        bool has_content_length;
        uint64_t content_length;
        bool chunked;                   /* Transfer-Encoding: chunked */
        size_t head_len;                /* bytes up to and including the empty line */
} HttpRequest;

/* Parses the request head at the start of buf[0..len). Returns:
 *   0            a whole head: *ret describes it (ret->head_len bytes);
 *   -EAGAIN      no whole head yet and no problem so far: read more (only
 *                while len < HTTP_REQUEST_HEAD_MAX);
 *   -EBADMSG     malformed (400 Bad Request);
 *   -E2BIG       no whole head in the first HTTP_REQUEST_HEAD_MAX bytes
 *                (431 Request Header Fields Too Large);
 *   -EOPNOTSUPP  a transfer coding other than chunked (501 Not Implemented).
 * On an error *ret_reason (if not NULL) is set to a static English text
 * naming the problem, which holds no byte of the request. *ret is written
 * only on success. */
int http_request_parse(const char *buf, size_t len, HttpRequest *ret, const char **ret_reason);

/* The HTTP status for an error of http_request_parse(): 431, 501 or 400. */
int http_request_error_status(int r);

/* Exact comparisons with the method and the path. */
bool http_request_method_is(const HttpRequest *req, const char *method);
bool http_request_path_is(const HttpRequest *req, const char *path);
