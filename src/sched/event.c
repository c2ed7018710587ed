/* SPDX-License-Identifier: BSD-3-Clause */
/* Events, mutexes and conditions that park tasks (see disco/task.h). */
#include <stdatomic.h>

#include "sched/nowait.h"
#include "sched/sched.h"

typedef struct {
    disco__waitq q;
    atomic_int set;
    bool autoreset;
} event_impl;

typedef struct {
    disco__waitq q;
    atomic_int locked;
} mutex_impl;

typedef struct {
    disco__waitq q;
} cond_impl;

_Static_assert(sizeof(event_impl) <= sizeof(disco_event), "disco_event");
_Static_assert(sizeof(mutex_impl) <= sizeof(disco_mutex), "disco_mutex");
_Static_assert(sizeof(cond_impl) <= sizeof(disco_cond), "disco_cond");

void disco_event_init(disco_event *ev, bool autoreset)
{
    event_impl *e = (event_impl *)ev;
    disco__waitq_init(&e->q);
    atomic_init(&e->set, 0);
    e->autoreset = autoreset;
}

/* Consumes or observes the set state; true when the waiter may pass. */
static bool event_pass(event_impl *e)
{
    if (!e->autoreset)
        return atomic_load_explicit(&e->set, memory_order_acquire);
    int one = 1;
    return atomic_compare_exchange_strong_explicit(
        &e->set, &one, 0, memory_order_acquire, memory_order_relaxed);
}

int disco_event_wait(disco_event *ev)
{
    event_impl *e = (event_impl *)ev;
    if (event_pass(e))
        return 0;
    disco__waiter w;
    disco__waiter_init(&w);
    disco__spin_lock(&e->q.lock);
    if (event_pass(e)) { /* notify ran between the fast check and the lock */
        disco__spin_unlock(&e->q.lock);
        return 0;
    }
    disco__waitq_push_locked(&e->q, &w);
    disco__spin_unlock(&e->q.lock);
    /* A notify that pops us first is not lost: we pass (and, autoreset,
     * consume it); taken back by an interrupt, we consumed nothing. */
    return disco__waiter_wait_intr(&w, disco__waitq_cancel, &e->q);
}

void disco_event_notify(disco_event *ev)
{
    event_impl *e = (event_impl *)ev;
    if (!e->autoreset) {
        /* Set under the lock so that a waiter that checked `set` before
         * queueing is already in the queue we empty. */
        disco__spin_lock(&e->q.lock);
        atomic_store_explicit(&e->set, 1, memory_order_release);
        disco__waiter *all = disco__waitq_take_all_locked(&e->q);
        disco__spin_unlock(&e->q.lock);
        disco__waiters_wake_list(all, 0);
        return;
    }
    disco__spin_lock(&e->q.lock);
    disco__waiter *w = disco__waitq_pop_locked(&e->q);
    if (!w)
        atomic_store_explicit(&e->set, 1, memory_order_release);
    disco__spin_unlock(&e->q.lock);
    if (w)
        disco__waiter_wake(w, 0);
}

void disco_event_reset(disco_event *ev)
{
    atomic_store_explicit(&((event_impl *)ev)->set, 0, memory_order_relaxed);
}

bool disco_event_isset(disco_event *ev)
{
    return atomic_load_explicit(&((event_impl *)ev)->set, memory_order_acquire);
}

void disco_mutex_init(disco_mutex *mu)
{
    mutex_impl *m = (mutex_impl *)mu;
    disco__waitq_init(&m->q);
    atomic_init(&m->locked, 0);
}

bool disco_mutex_trylock(disco_mutex *mu)
{
    mutex_impl *m = (mutex_impl *)mu;
    int zero = 0;
    /* acquire: pairs with the release store in disco_mutex_unlock. */
    return atomic_compare_exchange_strong_explicit(
        &m->locked, &zero, 1, memory_order_acquire, memory_order_relaxed);
}

void disco_mutex_lock(disco_mutex *mu)
{
    mutex_impl *m = (mutex_impl *)mu;
    if (disco_mutex_trylock(mu))
        return;
    disco__waiter w;
    disco__waiter_init(&w);
    disco__spin_lock(&m->q.lock);
    if (disco_mutex_trylock(mu)) {
        disco__spin_unlock(&m->q.lock);
        return;
    }
    disco__waitq_push_locked(&m->q, &w);
    disco__spin_unlock(&m->q.lock);
    /* Unlock hands the mutex over without clearing `locked`. */
    disco__waiter_wait(&w);
}

void disco_mutex_unlock(disco_mutex *mu)
{
    mutex_impl *m = (mutex_impl *)mu;
    disco__spin_lock(&m->q.lock);
    disco__waiter *w = disco__waitq_pop_locked(&m->q);
    if (!w) /* release: pairs with the acquire CAS in trylock */
        atomic_store_explicit(&m->locked, 0, memory_order_release);
    disco__spin_unlock(&m->q.lock);
    if (w)
        disco__waiter_wake(w, 0); /* direct hand-off: no barging */
}

void disco_cond_init(disco_cond *cv)
{
    disco__waitq_init(&((cond_impl *)cv)->q);
}

static int cond_wait(disco_cond *cv, disco_mutex *mu, bool interruptible)
{
    if (disco__nowait_fn) { /* refused with the mutex still held */
        if (!interruptible)
            disco__nowait_abort("an uninterruptible condition wait");
        return disco__nowait_refuse("disco_cond_wait");
    }
    cond_impl *c = (cond_impl *)cv;
    disco__waiter w;
    disco__waiter_init(&w);
    /* Queue before releasing the mutex: a notify made under the mutex after
     * our unlock finds us. */
    disco__spin_lock(&c->q.lock);
    disco__waitq_push_locked(&c->q, &w);
    disco__spin_unlock(&c->q.lock);
    disco_mutex_unlock(mu);
    int rc = interruptible ? disco__waiter_wait_intr(&w, disco__waitq_cancel, &c->q)
                           : disco__waiter_wait(&w);
    disco_mutex_lock(mu); /* held again on every return, as callers expect */
    return rc;
}

int disco_cond_wait(disco_cond *cv, disco_mutex *mu)
{
    return cond_wait(cv, mu, true);
}

void disco__cond_wait_uninterruptible(disco_cond *cv, disco_mutex *mu)
{
    cond_wait(cv, mu, false);
}

void disco_cond_notify_one(disco_cond *cv)
{
    disco__waitq_wake_one(&((cond_impl *)cv)->q, 0);
}

void disco_cond_notify_all(disco_cond *cv)
{
    disco__waitq_wake_all(&((cond_impl *)cv)->q, 0);
}
