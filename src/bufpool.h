/* SPDX-License-Identifier: MIT */
#pragma once

/* Equal-sized I/O buffers lent to connections only while data is in flight:
 * an idle connection holds none, so its memory is its TLS session and little
 * else. Returned buffers are kept (up to BUFPOOL_KEEP) for the next taker,
 * which spares malloc() the 64 KiB requests and the heap the churn. One pool
 * per event loop (ConnServer), so no locking. A zeroed BufPool is ready. */

#include <stddef.h>

#define BUFPOOL_BUFFER_SIZE (64U * 1024U)
#define BUFPOOL_KEEP 8U

typedef struct BufPool {
        void *free;             /* kept buffers, linked through their first bytes */
        unsigned n_free;
        unsigned n_lent;        /* out with a connection now */
} BufPool;

/* A BUFPOOL_BUFFER_SIZE buffer (contents undefined), or NULL when out of memory. */
void *bufpool_get(BufPool *p);
/* Takes back a buffer from bufpool_get(); NULL is fine. */
void bufpool_put(BufPool *p, void *buf);
/* Frees the kept buffers (lent ones stay lent). */
void bufpool_trim(BufPool *p);
