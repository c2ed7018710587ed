/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The calls running in this process on behalf of others (or of itself):
 * how one runs, and the list of them that an INTERRUPT frame
 * (disco_interrupt) goes through to reach their tasks.
 */
#ifndef DISCO_CORE_RUNNING_H
#define DISCO_CORE_RUNNING_H

#include <stdbool.h>

#include "disco/rpc.h"
#include "disco/task.h"

/* One running call; lives on the call's task stack or in its record. */
typedef struct disco__running {
    struct disco__running *prev, *next;
    disco_task *task;
} disco__running;

/* The calling task starts running a call / is done with it. */
void disco__running_enter(disco__running *r);
void disco__running_leave(disco__running *r);

/*
 * Runs a call of fn (registered as name) on the list args in the calling
 * task, as one of the running calls: an interruption while it runs fails
 * the call with DISCO_EINTERRUPTED whatever fn returns (C cannot tell
 * whether fn handled it). A no-wait function (nowait) runs instead in a
 * no-wait region (sched/nowait.h), not interruptible. With effect_only
 * (remote_do) a failure is printed on stderr, since nobody else hears of
 * it. Returns fn's status, the error in the last-error slot; *result as fn
 * left it (see disco__call_result_free).
 */
int disco__call_invoke(disco_function fn, const char *name, bool nowait,
                       const disco_value *args, bool effect_only, disco_value *result);

/* Frees a call's result, unless it is one of the arguments (the list args)
 * handed back as is, which the argument list frees. */
void disco__call_result_free(disco_value *result, const disco_value *args);

/* Interrupts every running call (see sched/interrupt.h); returns how many.
 * Does not block: callable from transport callbacks. */
int disco__running_interrupt_all(void);

#endif
