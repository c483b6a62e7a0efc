/* SPDX-License-Identifier: MIT */
#pragma once

/* The JSON of the status port: /_status exactly as Ghostunnel writes it,
 * and what it lacks on /_status/tlsgate. Built from the Manager's state,
 * read on the main loop (status.c serves it). */

#include <json-c/json.h>
#include <stdbool.h>

struct Manager;

/* Ghostunnel's /_status: its fields only, in its order; *ret_ok says
 * whether the answer is 200 (listening and the backend check passed). */
json_object *status_json(const struct Manager *m, bool backend_ok, const char *backend_error,
                         bool *ret_ok);
/* /_status/tlsgate: the served certificate, ACME, connections per thread,
 * the reload counters. */
json_object *status_details_json(const struct Manager *m);
