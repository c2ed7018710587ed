/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The worker's side of a pmap batch: one message of items. Arguments: the closure head (see
 * pool.h), then the collections' slices. The result is a list of two: the
 * items' results in order, and the I64 array of the items that failed
 * (whose results are their errors).
 */
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
    size_t next;
} batch;

static void run_item(batch *b, size_t i)
{
    disco_value args[DISCO__PMAP_MAX_COLLECTIONS], r = disco_nil();
    for (size_t k = 0; k < b->nslices; k++)
        args[k] = disco__pmap_item(&b->slices[k], i);
    disco_error_clear();
    int rc = disco__closure_invoke(b->fn, b->captured, b->ncaptured, args, b->nslices, &r);
    if (rc == 0 && (rc = disco_value_copy(&b->results[i], &r)) == 0) {
        bool borrowed_arg = false;
        for (size_t k = 0; k < b->nslices; k++)
            borrowed_arg |= !memcmp(&r, &args[k], sizeof(r));
        if (!borrowed_arg)
            disco_value_free(&r);
        return;
    }
    disco_error *e = disco_error_take();
    if (!e)
        e = disco_error_new(rc, "%s", disco_strerror(rc));
    disco_value ev = disco_error_value(e);
    if (disco_value_copy(&b->results[i], &ev) != 0)
        b->results[i] = disco_nil();
    disco_error_free(e);
    b->failed[i] = true;
}

static void runner(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        run_item(b, i);
}

/*
 * Runs the batch. Items run one after another in this call's task; the
 * worker's threads run the batches in flight side by side (pmap keeps
 * several on each worker). Spreading one batch over extra tasks lost an
 * item's outcome when items made nested remote calls: not understood yet,
 * so not done.
 */
static void run_batch(batch *b)
{
    runner(b);
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
    /* One block for the results, their failed flags and the pair. */
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
    pair[0] = disco_list(b.results, b.n);
    pair[0].flags = DISCO_VALUE_OWNED;
    pair[1] = disco_array(DISCO_ELEM_I64, failed_idx, nf);
    pair[1].flags = DISCO_VALUE_OWNED;
    *result = disco_list(pair, 2);
    result->flags = DISCO_VALUE_OWNED;
    b.results = NULL;
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
