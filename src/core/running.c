/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The list of running calls. It costs every call two uncontended spinlock
 * round trips (a few tens of ns against a call's microseconds): the price of
 * finding the tasks to interrupt, since the scheduler keeps no list of its
 * tasks. A task leaves the list (under the lock) before it can finish, so
 * the interrupter, which holds the lock, never touches a freed task.
 */
#include "core/running.h"
#include "sched/interrupt.h"
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
