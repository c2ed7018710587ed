// SPDX-License-Identifier: BSD-3-Clause
// Scheduler and channel benchmarks, each next to its baseline measured in
// the same run: oneTBB task_group (when built with it) for spawn/join, a
// pthread mutex+condvar queue for channel handoff, sched_yield between two
// threads for yield.
//
// Every benchmark reports ns_per_op (wall time per task, item or yield).
// Pin the process (taskset) and compare medians: this machine is noisy.
#include <benchmark/benchmark.h>

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "config.h"
#include "disco.h"

#ifdef HAVE_TBB
#include <tbb/task_group.h>
#endif

namespace {

constexpr long kFlatTasks = 1 << 20; // "1 M" tasks
constexpr int kTreeDepth = 20;       // 1 M leaves

void set_rate(benchmark::State &st, long ops_per_iter)
{
    st.SetItemsProcessed(st.iterations() * ops_per_iter);
    st.counters["ns_per_op"] = benchmark::Counter(
        static_cast<double>(st.iterations() * ops_per_iter) / 1e9,
        benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Runs fn(arg) as a task and waits for it from the benchmark thread.
int run_in_task(disco_task_fn fn, void *arg)
{
    return disco_task_join(disco_async(fn, arg), nullptr);
}

// ---- spawn + join, flat ------------------------------------------------------

int empty_task(void *, void **) { return 0; }

int flat_root(void *arg, void **)
{
    long n = *static_cast<long *>(arg);
    disco_task_attr detached{};
    detached.detached = true; // no handle: the scope is what waits
    disco_sync scope;
    disco_sync_begin(&scope);
    for (long i = 0; i < n; i++)
        disco_async_attr(empty_task, nullptr, &detached);
    return disco_sync_end(&scope);
}

void BM_disco_spawn_flat(benchmark::State &st)
{
    long n = kFlatTasks;
    for (auto _ : st)
        if (run_in_task(flat_root, &n) != 0)
            st.SkipWithError("task failed");
    set_rate(st, n);
}
BENCHMARK(BM_disco_spawn_flat)->Unit(benchmark::kMillisecond)->UseRealTime();

#ifdef HAVE_TBB
void BM_tbb_spawn_flat(benchmark::State &st)
{
    for (auto _ : st) {
        tbb::task_group tg;
        for (long i = 0; i < kFlatTasks; i++)
            tg.run([] {});
        tg.wait();
    }
    set_rate(st, kFlatTasks);
}
BENCHMARK(BM_tbb_spawn_flat)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

// ---- spawn + join, recursive tree --------------------------------------------
// Each node spawns its left child, runs the right one itself, then joins the
// left: the usual fork-join idiom, the same for disco and TBB.

int tree_node(void *arg, void **)
{
    long depth = reinterpret_cast<intptr_t>(arg);
    if (depth == 0)
        return 0;
    disco_task *left = disco_async(tree_node, reinterpret_cast<void *>(depth - 1));
    tree_node(reinterpret_cast<void *>(depth - 1), nullptr);
    return disco_task_join(left, nullptr);
}

void BM_disco_spawn_tree(benchmark::State &st)
{
    for (auto _ : st)
        if (run_in_task(tree_node, reinterpret_cast<void *>(kTreeDepth)) != 0)
            st.SkipWithError("task failed");
    set_rate(st, 1L << kTreeDepth);
}
BENCHMARK(BM_disco_spawn_tree)->Unit(benchmark::kMillisecond)->UseRealTime();

#ifdef HAVE_TBB
void tbb_tree(int depth)
{
    if (depth == 0)
        return;
    tbb::task_group tg;
    tg.run([=] { tbb_tree(depth - 1); });
    tbb_tree(depth - 1);
    tg.wait();
}

void BM_tbb_spawn_tree(benchmark::State &st)
{
    for (auto _ : st)
        tbb_tree(kTreeDepth);
    set_rate(st, 1L << kTreeDepth);
}
BENCHMARK(BM_tbb_spawn_tree)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

// ---- channel handoff between a producer and a consumer ------------------------

constexpr long kItems = 1 << 22;
constexpr long kItemsSlow = 1 << 16; // condvar queue at capacity 1: ~50 us/item

int chan_producer(void *arg, void **)
{
    auto ch = static_cast<disco_channel *>(arg);
    for (long i = 0; i < kItems; i++)
        if (disco_put(ch, &i) != 0)
            return -1;
    return 0;
}

int chan_consumer(void *arg, void **)
{
    auto ch = static_cast<disco_channel *>(arg);
    long v, sum = 0;
    for (long i = 0; i < kItems; i++) {
        if (disco_take(ch, &v) != 0)
            return -1;
        sum += v;
    }
    return sum == kItems * (kItems - 1) / 2 ? 0 : -1;
}

void BM_disco_channel(benchmark::State &st)
{
    disco_channel *ch = disco_channel_new(sizeof(long), st.range(0));
    for (auto _ : st) {
        disco_task *c = disco_async(chan_consumer, ch);
        disco_task *p = disco_async(chan_producer, ch);
        if (disco_task_join(p, nullptr) || disco_task_join(c, nullptr))
            st.SkipWithError("channel failed");
    }
    disco_channel_free(ch);
    set_rate(st, kItems);
}
BENCHMARK(BM_disco_channel)->Arg(1)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

// Baseline: a bounded queue under one pthread mutex and two condvars.
struct CondvarQueue {
    explicit CondvarQueue(size_t cap) : cap(cap) {}
    void put(long v)
    {
        std::unique_lock<std::mutex> lk(m);
        not_full.wait(lk, [&] { return q.size() < cap; });
        q.push_back(v);
        not_empty.notify_one();
    }
    long take()
    {
        std::unique_lock<std::mutex> lk(m);
        not_empty.wait(lk, [&] { return !q.empty(); });
        long v = q.front();
        q.pop_front();
        not_full.notify_one();
        return v;
    }
    size_t cap;
    std::mutex m;
    std::condition_variable not_full, not_empty;
    std::deque<long> q;
};

void BM_condvar_queue(benchmark::State &st)
{
    CondvarQueue q(static_cast<size_t>(st.range(0)));
    long n = st.range(0) == 1 ? kItemsSlow : kItems;
    for (auto _ : st) {
        std::thread prod([&] {
            for (long i = 0; i < n; i++)
                q.put(i);
        });
        long sum = 0;
        for (long i = 0; i < n; i++)
            sum += q.take();
        prod.join();
        benchmark::DoNotOptimize(sum);
    }
    set_rate(st, n);
}
BENCHMARK(BM_condvar_queue)->Arg(1)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- yield ping-pong ---------------------------------------------------------

constexpr long kYields = 1 << 20;

struct PingPong {
    std::atomic<int> turn{0};
};

struct Player {
    PingPong *pp;
    int me;
};

int yield_player(void *arg, void **)
{
    auto pl = static_cast<Player *>(arg);
    for (long i = 0; i < kYields; i++) {
        while (pl->pp->turn.load(std::memory_order_acquire) != pl->me)
            disco_yield();
        pl->pp->turn.store(1 - pl->me, std::memory_order_release);
    }
    return 0;
}

// Two tasks hand a turn back and forth, yielding while it is not theirs.
void BM_disco_yield_pingpong(benchmark::State &st)
{
    for (auto _ : st) {
        PingPong pp;
        Player a{&pp, 0}, b{&pp, 1};
        disco_task *ta = disco_async(yield_player, &a);
        disco_task *tb = disco_async(yield_player, &b);
        disco_task_join(ta, nullptr);
        disco_task_join(tb, nullptr);
    }
    set_rate(st, 2 * kYields);
}
BENCHMARK(BM_disco_yield_pingpong)->Unit(benchmark::kMillisecond)->UseRealTime();

// Baseline: the same with two threads and sched_yield.
void BM_thread_yield_pingpong(benchmark::State &st)
{
    for (auto _ : st) {
        PingPong pp;
        auto play = [&](int me) {
            for (long i = 0; i < kYields; i++) {
                while (pp.turn.load(std::memory_order_acquire) != me)
                    sched_yield();
                pp.turn.store(1 - me, std::memory_order_release);
            }
        };
        std::thread other(play, 1);
        play(0);
        other.join();
    }
    set_rate(st, 2 * kYields);
}
BENCHMARK(BM_thread_yield_pingpong)->Unit(benchmark::kMillisecond)->UseRealTime();

} // namespace

int main(int argc, char **argv)
{
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    disco_sched_start(0);
    benchmark::AddCustomContext("disco_threads", std::to_string(disco_sched_nthreads()));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    disco_sched_stop();
    return 0;
}
