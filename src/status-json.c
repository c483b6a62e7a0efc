/* SPDX-License-Identifier: MIT */
/* The JSON of the status port (see status-json.h). */

#include <arpa/inet.h>
#include <gnutls/x509.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "build-config.h"
#include "manager.h"
#include "status-json.h"
#include "util.h"

#if defined(__clang__)
#define STATUS_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define STATUS_COMPILER "gcc " __VERSION__
#else
#define STATUS_COMPILER "unknown"
#endif

/* How Go writes the zero time.Time. */
#define GO_ZERO_TIME "0001-01-01T00:00:00Z"

static json_object *json_time(time_t t, long usec) {
        char buf[64], frac[24] = "";
        struct tm tm;

        if (!gmtime_r(&t, &tm))
                return NULL;
        if (usec >= 0)
                snprintf(frac, sizeof frac, ".%06ld", usec);
        if (strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
                return NULL;
        strncat(buf, frac, sizeof buf - strlen(buf) - 1);
        strncat(buf, "Z", sizeof buf - strlen(buf) - 1);
        return json_object_new_string(buf);
}

/* The served certificate's subject alternative names, as text. */
static json_object *json_cert_names(gnutls_x509_crt_t crt) {
        json_object *names = json_object_new_array();

        for (unsigned i = 0; names; i++) {
                char buf[1024], text[INET6_ADDRSTRLEN];
                size_t size = sizeof buf - 1;
                int type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &size, NULL);

                if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                if (type == GNUTLS_SAN_IPADDRESS) {
                        if (!inet_ntop(size == 16 ? AF_INET6 : AF_INET, buf, text, sizeof text))
                                continue;
                        json_object_array_add(names, json_object_new_string(text));
                } else if (type == GNUTLS_SAN_DNSNAME || type == GNUTLS_SAN_URI ||
                           type == GNUTLS_SAN_RFC822NAME) {
                        buf[size] = '\0';
                        json_object_array_add(names, json_object_new_string(buf));
                } else if (type < 0 && type != GNUTLS_E_SHORT_MEMORY_BUFFER)
                        break;
        }
        return names;
}

static json_object *json_certificate(const CertBundle *b, time_t now) {
        gnutls_x509_crt_t crt = NULL;
        json_object *o;
        char serial[64], hex[2 * sizeof serial + 1] = "";
        size_t serial_size = sizeof serial;

        if (!b)
                return NULL;
        o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "subject", json_object_new_string(strempty(b->subject)));
        if (gnutls_x509_crt_init(&crt) >= 0 &&
            gnutls_x509_crt_import(crt, &b->pcerts[0].cert, GNUTLS_X509_FMT_DER) >= 0) {
                json_object_object_add(o, "names", json_cert_names(crt));
                if (gnutls_x509_crt_get_serial(crt, serial, &serial_size) >= 0) {
                        for (size_t i = 0; i < serial_size; i++)
                                snprintf(hex + 2 * i, 3, "%02x", (unsigned char) serial[i]);
                        json_object_object_add(o, "serial", json_object_new_string(hex));
                }
        }
        if (crt)
                gnutls_x509_crt_deinit(crt);
        json_object_object_add(o, "not_before", json_time(b->not_before, -1));
        json_object_object_add(o, "not_after", json_time(b->not_after, -1));
        json_object_object_add(o, "expires_in_seconds",
                               json_object_new_int64((int64_t) b->not_after - (int64_t) now));
        return o;
}

static json_object *json_acme(const Manager *m) {
        RenewerStats st;
        json_object *o;

        if (!m->renewer)
                return NULL;
        renewer_get_stats(m->renewer, &st);
        o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "name", json_object_new_string(m->config.auto_acme_cert));
        json_object_object_add(o, "state", json_object_new_string(renewer_state(m->renewer)));
        json_object_object_add(o, "certificates_obtained", json_object_new_int64((int64_t) st.obtained));
        json_object_object_add(o, "renewal_failures", json_object_new_int64((int64_t) st.failures));
        json_object_object_add(o, "last_renewal_error",
                               st.last_error ? json_object_new_string(st.last_error) : NULL);
        return o;
}

/* --threads: per serving thread, connections accepted so far and open now
 * (0 is the main thread). */
static json_object *json_threads(WorkerPool *p) {
        json_object *a = json_object_new_array();

        for (unsigned i = 0; a && i < worker_pool_size(p); i++) {
                json_object *t = json_object_new_object();
                uint64_t accepted, open;

                if (!t)
                        break;
                worker_pool_thread_counts(p, i, &accepted, &open);
                json_object_object_add(t, "accepted", json_object_new_int64((int64_t) accepted));
                json_object_object_add(t, "connections", json_object_new_int64((int64_t) open));
                json_object_array_add(a, t);
        }
        return a;
}

/* Exactly Ghostunnel's fields, in its order and with its JSON types:
 * dashboards and checks written for it parse this unchanged. What
 * Ghostunnel lacks is on /_status/tlsgate (status_details_json()). */
json_object *status_json(const Manager *m, bool backend_ok, const char *backend_error,
                         bool *ret_ok) {
        bool listening = m->ready && !m->shutting_down, ok = listening && backend_ok;
        char hostname[256];
        struct timespec ts;
        json_object *o;

        clock_gettime(CLOCK_REALTIME, &ts);
        o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "ok", json_object_new_boolean(ok));
        json_object_object_add(o, "status", json_object_new_string(ok ? "ok" : "critical"));
        json_object_object_add(o, "listen_address", json_object_new_string(m->config.listen.spec));
        json_object_object_add(o, "forward_address", json_object_new_string(m->config.target.spec));
        json_object_object_add(o, "backend_ok", json_object_new_boolean(backend_ok));
        json_object_object_add(o, "backend_status",
                               json_object_new_string(backend_ok ? "ok" : "critical"));
        if (!backend_ok)
                json_object_object_add(o, "backend_error",
                                       json_object_new_string(strempty(backend_error)));
        json_object_object_add(o, "time", json_time(ts.tv_sec, ts.tv_nsec / 1000));
        /* A Go time.Time, always there: its zero value until the first reload. */
        if (m->reload.n_reloads > 0)
                json_object_object_add(o, "last_reload",
                                       json_time((time_t) (m->reload.last_realtime / USEC_PER_SEC),
                                                 (long) (m->reload.last_realtime % USEC_PER_SEC)));
        else
                json_object_object_add(o, "last_reload",
                                       json_object_new_string(GO_ZERO_TIME));
        if (gethostname(hostname, sizeof hostname) >= 0) {
                hostname[sizeof hostname - 1] = '\0';
                json_object_object_add(o, "hostname", json_object_new_string(hostname));
        }
        json_object_object_add(o, "message",
                               json_object_new_string(!m->ready         ? "initializing"
                                                      : m->shutting_down ? "stopping"
                                                                         : "listening"));
        json_object_object_add(o, "revision", json_object_new_string(PACKAGE_VERSION));
        json_object_object_add(o, "compiler", json_object_new_string(STATUS_COMPILER));
        *ret_ok = ok;
        return o;
}

/* What Ghostunnel's /_status lacks: the served certificate, ACME, the
 * connections per thread, the reload counters. */
json_object *status_details_json(const Manager *m) {
        const CertBundle *b = m->current.creds ? m->current.creds->bundle : NULL;
        json_object *x;

        x = json_object_new_object();
        if (!x)
                return NULL;
        json_object_object_add(x, "connections",
                               json_object_new_int64(worker_pool_n_conns(m->workers)));
        json_object_object_add(x, "threads", json_threads(m->workers));
        json_object_object_add(x, "certificate", json_certificate(b, time(NULL)));
        json_object_object_add(x, "acme", json_acme(m));
        json_object_object_add(x, "reloads", json_object_new_int64(m->reload.n_reloads));
        json_object_object_add(x, "reload_failures", json_object_new_int64(m->reload.n_failures));
        return x;
}
