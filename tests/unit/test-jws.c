/* SPDX-License-Identifier: MIT */
/* base64url, JWK thumbprints, key authorizations and ES256 JWS, checked
 * against RFC test vectors, values computed outside tlsgate, and GnuTLS's
 * own signature verification. */

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdlib.h>

#include "jws.h"
#include "test-util.h"

/* RFC 7515 Appendix A.3 (and RFC 7517 Appendix A.1): the ES256 example key. */
DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

#define RFC_X "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
#define RFC_Y "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
#define RFC_D "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"

/* Computed without tlsgate, by
 *   /usr/bin/python3 -c 'import hashlib, base64, json
 *   j = json.dumps({"crv": "P-256", "kty": "EC", "x": X, "y": Y},
 *                  separators=(",", ":"), sort_keys=True)
 *   print(base64.urlsafe_b64encode(hashlib.sha256(j.encode()).digest()).rstrip(b"=").decode())'
 * with X and Y as above. */
#define RFC_THUMBPRINT "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"

/* The token of the RFC 8555 section 8.3 example; key authorization with the
 * key above, and its SHA-256 from python3's hashlib.sha256(ka).hexdigest(). */
#define TOKEN "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
#define TOKEN_KEY_AUTHZ TOKEN "." RFC_THUMBPRINT
#define TOKEN_DIGEST "65a26016d215e16034b7633337b91b4a4d2c7d17761998dac51a9a49300aea52"

/* The RFC 7515 A.3 key as written by python3-cryptography (OpenSSL): SEC1,
 * PKCS#8, and SEC1 with the public point of another key (scalar 12345). */
static const char rfc_sec1_pem[] =
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEII6bEJ5xkJi/mASH3x9dd+nLKWBuvtImO19XwhPfhPSyoAoGCCqGSM49\n"
        "AwEHoUQDQgAEf83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEXH8UTNG72b\n"
        "focs3+257rn0s2ldbqkLJK2KRiMohYjlrQ==\n"
        "-----END EC PRIVATE KEY-----\n";
static const char rfc_pkcs8_pem[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjpsQnnGQmL+YBIff\n"
        "H1136cspYG6+0iY7X1fCE9+E9LKhRANCAAR/zc4ncPbEXUGDy+5v20t7WAczNXvp\n"
        "7xO6z248e9FURcfxRM0bvZt+hyzf7bnuufSzaV1uqQskrYpGIyiFiOWt\n"
        "-----END PRIVATE KEY-----\n";
static const char mismatched_sec1_pem[] =
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEII6bEJ5xkJi/mASH3x9dd+nLKWBuvtImO19XwhPfhPSyoAoGCCqGSM49\n"
        "AwEHoUQDQgAEJu/OvQ7p40pmkYfhizqRIrL3M5RbZJzJ+fkh6fna2BKQI4venMe7\n"
        "Mw0VDGdwTdJa5wVSBXRLbzG/QHB0WHLQ5g==\n"
        "-----END EC PRIVATE KEY-----\n";

static void die(const char *what, int r) {
        fprintf(stderr, "%s: %s\n", what, r < 0 ? gnutls_strerror(r) : "failed");
        exit(EXIT_FAILURE);
}

static void *b64d(const char *s, size_t *ret_n) {
        void *p;

        if (base64url_decode(s, &p, ret_n) < 0)
                die(s, 0);
        return p;
}

static gnutls_privkey_t rfc_key(void) {
        gnutls_privkey_t key;
        gnutls_datum_t x, y, d;
        size_t n;
        int r;

        x.data = b64d(RFC_X, &n), x.size = n;
        y.data = b64d(RFC_Y, &n), y.size = n;
        d.data = b64d(RFC_D, &n), d.size = n;
        if ((r = gnutls_privkey_init(&key)) < 0 ||
            (r = gnutls_privkey_import_ecc_raw(key, GNUTLS_ECC_CURVE_SECP256R1, &x, &y, &d)) < 0)
                die("import_ecc_raw", r);
        free(x.data);
        free(y.data);
        free(d.data);
        return key;
}

static gnutls_privkey_t generate(gnutls_pk_algorithm_t pk, unsigned bits) {
        gnutls_privkey_t key;
        int r;

        if ((r = gnutls_privkey_init(&key)) < 0 ||
            (r = gnutls_privkey_generate2(key, pk, bits, 0, NULL, 0)) < 0)
                die("generate", r);
        return key;
}

static gnutls_privkey_t generate_ec(gnutls_ecc_curve_t curve) {
        return generate(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(curve));
}

static char *key_pem(gnutls_privkey_t key, bool pkcs8, const char *password) {
        gnutls_x509_privkey_t xkey;
        gnutls_datum_t out = {};
        char *s;
        int r;

        if ((r = gnutls_privkey_export_x509(key, &xkey)) < 0)
                die("export_x509", r);
        if (pkcs8)
                r = gnutls_x509_privkey_export2_pkcs8(xkey, GNUTLS_X509_FMT_PEM, password,
                                                      password ? GNUTLS_PKCS_PBES2_AES_256
                                                               : GNUTLS_PKCS_PLAIN,
                                                      &out);
        else
                r = gnutls_x509_privkey_export2(xkey, GNUTLS_X509_FMT_PEM, &out);
        if (r < 0)
                die("export2", r);
        s = strndup((const char *) out.data, out.size);
        gnutls_free(out.data);
        gnutls_x509_privkey_deinit(xkey);
        return s;
}

static char *thumbprint(gnutls_privkey_t key) {
        char *t = NULL;

        if (jwk_thumbprint(key, &t) < 0)
                return NULL;
        return t;
}

#define B64URL_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

/* RFC 4648 section 10, in the url-safe alphabet without padding. */
static void test_base64url_vectors(void) {
        static const struct {
                const char *plain, *encoded;
        } v[] = {
                { "", "" },           { "f", "Zg" },          { "fo", "Zm8" },
                { "foo", "Zm9v" },    { "foob", "Zm9vYg" },   { "fooba", "Zm9vYmE" },
                { "foobar", "Zm9vYmFy" },
        };

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                _cleanup_free_ char *e = NULL;
                _cleanup_free_ void *d = NULL;
                size_t n = 4711;

                CHECK_INT_EQ(base64url_encode(v[i].plain, strlen(v[i].plain), &e), 0);
                CHECK_STR_EQ(e, v[i].encoded);
                CHECK_INT_EQ(base64url_decode(v[i].encoded, &d, &n), 0);
                CHECK_INT_EQ(n, strlen(v[i].plain));
                CHECK_STR_EQ(d, v[i].plain); /* decode NUL-terminates */
        }
}

static void test_base64url_binary(void) {
        /* 111110 111111 111110 111111: "+/+/" in standard base64. */
        static const uint8_t dash_underscore[] = { 0xfb, 0xff, 0xbf };
        /* 111111 111110 0000(00): "/+A=". */
        static const uint8_t tail[] = { 0xff, 0xe0 };
        uint8_t all[256], big[3000];
        _cleanup_free_ char *e1 = NULL, *e2 = NULL, *e3 = NULL;
        _cleanup_free_ void *d1 = NULL, *d3 = NULL;
        size_t n;

        CHECK_INT_EQ(base64url_encode(dash_underscore, sizeof dash_underscore, &e1), 0);
        CHECK_STR_EQ(e1, "-_-_");
        CHECK_INT_EQ(base64url_decode("-_-_", &d1, &n), 0);
        CHECK(n == sizeof dash_underscore && memcmp(d1, dash_underscore, n) == 0);
        CHECK_INT_EQ(base64url_encode(tail, sizeof tail, &e2), 0);
        CHECK_STR_EQ(e2, "_-A");

        /* Every byte value, and every length up to 3000: no line breaks, no
         * padding, only the url-safe alphabet, and back again. */
        for (unsigned i = 0; i < 256; i++)
                all[i] = (uint8_t) i;
        CHECK_INT_EQ(base64url_encode(all, sizeof all, &e3), 0);
        CHECK(e3 && strspn(e3, B64URL_ALPHABET) == strlen(e3));
        CHECK_INT_EQ(base64url_decode(e3, &d3, &n), 0);
        CHECK(n == sizeof all && memcmp(d3, all, n) == 0);

        srand(7);
        for (size_t i = 0; i < sizeof big; i++)
                big[i] = (uint8_t) rand();
        bool ok = true;
        for (size_t len = 0; len <= sizeof big; len += len < 64 ? 1 : 61) {
                _cleanup_free_ char *e = NULL;
                _cleanup_free_ void *d = NULL;

                if (base64url_encode(big, len, &e) < 0 || strlen(e) != (len * 4 + 2) / 3 ||
                    strpbrk(e, "+/=\n") || base64url_decode(e, &d, &n) < 0 || n != len ||
                    memcmp(d, big, len) != 0) {
                        fprintf(stderr, "round trip of %zu bytes failed\n", len);
                        ok = false;
                }
        }
        CHECK(ok);
}

static void test_base64url_reject(void) {
        static const char *bad[] = {
                "Zg==", /* padding */
                "Zm9v\n", "Zm 9v", "Zm+v", "Zm/v", "Zm9v.", "Zm\xc3\xa9", /* alphabet */
                "Z", "Zm9vY", /* a lone 6-bit group */
                "Zh", "Zm9", /* non-zero bits after the last byte */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                void *d = NULL;
                size_t n = 4711;

                CHECK_INT_EQ(base64url_decode(bad[i], &d, &n), -EINVAL);
                CHECK(d == NULL && n == 4711);
        }
        CHECK_INT_EQ(base64url_decode(NULL, &(void *) { NULL }, &(size_t) { 0 }), -EINVAL);
}

/* RFC 7515 A.3's own signature verifies with the r || s to DER conversion
 * used below: the key is imported right and the convention is r first. */
static bool verify_raw(gnutls_privkey_t key, const char *input, const uint8_t *sig, size_t n) {
        gnutls_pubkey_t pub;
        gnutls_datum_t der = {};
        bool ok = false;

        if (n != 64 || gnutls_pubkey_init(&pub) < 0)
                return false;
        if (gnutls_pubkey_import_privkey(pub, key, 0, 0) >= 0 &&
            gnutls_encode_rs_value(&der, &(gnutls_datum_t) { (void *) sig, 32 },
                                   &(gnutls_datum_t) { (void *) (sig + 32), 32 }) >= 0)
                ok = gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_ECDSA_SHA256, 0,
                                                &(gnutls_datum_t) { (void *) input,
                                                                    (unsigned) strlen(input) },
                                                &der) >= 0;
        gnutls_free(der.data);
        gnutls_pubkey_deinit(pub);
        return ok;
}

static void test_rfc_key(void) {
        static const char input[] =
                "eyJhbGciOiJFUzI1NiJ9"
                "."
                "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
                "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        static const char sig64[] =
                "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA"
                "pmWQxfKTUJqPP3-Kg6NU1Q";
        gnutls_privkey_t key = rfc_key();
        _cleanup_(json_object_putp) json_object *jwk = NULL;
        _cleanup_free_ char *t = NULL, *ka = NULL;
        _cleanup_free_ void *sig = NULL;
        uint8_t digest[32], expected[32];
        size_t n;

        sig = b64d(sig64, &n);
        CHECK(verify_raw(key, input, sig, n));
        ((uint8_t *) sig)[10] ^= 1;
        CHECK(!verify_raw(key, input, sig, n));

        CHECK_INT_EQ(jwk_from_key(key, &jwk), 0);
        CHECK_STR_EQ(json_object_to_json_string_ext(jwk, JSON_C_TO_STRING_PLAIN),
                     "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"" RFC_X "\",\"y\":\"" RFC_Y "\"}");
        CHECK_INT_EQ(jwk_thumbprint(key, &t), 0);
        CHECK_STR_EQ(t, RFC_THUMBPRINT);

        CHECK_INT_EQ(acme_key_authorization(TOKEN, key, &ka), 0);
        CHECK_STR_EQ(ka, TOKEN_KEY_AUTHZ);
        CHECK_INT_EQ(acme_tls_alpn_digest(TOKEN_KEY_AUTHZ, digest), 0);
        for (size_t i = 0; i < 32; i++)
                expected[i] = (uint8_t) strtoul((char[]) { TOKEN_DIGEST[2 * i],
                                                           TOKEN_DIGEST[2 * i + 1], 0 },
                                                NULL, 16);
        CHECK(memcmp(digest, expected, 32) == 0);

        gnutls_privkey_deinit(key);
}

static void test_key_authorization_reject(void) {
        gnutls_privkey_t key = rfc_key();
        char long_token[ACME_TOKEN_MAX + 2];
        char *ka = NULL;
        uint8_t digest[32];

        CHECK_INT_EQ(acme_key_authorization("", key, &ka), -EINVAL);
        CHECK_INT_EQ(acme_key_authorization(NULL, key, &ka), -EINVAL);
        CHECK_INT_EQ(acme_key_authorization("abc.def", key, &ka), -EINVAL);
        CHECK_INT_EQ(acme_key_authorization("../../etc", key, &ka), -EINVAL);
        CHECK_INT_EQ(acme_key_authorization("abc def", key, &ka), -EINVAL);
        CHECK_INT_EQ(acme_key_authorization("abc=", key, &ka), -EINVAL);
        memset(long_token, 'A', sizeof long_token - 1);
        long_token[sizeof long_token - 1] = '\0';
        CHECK_INT_EQ(acme_key_authorization(long_token, key, &ka), -EINVAL);
        CHECK(ka == NULL);
        long_token[ACME_TOKEN_MAX] = '\0';
        CHECK_INT_EQ(acme_key_authorization(long_token, key, &ka), 0);
        CHECK(ka && strlen(ka) == ACME_TOKEN_MAX + 1 + strlen(RFC_THUMBPRINT));
        free(ka);

        CHECK_INT_EQ(acme_tls_alpn_digest("", digest), -EINVAL);
        CHECK_INT_EQ(acme_tls_alpn_digest(NULL, digest), -EINVAL);
        gnutls_privkey_deinit(key);
}

static size_t object_length(json_object *o) {
        return json_object_is_type(o, json_type_object) ? (size_t) json_object_object_length(o) : 0;
}

static const char *get_string(json_object *o, const char *name) {
        json_object *v;

        if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* Parses a flattened JWS; returns its protected header (decoded, parsed)
 * and decoded payload. */
typedef struct Jws {
        json_object *body, *header;
        char *header_text, *payload, *input;
        uint8_t *sig;
        size_t sig_len;
} Jws;

static void jws_done(Jws *j) {
        json_object_put(j->body);
        json_object_put(j->header);
        free(j->header_text);
        free(j->payload);
        free(j->input);
        free(j->sig);
        *j = (Jws) {};
}

static bool jws_parse(const char *text, Jws *ret) {
        const char *p, *pl, *s;
        size_t n;
        Jws j = {};

        j.body = json_tokener_parse(text);
        if (!j.body || object_length(j.body) != 3)
                goto fail;
        p = get_string(j.body, "protected");
        pl = get_string(j.body, "payload");
        s = get_string(j.body, "signature");
        if (!p || !pl || !s)
                goto fail;
        if (base64url_decode(p, (void **) &j.header_text, &n) < 0 ||
            base64url_decode(pl, (void **) &j.payload, &n) < 0 ||
            base64url_decode(s, (void **) &j.sig, &j.sig_len) < 0)
                goto fail;
        j.header = json_tokener_parse(j.header_text);
        if (!j.header || asprintf(&j.input, "%s.%s", p, pl) < 0)
                goto fail;
        *ret = j;
        return true;
fail:
        jws_done(&j);
        return false;
}

static void test_jws_jwk(void) {
        static const char url[] = "https://127.0.0.1:14000/sign-me-up";
        static const char payload[] = "{\"termsOfServiceAgreed\":true,\"contact\":[]}";
        gnutls_privkey_t key = rfc_key();
        _cleanup_(json_object_putp) json_object *expected_jwk = NULL;
        _cleanup_free_ char *body = NULL;
        json_object *jwk;
        Jws j = {};

        CHECK_INT_EQ(jws_sign(key, NULL, "nonce-1", url, payload, &body), 0);
        if (!CHECK(body && jws_parse(body, &j)))
                goto finish;

        CHECK_INT_EQ(object_length(j.header), 4);
        CHECK_STR_EQ(get_string(j.header, "alg"), "ES256");
        CHECK_STR_EQ(get_string(j.header, "nonce"), "nonce-1");
        CHECK_STR_EQ(get_string(j.header, "url"), url);
        CHECK(!json_object_object_get_ex(j.header, "kid", NULL));
        CHECK(!strstr(j.header_text, "\\/"));
        CHECK(json_object_object_get_ex(j.header, "jwk", &jwk));
        CHECK_INT_EQ(jwk_from_key(key, &expected_jwk), 0);
        CHECK(json_object_equal(jwk, expected_jwk));
        CHECK_INT_EQ(object_length(jwk), 4);

        CHECK_STR_EQ(j.payload, payload);
        CHECK_INT_EQ(j.sig_len, 64);
        CHECK(verify_raw(key, j.input, j.sig, j.sig_len));

        /* The same signature over another payload must not verify. */
        {
                _cleanup_free_ char *other = NULL, *tampered = NULL;
                const char *dot = strchr(j.input, '.');

                CHECK_INT_EQ(base64url_encode("{\"termsOfServiceAgreed\":false}", 30, &other), 0);
                CHECK(asprintf(&tampered, "%.*s.%s", (int) (dot - j.input), j.input, other) > 0);
                CHECK(!verify_raw(key, tampered, j.sig, j.sig_len));
                j.sig[63] ^= 0x80;
                CHECK(!verify_raw(key, j.input, j.sig, j.sig_len));
        }
finish:
        jws_done(&j);
        gnutls_privkey_deinit(key);
}

static void test_jws_kid(void) {
        static const char kid[] = "https://127.0.0.1:14000/my-account/1";
        static const char url[] = "https://127.0.0.1:14000/list-orderz/1";
        gnutls_privkey_t key = rfc_key();
        const char *payloads[] = { NULL, "", "{}" };

        for (size_t i = 0; i < ELEMENTSOF(payloads); i++) {
                _cleanup_free_ char *body = NULL;
                Jws j = {};

                CHECK_INT_EQ(jws_sign(key, kid, "bm9uY2U", url, payloads[i], &body), 0);
                if (!CHECK(body && jws_parse(body, &j)))
                        continue;
                CHECK_INT_EQ(object_length(j.header), 4);
                CHECK_STR_EQ(get_string(j.header, "alg"), "ES256");
                CHECK_STR_EQ(get_string(j.header, "kid"), kid);
                CHECK_STR_EQ(get_string(j.header, "nonce"), "bm9uY2U");
                CHECK_STR_EQ(get_string(j.header, "url"), url);
                CHECK(!json_object_object_get_ex(j.header, "jwk", NULL));
                /* POST-as-GET (RFC 8555 section 6.3): the payload is "". */
                if (i < 2)
                        CHECK_STR_EQ(get_string(j.body, "payload"), "");
                else
                        CHECK_STR_EQ(get_string(j.body, "payload"), "e30");
                CHECK_INT_EQ(j.sig_len, 64);
                CHECK(verify_raw(key, j.input, j.sig, j.sig_len));
                jws_done(&j);
        }
        gnutls_privkey_deinit(key);
}

static void test_jws_reject(void) {
        gnutls_privkey_t key = rfc_key(), p384 = generate_ec(GNUTLS_ECC_CURVE_SECP384R1);
        char *body = NULL;

        CHECK_INT_EQ(jws_sign(key, NULL, NULL, "https://a/", "", &body), -EINVAL);
        CHECK_INT_EQ(jws_sign(key, NULL, "", "https://a/", "", &body), -EINVAL);
        CHECK_INT_EQ(jws_sign(key, NULL, "n", NULL, "", &body), -EINVAL);
        CHECK_INT_EQ(jws_sign(key, NULL, "n", "", "", &body), -EINVAL);
        CHECK_INT_EQ(jws_sign(key, "", "n", "https://a/", "", &body), -EINVAL);
        CHECK_INT_EQ(jws_sign(NULL, NULL, "n", "https://a/", "", &body), -EINVAL);
        CHECK_INT_EQ(jws_sign(p384, NULL, "n", "https://a/", "", &body), -EINVAL);
        CHECK_INT_EQ(jws_sign(p384, "https://a/acct/1", "n", "https://a/", "", &body), -EINVAL);
        CHECK(body == NULL);
        gnutls_privkey_deinit(key);
        gnutls_privkey_deinit(p384);
}

/* GnuTLS gives integers as their minimal big-endian bytes, plus a 0x00 if
 * the top bit is set: a value at or above 2^255 comes as 33 bytes, one
 * below 2^247 as 31 or fewer. Both must become exactly 32 bytes. A short
 * coordinate or r, s has a chance of about 1/256 per key or signature, so
 * loop until one is seen. */
static bool needs_padding(const uint8_t *be32) {
        return be32[0] == 0 && be32[1] < 0x80;
}

/* be32 is d, left-padded with zeros to 32 bytes. */
static bool padded_equal(const uint8_t *be32, const gnutls_datum_t *d) {
        for (size_t i = 0; i + d->size < 32; i++)
                if (be32[i] != 0)
                        return false;
        return d->size <= 32 && memcmp(be32 + 32 - d->size, d->data, d->size) == 0;
}

static void test_padding(void) {
        gnutls_privkey_t key = NULL;
        bool short_coord = false, short_sig = false, all_ok = true;

        for (unsigned i = 0; i < 20000 && !short_coord; i++) {
                _cleanup_(json_object_putp) json_object *jwk = NULL;
                _cleanup_free_ void *x = NULL, *y = NULL;
                gnutls_pubkey_t pub = NULL;
                gnutls_datum_t px = {}, py = {};
                size_t nx = 0, ny = 0;

                gnutls_privkey_deinit(key);
                key = NULL;
                if (acme_key_generate(&key) < 0 || jwk_from_key(key, &jwk) < 0 ||
                    base64url_decode(get_string(jwk, "x"), &x, &nx) < 0 ||
                    base64url_decode(get_string(jwk, "y"), &y, &ny) < 0 || nx != 32 || ny != 32) {
                        all_ok = false;
                        break;
                }
                if (!needs_padding(x) && !needs_padding(y))
                        continue;
                short_coord = true;

                /* The padded point is still this key's public key. */
                if (gnutls_pubkey_init(&pub) < 0 ||
                    gnutls_pubkey_import_privkey(pub, key, 0, 0) < 0 ||
                    gnutls_pubkey_export_ecc_raw2(pub, NULL, &px, &py,
                                                  GNUTLS_EXPORT_FLAG_NO_LZ) < 0)
                        all_ok = false;
                else {
                        CHECK(padded_equal(x, &px));
                        CHECK(padded_equal(y, &py));
                }
                gnutls_free(px.data);
                gnutls_free(py.data);
                gnutls_pubkey_deinit(pub);
        }
        CHECK(all_ok);
        CHECK(short_coord);

        for (unsigned i = 0; i < 20000 && !short_sig && key; i++) {
                _cleanup_free_ char *body = NULL;
                Jws j = {};

                if (jws_sign(key, "kid", "n", "https://a/", "{}", &body) < 0 ||
                    !jws_parse(body, &j) || !verify_raw(key, j.input, j.sig, j.sig_len)) {
                        all_ok = false;
                        jws_done(&j);
                        break;
                }
                short_sig = needs_padding(j.sig) || needs_padding(j.sig + 32);
                jws_done(&j);
        }
        CHECK(all_ok);
        CHECK(short_sig);
        gnutls_privkey_deinit(key);
}

static void test_pem_round_trip(void) {
        gnutls_privkey_t key = NULL, back = NULL, back8 = NULL;
        _cleanup_(acme_key_pem_freep) char *pem = NULL;
        _cleanup_free_ char *t1 = NULL, *t2 = NULL, *t3 = NULL, *pkcs8 = NULL, *exact = NULL;
        unsigned bits = 0;

        CHECK_INT_EQ(acme_key_generate(&key), 0);
        CHECK_INT_EQ(gnutls_privkey_get_pk_algorithm(key, &bits), GNUTLS_PK_ECDSA);
        CHECK_INT_EQ(bits, 256);

        CHECK_INT_EQ(acme_key_to_pem(key, &pem), 0);
        CHECK(pem && startswith(pem, "-----BEGIN EC PRIVATE KEY-----\n"));
        CHECK(pem && strstr(pem, "-----END EC PRIVATE KEY-----"));

        /* Not NUL-terminated: ASan would see a read past the end. */
        exact = malloc(strlen(pem));
        memcpy(exact, pem, strlen(pem));
        CHECK_INT_EQ(acme_key_from_pem(exact, strlen(pem), &back), 0);
        t1 = thumbprint(key);
        t2 = thumbprint(back);
        CHECK(t1 && t2);
        CHECK_STR_EQ(t2, t1);

        pkcs8 = key_pem(key, true, NULL);
        CHECK(startswith(pkcs8, "-----BEGIN PRIVATE KEY-----\n"));
        CHECK_INT_EQ(acme_key_from_pem(pkcs8, strlen(pkcs8), &back8), 0);
        t3 = thumbprint(back8);
        CHECK_STR_EQ(t3, t1);

        /* The reloaded key signs, and verifies against the original. */
        {
                _cleanup_free_ char *body = NULL;
                Jws j = {};

                CHECK_INT_EQ(jws_sign(back, "kid", "n", "https://a/", "", &body), 0);
                CHECK(body && jws_parse(body, &j) && verify_raw(key, j.input, j.sig, j.sig_len));
                jws_done(&j);
        }

        gnutls_privkey_deinit(key);
        gnutls_privkey_deinit(back);
        gnutls_privkey_deinit(back8);
}

/* Keys written by OpenSSL, as other ACME clients leave them. */
static void test_pem_openssl(void) {
        const char *pems[] = { rfc_sec1_pem, rfc_pkcs8_pem };

        for (size_t i = 0; i < ELEMENTSOF(pems); i++) {
                gnutls_privkey_t key = NULL;
                _cleanup_free_ char *t = NULL;
                _cleanup_(acme_key_pem_freep) char *pem = NULL;

                CHECK_INT_EQ(acme_key_from_pem(pems[i], strlen(pems[i]), &key), 0);
                t = thumbprint(key);
                CHECK_STR_EQ(t, RFC_THUMBPRINT);
                /* Written back as SEC1, it reads as the same key. Not byte for
                 * byte: GnuTLS 3.7 writes the 32-byte scalar with a leading
                 * 0x00 when its top bit is set, which Go's and OpenSSL's
                 * parsers accept. */
                CHECK_INT_EQ(acme_key_to_pem(key, &pem), 0);
                CHECK(pem && startswith(pem, "-----BEGIN EC PRIVATE KEY-----\n"));
                gnutls_privkey_deinit(key);
                key = NULL;
                CHECK_INT_EQ(acme_key_from_pem(pem, strlen(pem), &key), 0);
                free(t);
                t = thumbprint(key);
                CHECK_STR_EQ(t, RFC_THUMBPRINT);
                gnutls_privkey_deinit(key);
        }
}

static void test_pem_reject(void) {
        gnutls_privkey_t p384 = generate_ec(GNUTLS_ECC_CURVE_SECP384R1);
        gnutls_privkey_t rsa = generate(GNUTLS_PK_RSA, 2048);
        gnutls_privkey_t ed = generate(GNUTLS_PK_EDDSA_ED25519,
                                       GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_ED25519));
        gnutls_privkey_t p256 = NULL, key = NULL;
        _cleanup_free_ char *p384_pem = key_pem(p384, false, NULL);
        _cleanup_free_ char *p384_pkcs8 = key_pem(p384, true, NULL);
        _cleanup_free_ char *rsa_pem = key_pem(rsa, false, NULL);
        _cleanup_free_ char *ed_pem = key_pem(ed, true, NULL);
        _cleanup_free_ char *encrypted = NULL;
        _cleanup_free_ char *thumb = NULL;
        json_object *jwk = NULL;
        char *out = NULL;

        CHECK(startswith(p384_pem, "-----BEGIN EC PRIVATE KEY-----"));
        CHECK_INT_EQ(acme_key_from_pem(p384_pem, strlen(p384_pem), &key), -EINVAL);
        CHECK_INT_EQ(acme_key_from_pem(p384_pkcs8, strlen(p384_pkcs8), &key), -EINVAL);
        CHECK_INT_EQ(acme_key_from_pem(rsa_pem, strlen(rsa_pem), &key), -EINVAL);
        CHECK_INT_EQ(acme_key_from_pem(ed_pem, strlen(ed_pem), &key), -EINVAL);

        CHECK_INT_EQ(acme_key_from_pem(mismatched_sec1_pem, strlen(mismatched_sec1_pem), &key),
                     -EBADMSG);
        CHECK_INT_EQ(acme_key_from_pem("hello", 5, &key), -EBADMSG);
        CHECK_INT_EQ(acme_key_from_pem("", 0, &key), -EBADMSG);
        CHECK_INT_EQ(acme_key_from_pem(NULL, 0, &key), -EBADMSG);
        /* Cut short. */
        CHECK_INT_EQ(acme_key_from_pem(rfc_sec1_pem, strlen(rfc_sec1_pem) / 2, &key), -EBADMSG);

        CHECK_INT_EQ(acme_key_generate(&p256), 0);
        encrypted = key_pem(p256, true, "secret");
        CHECK(startswith(encrypted, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        CHECK_INT_EQ(acme_key_from_pem(encrypted, strlen(encrypted), &key), -EBADMSG);
        CHECK(key == NULL);

        /* The other entry points refuse non-P-256 keys too. */
        CHECK_INT_EQ(acme_key_to_pem(p384, &out), -EINVAL);
        CHECK_INT_EQ(acme_key_to_pem(rsa, &out), -EINVAL);
        CHECK(out == NULL);
        CHECK_INT_EQ(jwk_from_key(p384, &jwk), -EINVAL);
        CHECK_INT_EQ(jwk_from_key(ed, &jwk), -EINVAL);
        CHECK_INT_EQ(jwk_thumbprint(rsa, &thumb), -EINVAL);
        CHECK(jwk == NULL && thumb == NULL);

        gnutls_privkey_deinit(p384);
        gnutls_privkey_deinit(rsa);
        gnutls_privkey_deinit(ed);
        gnutls_privkey_deinit(p256);
}

int main(void) {
        test_base64url_vectors();
        test_base64url_binary();
        test_base64url_reject();
        test_rfc_key();
        test_key_authorization_reject();
        test_jws_jwk();
        test_jws_kid();
        test_jws_reject();
        test_padding();
        test_pem_round_trip();
        test_pem_openssl();
        test_pem_reject();
        return test_summary();
}
