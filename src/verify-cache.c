/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "verify-cache.h"

#define DIGEST_SIZE 32 /* SHA-256 */

typedef struct Entry {
        uint8_t digest[DIGEST_SIZE];
        uint8_t *der;           /* the chain: per certificate a 4-byte length, then its DER */
        size_t der_len;
        time_t expires;
        VerifyVerdict verdict;
} Entry;

struct VerifyCache {
        pthread_mutex_t lock;
        Entry *slots;
        unsigned n_slots, n_used;
        uint64_t hits, misses;
};

void verify_verdict_done(VerifyVerdict *v) {
        free(v->cn);
        *v = (VerifyVerdict) {};
}

static void entry_clear(VerifyCache *vc, Entry *e) {
        if (!e->der)
                return;
        free(e->der);
        verify_verdict_done(&e->verdict);
        *e = (Entry) {};
        vc->n_used--;
}

VerifyCache *verify_cache_new(unsigned n_slots) {
        VerifyCache *vc;

        if (n_slots == 0)
                return NULL;
        vc = calloc(1, sizeof *vc);
        if (!vc)
                return NULL;
        vc->slots = calloc(n_slots, sizeof *vc->slots);
        if (!vc->slots) {
                free(vc);
                return NULL;
        }
        vc->n_slots = n_slots;
        pthread_mutex_init(&vc->lock, NULL);
        return vc;
}

VerifyCache *verify_cache_free(VerifyCache *vc) {
        if (!vc)
                return NULL;
        for (unsigned i = 0; i < vc->n_slots; i++)
                entry_clear(vc, &vc->slots[i]);
        pthread_mutex_destroy(&vc->lock);
        free(vc->slots);
        free(vc);
        return NULL;
}

static int chain_digest(const gnutls_datum_t *chain, unsigned n, uint8_t digest[DIGEST_SIZE]) {
        gnutls_hash_hd_t h;

        if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
                uint8_t len[4] = { chain[i].size >> 24, chain[i].size >> 16, chain[i].size >> 8,
                                   chain[i].size };
                if (gnutls_hash(h, len, sizeof len) < 0 ||
                    gnutls_hash(h, chain[i].data, chain[i].size) < 0) {
                        gnutls_hash_deinit(h, NULL);
                        return -EIO;
                }
        }
        gnutls_hash_deinit(h, digest);
        return 0;
}

/* The exact DER, not only the digest: a hash collision must not let one
 * certificate pass as another. */
static bool entry_matches(const Entry *e, const uint8_t digest[DIGEST_SIZE],
                          const gnutls_datum_t *chain, unsigned n) {
        size_t off = 0;

        if (!e->der || memcmp(e->digest, digest, DIGEST_SIZE) != 0)
                return false;
        for (unsigned i = 0; i < n; i++) {
                const uint8_t *p = e->der + off;
                if (e->der_len - off < 4)
                        return false;
                uint32_t len = (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
                if (len != chain[i].size || e->der_len - off - 4 < len ||
                    memcmp(p + 4, chain[i].data, len) != 0)
                        return false;
                off += 4 + len;
        }
        return off == e->der_len;
}

static unsigned slot_of(const VerifyCache *vc, const uint8_t digest[DIGEST_SIZE]) {
        uint32_t x = (uint32_t) digest[0] << 24 | (uint32_t) digest[1] << 16 |
                     (uint32_t) digest[2] << 8 | digest[3];
        return x % vc->n_slots;
}

int verify_cache_lookup(VerifyCache *vc, const gnutls_datum_t *chain, unsigned n, time_t now,
                        VerifyVerdict *ret) {
        uint8_t digest[DIGEST_SIZE];
        int r = 0;

        *ret = (VerifyVerdict) {};
        if (!vc || n == 0)
                return 0;
        if (chain_digest(chain, n, digest) < 0)
                return -EIO;

        pthread_mutex_lock(&vc->lock);
        Entry *e = &vc->slots[slot_of(vc, digest)];
        if (entry_matches(e, digest, chain, n)) {
                if (now >= e->expires)
                        entry_clear(vc, e);
                else if (e->verdict.cn && !(ret->cn = strdup(e->verdict.cn)))
                        r = -ENOMEM;
                else {
                        ret->allowed = e->verdict.allowed;
                        ret->rule = e->verdict.rule;
                        r = 1;
                }
        }
        if (r == 1)
                vc->hits++;
        else
                vc->misses++;
        pthread_mutex_unlock(&vc->lock);
        return r;
}

int verify_cache_insert(VerifyCache *vc, const gnutls_datum_t *chain, unsigned n, time_t expires,
                        const VerifyVerdict *v) {
        uint8_t digest[DIGEST_SIZE];
        Entry new = {};
        size_t len = 0;

        if (!vc || n == 0)
                return 0;
        if (chain_digest(chain, n, digest) < 0)
                return -EIO;
        for (unsigned i = 0; i < n; i++)
                len += 4 + (size_t) chain[i].size;
        new.der = malloc(len);
        if (!new.der)
                return -ENOMEM;
        for (unsigned i = 0, off = 0; i < n; i++) {
                uint32_t sz = chain[i].size;
                new.der[off] = sz >> 24, new.der[off + 1] = sz >> 16, new.der[off + 2] = sz >> 8,
                new.der[off + 3] = sz;
                memcpy(new.der + off + 4, chain[i].data, sz);
                off += 4 + sz;
        }
        new.der_len = len;
        memcpy(new.digest, digest, DIGEST_SIZE);
        new.expires = expires;
        new.verdict.allowed = v->allowed;
        new.verdict.rule = v->rule;
        if (v->cn && !(new.verdict.cn = strdup(v->cn))) {
                free(new.der);
                return -ENOMEM;
        }

        pthread_mutex_lock(&vc->lock);
        Entry *e = &vc->slots[slot_of(vc, digest)];
        entry_clear(vc, e);
        *e = new;
        vc->n_used++;
        pthread_mutex_unlock(&vc->lock);
        return 0;
}

void verify_cache_stats(VerifyCache *vc, uint64_t *ret_hits, uint64_t *ret_misses,
                        unsigned *ret_entries) {
        pthread_mutex_lock(&vc->lock);
        if (ret_hits)
                *ret_hits = vc->hits;
        if (ret_misses)
                *ret_misses = vc->misses;
        if (ret_entries)
                *ret_entries = vc->n_used;
        pthread_mutex_unlock(&vc->lock);
}
