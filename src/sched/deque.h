/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Chase-Lev work-stealing deque (Chase & Lev, SPAA 2005; C11 formulation of
 * Le, Pop, Cohen & Zappa Nardelli, PPoPP 2013).
 *
 * One owner thread pushes and pops at the bottom (LIFO, no atomic RMW on the
 * fast path); any thread steals from the top (FIFO) with one CAS. Lock-free:
 * a steal fails only because another steal or the owner's pop won.
 * The array grows by doubling when full; old arrays are kept until
 * disco__deque_fini because a thief may still be reading one (no ABA: top
 * and bottom are 64-bit counters that never wrap).
 *
 * The fences of the paper are expressed as seq_cst operations on top and
 * bottom, which ThreadSanitizer understands (it ignores standalone fences).
 */
#ifndef DISCO_SCHED_DEQUE_H
#define DISCO_SCHED_DEQUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct disco__deque_array;

typedef struct disco__deque {
    /* top is written by thieves, bottom by the owner: separate lines. */
    _Alignas(64) _Atomic int64_t top;
    _Alignas(64) _Atomic int64_t bottom;
    _Atomic(struct disco__deque_array *) array;
    struct disco__deque_array *retired; /* owner only */
    /* Owner only: a past value of top. top never decreases, so it bounds
     * the deque's size from above and push re-reads the contended top only
     * when this stale bound says the array may be full. */
    int64_t top_cache;
} disco__deque;

/* Returned by disco__deque_steal when it lost a race (try again or move
 * on); NULL means empty. */
#define DISCO__DEQUE_ABORT ((void *)1)

/* log2_cap: initial capacity as a power of two. DISCO_ENOMEM or 0. */
int disco__deque_init(disco__deque *d, unsigned log2_cap);
void disco__deque_fini(disco__deque *d);

/* Owner only. Returns DISCO_ENOMEM when the array cannot grow (item not
 * pushed). */
int disco__deque_push(disco__deque *d, void *item);
/* Owner only. NULL when empty. */
void *disco__deque_pop(disco__deque *d);
/* Any thread. An item, NULL (empty) or DISCO__DEQUE_ABORT (lost a race). */
void *disco__deque_steal(disco__deque *d);
/* Any thread; a snapshot that may be stale by the time it returns. */
bool disco__deque_empty(disco__deque *d);

#endif
