/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Timers: a binary min-heap of deadlines under a spinlock, serviced by the
 * scheduler threads when they look for work and bounding how long an idle
 * worker sleeps. The earliest deadline is mirrored in an atomic so the
 * scheduling loop pays one relaxed load when no timer is pending.
 */
#include <stdlib.h>

#include "base/clock.h"
#include "sched/sched.h"

typedef struct {
    uint64_t deadline;
    void (*cb)(void *);
    void *arg;
} timer_entry;

static struct {
    disco__spin lock;
    timer_entry *heap;
    size_t n, cap;
    _Atomic uint64_t next;
} T = {.next = UINT64_MAX};

static void swap(size_t i, size_t j)
{
    timer_entry tmp = T.heap[i];
    T.heap[i] = T.heap[j];
    T.heap[j] = tmp;
}

static void sift_up(size_t i)
{
    while (i && T.heap[(i - 1) / 2].deadline > T.heap[i].deadline) {
        swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void sift_down(size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < T.n && T.heap[l].deadline < T.heap[m].deadline)
            m = l;
        if (r < T.n && T.heap[r].deadline < T.heap[m].deadline)
            m = r;
        if (m == i)
            return;
        swap(i, m);
        i = m;
    }
}

static void publish_next(void)
{
    atomic_store_explicit(&T.next, T.n ? T.heap[0].deadline : UINT64_MAX,
                          memory_order_relaxed);
}

int disco__timer_add(uint64_t deadline, void (*cb)(void *), void *arg)
{
    disco__spin_lock(&T.lock);
    if (T.n == T.cap) {
        size_t cap = T.cap ? 2 * T.cap : 64;
        timer_entry *h = realloc(T.heap, cap * sizeof(*h));
        if (!h) {
            disco__spin_unlock(&T.lock);
            return DISCO_ENOMEM;
        }
        T.heap = h;
        T.cap = cap;
    }
    T.heap[T.n] = (timer_entry){deadline, cb, arg};
    sift_up(T.n++);
    publish_next();
    disco__spin_unlock(&T.lock);
    return 0;
}

bool disco__timer_cancel(void (*cb)(void *), void *arg)
{
    disco__spin_lock(&T.lock);
    size_t i = 0;
    while (i < T.n && (T.heap[i].cb != cb || T.heap[i].arg != arg))
        i++;
    bool found = i < T.n;
    if (found) {
        T.heap[i] = T.heap[--T.n];
        if (i < T.n) { /* the last entry took its place: restore order */
            sift_up(i);
            sift_down(i);
        }
        publish_next();
    }
    disco__spin_unlock(&T.lock);
    return found;
}

uint64_t disco__timer_next(void)
{
    return atomic_load_explicit(&T.next, memory_order_relaxed);
}

unsigned disco__timer_run_due(uint64_t now)
{
    unsigned ran = 0;
    for (;;) {
        /* Trylock: another worker already servicing timers is enough. */
        if (!disco__spin_trylock(&T.lock))
            return ran;
        if (!T.n || T.heap[0].deadline > now) {
            disco__spin_unlock(&T.lock);
            return ran;
        }
        timer_entry e = T.heap[0];
        T.heap[0] = T.heap[--T.n];
        sift_down(0);
        publish_next();
        disco__spin_unlock(&T.lock);
        e.cb(e.arg); /* outside the lock: it may add timers */
        ran++;
    }
}

void disco__timer_fini(void)
{
    disco__spin_lock(&T.lock);
    free(T.heap);
    T.heap = NULL;
    T.n = T.cap = 0;
    publish_next();
    disco__spin_unlock(&T.lock);
}
