/* SPDX-License-Identifier: MIT */
#pragma once

/* The cryptographic pieces of the ACME client (RFC 8555): the P-256 account
 * and certificate keys, base64url, the JWK and its thumbprint (RFC 7638),
 * key authorizations and the TLS-ALPN-01 digest (RFC 8737), and ES256 JWS
 * in flattened JSON serialization (RFC 7515, RFC 8555 section 6.2).
 * Pure logic: no I/O, no logging. Every function returns 0 or a negative
 * errno and writes its ret_* arguments only on success. */

#include <gnutls/abstract.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* A fresh P-256 key. */
int acme_key_generate(gnutls_privkey_t *ret);

/* SEC1 PEM ("-----BEGIN EC PRIVATE KEY-----"), as certmagic writes P-256
 * keys. The result is key material: release it with acme_key_pem_free(),
 * which zeroes it first. -EINVAL if the key is not P-256. */
int acme_key_to_pem(gnutls_privkey_t key, char **ret_pem);

/* Zeroes and frees a string returned by acme_key_to_pem(). Accepts NULL,
 * returns NULL. */
char *acme_key_pem_free(char *pem);
DEFINE_TRIVIAL_CLEANUP_FUNC(char *, acme_key_pem_free);

/* Reads an unencrypted "EC PRIVATE KEY" (SEC1) or "PRIVATE KEY" (PKCS#8)
 * PEM block; pem need not be NUL-terminated. Returns -EBADMSG if no key can
 * be parsed or the key is inconsistent, -EINVAL if it is not a P-256 key. */
int acme_key_from_pem(const char *pem, size_t len, gnutls_privkey_t *ret);

/* RFC 4648 section 5, without padding. The encoding is NUL-terminated.
 * Decoding accepts only the url-safe alphabet, no '=' and no whitespace
 * (-EINVAL otherwise); the result is NUL-terminated for convenience (the
 * terminator is not counted in *ret_n). Both results are freed with free(). */
int base64url_encode(const void *p, size_t n, char **ret);
int base64url_decode(const char *s, void **ret, size_t *ret_n);

/* The public JWK of a P-256 key (RFC 7518 section 6.2.1):
 * {"crv":"P-256","kty":"EC","x":...,"y":...}, coordinates 32 bytes each.
 * -EINVAL if the key is not P-256. */
int jwk_from_key(gnutls_privkey_t key, json_object **ret);

/* RFC 7638 thumbprint: base64url(SHA-256(canonical JWK)). */
int jwk_thumbprint(gnutls_privkey_t key, char **ret);

/* RFC 8555 section 8.1: token "." thumbprint(account key). The token must be
 * non-empty base64url of at most ACME_TOKEN_MAX characters (-EINVAL). */
#define ACME_TOKEN_MAX 1024
int acme_key_authorization(const char *token, gnutls_privkey_t account, char **ret);

/* RFC 8737 section 3: SHA-256 of the key authorization, the value of the
 * acmeIdentifier extension in the TLS-ALPN-01 certificate. */
int acme_tls_alpn_digest(const char *key_authz, uint8_t ret[32]);

/* RFC 8555 section 6.2: a flattened JWS JSON object
 * {"protected":...,"payload":...,"signature":...} signed with ES256.
 * The protected header carries alg, nonce, url and either "kid" (the
 * account URL) or, when kid is NULL, the "jwk" of key (newAccount, and
 * revocation by certificate key). payload NULL or "" gives the empty
 * payload of POST-as-GET (section 6.3); "{}" is a different, non-empty
 * payload. nonce and url must be non-empty, kid non-empty if given
 * (-EINVAL); -EINVAL too if key is not P-256. */
int jws_sign(gnutls_privkey_t key, const char *kid, const char *nonce, const char *url,
             const char *payload, char **ret_body);
