/* SPDX-License-Identifier: MIT */
/* Options, driven by one table: the table names each flag, says how its
 * value is parsed and where it is stored, and carries the help text and the
 * default, so the command line, the --config file, defaults and --help
 * cannot drift apart. */

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "config-option.h"
#include "duration.h"
#include "strv.h"
#include "util.h"

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

const Option options[] = {
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
        { "allow-all", OPTION_BOOL, OPTION_RELOADABLE, CFG(access.allow_all), NULL, NULL,
          N_("Allow every client with a valid certificate."), NULL },
        { "allow-cn", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(access.allow_cn), NULL, "CN",
          N_("Allow clients with this subject common name (can be repeated)."), NULL },
        { "allow-ou", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(access.allow_ou), NULL, "OU",
          N_("Allow clients with this organizational unit (can be repeated)."), NULL },
        { "allow-dns", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(access.allow_dns), NULL, "DNS",
          N_("Allow clients with this DNS subject alternative name (can be repeated)."), NULL },
        { "allow-ip", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(access.allow_ip), NULL, "IP",
          N_("Allow clients with this IP subject alternative name (can be repeated)."), NULL },
        { "allow-uri", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(access.allow_uri), NULL, "URI",
          N_("Allow clients with a URI subject alternative name matching this pattern; "
             "'*' matches one path segment, a final '**' any rest (can be repeated)."), NULL },
        { "allow-dns-san", OPTION_STRV,
          OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_HIDDEN | OPTION_RELOADABLE,
          CFG(access.allow_dns), NULL, "DNS", NULL, NULL },
        { "allow-ip-san", OPTION_STRV,
          OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_HIDDEN | OPTION_RELOADABLE,
          CFG(access.allow_ip), NULL, "IP", NULL, NULL },
        { "allow-uri-san", OPTION_STRV,
          OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_HIDDEN | OPTION_RELOADABLE,
          CFG(access.allow_uri), NULL, "URI", NULL, NULL },
        { "allow-spki-pin", OPTION_STRV, OPTION_REPEATABLE | OPTION_NONEMPTY | OPTION_RELOADABLE,
          CFG(access.allow_spki_pin), NULL, "PIN",
          N_("Allow clients whose certificate's public key has this pin: ALGO:BASE64, the sha256, "
             "sha384 or sha512 digest of its DER SubjectPublicKeyInfo. The pin alone "
             "authenticates: the chain, --cacert, validity dates and key usage are not checked. "
             "Excludes the other access rules (can be repeated)."), NULL },
        { "disable-authentication", OPTION_BOOL, OPTION_RELOADABLE, CFG(access.disable_authentication),
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

const size_t n_options = ELEMENTSOF(options);
static_assert(ELEMENTSOF(options) <= CONFIG_OPTIONS_MAX, "raise CONFIG_OPTIONS_MAX");

/* Finds the option for a flag name as given, without dashes. "no-FLAG"
 * negates a boolean flag, as kingpin allows. */
const Option *option_find(const char *name, bool *ret_negated) {
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

int option_set(Config *c, const Option *o, const char *flag, bool negated,
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
        access_rules_done(&c->access);
        address_done(&c->status);
        free(c->target_status);
        free(c->metrics_prefix);
        free(c->metrics_url);
        address_done(&c->metrics_graphite);
        *c = (Config) {};
}

/* The first option in the table that stores where o does: aliases such as
 * --allow-dns-san share their list with --allow-dns. */
size_t option_slot(const Option *o) {
        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                if (options[i].kind == o->kind && options[i].offset == o->offset &&
                    options[i].set == o->set)
                        return i;
        assert(false);
        return 0;
}

/* The option of a canonical name ("key", not "no-key"); NULL if none. */
const Option *option_named(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                if (streq(options[i].name, name))
                        return &options[i];
        return NULL;
}

void option_reset(Config *c, const Option *o) {
        if (o->kind == OPTION_STRV)
                *FIELD(c, o, char **) = strv_free(*FIELD(c, o, char **));
        else if (o->reset)
                o->reset(c);
}

/* Options parsed by a setter have no single field to compare. A setter
 * missing here counts as changed, so that the warning on every reload
 * shows that it needs an entry. */
bool option_setter_equal(const Option *o, const Config *a, const Config *b) {
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
