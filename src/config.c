/* SPDX-License-Identifier: MIT */
/* Options, driven by one table: the table names each flag, says how its
 * value is parsed and where it is stored, and carries the help text and the
 * default, so the command line, the --config file, defaults and --help
 * cannot drift apart. */

#include <arpa/inet.h>
#include <ctype.h>
#include <assert.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "authz.h"
#include "config.h"
#include "duration.h"
#include "metrics.h"
#include "strv.h"
#include "util.h"

typedef enum OptionKind {
        OPTION_BOOL,
        OPTION_PATH,     /* char *, "" means not given (as in Ghostunnel) */
        OPTION_STRING,   /* char *, "" is a value */
        OPTION_STRV,     /* char **, one entry per occurrence */
        OPTION_DURATION, /* usec_t */
        OPTION_UINT,     /* unsigned */
        OPTION_SETTER,   /* parsed by Option.set */
        OPTION_HELP,
} OptionKind;

typedef enum OptionFlags {
        OPTION_REPEATABLE = 1 << 0,
        OPTION_HIDDEN = 1 << 1,   /* old names kept for compatibility */
        OPTION_NONZERO = 1 << 2,  /* durations: 0 is refused */
        OPTION_NONEMPTY = 1 << 3, /* strings: "" is refused */
        OPTION_CMDLINE_ONLY = 1 << 4, /* --config, --help: not in a config file */
        OPTION_RELOADABLE = 1 << 5, /* re-applied on reload; others need a restart */
} OptionFlags;

typedef struct Option Option;
struct Option {
        const char *name;
        OptionKind kind;
        OptionFlags flags;
        size_t offset; /* into Config, unless kind is OPTION_SETTER/HELP */
        int (*set)(Config *c, const char *flag, const char *value, char **ret_error);
        const char *metavar;
        const char *help;
        const char *default_value; /* applied by config_init(), shown by --help */
        /* Empties a repeatable OPTION_SETTER option, so that the command line
         * can replace what the config file gave. */
        void (*reset)(Config *c);
};

#define FIELD(c, o, type) ((type *) ((uint8_t *) (c) + (o)->offset))

static int set_address(Address *a, bool *is_set, bool allow_systemd, const char *flag,
                       const char *value, char **ret_error) {
        Address parsed;
        const char *reason = NULL;
        int r;

        r = address_parse(value, allow_systemd, &parsed, &reason);
        if (r == -ENOMEM)
                return error_set(ret_error, r, "%s", _("out of memory"));
        if (r < 0)
                return error_set(ret_error, r, _("--%s: invalid address \"%s\": %s"), flag, value,
                              _(reason));

        address_done(a);
        *a = parsed;
        *is_set = true;
        return 0;
}

/* Ghostunnel's launchd:NAME: macOS's socket activation. */
static int refuse_launchd(const char *flag, const char *value, char **ret_error) {
        if (!startswith(value, "launchd:"))
                return 0;
        return error_set(ret_error, -EINVAL,
                         _("--%s: \"%s\": launchd is macOS's socket activation; use "
                           "systemd:NAME with a socket unit"),
                         flag, value);
}

static int set_listen(Config *c, const char *flag, const char *value, char **ret_error) {
        int r;

        r = refuse_launchd(flag, value, ret_error);
        if (r < 0)
                return r;
        return set_address(&c->listen, &c->listen_set, true, flag, value, ret_error);
}

static int set_target(Config *c, const char *flag, const char *value, char **ret_error) {
        return set_address(&c->target, &c->target_set, false, flag, value, ret_error);
}

static int set_max_tls_version(Config *c, const char *flag, const char *value, char **ret_error) {
        if (streq(value, "TLS1.2"))
                c->max_tls_version = TLS_VERSION_1_2;
        else if (streq(value, "TLS1.3"))
                c->max_tls_version = TLS_VERSION_1_3;
        else
                return error_set(ret_error, -EINVAL, _("--%s: must be TLS1.2 or TLS1.3, not \"%s\""),
                              flag, value);
        return 0;
}

static const struct {
        const char *name;
        CipherFamily family;
} cipher_families[] = {
        { "AES", CIPHER_AES },
        { "CHACHA", CIPHER_CHACHA },
};

/* "AES,CHACHA" in preference order. Names are case-sensitive and blanks
 * around them are ignored, as in Ghostunnel. */
static int set_cipher_suites(Config *c, const char *flag, const char *value, char **ret_error) {
        CipherFamily list[CIPHER_FAMILIES_MAX];
        unsigned n = 0;
        const char *p = value;

        if (value[strspn(value, " \t")] == '\0')
                return error_set(ret_error, -EINVAL, _("--%s: must not be empty (use AES, CHACHA)"),
                              flag);

        for (;;) {
                size_t len = strcspn(p, ",");
                const char *item = p;
                size_t i;

                while (len > 0 && (*item == ' ' || *item == '\t'))
                        item++, len--;
                while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t'))
                        len--;
                if (len == 0)
                        return error_set(ret_error, -EINVAL, _("--%s: empty entry in \"%s\""), flag,
                                      value);

                for (i = 0; i < ELEMENTSOF(cipher_families); i++)
                        if (strlen(cipher_families[i].name) == len &&
                            memcmp(cipher_families[i].name, item, len) == 0)
                                break;
                if (i >= ELEMENTSOF(cipher_families))
                        return error_set(ret_error, -EINVAL,
                                      _("--%s: unknown cipher suite family \"%.*s\" (use AES, CHACHA)"),
                                      flag, (int) len, item);
                for (unsigned j = 0; j < n; j++)
                        if (list[j] == cipher_families[i].family)
                                return error_set(ret_error, -EINVAL,
                                              _("--%s: \"%.*s\" given more than once"), flag,
                                              (int) len, item);
                list[n++] = cipher_families[i].family;

                p += strcspn(p, ",");
                if (*p == '\0')
                        break;
                p++;
        }

        memcpy(c->cipher_suites, list, sizeof(list[0]) * n);
        c->n_cipher_suites = n;
        return 0;
}

/* Repeatable, ORed together. "" is accepted and does nothing, as kingpin's
 * enum for Ghostunnel's --quiet lists it. "all" is more than the three
 * others together: it silences every log message, not only those about
 * connections. */
static int set_quiet(Config *c, const char *flag, const char *value, char **ret_error) {
        if (streq(value, "all"))
                c->quiet |= QUIET_ALL;
        else if (streq(value, "conns"))
                c->quiet |= QUIET_CONNS;
        else if (streq(value, "conn-errs"))
                c->quiet |= QUIET_CONN_ERRS;
        else if (streq(value, "handshake-errs"))
                c->quiet |= QUIET_HANDSHAKE_ERRS;
        else if (!streq(value, ""))
                return error_set(ret_error, -EINVAL,
                              _("--%s: must be one of all, conns, conn-errs, handshake-errs, not \"%s\""),
                              flag, value);
        return 0;
}

static void reset_quiet(Config *c) {
        c->quiet = 0;
}

/* --status: HOST:PORT (or https://HOST:PORT, as Ghostunnel also writes it)
 * is served over HTTPS with the server certificate; http://HOST:PORT,
 * unix:PATH and systemd:NAME over plain HTTP. */
static int set_status(Config *c, const char *flag, const char *value, char **ret_error) {
        const char *rest = startswith(value, "http://"), *tls = startswith(value, "https://");
        int r;

        r = refuse_launchd(flag, tls ?: value, ret_error);
        if (r < 0)
                return r;
        r = set_address(&c->status, &c->status_set, true, flag, rest ?: tls ?: value, ret_error);
        if (r < 0)
                return r;
        if (tls && c->status.kind != ADDRESS_TCP)
                return error_set(ret_error, -EINVAL,
                                 _("--%s: \"%s\": https:// needs HOST:PORT (a socket is served "
                                   "over plain HTTP)"),
                                 flag, value);
        c->status_http = rest || c->status.kind != ADDRESS_TCP;
        return 0;
}

/* --metrics-graphite: HOST:PORT of a Graphite server (TCP), as Ghostunnel
 * takes it; resolved once at start-up. */
static int set_metrics_graphite(Config *c, const char *flag, const char *value,
                                char **ret_error) {
        const Address *a = &c->metrics_graphite;
        int r;

        r = set_address(&c->metrics_graphite, &c->metrics_graphite_set, false, flag, value,
                        ret_error);
        if (r < 0)
                return r;
        if (a->kind != ADDRESS_TCP || strempty(a->host)[0] == '\0' || streq(a->port, "0"))
                return error_set(ret_error, -EINVAL,
                              _("--%s: \"%s\" must be HOST:PORT of a Graphite server, with a "
                                "host and a port other than 0"),
                              flag, value);
        return 0;
}

static int set_proxy_protocol_mode(Config *c, const char *flag, const char *value,
                                   char **ret_error) {
        if (proxy_mode_from_string(value, &c->proxy_protocol_mode) < 0)
                return error_set(ret_error, -EINVAL,
                              _("--%s: must be conn, tls or tls-full, not \"%s\""), flag, value);
        return 0;
}

static int parse_uint(const char *s, unsigned *ret);

/* "auto" (0: one per CPU the process may run on) or 1..CONFIG_THREADS_MAX. */
static int set_threads(Config *c, const char *flag, const char *value, char **ret_error) {
        unsigned n;

        if (streq(value, "auto")) {
                c->threads = 0;
                return 0;
        }
        if (parse_uint(value, &n) < 0 || n < 1 || n > CONFIG_THREADS_MAX)
                return error_set(ret_error, -EINVAL,
                              _("--%s: must be \"auto\" or a number of threads from 1 to %u, not \"%s\""),
                              flag, CONFIG_THREADS_MAX, value);
        c->threads = n;
        return 0;
}

#define CFG(field) offsetof(Config, field)

static const Option options[] = {
        { "config", OPTION_PATH, OPTION_CMDLINE_ONLY | OPTION_NONEMPTY, CFG(config_file), NULL,
          "FILE",
          N_("Read settings from FILE, one \"name = value\" per line (see below); flags on the "
             "command line override the file."), NULL },
        { "check", OPTION_BOOL, OPTION_CMDLINE_ONLY, CFG(check), NULL, NULL,
          N_("Load everything the server would load (settings, certificate and key, CA bundle, "
             "token, target address), print what would be served and exit: 0 when it can be "
             "served, 2 with the reason when not. Opens no socket."), NULL },
        { "listen", OPTION_SETTER, 0, 0, set_listen, "ADDR",
          N_("Address to listen on: HOST:PORT, [IPv6]:PORT, unix:PATH or systemd:NAME (required)."), NULL },
        { "target", OPTION_SETTER, 0, 0, set_target, "ADDR",
          N_("Address to forward connections to: HOST:PORT or unix:PATH (required)."), NULL },
        { "unsafe-target", OPTION_BOOL, 0, CFG(unsafe_target), NULL, NULL,
          N_("Allow a --target other than localhost, 127.0.0.1, [::1] or a UNIX socket."), NULL },
        { "proxy-protocol", OPTION_BOOL, 0, CFG(proxy_protocol), NULL, NULL,
          N_("Send a PROXY protocol v2 header with the client's address to the target "
             "(the same as --proxy-protocol-mode=conn)."), NULL },
        { "proxy-protocol-mode", OPTION_SETTER, 0, 0, set_proxy_protocol_mode, "MODE",
          N_("Send a PROXY protocol v2 header to the target: conn (addresses), tls (and the "
             "TLS version and cipher, SNI and ALPN) or tls-full (and the client certificate and "
             "its CN)."),
          NULL },
        { "keystore", OPTION_PATH, OPTION_RELOADABLE, CFG(keystore), NULL, "PATH",
          N_("Keystore with certificate and key (combined PEM or PKCS#12)."), NULL },
        { "storepass", OPTION_STRING, OPTION_RELOADABLE, CFG(storepass), NULL, "PASS",
          N_("Password for the keystore (PKCS#12 only)."), NULL },
        { "storepass-file", OPTION_PATH, OPTION_RELOADABLE, CFG(storepass_file), NULL, "PATH",
          N_("Read the keystore password from this file (one line) instead of --storepass."),
          NULL },
        { "cert", OPTION_PATH, OPTION_RELOADABLE, CFG(cert), NULL, "PATH",
          N_("Certificate chain (PEM), used with --key."), NULL },
        { "key", OPTION_PATH, OPTION_RELOADABLE, CFG(key), NULL, "PATH",
          N_("Private key for --cert (PEM)."), NULL },
        { "cacert", OPTION_PATH, OPTION_RELOADABLE, CFG(cacert), NULL, "PATH",
          N_("CA bundle (PEM) client certificates must chain to. Default: system trust store."), NULL },
        { "pkcs11-module", OPTION_PATH, 0, CFG(pkcs11_module), NULL, "PATH",
          N_("PKCS#11 module (.so) holding the private key; --cert or --keystore then holds only "
             "the certificate chain."), NULL },
        { "pkcs11-token-label", OPTION_PATH, 0, CFG(pkcs11_token_label), NULL,
          "LABEL", N_("Label of the PKCS#11 token with the private key."), NULL },
        { "pkcs11-pin", OPTION_STRING, 0, CFG(pkcs11_pin), NULL, "PIN",
          N_("PIN to log in to the PKCS#11 token."), NULL },
        { "auto-acme-cert", OPTION_PATH, 0, CFG(auto_acme_cert), NULL, "FQDN",
          N_("Obtain and renew a public certificate for this name over ACME (TLS-ALPN-01, "
             "answered on the listening socket)."), NULL },
        { "auto-acme-email", OPTION_PATH, 0, CFG(auto_acme_email), NULL, "EMAIL",
          N_("Contact address for the ACME account (required with --auto-acme-cert)."), NULL },
        { "auto-acme-agree-to-tos", OPTION_BOOL, 0, CFG(auto_acme_agree_to_tos), NULL, NULL,
          N_("Agree to the ACME CA's terms of service (required with --auto-acme-cert)."), NULL },
        { "auto-acme-ca", OPTION_PATH, 0, CFG(auto_acme_ca), NULL, "URL",
          N_("ACME directory URL of the CA."), ACME_DEFAULT_CA },
        { "auto-acme-testca", OPTION_PATH, 0, CFG(auto_acme_testca), NULL, "URL",
          N_("ACME directory URL of a test CA; when set, --auto-acme-ca is ignored."), NULL },
        { "auto-acme-renew-check-interval", OPTION_DURATION, OPTION_NONZERO,
          CFG(auto_acme_renew_check_interval), NULL, "DURATION",
          N_("How often the ACME certificate is checked for renewal, from 1s to 24h."), "10m" },
        { "allow-all", OPTION_BOOL, OPTION_RELOADABLE, CFG(allow_all), NULL, NULL,
          N_("Allow every client with a valid certificate."), NULL },
        { "allow-cn", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(allow_cn), NULL, "CN",
          N_("Allow clients with this subject common name (can be repeated)."), NULL },
        { "allow-ou", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(allow_ou), NULL, "OU",
          N_("Allow clients with this organizational unit (can be repeated)."), NULL },
        { "allow-dns", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(allow_dns), NULL, "DNS",
          N_("Allow clients with this DNS subject alternative name (can be repeated)."), NULL },
        { "allow-ip", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(allow_ip), NULL, "IP",
          N_("Allow clients with this IP subject alternative name (can be repeated)."), NULL },
        { "allow-uri", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(allow_uri), NULL, "URI",
          N_("Allow clients with a URI subject alternative name matching this pattern; "
             "'*' matches one path segment, a final '**' any rest (can be repeated)."), NULL },
        { "allow-dns-san", OPTION_STRV,
          OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_HIDDEN | OPTION_RELOADABLE,
          CFG(allow_dns), NULL, "DNS", NULL, NULL },
        { "allow-ip-san", OPTION_STRV,
          OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_HIDDEN | OPTION_RELOADABLE,
          CFG(allow_ip), NULL, "IP", NULL, NULL },
        { "allow-uri-san", OPTION_STRV,
          OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_HIDDEN | OPTION_RELOADABLE,
          CFG(allow_uri), NULL, "URI", NULL, NULL },
        { "allow-spki-pin", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(allow_spki_pin), NULL, "PIN",
          N_("Allow clients whose certificate's public key has this pin: ALGO:BASE64, the sha256, "
             "sha384 or sha512 digest of its DER SubjectPublicKeyInfo. The pin alone "
             "authenticates: the chain, --cacert, validity dates and key usage are not checked. "
             "Excludes the other access rules (can be repeated)."), NULL },
        { "disable-authentication", OPTION_BOOL, OPTION_RELOADABLE, CFG(disable_authentication),
          NULL, NULL,
          N_("Do not ask clients for a certificate at all."), NULL },
        { "connect-timeout", OPTION_DURATION, OPTION_NONZERO, CFG(connect_timeout), NULL, "DURATION",
          N_("Timeout for the TLS handshake and for connecting to the target."), "10s" },
        { "close-timeout", OPTION_DURATION, 0, CFG(close_timeout), NULL, "DURATION",
          N_("How long to wait for the other side after one side closed."), "60s" },
        { "max-conn-lifetime", OPTION_DURATION, 0, CFG(max_conn_lifetime), NULL, "DURATION",
          N_("Close connections this long after they were accepted; 0 means no limit."), "0s" },
        { "max-concurrent-conns", OPTION_UINT, 0, CFG(max_concurrent_conns), NULL, "N",
          N_("Most connections handled at once; 0 means no limit."), "0" },
        { "threads", OPTION_SETTER, 0, 0, set_threads, "N",
          N_("Threads serving connections, each with its own event loop on the shared "
             "listening socket: a number, or auto for one per CPU the process may run on "
             "(its affinity mask), at most 64."), "auto" },
        { "shutdown-timeout", OPTION_DURATION, 0, CFG(shutdown_timeout), NULL, "DURATION",
          N_("On shutdown, close connections still open after this long."), "5m" },
        { "timed-reload", OPTION_DURATION, 0, CFG(timed_reload), NULL, "DURATION",
          N_("Reload the certificate, key, CA bundle and access rules this often, as SIGHUP "
             "does, but quietly when nothing changed; 0 means never."), "0s" },
        { "max-tls-version", OPTION_SETTER, 0, 0, set_max_tls_version, "VERSION",
          N_("Highest TLS version to offer: TLS1.2 or TLS1.3."), "TLS1.3" },
        { "cipher-suites", OPTION_SETTER, 0, 0, set_cipher_suites, "LIST",
          N_("Cipher suite families in order of preference, comma-separated (AES, CHACHA)."),
          "AES,CHACHA" },
        { "quiet", OPTION_SETTER, OPTION_REPEATABLE, 0, set_quiet, "WHAT",
          N_("Silence log messages: all, conns, conn-errs or handshake-errs (can be repeated)."),
          NULL, reset_quiet },
        { "status", OPTION_SETTER, 0, 0, set_status, "ADDR",
          N_("Serve /_status and /_metrics on ADDR: HOST:PORT (or https://HOST:PORT) over HTTPS "
             "with the server certificate, http://HOST:PORT, unix:PATH or systemd:NAME over plain "
             "HTTP."), NULL },
        { "target-status", OPTION_PATH, 0, CFG(target_status), NULL, "URL",
          N_("Check the backend for /_status with a GET of this http(s) URL (2xx is healthy) "
             "instead of a TCP connect to --target."), NULL },
        { "metrics-prefix", OPTION_STRING, OPTION_NONEMPTY, CFG(metrics_prefix), NULL, "PREFIX",
          N_("Prefix of the metric names on /_metrics and in what --metrics-url and "
             "--metrics-graphite send."), "ghostunnel" },
        { "metrics-url", OPTION_PATH, 0, CFG(metrics_url), NULL, "URL",
          N_("POST the metrics as JSON (as /_metrics serves them) to this http(s) URL every "
             "--metrics-interval."), NULL },
        { "metrics-graphite", OPTION_SETTER, 0, 0, set_metrics_graphite, "ADDR",
          N_("Send the metrics to the Graphite server at HOST:PORT (plaintext protocol over "
             "TCP) every --metrics-interval."), NULL },
        { "metrics-interval", OPTION_DURATION, OPTION_NONZERO, CFG(metrics_interval), NULL,
          "DURATION", N_("How often --metrics-url and --metrics-graphite send the metrics."),
          "30s" },
        { "enable-shutdown", OPTION_BOOL, 0, CFG(enable_shutdown), NULL, NULL,
          N_("Shut down gracefully, as on SIGTERM, on POST /_shutdown to the status port."),
          NULL },
        { "help", OPTION_HELP, OPTION_CMDLINE_ONLY, 0, NULL, NULL, N_("Show this help and exit."),
          NULL },
};

static_assert(ELEMENTSOF(options) <= CONFIG_OPTIONS_MAX, "raise CONFIG_OPTIONS_MAX");

/* Finds the option for a flag name as given, without dashes. "no-FLAG"
 * negates a boolean flag, as kingpin allows. */
static const Option *option_find(const char *name, bool *ret_negated) {
        const char *rest;

        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                if (streq(options[i].name, name)) {
                        *ret_negated = false;
                        return &options[i];
                }

        rest = startswith(name, "no-");
        if (rest)
                for (size_t i = 0; i < ELEMENTSOF(options); i++)
                        if (options[i].kind == OPTION_BOOL && streq(options[i].name, rest)) {
                                *ret_negated = true;
                                return &options[i];
                        }

        return NULL;
}

/* Go's strconv.ParseBool, which kingpin uses for "--flag=value". */
static int parse_bool(const char *s, bool *ret) {
        static const char * const yes[] = { "1", "t", "T", "true", "TRUE", "True" };
        static const char * const no[] = { "0", "f", "F", "false", "FALSE", "False" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (streq(s, yes[i])) {
                        *ret = true;
                        return 0;
                }
                if (streq(s, no[i])) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_uint(const char *s, unsigned *ret) {
        unsigned long long v = 0;

        if (*s == '\0')
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (*s - '0');
                if (v > UINT32_MAX)
                        return -ERANGE;
        }
        *ret = (unsigned) v;
        return 0;
}

static int set_duration(const Option *o, usec_t *field, const char *flag, const char *value,
                        char **ret_error) {
        usec_t u;
        int r;

        r = parse_duration(value, &u);
        if (r == -ERANGE)
                return error_set(ret_error, -EINVAL, _("--%s: duration \"%s\" is too large"), flag,
                              value);
        if (r < 0 && value[0] == '-')
                return error_set(ret_error, -EINVAL, _("--%s: must not be negative, not \"%s\""),
                              flag, value);
        if (r < 0)
                return error_set(ret_error, -EINVAL,
                              _("--%s: invalid duration \"%s\" (use Go syntax such as 500ms, 10s, 1m30s)"),
                              flag, value);
        if (u == 0 && (o->flags & OPTION_NONZERO))
                return error_set(ret_error, -EINVAL, _("--%s: must not be zero"), flag);

        *field = u;
        return 0;
}

static int option_set(Config *c, const Option *o, const char *flag, bool negated,
                      const char *value, char **ret_error) {
        int r;

        if (negated && value)
                return error_set(ret_error, -EINVAL, _("--%s: takes no value"), flag);
        if (!value && o->kind != OPTION_BOOL)
                return error_set(ret_error, -EINVAL, _("--%s: missing value"), flag);
        if ((o->flags & OPTION_NONEMPTY) && value && value[0] == '\0')
                return error_set(ret_error, -EINVAL, _("--%s: value must not be empty"), flag);

        switch (o->kind) {

        case OPTION_BOOL: {
                bool b = !negated;

                if (value && parse_bool(value, &b) < 0)
                        return error_set(ret_error, -EINVAL, _("--%s: must be true or false, not \"%s\""),
                                      flag, value);
                *FIELD(c, o, bool) = b;
                return 0;
        }

        case OPTION_PATH:
        case OPTION_STRING: {
                char **field = FIELD(c, o, char *), *copy = NULL;

                if (o->kind == OPTION_STRING || value[0] != '\0') {
                        copy = strdup(value);
                        if (!copy)
                                return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
                }
                /* The secrets (--storepass, --pkcs11-pin) are strings: a
                 * value replaced (the file's, by the environment or the
                 * command line) is wiped as config_done() wipes the last. */
                if (o->kind == OPTION_STRING)
                        erase_and_free_string(*field);
                else
                        free(*field);
                *field = copy;
                return 0;
        }

        case OPTION_STRV:
                r = strv_extend(FIELD(c, o, char **), value);
                if (r < 0)
                        return error_set(ret_error, r, "%s", _("out of memory"));
                return 0;

        case OPTION_DURATION:
                return set_duration(o, FIELD(c, o, usec_t), flag, value, ret_error);

        case OPTION_UINT:
                r = parse_uint(value, FIELD(c, o, unsigned));
                if (r == -ERANGE)
                        return error_set(ret_error, -EINVAL, _("--%s: \"%s\" is too large (at most %u)"),
                                      flag, value, (unsigned) UINT32_MAX);
                if (r < 0)
                        return error_set(ret_error, -EINVAL,
                                      _("--%s: must be a non-negative integer, not \"%s\""), flag,
                                      value);
                return 0;

        case OPTION_SETTER:
                return o->set(c, flag, value, ret_error);

        case OPTION_HELP:
                return error_set(ret_error, -EINVAL, _("--%s: only valid on the command line"), flag);
        }

        assert(false);
        return -EINVAL;
}

void config_init(Config *c) {
        assert(c);

        *c = (Config) {};
        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                _unused_ int r;

                if (!options[i].default_value)
                        continue;
                /* Defaults are literals in the table above and allocate nothing. */
                r = option_set(c, &options[i], options[i].name, false, options[i].default_value,
                               NULL);
                assert(r >= 0);
        }
}

void config_done(Config *c) {
        if (!c)
                return;
        free(c->config_file);
        address_done(&c->listen);
        address_done(&c->target);
        free(c->keystore);
        if (c->storepass)
                explicit_bzero(c->storepass, strlen(c->storepass));
        free(c->storepass);
        free(c->storepass_file);
        free(c->cert);
        free(c->key);
        free(c->cacert);
        free(c->pkcs11_module);
        free(c->pkcs11_token_label);
        erase_and_free_string(c->pkcs11_pin);
        free(c->auto_acme_cert);
        free(c->auto_acme_email);
        free(c->auto_acme_ca);
        free(c->auto_acme_testca);
        strv_free(c->allow_cn);
        strv_free(c->allow_ou);
        strv_free(c->allow_dns);
        strv_free(c->allow_ip);
        strv_free(c->allow_uri);
        strv_free(c->allow_spki_pin);
        address_done(&c->status);
        free(c->target_status);
        free(c->metrics_prefix);
        free(c->metrics_url);
        address_done(&c->metrics_graphite);
        *c = (Config) {};
}

/* Ghostunnel flags that tlsgate cannot have, each with why and what to use
 * instead: refused by name, so that a migrated command line fails with
 * advice rather than as an unknown flag. Flags of Ghostunnel's client mode
 * are not here: there is no client mode. */
static const struct {
        const char *name;
        const char *reason;
} refused_flags[] = {
        { "enable-pprof",
          N_("it serves the Go runtime's profiler and tlsgate is not a Go program; profile "
             "the running process with perf(1) instead") },
        { "allow-policy",
          N_("tlsgate has no Open Policy Agent (Rego) engine; express the rule with "
             "--allow-cn, --allow-ou, --allow-dns, --allow-ip or --allow-uri") },
        { "allow-query",
          N_("tlsgate has no Open Policy Agent (Rego) engine; express the rule with "
             "--allow-cn, --allow-ou, --allow-dns, --allow-ip or --allow-uri") },
        { "use-workload-api",
          N_("tlsgate has no SPIFFE Workload API client; have spiffe-helper write the "
             "SVID and bundle to files and use --cert, --key and --cacert with "
             "--timed-reload") },
        { "use-workload-api-addr",
          N_("tlsgate has no SPIFFE Workload API client; have spiffe-helper write the "
             "SVID and bundle to files and use --cert, --key and --cacert with "
             "--timed-reload") },
        { "use-workload-api-timeout",
          N_("tlsgate has no SPIFFE Workload API client; have spiffe-helper write the "
             "SVID and bundle to files and use --cert, --key and --cacert with "
             "--timed-reload") },
        { "keychain-identity",
          N_("the macOS keychain and the Windows certificate store do not exist on Linux; "
             "use --keystore, --cert/--key, or a key on a token with --pkcs11-module") },
        { "keychain-issuer",
          N_("the macOS keychain and the Windows certificate store do not exist on Linux; "
             "use --keystore, --cert/--key, or a key on a token with --pkcs11-module") },
        { "keychain-require-token",
          N_("the macOS keychain and the Windows certificate store do not exist on Linux; "
             "use --keystore, --cert/--key, or a key on a token with --pkcs11-module") },
        { "allow-unsafe-cipher-suites",
          N_("tlsgate offers only AEAD cipher suites and has no unsafe ones to enable; "
             "choose among them with --cipher-suites") },
        { "use-landlock",
          N_("tlsgate does not sandbox itself; the systemd unit's sandboxing "
             "(ProtectSystem=, RestrictAddressFamilies=, ...) confines it instead") },
        { "disable-landlock",
          N_("tlsgate does not sandbox itself; the systemd unit's sandboxing "
             "(ProtectSystem=, RestrictAddressFamilies=, ...) confines it instead") },
        { "syslog",
          N_("tlsgate logs to the journal under systemd and to stderr otherwise; have "
             "journald forward to syslog (ForwardToSyslog=) instead") },
        { "skip-resolve",
          N_("tlsgate resolves --target once at start; give an IP address or a UNIX "
             "socket, or order the unit After=network-online.target") },
        { "auto-acme-alt-tls-alpn-port",
          N_("tlsgate answers the TLS-ALPN-01 challenge on its --listen socket and never "
             "binds a port of its own for it; drop the flag") },
        { "help-custom-man",
          N_("tlsgate's manual is installed as a man page; read man tlsgate") },
};

/* The reason a flag name (without dashes) is refused, untranslated; NULL
 * when it is not one of Ghostunnel's refused flags. */
static const char *refused_flag_reason(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(refused_flags); i++)
                if (streq(refused_flags[i].name, name))
                        return refused_flags[i].reason;
        return NULL;
}

static int unknown_flag_error(char **ret_error, const char *name) {
        const char *reason = refused_flag_reason(name);

        if (reason)
                return error_set(ret_error, -ENOENT, _("--%s: not supported: %s"), name,
                                 _(reason));
        return error_set(ret_error, -ENOENT, _("unknown flag --%s (see tlsgate server --help)"),
                         name);
}

int config_set_option(Config *c, const char *name, const char *value, char **ret_error) {
        const Option *o;
        bool negated;

        assert(c);
        assert(name);

        o = option_find(name, &negated);
        if (!o && refused_flag_reason(name))
                return unknown_flag_error(ret_error, name);
        if (!o)
                return error_set(ret_error, -ENOENT, _("unknown flag --%s"), name);
        if (o->flags & OPTION_CMDLINE_ONLY)
                return error_set(ret_error, -EINVAL, _("--%s: only valid on the command line"), name);
        return option_set(c, o, name, negated, value, ret_error);
}

/* One flag of the command line, checked but not yet applied. */
typedef struct ArgSetting {
        const Option *o;
        char *name;             /* as given, without dashes */
        const char *value;      /* points into argv; NULL for a bare boolean flag */
        bool negated;
} ArgSetting;

typedef struct ArgList {
        ArgSetting *items;
        size_t n;
} ArgList;

static void arg_list_done(ArgList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->items[i].name);
        free(l->items);
}

/* Splits argv into flags and values and checks names and repeats, without
 * setting anything, so that --config can be read before the flags apply. */
static int argv_collect(int argc, char *argv[], ArgList *l, bool *ret_help, char **ret_error) {
        bool seen[ELEMENTSOF(options)] = {};

        l->items = calloc((size_t) argc + 1, sizeof(ArgSetting));
        if (!l->items)
                return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));

        for (int i = 0; i < argc; i++) {
                _cleanup_free_ char *name = NULL;
                const char *arg = argv[i], *body, *eq, *value;
                const Option *o;
                bool negated;

                if (streq(arg, "--")) {
                        if (i + 1 < argc)
                                return error_set(ret_error, -EINVAL,
                                              _("unexpected argument \"%s\" (tlsgate server takes only flags)"),
                                              argv[i + 1]);
                        break;
                }
                body = startswith(arg, "--");
                if (!body) {
                        if (arg[0] == '-' && arg[1] != '\0')
                                return error_set(ret_error, -ENOENT,
                                              _("unknown flag %s (see tlsgate server --help)"), arg);
                        return error_set(ret_error, -EINVAL,
                                      _("unexpected argument \"%s\" (tlsgate server takes only flags)"),
                                      arg);
                }

                eq = strchr(body, '=');
                name = eq ? strndup(body, (size_t) (eq - body)) : strdup(body);
                if (!name)
                        return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
                value = eq ? eq + 1 : NULL;

                o = option_find(name, &negated);
                if (!o)
                        return unknown_flag_error(ret_error, name);
                if (o->kind == OPTION_HELP) {
                        *ret_help = true;
                        return 0;
                }

                if (!value && o->kind != OPTION_BOOL) {
                        /* "--target --listen x" is a forgotten value, not the value "--listen". */
                        if (i + 1 >= argc || startswith(argv[i + 1], "--"))
                                return error_set(ret_error, -EINVAL, _("--%s: missing value"), name);
                        value = argv[++i];
                }

                if (!(o->flags & OPTION_REPEATABLE)) {
                        size_t idx = (size_t) (o - options);

                        if (seen[idx])
                                return error_set(ret_error, -EINVAL, _("--%s: given more than once"),
                                              name);
                        seen[idx] = true;
                }

                l->items[l->n++] = (ArgSetting) {
                        .o = o,
                        .name = TAKE_PTR(name),
                        .value = value,
                        .negated = negated,
                };
        }

        *ret_help = false;
        return 0;
}

/* The first option in the table that stores where o does: aliases such as
 * --allow-dns-san share their list with --allow-dns. */
static size_t option_slot(const Option *o) {
        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                if (options[i].kind == o->kind && options[i].offset == o->offset &&
                    options[i].set == o->set)
                        return i;
        assert(false);
        return 0;
}

/* The option of a canonical name ("key", not "no-key"); NULL if none. */
static const Option *option_named(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                if (streq(options[i].name, name))
                        return &options[i];
        return NULL;
}

static void option_reset(Config *c, const Option *o) {
        if (o->kind == OPTION_STRV)
                *FIELD(c, o, char **) = strv_free(*FIELD(c, o, char **));
        else if (o->reset)
                o->reset(c);
}

/* Ghostunnel's environment variables (kingpin's Envar()): each stands in
 * for its flag when the command line does not give that flag, and wins
 * over the --config file. Empty counts as unset, as in kingpin. */
static const struct {
        const char *variable, *option;
} env_options[] = {
        { "KEYSTORE_PATH", "keystore" },
        { "KEYSTORE_PASS", "storepass" },
        { "CERT_PATH", "cert" },
        { "KEY_PATH", "key" },
        { "CACERT_PATH", "cacert" },
        { "PKCS11_MODULE", "pkcs11-module" },
        { "PKCS11_TOKEN_LABEL", "pkcs11-token-label" },
        { "PKCS11_PIN", "pkcs11-pin" },
};

static int apply_environment(Config *c, const ArgList *args, char **ret_error) {
        for (size_t i = 0; i < ELEMENTSOF(env_options); i++) {
                _cleanup_free_ char *message = NULL;
                const char *value = getenv(env_options[i].variable);
                const Option *o;
                bool negated, given = false;
                int r;

                if (!value || !*value)
                        continue;
                o = option_find(env_options[i].option, &negated);
                assert(o);
                for (size_t j = 0; j < args->n && !given; j++)
                        given = option_slot(args->items[j].o) == option_slot(o);
                if (given)
                        continue;
                r = option_set(c, o, o->name, false, value, &message);
                if (r < 0)
                        return error_set(ret_error, r, _("environment variable %s: %s"),
                                         env_options[i].variable,
                                         message ? message : strerror(-r));
                c->origin_line[option_slot(o)] = 0;
        }
        return 0;
}

int config_parse_argv(Config *c, int argc, char *argv[], bool *ret_help, char **ret_error) {
        _cleanup_(arg_list_done) ArgList args = {};
        bool replaced[ELEMENTSOF(options)] = {}, help = false;
        int r;

        assert(c);
        assert(argc == 0 || argv);

        /* --help anywhere wins, so that it works even next to a broken flag. */
        for (int i = 0; i < argc && !streq(argv[i], "--"); i++)
                if (streq(argv[i], "--help")) {
                        if (ret_help)
                                *ret_help = true;
                        return 0;
                }

        r = argv_collect(argc, argv, &args, &help, ret_error);
        if (r < 0)
                return r;
        if (help) {
                if (ret_help)
                        *ret_help = true;
                return 0;
        }

        /* The file first, so that every flag overrides it. */
        for (size_t i = 0; i < args.n; i++) {
                if (!streq(args.items[i].o->name, "config"))
                        continue;
                if (args.items[i].value[0] == '\0')
                        return error_set(ret_error, -EINVAL, _("--%s: value must not be empty"),
                                      args.items[i].name);
                r = config_load_file(c, args.items[i].value, ret_error);
                if (r < 0)
                        return r;
        }
        r = apply_environment(c, &args, ret_error);
        if (r < 0)
                return r;

        for (size_t i = 0; i < args.n; i++) {
                const ArgSetting *a = &args.items[i];

                /* A list on the command line replaces the file's list. */
                if (a->o->flags & OPTION_REPEATABLE) {
                        size_t slot = option_slot(a->o);

                        if (!replaced[slot]) {
                                option_reset(c, a->o);
                                replaced[slot] = true;
                        }
                }

                r = option_set(c, a->o, a->name, a->negated, a->value, ret_error);
                if (r < 0)
                        return r;
                c->origin_line[option_slot(a->o)] = 0;
        }

        if (ret_help)
                *ret_help = false;
        return 0;
}

/* The config file. The syntax is deliberately small: "name = value" per
 * line with the flag's name, no quoting and no escapes, so that any value a
 * flag takes can be written as it is, '=' and '#' included. */

static bool is_blank(char ch) {
        return ch == ' ' || ch == '\t';
}

/* "PATH:LINE: " before a message about one setting. Messages from
 * option_set() start with "--KEY:"; in a file the key has no dashes. */
static int line_error(char **ret_error, int r, const char *path, unsigned line, const char *key,
                      const char *message) {
        const char *rest = message ? message : strerror(-r), *p;

        p = startswith(rest, "--");
        if (p && (p = startswith(p, key)) && *p == ':')
                rest += 2;
        if ((p = startswith(rest, key)) && *p == ':')
                return error_set(ret_error, r, "%s:%u: %s", path, line, rest);
        return error_set(ret_error, r, "%s:%u: %s: %s", path, line, key, rest);
}

/* Parses one line, NUL-terminated, without its line ending. seen[] counts
 * single-valued options per file. */
static int parse_line(Config *c, const char *path, unsigned line, char *s, bool *seen,
                      char **ret_error) {
        _cleanup_free_ char *message = NULL;
        char *name, *value = NULL, *eq, *e;
        const Option *o;
        bool negated;
        int r;

        s += strspn(s, " \t");
        e = s + strlen(s);
        while (e > s && (is_blank(e[-1]) || e[-1] == '\r'))
                *--e = '\0';
        if (*s == '\0' || *s == '#')
                return 0;

        name = s;
        eq = strchr(s, '=');
        if (eq) {
                value = eq + 1 + strspn(eq + 1, " \t");
                while (eq > s && is_blank(eq[-1]))
                        eq--;
                *eq = '\0';
                if (*name == '\0')
                        return error_set(ret_error, -EINVAL,
                                      _("%s:%u: missing setting name before \"=\""), path, line);
        }

        /* "listen 127.0.0.1:443": a forgotten "=", or garbage. */
        e = name + strcspn(name, " \t");
        if (*e != '\0') {
                *e = '\0';
                if (option_find(name, &negated))
                        return error_set(ret_error, -EINVAL,
                                      _("%s:%u: %s: missing \"=\" between name and value"), path,
                                      line, name);
                return error_set(ret_error, -ENOENT, _("%s:%u: unknown setting \"%s\""), path, line,
                              name);
        }

        o = option_find(name, &negated);
        if (!o && refused_flag_reason(name)) {
                (void) unknown_flag_error(&message, name);
                return line_error(ret_error, -ENOENT, path, line, name, message);
        }
        if (!o) {
                const char *bare = startswith(name, "--");

                if (bare && option_find(bare, &negated))
                        return error_set(ret_error, -ENOENT,
                                      _("%s:%u: unknown setting \"%s\" (write names without the leading dashes)"),
                                      path, line, name);
                return error_set(ret_error, -ENOENT, _("%s:%u: unknown setting \"%s\""), path, line,
                              name);
        }
        if (o->flags & OPTION_CMDLINE_ONLY) {
                (void) error_set(&message, -EINVAL, _("--%s: only valid on the command line"), name);
                return line_error(ret_error, -EINVAL, path, line, name, message);
        }
        if (!(o->flags & OPTION_REPEATABLE)) {
                size_t idx = (size_t) (o - options);

                if (seen[idx]) {
                        (void) error_set(&message, -EINVAL, _("--%s: given more than once"), name);
                        return line_error(ret_error, -EINVAL, path, line, name, message);
                }
                seen[idx] = true;
        }

        r = option_set(c, o, name, negated, value, &message);
        if (r < 0)
                return line_error(ret_error, r, path, line, name, message);
        c->origin_line[option_slot(o)] = line;
        return 0;
}

int config_parse_text(Config *c, const char *path, const char *text, size_t size,
                      char **ret_error) {
        bool seen[ELEMENTSOF(options)] = {};
        const char *p = text, *end = text + size;
        unsigned line = 0;
        int r;

        assert(c);
        assert(path);
        assert(text || size == 0);

        if (size > CONFIG_FILE_MAX)
                return error_set(ret_error, -EFBIG, _("%s: file too large (more than %u bytes)"), path,
                              (unsigned) CONFIG_FILE_MAX);
        /* A byte order mark some editors write. */
        if (size >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
                p += 3;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);
                _cleanup_free_ char *copy = NULL;

                line++;
                if (len > 0 && p[len - 1] == '\r')
                        len--;
                if (len > CONFIG_LINE_MAX)
                        return error_set(ret_error, -EINVAL,
                                      _("%s:%u: line too long (more than %u bytes)"), path, line,
                                      (unsigned) CONFIG_LINE_MAX);
                if (memchr(p, '\0', len))
                        return error_set(ret_error, -EINVAL, _("%s:%u: not a text line (NUL byte)"),
                                      path, line);

                copy = strndup(p, len);
                if (!copy)
                        return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
                r = parse_line(c, path, line, copy, seen, ret_error);
                explicit_bzero(copy, len); /* it may hold the storepass */
                if (r < 0)
                        return r;

                p = nl ? nl + 1 : end;
        }
        return 0;
}

/* Reads at most max bytes of path into a NUL-terminated buffer. Returns
 * -EFBIG when there is more. Reads until EOF rather than trusting st_size,
 * so that pipes ("--config <(...)") work too. */
static int read_bounded(const char *path, size_t max, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        buf = malloc(max + 2);
        if (!buf)
                return -ENOMEM;
        while (n <= max) {
                ssize_t k = read(fd, buf + n, max + 1 - n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        if (n > max) {
                explicit_bzero(buf, n);
                return -EFBIG;
        }
        buf[n] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_size = n;
        return 0;
}

int config_load_file(Config *c, const char *path, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        assert(c);
        assert(path);

        r = read_bounded(path, CONFIG_FILE_MAX, &text, &size);
        if (r == -EFBIG)
                return error_set(ret_error, r, _("%s: file too large (more than %u bytes)"), path,
                              (unsigned) CONFIG_FILE_MAX);
        if (r == -ENOMEM)
                return error_set(ret_error, r, "%s", _("out of memory"));
        if (r < 0)
                return error_set(ret_error, r, _("cannot read %s: %s"), path, strerror(-r));
        r = config_parse_text(c, path, text, size, ret_error);
        explicit_bzero(text, size); /* it may hold the storepass */
        return r;
}

/* Credentials, as systemd's LoadCredential= passes them. */

static int resolve_credential(char **field, const char *flag, const char *dir, char **ret_error) {
        _cleanup_free_ char *path = NULL;
        struct stat st;

        if (!*field || strchr(*field, '/'))
                return 0;
        if (asprintf(&path, "%s/%s", dir, *field) < 0)
                return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
        if (stat(path, &st) < 0) {
                int e = errno;

                if (e == ENOENT || e == ENOTDIR)
                        return 0; /* not a credential: a path relative to the working directory */
                return error_set(ret_error, -e, _("--%s: cannot look up credential %s: %s"), flag,
                              path, strerror(e));
        }
        if (!S_ISREG(st.st_mode))
                return 0; /* ".", "..", a subdirectory: not a credential */
        free(*field);
        *field = TAKE_PTR(path);
        return 1;
}

/* One line: a trailing newline (LF or CRLF) is dropped, anything after it
 * refused; "" is a valid password. The buffer is wiped before it is freed. */
static int read_storepass(Config *c, char **ret_error) {
        char *buf = NULL;
        size_t size, len;
        int r;

        r = read_bounded(c->storepass_file, STOREPASS_FILE_MAX, &buf, &size);
        if (r == -EFBIG)
                return error_set(ret_error, r, _("--storepass-file %s: longer than %u bytes"),
                              c->storepass_file, (unsigned) STOREPASS_FILE_MAX);
        if (r == -ENOMEM)
                return error_set(ret_error, r, "%s", _("out of memory"));
        if (r < 0)
                return error_set(ret_error, r, _("--storepass-file %s: cannot read: %s"),
                              c->storepass_file, strerror(-r));

        len = strcspn(buf, "\r\n");
        if (buf[len] == '\r' && buf[len + 1] == '\n')
                r = len + 2 == size ? 0 : -EINVAL;
        else if (buf[len] == '\n')
                r = len + 1 == size ? 0 : -EINVAL;
        else
                r = len == size ? 0 : -EINVAL;
        if (r < 0) {
                explicit_bzero(buf, size);
                free(buf);
                return error_set(ret_error, r,
                              _("--storepass-file %s: must hold the password on one line"),
                              c->storepass_file);
        }

        buf[len] = '\0';
        explicit_bzero(buf + len, size - len);
        if (c->storepass)
                explicit_bzero(c->storepass, strlen(c->storepass));
        free(c->storepass);
        c->storepass = buf;
        free(c->storepass_file);
        c->storepass_file = NULL;
        return 0;
}

int config_resolve_credentials(Config *c, const char *credentials_dir, char **ret_error) {
        const struct {
                char **field;
                const char *flag;
        } files[] = {
                { &c->cert, "cert" },
                { &c->key, "key" },
                { &c->keystore, "keystore" },
                { &c->cacert, "cacert" },
                { &c->storepass_file, "storepass-file" },
        };
        int r;

        assert(c);

        if (credentials_dir && credentials_dir[0] != '\0')
                for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                        r = resolve_credential(files[i].field, files[i].flag, credentials_dir,
                                               ret_error);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                c->from_credential[option_slot(option_named(files[i].flag))] =
                                        true;
                }

        if (c->storepass_file)
                return read_storepass(c, ret_error);
        return 0;
}

/* The files a setting names, checked before anything is loaded. */
static const char *const file_options[] = { "cert", "key", "keystore", "cacert", "pkcs11-module" };

/* "FILE:LINE: key" or "--key": where a setting came from, for a message. */
static char *setting_where(const Config *c, const Option *o) {
        unsigned line = c->origin_line[option_slot(o)];
        char *s;

        if (line > 0 && c->config_file)
                return asprintf(&s, "%s:%u: %s", c->config_file, line, o->name) < 0 ? NULL : s;
        return asprintf(&s, "--%s", o->name) < 0 ? NULL : s;
}

static bool path_under(const char *path, const char *dir) {
        const char *rest = startswith(path, dir);

        return rest && (*rest == '/' || *rest == '\0');
}

/* What to do about a file the service cannot open: the usual causes under
 * the shipped units, said in their terms. "" when there is nothing to add. */
static char *file_error_hint(const Config *c, const Option *o, const char *path, int e,
                             const char *credentials_dir) {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        bool from_file = c->origin_line[option_slot(o)] > 0 && c->config_file;
        char *s = NULL;
        int r = 0;

        if ((e == EACCES || e == ENOENT) &&
            (path_under(path, "/home") || path_under(path, "/root") || path_under(path, "/run/user")) &&
            getenv("INVOCATION_ID"))
                r = asprintf(&s, _("; the service's sandbox (ProtectHome=yes in the shipped units) "
                                   "hides /home, /root and /run/user: keep the file under "
                                   "/etc/tlsgate, or pass it as a credential "
                                   "(LoadCredential=%s:%s)"),
                             base, path);
        else if ((e == EACCES || e == EPERM) && geteuid() != 0)
                r = asprintf(&s, from_file ?
                             _("; tlsgate runs as uid %u, which may not read it: hand a file "
                               "only root may read over as a systemd credential, "
                               "LoadCredential=%s:%s in the service (systemctl edit), and write "
                               "\"%s = %s\" (see CREDENTIALS in tlsgate.conf(5))") :
                             _("; tlsgate runs as uid %u, which may not read it: hand a file "
                               "only root may read over as a systemd credential, "
                               "LoadCredential=%s:%s in the service (systemctl edit), and give "
                               "--%s=%s (see CREDENTIALS in tlsgate.conf(5))"),
                             (unsigned) geteuid(), base, path, o->name, base);
        else if (e == ENOENT && !strchr(path, '/') && (!credentials_dir || !*credentials_dir))
                r = asprintf(&s, _("; a name without a directory is looked up in "
                                   "$CREDENTIALS_DIRECTORY, which is not set here (a service "
                                   "sets it with LoadCredential=): outside the service, give "
                                   "the file's path"));
        else if (e == ENOENT && !strchr(path, '/'))
                r = asprintf(&s, _("; nor is it a credential in %s: is "
                                   "LoadCredential=%s:PATH missing from the service?"),
                             credentials_dir, path);
        else
                s = strdup("");
        return r < 0 ? NULL : s;
}

int config_check_files(const Config *c, const char *credentials_dir, char **ret_error) {
        assert(c);

        for (size_t i = 0; i < ELEMENTSOF(file_options); i++) {
                const Option *o = option_named(file_options[i]);
                const char *path = *FIELD(c, o, char *);
                _cleanup_free_ char *where = NULL, *hint = NULL;
                struct stat st;
                int fd, e;

                if (!path || !*path)
                        continue;
                /* A module without a directory is found by the dynamic loader. */
                if (streq(o->name, "pkcs11-module") && !strchr(path, '/'))
                        continue;
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                if (fd >= 0) {
                        e = fstat(fd, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
                        close(fd);
                        if (e == 0)
                                continue;
                } else
                        e = errno;
                where = setting_where(c, o);
                hint = file_error_hint(c, o, path, e, credentials_dir);
                if (!where || !hint)
                        return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
                return error_set(ret_error, -e, _("%s %s: cannot read: %s%s"), where, path,
                                 strerror(e), hint);
        }
        return 0;
}

char *config_locate(const Config *c, const char *message) {
        _cleanup_free_ char *name = NULL;
        const Option *o;
        const char *p;
        size_t n;
        char *s;

        assert(c);
        assert(message);

        p = startswith(message, "--");
        if (!p)
                return strdup(message);
        n = strcspn(p, " :");
        name = strndup(p, n);
        if (!name)
                return NULL;
        o = option_named(name);
        if (!o || c->origin_line[option_slot(o)] == 0 || !c->config_file)
                return strdup(message);
        if (asprintf(&s, "%s:%u: %s", c->config_file, c->origin_line[option_slot(o)], p) < 0)
                return NULL;
        return s;
}

char *config_credentials_note(const Config *c, const char *message) {
        _cleanup_free_ char *names = NULL;
        bool about_file = false;
        unsigned long n = 0;
        char *s;

        assert(c);
        assert(message);

        for (size_t i = 0; i < ELEMENTSOF(file_options) && !about_file; i++) {
                const char *p = startswith(message, "--");

                p = p ? startswith(p, file_options[i]) : NULL;
                about_file = p && (*p == ' ' || *p == ':');
        }
        if (!about_file)
                return NULL;

        for (size_t i = 0; i < ELEMENTSOF(file_options); i++) {
                const Option *o = option_named(file_options[i]);
                const char *path = *FIELD(c, o, char *), *base;
                char *more;

                if (!c->from_credential[option_slot(o)] || !path)
                        continue;
                base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
                if (asprintf(&more, "%s%s%s", strempty(names), names ? ", " : "", base) < 0)
                        return NULL;
                free(names);
                names = more;
                n++;
        }
        if (!names)
                return NULL;
        if (asprintf(&s, ngettext("; the credential %s is systemd's copy from when the service "
                                  "started (LoadCredential=), which a reload does not renew: "
                                  "restart the service (systemctl restart) to hand over a new "
                                  "file",
                                  "; the credentials %s are systemd's copies from when the "
                                  "service started (LoadCredential=), which a reload does not "
                                  "renew: restart the service (systemctl restart) to hand over "
                                  "new files", n),
                     names) < 0)
                return NULL;
        return s;
}

int config_load(Config *c, int argc, char *argv[], const char *credentials_dir, bool *ret_help,
                char **ret_error) {
        _cleanup_free_ char *error = NULL;
        bool help = false;
        int r;

        assert(c);

        r = config_parse_argv(c, argc, argv, &help, &error);
        if (ret_help)
                *ret_help = r >= 0 && help;
        if (r >= 0 && help)
                return 0;
        if (r >= 0)
                r = config_validate(c, &error);
        if (r < 0) {
                /* Messages about the file name it and the line; a rule
                 * broken across settings (a required one missing, as in an
                 * unedited copy of the example) gets the file named here, so
                 * that the operator knows what to edit. */
                if (c->config_file && error && !strstr(error, c->config_file))
                        return error_set(ret_error, r, "%s: %s", c->config_file, error);
                *ret_error = TAKE_PTR(error);
                return r;
        }
        r = config_resolve_credentials(c, credentials_dir, &error);
        if (r < 0) {
                char *located = error ? config_locate(c, error) : NULL;

                *ret_error = located;
                return located || !error ? r : -ENOMEM;
        }
        return config_check_files(c, credentials_dir, ret_error);
}

const char *config_acme_directory(const Config *c) {
        if (c->auto_acme_testca)
                return c->auto_acme_testca;
        return c->auto_acme_ca ? c->auto_acme_ca : ACME_DEFAULT_CA;
}

/* Reload. */

static bool strv_equal(char * const *a, char * const *b) {
        for (; a && *a && b && *b; a++, b++)
                if (!streq(*a, *b))
                        return false;
        return !(a && *a) && !(b && *b);
}

/* Options parsed by a setter have no single field to compare. A setter
 * missing here counts as changed, so that the warning on every reload
 * shows that it needs an entry. */
static bool setter_equal(const Option *o, const Config *a, const Config *b) {
        if (o->set == set_listen)
                return a->listen_set == b->listen_set && streq_ptr(a->listen.spec, b->listen.spec);
        if (o->set == set_target)
                return a->target_set == b->target_set && streq_ptr(a->target.spec, b->target.spec);
        if (o->set == set_max_tls_version)
                return a->max_tls_version == b->max_tls_version;
        if (o->set == set_cipher_suites)
                return a->n_cipher_suites == b->n_cipher_suites &&
                       memcmp(a->cipher_suites, b->cipher_suites,
                              sizeof(a->cipher_suites[0]) * a->n_cipher_suites) == 0;
        if (o->set == set_quiet)
                return a->quiet == b->quiet;
        if (o->set == set_status)
                return a->status_set == b->status_set && a->status_http == b->status_http &&
                       streq_ptr(a->status.spec, b->status.spec);
        if (o->set == set_proxy_protocol_mode)
                return a->proxy_protocol_mode == b->proxy_protocol_mode;
        if (o->set == set_threads)
                return a->threads == b->threads;
        if (o->set == set_metrics_graphite)
                return a->metrics_graphite_set == b->metrics_graphite_set &&
                       streq_ptr(a->metrics_graphite.spec, b->metrics_graphite.spec);
        return false;
}

static bool option_equal(const Option *o, const Config *a, const Config *b) {
        switch (o->kind) {
        case OPTION_BOOL:
                return *FIELD(a, o, bool) == *FIELD(b, o, bool);
        case OPTION_PATH:
        case OPTION_STRING:
                return streq_ptr(*FIELD(a, o, char *), *FIELD(b, o, char *));
        case OPTION_STRV:
                return strv_equal(*FIELD(a, o, char **), *FIELD(b, o, char **));
        case OPTION_DURATION:
                return *FIELD(a, o, usec_t) == *FIELD(b, o, usec_t);
        case OPTION_UINT:
                return *FIELD(a, o, unsigned) == *FIELD(b, o, unsigned);
        case OPTION_SETTER:
                return setter_equal(o, a, b);
        case OPTION_HELP:
                return true;
        }
        return true;
}

int config_diff(const Config *a, const Config *b, bool reloadable, char ***ret) {
        _cleanup_strv_free_ char **names = NULL;

        assert(a);
        assert(b);
        assert(ret);

        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                const Option *o = &options[i];

                /* --config and --help come from the same command line; an
                 * alias is reported under the name it shares a field with. */
                if ((o->flags & OPTION_CMDLINE_ONLY) || option_slot(o) != i)
                        continue;
                if (!!(o->flags & OPTION_RELOADABLE) != reloadable || option_equal(o, a, b))
                        continue;
                if (strv_extend(&names, o->name) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(names);
        return 0;
}

static void swap_bytes(void *a, void *b, size_t n) {
        uint8_t *x = a, *y = b;

        for (size_t i = 0; i < n; i++) {
                uint8_t t = x[i];
                x[i] = y[i];
                y[i] = t;
        }
}

void config_swap_reloadable(Config *a, Config *b) {
        assert(a);
        assert(b);

        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                const Option *o = &options[i];
                size_t size;

                /* Once per field: swapping an alias's field again would undo it. */
                if (!(o->flags & OPTION_RELOADABLE) || option_slot(o) != i)
                        continue;
                switch (o->kind) {
                case OPTION_BOOL:
                        size = sizeof(bool);
                        break;
                case OPTION_PATH:
                case OPTION_STRING:
                        size = sizeof(char *);
                        break;
                case OPTION_STRV:
                        size = sizeof(char **);
                        break;
                case OPTION_DURATION:
                        size = sizeof(usec_t);
                        break;
                case OPTION_UINT:
                        size = sizeof(unsigned);
                        break;
                default:
                        /* A reloadable setter would need its own swap. */
                        assert(false);
                        continue;
                }
                swap_bytes(FIELD(a, o, uint8_t), FIELD(b, o, uint8_t), size);
                swap_bytes(&a->origin_line[i], &b->origin_line[i], sizeof a->origin_line[i]);
                swap_bytes(&a->from_credential[i], &b->from_credential[i],
                           sizeof a->from_credential[i]);
        }
}

static int strv_copy_into(char * const *from, char ***to) {
        STRV_FOREACH(s, from)
                if (strv_extend(to, *s) < 0)
                        return -ENOMEM;
        return 0;
}

int config_access_copy(const Config *c, Config **ret) {
        _cleanup_(config_access_freep) Config *a = NULL;

        assert(c);
        assert(ret);

        a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        a->allow_all = c->allow_all;
        a->disable_authentication = c->disable_authentication;
        if (strv_copy_into(c->allow_cn, &a->allow_cn) < 0 ||
            strv_copy_into(c->allow_ou, &a->allow_ou) < 0 ||
            strv_copy_into(c->allow_dns, &a->allow_dns) < 0 ||
            strv_copy_into(c->allow_ip, &a->allow_ip) < 0 ||
            strv_copy_into(c->allow_uri, &a->allow_uri) < 0 ||
            strv_copy_into(c->allow_spki_pin, &a->allow_spki_pin) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(a);
        return 0;
}

Config *config_access_free(Config *c) {
        config_done(c);
        free(c);
        return NULL;
}

static bool acme_url_ok(const char *url) {
        return startswith(url, "https://") || startswith(url, "http://");
}

static int validate_acme(const Config *c, char **ret_error) {
        const char *p;

        if (!c->auto_acme_cert) {
                if (c->auto_acme_email)
                        return error_set(ret_error, -EINVAL, "%s",
                                      _("--auto-acme-email requires --auto-acme-cert"));
                if (c->auto_acme_agree_to_tos)
                        return error_set(ret_error, -EINVAL, "%s",
                                      _("--auto-acme-agree-to-tos requires --auto-acme-cert"));
                if (c->auto_acme_testca)
                        return error_set(ret_error, -EINVAL, "%s",
                                      _("--auto-acme-testca requires --auto-acme-cert"));
                return 0;
        }
        if (c->keystore || c->cert || c->key)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--auto-acme-cert and --keystore/--cert/--key are mutually exclusive"));
        if (!c->auto_acme_email)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--auto-acme-cert requires --auto-acme-email"));
        if (!strchr(c->auto_acme_email, '@') || strpbrk(c->auto_acme_email, " \t\r\n,<>"))
                return error_set(ret_error, -EINVAL, _("--auto-acme-email: \"%s\" is not an e-mail address"),
                              c->auto_acme_email);
        if (!c->auto_acme_agree_to_tos)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--auto-acme-cert requires --auto-acme-agree-to-tos (read the CA's "
                                "terms of service first)"));
        /* One DNS name: letters, digits, '-' and dots; no wildcard, since
         * TLS-ALPN-01 cannot validate wildcards. */
        for (p = c->auto_acme_cert; *p; p++)
                if (!(isalnum((unsigned char) *p) || *p == '-' || *p == '.'))
                        break;
        if (*p || c->auto_acme_cert[0] == '.' || c->auto_acme_cert[0] == '-' ||
            strlen(c->auto_acme_cert) > 253 || strstr(c->auto_acme_cert, ".."))
                return error_set(ret_error, -EINVAL,
                              _("--auto-acme-cert: \"%s\" is not a DNS name (wildcards cannot be "
                                "validated with TLS-ALPN-01)"),
                              c->auto_acme_cert);
        if (c->auto_acme_ca && !acme_url_ok(c->auto_acme_ca))
                return error_set(ret_error, -EINVAL, _("--auto-acme-ca: \"%s\" is not an http(s) URL"),
                              c->auto_acme_ca);
        if (c->auto_acme_testca && !acme_url_ok(c->auto_acme_testca))
                return error_set(ret_error, -EINVAL,
                              _("--auto-acme-testca: \"%s\" is not an http(s) URL"),
                              c->auto_acme_testca);
        if (c->auto_acme_renew_check_interval < RENEW_CHECK_INTERVAL_MIN ||
            c->auto_acme_renew_check_interval > RENEW_CHECK_INTERVAL_MAX) {
                char buf[64];

                return error_set(ret_error, -EINVAL,
                              _("--auto-acme-renew-check-interval: %s is out of range (from 1s to 24h)"),
                              format_duration(buf, sizeof buf, c->auto_acme_renew_check_interval));
        }
        return 0;
}

/* Ghostunnel's PKCS#11 mode: the private key stays on the token and --cert
 * or --keystore holds only the certificate chain. Returns 1 when the mode
 * is on and consistent, 0 when it is off. */
static int validate_pkcs11(const Config *c, char **ret_error) {
        if (!c->pkcs11_module) {
                if (c->pkcs11_token_label)
                        return error_set(ret_error, -EINVAL, "%s",
                                      _("--pkcs11-token-label requires --pkcs11-module"));
                if (c->pkcs11_pin)
                        return error_set(ret_error, -EINVAL, "%s",
                                      _("--pkcs11-pin requires --pkcs11-module"));
                return 0;
        }
        if (c->auto_acme_cert)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--auto-acme-cert and --pkcs11-module are mutually exclusive"));
        if (c->key)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--key and --pkcs11-module are mutually exclusive: the private "
                                "key is on the PKCS#11 token"));
        if (c->storepass || c->storepass_file)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--storepass/--storepass-file and --pkcs11-module are mutually "
                                "exclusive: with a token, --keystore holds only the certificate "
                                "chain"));
        if (c->keystore && c->cert)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--keystore and --cert are mutually exclusive"));
        if (!c->keystore && !c->cert)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--pkcs11-module requires --cert or --keystore (the certificate "
                                "chain of the key on the token)"));
        return 1;
}

static int validate_credentials(const Config *c, char **ret_error) {
        int r;

        r = validate_pkcs11(c, ret_error);
        if (r < 0)
                return r;
        if (r > 0)
                return validate_acme(c, ret_error);
        if (c->auto_acme_cert)
                return validate_acme(c, ret_error);
        if (c->keystore && (c->cert || c->key))
                return error_set(ret_error, -EINVAL, "%s",
                              _("--keystore and --cert/--key are mutually exclusive"));
        if (c->cert && !c->key)
                return error_set(ret_error, -EINVAL, "%s", _("--cert requires --key"));
        if (c->key && !c->cert)
                return error_set(ret_error, -EINVAL, "%s", _("--key requires --cert"));
        if (!c->keystore && !c->cert)
                return error_set(ret_error, -EINVAL, "%s",
                              _("at least one of --keystore, --cert/--key or --auto-acme-cert is required"));
        r = validate_acme(c, ret_error);
        if (r < 0)
                return r;
        if (c->storepass && !c->keystore)
                return error_set(ret_error, -EINVAL, "%s", _("--storepass requires --keystore"));
        if (c->storepass && c->storepass_file)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--storepass and --storepass-file are mutually exclusive"));
        if (c->storepass_file && !c->keystore)
                return error_set(ret_error, -EINVAL, "%s", _("--storepass-file requires --keystore"));
        return 0;
}

static int validate_access(const Config *c, char **ret_error) {
        bool rules = c->allow_cn || c->allow_ou || c->allow_dns || c->allow_ip || c->allow_uri;
        bool pins = c->allow_spki_pin;
        int r;

        if (!c->disable_authentication && !c->allow_all && !rules && !pins)
                return error_set(ret_error, -EINVAL, "%s",
                              _("at least one of --allow-all, --allow-cn, --allow-ou, --allow-dns, "
                                "--allow-ip, --allow-uri, --allow-spki-pin or "
                                "--disable-authentication is required"));
        if (!c->disable_authentication && c->allow_all && (rules || pins))
                return error_set(ret_error, -EINVAL, "%s",
                              _("--allow-all is mutually exclusive with other access control flags"));
        if (c->disable_authentication && (c->allow_all || rules || pins))
                return error_set(ret_error, -EINVAL, "%s",
                              _("--disable-authentication is mutually exclusive with other access "
                                "control flags"));
        /* A pin replaces the verification the other rules rely on. */
        if (pins && rules)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--allow-spki-pin is mutually exclusive with other access control "
                                "flags"));

        STRV_FOREACH(p, c->allow_spki_pin) {
                SpkiPin pin;

                r = spki_pin_parse("allow-spki-pin", *p, &pin, ret_error);
                if (r < 0)
                        return r;
        }

        STRV_FOREACH(p, c->allow_uri)
                if (!uri_pattern_valid(*p))
                        return error_set(ret_error, -EINVAL,
                                      _("--allow-uri: invalid pattern \"%s\" ('**' may only be the last segment)"),
                                      *p);

        STRV_FOREACH(ip, c->allow_ip) {
                unsigned char buf[sizeof(struct in6_addr)];

                if (inet_pton(AF_INET, *ip, buf) != 1 && inet_pton(AF_INET6, *ip, buf) != 1)
                        return error_set(ret_error, -EINVAL,
                                      _("--allow-ip: \"%s\" is not an IPv4 or IPv6 address"), *ip);
        }
        return 0;
}

/* Both on one TCP port would share it through SO_REUSEPORT, silently. */
static bool status_conflicts(const Address *s, const Address *l) {
        if (s->kind != l->kind)
                return false;
        if (s->kind == ADDRESS_TCP)
                return streq_ptr(s->port, l->port) && !streq_ptr(s->port, "0");
        return streq_ptr(s->path, l->path);
}

static int validate_status(const Config *c, char **ret_error) {
        if (!c->status_set && c->target_status)
                return error_set(ret_error, -EINVAL, "%s", _("--target-status requires --status"));
        if (!c->status_set && c->enable_shutdown)
                return error_set(ret_error, -EINVAL, "%s", _("--enable-shutdown requires --status"));
        if (c->target_status && !acme_url_ok(c->target_status)) {
                _cleanup_free_ char *shown = NULL;

                /* A password in it stays out of the message. */
                if (url_for_log(c->target_status, &shown) < 0)
                        return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
                return error_set(ret_error, -EINVAL, _("--target-status: \"%s\" is not an http(s) URL"),
                              shown);
        }
        if (c->metrics_prefix && !metrics_prefix_valid(c->metrics_prefix))
                return error_set(ret_error, -EINVAL,
                              _("--metrics-prefix: \"%s\" must start with a letter, '_' or ':' and "
                                "hold at most 64 letters, digits, '_', ':', '.' or '-'"),
                              c->metrics_prefix);
        if (c->metrics_url && !acme_url_ok(c->metrics_url)) {
                _cleanup_free_ char *shown = NULL;

                /* A password in it stays out of the message. */
                if (url_for_log(c->metrics_url, &shown) < 0)
                        return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
                return error_set(ret_error, -EINVAL, _("--metrics-url: \"%s\" is not an http(s) URL"),
                              shown);
        }
        if (c->status_set && c->listen_set && status_conflicts(&c->status, &c->listen))
                return error_set(ret_error, -EINVAL,
                              _("--status %s: must not use the port, path or socket name of --listen"),
                              c->status.spec);
        return 0;
}

int config_validate(const Config *c, char **ret_error) {
        int r;

        assert(c);

        if (!c->listen_set)
                return error_set(ret_error, -EINVAL, "%s", _("--listen is required"));
        if (!c->target_set)
                return error_set(ret_error, -EINVAL, "%s", _("--target is required"));

        r = validate_credentials(c, ret_error);
        if (r < 0)
                return r;

        r = validate_access(c, ret_error);
        if (r < 0)
                return r;

        if (c->proxy_protocol && c->proxy_protocol_mode != PROXY_MODE_OFF)
                return error_set(ret_error, -EINVAL, "%s",
                              _("--proxy-protocol and --proxy-protocol-mode are mutually exclusive"));

        r = validate_status(c, ret_error);
        if (r < 0)
                return r;

        if (!c->unsafe_target && !address_is_local_target(c->target.spec))
                return error_set(ret_error, -EINVAL, "%s",
                              _("--target must be unix:PATH, localhost:PORT, 127.0.0.1:PORT or "
                                "[::1]:PORT (unless --unsafe-target is set)"));
        return 0;
}

#define HELP_INDENT 8
#define HELP_WIDTH 80

/* Prints one word of indented help, starting a new line when it would not
 * fit. */
static void help_word(const char *w, size_t n, size_t *col) {
        if (*col > HELP_INDENT && *col + 1 + n > HELP_WIDTH) {
                printf("\n%*s", HELP_INDENT, "");
                *col = HELP_INDENT;
        } else if (*col > HELP_INDENT) {
                putchar(' ');
                (*col)++;
        }
        printf("%.*s", (int) n, w);
        *col += n;
}

/* Prints text wrapped at word boundaries, then the default as one piece. */
static void print_wrapped(const char *text, const char *default_value) {
        size_t col = HELP_INDENT;

        printf("%*s", HELP_INDENT, "");
        for (const char *p = text; *p; p += strspn(p, " ")) {
                size_t n = strcspn(p, " ");

                help_word(p, n, &col);
                p += n;
        }
        if (default_value) {
                _cleanup_free_ char *d = NULL;

                if (asprintf(&d, _("(default: %s)"), default_value) >= 0)
                        help_word(d, strlen(d), &col);
        }
        putchar('\n');
}

void config_print_help(void) {
        fputs(_("Usage: tlsgate server --listen=ADDR --target=ADDR [FLAGS]\n"
                "\n"
                "Accept TLS connections, verify the client certificate and forward the\n"
                "plain stream to the target.\n"
                "\n"
                "Flags:\n"),
              stdout);

        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                const Option *o = &options[i];

                if (o->flags & OPTION_HIDDEN)
                        continue;
                if (o->metavar)
                        printf("  --%s=%s\n", o->name, o->metavar);
                else
                        printf("  --%s\n", o->name);
                print_wrapped(_(o->help), o->default_value);
        }

        fputs(_("\n"
                "Config file (--config=FILE):\n"
                "  One setting per line, \"name = value\", named like the flag without the\n"
                "  leading dashes (\"listen = 127.0.0.1:443\"). Blanks around the name and the\n"
                "  value are ignored; the rest of the value is taken as it is, '=' and '#'\n"
                "  included, without quoting. A boolean flag is \"allow-all = true\" or\n"
                "  \"false\", or a bare \"allow-all\" line. A repeatable flag repeats the line.\n"
                "  Empty lines and lines whose first non-blank character is '#' are ignored.\n"
                "  Flags on the command line override the file; a repeatable flag given on\n"
                "  the command line replaces all of the file's values for it.\n"
                "\n"
                "Credentials (systemd LoadCredential=):\n"
                "  When $CREDENTIALS_DIRECTORY is set, a value of --cert, --key, --keystore,\n"
                "  --cacert or --storepass-file without a '/' that names a file in that\n"
                "  directory means that file; any other value is a path as usual.\n"),
              stdout);
}
