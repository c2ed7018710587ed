/* SPDX-License-Identifier: BSD-3-Clause */
#include <sched.h>
#include <stdlib.h>

#include "disco/status.h"
#include "sched/inject.h"

struct disco__inject_cell {
    _Atomic uint64_t seq;
    void *item;
};

int disco__inject_init(disco__inject *q, unsigned log2_cap)
{
    uint64_t cap = (uint64_t)1 << log2_cap;
    q->cells = malloc(cap * sizeof(*q->cells));
    if (!q->cells)
        return DISCO_ENOMEM;
    for (uint64_t i = 0; i < cap; i++)
        atomic_init(&q->cells[i].seq, i);
    q->mask = cap - 1;
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    return 0;
}

void disco__inject_fini(disco__inject *q)
{
    free(q->cells);
    q->cells = NULL;
}

bool disco__inject_try_push(disco__inject *q, void *item)
{
    uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
    struct disco__inject_cell *c;
    for (;;) {
        c = &q->cells[pos & q->mask];
        /* acquire: pairs with the release store of seq in try_pop, so the
         * consumer that freed this cell is done reading it. */
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(
                    &q->tail, &pos, pos + 1, memory_order_relaxed,
                    memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return false; /* the cell still holds the item of pos - cap */
        } else {
            pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
        }
    }
    c->item = item;
    /* release: pairs with the acquire load of seq in try_pop, publishing the
     * item and everything written before the push. */
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    return true;
}

void disco__inject_push(disco__inject *q, void *item)
{
    while (!disco__inject_try_push(q, item))
        sched_yield();
}

void *disco__inject_try_pop(disco__inject *q)
{
    uint64_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
    struct disco__inject_cell *c;
    for (;;) {
        c = &q->cells[pos & q->mask];
        /* acquire: pairs with the release store of seq in try_push. */
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - (pos + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(
                    &q->head, &pos, pos + 1, memory_order_relaxed,
                    memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return NULL; /* empty, or its producer has not filled it yet */
        } else {
            pos = atomic_load_explicit(&q->head, memory_order_relaxed);
        }
    }
    void *item = c->item;
    /* release: pairs with the acquire load of seq in try_push: the cell is
     * free again for the producer one lap later. */
    atomic_store_explicit(&c->seq, pos + q->mask + 1, memory_order_release);
    return item;
}

bool disco__inject_empty(disco__inject *q)
{
    return atomic_load_explicit(&q->head, memory_order_relaxed) >=
           atomic_load_explicit(&q->tail, memory_order_relaxed);
}
