/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * No-wait regions: while a no-wait function runs (disco_register_nowait),
 * its thread is reading the network for everybody, perhaps inside another
 * task's call or the scheduler's own loop. Nothing it does may wait: a wait
 * would stall every message behind it, or park a task that is not its own.
 *
 * So the waits refuse. An interruptible wait (disco/task.h lists them)
 * takes its waiter back, as an interrupt does, and fails with
 * DISCO_ENOWAIT; a wake-up that already has the waiter stands, as it does
 * against an interrupt, and the wait returns it (it is on its way: no
 * wait). The waits that cannot fail (disco_mutex_lock of a held mutex,
 * disco_sync_end with members still running) end the process with a
 * message naming the function: there is no error to return, and going on
 * could only deadlock.
 */
#ifndef DISCO_SCHED_NOWAIT_H
#define DISCO_SCHED_NOWAIT_H

#include <stdbool.h>

#include "base/compiler.h"

/* The no-wait function running on this thread, or NULL. */
extern DISCO__TLS const char *disco__nowait_fn;

/* Enters the no-wait region of function name; returns what to give back
 * to disco__nowait_leave (regions nest). */
static inline const char *disco__nowait_enter(const char *name)
{
    const char *outer = disco__nowait_fn;
    disco__nowait_fn = name ? name : "?";
    return outer;
}

static inline void disco__nowait_leave(const char *outer) { disco__nowait_fn = outer; }

/* Fails a wait in a no-wait region: DISCO_ENOWAIT, the last error naming
 * the function and what waited. */
int disco__nowait_refuse(const char *what);

/* A wait that cannot fail was asked for in a no-wait region: says so on
 * stderr and aborts. */
_Noreturn void disco__nowait_abort(const char *what);

#endif
