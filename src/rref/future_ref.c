/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Futures as references. A call's value comes back to its caller, so the
 * caller (`whence`) is the owner: it keeps the future while other processes
 * hold its reference. Another process's handle is a proxy: a call to
 * whence ("disco.fut_fetch") that waits there for the value. A future that
 * is ready when its reference is taken carries its value instead.
 */
#include <stdlib.h>

#include "core/runtime.h"
#include "rpc/future.h"
#include "disco/rref.h"
#include "rref/rref.h"

/* Linking a future and making proxies: a task-parking lock, since making a
 * proxy may wait for a connection. */
static disco_mutex link_lock;

__attribute__((constructor)) static void init_lock(void) { disco_mutex_init(&link_lock); }

disco_value disco_future_ref(disco_future *f)
{
    if (!f) {
        disco_error_set(DISCO_EINVAL, "disco_future_ref: NULL future");
        return disco_nil();
    }
    disco_ref r;
    disco_mutex_lock(&link_lock);
    int rc = 0;
    if (!disco__future_origin(f, &r) && (rc = disco__rref_link_future(f, &r)) == 0)
        disco__future_set_origin(f, &r);
    disco_mutex_unlock(&link_lock);
    if (rc)
        return disco_nil();
    if (disco__future_ready_value(f))
        r.flags = DISCO_REF_CARRIES;
    return disco_ref_value(r);
}

static int fut_fetch(const disco_value *args, size_t n, disco_value *result);

/* A proxy for reference r, whose entry e this process holds. */
static disco_future *proxy(const disco_ref *r, disco__rref *e)
{
    disco_value id = disco_i64((int64_t)r->id);
    disco_future *f = disco_remotecall(fut_fetch, r->whence, &id, 1);
    if (!f)
        return NULL;
    disco__future_set_origin(f, r);
    disco__rref_set_future(e, f);
    return f;
}

disco_future *disco_future_from_ref(const disco_value *v)
{
    if (!v || v->type != DISCO_REF || v->ref.kind != DISCO_REF_FUTURE) {
        disco_error_set(DISCO_EINVAL, "disco_future_from_ref: not a future reference");
        return NULL;
    }
    disco_ref r = v->ref;
    r.flags = 0;
    disco__rref *e = disco__rref_hold(&r);
    if (!e)
        return NULL;
    disco_mutex_lock(&link_lock);
    disco_future *f = disco__rref_future_of(e);
    if (!f && (v->ref.flags & DISCO_REF_CARRIES) && e->has_value) {
        /* The carried value stays with the entry (a reference may still
         * be sent on): the future gets its own copy. */
        disco_value copy;
        if (disco_value_copy(&copy, &e->value) == 0 &&
            (f = disco__future_ready(r.where, &copy))) {
            disco__future_set_origin(f, &r);
            disco__rref_set_future(e, f);
        } else {
            disco_value_free(&copy);
            disco_error_set(DISCO_ENOMEM, "no memory for a future");
        }
    } else if (!f && r.whence == disco__rt.myid) {
        disco_error_set(DISCO_ESTATE, "future %d/%llu: its value is no longer kept",
                        r.whence, (unsigned long long)r.id);
    } else if (!f) {
        f = proxy(&r, e);
    }
    disco_mutex_unlock(&link_lock);
    disco__rref_release(e);
    return f;
}

/* "disco.fut_fetch"(id), on the caller that made call id: waits for its
 * value and returns a copy (or its error). */
static int fut_fetch(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 1 || args[0].type != DISCO_I64)
        return disco_throw(DISCO_EPROTO, "disco.fut_fetch: bad arguments");
    disco_ref r = {.whence = disco__rt.myid, .id = (uint64_t)args[0].i,
                   .kind = DISCO_REF_FUTURE};
    disco__rref *e = disco__rref_find_hold(&r);
    disco_future *f = e ? disco__rref_future_of(e) : NULL;
    if (e)
        disco__rref_release(e);
    if (!f)
        return disco_throw(DISCO_ESTATE, "future %d/%llu is not kept on process %d",
                           r.whence, (unsigned long long)r.id, disco__rt.myid);
    const disco_value *v;
    int rc = disco_future_fetch(f, &v);
    if (rc == 0)
        rc = disco_value_copy(result, v);
    disco_future_release(f);
    return rc;
}

__attribute__((constructor)) static void register_future_functions(void)
{
    disco_register("disco.fut_fetch", fut_fetch);
}
