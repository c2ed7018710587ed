/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Task stacks: mmap'd regions with a PROT_NONE guard area below the usable
 * part, so that an overflow faults instead of corrupting the neighbour. A
 * SIGSEGV handler (on an alternate signal stack per scheduler thread)
 * recognises a fault in the running task's guard area and prints which task
 * overflowed before the process dies; other faults go to the previous
 * handler.
 */
#ifndef DISCO_SCHED_STACK_H
#define DISCO_SCHED_STACK_H

#include <stddef.h>

/* Guard below every stack: large enough that a frame with big locals cannot
 * jump over it. */
#define DISCO__STACK_GUARD (64 * 1024)

typedef struct disco__stack {
    char *lo;    /* lowest usable byte (the guard is below it) */
    size_t size; /* usable bytes */
} disco__stack;

/* Maps a stack of `size` usable bytes (rounded up to pages). DISCO_ENOMEM. */
int disco__stack_map(disco__stack *s, size_t size);
void disco__stack_unmap(disco__stack *s);

/* Installs the SIGSEGV handler (once per process) and an alternate signal
 * stack for the calling thread; the second frees that alternate stack. */
int disco__stack_guard_thread_init(void);
void disco__stack_guard_thread_fini(void);

#endif
