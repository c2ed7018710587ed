/* SPDX-License-Identifier: BSD-3-Clause */
/* Task life: spawn, run, switch out, park/unpark, finish, join, detach. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/nowait.h"
#include "sched/sched.h"

#ifdef DISCO_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef DISCO_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define STACK_CACHE_MAX 64  /* default-size stacks kept per worker */

#define ID_BLOCK 4096
static _Atomic uint64_t next_task_id = 1;

static uint64_t new_task_id(disco__worker *w)
{
    if (!w)
        return atomic_fetch_add_explicit(&next_task_id, 1, memory_order_relaxed);
    if (w->next_id == w->end_id) {
        w->next_id = atomic_fetch_add_explicit(&next_task_id, ID_BLOCK,
                                               memory_order_relaxed);
        w->end_id = w->next_id + ID_BLOCK;
    }
    return w->next_id++;
}

static void task_free(disco__worker *w, disco_task *t)
{
    if (t->err)
        disco_error_free(t->err);
    if (t->name)
        free(t->name);
    disco__task_dealloc(w, t);
}

/* Drops n references. A count of n is ours alone (nobody can take a new
 * reference without holding one), so the RMW is skipped, as for every
 * detached task. acquire / acq_rel: the last owner sees every write of the
 * others before it frees the task. */
static void task_release_n(disco_task *t, int n)
{
    if (atomic_load_explicit(&t->refs, memory_order_acquire) == n ||
        atomic_fetch_sub_explicit(&t->refs, n, memory_order_acq_rel) == n)
        task_free(disco__self(), t);
}

static void task_release(disco_task *t) { task_release_n(t, 1); }

void disco__task_ref(disco_task *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void disco__task_unref(disco_task *t) { task_release(t); }

void disco__worker_drain_caches(disco__worker *w)
{
    disco__task_cache_drain(w);
    for (unsigned i = 0; i < w->n_free_stacks; i++)
        disco__stack_unmap(&w->free_stacks[i]);
    free(w->free_stacks);
    w->free_stacks = NULL;
    w->n_free_stacks = 0;
}

static int stack_get(disco__worker *w, disco_task *t)
{
    size_t def = disco__default_stack_size();
    size_t size = t->stack_size ? t->stack_size : def;
    if (size == def && w->n_free_stacks) {
        t->stack = w->free_stacks[--w->n_free_stacks];
        return 0;
    }
    return disco__stack_map(&t->stack, size);
}

static void stack_put(disco__worker *w, disco_task *t)
{
    if (t->stack.size == disco__default_stack_size() &&
        w->n_free_stacks < STACK_CACHE_MAX) {
        if (!w->free_stacks &&
            !(w->free_stacks = malloc(STACK_CACHE_MAX * sizeof(disco__stack)))) {
            disco__stack_unmap(&t->stack);
            return;
        }
        w->free_stacks[w->n_free_stacks++] = t->stack;
    } else {
        disco__stack_unmap(&t->stack);
    }
}

/* A new runnable task, not yet queued. NULL with the last error set. */
static disco_task *task_create(disco__worker *w, disco_task_fn fn, void *arg,
                               const disco_task_attr *attr)
{
    if (!fn) {
        disco_error_set(DISCO_EINVAL, "disco_async: no function");
        return NULL;
    }
    disco_task *t = disco__task_alloc(w);
    if (!t)
        goto nomem;
    t->fn = fn;
    t->arg = arg;
    t->id = new_task_id(w);
    bool detached = attr && attr->detached;
    t->stack_size = attr ? attr->stack_size : 0;
    if (attr && attr->name && !(t->name = strdup(attr->name))) {
        task_free(w, t);
        goto nomem;
    }
    atomic_init(&t->state, TASK_RUNNABLE);
    atomic_init(&t->joiner, detached ? TASK_DETACHED : NULL);
    atomic_init(&t->refs, detached ? 1 : 2);
    if ((t->scope = disco__sync_current(w ? w->current : NULL)))
        disco__sync_add(t->scope);
    if (w) /* single writer: a relaxed load+store, no RMW on this path */
        atomic_store_explicit(&w->spawned, atomic_load_explicit(
            &w->spawned, memory_order_relaxed) + 1, memory_order_relaxed);
    else
        disco__count_foreign_spawn(1);
    return t;
nomem:
    disco_error_set(DISCO_ENOMEM, "disco_async: out of memory");
    return NULL;
}

disco_task *disco_async_attr(disco_task_fn fn, void *arg,
                             const disco_task_attr *attr)
{
    disco__worker *w = disco__self(); /* a worker exists: it is running */
    if (!w && disco__sched_ensure() != 0)
        return NULL;
    disco_task *t = task_create(w, fn, arg, attr);
    if (t)
        disco__schedule_on(w, t);
    return t;
}

int disco__async_fifo(disco_task_fn fn, void *arg)
{
    disco__worker *w = disco__self();
    if (!w && disco__sched_ensure() != 0)
        return disco_error_code(disco_last_error());
    disco_task_attr attr = {.detached = true};
    disco_task *t = task_create(w, fn, arg, &attr);
    if (!t)
        return disco_error_code(disco_last_error());
    disco__schedule_fifo(t);
    return 0;
}

disco_task *disco_async(disco_task_fn fn, void *arg)
{
    return disco_async_attr(fn, arg, NULL);
}

/* Where every task starts, on its own stack. */
static void task_entry(void *arg)
{
    disco_task *t = arg;
#ifdef DISCO_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    t->status = t->fn(t->arg, &t->result);
    if (disco__held_bits & DISCO__HELD_BATCH) /* left open: it ends with the task */
        disco__held_flush_now();
    disco__task_switch_out(t, LEAVE_EXIT);
    __builtin_unreachable();
}

/* What the sanitizers need to hear about a switch: ASan the target's stack
 * and a slot for the leaving side's fake stack, TSan the target fiber. */
#ifdef DISCO_ASAN
#define ASAN_SLOT(x) (&(x)->asan_fake_stack)
#define ASAN_BOUNDS(w) (w)->stack_lo, (w)->stack_size
#else
#define ASAN_SLOT(x) NULL
#define ASAN_BOUNDS(w) NULL, 0
#endif
#ifdef DISCO_TSAN
#define TSAN_FIBER(x) ((x)->tsan_fiber)
#else
#define TSAN_FIBER(x) NULL
#endif

static inline void switch_to(disco__ctx *from, disco__ctx *to, void **fake_slot,
                             const void *to_lo, size_t to_size, void *to_fiber)
{
#ifdef DISCO_ASAN
    __sanitizer_start_switch_fiber(fake_slot, to_lo, to_size);
#endif
#ifdef DISCO_TSAN
    __tsan_switch_to_fiber(to_fiber, 0);
#endif
    disco__ctx_switch(from, to);
#ifdef DISCO_ASAN
    __sanitizer_finish_switch_fiber(*fake_slot, NULL, NULL);
#endif
    (void)fake_slot, (void)to_lo, (void)to_size, (void)to_fiber;
}

void disco__task_switch_out(disco_task *t, int leave)
{
    disco__worker *w = disco__self();
    t->leave = leave;
    w->leaving = t;
    /* A NULL save slot tells ASan the fiber is done: free its fake stack. */
    switch_to(&t->ctx, &w->ctx, leave == LEAVE_EXIT ? NULL : ASAN_SLOT(t),
              ASAN_BOUNDS(w), TSAN_FIBER(w));
}

/* Before running t: completions batched for another scope go out first. */
static inline void flush_other_scope(disco__worker *w, const disco_task *t)
{
    if (w->done_scope && w->done_scope != t->scope)
        disco__sync_flush(w);
}

/* Nobody will join a failed detached task: say so on stderr. */
static void report_detached_failure(const disco_task *t)
{
    if (t->status == 0)
        return;
    char buf[1024];
    if (t->err)
        disco_error_format(t->err, buf, sizeof(buf));
    else
        snprintf(buf, sizeof(buf), "%s", disco_strerror(t->status));
    fprintf(stderr, "disco: detached task %llu%s%s%s failed: %s\n",
            (unsigned long long)t->id, t->name ? " '" : "",
            t->name ? t->name : "", t->name ? "'" : "", buf);
}

static void count_finished(disco__worker *w)
{
    /* single writer: a relaxed load+store, no RMW */
    atomic_store_explicit(&w->finished, atomic_load_explicit(
        &w->finished, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* Bookkeeping once t's function has returned: scope, joiner, handle. */
static void task_complete(disco__worker *w, disco_task *t)
{
    /* Order matters: the scope copies the error before a joiner can take
     * it, and counts the task down only after it is marked done, so that
     * every task of an ended scope reports disco_task_done. */
    if (t->scope && t->status != 0)
        disco__sync_task_failed(t->scope, t);
    count_finished(w);
    /* acq_rel: release publishes status/result/err to the joiner (pairs with
     * its acquire CAS); acquire sees its waiter before we wake it. */
    disco__waiter *j = atomic_load_explicit(&t->joiner, memory_order_relaxed);
    if (j != TASK_DETACHED) /* TASK_DETACHED is final: no exchange needed */
        j = atomic_exchange_explicit(&t->joiner, TASK_DONE, memory_order_acq_rel);
    if (j == TASK_DETACHED)
        report_detached_failure(t);
    else if (j)
        disco__waiter_wake(j, 0);
    if (t->scope)
        disco__sync_task_done(w, t->scope);
    task_release(t);
}

/* Worker side, after a task with its own stack returned. */
static void task_finish(disco__worker *w, disco_task *t)
{
    if (t->has_stack) {
        stack_put(w, t);
        t->has_stack = false;
#ifdef DISCO_TSAN
        __tsan_destroy_fiber(t->tsan_fiber);
#endif
    }
    task_complete(w, t);
}

/*
 * Inline execution. A task that waits for a task it could run itself (the
 * one it joins, or a member of the scope it ends) and finds it unstarted at
 * the bottom of its own deque runs it right there, on its own stack, as
 * TBB's wait does: no stack to bind, no context switch, no park. This adds
 * no new dependency: the waiter could not continue before that task
 * finishes anyway. If the inlined task blocks, it parks with the waiter's
 * stack beneath it, and resumes (on any worker) on that stack.
 */

/* True while at least half of the running task's stack is left. */
static bool stack_room(const disco_task *me)
{
    char probe;
    return (size_t)(&probe - me->stack.lo) > me->stack.size / 2;
}

disco_task *disco__task_pop_own_if(disco__worker *w,
                                   bool (*want)(disco_task *, void *), void *arg)
{
    if (!w || !w->current || !stack_room(w->current))
        return NULL;
    disco_task *t = disco__deque_pop(&w->deque);
    /* Only an unstarted task: a deque also holds started ones that parked
     * and were woken (requeued by disco__schedule), and running one of
     * those from its function again would run its body twice. has_stack
     * is set when a task first runs and is published with it (the state
     * change of its park and the deque's push). */
    if (t && (t->has_stack || !want(t, arg))) {
        disco__deque_push(&w->deque, t); /* cannot fail: we just made room */
        t = NULL;
    }
    return t;
}

/* Runs t's body on the calling task's stack; returns the worker it ends on
 * (t may have parked and resumed elsewhere). */
static disco__worker *run_body_inline(disco_task *t)
{
    disco__worker *w = disco__self();
    disco_task *host = w->current;
    flush_other_scope(w, t);
    t->stack = host->stack; /* guard-page reports and sanitizers look here */
    t->has_stack = true;
#ifdef DISCO_TSAN
    t->tsan_fiber = host->tsan_fiber;
#endif
    w->current = t;
    t->status = t->fn(t->arg, &t->result);
    w = disco__self();
    w->current = host;
    t->has_stack = false;
    return w;
}

void disco__task_run_inline(disco_task *t)
{
    task_complete(run_body_inline(t), t);
}

void disco__task_run(disco__worker *w, disco_task *t)
{
    flush_other_scope(w, t);
    if (!t->has_stack) {
        if (stack_get(w, t) != 0) {
            /* No memory for a stack: fail the task instead of running it. */
            t->status = DISCO_ENOMEM;
            t->err = disco_error_new(DISCO_ENOMEM, "no memory for a task stack");
            task_finish(w, t);
            return;
        }
        t->has_stack = true;
        disco__ctx_make(&t->ctx, t->stack.lo, t->stack.size, task_entry, t);
#ifdef DISCO_TSAN
        t->tsan_fiber = __tsan_create_fiber(0);
#endif
    }
    w->current = t;
    switch_to(&w->ctx, &t->ctx, ASAN_SLOT(w), t->stack.lo, t->stack.size,
              TSAN_FIBER(t));
    /* Not necessarily t: if t was run inline on a host's stack and has
     * returned, it is the host that switched out. */
    t = w->leaving;
    w->current = NULL;
    switch (t->leave) {
    case LEAVE_YIELD: /* still RUNNABLE (or NOTIFIED, as good) */
        disco__schedule_yield(t);
        break;
    case LEAVE_PARK: {
        int s = TASK_PARKING;
        /* acq_rel CAS: pairs with the CAS in unpark. If an unpark came
         * while the task was on its way out (NOTIFIED), run it again;
         * an exchange, not a store, for the reason in unpark. */
        if (!atomic_compare_exchange_strong_explicit(
                &t->state, &s, TASK_PARKED, memory_order_acq_rel,
                memory_order_acquire)) {
            atomic_exchange_explicit(&t->state, TASK_RUNNABLE, memory_order_acq_rel);
            disco__schedule(t);
        }
        break;
    }
    case LEAVE_EXIT:
        task_finish(w, t);
        break;
    }
}

void disco__task_park(void)
{
    if (disco__held_bits)
        disco__held_flush_now();
    disco__worker *w = disco__self();
    disco_task *t = w->current;
    int s = TASK_RUNNABLE;
    /* A pending unpark (NOTIFIED) is consumed here instead of parking,
     * with an exchange, not a store, for the reason in unpark. */
    if (!atomic_compare_exchange_strong_explicit(&t->state, &s, TASK_PARKING,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire)) {
        atomic_exchange_explicit(&t->state, TASK_RUNNABLE, memory_order_acq_rel);
        return;
    }
    disco__task_switch_out(t, LEAVE_PARK);
}

/*
 * The waker has published its news (a waiter's signal) before calling
 * this, and the task checks the news before it parks. Both sides change
 * the state with read-modify-writes only, even where the value stays the
 * same (NOTIFIED stays NOTIFIED): so one side reads what the other wrote
 * (acq_rel), and either the task sees the news or we see it running or
 * parked and notify or wake it. A plain load here, or a plain store on the
 * task's side, lets both read stale values (store buffers) and the task
 * park for good with the news unseen.
 */
void disco__task_unpark(disco_task *t)
{
    int s = atomic_load_explicit(&t->state, memory_order_relaxed);
    for (;;) {
        int next = s == TASK_PARKED ? TASK_RUNNABLE : TASK_NOTIFIED;
        if (atomic_compare_exchange_weak_explicit(&t->state, &s, next,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))
            break;
    }
    if (s == TASK_PARKED)
        disco__schedule_woken(t);
}

void disco_yield(void)
{
    if (disco__held_bits)
        disco__held_flush_now();
    disco__worker *w = disco__self();
    /* In a no-wait function the current task, if any, is not its own. */
    if (w && w->current && !disco__nowait_fn)
        disco__task_switch_out(w->current, LEAVE_YIELD);
}

static bool is_task(disco_task *t, void *want) { return t == want; }

/* Takes an interrupted joiner's waiter back out of the joined task, unless
 * task_complete has already exchanged it for TASK_DONE. */
static bool cancel_join(void *task, disco__waiter *w)
{
    disco_task *t = task;
    disco__waiter *expect = w;
    /* relaxed: the slot's own value is all this settles; the task's
     * completion and a later join or detach meet on it with acq_rel. */
    return atomic_compare_exchange_strong_explicit(&t->joiner, &expect, NULL,
                                                   memory_order_relaxed,
                                                   memory_order_relaxed);
}

int disco_task_join(disco_task *t, void **result_p)
{
    if (!t)
        return disco_error_set(DISCO_EINVAL, "disco_task_join: NULL task");
    disco__worker *self = disco__self();
    if (self && t == self->current)
        return disco_error_set(DISCO_ESTATE, "a task cannot join itself");
    int refs = 1; /* the handle */
    if (disco__task_pop_own_if(self, is_task, t)) {
        /* Joiner and runner at once: no waiter to wake, no done flag for
         * anyone else to see (the handle is ours), so only the scope and
         * the counters need the news; both references go below. */
        disco__worker *w = run_body_inline(t);
        if (t->scope && t->status != 0)
            disco__sync_task_failed(t->scope, t);
        count_finished(w);
        if (t->scope)
            disco__sync_task_done(w, t->scope);
        refs = 2;
    } else {
        disco__waiter w;
        disco__waiter_init(&w);
        disco__waiter *expect = NULL;
        /* acq_rel: release publishes our waiter to task_finish; on failure
         * the acquire load of TASK_DONE pairs with task_finish's exchange. */
        if (atomic_compare_exchange_strong_explicit(&t->joiner, &expect, &w,
                                                    memory_order_acq_rel,
                                                    memory_order_acquire)) {
            int rc = disco__waiter_wait_intr(&w, cancel_join, t);
            if (rc)
                return rc; /* interrupted: the handle is still the caller's */
        }
    }
    int status = t->status;
    if (result_p)
        *result_p = t->result;
    if (status != 0) {
        char label[96] = "";
        if (t->name)
            snprintf(label, sizeof(label), " '%s'", t->name);
        disco_error *e = t->err;
        t->err = NULL;
        if (e)
            disco_error_put(e);
        else
            disco_error_set(status, "task %llu%s failed: %s",
                            (unsigned long long)t->id, label,
                            disco_strerror(status));
    }
    task_release_n(t, refs);
    return status;
}

bool disco_task_done(const disco_task *t)
{
    return atomic_load_explicit(&((disco_task *)t)->joiner,
                                memory_order_acquire) == TASK_DONE;
}

void disco_task_detach(disco_task *t)
{
    if (!t)
        return;
    disco__waiter *expect = NULL;
    /* acq_rel CAS: either task_finish will see TASK_DETACHED and report a
     * failure, or the task is already done (acquire: we see its status). */
    if (!atomic_compare_exchange_strong_explicit(&t->joiner, &expect,
                                                 TASK_DETACHED,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire))
        report_detached_failure(t);
    task_release(t);
}

uint64_t disco_task_id(const disco_task *t) { return t->id; }
const char *disco_task_name(const disco_task *t) { return t->name; }
