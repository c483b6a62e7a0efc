/* SPDX-License-Identifier: MIT */
/* Real certificates, built in memory with GnuTLS and passed through DER the
 * way a peer would send them, checked against each rule. */

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdlib.h>
#include <time.h>

#include "authz.h"
#include "strv.h"
#include "test-util.h"

static gnutls_x509_privkey_t key;

typedef struct San {
        gnutls_x509_subject_alt_name_t type;
        const char *text; /* DNS, URI, email; or an IP in text form */
        size_t size;      /* 0: strlen(text); else the raw DER of a whole extension */
} San;

static void die(const char *what, int r) {
        fprintf(stderr, "%s: %s\n", what, gnutls_strerror(r));
        exit(EXIT_FAILURE);
}

static int san_set(gnutls_x509_crt_t crt, const San *san) {
        unsigned char raw[16];

        /* GnuTLS cuts SAN values at a NUL when encoding them, so hostile
         * extensions are given as DER. */
        if (san->size > 0)
                return gnutls_x509_crt_set_extension_by_oid(crt, "2.5.29.17", san->text,
                                                            san->size, 0);
        if (san->type != GNUTLS_SAN_IPADDRESS)
                return gnutls_x509_crt_set_subject_alt_name(crt, san->type, san->text,
                                                            (unsigned) strlen(san->text),
                                                            GNUTLS_FSAN_APPEND);
        if (inet_pton(AF_INET, san->text, raw) == 1)
                return gnutls_x509_crt_set_subject_alt_name(crt, san->type, raw, 4,
                                                            GNUTLS_FSAN_APPEND);
        if (inet_pton(AF_INET6, san->text, raw) == 1)
                return gnutls_x509_crt_set_subject_alt_name(crt, san->type, raw, 16,
                                                            GNUTLS_FSAN_APPEND);
        abort();
}

/* A self-signed leaf with the given subject DN and SANs, re-imported from
 * DER. Returns NULL if GnuTLS refuses to build it. */
static gnutls_x509_crt_t make_cert(const char *dn, const San *sans, size_t n_sans) {
        gnutls_x509_crt_t crt = NULL, out = NULL;
        gnutls_datum_t der = {};
        static unsigned serial = 1;
        unsigned char serial_be[4] = { 0, 0, 0, (unsigned char) serial++ };
        const char *err;
        time_t now = time(NULL);
        int r;

        if ((r = gnutls_x509_crt_init(&crt)) < 0)
                die("crt_init", r);
        if ((r = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
            (r = gnutls_x509_crt_set_serial(crt, serial_be, sizeof(serial_be))) < 0 ||
            (r = gnutls_x509_crt_set_activation_time(crt, now - 60)) < 0 ||
            (r = gnutls_x509_crt_set_expiration_time(crt, now + 3600)) < 0 ||
            (r = gnutls_x509_crt_set_key(crt, key)) < 0)
                die("crt_set", r);
        if (dn && (r = gnutls_x509_crt_set_dn(crt, dn, &err)) < 0)
                die(dn, r);
        for (size_t i = 0; i < n_sans; i++)
                if (san_set(crt, &sans[i]) < 0)
                        goto fail;
        if ((r = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0)
                goto fail;
        if ((r = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der)) < 0)
                die("export", r);
        if ((r = gnutls_x509_crt_init(&out)) < 0)
                die("crt_init", r);
        if ((r = gnutls_x509_crt_import(out, &der, GNUTLS_X509_FMT_DER)) < 0) {
                gnutls_x509_crt_deinit(out);
                out = NULL;
        }
fail:
        gnutls_free(der.data);
        gnutls_x509_crt_deinit(crt);
        return out;
}

static int identity_of(const char *dn, const San *sans, size_t n, PeerIdentity *ret) {
        gnutls_x509_crt_t crt = make_cert(dn, sans, n);
        int r;

        if (!crt)
                return -EBADMSG;
        r = peer_identity_from_x509(crt, ret);
        gnutls_x509_crt_deinit(crt);
        return r;
}

static void test_identity(void) {
        static const San sans[] = {
                { GNUTLS_SAN_DNSNAME, "svc.example.com", 0 },
                { GNUTLS_SAN_RFC822NAME, "ops@example.com", 0 }, /* ignored */
                { GNUTLS_SAN_IPADDRESS, "127.0.0.1", 0 },
                { GNUTLS_SAN_URI, "spiffe://example.org/ns/prod/sa/web", 0 },
                { GNUTLS_SAN_DNSNAME, "alt.example.com", 0 },
                { GNUTLS_SAN_IPADDRESS, "2001:db8::1", 0 },
                { GNUTLS_SAN_IPADDRESS, "::ffff:10.1.2.3", 0 },
        };
        PeerIdentity id = {};

        CHECK_INT_EQ(identity_of("CN=alice,OU=eng,OU=ops,O=Example", sans, ELEMENTSOF(sans), &id), 0);
        CHECK_STR_EQ(id.cn, "alice");
        CHECK_INT_EQ(strv_length(id.ous), 2);
        CHECK(strv_contains(id.ous, "eng") && strv_contains(id.ous, "ops"));
        CHECK_INT_EQ(strv_length(id.dns), 2);
        CHECK_STR_EQ(id.dns[0], "svc.example.com");
        CHECK_STR_EQ(id.dns[1], "alt.example.com");
        CHECK_INT_EQ(strv_length(id.ips), 3);
        CHECK_STR_EQ(id.ips[0], "127.0.0.1");
        CHECK_STR_EQ(id.ips[1], "2001:db8::1");
        CHECK_STR_EQ(id.ips[2], "::ffff:10.1.2.3");
        CHECK_INT_EQ(strv_length(id.uris), 1);
        CHECK_STR_EQ(id.uris[0], "spiffe://example.org/ns/prod/sa/web");
        peer_identity_done(&id);
        CHECK(!id.cn && !id.ous && !id.dns && !id.ips && !id.uris);

        /* No CN, no SANs. */
        CHECK_INT_EQ(identity_of("O=Example,OU=only", NULL, 0, &id), 0);
        CHECK(id.cn == NULL);
        CHECK_INT_EQ(strv_length(id.ous), 1);
        CHECK(!id.dns && !id.ips && !id.uris);
        peer_identity_done(&id);

        /* SANs with an embedded NUL must not pass as "good.example": the
         * extraction fails as a whole, whether GnuTLS or we notice. */
        static const San evil[] = {
                /* SEQUENCE { [2] dNSName "good.example\0.evil.com" } */
                { GNUTLS_SAN_DNSNAME, "\x30\x18\x82\x16good.example\0.evil.com", 26 },
                /* SEQUENCE { [6] URI "spiffe://a/b\0/c" } */
                { GNUTLS_SAN_URI, "\x30\x12\x86\x10spiffe://a/b\0/c", 20 },
        };
        for (size_t i = 0; i < ELEMENTSOF(evil); i++) {
                gnutls_x509_crt_t crt = make_cert("CN=x", &evil[i], 1);

                if (!CHECK(crt))
                        continue;
                CHECK(peer_identity_from_x509(crt, &id) < 0);
                CHECK(!id.cn && !id.dns && !id.uris);
                gnutls_x509_crt_deinit(crt);
        }

        CHECK_INT_EQ(peer_identity_from_x509(NULL, &id), -EINVAL);
}

/* Checks one config against one identity. */
static void expect(int line, const Config *c, const PeerIdentity *id, AuthzResult expected,
                   const char *rule) {
        const char *got = "untouched";
        AuthzResult a = authz_check(c, id, &got);

        if (!test_record(a == expected, __FILE__, line, "authz_check result"))
                fprintf(stderr, "        got %s, expected %s\n", a ? "ALLOW" : "DENY",
                        expected ? "ALLOW" : "DENY");
        if (!test_record(strcmp(got, expected == AUTHZ_ALLOW ? rule : "untouched") == 0,
                         __FILE__, line, "matching rule"))
                fprintf(stderr, "        got rule \"%s\"\n", got);
}
#define ALLOWS(c, id, rule) expect(__LINE__, c, id, AUTHZ_ALLOW, rule)
#define DENIES(c, id) expect(__LINE__, c, id, AUTHZ_DENY, NULL)

/* A config allowing exactly one value through one rule. */
static void config_one(Config *c, char ***list, const char *value) {
        config_init(c);
        if (value && strv_extend(list, value) < 0)
                abort();
}

static void test_rules(void) {
        static const San sans[] = {
                { GNUTLS_SAN_DNSNAME, "svc.example.com", 0 },
                { GNUTLS_SAN_IPADDRESS, "127.0.0.1", 0 },
                { GNUTLS_SAN_IPADDRESS, "2001:db8::1", 0 },
                { GNUTLS_SAN_IPADDRESS, "::ffff:10.1.2.3", 0 },
                { GNUTLS_SAN_URI, "spiffe://example.org/ns/prod/sa/web", 0 },
        };
        PeerIdentity id = {}, bare = {};
        Config c;

        if (!CHECK(identity_of("CN=alice,OU=eng,OU=ops", sans, ELEMENTSOF(sans), &id) == 0))
                return;
        CHECK_INT_EQ(identity_of("OU=nobody", NULL, 0, &bare), 0);

        /* Nothing configured: fail closed. */
        config_init(&c);
        DENIES(&c, &id);
        DENIES(&c, NULL);
        CHECK(authz_check(NULL, &id, NULL) == AUTHZ_DENY);
        c.allow_all = true;
        ALLOWS(&c, &id, "allow-all");
        ALLOWS(&c, &bare, "allow-all");
        c.allow_all = false;
        c.disable_authentication = true;
        ALLOWS(&c, NULL, "disable-authentication");
        config_done(&c);

        static const struct {
                size_t field; /* offset of the list in Config */
                const char *value;
                bool allow;
                const char *rule;
        } table[] = {
#define F(x) offsetof(Config, x)
                { F(allow_cn), "alice", true, "allow-cn" },
                { F(allow_cn), "Alice", false, NULL },      /* case-sensitive */
                { F(allow_cn), "bob", false, NULL },
                { F(allow_cn), "eng", false, NULL },        /* an OU is not a CN */
                { F(allow_cn), "svc.example.com", false, NULL },
                { F(allow_ou), "ops", true, "allow-ou" },
                { F(allow_ou), "eng", true, "allow-ou" },
                { F(allow_ou), "sales", false, NULL },
                { F(allow_ou), "alice", false, NULL },
                { F(allow_dns), "svc.example.com", true, "allow-dns" },
                { F(allow_dns), "SVC.example.com", false, NULL },
                { F(allow_dns), "example.com", false, NULL },
                { F(allow_dns), "*.example.com", false, NULL },
                { F(allow_dns), "alice", false, NULL },     /* a CN is not a DNS SAN */
                { F(allow_ip), "127.0.0.1", true, "allow-ip" },
                { F(allow_ip), "::ffff:127.0.0.1", true, "allow-ip" },
                { F(allow_ip), "::FFFF:7f00:1", true, "allow-ip" },
                { F(allow_ip), "2001:db8::1", true, "allow-ip" },
                { F(allow_ip), "2001:DB8:0:0:0:0:0:1", true, "allow-ip" },
                { F(allow_ip), "2001:0db8:0000::0001", true, "allow-ip" },
                { F(allow_ip), "10.1.2.3", true, "allow-ip" },  /* v4-mapped SAN */
                { F(allow_ip), "127.0.0.2", false, NULL },
                { F(allow_ip), "::1", false, NULL },
                { F(allow_ip), "::127.0.0.1", false, NULL },    /* v4-compatible != mapped */
                { F(allow_ip), "2001:db8::2", false, NULL },
                { F(allow_ip), "10.1.2.4", false, NULL },
                { F(allow_ip), "not-an-ip", false, NULL },
                { F(allow_uri), "spiffe://example.org/ns/prod/sa/web", true, "allow-uri" },
                { F(allow_uri), "spiffe://example.org/ns/*/sa/web", true, "allow-uri" },
                { F(allow_uri), "spiffe://example.org/**", true, "allow-uri" },
                { F(allow_uri), "spiffe://example.org/ns/prod/sa/web/", true, "allow-uri" },
                { F(allow_uri), "spiffe://example.org/ns/*/sa/db", false, NULL },
                { F(allow_uri), "spiffe://example.org/ns/prod", false, NULL },
                { F(allow_uri), "spiffe://example.org/ns/prod/sa/we*", false, NULL },
                { F(allow_uri), "spiffe://other.org/**", false, NULL },
#undef F
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                config_one(&c, (char ***) ((uint8_t *) &c + table[i].field), table[i].value);
                if (table[i].allow)
                        ALLOWS(&c, &id, table[i].rule);
                else
                        DENIES(&c, &id);
                /* The same rule never lets a certificate without such values in. */
                DENIES(&c, &bare);
                config_done(&c);
        }

        /* Any one matching rule is enough, whichever it is. */
        config_init(&c);
        strv_extend(&c.allow_cn, "bob");
        strv_extend(&c.allow_dns, "other.example.com");
        strv_extend(&c.allow_uri, "spiffe://example.org/ns/*/sa/web");
        ALLOWS(&c, &id, "allow-uri");
        strv_extend(&c.allow_cn, "alice");
        ALLOWS(&c, &id, "allow-cn");
        config_done(&c);

        /* OU=nobody is allowed by its OU only. */
        config_one(&c, &c.allow_ou, "nobody");
        ALLOWS(&c, &bare, "allow-ou");
        DENIES(&c, &id);
        config_done(&c);

        peer_identity_done(&id);
        peer_identity_done(&bare);
}

static void test_uri_patterns(void) {
        static const struct {
                const char *pattern, *uri;
                bool match;
        } table[] = {
                /* From Ghostunnel's wildcard tests. */
                { "spiffe://foo/*/bar", "spiffe://foo/baz/bar", true },
                { "spiffe://foo/*/bar", "spiffe://foo/baz/bar/", true },
                { "spiffe://foo/*/bar", "spiffe://foo/asdf/bar", true },
                { "spiffe://foo/*/bar", "invalid", false },
                { "spiffe://foo/*/bar", "spiffe://foo/bar", false },
                { "spiffe://foo/*/bar", "spiffe://foo//bar", false },
                { "spiffe://foo/*/bar", "spiffe://foo/baz/bar/spam", false },
                { "spiffe://foo/*/bar", "spiff://foo/asdf/bar", false },
                { "spiffe://foo/*/bar", "spiffe://foox/baz/bar", false },
                { "spiffe://foo/*/bar", "spiffe://foo/baz/barx", false },
                { "spiffe://*/*/bar", "spiffe://foox/spam/bar/", true },
                { "spiffe://*/*/bar", "spiffe://foox/baz/barx", false },
                { "spiffe://*/*/bar", "spiffe:///baz/bar", false },
                { "spiffe://foo/*/*", "spiffe://foo/asdf/barx/", true },
                { "spiffe://foo/*/*", "spiffe://foo/bar", false },
                { "spiffe://*/*/*", "spiffe://foox/asdf/barx", true },
                { "spiffe://*/*/*", "spiffe://foo/baz/bar/spam", false },
                { "spiffe://foo/*/bar/**", "spiffe://foo/baz/bar", true },
                { "spiffe://foo/*/bar/**", "spiffe://foo/baz/bar/", true },
                { "spiffe://foo/*/bar/**", "spiffe://foo/baz/bar/spam", true },
                { "spiffe://foo/*/bar/**", "spiffe://foo/spam/bar/asdf/qwer", true },
                { "spiffe://foo/*/bar/**", "spiffe://foo/bar", false },
                { "spiffe://foo/*/bar/**", "spiffe://foo//bar/asdf", false },
                { "spiffe://foo/*/bar/**", "spiff://foo/asdf/bar", false },
                { "spiffe://foo/./bar", "spiffe://foo/./bar/", true },
                { "spiffe://foo/./bar", "spiffe://foo/x/bar", false },
                { "spiffe://././.", "spiffe://./././", true },
                { "spiffe://././.", "spiffe://a/b/c", false },
                { ".+", ".+", true },
                { ".+", "invalid", false },
                /* Where a segment-wise matcher does better than Ghostunnel's regex. */
                { "spiffe://x/**", "spiffe://x", true },
                { "spiffe://x/**", "spiffe://x/", true },
                { "spiffe://x/**", "spiffe://x/a", true },
                { "spiffe://x/**", "spiffe://x/a/b", true },
                { "spiffe://x/**", "spiffe://x//", true },
                { "spiffe://x/**", "spiffe://xy", false },
                { "spiffe://x/**", "spiffe://xy/a", false },
                { "spiffe://x/**", "spiffe://", false },
                { "spiffe://x/**", "spiffe:/", false },
                /* Literal segments, and '*' inside a segment is literal. */
                { "spiffe://x/foo*", "spiffe://x/foo*", true },
                { "spiffe://x/foo*", "spiffe://x/foobar", false },
                { "spiffe://x/**bar", "spiffe://x/**bar", true },
                { "spiffe://x/**bar", "spiffe://x/abar", false },
                { "spiffe://x/*", "spiffe://x/", false },
                { "spiffe://x/*", "spiffe://x", false },
                { "spiffe://x/*", "spiffe://x/a/", true },
                { "spiffe://x/a/", "spiffe://x/a", true },   /* trailing '/' on the pattern */
                { "spiffe://x/a/", "spiffe://x/a/", true },
                { "spiffe://x/a", "spiffe://x/a//", false }, /* only one is optional */
                { "spiffe://x/a", "spiffe://x/A", false },
                { "spiffe://x/a", "spiffe://x/a?b", false },
                { "**", "", true },
                { "**", "anything/at/all", true },
                { "*", "one", true },
                { "*", "one/two", false },
                { "*", "", false },
                { "spiffe://x/**/", "spiffe://x/a", true },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                bool m = uri_pattern_match(table[i].pattern, table[i].uri);

                if (!test_record(m == table[i].match, __FILE__, __LINE__, "uri_pattern_match"))
                        fprintf(stderr, "        pattern \"%s\" vs \"%s\": got %s\n",
                                table[i].pattern, table[i].uri, m ? "match" : "no match");
        }

        static const struct {
                const char *pattern;
                bool valid;
        } valid[] = {
                { "spiffe://x/**", true },
                { "spiffe://x/*/y", true },
                { "**", true },
                { "spiffe://x/**/", true },
                { "spiffe://x/a**/b", true },
                { "/", true },
                { "spiffe://x/**/y", false },
                { "**/x", false },
                { "a/**/**", false },
                { "spiffe://x/**//", false },
                { "", false },
                { NULL, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(valid); i++)
                if (!test_record(uri_pattern_valid(valid[i].pattern) == valid[i].valid, __FILE__,
                                 __LINE__, "uri_pattern_valid"))
                        fprintf(stderr, "        pattern \"%s\"\n", strempty(valid[i].pattern));

        /* An invalid pattern never matches. */
        CHECK(!uri_pattern_match("spiffe://x/**/y", "spiffe://x/a/y"));
        CHECK(!uri_pattern_match(NULL, "x"));
        CHECK(!uri_pattern_match("x", NULL));
}

int main(void) {
        int r;

        if ((r = gnutls_global_init()) < 0)
                die("global_init", r);
        if ((r = gnutls_x509_privkey_init(&key)) < 0 ||
            (r = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                              GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
                                              0)) < 0)
                die("privkey", r);

        test_identity();
        test_rules();
        test_uri_patterns();

        gnutls_x509_privkey_deinit(key);
        gnutls_global_deinit();
        return test_summary();
}
