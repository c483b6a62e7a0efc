/* SPDX-License-Identifier: MIT */
#pragma once

/* A bounded cache of client certificate chains that were verified and
 * authorized, keyed by their exact DER. A full mTLS handshake spends about a
 * quarter of its CPU verifying the client chain (an ECDSA verification plus
 * parsing the chain and walking the trust list) and parsing the leaf for the
 * access rules; a client that comes back with the same chain gets the same
 * answer, so the second time costs a hash and a memcmp.
 *
 * One cache belongs to one Creds generation: a reload (new CA bundle or
 * rules) starts with an empty one. An entry is only valid until the earliest
 * notAfter of the chain and of the trust anchor that verified it. Only
 * successful verifications are stored (a denial by the access rules is, as
 * it is as deterministic as an allow); a chain that failed verification is
 * verified again every time. Safe to use from several threads. */

#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

typedef struct VerifyCache VerifyCache;

/* What the verification and the access rules concluded about a chain. */
typedef struct VerifyVerdict {
        char *cn;               /* the leaf's CommonName, or NULL; owned */
        bool allowed;
        const char *rule;       /* the rule that allowed it (a static string), or NULL */
} VerifyVerdict;

void verify_verdict_done(VerifyVerdict *v);

/* n_slots entries at most (direct-mapped by hash; a newer chain replaces an
 * older one in its slot). NULL on allocation failure. */
VerifyCache *verify_cache_new(unsigned n_slots);
VerifyCache *verify_cache_free(VerifyCache *vc);

/* 1 and a copy of the verdict if this exact chain was verified and is still
 * valid at now; 0 if not (an expired entry is dropped); negative errno on
 * failure. */
int verify_cache_lookup(VerifyCache *vc, const gnutls_datum_t *chain, unsigned n, time_t now,
                        VerifyVerdict *ret);

/* Remembers the verdict for this exact chain until expires. */
int verify_cache_insert(VerifyCache *vc, const gnutls_datum_t *chain, unsigned n, time_t expires,
                        const VerifyVerdict *v);

/* Counters, for /_metrics and tests. */
void verify_cache_stats(VerifyCache *vc, uint64_t *ret_hits, uint64_t *ret_misses,
                        unsigned *ret_entries);
