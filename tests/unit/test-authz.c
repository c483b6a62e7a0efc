/* SPDX-License-Identifier: MIT */
/* Real certificates, built in memory with GnuTLS and passed through DER the
 * way a peer would send them, checked against each rule. */

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
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
 * DER; with raw_cn, a CN of raw_cn_size bytes (which may hold a NUL) is
 * added after the DN. Returns NULL if GnuTLS refuses to build it. */
static gnutls_x509_crt_t make_cert_ex(const char *dn, const char *raw_cn, size_t raw_cn_size,
                                      const San *sans, size_t n_sans) {
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
        if (raw_cn && gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, raw_cn,
                                                    (unsigned) raw_cn_size) < 0)
                goto fail;
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

static gnutls_x509_crt_t make_cert(const char *dn, const San *sans, size_t n_sans) {
        return make_cert_ex(dn, NULL, 0, sans, n_sans);
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
static void expect(int line, const AccessRules *c, const PeerIdentity *id, AuthzResult expected,
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

/* Rules allowing exactly one value through one rule. */
static void config_one(AccessRules *c, char ***list, const char *value) {
        *c = (AccessRules) {};
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
        AccessRules c;

        if (!CHECK(identity_of("CN=alice,OU=eng,OU=ops", sans, ELEMENTSOF(sans), &id) == 0))
                return;
        CHECK_INT_EQ(identity_of("OU=nobody", NULL, 0, &bare), 0);

        /* Nothing configured: fail closed. */
        c = (AccessRules) {};
        DENIES(&c, &id);
        DENIES(&c, NULL);
        CHECK(authz_check(NULL, &id, NULL) == AUTHZ_DENY);
        c.allow_all = true;
        ALLOWS(&c, &id, "allow-all");
        ALLOWS(&c, &bare, "allow-all");
        c.allow_all = false;
        c.disable_authentication = true;
        ALLOWS(&c, NULL, "disable-authentication");
        access_rules_done(&c);

        static const struct {
                size_t field; /* offset of the list in AccessRules */
                const char *value;
                bool allow;
                const char *rule;
        } table[] = {
#define F(x) offsetof(AccessRules, x)
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
                access_rules_done(&c);
        }

        /* Any one matching rule is enough, whichever it is. */
        c = (AccessRules) {};
        strv_extend(&c.allow_cn, "bob");
        strv_extend(&c.allow_dns, "other.example.com");
        strv_extend(&c.allow_uri, "spiffe://example.org/ns/*/sa/web");
        ALLOWS(&c, &id, "allow-uri");
        strv_extend(&c.allow_cn, "alice");
        ALLOWS(&c, &id, "allow-cn");
        access_rules_done(&c);

        /* OU=nobody is allowed by its OU only. */
        config_one(&c, &c.allow_ou, "nobody");
        ALLOWS(&c, &bare, "allow-ou");
        DENIES(&c, &id);
        access_rules_done(&c);

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

/* --- near misses ------------------------------------------------------------
 * Each rule allows exactly its value, compared as Ghostunnel compares it
 * (Go's ==, net.IP.Equal, the URI wildcard): a name that extends the allowed
 * one, shortens it, changes its case or a trailing dot, or hides a NUL, is
 * refused. A certificate whose identity cannot be extracted counts as
 * refused, as the connection refuses it ("cannot parse the client
 * certificate"). */

typedef struct NearMiss {
        const char *allowed; /* the one value of the rule */
        const char *dn;      /* the certificate's subject, or NULL */
        San san;             /* its one SAN, if san.text */
        const char *raw_cn;  /* a CN of raw_cn_size bytes added after dn */
        size_t raw_cn_size;
        bool allow;
} NearMiss;

static void check_near_misses(int line, size_t field, const NearMiss *t, size_t n) {
        for (size_t i = 0; i < n; i++) {
                gnutls_x509_crt_t crt = make_cert_ex(t[i].dn, t[i].raw_cn, t[i].raw_cn_size,
                                                     &t[i].san, t[i].san.text ? 1 : 0);
                PeerIdentity id = {};
                AuthzResult a = AUTHZ_DENY;
                bool extracted = false;
                AccessRules c;

                if (!test_record(crt, __FILE__, line, "near-miss certificate built"))
                        continue;
                extracted = peer_identity_from_x509(crt, &id) == 0;
                gnutls_x509_crt_deinit(crt);
                config_one(&c, (char ***) ((uint8_t *) &c + field), t[i].allowed);
                if (extracted)
                        a = authz_check(&c, &id, NULL);
                if (!test_record((a == AUTHZ_ALLOW) == t[i].allow && (extracted || !t[i].allow),
                                 __FILE__, line, "near miss"))
                        fprintf(stderr,
                                "        [%zu] allowed \"%s\", subject \"%s\", SAN \"%s\": "
                                "got %s%s\n",
                                i, t[i].allowed, strempty(t[i].dn),
                                t[i].san.size ? "(DER)" : strempty(t[i].san.text),
                                a == AUTHZ_ALLOW ? "ALLOW" : "DENY",
                                extracted ? "" : " (identity not extracted)");
                peer_identity_done(&id);
                access_rules_done(&c);
        }
}
#define NEAR_MISSES(field, table) \
        check_near_misses(__LINE__, offsetof(AccessRules, field), table, ELEMENTSOF(table))

#define DNS(t) { GNUTLS_SAN_DNSNAME, t, 0 }
#define IP(t) { GNUTLS_SAN_IPADDRESS, t, 0 }
#define URI(t) { GNUTLS_SAN_URI, t, 0 }
#define RAW_CN(t) NULL, {}, t, sizeof(t) - 1
#define ORG "spiffe://example.org"

static void test_near_misses(void) {
        static const NearMiss cn[] = {
                { "frontend", "CN=frontend", .allow = true },
                { "frontend", "O=x,OU=y,CN=frontend", .allow = true },
                { "frontend", "CN=frontend2" },
                { "frontend", "CN=frontend.evil" },
                { "frontend", "CN=xfrontend" },
                { "frontend", "CN=fronten" },
                { "frontend", "CN=Frontend" },
                { "frontend", "CN=FRONTEND" },
                { "frontend", "CN=frontend." },
                { "frontend", "CN=.frontend" },
                { "frontend", RAW_CN("frontend ") },
                { "frontend", RAW_CN(" frontend") },
                { "frontend", RAW_CN("frontend\0") },
                { "frontend", RAW_CN("frontend\0evil") },
                { "frontend", RAW_CN("frontend\0.evil") },
                { "frontend", "OU=frontend" },
                { "frontend", "O=frontend" },
                { "frontend", "CN=backend", DNS("frontend") },
                { "frontend", NULL, DNS("frontend") },
                /* the allowed value a near miss of the certificate's */
                { "fronten", "CN=frontend" },
                { "frontend2", "CN=frontend" },
                { "frontend.", "CN=frontend" },
                { "Frontend", "CN=frontend" },
                { "frontend ", "CN=frontend" },
                { "", "CN=frontend" },
                { "", "OU=nocn" },
                { "*", "CN=frontend" },
        };
        static const NearMiss ou[] = {
                { "ops", "OU=ops,CN=x", .allow = true },
                { "ops", "OU=eng,OU=ops,CN=x", .allow = true },
                { "ops", "OU=ops2,CN=x" },
                { "ops", "OU=devops,CN=x" },
                { "ops", "OU=op,CN=x" },
                { "ops", "OU=Ops,CN=x" },
                { "ops", "OU=ops.,CN=x" },
                { "ops", "OU=ops\\,eng,CN=x" },
                { "ops", "O=ops,CN=x" },
                { "ops", "CN=ops" },
                { "op", "OU=ops,CN=x" },
                { "OPS", "OU=ops,CN=x" },
        };
        static const NearMiss dns[] = {
                { "client.example", "CN=x", DNS("client.example"), .allow = true },
                { "client.example", "CN=x", DNS("client.example.") },
                { "client.example", "CN=x", DNS("Client.example") },
                { "client.example", "CN=x", DNS("CLIENT.EXAMPLE") },
                { "client.example", "CN=x", DNS("client.example.evil") },
                { "client.example", "CN=x", DNS("client.example2") },
                { "client.example", "CN=x", DNS("evil.client.example") },
                { "client.example", "CN=x", DNS("xclient.example") },
                { "client.example", "CN=x", DNS("client.exampl") },
                { "client.example", "CN=x", DNS("lient.example") },
                { "client.example", "CN=x", DNS("*.example") },
                { "client.example", "CN=x", DNS("client") },
                { "client.example", "CN=client.example" },
                { "client.example", "CN=x", URI("client.example") },
                /* SEQUENCE { [2] dNSName "client.example\0" } */
                { "client.example", "CN=x",
                  { GNUTLS_SAN_DNSNAME, "\x30\x11\x82\x0f" "client.example\0", 19 } },
                { "client.example.", "CN=x", DNS("client.example") },
                { "*.example", "CN=x", DNS("client.example") },
                { "Client.example", "CN=x", DNS("client.example") },
                { "example", "CN=x", DNS("client.example") },
        };
        static const NearMiss ip[] = {
                { "10.1.2.3", "CN=x", IP("10.1.2.3"), .allow = true },
                /* the same address for Go's net.IP.Equal, which Ghostunnel uses */
                { "10.1.2.3", "CN=x", IP("::ffff:10.1.2.3"), .allow = true },
                { "::ffff:10.1.2.3", "CN=x", IP("10.1.2.3"), .allow = true },
                { "10.1.2.3", "CN=x", IP("10.1.2.30") },
                { "10.1.2.3", "CN=x", IP("10.1.2.33") },
                { "10.1.2.3", "CN=x", IP("110.1.2.3") },
                { "10.1.2.3", "CN=x", IP("10.1.2.4") },
                { "10.1.2.3", "CN=x", IP("::10.1.2.3") },          /* IPv4-compatible */
                { "10.1.2.3", "CN=x", IP("64:ff9b::10.1.2.3") },   /* NAT64 */
                { "10.1.2.3", "CN=x", IP("::ffff:10.1.2.4") },
                { "10.1.2.3", "CN=x", IP("::ffff:0:10.1.2.3") },   /* SIIT, not mapped */
                { "10.1.2.3", "CN=x", DNS("10.1.2.3") },
                { "10.1.2.3", "CN=10.1.2.3" },
                /* SEQUENCE { [7] iPAddress 10.1.2.3 and one byte more } */
                { "10.1.2.3", "CN=x",
                  { GNUTLS_SAN_IPADDRESS, "\x30\x07\x87\x05\x0a\x01\x02\x03\x00", 9 } },
                { "2001:db8::1", "CN=x", IP("2001:db8::1"), .allow = true },
                { "2001:db8::1", "CN=x", IP("2001:db8::10") },
                { "2001:db8::1", "CN=x", IP("2001:db8::1:0") },
                { "2001:db8::1", "CN=x", IP("2001:db8::100") },
                { "2001:db8::1", "CN=x", IP("2001:db9::1") },
                { "2001:db8::1", "CN=x", IP("::1") },
        };
        static const NearMiss uri[] = {
                { ORG "/web", "CN=x", URI(ORG "/web"), .allow = true },
                /* a trailing '/' is optional on both sides, as in Ghostunnel */
                { ORG "/web", "CN=x", URI(ORG "/web/"), .allow = true },
                { ORG "/web", "CN=x", URI(ORG "/web2") },
                { ORG "/web", "CN=x", URI(ORG "/we") },
                { ORG "/web", "CN=x", URI(ORG "/web/x") },
                { ORG "/web", "CN=x", URI(ORG "/web/../x") },
                { ORG "/web", "CN=x", URI(ORG "/web/..") },
                { ORG "/web", "CN=x", URI(ORG "/web/.") },
                { ORG "/web", "CN=x", URI(ORG "/web//") },
                { ORG "/web", "CN=x", URI(ORG "//web") },
                { ORG "/web", "CN=x", URI(ORG "/Web") },
                { ORG "/web", "CN=x", URI("spiffe://Example.org/web") },
                /* Go would lower-case the scheme; a SPIFFE ID has it in
                 * lower case, and tlsgate compares it as written. */
                { ORG "/web", "CN=x", URI("SPIFFE://example.org/web") },
                { ORG "/web", "CN=x", URI("http://example.org/web") },
                { ORG "/web", "CN=x", URI("spiffe:example.org/web") },
                { ORG "/web", "CN=x", URI(ORG ".evil/web") },
                { ORG "/web", "CN=x", URI("spiffe://evil.example.org/web") },
                { ORG "/web", "CN=x", URI("spiffe://user@example.org/web") },
                { ORG "/web", "CN=x", URI(ORG ":443/web") },
                { ORG "/web", "CN=x", URI(ORG "/web?x") },
                { ORG "/web", "CN=x", URI(ORG "/web#x") },
                { ORG "/web", "CN=x", URI(ORG "/%77eb") },
                { ORG "/web", "CN=x", URI(ORG "/web%2F") },
                { ORG "/web", "CN=x", DNS(ORG "/web") },
                { ORG "/web", "CN=spiffe://example.org/web" },
                /* SEQUENCE { [6] URI ORG "/web\0" } */
                { ORG "/web", "CN=x", { GNUTLS_SAN_URI, "\x30\x1b\x86\x19" ORG "/web\0", 29 } },
                { ORG "/web/*", "CN=x", URI(ORG "/web/x"), .allow = true },
                { ORG "/web/*", "CN=x", URI(ORG "/web") },
                { ORG "/web/*", "CN=x", URI(ORG "/web/") },
                { ORG "/web/*", "CN=x", URI(ORG "/web/x/y") },
                { ORG "/web/*", "CN=x", URI(ORG "/web2/x") },
                { ORG "/web/*", "CN=x", URI(ORG "/webx") },
                { ORG "/web/**", "CN=x", URI(ORG "/web"), .allow = true },
                { ORG "/web/**", "CN=x", URI(ORG "/web/x/y"), .allow = true },
                /* a URI is a name, not a path to resolve: as in Ghostunnel */
                { ORG "/web/**", "CN=x", URI(ORG "/web/../x"), .allow = true },
                { ORG "/web/**", "CN=x", URI(ORG "/web2") },
                { ORG "/web/**", "CN=x", URI(ORG "/webx/y") },
                { ORG "/web/**", "CN=x", URI(ORG "/we") },
                { ORG "/web/**", "CN=x", URI(ORG "") },
                { ORG "/web/**", "CN=x", URI(ORG ".evil/web/x") },
                { ORG "/web/**", "CN=x", URI("spiffe://Example.org/web/x") },
                { "spiffe://*/web", "CN=x", URI("spiffe://a/web"), .allow = true },
                { "spiffe://*/web", "CN=x", URI("spiffe:///web") },
                { "spiffe://*/web", "CN=x", URI("spiffe://a/b/web") },
                { "spiffe://*/web", "CN=x", URI("spiffe://a/web2") },
                { "spiffe://*/web", "CN=x", URI("spiffe://a/web/x") },
                { ORG "/web2", "CN=x", URI(ORG "/web") },
                { ORG "/we", "CN=x", URI(ORG "/web") },
                { ORG "/web/x", "CN=x", URI(ORG "/web") },
        };

        NEAR_MISSES(allow_cn, cn);
        NEAR_MISSES(allow_ou, ou);
        NEAR_MISSES(allow_dns, dns);
        NEAR_MISSES(allow_ip, ip);
        NEAR_MISSES(allow_uri, uri);
}

/* With several CNs in the subject, Go's pkix.Name.CommonName (which
 * Ghostunnel compares) is the last one: an allowed CN followed by another
 * does not get in. */
static void test_last_cn_counts(void) {
        static const char *const dns[] = { "CN=frontend,CN=evil", "CN=evil,CN=frontend" };

        for (size_t i = 0; i < ELEMENTSOF(dns); i++) {
                gnutls_x509_crt_t crt = make_cert(dns[i], NULL, 0);
                char first[64], last[64];
                size_t n0 = sizeof(first), n1 = sizeof(last);
                PeerIdentity id = {};
                AccessRules c;

                if (!CHECK(crt))
                        continue;
                /* GnuTLS's index follows the encoding: 0 first, 1 last. */
                CHECK(gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, first,
                                                    &n0) == 0);
                CHECK(gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 1, 0, last,
                                                    &n1) == 0);
                CHECK(strcmp(first, last) != 0);
                CHECK_INT_EQ(peer_identity_from_x509(crt, &id), 0);
                CHECK_STR_EQ(id.cn, last);
                config_one(&c, &c.allow_cn, first);
                DENIES(&c, &id);
                access_rules_done(&c);
                config_one(&c, &c.allow_cn, last);
                ALLOWS(&c, &id, "allow-cn");
                access_rules_done(&c);
                peer_identity_done(&id);
                gnutls_x509_crt_deinit(crt);
        }
}


/* Known answers: two certificates made with OpenSSL and their pins, taken
 * with `openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl
 * dgst -sha256 -binary | base64`. */
static const char pinned_pem[] =
        "-----BEGIN CERTIFICATE-----\n"
        "MIIBeTCCAR+gAwIBAgIUZq81xjJnl/KkTIbOj1CKTWu6WekwCgYIKoZIzj0EAwIw\n"
        "ETEPMA0GA1UEAwwGcGlubmVkMCAXDTI2MTIwNzIyMTAwNloYDzIxMjYxMTEzMjIx\n"
        "MDA2WjARMQ8wDQYDVQQDDAZwaW5uZWQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n"
        "AARkes1dYgqWRyjSHHSLpZ2FjTzgrt8fYSgVww6u+uuMMyUnG9iWibvwaT10snb9\n"
        "AFOinDXmyTJi0W8GGVO/P5tZo1MwUTAdBgNVHQ4EFgQU7ly3e1fcTFrVo5hm7CEM\n"
        "pYXpag8wHwYDVR0jBBgwFoAU7ly3e1fcTFrVo5hm7CEMpYXpag8wDwYDVR0TAQH/\n"
        "BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiBpZsV+LV+MSMZ7aFQ5vHTUPj6+WbZS\n"
        "eOk3+qGWrqcSoQIhAIGfJffdStq6nyQ6p4QTJxgesM7/M6E8PnfR2cp2kl4t\n"
        "-----END CERTIFICATE-----\n";
#define PINNED_SHA256 "sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk="
#define PINNED_SHA384 "sha384:mGX/hj/GwCimVU4uH4BvS0m1nb9pmY8IPDXmCmIMNcvkde8iB5/BnrA+1a81U2aV"
#define PINNED_SHA512                                                                      \
        "sha512:QZuzmVoMDiv65Z93XFLiHbviwgXOgTsYvVmA/WasKLgSY3DIKhpSH0L7M2oF1+1JHFhVxZCUpq9K" \
        "7D/dDi77RA=="

static const char other_pem[] =
        "-----BEGIN CERTIFICATE-----\n"
        "MIIBNjCB6aADAgECAhRWVRTY44EUYdzM2T6MQ3/4zMAZtTAFBgMrZXAwEDEOMAwG\n"
        "A1UEAwwFb3RoZXIwIBcNMjYxMjA3MjIxMDA2WhgPMjEyNjExMTMyMjEwMDZaMBAx\n"
        "DjAMBgNVBAMMBW90aGVyMCowBQYDK2VwAyEAQKQW8minTAhDjb2byZqwwZXYUZJT\n"
        "zF30dOnP0mPBBeujUzBRMB0GA1UdDgQWBBTfevg7ZUYTD8izPrvjd3gSIhYzbDAf\n"
        "BgNVHSMEGDAWgBTfevg7ZUYTD8izPrvjd3gSIhYzbDAPBgNVHRMBAf8EBTADAQH/\n"
        "MAUGAytlcANBAFqnymQ1OfGCd6XP+cxxWmVsMWnFVNwzo6l9BAwexRGojJpg0Nrf\n"
        "vAds3Ja/MsfCDXtSdDDKJvmq4nkBG490hQ0=\n"
        "-----END CERTIFICATE-----\n";
#define OTHER_SHA256 "sha256:gcJLem7lfFIGmFKsMjHzjn7qdMd77Dq31HluP8Jt67o="

static gnutls_x509_crt_t load_pem(const char *pem) {
        gnutls_datum_t d = { (unsigned char *) pem, (unsigned) strlen(pem) };
        gnutls_x509_crt_t crt;
        int r;

        if ((r = gnutls_x509_crt_init(&crt)) < 0 ||
            (r = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM)) < 0)
                die("load_pem", r);
        return crt;
}

static void expect_pin_error(int line, const char *text, const char *needle) {
        _cleanup_free_ char *err = NULL;
        SpkiPin pin;
        int r;

        r = spki_pin_parse("allow-spki-pin", text, &pin, &err);
        if (!test_record(r == -EINVAL && err && strstr(err, needle) &&
                                 strstr(err, "--allow-spki-pin: ") && strstr(err, text),
                         __FILE__, line, needle))
                fprintf(stderr, "        \"%s\": r=%d, message \"%s\"\n", text, r,
                        err ? err : "(null)");
}
#define PIN_ERROR(text, needle) expect_pin_error(__LINE__, text, needle)

/* Parses the pins, then matches them against crt. */
static int match(gnutls_x509_crt_t crt, const char *const *texts, size_t n) {
        SpkiPin pins[8];

        assert(n <= ELEMENTSOF(pins));
        for (size_t i = 0; i < n; i++)
                if (spki_pin_parse("allow-spki-pin", texts[i], &pins[i], NULL) < 0)
                        return -EINVAL;
        return spki_pins_match(pins, n, crt);
}
#define MATCH(crt, ...)                                                                    \
        match(crt, (const char *const[]) { __VA_ARGS__ },                                  \
              ELEMENTSOF(((const char *const[]) { __VA_ARGS__ })))

static void test_spki_pin_parse(void) {
        SpkiPin pin = {};

        CHECK_INT_EQ(spki_pin_parse("allow-spki-pin", PINNED_SHA256, &pin, NULL), 0);
        CHECK_INT_EQ(pin.algorithm, GNUTLS_DIG_SHA256);
        CHECK_INT_EQ(pin.size, 32);
        CHECK_INT_EQ(pin.digest[0], 0x1f); /* "HwFI" */
        CHECK_INT_EQ(pin.digest[1], 0x01);
        CHECK_INT_EQ(spki_pin_parse("allow-spki-pin", PINNED_SHA384, &pin, NULL), 0);
        CHECK_INT_EQ(pin.algorithm, GNUTLS_DIG_SHA384);
        CHECK_INT_EQ(pin.size, 48);
        CHECK_INT_EQ(spki_pin_parse("allow-spki-pin", PINNED_SHA512, &pin, NULL), 0);
        CHECK_INT_EQ(pin.algorithm, GNUTLS_DIG_SHA512);
        CHECK_INT_EQ(pin.size, 64);
        /* The algorithm in any case, as Ghostunnel takes it. */
        CHECK_INT_EQ(spki_pin_parse("x", "SHA256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=",
                                    &pin, NULL), 0);
        CHECK_INT_EQ(pin.algorithm, GNUTLS_DIG_SHA256);
        CHECK_INT_EQ(spki_pin_parse("x",
                                    "Sha384:mGX/hj/GwCimVU4uH4BvS0m1nb9pmY8IPDXmCmIMNcvkde8iB5/"
                                    "BnrA+1a81U2aV",
                                    &pin, NULL), 0);
        CHECK_INT_EQ(pin.algorithm, GNUTLS_DIG_SHA384);

        PIN_ERROR("HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=", "is not ALGO:BASE64");
        PIN_ERROR("", "is not ALGO:BASE64");
        PIN_ERROR("sha1:3LITyzb0/icc5P9lR6s7tn4BaKU=", "unknown digest algorithm \"sha1\"");
        PIN_ERROR("md5:HwFIfuF2TJtXpmf3rp/88g==", "unknown digest algorithm \"md5\"");
        PIN_ERROR("pin-sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=",
                  "unknown digest algorithm \"pin-sha256\"");
        PIN_ERROR(":HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=", "unknown digest algorithm \"\"");
        PIN_ERROR("sha256 :HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=",
                  "unknown digest algorithm \"sha256 \"");
        /* base64: the standard alphabet, padded, one word */
        PIN_ERROR("sha256:HwFIfuF2TJtXpmf3rp_88sHu82JkfsX66C4Igw6Z9Wk=", "not base64");
        PIN_ERROR("sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk", "not base64");
        PIN_ERROR("sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk==", "not base64");
        PIN_ERROR("sha256:HwFIfuF2TJtXpmf3rp/88sHu82 JkfsX66C4Igw6Z9Wk=", "not base64");
        PIN_ERROR("sha256: HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=", "not base64");
        PIN_ERROR("sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=\n", "not base64");
        PIN_ERROR("sha256:!!!!", "not base64");
        /* GnuTLS's decoder ends at '-' (a PEM footer): nothing may follow
         * the pin, and no '-' cut it short. */
        PIN_ERROR("sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=-", "not base64");
        PIN_ERROR("sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=-----END X-----",
                  "not base64");
        PIN_ERROR("sha256:HwFIfuF2TJtX-pmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=", "not base64");
        PIN_ERROR("sha256:sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=", "not base64");
        /* the digest's length is the algorithm's */
        PIN_ERROR("sha256:", "a sha256 digest has 32 bytes, not 0");
        PIN_ERROR("sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Q==",
                  "a sha256 digest has 32 bytes, not 31");
        PIN_ERROR("sha384:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=",
                  "a sha384 digest has 48 bytes, not 32");
        PIN_ERROR("SHA512:mGX/hj/GwCimVU4uH4BvS0m1nb9pmY8IPDXmCmIMNcvkde8iB5/BnrA+1a81U2aV",
                  "a sha512 digest has 64 bytes, not 48");
}

static void test_spki_pin_match(void) {
        gnutls_x509_crt_t pinned = load_pem(pinned_pem), other = load_pem(other_pem);
        gnutls_x509_crt_t made = make_cert("CN=made", NULL, 0);
        unsigned char id[64];
        size_t id_size = sizeof(id);
        gnutls_datum_t raw, b64 = {};
        _cleanup_free_ char *made_pin = NULL;

        /* Each algorithm of the known answers. */
        CHECK_INT_EQ(MATCH(pinned, PINNED_SHA256), 1);
        CHECK_INT_EQ(MATCH(pinned, PINNED_SHA384), 1);
        CHECK_INT_EQ(MATCH(pinned, PINNED_SHA512), 1);
        CHECK_INT_EQ(MATCH(other, OTHER_SHA256), 1); /* an Ed25519 key */
        /* Any one of several pins, whatever their algorithms. */
        CHECK_INT_EQ(MATCH(pinned, OTHER_SHA256, PINNED_SHA512), 1);
        CHECK_INT_EQ(MATCH(other, PINNED_SHA384, OTHER_SHA256), 1);
        /* Another key's pin, or no pin, does not match. */
        CHECK_INT_EQ(MATCH(pinned, OTHER_SHA256), 0);
        CHECK_INT_EQ(MATCH(other, PINNED_SHA256, PINNED_SHA384, PINNED_SHA512), 0);
        CHECK_INT_EQ(spki_pins_match(NULL, 0, pinned), 0);
        /* One bit off, first or last byte. */
        CHECK_INT_EQ(MATCH(pinned, "sha256:HgFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk="), 0);
        CHECK_INT_EQ(MATCH(pinned, "sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wg="), 0);
        CHECK_INT_EQ(MATCH(pinned, "sha512:QZuzmVoMDiv65Z93XFLiHbviwgXOgTsYvVmA/WasKLgSY3DIKhpSH0L7"
                                   "M2oF1+1JHFhVxZCUpq9K7D/dDi77RQ=="),
                     0);

        /* A key GnuTLS made, pinned through GnuTLS's own key ID (SHA-256 of
         * the SubjectPublicKeyInfo), a second way to the same digest. */
        if (!made || gnutls_x509_crt_get_key_id(made, GNUTLS_KEYID_USE_SHA256, id, &id_size) < 0)
                die("key id", GNUTLS_E_INTERNAL_ERROR);
        raw = (gnutls_datum_t) { id, (unsigned) id_size };
        if (gnutls_base64_encode2(&raw, &b64) < 0 ||
            asprintf(&made_pin, "sha256:%.*s", (int) b64.size, b64.data) < 0)
                die("base64", GNUTLS_E_MEMORY_ERROR);
        gnutls_free(b64.data);
        CHECK_INT_EQ(MATCH(made, made_pin), 1);
        CHECK_INT_EQ(MATCH(pinned, made_pin), 0);

        gnutls_x509_crt_deinit(made);
        gnutls_x509_crt_deinit(other);
        gnutls_x509_crt_deinit(pinned);
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
        test_near_misses();
        test_last_cn_counts();
        test_spki_pin_parse();
        test_spki_pin_match();

        gnutls_x509_privkey_deinit(key);
        gnutls_global_deinit();
        return test_summary();
}
