/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "bufpool.h"

typedef struct FreeBuf {
        struct FreeBuf *next;
} FreeBuf;

void *bufpool_get(BufPool *p) {
        FreeBuf *b = p->free;

        if (b) {
                p->free = b->next;
                p->n_free--;
        } else {
                b = malloc(BUFPOOL_BUFFER_SIZE);
                if (!b)
                        return NULL;
        }
        p->n_lent++;
        return b;
}

void bufpool_put(BufPool *p, void *buf) {
        FreeBuf *b = buf;

        if (!b)
                return;
        p->n_lent--;
        if (p->n_free >= BUFPOOL_KEEP) {
                free(b);
                return;
        }
        b->next = p->free;
        p->free = b;
        p->n_free++;
}

void bufpool_trim(BufPool *p) {
        while (p->free) {
                FreeBuf *b = p->free;
                p->free = b->next;
                free(b);
        }
        p->n_free = 0;
}
