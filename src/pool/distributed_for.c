/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * @distributed for: the range split over the workers as Julia's splitrange
 * does, one call per chunk ("disco.dfor_chunk"), each worker folding its
 * chunk locally.
 */
#include <stdlib.h>

#include "core/runtime.h"
#include "disco/pool.h"
#include "rpc/registry.h"

/* Julia's splitrange(lo, hi, np): chunk k of the n it returns is
 * [first[k], first[k] + len[k]). */
static int splitrange(int64_t lo, int64_t hi, int np, int64_t *first, int64_t *len)
{
    uint64_t n = (uint64_t)hi - (uint64_t)lo + 1;
    uint64_t each = n / (uint64_t)np, extra = n % (uint64_t)np;
    int chunks = each > 0 ? np : (int)extra;
    uint64_t at = (uint64_t)lo; /* unsigned: past the last chunk may be INT64_MAX + 1 */
    for (int k = 0; k < chunks; k++) {
        len[k] = (int64_t)(each + ((uint64_t)k < extra ? 1 : 0));
        first[k] = (int64_t)at;
        at += (uint64_t)len[k];
    }
    return chunks;
}

static disco_function function_of(const disco_value *v)
{
    const char *name;
    return v->type == DISCO_I64 ? disco__function_by_id((uint64_t)v->i, &name, NULL) : NULL;
}

/* Worker: [body id, reducer id or nil, first, last]: the fold of the chunk
 * (nil without a reducer). */
static int dfor_chunk(const disco_value *args, size_t nargs, disco_value *result)
{
    disco_function body = nargs == 4 ? function_of(&args[0]) : NULL;
    disco_function reducer = nargs == 4 ? function_of(&args[1]) : NULL;
    if (!body || (!reducer && args[1].type != DISCO_NIL) || args[2].type != DISCO_I64 ||
        args[3].type != DISCO_I64)
        return disco_throw(DISCO_EPROTO, "disco.dfor_chunk: bad arguments");
    disco_value acc = disco_nil();
    for (int64_t i = args[2].i; i <= args[3].i; i++) {
        /* The call computes without waiting: it polls for an interrupt
         * (disco_interrupt) now and then, not on every cheap iteration. */
        if ((((uint64_t)i - (uint64_t)args[2].i) & 1023) == 1023 && disco_interrupted()) {
            disco_value_free(&acc);
            return disco_throw(DISCO_EINTERRUPTED, "distributed for interrupted at %lld",
                               (long long)i);
        }
        disco_value x = disco_i64(i), v = disco_nil(), owned;
        int rc = body(&x, 1, &v);
        if (rc == 0 && reducer && i > args[2].i) {
            disco_value pair[2] = {acc, v}, r = disco_nil();
            rc = reducer(pair, 2, &r);
            if (rc == 0)
                rc = disco_value_copy(&owned, &r);
            disco_value_free(&r);
        } else if (rc == 0 && reducer) {
            rc = disco_value_copy(&owned, &v);
        }
        disco_value_free(&v);
        if (rc) {
            disco_value_free(&acc);
            return rc;
        }
        if (reducer) {
            disco_value_free(&acc);
            acc = owned;
        }
        if (i == args[3].i)
            break; /* hi may be INT64_MAX */
    }
    *result = acc; /* owned: freed after sending */
    return 0;
}

/* Runs the chunks on the workers and, with a reducer, folds the partial
 * results into *result. */
static int run_chunks(int64_t lo, int64_t hi, disco_function body, disco_function reducer,
                      disco_value *result)
{
    uint64_t body_id = body ? disco__function_id_of(body) : 0;
    uint64_t reducer_id = reducer ? disco__function_id_of(reducer) : 0;
    if (!body_id || (reducer && !reducer_id))
        return disco_error_set(body && (!reducer || reducer_id) ? DISCO_ENOFUNC : DISCO_EINVAL,
                               "distributed for: body%s not a registered function",
                               reducer ? " or reducer" : "");
    if (hi < lo)
        return disco_error_set(DISCO_EINVAL, "distributed for: empty range %lld:%lld",
                               (long long)lo, (long long)hi);
    int np = disco_nworkers();
    int *pids = malloc((size_t)np * sizeof(int));
    int64_t *first = malloc((size_t)np * sizeof(int64_t)), *len = malloc((size_t)np * sizeof(int64_t));
    disco_future **f = calloc((size_t)np, sizeof(*f));
    int rc = 0;
    if (!pids || !first || !len || !f) {
        rc = disco_error_set(DISCO_ENOMEM, "distributed for: no memory");
        goto out;
    }
    np = disco_workers(pids, np);
    int chunks = splitrange(lo, hi, np, first, len), sent = 0;
    disco_error *err = NULL; /* the first failure's, kept past later waits */
    for (; sent < chunks; sent++) {
        disco_value a[4] = {disco_i64((int64_t)body_id),
                            reducer ? disco_i64((int64_t)reducer_id) : disco_nil(),
                            disco_i64(first[sent]), disco_i64(first[sent] + (len[sent] - 1))};
        if (!(f[sent] = disco_remotecall(dfor_chunk, pids[sent], a, 4))) {
            rc = disco_error_code(disco_last_error());
            err = disco_error_take();
            break;
        }
    }
    /* Every chunk sent is waited for, also after a failure (the first one
     * is the answer), unless this task is interrupted: then the chunks go
     * on and their results are dropped. */
    disco_value acc = disco_nil();
    for (int k = 0; k < sent; k++) {
        const disco_value *v;
        int r = disco_future_fetch(f[k], &v);
        bool interrupted = disco__wait_refused(r) && !disco_future_isready(f[k]);
        if (r == 0 && rc == 0 && reducer) {
            disco_value next = disco_nil();
            if (k == 0) {
                r = disco_value_copy(&next, v);
            } else {
                disco_value pair[2] = {acc, *v}, x = disco_nil();
                if ((r = reducer(pair, 2, &x)) == 0)
                    r = disco_value_copy(&next, &x);
                disco_value_free(&x);
            }
            disco_value_free(&acc);
            acc = next;
        }
        if (r && !rc) {
            rc = r;
            err = disco_error_take();
        }
        if (interrupted)
            break;
    }
    if (rc)
        disco_error_put(err);
    if (rc == 0 && result)
        *result = acc;
    else
        disco_value_free(&acc);
out:
    for (int k = 0; f && k < np; k++)
        disco_future_release(f[k]);
    free(f);
    free(pids);
    free(first);
    free(len);
    return rc;
}

int disco_distributed_for(int64_t lo, int64_t hi, disco_function body, disco_function reducer,
                          disco_value *result)
{
    if (!reducer || !result)
        return disco_error_set(DISCO_EINVAL, "distributed for: no reducer or no result "
                                             "(without one: disco_distributed_for_async)");
    return run_chunks(lo, hi, body, reducer, result);
}

typedef struct loop {
    int64_t lo, hi;
    disco_function body;
} loop;

static int run_loop(void *arg, void **unused)
{
    (void)unused;
    loop l = *(loop *)arg;
    free(arg);
    return run_chunks(l.lo, l.hi, l.body, NULL, NULL);
}

disco_task *disco_distributed_for_async(int64_t lo, int64_t hi, disco_function body)
{
    loop *l = malloc(sizeof(*l));
    if (!l) {
        disco_error_set(DISCO_ENOMEM, "distributed for: no memory");
        return NULL;
    }
    *l = (loop){lo, hi, body};
    disco_task *t = disco_async(run_loop, l);
    if (!t)
        free(l);
    return t;
}

__attribute__((constructor)) static void register_dfor_function(void)
{
    disco_register("disco.dfor_chunk", dfor_chunk);
}
