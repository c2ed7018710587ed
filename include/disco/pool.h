/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Worker pools and the parallel patterns built on them: Julia's WorkerPool,
 * CachingPool, remote, pmap and @distributed for.
 *
 * A pool is a set of member processes and a queue of the idle ones. A call
 * through a pool takes an idle worker (waiting while all are busy), runs the
 * call there and gives the worker back once the call has finished. A worker
 * that dies or is removed leaves every pool at once; a caller waiting for a
 * worker of a pool that lost its last member fails with DISCO_ENOPROC.
 *
 * A closure is a registered function plus captured values (Julia's closure
 * over `let` bindings): fn(captured..., args...) runs on the worker with the
 * captured values first. Through a WorkerPool the captured values travel with
 * every call; through a CachingPool they cross to each worker once and are
 * cached there, later calls sending only a key (Julia's CachingPool). Each
 * pool counts, per worker, the captured bytes it sent (disco_pool_stats).
 *
 * Thread-safety: every function may be called from any task or thread,
 * concurrently, except that a pool or closure must not be freed while in
 * use.
 *
 * Interruption (see disco/task.h): a call that waits, for an idle worker
 * or for a result, fails with DISCO_EINTERRUPTED when the calling task is
 * interrupted. Calls already started go on; their worker goes back to the
 * pool once they have finished, as always.
 */
#ifndef DISCO_POOL_H
#define DISCO_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disco/error.h"
#include "disco/rpc.h"
#include "disco/task.h"
#include "disco/value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct disco_pool disco_pool;
typedef struct disco_closure disco_closure;

/* ---- pools ---------------------------------------------------------------- */

/*
 * A WorkerPool of the n processes in pids, all idle (Julia's
 * WorkerPool(pids)). The calling process may be a member: calls to it run
 * as local tasks. NULL with the last error set: DISCO_EINVAL for n < 0 or
 * a NULL array, DISCO_ENOPROC for a pid that is not a live process.
 */
DISCO_API disco_pool *disco_worker_pool_new(const int *pids, int n);

/*
 * A CachingPool of the n processes in pids (Julia's CachingPool(pids)):
 * a WorkerPool that caches closures' captured values on its workers.
 * Errors as for disco_worker_pool_new.
 */
DISCO_API disco_pool *disco_caching_pool_new(const int *pids, int n);

/*
 * The pool of all workers (Julia's default_worker_pool()), created on first
 * use and kept current: disco_addprocs adds new workers, rmprocs and worker
 * death remove them. Empty, it lends out this process itself (as Julia's
 * falls back to pid 1). Never freed; NULL only when out of memory.
 */
DISCO_API disco_pool *disco_default_worker_pool(void);

/* Frees a pool made by one of the _new functions (the default pool is left
 * alone); a CachingPool first clears its caches (disco_clear). Nobody may
 * be using it; workers still being handed back after calls that went
 * through it (once each call finishes) are waited for. NULL is allowed. */
DISCO_API void disco_pool_free(disco_pool *pool);

/* Adds pid as a member and marks it idle (Julia's push!(pool, pid)).
 * DISCO_ENOPROC if pid is not a live process; adding a member again only
 * marks it idle. */
DISCO_API int disco_pool_push(disco_pool *pool, int pid);

/*
 * Takes an idle worker, waiting while every member is busy (Julia's
 * take!(pool)): returns its pid (> 0), or DISCO_ENOPROC when the pool has no
 * member left ("No active worker available in pool"). Give it back with
 * disco_pool_put. DISCO_EINTERRUPTED if the calling task is interrupted.
 */
DISCO_API int disco_pool_take(disco_pool *pool);

/* Gives a taken worker back (Julia's put!(pool, pid)); a worker that left
 * the pool meanwhile is not re-queued. Always 0 for a valid pool. */
DISCO_API int disco_pool_put(disco_pool *pool, int pid);

/* Number of members (Julia's length/nworkers(pool)), idle or busy. */
DISCO_API int disco_pool_nworkers(disco_pool *pool);

/* The members, ascending: the count, and the first max pids (Julia's
 * workers(pool)). */
DISCO_API int disco_pool_workers(disco_pool *pool, int *pids, int max);

/* True when a take would not wait (Julia's isready(pool)). */
DISCO_API bool disco_pool_isready(disco_pool *pool);

/* Captured-value traffic of a pool to one worker. */
typedef struct disco_pool_stats {
    uint64_t payload_bytes; /* encoded bytes of captured values sent */
    uint64_t payload_sends; /* times captured values were sent */
    uint64_t calls;         /* calls made on the worker through the pool */
} disco_pool_stats;

/* Fills *stats for member pid (zeros once it left). DISCO_ENOPROC if pid
 * never was a member. */
DISCO_API int disco_pool_stats_of(disco_pool *pool, int pid, disco_pool_stats *stats);

/*
 * CachingPool: drops the cached captured values on every worker (Julia's
 * clear!(pool)); later calls send them again. DISCO_EINVAL for a pool that
 * is not a CachingPool. Waits until the workers have dropped them.
 */
DISCO_API int disco_clear(disco_pool *pool);

/* ---- calls through a pool (NULL: the default pool) ------------------------ */

/* Julia's remotecall(f, pool, args...): takes a worker, starts the call and
 * returns its future at once; the worker goes back to the pool when the
 * call has finished. NULL with the last error set. */
DISCO_API disco_future *disco_pool_remotecall(disco_pool *pool, disco_function fn,
                                              const disco_value *args, size_t nargs);

/* Julia's remotecall_fetch(f, pool, args...); *result as for
 * disco_remotecall_fetch. */
DISCO_API int disco_pool_remotecall_fetch(disco_pool *pool, disco_function fn,
                                          const disco_value *args, size_t nargs,
                                          disco_value *result);

/* Julia's remotecall_wait(f, pool, args...): the ready future, or NULL
 * with the last error set (DISCO_EINTERRUPTED if interrupted first). */
DISCO_API disco_future *disco_pool_remotecall_wait(disco_pool *pool, disco_function fn,
                                                   const disco_value *args, size_t nargs);

/* Julia's remote_do(f, pool, args...): the worker goes back at once, as in
 * Julia (so it may get more calls than it has threads). */
DISCO_API int disco_pool_remote_do(disco_pool *pool, disco_function fn,
                                   const disco_value *args, size_t nargs);

/* A callable handle (Julia's remote(pool, f)): plain data, nothing to free. */
typedef struct disco_remote_fn {
    disco_pool *pool; /* NULL: the default pool */
    disco_function fn;
} disco_remote_fn;

static inline disco_remote_fn disco_remote(disco_pool *pool, disco_function fn)
{
    disco_remote_fn r = {pool, fn};
    return r;
}

/* Calls the handle: disco_pool_remotecall_fetch(r.pool, r.fn, ...). */
DISCO_API int disco_remote_call(disco_remote_fn r, const disco_value *args, size_t nargs,
                                disco_value *result);

/* ---- closures -------------------------------------------------------------- */

/* A closure of fn over copies of the n captured values. NULL with the last
 * error set (DISCO_ENOFUNC for an unregistered fn, DISCO_EINVAL,
 * DISCO_ENOMEM). */
DISCO_API disco_closure *disco_closure_new(disco_function fn, const disco_value *captured,
                                           size_t n);

/* Frees a closure (no call may be using it). NULL is allowed. */
DISCO_API void disco_closure_free(disco_closure *c);

/* remotecall_fetch(c, pool, args...): fn(captured..., args...) on a worker
 * of pool (NULL: the default pool). */
DISCO_API int disco_closure_remotecall_fetch(disco_pool *pool, const disco_closure *c,
                                             const disco_value *args, size_t nargs,
                                             disco_value *result);

/* remotecall(c, pool, args...): its future at once, as disco_pool_remotecall. */
DISCO_API disco_future *disco_closure_remotecall(disco_pool *pool, const disco_closure *c,
                                                 const disco_value *args, size_t nargs);

/* remotecall_wait(c, pool, args...): the ready future, as
 * disco_pool_remotecall_wait. */
DISCO_API disco_future *disco_closure_remotecall_wait(disco_pool *pool, const disco_closure *c,
                                                      const disco_value *args, size_t nargs);

/* remote_do(c, pool, args...), as disco_pool_remote_do. */
DISCO_API int disco_closure_remote_do(disco_pool *pool, const disco_closure *c,
                                      const disco_value *args, size_t nargs);

/* ---- retry delays ------------------------------------------------------------ */

/* Julia's ExponentialBackOff: n delays, the first min(first_delay,
 * max_delay), each next the previous times factor times a random number in
 * [1 - jitter, 1 + jitter], capped at max_delay. */
typedef struct disco_backoff {
    size_t n;
    double first_delay, max_delay, factor, jitter;
} disco_backoff;

/* Julia's defaults: ExponentialBackOff(n=1, first_delay=0.05,
 * max_delay=10.0, factor=5.0, jitter=0.1). */
#define DISCO_BACKOFF_DEFAULT {1, 0.05, 10.0, 5.0, 0.1}

/* Writes b->n delays (seconds) into delays. DISCO_EINVAL for a negative or
 * NaN parameter. */
DISCO_API int disco_backoff_delays(const disco_backoff *b, double *delays);

/* ---- pmap --------------------------------------------------------------------- */

/* batch_size: let pmap choose: at least 8 batches per worker, at most
 * 10000 items each (Julia's batchsplit says 3 and 100; larger batches
 * amortise the message, see bench/bench_pmap). */
#define DISCO_BATCH_AUTO SIZE_MAX

/* What a progress callback sees. */
typedef struct disco_pmap_progress {
    size_t done;    /* items finished (result or handled error) */
    size_t total;   /* items in the map */
    size_t retries; /* attempts that were retries */
    double elapsed; /* seconds since the map started */
} disco_pmap_progress;

/* Options of disco_pmap; zero-initialise: the zeros are Julia's defaults. */
typedef struct disco_pmap_opts {
    /* Where items run. NULL: a CachingPool over disco_workers() made for
     * this call (also on a worker; with no workers, this process). */
    disco_pool *pool;
    /* A closure to map instead of fn (pass fn = NULL). */
    const disco_closure *closure;
    /* Julia's distributed = false: items run here on local tasks, at most
     * nworkers(pool) at a time, with no remote calls. */
    bool local;
    /* 0 or 1: one item per message; k: up to k items per message, run on
     * the worker in parallel over its scheduler threads; DISCO_BATCH_AUTO. */
    size_t batch_size;
    /*
     * Called here, on the caller, for an item whose last attempt failed,
     * worker death included (Julia runs it on the worker, where it misses
     * that): return 0 with a replacement in *result (copied; it may borrow
     * e, which lives until on_error returns), or a negative status to
     * rethrow (leave e, or a new error, as the last error).
     */
    int (*on_error)(void *arg, size_t index, const disco_error *e, disco_value *result);
    void *on_error_arg;
    /* n delays (seconds) give n + 1 attempts; each retry takes a worker from
     * the pool anew (another one than the failed, when there is one). */
    const double *retry_delays;
    size_t n_retry_delays;
    /* Instead of retry_delays: exponential back-off (DISCO_BACKOFF_DEFAULT
     * is Julia's ExponentialBackOff()). */
    const disco_backoff *backoff;
    /* Julia's retry_check(state, e): false stops retrying that item. Called
     * on the caller, one item at a time. NULL retries every error. */
    bool (*retry_check)(void *state, const disco_error *e);
    void *retry_state;
    /* Called on the caller, one call at a time, after items finish (at
     * most ~10 times a second, and once at the end). */
    void (*progress)(void *arg, const disco_pmap_progress *p);
    void *progress_arg;
    /* A one-line progress bar on stderr, when stderr is a terminal. */
    bool progress_bar;
} disco_pmap_opts;

/*
 * Julia's pmap(f, pool, c...): results[i] = fn(c[0][i], c[1][i], ...), in
 * input order. Each collection is a DISCO_LIST (item i is its i-th value)
 * or a DISCO_ARRAY (item i is its i-th element as an I64 or F64 value); all
 * have the same length, the number of results (room for it in results).
 * opts may be NULL. Returns 0 with results[] owned (disco_value_free each),
 * or the first error no handler took, with its detail (the item's index,
 * the worker) in the last error; then results[] are all nil. Items still
 * running when an error stops the map are waited for: nothing runs on when
 * pmap returns. DISCO_EINVAL for bad collections or options. An interrupt
 * of the calling task stops the map like an error: DISCO_EINTERRUPTED.
 */
DISCO_API int disco_pmap(disco_function fn, const disco_value *collections,
                         size_t ncollections, disco_value *results,
                         const disco_pmap_opts *opts);

/* ---- @distributed for ------------------------------------------------------- */

/*
 * Julia's `@distributed (reducer) for i = lo:hi; body(i); end`: the range
 * is split evenly over disco_workers() (Julia's splitrange), chunk k to the
 * k-th worker; each worker folds acc = reducer(acc, body(i)) over its chunk
 * and the caller folds the partial results in chunk order into *result
 * (owned). body gets one I64 argument, reducer two values. DISCO_EINVAL for
 * an empty range or a NULL function; else 0 or the first failure, the
 * chunks waited for (DISCO_EINTERRUPTED, if the calling task is interrupted,
 * returns at once). A chunk polls disco_interrupted on its worker.
 */
DISCO_API int disco_distributed_for(int64_t lo, int64_t hi, disco_function body,
                                    disco_function reducer, disco_value *result);

/*
 * Julia's `@distributed for i = lo:hi; body(i); end` without reducer: runs
 * in the background and returns at once with the task doing it, to join
 * (disco_task_join: 0 or the first failure). Created inside a disco_sync
 * scope, the task belongs to it (Julia's @sync @distributed for). NULL with
 * the last error set.
 */
DISCO_API disco_task *disco_distributed_for_async(int64_t lo, int64_t hi,
                                                  disco_function body);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_POOL_H */
