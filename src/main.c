/* SPDX-License-Identifier: MIT */
#include <curl/curl.h>
#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "build-config.h"
#include "config.h"
#include "control.h"
#include "listener.h"
#include "log.h"
#include "manager.h"

/* Exit statuses: 0 success (or drained shutdown; --check: the settings can
 * be served), 1 runtime failure (including a forced shutdown), 2 bad usage:
 * settings that cannot be served, files they name that do not load. */
#define EXIT_USAGE 2

static void print_usage(FILE *f) {
        fprintf(f,
                _("Usage: tlsgate [--help] [--version] <command> [<flags>]\n"
                  "\n"
                  "A systemd-native TLS/mTLS termination proxy.\n"
                  "\n"
                  "Commands:\n"
                  "  server    Accept TLS connections, authenticate clients, forward to a target\n"
                  "  reload    Make the tlsgate of this service reload and wait for the outcome\n"
                  "            (the units' ExecReload=; see tlsgate(8))\n"
                  "\n"
                  "Run 'tlsgate server --help' for the server flags.\n"));
}

/* An error that ends the program before it runs (bad flags, bad config
 * file). On a terminal it is prefixed with the program's name; under the
 * journal, whose entries already read "tlsgate[PID]:", it is an entry of its
 * own at error priority, without the name a second time. */
_printf_(1, 2) static void print_error(const char *format, ...) {
        char buf[4096];
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);
        if (log_is_journal())
                log_error("%s", buf);
        else
                fprintf(stderr, "tlsgate: %s\n", buf);
}

/* --quiet=all logs nothing at all (Ghostunnel's logger then discards
 * everything), but the error a failed start exits with is still printed,
 * as Ghostunnel prints the error it exits with. */
static void log_unquiet_for_exit(void) {
        if (log_get_max_level() < LOG_ERR)
                log_set_max_level(LOG_ERR);
}

/* A failure of manager_load(): the settings named something that does not
 * load. Said where the setting came from; under --check in a service's
 * context (with $CREDENTIALS_DIRECTORY) with a note when systemd's copy of
 * a credential may be what is stale. */
static int print_load_error(const Manager *m, int r, const char *error) {
        _cleanup_free_ char *located = NULL, *note = NULL;

        if (error) {
                located = config_locate(&m->config, error);
                if (m->config.check)
                        note = config_credentials_note(&m->config, error);
        }
        log_unquiet_for_exit();
        print_error("%s%s", located ? located : error ? error : strerror(-r), strempty(note));
        /* Out of memory, or a token or module that failed to answer: worth
         * the restart that systemd makes after exit status 1. */
        return r == -ENOMEM || r == -EIO ? EXIT_FAILURE : EXIT_USAGE;
}

/* --check: what would be served, once everything loaded. */
static int print_check_result(Manager *m) {
        _cleanup_free_ char *error = NULL, *serving = NULL, *message = NULL;
        const CertBundle *b = m->current.creds->bundle;
        struct sockaddr_storage sa;
        socklen_t len;
        int r;

        r = target_resolve(&m->config.target, &sa, &len, &error);
        if (r < 0)
                return print_load_error(m, r, error);

        if (b) {
                char until[32] = "?";
                struct tm tm;

                if (gmtime_r(&b->not_after, &tm))
                        (void) strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
                r = asprintf(&serving, _("the certificate %s (valid until %s%s)"),
                             strempty(b->subject), until,
                             b->not_after < time(NULL) ? _(", EXPIRED") : "");
        } else
                r = asprintf(&serving, _("a certificate for %s from the ACME CA %s"),
                             m->config.auto_acme_cert, config_acme_directory(&m->config));
        if (r < 0)
                return EXIT_FAILURE;
        r = asprintf(&message, _("%s: configuration OK: would serve %s, forward to %s, verify "
                                 "clients against %s"),
                     m->config.config_file ? m->config.config_file : _("command line"), serving,
                     m->config.target.spec,
                     m->config.cacert ? m->config.cacert : _("the system trust store"));
        if (r < 0)
                return EXIT_FAILURE;
        if (log_is_journal())
                log_info("%s", message);
        else
                printf("%s\n", message);
        return EXIT_SUCCESS;
}

static int run_server(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_free_ char *error = NULL;
        /* Moved into the Manager by manager_new(), which leaves it zeroed. */
        _cleanup_(config_done) Config config = {};
        bool help = false;
        int r;

        config_init(&config);
        r = config_load(&config, argc, argv, getenv("CREDENTIALS_DIRECTORY"), &help, &error);
        if (r >= 0 && help) {
                config_print_help();
                return EXIT_SUCCESS;
        }
        if (r < 0) {
                print_error("%s", error ? error : strerror(-r));
                return r == -ENOMEM ? EXIT_FAILURE : EXIT_USAGE;
        }

        if (config.quiet & QUIET_EVERYTHING)
                log_set_max_level(-1);

        r = manager_new(&config, &m, &error);
        if (r < 0) {
                log_unquiet_for_exit();
                log_error_errno(r, "cannot set up: %m");
                return EXIT_FAILURE;
        }
        /* A reload reads the settings again from the same flags (and the
         * --config file they name); argv lives as long as the process. */
        m->reload.argc = argc;
        m->reload.argv = argv;
        /* What the settings name is loaded before any socket is opened:
         * when it does not load, a restart would not help (exit status 2,
         * which the units' RestartPreventExitStatus= does not restart). */
        r = manager_load(m, &error);
        if (r < 0)
                return print_load_error(m, r, error);
        if (m->config.check)
                return print_check_result(m);
        r = manager_start(m, &error);
        if (r < 0) {
                log_unquiet_for_exit();
                if (error)
                        log_error("%s", error);
                else
                        log_error_errno(r, "cannot start: %m");
                return EXIT_FAILURE;
        }
        r = manager_run(m);
        if (r != EXIT_SUCCESS && m->exit_error && log_get_max_level() < LOG_ERR) {
                /* --quiet=all kept the reason out of the log; like a failed
                 * start's, it is printed. The serving threads, which read
                 * the log level too, are joined first. */
                _cleanup_free_ char *e = TAKE_PTR(m->exit_error);

                m = manager_free(m);
                log_unquiet_for_exit();
                log_error("%s", e);
        }
        return r;
}

/* `tlsgate reload [--pid=PID]`: what the units' ExecReload= runs. The
 * tlsgate of the service (found through $RUNTIME_DIRECTORY) reloads and
 * answers; exit 0 when the new settings took effect, 2 when it kept the
 * old ones, 1 when it did not answer. With --pid, a tlsgate without the
 * control socket (started by an older version) gets SIGHUP instead. */
#define RELOAD_TIMEOUT_USEC (60 * USEC_PER_SEC)

static int run_reload(int argc, char *argv[]) {
        _cleanup_free_ char *dir = NULL, *reason = NULL;
        const char *pid_arg = NULL;
        long pid = 0;
        int r;

        for (int i = 0; i < argc; i++) {
                const char *v;

                if ((v = startswith(argv[i], "--pid=")))
                        pid_arg = v;
                else if (streq(argv[i], "--pid") && i + 1 < argc)
                        pid_arg = argv[++i];
                else {
                        print_error(_("reload: unknown argument \"%s\" (only --pid=PID)"), argv[i]);
                        return EXIT_USAGE;
                }
        }
        if (pid_arg) {
                char *end;

                errno = 0;
                pid = strtol(pid_arg, &end, 10);
                if (errno || end == pid_arg || *end || pid <= 0) {
                        print_error(_("reload: --pid: not a process ID: \"%s\""), pid_arg);
                        return EXIT_USAGE;
                }
        }
        dir = control_runtime_dir(getenv("RUNTIME_DIRECTORY"));
        if (!dir) {
                print_error("%s", _("reload: $RUNTIME_DIRECTORY is not set: this command is "
                                    "what the units' ExecReload= runs (with RuntimeDirectory=); "
                                    "elsewhere send tlsgate SIGHUP"));
                return EXIT_USAGE;
        }
        r = control_request_reload(dir, RELOAD_TIMEOUT_USEC, &reason);
        if (r >= 0)
                return EXIT_SUCCESS;
        if (r == -EINVAL) {
                print_error(_("reload failed, tlsgate keeps its current settings: %s"),
                            reason ? reason : _("out of memory"));
                return EXIT_USAGE;
        }
        if ((r == -ENOENT || r == -ECONNREFUSED) && pid > 0) {
                if (kill((pid_t) pid, SIGHUP) < 0) {
                        print_error(_("reload: cannot signal process %ld: %s"), pid,
                                    strerror(errno));
                        return EXIT_FAILURE;
                }
                log_warning("reload: no control socket in %s (a tlsgate started by an older "
                            "version?); sent SIGHUP to process %ld, whose log says how it went",
                            dir, pid);
                return EXIT_SUCCESS;
        }
        print_error(_("reload: no answer from tlsgate through %s/%s: %s"), dir, CONTROL_SOCKET_NAME,
                    strerror(-r));
        return EXIT_FAILURE;
}

static int run_command(int argc, char *argv[]) {
        if (argc < 2) {
                print_usage(stderr);
                fputc('\n', stderr);
                print_error("%s", _("a command is required, e.g. 'server'"));
                return EXIT_USAGE;
        }
        if (streq(argv[1], "--version") || streq(argv[1], "version")) {
                printf("tlsgate %s (GnuTLS %s)\n", PACKAGE_VERSION, gnutls_check_version(NULL));
                return EXIT_SUCCESS;
        }
        if (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help")) {
                print_usage(stdout);
                return EXIT_SUCCESS;
        }
        if (streq(argv[1], "server"))
                return run_server(argc - 2, argv + 2);
        if (streq(argv[1], "reload"))
                return run_reload(argc - 2, argv + 2);

        print_usage(stderr);
        fputc('\n', stderr);
        print_error("%s \"%s\"", _("unknown command"), argv[1]);
        return EXIT_USAGE;
}

int main(int argc, char *argv[]) {
        CURLcode cc;
        int r;

        setlocale(LC_ALL, "");
        /* Numbers stay in the "C" locale whatever LANG or LC_NUMERIC say
         * (systemd hands services the system's locale.conf): what tlsgate
         * prints with a fraction is read by programs (the Prometheus text,
         * the metrics JSON and Graphite lines, bucket bounds such as
         * le="0.001"), and what it reads (a duration such as 1.5s, the
         * config file) is written in the same notation everywhere. A "1,5"
         * in the translated messages is not worth a "0,001" that Prometheus
         * refuses. Set before any thread exists, so every thread and every
         * library (json-c, libcurl, GnuTLS) formats and parses the same. */
        (void) setlocale(LC_NUMERIC, "C");
        (void) bindtextdomain(GETTEXT_PACKAGE, LOCALEDIR);
        (void) textdomain(GETTEXT_PACKAGE);
        log_setup();
        /* Under systemd nobody reads a terminal: journal entries stay
         * English (errors quoted in them, and %m, included), whatever
         * LANG the system hands the service. */
        if (log_is_journal())
                (void) setlocale(LC_MESSAGES, "C");

        /* Once, before any thread starts: HTTP clients are made on whichever
         * loop needs one, and curl_global_init() is not thread-safe with
         * every libcurl build (see http.h). */
        cc = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (cc != CURLE_OK) {
                print_error(_("cannot initialize libcurl: %s"), curl_easy_strerror(cc));
                return EXIT_FAILURE;
        }
        r = run_command(argc, argv);
        curl_global_cleanup();
        return r;
}
