/* SPDX-License-Identifier: MIT */
/* The HTTP client against a real local server: the test writes a small
 * Python http.server script to a temporary directory, runs it (it makes a
 * throwaway CA with openssl and serves HTTP and HTTPS on 127.0.0.1), drives
 * many requests at once through one sd_event loop and checks every field.
 * Every wait is bounded by a timer; the server is killed by PID at the end.
 * Exits 77 (skipped) when python3 or openssl is missing. */

#include <curl/curl.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "build-config.h"
#include "http.h"
#include "test-util.h"
#include "util.h"

#define PYTHON "/usr/bin/python3"
#define SERVER_START_TIMEOUT_MS 15000
#define LOOP_TIMEOUT (10 * USEC_PER_SEC)

static const char server_py[] =
        "import http.server, os, shutil, ssl, subprocess, sys, threading, time\n"
        "d = sys.argv[1]\n"
        "if not shutil.which('openssl'):\n"
        "    print('SKIP', flush=True); sys.exit(0)\n"
        "def run(*a): subprocess.run(a, cwd=d, check=True, timeout=60, capture_output=True)\n"
        "def ca(name):\n"
        "    run('openssl', 'req', '-x509', '-newkey', 'ec',\n"
        "        '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',\n"
        "        '-keyout', name + '.key', '-out', name + '.pem', '-days', '2',\n"
        "        '-subj', '/CN=' + name, '-addext', 'basicConstraints=critical,CA:TRUE',\n"
        "        '-addext', 'keyUsage=critical,keyCertSign,cRLSign')\n"
        "ca('ca'); ca('other-ca')\n"
        "with open(os.path.join(d, 'server.ext'), 'w') as f:\n"
        "    f.write('subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n'\n"
        "            'extendedKeyUsage=serverAuth\\nkeyUsage=critical,digitalSignature\\n')\n"
        "run('openssl', 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',\n"
        "    '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')\n"
        "run('openssl', 'x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',\n"
        "    '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext')\n"
        "\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    protocol_version = 'HTTP/1.1'\n"
        "    def log_message(self, *a): pass\n"
        "    def reply(self, status, body=b'', headers=(), length=True):\n"
        "        self.send_response(status)\n"
        "        for k, v in headers: self.send_header(k, v)\n"
        "        if length: self.send_header('Content-Length', str(len(body)))\n"
        "        else: self.send_header('Connection', 'close'); self.close_connection = True\n"
        "        self.end_headers()\n"
        "        try:\n"
        "            if self.command != 'HEAD': self.wfile.write(body)\n"
        "        except OSError: self.close_connection = True\n"
        "    def do_HEAD(self): self.do_GET()\n"
        "    def do_GET(self):\n"
        "        p = self.path\n"
        "        if p == '/json':\n"
        "            self.reply(200, b'{\"status\":\"valid\",\"n\":42}', [\n"
        "                ('Content-Type', 'application/json'), ('Replay-Nonce', 'nonce-1'),\n"
        "                ('Link', '<https://example.test/dir>;rel=\"index\"'),\n"
        "                ('link', '<https://example.test/up>;rel=\"up\"'),\n"
        "                ('Retry-After', '120'), ('X-Padded', '  padded value \\t'),\n"
        "                ('X-Folded', 'first\\r\\n  second'), ('X-Empty', ''),\n"
        "                ('X-User-Agent', self.headers.get('User-Agent', ''))])\n"
        "        elif p == '/slow':\n"
        "            time.sleep(5); self.reply(200, b'late')\n"
        "        elif p.startswith('/bytes/'):\n"
        "            self.reply(200, b'a' * int(p[7:]))\n"
        "        elif p.startswith('/bytes-nolength/'):\n"
        "            self.reply(200, b'b' * int(p[16:]), length=False)\n"
        "        elif p.startswith('/status/'):\n"
        "            s = int(p[8:])\n"
        "            if s == 204: self.reply(204, length=False)\n"
        "            else: self.reply(s, b'{\"detail\":\"status %d\"}' % s,\n"
        "                             [('Content-Type', 'application/problem+json')])\n"
        "        elif p == '/many-headers':\n"
        "            self.reply(200, b'', [('X-H-%d' % i, 'v') for i in range(300)])\n"
        "        elif p == '/early-hints':\n"
        "            self.wfile.write(b'HTTP/1.1 103 Early Hints\\r\\nLink: </early>; rel=preload\\r\\n'\n"
        "                             b'X-Early: 1\\r\\n\\r\\n')\n"
        "            self.reply(200, b'final', [('Link', '</final>; rel=up')])\n"
        "        elif p == '/redirect':\n"
        "            self.reply(302, b'moved', [('Location', '/json'), ('X-Hop', '1')])\n"
        "        else:\n"
        "            self.reply(404, b'no such path')\n"
        "    def do_POST(self):\n"
        "        body = self.rfile.read(int(self.headers.get('Content-Length', '0')))\n"
        "        self.reply(200, body, [\n"
        "            ('Content-Type', self.headers.get('Content-Type', 'none')),\n"
        "            ('X-Method', self.command), ('X-Path', self.path),\n"
        "            ('X-Expect', self.headers.get('Expect', 'none')),\n"
        "            ('X-Test', self.headers.get('X-Test', 'none'))])\n"
        "\n"
        "class S(http.server.ThreadingHTTPServer):\n"
        "    daemon_threads = True\n"
        "    def handle_error(self, request, address): pass\n"
        "plain = S(('127.0.0.1', 0), H)\n"
        "tls = S(('127.0.0.1', 0), H)\n"
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
        "ctx.load_cert_chain(os.path.join(d, 'server.pem'), os.path.join(d, 'server.key'))\n"
        "tls.socket = ctx.wrap_socket(tls.socket, server_side=True)\n"
        "for s in (plain, tls): threading.Thread(target=s.serve_forever, daemon=True).start()\n"
        "print('READY %d %d' % (plain.server_address[1], tls.server_address[1]), flush=True)\n"
        "threading.Event().wait()\n";

/* What a callback saw, deep-copied so it can be checked after the loop.
 * Headers can only be looked up during the callback: check_headers runs
 * there, on the live response. */
typedef struct Outcome {
        unsigned calls;
        int error;
        char *error_message;
        long status;
        char *body;
        size_t body_size;
        void (*check_headers)(const HttpResponse *r);
        unsigned headers_checked;
        usec_t elapsed;                 /* since the request started */
        usec_t started;
        bool must_not_call;             /* cancelled: any call is a failure */
        void (*hook)(struct Outcome *o); /* runs inside the callback */
        void *hook_data;
} Outcome;

static struct {
        sd_event *event;
        unsigned outstanding;
        bool timed_out;
        bool stop;
        char tmpdir[256];
        char base[64];                  /* http://127.0.0.1:PORT */
        char tls_base[64];              /* https://127.0.0.1:PORT */
        char refused[64];               /* a port nobody listens on */
        pid_t server;
} T;

static void outcome_done(Outcome *o) {
        free(o->error_message);
        free(o->body);
        *o = (Outcome) {};
}

static void on_response(const HttpResponse *r, void *userdata) {
        Outcome *o = userdata;

        o->calls++;
        if (o->must_not_call) {
                CHECK(!"callback of a cancelled request was called");
                return;
        }
        if (o->calls > 1) {
                CHECK(!"callback called twice");
                return;
        }
        o->elapsed = now_usec(CLOCK_MONOTONIC) - o->started;
        o->error = r->error;
        o->error_message = r->error_message ? strdup(r->error_message) : NULL;
        o->status = r->status;
        CHECK(r->body != NULL);
        CHECK(r->body && r->body[r->body_size] == 0);
        o->body = malloc(r->body_size + 1);
        memcpy(o->body, r->body, r->body_size + 1);
        o->body_size = r->body_size;
        /* Every header comes from curl, none from the fallback list. */
        CHECK(r->headers == NULL && r->n_headers == 0);
        if (o->check_headers) {
                o->check_headers(r);
                o->headers_checked++;
        }
        if (r->error < 0)
                fprintf(stderr, "        note: a request failed: %s\n",
                        strempty(r->error_message));

        if (o->hook)
                o->hook(o);
        if (--T.outstanding == 0)
                T.stop = true;
}

static int on_loop_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        bool *fail = userdata;

        if (*fail)
                T.timed_out = true;
        T.stop = true;
        return 0;
}

/* Runs the loop until every outstanding request completed (fail_on_timeout)
 * or for exactly that long (!fail_on_timeout, to see nothing else happens). */
static unsigned run_loop(usec_t timeout, bool fail_on_timeout) {
        sd_event_source *timer = NULL;
        unsigned iterations = 0;
        int r;

        T.timed_out = false;
        r = sd_event_add_time_relative(T.event, &timer, CLOCK_MONOTONIC, timeout, 0,
                                       on_loop_timeout, &fail_on_timeout);
        CHECK_INT_EQ(r, 0);
        /* sd_event_exit() would finish the loop for good: stop by flag. */
        T.stop = fail_on_timeout && T.outstanding == 0;
        while (!T.stop && r >= 0) {
                r = sd_event_run(T.event, UINT64_MAX);
                iterations++;
        }
        CHECK(r >= 0);
        if (!CHECK(!T.timed_out))
                fprintf(stderr, "        loop timed out with %u requests outstanding\n",
                        T.outstanding);
        sd_event_source_disable_unref(timer);
        return iterations;
}

static HttpRequestHandle *submit(HttpClient *c, HttpRequest req, Outcome *o) {
        HttpRequestHandle *h = NULL;
        int r;

        o->started = now_usec(CLOCK_MONOTONIC);
        r = http_request(c, &req, on_response, o, &h);
        if (!CHECK(r == 0)) {
                fprintf(stderr, "        http_request(%s): %s\n", req.url, strerror(-r));
                return NULL;
        }
        CHECK(h != NULL);
        if (!o->must_not_call)
                T.outstanding++;
        return h;
}

static HttpRequestHandle *get(HttpClient *c, const char *base, const char *path, Outcome *o) {
        char url[256];

        snprintf(url, sizeof url, "%s%s", base, path);
        return submit(c, (HttpRequest) { .method = HTTP_GET, .url = url }, o);
}

/* ---- url_for_log (util.c) ---- */

static void check_url_for_log(const char *url, const char *expected) {
        _cleanup_free_ char *shown = NULL;

        CHECK_INT_EQ(url_for_log(url, &shown), 0);
        CHECK_STR_EQ(shown, expected);
}

static void test_url_for_log(void) {
        /* Without a password: exactly as given, even when curl would write
         * it differently or cannot parse it. */
        check_url_for_log("http://127.0.0.1:8080", "http://127.0.0.1:8080");
        check_url_for_log("https://user@m.example/a?b=c", "https://user@m.example/a?b=c");
        check_url_for_log("not a url", "not a url");
        /* With one: the password goes, the user and the rest stay. */
        check_url_for_log("https://user:s3cret@m.example:8443/ingest?x=1",
                          "https://user@m.example:8443/ingest?x=1");
        check_url_for_log("http://:s3cret@m.example/", "http://@m.example/");
        /* Refused for its scheme (config_validate()): still no password. */
        check_url_for_log("ftp://user:s3cret@m.example/", "ftp://user@m.example/");
        check_url_for_log("xyz://user:s3cret@m.example/", "xyz://user@m.example/");
}

/* ---- http_parse_retry_after ---- */

static void test_retry_after(void) {
        const time_t now = 784111717; /* Sun, 06 Nov 1994 08:48:37 GMT */
        char date[64];
        struct tm tm;
        time_t t;
        usec_t u;

        u = 1;
        CHECK_INT_EQ(http_parse_retry_after("120", now, &u), 0);
        CHECK_U64_EQ(u, 120 * USEC_PER_SEC);
        CHECK_INT_EQ(http_parse_retry_after("0", now, &u), 0);
        CHECK_U64_EQ(u, 0);
        CHECK_INT_EQ(http_parse_retry_after(" \t7 ", now, &u), 0);
        CHECK_U64_EQ(u, 7 * USEC_PER_SEC);
        CHECK_INT_EQ(http_parse_retry_after("0086400", now, &u), 0);
        CHECK_U64_EQ(u, 86400 * USEC_PER_SEC);

        /* The three HTTP-date forms (RFC 9110 section 5.6.7), 60 s after now. */
        CHECK_INT_EQ(http_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now, &u), 0);
        CHECK_U64_EQ(u, 60 * USEC_PER_SEC);
        u = 1;
        CHECK_INT_EQ(http_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now, &u), 0);
        CHECK_U64_EQ(u, 60 * USEC_PER_SEC);
        u = 1;
        CHECK_INT_EQ(http_parse_retry_after("Sun Nov  6 08:49:37 1994", now, &u), 0);
        CHECK_U64_EQ(u, 60 * USEC_PER_SEC);
        /* A date already past means "now". */
        u = 1;
        CHECK_INT_EQ(http_parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now, &u), 0);
        CHECK_U64_EQ(u, 0);
        /* Against the real clock, as the ACME client will use it. */
        t = time(NULL);
        gmtime_r(&(time_t) { t + 90 }, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        CHECK_INT_EQ(http_parse_retry_after(date, t, &u), 0);
        CHECK_U64_EQ(u, 90 * USEC_PER_SEC);

        static const char *const garbage[] = {
                "", "   ", "abc", "12abc", "-5", "+5", "1.5", "1 2", "soon", "0x10",
                "Sun, 99 Foo 1994 08:49:37 GMT",
        };
        for (size_t i = 0; i < ELEMENTSOF(garbage); i++) {
                int r;

                u = 4711;
                r = http_parse_retry_after(garbage[i], now, &u);
                if (!CHECK(r == -EINVAL))
                        fprintf(stderr, "        \"%s\" -> %d\n", garbage[i], r);
                CHECK_U64_EQ(u, 4711); /* untouched on failure */
        }
        CHECK_INT_EQ(http_parse_retry_after(NULL, now, &u), -EINVAL);
        CHECK_INT_EQ(http_parse_retry_after("99999999999999999999", now, &u), -ERANGE);
        CHECK_INT_EQ(http_parse_retry_after("18446744073709", now, &u), 0);
        CHECK_U64_EQ(u, 18446744073709 * USEC_PER_SEC);
}

/* ---- the server ---- */

static int write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        if (!f)
                return -errno;
        fputs(text, f);
        return fclose(f) == 0 ? 0 : -errno;
}

/* 1: ready, 0: skipped, -1: failed. */
static int server_start(void) {
        const char *tmp = getenv("TMPDIR");
        char script[300], line[128] = {};
        int pipefd[2], http_port = 0, tls_port = 0;
        size_t n = 0;

        snprintf(T.tmpdir, sizeof T.tmpdir, "%s/test-http-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!CHECK(mkdtemp(T.tmpdir)))
                return -1;
        snprintf(script, sizeof script, "%s/server.py", T.tmpdir);
        if (!CHECK(write_file(script, server_py) == 0))
                return -1;
        if (!CHECK(pipe2(pipefd, O_CLOEXEC) == 0))
                return -1;

        T.server = fork();
        if (T.server == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (dup2(pipefd[1], STDOUT_FILENO) < 0)
                        _exit(127);
                execl(PYTHON, "python3", script, T.tmpdir, (char *) NULL);
                _exit(127);
        }
        close(pipefd[1]);
        if (!CHECK(T.server > 0)) {
                close(pipefd[0]);
                return -1;
        }

        /* Bounded wait for "READY <http> <https>" (the CA is made first). */
        while (n < sizeof line - 1 && !strchr(line, '\n')) {
                struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
                ssize_t k;

                if (poll(&p, 1, SERVER_START_TIMEOUT_MS) <= 0)
                        break;
                k = read(pipefd[0], line + n, sizeof line - 1 - n);
                if (k <= 0)
                        break;
                n += (size_t) k;
        }
        close(pipefd[0]);
        if (startswith(line, "SKIP"))
                return 0;
        if (!CHECK(sscanf(line, "READY %d %d", &http_port, &tls_port) == 2)) {
                fprintf(stderr, "        server said \"%s\"\n", line);
                return -1;
        }
        snprintf(T.base, sizeof T.base, "http://127.0.0.1:%d", http_port);
        snprintf(T.tls_base, sizeof T.tls_base, "https://127.0.0.1:%d", tls_port);
        return 1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path) < 0 ? -1 : 0;
}

static void server_stop(void) {
        if (T.server > 0) {
                (void) kill(T.server, SIGKILL);
                (void) waitpid(T.server, NULL, 0);
                T.server = 0;
        }
        if (T.tmpdir[0])
                (void) nftw(T.tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A loopback port that refuses connections: bound, never listening. */
static int refused_port_open(void) {
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, len) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return safe_close(fd);
        snprintf(T.refused, sizeof T.refused, "http://127.0.0.1:%u/", ntohs(sa.sin_port));
        return fd;
}

/* ---- requests ---- */

static void test_bad_arguments(HttpClient *c) {
        static const char *const crlf_headers[] = { "X-A: b\r\nX-Injected: 1", NULL };
        static const char *const no_colon[] = { "X-A", NULL };
        Outcome o = { .must_not_call = true };
        HttpRequest req;

        req = (HttpRequest) { .method = HTTP_GET, .url = "ftp://127.0.0.1/x" };
        CHECK_INT_EQ(http_request(c, &req, on_response, &o, NULL), -EPROTONOSUPPORT);
        req = (HttpRequest) { .method = HTTP_GET, .url = "file:///etc/passwd" };
        CHECK_INT_EQ(http_request(c, &req, on_response, &o, NULL), -EPROTONOSUPPORT);
        req = (HttpRequest) { .method = HTTP_GET, .url = "not a url" };
        CHECK_INT_EQ(http_request(c, &req, on_response, &o, NULL), -EINVAL);
        req = (HttpRequest) { .method = HTTP_GET, .url = "http://127.0.0.1/\r\nX: y" };
        CHECK_INT_EQ(http_request(c, &req, on_response, &o, NULL), -EINVAL);
        req = (HttpRequest) { .method = HTTP_GET, .url = T.base, .body = "x", .body_size = 1 };
        CHECK_INT_EQ(http_request(c, &req, on_response, &o, NULL), -EINVAL);
        req = (HttpRequest) { .method = HTTP_POST, .url = T.base, .body_size = 1 };
        CHECK_INT_EQ(http_request(c, &req, on_response, &o, NULL), -EINVAL);
        req = (HttpRequest) { .method = HTTP_POST, .url = T.base, .content_type = "a\nb" };
        CHECK_INT_EQ(http_request(c, &req, on_response, &o, NULL), -EINVAL);
        req = (HttpRequest) { .method = HTTP_GET, .url = T.base, .extra_headers = crlf_headers };
        CHECK_INT_EQ(http_request(c, &req, on_response, &o, NULL), -EINVAL);
        req = (HttpRequest) { .method = HTTP_GET, .url = T.base, .extra_headers = no_colon };
        CHECK_INT_EQ(http_request(c, &req, on_response, &o, NULL), -EINVAL);
        req = (HttpRequest) { .method = _HTTP_METHOD_MAX, .url = T.base };
        CHECK_INT_EQ(http_request(c, &req, on_response, &o, NULL), -EINVAL);
        req = (HttpRequest) { .method = HTTP_GET, .url = T.base };
        CHECK_INT_EQ(http_request(c, &req, NULL, &o, NULL), -EINVAL);
        CHECK_INT_EQ(http_request(NULL, &req, on_response, &o, NULL), -EINVAL);
        CHECK_INT_EQ(o.calls, 0);
}

static void check_json_headers(const HttpResponse *r) {
        static const char *const links[] = {
                "<https://example.test/dir>;rel=\"index\"",
                "<https://example.test/up>;rel=\"up\"",
        };
        size_t n = 0, i = 0;
        char ua[64];

        CHECK_STR_EQ(http_response_header(r, "Replay-Nonce"), "nonce-1");
        CHECK_STR_EQ(http_response_header(r, "replay-nonce"), "nonce-1");
        CHECK_STR_EQ(http_response_header(r, "REPLAY-NONCE"), "nonce-1");
        CHECK_STR_EQ(http_response_header(r, "Content-Type"), "application/json");
        CHECK_STR_EQ(http_response_header(r, "Retry-After"), "120");
        CHECK_STR_EQ(http_response_header(r, "X-Padded"), "padded value");
        CHECK_STR_EQ(http_response_header(r, "X-Folded"), "first second");
        CHECK_STR_EQ(http_response_header(r, "X-Empty"), "");
        CHECK_STR_EQ(http_response_header(r, "Location"), NULL);
        CHECK_STR_EQ(http_response_header(r, "Replay"), NULL);
        snprintf(ua, sizeof ua, "tlsgate/%s", PACKAGE_VERSION);
        CHECK_STR_EQ(http_response_header(r, "X-User-Agent"), ua);

        /* Link occurs twice (the second spelled "link"): both, in order
         * (a value lasts until the next lookup: compared at once). */
        for (const char *v; (v = http_response_header_next(r, "link", &i)) && n < 4; n++)
                CHECK_STR_EQ(v, n < ELEMENTSOF(links) ? links[n] : "(one Link too many)");
        CHECK_INT_EQ(n, 2);
        CHECK_STR_EQ(http_response_header_next(r, "Link", &i), NULL);
}

static void check_post_headers(const HttpResponse *r) {
        CHECK_STR_EQ(http_response_header(r, "Content-Type"), "application/jose+json");
        CHECK_STR_EQ(http_response_header(r, "X-Method"), "POST");
        CHECK_STR_EQ(http_response_header(r, "X-Path"), "/echo");
        CHECK_STR_EQ(http_response_header(r, "X-Expect"), "none");
        CHECK_STR_EQ(http_response_header(r, "X-Test"), "yes");
}

static void check_problem_headers(const HttpResponse *r) {
        CHECK_STR_EQ(http_response_header(r, "Content-Type"), "application/problem+json");
}

static void check_redirect_headers(const HttpResponse *r) {
        CHECK_STR_EQ(http_response_header(r, "Location"), "/json");
        CHECK_STR_EQ(http_response_header(r, "X-Hop"), "1");
}

/* Only the final response's headers, none of the redirect's. */
static void check_followed_headers(const HttpResponse *r) {
        CHECK_STR_EQ(http_response_header(r, "Location"), NULL);
        CHECK_STR_EQ(http_response_header(r, "X-Hop"), NULL);
        check_json_headers(r);
}

/* After a 103 (Early Hints): the final response's headers only. */
static void check_early_hints_headers(const HttpResponse *r) {
        size_t i = 0;

        CHECK_STR_EQ(http_response_header_next(r, "Link", &i), "</final>; rel=up");
        CHECK_STR_EQ(http_response_header_next(r, "Link", &i), NULL);
        CHECK_STR_EQ(http_response_header(r, "X-Early"), NULL);
}

/* Refused before any response: no headers at all. */
static void check_no_headers(const HttpResponse *r) {
        size_t i = 0;

        CHECK_STR_EQ(http_response_header(r, "Content-Type"), NULL);
        CHECK_STR_EQ(http_response_header_next(r, "Link", &i), NULL);
}

/* A request started from inside another request's callback. */
static void hook_chain(Outcome *o) {
        get(o->hook_data, T.base, "/json", o + 1);
}

/* Cancels a pending request from inside another request's callback. */
static void hook_cancel(Outcome *o) {
        HttpRequestHandle **h = o->hook_data;

        http_request_cancel(*h);
        *h = NULL;
}

static void test_many(HttpClient *c) {
        enum {
                JSON, HEAD_JSON, POST, NO_CONTENT, NOT_FOUND, SERVER_ERROR, EXACT, ONE_OVER,
                ONE_OVER_NOLENGTH, BIG, BIG_NOLENGTH, SLOW, REFUSED, MANY_HEADERS, REDIRECT,
                REDIRECT_FOLLOWED, CHAINING, CHAINED, CANCELLED, NO_LIMIT, CANCELLED_AT_ONCE,
                EARLY_HINTS, _MAX,
        };
        static const char *const extra[] = { "X-Test: yes", NULL };
        Outcome o[_MAX] = {};
        HttpRequestHandle *h;
        HttpRequestHandle *to_cancel;
        size_t post_size = 100 * 1024;
        char *post_body = malloc(post_size);
        char url[256];

        for (size_t i = 0; i < post_size; i++)
                post_body[i] = (char) (i * 7); /* binary, NULs included */
        o[JSON].check_headers = o[CHAINED].check_headers = check_json_headers;
        o[HEAD_JSON].check_headers = check_json_headers;
        o[POST].check_headers = check_post_headers;
        o[NOT_FOUND].check_headers = check_problem_headers;
        o[REDIRECT].check_headers = check_redirect_headers;
        o[REDIRECT_FOLLOWED].check_headers = check_followed_headers;
        o[REFUSED].check_headers = check_no_headers;
        o[EARLY_HINTS].check_headers = check_early_hints_headers;

        get(c, T.base, "/json", &o[JSON]);
        snprintf(url, sizeof url, "%s/json", T.base);
        submit(c, (HttpRequest) { .method = HTTP_HEAD, .url = url }, &o[HEAD_JSON]);
        snprintf(url, sizeof url, "%s/echo", T.base);
        submit(c, (HttpRequest) {
                .method = HTTP_POST, .url = url, .body = post_body, .body_size = post_size,
                .content_type = "application/jose+json", .extra_headers = extra,
        }, &o[POST]);
        free(post_body); /* copied by http_request() */
        post_body = NULL;
        o[CHAINING].hook = hook_chain;
        o[CHAINING].hook_data = c;
        get(c, T.base, "/status/204", &o[CHAINING]);
        get(c, T.base, "/status/204", &o[NO_CONTENT]);
        o[NOT_FOUND].hook = hook_cancel;
        o[NOT_FOUND].hook_data = &to_cancel;
        get(c, T.base, "/status/404", &o[NOT_FOUND]);
        get(c, T.base, "/status/500", &o[SERVER_ERROR]);
        snprintf(url, sizeof url, "%s/bytes/1000", T.base);
        submit(c, (HttpRequest) { .url = url, .max_response_size = 1000 }, &o[EXACT]);
        snprintf(url, sizeof url, "%s/bytes/1001", T.base);
        submit(c, (HttpRequest) { .url = url, .max_response_size = 1000 }, &o[ONE_OVER]);
        snprintf(url, sizeof url, "%s/bytes-nolength/1001", T.base);
        submit(c, (HttpRequest) { .url = url, .max_response_size = 1000 }, &o[ONE_OVER_NOLENGTH]);
        snprintf(url, sizeof url, "%s/bytes/10", T.base);
        submit(c, (HttpRequest) { .url = url, .max_response_size = SIZE_MAX }, &o[NO_LIMIT]);
        get(c, T.base, "/bytes/2097152", &o[BIG]);
        get(c, T.base, "/bytes-nolength/2097152", &o[BIG_NOLENGTH]);
        snprintf(url, sizeof url, "%s/slow", T.base);
        submit(c, (HttpRequest) { .url = url, .timeout = 300 * USEC_PER_MSEC }, &o[SLOW]);
        get(c, T.refused, "", &o[REFUSED]);
        get(c, T.base, "/many-headers", &o[MANY_HEADERS]);
        get(c, T.base, "/redirect", &o[REDIRECT]);
        get(c, T.base, "/early-hints", &o[EARLY_HINTS]);
        snprintf(url, sizeof url, "%s/redirect", T.base);
        submit(c, (HttpRequest) { .url = url, .follow_redirects = true }, &o[REDIRECT_FOLLOWED]);
        /* Cancelled from the 404's callback, while in flight. */
        o[CANCELLED].must_not_call = true;
        to_cancel = get(c, T.base, "/slow", &o[CANCELLED]);
        /* Cancelled before the loop even ran. */
        o[CANCELLED_AT_ONCE].must_not_call = true;
        h = get(c, T.base, "/json", &o[CANCELLED_AT_ONCE]);
        http_request_cancel(h);
        http_request_cancel(NULL);

        run_loop(LOOP_TIMEOUT, true);
        CHECK(to_cancel == NULL);

        for (size_t i = 0; i < _MAX; i++)
                if (!CHECK(o[i].calls == (o[i].must_not_call ? 0U : 1U)))
                        fprintf(stderr, "        request #%zu: %u calls\n", i, o[i].calls);

        /* 200 with a JSON body and ACME's headers. */
        CHECK_INT_EQ(o[JSON].error, 0);
        CHECK_STR_EQ(o[JSON].error_message, NULL);
        CHECK_INT_EQ(o[JSON].status, 200);
        CHECK_STR_EQ(o[JSON].body, "{\"status\":\"valid\",\"n\":42}");
        CHECK_INT_EQ(o[JSON].body_size, strlen("{\"status\":\"valid\",\"n\":42}"));
        CHECK_INT_EQ(o[JSON].headers_checked, 1);
        CHECK_INT_EQ(o[CHAINED].headers_checked, 1);
        CHECK_INT_EQ(o[CHAINED].status, 200);

        CHECK_INT_EQ(o[HEAD_JSON].error, 0);
        CHECK_INT_EQ(o[HEAD_JSON].status, 200);
        CHECK_INT_EQ(o[HEAD_JSON].body_size, 0);
        CHECK_STR_EQ(o[HEAD_JSON].body, "");
        CHECK_INT_EQ(o[HEAD_JSON].headers_checked, 1);

        /* The POST echo: body byte for byte, content type, no Expect. */
        CHECK_INT_EQ(o[POST].error, 0);
        CHECK_INT_EQ(o[POST].status, 200);
        CHECK_INT_EQ(o[POST].body_size, post_size);
        if (o[POST].body_size == post_size) {
                size_t i = 0;

                while (i < post_size && o[POST].body[i] == (char) (i * 7))
                        i++;
                CHECK_INT_EQ(i, post_size); /* the first byte that differs */
        }
        CHECK_INT_EQ(o[POST].headers_checked, 1);

        /* HTTP error statuses are responses, not errors. */
        CHECK_INT_EQ(o[NO_CONTENT].error, 0);
        CHECK_INT_EQ(o[NO_CONTENT].status, 204);
        CHECK_INT_EQ(o[NO_CONTENT].body_size, 0);
        CHECK_INT_EQ(o[CHAINING].status, 204);
        CHECK_INT_EQ(o[NOT_FOUND].error, 0);
        CHECK_INT_EQ(o[NOT_FOUND].status, 404);
        CHECK_STR_EQ(o[NOT_FOUND].body, "{\"detail\":\"status 404\"}");
        CHECK_INT_EQ(o[NOT_FOUND].headers_checked, 1);
        CHECK_INT_EQ(o[SERVER_ERROR].error, 0);
        CHECK_INT_EQ(o[SERVER_ERROR].status, 500);
        CHECK_STR_EQ(o[SERVER_ERROR].body, "{\"detail\":\"status 500\"}");

        /* Size limits: exactly the limit passes, one byte more does not,
         * announced by Content-Length or not. */
        CHECK_INT_EQ(o[EXACT].error, 0);
        CHECK_INT_EQ(o[EXACT].body_size, 1000);
        CHECK(o[EXACT].body_size == 1000 && o[EXACT].body[999] == 'a');
        CHECK_INT_EQ(o[NO_LIMIT].error, 0);
        CHECK_STR_EQ(o[NO_LIMIT].body, "aaaaaaaaaa");
        CHECK_INT_EQ(o[ONE_OVER].error, -EFBIG);
        CHECK_INT_EQ(o[ONE_OVER_NOLENGTH].error, -EFBIG);
        CHECK_INT_EQ(o[BIG].error, -EFBIG);
        CHECK_INT_EQ(o[BIG_NOLENGTH].error, -EFBIG);
        CHECK(o[BIG_NOLENGTH].body_size <= HTTP_RESPONSE_SIZE_DEFAULT);
        CHECK(o[BIG].error_message != NULL);
        CHECK(o[BIG_NOLENGTH].error_message != NULL);
        CHECK_INT_EQ(o[MANY_HEADERS].error, -EFBIG);

        /* The server sleeps 5 s; the 300 ms timeout wins. */
        CHECK_INT_EQ(o[SLOW].error, -ETIMEDOUT);
        CHECK(o[SLOW].error_message != NULL);
        CHECK(o[SLOW].elapsed >= 250 * USEC_PER_MSEC);
        if (!CHECK(o[SLOW].elapsed < 2 * USEC_PER_SEC))
                fprintf(stderr, "        took %llu ms\n",
                        (unsigned long long) (o[SLOW].elapsed / USEC_PER_MSEC));

        CHECK_INT_EQ(o[REFUSED].error, -ECONNREFUSED);
        CHECK(o[REFUSED].error_message != NULL);
        CHECK_INT_EQ(o[REFUSED].status, 0);
        CHECK_INT_EQ(o[REFUSED].headers_checked, 1);

        /* No redirects unless asked; then only the final response's headers. */
        CHECK_INT_EQ(o[REDIRECT].error, 0);
        CHECK_INT_EQ(o[REDIRECT].status, 302);
        CHECK_INT_EQ(o[REDIRECT].headers_checked, 1);
        CHECK_STR_EQ(o[REDIRECT].body, "moved");
        CHECK_INT_EQ(o[REDIRECT_FOLLOWED].error, 0);
        CHECK_INT_EQ(o[REDIRECT_FOLLOWED].status, 200);
        CHECK_INT_EQ(o[REDIRECT_FOLLOWED].headers_checked, 1);

        CHECK_INT_EQ(o[EARLY_HINTS].error, 0);
        CHECK_INT_EQ(o[EARLY_HINTS].status, 200);
        CHECK_STR_EQ(o[EARLY_HINTS].body, "final");
        CHECK_INT_EQ(o[EARLY_HINTS].headers_checked, 1);

        for (size_t i = 0; i < _MAX; i++)
                outcome_done(&o[i]);
}

/* ---- HTTPS and SSL_CERT_FILE ---- */

static int https_get(const char *ca_file, Outcome *o) {
        _cleanup_(http_client_freep) HttpClient *c = NULL;
        char path[300];
        int r;

        if (ca_file) {
                snprintf(path, sizeof path, "%s/%s", T.tmpdir, ca_file);
                setenv("SSL_CERT_FILE", path, 1);
        } else
                unsetenv("SSL_CERT_FILE");
        r = http_client_new(T.event, &c);
        unsetenv("SSL_CERT_FILE");
        if (!CHECK(r == 0))
                return r;
        get(c, T.tls_base, "/json", o);
        run_loop(LOOP_TIMEOUT, true);
        return 0;
}

static void test_https(void) {
        Outcome o = { .check_headers = check_json_headers };

        /* Trusting the test CA through SSL_CERT_FILE. */
        https_get("ca.pem", &o);
        CHECK_INT_EQ(o.calls, 1);
        CHECK_INT_EQ(o.error, 0);
        CHECK_INT_EQ(o.status, 200);
        CHECK_INT_EQ(o.headers_checked, 1);
        outcome_done(&o);

        /* Another CA: verification fails. */
        https_get("other-ca.pem", &o);
        CHECK_INT_EQ(o.calls, 1);
        CHECK_INT_EQ(o.error, -EPERM);
        CHECK(o.error_message != NULL);
        CHECK_INT_EQ(o.status, 0);
        outcome_done(&o);

        /* The system trust store does not know the test CA either. */
        https_get(NULL, &o);
        CHECK_INT_EQ(o.calls, 1);
        CHECK_INT_EQ(o.error, -EPERM);
        outcome_done(&o);

        /* A CA file that cannot be read. */
        https_get("missing.pem", &o);
        CHECK_INT_EQ(o.calls, 1);
        CHECK_INT_EQ(o.error, -EINVAL);
        outcome_done(&o);
}

/* ---- freeing with requests in flight ---- */

static void test_free_pending(void) {
        HttpClient *c = NULL;
        Outcome o = { .must_not_call = true };
        unsigned n;

        CHECK_INT_EQ(http_client_new(T.event, &c), 0);
        get(c, T.base, "/slow", &o);
        /* Connected, waiting for the answer: a handful of wake-ups, no spinning. */
        n = run_loop(300 * USEC_PER_MSEC, false);
        if (!CHECK(n < 20))
                fprintf(stderr, "        %u loop iterations while idle\n", n);
        c = http_client_free(c);
        CHECK(c == NULL);
        run_loop(100 * USEC_PER_MSEC, false);
        CHECK_INT_EQ(o.calls, 0);
}

static void hook_free_client(Outcome *o) {
        HttpClient **c = o->hook_data;

        *c = http_client_free(*c);
}

static void test_free_in_callback(void) {
        HttpClient *c = NULL;
        Outcome first = { .hook = hook_free_client, .hook_data = &c };
        Outcome slow = { .must_not_call = true };

        CHECK_INT_EQ(http_client_new(T.event, &c), 0);
        get(c, T.base, "/slow", &slow);
        get(c, T.base, "/status/204", &first);
        run_loop(LOOP_TIMEOUT, true);
        CHECK(c == NULL);
        CHECK_INT_EQ(first.calls, 1);
        CHECK_INT_EQ(first.status, 204);
        run_loop(100 * USEC_PER_MSEC, false);
        CHECK_INT_EQ(slow.calls, 0);
        outcome_done(&first);
}

int main(void) {
        HttpClient *c = NULL;
        int refused_fd, r;

        /* As main() does it: once, before anything uses curl (http.h). */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "curl_global_init() failed\n");
                return EXIT_FAILURE;
        }
        test_retry_after();
        test_url_for_log();

        /* Requests go to loopback directly, whatever the environment says. */
        static const char *const proxies[] = {
                "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
        };
        for (size_t i = 0; i < ELEMENTSOF(proxies); i++)
                unsetenv(proxies[i]);
        unsetenv("SSL_CERT_FILE");
        signal(SIGPIPE, SIG_IGN);

        if (access(PYTHON, X_OK) < 0) {
                printf("skipping the server tests: no %s\n", PYTHON);
                test_summary();
                curl_global_cleanup();
                return 77;
        }
        r = server_start();
        if (r == 0) {
                printf("skipping the server tests: no openssl\n");
                server_stop();
                test_summary();
                curl_global_cleanup();
                return 77;
        }
        if (r > 0) {
                refused_fd = refused_port_open();
                CHECK(refused_fd >= 0);
                CHECK_INT_EQ(sd_event_new(&T.event), 0);

                CHECK_INT_EQ(http_client_new(T.event, &c), 0);
                test_bad_arguments(c);
                test_many(c);
                c = http_client_free(c);

                test_https();
                test_free_pending();
                test_free_in_callback();

                T.event = sd_event_unref(T.event);
                safe_close(refused_fd);
        }
        server_stop();
        curl_global_cleanup();
        return test_summary();
}
