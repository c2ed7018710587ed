/* SPDX-License-Identifier: BSD-3-Clause */
#include "sched/futex.h"
#include "sched/nowait.h"
#include "sched/sched.h"

void disco__waiter_init(disco__waiter *w)
{
    w->next = NULL;
    w->task = disco_current_task();
    atomic_init(&w->signal, 0);
    w->result = 0;
    w->buf = NULL;
}

int disco__waiter_wait(disco__waiter *w)
{
    if (disco__nowait_fn && !atomic_load_explicit(&w->signal, memory_order_acquire))
        disco__nowait_abort("a held disco_mutex, or disco_sync_end before its tasks ended");
    /* acquire: pairs with the release store in disco__waiter_wake, so the
     * waker's result and data are visible. */
    if (w->task) {
        while (!atomic_load_explicit(&w->signal, memory_order_acquire))
            disco__task_park();
        return w->result;
    }
    if (disco__held_bits) /* what this thread held back goes before it waits */
        disco__held_flush_now();
    if (!disco__sched_foreign_spin(&w->signal)) {
        uint32_t s = DISCO__WAITING;
        if (atomic_compare_exchange_strong_explicit(&w->signal, &s, DISCO__ASLEEP,
                                                    memory_order_acquire,
                                                    memory_order_acquire))
            while (atomic_load_explicit(&w->signal, memory_order_acquire) != DISCO__WOKEN)
                disco__futex_wait(&w->signal, DISCO__ASLEEP, UINT64_MAX);
    }
    return w->result;
}

void disco__waiter_wake(disco__waiter *w, int result)
{
    disco_task *t = w->task; /* read before signalling: w may vanish after */
    w->result = result;
    if (t) {
        /* Once signal is set the task may run on, finish and be freed
         * before we unpark it: hold a reference across the unpark. */
        disco__task_ref(t);
        atomic_store_explicit(&w->signal, DISCO__WOKEN, memory_order_release);
        disco__task_unpark(t);
        disco__task_unref(t);
    } else {
        /* A thread that still spins sees the store: no syscall. One that
         * sleeps may return and pop w off its stack as soon as it sees it;
         * futex_wake on a dead address is harmless (at worst a spurious
         * wake of an unrelated futex, which all callers tolerate). */
        if (atomic_exchange_explicit(&w->signal, DISCO__WOKEN, memory_order_acq_rel) ==
            DISCO__ASLEEP)
            disco__futex_wake(&w->signal, 1);
    }
}

void disco__waitq_init(disco__waitq *q)
{
    atomic_init(&q->lock.held, false);
    atomic_init(&q->n, 0);
    q->head = q->tail = NULL;
}

void disco__waitq_push_locked(disco__waitq *q, disco__waiter *w)
{
    w->next = NULL;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    /* seq_cst: the waiter's side of the Dekker pairing with wakers that
     * check n without the lock (see channel.c). */
    atomic_fetch_add_explicit(&q->n, 1, memory_order_seq_cst);
}

bool disco__waitq_remove_locked(disco__waitq *q, disco__waiter *w)
{
    disco__waiter *prev = NULL;
    for (disco__waiter *p = q->head; p; prev = p, p = p->next) {
        if (p != w)
            continue;
        if (prev)
            prev->next = p->next;
        else
            q->head = p->next;
        if (q->tail == p)
            q->tail = prev;
        atomic_fetch_sub_explicit(&q->n, 1, memory_order_relaxed);
        return true;
    }
    return false;
}

bool disco__waitq_cancel(void *q, disco__waiter *w)
{
    disco__waitq *wq = q;
    disco__spin_lock(&wq->lock);
    bool removed = disco__waitq_remove_locked(wq, w);
    disco__spin_unlock(&wq->lock);
    return removed;
}

disco__waiter *disco__waitq_take_all_locked(disco__waitq *q)
{
    disco__waiter *w = q->head;
    q->head = q->tail = NULL;
    atomic_store_explicit(&q->n, 0, memory_order_relaxed);
    return w;
}

void disco__waiters_wake_list(disco__waiter *w, int result)
{
    while (w) {
        disco__waiter *next = w->next; /* before the wake frees w */
        disco__waiter_wake(w, result);
        w = next;
    }
}

disco__waiter *disco__waitq_pop_locked(disco__waitq *q)
{
    disco__waiter *w = q->head;
    if (w) {
        if (!(q->head = w->next))
            q->tail = NULL;
        atomic_fetch_sub_explicit(&q->n, 1, memory_order_relaxed);
    }
    return w;
}

int disco__waitq_wake_one(disco__waitq *q, int result)
{
    disco__spin_lock(&q->lock);
    disco__waiter *w = disco__waitq_pop_locked(q);
    disco__spin_unlock(&q->lock);
    if (w)
        disco__waiter_wake(w, result);
    return w != NULL;
}

void disco__waitq_wake_all(disco__waitq *q, int result)
{
    disco__spin_lock(&q->lock);
    disco__waiter *w = disco__waitq_take_all_locked(q);
    disco__spin_unlock(&q->lock);
    disco__waiters_wake_list(w, result);
}
