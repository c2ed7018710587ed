// SPDX-License-Identifier: BSD-3-Clause
// The shared-memory transport alone (no runtime): round trips to a forked
// echo peer through disco__shm_ops. Spinning: both sides poll progress(0),
// the busy path with no system call per message. Blocking: both sides sleep
// in progress(-1) between messages, so every message pays a wake-up.
// Payloads 8 B, 64 KiB, 1 MiB (above the ring size: the rest queues).
#include <benchmark/benchmark.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

extern "C" {
#include "core/transport.h"
}

namespace {

const disco_transport_ops &T = disco__shm_ops;
const size_t kMaxMsg = 1 << 20;
uint8_t echo_buf[kMaxMsg]; // never written: the peer's replies borrow it

struct Side {
    disco_transport *tp = nullptr;
    disco_conn *conn = nullptr;
    size_t got = 0;
    bool closed = false;
};

void on_accept(void *ctx, disco_conn *c) { static_cast<Side *>(ctx)->conn = c; }

void on_recv(void *ctx, disco_conn *c, const uint8_t *, size_t len)
{
    static_cast<Side *>(ctx)->got += len;
}

void echo_recv(void *ctx, disco_conn *c, const uint8_t *, size_t len)
{
    struct iovec v = {echo_buf, len};
    T.send(c, &v, 1, nullptr);
}

void on_close(void *ctx, disco_conn *, int) { static_cast<Side *>(ctx)->closed = true; }
void on_sent(void *, disco_conn *, void *, int) {}

const disco_transport_callbacks parent_cbs = {on_accept, on_recv, on_close, on_sent,
                                              nullptr};
const disco_transport_callbacks echo_cbs = {on_accept, echo_recv, on_close, on_sent,
                                            nullptr};

// The echo peer: connects and echoes until the connection ends.
[[noreturn]] void echo_main(const char *addr, int timeout_ms)
{
    Side s;
    if (T.init(&s.tp, nullptr, nullptr, &echo_cbs, &s) != 0 ||
        T.connect(s.tp, addr, &s, &s.conn) != 0)
        _exit(2);
    while (!s.closed)
        T.progress(s.tp, timeout_ms);
    _exit(0);
}

void round_trips(benchmark::State &st, int timeout_ms)
{
    const size_t n = static_cast<size_t>(st.range(0));
    std::vector<uint8_t> msg(n, 0x5a);
    Side s;
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    if (T.init(&s.tp, nullptr, nullptr, &parent_cbs, &s) != 0 ||
        T.local_address(s.tp, addr, sizeof(addr)) != 0) {
        st.SkipWithError("shm init failed");
        return;
    }
    pid_t pid = fork();
    if (pid == 0)
        echo_main(addr, timeout_ms);
    while (!s.conn)
        T.progress(s.tp, 10);
    size_t want = 0;
    for (auto _ : st) {
        struct iovec v = {msg.data(), n};
        T.send(s.conn, &v, 1, nullptr);
        want += n;
        while (s.got < want && !s.closed)
            T.progress(s.tp, timeout_ms);
    }
    st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(n));
    T.conn_close(s.conn);
    T.fini(s.tp);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        st.SkipWithError("echo peer failed");
}

void BM_shm_rtt_spin(benchmark::State &st) { round_trips(st, 0); }
void BM_shm_rtt_block(benchmark::State &st) { round_trips(st, -1); }

} // namespace

BENCHMARK(BM_shm_rtt_spin)->Arg(8)->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();
BENCHMARK(BM_shm_rtt_block)->Arg(8)->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();
BENCHMARK_MAIN();
