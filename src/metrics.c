/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>

#include "metrics.h"

/* Handshakes take milliseconds; a second is slow, ten is the default
 * --connect-timeout. */
static const usec_t handshake_bounds[] = {
        1 * USEC_PER_MSEC,   5 * USEC_PER_MSEC,   10 * USEC_PER_MSEC,  25 * USEC_PER_MSEC,
        50 * USEC_PER_MSEC,  100 * USEC_PER_MSEC, 250 * USEC_PER_MSEC, 500 * USEC_PER_MSEC,
        1 * USEC_PER_SEC,    2500 * USEC_PER_MSEC, 5 * USEC_PER_SEC,   10 * USEC_PER_SEC,
};
/* Connections live from milliseconds (a failed handshake) to days. */
static const usec_t lifetime_bounds[] = {
        10 * USEC_PER_MSEC, 100 * USEC_PER_MSEC, 1 * USEC_PER_SEC, 10 * USEC_PER_SEC,
        1 * USEC_PER_MINUTE, 5 * USEC_PER_MINUTE, 30 * USEC_PER_MINUTE, 1 * USEC_PER_HOUR,
        6 * USEC_PER_HOUR, 24 * USEC_PER_HOUR,
};

_Static_assert(ELEMENTSOF(handshake_bounds) < METRICS_BUCKETS_MAX, "too many buckets");
_Static_assert(ELEMENTSOF(lifetime_bounds) < METRICS_BUCKETS_MAX, "too many buckets");

void metrics_init(Metrics *m) {
        *m = (Metrics) {};
        pthread_mutex_init(&m->lock, NULL);
        m->handshake.bounds = handshake_bounds;
        m->handshake.n_bounds = ELEMENTSOF(handshake_bounds);
        m->lifetime.bounds = lifetime_bounds;
        m->lifetime.n_bounds = ELEMENTSOF(lifetime_bounds);
}

void metrics_done(Metrics *m) {
        pthread_mutex_destroy(&m->lock);
}

static void timer_add(MetricsTimer *dst, const MetricsTimer *src) {
        unsigned start = src->n_recent < METRICS_RESERVOIR ? 0 : src->next_recent;

        if (src->count == 0)
                return;
        if (dst->count == 0 || src->min < dst->min)
                dst->min = src->min;
        if (dst->count == 0 || src->max > dst->max)
                dst->max = src->max;
        dst->count += src->count;
        dst->sum += src->sum;
        for (unsigned i = 0; i <= dst->n_bounds && i < METRICS_BUCKETS_MAX; i++)
                dst->buckets[i] += src->buckets[i];
        /* Oldest first, so that the ring keeps the newest of src. */
        for (unsigned i = 0; i < src->n_recent; i++) {
                dst->recent[dst->next_recent] = src->recent[(start + i) % METRICS_RESERVOIR];
                dst->next_recent = (dst->next_recent + 1) % METRICS_RESERVOIR;
                if (dst->n_recent < METRICS_RESERVOIR)
                        dst->n_recent++;
        }
}

void metrics_add(Metrics *dst, Metrics *src) {
        pthread_mutex_lock(&src->lock);
        dst->accept_total += src->accept_total;
        dst->accept_success += src->accept_success;
        dst->accept_error += src->accept_error;
        dst->accept_timeout += src->accept_timeout;
        dst->accept_denied += src->accept_denied;
        dst->dial_error += src->dial_error;
        dst->conn_timeout += src->conn_timeout;
        dst->verify_cached += src->verify_cached;
        dst->open += src->open;
        timer_add(&dst->handshake, &src->handshake);
        timer_add(&dst->lifetime, &src->lifetime);
        pthread_mutex_unlock(&src->lock);
}

void metrics_timer_observe(MetricsTimer *t, usec_t value) {
        unsigned i;

        if (t->count == 0 || value < t->min)
                t->min = value;
        if (t->count == 0 || value > t->max)
                t->max = value;
        t->count++;
        t->sum += value;
        for (i = 0; i < t->n_bounds && value > t->bounds[i]; i++)
                ;
        t->buckets[i]++;
        t->recent[t->next_recent] = value;
        t->next_recent = (t->next_recent + 1) % METRICS_RESERVOIR;
        if (t->n_recent < METRICS_RESERVOIR)
                t->n_recent++;
}

void metrics_counts(Metrics *m, uint64_t *ret_accepted, uint64_t *ret_open) {
        pthread_mutex_lock(&m->lock);
        *ret_accepted = m->accept_total;
        *ret_open = m->open;
        pthread_mutex_unlock(&m->lock);
}

void metrics_conn_opened(Metrics *m) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        m->accept_total++;
        m->open++;
        pthread_mutex_unlock(&m->lock);
}

void metrics_conn_closed(Metrics *m, usec_t lifetime) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        if (m->open > 0)
                m->open--;
        metrics_timer_observe(&m->lifetime, lifetime);
        pthread_mutex_unlock(&m->lock);
}

void metrics_handshake_done(Metrics *m, usec_t elapsed) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        metrics_timer_observe(&m->handshake, elapsed);
        pthread_mutex_unlock(&m->lock);
}

void metrics_handshake_failed(Metrics *m, bool timed_out) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        m->accept_error++;
        if (timed_out)
                m->accept_timeout++;
        pthread_mutex_unlock(&m->lock);
}

void metrics_denied(Metrics *m) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        m->accept_error++;
        m->accept_denied++;
        pthread_mutex_unlock(&m->lock);
}

void metrics_verify_cached(Metrics *m) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        m->verify_cached++;
        pthread_mutex_unlock(&m->lock);
}

void metrics_dial_failed(Metrics *m) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        m->dial_error++;
        pthread_mutex_unlock(&m->lock);
}

void metrics_piping(Metrics *m) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        m->accept_success++;
        pthread_mutex_unlock(&m->lock);
}

void metrics_conn_timeout(Metrics *m) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        m->conn_timeout++;
        pthread_mutex_unlock(&m->lock);
}

static int cmp_usec(const void *a, const void *b) {
        usec_t x = *(const usec_t *) a, y = *(const usec_t *) b;
        return x < y ? -1 : x > y;
}

/* go-metrics' SamplePercentiles on a sorted copy of the reservoir. */
static double percentile_sorted(const usec_t *v, size_t n, double p) {
        double pos = p * (double) (n + 1);

        if (n == 0)
                return 0;
        if (pos < 1.0)
                return (double) v[0];
        if (pos >= (double) n)
                return (double) v[n - 1];
        double lower = (double) v[(size_t) pos - 1], upper = (double) v[(size_t) pos];
        return lower + (pos - (double) (size_t) pos) * (upper - lower);
}

double metrics_timer_percentile(const MetricsTimer *t, double p) {
        usec_t sorted[METRICS_RESERVOIR];

        memcpy(sorted, t->recent, t->n_recent * sizeof(usec_t));
        qsort(sorted, t->n_recent, sizeof(usec_t), cmp_usec);
        return percentile_sorted(sorted, t->n_recent, p);
}

/* These write '.' as the decimal point, as every program that reads them
 * expects, because main() keeps LC_NUMERIC at "C" (and strtod() reads them
 * back in the same notation). */
void metrics_format_double(char *buf, size_t size, double v) {
        if (isnan(v)) {
                snprintf(buf, size, "NaN");
                return;
        }
        if (isinf(v)) {
                snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
                return;
        }
        /* The fewest significant digits that read back as v; then, as Go
         * decides for the shortest form, plain notation for exponents from
         * -4 to 5 and scientific notation otherwise. */
        for (int p = 1; p <= 17; p++) {
                const char *e;
                int exp;

                snprintf(buf, size, "%.*e", p - 1, v);
                if (p < 17 && strtod(buf, NULL) != v)
                        continue;
                e = strchr(buf, 'e');
                exp = e ? atoi(e + 1) : 0;
                if (exp >= -4 && exp < 6)
                        snprintf(buf, size, "%.*f", MAX(p - 1 - exp, 0), v);
                return;
        }
}

/* Go's encoding/json writes floats between 1e-6 and 1e21 in plain decimal
 * notation, with the fewest digits that read back as the same number. */
static void format_json_double(char *buf, size_t size, double v) {
        double a = fabs(v);

        if (isfinite(v) && (a == 0 || (a >= 1e-6 && a < 1e21)))
                for (int p = 0; p <= 24; p++) {
                        snprintf(buf, size, "%.*f", p, v);
                        if (strtod(buf, NULL) == v)
                                return;
                }
        metrics_format_double(buf, size, isfinite(v) ? v : 0);
}

bool metrics_prefix_valid(const char *prefix) {
        size_t n = strlen(prefix);

        if (n == 0 || n > 64 || strchr("0123456789.-", prefix[0]))
                return false;
        for (const char *p = prefix; *p; p++)
                if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') ||
                      ('0' <= *p && *p <= '9') || strchr("_:.-", *p)))
                        return false;
        return true;
}

/* --- the list of metrics ------------------------------------------------- */

typedef enum EntryKind {
        KIND_COUNTER,
        KIND_GAUGE,
        KIND_UPDOWN,    /* a gauge, but a go-metrics Counter (Inc/Dec) in Ghostunnel */
        KIND_TIMER,
} EntryKind;

typedef struct Entry {
        const char *name;       /* dotted, as in Ghostunnel */
        EntryKind kind;
        const char *help;
        int64_t value;          /* counters and gauges */
        const MetricsTimer *timer;
} Entry;

#define ENTRIES_MAX 16

static size_t metrics_entries(const Metrics *m, const MetricsExtra *x, Entry *e) {
        size_t n = 0;

#define ADD(n_, k_, h_, v_, t_) e[n++] = (Entry) { n_, k_, h_, (int64_t) (v_), t_ }
        ADD("conn.open", KIND_UPDOWN, "Connections open now.", m->open, NULL);
        ADD("accept.total", KIND_COUNTER, "Connections accepted.", m->accept_total, NULL);
        ADD("accept.success", KIND_COUNTER,
            "Connections that completed the handshake and authorization and reached the target.",
            m->accept_success, NULL);
        ADD("accept.error", KIND_COUNTER,
            "Connections that failed the TLS handshake, timed out in it or were denied.",
            m->accept_error, NULL);
        ADD("accept.timeout", KIND_COUNTER, "TLS handshakes that exceeded --connect-timeout.",
            m->accept_timeout, NULL);
        ADD("accept.denied", KIND_COUNTER, "Client certificates that no --allow rule matched.",
            m->accept_denied, NULL);
        ADD("dial.error", KIND_COUNTER, "Connections whose target could not be reached.",
            m->dial_error, NULL);
        ADD("conn.timeout", KIND_COUNTER,
            "Connections ended by --close-timeout or --max-conn-lifetime.", m->conn_timeout, NULL);
        ADD("verify.cached", KIND_COUNTER,
            "Client certificate chains not verified again: same chain, same CA bundle and rules.",
            m->verify_cached, NULL);
        ADD("conn.handshake", KIND_TIMER, "Time from accept to a completed TLS handshake.", 0,
            &m->handshake);
        ADD("conn.lifetime", KIND_TIMER, "Time from accept to close.", 0, &m->lifetime);
        if (x && x->has_cert)
                ADD("cert.expiry-seconds", KIND_GAUGE,
                    "Seconds until the served certificate expires.", x->cert_expiry_seconds, NULL);
        if (x && x->acme) {
                ADD("acme.renewals", KIND_COUNTER,
                    "Certificates obtained from the ACME CA by this process.", x->acme_renewals,
                    NULL);
                ADD("acme.renewal-failures", KIND_COUNTER,
                    "Failed attempts to obtain a certificate from the ACME CA.",
                    x->acme_renewal_failures, NULL);
        }
#undef ADD
        return n;
}

/* --- JSON ------------------------------------------------------------------ */

static int json_emit(json_object *list, int64_t now, const char *prefix, const char *name,
                     const char *suffix, json_object *value, const char *hostname) {
        _cleanup_free_ char *metric = NULL;
        json_object *o;

        if (!value || asprintf(&metric, "%s.%s%s", prefix, name, suffix) < 0) {
                json_object_put(value);
                return -ENOMEM;
        }
        o = json_object_new_object();
        if (!o) {
                json_object_put(value);
                return -ENOMEM;
        }
        if (json_object_object_add(o, "timestamp", json_object_new_int64(now)) < 0 ||
            json_object_object_add(o, "metric", json_object_new_string(metric)) < 0 ||
            json_object_object_add(o, "value", value) < 0 ||
            json_object_object_add(o, "hostname", json_object_new_string(hostname)) < 0 ||
            json_object_array_add(list, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return 0;
}

static json_object *json_ns_double(double usec) {
        char buf[64];
        double ns = usec * 1000.0;

        format_json_double(buf, sizeof buf, ns);
        return json_object_new_double_s(ns, buf);
}

static int json_emit_timer(json_object *list, int64_t now, const char *prefix, const Entry *e,
                           const char *hostname) {
        static const struct {
                const char *suffix;
                double p;
        } pct[] = {
                { ".50-percentile", 0.5 },
                { ".75-percentile", 0.75 },
                { ".95-percentile", 0.95 },
                { ".99-percentile", 0.99 },
        };
        const MetricsTimer *t = e->timer;
        usec_t sorted[METRICS_RESERVOIR];
        bool any = t->count > 0;
        int r;

        /* go-metrics' timers count nanoseconds. */
        if ((r = json_emit(list, now, prefix, e->name, ".count",
                           json_object_new_int64((int64_t) t->count), hostname)) < 0 ||
            (r = json_emit(list, now, prefix, e->name, ".min",
                           json_object_new_int64(any ? (int64_t) t->min * 1000 : 0), hostname)) < 0 ||
            (r = json_emit(list, now, prefix, e->name, ".max",
                           json_object_new_int64(any ? (int64_t) t->max * 1000 : 0), hostname)) < 0 ||
            (r = json_emit(list, now, prefix, e->name, ".mean",
                           json_ns_double(any ? (double) t->sum / (double) t->count : 0),
                           hostname)) < 0)
                return r;

        memcpy(sorted, t->recent, t->n_recent * sizeof(usec_t));
        qsort(sorted, t->n_recent, sizeof(usec_t), cmp_usec);
        for (size_t i = 0; i < ELEMENTSOF(pct); i++) {
                r = json_emit(list, now, prefix, e->name, pct[i].suffix,
                              json_ns_double(percentile_sorted(sorted, t->n_recent, pct[i].p)),
                              hostname);
                if (r < 0)
                        return r;
        }
        return 0;
}

int metrics_render_json(const Metrics *m, const MetricsExtra *x, const char *prefix,
                        const char *hostname, int64_t now, char **ret) {
        Entry e[ENTRIES_MAX];
        size_t n = metrics_entries(m, x, e);
        json_object *list;
        const char *text;
        char *copy;
        int r = 0;

        list = json_object_new_array();
        if (!list)
                return -ENOMEM;
        for (size_t i = 0; i < n && r >= 0; i++)
                r = e[i].kind == KIND_TIMER
                            ? json_emit_timer(list, now, prefix, &e[i], hostname)
                            : json_emit(list, now, prefix, e[i].name, "",
                                        json_object_new_int64(e[i].value), hostname);
        text = r >= 0 ? json_object_to_json_string_ext(
                                list, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                      : NULL;
        copy = text ? strdup(text) : NULL;
        json_object_put(list);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

/* --- Prometheus ------------------------------------------------------------ */

/* Prometheus names allow [a-zA-Z0-9_:]; Ghostunnel's exporter turns the
 * rest into '_' as well. */
static void fputs_flat(const char *s, FILE *f) {
        for (; *s; s++) {
                bool ok = ('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') ||
                          ('0' <= *s && *s <= '9') || *s == '_' || *s == ':';
                fputc(ok ? *s : '_', f);
        }
}

static void prom_name(FILE *f, const char *prefix, const Entry *e, const char *suffix) {
        fputs_flat(prefix, f);
        fputc('_', f);
        fputs_flat(e->name, f);
        if (e->kind == KIND_TIMER)
                fputs("_seconds", f);
        fputs(suffix, f);
}

static void prom_seconds(FILE *f, usec_t usec) {
        char buf[64];

        metrics_format_double(buf, sizeof buf, (double) usec / (double) USEC_PER_SEC);
        fputs(buf, f);
}

static void prom_entry(FILE *f, const char *prefix, const Entry *e) {
        static const char *const types[] = {
                [KIND_COUNTER] = "counter",
                [KIND_GAUGE] = "gauge",
                [KIND_UPDOWN] = "gauge",
                [KIND_TIMER] = "histogram",
        };
        const MetricsTimer *t = e->timer;
        uint64_t cumulative = 0;

        fputs("# HELP ", f);
        prom_name(f, prefix, e, "");
        fprintf(f, " %s\n# TYPE ", e->help);
        prom_name(f, prefix, e, "");
        fprintf(f, " %s\n", types[e->kind]);
        if (e->kind != KIND_TIMER) {
                prom_name(f, prefix, e, "");
                fprintf(f, " %" PRId64 "\n", e->value);
                return;
        }
        for (unsigned i = 0; i <= t->n_bounds; i++) {
                cumulative += t->buckets[i];
                prom_name(f, prefix, e, "_bucket{le=\"");
                if (i < t->n_bounds)
                        prom_seconds(f, t->bounds[i]);
                else
                        fputs("+Inf", f);
                fprintf(f, "\"} %" PRIu64 "\n", cumulative);
        }
        prom_name(f, prefix, e, "_sum ");
        prom_seconds(f, t->sum);
        fputc('\n', f);
        prom_name(f, prefix, e, "_count");
        fprintf(f, " %" PRIu64 "\n", t->count);
}

int metrics_render_prometheus(const Metrics *m, const MetricsExtra *x, const char *prefix,
                              char **ret) {
        Entry e[ENTRIES_MAX];
        size_t n = metrics_entries(m, x, e), size = 0;
        char *buf = NULL;
        FILE *f;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                prom_entry(f, prefix, &e[i]);
        if (ferror(f) | fclose(f)) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

/* --- Graphite -------------------------------------------------------------- */

void metrics_rates_init(MetricsRates *r, usec_t now) {
        *r = (MetricsRates) { .start = now, .last = now };
}

static void rate_update(MetricsRate *rate, uint64_t count, double seconds) {
        double instant = (double) (count - rate->count) / seconds;
        struct {
                double *avg;
                double minutes;
        } avgs[] = { { &rate->m1, 1 }, { &rate->m5, 5 }, { &rate->m15, 15 } };

        /* go-metrics' EWMA: the first tick sets the rate, each further one
         * moves it by alpha = 1 - e^(-tick / window) towards the tick's own. */
        for (size_t i = 0; i < ELEMENTSOF(avgs); i++) {
                double alpha = 1.0 - exp(-seconds / (60.0 * avgs[i].minutes));

                if (rate->primed)
                        *avgs[i].avg += alpha * (instant - *avgs[i].avg);
                else
                        *avgs[i].avg = instant;
        }
        rate->count = count;
        rate->primed = true;
}

void metrics_rates_update(MetricsRates *r, const Metrics *m, usec_t now) {
        double seconds;

        if (now <= r->last)
                return;
        seconds = (double) (now - r->last) / (double) USEC_PER_SEC;
        rate_update(&r->handshake, m->handshake.count, seconds);
        rate_update(&r->lifetime, m->lifetime.count, seconds);
        r->last = now;
}

/* go-metrics' SampleStdDev of the recent observations, in usec. */
static double stddev_recent(const MetricsTimer *t) {
        double mean = 0, sum = 0;

        if (t->n_recent == 0)
                return 0;
        for (unsigned i = 0; i < t->n_recent; i++)
                mean += (double) t->recent[i];
        mean /= t->n_recent;
        for (unsigned i = 0; i < t->n_recent; i++)
                sum += ((double) t->recent[i] - mean) * ((double) t->recent[i] - mean);
        return sqrt(sum / t->n_recent);
}

static void graphite_timer(FILE *f, const char *prefix, const Entry *e, const MetricsRate *rate,
                           double mean_rate, double interval, int64_t now) {
        static const struct {
                const char *key;
                double p;
        } pct[] = {
                { "50", 0.5 }, { "75", 0.75 }, { "95", 0.95 }, { "99", 0.99 }, { "999", 0.999 },
        };
        const MetricsTimer *t = e->timer;
        usec_t sorted[METRICS_RESERVOIR];
        bool any = t->count > 0;

        /* In nanoseconds, go-metrics-graphite's default unit. */
        fprintf(f, "%s.%s.count %" PRIu64 " %" PRId64 "\n", prefix, e->name, t->count, now);
        fprintf(f, "%s.%s.count_ps %.2f %" PRId64 "\n", prefix, e->name,
                (double) t->count / interval, now);
        fprintf(f, "%s.%s.min %" PRIu64 " %" PRId64 "\n", prefix, e->name,
                any ? t->min * 1000 : 0, now);
        fprintf(f, "%s.%s.max %" PRIu64 " %" PRId64 "\n", prefix, e->name,
                any ? t->max * 1000 : 0, now);
        fprintf(f, "%s.%s.mean %.2f %" PRId64 "\n", prefix, e->name,
                any ? (double) t->sum / (double) t->count * 1000.0 : 0, now);
        fprintf(f, "%s.%s.std-dev %.2f %" PRId64 "\n", prefix, e->name,
                stddev_recent(t) * 1000.0, now);
        memcpy(sorted, t->recent, t->n_recent * sizeof(usec_t));
        qsort(sorted, t->n_recent, sizeof(usec_t), cmp_usec);
        for (size_t i = 0; i < ELEMENTSOF(pct); i++)
                fprintf(f, "%s.%s.%s-percentile %.2f %" PRId64 "\n", prefix, e->name, pct[i].key,
                        percentile_sorted(sorted, t->n_recent, pct[i].p) * 1000.0, now);
        fprintf(f, "%s.%s.one-minute %.2f %" PRId64 "\n", prefix, e->name, rate->m1, now);
        fprintf(f, "%s.%s.five-minute %.2f %" PRId64 "\n", prefix, e->name, rate->m5, now);
        fprintf(f, "%s.%s.fifteen-minute %.2f %" PRId64 "\n", prefix, e->name, rate->m15, now);
        fprintf(f, "%s.%s.mean-rate %.2f %" PRId64 "\n", prefix, e->name, mean_rate, now);
}

int metrics_render_graphite(const Metrics *m, const MetricsExtra *x, const MetricsRates *r,
                            const char *prefix, usec_t interval, int64_t now, char **ret) {
        Entry e[ENTRIES_MAX];
        size_t n = metrics_entries(m, x, e), size = 0;
        double seconds = (double) MAX(interval, (usec_t) 1) / (double) USEC_PER_SEC;
        double running = (double) (r->last - r->start) / (double) USEC_PER_SEC;
        char *buf = NULL;
        FILE *f;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                switch (e[i].kind) {
                case KIND_COUNTER:
                case KIND_UPDOWN:
                        /* count_ps is the whole count over the flush interval,
                         * as go-metrics-graphite computes it: not a rate. */
                        fprintf(f, "%s.%s.count %" PRId64 " %" PRId64 "\n", prefix, e[i].name,
                                e[i].value, now);
                        fprintf(f, "%s.%s.count_ps %.2f %" PRId64 "\n", prefix, e[i].name,
                                (double) e[i].value / seconds, now);
                        break;
                case KIND_GAUGE:
                        fprintf(f, "%s.%s.value %" PRId64 " %" PRId64 "\n", prefix, e[i].name,
                                e[i].value, now);
                        break;
                case KIND_TIMER: {
                        const MetricsRate *rate = e[i].timer == &m->handshake ? &r->handshake
                                                                               : &r->lifetime;
                        double mean_rate = running > 0 ? (double) e[i].timer->count / running : 0;

                        graphite_timer(f, prefix, &e[i], rate, mean_rate, seconds, now);
                        break;
                }
                }
        if (ferror(f) | fclose(f)) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}
