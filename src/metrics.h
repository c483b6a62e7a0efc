/* SPDX-License-Identifier: MIT */
#pragma once

/* Connection counters and timers, and their three renderings: Ghostunnel's
 * JSON list of {timestamp, metric, value, hostname} (go-sq-metrics' shape,
 * dotted names, timers in nanoseconds expanded to count, min, max, mean and
 * percentiles), the Prometheus text format 0.0.4 (underscored names,
 * counters and gauges, timers as histograms in seconds) and the Graphite
 * plaintext protocol as go-metrics-graphite writes it. Pure: no clock, no
 * I/O; the caller passes durations, the time and the host name.
 *
 * The update functions are what conn.c calls at its transitions; each
 * accepts NULL (no metrics) and does nothing then. With --threads every
 * serving thread counts into a Metrics of its own (no contention); the lock
 * is there for metrics_add(), which the main thread uses to sum them. */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

/* Recent observations kept per timer for the JSON percentiles (the size of
 * go-metrics' default reservoir). */
#define METRICS_RESERVOIR 1028
/* Histogram buckets per timer, +Inf included. */
#define METRICS_BUCKETS_MAX 16

typedef struct MetricsTimer {
        uint64_t count;
        usec_t sum;                     /* all observations */
        usec_t min, max;                /* valid when count > 0 */
        const usec_t *bounds;           /* upper bounds of the finite buckets, ascending */
        unsigned n_bounds;
        uint64_t buckets[METRICS_BUCKETS_MAX]; /* per bucket, not cumulative; [n_bounds] is +Inf */
        usec_t recent[METRICS_RESERVOIR]; /* a ring of the latest observations */
        unsigned n_recent, next_recent;
} MetricsTimer;

typedef struct Metrics {
        pthread_mutex_t lock;           /* held by every update and by metrics_add() */
        uint64_t accept_total;          /* connections accepted */
        uint64_t accept_success;        /* handshake, authorization and dial done: piping */
        uint64_t accept_error;          /* handshake failed, timed out or client denied */
        uint64_t accept_timeout;        /* handshake timed out (also in accept_error) */
        uint64_t accept_denied;         /* no --allow rule matched (also in accept_error) */
        uint64_t dial_error;            /* the target could not be reached (or timed out) */
        uint64_t conn_timeout;          /* ended by --close-timeout or --max-conn-lifetime */
        uint64_t verify_cached;         /* client chains judged from the cache (src/verify-cache.c) */
        uint64_t open;                  /* connections open now */
        MetricsTimer handshake;         /* accept to completed TLS handshake */
        MetricsTimer lifetime;          /* accept to close, every connection */
} Metrics;

void metrics_init(Metrics *m);
void metrics_done(Metrics *m);
/* Adds src's counters and timers to dst (a snapshot only the caller uses),
 * taking src's lock. The recent observations of the timers are appended,
 * the newest kept when they overflow the reservoir. */
void metrics_add(Metrics *dst, Metrics *src);
/* accept_total and open, under the lock. */
void metrics_counts(Metrics *m, uint64_t *ret_accepted, uint64_t *ret_open);

void metrics_conn_opened(Metrics *m);
void metrics_conn_closed(Metrics *m, usec_t lifetime);
void metrics_handshake_done(Metrics *m, usec_t elapsed);
void metrics_handshake_failed(Metrics *m, bool timed_out);
void metrics_denied(Metrics *m);
void metrics_dial_failed(Metrics *m);
void metrics_piping(Metrics *m);
void metrics_conn_timeout(Metrics *m);
void metrics_verify_cached(Metrics *m);

void metrics_timer_observe(MetricsTimer *t, usec_t value);
/* go-metrics' percentile of the recent observations (p in 0..1), in usec. */
double metrics_timer_percentile(const MetricsTimer *t, double p);

/* What the server knows besides the connection counters, read when the
 * metrics are rendered. */
typedef struct MetricsExtra {
        bool has_cert;                  /* a certificate is served */
        int64_t cert_expiry_seconds;    /* its notAfter minus now; negative once expired */
        bool acme;                      /* --auto-acme-cert */
        uint64_t acme_renewals;         /* certificates obtained from the CA by this process */
        uint64_t acme_renewal_failures; /* failed attempts */
} MetricsExtra;

/* Ghostunnel's JSON: a list of {"timestamp": now, "metric": "PREFIX.NAME",
 * "value": V, "hostname": H}. Returns 0 or -ENOMEM; *ret is malloc'ed. */
int metrics_render_json(const Metrics *m, const MetricsExtra *x, const char *prefix,
                        const char *hostname, int64_t now, char **ret);

/* Prometheus text format 0.0.4 with HELP and TYPE lines, names
 * "<prefix>_..." with the prefix's '.', '-' (anything but [A-Za-z0-9_:])
 * turned into '_'. Returns 0 or -ENOMEM; *ret is malloc'ed. */
int metrics_render_prometheus(const Metrics *m, const MetricsExtra *x, const char *prefix,
                              char **ret);

/* What go-metrics' timers add in Graphite: observations per second as
 * moving averages over 1, 5 and 15 minutes and since the start. The caller
 * keeps a MetricsRates across pushes and updates it before each one. */
typedef struct MetricsRate {
        uint64_t count;                 /* observations at the last update */
        double m1, m5, m15;             /* per second */
        bool primed;                    /* updated once: the averages hold a value */
} MetricsRate;

typedef struct MetricsRates {
        usec_t start;                   /* CLOCK_MONOTONIC when counting began */
        usec_t last;                    /* ... at the last update */
        MetricsRate handshake, lifetime;
} MetricsRates;

void metrics_rates_init(MetricsRates *r, usec_t now);
/* Folds the observations since the last update into the averages, as
 * go-metrics' EWMA does per tick, with the time since then as the tick. */
void metrics_rates_update(MetricsRates *r, const Metrics *m, usec_t now);

/* The Graphite plaintext protocol, one "PREFIX.NAME.FIELD VALUE NOW\n" per
 * value, as go-metrics-graphite writes Ghostunnel's registry: counters as
 * .count and .count_ps (the count divided by interval, in seconds), gauges as
 * .value, timers in nanoseconds as .count, .count_ps, .min, .max, .mean,
 * .std-dev, .50/75/95/99/999-percentile, .one-minute, .five-minute,
 * .fifteen-minute and .mean-rate (rates from r, per second). conn.open is a
 * counter there, as in Ghostunnel. Returns 0 or -ENOMEM; *ret is malloc'ed. */
int metrics_render_graphite(const Metrics *m, const MetricsExtra *x, const MetricsRates *r,
                            const char *prefix, usec_t interval, int64_t now, char **ret);

/* --metrics-prefix: letters, digits, '_', ':', '.' and '-', not starting
 * with a digit, '.' or '-', at most 64 bytes. */
bool metrics_prefix_valid(const char *prefix);

/* Go's strconv.FormatFloat(v, 'g', -1, 64), which the Prometheus client
 * writes: the shortest text that reads back as v ("60", "0.005", "1.5e+06");
 * "+Inf", "-Inf", "NaN" as Prometheus writes them. */
void metrics_format_double(char *buf, size_t size, double v);
