/* SPDX-License-Identifier: MIT */
#pragma once

/* Pushing the metrics, as Ghostunnel does with --metrics-url and
 * --metrics-graphite: every --metrics-interval, the first one an interval
 * after the start, on the main loop (where the serving threads' counters are
 * summed, as for /_metrics):
 *
 *   --metrics-url       the JSON of /_metrics is POSTed with Content-Type
 *                       application/json through http.c; a 2xx answer is
 *                       success, anything else a failure; an https receiver
 *                       is verified against --cacert when it is given;
 *   --metrics-graphite  the Graphite plaintext lines (metrics_render_graphite())
 *                       are written to a new TCP connection to HOST:PORT,
 *                       which is then closed, as go-metrics-graphite does on
 *                       every flush. HOST is resolved once, at start-up.
 *
 * Nothing blocks: the connect, the write and the HTTP request are sd_event
 * sources. Each push has until the next one is due, at most 30 s; one still
 * running then is abandoned as timed out. So each destination has at most
 * one push in flight, holding one rendering (a few KiB).
 *
 * A failure is logged once, as a warning, when a destination goes from
 * working (or the start) to failing; its recovery once ("works again");
 * failures in between only at debug level. The next push is the retry. */

#include <systemd/sd-event.h>

#include "config.h"
#include "macro.h"
#include "metrics.h"

/* Adds every serving thread's counters to sum (initialized, empty) and
 * fills extra; called from the loop at each push. */
typedef void (*metrics_collect_t)(Metrics *sum, MetricsExtra *extra, void *userdata);

typedef struct MetricsPusher MetricsPusher;

/* Reads --metrics-url, --metrics-graphite (resolved here, a blocking lookup
 * before the loop runs), --metrics-interval and --metrics-prefix from c and
 * arms the timer. *ret is NULL when neither destination is set. Errors: a
 * negative errno, with *ret_error naming the flag when c is the cause. */
int metrics_pusher_new(sd_event *e, const Config *c, metrics_collect_t collect, void *userdata,
                       MetricsPusher **ret, char **ret_error);
MetricsPusher *metrics_pusher_free(MetricsPusher *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(MetricsPusher *, metrics_pusher_free);
