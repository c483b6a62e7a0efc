/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "util.h"
#include "worker.h"

/* How long accepting pauses after EMFILE/ENFILE before trying again. */
#define ACCEPT_PAUSE_USEC (250 * USEC_PER_MSEC)
/* Accepts per wake-up, so that a flood cannot starve live connections. */
#define ACCEPT_BURST 64

typedef struct Worker {
        WorkerPool *pool;
        unsigned index;                 /* 0: the main thread's */
        sd_event *event;                /* index 0: the main loop (a reference) */
        ConnServer server;
        Metrics metrics;

        int listen_fd;                  /* this worker's dup() of the socket */
        sd_event_source *listen_source;
        sd_event_source *accept_pause;  /* EMFILE back-off */
        bool accept_paused;

        int wake_fd;                    /* eventfd: look at the pool's flags */
        sd_event_source *wake_source;

        bool stopped;                   /* saw pool->stopping: no longer accepts */
        bool drained;                   /* stopped, and its last connection is gone */
        uint64_t n_freed;               /* on_conn_freed calls (see on_accept) */

        /* With the watchdog, threads 1..n-1 prove their loop runs: a timer
         * on it stores the time, which the main thread checks before each
         * WATCHDOG=1 (worker_pool_stalled()). */
        sd_event_source *heartbeat;
        _Atomic uint64_t beat;          /* CLOCK_MONOTONIC usec of the last one */
        atomic_bool left_loop;          /* the thread is done: nothing to watch */

        pthread_t thread;
        bool thread_started;
} Worker;

struct WorkerPool {
        unsigned n;
        Worker *workers;
        const Config *config;

        _Atomic uint64_t next_id;       /* connection ids, unique across threads */
        atomic_uint n_conns;            /* open (or being accepted) on all threads */
        atomic_bool pause_logged;       /* warned about this EMFILE episode */
        atomic_bool stopping;           /* shutdown: stop accepting */
        atomic_bool forced;             /* shutdown: close every connection now */
        atomic_uint n_running;          /* threads 1..n-1 still in their loop */

        usec_t heartbeat_usec;          /* 0: no watchdog */
        bool drained_reported;          /* main thread only */
        WorkerDrainedFunc on_drained;
        void *userdata;
};

unsigned worker_threads_auto(void) {
        cpu_set_t set;
        long n;

        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof set, &set) >= 0)
                n = CPU_COUNT(&set);
        else
                n = sysconf(_SC_NPROCESSORS_ONLN);  /* more CPUs than a cpu_set_t holds */
        return n < 1 ? 1 : n > (long) CONFIG_THREADS_MAX ? CONFIG_THREADS_MAX : (unsigned) n;
}

static void worker_kick(Worker *w) {
        uint64_t one = 1;

        /* Only fails when the counter would overflow: it is read long before. */
        (void) !write(w->wake_fd, &one, sizeof one);
}

static void pool_kick_others(WorkerPool *p, const Worker *self) {
        for (unsigned i = 0; i < p->n; i++)
                if (&p->workers[i] != self)
                        worker_kick(&p->workers[i]);
}

static void worker_update_accepting(Worker *w) {
        unsigned max = w->pool->config->max_concurrent_conns;
        bool on;

        if (!w->listen_source)
                return;
        on = !w->accept_paused && (max == 0 || atomic_load(&w->pool->n_conns) < max);
        (void) sd_event_source_set_enabled(w->listen_source, on ? SD_EVENT_ON : SD_EVENT_OFF);
}

/* Main thread: tells the Manager once everything is gone after a stop. */
static void pool_check_drained(WorkerPool *p) {
        if (p->drained_reported || !atomic_load(&p->stopping) || !p->workers[0].drained ||
            atomic_load(&p->n_running) > 0)
                return;
        p->drained_reported = true;
        if (p->on_drained)
                p->on_drained(p->userdata);
}

static void worker_check_drained(Worker *w) {
        if (!w->stopped || w->drained || w->server.n_conns > 0)
                return;
        w->drained = true;
        if (w->index == 0)
                pool_check_drained(w->pool);
        else
                /* The thread leaves its loop and reports to the main thread. */
                (void) sd_event_exit(w->event, 0);
}

static void worker_stop_accepting(Worker *w) {
        if (w->stopped)
                return;
        w->stopped = true;
        w->listen_source = sd_event_source_disable_unref(w->listen_source);
        w->accept_pause = sd_event_source_disable_unref(w->accept_pause);
        w->listen_fd = safe_close(w->listen_fd);
}

/* Releases one slot of the shared count; wakes the other threads when that
 * brings it below --max-concurrent-conns (they may have stopped accepting). */
static void worker_release_slot(Worker *w) {
        WorkerPool *p = w->pool;
        unsigned max = p->config->max_concurrent_conns;

        if (atomic_fetch_sub(&p->n_conns, 1) == max && max > 0)
                pool_kick_others(p, w);
}

/* Takes one slot, unless --max-concurrent-conns are open already. */
static bool worker_take_slot(Worker *w) {
        WorkerPool *p = w->pool;
        unsigned max = p->config->max_concurrent_conns, n;

        if (max == 0) {
                atomic_fetch_add(&p->n_conns, 1);
                return true;
        }
        n = atomic_load(&p->n_conns);
        do
                if (n >= max)
                        return false;
        while (!atomic_compare_exchange_weak(&p->n_conns, &n, n + 1));
        return true;
}

static void on_conn_freed(ConnServer *s, void *userdata) {
        Worker *w = userdata;

        w->n_freed++;
        worker_release_slot(w);
        if (w->stopped) {
                worker_check_drained(w);
                return;
        }
        worker_update_accepting(w);
}

static int on_accept_pause_end(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;

        w->accept_paused = false;
        log_debug("resuming accepting connections");
        worker_update_accepting(w);
        return 0;
}

static void worker_pause_accepting(Worker *w, int error) {
        bool logged = atomic_exchange(&w->pool->pause_logged, true);
        char e[ERRNO_GO_MAX];
        int r;

        /* The listening socket stays readable while the fd table is full:
         * back off instead of spinning, and try again shortly. Warned once
         * per episode, whichever thread hits it: a full table can last, the
         * journal should not fill. The error is spelled as Go's accept
         * spells it. */
        log_full_errno(logged ? LOG_DEBUG : LOG_WARNING, error,
                       "cannot accept connections: accept4: %s; pausing for %llu ms",
                       errno_go(error, e, sizeof e),
                       (unsigned long long) (ACCEPT_PAUSE_USEC / USEC_PER_MSEC));
        w->accept_paused = true;
        worker_update_accepting(w);
        r = sd_event_source_set_time_relative(w->accept_pause, ACCEPT_PAUSE_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->accept_pause, SD_EVENT_ONESHOT);
        if (r < 0) {
                log_error("cannot arm the accept back-off timer, resuming at once");
                w->accept_paused = false;
                worker_update_accepting(w);
        }
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;

        for (unsigned i = 0; i < ACCEPT_BURST; i++) {
                struct sockaddr_storage peer;
                socklen_t len = sizeof peer;
                uint64_t freed;
                int cfd, r;

                /* The slot is taken before accept4(), so that threads
                 * accepting at the same time never exceed the limit. */
                if (!worker_take_slot(w))
                        break;
                cfd = accept4(fd, (struct sockaddr *) &peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                /* A shutdown whose kick this thread has not read yet (both
                 * events may be pending, in either order, or it came during
                 * this loop): what was not accepted before it is dropped, as
                 * the kernel drops the backlog once every thread closed its
                 * copy of the socket. Checked after accept4(), so that no
                 * connection slips in between the check and the call. */
                if (atomic_load(&w->pool->stopping)) {
                        safe_close(cfd);
                        worker_release_slot(w);
                        worker_stop_accepting(w);
                        worker_check_drained(w);
                        return 0;
                }
                if (cfd < 0) {
                        int e = errno;

                        worker_release_slot(w);
                        /* EAGAIN: nothing pending, or another thread was faster. */
                        if (e == EAGAIN || e == EINTR)
                                break;
                        if (e == ECONNABORTED || e == EPROTO)
                                continue;
                        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                                worker_pause_accepting(w, e);
                                return 0;
                        }
                        char text[ERRNO_GO_MAX];

                        log_warning_errno(e, "accept failed: accept4: %s, ignoring",
                                          errno_go(e, text, sizeof text));
                        break;
                }
                if (atomic_exchange(&w->pool->pause_logged, false))
                        log_info("accepting connections again");
                /* conn_new() releases the slot through on_conn_freed, except
                 * when it fails before the connection exists. */
                freed = w->n_freed;
                r = conn_new(&w->server, cfd, (struct sockaddr *) &peer, len, NULL);
                if (r < 0) {
                        if (w->n_freed == freed)
                                worker_release_slot(w);
                        log_warning_errno(r, "cannot set up connection: %m, dropping it");
                }
        }
        worker_update_accepting(w);
        return 0;
}

static int on_wake(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        WorkerPool *p = w->pool;
        uint64_t v;

        (void) !read(w->wake_fd, &v, sizeof v);
        if (atomic_load(&p->stopping))
                worker_stop_accepting(w);
        if (atomic_load(&p->forced))
                conn_server_close_all(&w->server);
        if (w->stopped) {
                worker_check_drained(w);
                if (w->index == 0)
                        pool_check_drained(p);  /* a thread finished */
        } else
                worker_update_accepting(w);
        return 0;
}

static int on_heartbeat(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;

        atomic_store(&w->beat, now_usec(CLOCK_MONOTONIC));
        return sd_event_source_set_time_relative(s, w->pool->heartbeat_usec);
}

static void *worker_thread(void *userdata) {
        Worker *w = userdata;
        WorkerPool *p = w->pool;
        int r;

        r = sd_event_loop(w->event);
        if (r < 0)
                log_error_errno(r, "thread %u: event loop failed: %m; its connections are closed",
                                w->index);
        atomic_store(&w->left_loop, true);
        worker_stop_accepting(w);
        conn_server_close_all(&w->server);
        atomic_fetch_sub(&p->n_running, 1);
        worker_kick(&p->workers[0]);
        return NULL;
}

static int worker_init(WorkerPool *p, unsigned i, sd_event *main_event, const ConnServer *template,
                       int listen_fd) {
        Worker *w = &p->workers[i];
        int r;

        w->pool = p;
        w->index = i;
        w->listen_fd = -EBADF;
        w->wake_fd = -EBADF;
        metrics_init(&w->metrics);
        if (i == 0)
                w->event = sd_event_ref(main_event);
        else {
                r = sd_event_new(&w->event);
                if (r < 0)
                        return r;
        }
        w->server = *template;
        w->server.event = w->event;
        w->server.metrics = &w->metrics;
        w->server.next_id = &p->next_id;
        w->server.conns = NULL;
        w->server.n_conns = 0;
        w->server.bufpool = (BufPool) {};       /* per thread: never share the template's */
        w->server.on_conn_freed = on_conn_freed;
        w->server.userdata = w;

        w->listen_fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 3);
        if (w->listen_fd < 0)
                return -errno;
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->wake_fd < 0)
                return -errno;
        r = sd_event_add_io(w->event, &w->wake_source, w->wake_fd, EPOLLIN, on_wake, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->wake_source, "worker-wake");
        /* The back-off timer exists from the start (off): arming it must not
         * need a new descriptor (the loop's timerfd) when there are none. */
        r = sd_event_add_time_relative(w->event, &w->accept_pause, CLOCK_MONOTONIC,
                                       ACCEPT_PAUSE_USEC, 0, on_accept_pause_end, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->accept_pause, "worker-accept-pause");
        r = sd_event_source_set_enabled(w->accept_pause, SD_EVENT_OFF);
        if (r < 0)
                return r;
        r = sd_event_add_io(w->event, &w->listen_source, w->listen_fd, EPOLLIN, on_accept, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->listen_source, "worker-accept");
        return 0;
}

int worker_pool_new(sd_event *main_event, unsigned n, const ConnServer *template, int listen_fd,
                    WorkerDrainedFunc on_drained, void *userdata, WorkerPool **ret) {
        _cleanup_(worker_pool_freep) WorkerPool *p = NULL;
        int r;

        if (n < 1 || n > CONFIG_THREADS_MAX)
                return -EINVAL;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->workers = calloc(n, sizeof *p->workers);
        if (!p->workers)
                return -ENOMEM;
        p->config = template->config;
        p->on_drained = on_drained;
        p->userdata = userdata;
        for (unsigned i = 0; i < n; i++) {
                /* Counted as they are set up, so that freeing stops at the first
                 * that failed. */
                p->n = i + 1;
                r = worker_init(p, i, main_event, template, listen_fd);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

int worker_pool_watch(WorkerPool *p, usec_t period) {
        int r;

        p->heartbeat_usec = period;
        for (unsigned i = 1; i < p->n; i++) {
                Worker *w = &p->workers[i];

                atomic_store(&w->beat, now_usec(CLOCK_MONOTONIC));
                r = sd_event_add_time_relative(w->event, &w->heartbeat, CLOCK_MONOTONIC, period,
                                               period / 4, on_heartbeat, w);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(w->heartbeat, "worker-heartbeat");
                r = sd_event_source_set_enabled(w->heartbeat, SD_EVENT_ON);
                if (r < 0)
                        return r;
        }
        return 0;
}

bool worker_pool_stalled(WorkerPool *p, usec_t max_age, unsigned *ret_index, usec_t *ret_age) {
        usec_t now = now_usec(CLOCK_MONOTONIC);

        for (unsigned i = 1; p && i < p->n; i++) {
                Worker *w = &p->workers[i];
                uint64_t beat = atomic_load(&w->beat);

                if (!w->heartbeat || atomic_load(&w->left_loop) || now <= beat ||
                    now - beat <= max_age)
                        continue;
                *ret_index = i;
                *ret_age = now - beat;
                return true;
        }
        return false;
}

int worker_pool_start(WorkerPool *p) {
        sigset_t all, saved;
        int r = 0;

        /* Signals go to the main loop's signal sources only: the threads
         * start with every signal blocked (they inherit the mask). */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &saved);
        for (unsigned i = 1; i < p->n; i++) {
                Worker *w = &p->workers[i];
                char name[16];

                atomic_fetch_add(&p->n_running, 1);
                r = -pthread_create(&w->thread, NULL, worker_thread, w);
                if (r < 0) {
                        atomic_fetch_sub(&p->n_running, 1);
                        break;
                }
                w->thread_started = true;
                snprintf(name, sizeof name, "tlsgate/%u", i % 100U); /* i < 64 */
                (void) pthread_setname_np(w->thread, name);
        }
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        return r < 0 ? r : 0;
}

void worker_pool_stop(WorkerPool *p) {
        if (!p || atomic_exchange(&p->stopping, true))
                return;
        pool_kick_others(p, &p->workers[0]);
        worker_stop_accepting(&p->workers[0]);
        worker_check_drained(&p->workers[0]);
}

void worker_pool_close_all(WorkerPool *p) {
        if (!p)
                return;
        atomic_store(&p->stopping, true);
        atomic_store(&p->forced, true);
        pool_kick_others(p, &p->workers[0]);
        conn_server_close_all(&p->workers[0].server);
}

WorkerPool *worker_pool_free(WorkerPool *p) {
        if (!p)
                return NULL;
        /* Threads still running (an exit without a drained shutdown) close
         * their connections and leave their loops. */
        atomic_store(&p->stopping, true);
        atomic_store(&p->forced, true);
        pool_kick_others(p, p->n > 0 ? &p->workers[0] : NULL);
        for (unsigned i = 1; i < p->n; i++)
                if (p->workers[i].thread_started)
                        (void) pthread_join(p->workers[i].thread, NULL);
        /* Now only this thread is left to touch any of it. */
        p->drained_reported = true;
        for (unsigned i = 0; i < p->n; i++) {
                Worker *w = &p->workers[i];

                conn_server_close_all(&w->server);
                w->listen_source = sd_event_source_disable_unref(w->listen_source);
                w->accept_pause = sd_event_source_disable_unref(w->accept_pause);
                w->wake_source = sd_event_source_disable_unref(w->wake_source);
                w->heartbeat = sd_event_source_disable_unref(w->heartbeat);
                safe_close(w->listen_fd);
                safe_close(w->wake_fd);
                sd_event_unref(w->event);
                metrics_done(&w->metrics);
        }
        free(p->workers);
        free(p);
        return NULL;
}

unsigned worker_pool_size(const WorkerPool *p) {
        return p ? p->n : 0;
}

unsigned worker_pool_n_conns(WorkerPool *p) {
        return p ? atomic_load(&p->n_conns) : 0;
}

void worker_pool_metrics(WorkerPool *p, Metrics *ret) {
        for (unsigned i = 0; p && i < p->n; i++)
                metrics_add(ret, &p->workers[i].metrics);
}

void worker_pool_thread_counts(WorkerPool *p, unsigned i, uint64_t *ret_accepted,
                               uint64_t *ret_open) {
        metrics_counts(&p->workers[i].metrics, ret_accepted, ret_open);
}
