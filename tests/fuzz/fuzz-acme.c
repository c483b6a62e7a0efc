/* SPDX-License-Identifier: MIT */
/* The ACME client against a CA that answers anything: the input is a
 * script of HTTP responses, fed one by one to a real order (acme.c) through
 * acme_order_feed_response(), so the whole flow runs on them: directory,
 * nonces, newAccount, newOrder, authorizations and the tls-alpn-01
 * challenge, polls with Retry-After, finalize with a real CSR, the chain
 * check, badNonce retries, a stale account URL, and every problem document
 * (RFC 8555 6.7) on the way. Nothing goes on the wire: each request is
 * answered by the next response before the event loop could send it.
 *
 * Input (seeds in corpus/acme are readable this way):
 *
 *   [kid URL\n]                 optional: start with a known account URL
 *   STATUS\n                    one response; "!" instead: transport error
 *   Name: value\n ...           headers (Location, Replay-Nonce, Retry-After)
 *   \n
 *   body
 *   \n%%\n                      next response ...
 *
 * Checked besides memory safety: done runs at most once, and frees the
 * order as the API allows; success comes with a chain and the account URL;
 * every challenge served is withdrawn; what is reported to the user has no
 * control characters. Each body also goes through acme_parse_problem().
 *
 * The keys are fixed, so that a seed can carry a certificate for the
 * certificate key: corpus/acme/flow-* end with a self-signed certificate
 * for test.example made with
 *   openssl req -x509 -new -key cert.key -subj /CN=test.example \
 *           -addext subjectAltName=DNS:test.example -days 36500 */

#include <curl/curl.h>
#include <gnutls/gnutls.h>

#include "acme.h"
#include "fuzz-util.h"
#include "jws.h"
#include "log.h"

#define DOMAIN "test.example"
#define MAX_RESPONSES 64
#define MAX_HEADERS 16

static const char account_key_pem[] =
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEINIrGarV6Sc+8wY/E55nGhIpK1qkhXv9ooy0rUygYLeFoAoGCCqGSM49\n"
        "AwEHoUQDQgAEv2M7dtyVLxrqk8hmNVTCvRewsStvZ0hOpglst8lBHRYzpGH4hB6K\n"
        "cyFQrQtORcMhLmg8Vtbaj6AQ5VNrNkMT5A==\n"
        "-----END EC PRIVATE KEY-----\n";
static const char cert_key_pem[] =
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEIDQ4hjRGjjRxZCzRcCkbqTf5/I16Dxl5urq2f+tCR4txoAoGCCqGSM49\n"
        "AwEHoUQDQgAEgtf5FhF2PCwUU11zz+F+1W3xELDe5jRcXbY2qKy12fOROqJK2gL+\n"
        "xubaAfXMPyObskl+uOlrxlxY5yr9Po3BHw==\n"
        "-----END EC PRIVATE KEY-----\n";

static struct {
        sd_event *event;
        HttpClient *http;
        gnutls_privkey_t account_key, cert_key;
        AcmeOrder *order;       /* NULL once done freed it */
        unsigned n_done, n_add, n_remove;
        bool serving;
} F;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        /* TLSGATE_FUZZ_DEBUG=1 shows the flow when replaying one input. */
        log_set_max_level(getenv("TLSGATE_FUZZ_DEBUG") ? LOG_DEBUG : LOG_WARNING);
        /* As tlsgate's main() does it, before the HTTP client (http.h). */
        CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
        CHECK(sd_event_new(&F.event) >= 0);
        CHECK(http_client_new(F.event, &F.http) >= 0);
        CHECK(acme_key_from_pem(account_key_pem, strlen(account_key_pem), &F.account_key) >= 0);
        CHECK(acme_key_from_pem(cert_key_pem, strlen(cert_key_pem), &F.cert_key) >= 0);
        return 0;
}

static void check_text(const char *s) {
        for (; s && *s; s++)
                CHECK((unsigned char) *s >= ' ' && *s != 0x7f);
}

static int on_challenge_add(const char *domain, const uint8_t digest[32], void *userdata) {
        CHECK(strcmp(domain, DOMAIN) == 0);
        CHECK(!F.serving);
        if (digest[0] == 0) /* one token in 256: serving the challenge fails */
                return -EADDRINUSE;
        F.serving = true;
        F.n_add++;
        return 0;
}

static void on_challenge_remove(const char *domain, void *userdata) {
        CHECK(strcmp(domain, DOMAIN) == 0);
        CHECK(F.serving);
        F.serving = false;
        F.n_remove++;
}

static void on_done(AcmeOrder *o, int error, const char *problem_type, const char *detail,
                    const AcmeResult *result, void *userdata) {
        CHECK(o == F.order);
        CHECK(F.n_done++ == 0);
        CHECK(!F.serving); /* withdrawn before done */
        if (error == 0) {
                CHECK(result && result->chain_pem && result->account_url &&
                      result->ca_directory_url && result->certificate_url);
                CHECK(!problem_type && !detail);
        } else {
                CHECK(error < 0 && !result);
                CHECK(!problem_type || error == -EREMOTEIO);
                check_text(problem_type);
                check_text(detail);
        }
        /* The callback may free the order; do it, so that using it after
         * done would show. */
        F.order = acme_order_free(o);
}

typedef struct Response {
        HttpResponse resp;
        HttpHeader headers[MAX_HEADERS];
        char *text; /* owns everything */
} Response;

/* "STATUS\nName: value\n...\n\nbody" */
static void parse_response(char *text, size_t len, Response *ret) {
        char *p = text, *end = text + len, *nl;

        *ret = (Response) { .text = text };
        nl = memchr(p, '\n', (size_t) (end - p));
        if (nl)
                *nl = 0;
        if (p[0] == '!') {
                static const int errors[] = { -ECONNREFUSED, -ETIMEDOUT, -EPERM, -EFBIG,
                                              -ECONNRESET, -EBADMSG };
                ret->resp.error = errors[(unsigned char) p[1] % ELEMENTSOF(errors)];
                ret->resp.error_message = "fuzzed transport error";
        } else
                ret->resp.status = strtol(p, NULL, 10);
        p = nl ? nl + 1 : end;
        /* Headers up to an empty line. */
        while (p < end && *p != '\n') {
                char *colon, *value;

                nl = memchr(p, '\n', (size_t) (end - p));
                if (nl)
                        *nl = 0;
                colon = strchr(p, ':');
                if (colon && ret->resp.n_headers < MAX_HEADERS) {
                        *colon = 0;
                        value = colon + 1 + strspn(colon + 1, " ");
                        ret->headers[ret->resp.n_headers++] = (HttpHeader) { p, value };
                }
                p = nl ? nl + 1 : end;
        }
        if (p < end)
                p++; /* the empty line */
        ret->resp.body = p < end ? p : "";
        ret->resp.body_size = p < end ? (size_t) (end - p) : 0; /* may hold NULs: refused */
        ret->resp.headers = ret->headers;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FuzzInput in = { data, size };
        Response responses[MAX_RESPONSES];
        _cleanup_free_ char *kid = NULL;
        size_t n = 0, len;
        char *part;
        int r;

        if (size >= 4 && memcmp(data, "kid ", 4) == 0) {
                const uint8_t *nl = memchr(data, '\n', size);
                size_t l = nl ? (size_t) (nl - data) - 4 : size - 4;

                kid = strndup((const char *) data + 4, l);
                CHECK(kid);
                in.p += 4 + l + !!nl, in.n -= 4 + l + !!nl;
        }
        while (n < MAX_RESPONSES && (part = fuzz_part(&in, &len)))
                parse_response(part, len, &responses[n++]);

        /* The problem document parser on its own. */
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *type = NULL, *detail = NULL;

                r = acme_parse_problem(responses[i].resp.body, responses[i].resp.body_size, &type,
                                       &detail);
                CHECK(r == 0 || r == -EPROTO);
                if (r == 0) {
                        CHECK(type && detail);
                        check_text(type);
                        check_text(detail);
                }
        }

        AcmeOrderParams p = {
                .directory_url = "https://ca.test:14000/dir",
                .email = "admin@example.org",
                .domain = DOMAIN,
                .account_key = F.account_key,
                .account_url = kid,
                .cert_key = F.cert_key,
                .http = F.http,
                .event = F.event,
                .challenge_add = on_challenge_add,
                .challenge_remove = on_challenge_remove,
        };
        F.n_done = F.n_add = F.n_remove = 0;
        F.serving = false;
        r = acme_order_start(&p, on_done, NULL, &F.order);
        if (r < 0) {
                /* Only a kid that is not a plausible URL string is refused. */
                CHECK(r == -EINVAL && kid);
                F.order = NULL;
        }

        for (size_t i = 0; i < n && F.order; i++) {
                r = acme_order_feed_response(F.order, &responses[i].resp);
                if (r == 1 && F.order)
                        r = acme_order_feed_response(F.order, &responses[i].resp);
                CHECK(r == 0 || r == 1 || r == -ESTALE);
                if (r == -ESTALE)
                        break;
        }
        F.order = acme_order_free(F.order); /* done is not called for this */
        CHECK(F.n_done <= 1);
        CHECK(!F.serving && F.n_add == F.n_remove);

        for (size_t i = 0; i < n; i++)
                free(responses[i].text);
        return 0;
}
