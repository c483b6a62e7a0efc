/* SPDX-License-Identifier: MIT */
#pragma once

/* Options: one table of option definitions serves the command line and the
 * --config file. Pure logic, except for reading the --config file, the
 * --storepass-file, looking up systemd credentials and checking that the
 * named files open, each in one function named for it. The table and what
 * works on it are in config.c, config-argv.c, config-file.c,
 * config-validate.c and config-reload.c (see config-option.h). */

#include <stdbool.h>

#include "address.h"
#include "authz.h"
#include "macro.h"
#include "proxy-protocol.h"

typedef enum QuietFlags {
        QUIET_CONNS = 1 << 0,          /* "opening pipe"/"closed pipe" */
        QUIET_CONN_ERRS = 1 << 1,      /* dial errors, errors while piping */
        QUIET_HANDSHAKE_ERRS = 1 << 2, /* TLS handshake errors and denials */
        QUIET_EVERYTHING = 1 << 3,     /* "all": start-up, reload, shutdown too */
        QUIET_ALL = QUIET_CONNS | QUIET_CONN_ERRS | QUIET_HANDSHAKE_ERRS | QUIET_EVERYTHING,
} QuietFlags;

typedef enum TlsVersion {
        TLS_VERSION_1_2 = 0x0303,
        TLS_VERSION_1_3 = 0x0304,
} TlsVersion;

typedef enum CipherFamily {
        CIPHER_AES = 1,
        CIPHER_CHACHA = 2,
} CipherFamily;

#define CIPHER_FAMILIES_MAX 2

/* --auto-acme-renew-check-interval: below a second the timer would spin,
 * above a day a short-lived certificate could expire between checks. */
#define RENEW_CHECK_INTERVAL_MIN USEC_PER_SEC
#define RENEW_CHECK_INTERVAL_MAX (24 * USEC_PER_HOUR)

/* --threads N: 1..CONFIG_THREADS_MAX. */
#define CONFIG_THREADS_MAX 64U

/* Room for every option of the table in config.c (checked there). */
#define CONFIG_OPTIONS_MAX 96

typedef struct Config {
        char *config_file;     /* --config, as given; NULL when none */
        bool check;            /* --check: load everything, serve nothing */
        /* Where each setting came from, by option, for messages
         * (config_locate()): its line in config_file, 0 when the command
         * line, the environment or the default gave it; and whether
         * config_resolve_credentials() found its file in
         * $CREDENTIALS_DIRECTORY. */
        unsigned origin_line[CONFIG_OPTIONS_MAX];
        bool from_credential[CONFIG_OPTIONS_MAX];

        /* Addresses, parsed. */
        Address listen;
        Address target;
        bool listen_set, target_set;
        bool unsafe_target;
        /* PROXY protocol v2 header to the target: --proxy-protocol (Ghostunnel's
         * older flag, meaning conn) or --proxy-protocol-mode, not both. */
        bool proxy_protocol;
        ProxyMode proxy_protocol_mode; /* PROXY_MODE_OFF unless given */

        /* Credentials: paths only, loading is creds.c's job. */
        char *keystore;
        char *storepass;       /* NULL when not given; "" is a valid password */
        char *storepass_file;  /* read into storepass by config_resolve_credentials() */
        char *cert;
        char *key;
        char *cacert;          /* NULL: system trust store */
        /* PKCS#11: the private key stays on a token (src/pkcs11.c); --cert or
         * --keystore then holds only the certificate chain. */
        char *pkcs11_module;      /* path of the module; NULL: no token */
        char *pkcs11_token_label; /* NULL: the only token of the module */
        char *pkcs11_pin;         /* NULL when not given; erased in config_done() */

        /* ACME (server mode): a publicly trusted certificate for one name. */
        char *auto_acme_cert;  /* the FQDN; NULL: static credentials */
        char *auto_acme_email;
        bool auto_acme_agree_to_tos;
        char *auto_acme_ca;    /* directory URL; default Let's Encrypt production */
        char *auto_acme_testca; /* when set, used instead of auto_acme_ca */
        usec_t auto_acme_renew_check_interval; /* default 10m, RENEW_CHECK_INTERVAL_MIN..MAX */

        /* Authorization. */
        AccessRules access;

        /* Timeouts (0 = off where the flag says so). */
        usec_t connect_timeout;   /* default 10s, must be > 0 */
        usec_t close_timeout;     /* default 60s */
        usec_t max_conn_lifetime; /* default 0 = off */
        usec_t shutdown_timeout;  /* default 5m */
        usec_t timed_reload;      /* default 0 = off */
        unsigned max_concurrent_conns; /* 0 = unlimited */
        unsigned threads;              /* --threads; 0 = auto (the CPUs in the affinity mask) */

        TlsVersion max_tls_version;   /* default TLS 1.3 */
        CipherFamily cipher_suites[CIPHER_FAMILIES_MAX]; /* in preference order */
        unsigned n_cipher_suites;     /* default AES,CHACHA */

        unsigned quiet;               /* QuietFlags */

        /* Status port (status.c): /_status, /_metrics, /_shutdown. */
        Address status;
        bool status_set;
        bool status_http;             /* plain HTTP: http://HOST:PORT, unix:PATH, systemd:NAME */
        char *target_status;          /* backend check URL; NULL: TCP connect to --target */
        char *metrics_prefix;         /* default "ghostunnel", as in Ghostunnel */
        /* Metrics pushed every metrics_interval (metrics-push.c): the JSON of
         * /_metrics POSTed to metrics_url, the Graphite plaintext protocol to
         * metrics_graphite (HOST:PORT). */
        char *metrics_url;            /* NULL: no POST */
        Address metrics_graphite;
        bool metrics_graphite_set;
        usec_t metrics_interval;      /* default 30s, never 0 */
        bool enable_shutdown;         /* POST /_shutdown */
} Config;

/* Sets the defaults. */
void config_init(Config *c);
void config_done(Config *c);

/* Sets one option by its long name without dashes ("listen", "allow-cn").
 * value is NULL for a boolean flag given without "=value". Options that are
 * only valid on the command line (--config, --help) are refused.
 * Returns 0, or -EINVAL/-ENOENT/-ENOMEM with *ret_error set to a malloc'ed
 * message naming the flag and what is wrong ("--connect-timeout: invalid
 * duration \"abc\""). */
int config_set_option(Config *c, const char *name, const char *value, char **ret_error);

/* Parses argv after the "server" verb: "--name=value", "--name value",
 * "--bool-flag". Stops at nothing: every argument must be a known flag.
 * Sets *ret_help when --help was seen (then nothing else is read or checked).
 * With --config FILE, the file is loaded first (config_load_file()) and the
 * flags then override it: a single-valued flag replaces the file's value, a
 * repeatable flag (--allow-cn, --quiet, ...) replaces the file's whole list
 * for that option. Same error contract as config_set_option(). */
int config_parse_argv(Config *c, int argc, char *argv[], bool *ret_help, char **ret_error);

/* The config file: one "name = value" per line, see config_print_help().
 * Bounded to CONFIG_FILE_MAX bytes and CONFIG_LINE_MAX bytes per line.
 * config_parse_text() parses text of size bytes that came from path (used
 * in messages only); config_load_file() reads path and parses it. Errors
 * are "PATH:LINE: KEY: what is wrong" or "cannot read PATH: reason";
 * -EINVAL, -ENOENT (unknown setting), -EFBIG, -ENOMEM or the read error. */
#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_LINE_MAX 4096
int config_parse_text(Config *c, const char *path, const char *text, size_t size,
                      char **ret_error);
int config_load_file(Config *c, const char *path, char **ret_error);

/* Cross-flag validation, Ghostunnel's rules: required flags, --cert needs
 * --key, --keystore excludes --cert/--key, at least one access rule,
 * --allow-all, --disable-authentication and --allow-spki-pin exclusive with
 * other rules, pins well formed,
 * safe --target unless --unsafe-target, --allow-uri patterns well formed,
 * --allow-ip addresses parse, --storepass and --storepass-file exclusive
 * and only with --keystore. Same error contract. */
int config_validate(const Config *c, char **ret_error);

/* systemd credentials (LoadCredential=): when credentials_dir
 * (the value of $CREDENTIALS_DIRECTORY) is set and not empty, each value of
 * --cert, --key, --keystore, --cacert and --storepass-file that contains no
 * '/' and names a regular file in that directory is replaced by that file's
 * path; other values stay paths as given. Then --storepass-file is read into
 * storepass (one line; a trailing newline is dropped) and cleared. Call once,
 * after config_validate(). Returns 0 or a negative errno with *ret_error set
 * to a message naming the flag and the file, never the password. */
#define STOREPASS_FILE_MAX 4096
int config_resolve_credentials(Config *c, const char *credentials_dir, char **ret_error);

/* The named files can be opened for reading: --cert, --key, --keystore,
 * --cacert, and --pkcs11-module when it is a path. Call after
 * config_resolve_credentials() (credentials_dir as given to it, for the
 * message). The error names where the setting came from and, for a file
 * the service's user may not read, how to hand it over as a systemd
 * credential: "/etc/tlsgate/web.conf:22: key /etc/tlsgate/private/web.key:
 * cannot read: Permission denied; ...". Returns 0 or the negative errno. */
int config_check_files(const Config *c, const char *credentials_dir, char **ret_error);

/* Everything about the settings that can be known without loading what
 * they name: config_parse_argv(), config_validate() (a message without a
 * file and line gets the --config file named), config_resolve_credentials()
 * and config_check_files(). Every error is the settings' fault except
 * -ENOMEM. */
int config_load(Config *c, int argc, char *argv[], const char *credentials_dir, bool *ret_help,
                char **ret_error);

/* A message about a setting that starts with its flag, "--key PATH: what",
 * as the operator should read it: "FILE:LINE: key PATH: what" when the
 * --config file gave the setting, unchanged otherwise. Returns a new
 * string, or NULL when out of memory. */
char *config_locate(const Config *c, const char *message);

/* For a message about a file setting ("--cert ...", "--key ...") when
 * any of --cert, --key, --keystore or --cacert came from
 * $CREDENTIALS_DIRECTORY: a note to append to it on a reload (or its
 * --check), saying that systemd copied those files when the service started
 * and that new ones need a restart. NULL otherwise (or out of memory). */
char *config_credentials_note(const Config *c, const char *message);

/* Reload: which settings may change while running. The reloadable ones
 * (--cert, --key, --keystore, --storepass, --storepass-file, --cacert,
 * --allow-* including --allow-spki-pin, --disable-authentication) are
 * marked in the option table; the
 * others need a restart. config_diff() stores in *ret the canonical names
 * (no dashes, no hidden aliases) of the settings of one group (reloadable
 * true or false) whose values differ between a and b, in table order;
 * NULL when none. Returns 0 or -ENOMEM. Pure. */
int config_diff(const Config *a, const Config *b, bool reloadable, char ***ret);
/* Exchanges the values of every reloadable setting between a and b. Cannot
 * fail; calling it twice restores both. */
void config_swap_reloadable(Config *a, Config *b);

/* The ACME directory URL in effect (--auto-acme-testca wins over --auto-acme-ca). */
const char *config_acme_directory(const Config *c);

#define ACME_DEFAULT_CA "https://acme-v02.api.letsencrypt.org/directory"

/* Prints `tlsgate server --help` text to stdout, generated from the table. */
void config_print_help(void);
