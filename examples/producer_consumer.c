/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The producer/consumer program of Julia's manual (Distributed Computing,
 * "Remote References and AbstractChannels"): a jobs and a results
 * RemoteChannel on the master, every worker looping take -> work -> put.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "disco.h"

/* Julia's do_work(jobs, results), started on each worker with remote_do. */
static int do_work(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n != 2)
        return disco_throw(DISCO_EINVAL, "do_work(jobs, results)");
    disco_channel *jobs = disco_channel_from_ref(&args[0]);
    disco_channel *results = disco_channel_from_ref(&args[1]);
    unsigned seed = (unsigned)getpid();
    disco_value job;
    while (jobs && results && disco_take(jobs, &job) == 0) { /* until closed */
        double exec_time = (double)rand_r(&seed) / RAND_MAX * 0.05;
        disco_sleep(exec_time);
        disco_value r[3] = {job, disco_f64(exec_time), disco_i64(disco_myid())};
        disco_value tuple = disco_list(r, 3);
        disco_put(results, &tuple);
    }
    disco_channel_free(jobs);
    disco_channel_free(results);
    return 0;
}
DISCO_FUNCTION(do_work)

/* Julia's make_jobs(12), run as a local task. */
static int make_jobs(void *arg, void **unused)
{
    (void)unused;
    disco_channel *jobs = arg;
    for (int64_t i = 1; i <= 12; i++) {
        disco_value job = disco_i64(i);
        disco_put(jobs, &job);
    }
    return 0;
}

int main(int argc, char **argv)
{
    disco_init(&argc, &argv); /* a worker never returns from here */
    const int n = 12;
    if (disco_addprocs(4, NULL, NULL) != 4) {
        fprintf(stderr, "addprocs: %s\n", disco_error_message(disco_last_error()));
        return 1;
    }
    /* const jobs = RemoteChannel(()->Channel{Int}(32)) on this process. */
    disco_channel *jobs = disco_remote_channel_new(disco_myid(), 32);
    disco_channel *results = disco_remote_channel_new(disco_myid(), 32);
    disco_task *producer = disco_async(make_jobs, jobs);
    int pids[16], nw = disco_workers(pids, 16);
    disco_value refs[2] = {disco_channel_ref(jobs), disco_channel_ref(results)};
    for (int i = 0; i < nw; i++)
        disco_remote_do(do_work, pids[i], refs, 2);
    int done = 0;
    while (done < n) {
        disco_value r;
        if (disco_take(results, &r) != 0)
            break;
        printf("%lld finished in %.2f seconds on worker %lld\n",
               (long long)r.list.items[0].i, r.list.items[1].f, (long long)r.list.items[2].i);
        disco_value_free(&r);
        done++;
    }
    disco_task_join(producer, NULL);
    disco_close(jobs); /* the workers' loops end */
    printf("%d jobs done on %d workers\n", done, nw);
    disco_channel_free(jobs);
    disco_channel_free(results);
    return disco_finalize() == 0 && done == n ? 0 : 1;
}
