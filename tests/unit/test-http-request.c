/* SPDX-License-Identifier: MIT */
/* The status port's request parser (src/http-request.c): valid requests and
 * the fields they give, every class of error with its status and reason,
 * the 8 KiB limit, and every request of the tables fed in every split. */

#include <errno.h>
#include <stdlib.h>

#include "http-request.h"
#include "http-request-compare.h"
#include "macro.h"
#include "test-util.h"

#define NONE ((const char *) -1) /* a query that must be absent */

typedef struct Case {
        const char *what;
        const char *data;
        size_t size;
        int r;
        /* r == 0 */
        const char *method, *path, *query;
        unsigned minor;
        int64_t content_length; /* -1: none */
        bool chunked;
        size_t head_len;        /* 0: the whole input */
        /* r < 0 */
        const char *reason;     /* a part of the reason */
} Case;

#define DATA(s) .data = (s), .size = sizeof(s) - 1

static const Case valid[] = {
        { "plain GET", DATA("GET /_status HTTP/1.1\r\nHost: status\r\n\r\n"), 0, "GET",
          "/_status", NONE, 1, -1 },
        { "HTTP/1.0, LF only, no header", DATA("GET /_status HTTP/1.0\n\n"), 0, "GET", "/_status",
          NONE, 0, -1 },
        { "mixed line ends", DATA("HEAD /_metrics HTTP/1.1\nHost: x\r\nA: b\n\r\n"), 0, "HEAD",
          "/_metrics", NONE, 1, -1 },
        { "query", DATA("GET /_metrics?format=prometheus&x HTTP/1.1\r\n\r\n"), 0, "GET",
          "/_metrics", "format=prometheus&x", 1, -1 },
        { "empty query", DATA("GET /_status? HTTP/1.1\r\n\r\n"), 0, "GET", "/_status", "", 1, -1 },
        { "absolute form", DATA("GET http://status/_status HTTP/1.1\r\n\r\n"), 0, "GET",
          "/_status", NONE, 1, -1 },
        { "absolute form, scheme in capitals", DATA("GET HTTPS://h:1/_metrics?a=/b HTTP/1.1\r\n\r\n"),
          0, "GET", "/_metrics", "a=/b", 1, -1 },
        { "absolute form without a path", DATA("GET http://status HTTP/1.1\r\n\r\n"), 0, "GET", "/",
          NONE, 1, -1 },
        { "absolute form, query before any slash", DATA("GET http://h?q=/_status HTTP/1.1\r\n\r\n"),
          0, "GET", "/", "q=/_status", 1, -1 },
        { "any token method", DATA("M-S.E_A~RCH /x HTTP/1.9\r\n\r\n"), 0, "M-S.E_A~RCH", "/x",
          NONE, 9, -1 },
        { "non-ASCII in the path", DATA("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), 0, "GET",
          "/caf\xc3\xa9", NONE, 1, -1 },
        { "whitespace around values, obs-text, empty value",
          DATA("GET / HTTP/1.1\r\nA:\t v \t\r\nB: \xff\xfe\r\nC:\r\n\r\n"), 0, "GET", "/", NONE, 1,
          -1 },
        { "Content-Length and a body with NUL",
          DATA("POST /_shutdown HTTP/1.1\r\nContent-Length: 3\r\n\r\n\0\r\n"), 0, "POST",
          "/_shutdown", NONE, 1, 3, false, 47 },
        { "Content-Length repeated, same value, leading zeros",
          DATA("POST / HTTP/1.1\r\ncontent-length: 7\r\nCONTENT-LENGTH: 007\r\n\r\n"), 0, "POST", "/",
          NONE, 1, 7 },
        { "Content-Length at its maximum",
          DATA("POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n"), 0, "POST", "/",
          NONE, 1, INT64_MAX },
        { "chunked", DATA("POST / HTTP/1.1\r\nTransfer-Encoding:  ChunKed \r\n\r\n5\r\nhello"), 0,
          "POST", "/", NONE, 1, -1, true, 49 },
        { "the head ends at the first empty line",
          DATA("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"), 0, "GET", "/a", NONE, 1, -1, false,
          19 },
};

static const Case invalid[] = {
        { "garbage", DATA("GARBAGE\r\n\r\n"), -EBADMSG, .reason = "without a target" },
        { "empty request line", DATA("\r\nGET / HTTP/1.1\r\n\r\n"), -EBADMSG,
          .reason = "without a target" },
        { "no version", DATA("GET /_status\r\n\r\n"), -EBADMSG, .reason = "without a version" },
        { "two spaces", DATA("GET  /_status HTTP/1.1\r\n\r\n"), -EBADMSG, .reason = "HTTP/1.x" },
        { "space in the target", DATA("GET /a b HTTP/1.1\r\n\r\n"), -EBADMSG, .reason = "HTTP/1.x" },
        { "HTTP/2.0", DATA("GET /_status HTTP/2.0\r\n\r\n"), -EBADMSG, .reason = "HTTP/1.x" },
        { "lower-case version", DATA("GET / http/1.1\r\n\r\n"), -EBADMSG, .reason = "HTTP/1.x" },
        { "HTTP/1.10", DATA("GET / HTTP/1.10\r\n\r\n"), -EBADMSG, .reason = "HTTP/1.x" },
        { "method not a token", DATA("G(T / HTTP/1.1\r\n\r\n"), -EBADMSG, .reason = "method" },
        { "empty method", DATA(" / HTTP/1.1\r\n\r\n"), -EBADMSG, .reason = "method" },
        { "relative target", DATA("GET _status HTTP/1.1\r\n\r\n"), -EBADMSG,
          .reason = "neither a path" },
        { "asterisk form", DATA("OPTIONS * HTTP/1.1\r\n\r\n"), -EBADMSG, .reason = "neither a path" },
        { "other scheme", DATA("GET ftp://h/_status HTTP/1.1\r\n\r\n"), -EBADMSG,
          .reason = "neither a path" },
        { "control byte in the target", DATA("GET /_st\x1b[2Jatus HTTP/1.1\r\n\r\n"), -EBADMSG,
          .reason = "control character in the request target" },
        { "DEL in the target", DATA("GET /\x7f HTTP/1.1\r\n\r\n"), -EBADMSG,
          .reason = "control character in the request target" },
        { "NUL in the method", DATA("G\0T /_status HTTP/1.1\r\n\r\n"), -EBADMSG, .reason = "NUL" },
        { "NUL in a header", DATA("GET / HTTP/1.1\r\nA: \0\r\n\r\n"), -EBADMSG, .reason = "NUL" },
        { "bare CR in the request line", DATA("GET /_status HTTP/1.1\rX\n\n"), -EBADMSG,
          .reason = "CR not followed by LF" },
        { "CR CR LF", DATA("GET / HTTP/1.1\r\r\n\r\n"), -EBADMSG, .reason = "CR not followed by LF" },
        { "bare CR in a header", DATA("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"), -EBADMSG,
          .reason = "CR not followed by LF" },
        { "folded header", DATA("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), -EBADMSG,
          .reason = "folded" },
        { "header without a colon", DATA("GET / HTTP/1.1\r\nHost status\r\n\r\n"), -EBADMSG,
          .reason = "without a colon" },
        { "space before the colon", DATA("GET / HTTP/1.1\r\nHost : status\r\n\r\n"), -EBADMSG,
          .reason = "not a token" },
        { "empty header name", DATA("GET / HTTP/1.1\r\n: x\r\n\r\n"), -EBADMSG,
          .reason = "not a token" },
        { "control byte in a value", DATA("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n"), -EBADMSG,
          .reason = "control character in a header field value" },
        { "Content-Length not a number", DATA("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"),
          -EBADMSG, .reason = "invalid Content-Length" },
        { "Content-Length negative", DATA("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
          -EBADMSG, .reason = "invalid Content-Length" },
        { "Content-Length empty", DATA("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"), -EBADMSG,
          .reason = "invalid Content-Length" },
        { "Content-Length as a list", DATA("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
          -EBADMSG, .reason = "invalid Content-Length" },
        { "Content-Length beyond 2^63-1",
          DATA("POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n"), -EBADMSG,
          .reason = "invalid Content-Length" },
        { "Content-Length beyond 2^64",
          DATA("POST / HTTP/1.1\r\nContent-Length: 184467440737095516160\r\n\r\n"), -EBADMSG,
          .reason = "invalid Content-Length" },
        { "Content-Length conflicting",
          DATA("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), -EBADMSG,
          .reason = "conflicting" },
        { "Transfer-Encoding and Content-Length",
          DATA("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
          -EBADMSG, .reason = "both" },
        { "Transfer-Encoding gzip", DATA("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
          -EOPNOTSUPP, .reason = "other than chunked" },
        { "Transfer-Encoding list",
          DATA("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), -EOPNOTSUPP,
          .reason = "other than chunked" },
        { "Transfer-Encoding twice",
          DATA("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
          -EOPNOTSUPP, .reason = "more than one" },
        /* The first problem, by position, is the one reported. */
        { "bad TE before a bad line",
          DATA("POST / HTTP/1.1\r\nTransfer-Encoding: x\r\nno colon\r\n\r\n"), -EOPNOTSUPP,
          .reason = "other than chunked" },
        { "bad line before a bad TE",
          DATA("POST / HTTP/1.1\r\nno colon\r\nTransfer-Encoding: x\r\n\r\n"), -EBADMSG,
          .reason = "without a colon" },
        /* Decided once the line is whole, without waiting for the head. */
        { "a bad request line alone", DATA("GARBAGE\r\n"), -EBADMSG, .reason = "without a target" },
        { "a bad header line alone", DATA("GET / HTTP/1.1\r\nA\r\nB: c"), -EBADMSG,
          .reason = "without a colon" },
};

/* Fields of a in terms of a's buffer equal those of b in b's (the path may
 * be the parser's static "/"). */
/* Every split point: the first part alone must give "read more" or the
 * answer for the whole, and the whole after it the same answer as ever.
 * Each prefix sits at the end of an allocation of its size, so that a read
 * past it is a read past the buffer (ASan). Returns the first prefix
 * length with a final answer. */
static size_t check_splits(const char *what, const char *data, size_t size, int whole_r,
                           const HttpRequest *whole, const char *whole_reason) {
        size_t first_final = SIZE_MAX;

        for (size_t k = 0; k <= size; k++) {
                char *prefix = malloc(k ? k : 1);
                const char *reason = NULL;
                HttpRequest req;
                int r;

                if (!CHECK(prefix))
                        return SIZE_MAX;
                memcpy(prefix, data, k);
                r = http_request_parse(prefix, k, &req, &reason);
                if (r != -EAGAIN) {
                        if (first_final == SIZE_MAX)
                                first_final = k;
                        if (!test_record(r == whole_r && reason == (r < 0 ? whole_reason : NULL) &&
                                                 (r < 0 || http_request_same(&req, prefix, whole, data)),
                                         __FILE__, __LINE__, "a prefix answers as the whole"))
                                fprintf(stderr, "        %s: prefix of %zu bytes gave %d (%s)\n",
                                        what, k, r, strempty(reason));
                } else if (first_final != SIZE_MAX) {
                        test_record(false, __FILE__, __LINE__, "a longer prefix reads more");
                        fprintf(stderr, "        %s: prefix of %zu bytes\n", what, k);
                }
                free(prefix);
        }
        return first_final;
}

static void check_case(const Case *t) {
        const char *reason = NULL;
        HttpRequest req = {};
        size_t first_final;
        int r;

        fprintf(stderr, "http-request: %s\n", t->what);
        r = http_request_parse(t->data, t->size, &req, &reason);
        CHECK_INT_EQ(r, t->r);
        if (r == 0 && t->r == 0) {
                CHECK(reason == NULL);
                CHECK(req.method_len == strlen(t->method) &&
                      memcmp(req.method, t->method, req.method_len) == 0);
                CHECK(http_request_method_is(&req, t->method));
                CHECK(http_request_path_is(&req, t->path));
                if (t->query == NONE)
                        CHECK(!req.query && req.query_len == 0);
                else
                        CHECK(req.query && req.query_len == strlen(t->query) &&
                              memcmp(req.query, t->query, req.query_len) == 0);
                CHECK_INT_EQ(req.version_minor, t->minor);
                CHECK_INT_EQ(req.has_content_length, t->content_length >= 0);
                if (t->content_length >= 0)
                        CHECK_U64_EQ(req.content_length, (uint64_t) t->content_length);
                CHECK_INT_EQ(req.chunked, t->chunked);
                CHECK_INT_EQ(req.head_len, t->head_len ? t->head_len : t->size);
                CHECK_INT_EQ(http_request_error_status(r), 400); /* never asked for one */
        } else if (r < 0 && t->r < 0) {
                CHECK_CONTAINS(reason, t->reason);
                CHECK_INT_EQ(http_request_error_status(r), r == -EOPNOTSUPP ? 501 : 400);
        }

        first_final = check_splits(t->what, t->data, t->size, r, &req, reason);
        /* A whole request is never taken for one before its empty line. */
        if (r == 0)
                CHECK_INT_EQ(first_final, req.head_len);
}

static void test_tables(void) {
        for (size_t i = 0; i < ELEMENTSOF(valid); i++)
                check_case(&valid[i]);
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++)
                check_case(&invalid[i]);
}

/* "read more" for every prefix of a request line that is still fine. */
static void test_incomplete(void) {
        HttpRequest req = { .head_len = 4242 };
        const char *reason = "untouched";

        CHECK_INT_EQ(http_request_parse(NULL, 0, &req, &reason), -EAGAIN);
        CHECK_INT_EQ(http_request_parse("GET / HTTP/1.1\r\nHost: x\r\n", 25, &req, &reason),
                     -EAGAIN);
        CHECK_INT_EQ(http_request_parse("GET / HTTP/1.1\r\n\r", 17, &req, &reason), -EAGAIN);
        /* Nothing written unless it is an answer. */
        CHECK_INT_EQ(req.head_len, 4242);
        CHECK_STR_EQ(reason, "untouched");
        /* A NULL reason pointer is fine. */
        CHECK_INT_EQ(http_request_parse("x\n", 2, &req, NULL), -EBADMSG);
}

/* A request whose head is exactly size bytes: a request line, padding
 * headers and the empty line. */
static char *make_head(size_t size, const char *line_end) {
        static const char start[] = "GET /_status HTTP/1.1";
        size_t e = strlen(line_end), pos;
        char *s = malloc(size + 1);

        if (!s)
                abort();
        memcpy(s, start, strlen(start));
        pos = strlen(start);
        memcpy(s + pos, line_end, e);
        pos += e;
        /* "X: aaa...<eol>" lines of at most 100 bytes, the last one sized to fit. */
        while (size - pos > e) {
                size_t room = size - pos - e, n = MIN(room, (size_t) 100);

                if (room - n > 0 && room - n < 3 + e)
                        n = room - (3 + e); /* leave enough for one more line */
                memcpy(s + pos, "X:", 2);
                memset(s + pos + 2, 'a', n - e - 2);
                memcpy(s + pos + n - e, line_end, e);
                pos += n;
        }
        memcpy(s + pos, line_end, e);
        pos += e;
        s[pos] = '\0';
        if (pos != size)
                abort();
        return s;
}

static void test_limit(void) {
        const char *reason = NULL;
        HttpRequest req;
        char *s, *big;

        for (int crlf = 0; crlf <= 1; crlf++) {
                /* Exactly the limit, with the rest of the buffer full: served. */
                s = make_head(HTTP_REQUEST_HEAD_MAX, crlf ? "\r\n" : "\n");
                big = malloc(HTTP_REQUEST_HEAD_MAX + 100);
                if (!CHECK(big))
                        return;
                memcpy(big, s, HTTP_REQUEST_HEAD_MAX);
                memset(big + HTTP_REQUEST_HEAD_MAX, 'b', 100);
                CHECK_INT_EQ(http_request_parse(s, HTTP_REQUEST_HEAD_MAX, &req, &reason), 0);
                CHECK_INT_EQ(req.head_len, HTTP_REQUEST_HEAD_MAX);
                CHECK_INT_EQ(http_request_parse(big, HTTP_REQUEST_HEAD_MAX + 100, &req, &reason), 0);
                CHECK_INT_EQ(req.head_len, HTTP_REQUEST_HEAD_MAX);
                free(s);

                /* One byte more: 431, whether more bytes are there or not. */
                s = make_head(HTTP_REQUEST_HEAD_MAX + 1, crlf ? "\r\n" : "\n");
                CHECK_INT_EQ(http_request_parse(s, HTTP_REQUEST_HEAD_MAX + 1, &req, &reason), -E2BIG);
                CHECK_CONTAINS(reason, "larger than 8 KiB");
                CHECK_INT_EQ(http_request_error_status(-E2BIG), 431);
                CHECK_INT_EQ(http_request_parse(s, HTTP_REQUEST_HEAD_MAX, &req, &reason), -E2BIG);
                /* One byte short of the limit it still waits. */
                CHECK_INT_EQ(http_request_parse(s, HTTP_REQUEST_HEAD_MAX - 1, &req, &reason),
                             -EAGAIN);
                free(s);
                free(big);
        }

        /* One line without an end, as long as the limit. */
        big = malloc(HTTP_REQUEST_HEAD_MAX);
        if (!CHECK(big))
                return;
        memcpy(big, "GET /", 5);
        memset(big + 5, 'a', HTTP_REQUEST_HEAD_MAX - 5);
        CHECK_INT_EQ(http_request_parse(big, HTTP_REQUEST_HEAD_MAX - 1, &req, &reason), -EAGAIN);
        CHECK_INT_EQ(http_request_parse(big, HTTP_REQUEST_HEAD_MAX, &req, &reason), -E2BIG);
        /* A bad line inside the limit is reported as what it is. */
        memcpy(big, "GARBAGE\n", 8);
        CHECK_INT_EQ(http_request_parse(big, HTTP_REQUEST_HEAD_MAX, &req, &reason), -EBADMSG);
        CHECK_CONTAINS(reason, "without a target");
        free(big);

        /* An LF just past the limit does not count. */
        big = malloc(HTTP_REQUEST_HEAD_MAX + 2);
        if (!CHECK(big))
                return;
        memcpy(big, "GET / HTTP/1.1\nX:", 17);
        memset(big + 17, 'a', HTTP_REQUEST_HEAD_MAX - 17);
        big[HTTP_REQUEST_HEAD_MAX] = '\n';
        big[HTTP_REQUEST_HEAD_MAX + 1] = '\n';
        CHECK_INT_EQ(http_request_parse(big, HTTP_REQUEST_HEAD_MAX + 2, &req, &reason), -E2BIG);
        free(big);
}

/* A long request arriving in every split, as the status port's reads
 * deliver it: the answer is the same. */
static void test_long_request_splits(void) {
        char *s = make_head(1500, "\r\n");
        const char *reason = NULL;
        HttpRequest req;

        CHECK_INT_EQ(http_request_parse(s, 1500, &req, &reason), 0);
        CHECK_INT_EQ(check_splits("1500 bytes", s, 1500, 0, &req, NULL), 1500);
        free(s);
}

int main(void) {
        test_tables();
        test_incomplete();
        test_limit();
        test_long_request_splits();
        return test_summary();
}
