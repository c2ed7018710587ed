/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The calls running in this process on behalf of others, so that an
 * INTERRUPT frame (disco_interrupt) can reach their tasks.
 */
#ifndef DISCO_CORE_RUNNING_H
#define DISCO_CORE_RUNNING_H

#include "disco/task.h"

/* One running call; lives on the call's task stack or in its record. */
typedef struct disco__running {
    struct disco__running *prev, *next;
    disco_task *task;
} disco__running;

/* The calling task starts running a call / is done with it. */
void disco__running_enter(disco__running *r);
void disco__running_leave(disco__running *r);

/* Interrupts every running call (see sched/interrupt.h); returns how many.
 * Does not block: callable from transport callbacks. */
int disco__running_interrupt_all(void);

#endif
