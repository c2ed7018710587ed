/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The list of running calls. It costs every call two uncontended spinlock
 * round trips (a few tens of ns against a call's microseconds): the price of
 * finding the tasks to interrupt, since the scheduler keeps no list of its
 * tasks. A task leaves the list (under the lock) before it can finish, so
 * the interrupter, which holds the lock, never touches a freed task.
 */
#include <stdio.h>
#include <string.h>

#include "core/running.h"
#include "core/runtime.h"
#include "sched/interrupt.h"
#include "sched/nowait.h"
#include "sched/spin.h"

static disco__spin lock;
static disco__running *head;

void disco__running_enter(disco__running *r)
{
    r->task = disco_current_task();
    r->prev = NULL;
    disco__spin_lock(&lock);
    r->next = head;
    if (head)
        head->prev = r;
    head = r;
    disco__spin_unlock(&lock);
}

void disco__running_leave(disco__running *r)
{
    disco__spin_lock(&lock);
    if (r->prev)
        r->prev->next = r->next;
    else
        head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    disco__spin_unlock(&lock);
}

int disco__running_interrupt_all(void)
{
    int n = 0;
    disco__spin_lock(&lock);
    for (disco__running *r = head; r; r = r->next, n++)
        disco__task_interrupt(r->task);
    disco__spin_unlock(&lock);
    return n;
}

int disco__call_invoke(disco_function fn, const char *name, bool nowait,
                       const disco_value *args, bool effect_only, disco_value *result)
{
    *result = disco_nil();
    disco_error_clear();
    int rc;
    if (nowait) {
        const char *outer = disco__nowait_enter(name);
        rc = fn(args->list.items, args->list.n, result);
        disco__nowait_leave(outer);
    } else {
        disco__running running;
        disco__running_enter(&running);
        rc = fn(args->list.items, args->list.n, result);
        disco__running_leave(&running);
        if (disco_interrupted())
            rc = disco_error_set(DISCO_EINTERRUPTED, "call of '%s' interrupted on worker %d",
                                 name, disco__rt.myid);
    }
    if (rc && effect_only) {
        char msg[512] = "";
        if (disco_last_error())
            disco_error_format(disco_last_error(), msg, sizeof(msg));
        fprintf(stderr, "disco: remote_do of '%s' failed on worker %d: %s\n", name,
                disco__rt.myid, msg);
    }
    return rc;
}

void disco__call_result_free(disco_value *result, const disco_value *args)
{
    for (size_t i = 0; i < args->list.n; i++)
        if (!memcmp(result, &args->list.items[i], sizeof(*result)))
            return;
    disco_value_free(result);
}
