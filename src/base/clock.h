/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef DISCO_BASE_CLOCK_H
#define DISCO_BASE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic time in nanoseconds (vDSO: no syscall). */
static inline uint64_t disco__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Seconds (>= 0, finite) to nanoseconds, saturating. */
static inline uint64_t disco__sec_to_ns(double s)
{
    return s >= 1.8e10 ? UINT64_MAX / 2 : (uint64_t)(s * 1e9);
}

#endif
