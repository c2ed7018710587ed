/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Demo of disco's task runtime: a producer/consumer pipeline over local
 * channels, the same shape as the jobs/results example of Julia's manual,
 * inside one process.
 *
 *   producer task --jobs--> worker tasks --results--> main thread
 *
 * Then a @sync scope whose tasks fail, to show the composite error.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "disco.h"

typedef struct {
    long lo, hi;
} range;

typedef struct {
    disco_channel *jobs, *results;
    long n, chunk;
} pipeline;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool is_prime(long x)
{
    if (x < 2)
        return false;
    for (long d = 2; d * d <= x; d++)
        if (x % d == 0)
            return false;
    return true;
}

static long count_primes(long lo, long hi)
{
    long c = 0;
    for (long x = lo; x < hi; x++)
        c += is_prime(x);
    return c;
}

static int producer(void *arg, void **result)
{
    (void)result;
    pipeline *p = arg;
    for (long lo = 0; lo < p->n; lo += p->chunk) {
        range r = {lo, lo + p->chunk < p->n ? lo + p->chunk : p->n};
        int rc = disco_put(p->jobs, &r); /* parks while the channel is full */
        if (rc)
            return rc;
    }
    return disco_close(p->jobs); /* workers drain what is left, then stop */
}

static int worker(void *arg, void **result)
{
    (void)result;
    pipeline *p = arg;
    range r;
    DISCO_CHANNEL_FOREACH(p->jobs, &r) {
        long c = count_primes(r.lo, r.hi);
        disco_put(p->results, &c);
    }
    return 0;
}

static int flaky(void *arg, void **result)
{
    (void)result;
    long i = (long)(intptr_t)arg;
    disco_sleep(0.01 * (double)i);
    if (i % 2)
        return disco_error_set(DISCO_EIO, "job %ld: sensor offline", i);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    pipeline p = {.n = n, .chunk = 5000};
    unsigned threads = disco_sched_nthreads();
    unsigned nworkers = 4 * threads;
    p.jobs = disco_channel_new(sizeof(range), 64);
    p.results = disco_channel_new(sizeof(long), DISCO_CHANNEL_UNBOUNDED);
    if (!p.jobs || !p.results)
        return 1;

    printf("disco task demo: counting primes below %ld\n", n);
    printf("  scheduler threads: %u, worker tasks: %u, jobs channel capacity 64\n",
           threads, nworkers);

    double t0 = now();
    disco_sync scope;
    disco_sync_begin(&scope); /* @sync */
    disco_task_detach(disco_async(producer, &p));
    for (unsigned i = 0; i < nworkers; i++)
        disco_task_detach(disco_async(worker, &p));
    long total = 0, chunks = (n + p.chunk - 1) / p.chunk;
    for (long i = 0; i < chunks; i++) { /* main thread blocks on take */
        long c;
        if (disco_take(p.results, &c) != 0)
            return 1;
        total += c;
    }
    if (disco_sync_end(&scope) != 0)
        return 1;
    double parallel = now() - t0;

    t0 = now();
    long check = count_primes(0, n);
    double serial = now() - t0;
    printf("  primes: %ld (serial check: %ld) %s\n", total, check,
           total == check ? "OK" : "MISMATCH");
    printf("  %ld jobs in %.3f s on tasks, %.3f s serially: speed-up %.2fx\n",
           chunks, parallel, serial, serial / parallel);

    printf("\n@sync over tasks that fail:\n");
    disco_sync_begin(&scope);
    for (long i = 0; i < 4; i++)
        disco_task_detach(disco_async(flaky, (void *)(intptr_t)i));
    int rc = disco_sync_end(&scope);
    char buf[512];
    disco_error_format(disco_last_error(), buf, sizeof(buf));
    printf("  disco_sync_end -> %s\n  %s\n", disco_status_name(rc), buf);

    disco_channel_free(p.jobs);
    disco_channel_free(p.results);
    disco_sched_stop();
    return total == check && rc == DISCO_ECOMPOSITE ? 0 : 1;
}
