/* SPDX-License-Identifier: MIT */
#pragma once

/* Pending TLS-ALPN-01 challenges (RFC 8737): the one place the ACME client
 * writes (add when it answers a challenge, remove when the authorization is
 * done) and the TLS hook reads (lookup by the probe's SNI). Each entry holds
 * the challenge certificate as a CertBundle, so a handshake keeps serving
 * its certificate even if the challenge is replaced or removed meanwhile.
 * Names compare ASCII case-insensitively (DNS, RFC 4343). Thread-safe: the
 * table has a lock of its own, so probes are answered on any serving thread. */

#include <stdint.h>

#include "creds.h"

/* SHA-256 of the key authorization (RFC 8737 section 3). */
#define ACME_TLS_ALPN_DIGEST_SIZE 32U

/* id-pe-acmeIdentifier (RFC 8737 section 6.1). */
#define ACME_IDENTIFIER_OID "1.3.6.1.5.5.7.1.31"

typedef struct Challenges Challenges;

int challenges_new(Challenges **ret);
Challenges *challenges_free(Challenges *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Challenges *, challenges_free);

/* Generates a challenge certificate for domain (a DNS name, no wildcard)
 * and registers it, replacing any pending challenge for the same name.
 * -EINVAL for a name that cannot be a DNS identifier. */
int challenges_add(Challenges *c, const char *domain,
                   const uint8_t digest[ACME_TLS_ALPN_DIGEST_SIZE]);

/* -ENOENT if nothing is pending for domain. */
int challenges_remove(Challenges *c, const char *domain);

/* The challenge certificate for a probe's SNI, as a new reference the
 * caller drops with cert_bundle_unref() (after gnutls_deinit() when handed
 * to GnuTLS); NULL if nothing is pending for that name (or sni is NULL or
 * empty). */
CertBundle *challenges_lookup(Challenges *c, const char *sni);

unsigned challenges_count(Challenges *c);

/* Builds a challenge certificate without registering it: a fresh P-256
 * key, self-signed, exactly one DNS SAN equal to domain, and the critical
 * acmeIdentifier extension holding the DER OCTET STRING of digest. */
int challenge_cert_new(const char *domain, const uint8_t digest[ACME_TLS_ALPN_DIGEST_SIZE],
                       CertBundle **ret);
