/* SPDX-License-Identifier: BSD-3-Clause */
/* @spawn, @spawnat, @fetchfrom (disco/everywhere.h): thin, by design. */
#include "core/runtime.h"
#include "disco/everywhere.h"

disco_future *disco_spawn(disco_function fn, const disco_value *args, size_t nargs)
{
    /* Julia's global round-robin counter over the current workers. */
    static _Atomic unsigned next;
    int pids[DISCO__MAX_PROCS];
    int n = disco_workers(pids, DISCO__MAX_PROCS);
    unsigned k = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed);
    return disco_remotecall(fn, pids[k % (unsigned)n], args, nargs);
}

disco_future *disco_spawnat(int pid, disco_function fn, const disco_value *args,
                            size_t nargs)
{
    return disco_remotecall(fn, pid, args, nargs);
}

int disco_fetchfrom(int pid, disco_function fn, const disco_value *args, size_t nargs,
                    disco_value *result)
{
    return disco_remotecall_fetch(fn, pid, args, nargs, result);
}
