/* SPDX-License-Identifier: MIT */
/* The status port's request parser (src/http-request.c), which reads
 * whatever a network peer sends.
 *
 * The input is a request as it arrives, checked four ways:
 *   - against a second, deliberately plain reading of the rules in
 *     http-request.h, written here with C string functions (strchr,
 *     strspn, strtoull, strcasecmp) on a copy of each line: the same
 *     answer (complete, read more, 400, 431, 501) and, for a whole head,
 *     the same fields;
 *   - split at every point (inputs over 1 KiB: at a sample of points and
 *     around the first answer): the first part alone gives "read more" or
 *     exactly the answer for the whole; once it answers, every longer
 *     part answers the same; and "read more" turns into an answer only
 *     where a line ends or the 8 KiB limit is reached (status.c parses
 *     again only then). Each part sits at the end of an allocation of its
 *     size, so a read past it is one ASan sees;
 *   - what it accepts, written again plainly (CRLF, canonical headers),
 *     parses to the same request;
 *   - limits and shape: the head fits 8 KiB and the input, ends with LF,
 *     the fields lie inside it, the method is a token, the target holds no
 *     control byte, the path starts with '/', an error has a reason that
 *     is not made of the request's bytes. */

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <strings.h>

#include "fuzz-util.h"
#include "http-request-compare.h"
#include "http-request.h"
#include "macro.h"

#define MORE 1 /* the reference's "read more"; else 0 or an HTTP status */

static const char TCHARS[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                             "!#$%&'*+-.^_`|~";
/* Control bytes but NUL (a line with a NUL is refused before these). */
static const char CTLS[] = "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
                           "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f";
static const char CTLS_BUT_TAB[] = "\x01\x02\x03\x04\x05\x06\x07\x08\x0a\x0b\x0c\x0d\x0e\x0f"
                                   "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d"
                                   "\x1e\x1f\x7f";

typedef struct Ref {
        char method[HTTP_REQUEST_HEAD_MAX + 1], target[HTTP_REQUEST_HEAD_MAX + 1];
        char path[HTTP_REQUEST_HEAD_MAX + 1], query[HTTP_REQUEST_HEAD_MAX + 1];
        bool has_query;
        unsigned minor;
        bool has_cl, chunked;
        uint64_t cl;
        size_t head_len;
} Ref;

static bool all_of(const char *s, const char *set) {
        return s[strspn(s, set)] == '\0';
}

static int ref_request_line(char *line, Ref *ref) {
        char *sp1, *target, *sp2, *version, *rest, *q;

        sp1 = strchr(line, ' ');
        if (!sp1)
                return 400;
        *sp1 = '\0';
        target = sp1 + 1;
        sp2 = strchr(target, ' ');
        if (!sp2)
                return 400;
        *sp2 = '\0';
        version = sp2 + 1;
        if (!*line || !all_of(line, TCHARS))
                return 400;
        if (strlen(version) != 8 || strncmp(version, "HTTP/1.", 7) != 0 ||
            !strchr("0123456789", version[7]))
                return 400;
        if (strpbrk(target, CTLS))
                return 400;
        strcpy(ref->method, line);
        strcpy(ref->target, target);
        ref->minor = (unsigned) (version[7] - '0');

        if (strncasecmp(target, "http://", 7) == 0)
                rest = target + 7;
        else if (strncasecmp(target, "https://", 8) == 0)
                rest = target + 8;
        else if (target[0] == '/')
                rest = NULL;
        else
                return 400;
        if (rest) {
                rest += strcspn(rest, "/?");
                if (*rest != '/') { /* no path: "/" */
                        strcpy(ref->path, "/");
                        if (*rest == '?') {
                                ref->has_query = true;
                                strcpy(ref->query, rest + 1);
                        }
                        return 0;
                }
                target = rest;
        }
        q = strchr(target, '?');
        if (q) {
                *q = '\0';
                ref->has_query = true;
                strcpy(ref->query, q + 1);
        }
        strcpy(ref->path, target);
        return 0;
}

static int ref_header(char *line, Ref *ref) {
        char *colon, *value, *end;
        unsigned long long v;

        if (line[0] == ' ' || line[0] == '\t')
                return 400;
        colon = strchr(line, ':');
        if (!colon)
                return 400;
        *colon = '\0';
        if (!*line || !all_of(line, TCHARS))
                return 400;
        value = colon + 1 + strspn(colon + 1, " \t");
        end = value + strlen(value);
        while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
                *--end = '\0';
        if (strpbrk(value, CTLS_BUT_TAB))
                return 400;
        if (strcasecmp(line, "content-length") == 0) {
                if (!*value || !all_of(value, "0123456789"))
                        return 400;
                errno = 0;
                v = strtoull(value, NULL, 10);
                if (errno == ERANGE || v > (unsigned long long) INT64_MAX)
                        return 400;
                if (ref->has_cl && ref->cl != v)
                        return 400;
                ref->has_cl = true;
                ref->cl = v;
        } else if (strcasecmp(line, "transfer-encoding") == 0) {
                if (ref->chunked || strcasecmp(value, "chunked") != 0)
                        return 501;
                ref->chunked = true;
        }
        return 0;
}

static int ref_parse(const uint8_t *data, size_t size, Ref *ref) {
        size_t window = size < HTTP_REQUEST_HEAD_MAX ? size : HTTP_REQUEST_HEAD_MAX, pos = 0;
        char line[HTTP_REQUEST_HEAD_MAX + 1];
        int code;

        memset(ref, 0, sizeof *ref);
        for (unsigned lineno = 0;; lineno++) {
                const uint8_t *lf = pos < window ? memchr(data + pos, '\n', window - pos) : NULL;
                size_t n;

                if (!lf)
                        return size >= HTTP_REQUEST_HEAD_MAX ? 431 : MORE;
                n = (size_t) (lf - data) - pos;
                memcpy(line, data + pos, n);
                line[n] = '\0';
                pos += n + 1;
                if (n > 0 && line[n - 1] == '\r')
                        line[--n] = '\0';
                if (strlen(line) != n || strchr(line, '\r'))
                        return 400;
                if (lineno == 0)
                        code = ref_request_line(line, ref);
                else if (n == 0)
                        break;
                else
                        code = ref_header(line, ref);
                if (code != 0)
                        return code;
        }
        if (ref->chunked && ref->has_cl)
                return 400;
        ref->head_len = pos;
        return 0;
}

static int code_of(int r) {
        switch (r) {
        case 0:
                return 0;
        case -EAGAIN:
                return MORE;
        case -EBADMSG:
                return 400;
        case -E2BIG:
                return 431;
        case -EOPNOTSUPP:
                return 501;
        default:
                CHECK(!"an error http-request.h does not name");
                return -1;
        }
}

static bool span_is(const char *p, size_t n, const char *s) {
        return n == strlen(s) && (n == 0 || memcmp(p, s, n) == 0);
}

static void check_shape(const char *buf, size_t size, const HttpRequest *req) {
        const char *head_end = buf + req->head_len;

        CHECK(req->head_len > 0 && req->head_len <= size);
        CHECK(req->head_len <= HTTP_REQUEST_HEAD_MAX);
        CHECK(buf[req->head_len - 1] == '\n');
#define INSIDE(p, n) CHECK((p) >= buf && (n) <= (size_t) (head_end - (p)))
        INSIDE(req->method, req->method_len);
        INSIDE(req->target, req->target_len);
        if (req->query)
                INSIDE(req->query, req->query_len);
#undef INSIDE
        CHECK(req->method_len > 0 && req->method == buf);
        for (size_t i = 0; i < req->method_len; i++)
                CHECK(req->method[i] && strchr(TCHARS, req->method[i]));
        for (size_t i = 0; i < req->target_len; i++)
                CHECK(req->target[i] && req->target[i] != ' ' && !strchr(CTLS, req->target[i]));
        CHECK(req->path_len > 0 && req->path[0] == '/' && !memchr(req->path, '?', req->path_len));
        /* The path is the target's, or "/" for an absolute form without one. */
        CHECK(span_is(req->path, req->path_len, "/") ||
              (req->path >= req->target &&
               req->path + req->path_len <= req->target + req->target_len));
        CHECK(!req->query || (req->query > req->target && req->query[-1] == '?' &&
                              req->query + req->query_len == req->target + req->target_len));
        CHECK(req->version_minor <= 9);
        CHECK(!req->has_content_length || req->content_length <= (uint64_t) INT64_MAX);
        CHECK(!(req->has_content_length && req->chunked));
}

static void check_reference(const uint8_t *data, size_t size, int r, const HttpRequest *req) {
        static Ref ref;
        int code = ref_parse(data, size, &ref);

        if (code != code_of(r)) {
                fprintf(stderr, "parser says %d, reference %d\n", code_of(r), code);
                CHECK(code == code_of(r));
        }
        if (r != 0)
                return;
        CHECK(span_is(req->method, req->method_len, ref.method));
        CHECK(span_is(req->target, req->target_len, ref.target));
        CHECK(span_is(req->path, req->path_len, ref.path));
        CHECK(ref.has_query == !!req->query);
        CHECK(!req->query || span_is(req->query, req->query_len, ref.query));
        CHECK(req->version_minor == ref.minor);
        CHECK(req->has_content_length == ref.has_cl && req->content_length == ref.cl);
        CHECK(req->chunked == ref.chunked);
        CHECK(req->head_len == ref.head_len);
}

/* Up to this size every split point is tried; beyond it, a sample, which
 * keeps the fuzzer fast on inputs near the 8 KiB limit. */
#define SPLITS_ALL_MAX 1024U
#define SPLITS_SAMPLED 64U

typedef struct Splits {
        const uint8_t *data;
        size_t last;            /* the longest part: MIN(size, HTTP_REQUEST_HEAD_MAX) */
        char *buf;              /* last + 1 bytes; a part of k bytes ends where it ends */
        int r;                  /* the answer for the whole input */
        const HttpRequest *whole;
        const char *whole_reason;
} Splits;

/* Parses the first k bytes and checks the answer against the whole's.
 * Returns it. */
static int split_at(const Splits *sp, size_t k) {
        char *part = sp->buf + (sp->last + 1) - k;
        const char *reason = NULL;
        HttpRequest req;
        int rk;

        memcpy(part, sp->data, k);
        rk = http_request_parse(part, k, &req, &reason);
        if (rk == -EAGAIN)
                CHECK(k < HTTP_REQUEST_HEAD_MAX);
        else {
                CHECK(rk == sp->r);
                CHECK(rk == 0 ? http_request_same(&req, part, sp->whole, (const char *) sp->data)
                              : reason == sp->whole_reason);
        }
        return rk;
}

/* "read more" up to some k, the whole's answer from there on; the first
 * answer where status.c parses: at the end of a line or of the buffer. */
static void check_first_answer(const Splits *sp, size_t k) {
        CHECK(k > 0 && k <= sp->last);
        CHECK(sp->data[k - 1] == '\n' || k == HTTP_REQUEST_HEAD_MAX);
}

static void check_splits(const uint8_t *data, size_t size, int r, const HttpRequest *whole,
                         const char *whole_reason) {
        Splits sp = {
                .data = data,
                .last = MIN(size, (size_t) HTTP_REQUEST_HEAD_MAX),
                .r = r,
                .whole = whole,
                .whole_reason = whole_reason,
        };
        size_t lo, hi;

        sp.buf = malloc(sp.last + 1);
        CHECK(sp.buf);
        if (sp.last <= SPLITS_ALL_MAX) {
                int prev = -EAGAIN;

                for (size_t k = 0; k <= sp.last; k++) {
                        int rk = split_at(&sp, k);

                        if (rk == -EAGAIN)
                                CHECK(prev == -EAGAIN);
                        else if (prev == -EAGAIN)
                                check_first_answer(&sp, k);
                        prev = rk;
                }
                CHECK(prev == r || r == -EAGAIN);
        } else {
                /* Evenly spaced parts, then the first answer by bisection:
                 * "read more" at lo, an answer at hi. */
                lo = 0, hi = sp.last;
                CHECK(split_at(&sp, 0) == -EAGAIN);
                for (size_t i = 1; i < SPLITS_SAMPLED; i++)
                        (void) split_at(&sp, sp.last * i / SPLITS_SAMPLED);
                if (split_at(&sp, hi) == -EAGAIN)
                        CHECK(r == -EAGAIN);
                else {
                        while (hi - lo > 1) {
                                size_t mid = lo + (hi - lo) / 2;

                                if (split_at(&sp, mid) == -EAGAIN)
                                        lo = mid;
                                else
                                        hi = mid;
                        }
                        check_first_answer(&sp, hi);
                        /* Around it, and at the next line ends. */
                        for (size_t k = hi; k <= sp.last && k < hi + 64; k++)
                                CHECK(split_at(&sp, k) != -EAGAIN);
                        for (size_t k = lo; k > 0 && k + 64 > lo; k--)
                                CHECK(split_at(&sp, k) == -EAGAIN);
                }
        }
        free(sp.buf);
}

/* Writes req again with CRLF and canonical headers, and with LF and other
 * spellings; both must parse to the same request, when they fit. */
static void check_rewrite(const HttpRequest *req) {
        for (int variant = 0; variant < 2; variant++) {
                const char *eol = variant ? "\n" : "\r\n";
                const char *reason = NULL;
                HttpRequest again;
                char *s = NULL;
                size_t n;
                FILE *f;
                int r;

                f = open_memstream(&s, &n);
                CHECK(f);
                fprintf(f, "%.*s %.*s HTTP/1.%u%s", (int) req->method_len, req->method,
                        (int) req->target_len, req->target, req->version_minor, eol);
                if (variant)
                        fprintf(f, "Host:x%s", eol);
                if (req->has_content_length)
                        fprintf(f, variant ? "content-LENGTH:\t%" PRIu64 " %s"
                                           : "Content-Length: %" PRIu64 "%s",
                                req->content_length, eol);
                if (req->chunked)
                        fprintf(f, "%s%s", variant ? "TRANSFER-encoding: CHUNKED" :
                                                     "Transfer-Encoding: chunked", eol);
                fprintf(f, "%s", eol);
                CHECK(fclose(f) == 0);

                r = http_request_parse(s, n, &again, &reason);
                if (n > HTTP_REQUEST_HEAD_MAX)
                        CHECK(r == -E2BIG);
                else {
                        CHECK(r == 0 && again.head_len == n);
                        CHECK(again.method_len == req->method_len &&
                              memcmp(again.method, req->method, req->method_len) == 0);
                        CHECK(again.target_len == req->target_len &&
                              memcmp(again.target, req->target, req->target_len) == 0);
                        CHECK(again.path_len == req->path_len &&
                              memcmp(again.path, req->path, req->path_len) == 0);
                        CHECK(!again.query == !req->query && again.query_len == req->query_len &&
                              (!req->query || req->query_len == 0 ||
                               memcmp(again.query, req->query, req->query_len) == 0));
                        CHECK(again.version_minor == req->version_minor);
                        CHECK(again.has_content_length == req->has_content_length &&
                              again.content_length == req->content_length);
                        CHECK(again.chunked == req->chunked);
                }
                free(s);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *reason = NULL;
        HttpRequest req = {};
        int r;

        r = http_request_parse((const char *) data, size, &req, &reason);
        CHECK(r == 0 || r == -EAGAIN || r == -EBADMSG || r == -E2BIG || r == -EOPNOTSUPP);
        CHECK(r != -EAGAIN || size < HTTP_REQUEST_HEAD_MAX);
        CHECK(r != -E2BIG || size >= HTTP_REQUEST_HEAD_MAX);
        if (r < 0 && r != -EAGAIN) {
                CHECK(reason && *reason);
                CHECK(reason < (const char *) data || reason >= (const char *) data + size);
                CHECK(http_request_error_status(r) == code_of(r));
        } else
                CHECK(!reason);
        if (r == 0)
                check_shape((const char *) data, size, &req);

        check_reference(data, size, r, &req);
        check_splits(data, size, r, &req, reason);
        if (r == 0)
                check_rewrite(&req);
        return 0;
}
