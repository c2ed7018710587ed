/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Scheduler internals shared by the files of src/sched.
 *
 * Every scheduler thread ("worker") runs a loop on its own native stack:
 * find a runnable task (own deque, due timers, injection queue, steal from a
 * random victim), switch to it, and when the task switches back, do what it
 * asked on leaving (requeue after a yield, finish a park, retire it after it
 * returned). Doing that work on the worker's stack, after the task's stack is
 * no longer in use, is what makes park and exit race-free.
 */
#ifndef DISCO_SCHED_SCHED_H
#define DISCO_SCHED_SCHED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/compiler.h"
#include "disco/task.h"
#include "sched/context.h"
#include "sched/deque.h"
#include "sched/inject.h"
#include "sched/stack.h"
#include "sched/waitq.h"

/* Task states. RUNNABLE: queued or running. NOTIFIED: an unpark arrived
 * while the task was runnable or on its way to park; its next park returns
 * at once. After creation every change of state is a read-modify-write
 * (see disco__task_unpark). */
enum {
    TASK_RUNNABLE,
    TASK_PARKING,
    TASK_PARKED,
    TASK_NOTIFIED,
};

/* What a task asks of the worker when it switches out. */
enum { LEAVE_YIELD, LEAVE_PARK, LEAVE_EXIT };

struct disco__sync_impl;

struct disco_task {
    disco__ctx ctx;
    _Atomic int state;
    int leave;
    disco_task_fn fn;
    void *arg;
    void *result;
    int status;
    bool has_stack;
    disco_error *err; /* the task's last-error slot */
    disco__stack stack;
    size_t stack_size;                /* requested; 0 = default */
    struct disco__sync_impl *scope;     /* scope the task belongs to */
    struct disco__sync_impl *scope_top; /* innermost scope it opened */
    /* NULL, the joiner's waiter, TASK_DETACHED or TASK_DONE: one CAS
     * settles the race between a finishing task and its joiner. */
    _Atomic(disco__waiter *) joiner;
    _Atomic int refs; /* handle + the running task itself */
    /* Interruption (interrupt.c), zeroed at allocation. `interrupted` is
     * sticky. wait_lock guards the interruptible wait the task is in: its
     * waiter (NULL when none) and how to take it back from its queue. */
    atomic_bool interrupted;
    disco__spin wait_lock;
    disco__waiter *wait;
    disco__cancel_fn wait_cancel;
    void *wait_arg;
    uint64_t id;
    char *name;
    struct disco_task *next_free;
#ifdef DISCO_ASAN
    void *asan_fake_stack;
#endif
#ifdef DISCO_TSAN
    void *tsan_fiber;
#endif
};

#define TASK_DONE ((disco__waiter *)1)
#define TASK_DETACHED ((disco__waiter *)2)

typedef struct disco__worker {
    disco__deque deque;
    disco__ctx ctx; /* the worker loop's own context */
    disco_task *current;
    disco_task *leaving; /* the task that last switched back to the loop */
    /* The task most recently woken by a task of this worker: it runs as
     * soon as the waker parks or yields (a producer/consumer pair stays on
     * one worker, cache-hot, instead of bouncing between cores). Other
     * workers take it only after it has sat there for a while (see
     * steal_next); next_gen tells them it is still the same one. */
    /* Own cache line: thieves read it while they search, and must not pull
     * in the owner's hot fields (current, ctx) with it. */
    _Alignas(64) _Atomic(disco_task *) next;
    _Atomic uint32_t next_gen;
    _Alignas(64) char next_pad_;
    /* Thief side: what this worker saw in a victim's next slot. */
    disco_task *probe_task;
    uint32_t probe_gen;
    unsigned probe_count;
    unsigned index;
    uint64_t rng;
    uint32_t tick;
    pthread_t thread;
    /* Completions of one scope not yet counted down (see sync.c). */
    struct disco__sync_impl *done_scope;
    long done_count;
    /* Task ids are handed out in blocks to keep a global counter off the
     * spawn path. */
    uint64_t next_id, end_id;
    /* Single-writer counters, summed by disco_sched_stop. */
    _Atomic uint64_t spawned, finished;
    /* Caches of retired tasks and default-size stacks (owner only). */
    disco_task *free_tasks;
    unsigned n_free_tasks;
    disco__stack *free_stacks;
    unsigned n_free_stacks;
#ifdef DISCO_ASAN
    void *asan_fake_stack;
    const void *stack_lo;
    size_t stack_size;
#endif
#ifdef DISCO_TSAN
    void *tsan_fiber;
#endif
} disco__worker;

/* The calling thread's worker, or NULL on a foreign thread. Not inlined on
 * purpose: a task may resume on another thread after any call that can
 * park, and the compiler must not reuse a thread-local address across it. */
disco__worker *disco__self(void);

/*
 * Network progress, driven by the scheduler's idle workers: a worker that
 * runs out of tasks polls (poll(arg, 0)) while it spins, and the worker that
 * goes to sleep first sleeps inside poll(arg, timeout) instead of on its
 * futex, so that arriving messages wake it. New work interrupts that sleep
 * through interrupt(arg). One worker at a time runs poll; its callbacks may
 * spawn and wake tasks but must not block. The hook must stay valid until
 * it is replaced; disco__sched_set_progress(NULL) returns only when no
 * worker is inside the old one.
 */
typedef struct disco__progress_hook {
    int (*poll)(void *arg, int timeout_ms);
    void (*interrupt)(void *arg);
    void *arg;
} disco__progress_hook;

void disco__sched_set_progress(const disco__progress_hook *hook);

/* A thread outside the scheduler about to block until *signal is set:
 * unless the progress policy is `block`, it first polls the network itself
 * for the spin budget (`poll`: until signal is set), since what it waits
 * for most likely arrives from there; the scheduler's workers leave the
 * network to it meanwhile. True if signal was set while it spun. */
bool disco__sched_foreign_spin(_Atomic uint32_t *signal);

/* Reads the network once if no one else is (from any thread or task). */
void disco__sched_poll_network(void);

/*
 * Messages a thread holds back to send together (a batch: see
 * disco_batch_begin) must go out before the thread waits or runs out of
 * work, or the answer it waits for may never come. The core sets bits of
 * disco__held_bits on the thread that holds them, and registers the
 * function that sends them and clears disco__held_bits. The scheduler
 * calls it when a task parks or yields, when a thread waits or sleeps
 * outside a task, when a worker finds nothing to run or has run
 * BUSY_POLL_EVERY tasks in a row, and when a task returns with a batch
 * open. It costs a thread-local load on those paths, and a call only when
 * set.
 */
#define DISCO__HELD_SENDS 1u /* messages held back */
#define DISCO__HELD_BATCH 2u /* a batch is open */
extern DISCO__TLS unsigned disco__held_bits;
void disco__sched_set_held_flush(void (*flush)(void));
void disco__held_flush_now(void); /* calls it */

/* Starts the scheduler if it is not running: 0, or a status with the last
 * error set. */
int disco__sched_ensure(void);

/* Default stack size from DISCO_STACK_SIZE, fixed at start. */
size_t disco__default_stack_size(void);

/* Makes a runnable task visible to the workers: the calling worker's deque,
 * else the injection queue; wakes a sleeping worker if any. */
void disco__schedule(disco_task *t);
/* Same, for a caller that already knows its worker (NULL: foreign). */
void disco__schedule_on(disco__worker *w, disco_task *t);

/* Spawns a detached task behind every task queued before it (the
 * injection queue is FIFO): remote calls start in the order they arrived. */
int disco__async_fifo(disco_task_fn fn, void *arg);

/* Queues t behind everything in the injection queue (FIFO). */
void disco__schedule_fifo(disco_task *t);

/* Makes a task woken by an unpark runnable: into the calling worker's next
 * slot when a task wakes it, else like disco__schedule. */
void disco__schedule_woken(disco_task *t);

/* Requeues a yielded task at the back (the injection queue is FIFO). */
void disco__schedule_yield(disco_task *t);

/* Inside a task: switch to the worker loop with the given leave reason. */
void disco__task_switch_out(disco_task *t, int leave);

/* Parks the running task until disco__task_unpark (may return spuriously:
 * callers loop on their own condition). */
void disco__task_park(void);
/* Makes a parked task runnable; harmless on a running or queued one. */
void disco__task_unpark(disco_task *t);

/* Task struct allocation (task_alloc.c). w is the calling worker or NULL.
 * disco__task_alloc returns zeroed memory or NULL. */
disco_task *disco__task_alloc(disco__worker *w);
void disco__task_dealloc(disco__worker *w, disco_task *t);
void disco__task_cache_drain(disco__worker *w);
void disco__task_depot_drain(void);

/* Keep a task struct alive across a wake-up (see disco__waiter_wake). */
void disco__task_ref(disco_task *t);
void disco__task_unref(disco_task *t);

/* Inline execution (see task.c): pops the bottom of w's deque if it is a
 * task not yet started that want(t, arg) accepts, and w's running task has
 * stack to spare. */
disco_task *disco__task_pop_own_if(disco__worker *w,
                                   bool (*want)(disco_task *, void *), void *arg);
/* Runs t on the calling task's stack and completes it (scope, joiner,
 * handle) like a task that ran on its own. */
void disco__task_run_inline(disco_task *t);

/* Worker side of task life: run it, finish it. */
void disco__task_run(disco__worker *w, disco_task *t);
/* Frees everything cached by a worker (at stop). */
void disco__worker_drain_caches(disco__worker *w);

/* Total tasks spawned minus finished, over all workers and foreign threads. */
int64_t disco__tasks_live(void);
void disco__count_foreign_spawn(int delta);

/* Timers: cb(arg) runs on a scheduler thread at or after deadline_ns
 * (disco__now_ns clock). DISCO_ENOMEM. */
int disco__timer_add(uint64_t deadline_ns, void (*cb)(void *), void *arg);
/* Removes the pending timer (cb, arg): true if it was pending, false if it
 * has run or is running (O(timers); for interrupted sleeps). */
bool disco__timer_cancel(void (*cb)(void *), void *arg);
/* Earliest pending deadline, UINT64_MAX when none. */
uint64_t disco__timer_next(void);
/* Runs the callbacks of every timer due at now; returns how many ran. */
unsigned disco__timer_run_due(uint64_t now);
void disco__timer_fini(void);

/* disco_cond_wait that an interrupt does not end, for a wait that must
 * outlast the tasks it waits for (they use the waiter's stack); the
 * interrupt stays pending for the task's next interruptible wait. */
void disco__cond_wait_uninterruptible(disco_cond *c, disco_mutex *m);

/* Sync scopes (sync.c): called by disco_async and by task completion. */
void disco__sync_add(struct disco__sync_impl *s);
void disco__sync_task_failed(struct disco__sync_impl *s, disco_task *t);
/* Counts a finished task of s on worker w (batched, see sync.c). */
void disco__sync_task_done(disco__worker *w, struct disco__sync_impl *s);
/* Hands w's batched completions to their scope. */
void disco__sync_flush(disco__worker *w);
/* The innermost open scope of task cur, or of the calling thread when cur
 * is NULL. */
struct disco__sync_impl *disco__sync_current(disco_task *cur);

#endif
