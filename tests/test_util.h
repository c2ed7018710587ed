/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Helpers shared by the cmocka unit tests.
 *
 * cmocka's assertions longjmp to the test that is running, so they may only
 * be used on the thread running the test: code in tasks or helper threads
 * records what it saw and the test asserts afterwards.
 */
#ifndef DISCO_TEST_UTIL_H
#define DISCO_TEST_UTIL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#include <cmocka.h>

/* Scales loop counts: DISCO_TEST_SCALE=0.1 for slow (sanitized) builds. */
static inline long test_scaled(long n)
{
    const char *s = getenv("DISCO_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    long v = (long)((double)n * (f > 0 ? f : 1.0));
    return v > 0 ? v : 1;
}

/*
 * Runs this test binary again as a child with argv[1] = mode, capturing its
 * stderr into buf (NUL-terminated). Returns the raw wait status. Used for
 * behaviour that must kill a process (a stack overflow) or that prints on
 * stderr.
 */
int test_run_self(const char *self, const char *mode, char *buf, size_t len);

/* The same without the reaping: returns the child's pid (-1 on failure)
 * once its stderr has closed, for the caller to waitpid. */
pid_t test_spawn_self(const char *self, const char *mode, char *buf, size_t len);

/* Seconds on the wall clock, the one file times are on. */
double test_wall_s(void);

/* Whether /dev/shm holds a file named after process pid, as libfabric's
 * shm provider names a process's region ("<pid>:<endpoint>:<domain>"),
 * written at `since` (test_wall_s, taken before pid started) or later: one
 * left by an earlier process that had the same pid does not count. */
bool test_shm_region_left(int pid, double since);

#endif
