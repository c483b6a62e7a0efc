/* SPDX-License-Identifier: MIT */
/* ES256 JWS, JWK thumbprints and key authorizations for ACME (RFC 8555,
 * 7515, 7518, 7638, 8737). GnuTLS does all the cryptography and base64,
 * json-c all the JSON; this file only arranges the pieces. */

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>

#include "jws.h"

#define P256_BYTES 32
#define EC_PEM_HEADER "-----BEGIN EC PRIVATE KEY-----"

/* gnutls_datum_t sizes are unsigned int; stay well clear of that. */
#define B64_INPUT_MAX ((size_t) UINT32_MAX / 2)

/* json-c escapes '/' unless told not to; URLs in headers read better plain. */
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

DEFINE_TRIVIAL_CLEANUP_FUNC(gnutls_privkey_t, gnutls_privkey_deinit);
DEFINE_TRIVIAL_CLEANUP_FUNC(gnutls_x509_privkey_t, gnutls_x509_privkey_deinit);
DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

static void datum_freep(gnutls_datum_t *d) {
        gnutls_free(d->data);
        *d = (gnutls_datum_t) {};
}

/* For datums that held private key material. */
static void datum_erasep(gnutls_datum_t *d) {
        if (d->data)
                gnutls_memset(d->data, 0, d->size);
        datum_freep(d);
}

static int jws_errno(int r) {
        switch (r) {
        case GNUTLS_E_SUCCESS:
                return 0;
        case GNUTLS_E_MEMORY_ERROR:
                return -ENOMEM;
        default:
                return -EINVAL;
        }
}

char *acme_key_pem_free(char *pem) {
        if (pem) {
                gnutls_memset(pem, 0, strlen(pem));
                free(pem);
        }
        return NULL;
}

/* The 6-bit value of a base64url character, or -1. Used to validate input
 * before it goes to GnuTLS, which would accept the standard alphabet,
 * padding and line breaks too. */
static int b64url_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '-')
                return 62;
        if (c == '_')
                return 63;
        return -1;
}

int base64url_encode(const void *p, size_t n, char **ret) {
        _cleanup_(datum_freep) gnutls_datum_t b64 = {};
        gnutls_datum_t in = { .data = (void *) p, .size = (unsigned) n };
        char *s;
        size_t l;
        int r;

        if (!p && n > 0)
                return -EINVAL;
        if (n > B64_INPUT_MAX)
                return -E2BIG;
        if (n == 0) {
                s = strdup("");
                if (!s)
                        return -ENOMEM;
                *ret = s;
                return 0;
        }

        r = gnutls_base64_encode2(&in, &b64);
        if (r < 0)
                return jws_errno(r);

        /* RFC 4648 section 5: the url-safe alphabet, and (RFC 7515
         * section 2) no padding. */
        l = b64.size;
        while (l > 0 && (b64.data[l - 1] == '=' || b64.data[l - 1] == '\0'))
                l--;
        s = malloc(l + 1);
        if (!s)
                return -ENOMEM;
        /* GnuTLS encodes without line breaks; anything else would be a
         * change in GnuTLS we must not pass on. */
        for (size_t i = 0; i < l; i++) {
                char c = (char) b64.data[i];

                s[i] = c == '+' ? '-' : c == '/' ? '_' : c;
                if (b64url_value(s[i]) < 0) {
                        free(s);
                        return -EPROTO;
                }
        }
        s[l] = '\0';
        *ret = s;
        return 0;
}

int base64url_decode(const char *s, void **ret, size_t *ret_n) {
        _cleanup_(datum_freep) gnutls_datum_t raw = {};
        _cleanup_free_ char *std = NULL;
        uint8_t *out;
        size_t l, i;
        int r;

        if (!s)
                return -EINVAL;
        l = strlen(s);
        if (l > B64_INPUT_MAX)
                return -E2BIG;
        /* One character alone carries only 6 bits: never a valid length. */
        if (l % 4 == 1)
                return -EINVAL;

        std = malloc(l + 4);
        if (!std)
                return -ENOMEM;
        for (i = 0; i < l; i++) {
                if (b64url_value(s[i]) < 0)
                        return -EINVAL;
                std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
        }
        /* RFC 4648 section 3.5: the bits after the last whole byte must be
         * zero, so every byte string has exactly one encoding. */
        if (l % 4 == 2 && (b64url_value(s[l - 1]) & 0x0f) != 0)
                return -EINVAL;
        if (l % 4 == 3 && (b64url_value(s[l - 1]) & 0x03) != 0)
                return -EINVAL;
        for (; i % 4 != 0; i++)
                std[i] = '=';
        std[i] = '\0';

        if (l > 0) {
                gnutls_datum_t in = { .data = (void *) std, .size = (unsigned) i };

                r = gnutls_base64_decode2(&in, &raw);
                if (r < 0)
                        return r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EINVAL;
        }

        out = malloc(raw.size + 1);
        if (!out)
                return -ENOMEM;
        if (raw.size > 0)
                memcpy(out, raw.data, raw.size);
        out[raw.size] = 0;
        *ret = out;
        *ret_n = raw.size;
        return 0;
}

/* GnuTLS hands out big-endian integers with a leading 0x00 when the top bit
 * is set, and shorter ones when the top bytes are zero; JOSE wants each
 * coordinate and each of r, s as exactly 32 bytes (RFC 7518 sections 3.4
 * and 6.2.1.2). */
static int put_fixed(uint8_t out[P256_BYTES], const gnutls_datum_t *d) {
        const uint8_t *p = d->data;
        size_t n = d->size;

        while (n > P256_BYTES && *p == 0) {
                p++;
                n--;
        }
        if (n > P256_BYTES)
                return -EINVAL;
        memset(out, 0, P256_BYTES - n);
        if (n > 0)
                memcpy(out + P256_BYTES - n, p, n);
        return 0;
}

/* Checks that key is P-256 and, if asked, gives its public point. */
static int key_p256_point(gnutls_privkey_t key, uint8_t x[P256_BYTES], uint8_t y[P256_BYTES]) {
        _cleanup_(datum_freep) gnutls_datum_t dx = {}, dy = {};
        gnutls_ecc_curve_t curve;
        int r;

        if (!key)
                return -EINVAL;
        if (gnutls_privkey_get_pk_algorithm(key, NULL) != GNUTLS_PK_ECDSA)
                return -EINVAL;
        r = gnutls_privkey_export_ecc_raw2(key, &curve, x ? &dx : NULL, y ? &dy : NULL, NULL, 0);
        if (r < 0)
                return jws_errno(r);
        if (curve != GNUTLS_ECC_CURVE_SECP256R1)
                return -EINVAL;
        if (x && (r = put_fixed(x, &dx)) < 0)
                return r;
        if (y && (r = put_fixed(y, &dy)) < 0)
                return r;
        return 0;
}

int acme_key_generate(gnutls_privkey_t *ret) {
        _cleanup_(gnutls_privkey_deinitp) gnutls_privkey_t key = NULL;
        int r;

        r = gnutls_privkey_init(&key);
        if (r < 0)
                return jws_errno(r);
        r = gnutls_privkey_generate2(key, GNUTLS_PK_ECDSA,
                                     GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0, NULL, 0);
        if (r < 0)
                return jws_errno(r);
        *ret = TAKE_PTR(key);
        return 0;
}

int acme_key_to_pem(gnutls_privkey_t key, char **ret_pem) {
        _cleanup_(gnutls_x509_privkey_deinitp) gnutls_x509_privkey_t xkey = NULL;
        _cleanup_(datum_erasep) gnutls_datum_t pem = {};
        char *s;
        int r;

        r = key_p256_point(key, NULL, NULL);
        if (r < 0)
                return r;
        r = gnutls_privkey_export_x509(key, &xkey);
        if (r < 0)
                return jws_errno(r);
        r = gnutls_x509_privkey_export2(xkey, GNUTLS_X509_FMT_PEM, &pem);
        if (r < 0)
                return jws_errno(r);

        /* certmagic (Go's x509.MarshalECPrivateKey) writes SEC1; other
         * tools reading our storage expect the same. */
        if (pem.size < strlen(EC_PEM_HEADER) ||
            memcmp(pem.data, EC_PEM_HEADER, strlen(EC_PEM_HEADER)) != 0)
                return -EPROTO;

        s = malloc(pem.size + 1);
        if (!s)
                return -ENOMEM;
        memcpy(s, pem.data, pem.size);
        s[pem.size] = '\0';
        *ret_pem = s;
        return 0;
}

int acme_key_from_pem(const char *pem, size_t len, gnutls_privkey_t *ret) {
        _cleanup_(gnutls_x509_privkey_deinitp) gnutls_x509_privkey_t xkey = NULL;
        _cleanup_(gnutls_privkey_deinitp) gnutls_privkey_t key = NULL;
        gnutls_datum_t in = { .data = (void *) pem, .size = (unsigned) len };
        int r;

        if (!pem || len == 0)
                return -EBADMSG;
        if (len > UINT32_MAX)
                return -E2BIG;

        r = gnutls_x509_privkey_init(&xkey);
        if (r < 0)
                return jws_errno(r);
        /* No password: an encrypted key fails here rather than prompting.
         * import2 takes SEC1 and PKCS#8 alike. */
        r = gnutls_x509_privkey_import2(xkey, &in, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r < 0)
                return r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EBADMSG;
        if (gnutls_x509_privkey_get_pk_algorithm2(xkey, NULL) != GNUTLS_PK_ECDSA)
                return -EINVAL;
        /* The file might pair a scalar with someone else's public point. */
        if (gnutls_x509_privkey_verify_params(xkey) < 0)
                return -EBADMSG;

        r = gnutls_privkey_init(&key);
        if (r < 0)
                return jws_errno(r);
        r = gnutls_privkey_import_x509(key, xkey, GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE);
        if (r < 0)
                return jws_errno(r);
        TAKE_PTR(xkey); /* now owned by key */

        r = key_p256_point(key, NULL, NULL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(key);
        return 0;
}

static int json_add_string(json_object *o, const char *name, const char *value) {
        json_object *v = json_object_new_string(value);
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, name, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int json_add_b64url(json_object *o, const char *name, const void *p, size_t n) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = base64url_encode(p, n, &s);
        if (r < 0)
                return r;
        return json_add_string(o, name, s);
}

int jwk_from_key(gnutls_privkey_t key, json_object **ret) {
        _cleanup_(json_object_putp) json_object *jwk = NULL;
        uint8_t x[P256_BYTES], y[P256_BYTES];
        int r;

        r = key_p256_point(key, x, y);
        if (r < 0)
                return r;

        /* Members in lexicographic order: json-c keeps insertion order, so
         * this object serializes as the RFC 7638 section 3 canonical form. */
        jwk = json_object_new_object();
        if (!jwk)
                return -ENOMEM;
        if ((r = json_add_string(jwk, "crv", "P-256")) < 0 ||
            (r = json_add_string(jwk, "kty", "EC")) < 0 ||
            (r = json_add_b64url(jwk, "x", x, sizeof x)) < 0 ||
            (r = json_add_b64url(jwk, "y", y, sizeof y)) < 0)
                return r;

        *ret = TAKE_PTR(jwk);
        return 0;
}

int jwk_thumbprint(gnutls_privkey_t key, char **ret) {
        _cleanup_(json_object_putp) json_object *jwk = NULL;
        uint8_t digest[32];
        const char *s;
        int r;

        r = jwk_from_key(key, &jwk);
        if (r < 0)
                return r;
        /* RFC 7638 section 3.2: required members only, no whitespace. */
        s = json_object_to_json_string_ext(jwk, JSON_FLAGS);
        if (!s)
                return -ENOMEM;
        r = gnutls_hash_fast(GNUTLS_DIG_SHA256, s, strlen(s), digest);
        if (r < 0)
                return jws_errno(r);
        return base64url_encode(digest, sizeof digest, ret);
}

static bool token_valid(const char *token) {
        size_t l;

        if (!token)
                return false;
        l = strlen(token);
        if (l == 0 || l > ACME_TOKEN_MAX)
                return false;
        for (size_t i = 0; i < l; i++)
                if (b64url_value(token[i]) < 0)
                        return false;
        return true;
}

int acme_key_authorization(const char *token, gnutls_privkey_t account, char **ret) {
        _cleanup_free_ char *thumbprint = NULL;
        char *s;
        int r;

        /* RFC 8555 section 8.3: the token is base64url; anything else is a
         * broken or hostile server. */
        if (!token_valid(token))
                return -EINVAL;
        r = jwk_thumbprint(account, &thumbprint);
        if (r < 0)
                return r;
        /* RFC 8555 section 8.1: keyAuthorization = token || '.' || thumbprint */
        if (asprintf(&s, "%s.%s", token, thumbprint) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int acme_tls_alpn_digest(const char *key_authz, uint8_t ret[32]) {
        uint8_t digest[32];
        int r;

        if (!key_authz || !*key_authz)
                return -EINVAL;
        /* RFC 8737 section 3: the acmeIdentifier extension holds
         * SHA-256(keyAuthorization). */
        r = gnutls_hash_fast(GNUTLS_DIG_SHA256, key_authz, strlen(key_authz), digest);
        if (r < 0)
                return jws_errno(r);
        memcpy(ret, digest, sizeof digest);
        return 0;
}

/* RFC 8555 section 6.2: alg, nonce, url, and exactly one of jwk and kid. */
static int jws_protected_header(gnutls_privkey_t key, const char *kid, const char *nonce,
                                const char *url, char **ret) {
        _cleanup_(json_object_putp) json_object *header = NULL, *jwk = NULL;
        const char *s;
        int r;

        header = json_object_new_object();
        if (!header)
                return -ENOMEM;
        if ((r = json_add_string(header, "alg", "ES256")) < 0)
                return r;
        if (kid)
                r = json_add_string(header, "kid", kid);
        else {
                r = jwk_from_key(key, &jwk);
                if (r >= 0)
                        r = json_object_object_add(header, "jwk", jwk) < 0 ? -ENOMEM : 0;
                if (r >= 0)
                        TAKE_PTR(jwk); /* now owned by header */
        }
        if (r < 0)
                return r;
        if ((r = json_add_string(header, "nonce", nonce)) < 0 ||
            (r = json_add_string(header, "url", url)) < 0)
                return r;

        s = json_object_to_json_string_ext(header, JSON_FLAGS);
        if (!s)
                return -ENOMEM;
        return base64url_encode(s, strlen(s), ret);
}

/* ES256 over the JWS signing input; RFC 7518 section 3.4 wants R || S, each
 * 32 bytes, where GnuTLS produces a DER SEQUENCE of two INTEGERs. */
static int es256_sign(gnutls_privkey_t key, const char *input, uint8_t ret[2 * P256_BYTES]) {
        _cleanup_(datum_freep) gnutls_datum_t der = {}, sr = {}, ss = {};
        gnutls_datum_t data = { .data = (void *) input, .size = (unsigned) strlen(input) };
        uint8_t raw[2 * P256_BYTES];
        int r;

        r = gnutls_privkey_sign_data(key, GNUTLS_DIG_SHA256, 0, &data, &der);
        if (r < 0)
                return jws_errno(r);
        r = gnutls_decode_rs_value(&der, &sr, &ss);
        if (r < 0)
                return jws_errno(r);
        if ((r = put_fixed(raw, &sr)) < 0 || (r = put_fixed(raw + P256_BYTES, &ss)) < 0)
                return r;
        memcpy(ret, raw, sizeof raw);
        return 0;
}

int jws_sign(gnutls_privkey_t key, const char *kid, const char *nonce, const char *url,
             const char *payload, char **ret_body) {
        _cleanup_free_ char *protected = NULL, *payload64 = NULL, *input = NULL;
        _cleanup_(json_object_putp) json_object *body = NULL;
        uint8_t sig[2 * P256_BYTES];
        const char *s;
        char *copy;
        int r;

        if (!nonce || !*nonce || !url || !*url || (kid && !*kid))
                return -EINVAL;
        r = key_p256_point(key, NULL, NULL);
        if (r < 0)
                return r;

        r = jws_protected_header(key, kid, nonce, url, &protected);
        if (r < 0)
                return r;
        /* RFC 8555 section 6.3: POST-as-GET has an empty payload. */
        r = base64url_encode(strempty(payload), strlen(strempty(payload)), &payload64);
        if (r < 0)
                return r;

        /* RFC 7515 section 5.1: ASCII(protected || '.' || payload) */
        if (asprintf(&input, "%s.%s", protected, payload64) < 0) {
                input = NULL;
                return -ENOMEM;
        }
        r = es256_sign(key, input, sig);
        if (r < 0)
                return r;

        /* RFC 7515 section 7.2.2, flattened JSON serialization. */
        body = json_object_new_object();
        if (!body)
                return -ENOMEM;
        if ((r = json_add_string(body, "protected", protected)) < 0 ||
            (r = json_add_string(body, "payload", payload64)) < 0 ||
            (r = json_add_b64url(body, "signature", sig, sizeof sig)) < 0)
                return r;

        s = json_object_to_json_string_ext(body, JSON_FLAGS);
        if (!s)
                return -ENOMEM;
        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        *ret_body = copy;
        return 0;
}
