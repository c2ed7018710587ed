/* SPDX-License-Identifier: BSD-3-Clause */
/* The remotecall family (see disco/rpc.h). */
#include <stdlib.h>

#include "base/error_internal.h"
#include "core/rdv.h"
#include "core/running.h"
#include "core/runtime.h"
#include "rpc/future.h"
#include "rpc/registry.h"
#include "rpc/remotecall.h"

/* A call to this process itself: it runs as a local task, on copies of
 * the arguments (the caller may free them at once, as with a remote call),
 * and completes its future as a reply would. */
typedef struct local_call {
    disco_function fn;
    uint64_t id;
    disco_value args; /* an owned list */
    bool reply;       /* false for remote_do */
} local_call;

static int run_local(void *arg, void **unused)
{
    (void)unused;
    local_call *c = arg;
    disco_value result, owned = disco_nil();
    const char *name = NULL;
    bool nowait = false;
    disco__function_by_id(disco__function_id_of(c->fn), &name, &nowait);
    int rc = disco__call_invoke(c->fn, name, nowait, &c->args, !c->reply, &result);
    /* The result may borrow the arguments or the function's memory: the
     * future keeps its own copy. */
    if (rc == 0 && c->reply)
        rc = disco_value_copy(&owned, &result);
    disco__call_result_free(&result, &c->args);
    if (c->reply) {
        disco_error *e = NULL;
        if (rc && !(e = disco_error_take()))
            e = disco_error_new(rc, "%s", disco_strerror(rc));
        if (e)
            disco__error_set_pid(e, disco__rt.myid);
        disco__future_complete(c->id, rc, rc ? NULL : &owned, e);
    }
    disco_value_free(&c->args);
    free(c);
    return 0;
}

static int call_local(uint64_t id, disco_function fn, const disco_value *args,
                      size_t nargs, bool reply)
{
    local_call *c = calloc(1, sizeof(*c));
    if (!c)
        return disco_error_set(DISCO_ENOMEM, "no memory for a call");
    *c = (local_call){.fn = fn, .id = id, .reply = reply};
    disco_value list = disco_list((disco_value *)args, nargs);
    int rc = disco_value_copy(&c->args, &list);
    if (rc == 0)
        rc = disco__async_fifo(run_local, c);
    if (rc) {
        disco_value_free(&c->args);
        free(c);
    }
    return rc;
}

/* Sends a call of kind to pid. With want_future, returns a pending future
 * for the reply in *fp. With regs, large arguments may go by rendezvous
 * (src/core/rdv.h): the caller keeps them alive until the reply, then
 * releases regs. */
static int send_call(int kind, disco_function fn, int pid, const disco_value *args,
                     size_t nargs, disco_future **fp, disco__rdv_regs *regs)
{
    uint64_t fid = fn ? disco__function_id_of(fn) : 0;
    if (!fid)
        return disco_error_set(DISCO_ENOFUNC,
                               "remote call of a function that is not registered "
                               "here (use DISCO_FUNCTION)");
    if (nargs && !args)
        return disco_error_set(DISCO_EINVAL, "remote call: %zu arguments but no array", nargs);
    disco__peer *p = NULL;
    if (pid != disco__rt.myid && !(p = disco__peer_get(pid)))
        return disco_error_code(disco_last_error());
    disco__frame_header h = {
        .kind = (uint8_t)kind,
        .call_id = disco__new_id(),
        .function_id = fid,
        .reply_to = (uint32_t)disco__rt.myid,
    };
    disco_future *f = NULL;
    if (fp && !(f = disco__future_pending(pid, h.call_id, fid)))
        return disco_error_set(DISCO_ENOMEM, "no memory for a future");
    int rc;
    if (!p) {
        rc = call_local(h.call_id, fn, args, nargs, fp != NULL);
    } else {
        /* The list borrows the caller's arguments: they are encoded here. */
        disco_value list = disco_list((disco_value *)args, nargs);
        rc = disco__send_frame_rdv(p, &h, &list, regs);
    }
    if (rc) {
        if (f) {
            disco__future_fail(f, rc, "the call could not be sent");
            disco_future_release(f);
        }
        return rc;
    }
    if (fp)
        *fp = f;
    return 0;
}

disco_future *disco_remotecall(disco_function fn, int pid, const disco_value *args,
                               size_t nargs)
{
    disco_future *f = NULL;
    return send_call(DISCO__FRAME_CALL, fn, pid, args, nargs, &f, NULL) ? NULL : f;
}

disco_future *disco__remotecall_scoped(disco_function fn, int pid, const disco_value *args,
                                       size_t nargs, const disco_value *scope)
{
    disco_future *f = NULL;
    disco__rdv_regs regs = {.scope = scope};
    int rc = send_call(DISCO__FRAME_CALL, fn, pid, args, nargs, &f, &regs);
    /* The registrations are the blocks' own and outlive ours. */
    disco__rdv_release(&regs);
    return rc ? NULL : f;
}

int disco_remotecall_fetch(disco_function fn, int pid, const disco_value *args,
                           size_t nargs, disco_value *result)
{
    disco_future *f = NULL;
    disco__rdv_regs regs = {0};
    int rc = send_call(DISCO__FRAME_CALL_FETCH, fn, pid, args, nargs, &f, &regs);
    if (rc == 0) {
        if ((rc = disco_future_wait(f)) == 0 && result)
            rc = disco__future_take_value(f, result);
        disco_future_release(f);
    }
    disco__rdv_release(&regs);
    return rc;
}

disco_future *disco_remotecall_wait(disco_function fn, int pid, const disco_value *args,
                                    size_t nargs)
{
    disco_future *f = NULL;
    disco__rdv_regs regs = {0};
    /* The value comes back with the completion, so a later fetch of this
     * future needs no second trip (Julia leaves it on the worker). */
    if (send_call(DISCO__FRAME_CALL_WAIT, fn, pid, args, nargs, &f, &regs)) {
        disco__rdv_release(&regs);
        return NULL;
    }
    /* The call's status stays in the future; only an interrupt of this
     * task, before the call finished, fails the wait itself. */
    if (disco__wait_refused(disco_future_wait(f)) && !disco_future_isready(f)) {
        disco_future_release(f);
        f = NULL;
    }
    disco__rdv_release(&regs);
    return f;
}

int disco_remote_do(disco_function fn, int pid, const disco_value *args, size_t nargs)
{
    return send_call(DISCO__FRAME_REMOTE_DO, fn, pid, args, nargs, NULL, NULL);
}
