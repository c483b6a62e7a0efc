/* SPDX-License-Identifier: MIT */
#pragma once

/* Reload: SIGHUP, SIGUSR1 and --timed-reload. The settings are read again
 * exactly as at start-up (command line, --config file, systemd credentials);
 * the reloadable ones (certificate, key, keystore and its password, CA
 * bundle, access rules) are applied, the others are reported as needing a
 * restart and kept. Everything new is built first and swapped in only when
 * all of it loaded: a new Creds (trust list, bundle, access rules) for new
 * handshakes, while open connections keep the Creds they were accepted
 * with. On any failure the old state stays and the reason is logged. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"

struct Manager;

typedef enum ReloadTrigger {
        RELOAD_SIGNAL, /* SIGHUP, SIGUSR1: always rebuilt, logged and announced */
        RELOAD_TIMER,  /* --timed-reload: quiet unless something changed or newly failed */
} ReloadTrigger;

#define RELOAD_DIGEST_SIZE 32

/* Embedded in the Manager. */
typedef struct ReloadState {
        /* The server flags as main() got them; they live as long as the
         * process. NULL: reload from the settings in memory only. */
        int argc;
        char **argv;

        /* SHA-256 of the --cacert file as last loaded, taken before it was
         * loaded (so a change in between shows on the next timed reload). */
        uint8_t ca_digest[RELOAD_DIGEST_SIZE];
        bool ca_digest_set;

        sd_event_source *timer;         /* --timed-reload */
        char *last_error;               /* the last failure, not repeated by the timer */
        char *restart_reported;         /* restart-only settings last warned about */

        usec_t last_realtime;           /* CLOCK_REALTIME of start-up or the last swap */
        unsigned n_reloads;             /* swaps done */
        unsigned n_failures;            /* reloads that kept the old state */
} ReloadState;

/* At start, before the credentials are loaded: remembers the CA bundle's
 * digest and arms the --timed-reload timer (which only fires once the loop
 * runs). Returns 0 or a negative errno. */
int reload_init(struct Manager *m);
void reload_done(ReloadState *s);

/* One reload. Returns 0 when new credentials are in place (or, for the
 * timer, when nothing changed), a negative errno when the old state stays. */
int reload_run(struct Manager *m, ReloadTrigger trigger);
