/* SPDX-License-Identifier: MIT */
#pragma once

/* Is the backend up? For /_status: a non-blocking TCP (or unix) connect to
 * the resolved --target, or, with --target-status, an http.c GET of that URL
 * where any 2xx is healthy. One check at a time, bounded by a timeout; the
 * result goes to the callback from the loop (or at once, from
 * backend_check_start(), when it is known at once). */

#include <stdbool.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct BackendCheck BackendCheck;

/* ok, or a message saying what failed ("connect to 127.0.0.1:8080:
 * connection refused", "GET URL: target returned status 500"). The message
 * is valid during the callback only. */
typedef void (*backend_check_callback_t)(bool ok, const char *error, void *userdata);

typedef struct BackendCheckParams {
        const struct sockaddr *target;  /* copied */
        socklen_t target_len;
        const char *target_spec;        /* --target as given, for messages; copied */
        const char *url;                /* --target-status, or NULL; copied */
        usec_t timeout;
} BackendCheckParams;

int backend_check_new(sd_event *e, const BackendCheckParams *p, backend_check_callback_t cb,
                      void *userdata, BackendCheck **ret);
/* Stops a running check without calling the callback. */
BackendCheck *backend_check_free(BackendCheck *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(BackendCheck *, backend_check_free);

/* Starts a check unless one runs (then its result serves both). */
void backend_check_start(BackendCheck *k);
bool backend_check_running(const BackendCheck *k);
