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

/*
 * Fences. ThreadSanitizer does not model atomic_thread_fence (GCC refuses
 * it under -fsanitize=thread), so TSan builds use equivalents it accepts:
 * a seq_cst read-modify-write on a private word (a full barrier on the
 * hardware TSan runs on, x86-64), and a compiler barrier for the acquire
 * fence (x86-64 never reorders loads with older loads). TSan checks data
 * races, not these liveness pairings, so nothing is lost.
 */
#if defined(__SANITIZE_THREAD__)
extern _Atomic int disco__fence_word;
static inline void disco__fence_seq_cst(void)
{
    atomic_fetch_add_explicit(&disco__fence_word, 0, memory_order_seq_cst);
}
static inline void disco__fence_acquire(void)
{
    __asm__ __volatile__("" ::: "memory");
}
#elif defined(__x86_64__)
/* A locked RMW on the stack is a full barrier and cheaper than the mfence
 * GCC emits for a seq_cst fence (Linux's smp_mb does the same). */
static inline void disco__fence_seq_cst(void)
{
    __asm__ __volatile__("lock; orl $0, -8(%%rsp)" ::: "memory", "cc");
}
static inline void disco__fence_acquire(void)
{
    atomic_thread_fence(memory_order_acquire);
}
#else
static inline void disco__fence_seq_cst(void)
{
    atomic_thread_fence(memory_order_seq_cst);
}
static inline void disco__fence_acquire(void)
{
    atomic_thread_fence(memory_order_acquire);
}
#endif

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
