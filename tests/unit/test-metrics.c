/* SPDX-License-Identifier: MIT */
/* Counters, timers and their JSON, Prometheus and Graphite renderings. */

#include <math.h>

#include "metrics.h"
#include "test-util.h"

#define MS USEC_PER_MSEC
#define SEC USEC_PER_SEC

/* Three accepted connections, two handshakes done (2 ms, 30 ms), one timed
 * out, one client denied, one dial error, one piped, one --close-timeout,
 * two closed (after 0.5 s and 120 s): a fixed set of values. */
static void fill(Metrics *m) {
        metrics_init(m);
        metrics_conn_opened(m);
        metrics_conn_opened(m);
        metrics_conn_opened(m);
        metrics_handshake_done(m, 2 * MS);
        metrics_handshake_done(m, 30 * MS);
        metrics_handshake_failed(m, true);
        metrics_denied(m);
        metrics_dial_failed(m);
        metrics_piping(m);
        metrics_conn_timeout(m);
        metrics_verify_cached(m);
        metrics_conn_closed(m, 500 * MS);
        metrics_conn_closed(m, 120 * SEC);
}

static const char expected_prometheus[] =
        "# HELP tlsgate_conn_open Connections open now.\n"
        "# TYPE tlsgate_conn_open gauge\n"
        "tlsgate_conn_open 1\n"
        "# HELP tlsgate_accept_total Connections accepted.\n"
        "# TYPE tlsgate_accept_total counter\n"
        "tlsgate_accept_total 3\n"
        "# HELP tlsgate_accept_success Connections that completed the handshake and "
        "authorization and reached the target.\n"
        "# TYPE tlsgate_accept_success counter\n"
        "tlsgate_accept_success 1\n"
        "# HELP tlsgate_accept_error Connections that failed the TLS handshake, timed out in "
        "it or were denied.\n"
        "# TYPE tlsgate_accept_error counter\n"
        "tlsgate_accept_error 2\n"
        "# HELP tlsgate_accept_timeout TLS handshakes that exceeded --connect-timeout.\n"
        "# TYPE tlsgate_accept_timeout counter\n"
        "tlsgate_accept_timeout 1\n"
        "# HELP tlsgate_accept_denied Client certificates that no --allow rule matched.\n"
        "# TYPE tlsgate_accept_denied counter\n"
        "tlsgate_accept_denied 1\n"
        "# HELP tlsgate_dial_error Connections whose target could not be reached.\n"
        "# TYPE tlsgate_dial_error counter\n"
        "tlsgate_dial_error 1\n"
        "# HELP tlsgate_conn_timeout Connections ended by --close-timeout or "
        "--max-conn-lifetime.\n"
        "# TYPE tlsgate_conn_timeout counter\n"
        "tlsgate_conn_timeout 1\n"
        "# HELP tlsgate_verify_cached Client certificate chains not verified again: same "
        "chain, same CA bundle and rules.\n"
        "# TYPE tlsgate_verify_cached counter\n"
        "tlsgate_verify_cached 1\n"
        "# HELP tlsgate_conn_handshake_seconds Time from accept to a completed TLS handshake.\n"
        "# TYPE tlsgate_conn_handshake_seconds histogram\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"0.001\"} 0\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"0.005\"} 1\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"0.01\"} 1\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"0.025\"} 1\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"0.05\"} 2\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"0.1\"} 2\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"0.25\"} 2\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"0.5\"} 2\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"1\"} 2\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"2.5\"} 2\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"5\"} 2\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"10\"} 2\n"
        "tlsgate_conn_handshake_seconds_bucket{le=\"+Inf\"} 2\n"
        "tlsgate_conn_handshake_seconds_sum 0.032\n"
        "tlsgate_conn_handshake_seconds_count 2\n"
        "# HELP tlsgate_conn_lifetime_seconds Time from accept to close.\n"
        "# TYPE tlsgate_conn_lifetime_seconds histogram\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"0.01\"} 0\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"0.1\"} 0\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"1\"} 1\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"10\"} 1\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"60\"} 1\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"300\"} 2\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"1800\"} 2\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"3600\"} 2\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"21600\"} 2\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"86400\"} 2\n"
        "tlsgate_conn_lifetime_seconds_bucket{le=\"+Inf\"} 2\n"
        "tlsgate_conn_lifetime_seconds_sum 120.5\n"
        "tlsgate_conn_lifetime_seconds_count 2\n"
        "# HELP tlsgate_cert_expiry_seconds Seconds until the served certificate expires.\n"
        "# TYPE tlsgate_cert_expiry_seconds gauge\n"
        "tlsgate_cert_expiry_seconds 86400\n"
        "# HELP tlsgate_acme_renewals Certificates obtained from the ACME CA by this process.\n"
        "# TYPE tlsgate_acme_renewals counter\n"
        "tlsgate_acme_renewals 2\n"
        "# HELP tlsgate_acme_renewal_failures Failed attempts to obtain a certificate from the "
        "ACME CA.\n"
        "# TYPE tlsgate_acme_renewal_failures counter\n"
        "tlsgate_acme_renewal_failures 1\n";

static void test_prometheus_exact(void) {
        static Metrics m;
        MetricsExtra x = {
                .has_cert = true,
                .cert_expiry_seconds = 86400,
                .acme = true,
                .acme_renewals = 2,
                .acme_renewal_failures = 1,
        };
        _cleanup_free_ char *text = NULL;

        fill(&m);
        CHECK_INT_EQ(metrics_render_prometheus(&m, &x, "tlsgate", &text), 0);
        CHECK_STR_EQ(text, expected_prometheus);
}

static void test_prometheus_prefix_and_optional(void) {
        static Metrics m;
        MetricsExtra x = {};
        _cleanup_free_ char *text = NULL;

        metrics_init(&m);
        /* '.' and '-' become '_'; no certificate and no ACME: no such lines. */
        CHECK_INT_EQ(metrics_render_prometheus(&m, &x, "my.gate-1", &text), 0);
        CHECK_CONTAINS(text, "\nmy_gate_1_accept_total 0\n");
        CHECK_CONTAINS(text, "# TYPE my_gate_1_conn_open gauge\nmy_gate_1_conn_open 0\n");
        CHECK_CONTAINS(text, "my_gate_1_conn_lifetime_seconds_bucket{le=\"+Inf\"} 0\n"
                             "my_gate_1_conn_lifetime_seconds_sum 0\n"
                             "my_gate_1_conn_lifetime_seconds_count 0\n");
        CHECK(!strstr(text, "cert_expiry"));
        CHECK(!strstr(text, "acme_"));
        /* NULL extras are allowed too. */
        free(text);
        text = NULL;
        CHECK_INT_EQ(metrics_render_prometheus(&m, NULL, "tlsgate", &text), 0);
        CHECK(!strstr(text, "cert_expiry"));
}

static void test_json_exact(void) {
        static Metrics m;
        MetricsExtra x = { .has_cert = true, .cert_expiry_seconds = -5 };
        _cleanup_free_ char *text = NULL;

        fill(&m);
        CHECK_INT_EQ(metrics_render_json(&m, &x, "tlsgate", "host\"1", 1700000000, &text), 0);
#define E(name, value)                                                                         \
        "{\"timestamp\":1700000000,\"metric\":\"tlsgate." name "\",\"value\":" value           \
        ",\"hostname\":\"host\\\"1\"}"
        CHECK_STR_EQ(text,
                     "[" E("conn.open", "1") "," E("accept.total", "3") ","
                     E("accept.success", "1") "," E("accept.error", "2") ","
                     E("accept.timeout", "1") "," E("accept.denied", "1") ","
                     E("dial.error", "1") "," E("conn.timeout", "1") ","
                     E("verify.cached", "1") ","
                     /* nanoseconds, as go-metrics' timers */
                     E("conn.handshake.count", "2") "," E("conn.handshake.min", "2000000") ","
                     E("conn.handshake.max", "30000000") "," E("conn.handshake.mean", "16000000") ","
                     E("conn.handshake.50-percentile", "16000000") ","
                     E("conn.handshake.75-percentile", "30000000") ","
                     E("conn.handshake.95-percentile", "30000000") ","
                     E("conn.handshake.99-percentile", "30000000") ","
                     E("conn.lifetime.count", "2") "," E("conn.lifetime.min", "500000000") ","
                     E("conn.lifetime.max", "120000000000") ","
                     E("conn.lifetime.mean", "60250000000") ","
                     E("conn.lifetime.50-percentile", "60250000000") ","
                     E("conn.lifetime.75-percentile", "120000000000") ","
                     E("conn.lifetime.95-percentile", "120000000000") ","
                     E("conn.lifetime.99-percentile", "120000000000") ","
                     E("cert.expiry-seconds", "-5") "]");
#undef E
}

/* go-metrics-graphite's lines for Ghostunnel's registry: counters (conn.open
 * among them) as .count and .count_ps, gauges as .value, timers in
 * nanoseconds with the deviation, five percentiles and the rates. */
static const char expected_graphite[] =
        "p.conn.open.count 1 1700000000\n"
        "p.conn.open.count_ps 0.10 1700000000\n"
        "p.accept.total.count 3 1700000000\n"
        "p.accept.total.count_ps 0.30 1700000000\n"
        "p.accept.success.count 1 1700000000\n"
        "p.accept.success.count_ps 0.10 1700000000\n"
        "p.accept.error.count 2 1700000000\n"
        "p.accept.error.count_ps 0.20 1700000000\n"
        "p.accept.timeout.count 1 1700000000\n"
        "p.accept.timeout.count_ps 0.10 1700000000\n"
        "p.accept.denied.count 1 1700000000\n"
        "p.accept.denied.count_ps 0.10 1700000000\n"
        "p.dial.error.count 1 1700000000\n"
        "p.dial.error.count_ps 0.10 1700000000\n"
        "p.conn.timeout.count 1 1700000000\n"
        "p.conn.timeout.count_ps 0.10 1700000000\n"
        "p.verify.cached.count 1 1700000000\n"
        "p.verify.cached.count_ps 0.10 1700000000\n"
        "p.conn.handshake.count 2 1700000000\n"
        "p.conn.handshake.count_ps 0.20 1700000000\n"
        "p.conn.handshake.min 2000000 1700000000\n"
        "p.conn.handshake.max 30000000 1700000000\n"
        "p.conn.handshake.mean 16000000.00 1700000000\n"
        "p.conn.handshake.std-dev 14000000.00 1700000000\n"
        "p.conn.handshake.50-percentile 16000000.00 1700000000\n"
        "p.conn.handshake.75-percentile 30000000.00 1700000000\n"
        "p.conn.handshake.95-percentile 30000000.00 1700000000\n"
        "p.conn.handshake.99-percentile 30000000.00 1700000000\n"
        "p.conn.handshake.999-percentile 30000000.00 1700000000\n"
        "p.conn.handshake.one-minute 0.20 1700000000\n"
        "p.conn.handshake.five-minute 0.20 1700000000\n"
        "p.conn.handshake.fifteen-minute 0.20 1700000000\n"
        "p.conn.handshake.mean-rate 0.20 1700000000\n"
        "p.conn.lifetime.count 2 1700000000\n"
        "p.conn.lifetime.count_ps 0.20 1700000000\n"
        "p.conn.lifetime.min 500000000 1700000000\n"
        "p.conn.lifetime.max 120000000000 1700000000\n"
        "p.conn.lifetime.mean 60250000000.00 1700000000\n"
        "p.conn.lifetime.std-dev 59750000000.00 1700000000\n"
        "p.conn.lifetime.50-percentile 60250000000.00 1700000000\n"
        "p.conn.lifetime.75-percentile 120000000000.00 1700000000\n"
        "p.conn.lifetime.95-percentile 120000000000.00 1700000000\n"
        "p.conn.lifetime.99-percentile 120000000000.00 1700000000\n"
        "p.conn.lifetime.999-percentile 120000000000.00 1700000000\n"
        "p.conn.lifetime.one-minute 0.20 1700000000\n"
        "p.conn.lifetime.five-minute 0.20 1700000000\n"
        "p.conn.lifetime.fifteen-minute 0.20 1700000000\n"
        "p.conn.lifetime.mean-rate 0.20 1700000000\n"
        "p.cert.expiry-seconds.value 86400 1700000000\n"
        "p.acme.renewals.count 2 1700000000\n"
        "p.acme.renewals.count_ps 0.20 1700000000\n"
        "p.acme.renewal-failures.count 1 1700000000\n"
        "p.acme.renewal-failures.count_ps 0.10 1700000000\n";

static void test_graphite_exact(void) {
        static Metrics m;
        MetricsExtra x = {
                .has_cert = true,
                .cert_expiry_seconds = 86400,
                .acme = true,
                .acme_renewals = 2,
                .acme_renewal_failures = 1,
        };
        _cleanup_free_ char *text = NULL;
        MetricsRates r;

        fill(&m);
        /* Ten seconds after the start, two of each timer: 0.2/s everywhere. */
        metrics_rates_init(&r, 5 * SEC);
        metrics_rates_update(&r, &m, 15 * SEC);
        CHECK_INT_EQ(metrics_render_graphite(&m, &x, &r, "p", 10 * SEC, 1700000000, &text), 0);
        CHECK_STR_EQ(text, expected_graphite);
}

static void test_graphite_empty_and_rates(void) {
        static Metrics m;
        _cleanup_free_ char *text = NULL;
        MetricsRates r;

        /* Nothing observed yet: zeros, no division by zero; no extras. */
        metrics_init(&m);
        metrics_rates_init(&r, 0);
        CHECK_INT_EQ(metrics_render_graphite(&m, NULL, &r, "ghostunnel", 30 * SEC, 7, &text), 0);
        CHECK_CONTAINS(text, "ghostunnel.conn.open.count 0 7\n");
        CHECK_CONTAINS(text, "ghostunnel.conn.handshake.min 0 7\n"
                             "ghostunnel.conn.handshake.max 0 7\n"
                             "ghostunnel.conn.handshake.mean 0.00 7\n"
                             "ghostunnel.conn.handshake.std-dev 0.00 7\n"
                             "ghostunnel.conn.handshake.50-percentile 0.00 7\n");
        CHECK_CONTAINS(text, "ghostunnel.conn.lifetime.mean-rate 0.00 7\n");
        CHECK(!strstr(text, "cert.expiry"));
        CHECK(!strstr(text, "acme"));
        CHECK(!strstr(text, "nan") && !strstr(text, "inf"));

        /* go-metrics' EWMA: the first update sets the rate, a later one moves
         * it by 1 - e^(-dt/window) towards what happened since. */
        metrics_handshake_done(&m, 1 * MS);
        metrics_handshake_done(&m, 1 * MS);
        metrics_rates_update(&r, &m, 10 * SEC);
        CHECK(fabs(r.handshake.m1 - 0.2) < 1e-12 && fabs(r.handshake.m15 - 0.2) < 1e-12);
        CHECK(r.lifetime.primed && r.lifetime.m1 == 0);
        metrics_rates_update(&r, &m, 70 * SEC);        /* a minute without handshakes */
        CHECK(fabs(r.handshake.m1 - 0.2 * exp(-1)) < 1e-12);
        CHECK(fabs(r.handshake.m5 - 0.2 * exp(-0.2)) < 1e-12);
        CHECK(fabs(r.handshake.m15 - 0.2 * exp(-60.0 / 900)) < 1e-12);
        metrics_rates_update(&r, &m, 70 * SEC);        /* no time passed: nothing changes */
        CHECK(fabs(r.handshake.m1 - 0.2 * exp(-1)) < 1e-12);
        CHECK_U64_EQ(r.last, 70 * SEC);
        free(text);
        text = NULL;
        /* The mean rate: 2 handshakes in 70 s. */
        CHECK_INT_EQ(metrics_render_graphite(&m, NULL, &r, "g", 30 * SEC, 7, &text), 0);
        CHECK_CONTAINS(text, "g.conn.handshake.mean-rate 0.03 7\n");
        CHECK_CONTAINS(text, "g.conn.handshake.one-minute 0.07 7\n");
        CHECK_CONTAINS(text, "g.conn.handshake.count_ps 0.07 7\n");
}

static void test_percentiles(void) {
        static Metrics m;

        metrics_init(&m);
        CHECK(metrics_timer_percentile(&m.handshake, 0.5) == 0);
        /* go-metrics: pos = p * (n + 1), interpolated between neighbours. */
        for (usec_t v = 1; v <= 10; v++)
                metrics_timer_observe(&m.handshake, v * 10);
        CHECK(metrics_timer_percentile(&m.handshake, 0.5) == 55);
        CHECK(metrics_timer_percentile(&m.handshake, 0.75) == 82.5);
        CHECK(metrics_timer_percentile(&m.handshake, 0.99) == 100);
        CHECK(metrics_timer_percentile(&m.handshake, 0.01) == 10);
        CHECK_U64_EQ(m.handshake.min, 10);
        CHECK_U64_EQ(m.handshake.max, 100);

        /* The reservoir keeps the latest observations; count and sum keep all. */
        for (unsigned i = 0; i < 2 * METRICS_RESERVOIR; i++)
                metrics_timer_observe(&m.handshake, 7);
        CHECK_INT_EQ(m.handshake.n_recent, METRICS_RESERVOIR);
        CHECK(metrics_timer_percentile(&m.handshake, 0.99) == 7);
        CHECK_U64_EQ(m.handshake.count, 10 + 2 * METRICS_RESERVOIR);
        CHECK_U64_EQ(m.handshake.max, 100);
        CHECK_U64_EQ(m.handshake.min, 7);
}

static void test_null_and_gauge(void) {
        static Metrics m;

        /* Hooks with no metrics do nothing. */
        metrics_conn_opened(NULL);
        metrics_conn_closed(NULL, 1);
        metrics_handshake_done(NULL, 1);
        metrics_handshake_failed(NULL, true);
        metrics_denied(NULL);
        metrics_dial_failed(NULL);
        metrics_piping(NULL);
        metrics_conn_timeout(NULL);
        metrics_verify_cached(NULL);

        metrics_init(&m);
        metrics_conn_opened(&m);
        metrics_conn_closed(&m, 1);
        metrics_conn_closed(&m, 1); /* never below zero */
        CHECK_U64_EQ(m.open, 0);
        CHECK_U64_EQ(m.accept_total, 1);
        CHECK_U64_EQ(m.lifetime.count, 2);
}

static void test_format_double(void) {
        static const struct {
                double v;
                const char *s;
        } cases[] = {
                { 0, "0" },           { 60, "60" },         { 0.005, "0.005" },
                { 2.5, "2.5" },       { 86400, "86400" },   { 120.5, "120.5" },
                { 1.5e6, "1.5e+06" }, { 1e6, "1e+06" },     { 0.0001, "0.0001" },
                { 1e-5, "1e-05" },    { 0.1, "0.1" },       { 123456, "123456" },
                { 1.0 / 3, "0.3333333333333333" },
        };
        char buf[64];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                metrics_format_double(buf, sizeof buf, cases[i].v);
                CHECK_STR_EQ(buf, cases[i].s);
        }
        metrics_format_double(buf, sizeof buf, 1.0 / 0.0);
        CHECK_STR_EQ(buf, "+Inf");
        metrics_format_double(buf, sizeof buf, -1.0 / 0.0);
        CHECK_STR_EQ(buf, "-Inf");
}

static void test_prefix_valid(void) {
        CHECK(metrics_prefix_valid("tlsgate"));
        CHECK(metrics_prefix_valid("ghostunnel"));
        CHECK(metrics_prefix_valid("my.gate-1"));
        CHECK(metrics_prefix_valid("ns:sub_x"));
        CHECK(!metrics_prefix_valid(""));
        CHECK(!metrics_prefix_valid("1abc"));
        CHECK(!metrics_prefix_valid(".abc"));
        CHECK(!metrics_prefix_valid("a b"));
        CHECK(!metrics_prefix_valid("a{b}"));
        CHECK(!metrics_prefix_valid("ä"));
        CHECK(!metrics_prefix_valid(
                "a234567890123456789012345678901234567890123456789012345678901234X"));
}

/* --threads: the per-thread counters summed give what one thread counting
 * everything would have rendered. */
static void test_add(void) {
        static Metrics a, b, sum, all;
        _cleanup_free_ char *text = NULL;

        fill(&a);
        metrics_init(&b);
        metrics_verify_cached(&b);
        metrics_conn_opened(&b);
        metrics_handshake_done(&b, 7 * MS);
        metrics_conn_closed(&b, 3 * SEC);

        fill(&all);
        metrics_verify_cached(&all);
        metrics_conn_opened(&all);
        metrics_handshake_done(&all, 7 * MS);
        metrics_conn_closed(&all, 3 * SEC);

        metrics_init(&sum);
        metrics_add(&sum, &a);
        metrics_add(&sum, &b);
        CHECK_INT_EQ(sum.accept_total, 4);
        CHECK_INT_EQ(sum.verify_cached, 2);
        CHECK_INT_EQ(sum.open, 1);
        CHECK_INT_EQ(sum.handshake.count, 3);
        CHECK_INT_EQ(sum.handshake.min, 2 * MS);
        CHECK_INT_EQ(sum.handshake.max, 30 * MS);
        CHECK_INT_EQ(sum.lifetime.n_recent, 3);
        CHECK(metrics_render_prometheus(&sum, NULL, "tlsgate", &text) >= 0);
        {
                _cleanup_free_ char *expected = NULL;
                CHECK(metrics_render_prometheus(&all, NULL, "tlsgate", &expected) >= 0);
                CHECK_STR_EQ(text, expected);
        }
        CHECK(fabs(metrics_timer_percentile(&sum.handshake, 0.5) -
                   metrics_timer_percentile(&all.handshake, 0.5)) < 1e-9);

        /* A full reservoir keeps the newest observations of the added one. */
        metrics_init(&a);
        for (unsigned i = 0; i < METRICS_RESERVOIR + 10; i++)
                metrics_timer_observe(&a.handshake, i);
        metrics_init(&sum);
        metrics_add(&sum, &a);
        CHECK_INT_EQ(sum.handshake.n_recent, METRICS_RESERVOIR);
        CHECK_INT_EQ(sum.handshake.recent[(sum.handshake.next_recent + METRICS_RESERVOIR - 1) %
                                          METRICS_RESERVOIR],
                     METRICS_RESERVOIR + 9);
        CHECK_INT_EQ(sum.handshake.recent[sum.handshake.next_recent], 10);
}

int main(void) {
        test_add();
        test_prometheus_exact();
        test_prometheus_prefix_and_optional();
        test_json_exact();
        test_graphite_exact();
        test_graphite_empty_and_rates();
        test_percentiles();
        test_null_and_gauge();
        test_format_double();
        test_prefix_valid();
        return test_summary();
}
