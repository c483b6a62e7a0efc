/* SPDX-License-Identifier: MIT */
/* The pure parts of reload: which settings changed (config_diff()), moving
 * the reloadable ones between two configurations (config_swap_reloadable())
 * and the access rules a credential keeps (access_rules_copy()). */
#include <stdio.h>
#include <stdlib.h>

#include "authz.h"
#include "config.h"
#include "strv.h"
#include "test-util.h"

#define ARGV(...) ((char *[]) { __VA_ARGS__, NULL })

static void parse(Config *c, char *argv[]) {
        char *err = NULL;
        bool help = false;
        int argc = 0, r;

        while (argv[argc])
                argc++;
        config_init(c);
        r = config_parse_argv(c, argc, argv, &help, &err);
        if (!CHECK(r == 0 && !help))
                fprintf(stderr, "        %s\n", err ? err : "(null)");
        free(err);
}

/* names must be exactly the NULL-terminated list expected. */
static void check_names(int line, char **names, const char *const *expected) {
        size_t n = 0;

        for (; expected[n]; n++)
                if (!test_record(names && names[n] && streq(names[n], expected[n]), __FILE__, line,
                                 expected[n]))
                        fprintf(stderr, "        at %zu got \"%s\"\n", n,
                                names && n < strv_length(names) ? names[n] : "(end)");
        if (!test_record(strv_length(names) == n, __FILE__, line, "number of names"))
                STRV_FOREACH(s, names)
                        fprintf(stderr, "        got \"%s\"\n", *s);
}
#define CHECK_NAMES(names, ...) check_names(__LINE__, names, (const char *const[]) { __VA_ARGS__, NULL })
#define CHECK_NO_NAMES(names) CHECK(names == NULL)

static void test_same(void) {
        Config a, b;
        char **names = (char **) 1;

        parse(&a, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cert", "c.pem",
                       "--key", "k.pem", "--allow-cn", "x", "--quiet", "conns"));
        parse(&b, ARGV("--quiet=conns", "--allow-cn=x", "--key=k.pem", "--cert=c.pem",
                       "--target=127.0.0.1:2", "--listen=127.0.0.1:1"));
        CHECK_INT_EQ(config_diff(&a, &b, false, &names), 0);
        CHECK_NO_NAMES(names);
        names = (char **) 1;
        CHECK_INT_EQ(config_diff(&a, &b, true, &names), 0);
        CHECK_NO_NAMES(names);
        config_done(&a);
        config_done(&b);
}

static void test_changes(void) {
        _cleanup_strv_free_ char **restart = NULL, **reloadable = NULL;
        Config a, b;

        parse(&a, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cert", "c.pem",
                       "--key", "k.pem", "--allow-cn", "x", "--allow-dns", "d.example"));
        parse(&b, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:3", "--cert", "c.pem",
                       "--key", "k.pem", "--allow-cn", "y", "--allow-ou", "ops",
                       "--allow-dns-san", "d.example", "--cacert", "ca.pem",
                       "--connect-timeout", "3s", "--timed-reload", "1s", "--max-tls-version",
                       "TLS1.2", "--cipher-suites", "CHACHA", "--quiet", "handshake-errs"));

        CHECK_INT_EQ(config_diff(&a, &b, false, &restart), 0);
        /* In table order, each once. */
        CHECK_NAMES(restart, "target", "connect-timeout", "timed-reload", "max-tls-version",
                    "cipher-suites", "quiet");
        CHECK_INT_EQ(config_diff(&a, &b, true, &reloadable), 0);
        /* --allow-dns-san gave the same list as --allow-dns: no change. */
        CHECK_NAMES(reloadable, "cacert", "allow-cn", "allow-ou");
        config_done(&a);
        config_done(&b);
}

static void test_aliases_and_secrets(void) {
        _cleanup_strv_free_ char **names = NULL;
        Config a, b;

        parse(&a, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--keystore",
                       "k.p12", "--storepass", "one", "--allow-dns", "a.example"));
        parse(&b, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--keystore",
                       "k.p12", "--storepass", "two", "--allow-dns-san", "b.example"));
        CHECK_INT_EQ(config_diff(&a, &b, true, &names), 0);
        /* The alias is reported under the flag it shares a field with; the
         * password is named, never shown. */
        CHECK_NAMES(names, "storepass", "allow-dns");
        config_done(&a);
        config_done(&b);
}

static void test_listen_and_bools(void) {
        _cleanup_strv_free_ char **restart = NULL, **reloadable = NULL;
        Config a, b;

        parse(&a, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cert", "c",
                       "--key", "k", "--allow-all"));
        parse(&b, ARGV("--listen", "[::1]:1", "--target", "127.0.0.1:2", "--cert", "c", "--key",
                       "k", "--disable-authentication", "--unsafe-target",
                       "--max-concurrent-conns", "5"));
        CHECK_INT_EQ(config_diff(&a, &b, false, &restart), 0);
        CHECK_NAMES(restart, "listen", "unsafe-target", "max-concurrent-conns");
        CHECK_INT_EQ(config_diff(&a, &b, true, &reloadable), 0);
        CHECK_NAMES(reloadable, "allow-all", "disable-authentication");
        config_done(&a);
        config_done(&b);
}

static void test_swap(void) {
        _cleanup_strv_free_ char **names = NULL;
        Config a, b;

        parse(&a, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cert", "a.pem",
                       "--key", "a.key", "--allow-cn", "x", "--allow-dns", "a.example"));
        parse(&b, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:3", "--keystore",
                       "b.p12", "--storepass", "pw", "--cacert", "ca.pem", "--allow-ou", "ops",
                       "--allow-dns-san", "b.example", "--connect-timeout", "3s"));

        config_swap_reloadable(&a, &b);
        /* a: b's credentials and rules, its own address and timeouts. */
        CHECK_STR_EQ(a.keystore, "b.p12");
        CHECK_STR_EQ(a.storepass, "pw");
        CHECK(!a.cert && !a.key);
        CHECK_STR_EQ(a.cacert, "ca.pem");
        CHECK(!a.access.allow_cn);
        CHECK_STR_EQ(a.access.allow_ou[0], "ops");
        /* --allow-dns and --allow-dns-san share a field: swapped once. */
        CHECK_STR_EQ(a.access.allow_dns[0], "b.example");
        CHECK_STR_EQ(a.target.spec, "127.0.0.1:2");
        CHECK_U64_EQ(a.connect_timeout, 10 * USEC_PER_SEC);
        /* b: the other way round. */
        CHECK_STR_EQ(b.cert, "a.pem");
        CHECK_STR_EQ(b.key, "a.key");
        CHECK(!b.keystore && !b.storepass && !b.cacert);
        CHECK_STR_EQ(b.access.allow_cn[0], "x");
        CHECK_STR_EQ(b.access.allow_dns[0], "a.example");
        CHECK_STR_EQ(b.target.spec, "127.0.0.1:3");
        CHECK_U64_EQ(b.connect_timeout, 3 * USEC_PER_SEC);

        /* Twice restores both. */
        config_swap_reloadable(&a, &b);
        CHECK_STR_EQ(a.cert, "a.pem");
        CHECK_STR_EQ(a.access.allow_cn[0], "x");
        CHECK_STR_EQ(a.access.allow_dns[0], "a.example");
        CHECK_STR_EQ(b.keystore, "b.p12");
        CHECK_STR_EQ(b.access.allow_dns[0], "b.example");
        CHECK_INT_EQ(config_diff(&a, &b, false, &names), 0);
        CHECK_NAMES(names, "target", "connect-timeout");

        /* Both free cleanly (ASan: nothing shared, nothing lost). */
        config_done(&a);
        config_done(&b);
}

static void test_access_copy(void) {
        _cleanup_(access_rules_freep) AccessRules *copy = NULL;
        PeerIdentity id = { .cn = (char *) "x" };
        const char *rule = NULL;
        Config a;

        parse(&a, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cert", "a.pem",
                       "--key", "a.key", "--cacert", "ca.pem", "--allow-cn", "x",
                       "--allow-uri", "spiffe://x/*"));
        CHECK_INT_EQ(access_rules_copy(&a.access, &copy), 0);
        CHECK(copy && copy != &a.access);
        /* A copy of its own. */
        CHECK(copy->allow_cn && copy->allow_cn != a.access.allow_cn);
        CHECK_STR_EQ(copy->allow_cn[0], "x");
        CHECK_STR_EQ(copy->allow_uri[0], "spiffe://x/*");
        CHECK(!copy->allow_all && !copy->disable_authentication);
        CHECK(authz_check(copy, &id, &rule) == AUTHZ_ALLOW);
        CHECK_STR_EQ(rule, "allow-cn");

        /* The copy outlives the configuration it came from. */
        config_done(&a);
        CHECK(authz_check(copy, &id, NULL) == AUTHZ_ALLOW);
        id.cn = (char *) "y";
        CHECK(authz_check(copy, &id, NULL) == AUTHZ_DENY);
        CHECK(access_rules_free(NULL) == NULL);

        parse(&a, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cert", "a.pem",
                       "--key", "a.key", "--disable-authentication"));
        copy = access_rules_free(copy);
        CHECK_INT_EQ(access_rules_copy(&a.access, &copy), 0);
        CHECK(copy->disable_authentication);
        CHECK(authz_check(copy, NULL, &rule) == AUTHZ_ALLOW);
        CHECK_STR_EQ(rule, "disable-authentication");
        config_done(&a);
}

/* --allow-spki-pin is an access rule like the others: reloadable, swapped,
 * kept in the credential's copy. */
static void test_spki_pins(void) {
        _cleanup_(access_rules_freep) AccessRules *copy = NULL;
        _cleanup_strv_free_ char **restart = NULL, **reloadable = NULL;
        Config a, b;

        parse(&a, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cert", "a.pem",
                       "--key", "a.key", "--allow-spki-pin", "sha256:AAAA", "--allow-spki-pin",
                       "sha384:BBBB"));
        parse(&b, ARGV("--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cert", "a.pem",
                       "--key", "a.key", "--allow-spki-pin", "sha256:AAAA"));
        CHECK_INT_EQ(config_diff(&a, &b, false, &restart), 0);
        CHECK_NO_NAMES(restart);
        CHECK_INT_EQ(config_diff(&a, &b, true, &reloadable), 0);
        CHECK_NAMES(reloadable, "allow-spki-pin");

        CHECK_INT_EQ(access_rules_copy(&a.access, &copy), 0);
        CHECK(copy->allow_spki_pin && copy->allow_spki_pin != a.access.allow_spki_pin);
        CHECK_INT_EQ(strv_length(copy->allow_spki_pin), 2);
        CHECK_STR_EQ(copy->allow_spki_pin[1], "sha384:BBBB");

        config_swap_reloadable(&a, &b);
        CHECK_INT_EQ(strv_length(a.access.allow_spki_pin), 1);
        CHECK_INT_EQ(strv_length(b.access.allow_spki_pin), 2);
        config_done(&a);
        config_done(&b);
        CHECK_STR_EQ(copy->allow_spki_pin[0], "sha256:AAAA");
}

static void test_timed_reload_flag(void) {
        char *err = NULL;
        Config c;

        config_init(&c);
        CHECK_U64_EQ(c.timed_reload, 0);
        CHECK_INT_EQ(config_set_option(&c, "timed-reload", "1m30s", &err), 0);
        CHECK_U64_EQ(c.timed_reload, 90 * USEC_PER_SEC);
        CHECK_INT_EQ(config_set_option(&c, "timed-reload", "0", &err), 0);
        CHECK_U64_EQ(c.timed_reload, 0);
        CHECK(config_set_option(&c, "timed-reload", "often", &err) == -EINVAL);
        CHECK_CONTAINS(err, "--timed-reload");
        free(err);
        err = NULL;
        CHECK(config_set_option(&c, "timed-reload", "-1s", &err) == -EINVAL);
        CHECK_CONTAINS(err, "negative");
        free(err);
        config_done(&c);
}

int main(void) {
        test_same();
        test_changes();
        test_aliases_and_secrets();
        test_listen_and_bools();
        test_swap();
        test_access_copy();
        test_spki_pins();
        test_timed_reload_flag();
        return test_summary();
}
