/* SPDX-License-Identifier: MIT */
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <systemd/sd-daemon.h>

#include "conn.h"
#include "creds.h"
#include "log.h"
#include "manager.h"
#include "pkcs11.h"
#include "reload.h"
#include "strv.h"
#include "util.h"

static void *mfree(void *p) {
        free(p);
        return NULL;
}

/* "a, b, c"; NULL for an empty list or out of memory (only a log line
 * gets shorter). */
static char *join(char **l, const char *sep) {
        size_t len = 1;
        char *s;

        if (!l || !l[0])
                return NULL;
        STRV_FOREACH(n, l)
                len += strlen(*n) + strlen(sep);
        s = calloc(1, len);
        if (!s)
                return NULL;
        STRV_FOREACH(n, l) {
                if (n != l)
                        strcat(s, sep);
                strcat(s, *n);
        }
        return s;
}

/* SHA-256 of a file's bytes: whether the CA bundle changed since it was
 * loaded. A few KiB to a few hundred KiB, read on the loop like the
 * certificate files themselves. */
static int file_digest(const char *path, uint8_t ret[RELOAD_DIGEST_SIZE]) {
        gnutls_datum_t d = {};
        int r;

        r = gnutls_load_file(path, &d);
        if (r < 0)
                return errno_from_gnutls(r);
        r = gnutls_hash_fast(GNUTLS_DIG_SHA256, d.data, d.size, ret);
        gnutls_free(d.data);
        return r < 0 ? errno_from_gnutls(r) : 0;
}

/* The same chain, byte for byte (the key must match the leaf, so the leaf
 * decides for the key too). */
static bool bundle_same(const CertBundle *a, const CertBundle *b) {
        if (a == b)
                return true;
        if (!a || !b || a->n_pcerts != b->n_pcerts)
                return false;
        for (unsigned i = 0; i < a->n_pcerts; i++) {
                const gnutls_datum_t *x = &a->pcerts[i].cert, *y = &b->pcerts[i].cert;

                if (x->size != y->size || memcmp(x->data, y->data, x->size) != 0)
                        return false;
        }
        return true;
}

/* The leaf's serial number in hex, for the log: what a client sees. */
static void bundle_serial(const CertBundle *b, char *buf, size_t size) {
        gnutls_x509_crt_t crt = NULL;
        unsigned char serial[64];
        size_t len = sizeof serial, n = 0;

        snprintf(buf, size, "?");
        if (!b || b->n_pcerts == 0 || gnutls_x509_crt_init(&crt) < 0)
                return;
        if (gnutls_x509_crt_import(crt, &b->pcerts[0].cert, GNUTLS_X509_FMT_DER) >= 0 &&
            gnutls_x509_crt_get_serial(crt, serial, &len) >= 0)
                for (size_t i = 0; i < len && n + 3 <= size; i++)
                        n += (size_t) snprintf(buf + n, size - n, "%02x", serial[i]);
        gnutls_x509_crt_deinit(crt);
}

/* The settings exactly as at start-up: flags, the --config file they name,
 * validation, systemd credentials and --storepass-file, the files named. */
static int reload_read_config(Manager *m, Config *ret, char **ret_error) {
        config_init(ret);
        return config_load(ret, m->reload.argc, m->reload.argv, getenv("CREDENTIALS_DIRECTORY"),
                           NULL, ret_error);
}

/* Whether the settings can be read again: a --config that is not a regular
 * file (a pipe, "--config <(...)") was consumed at start, and opening a FIFO
 * without a writer would block the loop. A file that is gone is read, and
 * fails with a message. */
static bool reload_settings_readable(Manager *m) {
        struct stat st;

        if (!m->reload.argv)
                return false;
        if (!m->config.config_file || stat(m->config.config_file, &st) < 0 || S_ISREG(st.st_mode))
                return true;
        log_debug("%s is not a regular file, not reading the settings again",
                  m->config.config_file);
        return false;
}

/* Warns once per setting that changed but needs a restart. The timer warns
 * only when the list differs from what it last said. */
static void reload_report_restart(Manager *m, char **names, ReloadTrigger trigger) {
        _cleanup_free_ char *joined = join(names, ",");

        if (trigger == RELOAD_TIMER && streq_ptr(joined, m->reload.restart_reported))
                return;
        STRV_FOREACH(n, names)
                log_warning("%s changed in %s; restart to apply", *n,
                            m->config.config_file ? m->config.config_file : "the configuration");
        free(m->reload.restart_reported);
        m->reload.restart_reported = TAKE_PTR(joined);
}

static bool reload_notify_reloading(Manager *m) {
        /* Before READY=1 the unit is still starting: nothing to announce. */
        if (!m->ready)
                return false;
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu",
                          (unsigned long long) now_usec(CLOCK_MONOTONIC));
        return true;
}

static void reload_failed(Manager *m, ReloadTrigger trigger, int r, const char *error) {
        const char *reason = error ? error : strerror(-r);

        m->reload.n_failures++;
        /* The timer retries every period: the same failure is logged once. */
        if (trigger == RELOAD_TIMER && streq_ptr(reason, m->reload.last_error)) {
                log_debug("timed reload still failing: %s", reason);
                return;
        }
        log_fields(LOG_ERR, 0, MESSAGE_ID_RELOAD_FAILED, NULL, 0,
                   "reload failed, keeping the current certificate, CA bundle and access rules: %s",
                   reason);
        free(m->reload.last_error);
        m->reload.last_error = strdup(reason);
}

static void reload_log_done(Manager *m, ReloadTrigger trigger, const CertBundle *b,
                            char **changed, bool differs) {
        _cleanup_free_ char *settings = join(changed, ", ");
        char serial[2 * 64 + 1];

        bundle_serial(b, serial, sizeof serial);
        log_info("%sreloaded certificate (%s%s%s) and CA bundle (%s)%s%s",
                 trigger == RELOAD_TIMER ? "timed reload: " : "",
                 b ? strempty(b->subject) : "none yet", b ? ", serial " : "", b ? serial : "",
                 m->config.cacert ? m->config.cacert : "system trust store",
                 settings ? "; changed settings: " : "",
                 settings ? settings : differs ? "" : ", nothing changed");
}

/* Reads the settings, reports restart-only changes, and moves the
 * reloadable ones into m->config (*ret_swapped; the caller swaps them back
 * on failure, fresh then holds the new values). *ret_changed names the
 * reloadable settings that changed. */
static int reload_settings(Manager *m, ReloadTrigger trigger, Config *fresh, char ***ret_changed,
                           bool *ret_swapped, char **ret_error) {
        _cleanup_strv_free_ char **restart = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        r = reload_read_config(m, fresh, ret_error);
        if (r < 0)
                return r;
        r = config_diff(&m->config, fresh, false, &restart);
        if (r >= 0)
                r = config_diff(&m->config, fresh, true, ret_changed);
        if (r < 0)
                return r;
        reload_report_restart(m, restart, trigger);

        /* The reloadable settings go in now and come out again on failure;
         * nothing reads them in between. Together with the kept ones they
         * must still make a valid configuration. */
        config_swap_reloadable(&m->config, fresh);
        *ret_swapped = true;
        r = config_validate(&m->config, &error);
        if (r < 0)
                return error_set(ret_error, r, "%s%s%s (a setting it depends on needs a restart)",
                                 strempty(m->config.config_file),
                                 m->config.config_file ? ": " : "", strempty(error));
        return 0;
}

int reload_run(Manager *m, ReloadTrigger trigger) {
        _cleanup_(config_done) Config fresh = {};
        _cleanup_strv_free_ char **changed = NULL;
        _cleanup_(cert_bundle_unrefp) CertBundle *bundle = NULL;
        _cleanup_(creds_unrefp) Creds *creds = NULL;
        _cleanup_free_ char *error = NULL;
        uint8_t digest[RELOAD_DIGEST_SIZE] = {};
        bool notified = false, swapped = false, digest_ok = false, differs;
        /* Main thread, the only writer: read without the lock. */
        CertBundle *current = m->current.creds ? m->current.creds->bundle : NULL;
        int r;

        if (trigger == RELOAD_SIGNAL)
                notified = reload_notify_reloading(m);

        /* 1. The settings, and which of them changed. Without the saved
         * command line (no main()) or a --config to read again, only the
         * files named by the settings in use are read again. */
        if (reload_settings_readable(m)) {
                r = reload_settings(m, trigger, &fresh, &changed, &swapped, &error);
                if (r < 0)
                        goto fail;
        }

        /* 2. The credentials, from the files. The CA bundle's digest is taken
         * before it is loaded: a change in between shows next time. */
        if (m->config.cacert)
                digest_ok = file_digest(m->config.cacert, digest) >= 0;
        if (m->config.auto_acme_cert)
                /* ACME certificates renew on their own: keep the one served. */
                bundle = cert_bundle_ref(current);
        else if (m->config.pkcs11_module) {
                /* The same key handle: no new login (see src/pkcs11.h). */
                r = token_bundle_load(&m->config, &m->token, &bundle, &error);
                if (r < 0)
                        goto fail;
        } else {
                r = cert_bundle_load(&m->config, &bundle, &error);
                if (r < 0)
                        goto fail;
        }

        differs = (changed && changed[0]) || !bundle_same(bundle, current) ||
                  (m->config.cacert && (!digest_ok || !m->reload.ca_digest_set ||
                                        memcmp(digest, m->reload.ca_digest, sizeof digest) != 0));
        if (trigger == RELOAD_TIMER && !differs) {
                if (m->reload.last_error) {
                        log_info("timed reload: the files load again; nothing changed");
                        m->reload.last_error = mfree(m->reload.last_error);
                } else
                        log_debug("timed reload: nothing changed");
                if (swapped)
                        config_swap_reloadable(&m->config, &fresh);
                return 0;
        }
        if (trigger == RELOAD_TIMER)
                notified = reload_notify_reloading(m);

        /* 3. The new credential: trust list, bundle, access rules. */
        r = creds_new(&m->config, bundle, conn_retrieve_certificate, &creds, &error);
        if (r < 0)
                goto fail;

        /* 4. Swap, under the lock the serving threads take their references
         * with. Open connections, on every thread, keep the Creds they hold. */
        current_creds_replace(&m->current, TAKE_PTR(creds));
        manager_ocsp_follow(m, trigger == RELOAD_SIGNAL); /* OCSP: keep or restart the staple */
        memcpy(m->reload.ca_digest, digest, sizeof digest);
        m->reload.ca_digest_set = digest_ok;
        m->reload.last_error = mfree(m->reload.last_error);
        m->reload.last_realtime = now_usec(CLOCK_REALTIME);
        m->reload.n_reloads++;
        reload_log_done(m, trigger, bundle, changed, differs);
        /* fresh now holds the old values of the reloadable settings. */
        if (notified)
                (void) sd_notify(false, "READY=1");
        manager_notify_status(m);
        return 0;

fail:
        if (error) {
                /* Where the setting came from, and whether systemd's copy
                 * of a credential is what is stale; the settings that
                 * failed are still in place to say so. */
                _cleanup_free_ char *note = config_credentials_note(&m->config, error);
                char *located = config_locate(&m->config, error);

                if (located) {
                        free(error);
                        error = located;
                }
                if (note && asprintf(&located, "%s%s", error, note) >= 0) {
                        free(error);
                        error = located;
                }
        }
        if (swapped)
                config_swap_reloadable(&m->config, &fresh);
        reload_failed(m, trigger, r, error);
        if (notified)
                (void) sd_notify(false, "READY=1");
        if (notified || trigger == RELOAD_SIGNAL)
                manager_notify_status(m);
        return r;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (!m->shutting_down)
                (void) reload_run(m, RELOAD_TIMER);
        /* The period counts from the end of this reload. */
        if (sd_event_source_set_time_relative(s, m->config.timed_reload) < 0 ||
            sd_event_source_set_enabled(s, SD_EVENT_ONESHOT) < 0)
                log_error("cannot re-arm the --timed-reload timer, timed reloads stop");
        return 0;
}

int reload_init(Manager *m) {
        int r;

        m->reload.last_realtime = now_usec(CLOCK_REALTIME);
        if (m->config.cacert)
                m->reload.ca_digest_set = file_digest(m->config.cacert, m->reload.ca_digest) >= 0;
        if (m->config.timed_reload == 0)
                return 0;
        r = sd_event_add_time_relative(m->event, &m->reload.timer, CLOCK_MONOTONIC,
                                       m->config.timed_reload, 0, on_timer, m);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(m->reload.timer, "timed-reload");
        return 0;
}

void reload_done(ReloadState *s) {
        s->timer = sd_event_source_disable_unref(s->timer);
        s->last_error = mfree(s->last_error);
        s->restart_reported = mfree(s->restart_reported);
}
