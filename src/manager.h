/* SPDX-License-Identifier: MIT */
#pragma once

/* The Manager owns everything of one running server: the event loop, the
 * configuration, the listening socket, the served credentials and the
 * connections. No global mutable state lives outside it. */

#include <systemd/sd-event.h>

#include "challenges.h"
#include "config.h"
#include "conn.h"
#include "renew.h"

typedef struct Manager {
        sd_event *event;
        Config config;

        ConnServer server;

        int listen_fd;
        char *unix_path;                /* removed on exit */
        sd_event_source *listen_source;
        sd_event_source *accept_pause;  /* EMFILE back-off */
        bool accept_paused;
        bool accept_pause_logged;       /* warned about this EMFILE episode */

        /* --auto-acme-cert: certificate maintenance and the gate's challenges. */
        Renewer *renewer;
        Challenges *challenges;
        bool ready;                     /* READY=1 sent: a certificate is served */

        bool shutting_down;
        bool forced;
        sd_event_source *shutdown_timer;
} Manager;

/* Takes ownership of *config (it is moved into the manager). On failure
 * returns a negative errno and sets *ret_error. */
int manager_new(Config *config, Manager **ret, char **ret_error);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Opens the listener, resolves the target and loads the credentials. */
int manager_start(Manager *m, char **ret_error);

/* Runs the loop until shutdown; returns the process exit status. */
int manager_run(Manager *m);

/* Re-reads the certificate, key and CA bundle; keeps the old ones on error. */
int manager_reload(Manager *m);
