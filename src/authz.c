/* SPDX-License-Identifier: MIT */
/* Which verified clients may reach the target: Ghostunnel's ACL (auth.go),
 * evaluated against the leaf certificate only; and its SPKI pins, which
 * stand in for the verification. */

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <string.h>
#include <strings.h>

#include "authz.h"
#include "strv.h"
#include "util.h"

void peer_identity_done(PeerIdentity *id) {
        if (!id)
                return;
        free(id->cn);
        strv_free(id->ous);
        strv_free(id->dns);
        strv_free(id->ips);
        strv_free(id->uris);
        *id = (PeerIdentity) {};
}

static int gnutls_to_errno(int r) {
        switch (r) {
        case GNUTLS_E_MEMORY_ERROR:
                return -ENOMEM;
        case GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE:
                return -ENODATA;
        default:
                return -EBADMSG;
        }
}

/* Returns 0 and a string, -ENODATA when there is no such attribute at that
 * index, or another negative errno. A value with an embedded NUL could
 * impersonate a shorter one, so it fails the whole extraction. */
static int dn_get(gnutls_x509_crt_t crt, const char *oid, unsigned idx, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        int r;

        r = gnutls_x509_crt_get_dn_by_oid(crt, oid, idx, 0, NULL, &size);
        if (r != GNUTLS_E_SHORT_MEMORY_BUFFER)
                return r == 0 ? -EBADMSG : gnutls_to_errno(r);

        buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        r = gnutls_x509_crt_get_dn_by_oid(crt, oid, idx, 0, buf, &size);
        if (r < 0)
                return gnutls_to_errno(r);
        buf[size] = '\0';
        if (strlen(buf) != size)
                return -EBADMSG;

        *ret = TAKE_PTR(buf);
        return 0;
}

static int append_ip(char ***l, const unsigned char *raw, size_t size) {
        char text[INET6_ADDRSTRLEN];

        if (size != 4 && size != 16)
                return -EBADMSG;
        if (!inet_ntop(size == 4 ? AF_INET : AF_INET6, raw, text, sizeof(text)))
                return -errno;
        return strv_extend(l, text);
}

/* Walks the subjectAltName extension. Kinds we do not authorize on (email,
 * otherName, directoryName, ...) are skipped. */
static int collect_sans(gnutls_x509_crt_t crt, PeerIdentity *id) {
        for (unsigned seq = 0;; seq++) {
                _cleanup_free_ char *buf = NULL;
                size_t size = 0;
                int type, r;

                type = gnutls_x509_crt_get_subject_alt_name(crt, seq, NULL, &size, NULL);
                if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        return 0;
                if (type != GNUTLS_E_SHORT_MEMORY_BUFFER && type < 0)
                        return gnutls_to_errno(type);

                buf = malloc(size + 1);
                if (!buf)
                        return -ENOMEM;
                type = gnutls_x509_crt_get_subject_alt_name(crt, seq, buf, &size, NULL);
                if (type < 0)
                        return gnutls_to_errno(type);
                buf[size] = '\0';

                switch (type) {
                case GNUTLS_SAN_DNSNAME:
                case GNUTLS_SAN_URI:
                        if (memchr(buf, '\0', size))
                                return -EBADMSG;
                        r = strv_extend(type == GNUTLS_SAN_DNSNAME ? &id->dns : &id->uris, buf);
                        break;
                case GNUTLS_SAN_IPADDRESS:
                        r = append_ip(&id->ips, (const unsigned char *) buf, size);
                        break;
                default:
                        r = 0;
                }
                if (r < 0)
                        return r;
        }
}

int peer_identity_from_x509(gnutls_x509_crt_t crt, PeerIdentity *ret) {
        _cleanup_(peer_identity_done) PeerIdentity id = {};
        int r;

        if (!crt || !ret)
                return -EINVAL;

        /* With several CNs the last one counts, as in Go's
         * pkix.Name.CommonName, which Ghostunnel compares: a certificate
         * "CN=allowed" followed by "CN=other" is "other" there, and so here. */
        for (unsigned i = 0;; i++) {
                _cleanup_free_ char *cn = NULL;

                r = dn_get(crt, GNUTLS_OID_X520_COMMON_NAME, i, &cn);
                if (r == -ENODATA)
                        break;
                if (r < 0)
                        return r;
                free(id.cn);
                id.cn = TAKE_PTR(cn);
        }

        for (unsigned i = 0;; i++) {
                _cleanup_free_ char *ou = NULL;

                r = dn_get(crt, GNUTLS_OID_X520_ORGANIZATIONAL_UNIT_NAME, i, &ou);
                if (r == -ENODATA)
                        break;
                if (r < 0)
                        return r;
                r = strv_extend(&id.ous, ou);
                if (r < 0)
                        return r;
        }

        r = collect_sans(crt, &id);
        if (r < 0)
                return r;

        *ret = id;
        id = (PeerIdentity) {};
        return 0;
}

static bool segment_is(const char *seg, size_t n, const char *lit) {
        return strlen(lit) == n && memcmp(seg, lit, n) == 0;
}

/* Length without one trailing '/', which is optional on both sides. */
static size_t trimmed_length(const char *s) {
        size_t n = strlen(s);
        return n > 0 && s[n - 1] == '/' ? n - 1 : n;
}

/* The segment starting at s, ending at the next '/' or at end. Returns the
 * slash, or NULL for the last segment. */
static const char *segment(const char *s, const char *end, size_t *ret_len) {
        const char *slash = memchr(s, '/', (size_t) (end - s));

        *ret_len = (size_t) ((slash ? slash : end) - s);
        return slash;
}

bool uri_pattern_valid(const char *pattern) {
        const char *s, *end;

        if (!pattern || pattern[0] == '\0')
                return false;

        s = pattern;
        end = pattern + trimmed_length(pattern);
        for (;;) {
                size_t n;
                const char *slash = segment(s, end, &n);

                if (!slash)
                        return true;
                if (segment_is(s, n, "**"))
                        return false;
                s = slash + 1;
        }
}

/* Segment by segment rather than through a regex, so that the pattern
 * spiffe://x/<**> matches "spiffe://x" and "spiffe://x/a/b" but not
 * "spiffe://xy", which Ghostunnel's generated regex does. */
bool uri_pattern_match(const char *pattern, const char *uri) {
        const char *ps, *pend, *us, *uend;

        if (!uri || !uri_pattern_valid(pattern))
                return false;

        ps = pattern;
        pend = pattern + trimmed_length(pattern);
        us = uri;
        uend = uri + trimmed_length(uri);
        for (;;) {
                size_t pn, un;
                const char *pslash = segment(ps, pend, &pn);
                const char *uslash = segment(us, uend, &un);

                /* A final "**" takes whatever is left, even nothing more. */
                if (!pslash && segment_is(ps, pn, "**"))
                        return true;

                if (segment_is(ps, pn, "*") ? un == 0 : pn != un || memcmp(ps, us, pn) != 0)
                        return false;

                if (!pslash && !uslash)
                        return true;
                if (!pslash)
                        return false; /* the URI has more segments */
                if (!uslash)          /* a/b/<**> matches "a/b" */
                        return segment_is(pslash + 1, (size_t) (pend - pslash - 1), "**");

                ps = pslash + 1;
                us = uslash + 1;
        }
}

/* IPs compare as 16-byte IPv6, IPv4 as ::ffff:a.b.c.d, so that every textual
 * form of one address is equal (Go's net.IP.Equal). */
static bool ip_parse_normalized(const char *s, struct in6_addr *ret) {
        struct in_addr v4;

        if (inet_pton(AF_INET6, s, ret) == 1)
                return true;
        if (inet_pton(AF_INET, s, &v4) != 1)
                return false;
        *ret = (struct in6_addr) {};
        ret->s6_addr[10] = 0xff;
        ret->s6_addr[11] = 0xff;
        memcpy(&ret->s6_addr[12], &v4, 4);
        return true;
}

static bool ip_in_list(char * const *allowed, const char *ip) {
        struct in6_addr a, b;

        if (!ip_parse_normalized(ip, &a))
                return false;
        STRV_FOREACH(s, allowed)
                if (ip_parse_normalized(*s, &b) && memcmp(&a, &b, sizeof(a)) == 0)
                        return true;
        return false;
}

static bool any_in_list(char * const *allowed, char * const *values) {
        STRV_FOREACH(v, values)
                if (strv_contains(allowed, *v))
                        return true;
        return false;
}

static AuthzResult allow(const char **ret_rule, const char *rule) {
        if (ret_rule)
                *ret_rule = rule;
        return AUTHZ_ALLOW;
}

void access_rules_done(AccessRules *a) {
        if (!a)
                return;
        strv_free(a->allow_cn);
        strv_free(a->allow_ou);
        strv_free(a->allow_dns);
        strv_free(a->allow_ip);
        strv_free(a->allow_uri);
        strv_free(a->allow_spki_pin);
        *a = (AccessRules) {};
}

static int strv_copy_into(char * const *from, char ***to) {
        STRV_FOREACH(s, from)
                if (strv_extend(to, *s) < 0)
                        return -ENOMEM;
        return 0;
}

int access_rules_copy(const AccessRules *a, AccessRules **ret) {
        _cleanup_(access_rules_freep) AccessRules *copy = NULL;

        assert(a);
        assert(ret);

        copy = calloc(1, sizeof *copy);
        if (!copy)
                return -ENOMEM;
        copy->allow_all = a->allow_all;
        copy->disable_authentication = a->disable_authentication;
        if (strv_copy_into(a->allow_cn, &copy->allow_cn) < 0 ||
            strv_copy_into(a->allow_ou, &copy->allow_ou) < 0 ||
            strv_copy_into(a->allow_dns, &copy->allow_dns) < 0 ||
            strv_copy_into(a->allow_ip, &copy->allow_ip) < 0 ||
            strv_copy_into(a->allow_uri, &copy->allow_uri) < 0 ||
            strv_copy_into(a->allow_spki_pin, &copy->allow_spki_pin) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(copy);
        return 0;
}

AccessRules *access_rules_free(AccessRules *a) {
        access_rules_done(a);
        free(a);
        return NULL;
}

AuthzResult authz_check(const AccessRules *c, const PeerIdentity *id, const char **ret_rule) {
        if (!c)
                return AUTHZ_DENY;

        if (c->disable_authentication)
                return allow(ret_rule, "disable-authentication");
        if (c->allow_all)
                return allow(ret_rule, "allow-all");
        if (!id)
                return AUTHZ_DENY;

        if (id->cn && strv_contains(c->allow_cn, id->cn))
                return allow(ret_rule, "allow-cn");
        if (any_in_list(c->allow_ou, id->ous))
                return allow(ret_rule, "allow-ou");
        if (any_in_list(c->allow_dns, id->dns))
                return allow(ret_rule, "allow-dns");
        STRV_FOREACH(ip, id->ips)
                if (ip_in_list(c->allow_ip, *ip))
                        return allow(ret_rule, "allow-ip");
        STRV_FOREACH(pattern, c->allow_uri)
                STRV_FOREACH(uri, id->uris)
                        if (uri_pattern_match(*pattern, *uri))
                                return allow(ret_rule, "allow-uri");

        return AUTHZ_DENY;
}

static const struct {
        const char *name;
        gnutls_digest_algorithm_t algorithm;
} pin_algorithms[] = {
        { "sha256", GNUTLS_DIG_SHA256 },
        { "sha384", GNUTLS_DIG_SHA384 },
        { "sha512", GNUTLS_DIG_SHA512 },
};

int spki_pin_parse(const char *flag, const char *text, SpkiPin *ret, char **ret_error) {
        gnutls_datum_t encoded, raw = {};
        const char *colon, *b64;
        size_t i, n;
        unsigned size;
        int r;

        assert(flag);
        assert(text);
        assert(ret);

        colon = strchr(text, ':');
        if (!colon)
                return error_set(ret_error, -EINVAL,
                                 _("--%s: \"%s\" is not ALGO:BASE64 (such as sha256:BASE64)"), flag,
                                 text);
        n = (size_t) (colon - text);
        for (i = 0; i < ELEMENTSOF(pin_algorithms); i++)
                if (strlen(pin_algorithms[i].name) == n &&
                    strncasecmp(pin_algorithms[i].name, text, n) == 0)
                        break;
        if (i >= ELEMENTSOF(pin_algorithms))
                return error_set(ret_error, -EINVAL,
                                 _("--%s: \"%s\": unknown digest algorithm \"%.*s\" (use sha256, "
                                   "sha384 or sha512)"),
                                 flag, text, (int) n, text);

        /* GnuTLS's decoder skips blanks and line breaks and ends at a '-'
         * (where a PEM footer starts), dropping the rest; Go's, which
         * Ghostunnel uses, refuses both: a pin is one word of the standard
         * alphabet and its padding, and GnuTLS decodes it. */
        b64 = colon + 1;
        if (b64[strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")] !=
            '\0')
                r = GNUTLS_E_BASE64_DECODING_ERROR;
        else {
                encoded = (gnutls_datum_t) { (unsigned char *) b64, (unsigned) strlen(b64) };
                r = gnutls_base64_decode2(&encoded, &raw);
        }
        if (r == GNUTLS_E_MEMORY_ERROR)
                return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
        if (r < 0)
                return error_set(ret_error, -EINVAL,
                                 _("--%s: \"%s\": the digest is not base64 (the standard alphabet, "
                                   "padded with '=')"),
                                 flag, text);

        size = gnutls_hash_get_len(pin_algorithms[i].algorithm);
        if (raw.size != size || size > SPKI_PIN_DIGEST_MAX) {
                unsigned got = raw.size;

                gnutls_free(raw.data);
                return error_set(ret_error, -EINVAL,
                                 _("--%s: \"%s\": a %s digest has %u bytes, not %u"), flag,
                                 text, pin_algorithms[i].name, size, got);
        }

        *ret = (SpkiPin) {
                .algorithm = pin_algorithms[i].algorithm,
                .size = size,
        };
        memcpy(ret->digest, raw.data, size);
        gnutls_free(raw.data);
        return 0;
}

/* The DER SubjectPublicKeyInfo of the leaf's key. GnuTLS writes it anew
 * from the parsed key; DER being canonical, these are the certificate's own
 * bytes for every key type GnuTLS reads. */
static int leaf_spki(gnutls_x509_crt_t leaf, gnutls_datum_t *ret) {
        gnutls_pubkey_t key = NULL;
        int r;

        r = gnutls_pubkey_init(&key);
        if (r < 0)
                return gnutls_to_errno(r);
        r = gnutls_pubkey_import_x509(key, leaf, 0);
        if (r >= 0)
                r = gnutls_pubkey_export2(key, GNUTLS_X509_FMT_DER, ret);
        gnutls_pubkey_deinit(key);
        return r < 0 ? gnutls_to_errno(r) : 0;
}

int spki_pins_match(const SpkiPin *pins, size_t n, gnutls_x509_crt_t leaf) {
        gnutls_datum_t spki = {};
        int r;

        assert(pins || n == 0);
        assert(leaf);

        r = leaf_spki(leaf, &spki);
        if (r < 0)
                return r;

        /* Each pin is hashed with its own algorithm. The pins are
         * configuration, not secrets: only the comparison of one digest is
         * constant-time, the scan stops at the first match. */
        r = 0;
        for (size_t i = 0; i < n && r == 0; i++) {
                uint8_t digest[SPKI_PIN_DIGEST_MAX];

                if (pins[i].size != gnutls_hash_get_len(pins[i].algorithm) ||
                    gnutls_hash_fast(pins[i].algorithm, spki.data, spki.size, digest) < 0)
                        r = -EINVAL;
                else if (gnutls_memcmp(digest, pins[i].digest, pins[i].size) == 0)
                        r = 1;
        }
        gnutls_free(spki.data);
        return r;
}
