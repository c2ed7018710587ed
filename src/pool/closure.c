/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Closures and the CachingPool's cache (see pool.h for the wire form).
 *
 * The worker keeps cached captured values in a short list under a mutex:
 * a process holds few closures at a time, and one lock visit per call is
 * small next to the message that brought it.
 */
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "pool/pool.h"
#include "disco/mem.h"
#include "rpc/registry.h"
#include "wire/wire.h"

struct disco__cached {
    struct disco__cached *next;
    int64_t key[CACHE_KEY_LEN];
    disco_value captured; /* owned list */
    int refs;             /* the list's own, plus calls using it */
};

static struct {
    pthread_mutex_t lock;
    disco__cached *head;
} C = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Atomic uint64_t next_closure_id;

/* Captured data from this size on lives in registered memory (the smallest
 * eager limit of the transports that read remotely: shm's). */
#define POOLED_MIN (16 * 1024)

/* Moves the data of captured's large bytes and arrays into disco_mem_alloc
 * blocks: registered for good, so that workers may pull them by rendezvous
 * whenever they need them (src/rpc/remotecall.h). */
static int pool_large(disco_value *captured)
{
    disco_value *items = (disco_value *)captured->list.items;
    for (size_t i = 0; i < captured->list.n; i++) {
        disco_value *v = &items[i];
        bool bytes = v->type == DISCO_BYTES;
        size_t len = bytes ? v->bytes.len
                   : v->type == DISCO_ARRAY ? v->array.n * disco_elem_size(v->array.elem) : 0;
        if (len < POOLED_MIN)
            continue;
        void *old = (void *)(bytes ? v->bytes.ptr : v->array.data), *p = disco_mem_alloc(len);
        if (!p)
            return DISCO_ENOMEM;
        memcpy(p, old, len);
        free(old);
        if (bytes)
            v->bytes.ptr = p;
        else
            v->array.data = p;
        v->flags |= DISCO__VALUE_POOLED;
    }
    return 0;
}

disco_closure *disco_closure_new(disco_function fn, const disco_value *captured, size_t n)
{
    uint64_t fn_id = fn ? disco__function_id_of(fn) : 0;
    if (!fn_id) {
        disco_error_set(DISCO_ENOFUNC, "closure of a function that is not registered "
                                       "(use DISCO_FUNCTION)");
        return NULL;
    }
    if (n && !captured) {
        disco_error_set(DISCO_EINVAL, "closure: %zu captured values but no array", n);
        return NULL;
    }
    disco_closure *c = calloc(1, sizeof(*c));
    if (!c) {
        disco_error_set(DISCO_ENOMEM, "no memory for a closure");
        return NULL;
    }
    disco_value list = disco_list(captured, n);
    int rc = disco_value_copy(&c->captured, &list);
    if (rc) {
        free(c);
        disco_error_set(rc, "closure: captured values cannot be copied");
        return NULL;
    }
    if ((rc = pool_large(&c->captured))) {
        disco_value_free(&c->captured);
        free(c);
        disco_error_set(rc, "closure: no memory for the captured values");
        return NULL;
    }
    c->fn = fn;
    c->fn_id = fn_id;
    c->id = atomic_fetch_add(&next_closure_id, 1) + 1;
    c->captured_bytes = disco__value_encoded_size(&c->captured);
    return c;
}

void disco_closure_free(disco_closure *c)
{
    if (!c)
        return;
    disco_value_free(&c->captured);
    free(c);
}

/* ---- worker side ---------------------------------------------------------- */

static bool key_equal(const int64_t *a, const int64_t *b)
{
    for (int i = 0; i < CACHE_KEY_LEN; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

static void unref_locked(disco__cached *e)
{
    if (--e->refs == 0) {
        disco_value_free(&e->captured);
        free(e);
    }
}

void disco__closure_done(disco__cached *ref)
{
    if (!ref)
        return;
    pthread_mutex_lock(&C.lock);
    unref_locked(ref);
    pthread_mutex_unlock(&C.lock);
}

/* The entry for key with a reference for the caller, or NULL. */
static disco__cached *lookup(const int64_t *key)
{
    pthread_mutex_lock(&C.lock);
    disco__cached *e = C.head;
    while (e && !key_equal(e->key, key))
        e = e->next;
    if (e)
        e->refs++;
    pthread_mutex_unlock(&C.lock);
    return e;
}

/* Caches captured (moved in) under key; the entry, referenced, or NULL. */
static disco__cached *insert(const int64_t *key, disco_value *captured)
{
    disco__cached *fresh = calloc(1, sizeof(*fresh));
    if (!fresh) {
        disco_error_set(DISCO_ENOMEM, "no memory to cache a closure");
        return NULL;
    }
    pthread_mutex_lock(&C.lock);
    disco__cached *e = C.head;
    while (e && !key_equal(e->key, key))
        e = e->next;
    if (!e) { /* else two calls raced to bring the same values: keep one */
        e = fresh;
        fresh = NULL;
        for (int i = 0; i < CACHE_KEY_LEN; i++)
            e->key[i] = key[i];
        e->captured = *captured;
        *captured = disco_nil();
        e->refs = 1;
        e->next = C.head;
        C.head = e;
    }
    e->refs++;
    pthread_mutex_unlock(&C.lock);
    free(fresh);
    return e;
}

typedef struct wait_key {
    const int64_t *key;
    disco__cached *found;
} wait_key;

static bool cached_now(void *arg)
{
    wait_key *w = arg;
    return (w->found = lookup(w->key)) != NULL;
}

int disco__closure_resolve(disco_value *head, disco_function *fn,
                           const disco_value **captured, size_t *ncaptured,
                           disco__cached **ref)
{
    *ref = NULL;
    *captured = NULL;
    *ncaptured = 0;
    const disco_value *key = &head[1], *values = &head[2];
    if (head[0].type != DISCO_I64 ||
        (key->type != DISCO_NIL && (key->type != DISCO_ARRAY || key->array.elem != DISCO_ELEM_I64 ||
                                    key->array.n != CACHE_KEY_LEN)) ||
        (values->type != DISCO_NIL && values->type != DISCO_LIST))
        return disco_throw(DISCO_EPROTO, "closure call: malformed head");
    const char *name;
    if (!(*fn = disco__function_by_id((uint64_t)head[0].i, &name, NULL)))
        return disco_throw(DISCO_ENOFUNC, "function %#llx is not registered on worker %d",
                           (unsigned long long)head[0].i, disco__rt.myid);
    if (key->type == DISCO_NIL) {
        if (values->type == DISCO_LIST) {
            *captured = values->list.items;
            *ncaptured = values->list.n;
        }
        return 0;
    }
    disco__cached *e;
    if (values->type == DISCO_LIST) {
        /* The call's argument list owns these values: move them into the
         * cache rather than copy (possibly many MB); nil is left behind. */
        e = insert(key->array.data, (disco_value *)values);
    } else {
        /* The call that brings them left before this one; with several
         * threads it may not have stored them yet: wait for it. */
        wait_key w = {key->array.data, NULL};
        if (disco_timedwait(cached_now, &w, 60, 0.0005) != 0)
            return disco_throw(DISCO_ESTATE, "closure values not cached on worker %d",
                               disco__rt.myid);
        e = w.found;
    }
    if (!e)
        return disco_error_code(disco_last_error());
    *ref = e;
    *captured = e->captured.list.items;
    *ncaptured = e->captured.list.n;
    return 0;
}

int disco__closure_invoke(disco_function fn, const disco_value *captured, size_t ncaptured,
                          const disco_value *args, size_t nargs, disco_value *result)
{
    if (!ncaptured)
        return fn(args, nargs, result);
    /* On the stack for the usual few values; else one allocation. */
    disco_value local[16], *all = local;
    size_t n = ncaptured + nargs;
    if (n > 16 && !(all = malloc(n * sizeof(*all))))
        return disco_throw(DISCO_ENOMEM, "no memory for a closure call");
    for (size_t i = 0; i < ncaptured; i++)
        all[i] = captured[i];
    for (size_t i = 0; i < nargs; i++)
        all[ncaptured + i] = args[i];
    int rc = fn(all, n, result);
    if (all != local)
        free(all);
    return rc;
}

int disco__closure_call(const disco_value *args, size_t nargs, disco_value *result)
{
    if (nargs < CLOSURE_HEAD)
        return disco_throw(DISCO_EPROTO, "closure call: %zu arguments", nargs);
    disco_function fn;
    const disco_value *captured;
    size_t ncaptured;
    disco__cached *ref;
    /* The head is ours to change: the runtime owns the decoded arguments. */
    int rc = disco__closure_resolve((disco_value *)args, &fn, &captured, &ncaptured, &ref);
    if (rc == 0) {
        disco_value r = disco_nil();
        rc = disco__closure_invoke(fn, captured, ncaptured, args + CLOSURE_HEAD,
                                   nargs - CLOSURE_HEAD, &r);
        /* The result may borrow the cached values, which a clear may free
         * before it is sent: hand back an owned copy. */
        if (rc == 0)
            rc = disco_value_copy(result, &r);
        bool borrowed_arg = false;
        for (size_t i = CLOSURE_HEAD; i < nargs; i++)
            borrowed_arg |= !memcmp(&r, &args[i], sizeof(r));
        if (!borrowed_arg)
            disco_value_free(&r);
    }
    disco__closure_done(ref);
    return rc;
}

/* Drops the entries of pool (owner, pool id) up to a generation. */
static int cache_drop(const disco_value *args, size_t nargs, disco_value *result)
{
    (void)result;
    if (nargs != 3 || args[0].type != DISCO_I64 || args[1].type != DISCO_I64 ||
        args[2].type != DISCO_I64)
        return disco_throw(DISCO_EPROTO, "disco.cache_drop: bad arguments");
    pthread_mutex_lock(&C.lock);
    for (disco__cached **p = &C.head; *p;) {
        disco__cached *e = *p;
        if (e->key[0] == args[0].i && e->key[1] == args[1].i && e->key[2] <= args[2].i) {
            *p = e->next;
            unref_locked(e);
        } else {
            p = &e->next;
        }
    }
    pthread_mutex_unlock(&C.lock);
    return 0;
}

int disco_clear(disco_pool *pool)
{
    if (!pool || !pool->caching)
        return disco_error_set(DISCO_EINVAL, "disco_clear: not a CachingPool");
    pthread_mutex_lock(&pool->lock);
    int *pids = malloc((pool->n + 1) * sizeof(*pids));
    disco_future **f = malloc((pool->n + 1) * sizeof(*f));
    if (!pids || !f) {
        pthread_mutex_unlock(&pool->lock);
        free(pids);
        free(f);
        return disco_error_set(DISCO_ENOMEM, "disco_clear: no memory");
    }
    int n = 0;
    uint64_t gen = pool->generation++;
    for (size_t i = 0; i < pool->n; i++) {
        if (pool->m[i].ncached && pool->m[i].active)
            pids[n++] = pool->m[i].pid;
        pool->m[i].ncached = 0;
    }
    pthread_mutex_unlock(&pool->lock);
    disco_value args[3] = {disco_i64(disco__rt.myid), disco_i64((int64_t)pool->id),
                           disco_i64((int64_t)gen)};
    for (int i = 0; i < n; i++)
        f[i] = disco_remotecall(cache_drop, pids[i], args, 3);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        /* A worker that died meanwhile took its cache with it. */
        int r = f[i] ? disco_future_wait(f[i]) : disco_error_code(disco_last_error());
        if (r && r != DISCO_EPROCEXIT && r != DISCO_ENOPROC && !rc)
            rc = r;
        disco_future_release(f[i]);
    }
    free(pids);
    free(f);
    return rc;
}

/* Names outside C's identifiers: they cannot clash with user functions. */
__attribute__((constructor)) static void register_closure_functions(void)
{
    disco_register("disco.closure_call", disco__closure_call);
    disco_register("disco.cache_drop", cache_drop);
}
