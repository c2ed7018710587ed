/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Batches (disco_batch_begin, see disco/rpc.h): messages a thread sends
 * while one is open go to the transport's send_more, which may hold them
 * back; the peers they went to are remembered here, per thread, and
 * flushed when the batch ends or the thread waits (the scheduler calls
 * flush_held: sched.h). The answers to a batch's calls are held the same
 * way on the worker (their frames carry DISCO__FRAME_BATCH), and go when
 * its thread runs out of work or waits.
 *
 * Pids, not peer pointers, are kept: a peer may go while a thread still
 * remembers it.
 */
#include "core/runtime.h"
#include "sched/sched.h"

/* Peers remembered per thread; one more flushes them all first. */
#define HELD_PEERS 16

static DISCO__TLS struct {
    unsigned depth; /* nested disco_batch_begin */
    unsigned n;
    int pids[HELD_PEERS];
} held;

static void flush_held(void)
{
    unsigned n = held.n;
    held.n = 0;
    held.depth = 0;
    disco__held_bits = 0;
    for (unsigned i = 0; i < n; i++) {
        disco__peer *p = atomic_load_explicit(&disco__rt.peers[held.pids[i]],
                                              memory_order_acquire);
        if (p)
            disco__peer_flush(p);
    }
}

void disco__batch_start(void) { disco__sched_set_held_flush(flush_held); }

bool disco__batch_open(void) { return disco__held_bits & DISCO__HELD_BATCH; }

void disco__batch_held(const disco__peer *p)
{
    for (unsigned i = 0; i < held.n; i++)
        if (held.pids[i] == p->pid)
            return;
    if (held.n == HELD_PEERS) { /* rare: a batch to many peers */
        unsigned depth = held.depth, bits = disco__held_bits & DISCO__HELD_BATCH;
        flush_held();
        held.depth = depth;
        disco__held_bits = bits;
    }
    held.pids[held.n++] = p->pid;
    disco__held_bits |= DISCO__HELD_SENDS;
}

void disco_batch_begin(void)
{
    held.depth++;
    disco__held_bits |= DISCO__HELD_BATCH;
}

void disco_batch_end(void)
{
    if (held.depth && --held.depth == 0)
        flush_held();
}
