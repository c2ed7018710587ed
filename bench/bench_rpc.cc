// SPDX-License-Identifier: BSD-3-Clause
// remotecall_fetch round trips over TCP next to raw TCP ping-pongs measured
// in the same run: a forked echo peer on loopback, with blocking reads, and
// with busy-polling non-blocking reads (the fastest a TCP hop gets here).
// Payloads: 8 B, 64 KiB, 1 MiB. Also many calls in flight, one by one and in
// batches, and addprocs(32). The binary is also the worker program.
#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "disco.h"

namespace {

int echo_bytes(const disco_value *args, size_t n, disco_value *result)
{
    *result = n ? args[0] : disco_nil(); // borrowed: sent before the call returns
    return 0;
}

int worker_pid;

int os_pid(const disco_value *, size_t, disco_value *result)
{
    *result = disco_i64(getpid());
    return 0;
}

// Resident memory of a process in KiB, from /proc.
long rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

// Start-up: disco_addprocs(n) until all have joined, then their removal;
// the resident memory of an idle worker as a counter.
void BM_addprocs(benchmark::State &st)
{
    const int n = static_cast<int>(st.range(0));
    std::vector<int> pids(static_cast<size_t>(n));
    double rss = 0;
    for (auto _ : st) {
        if (disco_addprocs(n, nullptr, pids.data()) != n) {
            st.SkipWithError("addprocs failed");
            break;
        }
        st.PauseTiming();
        disco_value r;
        if (disco_remotecall_fetch(os_pid, pids[0], nullptr, 0, &r) == 0)
            rss = static_cast<double>(rss_kib(static_cast<long>(r.i)));
        disco_rmprocs(pids.data(), n, 10);
        st.ResumeTiming();
    }
    st.counters["idle_worker_rss_KiB"] = rss;
}

void BM_remotecall_fetch(benchmark::State &st)
{
    std::vector<uint8_t> payload(static_cast<size_t>(st.range(0)), 0x5a);
    disco_value arg = disco_bytes(payload.data(), payload.size()), r;
    for (auto _ : st) {
        if (disco_remotecall_fetch(echo_bytes, worker_pid, &arg, 1, &r) != 0) {
            char msg[256];
            disco_error_format(disco_last_error(), msg, sizeof(msg));
            st.SkipWithError(msg);
            break;
        }
        disco_value_free(&r);
    }
    st.SetBytesProcessed(st.iterations() * st.range(0) * 2);
}

// Throughput: a window of calls in flight (remotecall, then fetch the
// oldest when the window is full), 8-byte argument.
void BM_remotecall_inflight(benchmark::State &st)
{
    const size_t window = static_cast<size_t>(st.range(0));
    std::vector<disco_future *> ring(window, nullptr);
    uint64_t x = 42;
    disco_value arg = disco_bytes(&x, sizeof(x));
    size_t head = 0;
    for (auto _ : st) {
        disco_future *&slot = ring[head];
        if (slot) {
            if (disco_future_wait(slot) != 0) {
                st.SkipWithError("call failed");
                break;
            }
            disco_future_release(slot);
        }
        slot = disco_remotecall(echo_bytes, worker_pid, &arg, 1);
        head = (head + 1) % window;
    }
    for (disco_future *&f : ring)
        if (f) {
            disco_future_wait(f);
            disco_future_release(f);
        }
    st.SetItemsProcessed(st.iterations());
}

// Many calls in flight, issued in batches (disco_batch_begin): each
// iteration waits for the oldest batch of the window, then sends a new one.
void BM_remotecall_batched(benchmark::State &st)
{
    const size_t batch = static_cast<size_t>(st.range(0)), window = 1024;
    std::vector<disco_future *> ring(window, nullptr);
    uint64_t x = 42;
    disco_value arg = disco_bytes(&x, sizeof(x));
    size_t head = 0;
    for (auto _ : st) {
        for (size_t i = 0; i < batch; i++) {
            disco_future *&slot = ring[(head + i) % window];
            if (slot && disco_future_wait(slot) != 0) {
                st.SkipWithError("call failed");
                return;
            }
            if (slot)
                disco_future_release(slot);
            slot = nullptr;
        }
        disco_batch_begin();
        for (size_t i = 0; i < batch; i++)
            ring[(head + i) % window] = disco_remotecall(echo_bytes, worker_pid, &arg, 1);
        disco_batch_end();
        head = (head + batch) % window;
    }
    for (disco_future *&f : ring)
        if (f) {
            disco_future_wait(f);
            disco_future_release(f);
        }
    st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(batch));
}

// ---- raw TCP ping-pong baseline ----------------------------------------------

// Busy: spin on the socket, or, with a spin limit, spin that many times
// before a blocking read (an echo peer idle between blocks gives its core
// back).
bool full_io(int fd, void *buf, size_t len, bool writing, bool busy, long spin_limit = 0)
{
    auto *p = static_cast<char *>(buf);
    long spins = 0;
    while (len) {
        bool spin = busy && (spin_limit == 0 || spins++ < spin_limit);
        ssize_t n = writing ? send(fd, p, len, MSG_NOSIGNAL)
                            : recv(fd, p, len, spin ? MSG_DONTWAIT : 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= static_cast<size_t>(n);
    }
    return true;
}

// A forked peer echoing messages of size len until the socket closes.
struct EchoPeer {
    int fd = -1;
    pid_t pid = -1;
    EchoPeer(size_t len, bool busy, long spin_limit = 0)
    {
        int lfd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof(sa);
        bind(lfd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa));
        listen(lfd, 1);
        getsockname(lfd, reinterpret_cast<sockaddr *>(&sa), &sl);
        pid = fork();
        if (pid == 0) {
            int c = accept(lfd, nullptr, nullptr);
            int one = 1;
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            std::vector<char> buf(len);
            while (full_io(c, buf.data(), len, false, busy, spin_limit) &&
                   full_io(c, buf.data(), len, true, busy))
                ;
            _exit(0);
        }
        close(lfd);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa));
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    ~EchoPeer()
    {
        close(fd);
        waitpid(pid, nullptr, 0);
    }
};

void tcp_pingpong(benchmark::State &st, bool busy)
{
    size_t len = static_cast<size_t>(st.range(0));
    EchoPeer peer(len, busy);
    std::vector<char> buf(len, 0x5a);
    for (auto _ : st)
        if (!full_io(peer.fd, buf.data(), len, true, busy) ||
            !full_io(peer.fd, buf.data(), len, false, busy)) {
            st.SkipWithError("echo peer failed");
            break;
        }
    st.SetBytesProcessed(st.iterations() * st.range(0) * 2);
}

// remotecall_fetch against the raw busy-poll ping-pong, in alternating blocks
// of the same period: the machine's speed drifts (the host moves its vCPUs),
// so rows measured minutes apart compare badly. Reports the medians of the
// blocks' mean round trips and of their ratio.
void BM_remotecall_fetch_over_busypoll(benchmark::State &st)
{
    const int block = 500;
    size_t len = static_cast<size_t>(st.range(0));
    EchoPeer peer(len, true, 200); // spins a little, then sleeps
    std::vector<char> buf(len, 0x5a);
    disco_value arg = disco_bytes(buf.data(), len);
    std::vector<double> disco_ns, raw_ns, ratio;
    using clock = std::chrono::steady_clock;
    for (auto _ : st) {
        auto t0 = clock::now();
        for (int i = 0; i < block; i++) {
            disco_value r;
            if (disco_remotecall_fetch(echo_bytes, worker_pid, &arg, 1, &r) != 0) {
                st.SkipWithError("call failed");
                return;
            }
            disco_value_free(&r);
        }
        auto t1 = clock::now();
        for (int i = 0; i < block; i++)
            if (!full_io(peer.fd, buf.data(), len, true, true) ||
                !full_io(peer.fd, buf.data(), len, false, true)) {
                st.SkipWithError("echo peer failed");
                return;
            }
        auto t2 = clock::now();
        double d = std::chrono::duration<double, std::nano>(t1 - t0).count() / block;
        double r = std::chrono::duration<double, std::nano>(t2 - t1).count() / block;
        disco_ns.push_back(d);
        raw_ns.push_back(r);
        ratio.push_back(d / r);
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v.empty() ? 0.0 : v[v.size() / 2];
    };
    st.counters["disco_ns"] = median(disco_ns);
    st.counters["raw_ns"] = median(raw_ns);
    st.counters["ratio"] = median(ratio);
}

// The ceiling of BM_remotecall_inflight without batches: 8-byte messages
// with up to `window` in flight, one send per message each way (the echo
// peer answers each as it reads it), as calls in flight go one by one.
void BM_tcp_pipelined(benchmark::State &st)
{
    const long window = st.range(0);
    const size_t len = 8;
    EchoPeer peer(len, true, 200);
    char msg[len] = {0};
    std::vector<char> in(64 << 10);
    long sent = 0, got = 0; // messages; got counts whole ones
    size_t partial = 0;     // bytes of a reply read so far
    for (auto _ : st) {
        while (sent - got >= window) { // wait for a reply
            ssize_t n = recv(peer.fd, in.data(), in.size(), MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n <= 0) {
                st.SkipWithError("echo peer failed");
                return;
            }
            partial += static_cast<size_t>(n);
            got += static_cast<long>(partial / len);
            partial %= len;
        }
        if (!full_io(peer.fd, msg, len, true, true)) {
            st.SkipWithError("echo peer failed");
            return;
        }
        sent++;
    }
    while (got < sent) { // drain
        ssize_t n = recv(peer.fd, in.data(), in.size(), 0);
        if (n <= 0)
            break;
        partial += static_cast<size_t>(n);
        got += static_cast<long>(partial / len);
        partial %= len;
    }
    st.SetItemsProcessed(st.iterations());
}

void BM_tcp_pingpong_blocking(benchmark::State &st) { tcp_pingpong(st, false); }
void BM_tcp_pingpong_busypoll(benchmark::State &st) { tcp_pingpong(st, true); }

} // namespace

DISCO_FUNCTION(echo_bytes)
DISCO_FUNCTION(os_pid)

BENCHMARK(BM_remotecall_fetch)->Arg(8)->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();
BENCHMARK(BM_remotecall_inflight)->Arg(1)->Arg(64)->Arg(1024)->UseRealTime();
BENCHMARK(BM_remotecall_batched)->Arg(16)->Arg(64)->UseRealTime();
BENCHMARK(BM_addprocs)->Arg(32)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_remotecall_fetch_over_busypoll)->Arg(8)->Iterations(40)->UseRealTime();
BENCHMARK(BM_tcp_pingpong_blocking)->Arg(8)->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();
BENCHMARK(BM_tcp_pingpong_busypoll)->Arg(8)->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();
BENCHMARK(BM_tcp_pipelined)->Arg(1024)->UseRealTime();

int main(int argc, char **argv)
{
    // Over TCP, as the raw ping-pongs, unless told otherwise (on one node
    // auto would pick shared memory: bench_transport measures that).
    setenv("DISCO_TRANSPORT", "tcp", 0);
    disco_init(&argc, &argv); // a worker never returns from here
    // --benchmark_list_tests must not start workers (Initialize eats it).
    bool listing = false;
    for (int i = 1; i < argc; i++)
        listing |= std::strstr(argv[i], "list_tests") != nullptr;
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    if (!listing && disco_addprocs(1, nullptr, &worker_pid) != 1) {
        fprintf(stderr, "bench_rpc: addprocs failed\n");
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return listing ? 0 : disco_finalize();
}
