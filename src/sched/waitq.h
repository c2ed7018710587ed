/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Waiters and wait queues: how every blocking call in disco sleeps.
 *
 * A waiter stands for one blocked caller: a task (which parks, freeing its
 * thread) or a thread outside the scheduler (which sleeps on a futex). The
 * waker sets `result`, then `signal`, then wakes. Waiters live on the
 * blocked caller's stack; a wait queue links them under a spinlock held for
 * a few instructions. `n` mirrors the queue length so that wakers can skip
 * the lock when nobody waits (see the Dekker pairing in channel.c).
 *
 * Interruptible waits (interrupt.c) also say how to take the waiter back
 * from whoever would wake it, so that an interrupt ends the wait only if no
 * waker has picked the waiter yet: no wake-up is lost.
 */
#ifndef DISCO_SCHED_WAITQ_H
#define DISCO_SCHED_WAITQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disco/task.h"
#include "sched/spin.h"

typedef struct disco__waiter {
    struct disco__waiter *next;
    disco_task *task;        /* NULL: a foreign thread */
    _Atomic uint32_t signal; /* DISCO__WAITING, _WOKEN or _ASLEEP (waitq.c) */
    int result;              /* set by the waker */
    void *buf;               /* owner-defined (channels: the item) */
} disco__waiter;

/* signal: a thread about to sleep on the futex says so (ASLEEP), so that
 * its waker pays for futex_wake only then, not after a spinning wait. */
enum { DISCO__WAITING = 0, DISCO__WOKEN = 1, DISCO__ASLEEP = 2 };

/* Prepares a waiter for the calling task or thread. */
void disco__waiter_init(disco__waiter *w);
/* Blocks until disco__waiter_wake; returns the waker's result. */
int disco__waiter_wait(disco__waiter *w);
/* Wakes w with result. After this w may be gone: do not touch it. */
void disco__waiter_wake(disco__waiter *w, int result);

/*
 * Takes w back from the queue (or timer, or join slot) that holds it: true
 * if it did, so that nobody will wake w; false if a waker already has w and
 * will wake it. An interrupter calls it with the waiting task's wait lock
 * held, so it may only take locks that nobody holds while taking that one
 * (the queue and timer spinlocks).
 */
typedef bool (*disco__cancel_fn)(void *arg, disco__waiter *w);

/*
 * Like disco__waiter_wait, but interruptible (interrupt.c): if the waiting
 * task is interrupted, or already was, and cancel(arg, w) takes w back, the
 * wait ends with DISCO_EINTERRUPTED and the last error says so. A wake-up
 * that wins the race is returned as usual. w must be queued already. Threads
 * outside tasks are never interrupted.
 */
int disco__waiter_wait_intr(disco__waiter *w, disco__cancel_fn cancel, void *arg);

/* True for the codes with which a wait gives up without its event: the
 * task was interrupted, or the wait is in a no-wait function (nowait.h). */
static inline bool disco__wait_refused(int rc)
{
    return rc == DISCO_EINTERRUPTED || rc == DISCO_ENOWAIT;
}

typedef struct disco__waitq {
    disco__spin lock;
    _Atomic size_t n;
    disco__waiter *head, *tail;
} disco__waitq;

void disco__waitq_init(disco__waitq *q);
/* Lock held: append w. */
void disco__waitq_push_locked(disco__waitq *q, disco__waiter *w);
/* Lock held: remove and return the oldest waiter, or NULL. */
disco__waiter *disco__waitq_pop_locked(disco__waitq *q);
/* Lock held: unlink w if it is queued (O(n); for a waiter that found what
 * it waited for before sleeping, or that is interrupted); true if it was. */
bool disco__waitq_remove_locked(disco__waitq *q, disco__waiter *w);
/* A disco__cancel_fn for waiters queued on the waitq arg under its lock. */
bool disco__waitq_cancel(void *q, disco__waiter *w);
/* Lock held: empty the queue and return its waiters as a list. */
disco__waiter *disco__waitq_take_all_locked(disco__waitq *q);
/* Wakes every waiter of a list from disco__waitq_take_all_locked. */
void disco__waiters_wake_list(disco__waiter *w, int result);
/* Wakes the oldest waiter with result, if any; true if one was woken. */
int disco__waitq_wake_one(disco__waitq *q, int result);
/* Wakes every waiter with result. */
void disco__waitq_wake_all(disco__waitq *q, int result);

#endif
