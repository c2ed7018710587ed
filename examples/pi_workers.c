/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Distributed demo: 4 local worker processes estimate pi by Monte Carlo
 * (remotecall + fetch on each, in parallel), then a latency summary of
 * remotecall_fetch round trips. The same program is the worker: disco_init
 * turns the launched copies into workers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "disco.h"

/* darts(n, seed) -> how many of n random points fall in the unit circle */
static int darts(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 2 || args[0].type != DISCO_I64 || args[1].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "darts(n, seed) takes two integers");
    uint64_t s = (uint64_t)args[1].i * 0x9e3779b97f4a7c15ull + 1, hits = 0;
    for (int64_t i = 0; i < args[0].i; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double x = (double)(s >> 11) / 9007199254740992.0;
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double y = (double)(s >> 11) / 9007199254740992.0;
        hits += x * x + y * y <= 1.0;
    }
    *result = disco_i64((int64_t)hits);
    return 0;
}
DISCO_FUNCTION(darts)

static int ping(const disco_value *args, size_t n, disco_value *result)
{
    *result = n ? args[0] : disco_nil();
    return 0;
}
DISCO_FUNCTION(ping)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    disco_init(&argc, &argv); /* a worker never returns from here */
    enum { NW = 4, ROUNDS = 2000 };
    long per_worker = argc > 1 ? atol(argv[1]) : 20000000;
    int pids[NW];
    double t0 = now();
    if (disco_addprocs(NW, NULL, pids) != NW) {
        char msg[512];
        disco_error_format(disco_last_error(), msg, sizeof(msg));
        fprintf(stderr, "addprocs failed: %s\n", msg);
        return 1;
    }
    printf("disco distributed demo: %d workers (pids %d..%d) started in %.0f ms\n", NW,
           pids[0], pids[NW - 1], (now() - t0) * 1e3);

    t0 = now();
    disco_future *f[NW];
    for (int i = 0; i < NW; i++) {
        disco_value args[2] = {disco_i64(per_worker), disco_i64(pids[i])};
        f[i] = disco_remotecall(darts, pids[i], args, 2);
    }
    long hits = 0;
    for (int i = 0; i < NW; i++) {
        const disco_value *v;
        if (!f[i] || disco_future_fetch(f[i], &v) != 0)
            return 1;
        hits += v->i;
        disco_future_release(f[i]);
    }
    double secs = now() - t0;
    printf("  pi ~ %.6f from %ld darts in %.2f s (%.0f M darts/s over %d workers)\n",
           4.0 * (double)hits / ((double)per_worker * NW), per_worker * NW, secs,
           (double)per_worker * NW / secs / 1e6, NW);

    static double rtt[ROUNDS];
    disco_value x = disco_i64(42), r;
    for (int i = 0; i < ROUNDS; i++) {
        double s = now();
        if (disco_remotecall_fetch(ping, pids[i % NW], &x, 1, &r) != 0)
            return 1;
        rtt[i] = (now() - s) * 1e6;
    }
    qsort(rtt, ROUNDS, sizeof(rtt[0]), cmp);
    printf("  remotecall_fetch round trip (8 B argument, TCP loopback, %d calls): "
           "p50 %.1f us, p99 %.1f us\n", ROUNDS, rtt[ROUNDS / 2], rtt[ROUNDS * 99 / 100]);
    return disco_finalize() == 0 ? 0 : 1;
}
