/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * @sync scopes. `pending` counts the scope's unfinished tasks plus one for
 * the scope itself; disco_sync_end drops that one and waits for zero.
 * Failed tasks leave a copy of their error in the scope, reported as one
 * composite error.
 *
 * Only the scope's owner (the task or thread that opened it) spawns into it,
 * so it reserves counts in batches of CREDIT_BATCH instead of one contended
 * increment per spawn: pending then over-counts by the unused credits,
 * which disco_sync_end gives back along with its own count.
 */
#include <assert.h>
#include <stdlib.h>

#include "sched/sched.h"

#define CREDIT_BATCH 256

struct disco__sync_impl {
    _Atomic long pending;
    long credits; /* owner only: reserved in pending, not yet used */
    disco__spin lock; /* errors */
    disco_error **errors;
    size_t n_errors;
    size_t n_failed; /* > n_errors only when memory ran out */
    disco__waiter *waiter;
    struct disco__sync_impl *parent;
};

_Static_assert(sizeof(struct disco__sync_impl) <= sizeof(disco_sync),
               "disco_sync too small");

static DISCO__TLS struct disco__sync_impl *tls_scope; /* outside tasks */

/* Thread-local access kept out of line, like disco__self. */
__attribute__((noinline)) static struct disco__sync_impl **scope_slot(void)
{
    disco_task *t = disco_current_task();
    __asm__ __volatile__("" ::: "memory");
    return t ? &t->scope_top : &tls_scope;
}

struct disco__sync_impl *disco__sync_current(disco_task *cur)
{
    return cur ? cur->scope_top : tls_scope;
}

void disco_sync_begin(disco_sync *scope)
{
    struct disco__sync_impl *s = (struct disco__sync_impl *)scope;
    atomic_init(&s->pending, 1);
    s->credits = 0;
    atomic_init(&s->lock.held, false);
    s->errors = NULL;
    s->n_errors = 0;
    s->n_failed = 0;
    s->waiter = NULL;
    struct disco__sync_impl **slot = scope_slot();
    s->parent = *slot;
    *slot = s;
}

void disco__sync_add(struct disco__sync_impl *s)
{
    if (s->credits == 0) {
        /* relaxed: pending only has to stay above zero until sync_end,
         * which this increment (made before the task exists) ensures. */
        atomic_fetch_add_explicit(&s->pending, CREDIT_BATCH, memory_order_relaxed);
        s->credits = CREDIT_BATCH;
    }
    s->credits--;
}

void disco__sync_task_failed(struct disco__sync_impl *s, disco_task *t)
{
    disco_error *e = t->err ? disco_error_copy(t->err)
                            : disco_error_new(t->status, "task %llu failed: %s",
                                              (unsigned long long)t->id,
                                              disco_strerror(t->status));
    disco__spin_lock(&s->lock);
    s->n_failed++;
    disco_error **grown = realloc(s->errors, (s->n_errors + 1) * sizeof(*grown));
    if (grown && e) {
        s->errors = grown;
        s->errors[s->n_errors++] = e;
    } else {
        if (grown)
            s->errors = grown;
        disco_error_free(e); /* out of memory: this detail is lost */
    }
    disco__spin_unlock(&s->lock);
}

/*
 * Completions are counted per worker and handed to the scope in one
 * decrement (disco__sync_flush): with many small tasks finishing on every
 * worker, one shared counter per scope would bounce between their caches on
 * every task. A worker flushes before it runs a task of another scope and
 * before it goes looking for work, so an owner never waits on completions
 * a worker is sitting on: while the worker keeps running tasks of the same
 * scope, the scope is not finished anyway.
 */
void disco__sync_task_done(disco__worker *w, struct disco__sync_impl *s)
{
    if (w->done_scope != s) {
        disco__sync_flush(w);
        w->done_scope = s;
    }
    w->done_count++;
}

void disco__sync_flush(disco__worker *w)
{
    struct disco__sync_impl *s = w->done_scope;
    long n = w->done_count;
    w->done_scope = NULL;
    w->done_count = 0;
    /* acq_rel: the last decrement publishes every task's error to the
     * scope owner and sees its waiter (published by its own decrement). */
    if (n && atomic_fetch_sub_explicit(&s->pending, n, memory_order_acq_rel) == n)
        disco__waiter_wake(s->waiter, 0);
}

static bool in_scope(disco_task *t, void *s) { return t->scope == s; }

int disco_sync_end(disco_sync *scope)
{
    struct disco__sync_impl *s = (struct disco__sync_impl *)scope;
    struct disco__sync_impl **slot = scope_slot();
    assert(*slot == s && "disco_sync_end: scopes must nest");
    *slot = s->parent;
    /* Run our own unstarted members inline first (see task.c). */
    disco_task *t;
    while ((t = disco__task_pop_own_if(disco__self(), in_scope, s)))
        disco__task_run_inline(t);
    disco__worker *self = disco__self();
    if (self && self->done_scope == s)
        disco__sync_flush(self); /* our own share first, then wait */
    disco__waiter w;
    disco__waiter_init(&w);
    s->waiter = &w;
    long mine = 1 + s->credits;
    if (atomic_fetch_sub_explicit(&s->pending, mine, memory_order_acq_rel) != mine)
        disco__waiter_wait(&w);
    if (!s->n_failed)
        return 0;
    if (!s->n_errors)
        return disco_error_set(DISCO_ECOMPOSITE,
                               "%zu tasks failed (no memory for their errors)",
                               s->n_failed);
    disco_error *e = disco_error_composite(s->errors, s->n_errors);
    free(s->errors);
    s->errors = NULL;
    disco_error_put(e);
    return DISCO_ECOMPOSITE;
}
