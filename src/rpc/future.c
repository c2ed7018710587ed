/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Futures. A future waiting for a reply sits in a table keyed by call id
 * (buckets under one spinlock: replies and new calls are visits of a few
 * dozen instructions, which a mutex doubled, lock and unlock), with
 * two references: the caller's handle and the table's. The reply, found by
 * id, fills it, removes it from the table and wakes its waiters.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/error_internal.h"
#include "base/spare.h"
#include "rpc/future.h"
#include "rpc/registry.h"
#include "rref/rref.h"
#include "sched/sched.h"
#include "sched/spin.h"

struct disco_future {
    struct disco_future *next; /* bucket chain, under lock */
    _Atomic int refs;
    int where;
    uint64_t id;
    uint64_t fid; /* the function's wire id: named only in messages */
    atomic_bool ready;
    int status;
    disco_value value;
    disco_error *err;
    disco_event done;
    /* Set once it has been made a reference (disco_future_ref): which. */
    disco_ref origin;
    bool linked;
};

#define BUCKETS 1024

static struct {
    disco__spin lock;
    disco_future *bucket[BUCKETS];
} T;

static void future_unref(disco_future *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) {
        if (f->linked)
            disco__rref_future_freed(f, &f->origin);
        disco_value_free(&f->value);
        disco_error_free(f->err);
        disco__spare_put(DISCO__SPARE_FUTURE, f);
    }
}

disco_future *disco__future_pending(int where, uint64_t id, uint64_t fid)
{
    /* An initializer rather than calloc, which costs a few hundred
     * instructions more (glibc's calloc takes no per-thread cache). */
    disco_future *f = disco__spare_take(DISCO__SPARE_FUTURE, sizeof(*f));
    if (!f)
        return NULL;
    *f = (disco_future){.where = where, .id = id, .fid = fid, .value = disco_nil()};
    atomic_init(&f->refs, 2);
    disco_event_init(&f->done, false);
    disco__spin_lock(&T.lock);
    f->next = T.bucket[id % BUCKETS];
    T.bucket[id % BUCKETS] = f;
    disco__spin_unlock(&T.lock);
    return f;
}

/* Removes and returns the pending future with id, or NULL. */
static disco_future *unlink_id(uint64_t id)
{
    disco__spin_lock(&T.lock);
    disco_future **p = &T.bucket[id % BUCKETS];
    while (*p && (*p)->id != id)
        p = &(*p)->next;
    disco_future *f = *p;
    if (f)
        *p = f->next;
    disco__spin_unlock(&T.lock);
    return f;
}

static void finish(disco_future *f, int status, disco_value *value, disco_error *err)
{
    /* The target knows the function only by its wire id: name it here. */
    const char *fname = NULL;
    if (status == DISCO_ENOFUNC && err && disco__function_by_id(f->fid, &fname, NULL) && fname) {
        char msg[256];
        int n = snprintf(msg, sizeof(msg), "function '%s' is not registered on worker %d",
                         fname, f->where);
        disco__error_set_message(err, msg, (size_t)n);
    }
    f->status = status;
    if (value) {
        f->value = *value;
        *value = disco_nil();
    }
    f->err = err;
    /* release: the waiter that sees ready sees the value (pairs with the
     * acquire loads in fetch/isready; the event orders it too). */
    atomic_store_explicit(&f->ready, true, memory_order_release);
    disco_event_notify(&f->done);
    future_unref(f); /* the table's reference */
}

void disco__future_complete(uint64_t id, int status, disco_value *value,
                            disco_error *err)
{
    disco_future *f = unlink_id(id);
    if (!f) {
        if (value)
            disco_value_free(value);
        disco_error_free(err);
        return;
    }
    finish(f, status, value, err);
}

void disco__future_fail(disco_future *f, int status, const char *why)
{
    if (unlink_id(f->id) == f)
        finish(f, status, NULL, disco_error_new(status, "%s", why));
}

void disco__future_fail_where(int where, const disco_error *err)
{
    /* One pass under the lock takes them all out (in table order), so
     * that the lock is held once, not once per future. */
    disco_future *failed = NULL, **tail = &failed;
    disco__spin_lock(&T.lock);
    for (size_t b = 0; b < BUCKETS; b++)
        for (disco_future **p = &T.bucket[b]; *p;) {
            disco_future *f = *p;
            if (f->where != where) {
                p = &f->next;
                continue;
            }
            *p = f->next;
            f->next = NULL;
            *tail = f;
            tail = &f->next;
        }
    disco__spin_unlock(&T.lock);
    while (failed) {
        disco_future *f = failed;
        failed = f->next;
        finish(f, disco_error_code(err), NULL, disco_error_copy(err));
    }
}

int disco_future_wait(disco_future *f)
{
    if (!f)
        return disco_error_set(DISCO_EINVAL, "disco_future_wait: NULL future");
    int rc;
    if (!atomic_load_explicit(&f->ready, memory_order_acquire) && (rc = disco_event_wait(&f->done)))
        return rc; /* interrupted, or in a no-wait function: the last error says so */
    if (f->status) {
        disco_error *e = f->err ? disco_error_copy(f->err) : NULL;
        if (e)
            return disco_error_put(e);
        return disco_error_set(f->status, "%s", disco_strerror(f->status));
    }
    return 0;
}

int disco_future_fetch(disco_future *f, const disco_value **value)
{
    int rc = disco_future_wait(f);
    if (rc == 0 && value)
        *value = &f->value;
    return rc;
}

int disco__future_take_value(disco_future *f, disco_value *out)
{
    /* The only reference, not shared as a reference: nobody can look at the
     * value after us, so it moves instead of being copied. */
    if (atomic_load_explicit(&f->refs, memory_order_acquire) == 1 && !f->linked &&
        (f->value.flags & DISCO_VALUE_OWNED)) {
        *out = f->value;
        f->value = disco_nil();
        return 0;
    }
    return disco_value_copy(out, &f->value);
}

bool disco_future_isready(disco_future *f)
{
    return atomic_load_explicit(&f->ready, memory_order_acquire);
}

int disco_future_where(const disco_future *f) { return f->where; }

void disco__future_retain(disco_future *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

bool disco__future_tryretain(disco_future *f)
{
    int n = atomic_load_explicit(&f->refs, memory_order_relaxed);
    while (n > 0)
        if (atomic_compare_exchange_weak_explicit(&f->refs, &n, n + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

const disco_value *disco__future_ready_value(disco_future *f)
{
    return atomic_load_explicit(&f->ready, memory_order_acquire) && f->status == 0
               ? &f->value : NULL;
}

disco_future *disco__future_ready(int where, disco_value *value)
{
    disco_future *f = disco__spare_take(DISCO__SPARE_FUTURE, sizeof(*f));
    if (!f)
        return NULL;
    *f = (disco_future){.where = where};
    atomic_init(&f->refs, 1);
    f->value = *value;
    *value = disco_nil();
    disco_event_init(&f->done, false);
    atomic_store_explicit(&f->ready, true, memory_order_release);
    disco_event_notify(&f->done);
    return f;
}

bool disco__future_origin(disco_future *f, disco_ref *r)
{
    if (f->linked)
        *r = f->origin;
    else
        *r = (disco_ref){.where = f->where, .whence = disco_myid(), .id = f->id,
                         .kind = DISCO_REF_FUTURE};
    return f->linked;
}

void disco__future_set_origin(disco_future *f, const disco_ref *r)
{
    f->origin = *r;
    f->origin.flags = 0;
    f->linked = true;
}

void disco_future_release(disco_future *f)
{
    if (f)
        future_unref(f);
}
