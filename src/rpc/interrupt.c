/* SPDX-License-Identifier: BSD-3-Clause */
/* disco_interrupt (see disco/rpc.h). */
#include "core/running.h"
#include "core/runtime.h"

static int interrupt_one(int pid)
{
    if (pid == disco__rt.myid) {
        disco__running_interrupt_all();
        return 0;
    }
    disco__peer *p = disco__peer_get(pid);
    if (!p)
        return disco_error_code(disco_last_error());
    disco__frame_header h = {.kind = DISCO__FRAME_INTERRUPT};
    return disco__send_frame(p, &h, NULL);
}

int disco_interrupt(const int *pids, int n)
{
    int all[DISCO__MAX_PROCS];
    if (!pids) {
        n = disco_workers(all, DISCO__MAX_PROCS);
        pids = all;
    }
    if (n < 0)
        return disco_error_set(DISCO_EINVAL, "disco_interrupt: bad count %d", n);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        int one = interrupt_one(pids[i]);
        if (one && !rc)
            rc = one; /* the others are still interrupted */
    }
    return rc;
}
