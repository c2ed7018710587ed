/* SPDX-License-Identifier: BSD-3-Clause */
/* Thin wrappers over the Linux futex syscall (process-private). */
#ifndef DISCO_SCHED_FUTEX_H
#define DISCO_SCHED_FUTEX_H

#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleeps while *word == expect, at most timeout_ns (UINT64_MAX: forever).
 * Spurious returns happen; callers re-check their condition. */
static inline void disco__futex_wait(_Atomic uint32_t *word, uint32_t expect,
                                     uint64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns != UINT64_MAX) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000u);
        ts.tv_nsec = (long)(timeout_ns % 1000000000u);
        tsp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expect, tsp, NULL,
            0);
}

/* Wakes up to n threads sleeping on word. */
static inline void disco__futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

#endif
