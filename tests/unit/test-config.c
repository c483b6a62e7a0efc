/* SPDX-License-Identifier: MIT */
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "strv.h"
#include "test-util.h"

#define ARGS_MAX 32

/* Collects a NULL-terminated list of arguments into argv. */
static int collect(char *argv[ARGS_MAX], const char *first, va_list ap) {
        int argc = 0;

        for (const char *a = first; a; a = va_arg(ap, const char *)) {
                if (argc >= ARGS_MAX - 1)
                        abort();
                argv[argc++] = (char *) a;
        }
        argv[argc] = NULL;
        return argc;
}

static int parse_args(Config *c, char **err, bool *help, char *argv[]) {
        int argc = 0;
        while (argv[argc])
                argc++;
        return config_parse_argv(c, argc, argv, help, err);
}
#define ARGV(...) ((char *[]) { __VA_ARGS__, NULL })

/* Parsing the arguments must fail with a message containing needle. */
static void expect_parse_error(int line, const char *needle, const char *first, ...) {
        char *argv[ARGS_MAX], *err = NULL;
        bool help = false;
        Config c;
        va_list ap;
        int r;

        va_start(ap, first);
        collect(argv, first, ap);
        va_end(ap);

        config_init(&c);
        r = parse_args(&c, &err, &help, argv);
        if (!test_record(r < 0 && err && strstr(err, needle), __FILE__, line, needle))
                fprintf(stderr, "        r=%d, message \"%s\"\n", r, err ? err : "(null)");
        free(err);
        config_done(&c);
}
#define PARSE_ERROR(needle, ...) expect_parse_error(__LINE__, needle, __VA_ARGS__, NULL)

/* Parsing must succeed and validation fail with a message containing
 * needle; needle NULL means validation must pass. */
static void expect_validate(int line, const char *needle, const char *first, ...) {
        char *argv[ARGS_MAX], *err = NULL;
        bool help = false;
        Config c;
        va_list ap;
        int r;

        va_start(ap, first);
        collect(argv, first, ap);
        va_end(ap);

        config_init(&c);
        r = parse_args(&c, &err, &help, argv);
        if (!test_record(r == 0, __FILE__, line, "arguments parse"))
                fprintf(stderr, "        message \"%s\"\n", err ? err : "(null)");
        free(err);
        err = NULL;

        r = config_validate(&c, &err);
        if (needle) {
                if (!test_record(r == -EINVAL && err && strstr(err, needle), __FILE__, line, needle))
                        fprintf(stderr, "        r=%d, message \"%s\"\n", r, err ? err : "(null)");
        } else if (!test_record(r == 0 && !err, __FILE__, line, "validates"))
                fprintf(stderr, "        r=%d, message \"%s\"\n", r, err ? err : "(null)");
        free(err);
        config_done(&c);
}
#define VALIDATE_ERROR(needle, ...) expect_validate(__LINE__, needle, __VA_ARGS__, NULL)
#define VALIDATE_OK(...) expect_validate(__LINE__, NULL, __VA_ARGS__, NULL)

static void test_defaults(void) {
        Config c;

        config_init(&c);
        CHECK_U64_EQ(c.connect_timeout, 10 * USEC_PER_SEC);
        CHECK_U64_EQ(c.close_timeout, 60 * USEC_PER_SEC);
        CHECK_U64_EQ(c.max_conn_lifetime, 0);
        CHECK_U64_EQ(c.shutdown_timeout, 5 * USEC_PER_MINUTE);
        CHECK_U64_EQ(c.auto_acme_renew_check_interval, 10 * USEC_PER_MINUTE);
        CHECK_INT_EQ(c.max_concurrent_conns, 0);
        CHECK_INT_EQ(c.max_tls_version, TLS_VERSION_1_3);
        CHECK_INT_EQ(c.n_cipher_suites, 2);
        CHECK_INT_EQ(c.cipher_suites[0], CIPHER_AES);
        CHECK_INT_EQ(c.cipher_suites[1], CIPHER_CHACHA);
        CHECK_INT_EQ(c.quiet, 0);
        CHECK(!c.listen_set && !c.target_set && !c.unsafe_target);
        CHECK(!c.access.allow_all && !c.access.disable_authentication);
        CHECK(!c.keystore && !c.storepass && !c.cert && !c.key && !c.cacert);
        CHECK(!c.access.allow_cn && !c.access.allow_ou && !c.access.allow_dns && !c.access.allow_ip && !c.access.allow_uri);
        config_done(&c);
}

/* Every flag, in both the "--x=v" and "--x v" forms. */
static void check_all_flags(char *argv[]) {
        char *err = NULL;
        bool help = true;
        Config c;

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, &help, argv), 0);
        CHECK(err == NULL);
        CHECK(!help);
        CHECK(c.listen_set && c.listen.kind == ADDRESS_SYSTEMD);
        CHECK_STR_EQ(c.listen.path, "tls");
        CHECK(c.target_set && c.target.kind == ADDRESS_TCP);
        CHECK_STR_EQ(c.target.host, "10.1.2.3");
        CHECK_STR_EQ(c.target.port, "9000");
        CHECK(c.unsafe_target);
        CHECK_STR_EQ(c.keystore, "ks.p12");
        CHECK_STR_EQ(c.storepass, "s3cret=x");
        CHECK_STR_EQ(c.cacert, "ca.pem");
        CHECK_STR_EQ(c.access.allow_cn[0], "client");
        CHECK_STR_EQ(c.access.allow_ou[0], "ops");
        CHECK_STR_EQ(c.access.allow_dns[0], "a.example");
        CHECK_STR_EQ(c.access.allow_ip[0], "10.0.0.1");
        CHECK_STR_EQ(c.access.allow_uri[0], "spiffe://x/*");
        CHECK_U64_EQ(c.connect_timeout, 500 * USEC_PER_MSEC);
        CHECK_U64_EQ(c.close_timeout, 90 * USEC_PER_SEC);
        CHECK_U64_EQ(c.max_conn_lifetime, USEC_PER_HOUR);
        CHECK_U64_EQ(c.shutdown_timeout, 2 * USEC_PER_SEC);
        CHECK_INT_EQ(c.max_concurrent_conns, 100);
        CHECK_INT_EQ(c.max_tls_version, TLS_VERSION_1_2);
        CHECK_INT_EQ(c.n_cipher_suites, 2);
        CHECK_INT_EQ(c.cipher_suites[0], CIPHER_CHACHA);
        CHECK_INT_EQ(c.cipher_suites[1], CIPHER_AES);
        CHECK_INT_EQ(c.quiet, QUIET_CONNS);
        config_done(&c);
}

static void test_all_flags(void) {
        check_all_flags(ARGV("--listen=systemd:tls", "--target=10.1.2.3:9000", "--unsafe-target",
                             "--keystore=ks.p12", "--storepass=s3cret=x", "--cacert=ca.pem",
                             "--allow-cn=client", "--allow-ou=ops", "--allow-dns=a.example",
                             "--allow-ip=10.0.0.1", "--allow-uri=spiffe://x/*",
                             "--connect-timeout=500ms", "--close-timeout=1m30s",
                             "--max-conn-lifetime=1h", "--max-concurrent-conns=100",
                             "--shutdown-timeout=2s", "--max-tls-version=TLS1.2",
                             "--cipher-suites=CHACHA,AES", "--quiet=conns"));
        check_all_flags(ARGV("--listen", "systemd:tls", "--target", "10.1.2.3:9000",
                             "--unsafe-target", "--keystore", "ks.p12", "--storepass", "s3cret=x",
                             "--cacert", "ca.pem", "--allow-cn", "client", "--allow-ou", "ops",
                             "--allow-dns", "a.example", "--allow-ip", "10.0.0.1", "--allow-uri",
                             "spiffe://x/*", "--connect-timeout", "500ms", "--close-timeout",
                             "1m30s", "--max-conn-lifetime", "1h", "--max-concurrent-conns", "100",
                             "--shutdown-timeout", "2s", "--max-tls-version", "TLS1.2",
                             "--cipher-suites", "CHACHA,AES", "--quiet", "conns"));
}

static void check_bool(char *argv[], bool expected) {
        char *err = NULL;
        Config c;

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL, argv), 0);
        CHECK(err == NULL);
        CHECK_INT_EQ(c.access.allow_all, expected);
        config_done(&c);
}

static void test_bools(void) {
        check_bool(ARGV("--allow-all"), true);
        check_bool(ARGV("--allow-all=true"), true);
        check_bool(ARGV("--allow-all=1"), true);
        check_bool(ARGV("--allow-all=True"), true);
        check_bool(ARGV("--allow-all=false"), false);
        check_bool(ARGV("--allow-all=0"), false);
        check_bool(ARGV("--no-allow-all"), false);
        check_bool(ARGV("--quiet=all"), false);

        PARSE_ERROR("--allow-all: must be true or false, not \"yes\"", "--allow-all=yes");
        PARSE_ERROR("--allow-all: must be true or false", "--allow-all=");
        PARSE_ERROR("--no-allow-all: takes no value", "--no-allow-all=true");
        PARSE_ERROR("unknown flag --no-listen", "--no-listen");
        /* A boolean flag does not take the next argument as its value. */
        PARSE_ERROR("\"true\"", "--allow-all", "true");
}

static void test_repeatable(void) {
        char *err = NULL;
        Config c;

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL,
                                ARGV("--allow-cn", "a", "--allow-cn=b", "--allow-dns-san=x",
                                     "--allow-dns", "y", "--allow-ip-san", "::1",
                                     "--allow-ip=127.0.0.1", "--allow-uri-san=spiffe://a",
                                     "--allow-uri", "spiffe://b", "--allow-ou=o1",
                                     "--allow-ou=o2", "--allow-ou=o1")),
                     0);
        CHECK(err == NULL);
        CHECK_INT_EQ(strv_length(c.access.allow_cn), 2);
        CHECK_STR_EQ(c.access.allow_cn[0], "a");
        CHECK_STR_EQ(c.access.allow_cn[1], "b");
        CHECK_INT_EQ(strv_length(c.access.allow_dns), 2);
        CHECK_STR_EQ(c.access.allow_dns[0], "x");
        CHECK_STR_EQ(c.access.allow_dns[1], "y");
        CHECK_INT_EQ(strv_length(c.access.allow_ip), 2);
        CHECK_STR_EQ(c.access.allow_ip[0], "::1");
        CHECK_STR_EQ(c.access.allow_ip[1], "127.0.0.1");
        CHECK_INT_EQ(strv_length(c.access.allow_uri), 2);
        CHECK_STR_EQ(c.access.allow_uri[0], "spiffe://a");
        CHECK_INT_EQ(strv_length(c.access.allow_ou), 3);
        config_done(&c);

        PARSE_ERROR("--allow-cn: value must not be empty", "--allow-cn=");
        PARSE_ERROR("--allow-dns-san: value must not be empty", "--allow-dns-san", "");
}

static void test_duplicates(void) {
        static const char * const flags[][2] = {
                { "--listen", ":1" },
                { "--target", "localhost:2" },
                { "--keystore", "k" },
                { "--storepass", "p" },
                { "--cert", "c" },
                { "--key", "k" },
                { "--cacert", "ca" },
                { "--connect-timeout", "1s" },
                { "--close-timeout", "1s" },
                { "--max-conn-lifetime", "1s" },
                { "--max-concurrent-conns", "1" },
                { "--shutdown-timeout", "1s" },
                { "--max-tls-version", "TLS1.3" },
                { "--cipher-suites", "AES" },
        };

        for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
                char needle[64];

                snprintf(needle, sizeof(needle), "%s: given more than once", flags[i][0]);
                PARSE_ERROR(needle, flags[i][0], flags[i][1], flags[i][0], flags[i][1]);
        }

        PARSE_ERROR("--allow-all: given more than once", "--allow-all", "--allow-all=false");
        PARSE_ERROR("--unsafe-target: given more than once", "--unsafe-target", "--unsafe-target");
        PARSE_ERROR("--disable-authentication: given more than once", "--disable-authentication",
                    "--disable-authentication");
        PARSE_ERROR("--no-allow-all: given more than once", "--allow-all", "--no-allow-all");
}

static void test_unknown_and_positional(void) {
        char *err = NULL;
        Config c;

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV("--listen=:1", "--bogus=3")), -ENOENT);
        CHECK_CONTAINS(err, "unknown flag --bogus");
        CHECK_CONTAINS(err, "tlsgate server --help");
        CHECK(err && !strstr(err, "=3"));
        free(err);
        config_done(&c);

        PARSE_ERROR("unknown flag --foo", "--foo");
        PARSE_ERROR("unknown flag -l", "-l", ":8443");
        /* Ghostunnel's flags that tlsgate cannot have: refused with a reason. */
        PARSE_ERROR("--enable-pprof: not supported: ", "--enable-pprof");
        PARSE_ERROR("--use-workload-api-addr: not supported: ", "--use-workload-api-addr=unix:/s");
        PARSE_ERROR("--keychain-identity: not supported: ", "--keychain-identity", "CN");
        PARSE_ERROR("unknown flag --Listen", "--Listen=:1");
        PARSE_ERROR("unexpected argument \"server\"", "server", "--listen=:1");
        PARSE_ERROR("unexpected argument \"extra\"", "--listen=:1", "extra");
        PARSE_ERROR("unexpected argument \"-\"", "-");
        PARSE_ERROR("unexpected argument \"--allow-all\"", "--", "--allow-all");
}

static void test_missing_value(void) {
        PARSE_ERROR("--target: missing value", "--listen=:1", "--target");
        PARSE_ERROR("--listen: missing value", "--listen");
        PARSE_ERROR("--allow-cn: missing value", "--allow-all", "--allow-cn");
        PARSE_ERROR("--target: missing value", "--target", "--listen", ":1");
        PARSE_ERROR("--quiet: missing value", "--quiet");
}

static void test_value_errors(void) {
        PARSE_ERROR("--connect-timeout: invalid duration \"abc\" (use Go syntax such as 500ms, "
                    "10s, 1m30s)",
                    "--connect-timeout=abc");
        PARSE_ERROR("--close-timeout: invalid duration \"10\"", "--close-timeout", "10");
        PARSE_ERROR("--shutdown-timeout: invalid duration \"\"", "--shutdown-timeout=");
        PARSE_ERROR("--max-conn-lifetime: must not be negative, not \"-1s\"",
                    "--max-conn-lifetime=-1s");
        PARSE_ERROR("--connect-timeout: must not be zero", "--connect-timeout=0");
        PARSE_ERROR("--connect-timeout: must not be zero", "--connect-timeout", "0s");
        PARSE_ERROR("--close-timeout: duration \"3000000h\" is too large", "--close-timeout=3000000h");

        PARSE_ERROR("--max-concurrent-conns: must be a non-negative integer, not \"-1\"",
                    "--max-concurrent-conns=-1");
        PARSE_ERROR("--max-concurrent-conns: must be a non-negative integer, not \"ten\"",
                    "--max-concurrent-conns=ten");
        PARSE_ERROR("--max-concurrent-conns: must be a non-negative integer, not \"\"",
                    "--max-concurrent-conns=");
        PARSE_ERROR("--max-concurrent-conns: must be a non-negative integer, not \"1.5\"",
                    "--max-concurrent-conns=1.5");
        PARSE_ERROR("--max-concurrent-conns: \"4294967296\" is too large",
                    "--max-concurrent-conns=4294967296");

        PARSE_ERROR("--max-tls-version: must be TLS1.2 or TLS1.3, not \"TLS1.1\"",
                    "--max-tls-version=TLS1.1");
        PARSE_ERROR("--max-tls-version: must be TLS1.2 or TLS1.3, not \"tls1.3\"",
                    "--max-tls-version", "tls1.3");

        PARSE_ERROR("--cipher-suites: unknown cipher suite family \"aes\"", "--cipher-suites=aes");
        PARSE_ERROR("--cipher-suites: unknown cipher suite family \"RC4\"",
                    "--cipher-suites=AES,RC4");
        PARSE_ERROR("--cipher-suites: \"AES\" given more than once", "--cipher-suites=AES,CHACHA,AES");
        PARSE_ERROR("--cipher-suites: must not be empty", "--cipher-suites=");
        PARSE_ERROR("--cipher-suites: empty entry", "--cipher-suites=AES,,CHACHA");
        PARSE_ERROR("--cipher-suites: empty entry", "--cipher-suites=AES,");

        PARSE_ERROR("--quiet: must be one of all, conns, conn-errs, handshake-errs, not \"some\"",
                    "--quiet=some");
        PARSE_ERROR("--quiet: must be one of", "--quiet=conns", "--quiet=ALL");

        PARSE_ERROR("--listen: invalid address \"::1:8443\": IPv6 addresses must be in brackets",
                    "--listen=::1:8443");
        PARSE_ERROR("--listen: invalid address \"localhost\": missing port", "--listen", "localhost");
        PARSE_ERROR("--listen: invalid address \"\"", "--listen=");
        PARSE_ERROR("--target: invalid address \"systemd:foo\"", "--target=systemd:foo");
        PARSE_ERROR("--target: invalid address \"localhost:http\"", "--target=localhost:http");
        PARSE_ERROR("--target: invalid address \"localhost:70000\"", "--target=localhost:70000");
}

static void test_special_values(void) {
        char *err = NULL;
        Config c;

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL,
                                ARGV("--quiet=conns", "--quiet", "handshake-errs", "--quiet=",
                                     "--cipher-suites= CHACHA ", "--max-concurrent-conns=4294967295",
                                     "--cacert=", "--storepass=", "--max-conn-lifetime=0",
                                     "--target=[::1]:80")),
                     0);
        CHECK(err == NULL);
        CHECK_INT_EQ(c.quiet, QUIET_CONNS | QUIET_HANDSHAKE_ERRS);
        CHECK_INT_EQ(c.n_cipher_suites, 1);
        CHECK_INT_EQ(c.cipher_suites[0], CIPHER_CHACHA);
        CHECK_INT_EQ(c.max_concurrent_conns, 4294967295u);
        CHECK(c.cacert == NULL);       /* "" means the system trust store */
        CHECK_STR_EQ(c.storepass, ""); /* "" is a password */
        CHECK_U64_EQ(c.max_conn_lifetime, 0);
        CHECK_STR_EQ(c.target.host, "::1");
        config_done(&c);

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV("--quiet=conn-errs", "--quiet=all")), 0);
        CHECK_INT_EQ(c.quiet, QUIET_ALL);
        config_done(&c);

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV("--quiet=conn-errs", "--quiet=conns")), 0);
        CHECK_INT_EQ(c.quiet, QUIET_CONN_ERRS | QUIET_CONNS);
        CHECK(!(c.quiet & QUIET_HANDSHAKE_ERRS));
        config_done(&c);

        /* The three others together are not "all": they leave start-up,
         * reload and shutdown messages alone. */
        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV("--quiet=conn-errs", "--quiet=conns",
                                                     "--quiet=handshake-errs")), 0);
        CHECK(!(c.quiet & QUIET_EVERYTHING));
        config_done(&c);

        /* A failed value leaves the previous one in place. */
        config_init(&c);
        CHECK_INT_EQ(config_set_option(&c, "cipher-suites", "CHACHA,RC4", &err), -EINVAL);
        free(err);
        err = NULL;
        CHECK_INT_EQ(c.n_cipher_suites, 2);
        CHECK_INT_EQ(c.cipher_suites[0], CIPHER_AES);
        CHECK_INT_EQ(config_set_option(&c, "listen", "::1:80", &err), -EINVAL);
        free(err);
        err = NULL;
        CHECK(!c.listen_set && c.listen.spec == NULL);
        config_done(&c);
}

static void test_help(void) {
        char *err = NULL;
        bool help = false;
        Config c;

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, &help, ARGV("--listen=:1", "--help")), 0);
        CHECK(help);
        CHECK(err == NULL);
        config_done(&c);

        /* --help works next to broken flags. */
        help = false;
        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, &help, ARGV("--bogus", "--help", "--listen")), 0);
        CHECK(help);
        CHECK(err == NULL);
        config_done(&c);

        help = true;
        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, &help, ARGV("--listen=:1")), 0);
        CHECK(!help);
        config_done(&c);

        /* After "--", "--help" is a stray argument. */
        PARSE_ERROR("unexpected argument \"--help\"", "--", "--help");
}

static void test_set_option(void) {
        char *err = NULL;
        Config c;

        config_init(&c);
        CHECK_INT_EQ(config_set_option(&c, "listen", ":8443", &err), 0);
        CHECK_INT_EQ(config_set_option(&c, "listen", "[::]:8443", &err), 0); /* replaces */
        CHECK(c.listen_set);
        CHECK_STR_EQ(c.listen.host, "::");
        CHECK_INT_EQ(config_set_option(&c, "cert", "a.pem", &err), 0);
        CHECK_INT_EQ(config_set_option(&c, "cert", "b.pem", &err), 0);
        CHECK_STR_EQ(c.cert, "b.pem");
        CHECK_INT_EQ(config_set_option(&c, "allow-all", NULL, &err), 0);
        CHECK(c.access.allow_all);
        CHECK_INT_EQ(config_set_option(&c, "no-allow-all", NULL, &err), 0);
        CHECK(!c.access.allow_all);
        CHECK(err == NULL);

        CHECK_INT_EQ(config_set_option(&c, "nope", "1", &err), -ENOENT);
        CHECK_CONTAINS(err, "unknown flag --nope");
        free(err);
        err = NULL;

        CHECK_INT_EQ(config_set_option(&c, "target", NULL, &err), -EINVAL);
        CHECK_CONTAINS(err, "--target: missing value");
        free(err);
        err = NULL;

        CHECK_INT_EQ(config_set_option(&c, "help", NULL, &err), -EINVAL);
        CHECK_CONTAINS(err, "--help");
        free(err);

        /* ret_error may be NULL. */
        CHECK_INT_EQ(config_set_option(&c, "max-tls-version", "SSL3", NULL), -EINVAL);
        config_done(&c);
}

#define BASE "--listen=:8443", "--target=localhost:8080"
#define CREDS "--cert=c.pem", "--key=k.pem"

static void test_validate(void) {
        VALIDATE_OK(BASE, CREDS, "--allow-all");
        VALIDATE_OK(BASE, "--keystore=ks.p12", "--storepass=pw", "--allow-cn=a");
        VALIDATE_OK(BASE, "--keystore=ks.pem", "--disable-authentication");
        VALIDATE_OK("--listen=systemd:x", "--target=unix:/run/b.sock", CREDS, "--allow-ou=o");
        VALIDATE_OK(BASE, CREDS, "--allow-dns=d", "--allow-ip=::1", "--allow-ip=10.0.0.1",
                    "--allow-uri=spiffe://x/**", "--allow-uri=spiffe://x/*/y/");

        /* ACME instead of static credentials. */
#define ACME "--auto-acme-cert=gate.example.org", "--auto-acme-email=ops@example.org"
        VALIDATE_OK(BASE, ACME, "--auto-acme-agree-to-tos", "--allow-cn=a");
        VALIDATE_OK(BASE, ACME, "--auto-acme-agree-to-tos", "--allow-cn=a",
                    "--auto-acme-testca=https://127.0.0.1:14000/dir");
        VALIDATE_ERROR("--auto-acme-cert requires --auto-acme-email", BASE,
                       "--auto-acme-cert=gate.example.org", "--auto-acme-agree-to-tos", "--allow-all");
        VALIDATE_ERROR("--auto-acme-cert requires --auto-acme-agree-to-tos", BASE, ACME,
                       "--allow-all");
        VALIDATE_ERROR("--auto-acme-cert and --keystore/--cert/--key are mutually exclusive", BASE,
                       ACME, "--auto-acme-agree-to-tos", CREDS, "--allow-all");
        VALIDATE_ERROR("--auto-acme-cert and --keystore/--cert/--key are mutually exclusive", BASE,
                       ACME, "--auto-acme-agree-to-tos", "--keystore=k", "--allow-all");
        VALIDATE_ERROR("--auto-acme-email requires --auto-acme-cert", BASE, CREDS,
                       "--auto-acme-email=ops@example.org", "--allow-all");
        VALIDATE_ERROR("--auto-acme-agree-to-tos requires --auto-acme-cert", BASE, CREDS,
                       "--auto-acme-agree-to-tos", "--allow-all");
        VALIDATE_ERROR("--auto-acme-testca requires --auto-acme-cert", BASE, CREDS,
                       "--auto-acme-testca=https://x/dir", "--allow-all");
        VALIDATE_ERROR("--auto-acme-cert: \"*.example.org\" is not a DNS name", BASE,
                       "--auto-acme-cert=*.example.org", "--auto-acme-email=a@b",
                       "--auto-acme-agree-to-tos", "--allow-all");
        VALIDATE_ERROR("--auto-acme-email: \"nobody\" is not an e-mail address", BASE,
                       "--auto-acme-cert=gate.example.org", "--auto-acme-email=nobody",
                       "--auto-acme-agree-to-tos", "--allow-all");
        VALIDATE_ERROR("--auto-acme-ca: \"ftp://x\" is not an http(s) URL", BASE, ACME,
                       "--auto-acme-agree-to-tos", "--auto-acme-ca=ftp://x", "--allow-all");
        VALIDATE_OK(BASE, ACME, "--auto-acme-agree-to-tos", "--allow-cn=a",
                    "--auto-acme-renew-check-interval=1s");
        VALIDATE_OK(BASE, ACME, "--auto-acme-agree-to-tos", "--allow-cn=a",
                    "--auto-acme-renew-check-interval=24h");
        VALIDATE_ERROR("--auto-acme-renew-check-interval: 999ms is out of range", BASE, ACME,
                       "--auto-acme-agree-to-tos", "--allow-cn=a",
                       "--auto-acme-renew-check-interval=999ms");
        VALIDATE_ERROR("--auto-acme-renew-check-interval: 24h0m1s is out of range", BASE, ACME,
                       "--auto-acme-agree-to-tos", "--allow-cn=a",
                       "--auto-acme-renew-check-interval=24h0m1s");
        /* The ACME credentials still need an access rule. */
        VALIDATE_ERROR("--disable-authentication is required", BASE, ACME, "--auto-acme-agree-to-tos");
#undef ACME

        VALIDATE_ERROR("--listen is required", "--target=localhost:1", CREDS, "--allow-all");
        VALIDATE_ERROR("--target is required", "--listen=:1", CREDS, "--allow-all");

        VALIDATE_ERROR("--cert requires --key", BASE, "--cert=c.pem", "--allow-all");
        VALIDATE_ERROR("--key requires --cert", BASE, "--key=k.pem", "--allow-all");
        VALIDATE_ERROR("--keystore and --cert/--key are mutually exclusive", BASE, "--keystore=k",
                       CREDS, "--allow-all");
        VALIDATE_ERROR("--keystore and --cert/--key are mutually exclusive", BASE, "--keystore=k",
                       "--key=k.pem", "--allow-all");
        VALIDATE_ERROR("at least one of --keystore, --cert/--key or --auto-acme-cert is required", BASE,
                       "--allow-all");
        VALIDATE_ERROR("at least one of --keystore, --cert/--key or --auto-acme-cert is required", BASE,
                       "--keystore=", "--allow-all");
        VALIDATE_ERROR("--storepass requires --keystore", BASE, CREDS, "--storepass=x",
                       "--allow-all");

        VALIDATE_ERROR("at least one of --allow-all, --allow-cn, --allow-ou, --allow-dns, "
                       "--allow-ip, --allow-uri, --allow-spki-pin or --disable-authentication "
                       "is required",
                       BASE, CREDS);
        VALIDATE_ERROR("--disable-authentication is required", BASE, CREDS, "--allow-all=false");
        VALIDATE_ERROR("--allow-all is mutually exclusive with other access control flags", BASE,
                       CREDS, "--allow-all", "--allow-cn=a");
        VALIDATE_ERROR("--allow-all is mutually exclusive", BASE, CREDS, "--allow-uri=s://a",
                       "--allow-all");
        VALIDATE_ERROR("--disable-authentication is mutually exclusive with other access control "
                       "flags",
                       BASE, CREDS, "--disable-authentication", "--allow-ip=::1");
        VALIDATE_ERROR("--disable-authentication is mutually exclusive", BASE, CREDS,
                       "--disable-authentication", "--allow-all");

        VALIDATE_ERROR("--target must be unix:PATH, localhost:PORT, 127.0.0.1:PORT or [::1]:PORT "
                       "(unless --unsafe-target is set)",
                       "--listen=:1", "--target=10.0.0.1:80", CREDS, "--allow-all");
        VALIDATE_ERROR("--unsafe-target", "--listen=:1", "--target=:80", CREDS, "--allow-all");
        VALIDATE_ERROR("--unsafe-target", "--listen=:1", "--target=localhost.evil.com:80", CREDS,
                       "--allow-all");
        VALIDATE_OK("--listen=:1", "--target=10.0.0.1:80", "--unsafe-target", CREDS, "--allow-all");
        VALIDATE_OK("--listen=:1", "--target=127.0.0.1:80", CREDS, "--allow-all");
        VALIDATE_OK("--listen=:1", "--target=[::1]:80", CREDS, "--allow-all");

        /* --allow-spki-pin: the pin alone authenticates, so it takes no
         * other rule (Ghostunnel's order of checks); every pin is parsed. */
#define PIN "--allow-spki-pin=sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk="
        VALIDATE_OK(BASE, CREDS, PIN);
        VALIDATE_OK(BASE, CREDS, PIN,
                    "--allow-spki-pin=SHA384:mGX/hj/GwCimVU4uH4BvS0m1nb9pmY8IPDXmCmIMNcvkde8iB5/"
                    "BnrA+1a81U2aV");
        VALIDATE_OK(BASE, "--keystore=ks.pem", PIN, "--allow-all=false");
        VALIDATE_ERROR("--allow-spki-pin is mutually exclusive with other access control flags",
                       BASE, CREDS, PIN, "--allow-cn=a");
        VALIDATE_ERROR("--allow-spki-pin is mutually exclusive", BASE, CREDS, "--allow-ou=o", PIN);
        VALIDATE_ERROR("--allow-spki-pin is mutually exclusive", BASE, CREDS, PIN, "--allow-dns=d");
        VALIDATE_ERROR("--allow-spki-pin is mutually exclusive", BASE, CREDS, PIN, "--allow-ip=::1");
        VALIDATE_ERROR("--allow-spki-pin is mutually exclusive", BASE, CREDS, PIN,
                       "--allow-uri-san=spiffe://x");
        VALIDATE_ERROR("--allow-all is mutually exclusive with other access control flags", BASE,
                       CREDS, PIN, "--allow-all");
        VALIDATE_ERROR("--disable-authentication is mutually exclusive with other access control",
                       BASE, CREDS, "--disable-authentication", PIN);
        VALIDATE_ERROR("--allow-spki-pin: \"md5:AAAA\": unknown digest algorithm \"md5\"", BASE,
                       CREDS, PIN, "--allow-spki-pin=md5:AAAA");
        VALIDATE_ERROR("--allow-spki-pin: \"sha256:AAAA\": a sha256 digest has 32 bytes, not 3",
                       BASE, CREDS, "--allow-spki-pin=sha256:AAAA");
        VALIDATE_ERROR("--allow-spki-pin: \"sha256:A-_=\": the digest is not base64", BASE, CREDS,
                       "--allow-spki-pin=sha256:A-_=");
        VALIDATE_ERROR("--allow-spki-pin: \"HwFI\" is not ALGO:BASE64", BASE, CREDS,
                       "--allow-spki-pin=HwFI");
        PARSE_ERROR("--allow-spki-pin: value must not be empty", BASE, CREDS, "--allow-spki-pin=");
#undef PIN

        VALIDATE_ERROR("--allow-uri: invalid pattern \"spiffe://x/**/y\"", BASE, CREDS,
                       "--allow-uri=spiffe://x/**/y");
        VALIDATE_ERROR("--allow-uri: invalid pattern \"**/a\"", BASE, CREDS, "--allow-uri=ok",
                       "--allow-uri=**/a");
        VALIDATE_ERROR("--allow-ip: \"not-an-ip\" is not an IPv4 or IPv6 address", BASE, CREDS,
                       "--allow-ip=not-an-ip");
        VALIDATE_ERROR("--allow-ip: \"10.0.0.0/8\"", BASE, CREDS, "--allow-ip=10.0.0.0/8");
        VALIDATE_ERROR("--allow-ip: \"[::1]\"", BASE, CREDS, "--allow-ip=::2", "--allow-ip=[::1]");
        VALIDATE_ERROR("--allow-ip: \"1.2.3\"", BASE, CREDS, "--allow-ip-san=1.2.3");
}

/* The config file ------------------------------------------------------ */

static char *tmp_dir;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static int rm_rf(const char *path) {
        return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes size bytes to a new file in tmp_dir; returns its malloc'ed path. */
static char *write_file(const char *name, const char *content, size_t size) {
        char *path = NULL;
        FILE *f;

        if (asprintf(&path, "%s/%s", tmp_dir, name) < 0)
                abort();
        f = fopen(path, "we");
        if (!f || fwrite(content, 1, size, f) != size || fclose(f) != 0)
                abort();
        return path;
}

/* Loads text as the file "test.conf"; returns config_load_file()'s result. */
static int load_text_n(Config *c, const char *text, size_t size, char **err) {
        _cleanup_free_ char *path = write_file("test.conf", text, size);
        int r = config_load_file(c, path, err);

        unlink(path);
        return r;
}
#define load_text(c, text, err) load_text_n(c, text, strlen(text), err)

/* Loading text must fail with exactly "<path><suffix>" and error r. */
static void expect_file_error(int line, int r_expected, const char *suffix, const char *text,
                              size_t size) {
        _cleanup_free_ char *expected = NULL;
        char *err = NULL;
        Config c;
        int r;

        if (asprintf(&expected, "%s/test.conf%s", tmp_dir, suffix) < 0)
                abort();
        config_init(&c);
        r = load_text_n(&c, text, size, &err);
        if (!test_record(r == r_expected && err && streq(err, expected), __FILE__, line, suffix))
                fprintf(stderr, "        r=%d, message \"%s\", expected \"%s\"\n", r,
                        err ? err : "(null)", expected);
        free(err);
        config_done(&c);
}
#define FILE_ERROR(suffix, text) expect_file_error(__LINE__, -EINVAL, suffix, text, strlen(text))
#define FILE_ERROR_R(r, suffix, text) expect_file_error(__LINE__, r, suffix, text, strlen(text))

static void test_file_syntax(void) {
        char *err = NULL;
        Config c;

        config_init(&c);
        CHECK_INT_EQ(load_text(&c,
                               "# tlsgate for web\n"
                               "   # indented comment = not a setting\n"
                               "\n"
                               "   \t \n"
                               "listen = 127.0.0.1:8443\n"
                               "target=localhost:8080\n"
                               "\tcert\t=\t c.pem \t\n"
                               "key =k.pem\n"
                               "storepass = a=b #c \n"
                               "allow-cn = one\n"
                               "allow-cn = two words\n"
                               "allow-dns-san = a.example\n"
                               "allow-dns = b.example\n"
                               "allow-uri = spiffe://x/#frag\n"
                               "allow-all\n"
                               "unsafe-target = false\n"
                               "disable-authentication = true\n"
                               "connect-timeout = 1m30s\n"
                               "quiet = conns\n"
                               "quiet = handshake-errs\n"
                               "cacert =\n"
                               "max-tls-version = TLS1.2\n"
                               "cipher-suites = CHACHA, AES\n",
                               &err),
                     0);
        CHECK(err == NULL);
        CHECK(c.listen_set);
        CHECK_STR_EQ(c.listen.spec, "127.0.0.1:8443");
        CHECK_STR_EQ(c.target.spec, "localhost:8080");
        CHECK_STR_EQ(c.cert, "c.pem");
        CHECK_STR_EQ(c.key, "k.pem");
        CHECK_STR_EQ(c.storepass, "a=b #c");
        CHECK_INT_EQ(strv_length(c.access.allow_cn), 2);
        CHECK_STR_EQ(c.access.allow_cn[0], "one");
        CHECK_STR_EQ(c.access.allow_cn[1], "two words");
        CHECK_INT_EQ(strv_length(c.access.allow_dns), 2);
        CHECK_STR_EQ(c.access.allow_dns[0], "a.example");
        CHECK_STR_EQ(c.access.allow_dns[1], "b.example");
        CHECK_STR_EQ(c.access.allow_uri[0], "spiffe://x/#frag");
        CHECK(c.access.allow_all);
        CHECK(!c.unsafe_target);
        CHECK(c.access.disable_authentication);
        CHECK_U64_EQ(c.connect_timeout, 90 * USEC_PER_SEC);
        CHECK_INT_EQ(c.quiet, QUIET_CONNS | QUIET_HANDSHAKE_ERRS);
        CHECK(c.cacert == NULL);
        CHECK_INT_EQ(c.max_tls_version, TLS_VERSION_1_2);
        CHECK_INT_EQ(c.cipher_suites[0], CIPHER_CHACHA);
        CHECK(c.config_file == NULL); /* only --config sets it */
        config_done(&c);

        /* CRLF line endings, a byte order mark, no newline at the end. */
        config_init(&c);
        CHECK_INT_EQ(load_text(&c, "\xEF\xBB\xBFlisten = :1\r\n# c\r\n\r\nallow-all\r\n"
                                   "allow-cn = x \r\nallow-ou = last",
                               &err),
                     0);
        CHECK(err == NULL);
        CHECK_STR_EQ(c.listen.spec, ":1");
        CHECK(c.access.allow_all);
        CHECK_STR_EQ(c.access.allow_cn[0], "x");
        CHECK_STR_EQ(c.access.allow_ou[0], "last");
        config_done(&c);

        /* Booleans. */
        config_init(&c);
        CHECK_INT_EQ(load_text(&c,
                               "allow-all = false\nunsafe-target=1\nno-disable-authentication\n",
                               &err),
                     0);
        CHECK(!c.access.allow_all && c.unsafe_target && !c.access.disable_authentication);
        config_done(&c);
        config_init(&c);
        CHECK_INT_EQ(load_text(&c, "allow-all = True\n", &err), 0);
        CHECK(c.access.allow_all);
        config_done(&c);

        /* Empty files, and values that are only blanks. */
        config_init(&c);
        CHECK_INT_EQ(load_text(&c, "", &err), 0);
        CHECK_INT_EQ(load_text(&c, "\n\n# only comments\n", &err), 0);
        CHECK_INT_EQ(load_text(&c, "storepass =   \t\n", &err), 0);
        CHECK_STR_EQ(c.storepass, "");
        CHECK(!c.listen_set && !c.access.allow_all);
        config_done(&c);

        /* Pure parsing, without a file. */
        config_init(&c);
        CHECK_INT_EQ(config_parse_text(&c, "inline", "allow-cn = a\nallow-cn = b", 25, &err), 0);
        CHECK_INT_EQ(strv_length(c.access.allow_cn), 2);
        CHECK_INT_EQ(config_parse_text(&c, "inline", "listen = ::1:1", 14, &err), -EINVAL);
        CHECK_STR_EQ(err, "inline:1: listen: invalid address \"::1:1\": IPv6 addresses must be in "
                          "brackets, as in [::1]:8443");
        free(err);
        err = NULL;
        CHECK_INT_EQ(config_parse_text(&c, "inline", "bogus", 5, NULL), -ENOENT);
        config_done(&c);
}

static void test_file_errors(void) {
        FILE_ERROR_R(-ENOENT, ":3: unknown setting \"listne\"", "# x\n\nlistne = 127.0.0.1:443\n");
        FILE_ERROR_R(-ENOENT, ":1: unknown setting \"Listen\"", "Listen = :1\n");
        FILE_ERROR_R(-ENOENT,
                     ":1: unknown setting \"--listen\" (write names without the leading dashes)",
                     "--listen = :1\n");
        FILE_ERROR_R(-ENOENT, ":1: unknown setting \"foo\"", "foo bar\n");
        FILE_ERROR_R(-ENOENT, ":1: unknown setting \"no-listen\"", "no-listen\n");
        FILE_ERROR(":2: listen: missing \"=\" between name and value",
                   "allow-all\nlisten 127.0.0.1:443\n");
        FILE_ERROR(":1: missing setting name before \"=\"", "  = x\n");
        FILE_ERROR(":1: listen: missing value", "listen\n");
        FILE_ERROR(":1: allow-cn: missing value", "allow-cn   \n");
        FILE_ERROR(":7: allow-cn: value must not be empty", "\n\n\n\n\n\nallow-cn =  \n");
        FILE_ERROR(":1: connect-timeout: invalid duration \"abc\" (use Go syntax such as 500ms, "
                   "10s, 1m30s)",
                   "connect-timeout = abc\n");
        FILE_ERROR(":1: connect-timeout: must not be zero", "connect-timeout = 0\n");
        FILE_ERROR(":1: max-concurrent-conns: must be a non-negative integer, not \"-1\"",
                   "max-concurrent-conns = -1\n");
        FILE_ERROR(":1: allow-all: must be true or false, not \"yes\"", "allow-all = yes\n");
        FILE_ERROR(":1: allow-all: must be true or false, not \"\"", "allow-all =\n");
        FILE_ERROR(":1: no-allow-all: takes no value", "no-allow-all = true\n");
        FILE_ERROR(":1: quiet: must be one of all, conns, conn-errs, handshake-errs, not \"x\"",
                   "quiet = x\n");
        FILE_ERROR(":1: cipher-suites: unknown cipher suite family \"RC4\" (use AES, CHACHA)",
                   "cipher-suites = AES,RC4\n");
        FILE_ERROR(":1: target: invalid address \"systemd:x\": systemd:NAME is only supported "
                   "for --listen",
                   "target = systemd:x\n");
        FILE_ERROR(":3: listen: given more than once", "listen = :1\n# again\nlisten = :2\n");
        FILE_ERROR(":2: no-allow-all: given more than once", "allow-all\nno-allow-all\n");
        FILE_ERROR(":2: storepass: given more than once", "storepass =\nstorepass = x\n");
        FILE_ERROR(":1: config: only valid on the command line", "config = other.conf\n");
        FILE_ERROR(":1: help: only valid on the command line", "help\n");
        expect_file_error(__LINE__, -EINVAL, ":2: not a text line (NUL byte)",
                          "allow-all\nlisten = a\0b\n", 22);
}

static void test_file_limits(void) {
        _cleanup_free_ char *big = NULL, *path = NULL, *expected = NULL, *dir_msg = NULL;
        char line[CONFIG_LINE_MAX + 16], *err = NULL;
        size_t n;
        Config c;

        /* A line of exactly CONFIG_LINE_MAX bytes is fine, with LF or CRLF. */
        n = (size_t) snprintf(line, sizeof line, "allow-cn = ");
        memset(line + n, 'a', CONFIG_LINE_MAX - n);
        strcpy(line + CONFIG_LINE_MAX, "\r\n");
        config_init(&c);
        CHECK_INT_EQ(load_text(&c, line, &err), 0);
        CHECK(err == NULL);
        CHECK_INT_EQ(strlen(c.access.allow_cn[0]), CONFIG_LINE_MAX - n);
        config_done(&c);

        /* One more byte is not, with or without a line ending. */
        line[CONFIG_LINE_MAX] = 'a';
        line[CONFIG_LINE_MAX + 1] = '\0';
        FILE_ERROR(":1: line too long (more than 4096 bytes)", line);
        strcat(line, "\n");
        FILE_ERROR(":1: line too long (more than 4096 bytes)", line);

        /* The file as a whole: CONFIG_FILE_MAX bytes of comments load... */
        big = malloc(CONFIG_FILE_MAX + 1);
        if (!CHECK(big))
                return;
        memset(big, '#', CONFIG_FILE_MAX + 1);
        for (size_t i = 1000; i < CONFIG_FILE_MAX + 1; i += 1000)
                big[i] = '\n';
        config_init(&c);
        CHECK_INT_EQ(load_text_n(&c, big, CONFIG_FILE_MAX, &err), 0);
        CHECK(err == NULL);
        /* ...one byte more does not. */
        expect_file_error(__LINE__, -EFBIG, ": file too large (more than 1048576 bytes)", big,
                          CONFIG_FILE_MAX + 1);
        CHECK_INT_EQ(config_parse_text(&c, "inline", big, CONFIG_FILE_MAX + 1, &err), -EFBIG);
        CHECK_STR_EQ(err, "inline: file too large (more than 1048576 bytes)");
        free(err);
        err = NULL;
        config_done(&c);

        /* Files that cannot be read. */
        if (asprintf(&path, "%s/missing.conf", tmp_dir) < 0 ||
            asprintf(&expected, "cannot read %s: No such file or directory", path) < 0 ||
            asprintf(&dir_msg, "cannot read %s: Is a directory", tmp_dir) < 0)
                abort();
        config_init(&c);
        CHECK_INT_EQ(config_load_file(&c, path, &err), -ENOENT);
        CHECK_STR_EQ(err, expected);
        free(err);
        err = NULL;
        CHECK_INT_EQ(config_load_file(&c, tmp_dir, &err), -EISDIR);
        CHECK_STR_EQ(err, dir_msg);
        free(err);
        err = NULL;
        if (geteuid() != 0) {
                _cleanup_free_ char *secret = write_file("secret.conf", "allow-all\n", 10);
                _cleanup_free_ char *denied = NULL;

                if (asprintf(&denied, "cannot read %s: Permission denied", secret) < 0)
                        abort();
                chmod(secret, 0);
                CHECK_INT_EQ(config_load_file(&c, secret, &err), -EACCES);
                CHECK_STR_EQ(err, denied);
                free(err);
                err = NULL;
                unlink(secret);
        }
        config_done(&c);
}

/* Parses argv; on success returns 0 with c filled, else the error in *err. */
#define PARSE(c, err, ...) parse_args(c, err, NULL, ARGV(__VA_ARGS__))

static void test_file_override(void) {
        _cleanup_free_ char *path = NULL, *missing = NULL, *flag = NULL;
        char *err = NULL;
        bool help = false;
        Config c;

        path = write_file("web.conf",
                          "listen = 127.0.0.1:8443\n"
                          "target = localhost:8080\n"
                          "cert = c.pem\n"
                          "key = k.pem\n"
                          "cacert = ca.pem\n"
                          "allow-cn = a\n"
                          "allow-cn = b\n"
                          "allow-dns = d.example\n"
                          "allow-ou = ops\n"
                          "quiet = conns\n"
                          "connect-timeout = 3s\n",
                          strlen("listen = 127.0.0.1:8443\ntarget = localhost:8080\ncert = c.pem\n"
                                 "key = k.pem\ncacert = ca.pem\nallow-cn = a\nallow-cn = b\n"
                                 "allow-dns = d.example\nallow-ou = ops\nquiet = conns\n"
                                 "connect-timeout = 3s\n"));

        /* The file alone. */
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--config", path), 0);
        CHECK(err == NULL);
        CHECK_STR_EQ(c.config_file, path);
        CHECK_STR_EQ(c.listen.spec, "127.0.0.1:8443");
        CHECK_INT_EQ(strv_length(c.access.allow_cn), 2);
        CHECK_INT_EQ(config_validate(&c, &err), 0);
        config_done(&c);

        /* Flags win, wherever --config stands; lists are replaced, not
         * extended; lists not on the command line stay. */
        if (asprintf(&flag, "--config=%s", path) < 0)
                abort();
        for (int order = 0; order < 2; order++) {
                config_init(&c);
                if (order == 0)
                        CHECK_INT_EQ(PARSE(&c, &err, flag, "--listen=[::1]:9443", "--allow-cn", "c",
                                           "--quiet=handshake-errs", "--allow-dns-san=e.example",
                                           "--connect-timeout=5s"),
                                     0);
                else
                        CHECK_INT_EQ(PARSE(&c, &err, "--listen=[::1]:9443", "--allow-cn", "c",
                                           "--quiet=handshake-errs", "--allow-dns-san=e.example",
                                           "--connect-timeout=5s", flag),
                                     0);
                CHECK(err == NULL);
                CHECK_STR_EQ(c.listen.spec, "[::1]:9443");
                CHECK_STR_EQ(c.target.spec, "localhost:8080");
                CHECK_INT_EQ(strv_length(c.access.allow_cn), 1);
                CHECK_STR_EQ(c.access.allow_cn[0], "c");
                CHECK_INT_EQ(strv_length(c.access.allow_dns), 1);
                CHECK_STR_EQ(c.access.allow_dns[0], "e.example");
                CHECK_INT_EQ(strv_length(c.access.allow_ou), 1);
                CHECK_STR_EQ(c.access.allow_ou[0], "ops");
                CHECK_INT_EQ(c.quiet, QUIET_HANDSHAKE_ERRS);
                CHECK_U64_EQ(c.connect_timeout, 5 * USEC_PER_SEC);
                CHECK_STR_EQ(c.cert, "c.pem");
                config_done(&c);
        }

        /* Several flags of one list on the command line all count. */
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--allow-cn=x", "--config", path, "--allow-cn=y"), 0);
        CHECK_INT_EQ(strv_length(c.access.allow_cn), 2);
        CHECK_STR_EQ(c.access.allow_cn[0], "x");
        CHECK_STR_EQ(c.access.allow_cn[1], "y");
        config_done(&c);

        /* An empty value on the command line clears a path from the file. */
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--config", path, "--cacert=", "--cert=", "--key=",
                           "--keystore=ks.p12"),
                     0);
        CHECK(c.cacert == NULL && c.cert == NULL && c.key == NULL);
        CHECK_STR_EQ(c.keystore, "ks.p12");
        CHECK_INT_EQ(config_validate(&c, &err), 0);
        config_done(&c);

        /* Booleans from the file can be switched off. */
        {
                _cleanup_free_ char *p2 = write_file("all.conf", "allow-all\nunsafe-target\n", 24);

                config_init(&c);
                CHECK_INT_EQ(PARSE(&c, &err, "--config", p2, "--no-allow-all",
                                   "--unsafe-target=false"),
                             0);
                CHECK(!c.access.allow_all && !c.unsafe_target);
                config_done(&c);
        }

        /* Merged, then validated as a whole. */
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--config", path, "--allow-all"), 0);
        CHECK_INT_EQ(config_validate(&c, &err), -EINVAL);
        CHECK_CONTAINS(err, "--allow-all is mutually exclusive");
        free(err);
        err = NULL;
        config_done(&c);

        /* --config itself. */
        if (asprintf(&missing, "%s/nope.conf", tmp_dir) < 0)
                abort();
        PARSE_ERROR("--config: given more than once", "--config", path, "--config", path);
        PARSE_ERROR("--config: value must not be empty", "--config=");
        PARSE_ERROR("--config: missing value", "--allow-all", "--config");
        PARSE_ERROR("cannot read", "--config", missing);
        PARSE_ERROR("--listen: given more than once", "--config", path, "--listen=:1",
                    "--listen=:2");
        PARSE_ERROR("--allow-cn: value must not be empty", "--config", path, "--allow-cn=");

        /* --help wins over a broken file, which is then not read. */
        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, &help, ARGV("--config", missing, "--help")), 0);
        CHECK(help && err == NULL);
        config_done(&c);

        config_init(&c);
        CHECK_INT_EQ(config_set_option(&c, "config", path, &err), -EINVAL);
        CHECK_STR_EQ(err, "--config: only valid on the command line");
        free(err);
        config_done(&c);

        unlink(path);
}

/* systemd credentials -------------------------------------------------- */

static char *join(const char *a, const char *b) {
        char *p;

        if (asprintf(&p, "%s/%s", a, b) < 0)
                abort();
        return p;
}

/* Ghostunnel's environment variables stand in for flags the command line
 * does not give, over the --config file. */
static void test_environment(void) {
        _cleanup_free_ char *path = NULL;
        char *err = NULL;
        Config c;

        path = write_file("env.conf", "cacert = file-ca.pem\ncert = file.pem\n",
                          strlen("cacert = file-ca.pem\ncert = file.pem\n"));

        setenv("CERT_PATH", "env-cert.pem", 1);
        setenv("KEY_PATH", "env-key.pem", 1);
        setenv("CACERT_PATH", "env-ca.pem", 1);
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--listen=127.0.0.1:8443", "--target=localhost:8080",
                           "--allow-all"),
                     0);
        CHECK(err == NULL);
        CHECK_STR_EQ(c.cert, "env-cert.pem");
        CHECK_STR_EQ(c.key, "env-key.pem");
        CHECK_STR_EQ(c.cacert, "env-ca.pem");
        CHECK_INT_EQ(config_validate(&c, &err), 0);
        config_done(&c);

        /* A flag wins over its variable; the variable over the file. */
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--config", path, "--cert=flag.pem"), 0);
        CHECK(err == NULL);
        CHECK_STR_EQ(c.cert, "flag.pem");
        CHECK_STR_EQ(c.key, "env-key.pem");
        CHECK_STR_EQ(c.cacert, "env-ca.pem");
        config_done(&c);

        /* Empty is unset: the file's value stays. */
        setenv("CACERT_PATH", "", 1);
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--config", path), 0);
        CHECK_STR_EQ(c.cacert, "file-ca.pem");
        config_done(&c);
        unsetenv("CERT_PATH");
        unsetenv("KEY_PATH");
        unsetenv("CACERT_PATH");

        /* The keystore pair; and a variable that combines badly with the
         * flags fails validation as the flag would. */
        setenv("KEYSTORE_PATH", "env.p12", 1);
        setenv("KEYSTORE_PASS", "s3cret", 1);
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--listen=127.0.0.1:8443", "--target=localhost:8080",
                           "--allow-all", "--cacert=ca.pem"),
                     0);
        CHECK_STR_EQ(c.keystore, "env.p12");
        CHECK_STR_EQ(c.storepass, "s3cret");
        CHECK_INT_EQ(config_validate(&c, &err), 0);
        config_done(&c);
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--listen=127.0.0.1:8443", "--target=localhost:8080",
                           "--allow-all", "--cacert=ca.pem", "--cert=c.pem", "--key=k.pem"),
                     0);
        CHECK(config_validate(&c, &err) < 0);
        CHECK(err && strstr(err, "--keystore"));
        free(err);
        err = NULL;
        config_done(&c);
        unsetenv("KEYSTORE_PATH");
        unsetenv("KEYSTORE_PASS");
}

static void test_credentials(void) {
        _cleanup_free_ char *creds = NULL, *crt = NULL, *key = NULL, *ca = NULL, *pass = NULL,
                            *plain = NULL, *saved_tmp = NULL;
        char *err = NULL;
        Config c;

        creds = join(tmp_dir, "creds");
        if (mkdir(creds, 0700) < 0)
                abort();
        saved_tmp = tmp_dir;
        tmp_dir = creds; /* write_file() writes there now */
        free(write_file("tls.crt", "CERT", 4));
        free(write_file("tls.key", "KEY", 3));
        free(write_file("ca.pem", "CA", 2));
        free(write_file("pass", "s3cret pass\n", 12));
        free(write_file("pass-crlf", "pw\r\n", 4));
        free(write_file("pass-bare", "pw", 2));
        free(write_file("pass-empty", "", 0));
        free(write_file("pass-nl", "\n", 1));
        free(write_file("pass-two", "secret-line\nmore\n", 17));
        free(write_file("pass-blank-after", "pw\n\n", 4));
        {
                char big[STOREPASS_FILE_MAX + 1];

                memset(big, 'p', sizeof big);
                free(write_file("pass-big", big, sizeof big));
        }
        {
                _cleanup_free_ char *sub = join(creds, "sub");

                mkdir(sub, 0700);
        }
        tmp_dir = TAKE_PTR(saved_tmp);
        crt = join(creds, "tls.crt");
        key = join(creds, "tls.key");
        ca = join(creds, "ca.pem");
        plain = join(tmp_dir, "plain.crt");

        /* Bare names that exist there are taken from there. */
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--cert=tls.crt", "--key", "tls.key", "--cacert=ca.pem"), 0);
        CHECK_INT_EQ(config_resolve_credentials(&c, creds, &err), 0);
        CHECK(err == NULL);
        CHECK_STR_EQ(c.cert, crt);
        CHECK_STR_EQ(c.key, key);
        CHECK_STR_EQ(c.cacert, ca);
        config_done(&c);

        /* Anything else stays as given. */
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, "--cert=missing.crt", "--key=./tls.key", "--cacert=sub",
                           "--keystore", plain),
                     0);
        CHECK_INT_EQ(config_resolve_credentials(&c, creds, &err), 0);
        CHECK_STR_EQ(c.cert, "missing.crt");
        CHECK_STR_EQ(c.key, "./tls.key");
        CHECK_STR_EQ(c.cacert, "sub");
        CHECK_STR_EQ(c.keystore, plain);
        config_done(&c);

        /* Without $CREDENTIALS_DIRECTORY (or with an empty one, or one that
         * is not a directory) nothing changes. */
        for (int i = 0; i < 3; i++) {
                const char *dirs[] = { NULL, "", crt };

                config_init(&c);
                CHECK_INT_EQ(PARSE(&c, &err, "--cert=tls.crt", "--key=tls.key"), 0);
                CHECK_INT_EQ(config_resolve_credentials(&c, dirs[i], &err), 0);
                CHECK_STR_EQ(c.cert, "tls.crt");
                CHECK_STR_EQ(c.key, "tls.key");
                config_done(&c);
        }

        /* From a config file, with the keystore password as a credential. */
        {
                const char *text = "keystore = tls.crt\nstorepass-file = pass\n";
                _cleanup_free_ char *conf = write_file("creds.conf", text, strlen(text));

                config_init(&c);
                CHECK_INT_EQ(config_load_file(&c, conf, &err), 0);
                CHECK_STR_EQ(c.storepass_file, "pass");
                CHECK_INT_EQ(config_resolve_credentials(&c, creds, &err), 0);
                CHECK(err == NULL);
                CHECK_STR_EQ(c.keystore, crt);
                CHECK_STR_EQ(c.storepass, "s3cret pass");
                CHECK(c.storepass_file == NULL);
                config_done(&c);
                unlink(conf);
        }

        /* The password file: one line, the newline dropped. */
        {
                static const struct {
                        const char *name, *password;
                } ok[] = {
                        { "pass-crlf", "pw" },
                        { "pass-bare", "pw" },
                        { "pass-empty", "" },
                        { "pass-nl", "" },
                };

                for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                        _cleanup_free_ char *full = join(creds, ok[i].name);

                        config_init(&c);
                        /* A path works as well as a credential name. */
                        CHECK_INT_EQ(config_set_option(&c, "storepass-file",
                                                       i % 2 ? full : ok[i].name, &err),
                                     0);
                        CHECK_INT_EQ(config_resolve_credentials(&c, creds, &err), 0);
                        CHECK_STR_EQ(c.storepass, ok[i].password);
                        config_done(&c);
                }
        }
        {
                static const char * const bad[] = { "pass-two", "pass-blank-after", "pass-big",
                                                    "missing" };
                static const char * const why[] = {
                        ": must hold the password on one line",
                        ": must hold the password on one line",
                        ": longer than 4096 bytes",
                        ": cannot read: No such file or directory",
                };

                for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                        _cleanup_free_ char *expected = NULL;

                        config_init(&c);
                        CHECK_INT_EQ(config_set_option(&c, "storepass-file", bad[i], &err), 0);
                        CHECK(config_resolve_credentials(&c, creds, &err) < 0);
                        if (asprintf(&expected, "--storepass-file %s%s",
                                     i == 3 ? "missing" : "", why[i]) < 0)
                                abort();
                        if (i < 3) {
                                free(expected);
                                if (asprintf(&expected, "--storepass-file %s/%s%s", creds, bad[i],
                                             why[i]) < 0)
                                        abort();
                        }
                        CHECK_STR_EQ(err, expected);
                        CHECK(err && !strstr(err, "secret-line")); /* never the password */
                        CHECK(c.storepass == NULL);
                        free(err);
                        err = NULL;
                        config_done(&c);
                }
        }

        /* Validation. */
        VALIDATE_OK(BASE, "--keystore=ks.p12", "--storepass-file=pw", "--allow-all");
        VALIDATE_ERROR("--storepass and --storepass-file are mutually exclusive", BASE,
                       "--keystore=ks.p12", "--storepass=x", "--storepass-file=pw", "--allow-all");
        VALIDATE_ERROR("--storepass-file requires --keystore", BASE, CREDS, "--storepass-file=pw",
                       "--allow-all");
}

static void test_print_help(void) {
        char path[] = "/tmp/test-config-help.XXXXXX", buf[16384];
        int fd, saved;
        ssize_t n;

        fd = mkstemp(path);
        if (!CHECK(fd >= 0))
                return;
        unlink(path);

        fflush(stdout);
        saved = dup(STDOUT_FILENO);
        dup2(fd, STDOUT_FILENO);
        config_print_help();
        fflush(stdout);
        dup2(saved, STDOUT_FILENO);
        close(saved);

        n = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        if (!CHECK(n > 0))
                return;
        buf[n] = '\0';

        CHECK_CONTAINS(buf, "tlsgate server");
        CHECK_CONTAINS(buf, "--listen=ADDR");
        CHECK_CONTAINS(buf, "--target=ADDR");
        CHECK_CONTAINS(buf, "--allow-cn=CN");
        CHECK_CONTAINS(buf, "--allow-all\n");
        CHECK_CONTAINS(buf, "--connect-timeout=DURATION");
        CHECK_CONTAINS(buf, "(default: 10s)");
        CHECK_CONTAINS(buf, "(default: 60s)");
        CHECK_CONTAINS(buf, "(default: 5m)");
        CHECK_CONTAINS(buf, "(default: TLS1.3)");
        CHECK_CONTAINS(buf, "(default: AES,CHACHA)");
        CHECK_CONTAINS(buf, "--quiet=WHAT");
        CHECK_CONTAINS(buf, "--help");
        CHECK(!strstr(buf, "allow-dns-san")); /* aliases stay hidden */
        CHECK_CONTAINS(buf, "--config=FILE");
        CHECK_CONTAINS(buf, "--storepass-file=PATH");
        CHECK_CONTAINS(buf, "\"name = value\"");
        CHECK_CONTAINS(buf, "$CREDENTIALS_DIRECTORY");
}

/* --proxy-protocol (Ghostunnel's older flag: mode conn) and
 * --proxy-protocol-mode, which exclude each other. */
static void test_proxy_protocol(void) {
        static const char *const modes[] = { "conn", "tls", "tls-full" };
        static const char text[] = "proxy-protocol-mode = tls-full\n";
        char *err = NULL, **changed = NULL;
        Config c, d;

        config_init(&c);
        CHECK_INT_EQ(c.proxy_protocol, false);
        CHECK_INT_EQ(c.proxy_protocol_mode, PROXY_MODE_OFF);
        config_done(&c);

        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                _cleanup_free_ char *flag = NULL;

                if (asprintf(&flag, "--proxy-protocol-mode=%s", modes[i]) < 0)
                        abort();
                config_init(&c);
                CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV(flag)), 0);
                CHECK_INT_EQ(c.proxy_protocol_mode, PROXY_MODE_CONN + (int) i);
                CHECK(!c.proxy_protocol);
                config_done(&c);
                VALIDATE_OK(BASE, CREDS, "--allow-all", flag);
        }
        VALIDATE_OK(BASE, CREDS, "--allow-all", "--proxy-protocol");
        VALIDATE_OK(BASE, CREDS, "--allow-all", "--proxy-protocol=false", "--proxy-protocol-mode=tls");
        VALIDATE_ERROR("--proxy-protocol and --proxy-protocol-mode are mutually exclusive", BASE,
                       CREDS, "--allow-all", "--proxy-protocol", "--proxy-protocol-mode=conn");
        VALIDATE_ERROR("--proxy-protocol and --proxy-protocol-mode are mutually exclusive", BASE,
                       CREDS, "--allow-all", "--proxy-protocol-mode", "tls-full", "--proxy-protocol");

        PARSE_ERROR("--proxy-protocol-mode: must be conn, tls or tls-full, not \"full\"",
                    "--proxy-protocol-mode=full");
        PARSE_ERROR("--proxy-protocol-mode: must be conn, tls or tls-full, not \"off\"",
                    "--proxy-protocol-mode", "off");
        PARSE_ERROR("--proxy-protocol-mode: must be conn, tls or tls-full, not \"\"",
                    "--proxy-protocol-mode=");
        PARSE_ERROR("--proxy-protocol-mode: given more than once", "--proxy-protocol-mode=tls",
                    "--proxy-protocol-mode=conn");
        PARSE_ERROR("--proxy-protocol: must be true or false", "--proxy-protocol=tls");

        /* In the file too; a reload notices a change (it needs a restart). */
        config_init(&c);
        config_init(&d);
        CHECK_INT_EQ(config_parse_text(&c, "t.conf", text, strlen(text), &err), 0);
        CHECK_INT_EQ(c.proxy_protocol_mode, PROXY_MODE_TLS_FULL);
        CHECK_INT_EQ(config_diff(&c, &d, false, &changed), 0);
        CHECK(changed && streq(changed[0], "proxy-protocol-mode") && !changed[1]);
        changed = strv_free(changed);
        d.proxy_protocol_mode = PROXY_MODE_TLS_FULL;
        CHECK_INT_EQ(config_diff(&c, &d, false, &changed), 0);
        CHECK(!changed);
        free(err);
        config_done(&c);
        config_done(&d);
}

/* --status, --target-status, --metrics-prefix, --enable-shutdown. */
static void test_status_flags(void) {
        static const char text[] = "status = http://127.0.0.1:9090\nmetrics-prefix = gate.x\n"
                                   "enable-shutdown\ntarget-status = http://localhost:1/h\n";
        char *err = NULL;
        Config c;

        config_init(&c);
        CHECK(!c.status_set && !c.target_status && !c.enable_shutdown);
        CHECK_STR_EQ(c.metrics_prefix, "ghostunnel"); /* as in Ghostunnel */
        CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV("--status=localhost:9090")), 0);
        CHECK(c.status_set && c.status.kind == ADDRESS_TCP && !c.status_http);
        CHECK_STR_EQ(c.status.port, "9090");
        config_done(&c);

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV("--status", "http://[::1]:9090")), 0);
        CHECK(c.status_set && c.status.kind == ADDRESS_TCP && c.status_http);
        CHECK_STR_EQ(c.status.host, "::1");
        config_done(&c);

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV("--status=unix:/run/s.sock")), 0);
        CHECK(c.status.kind == ADDRESS_UNIX && c.status_http);
        config_done(&c);

        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV("--status=systemd:status")), 0);
        CHECK(c.status.kind == ADDRESS_SYSTEMD && c.status_http);
        config_done(&c);

        config_init(&c);
        CHECK_INT_EQ(config_parse_text(&c, "t.conf", text, strlen(text), &err), 0);
        CHECK(c.status_http && c.enable_shutdown);
        CHECK_STR_EQ(c.metrics_prefix, "gate.x");
        CHECK_STR_EQ(c.target_status, "http://localhost:1/h");
        config_done(&c);
        CHECK(err == NULL);

        /* https://HOST:PORT, as Ghostunnel accepts it: HTTPS, as without a scheme. */
        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV("--status=https://localhost:1")), 0);
        CHECK(c.status_set && c.status.kind == ADDRESS_TCP && !c.status_http);
        CHECK_STR_EQ(c.status.host, "localhost");
        config_done(&c);
        PARSE_ERROR("--status: \"https://unix:/s\": https:// needs HOST:PORT",
                    "--status=https://unix:/s");
        PARSE_ERROR("--status: invalid address", "--status=https://localhost");
        PARSE_ERROR("--status: \"launchd:x\": launchd is macOS's socket activation",
                    "--status=launchd:x");
        PARSE_ERROR("--listen: \"launchd:x\": launchd is macOS's socket activation",
                    "--listen=launchd:x");
        PARSE_ERROR("--status: invalid address", "--status=localhost");
        PARSE_ERROR("--metrics-prefix: value must not be empty", "--metrics-prefix=");

        VALIDATE_OK(BASE, CREDS, "--allow-all", "--status=localhost:9090",
                    "--target-status=https://localhost:8080/health", "--enable-shutdown",
                    "--metrics-prefix=ghostunnel");
        VALIDATE_OK(BASE, CREDS, "--allow-all", "--metrics-prefix=a:b_c.d-e");
        VALIDATE_ERROR("--target-status requires --status", BASE, CREDS, "--allow-all",
                       "--target-status=http://localhost:1/");
        VALIDATE_ERROR("--enable-shutdown requires --status", BASE, CREDS, "--allow-all",
                       "--enable-shutdown");
        VALIDATE_ERROR("--target-status: \"localhost:1\" is not an http(s) URL", BASE, CREDS,
                       "--allow-all", "--status=localhost:9090", "--target-status=localhost:1");
        VALIDATE_ERROR("--metrics-prefix: \"1x\" must start with", BASE, CREDS, "--allow-all",
                       "--metrics-prefix=1x");
        VALIDATE_ERROR("--metrics-prefix: \"a b\" must start with", BASE, CREDS, "--allow-all",
                       "--metrics-prefix=a b");
        /* --listen is :8443: the same port on another address would share it. */
        VALIDATE_ERROR("--status 127.0.0.1:8443: must not use the port", BASE, CREDS,
                       "--allow-all", "--status=http://127.0.0.1:8443");
        VALIDATE_ERROR("must not use the port, path or socket name of --listen",
                       "--listen=unix:/run/a", "--target=localhost:1", CREDS, "--allow-all",
                       "--status=unix:/run/a");
        VALIDATE_OK("--listen=unix:/run/a", "--target=localhost:1", CREDS, "--allow-all",
                    "--status=unix:/run/b");
}

/* PKCS#11 (Ghostunnel's rules): the chain in --cert or --keystore, no
 * --key or --storepass, the token flags only with a module; the PKCS11_*
 * variables stand in for the flags. */
static void test_pkcs11(void) {
#define MODULE "--pkcs11-module=/usr/lib/softhsm/libsofthsm2.so"
        char *err = NULL;
        Config c;

        VALIDATE_OK(BASE, "--cert=c.pem", MODULE, "--allow-all");
        VALIDATE_OK(BASE, "--keystore=chain.pem", MODULE, "--pkcs11-token-label=t",
                    "--pkcs11-pin=1234", "--allow-all");
        VALIDATE_OK(BASE, "--cert=c.pem", MODULE, "--pkcs11-pin=", "--allow-all");
        VALIDATE_OK(BASE, CREDS, "--pkcs11-module=", "--allow-all"); /* empty: unset */
        VALIDATE_ERROR("--key and --pkcs11-module are mutually exclusive", BASE, CREDS, MODULE,
                       "--allow-all");
        VALIDATE_ERROR("--storepass/--storepass-file and --pkcs11-module are mutually exclusive",
                       BASE, "--keystore=chain.pem", "--storepass=x", MODULE, "--allow-all");
        VALIDATE_ERROR("--storepass/--storepass-file and --pkcs11-module are mutually exclusive",
                       BASE, "--keystore=chain.pem", "--storepass-file=p", MODULE, "--allow-all");
        VALIDATE_ERROR("--keystore and --cert are mutually exclusive", BASE,
                       "--keystore=chain.pem", "--cert=c.pem", MODULE, "--allow-all");
        VALIDATE_ERROR("--pkcs11-module requires --cert or --keystore", BASE, MODULE,
                       "--allow-all");
        VALIDATE_ERROR("--auto-acme-cert and --pkcs11-module are mutually exclusive", BASE,
                       "--auto-acme-cert=gate.example.org", "--auto-acme-email=ops@example.org",
                       "--auto-acme-agree-to-tos", MODULE, "--allow-all");
        VALIDATE_ERROR("--pkcs11-token-label requires --pkcs11-module", BASE, CREDS,
                       "--pkcs11-token-label=t", "--allow-all");
        VALIDATE_ERROR("--pkcs11-pin requires --pkcs11-module", BASE, CREDS, "--pkcs11-pin=1",
                       "--allow-all");
        VALIDATE_ERROR("--cert requires --key", BASE, "--cert=c.pem", "--allow-all");

        setenv("PKCS11_MODULE", "/env/module.so", 1);
        setenv("PKCS11_TOKEN_LABEL", "env token", 1);
        setenv("PKCS11_PIN", "env-pin", 1);
        config_init(&c);
        CHECK_INT_EQ(PARSE(&c, &err, BASE, "--cert=c.pem", "--allow-all",
                           "--pkcs11-token-label=flag token"),
                     0);
        CHECK(err == NULL);
        CHECK_STR_EQ(c.pkcs11_module, "/env/module.so");
        CHECK_STR_EQ(c.pkcs11_token_label, "flag token");
        CHECK_STR_EQ(c.pkcs11_pin, "env-pin");
        CHECK_INT_EQ(config_validate(&c, &err), 0);
        config_done(&c);
        unsetenv("PKCS11_MODULE");
        unsetenv("PKCS11_TOKEN_LABEL");
        unsetenv("PKCS11_PIN");
#undef MODULE
}

/* --metrics-url, --metrics-graphite, --metrics-interval. */
static void test_metrics_push_flags(void) {
        static const char text[] = "metrics-url = https://metrics.example/ingest\n"
                                   "metrics-graphite = graphite.example:2003\n"
                                   "metrics-interval = 10s\n";
        char *err = NULL, **changed = NULL;
        Config c, d;

        config_init(&c);
        CHECK(!c.metrics_url && !c.metrics_graphite_set);
        CHECK_U64_EQ(c.metrics_interval, 30 * USEC_PER_SEC);
        CHECK_INT_EQ(parse_args(&c, &err, NULL,
                                ARGV("--metrics-graphite=[::1]:2003", "--metrics-url",
                                     "http://127.0.0.1:1/m", "--metrics-interval=1m30s")),
                     0);
        CHECK(c.metrics_graphite_set && c.metrics_graphite.kind == ADDRESS_TCP);
        CHECK_STR_EQ(c.metrics_graphite.host, "::1");
        CHECK_STR_EQ(c.metrics_graphite.port, "2003");
        CHECK_STR_EQ(c.metrics_url, "http://127.0.0.1:1/m");
        CHECK_U64_EQ(c.metrics_interval, 90 * USEC_PER_SEC);
        config_done(&c);

        /* "" is "not given", as for Ghostunnel's string flags. */
        config_init(&c);
        CHECK_INT_EQ(parse_args(&c, &err, NULL, ARGV("--metrics-url=")), 0);
        CHECK(!c.metrics_url);
        config_done(&c);

        /* In the file too; a reload with the same values changes nothing,
         * another Graphite server needs a restart. */
        config_init(&c);
        config_init(&d);
        CHECK_INT_EQ(config_parse_text(&c, "t.conf", text, strlen(text), &err), 0);
        CHECK_INT_EQ(config_parse_text(&d, "t.conf", text, strlen(text), &err), 0);
        CHECK_STR_EQ(c.metrics_url, "https://metrics.example/ingest");
        CHECK_STR_EQ(c.metrics_graphite.spec, "graphite.example:2003");
        CHECK_U64_EQ(c.metrics_interval, 10 * USEC_PER_SEC);
        CHECK_INT_EQ(config_diff(&c, &d, false, &changed), 0);
        CHECK(!changed);
        CHECK_INT_EQ(config_set_option(&d, "metrics-graphite", "graphite.example:2004", &err), 0);
        CHECK_INT_EQ(config_diff(&c, &d, false, &changed), 0);
        CHECK(changed && streq(changed[0], "metrics-graphite") && !changed[1]);
        changed = strv_free(changed);
        CHECK(err == NULL);
        config_done(&c);
        config_done(&d);

        PARSE_ERROR("--metrics-graphite: \"unix:/run/g\" must be HOST:PORT of a Graphite server",
                    "--metrics-graphite=unix:/run/g");
        PARSE_ERROR("--metrics-graphite: \":2003\" must be HOST:PORT", "--metrics-graphite=:2003");
        PARSE_ERROR("--metrics-graphite: \"localhost:0\" must be HOST:PORT",
                    "--metrics-graphite=localhost:0");
        PARSE_ERROR("--metrics-graphite: invalid address \"localhost\": missing port",
                    "--metrics-graphite=localhost");
        PARSE_ERROR("--metrics-graphite: invalid address \"\"", "--metrics-graphite=");
        PARSE_ERROR("--metrics-interval: must not be zero", "--metrics-interval=0");
        PARSE_ERROR("--metrics-interval: invalid duration \"soon\"", "--metrics-interval=soon");
        PARSE_ERROR("--metrics-interval: must not be negative, not \"-1s\"",
                    "--metrics-interval=-1s");
        PARSE_ERROR("--metrics-url: missing value", "--metrics-url");

        VALIDATE_OK(BASE, CREDS, "--allow-all", "--metrics-url=https://m.example/x",
                    "--metrics-graphite=localhost:2003", "--metrics-interval=5s");
        /* Without --status: the pushes need no status port. */
        VALIDATE_OK(BASE, CREDS, "--allow-all", "--metrics-url=http://[::1]:8080/");
        VALIDATE_ERROR("--metrics-url: \"ftp://m.example/\" is not an http(s) URL", BASE, CREDS,
                       "--allow-all", "--metrics-url=ftp://m.example/");
        VALIDATE_ERROR("--metrics-url: \"m.example:80\" is not an http(s) URL", BASE, CREDS,
                       "--allow-all", "--metrics-url=m.example:80");
}

int main(void) {
        /* Ghostunnel's variables would stand in for flags (test_environment). */
        unsetenv("KEYSTORE_PATH");
        unsetenv("KEYSTORE_PASS");
        unsetenv("CERT_PATH");
        unsetenv("KEY_PATH");
        unsetenv("CACERT_PATH");
        unsetenv("PKCS11_MODULE");
        unsetenv("PKCS11_TOKEN_LABEL");
        unsetenv("PKCS11_PIN");
        test_defaults();
        test_all_flags();
        test_bools();
        test_repeatable();
        test_duplicates();
        test_unknown_and_positional();
        test_missing_value();
        test_value_errors();
        test_special_values();
        test_help();
        test_set_option();
        test_validate();
        test_proxy_protocol();
        test_status_flags();
        test_pkcs11();
        test_metrics_push_flags();

        {
                char dir[] = "/tmp/test-config.XXXXXX";

                if (!mkdtemp(dir))
                        abort();
                tmp_dir = dir;
                test_file_syntax();
                test_file_errors();
                test_file_limits();
                test_file_override();
                test_environment();
                test_credentials();
                tmp_dir = NULL;
                (void) rm_rf(dir);
        }

        test_print_help();
        return test_summary();
}
