/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Test-and-test-and-set spinlock for the scheduler's short critical sections
 * (wait-queue links, timer heap): a few dozen instructions, never a blocking
 * call inside. After a bounded spin it yields the CPU, since on an
 * oversubscribed machine the holder may have been preempted.
 */
#ifndef DISCO_SCHED_SPIN_H
#define DISCO_SCHED_SPIN_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct disco__spin {
    atomic_bool held;
} disco__spin;

static inline void disco__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static inline void disco__spin_lock(disco__spin *s)
{
    unsigned spins = 0;
    /* acquire: pairs with the release store in disco__spin_unlock, so the
     * previous holder's writes are visible to us. */
    while (atomic_exchange_explicit(&s->held, true, memory_order_acquire)) {
        while (atomic_load_explicit(&s->held, memory_order_relaxed)) {
            if (++spins < 128)
                disco__cpu_relax();
            else
                sched_yield();
        }
    }
}

static inline bool disco__spin_trylock(disco__spin *s)
{
    return !atomic_load_explicit(&s->held, memory_order_relaxed) &&
           !atomic_exchange_explicit(&s->held, true, memory_order_acquire);
}

static inline void disco__spin_unlock(disco__spin *s)
{
    /* release: pairs with the acquire exchange in disco__spin_lock. */
    atomic_store_explicit(&s->held, false, memory_order_release);
}

#endif
