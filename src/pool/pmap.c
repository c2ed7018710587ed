/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * pmap: Julia's pmap with batching, retries, on_error on the caller and
 * progress.
 *
 * One driver task per pool member takes a worker and streams the first pass
 * over the items to it: units of batch_size items (one message each), with
 * up to `window` units in flight on that worker (pipelined: a worker is
 * never idle waiting for the caller, and goes back to the pool only when
 * its calls have finished). A unit that fails makes each of its items
 * fail on its own: such an item is retried by a retry task of its own (the
 * delay, then a worker taken from the pool anew, one item per call), or
 * goes to on_error, or stops the map. An interrupt of the caller stops the
 * map too. pmap returns once every task has ended.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/error_internal.h"
#include "core/runtime.h"
#include "pool/pmap.h"
#include "pool/pool.h"
#include "rpc/remotecall.h"
#include "sched/nowait.h"

enum {
    MAX_WINDOW = 256,
    MAX_BATCH_WINDOW = 4,
    /* Automatic batches (auto_batch), measured with bench/bench_pmap. */
    AUTO_BATCHES_PER_WORKER = 8,
    AUTO_MAX_BATCH = 10000,
};

typedef struct unit {
    size_t lo, n;
    size_t attempts; /* made so far */
    int avoid;       /* the worker of the failed attempt, or 0 */
} unit;

typedef struct run {
    disco_function fn;
    const disco_closure *closure;
    const disco_value *colls;
    size_t ncolls, total;
    disco_value *results;
    const disco_pmap_opts *o;
    disco_pool *pool;
    double *delays;
    size_t ndelays;
    size_t batch; /* items per first-pass unit; > 1: batch messages */
    size_t window;
    bool local;
    uint64_t t0;
    /* Shared, under lock. */
    disco_mutex lock;
    disco_cond changed;
    size_t next;  /* first item not yet handed out in the first pass */
    int tasks;    /* drivers and retry tasks still running */
    bool stop;
    disco_error *err;
    size_t done, retries;
    _Atomic uint64_t last_report; /* read unlocked to skip early, set under callbacks */
    disco_mutex callbacks; /* on_error, retry_check, progress: one at a time */
} run;

static void unit_args(const run *r, size_t i, disco_value *args)
{
    for (size_t k = 0; k < r->ncolls; k++)
        args[k] = disco__pmap_item(&r->colls[k], i);
}

/* ---- bookkeeping ------------------------------------------------------------ */

static void report(run *r, bool last)
{
    if (!r->o->progress && !r->o->progress_bar)
        return;
    uint64_t now = disco__now_ns();
    if (!last && now - atomic_load_explicit(&r->last_report, memory_order_relaxed) < 100000000u)
        return; /* at most ~10 reports a second */
    disco_mutex_lock(&r->callbacks);
    if (last || now - atomic_load_explicit(&r->last_report, memory_order_relaxed) >= 100000000u) {
        atomic_store_explicit(&r->last_report, now, memory_order_relaxed);
        disco_mutex_lock(&r->lock);
        disco_pmap_progress p = {r->done, r->total, r->retries, (double)(now - r->t0) / 1e9};
        disco_mutex_unlock(&r->lock);
        if (r->o->progress)
            r->o->progress(r->o->progress_arg, &p);
        if (r->o->progress_bar)
            disco__progress_bar(&p, last);
    }
    disco_mutex_unlock(&r->callbacks);
}

static void finished_items(run *r, size_t n)
{
    disco_mutex_lock(&r->lock);
    r->done += n;
    disco_mutex_unlock(&r->lock);
    report(r, false);
}

/* Stops the map with e (taken over) for item i, unless it already stopped. */
static void stop_with(run *r, size_t i, disco_error *e)
{
    if (e) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "pmap: item %zu failed: %s", i, disco_error_message(e));
        disco__error_set_message(e, msg, strlen(msg));
    }
    disco_mutex_lock(&r->lock);
    if (!r->stop) {
        r->stop = true;
        r->err = e;
        e = NULL;
    }
    disco_cond_notify_all(&r->changed);
    disco_mutex_unlock(&r->lock);
    disco_error_free(e);
}

static bool stopped(run *r)
{
    disco_mutex_lock(&r->lock);
    bool s = r->stop;
    disco_mutex_unlock(&r->lock);
    return s;
}

static void task_ended(run *r)
{
    disco_mutex_lock(&r->lock);
    r->tasks--;
    disco_cond_notify_all(&r->changed);
    disco_mutex_unlock(&r->lock);
}

/* Waits for a unit's future: false if this task was interrupted first.
 * Internal tasks are not the target of interrupts (the caller's task is),
 * but a wait that fails must not be taken for a result. */
static bool wait_unit(disco_future *f)
{
    return disco_future_wait(f) != DISCO_EINTERRUPTED || disco_future_isready(f);
}

/* This task was interrupted (the last error says so) with n calls of the
 * map in flight on pid: the map stops with that error, and pid goes back
 * to the pool once those calls have finished. Takes over the futures. */
static void interrupted_with(run *r, size_t i, int pid, disco_future **f, size_t n)
{
    stop_with(r, i, disco_error_take());
    disco__pool_put_when_done(r->pool, pid, f, n);
    for (size_t k = 0; k < n; k++)
        disco_future_release(f[k]);
}

static int retry_task(void *arg, void **unused);

typedef struct retry {
    run *r;
    unit u;
} retry;

/* Item i's attempt (the attempts-th) failed on pid with e (borrowed). */
static void item_failed(run *r, size_t i, size_t attempts, int pid, const disco_error *e)
{
    disco_mutex_lock(&r->callbacks);
    bool again = attempts <= r->ndelays && !stopped(r) &&
                 (!r->o->retry_check || r->o->retry_check(r->o->retry_state, e));
    disco_mutex_unlock(&r->callbacks);
    if (again) {
        retry *t = malloc(sizeof(*t));
        disco_task_attr attr = {.name = "pmap retry", .detached = true};
        if (t) {
            *t = (retry){r, {i, 1, attempts, pid}};
            disco_mutex_lock(&r->lock);
            r->tasks++;
            r->retries++;
            disco_mutex_unlock(&r->lock);
            if (disco_async_attr(retry_task, t, &attr))
                return;
            free(t);
            task_ended(r);
        }
        /* No task for the retry: the error stands. */
    }
    if (r->o->on_error && !stopped(r)) {
        disco_value rep = disco_nil();
        disco_mutex_lock(&r->callbacks);
        disco_error_clear();
        int rc = r->o->on_error(r->o->on_error_arg, i, e, &rep);
        if (rc == 0)
            rc = disco_value_copy(&r->results[i], &rep);
        disco_value_free(&rep);
        disco_mutex_unlock(&r->callbacks);
        if (rc == 0) {
            finished_items(r, 1);
            return;
        }
        disco_error *thrown = disco_error_take();
        stop_with(r, i, thrown ? thrown : disco_error_new(rc, "%s", disco_strerror(rc)));
        return;
    }
    stop_with(r, i, disco_error_copy(e));
}

/* The future of unit u on pid finished (or f is NULL: it could not be
 * sent, the last error says why). */
static void unit_done(run *r, const unit *u, int pid, disco_future *f, bool batched)
{
    const disco_value *v = NULL;
    int rc = f ? disco_future_fetch(f, &v) : disco_error_code(disco_last_error());
    if (rc == 0 && batched) {
        const disco_value *res = v->type == DISCO_LIST && v->list.n == 2 ? &v->list.items[0] : NULL;
        const disco_value *bad = res ? &v->list.items[1] : NULL;
        if (!res || bad->type != DISCO_ARRAY || bad->array.elem != DISCO_ELEM_I64)
            rc = disco_error_set(DISCO_EPROTO, "pmap: malformed batch result from %d", pid);
        else if (res->type != DISCO_LIST && bad->array.n == 0 &&
                 (res->type == DISCO_NIL || disco__pmap_length(res) == u->n)) {
            /* A column (see batch.c): all nil (results[] already are), or
             * numbers. */
            for (size_t j = 0; res->type != DISCO_NIL && j < u->n; j++)
                r->results[u->lo + j] = disco__pmap_item(res, j);
            finished_items(r, u->n);
        } else if (res->type != DISCO_LIST || res->list.n != u->n) {
            rc = disco_error_set(DISCO_EPROTO, "pmap: malformed batch result from %d", pid);
        } else {
            const int64_t *failed = bad->array.data;
            size_t nf = bad->array.n, k = 0, ok = 0;
            for (size_t j = 0; j < u->n; j++) {
                const disco_value *x = &res->list.items[j];
                if (k < nf && (size_t)failed[k] == j) {
                    k++;
                    /* errors from the worker carry its pid */
                    disco_error *e = x->type == DISCO_ERROR
                                         ? disco_error_copy(x->error)
                                         : disco_error_new(DISCO_EPROTO, "no error for item");
                    if (e)
                        disco__error_set_pid(e, pid);
                    item_failed(r, u->lo + j, u->attempts + 1, pid,
                                e ? e : disco_last_error());
                    disco_error_free(e);
                } else if (disco_value_copy(&r->results[u->lo + j], x) == 0) {
                    ok++;
                } else {
                    item_failed(r, u->lo + j, u->attempts + 1, pid, disco_last_error());
                }
            }
            finished_items(r, ok);
        }
    } else if (rc == 0) {
        rc = disco_value_copy(&r->results[u->lo], v);
        if (rc == 0)
            finished_items(r, 1);
    }
    if (rc) {
        disco_error *e = disco_error_take();
        if (!e)
            e = disco_error_new(rc, "%s", disco_strerror(rc));
        for (size_t j = 0; j < u->n; j++) /* the items of a failed batch one by one */
            item_failed(r, u->lo + j, u->attempts + 1, pid, e);
        disco_error_free(e);
    }
    disco_future_release(f);
}

/* Starts unit u on pid: one message, a batch or one item. */
static disco_future *unit_start(run *r, const unit *u, int pid, bool batched)
{
    if (!batched) {
        disco_value args[DISCO__PMAP_MAX_COLLECTIONS];
        unit_args(r, u->lo, args);
        return disco__pool_start(r->pool, pid, r->fn, r->closure, args, r->ncolls);
    }
    disco_value all[CLOSURE_HEAD + DISCO__PMAP_MAX_COLLECTIONS];
    int64_t key[CACHE_KEY_LEN];
    uint64_t sent;
    disco__pool_closure_head(r->pool, pid, r->fn, r->closure, all, key, &sent);
    for (size_t k = 0; k < r->ncolls; k++)
        all[CLOSURE_HEAD + k] = disco__pmap_slice(&r->colls[k], u->lo, u->n);
    disco_future *f = r->closure ? disco__remotecall_scoped(disco__pmap_batch, pid, all,
                                                            CLOSURE_HEAD + r->ncolls,
                                                            &r->closure->captured)
                                 : disco_remotecall(disco__pmap_batch, pid, all,
                                                    CLOSURE_HEAD + r->ncolls);
    if (f)
        disco__pool_note_sent(r->pool, pid, r->closure, sent);
    return f;
}

/* Runs one item here (distributed = false). */
static void run_here(run *r, const unit *u)
{
    disco_value args[DISCO__PMAP_MAX_COLLECTIONS], v = disco_nil();
    unit_args(r, u->lo, args);
    const disco_value *cap = r->closure ? r->closure->captured.list.items : NULL;
    size_t ncap = r->closure ? r->closure->captured.list.n : 0;
    disco_error_clear();
    int rc = disco__closure_invoke(r->fn, cap, ncap, args, r->ncolls, &v);
    if (rc == 0 && (rc = disco_value_copy(&r->results[u->lo], &v)) == 0)
        finished_items(r, 1);
    bool borrowed_arg = false;
    for (size_t k = 0; k < r->ncolls; k++)
        borrowed_arg |= !memcmp(&v, &args[k], sizeof(v));
    if (!borrowed_arg)
        disco_value_free(&v);
    if (rc) {
        disco_error *e = disco_error_take();
        if (!e)
            e = disco_error_new(rc, "%s", disco_strerror(rc));
        disco__error_set_pid(e, disco__rt.myid);
        item_failed(r, u->lo, u->attempts + 1, disco__rt.myid, e);
        disco_error_free(e);
    }
}

/* ---- tasks ---------------------------------------------------------------------- */

/* The next first-pass unit, or false when there is none (or the map stopped). */
static bool next_unit(run *r, unit *u)
{
    disco_mutex_lock(&r->lock);
    bool ok = !r->stop && r->next < r->total;
    if (ok) {
        size_t n = r->total - r->next < r->batch ? r->total - r->next : r->batch;
        *u = (unit){r->next, n, 0, 0};
        r->next += n;
    }
    disco_mutex_unlock(&r->lock);
    return ok;
}

static int driver(void *arg, void **unused)
{
    (void)unused;
    run *r = arg;
    bool batched = r->batch > 1;
    unit ring_u[MAX_WINDOW];
    disco_future *ring_f[MAX_WINDOW];
    size_t head = 0, inflight = 0;
    int pid = 0;
    unit u;
    for (;;) {
        /* Fill the window. */
        while (inflight < r->window && next_unit(r, &u)) {
            if (r->local) {
                run_here(r, &u);
                continue;
            }
            if (pid <= 0 && (pid = disco_pool_take(r->pool)) < 0) {
                /* No worker for it (the pool lost its last member): the
                 * unit's items fail with that. */
                pid = 0;
                unit_done(r, &u, 0, NULL, batched);
                continue;
            }
            size_t slot = (head + inflight) % r->window;
            ring_u[slot] = u;
            ring_f[slot] = unit_start(r, &u, pid, batched);
            if (!ring_f[slot]) { /* not sent: fail it now */
                unit_done(r, &u, pid, NULL, batched);
                continue;
            }
            inflight++;
        }
        if (!inflight)
            break;
        /* Wait for the oldest. */
        if (!wait_unit(ring_f[head])) {
            disco_future *all[MAX_WINDOW];
            for (size_t k = 0; k < inflight; k++)
                all[k] = ring_f[(head + k) % r->window];
            interrupted_with(r, ring_u[head].lo, pid, all, inflight);
            pid = 0;
            break;
        }
        unit_done(r, &ring_u[head], pid, ring_f[head], batched);
        head = (head + 1) % r->window;
        inflight--;
        if (!disco__pool_alive(pid) && pid > 0) {
            /* Died: its other calls fail too (at once: an interrupted wait
             * fails their items with that); then take another worker. */
            while (inflight) {
                unit_done(r, &ring_u[head], pid, ring_f[head], batched);
                head = (head + 1) % r->window;
                inflight--;
            }
            disco_pool_put(r->pool, pid); /* not re-queued: it left */
            pid = 0;
        }
    }
    if (pid > 0)
        disco_pool_put(r->pool, pid);
    task_ended(r);
    return 0;
}

/* One retry of one item: the delay, a worker taken anew (another than the
 * failed one when another is idle), one call. */
static int retry_task(void *arg, void **unused)
{
    (void)unused;
    retry *t = arg;
    run *r = t->r;
    unit u = t->u;
    free(t);
    if (disco_sleep(r->delays[u.attempts - 1]) == DISCO_EINTERRUPTED)
        stop_with(r, u.lo, disco_error_take());
    if (stopped(r)) {
        task_ended(r);
        return 0;
    }
    if (r->local) {
        run_here(r, &u);
        task_ended(r);
        return 0;
    }
    int pid = disco_pool_take(r->pool);
    if (pid == u.avoid && disco_pool_isready(r->pool)) {
        int other = disco_pool_take(r->pool);
        disco_pool_put(r->pool, pid);
        pid = other;
    }
    if (pid < 0) {
        disco_error *e = disco_error_take();
        if (!e)
            e = disco_error_new(pid, "%s", disco_strerror(pid));
        item_failed(r, u.lo, u.attempts + 1, 0, e);
        disco_error_free(e);
    } else {
        disco_future *f = unit_start(r, &u, pid, false);
        if (f && !wait_unit(f)) {
            interrupted_with(r, u.lo, pid, &f, 1);
        } else {
            unit_done(r, &u, pid, f, false);
            disco_pool_put(r->pool, pid);
        }
    }
    task_ended(r);
    return 0;
}

/* ---- entry ---------------------------------------------------------------------- */

static int check_args(disco_function fn, const disco_value *colls, size_t ncolls,
                      disco_value *results, const disco_pmap_opts *o, size_t *total)
{
    if (!fn && !o->closure)
        return disco_error_set(DISCO_EINVAL, "pmap: no function");
    if (fn && o->closure && fn != o->closure->fn)
        return disco_error_set(DISCO_EINVAL, "pmap: a function and a closure of another one");
    if (!ncolls || !colls || ncolls > DISCO__PMAP_MAX_COLLECTIONS)
        return disco_error_set(DISCO_EINVAL, "pmap: %zu collections (1 to %d)", ncolls,
                               DISCO__PMAP_MAX_COLLECTIONS);
    *total = disco__pmap_length(&colls[0]);
    for (size_t k = 0; k < ncolls; k++) {
        size_t n = disco__pmap_length(&colls[k]);
        if (n == SIZE_MAX)
            return disco_error_set(DISCO_EINVAL, "pmap: collection %zu is not a list or "
                                                 "a numeric array", k);
        if (n != *total)
            return disco_error_set(DISCO_EINVAL, "pmap: collection %zu has %zu items, "
                                                 "collection 0 has %zu", k, n, *total);
        if (n && (colls[k].type == DISCO_LIST ? !colls[k].list.items : !colls[k].array.data))
            return disco_error_set(DISCO_EINVAL, "pmap: collection %zu has no data", k);
    }
    if (*total && !results)
        return disco_error_set(DISCO_EINVAL, "pmap: no room for results");
    if (o->retry_delays && o->backoff)
        return disco_error_set(DISCO_EINVAL, "pmap: retry_delays and backoff both given");
    if (o->n_retry_delays && !o->retry_delays)
        return disco_error_set(DISCO_EINVAL, "pmap: %zu retry delays but no array",
                               o->n_retry_delays);
    for (size_t i = 0; i < o->n_retry_delays; i++)
        if (!(o->retry_delays[i] >= 0))
            return disco_error_set(DISCO_EINVAL, "pmap: retry delay %zu is %g", i,
                                   o->retry_delays[i]);
    return 0;
}

/*
 * At least AUTO_BATCHES_PER_WORKER batches per worker, at most
 * AUTO_MAX_BATCH items each (Julia's batchsplit: 3 and 100). Measured
 * (bench_pmap: a no-op over 1 M items on 2 workers, 2 cores) with batches
 * of 100, 1000, 10000 and 100000 items: 6, 12.5, 20 and 25 M items/s; the
 * message, not the item, costs most below some thousand items. The
 * batches per worker keep the window full and the ends of the workers'
 * last batches close together when items cost unevenly.
 */
static size_t auto_batch(size_t total, int nworkers)
{
    size_t min_batches = AUTO_BATCHES_PER_WORKER * (size_t)(nworkers > 0 ? nworkers : 1);
    size_t n = total / min_batches;
    return n < 1 ? 1 : n > AUTO_MAX_BATCH ? AUTO_MAX_BATCH : n;
}

static int setup(run *r, disco_pool **own_pool)
{
    const disco_pmap_opts *o = r->o;
    if (!r->pool && !o->local) {
        int pids[DISCO__MAX_PROCS];
        int n = disco_workers(pids, DISCO__MAX_PROCS);
        if (!(r->pool = *own_pool = disco_caching_pool_new(pids, n)))
            return disco_error_code(disco_last_error());
    }
    int nw = r->pool ? disco_pool_nworkers(r->pool) : disco_nworkers();
    if (r->pool && nw == 1) {
        int only;
        disco_pool_workers(r->pool, &only, 1);
        r->local |= only == disco__rt.myid; /* Julia: no workers, no remote calls */
    }
    if (r->pool && nw == 0 && !r->pool->is_default)
        return disco_error_set(DISCO_ENOPROC, "pmap: no active worker available in pool");
    int drivers = nw > 0 ? nw : 1;
    r->batch = r->local ? 1 : o->batch_size == DISCO_BATCH_AUTO ? auto_batch(r->total, nw)
               : o->batch_size > 1 ? o->batch_size : 1;
    size_t units = (r->total + r->batch - 1) / r->batch;
    size_t cap = r->batch > 1 ? MAX_BATCH_WINDOW : MAX_WINDOW;
    r->window = units / (4 * (size_t)drivers);
    r->window = r->window < 1 ? 1 : r->window > cap ? cap : r->window;
    if (o->backoff) {
        r->ndelays = o->backoff->n;
        if (r->ndelays && !(r->delays = malloc(r->ndelays * sizeof(double))))
            return disco_error_set(DISCO_ENOMEM, "pmap: no memory");
        int rc = disco_backoff_delays(o->backoff, r->delays);
        if (rc)
            return rc;
    } else if (o->n_retry_delays) {
        r->ndelays = o->n_retry_delays;
        if (!(r->delays = malloc(r->ndelays * sizeof(double))))
            return disco_error_set(DISCO_ENOMEM, "pmap: no memory");
        memcpy(r->delays, o->retry_delays, r->ndelays * sizeof(double));
    }
    return drivers;
}

int disco_pmap(disco_function fn, const disco_value *collections, size_t ncollections,
               disco_value *results, const disco_pmap_opts *opts)
{
    static const disco_pmap_opts defaults;
    const disco_pmap_opts *o = opts ? opts : &defaults;
    if (disco__nowait_fn) /* it waits for its items, whatever they are */
        return disco__nowait_refuse("disco_pmap");
    size_t total = 0;
    int rc = check_args(fn, collections, ncollections, results, o, &total);
    if (rc)
        return rc;
    for (size_t i = 0; i < total; i++)
        results[i] = disco_nil();
    run r = {.fn = o->closure ? o->closure->fn : fn, .closure = o->closure,
             .colls = collections, .ncolls = ncollections, .total = total,
             .results = results, .o = o, .pool = o->pool, .local = o->local,
             .t0 = disco__now_ns()};
    disco_mutex_init(&r.lock);
    disco_mutex_init(&r.callbacks);
    disco_cond_init(&r.changed);
    disco_pool *own_pool = NULL;
    int drivers = setup(&r, &own_pool);
    if (drivers < 0) {
        rc = drivers;
        goto out;
    }
    if ((size_t)drivers > total)
        drivers = total ? (int)total : 0;
    disco_task_attr attr = {.name = "pmap driver", .detached = true};
    for (int i = 0; i < drivers; i++) {
        disco_mutex_lock(&r.lock);
        r.tasks++;
        disco_mutex_unlock(&r.lock);
        if (!disco_async_attr(driver, &r, &attr)) {
            task_ended(&r);
            stop_with(&r, 0, disco_error_take());
            break;
        }
    }
    /* Interrupted, the map stops: no unit starts any more. Either way we
     * wait for the tasks to end, uninterruptibly then: they use r, on this
     * stack. */
    bool interrupted = false;
    disco_mutex_lock(&r.lock);
    while (r.tasks > 0) {
        if (interrupted) {
            disco__cond_wait_uninterruptible(&r.changed, &r.lock);
        } else if (disco_cond_wait(&r.changed, &r.lock) == DISCO_EINTERRUPTED) {
            interrupted = true;
            if (!r.stop) {
                r.stop = true;
                r.err = disco_error_new(DISCO_EINTERRUPTED, "pmap interrupted after %zu "
                                        "of %zu items", r.done, r.total);
            }
        }
    }
    disco_mutex_unlock(&r.lock);
    report(&r, true);
    if (r.stop) {
        rc = r.err ? disco_error_put(r.err) : disco_error_set(DISCO_ENOMEM, "pmap: no memory");
        for (size_t i = 0; i < total; i++)
            disco_value_free(&results[i]);
    }
out:
    free(r.delays);
    disco_pool_free(own_pool);
    return rc;
}
