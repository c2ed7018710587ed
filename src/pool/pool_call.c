/* SPDX-License-Identifier: BSD-3-Clause */
/* The remotecall family through a pool, and remote(pool, f). */
#include <stdlib.h>

#include "base/error_internal.h"
#include "core/runtime.h"
#include "pool/pool.h"
#include "rpc/future.h"
#include "rpc/registry.h"
#include "rpc/remotecall.h"

void disco__pool_closure_head(disco_pool *pool, int pid, disco_function fn,
                              const disco_closure *c, disco_value head[CLOSURE_HEAD],
                              int64_t key[CACHE_KEY_LEN], uint64_t *sent_bytes)
{
    head[0] = disco_i64((int64_t)(c ? c->fn_id : disco__function_id_of(fn)));
    head[1] = head[2] = disco_nil();
    *sent_bytes = 0;
    if (!c)
        return;
    bool cached = false;
    if (pool->caching) {
        pthread_mutex_lock(&pool->lock);
        disco__member *m = disco__pool_member_locked(pool, pid);
        for (size_t i = 0; m && i < m->ncached && !cached; i++)
            cached = m->cached[i] == c->id;
        key[0] = disco__rt.myid;
        key[1] = (int64_t)pool->id;
        key[2] = (int64_t)pool->generation;
        key[3] = (int64_t)c->id;
        pthread_mutex_unlock(&pool->lock);
        head[1] = disco_array(DISCO_ELEM_I64, key, CACHE_KEY_LEN);
    }
    if (!cached) {
        head[2] = c->captured;
        *sent_bytes = c->captured_bytes;
    }
}

void disco__pool_note_sent(disco_pool *pool, int pid, const disco_closure *c,
                           uint64_t sent_bytes)
{
    pthread_mutex_lock(&pool->lock);
    disco__member *m = disco__pool_member_locked(pool, pid);
    if (m) {
        m->stats.calls++;
        if (c && sent_bytes) {
            m->stats.payload_bytes += sent_bytes;
            m->stats.payload_sends++;
        }
        if (c && sent_bytes && pool->caching && m->active) {
            /* Two calls racing may both send the values: the worker keeps
             * one copy, and the id is noted once. */
            bool known = false;
            for (size_t i = 0; i < m->ncached; i++)
                known |= m->cached[i] == c->id;
            if (!known && m->ncached == m->capcached) {
                size_t cap = m->capcached ? 2 * m->capcached : 4;
                uint64_t *g = realloc(m->cached, cap * sizeof(*g));
                if (g) {
                    m->cached = g;
                    m->capcached = cap;
                }
            }
            if (!known && m->ncached < m->capcached)
                m->cached[m->ncached++] = c->id;
        }
    }
    pthread_mutex_unlock(&pool->lock);
}

/* Sends fn (or closure c) with args to pid, a worker taken from pool: a
 * call whose future goes to *fp, or a remote_do when fp is NULL. 0 or the
 * error, with the last error set. */
static int pool_send(disco_pool *pool, int pid, disco_function fn, const disco_closure *c,
                     const disco_value *args, size_t nargs, disco_future **fp)
{
    disco_function target = fn;
    const disco_value *all = args;
    size_t nall = nargs;
    /* Closure head and arguments in one array: on the stack for the usual
     * few arguments, else one allocation (the call's encoding allocates
     * anyway). */
    disco_value local[16], *heap = NULL;
    int64_t key[CACHE_KEY_LEN];
    uint64_t sent = 0;
    if (c) {
        disco_value *v = local;
        if (nargs > 16 - CLOSURE_HEAD && !(v = heap = malloc((nargs + CLOSURE_HEAD) * sizeof(*v))))
            return disco_error_set(DISCO_ENOMEM, "no memory for a call");
        disco__pool_closure_head(pool, pid, fn, c, v, key, &sent);
        for (size_t i = 0; i < nargs; i++)
            v[CLOSURE_HEAD + i] = args[i];
        target = disco__closure_call;
        all = v;
        nall = nargs + CLOSURE_HEAD;
    }
    int rc;
    if (!fp)
        rc = disco_remote_do(target, pid, all, nall);
    else if (!(*fp = c ? disco__remotecall_scoped(target, pid, all, nall, &c->captured)
                       : disco_remotecall(target, pid, all, nall)))
        rc = disco_error_code(disco_last_error());
    else
        rc = 0;
    free(heap);
    if (rc == 0)
        disco__pool_note_sent(pool, pid, c, sent);
    return rc;
}

disco_future *disco__pool_start(disco_pool *pool, int pid, disco_function fn,
                                const disco_closure *c, const disco_value *args,
                                size_t nargs)
{
    disco_future *f = NULL;
    return pool_send(pool, pid, fn, c, args, nargs, &f) ? NULL : f;
}

static disco_pool *resolve(disco_pool *pool)
{
    return pool ? pool : disco_default_worker_pool();
}

/* Workers handed back once their calls have finished (Julia since 2025). */
typedef struct giveback {
    disco_pool *pool;
    int pid;
    size_t n;
    disco_future *f[]; /* references of our own */
} giveback;

static bool all_ready(disco_future *const *fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!disco_future_isready(fs[i]))
            return false;
    return true;
}

static int give_back_when_done(void *arg, void **unused);

/* Starts the task that waits for g's futures; false if there is none. */
static bool spawn_give_back(giveback *g)
{
    disco_task_attr attr = {.name = "pool give-back", .detached = true};
    return disco_async_attr(give_back_when_done, g, &attr) != NULL;
}

static void give_back_now(giveback *g)
{
    disco_pool *pool = g->pool;
    disco_pool_put(pool, g->pid);
    for (size_t i = 0; i < g->n; i++)
        disco_future_release(g->f[i]);
    free(g);
    atomic_fetch_sub(&pool->givebacks, 1); /* the last touch: it may go now */
}

/* The calls' outcomes stay in their futures, for their owners. An
 * interrupt (sticky: every later wait of this task would fail too) hands
 * the waiting to a fresh task; only without one does the worker go back
 * early. */
static int give_back_when_done(void *arg, void **unused)
{
    (void)unused;
    giveback *g = arg;
    for (size_t i = 0; i < g->n; i++)
        if (disco_future_wait(g->f[i]) == DISCO_EINTERRUPTED && !disco_future_isready(g->f[i]) &&
            spawn_give_back(g)) {
            disco_error_clear();
            return 0;
        }
    disco_error_clear();
    give_back_now(g);
    return 0;
}

void disco__pool_put_when_done(disco_pool *pool, int pid, disco_future *const *fs, size_t n)
{
    giveback *g = all_ready(fs, n) ? NULL : malloc(sizeof(*g) + n * sizeof(g->f[0]));
    if (!g) { /* all done, or no memory to wait: back now */
        disco_pool_put(pool, pid);
        return;
    }
    *g = (giveback){pool, pid, n};
    atomic_fetch_add(&pool->givebacks, 1);
    for (size_t i = 0; i < n; i++) {
        g->f[i] = fs[i];
        disco__future_retain(fs[i]);
    }
    disco_error *callers = disco_error_take(); /* a failed spawn must not replace it */
    if (!spawn_give_back(g))
        give_back_now(g); /* the worker may get a call too many, as with remote_do */
    disco_error_put(callers);
}

/* Gives pid back after the call of f (NULL: none started) has finished:
 * now, or later from a task (the caller does not wait for it, or stopped
 * waiting because it was interrupted). */
static void put_after(disco_pool *pool, int pid, disco_future *f)
{
    if (f)
        disco__pool_put_when_done(pool, pid, &f, 1);
    else
        disco_pool_put(pool, pid);
}

static disco_future *pool_remotecall(disco_pool *pool, disco_function fn,
                                     const disco_closure *c, const disco_value *args,
                                     size_t nargs)
{
    if (!(pool = resolve(pool)))
        return NULL;
    int pid = disco_pool_take(pool);
    if (pid < 0)
        return NULL;
    disco_future *f = disco__pool_start(pool, pid, fn, c, args, nargs);
    put_after(pool, pid, f);
    return f;
}

static int pool_fetch(disco_pool *pool, disco_function fn, const disco_closure *c,
                      const disco_value *args, size_t nargs, disco_value *result)
{
    if (!(pool = resolve(pool)))
        return disco_error_code(disco_last_error());
    int pid = disco_pool_take(pool);
    if (pid < 0)
        return pid;
    disco_future *f = disco__pool_start(pool, pid, fn, c, args, nargs);
    int rc = f ? 0 : disco_error_code(disco_last_error());
    const disco_value *v;
    if (f && (rc = disco_future_fetch(f, &v)) == 0 && result)
        rc = disco_value_copy(result, v);
    put_after(pool, pid, f);
    disco_future_release(f);
    return rc;
}

disco_future *disco_pool_remotecall(disco_pool *pool, disco_function fn,
                                    const disco_value *args, size_t nargs)
{
    return pool_remotecall(pool, fn, NULL, args, nargs);
}

int disco_pool_remotecall_fetch(disco_pool *pool, disco_function fn, const disco_value *args,
                                size_t nargs, disco_value *result)
{
    return pool_fetch(pool, fn, NULL, args, nargs, result);
}

static disco_future *pool_wait(disco_pool *pool, disco_function fn, const disco_closure *c,
                               const disco_value *args, size_t nargs)
{
    if (!(pool = resolve(pool)))
        return NULL;
    int pid = disco_pool_take(pool);
    if (pid < 0)
        return NULL;
    disco_future *f = disco__pool_start(pool, pid, fn, c, args, nargs);
    /* The call's status stays in the future; only an interrupt of this
     * task, before the call finished, fails the wait itself. */
    if (f && disco__wait_refused(disco_future_wait(f)) && !disco_future_isready(f)) {
        put_after(pool, pid, f);
        disco_future_release(f);
        return NULL;
    }
    if (f)
        disco_error_clear();
    put_after(pool, pid, f);
    return f;
}

/* The worker goes back at once, as in Julia. */
static int pool_do(disco_pool *pool, disco_function fn, const disco_closure *c,
                   const disco_value *args, size_t nargs)
{
    if (!(pool = resolve(pool)))
        return disco_error_code(disco_last_error());
    int pid = disco_pool_take(pool);
    if (pid < 0)
        return pid;
    int rc = pool_send(pool, pid, fn, c, args, nargs, NULL);
    disco_pool_put(pool, pid);
    return rc;
}

disco_future *disco_pool_remotecall_wait(disco_pool *pool, disco_function fn,
                                         const disco_value *args, size_t nargs)
{
    return pool_wait(pool, fn, NULL, args, nargs);
}

int disco_pool_remote_do(disco_pool *pool, disco_function fn, const disco_value *args,
                         size_t nargs)
{
    return pool_do(pool, fn, NULL, args, nargs);
}

int disco_remote_call(disco_remote_fn r, const disco_value *args, size_t nargs,
                      disco_value *result)
{
    return pool_fetch(r.pool, r.fn, NULL, args, nargs, result);
}

int disco_closure_remotecall_fetch(disco_pool *pool, const disco_closure *c,
                                   const disco_value *args, size_t nargs, disco_value *result)
{
    if (!c)
        return disco_error_set(DISCO_EINVAL, "closure call: NULL closure");
    return pool_fetch(pool, c->fn, c, args, nargs, result);
}

disco_future *disco_closure_remotecall(disco_pool *pool, const disco_closure *c,
                                       const disco_value *args, size_t nargs)
{
    if (!c) {
        disco_error_set(DISCO_EINVAL, "closure call: NULL closure");
        return NULL;
    }
    return pool_remotecall(pool, c->fn, c, args, nargs);
}

disco_future *disco_closure_remotecall_wait(disco_pool *pool, const disco_closure *c,
                                            const disco_value *args, size_t nargs)
{
    if (!c) {
        disco_error_set(DISCO_EINVAL, "closure call: NULL closure");
        return NULL;
    }
    return pool_wait(pool, c->fn, c, args, nargs);
}

int disco_closure_remote_do(disco_pool *pool, const disco_closure *c, const disco_value *args,
                            size_t nargs)
{
    if (!c)
        return disco_error_set(DISCO_EINVAL, "closure call: NULL closure");
    return pool_do(pool, c->fn, c, args, nargs);
}
