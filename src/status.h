/* SPDX-License-Identifier: MIT */
#pragma once

/* The status port (--status): a small HTTP/1.1 server on the Manager's loop
 * that answers one request per connection and closes it.
 *
 *   GET|HEAD /_status             Ghostunnel's status JSON (503 when not ok),
 *                                 plus what tlsgate knows under "tlsgate"
 *   GET|HEAD /_metrics[?format=prometheus|json], /_metrics/json,
 *            /_metrics/prometheus  metrics.c's renderings
 *   POST /_shutdown               with --enable-shutdown: shut down as on
 *                                 SIGTERM once the answer is sent
 *
 * HOST:PORT is served over HTTPS with the certificate the proxy serves (a
 * reference per connection, no client certificate requested); http://HOST:PORT,
 * unix:PATH and systemd:NAME over plain HTTP.
 *
 * Nothing blocks: sockets and TLS sessions are non-blocking; a request must
 * arrive within --connect-timeout of the accept (its head at most 8 KiB,
 * read by http-request.c; a malformed one is answered once the line that
 * is wrong has arrived);
 * at most 64 connections are served at once, more wait in the backlog.
 * The backend check for /_status runs when a request asks for it (a
 * non-blocking connect to --target, or an http.c GET of --target-status),
 * bounded by --connect-timeout; requests that arrive while one runs share
 * its result, so a flood of status requests makes one check at a time. */

#include "macro.h"

struct Manager;

typedef struct StatusServer StatusServer;

/* Opens --status and starts serving. Errors: a negative errno and a
 * malloc'ed message naming the address. */
int status_server_new(struct Manager *m, StatusServer **ret, char **ret_error);
StatusServer *status_server_free(StatusServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(StatusServer *, status_server_free);
