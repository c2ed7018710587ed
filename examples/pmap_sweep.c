/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * pmap demo: a parameter sweep on 4 local worker processes. For each
 * damping ratio of a grid, a worker simulates a damped oscillator and
 * returns its 2% settling time. pmap batches the items automatically;
 * two parameters of the grid are invalid (on_error, on the caller, turns
 * their errors into NaN), and every worker fails its first try at every
 * fifth parameter, as a node with a cold cache might (retries with
 * back-off take those items to a worker anew). The same program is the
 * worker: disco_init turns the launched copies into workers.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "disco.h"

enum { NPARAMS = 64 };

/* Parameters this worker has tried once (the simulated cold cache). */
static atomic_bool seen[NPARAMS];

/* settle(index, zeta) -> seconds until x(t) stays within 2% of rest, for
 * x'' + 2 zeta w x' + w^2 x = 0, x(0) = 1, w = 2 pi (semi-implicit Euler). */
static int settle(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 2 || args[0].type != DISCO_I64 || args[1].type != DISCO_F64)
        return disco_throw(DISCO_EINVAL, "settle(index, zeta)");
    int64_t i = args[0].i;
    double zeta = args[1].f;
    if (!(zeta >= 0))
        return disco_throw(DISCO_EINVAL, "damping ratio %g is negative", zeta);
    if (i % 5 == 0 && i < NPARAMS && !atomic_exchange(&seen[i], true))
        return disco_throw(DISCO_EAGAIN, "cold cache for parameter %lld", (long long)i);
    const double w = 2 * M_PI, dt = 1e-4, horizon = 20;
    double x = 1, v = 0, settled = 0;
    for (double t = 0; t < horizon; t += dt) {
        v -= (2 * zeta * w * v + w * w * x) * dt;
        x += v * dt;
        if (fabs(x) > 0.02)
            settled = t + dt; /* last time outside the band */
    }
    *result = disco_f64(settled);
    return 0;
}
DISCO_FUNCTION(settle)

static int invalid_to_nan(void *arg, size_t i, const disco_error *e, disco_value *result)
{
    if (disco_error_code(e) != DISCO_EINVAL)
        return disco_error_code(e); /* rethrow anything else */
    printf("  parameter %zu: %s -> NaN\n", i, disco_error_message(e));
    ++*(int *)arg;
    *result = disco_f64(NAN);
    return 0;
}

/* Invalid input does not get better with retries. */
static bool transient(void *state, const disco_error *e)
{
    (void)state;
    return disco_error_code(e) != DISCO_EINVAL;
}

static void last_progress(void *arg, const disco_pmap_progress *p)
{
    *(disco_pmap_progress *)arg = *p;
}

int main(int argc, char **argv)
{
    disco_init(&argc, &argv); /* a worker never returns from here */
    enum { NW = 4 };
    int pids[NW];
    if (disco_addprocs(NW, NULL, pids) != NW) {
        fprintf(stderr, "addprocs: %s\n", disco_error_message(disco_last_error()));
        return 1;
    }
    int64_t index[NPARAMS];
    double zeta[NPARAMS];
    for (int i = 0; i < NPARAMS; i++) {
        index[i] = i;
        zeta[i] = 0.05 + 0.025 * i;
    }
    zeta[17] = -0.5; /* two bad entries in the grid */
    zeta[42] = -1.0;
    disco_value colls[2] = {disco_array(DISCO_ELEM_I64, index, NPARAMS),
                            disco_array(DISCO_ELEM_F64, zeta, NPARAMS)};
    disco_value t[NPARAMS];
    int invalid = 0;
    /* Up to NW retries (each takes a worker anew: at most NW cold tries),
     * after 10, 20, 40, 80 ms give or take 10%. */
    disco_backoff backoff = {NW, 0.01, 1.0, 2.0, 0.1};
    disco_pmap_progress done = {0};
    disco_pmap_opts o = {
        .batch_size = DISCO_BATCH_AUTO,
        .backoff = &backoff, .retry_check = transient,
        .on_error = invalid_to_nan, .on_error_arg = &invalid,
        .progress = last_progress, .progress_arg = &done,
    };
    int rc = disco_pmap(settle, colls, 2, t, &o);
    if (rc) {
        fprintf(stderr, "pmap: %s\n", disco_error_message(disco_last_error()));
        disco_finalize();
        return 1;
    }
    int best = -1, ok = 0;
    for (int i = 0; i < NPARAMS; i++) {
        if (isnan(t[i].f))
            continue;
        ok++;
        if (best < 0 || t[i].f < t[best].f)
            best = i;
    }
    printf("sweep: %d parameters on %d workers: %d ok, %d invalid, %zu retries, %.2f s\n",
           NPARAMS, NW, ok, invalid, done.retries, done.elapsed);
    printf("fastest settling: zeta = %.3f (%.3f s)\n", zeta[best], t[best].f);
    for (int i = 0; i < NPARAMS; i++)
        disco_value_free(&t[i]);
    return disco_finalize();
}
