// SPDX-License-Identifier: BSD-3-Clause
// pmap and CachingPool on 2 local workers, next to baselines measured in
// the same run:
//  - items/s of a no-op function over 1 M items, one item per message,
//    with automatic batching, and with Julia's cap of 100 items a batch
//    (BM_pmap_noop/1, /0, /100); baselines: the same no-op through plain
//    disco_remotecall_fetch in a loop, and through remotecall with 64 calls
//    in flight (the most a caller gets from one message per item);
//  - a closure capturing 64 MiB used by 1000 calls through a CachingPool
//    (bytes_per_worker: captured bytes sent to each worker); baseline: a
//    local memcpy of the 64 MiB.
// The binary is also the worker program.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "disco.h"

namespace {

int noop(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_nil();
    return 0;
}

// Closure body: the captured bytes, then an index; returns that byte.
int byte_at(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 2 || args[0].type != DISCO_BYTES || args[1].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "byte_at(bytes, index)");
    *result = disco_i64(static_cast<const uint8_t *>(
        args[0].bytes.ptr)[static_cast<size_t>(args[1].i) % args[0].bytes.len]);
    return 0;
}

constexpr size_t kItems = 1000000;
constexpr size_t kPayload = 64u << 20;
constexpr int kCalls = 1000;
int workers[2];

void skip_with_last_error(benchmark::State &st)
{
    char msg[256] = "failed";
    if (disco_last_error())
        disco_error_format(disco_last_error(), msg, sizeof(msg));
    st.SkipWithError(msg);
}

// range(0): batch size, 0 for DISCO_BATCH_AUTO.
void BM_pmap_noop(benchmark::State &st)
{
    std::vector<int64_t> xs(kItems);
    for (size_t i = 0; i < kItems; i++)
        xs[i] = static_cast<int64_t>(i);
    std::vector<disco_value> r(kItems);
    disco_pool *pool = disco_worker_pool_new(workers, 2);
    disco_value coll = disco_array(DISCO_ELEM_I64, xs.data(), kItems);
    disco_pmap_opts o{};
    o.pool = pool;
    o.batch_size = st.range(0) ? static_cast<size_t>(st.range(0)) : DISCO_BATCH_AUTO;
    for (auto _ : st) {
        if (disco_pmap(noop, &coll, 1, r.data(), &o) != 0) {
            skip_with_last_error(st);
            break;
        }
        for (disco_value &v : r)
            disco_value_free(&v);
    }
    disco_pool_free(pool);
    st.SetItemsProcessed(static_cast<int64_t>(st.iterations() * kItems));
}

// Baseline: one call at a time, alternating workers.
void BM_remotecall_fetch_noop(benchmark::State &st)
{
    disco_value x = disco_i64(1), r;
    size_t k = 0;
    for (auto _ : st) {
        if (disco_remotecall_fetch(noop, workers[k++ & 1], &x, 1, &r) != 0) {
            skip_with_last_error(st);
            break;
        }
    }
    st.SetItemsProcessed(static_cast<int64_t>(st.iterations()));
}

// Baseline: 64 calls in flight, alternating workers (what pmap's
// unbatched pipelining can hope for).
void BM_remotecall_inflight_noop(benchmark::State &st)
{
    constexpr size_t window = 64;
    std::vector<disco_future *> ring(window, nullptr);
    disco_value x = disco_i64(1);
    size_t head = 0;
    for (auto _ : st) {
        disco_future *&slot = ring[head];
        if (slot) {
            if (disco_future_wait(slot) != 0) {
                skip_with_last_error(st);
                break;
            }
            disco_future_release(slot);
        }
        slot = disco_remotecall(noop, workers[head & 1], &x, 1);
        head = (head + 1) % window;
    }
    for (disco_future *&f : ring)
        if (f) {
            disco_future_wait(f);
            disco_future_release(f);
        }
    st.SetItemsProcessed(static_cast<int64_t>(st.iterations()));
}

// 1000 calls of a closure over 64 MiB through a new CachingPool per
// iteration: the payload crosses once per worker.
void BM_caching_pool_64MiB(benchmark::State &st)
{
    std::vector<uint8_t> payload(kPayload, 0x5a);
    disco_value cap = disco_bytes(payload.data(), payload.size());
    disco_closure *c = disco_closure_new(byte_at, &cap, 1);
    uint64_t sent = 0;
    for (auto _ : st) {
        disco_pool *pool = disco_caching_pool_new(workers, 2);
        std::vector<disco_future *> f(kCalls);
        for (int i = 0; i < kCalls; i++) {
            disco_value x = disco_i64(i);
            f[static_cast<size_t>(i)] = disco_closure_remotecall(pool, c, &x, 1);
        }
        for (disco_future *fi : f) {
            if (!fi || disco_future_wait(fi) != 0)
                skip_with_last_error(st);
            disco_future_release(fi);
        }
        for (int w : workers) {
            disco_pool_stats s;
            disco_pool_stats_of(pool, w, &s);
            sent += s.payload_bytes;
        }
        disco_pool_free(pool);
    }
    disco_closure_free(c);
    st.counters["bytes_per_worker"] =
        static_cast<double>(sent) / 2.0 / static_cast<double>(st.iterations());
    st.counters["calls"] = kCalls;
}

// Baseline: copying the payload once, locally.
void BM_memcpy_64MiB(benchmark::State &st)
{
    std::vector<uint8_t> src(kPayload, 0x5a), dst(kPayload);
    for (auto _ : st) {
        std::memcpy(dst.data(), src.data(), kPayload);
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * kPayload));
}

} // namespace

DISCO_FUNCTION(noop)
DISCO_FUNCTION(byte_at)

BENCHMARK(BM_pmap_noop)
    ->Arg(1)
    ->Arg(0)
    ->Arg(100)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_remotecall_fetch_noop)->UseRealTime();
BENCHMARK(BM_remotecall_inflight_noop)->UseRealTime();
BENCHMARK(BM_caching_pool_64MiB)->Iterations(3)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_memcpy_64MiB)->UseRealTime()->Unit(benchmark::kMillisecond);

int main(int argc, char **argv)
{
    // The 64 MiB payload and its call's encoding exceed the default frame
    // limit (64 MiB); workers inherit the master's.
    setenv("DISCO_MAX_FRAME", "80M", 0);
    disco_init(&argc, &argv); // a worker never returns from here
    // --benchmark_list_tests must not start workers (Initialize eats it).
    bool listing = false;
    for (int i = 1; i < argc; i++)
        listing |= std::strstr(argv[i], "list_tests") != nullptr;
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    if (!listing && disco_addprocs(2, nullptr, workers) != 2) {
        fprintf(stderr, "bench_pmap: addprocs failed\n");
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return listing ? 0 : disco_finalize();
}
