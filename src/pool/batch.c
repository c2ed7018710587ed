/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The worker's side of a pmap batch: one message of items, run in parallel
 * over the worker's scheduler threads. Arguments: the closure head (see
 * pool.h), then the collections' slices. The result is a list of two: the
 * items' results in order, and the I64 array of the items that failed
 * (whose results are their errors). Without failures, results all nil are
 * sent as nil, results all I64 or all F64 as an array (as_column).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pmap.h"
#include "pool/pool.h"

typedef struct batch {
    disco_function fn;
    const disco_value *captured;
    size_t ncaptured;
    const disco_value *slices;
    size_t nslices, n;
    disco_value *results;
    bool *failed;
    _Atomic size_t next;      /* the next item a runner takes */
    atomic_bool interrupted;  /* the batch's call was interrupted */
} batch;

/* Item i failed with the last error (or rc): its result is the error. */
static void item_failed(batch *b, size_t i, int rc)
{
    disco_error *e = disco_error_take();
    if (!e)
        e = disco_error_new(rc, "%s", disco_strerror(rc));
    disco_value ev = e ? disco_error_value(e) : disco_nil();
    if (disco_value_copy(&b->results[i], &ev) != 0)
        b->results[i] = disco_nil();
    disco_error_free(e);
    b->failed[i] = true;
}

static void run_item(batch *b, size_t i)
{
    disco_value args[DISCO__PMAP_MAX_COLLECTIONS], r = disco_nil();
    for (size_t k = 0; k < b->nslices; k++)
        args[k] = disco__pmap_item(&b->slices[k], i);
    disco_error_clear();
    int rc = disco__closure_invoke(b->fn, b->captured, b->ncaptured, args, b->nslices, &r);
    if (rc == 0 && r.type <= DISCO_F64) { /* a scalar: nothing to copy or free */
        b->results[i] = r;
        return;
    }
    if (rc == 0 && (rc = disco_value_copy(&b->results[i], &r)) == 0) {
        bool borrowed_arg = false;
        for (size_t k = 0; k < b->nslices; k++)
            borrowed_arg |= !memcmp(&r, &args[k], sizeof(r));
        if (!borrowed_arg)
            disco_value_free(&r);
        return;
    }
    item_failed(b, i, rc);
}

/*
 * Takes items until none is left. One RMW on the shared counter per item:
 * items are the unit of balance (an item that waits, say for a nested
 * remote call, holds only its runner), and the few runners of one batch
 * contend on it far less than the item's own call costs. The calling
 * task's runner (watch) also polls the call's interruption, which does not
 * reach the other runners (tasks of their own), and passes it on; once it
 * is set, the items not yet started fail with DISCO_EINTERRUPTED.
 */
static void run_items(batch *b, bool watch)
{
    size_t i;
    while ((i = atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed)) < b->n) {
        if (watch && disco_interrupted())
            atomic_store_explicit(&b->interrupted, true, memory_order_relaxed);
        if (atomic_load_explicit(&b->interrupted, memory_order_relaxed)) {
            item_failed(b, i, disco_error_set(DISCO_EINTERRUPTED,
                                              "batch interrupted before item %zu", i));
            continue;
        }
        run_item(b, i);
    }
}

static int runner(void *arg, void **unused)
{
    (void)unused;
    run_items(arg, false);
    return 0;
}

/*
 * Runs the items in parallel over the scheduler's threads: one runner per
 * thread (at most one per item) in a @sync scope, the calling task being
 * one of them. Runners not started when the calling task is done are run
 * by disco_sync_end inline and find nothing left. disco_sync_end waits
 * uninterruptibly, as it must: the runners use b, on this stack.
 */
static void run_batch(batch *b)
{
    size_t nrunners = disco_sched_nthreads();
    nrunners = nrunners < b->n ? nrunners : b->n;
    disco_sync scope;
    disco_sync_begin(&scope);
    disco_task_attr attr = {.name = "pmap batch runner", .detached = true};
    /* A runner that could not be spawned is not needed: the others take
     * its items. */
    for (size_t k = 1; k < nrunners; k++)
        disco_async_attr(runner, b, &attr);
    run_items(b, true);
    if (disco_sync_end(&scope))
        disco_error_clear(); /* a runner got no stack: the others ran its items */
}

/*
 * The results of a batch without failures, as cheap to send and receive as
 * they can be: nil when every one is nil, an I64 or F64 array when every
 * one is of that type (typical of numeric maps; no value to encode, decode
 * or free per item), else a list (*col then says DISCO_LIST and the
 * caller sends the results themselves). 0 or DISCO_ENOMEM.
 */
static int as_column(const disco_value *r, size_t n, disco_value *col)
{
    disco_type t = n ? r[0].type : DISCO_NIL;
    for (size_t i = 1; i < n && (t == DISCO_NIL || t == DISCO_I64 || t == DISCO_F64); i++)
        if (r[i].type != t)
            t = DISCO_LIST;
    if (t == DISCO_NIL) {
        *col = disco_nil();
        return 0;
    }
    if (t != DISCO_I64 && t != DISCO_F64) {
        col->type = DISCO_LIST;
        return 0;
    }
    if (t == DISCO_I64) {
        int64_t *a = malloc(n * sizeof(*a));
        for (size_t i = 0; a && i < n; i++)
            a[i] = r[i].i;
        *col = disco_array(DISCO_ELEM_I64, a, n);
    } else {
        double *a = malloc(n * sizeof(*a));
        for (size_t i = 0; a && i < n; i++)
            a[i] = r[i].f;
        *col = disco_array(DISCO_ELEM_F64, a, n);
    }
    return col->array.data ? 0 : disco_throw(DISCO_ENOMEM, "no memory for a batch of %zu", n);
}

int disco__pmap_batch(const disco_value *args, size_t nargs, disco_value *result)
{
    if (nargs <= CLOSURE_HEAD || nargs - CLOSURE_HEAD > DISCO__PMAP_MAX_COLLECTIONS)
        return disco_throw(DISCO_EPROTO, "disco.pmap_batch: %zu arguments", nargs);
    batch b = {.slices = args + CLOSURE_HEAD, .nslices = nargs - CLOSURE_HEAD};
    b.n = disco__pmap_length(&b.slices[0]);
    for (size_t k = 0; k < b.nslices; k++)
        if (disco__pmap_length(&b.slices[k]) != b.n || b.n == SIZE_MAX)
            return disco_throw(DISCO_EPROTO, "disco.pmap_batch: slices differ");
    disco__cached *ref;
    int rc = disco__closure_resolve((disco_value *)args, &b.fn, &b.captured, &b.ncaptured, &ref);
    if (rc)
        return rc;
    /* Per batch, not per item: the results, their failed flags, the pair. */
    disco_value *pair = malloc(2 * sizeof(*pair));
    b.results = calloc(b.n ? b.n : 1, sizeof(*b.results));
    b.failed = calloc(b.n ? b.n : 1, sizeof(*b.failed));
    int64_t *failed_idx = NULL;
    if (!pair || !b.results || !b.failed) {
        rc = disco_throw(DISCO_ENOMEM, "no memory for a batch of %zu", b.n);
        goto out;
    }
    run_batch(&b);
    size_t nf = 0;
    for (size_t i = 0; i < b.n; i++)
        nf += b.failed[i];
    if (nf && !(failed_idx = malloc(nf * sizeof(*failed_idx)))) {
        rc = disco_throw(DISCO_ENOMEM, "no memory for a batch of %zu", b.n);
        goto out;
    }
    nf = 0;
    for (size_t i = 0; i < b.n; i++)
        if (b.failed[i])
            failed_idx[nf++] = (int64_t)i;
    /* Owned: the runtime frees them after sending. */
    if (!nf && (rc = as_column(b.results, b.n, &pair[0])) != 0)
        goto out;
    if (nf || pair[0].type == DISCO_LIST)
        pair[0] = disco_list(b.results, b.n);
    else
        free(b.results); /* scalars: nothing in them to free */
    b.results = NULL;
    pair[0].flags = DISCO_VALUE_OWNED;
    pair[1] = disco_array(DISCO_ELEM_I64, failed_idx, nf);
    pair[1].flags = DISCO_VALUE_OWNED;
    *result = disco_list(pair, 2);
    result->flags = DISCO_VALUE_OWNED;
    pair = NULL;
out:
    if (b.results) {
        for (size_t i = 0; i < b.n; i++)
            disco_value_free(&b.results[i]);
        free(b.results);
    }
    free(pair);
    free(b.failed);
    disco__closure_done(ref);
    return rc;
}

__attribute__((constructor)) static void register_batch_function(void)
{
    disco_register("disco.pmap_batch", disco__pmap_batch);
}
