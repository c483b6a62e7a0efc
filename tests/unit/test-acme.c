/* SPDX-License-Identifier: MIT */
/* The ACME client against the real Pebble (docs/HACKING.md, "Pebble on
 * loopback for the tests"): the test makes a throwaway CA for Pebble's HTTPS
 * with openssl, starts pebble-challtestsrv as mock DNS and three Pebbles on
 * loopback ports below the ephemeral range, and drives orders through one
 * sd_event loop:
 *
 *   A  PEBBLE_VA_ALWAYS_VALID=1: fresh issuance (timed), a second order with
 *      the known account, CA refusals, cancellation
 *   B  ALWAYS_VALID, PEBBLE_WFE_NONCEREJECT=50, PEBBLE_AUTHZREUSE=100:
 *      badNonce retries, an account URL the CA does not know, authz reuse
 *   C  real validation: first nobody answers (invalid authorization), then
 *      a GnuTLS thread here serves the tls-alpn-01 certificate built from
 *      the digest acme.c hands out, so Pebble checks that digest for real
 *
 * Every wait is bounded; the daemons are killed by PID at the end. Exits 77
 * (skipped) when pebble, pebble-challtestsrv or openssl is missing. */

#include <curl/curl.h>
#include <fcntl.h>
#include <ftw.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "acme.h"
#include "jws.h"
#include "log.h"
#include "test-util.h"
#include "util.h"

#define DOMAIN "test.example"
#define ORDER_TIMEOUT (60 * USEC_PER_SEC)
#define START_TIMEOUT (20 * USEC_PER_SEC)
#define CMD_TIMEOUT_MS 60000
#define ACME_IDENTIFIER_OID "1.3.6.1.5.5.7.1.31" /* RFC 8737 section 6.1 */
#define P256_BITS GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1)

typedef struct Pebble {
        const char *name;
        const char *const *env;         /* NAME=value, NULL-terminated */
        int port, mgmt, tls, http;
        pid_t pid;
        char dir_url[80];
        char *root_pem;                 /* its root, from the management port */
} Pebble;

static struct {
        sd_event *event;
        HttpClient *http;
        bool stop;
        char tmpdir[256];
        pid_t dns_pid;
        int dns_port, cts_port, closed_port;
        Pebble a, b, c;
} T;

static const char *const env_a[] = {
        "PEBBLE_VA_NOSLEEP=1", "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_WFE_NONCEREJECT=0",
        "PEBBLE_AUTHZREUSE=0", NULL,
};
static const char *const env_b[] = {
        "PEBBLE_VA_NOSLEEP=1", "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_WFE_NONCEREJECT=50",
        "PEBBLE_AUTHZREUSE=100", NULL,
};
static const char *const env_c[] = {
        "PEBBLE_VA_NOSLEEP=1", "PEBBLE_VA_ALWAYS_VALID=0", "PEBBLE_WFE_NONCEREJECT=0",
        "PEBBLE_AUTHZREUSE=0", NULL,
};

static bool find_program(const char *name) {
        const char *path = getenv("PATH") ?: "/usr/bin:/bin";
        char buf[512];

        for (const char *p = path; *p;) {
                size_t l = strcspn(p, ":");

                snprintf(buf, sizeof buf, "%.*s/%s", (int) l, p, name);
                if (access(buf, X_OK) == 0)
                        return true;
                p += l + (p[l] == ':');
        }
        return false;
}

/* ---- processes ---- */

/* Forks name with argv; stdout and stderr go to tmpdir/log. */
static pid_t spawn(const char *const argv[], const char *const env[], const char *log) {
        char path[300];
        pid_t pid;

        snprintf(path, sizeof path, "%s/%s", T.tmpdir, log);
        pid = fork();
        if (pid == 0) {
                int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0 ||
                    chdir(T.tmpdir) < 0)
                        _exit(127);
                for (size_t i = 0; env && env[i]; i++)
                        putenv((char *) env[i]);
                execvp(argv[0], (char *const *) argv);
                _exit(127);
        }
        return pid;
}

/* Waits at most timeout_ms for pid; kills it if it takes longer. */
static int wait_bounded(pid_t pid, int timeout_ms) {
        int status;

        for (int waited = 0;; waited += 10) {
                pid_t r = waitpid(pid, &status, WNOHANG);

                if (r == pid)
                        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                if (r < 0)
                        return -1;
                if (waited >= timeout_ms) {
                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, NULL, 0);
                        return -1;
                }
                (void) poll(NULL, 0, 10);
        }
}

static int run(const char *const argv[]) {
        pid_t pid = spawn(argv, NULL, "commands.log");

        return pid > 0 ? wait_bounded(pid, CMD_TIMEOUT_MS) : -1;
}

static void stop(pid_t *pid) {
        if (*pid <= 0)
                return;
        (void) kill(*pid, SIGTERM);
        (void) wait_bounded(*pid, 5000); /* reaps it, with SIGKILL if need be */
        *pid = 0;
}

static void dump_log(const char *name) {
        char path[300], line[512];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", T.tmpdir, name);
        f = fopen(path, "re");
        if (!f)
                return;
        fprintf(stderr, "---- %s ----\n", name);
        while (fgets(line, sizeof line, f))
                fprintf(stderr, "    %s", line);
        fclose(f);
}

/* ---- ports ---- */

static bool port_free(int port, int type) {
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_port = htons((uint16_t) port),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
        bool ok = fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0;

        safe_close(fd);
        return ok;
}

/* A free TCP+UDP port below the ephemeral range, so that no outgoing
 * connection takes it before the daemon binds it. */
static int pick_port(void) {
        static int picked[32];
        static unsigned n_picked;
        unsigned lo = 32768, hi;
        FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");

        if (f) {
                if (fscanf(f, "%u %u", &lo, &hi) != 2)
                        lo = 32768;
                fclose(f);
        }
        if (lo <= 10100)
                lo = 32768;
        for (unsigned tries = 0; tries < 1000; tries++) {
                int p = 10000 + rand() % (int) (lo - 10000);
                bool dup = false;

                for (unsigned i = 0; i < n_picked; i++)
                        dup = dup || picked[i] == p;
                if (dup || !port_free(p, SOCK_STREAM) || !port_free(p, SOCK_DGRAM))
                        continue;
                if (n_picked < ELEMENTSOF(picked))
                        picked[n_picked++] = p;
                return p;
        }
        return -1;
}

/* ---- the loop ---- */

static int on_loop_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        *(bool *) userdata = true;
        T.stop = true;
        return 0;
}

/* Runs until T.stop or timeout; true if it timed out. */
static bool run_loop(usec_t timeout) {
        sd_event_source *timer = NULL;
        bool timed_out = false;
        int r;

        r = sd_event_add_time_relative(T.event, &timer, CLOCK_MONOTONIC, timeout, 0,
                                       on_loop_timeout, &timed_out);
        if (r < 0)
                abort();
        while (!T.stop && r >= 0)
                r = sd_event_run(T.event, UINT64_MAX);
        sd_event_source_disable_unref(timer);
        T.stop = false;
        return timed_out;
}

typedef struct Fetch {
        bool done;
        int error;
        long status;
        char *body;
} Fetch;

static void on_fetch(const HttpResponse *r, void *userdata) {
        Fetch *f = userdata;

        f->done = true;
        f->error = r->error;
        f->status = r->status;
        f->body = strdup(r->body);
        T.stop = true;
}

/* GET url; the body if it answered with want_status, else NULL. */
static char *fetch(const char *url, long want_status) {
        HttpRequestHandle *h = NULL;
        Fetch f = {};

        if (http_request(T.http, &(HttpRequest) { .url = url, .timeout = 5 * USEC_PER_SEC },
                         on_fetch, &f, &h) < 0)
                return NULL;
        while (!f.done)
                if (run_loop(10 * USEC_PER_SEC)) {
                        http_request_cancel(h); /* not reached: the request times out first */
                        return NULL;
                }
        if (f.error == 0 && f.status == want_status)
                return f.body;
        free(f.body);
        return NULL;
}

static bool wait_for(const char *url, long want_status) {
        for (usec_t end = now_usec(CLOCK_MONOTONIC) + START_TIMEOUT; now_usec(CLOCK_MONOTONIC) < end;) {
                char *b = fetch(url, want_status);

                if (b) {
                        free(b);
                        return true;
                }
                (void) poll(NULL, 0, 50);
        }
        return false;
}

/* ---- setup ---- */

static bool make_wfe_certs(void) {
        static const char ext[] = "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                  "extendedKeyUsage=serverAuth\n";
        const char *const ca[] = { "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                   "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                                   "/CN=pebble wfe test CA", "-keyout", "ca.key", "-out",
                                   "ca.pem", NULL };
        const char *const csr[] = { "openssl", "req", "-newkey", "ec", "-pkeyopt",
                                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                                    "-keyout", "wfe.key", "-out", "wfe.csr", NULL };
        const char *const sign[] = { "openssl", "x509", "-req", "-in", "wfe.csr", "-CA", "ca.pem",
                                     "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                                     "-extfile", "wfe.ext", "-out", "wfe.pem", NULL };
        char path[300];
        FILE *f;

        snprintf(path, sizeof path, "%s/wfe.ext", T.tmpdir);
        f = fopen(path, "we");
        if (!f)
                return false;
        fputs(ext, f);
        fclose(f);
        return run(ca) == 0 && run(csr) == 0 && run(sign) == 0;
}

static bool pebble_start(Pebble *p) {
        json_object *cfg = json_object_new_object(), *pb = json_object_new_object();
        char path[300], listen[64], mgmt[64], file[300], dns[64], url[80];
        bool ok;

        p->port = pick_port();
        p->mgmt = pick_port();
        p->tls = pick_port();
        p->http = pick_port();
        snprintf(listen, sizeof listen, "127.0.0.1:%d", p->port);
        snprintf(mgmt, sizeof mgmt, "127.0.0.1:%d", p->mgmt);
        json_object_object_add(cfg, "pebble", pb);
        json_object_object_add(pb, "listenAddress", json_object_new_string(listen));
        json_object_object_add(pb, "managementListenAddress", json_object_new_string(mgmt));
        snprintf(file, sizeof file, "%s/wfe.pem", T.tmpdir);
        json_object_object_add(pb, "certificate", json_object_new_string(file));
        snprintf(file, sizeof file, "%s/wfe.key", T.tmpdir);
        json_object_object_add(pb, "privateKey", json_object_new_string(file));
        json_object_object_add(pb, "httpPort", json_object_new_int(p->http));
        json_object_object_add(pb, "tlsPort", json_object_new_int(p->tls));
        json_object_object_add(pb, "ocspResponderURL", json_object_new_string(""));
        json_object_object_add(pb, "externalAccountBindingRequired", json_object_new_boolean(0));
        snprintf(path, sizeof path, "%s/pebble-%s.json", T.tmpdir, p->name);
        ok = json_object_to_file_ext(path, cfg, JSON_C_TO_STRING_PRETTY) == 0;
        json_object_put(cfg);
        if (!ok)
                return false;

        snprintf(dns, sizeof dns, "127.0.0.1:%d", T.dns_port);
        snprintf(file, sizeof file, "pebble-%s.log", p->name);
        const char *const argv[] = { "pebble", "-config", path, "-dnsserver", dns, NULL };
        p->pid = spawn(argv, p->env, file);
        snprintf(p->dir_url, sizeof p->dir_url, "https://127.0.0.1:%d/dir", p->port);
        if (p->pid <= 0 || !wait_for(p->dir_url, 200)) {
                dump_log(file);
                return false;
        }
        snprintf(url, sizeof url, "https://127.0.0.1:%d/roots/0", p->mgmt);
        if (!(p->root_pem = fetch(url, 200)))
                return false;
        return true;
}

static bool setup(void) {
        const char *tmp = getenv("TMPDIR");
        char cts[64], dns[64], path[300], url[80];
        int r;

        snprintf(T.tmpdir, sizeof T.tmpdir, "%s/test-acme-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!CHECK(mkdtemp(T.tmpdir)) || !CHECK(make_wfe_certs()))
                return false;

        T.dns_port = pick_port();
        T.cts_port = pick_port();
        T.closed_port = pick_port();
        snprintf(dns, sizeof dns, "127.0.0.1:%d", T.dns_port);
        snprintf(cts, sizeof cts, "127.0.0.1:%d", T.cts_port);
        /* An empty IPv6 default (the validator would dial the AAAA answer
         * first) and an explicit -management (the default is a fixed port). */
        const char *const argv[] = { "pebble-challtestsrv", "-dns01", dns, "-http01", "",
                                     "-https01", "", "-tlsalpn01", "", "-management", cts,
                                     "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", NULL };
        T.dns_pid = spawn(argv, NULL, "challtestsrv.log");
        if (!CHECK(T.dns_pid > 0))
                return false;

        /* http.h trusts SSL_CERT_FILE instead of the system store. */
        snprintf(path, sizeof path, "%s/ca.pem", T.tmpdir);
        setenv("SSL_CERT_FILE", path, 1);
        CHECK_INT_EQ(sd_event_new(&T.event), 0);
        r = http_client_new(T.event, &T.http);
        if (!CHECK(r == 0))
                return false;

        snprintf(url, sizeof url, "http://%s/", cts);
        if (!CHECK(wait_for(url, 404))) {
                dump_log("challtestsrv.log");
                return false;
        }
        T.a = (Pebble) { .name = "a", .env = env_a };
        T.b = (Pebble) { .name = "b", .env = env_b };
        T.c = (Pebble) { .name = "c", .env = env_c };
        return CHECK(pebble_start(&T.a)) && CHECK(pebble_start(&T.b)) &&
               CHECK(pebble_start(&T.c));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path) < 0 ? -1 : 0;
}

static void teardown(void) {
        stop(&T.a.pid);
        stop(&T.b.pid);
        stop(&T.c.pid);
        stop(&T.dns_pid);
        T.http = http_client_free(T.http);
        T.event = sd_event_unref(T.event);
        free(T.a.root_pem);
        free(T.b.root_pem);
        free(T.c.root_pem);
        if (T.tmpdir[0] && !getenv("TEST_ACME_KEEP"))
                (void) nftw(T.tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the tls-alpn-01 responder for Pebble C (RFC 8737 section 3) ---- */

static struct {
        pthread_mutex_t lock;
        gnutls_certificate_credentials_t cred; /* NULL: nothing to serve */
        int fd;
        unsigned handshakes;
        bool quit;
} R = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -EBADF };

/* What a validator wants: one DNS SAN and the critical acmeIdentifier
 * extension holding OCTET STRING(digest). */
static gnutls_certificate_credentials_t challenge_cred(const char *domain,
                                                       const uint8_t digest[32]) {
        gnutls_certificate_credentials_t cred = NULL;
        gnutls_x509_privkey_t key = NULL;
        gnutls_x509_crt_t crt = NULL;
        uint8_t ext[34] = { 0x04, 0x20 };
        time_t now = time(NULL);
        bool ok;

        memcpy(ext + 2, digest, 32);
        ok = gnutls_x509_privkey_init(&key) >= 0 && gnutls_x509_crt_init(&crt) >= 0 &&
             gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, P256_BITS, 0) >= 0 &&
             gnutls_x509_crt_set_version(crt, 3) >= 0 &&
             gnutls_x509_crt_set_serial(crt, "\x01", 1) >= 0 &&
             gnutls_x509_crt_set_activation_time(crt, now - 3600) >= 0 &&
             gnutls_x509_crt_set_expiration_time(crt, now + 3600) >= 0 &&
             gnutls_x509_crt_set_key(crt, key) >= 0 &&
             gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, domain,
                                                  (unsigned) strlen(domain),
                                                  GNUTLS_FSAN_SET) >= 0 &&
             gnutls_x509_crt_set_extension_by_oid(crt, ACME_IDENTIFIER_OID, ext, sizeof ext,
                                                  1 /* critical */) >= 0 &&
             gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0) >= 0 &&
             gnutls_certificate_allocate_credentials(&cred) >= 0 &&
             gnutls_certificate_set_x509_key(cred, &crt, 1, key) >= 0;
        gnutls_x509_crt_deinit(crt);
        gnutls_x509_privkey_deinit(key);
        if (!ok && cred) {
                gnutls_certificate_free_credentials(cred);
                cred = NULL;
        }
        return cred;
}

static void responder_serve(int fd) {
        static const gnutls_datum_t alpn = { (unsigned char *) "acme-tls/1", 10 };
        gnutls_session_t s;
        int r;

        if (gnutls_init(&s, GNUTLS_SERVER) < 0)
                return;
        pthread_mutex_lock(&R.lock);
        r = R.cred ? gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, R.cred) : -1;
        if (r >= 0) {
                (void) gnutls_set_default_priority(s);
                (void) gnutls_alpn_set_protocols(s, &alpn, 1, GNUTLS_ALPN_MANDATORY);
                gnutls_transport_set_int(s, fd);
                gnutls_handshake_set_timeout(s, 5000);
                do
                        r = gnutls_handshake(s);
                while (r < 0 && !gnutls_error_is_fatal(r));
                if (r >= 0) {
                        R.handshakes++;
                        (void) gnutls_bye(s, GNUTLS_SHUT_WR);
                }
        }
        pthread_mutex_unlock(&R.lock);
        gnutls_deinit(s);
}

static void *responder_thread(void *arg) {
        while (!__atomic_load_n(&R.quit, __ATOMIC_SEQ_CST)) {
                struct pollfd p = { .fd = R.fd, .events = POLLIN };
                int fd;

                if (poll(&p, 1, 50) <= 0)
                        continue;
                fd = accept4(R.fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO,
                                  &(struct timeval) { .tv_sec = 5 }, sizeof(struct timeval));
                responder_serve(fd);
                close(fd);
        }
        return NULL;
}

static bool responder_start(int port, pthread_t *ret) {
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_port = htons((uint16_t) port),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };

        R.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (R.fd < 0 || setsockopt(R.fd, SOL_SOCKET, SO_REUSEADDR, &(int) { 1 }, sizeof(int)) < 0 ||
            bind(R.fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(R.fd, 16) < 0)
                return false;
        return pthread_create(ret, NULL, responder_thread, NULL) == 0;
}

static void responder_stop(pthread_t t) {
        __atomic_store_n(&R.quit, true, __ATOMIC_SEQ_CST);
        pthread_join(t, NULL);
        R.fd = safe_close(R.fd);
        if (R.cred)
                gnutls_certificate_free_credentials(R.cred);
        R.cred = NULL;
}

/* ---- orders ---- */

typedef struct Outcome {
        unsigned calls;
        int error;
        char *type, *detail, *chain, *account_url, *directory_url;
        json_object *account;
        AcmeStats stats;
        usec_t elapsed, started;
        unsigned adds, removes;
        bool remove_before_add;
        char *add_domain;
        uint8_t digest[32];
        bool serve;                     /* build credentials for the responder */
        bool stop_on_add;               /* stop the loop in challenge_add */
        AcmeOrder *order;
} Outcome;

static void outcome_done(Outcome *o) {
        free(o->type);
        free(o->detail);
        free(o->chain);
        free(o->account_url);
        free(o->directory_url);
        free(o->add_domain);
        json_object_put(o->account);
        acme_order_free(o->order);
        *o = (Outcome) {};
}

static int on_challenge_add(const char *domain, const uint8_t digest[32], void *userdata) {
        Outcome *o = userdata;

        o->adds++;
        free(o->add_domain);
        o->add_domain = strdup(domain);
        memcpy(o->digest, digest, 32);
        if (o->serve) {
                gnutls_certificate_credentials_t cred = challenge_cred(domain, digest);

                CHECK(cred);
                pthread_mutex_lock(&R.lock);
                if (R.cred)
                        gnutls_certificate_free_credentials(R.cred);
                R.cred = cred;
                pthread_mutex_unlock(&R.lock);
        }
        if (o->stop_on_add)
                T.stop = true;
        return 0;
}

static void on_challenge_remove(const char *domain, void *userdata) {
        Outcome *o = userdata;

        o->removes++;
        if (o->adds < o->removes)
                o->remove_before_add = true;
        CHECK_STR_EQ(domain, o->add_domain);
}

/* Frees the order first, then copies: what done is handed must outlive that. */
static void on_done(AcmeOrder *order, int error, const char *type, const char *detail,
                    const AcmeResult *result, void *userdata) {
        Outcome *o = userdata;

        o->calls++;
        o->elapsed = now_usec(CLOCK_MONOTONIC) - o->started;
        acme_order_get_stats(order, &o->stats);
        CHECK(order == o->order);
        o->order = acme_order_free(order);
        o->error = error;
        o->type = type ? strdup(type) : NULL;
        o->detail = detail ? strdup(detail) : NULL;
        CHECK((error == 0) == (result != NULL));
        if (result) {
                o->chain = strdup(result->chain_pem);
                o->account_url = result->account_url ? strdup(result->account_url) : NULL;
                o->directory_url = strdup(result->ca_directory_url);
                CHECK(result->certificate_url &&
                      startswith(result->certificate_url, "https://127.0.0.1:"));
                o->account = result->account ? json_object_get(result->account) : NULL;
        }
        T.stop = true;
}

static int order(Outcome *o, const Pebble *p, const char *domain, const char *email,
                 gnutls_privkey_t account_key, const char *account_url, gnutls_privkey_t cert_key) {
        AcmeOrderParams params = {
                .directory_url = p ? p->dir_url : NULL,
                .email = email,
                .domain = domain,
                .account_key = account_key,
                .account_url = account_url,
                .cert_key = cert_key,
                .http = T.http,
                .event = T.event,
                .challenge_add = on_challenge_add,
                .challenge_remove = on_challenge_remove,
                .userdata = o,
        };
        int r;

        o->started = now_usec(CLOCK_MONOTONIC);
        r = acme_order_start(&params, on_done, o, &o->order);
        if (r < 0)
                return r;
        CHECK_INT_EQ(o->calls, 0); /* never synchronously */
        if (!o->stop_on_add && !CHECK(!run_loop(ORDER_TIMEOUT)))
                fprintf(stderr, "        order timed out\n");
        if (o->error < 0)
                fprintf(stderr, "        note: order ended with %s: %s: %s\n", strerror(-o->error),
                        strempty(o->type), strempty(o->detail));
        return 0;
}

static gnutls_privkey_t key_new(void) {
        gnutls_privkey_t k = NULL;

        if (acme_key_generate(&k) < 0)
                abort();
        return k;
}

/* The chain parses, verifies against Pebble's root, and the leaf carries
 * exactly our name and our key. */
static void check_chain(const char *chain, const char *root, const char *domain,
                        gnutls_privkey_t cert_key) {
        gnutls_datum_t pem = { (unsigned char *) chain, (unsigned) strlen(chain) };
        gnutls_datum_t root_pem = { (unsigned char *) root, (unsigned) strlen(root) };

        gnutls_x509_trust_list_t tl = NULL;
        gnutls_x509_crt_t *crts = NULL;
        gnutls_pubkey_t ours = NULL;
        unsigned n = 0, status = ~0U, critical = 0;
        uint8_t id1[64], id2[64];
        size_t s1 = sizeof id1, s2 = sizeof id2;
        char san[256];
        size_t san_size = sizeof san;

        CHECK(startswith(chain, "-----BEGIN CERTIFICATE-----"));
        if (!CHECK(gnutls_x509_crt_list_import2(&crts, &n, &pem, GNUTLS_X509_FMT_PEM, 0) >= 0))
                return;
        CHECK(n >= 1);
        CHECK_INT_EQ(gnutls_x509_trust_list_init(&tl, 0), 0);
        CHECK(gnutls_x509_trust_list_add_trust_mem(tl, &root_pem, NULL,
                                                   GNUTLS_X509_FMT_PEM, 0, 0) == 1);
        CHECK_INT_EQ(gnutls_x509_trust_list_verify_crt(tl, crts, n, 0, &status, NULL), 0);
        CHECK_INT_EQ(status, 0);

        CHECK_INT_EQ(gnutls_x509_crt_get_subject_alt_name(crts[0], 0, san, &san_size, &critical),
                     GNUTLS_SAN_DNSNAME);
        CHECK_STR_EQ(san, domain);
        san_size = sizeof san;
        CHECK_INT_EQ(gnutls_x509_crt_get_subject_alt_name(crts[0], 1, san, &san_size, &critical),
                     GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);
        CHECK(gnutls_x509_crt_check_hostname(crts[0], domain));

        CHECK_INT_EQ(gnutls_pubkey_init(&ours), 0);
        CHECK_INT_EQ(gnutls_pubkey_import_privkey(ours, cert_key, 0, 0), 0);
        CHECK_INT_EQ(gnutls_pubkey_get_key_id(ours, GNUTLS_KEYID_USE_SHA256, id1, &s1), 0);
        CHECK_INT_EQ(gnutls_x509_crt_get_key_id(crts[0], GNUTLS_KEYID_USE_SHA256, id2, &s2), 0);
        CHECK(s1 == s2 && memcmp(id1, id2, s1) == 0);

        gnutls_pubkey_deinit(ours);
        gnutls_x509_trust_list_deinit(tl, 1);
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
}

static bool digest_nonzero(const uint8_t d[32]) {
        for (size_t i = 0; i < 32; i++)
                if (d[i])
                        return true;
        return false;
}

/* ---- the tests ---- */

static void test_bad_params(gnutls_privkey_t key) {
        Outcome o = {};

        CHECK_INT_EQ(order(&o, &T.a, DOMAIN, NULL, key, NULL, key), -EINVAL);
        CHECK_INT_EQ(order(&o, &T.a, DOMAIN, "", key, NULL, key), -EINVAL);
        CHECK_INT_EQ(order(&o, &T.a, "", "a@example.org", key, NULL, key), -EINVAL);
        CHECK_INT_EQ(order(&o, &T.a, "a b.example", "a@example.org", key, NULL, key), -EINVAL);
        CHECK_INT_EQ(order(&o, &T.a, DOMAIN, "a@example.org", NULL, NULL, key), -EINVAL);
        CHECK_INT_EQ(order(&o, &T.a, DOMAIN, "a@example.org", key, NULL, NULL), -EINVAL);
        CHECK_INT_EQ(order(&o, NULL, DOMAIN, "a@example.org", key, NULL, key), -EINVAL);
        CHECK_INT_EQ(order(&o, &T.a, DOMAIN, "a@example.org", key, "", key), -EINVAL);
        CHECK_INT_EQ(order(&o, &T.a, "*." DOMAIN, "a@example.org", key, NULL, key), -EINVAL);
        CHECK_INT_EQ(o.calls, 0);
        CHECK(o.order == NULL);
}

/* Fresh account and certificate, then a second order with the known kid. */
static void test_issue(void) {
        gnutls_privkey_t account_key = key_new(), cert_key = key_new();
        Outcome o = {}, again = {};

        CHECK_INT_EQ(order(&o, &T.a, DOMAIN, "admin@" DOMAIN, account_key, NULL, cert_key), 0);
        CHECK_INT_EQ(o.calls, 1);
        CHECK_INT_EQ(o.error, 0);
        CHECK(o.type == NULL && o.detail == NULL);
        printf("fresh issuance (new account + certificate) against Pebble: %.1f ms, "
               "%u requests, %u polls\n",
               (double) o.elapsed / 1000.0, o.stats.requests, o.stats.polls);
        if (o.chain)
                check_chain(o.chain, T.a.root_pem, DOMAIN, cert_key);
        CHECK_INT_EQ(o.adds, 1);
        CHECK_STR_EQ(o.add_domain, DOMAIN);
        CHECK(digest_nonzero(o.digest));
        CHECK_INT_EQ(o.removes, 1);
        CHECK(!o.remove_before_add);
        CHECK(o.account_url && startswith(o.account_url, "https://127.0.0.1:"));
        CHECK_STR_EQ(o.directory_url, T.a.dir_url);
        CHECK_INT_EQ(o.stats.new_account, 1);
        CHECK_INT_EQ(o.stats.new_nonce, 1);
        CHECK_INT_EQ(o.stats.bad_nonce, 0);
        if (CHECK(o.account)) {
                json_object *v;

                CHECK(json_object_object_get_ex(o.account, "status", &v) &&
                      streq(json_object_get_string(v), "valid"));
                CHECK(json_object_object_get_ex(o.account, "contact", &v) &&
                      json_object_array_length(v) == 1 &&
                      streq(json_object_get_string(json_object_array_get_idx(v, 0)),
                            "mailto:admin@" DOMAIN));
        }

        /* The known account: no newAccount, same kid, a new certificate key. */
        gnutls_privkey_t cert_key2 = key_new();
        CHECK_INT_EQ(order(&again, &T.a, "www." DOMAIN, "mailto:admin@" DOMAIN, account_key,
                           o.account_url, cert_key2), 0);
        CHECK_INT_EQ(again.error, 0);
        CHECK_INT_EQ(again.stats.new_account, 0);
        CHECK_INT_EQ(again.stats.requests - again.stats.polls,
                     o.stats.requests - o.stats.polls - 1);
        CHECK_STR_EQ(again.account_url, o.account_url);
        CHECK(again.account == NULL);
        CHECK_INT_EQ(again.adds, 1);
        CHECK_INT_EQ(again.removes, 1);
        if (again.chain)
                check_chain(again.chain, T.a.root_pem, "www." DOMAIN, cert_key2);
        printf("issuance with a known account: %.1f ms, %u requests\n",
               (double) again.elapsed / 1000.0, again.stats.requests);

        /* newAccount with a key the CA knows: the same account comes back. */
        outcome_done(&again);
        CHECK_INT_EQ(order(&again, &T.a, DOMAIN, "admin@" DOMAIN, account_key, NULL, cert_key), 0);
        CHECK_INT_EQ(again.error, 0);
        CHECK_INT_EQ(again.stats.new_account, 1);
        CHECK_STR_EQ(again.account_url, o.account_url);

        outcome_done(&again);
        outcome_done(&o);
        gnutls_privkey_deinit(cert_key2);
        gnutls_privkey_deinit(cert_key);
        gnutls_privkey_deinit(account_key);
}

static void test_refusals(void) {
        gnutls_privkey_t key = key_new(), cert_key = key_new();
        Outcome o = {};
        char url[80];

        /* Nobody listens: the transport error, with the URL in the detail. */
        snprintf(url, sizeof url, "https://127.0.0.1:%d/dir", T.closed_port);
        Pebble closed = {};
        snprintf(closed.dir_url, sizeof closed.dir_url, "%s", url);
        CHECK_INT_EQ(order(&o, &closed, DOMAIN, "a@example.org", key, NULL, cert_key), 0);
        CHECK_INT_EQ(o.calls, 1);
        CHECK_INT_EQ(o.error, -ECONNREFUSED);
        CHECK(o.type == NULL);
        CHECK_CONTAINS(o.detail, url);
        CHECK_INT_EQ(o.adds, 0);
        outcome_done(&o);

        /* A directory URL that is not a directory. */
        snprintf(closed.dir_url, sizeof closed.dir_url, "https://127.0.0.1:%d/nope", T.a.port);
        CHECK_INT_EQ(order(&o, &closed, DOMAIN, "a@example.org", key, NULL, cert_key), 0);
        CHECK(o.error < 0);
        CHECK(o.detail != NULL);
        outcome_done(&o);

        /* The CA refuses the identifier: type and detail reach the caller. */
        CHECK_INT_EQ(order(&o, &T.a, "bad_domain", "a@example.org", key, NULL, cert_key), 0);
        CHECK_INT_EQ(o.error, -EREMOTEIO);
        CHECK(o.type && startswith(o.type, "urn:ietf:params:acme:error:"));
        CHECK(o.detail && strlen(o.detail) > 0);
        CHECK_INT_EQ(o.adds, 0);
        printf("bad_domain: %s: %s\n", strempty(o.type), strempty(o.detail));
        outcome_done(&o);

        /* ... and the contact (of a new account: a known key gets its account back). */
        gnutls_privkey_t fresh = key_new();
        CHECK_INT_EQ(order(&o, &T.a, DOMAIN, "a@b@c", fresh, NULL, cert_key), 0);
        gnutls_privkey_deinit(fresh);
        CHECK_INT_EQ(o.error, -EREMOTEIO);
        CHECK_STR_EQ(o.type, "urn:ietf:params:acme:error:invalidContact");
        CHECK(o.detail && strlen(o.detail) > 0);
        printf("bad contact: %s: %s\n", strempty(o.type), strempty(o.detail));
        outcome_done(&o);

        gnutls_privkey_deinit(cert_key);
        gnutls_privkey_deinit(key);
}

/* Freed before done: no callback, the challenge withdrawn, nothing leaks. */
static void test_cancel(void) {
        gnutls_privkey_t key = key_new();
        Outcome o = { .stop_on_add = true };

        CHECK_INT_EQ(order(&o, &T.a, DOMAIN, "a@example.org", key, NULL, key), 0);
        CHECK(!run_loop(ORDER_TIMEOUT));
        CHECK_INT_EQ(o.adds, 1);
        CHECK_INT_EQ(o.removes, 0);
        o.order = acme_order_free(o.order);
        CHECK_INT_EQ(o.removes, 1);
        run_loop(300 * USEC_PER_MSEC);
        CHECK_INT_EQ(o.calls, 0);
        outcome_done(&o);

        /* Freed before the loop ran at all. */
        o = (Outcome) { .stop_on_add = true };
        CHECK_INT_EQ(order(&o, &T.a, DOMAIN, "a@example.org", key, NULL, key), 0);
        o.order = acme_order_free(o.order);
        run_loop(200 * USEC_PER_MSEC);
        CHECK_INT_EQ(o.calls, 0);
        CHECK_INT_EQ(o.adds, 0);
        outcome_done(&o);

        gnutls_privkey_deinit(key);
}

/* Half the nonces rejected; an account URL B never issued; authz reuse. */
static void test_bad_nonce_and_stale_account(void) {
        gnutls_privkey_t account_key = key_new(), cert_key = key_new();
        Outcome o = {}, again = {};
        char stale[160];

        /* A well-formed kid for B that B does not know. */
        snprintf(stale, sizeof stale, "https://127.0.0.1:%d/my-account/7357", T.b.port);
        CHECK_INT_EQ(order(&o, &T.b, DOMAIN, "a@example.org", account_key, stale, cert_key), 0);
        CHECK_INT_EQ(o.error, 0);
        CHECK(o.stats.bad_nonce > 0);
        CHECK_INT_EQ(o.stats.new_account, 1);
        CHECK(o.account_url && !streq(o.account_url, stale));
        CHECK(o.account != NULL);
        CHECK_INT_EQ(o.adds, 1);
        CHECK_INT_EQ(o.removes, 1);
        if (o.chain)
                check_chain(o.chain, T.b.root_pem, DOMAIN, cert_key);
        printf("with 50%% of nonces rejected: %.1f ms, %u requests, %u badNonce retries\n",
               (double) o.elapsed / 1000.0, o.stats.requests, o.stats.bad_nonce);

        /* The valid authorization is reused: the order is ready at once. */
        CHECK_INT_EQ(order(&again, &T.b, DOMAIN, "a@example.org", account_key, o.account_url,
                           cert_key), 0);
        CHECK_INT_EQ(again.error, 0);
        CHECK_INT_EQ(again.adds, 0);
        CHECK_INT_EQ(again.removes, 0);

        outcome_done(&again);
        outcome_done(&o);
        gnutls_privkey_deinit(cert_key);
        gnutls_privkey_deinit(account_key);
}

/* Pebble C validates for real. */
static void test_real_validation(void) {
        gnutls_privkey_t account_key = key_new(), cert_key = key_new();
        Outcome o = {};
        pthread_t responder;

        /* Nobody answers on the TLS port: the authorization turns invalid. */
        CHECK_INT_EQ(order(&o, &T.c, DOMAIN, "a@example.org", account_key, NULL, cert_key), 0);
        CHECK_INT_EQ(o.error, -EREMOTEIO);
        CHECK(o.type && startswith(o.type, "urn:ietf:params:acme:error:"));
        CHECK(o.detail && strlen(o.detail) > 0);
        CHECK_INT_EQ(o.adds, 1);
        CHECK_INT_EQ(o.removes, 1);
        printf("nobody serving the challenge: %s: %s\n", strempty(o.type), strempty(o.detail));
        outcome_done(&o);

        /* A responder with the digest acme.c computed: Pebble accepts it. */
        if (!CHECK(responder_start(T.c.tls, &responder)))
                return;
        o = (Outcome) { .serve = true };
        CHECK_INT_EQ(order(&o, &T.c, DOMAIN, "a@example.org", account_key, NULL, cert_key), 0);
        CHECK_INT_EQ(o.error, 0);
        CHECK_INT_EQ(o.adds, 1);
        CHECK_INT_EQ(o.removes, 1);
        pthread_mutex_lock(&R.lock);
        CHECK(R.handshakes >= 1);
        printf("real tls-alpn-01 validation: %.1f ms, %u validation handshakes\n",
               (double) o.elapsed / 1000.0, R.handshakes);
        pthread_mutex_unlock(&R.lock);
        responder_stop(responder);
        outcome_done(&o);

        gnutls_privkey_deinit(cert_key);
        gnutls_privkey_deinit(account_key);
}

int main(void) {
        static const char *const proxies[] = {
                "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
        };

        if (!find_program("pebble") || !find_program("pebble-challtestsrv") ||
            !find_program("openssl")) {
                printf("skipping: pebble, pebble-challtestsrv or openssl missing\n");
                return 77;
        }
        /* As main() does it: once, before any thread and any HTTP client. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "curl_global_init() failed\n");
                return EXIT_FAILURE;
        }
        for (size_t i = 0; i < ELEMENTSOF(proxies); i++)
                unsetenv(proxies[i]);
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOLBF, 0);
        srand((unsigned) (time(NULL) ^ getpid()));
        log_force_stderr();
        if (getenv("TEST_ACME_DEBUG"))
                log_set_max_level(LOG_DEBUG);

        if (setup()) {
                gnutls_privkey_t key = key_new();

                test_bad_params(key);
                gnutls_privkey_deinit(key);
                test_issue();
                test_refusals();
                test_cancel();
                test_bad_nonce_and_stale_account();
                test_real_validation();
        }
        if (test_failed_count > 0) {
                dump_log("pebble-a.log");
                dump_log("pebble-b.log");
                dump_log("pebble-c.log");
        }
        teardown();
        curl_global_cleanup();
        return test_summary();
}
