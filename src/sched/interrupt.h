/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Cooperative interruption of tasks: what disco_interrupt builds on.
 *
 * An interrupt sets the task's sticky `interrupted` flag (disco_interrupted)
 * and ends the interruptible wait the task is in, if any, with
 * DISCO_EINTERRUPTED; a task that is not waiting gets DISCO_EINTERRUPTED
 * from its next interruptible call that would wait. The interruptible calls
 * and their guarantees are listed in disco/task.h. Nothing is forced: a task
 * that computes without waiting stops only if it polls disco_interrupted.
 */
#ifndef DISCO_SCHED_INTERRUPT_H
#define DISCO_SCHED_INTERRUPT_H

#include "disco/task.h"

/*
 * Interrupts t. Callable from any thread, task or not, and from network
 * callbacks: it takes two short spinlocks (the task's, then the lock of the
 * queue t waits on) and never waits for t. Interrupting a task twice, or one
 * that has finished, is harmless.
 *
 * Lifetime: the caller must hold a reference to t for the whole call, so
 * that t is not freed if it finishes meanwhile: either the task's handle
 * (before disco_task_join or disco_task_detach releases it) or one taken
 * with disco__task_ref while t was known to be alive (for example under
 * the lock of a table that the task leaves before it returns), dropped
 * with disco__task_unref after the call.
 */
void disco__task_interrupt(disco_task *t);

#endif
