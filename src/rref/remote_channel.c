/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * RemoteChannel: a handle whose operations run on the owner, on a local
 * channel of owned disco_values (see disco/rref.h).
 *
 * Each operation on another process is one remotecall_fetch of an internal
 * function ("disco.rc_*"): ordering, errors, worker death and lazy
 * connections come with it, and a blocking operation parks a task on the
 * owner, not a thread. On the owner itself the same code runs directly.
 *
 * A fetch copies an item that stays in the channel while a take on another
 * task may free it, so takes and fetches remove or copy an item under the
 * entry's `items` mutex without waiting there: they try, and wait for an
 * item (disco_wait, no lock held) when there is none.
 */
#include <stdlib.h>

#include "core/runtime.h"
#include "rref/remote_channel.h"

/* ---- on the owner --------------------------------------------------------- */

static int gone(const disco_ref *r)
{
    return disco_error_set(DISCO_ESTATE,
                           "local instance of remote reference %d/%llu not found on "
                           "process %d", r->whence, (unsigned long long)r->id,
                           disco__rt.myid);
}

static int take_or_fetch(disco__rref *e, disco_value *out, bool take)
{
    for (;;) {
        pthread_mutex_lock(&e->items);
        disco_value item;
        bool got = disco_isready(e->backing) &&
                   (take ? disco_take(e->backing, &item) : disco_fetch(e->backing, &item)) == 0;
        int rc = 0;
        if (got && take)
            *out = item; /* moved out: the caller owns it now */
        else if (got)
            rc = disco_value_copy(out, &item);
        pthread_mutex_unlock(&e->items);
        if (got)
            return rc;
        if ((rc = disco_wait(e->backing)) != 0)
            return rc == DISCO_ECLOSED ? disco_error_set(rc, "channel closed") : rc;
    }
}

static int put_owned(disco__rref *e, disco_value *item)
{
    int rc = disco_put(e->backing, item);
    if (rc) {
        disco_value_free(item);
        return rc == DISCO_ECLOSED ? disco_error_set(rc, "channel closed") : rc;
    }
    return 0;
}

typedef enum { OP_PUT, OP_TAKE, OP_FETCH, OP_ISREADY, OP_WAIT, OP_CLOSE, OP_ISOPEN } op;

/* Runs op on the owner's entry e. item: the value to put (moved in). */
static int run_op(disco__rref *e, op o, disco_value *item, disco_value *result)
{
    int rc = 0;
    switch (o) {
    case OP_PUT: return put_owned(e, item);
    case OP_TAKE: return take_or_fetch(e, result, true);
    case OP_FETCH: return take_or_fetch(e, result, false);
    case OP_ISREADY: *result = disco_bool(disco_isready(e->backing)); return 0;
    case OP_WAIT:
        rc = disco_wait(e->backing);
        return rc == DISCO_ECLOSED ? disco_error_set(rc, "channel closed") : rc;
    case OP_CLOSE: return disco_close(e->backing);
    case OP_ISOPEN: *result = disco_bool(disco_isopen(e->backing)); return 0;
    }
    return disco_error_set(DISCO_EINVAL, "unknown channel operation");
}

/* "disco.rc_op"(op, whence, id[, item]): one operation on the owner. The
 * item is taken out of the runtime's own decoded argument list (which is
 * freed after the call) rather than copied again. */
static int rc_op(const disco_value *args, size_t n, disco_value *result)
{
    if (n < 3 || args[0].type != DISCO_I64 || args[1].type != DISCO_I64 ||
        args[2].type != DISCO_I64 || args[0].i < OP_PUT || args[0].i > OP_ISOPEN ||
        (args[0].i == OP_PUT) != (n == 4) || n > 4)
        return disco_throw(DISCO_EPROTO, "disco.rc_op: bad arguments");
    disco_ref r = {.where = disco__rt.myid, .whence = (int32_t)args[1].i,
                   .id = (uint64_t)args[2].i, .kind = DISCO_REF_CHANNEL};
    disco__rref *e = disco__rref_find_hold(&r);
    if (!e || !e->backing) {
        if (e)
            disco__rref_release(e);
        return gone(&r);
    }
    disco_value item = disco_nil();
    if (n == 4) {
        item = args[3];
        *(disco_value *)&args[3] = disco_nil();
    }
    int rc = run_op(e, (op)args[0].i, &item, result);
    disco__rref_release(e);
    return rc;
}

/* "disco.rc_new"(whence, id, capacity) or (whence, id, -1, factory id,
 * args list): makes the backing channel. */
static int rc_new(const disco_value *args, size_t n, disco_value *result);

/* ---- handles --------------------------------------------------------------- */

static disco__rchan *handle_new(const disco_ref *r, disco__rref *e)
{
    disco__rchan *h = malloc(sizeof(*h));
    if (!h) {
        disco__rref_release(e);
        disco_error_set(DISCO_ENOMEM, "no memory for a remote channel handle");
        return NULL;
    }
    *h = (disco__rchan){.remote = true, .ref = *r, .entry = e,
                        .capacity = DISCO_CHANNEL_UNBOUNDED};
    h->ref.flags = 0;
    return h;
}

disco_channel *disco__rchan_create(int pid, const disco_value *spec, size_t nspec)
{
    disco_ref r = {.where = pid, .whence = disco__rt.myid, .id = disco__new_id(),
                   .kind = DISCO_REF_CHANNEL};
    disco_value args[5] = {disco_i64(r.whence), disco_i64((int64_t)r.id)};
    for (size_t i = 0; i < nspec; i++)
        args[2 + i] = spec[i];
    disco_value cap = disco_nil();
    int rc;
    if (pid == disco__rt.myid)
        rc = rc_new(args, 2 + nspec, &cap);
    else if (pid <= 0 || pid >= DISCO__MAX_PROCS)
        rc = disco_error_set(DISCO_ENOPROC, "remote channel: no process %d", pid);
    else
        rc = disco_remotecall_fetch(rc_new, pid, args, 2 + nspec, &cap);
    if (rc)
        return NULL;
    if (cap.type != DISCO_I64) {
        disco_value_free(&cap);
        disco_error_set(DISCO_EPROTO, "remote channel: malformed answer from process %d", pid);
        return NULL;
    }
    /* The owner counts us as a client (or, here, our handle as a hold). */
    disco__rref *e = pid == disco__rt.myid ? disco__rref_find_hold(&r)
                                           : disco__rref_hold_granted(&r, 1);
    if (!e)
        return NULL;
    if (pid == disco__rt.myid)
        disco__rref_release(e); /* the hold rc_new made is the handle's */
    disco__rchan *h = handle_new(&r, e);
    if (h)
        h->capacity = cap.i == -2 ? DISCO_CHANNEL_UNBOUNDED : (size_t)cap.i;
    return (disco_channel *)h;
}

disco_channel *disco_remote_channel_new(int pid, size_t capacity)
{
    disco_value cap = disco_i64(capacity == DISCO_CHANNEL_UNBOUNDED ? -2 : (int64_t)capacity);
    if (capacity != DISCO_CHANNEL_UNBOUNDED && capacity > INT64_MAX) {
        disco_error_set(DISCO_EINVAL, "remote channel: capacity %zu too large", capacity);
        return NULL;
    }
    return disco__rchan_create(pid, &cap, 1);
}

bool disco_channel_is_remote(const disco_channel *ch)
{
    return ch && ((const disco__rchan *)ch)->remote;
}

disco_value disco_channel_ref(disco_channel *ch)
{
    if (!disco_channel_is_remote(ch))
        return disco_nil();
    return disco_ref_value(((disco__rchan *)ch)->ref);
}

disco_channel *disco_channel_from_ref(const disco_value *v)
{
    if (!v || v->type != DISCO_REF || v->ref.kind != DISCO_REF_CHANNEL) {
        disco_error_set(DISCO_EINVAL, "disco_channel_from_ref: not a remote channel reference");
        return NULL;
    }
    disco__rref *e = disco__rref_hold(&v->ref);
    return e ? (disco_channel *)handle_new(&v->ref, e) : NULL;
}

disco_channel *disco_channel_from_id(int whence, uint64_t id)
{
    disco_ref r = {.where = disco__rt.myid, .whence = whence, .id = id,
                   .kind = DISCO_REF_CHANNEL};
    disco__rref *e = disco__rref_find_hold(&r);
    disco_channel *ch = e ? e->backing : NULL;
    if (e)
        disco__rref_release(e); /* the remote channel's holders keep it */
    if (!ch)
        gone(&r);
    return ch;
}

/* ---- the channel API on a handle -------------------------------------------- */

static int call(disco__rchan *h, op o, const disco_value *item, disco_value *result)
{
    if (h->ref.where == disco__rt.myid) {
        disco_value copy = disco_nil();
        int rc = item ? disco_value_copy(&copy, item) : 0;
        return rc ? rc : run_op(h->entry, o, &copy, result);
    }
    disco_value args[4] = {disco_i64(o), disco_i64(h->ref.whence),
                           disco_i64((int64_t)h->ref.id), item ? *item : disco_nil()};
    return disco_remotecall_fetch(rc_op, h->ref.where, args, item ? 4 : 3, result);
}

static int r_put(disco_channel *ch, const void *item)
{
    if (!item)
        return disco_error_set(DISCO_EINVAL, "disco_put: NULL item");
    return call((disco__rchan *)ch, OP_PUT, item, NULL);
}

static int r_take(disco_channel *ch, void *out)
{
    disco_value v = disco_nil();
    int rc = call((disco__rchan *)ch, OP_TAKE, NULL, &v);
    if (rc == 0 && out)
        *(disco_value *)out = v;
    else
        disco_value_free(&v);
    return rc;
}

static int r_fetch(disco_channel *ch, void *out)
{
    disco_value v = disco_nil();
    int rc = call((disco__rchan *)ch, OP_FETCH, NULL, &v);
    if (rc == 0 && out)
        *(disco_value *)out = v;
    else
        disco_value_free(&v);
    return rc;
}

static bool r_bool(disco_channel *ch, op o)
{
    disco_value v = disco_nil();
    bool b = call((disco__rchan *)ch, o, NULL, &v) == 0 && v.type == DISCO_BOOL && v.b;
    disco_value_free(&v);
    return b;
}

static bool r_isready(disco_channel *ch) { return r_bool(ch, OP_ISREADY); }
static bool r_isopen(disco_channel *ch) { return r_bool(ch, OP_ISOPEN); }
static int r_wait(disco_channel *ch) { return call((disco__rchan *)ch, OP_WAIT, NULL, NULL); }
static int r_close(disco_channel *ch) { return call((disco__rchan *)ch, OP_CLOSE, NULL, NULL); }

static size_t r_capacity(const disco_channel *ch)
{
    return ((const disco__rchan *)ch)->capacity;
}

static size_t r_elem_size(const disco_channel *ch)
{
    (void)ch;
    return sizeof(disco_value);
}

static void r_free(disco_channel *ch)
{
    disco__rchan *h = (disco__rchan *)ch;
    disco__rref_release(h->entry);
    free(h);
}

static const disco__channel_remote_ops ops = {
    .put = r_put,
    .take = r_take,
    .fetch = r_fetch,
    .isready = r_isready,
    .wait = r_wait,
    .close = r_close,
    .isopen = r_isopen,
    .capacity = r_capacity,
    .elem_size = r_elem_size,
    .free = r_free,
};

/* ---- creation on the owner ----------------------------------------------- */

static int rc_new(const disco_value *args, size_t n, disco_value *result)
{
    if (n < 3 || args[0].type != DISCO_I64 || args[1].type != DISCO_I64 ||
        args[2].type != DISCO_I64 || (args[2].i == -1) != (n == 5) || n > 5 ||
        (n == 5 && (args[3].type != DISCO_I64 || args[4].type != DISCO_LIST)) ||
        args[2].i < -2)
        return disco_throw(DISCO_EPROTO, "disco.rc_new: bad arguments");
    disco_channel *ch;
    if (args[2].i == -1) {
        disco_channel_factory make = disco__factory_by_id((uint64_t)args[3].i);
        if (!make)
            return disco_error_set(DISCO_ENOFUNC,
                                   "channel factory %#llx is not registered on process %d",
                                   (unsigned long long)args[3].i, disco__rt.myid);
        if (!(ch = make(args[4].list.items, args[4].list.n)))
            return disco_last_error() ? disco_error_code(disco_last_error())
                                      : disco_error_set(DISCO_EINVAL, "factory failed");
        if (disco_channel_elem_size(ch) != sizeof(disco_value)) {
            disco_channel_free(ch);
            return disco_error_set(DISCO_EINVAL, "a channel factory must make a channel "
                                                 "of disco_value items");
        }
    } else {
        size_t cap = args[2].i == -2 ? DISCO_CHANNEL_UNBOUNDED : (size_t)args[2].i;
        if (!(ch = disco_channel_new(sizeof(disco_value), cap)))
            return disco_error_code(disco_last_error());
    }
    disco_ref r = {.where = disco__rt.myid, .whence = (int32_t)args[0].i,
                   .id = (uint64_t)args[1].i, .kind = DISCO_REF_CHANNEL};
    size_t cap = disco_channel_capacity(ch);
    if (!disco__rref_new_channel(&r, ch)) {
        disco_channel_free(ch);
        return disco_error_code(disco_last_error());
    }
    *result = disco_i64(cap == DISCO_CHANNEL_UNBOUNDED ? -2 : (int64_t)cap);
    return 0;
}

__attribute__((constructor)) static void register_channel_functions(void)
{
    disco__channel_remote = &ops;
    disco_register("disco.rc_new", rc_new);
    disco_register("disco.rc_op", rc_op);
}
