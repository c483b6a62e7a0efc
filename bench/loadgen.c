/* SPDX-License-Identifier: MIT */
/* loadgen - mTLS load generator for bench/run.sh (GnuTLS client, pthreads).
 *
 *   loadgen MODE -p PORT [options]
 *
 * MODE
 *   check  one mTLS connection with -c/-k that verifies the server against -C for the name
 *          -N and echoes 32 bytes; then one without a client certificate and one with the
 *          -R/-Q certificate (from another CA): both must not get an echo
 *   hs     -w workers, each looping: TCP connect, full TLS 1.3 handshake with the client
 *          certificate (never resumed), 32-byte echo, close_notify, close
 *   bulk   -K connections echoing 16 KiB records, up to -W bytes in flight each; every
 *          echoed byte is compared with what was sent
 *   idle   opens mTLS connections (each echoes once, so the backend leg exists) until the
 *          counts in -m (e.g. 1000,5000) are reached, and measures the peer's memory
 *   quiet  waits (at most -d seconds) until the -P peer uses less than 5 % of a CPU
 * options
 *   -H ADDR (127.0.0.1)  -p PORT  -N SNI (localhost)  -c CERT -k KEY  -C CAFILE
 *   -R CERT -Q KEY  rogue client certificate (check)
 *   -P PID   the peer's main process: CPU time and memory of it and its descendants
 *   -d SECS  measured time (hs, bulk; 5)   -u SECS warm-up before it (1)
 *   -w N     hs workers / idle opener threads (16)   -K N bulk connections (4)
 *   -W BYTES bulk window per connection (262144)   -m LIST idle counts (1000,5000)
 *   -z SECS  idle settle time before measuring (2)
 *
 * TLS 1.3 only, TLS_AES_128_GCM_SHA256, X25519 (the same for every peer). hs, bulk and idle
 * do not verify the server certificate: that would only add client CPU.
 * Output: one "RESULT mode=MODE key=value ..." line per result on stdout.
 * Bounds: socket operations time out after IO_TIMEOUT_S, every loop has an iteration cap,
 * and alarm() ends the process if anything still hangs. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 5
#define MSG_LEN 32
#define MAX_LAT_SAMPLES (1u << 20)
#define PATTERN_LEN 65536
#define RECORD_LEN 16384
#define MAX_TREE 512
#define PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:-GROUP-ALL:+GROUP-X25519"

typedef struct Options {
        const char *host, *sni, *cert, *key, *ca, *rogue_cert, *rogue_key;
        int port, peer_pid, workers, bulk_conns, window, settle;
        double duration, warmup;
        char idle_counts[256];
} Options;

static Options opt = {
        .host = "127.0.0.1", .sni = "localhost", .workers = 16, .bulk_conns = 4,
        .window = 262144, .settle = 2, .duration = 5, .warmup = 1, .idle_counts = "1000,5000",
};
static struct sockaddr_in dst;
static gnutls_priority_t priority;
static unsigned char pattern[PATTERN_LEN];

typedef struct Client {
        gnutls_certificate_credentials_t cred;
        bool verify;
} Client;

typedef struct Conn {
        int fd;
        gnutls_session_t s;
} Conn;

static double now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void die(const char *what) {
        fprintf(stderr, "loadgen: %s\n", what);
        exit(1);
}

/* ---- the peer: CPU time and memory of its process tree, from /proc ---- */

static ssize_t read_small(const char *path, char *buf, size_t size) {
        ssize_t n;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n < 0)
                return -1;
        buf[n] = 0;
        return n;
}

/* The fields after "(comm) ": state ppid ... utime(14) stime(15), counted from 1 at pid. */
static int stat_fields(int pid, int *ret_ppid, unsigned long *ret_ticks) {
        char path[64], buf[2048], *p;
        unsigned long ut, st;
        int ppid;

        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        if (read_small(path, buf, sizeof buf) <= 0 || !(p = strrchr(buf, ')')))
                return -1;
        if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ppid, &ut,
                   &st) != 3)
                return -1;
        *ret_ppid = ppid;
        *ret_ticks = ut + st;
        return 0;
}

/* The peer and all its descendants (nginx/hitch workers; threads are counted in their
 * process's stat). */
static int peer_tree(int root, int pids[static MAX_TREE]) {
        int n = 0;

        if (root <= 0)
                return 0;
        pids[n++] = root;
        for (int depth = 0; depth < 4; depth++) {
                int before = n;
                struct dirent *e;
                DIR *d = opendir("/proc");

                if (!d)
                        break;
                while ((e = readdir(d)) && n < MAX_TREE) {
                        unsigned long ticks;
                        int pid = atoi(e->d_name), ppid;
                        bool known = false, child = false;

                        if (pid <= 0)
                                continue;
                        for (int i = 0; i < n; i++) {
                                known = known || pids[i] == pid;
                        }
                        if (known || stat_fields(pid, &ppid, &ticks) < 0)
                                continue;
                        for (int i = 0; i < n; i++)
                                child = child || pids[i] == ppid;
                        if (child)
                                pids[n++] = pid;
                }
                closedir(d);
                if (n == before)
                        break;
        }
        return n;
}

typedef struct Sample {
        double cpu_s;  /* utime+stime of the peer's tree */
        double busy_s; /* all CPUs, not idle */
        long rss_kb, pss_kb;
        int nproc;
} Sample;

static long kb_field(const char *path, const char *name) {
        char buf[8192], *p;

        if (read_small(path, buf, sizeof buf) <= 0 || !(p = strstr(buf, name)))
                return 0;
        return atol(p + strlen(name));
}

static Sample sample_peer(void) {
        unsigned long long v[8] = { 0 };
        int pids[MAX_TREE], n;
        long hz = sysconf(_SC_CLK_TCK);
        Sample s = { 0 };
        char buf[1024];

        if (read_small("/proc/stat", buf, sizeof buf) > 0 &&
            sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
                s.busy_s = (double) (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double) hz;
        n = peer_tree(opt.peer_pid, pids);
        s.nproc = n;
        for (int i = 0; i < n; i++) {
                char path[64];
                unsigned long ticks;
                int ppid;

                if (stat_fields(pids[i], &ppid, &ticks) == 0)
                        s.cpu_s += (double) ticks / (double) hz;
                snprintf(path, sizeof path, "/proc/%d/status", pids[i]);
                s.rss_kb += kb_field(path, "\nVmRSS:");
                snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pids[i]);
                s.pss_kb += kb_field(path, "\nPss:");
        }
        return s;
}

static double self_cpu_s(void) {
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        return (double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- connections ---- */

static Client *client_new(const char *cert, const char *key, bool verify) {
        Client *c = calloc(1, sizeof *c);

        if (!c || gnutls_certificate_allocate_credentials(&c->cred) < 0)
                die("out of memory");
        if (cert && gnutls_certificate_set_x509_key_file(c->cred, cert, key,
                                                         GNUTLS_X509_FMT_PEM) < 0) {
                fprintf(stderr, "loadgen: cannot load client certificate %s / key %s\n", cert,
                        key);
                exit(1);
        }
        if (verify && gnutls_certificate_set_x509_trust_file(c->cred, opt.ca,
                                                             GNUTLS_X509_FMT_PEM) <= 0) {
                fprintf(stderr, "loadgen: cannot load CA file %s\n", opt.ca);
                exit(1);
        }
        c->verify = verify;
        return c;
}

static int tcp_connect(void) {
        struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
        int fd, one = 1;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        /* SO_SNDTIMEO also bounds connect() */
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *) &dst, sizeof dst) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static void conn_close(Conn *c, bool bye) {
        if (c->s) {
                if (bye)
                        (void) gnutls_bye(c->s, GNUTLS_SHUT_WR);
                gnutls_deinit(c->s);
                c->s = NULL;
        }
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

/* Blocking connect and handshake; 0 on success. */
static int conn_open(const Client *cl, Conn *c) {
        int r = GNUTLS_E_INTERRUPTED;

        c->s = NULL;
        c->fd = tcp_connect();
        if (c->fd < 0)
                return -1;
        if (gnutls_init(&c->s, GNUTLS_CLIENT) < 0) {
                c->s = NULL;
                conn_close(c, false);
                return -1;
        }
        (void) gnutls_priority_set(c->s, priority);
        (void) gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, cl->cred);
        (void) gnutls_server_name_set(c->s, GNUTLS_NAME_DNS, opt.sni, strlen(opt.sni));
        if (cl->verify)
                gnutls_session_set_verify_cert(c->s, opt.sni, 0);
        gnutls_transport_set_int(c->s, c->fd);
        gnutls_handshake_set_timeout(c->s, IO_TIMEOUT_S * 1000);
        for (int i = 0; i < 100 && r == GNUTLS_E_INTERRUPTED; i++)
                r = gnutls_handshake(c->s);
        if (r < 0) {
                conn_close(c, false);
                return -1;
        }
        return 0;
}

/* One record operation. nonblock: 0 means "would block". Otherwise >0 bytes, -1 error/EOF.
 * On a blocking socket GNUTLS_E_AGAIN means the socket timeout expired, or that a
 * post-handshake message (a session ticket) was consumed: retried until IO_TIMEOUT_S. */
static int conn_rw(Conn *c, bool wr, void *buf, size_t len, bool nonblock) {
        double t0 = now();

        for (int i = 0; i < 100000; i++) {
                ssize_t r = wr ? gnutls_record_send(c->s, buf, len) :
                                 gnutls_record_recv(c->s, buf, len);

                if (r > 0)
                        return (int) r;
                if (r == 0)
                        return -1;
                if (r == GNUTLS_E_INTERRUPTED)
                        continue;
                if (r == GNUTLS_E_AGAIN) {
                        if (nonblock)
                                return 0;
                        if (now() - t0 < IO_TIMEOUT_S)
                                continue;
                        return -1;
                }
                if (!wr && !gnutls_error_is_fatal((int) r))
                        continue;
                return -1;
        }
        return -1;
}

static int echo_once(Conn *c) {
        char out[MSG_LEN], in[MSG_LEN];
        size_t done;

        for (size_t i = 0; i < MSG_LEN - 1; i++)
                out[i] = (char) ('a' + (unsigned) (i * 7 + (unsigned) c->fd) % 26);
        out[MSG_LEN - 1] = '\n';
        for (done = 0; done < MSG_LEN;) {
                int r = conn_rw(c, true, out + done, MSG_LEN - done, false);

                if (r <= 0)
                        return -1;
                done += (size_t) r;
        }
        for (done = 0; done < MSG_LEN;) {
                int r = conn_rw(c, false, in + done, MSG_LEN - done, false);

                if (r <= 0)
                        return -1;
                done += (size_t) r;
        }
        return memcmp(out, in, MSG_LEN) == 0 ? 0 : -1;
}

/* ---- check ---- */

static bool echo_works(const Client *cl, char *info, size_t size) {
        Conn c;
        bool ok;

        if (conn_open(cl, &c) < 0) {
                snprintf(info, size, "handshake-failed");
                return false;
        }
        ok = echo_once(&c) == 0;
        if (ok) {
                gnutls_group_t g = gnutls_group_get(c.s);

                snprintf(info, size, "%s/%s/%s",
                         gnutls_protocol_get_name(gnutls_protocol_get_version(c.s)),
                         gnutls_cipher_get_name(gnutls_cipher_get(c.s)),
                         g ? gnutls_group_get_name(g) : "?");
        } else
                snprintf(info, size, "refused-after-handshake");
        conn_close(&c, ok);
        return ok;
}

static int do_check(void) {
        char info[128], info_nocert[128], info_rogue[128] = "not-tried";
        bool ok, nocert, rogue = false;

        if (!opt.ca || !opt.cert)
                die("check needs -C CAFILE and -c CERT -k KEY");
        ok = echo_works(client_new(opt.cert, opt.key, true), info, sizeof info);
        nocert = echo_works(client_new(NULL, NULL, false), info_nocert, sizeof info_nocert);
        if (opt.rogue_cert)
                rogue = echo_works(client_new(opt.rogue_cert, opt.rogue_key, false), info_rogue,
                                   sizeof info_rogue);
        printf("RESULT mode=check ok=%d tls=%s nocert=%s rogue=%s mtls=%s\n", ok, info,
               info_nocert, info_rogue, ok && !nocert && !rogue && opt.rogue_cert ? "yes" : "NO");
        return ok ? 0 : 1;
}

/* ---- hs ---- */

typedef struct Worker {
        pthread_t thread;
        const Client *client;
        double t_measure, t_end;
        float *lat_ms;
        unsigned n_lat;
        unsigned long done; /* completed in any phase, read by the main thread */
        unsigned long errors;
} Worker;

static void *hs_worker(void *arg) {
        Worker *w = arg;

        w->lat_ms = malloc(sizeof(float) * MAX_LAT_SAMPLES);
        if (!w->lat_ms)
                return NULL;
        for (unsigned long i = 0; i < 100000000UL; i++) {
                double t0 = now(), t1;
                Conn c;
                int r;

                if (t0 >= w->t_end)
                        break;
                r = conn_open(w->client, &c);
                if (r == 0) {
                        r = echo_once(&c);
                        conn_close(&c, r == 0);
                }
                t1 = now();
                if (r < 0) {
                        __atomic_add_fetch(&w->errors, 1, __ATOMIC_RELAXED);
                        if (w->errors > 1000 && w->errors > w->done)
                                break;
                        continue;
                }
                __atomic_add_fetch(&w->done, 1, __ATOMIC_RELAXED);
                if (t0 >= w->t_measure && t1 <= w->t_end && w->n_lat < MAX_LAT_SAMPLES)
                        w->lat_ms[w->n_lat++] = (float) ((t1 - t0) * 1000.0);
        }
        return NULL;
}

static unsigned long sum_done(const Worker *w, int n, unsigned long *ret_errors) {
        unsigned long done = 0, errors = 0;

        for (int i = 0; i < n; i++) {
                done += __atomic_load_n(&w[i].done, __ATOMIC_RELAXED);
                errors += __atomic_load_n(&w[i].errors, __ATOMIC_RELAXED);
        }
        if (ret_errors)
                *ret_errors = errors;
        return done;
}

static int cmp_float(const void *a, const void *b) {
        float x = *(const float *) a, y = *(const float *) b;

        return (x > y) - (x < y);
}

static void sleep_until(double t) {
        for (int i = 0; i < 1000000 && now() < t; i++)
                usleep(10000);
}

static int do_hs(void) {
        const Client *cl = client_new(opt.cert, opt.key, false);
        Worker *w = calloc((size_t) opt.workers, sizeof *w);
        double t_measure = now() + opt.warmup, t_end = t_measure + opt.duration, c0, c1, wall;
        unsigned long d0, d1, err0, err1, n;
        float *lat;
        unsigned nlat = 0;
        Sample p0, p1;

        if (!w)
                die("out of memory");
        for (int i = 0; i < opt.workers; i++) {
                w[i].client = cl;
                w[i].t_measure = t_measure;
                w[i].t_end = t_end;
                if (pthread_create(&w[i].thread, NULL, hs_worker, &w[i]) != 0)
                        die("pthread_create");
        }
        sleep_until(t_measure);
        p0 = sample_peer();
        c0 = self_cpu_s();
        d0 = sum_done(w, opt.workers, &err0);
        t_measure = now();
        sleep_until(t_end);
        p1 = sample_peer();
        c1 = self_cpu_s();
        d1 = sum_done(w, opt.workers, &err1);
        wall = now() - t_measure;
        for (int i = 0; i < opt.workers; i++) {
                pthread_join(w[i].thread, NULL);
                nlat += w[i].n_lat;
        }
        lat = malloc(sizeof(float) * (nlat ? nlat : 1));
        if (!lat)
                die("out of memory");
        nlat = 0;
        for (int i = 0; i < opt.workers; i++) {
                if (w[i].lat_ms)
                        memcpy(lat + nlat, w[i].lat_ms, w[i].n_lat * sizeof(float));
                nlat += w[i].n_lat;
                free(w[i].lat_ms);
        }
        qsort(lat, nlat, sizeof(float), cmp_float);
        n = d1 - d0;
        printf("RESULT mode=hs workers=%d secs=%.2f conns=%lu errors=%lu cps=%.0f p50_ms=%.2f "
               "p99_ms=%.2f peer_cpu_pct=%.0f gen_cpu_pct=%.0f busy_pct=%.0f us_per_hs=%.0f\n",
               opt.workers, wall, n, err1 - err0, n / wall, nlat ? lat[nlat / 2] : 0.0,
               nlat ? lat[(size_t) (nlat * 0.99)] : 0.0, (p1.cpu_s - p0.cpu_s) / wall * 100,
               (c1 - c0) / wall * 100, (p1.busy_s - p0.busy_s) / wall * 100,
               n ? (p1.cpu_s - p0.cpu_s) / (double) n * 1e6 : 0.0);
        return n > 0 ? 0 : 1;
}

/* ---- bulk ---- */

typedef struct Stream {
        Conn c;
        uint64_t sent, received;
        size_t pending; /* length of a send that returned GNUTLS_E_AGAIN: repeat it as is */
} Stream;

/* Sends while the window allows; <0 on error. */
static int stream_send(Stream *s, bool *progress) {
        for (int k = 0; k < 16 && s->sent - s->received < (uint64_t) opt.window; k++) {
                size_t off = s->sent % PATTERN_LEN, len = s->pending ? s->pending : RECORD_LEN;
                int r;

                if (off + len > PATTERN_LEN)
                        len = PATTERN_LEN - off;
                r = conn_rw(&s->c, true, pattern + off, len, true);
                if (r < 0)
                        return -1;
                if (r == 0) {
                        s->pending = len;
                        return 0;
                }
                s->pending = 0;
                s->sent += (uint64_t) r;
                *progress = true;
        }
        return 0;
}

/* Receives what is there and checks it against the pattern; <0 on error or mismatch. */
static int stream_recv(Stream *s, bool *progress, uint64_t *total) {
        static __thread unsigned char buf[RECORD_LEN];

        for (int k = 0; k < 32; k++) {
                int r = conn_rw(&s->c, false, buf, sizeof buf, true);
                size_t off = s->received % PATTERN_LEN, done = 0;

                if (r <= 0)
                        return r;
                while (done < (size_t) r) {
                        size_t m = (size_t) r - done;

                        if (off + m > PATTERN_LEN)
                                m = PATTERN_LEN - off;
                        if (memcmp(buf + done, pattern + off, m) != 0) {
                                fprintf(stderr, "loadgen: bulk: echoed data differs\n");
                                return -1;
                        }
                        done += m;
                        off = (off + m) % PATTERN_LEN;
                }
                s->received += (uint64_t) r;
                *total += (uint64_t) r;
                *progress = true;
        }
        return 0;
}

static int do_bulk(void) {
        const Client *cl = client_new(opt.cert, opt.key, false);
        Stream *st = calloc((size_t) opt.bulk_conns, sizeof *st);
        struct pollfd *pfd = calloc((size_t) opt.bulk_conns, sizeof *pfd);
        double t_measure, t_end, last_progress, tw = 0, c0 = 0, wall;
        uint64_t total = 0, base = 0;
        bool measuring = false;
        int errors = 0, open_streams = opt.bulk_conns;
        Sample p0 = { 0 }, p1;

        if (!st || !pfd)
                die("out of memory");
        for (int i = 0; i < opt.bulk_conns; i++) {
                if (conn_open(cl, &st[i].c) < 0 || echo_once(&st[i].c) < 0)
                        die("bulk: connection or first echo through the peer failed");
                (void) fcntl(st[i].c.fd, F_SETFL, fcntl(st[i].c.fd, F_GETFL) | O_NONBLOCK);
        }
        t_measure = now() + opt.warmup;
        t_end = t_measure + opt.duration;
        last_progress = now();
        for (unsigned long iter = 0; iter < 1000000000UL && open_streams > 0; iter++) {
                double t = now();
                bool progress = false;
                int np = 0;

                if (!measuring && t >= t_measure) {
                        measuring = true;
                        base = total;
                        p0 = sample_peer();
                        c0 = self_cpu_s();
                        tw = now();
                }
                if (t >= t_end)
                        break;
                if (t - last_progress > IO_TIMEOUT_S) {
                        fprintf(stderr, "loadgen: bulk: no progress for %d s\n", IO_TIMEOUT_S);
                        errors++;
                        break;
                }
                for (int i = 0; i < opt.bulk_conns; i++) {
                        if (st[i].c.fd < 0)
                                continue;
                        if (stream_send(&st[i], &progress) < 0 ||
                            stream_recv(&st[i], &progress, &total) < 0) {
                                errors++;
                                conn_close(&st[i].c, false);
                                open_streams--;
                        }
                }
                if (progress) {
                        last_progress = t;
                        continue;
                }
                for (int i = 0; i < opt.bulk_conns; i++) {
                        if (st[i].c.fd < 0)
                                continue;
                        pfd[np].fd = st[i].c.fd;
                        pfd[np].events = POLLIN | (st[i].pending ? POLLOUT : 0);
                        np++;
                }
                (void) poll(pfd, (nfds_t) np, 50);
        }
        p1 = sample_peer();
        wall = measuring ? now() - tw : 0;
        {
                double mbps = wall > 0 ? (double) (total - base) / wall / 1e6 : 0;
                double cpu = wall > 0 ? (p1.cpu_s - p0.cpu_s) / wall : 0;

                printf("RESULT mode=bulk conns=%d secs=%.2f bytes=%llu errors=%d MBps=%.1f "
                       "peer_cpu_pct=%.0f gen_cpu_pct=%.0f ms_per_GB=%.0f\n",
                       opt.bulk_conns, wall, (unsigned long long) (total - base), errors, mbps,
                       cpu * 100, wall > 0 ? (self_cpu_s() - c0) / wall * 100 : 0.0,
                       mbps > 0 ? cpu * 1000 / (mbps / 1000) : 0.0);
                for (int i = 0; i < opt.bulk_conns; i++)
                        conn_close(&st[i].c, false);
                return errors || mbps <= 0 ? 1 : 0;
        }
}

/* ---- quiet: wait until the peer is idle (e.g. done closing the idle connections) ---- */

static int do_quiet(void) {
        double t0 = now(), last = t0;
        Sample first = sample_peer(), prev = first;

        for (int i = 0; i < 100000 && now() - t0 < opt.duration; i++) {
                Sample s;
                double t;

                usleep(250000);
                s = sample_peer();
                t = now();
                if ((s.cpu_s - prev.cpu_s) / (t - last) < 0.05) {
                        printf("RESULT mode=quiet secs=%.2f peer_cpu_s=%.2f quiet=1\n",
                               t - t0, s.cpu_s - first.cpu_s);
                        return 0;
                }
                prev = s;
                last = t;
        }
        printf("RESULT mode=quiet secs=%.2f peer_cpu_s=%.2f quiet=0\n", now() - t0,
               sample_peer().cpu_s - first.cpu_s);
        return 1;
}

/* ---- idle ---- */

typedef struct Idle {
        pthread_mutex_t lock;
        const Client *client;
        Conn *conns;
        int target, ok, inflight, failed;
        double deadline;
} Idle;

static void *idle_opener(void *arg) {
        Idle *id = arg;

        for (int i = 0; i < 1000000; i++) {
                Conn c;
                int r;

                pthread_mutex_lock(&id->lock);
                if (id->ok + id->inflight >= id->target || now() > id->deadline ||
                    id->failed > 100 || (id->failed >= 10 && id->ok == 0)) {
                        pthread_mutex_unlock(&id->lock);
                        break;
                }
                id->inflight++;
                pthread_mutex_unlock(&id->lock);

                r = conn_open(id->client, &c);
                if (r == 0 && (r = echo_once(&c)) < 0)
                        conn_close(&c, false);

                pthread_mutex_lock(&id->lock);
                id->inflight--;
                if (r < 0)
                        id->failed++;
                else
                        id->conns[id->ok++] = c;
                pthread_mutex_unlock(&id->lock);
        }
        return NULL;
}

static int do_idle(void) {
        Idle id = { .lock = PTHREAD_MUTEX_INITIALIZER };
        int targets[16], nt = 0, max = 0, threads = opt.workers > 64 ? 64 : opt.workers, rc = 0;
        pthread_t th[64];
        struct rlimit rl;
        Sample base;
        char *save = NULL;

        for (char *t = strtok_r(opt.idle_counts, ",", &save); t && nt < 16;
             t = strtok_r(NULL, ",", &save)) {
                targets[nt] = atoi(t);
                if (targets[nt] <= 0 || targets[nt] > 100000)
                        die("-m: counts must be between 1 and 100000");
                if (targets[nt] > max)
                        max = targets[nt];
                nt++;
        }
        if (nt == 0)
                die("-m: no counts");
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t) max + 64) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        id.client = client_new(opt.cert, opt.key, false);
        id.conns = calloc((size_t) max, sizeof *id.conns);
        if (!id.conns)
                die("out of memory");
        base = sample_peer();
        printf("RESULT mode=idle stage=0 conns=0 rss_kb=%ld pss_kb=%ld nproc=%d\n", base.rss_kb,
               base.pss_kb, base.nproc);
        fflush(stdout);
        for (int t = 0; t < nt; t++) {
                double t0 = now();
                Sample s;

                id.target = targets[t];
                id.failed = 0;
                id.deadline = now() + 60;
                for (int i = 0; i < threads; i++)
                        if (pthread_create(&th[i], NULL, idle_opener, &id) != 0)
                                die("pthread_create");
                for (int i = 0; i < threads; i++)
                        pthread_join(th[i], NULL);
                t0 = now() - t0;
                sleep((unsigned) opt.settle);
                s = sample_peer();
                printf("RESULT mode=idle stage=%d conns=%d failed=%d open_s=%.1f rss_kb=%ld "
                       "pss_kb=%ld kib_per_conn=%.1f kib_per_conn_rss=%.1f nproc=%d\n",
                       t + 1, id.ok, id.failed, t0, s.rss_kb, s.pss_kb,
                       id.ok ? (double) (s.pss_kb - base.pss_kb) / id.ok : 0.0,
                       id.ok ? (double) (s.rss_kb - base.rss_kb) / id.ok : 0.0, s.nproc);
                fflush(stdout);
                if (id.ok < targets[t]) {
                        rc = 1;
                        break;
                }
        }
        for (int i = 0; i < id.ok; i++)
                conn_close(&id.conns[i], false);
        return rc;
}

int main(int argc, char **argv) {
        const char *mode, *errpos = NULL;
        int o;

        if (argc < 2 || argv[1][0] == '-') {
                fprintf(stderr, "usage: loadgen check|hs|bulk|idle|quiet -p PORT [options] "
                                "(see the comment at the top of bench/loadgen.c)\n");
                return 2;
        }
        mode = argv[1];
        optind = 2;
        while ((o = getopt(argc, argv, "H:p:N:c:k:C:R:Q:P:d:u:w:K:W:m:z:")) != -1) {
                switch (o) {
                case 'H': opt.host = optarg; break;
                case 'p': opt.port = atoi(optarg); break;
                case 'N': opt.sni = optarg; break;
                case 'c': opt.cert = optarg; break;
                case 'k': opt.key = optarg; break;
                case 'C': opt.ca = optarg; break;
                case 'R': opt.rogue_cert = optarg; break;
                case 'Q': opt.rogue_key = optarg; break;
                case 'P': opt.peer_pid = atoi(optarg); break;
                case 'd': opt.duration = atof(optarg); break;
                case 'u': opt.warmup = atof(optarg); break;
                case 'w': opt.workers = atoi(optarg); break;
                case 'K': opt.bulk_conns = atoi(optarg); break;
                case 'W': opt.window = atoi(optarg); break;
                case 'm': snprintf(opt.idle_counts, sizeof opt.idle_counts, "%s", optarg); break;
                case 'z': opt.settle = atoi(optarg); break;
                default: return 2;
                }
        }
        if (opt.port <= 0 || opt.port > 65535)
                die("-p PORT (1-65535) is required");
        if (!(opt.duration > 0 && opt.duration <= 600) || !(opt.warmup >= 0 && opt.warmup <= 60))
                die("-d must be in (0, 600] and -u in [0, 60] seconds");
        if (opt.workers < 1 || opt.workers > 1024 || opt.bulk_conns < 1 || opt.bulk_conns > 1024)
                die("-w and -K must be between 1 and 1024");
        if (opt.window < RECORD_LEN || opt.settle < 0 || opt.settle > 60)
                die("-W must be at least 16384, -z between 0 and 60");
        if ((opt.cert == NULL) != (opt.key == NULL) ||
            (opt.rogue_cert == NULL) != (opt.rogue_key == NULL))
                die("a certificate (-c, -R) needs its key (-k, -Q) and the other way round");
        dst.sin_family = AF_INET;
        dst.sin_port = htons((uint16_t) opt.port);
        if (inet_pton(AF_INET, opt.host, &dst.sin_addr) != 1)
                die("-H must be an IPv4 address");
        if (gnutls_priority_init(&priority, PRIORITY, &errpos) < 0)
                die("GnuTLS rejects the priority string");
        signal(SIGPIPE, SIG_IGN);
        for (size_t i = 0; i < PATTERN_LEN; i++)
                pattern[i] = (unsigned char) ('!' + (i * 131 + i / 251) % 94);
        /* the hard stop: idle may take 60 s per stage */
        alarm((unsigned) (opt.warmup + opt.duration) + 16 * 60 + 120);

        if (strcmp(mode, "check") == 0)
                return do_check();
        if (strcmp(mode, "hs") == 0)
                return do_hs();
        if (strcmp(mode, "bulk") == 0)
                return do_bulk();
        if (strcmp(mode, "idle") == 0)
                return do_idle();
        if (strcmp(mode, "quiet") == 0)
                return do_quiet();
        fprintf(stderr, "loadgen: unknown mode '%s' (check, hs, bulk, idle or quiet)\n", mode);
        return 2;
}
