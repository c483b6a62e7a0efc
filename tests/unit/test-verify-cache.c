/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "test-util.h"
#include "verify-cache.h"

static gnutls_datum_t datum(const char *s) {
        return (gnutls_datum_t) { (unsigned char *) s, (unsigned) strlen(s) };
}

static int lookup(VerifyCache *vc, const gnutls_datum_t *chain, unsigned n, time_t now,
                  VerifyVerdict *v) {
        verify_verdict_done(v);
        return verify_cache_lookup(vc, chain, n, now, v);
}

static void test_hit_miss_and_exactness(void) {
        VerifyCache *vc = verify_cache_new(64);
        gnutls_datum_t chain[2] = { datum("leaf-der-bytes"), datum("intermediate-der") };
        char copy[] = "leaf-der-bytes";
        gnutls_datum_t same_content[2] = { { (unsigned char *) copy, sizeof copy - 1 },
                                           datum("intermediate-der") };
        gnutls_datum_t one_byte_off[2] = { datum("leaf-der-bytez"), datum("intermediate-der") };
        gnutls_datum_t leaf_only[1] = { datum("leaf-der-bytes") };
        /* The same bytes split differently must not match either. */
        gnutls_datum_t resplit[2] = { datum("leaf-der-bytesi"), datum("ntermediate-der") };
        VerifyVerdict v = {}, stored = { .cn = (char *) "client", .allowed = true, .rule = "allow-cn" };
        uint64_t hits = 0, misses = 0;
        unsigned entries = 0;

        CHECK(vc);
        CHECK_INT_EQ(lookup(vc, chain, 2, 1000, &v), 0);
        CHECK_INT_EQ(verify_cache_insert(vc, chain, 2, 2000, &stored), 0);

        CHECK_INT_EQ(lookup(vc, chain, 2, 1000, &v), 1);
        CHECK_STR_EQ(v.cn, "client");
        CHECK(v.cn != stored.cn); /* a copy the caller owns */
        CHECK(v.allowed);
        CHECK_STR_EQ(v.rule, "allow-cn");

        /* Keyed by content, not by pointer. */
        CHECK_INT_EQ(lookup(vc, same_content, 2, 1000, &v), 1);
        CHECK_INT_EQ(lookup(vc, one_byte_off, 2, 1000, &v), 0);
        CHECK(!v.allowed && !v.cn);
        CHECK_INT_EQ(lookup(vc, leaf_only, 1, 1000, &v), 0);
        CHECK_INT_EQ(lookup(vc, resplit, 2, 1000, &v), 0);
        CHECK_INT_EQ(lookup(vc, chain, 0, 1000, &v), 0);

        verify_cache_stats(vc, &hits, &misses, &entries);
        CHECK_U64_EQ(hits, 2);
        CHECK_U64_EQ(misses, 4); /* an empty chain is not a lookup */
        CHECK_INT_EQ(entries, 1);
        verify_verdict_done(&v);
        verify_cache_free(vc);
}

static void test_expiry(void) {
        VerifyCache *vc = verify_cache_new(8);
        gnutls_datum_t chain[1] = { datum("short-lived") };
        VerifyVerdict v = {}, stored = { .allowed = true, .rule = "allow-all" };
        unsigned entries = 9;

        CHECK_INT_EQ(verify_cache_insert(vc, chain, 1, 500, &stored), 0);
        CHECK_INT_EQ(lookup(vc, chain, 1, 499, &v), 1);
        CHECK(v.cn == NULL);
        /* notAfter reached: gone, and stays gone even if the clock went back. */
        CHECK_INT_EQ(lookup(vc, chain, 1, 500, &v), 0);
        CHECK_INT_EQ(lookup(vc, chain, 1, 10, &v), 0);
        verify_cache_stats(vc, NULL, NULL, &entries);
        CHECK_INT_EQ(entries, 0);
        verify_cache_free(vc);
}

static void test_denials_and_bound(void) {
        VerifyCache *vc = verify_cache_new(4);
        VerifyVerdict v = {}, denied = { .cn = (char *) "intruder", .allowed = false };
        char names[100][16];
        unsigned entries = 0, found = 0;

        gnutls_datum_t c0[1] = { datum("denied-chain") };
        CHECK_INT_EQ(verify_cache_insert(vc, c0, 1, 100, &denied), 0);
        CHECK_INT_EQ(lookup(vc, c0, 1, 1, &v), 1);
        CHECK(!v.allowed);
        CHECK_STR_EQ(v.cn, "intruder");
        CHECK(v.rule == NULL);

        /* Never more entries than slots, whatever comes in; each lookup
         * answers for its own chain only. */
        for (unsigned i = 0; i < 100; i++) {
                snprintf(names[i], sizeof names[i], "chain-%u", i);
                gnutls_datum_t c[1] = { datum(names[i]) };
                VerifyVerdict s = { .cn = names[i], .allowed = true, .rule = "allow-cn" };
                CHECK_INT_EQ(verify_cache_insert(vc, c, 1, 100, &s), 0);
        }
        verify_cache_stats(vc, NULL, NULL, &entries);
        CHECK(entries >= 1 && entries <= 4);
        for (unsigned i = 0; i < 100; i++) {
                gnutls_datum_t c[1] = { datum(names[i]) };
                if (lookup(vc, c, 1, 1, &v) == 1) {
                        found++;
                        CHECK_STR_EQ(v.cn, names[i]);
                }
        }
        CHECK_INT_EQ(found, entries);
        /* The most recent insertion is always there. */
        gnutls_datum_t last[1] = { datum(names[99]) };
        CHECK_INT_EQ(lookup(vc, last, 1, 1, &v), 1);
        verify_verdict_done(&v);
        verify_cache_free(vc);
}

int main(void) {
        CHECK(verify_cache_new(0) == NULL);
        CHECK(verify_cache_free(NULL) == NULL);
        test_hit_miss_and_exactness();
        test_expiry();
        test_denials_and_bound();
        return test_summary();
}
