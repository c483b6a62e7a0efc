/* SPDX-License-Identifier: MIT */
/* The command line after "server", Ghostunnel's environment variables, and
 * the Ghostunnel flags tlsgate refuses with a reason. */

#include <assert.h>

#include "config-option.h"
#include "util.h"

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
const char *refused_flag_reason(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(refused_flags); i++)
                if (streq(refused_flags[i].name, name))
                        return refused_flags[i].reason;
        return NULL;
}

int unknown_flag_error(char **ret_error, const char *name) {
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
        bool seen[CONFIG_OPTIONS_MAX] = {};

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
        bool replaced[CONFIG_OPTIONS_MAX] = {}, help = false;
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
