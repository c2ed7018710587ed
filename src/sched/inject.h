/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Injection queue: how work enters the scheduler from threads that are not
 * scheduler threads (the main thread, network progress, user threads) and
 * where yielded tasks go to the back of the line.
 *
 * Bounded multi-producer multi-consumer ring after Dmitry Vyukov's design:
 * each cell carries a sequence number that says whether it is free for the
 * producer of position p (seq == p) or full for the consumer of position p
 * (seq == p + 1). A producer or consumer claims a position with one CAS on
 * its counter; no locks, no ABA (64-bit positions never wrap). It is
 * lock-free except that a consumer must wait for a producer that claimed a
 * cell but was preempted before filling it: then try_pop reports empty.
 *
 * When full, disco__inject_push waits (yielding the CPU) for the scheduler
 * threads to drain it: back-pressure on a foreign thread that floods the
 * scheduler, never a lost item.
 */
#ifndef DISCO_SCHED_INJECT_H
#define DISCO_SCHED_INJECT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct disco__inject_cell;

typedef struct disco__inject {
    _Alignas(64) _Atomic uint64_t head; /* next position to pop */
    _Alignas(64) _Atomic uint64_t tail; /* next position to push */
    _Alignas(64) struct disco__inject_cell *cells;
    uint64_t mask;
} disco__inject;

/* log2_cap: capacity as a power of two. DISCO_ENOMEM or 0. */
int disco__inject_init(disco__inject *q, unsigned log2_cap);
void disco__inject_fini(disco__inject *q);

/* false when full. */
bool disco__inject_try_push(disco__inject *q, void *item);
/* Pushes, waiting while the queue is full. */
void disco__inject_push(disco__inject *q, void *item);
/* NULL when empty. */
void *disco__inject_try_pop(disco__inject *q);
/* A snapshot that may be stale by the time it returns. */
bool disco__inject_empty(disco__inject *q);

#endif
