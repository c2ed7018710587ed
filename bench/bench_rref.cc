// SPDX-License-Identifier: BSD-3-Clause
// RemoteChannel throughput: a producer on one worker puts 8-byte items and a
// consumer on another takes them, through a channel stored on a third worker
// and through one stored on the consumer; next to the local channel (two
// tasks of one process, disco_value items) in the same run. One iteration is
// a batch of kBatch items. The binary is also the worker program.
#include <benchmark/benchmark.h>

#include <cstring>

#include "disco.h"

namespace {

constexpr int64_t kBatch = 1000;
int w[3]; // producer, consumer, third process

int produce(const disco_value *args, size_t n, disco_value *result)
{
    (void)n, (void)result;
    disco_channel *ch = disco_channel_from_ref(&args[0]);
    int rc = ch ? 0 : disco_error_code(disco_last_error());
    for (int64_t i = 0; i < args[1].i && !rc; i++) {
        disco_value v = disco_i64(i);
        rc = disco_put(ch, &v);
    }
    disco_channel_free(ch);
    return rc;
}

int consume(const disco_value *args, size_t n, disco_value *result)
{
    (void)n, (void)result;
    disco_channel *ch = disco_channel_from_ref(&args[0]);
    int rc = ch ? 0 : disco_error_code(disco_last_error());
    for (int64_t i = 0; i < args[1].i && !rc; i++) {
        disco_value v;
        if ((rc = disco_take(ch, &v)) == 0)
            disco_value_free(&v);
    }
    disco_channel_free(ch);
    return rc;
}

void through(benchmark::State &st, int owner)
{
    disco_channel *ch = disco_remote_channel_new(owner, 64);
    if (!ch) {
        st.SkipWithError("cannot make the channel");
        return;
    }
    disco_value args[2] = {disco_channel_ref(ch), disco_i64(kBatch)};
    for (auto _ : st) {
        disco_future *p = disco_remotecall(produce, w[0], args, 2);
        int rc = disco_remotecall_fetch(consume, w[1], args, 2, nullptr);
        if (disco_future_wait(p) != 0 || rc != 0) {
            st.SkipWithError("a batch failed");
            disco_future_release(p);
            break;
        }
        disco_future_release(p);
    }
    disco_channel_free(ch);
    st.SetItemsProcessed(st.iterations() * kBatch);
}

void BM_remote_channel_third_owner(benchmark::State &st) { through(st, w[2]); }
void BM_remote_channel_consumer_owns(benchmark::State &st) { through(st, w[1]); }

int local_producer(void *arg, void **unused)
{
    (void)unused;
    for (int64_t i = 0; i < kBatch; i++) {
        disco_value v = disco_i64(i);
        disco_put(static_cast<disco_channel *>(arg), &v);
    }
    return 0;
}

void BM_local_channel(benchmark::State &st)
{
    disco_channel *ch = disco_channel_new(sizeof(disco_value), 64);
    for (auto _ : st) {
        disco_task *t = disco_async(local_producer, ch);
        for (int64_t i = 0; i < kBatch; i++) {
            disco_value v;
            disco_take(ch, &v);
        }
        disco_task_join(t, nullptr);
    }
    disco_channel_free(ch);
    st.SetItemsProcessed(st.iterations() * kBatch);
}

} // namespace

DISCO_FUNCTION(produce)
DISCO_FUNCTION(consume)

BENCHMARK(BM_remote_channel_third_owner)->UseRealTime();
BENCHMARK(BM_remote_channel_consumer_owns)->UseRealTime();
BENCHMARK(BM_local_channel)->UseRealTime();

int main(int argc, char **argv)
{
    disco_init(&argc, &argv); // a worker never returns from here
    bool listing = false;
    for (int i = 1; i < argc; i++)
        listing |= std::strstr(argv[i], "list_tests") != nullptr;
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    if (!listing && disco_addprocs(3, nullptr, w) != 3) {
        fprintf(stderr, "bench_rref: addprocs failed\n");
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return listing ? 0 : disco_finalize();
}
