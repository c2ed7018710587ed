/* SPDX-License-Identifier: BSD-3-Clause */
/* The remotecall family (see disco/rpc.h). */
#include <stdlib.h>

#include "core/runtime.h"
#include "rpc/future.h"
#include "rpc/registry.h"

/* Sends a call of kind to pid. With want_future, returns a pending future
 * for the reply in *fp. */
static int send_call(int kind, disco_function fn, int pid, const disco_value *args,
                     size_t nargs, disco_future **fp)
{
    uint64_t fid = fn ? disco__function_id_of(fn) : 0;
    if (!fid)
        return disco_error_set(DISCO_ENOFUNC,
                               "remote call of a function that is not registered "
                               "here (use DISCO_FUNCTION)");
    if (nargs && !args)
        return disco_error_set(DISCO_EINVAL, "remote call: %zu arguments but no array", nargs);
    if (pid == disco__rt.myid)
        return disco_error_set(DISCO_EINVAL,
                               "remote call to this process itself (%d) is not supported yet",
                               pid);
    disco__peer *p = disco__peer_get(pid);
    if (!p)
        return disco_error_code(disco_last_error());
    disco__frame_header h = {
        .kind = (uint8_t)kind,
        .call_id = atomic_fetch_add_explicit(&disco__rt.next_call_id, 1, memory_order_relaxed) + 1,
        .function_id = fid,
        .reply_to = (uint32_t)disco__rt.myid,
    };
    disco_future *f = NULL;
    const char *name = NULL;
    if (fp)
        disco__function_by_id(fid, &name); /* for error messages only */
    if (fp && !(f = disco__future_pending(pid, h.call_id, name)))
        return disco_error_set(DISCO_ENOMEM, "no memory for a future");
    /* The list borrows the caller's arguments: they are encoded right here. */
    disco_value list = disco_list((disco_value *)args, nargs);
    int rc = disco__send_frame(p, &h, &list);
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
    return send_call(DISCO__FRAME_CALL, fn, pid, args, nargs, &f) ? NULL : f;
}

int disco_remotecall_fetch(disco_function fn, int pid, const disco_value *args,
                           size_t nargs, disco_value *result)
{
    disco_future *f = NULL;
    int rc = send_call(DISCO__FRAME_CALL_FETCH, fn, pid, args, nargs, &f);
    if (rc)
        return rc;
    const disco_value *v;
    if ((rc = disco_future_fetch(f, &v)) == 0 && result)
        rc = disco_value_copy(result, v);
    disco_future_release(f);
    return rc;
}

disco_future *disco_remotecall_wait(disco_function fn, int pid, const disco_value *args,
                                    size_t nargs)
{
    disco_future *f = NULL;
    /* The value comes back with the completion, so a later fetch of this
     * future needs no second trip (Julia leaves it on the worker). */
    if (send_call(DISCO__FRAME_CALL_WAIT, fn, pid, args, nargs, &f))
        return NULL;
    disco_future_wait(f); /* its status stays in the future */
    return f;
}

int disco_remote_do(disco_function fn, int pid, const disco_value *args, size_t nargs)
{
    return send_call(DISCO__FRAME_REMOTE_DO, fn, pid, args, nargs, NULL);
}
