/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Spares: each thread keeps its last freed block of each kind for its next
 * block of that kind. A thread that makes call after call frees each
 * future (or call record) and at once makes the next; malloc and free, with
 * the free wrapper of src/mem/intercept.c, cost about 160 instructions a
 * pair, a spare about 10. Every block of a kind has the same size. A
 * thread's spares are freed when it exits. Under ASan every block is a
 * fresh one, so that a use after free is still caught.
 */
#ifndef DISCO_BASE_SPARE_H
#define DISCO_BASE_SPARE_H

#include <stdbool.h>
#include <stdlib.h>

#include "base/compiler.h"

typedef enum disco__spare_kind {
    DISCO__SPARE_FUTURE, /* src/rpc/future.c */
    DISCO__SPARE_CALL,   /* a call's record on its target, src/core/dispatch.c */
    DISCO__SPARE_KINDS
} disco__spare_kind;

extern DISCO__TLS void *disco__spares[DISCO__SPARE_KINDS];
extern DISCO__TLS bool disco__spares_kept; /* the thread's exit frees them */

void disco__spare_put_slow(disco__spare_kind k, void *block);

/* A block of size bytes (the kind's size): the thread's spare, else a
 * malloc'd one. NULL when out of memory. */
static inline void *disco__spare_take(disco__spare_kind k, size_t size)
{
#ifndef DISCO_ASAN
    void *b = disco__spares[k];
    if (b) {
        disco__spares[k] = NULL;
        return b;
    }
#else
    (void)k;
#endif
    return malloc(size);
}

/* Gives back a block of kind k: kept as the thread's spare, or freed. */
static inline void disco__spare_put(disco__spare_kind k, void *block)
{
#ifndef DISCO_ASAN
    if (disco__spares_kept && !disco__spares[k]) {
        disco__spares[k] = block;
        return;
    }
#endif
    disco__spare_put_slow(k, block);
}

#endif
