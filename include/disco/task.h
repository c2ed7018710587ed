/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Tasks and the scheduler: Julia's Task runtime in C.
 *
 * A task is a function running on its own stack (stackful), scheduled by a
 * pool of scheduler threads with work stealing. A blocking disco call made in
 * a task (joining another task, disco_sleep, a channel that is full or empty,
 * an event, later fetch/take on remote references) parks the task, not its
 * thread: the thread runs other tasks meanwhile. The same calls also work
 * from any thread that is not a scheduler thread, such as the program's main
 * thread; there they block the calling thread.
 *
 * The scheduler starts on first use with DISCO_THREADS threads (default: one
 * per core of the process's cpuset, found with hwloc), each bound to a core.
 * disco_sched_start() starts it explicitly with a given count.
 *
 * Environment:
 *   DISCO_THREADS     scheduler threads (>= 1)
 *   DISCO_STACK_SIZE  task stack size in bytes (default 256 KiB; a guard page
 *                     below each stack turns an overflow into a clear fatal
 *                     message naming the task)
 *   DISCO_BIND        0 leaves the scheduler threads unbound
 *
 * Interruption (Julia's interrupt): the runtime may interrupt a task, as
 * disco_interrupt does to the remote calls running on a worker. Waiting
 * calls are interruptible: disco_sleep, disco_timedwait, disco_task_join,
 * disco_event_wait, disco_cond_wait, and disco_put, disco_take, disco_fetch
 * and disco_wait on local channels. When the calling task is interrupted
 * while such a call waits, or already was when the call has to wait, the
 * call returns DISCO_EINTERRUPTED (the last error says "task N
 * interrupted") without having done its work: a take took no item, a put
 * delivered none. A call that need not wait completes as usual, and a
 * wake-up that raced with the interrupt wins. The interruption is sticky:
 * every later wait of the task fails the same way, so the task unwinds;
 * code that computes without waiting polls disco_interrupted. Threads
 * outside the scheduler are never interrupted; disco_mutex_lock and
 * disco_sync_end always wait. Inside a no-wait function (see
 * disco_register_nowait in disco/rpc.h) the interruptible calls fail with
 * DISCO_ENOWAIT instead of waiting.
 *
 * Julia names: @async -> disco_async, wait/fetch(task) -> disco_task_join,
 * @sync -> disco_sync_begin/disco_sync_end, yield -> disco_yield,
 * sleep -> disco_sleep, timedwait -> disco_timedwait, Event -> disco_event,
 * Threads.Condition -> disco_cond with disco_mutex.
 */
#ifndef DISCO_TASK_H
#define DISCO_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disco/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct disco_task disco_task;

/*
 * A task body. It returns 0 on success or a negative status; on failure it
 * should leave the detail in its last error (disco_error_set). *result_p
 * (initially NULL) is handed to the joiner.
 */
typedef int (*disco_task_fn)(void *arg, void **result_p);

/* Optional attributes of a new task; zero-initialise and set what you need. */
typedef struct disco_task_attr {
    const char *name;  /* copied; shown in errors and crash messages */
    size_t stack_size; /* 0: DISCO_STACK_SIZE or the default */
    bool detached;     /* no handle: nobody joins it (see disco_task_detach) */
} disco_task_attr;

/*
 * Starts the scheduler with nthreads threads (0: DISCO_THREADS or one per
 * core). Optional: every other call starts it on demand. DISCO_EBUSY if it is
 * already running.
 */
DISCO_API int disco_sched_start(unsigned nthreads);

/*
 * Stops the scheduler threads and frees their caches. Call it only when no
 * task is running or queued (for example after joining everything, before
 * exit); DISCO_EBUSY otherwise. The scheduler may be started again later.
 */
DISCO_API int disco_sched_stop(void);

/* Number of scheduler threads (starting the scheduler if needed; 0 if it
 * could not start, with the last error set). */
DISCO_API unsigned disco_sched_nthreads(void);

/*
 * Creates a task running fn(arg) and makes it runnable. Returns its handle,
 * which must be passed to disco_task_join or disco_task_detach exactly once,
 * or NULL with the last error set (DISCO_EINVAL for a NULL fn, DISCO_ENOMEM,
 * or why the scheduler could not start). When called inside a
 * disco_sync scope the task also belongs to that scope. The task starts on
 * the calling thread's queue and may be stolen by any other thread.
 */
DISCO_API disco_task *disco_async(disco_task_fn fn, void *arg);

/* Same with attributes. With attr->detached it returns a non-NULL value that
 * must not be used (it only tells success). */
DISCO_API disco_task *disco_async_attr(disco_task_fn fn, void *arg,
                             const disco_task_attr *attr);

/*
 * Waits for the task to finish, stores its result in *result_p (if not
 * NULL), releases the handle and returns the task's status. On failure the
 * task's error becomes the caller's last error (Julia's TaskFailedException).
 * DISCO_EINTERRUPTED if the calling task is interrupted while it waits:
 * then the handle is not released and must still be joined or detached.
 */
DISCO_API int disco_task_join(disco_task *task, void **result_p);

/* True once the task has finished (Julia's istaskdone). */
DISCO_API bool disco_task_done(const disco_task *task);

/*
 * Releases the handle without waiting. The task runs to completion; if it
 * fails, its error is printed to stderr with its name and id.
 */
DISCO_API void disco_task_detach(disco_task *task);

/* The running task, or NULL outside any task. */
DISCO_API disco_task *disco_current_task(void);

/* A task's unique id (> 0) and its name (NULL when it has none). */
DISCO_API uint64_t disco_task_id(const disco_task *task);
DISCO_API const char *disco_task_name(const disco_task *task);

/* Lets other runnable tasks run; returns at once outside a task. */
DISCO_API void disco_yield(void);

/*
 * True when the calling task has been interrupted (see the top of this
 * file); false outside tasks. A long computation polls it to stop early:
 *
 *     for (i = 0; i < n && !disco_interrupted(); i++) step(i);
 *     if (i < n) return disco_error_set(DISCO_EINTERRUPTED, "stopped");
 */
DISCO_API bool disco_interrupted(void);

/* Sleeps at least `seconds` (>= 0): parks the task, or sleeps the thread
 * outside a task. DISCO_EINVAL for a negative or NaN duration,
 * DISCO_EINTERRUPTED if the task is interrupted. */
DISCO_API int disco_sleep(double seconds);

/*
 * Julia's timedwait: calls test(arg) every pollint seconds until it returns
 * true (returns 0) or `seconds` have passed (returns DISCO_ETIMEDOUT). test
 * is called at least once, first right away. DISCO_EINVAL for a negative
 * timeout or a pollint that is not positive; DISCO_EINTERRUPTED if the
 * calling task is interrupted.
 */
DISCO_API int disco_timedwait(bool (*test)(void *arg), void *arg, double seconds,
                    double pollint);

/*
 * @sync scope. Tasks created by disco_async between disco_sync_begin and
 * disco_sync_end in the same task (or thread) belong to the scope;
 * disco_sync_end waits for all of them. Scopes nest; a task created inside a
 * scope does not belong to scopes its own body opens or to its creator's.
 * The struct is caller storage; leave its fields alone.
 */
typedef struct disco_sync {
    void *impl_[8];
} disco_sync;

DISCO_API void disco_sync_begin(disco_sync *scope);

/*
 * Waits for every task of the scope. Returns 0 when all succeeded; otherwise
 * DISCO_ECOMPOSITE with a composite last error that lists each failed task's
 * error (as Julia's @sync throws a CompositeException). Handles of tasks in
 * the scope still have to be joined or detached.
 */
DISCO_API int disco_sync_end(disco_sync *scope);

/*
 * Event (Julia's Base.Event). disco_event_notify sets the event and wakes
 * every waiter; it stays set until disco_event_reset. With autoreset, notify
 * wakes exactly one waiter (or, if none waits, lets the next wait through)
 * and the event resets itself. Caller storage: initialise with
 * disco_event_init; no destroy is needed when nobody waits.
 */
typedef struct disco_event {
    void *impl_[6];
} disco_event;

DISCO_API void disco_event_init(disco_event *ev, bool autoreset);
DISCO_API void disco_event_notify(disco_event *ev);
/* Waits until the event is set: 0, or DISCO_EINTERRUPTED if the calling
 * task is interrupted first (an autoreset event stays set for another). */
DISCO_API int disco_event_wait(disco_event *ev);
DISCO_API void disco_event_reset(disco_event *ev);
DISCO_API bool disco_event_isset(disco_event *ev);

/*
 * Mutex and condition that park tasks rather than threads (Julia's
 * ReentrantLock without reentrancy, and Threads.Condition). A disco_mutex
 * may be released by the task that holds it only. Caller storage,
 * initialised with the *_init functions; no destroy is needed when unused.
 */
typedef struct disco_mutex {
    void *impl_[6];
} disco_mutex;

typedef struct disco_cond {
    void *impl_[4];
} disco_cond;

DISCO_API void disco_mutex_init(disco_mutex *m);
DISCO_API void disco_mutex_lock(disco_mutex *m);
DISCO_API bool disco_mutex_trylock(disco_mutex *m);
DISCO_API void disco_mutex_unlock(disco_mutex *m);

DISCO_API void disco_cond_init(disco_cond *c);
/* Atomically releases m and waits for a notify, then re-acquires m. As with
 * every condition variable, re-check the predicate in a loop. 0, or
 * DISCO_EINTERRUPTED if the calling task is interrupted while it waits; m
 * is held again in both cases. */
DISCO_API int disco_cond_wait(disco_cond *c, disco_mutex *m);
DISCO_API void disco_cond_notify_one(disco_cond *c);
DISCO_API void disco_cond_notify_all(disco_cond *c);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_TASK_H */
