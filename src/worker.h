/* SPDX-License-Identifier: MIT */
#pragma once

/* Serving on several cores (--threads). A WorkerPool has N workers; each
 * has its own sd_event loop, its own ConnServer (connection list and count)
 * and its own accept source on its own dup() of the shared non-blocking
 * listening socket, so whichever thread the kernel wakes first accepts
 * (EAGAIN in the others is normal). Worker 0 runs inside the main thread's
 * loop, next to everything else the main thread does (signals, reload, ACME,
 * OCSP, the status server, sd_notify); workers 1..N-1 run on threads of
 * their own and only ever serve connections.
 *
 * Shared between the threads, and thread-safe: the current credential
 * (CurrentCreds), the ACME challenges, the connection ids, the count of open
 * connections (--max-concurrent-conns counts across all threads) and the
 * ticket key (read-only). Each worker counts into a Metrics of its own; the
 * main thread sums them (worker_pool_metrics()).
 *
 * The main thread talks to the other threads only through atomics and an
 * eventfd per worker (a "kick"); they answer the same way. */

#include <stdint.h>
#include <systemd/sd-event.h>

#include "conn.h"
#include "metrics.h"

typedef struct WorkerPool WorkerPool;

/* --threads auto: the CPUs in the process's affinity mask (taskset,
 * systemd's CPUAffinity=), 1..CONFIG_THREADS_MAX. */
unsigned worker_threads_auto(void);

/* Called on the main thread once, after worker_pool_stop(), when every
 * thread's connections are gone and the other threads left their loops. */
typedef void (*WorkerDrainedFunc)(void *userdata);

/* n workers serving listen_fd (not taken over: each worker uses a dup()).
 * Every worker's ConnServer starts as a copy of template (config, current
 * credential, ticket key, challenges, target); worker 0 runs on main_event.
 * Nothing runs on other threads before worker_pool_start(). */
int worker_pool_new(sd_event *main_event, unsigned n, const ConnServer *template, int listen_fd,
                    WorkerDrainedFunc on_drained, void *userdata, WorkerPool **ret);
/* Joins the threads (closing their connections first if they still run). */
WorkerPool *worker_pool_free(WorkerPool *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(WorkerPool *, worker_pool_free);

/* The watchdog (main thread, before worker_pool_start()): threads 1..n-1
 * record a heartbeat every period on their own loop. */
int worker_pool_watch(WorkerPool *p, usec_t period);
/* Whether a thread that should be running has recorded no heartbeat for
 * more than max_age: its loop is stuck. Names the first such thread and
 * how long ago it last beat. */
bool worker_pool_stalled(WorkerPool *p, usec_t max_age, unsigned *ret_index, usec_t *ret_age);

/* Starts threads 1..n-1, with every signal blocked in them. */
int worker_pool_start(WorkerPool *p);

/* Shutdown: every thread stops accepting and closes its copy of the
 * socket; connections go on until they end; on_drained follows. */
void worker_pool_stop(WorkerPool *p);
/* Forced shutdown: every thread closes all its connections now. */
void worker_pool_close_all(WorkerPool *p);

unsigned worker_pool_size(const WorkerPool *p);
/* Connections open now, on all threads. */
unsigned worker_pool_n_conns(WorkerPool *p);
/* Sums every worker's counters into *ret (metrics_init()ed by the caller). */
void worker_pool_metrics(WorkerPool *p, Metrics *ret);
/* One worker's connections accepted so far and open now. */
void worker_pool_thread_counts(WorkerPool *p, unsigned i, uint64_t *ret_accepted,
                               uint64_t *ret_open);
