/* SPDX-License-Identifier: MIT */
/* The pipe buffer pool: buffers are reused, at most BUFPOOL_KEEP are kept,
 * and trimming gives every kept one back (ASan's leak check sees the rest). */

#include <string.h>

#include "bufpool.h"
#include "macro.h"
#include "test-util.h"

static void test_reuse(void) {
        BufPool p = {};
        void *a, *b, *c;

        a = bufpool_get(&p);
        b = bufpool_get(&p);
        CHECK(a && b && a != b);
        CHECK_INT_EQ(p.n_lent, 2);
        CHECK_INT_EQ(p.n_free, 0);
        /* The whole buffer is usable. */
        memset(a, 0xaa, BUFPOOL_BUFFER_SIZE);
        memset(b, 0xbb, BUFPOOL_BUFFER_SIZE);

        bufpool_put(&p, a);
        CHECK_INT_EQ(p.n_lent, 1);
        CHECK_INT_EQ(p.n_free, 1);
        /* The last one given back is the next one lent (still warm). */
        c = bufpool_get(&p);
        CHECK(c == a);
        CHECK_INT_EQ(p.n_free, 0);

        bufpool_put(&p, NULL);  /* no-op */
        CHECK_INT_EQ(p.n_lent, 2);
        bufpool_put(&p, b);
        bufpool_put(&p, c);
        CHECK_INT_EQ(p.n_lent, 0);
        CHECK_INT_EQ(p.n_free, 2);
        bufpool_trim(&p);
        CHECK_INT_EQ(p.n_free, 0);
        CHECK(p.free == NULL);
        /* A trimmed pool still works. */
        a = bufpool_get(&p);
        CHECK(a != NULL);
        bufpool_put(&p, a);
        bufpool_trim(&p);
}

static void test_keep_bounded(void) {
        BufPool p = {};
        void *bufs[BUFPOOL_KEEP + 8];

        for (size_t i = 0; i < ELEMENTSOF(bufs); i++) {
                bufs[i] = bufpool_get(&p);
                CHECK(bufs[i] != NULL);
        }
        CHECK_INT_EQ(p.n_lent, ELEMENTSOF(bufs));
        for (size_t i = 0; i < ELEMENTSOF(bufs); i++)
                bufpool_put(&p, bufs[i]);
        /* The surplus went back to malloc. */
        CHECK_INT_EQ(p.n_free, BUFPOOL_KEEP);
        CHECK_INT_EQ(p.n_lent, 0);
        bufpool_trim(&p);
        CHECK_INT_EQ(p.n_free, 0);
}

int main(void) {
        test_reuse();
        test_keep_bounded();
        return test_summary();
}
