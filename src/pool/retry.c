/* SPDX-License-Identifier: BSD-3-Clause */
/* Julia's ExponentialBackOff. */
#include <math.h>
#include <stdlib.h>

#include "base/compiler.h"
#include "disco/pool.h"

int disco_backoff_delays(const disco_backoff *b, double *delays)
{
    if (!b || (b->n && !delays))
        return disco_error_set(DISCO_EINVAL, "disco_backoff_delays: NULL argument");
    if (!(b->first_delay >= 0 && b->max_delay >= 0 && b->factor >= 0 && b->jitter >= 0))
        return disco_error_set(DISCO_EINVAL, "back-off parameters must be non-negative "
                                             "(first %g, max %g, factor %g, jitter %g)",
                               b->first_delay, b->max_delay, b->factor, b->jitter);
    /* The jitter needs no good randomness: a thread-local xorshift seeded
     * from the address of the output. */
    static DISCO__TLS uint64_t s;
    if (!s)
        s = (uintptr_t)delays | 1;
    double d = fmin(b->first_delay, b->max_delay);
    for (size_t i = 0; i < b->n; i++) {
        delays[i] = d;
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double u = (double)(s >> 11) / 9007199254740992.0; /* [0, 1) */
        d = fmin(d * b->factor * (1 - b->jitter + 2 * b->jitter * u), b->max_delay);
    }
    return 0;
}
