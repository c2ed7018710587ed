/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdlib.h>

#include "disco/status.h"
#include "sched/deque.h"

struct disco__deque_array {
    int64_t mask;
    struct disco__deque_array *next_retired;
    _Atomic(void *) slot[];
};

static struct disco__deque_array *array_new(int64_t cap)
{
    struct disco__deque_array *a =
        malloc(sizeof(*a) + (size_t)cap * sizeof(a->slot[0]));
    if (a) {
        a->mask = cap - 1;
        a->next_retired = NULL;
    }
    return a;
}

int disco__deque_init(disco__deque *d, unsigned log2_cap)
{
    struct disco__deque_array *a = array_new((int64_t)1 << log2_cap);
    if (!a)
        return DISCO_ENOMEM;
    atomic_init(&d->top, 0);
    atomic_init(&d->bottom, 0);
    atomic_init(&d->array, a);
    d->retired = NULL;
    d->top_cache = 0;
    return 0;
}

void disco__deque_fini(disco__deque *d)
{
    free(atomic_load_explicit(&d->array, memory_order_relaxed));
    while (d->retired) {
        struct disco__deque_array *next = d->retired->next_retired;
        free(d->retired);
        d->retired = next;
    }
}

static struct disco__deque_array *grow(disco__deque *d,
                                       struct disco__deque_array *old,
                                       int64_t t, int64_t b)
{
    struct disco__deque_array *a = array_new(2 * (old->mask + 1));
    if (!a)
        return NULL;
    for (int64_t i = t; i < b; i++)
        atomic_store_explicit(&a->slot[i & a->mask],
                              atomic_load_explicit(&old->slot[i & old->mask],
                                                   memory_order_relaxed),
                              memory_order_relaxed);
    /* release: pairs with the acquire load of array in steal, so a thief
     * that sees the new array also sees the slots copied into it. */
    atomic_store_explicit(&d->array, a, memory_order_release);
    old->next_retired = d->retired;
    d->retired = old;
    return a;
}

int disco__deque_push(disco__deque *d, void *item)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    struct disco__deque_array *a =
        atomic_load_explicit(&d->array, memory_order_relaxed);
    if (b - d->top_cache > a->mask) {
        /* acquire: pairs with the CAS on top in steal, so the slot a thief
         * just emptied is not overwritten before it has read it. */
        int64_t t = d->top_cache =
            atomic_load_explicit(&d->top, memory_order_acquire);
        if (b - t > a->mask && !(a = grow(d, a, t, b)))
            return DISCO_ENOMEM;
    }
    atomic_store_explicit(&a->slot[b & a->mask], item, memory_order_relaxed);
    /* release: pairs with the acquire/seq_cst load of bottom in steal, which
     * then sees the slot and everything the pusher wrote to the item. */
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
    return 0;
}

void *disco__deque_pop(disco__deque *d)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed) - 1;
    struct disco__deque_array *a =
        atomic_load_explicit(&d->array, memory_order_relaxed);
    /* seq_cst store then seq_cst load of top: the store-load order of the
     * paper's full fence. Pairs with steal's seq_cst loads so that owner and
     * thief cannot both miss each other on the last item. */
    atomic_store_explicit(&d->bottom, b, memory_order_seq_cst);
    int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
    void *item = NULL;
    if (t <= b) {
        item = atomic_load_explicit(&a->slot[b & a->mask], memory_order_relaxed);
        if (t == b) {
            /* Last item: race the thieves for it through top. */
            if (!atomic_compare_exchange_strong_explicit(
                    &d->top, &t, t + 1, memory_order_seq_cst,
                    memory_order_relaxed))
                item = NULL;
            atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
        }
    } else {
        atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
    }
    return item;
}

void *disco__deque_steal(disco__deque *d)
{
    /* seq_cst loads of top then bottom: the paper's fence between them;
     * pairs with the seq_cst store of bottom in pop. */
    int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_seq_cst);
    if (t >= b)
        return NULL;
    /* acquire: pairs with the release store of array in grow. */
    struct disco__deque_array *a =
        atomic_load_explicit(&d->array, memory_order_acquire);
    void *item = atomic_load_explicit(&a->slot[t & a->mask], memory_order_relaxed);
    /* seq_cst CAS: claims slot t against other thieves and the owner's pop
     * of the last item. */
    if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1,
                                                 memory_order_seq_cst,
                                                 memory_order_relaxed))
        return DISCO__DEQUE_ABORT;
    return item;
}

bool disco__deque_empty(disco__deque *d)
{
    return atomic_load_explicit(&d->bottom, memory_order_relaxed) <=
           atomic_load_explicit(&d->top, memory_order_relaxed);
}
