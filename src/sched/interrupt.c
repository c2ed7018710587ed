/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Cooperative interruption (see interrupt.h).
 *
 * A task entering an interruptible wait first queues its waiter where its
 * waker will find it, then records it in the task under wait_lock, with
 * how to take it back (a disco__cancel_fn). The interrupter sets the flag,
 * then, under the same lock, takes the recorded waiter back from its queue.
 * If that works, nobody else can wake the waiter any more, and the
 * interrupter wakes it with DISCO_EINTERRUPTED. If a waker got there first,
 * its wake-up stands (the item is taken, the event passed): no wake-up is
 * ever lost, and the sticky flag fails the task's next wait instead.
 *
 * The flag is set before the interrupter takes the lock and read by the
 * task under it, so an interrupt that comes before the record is seen by
 * the task, which then takes its waiter back itself.
 *
 * After waking, the task clears the record under the lock: the waiter lives
 * on its stack and the queue may be freed once the call returns, so an
 * interrupter must be done with both by then. These two lock round trips
 * are only on the way to parking, never on a call that need not wait.
 */
#include "sched/interrupt.h"
#include "sched/nowait.h"
#include "sched/sched.h"

void disco__task_interrupt(disco_task *t)
{
    /* relaxed: the unlock below publishes it to the task's next wait, which
     * reads it under the lock; disco_interrupted polls the flag alone. */
    atomic_store_explicit(&t->interrupted, true, memory_order_relaxed);
    disco__spin_lock(&t->wait_lock);
    disco__waiter *w = t->wait;
    if (w && !t->wait_cancel(t->wait_arg, w))
        w = NULL; /* a waker has it: its wake-up stands */
    t->wait = NULL;
    disco__spin_unlock(&t->wait_lock);
    /* Taken back from its queue, w can be woken by nobody else: the task
     * stays parked, and w on its stack, until this wake. */
    if (w)
        disco__waiter_wake(w, DISCO_EINTERRUPTED);
}

static int interrupted_error(const disco_task *t)
{
    return disco_error_set(DISCO_EINTERRUPTED, "task %llu interrupted",
                           (unsigned long long)t->id);
}

/* A wait in a no-wait region (nowait.h): refused as an interrupt would be,
 * unless a waker already has w and is about to set its signal. */
static int nowait_wait(disco__waiter *w, disco__cancel_fn cancel, void *arg)
{
    if (cancel(arg, w))
        return disco__nowait_refuse("what it waited for was not there yet");
    /* acquire: pairs with the release in disco__waiter_wake. The waker
     * may be preempted between taking w and waking it: yield now and then. */
    for (unsigned i = 1; !atomic_load_explicit(&w->signal, memory_order_acquire); i++) {
        if (i % 128)
            disco__cpu_relax();
        else
            sched_yield();
    }
    return w->result;
}

int disco__waiter_wait_intr(disco__waiter *w, disco__cancel_fn cancel, void *arg)
{
    if (disco__nowait_fn)
        return nowait_wait(w, cancel, arg);
    disco_task *t = w->task;
    if (!t)
        return disco__waiter_wait(w); /* threads are never interrupted */
    disco__spin_lock(&t->wait_lock);
    /* relaxed: the interrupter sets it before taking this lock. */
    bool pending = atomic_load_explicit(&t->interrupted, memory_order_relaxed);
    if (!pending) {
        t->wait = w;
        t->wait_cancel = cancel;
        t->wait_arg = arg;
    }
    disco__spin_unlock(&t->wait_lock);
    if (pending && cancel(arg, w))
        return interrupted_error(t);
    /* Not pending, or a waker already has w: wait for its wake-up. */
    int rc = disco__waiter_wait(w);
    if (!pending) {
        disco__spin_lock(&t->wait_lock);
        t->wait = NULL;
        disco__spin_unlock(&t->wait_lock);
    }
    return rc == DISCO_EINTERRUPTED ? interrupted_error(t) : rc;
}

bool disco_interrupted(void)
{
    disco_task *t = disco_current_task();
    /* A no-wait function runs inside whatever task read the network, if
     * any: that task's interruption is not its own. */
    if (!t || disco__nowait_fn)
        return false;
    /* A loop that polls this without ever waiting may hold the only thread
     * of its process: read the network now and then, or the interrupt
     * would never arrive. */
    static DISCO__TLS unsigned polls;
    if ((++polls & 1023) == 0)
        disco__sched_poll_network();
    /* relaxed: a poll; the flag publishes nothing else. */
    return atomic_load_explicit(&t->interrupted, memory_order_relaxed);
}
