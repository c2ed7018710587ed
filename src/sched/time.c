/* SPDX-License-Identifier: BSD-3-Clause */
/* disco_sleep and disco_timedwait. */
#include <math.h>
#include <time.h>

#include "base/clock.h"
#include "sched/nowait.h"
#include "sched/sched.h"

static void wake_sleeper(void *arg) { disco__waiter_wake(arg, 0); }

static bool cancel_sleep(void *unused, disco__waiter *w)
{
    (void)unused;
    return disco__timer_cancel(wake_sleeper, w);
}

int disco_sleep(double seconds)
{
    if (!(seconds >= 0))
        return disco_error_set(DISCO_EINVAL, "disco_sleep: bad duration %g",
                               seconds);
    if (disco__nowait_fn)
        return disco__nowait_refuse("disco_sleep");
    uint64_t ns = disco__sec_to_ns(seconds);
    if (disco_current_task()) {
        disco__waiter w;
        disco__waiter_init(&w);
        if (disco__timer_add(disco__now_ns() + ns, wake_sleeper, &w) != 0)
            return disco_error_set(DISCO_ENOMEM, "disco_sleep: no memory");
        return disco__waiter_wait_intr(&w, cancel_sleep, NULL);
    }
    if (disco__held_bits) /* what this thread held back goes before it sleeps */
        disco__held_flush_now();
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0)
        ; /* EINTR: sleep the rest */
    return 0;
}

int disco_timedwait(bool (*test)(void *), void *arg, double seconds,
                    double pollint)
{
    if (!test || !(seconds >= 0) || !(pollint > 0))
        return disco_error_set(DISCO_EINVAL,
                               "disco_timedwait: bad timeout %g or pollint %g",
                               seconds, pollint);
    uint64_t deadline = disco__now_ns() + disco__sec_to_ns(seconds);
    for (;;) {
        if (test(arg))
            return 0;
        uint64_t now = disco__now_ns();
        if (now >= deadline)
            return disco_error_set(DISCO_ETIMEDOUT,
                                   "timedwait: condition not met within %g s",
                                   seconds);
        double left = (double)(deadline - now) / 1e9;
        int rc = disco_sleep(fmin(pollint, left));
        if (rc)
            return rc;
    }
}
