// SPDX-License-Identifier: BSD-3-Clause
// The transport benchmark: what a disco call costs over the transport this
// process got (DISCO_TRANSPORT=tcp|shm|ofi:<provider>, chosen at start-up),
// next to the floors that same machine allows, all measured in the same run:
//
//   BM_remotecall_fetch_rtt/8       disco round trip, 8-byte argument echoed
//   BM_argument_bandwidth/<size>    disco, a bytes argument shipped one way
//   BM_memcpy/<size>                floor of any copy: one memcpy
//   BM_cma_read/<size>              floor of a single-copy same-node transfer:
//                                   process_vm_readv from another process
//   BM_shm_pingpong_rtt/8           floor of a same-node round trip: two
//                                   processes bouncing a cache line
//   BM_remotecall_fetch_over_floor/8
//                                   the two above in alternating blocks, and
//                                   their ratio: the figure to quote, the
//                                   machine's drift cancels out
//   BM_remotecall_fetch_pinned/8    the round trip bound the way mpirun
//                                   binds ranks: this process's threads on
//                                   its first allowed CPU, a worker of its
//                                   own on the second; the row to hold
//                                   against BM_mpi_pingpong/shm. Blocks of
//                                   a no-wait function (no task on the
//                                   worker, the call runs in its progress)
//                                   alternate with them: nowait_ns
//   BM_fi_pingpong/{shm,tcp}        libfabric's own fi_pingpong (RDM
//                                   endpoints) over the providers disco's ofi
//                                   transport would use
//   BM_mpi_pingpong/{shm,tcp}       Open MPI, 8-byte MPI_Send/MPI_Recv round
//                                   trip (bench/mpi_pingpong under mpirun)
//                                   over its shared-memory BTL (vader) and
//                                   over TCP on loopback
//
// The disco benchmarks label their rows with the transport
// disco_transport_info reports for the worker: a transport this build lacks
// falls back to TCP, and the label then says "tcp". The fi_pingpong and MPI
// rows say why they are skipped when libfabric-bin or Open MPI (found by
// configure) is missing.
//
// BM_shm_pingpong_rtt is MPI's shared-memory mechanism without its
// matching: it should land at or below BM_mpi_pingpong/shm. Only on a busy
// machine can it read above it, because the MPI figure is a median of short
// batches, which leaves out the batches in which a process was descheduled.
//
// The binary is also the worker program. Run it pinned (the code pins
// nothing), one benchmark per process with medians of 5 repetitions:
//   taskset -c 0,1 make bench-transport        (every transport, from build/;
//                                               about 2 minutes per transport)
//   DISCO_TRANSPORT=tcp taskset -c 0,1 bench/run build/bench/bench_transport OUT
#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "disco.h"

namespace {

int worker_pid;

// ---- helpers ------------------------------------------------------------------

double now_s()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Waits up to timeout_s for pid to exit. Returns its wait status, or -1
// when it still runs.
int wait_exit(pid_t pid, double timeout_s)
{
    const double deadline = now_s() + timeout_s;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if ((r < 0 && errno != EINTR) || now_s() > deadline)
            return -1;
        usleep(1000);
    }
}

// Waits up to timeout_s for pid to exit; kills it (SIGKILL) and reaps it
// when it has not. Returns its wait status, or -1 when it had to be killed.
int reap(pid_t pid, double timeout_s)
{
    int status = wait_exit(pid, timeout_s);
    if (status == -1) {
        kill(pid, SIGKILL);
        while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR)
            ;
    }
    return status;
}

// First thing in a forked child: die with the benchmark process, so that a
// crashed or killed benchmark leaves nothing behind.
void child_setup()
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

std::string last_error_text()
{
    char msg[256] = "disco call failed";
    if (disco_last_error())
        disco_error_format(disco_last_error(), msg, sizeof(msg));
    return msg;
}

// The transport disco reaches the worker over ("tcp", "shm", "ofi+tcp"...).
std::string transport_name()
{
    char name[64];
    if (disco_transport_info(worker_pid, name, sizeof(name)) != 0)
        return "unknown";
    return name;
}

// Binds every thread of this process (the scheduler's too) to set. False
// when one could not be bound.
bool bind_all_threads(const cpu_set_t &set)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return false;
    bool ok = true;
    while (dirent *e = readdir(d)) {
        pid_t tid = static_cast<pid_t>(std::atoi(e->d_name));
        if (tid > 0 && sched_setaffinity(tid, sizeof(set), &set) != 0 && errno != ESRCH)
            ok = false;
    }
    closedir(d);
    return ok;
}

// A worker started with this variable set binds itself (all its threads,
// started after) to that CPU before disco starts: see main.
const char *const kBindEnv = "BENCH_TRANSPORT_BIND_CPU";

// ---- disco ----------------------------------------------------------------------

int echo_bytes(const disco_value *args, size_t n, disco_value *result)
{
    *result = n ? args[0] : disco_nil(); // borrowed: sent before the call returns
    return 0;
}

// The same, registered as a no-wait function: it runs in the worker's
// network progress, without a task.
int echo_bytes_nowait(const disco_value *args, size_t n, disco_value *result)
{
    return echo_bytes(args, n, result);
}

// Takes a bytes argument and answers with its length only: the data travels
// one way, the reply is a few bytes.
int bytes_length(const disco_value *args, size_t n, disco_value *result)
{
    *result = disco_i64(n && args[0].type == DISCO_BYTES ? static_cast<int64_t>(args[0].bytes.len)
                                                         : -1);
    return 0;
}

// The disco round trip: remotecall_fetch to the worker of a function that
// echoes its 8-byte argument. One iteration = one call and its answer, the
// figure to hold against BM_shm_pingpong_rtt and BM_fi_pingpong.
void BM_remotecall_fetch_rtt(benchmark::State &st)
{
    std::vector<uint8_t> payload(static_cast<size_t>(st.range(0)), 0x5a);
    disco_value arg = disco_bytes(payload.data(), payload.size()), r;
    // Warm-up: the first call on a connection may still wait for its upgrade
    // to the chosen transport.
    if (disco_remotecall_fetch(echo_bytes, worker_pid, &arg, 1, &r) != 0) {
        st.SkipWithError(last_error_text().c_str());
        return;
    }
    disco_value_free(&r);
    for (auto _ : st) {
        if (disco_remotecall_fetch(echo_bytes, worker_pid, &arg, 1, &r) != 0) {
            st.SkipWithError(last_error_text().c_str());
            break;
        }
        disco_value_free(&r);
    }
    st.SetLabel(transport_name());
}

// Argument bandwidth: remotecall_fetch of a function that takes size bytes
// and returns their count, so the bytes cross once. Bytes/s against
// BM_memcpy (the price of one copy) and BM_cma_read (what a single-copy
// same-node transport can reach) shows how many copies the path makes.
void BM_argument_bandwidth(benchmark::State &st)
{
    const size_t len = static_cast<size_t>(st.range(0));
    std::vector<uint8_t> payload(len, 0x5a);
    disco_value arg = disco_bytes(payload.data(), len), r;
    if (disco_remotecall_fetch(bytes_length, worker_pid, &arg, 1, &r) != 0) {
        st.SkipWithError(last_error_text().c_str());
        return;
    }
    disco_value_free(&r);
    for (auto _ : st) {
        if (disco_remotecall_fetch(bytes_length, worker_pid, &arg, 1, &r) != 0) {
            st.SkipWithError(last_error_text().c_str());
            break;
        }
        if (r.type != DISCO_I64 || r.i != static_cast<int64_t>(len)) {
            st.SkipWithError("the worker saw a different length");
            break;
        }
        disco_value_free(&r);
    }
    st.SetBytesProcessed(st.iterations() * st.range(0));
    st.SetLabel(transport_name());
}

// ---- baselines ------------------------------------------------------------------

// One memcpy between two buffers that are already allocated and faulted in:
// the cost of a single copy through this machine's caches and memory, i.e.
// the ceiling of any transport that copies the data even once.
void BM_memcpy(benchmark::State &st)
{
    const size_t len = static_cast<size_t>(st.range(0));
    std::vector<char> src(len, 0x5a), dst(len, 0x33);
    for (auto _ : st) {
        std::memcpy(dst.data(), src.data(), len);
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * st.range(0));
}

// A forked child holding len bytes, faulted in, at an address it reports
// over a pipe; it then sleeps, blocked on a second pipe, until killed.
struct CmaPeer {
    pid_t pid = -1;
    void *addr = nullptr;
    int hold = -1; // our end of the pipe the child sleeps on

    explicit CmaPeer(size_t len)
    {
        int up[2], down[2];
        if (pipe(up) != 0)
            return;
        if (pipe(down) != 0) {
            close(up[0]);
            close(up[1]);
            return;
        }
        pid = fork();
        if (pid == 0) {
            // Only system calls here: the parent has threads (disco's).
            child_setup();
            close(up[0]);
            close(down[1]);
            void *p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
            if (p == MAP_FAILED)
                _exit(1);
            std::memset(p, 0x5a, len);
            if (write(up[1], &p, sizeof(p)) != static_cast<ssize_t>(sizeof(p)))
                _exit(1);
            char c;
            while (read(down[0], &c, 1) < 0 && errno == EINTR)
                ;
            _exit(0);
        }
        close(up[1]);
        close(down[0]);
        hold = down[1];
        pollfd pfd = {up[0], POLLIN, 0};
        if (pid > 0 && poll(&pfd, 1, 30000) == 1 &&
            read(up[0], &addr, sizeof(addr)) != static_cast<ssize_t>(sizeof(addr)))
            addr = nullptr;
        close(up[0]);
    }
    ~CmaPeer()
    {
        if (pid > 0) {
            kill(pid, SIGKILL);
            reap(pid, 10);
        }
        if (hold >= 0)
            close(hold);
    }
};

// process_vm_readv (cross-memory attach) of len bytes out of another
// process into a faulted-in local buffer: one copy, done by the kernel, no
// shared mapping set up in advance. This is the large-message path of a
// same-node transport that uses CMA (disco's shm, MPI's single-copy mode),
// so it bounds BM_argument_bandwidth over shm from above.
void BM_cma_read(benchmark::State &st)
{
    const size_t len = static_cast<size_t>(st.range(0));
    CmaPeer peer(len);
    if (peer.pid <= 0 || !peer.addr) {
        st.SkipWithError("could not start the CMA peer");
        return;
    }
    std::vector<char> local(len, 0x33);
    for (auto _ : st) {
        size_t done = 0;
        while (done < len) {
            iovec l = {local.data() + done, len - done};
            iovec r = {static_cast<char *>(peer.addr) + done, len - done};
            ssize_t n = process_vm_readv(peer.pid, &l, 1, &r, 1, 0);
            if (n <= 0) {
                std::string msg = std::string("process_vm_readv: ") +
                                  (n < 0 ? std::strerror(errno) : "read nothing");
                st.SkipWithError(msg.c_str());
                return;
            }
            done += static_cast<size_t>(n);
        }
        benchmark::DoNotOptimize(local.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * st.range(0));
}

// One direction of the ping-pong: a sequence number that announces the
// message and the 8-byte message, alone on one cache line, so that a round
// trip moves exactly two lines between the cores.
struct alignas(64) Mailbox {
    std::atomic<uint64_t> seq;
    uint64_t payload;
};
struct PingPong {
    Mailbox ping; // parent -> child
    Mailbox pong; // child -> parent
};

// Busy-polls box until its sequence number reaches want (acquire, so the
// payload written before the release store is visible). Spins without a
// pause instruction, as a latency-bound MPI progress loop does, but gives
// the core away every 1024 polls: with the peer descheduled (fewer free
// cores than spinners) spinning on could not end the wait anyway.
uint64_t wait_for(const Mailbox &box, uint64_t want)
{
    for (unsigned polls = 1;; polls++) {
        uint64_t s = box.seq.load(std::memory_order_acquire);
        if (s >= want)
            return s;
        if (polls % 1024 == 0)
            sched_yield();
    }
}

// The peer of the floor's ping-pong: a forked process echoing ping into
// pong. It spins only between resume() and pause() and sleeps on a pipe
// otherwise, so that a row alternating with disco does not lend it a core.
class FloorPeer {
    PingPong *pp_ = nullptr;
    pid_t pid_ = -1;
    int go_[2] = {-1, -1};
    uint64_t seq_ = 0;
    static constexpr uint64_t kPause = UINT64_MAX; // a payload: back to sleep

  public:
    FloorPeer()
    {
        void *mem = mmap(nullptr, sizeof(PingPong), PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED || pipe(go_) != 0) {
            if (mem != MAP_FAILED)
                munmap(mem, sizeof(PingPong));
            return;
        }
        pp_ = new (mem) PingPong();
        pid_ = fork();
        if (pid_ == 0) {
            child_setup();
            close(go_[1]);
            char c;
            uint64_t want = 1;
            while (read(go_[0], &c, 1) == 1) { // closed: stop
                for (;; want++) {
                    uint64_t s = wait_for(pp_->ping, want);
                    uint64_t msg = pp_->ping.payload;
                    pp_->pong.payload = msg;
                    pp_->pong.seq.store(s, std::memory_order_release);
                    want = s;
                    if (msg == kPause)
                        break;
                }
                want++;
            }
            _exit(0);
        }
    }
    bool ok() const { return pid_ > 0; }
    void resume()
    {
        char c = 1;
        (void)!write(go_[1], &c, 1);
    }
    // One round trip; the payload that came back.
    uint64_t rtt(uint64_t msg)
    {
        seq_++;
        pp_->ping.payload = msg;
        pp_->ping.seq.store(seq_, std::memory_order_release);
        wait_for(pp_->pong, seq_);
        return pp_->pong.payload;
    }
    void pause() { rtt(kPause); }
    // Ends the peer: 0 when it exits cleanly in time.
    int stop()
    {
        if (pid_ <= 0)
            return -1;
        close(go_[1]);
        close(go_[0]);
        int rc = reap(pid_, 10);
        munmap(pp_, sizeof(PingPong));
        pid_ = -1;
        return rc;
    }
    ~FloorPeer() { stop(); }
};

// The floor of a same-node round trip, which is what MPI's shared-memory
// path does for a small message: two processes on a MAP_SHARED anonymous
// mapping, each busy-polling a cache-line flag (acquire loads, release
// stores: the C11/C++11 memory model), bouncing an 8-byte message. One
// iteration = one round trip. No queue, no matching, no progress engine:
// nothing a runtime could do on one node is cheaper.
void BM_shm_pingpong_rtt(benchmark::State &st)
{
    FloorPeer peer;
    if (!peer.ok()) {
        st.SkipWithError("mmap or fork failed");
        return;
    }
    peer.resume();
    uint64_t msg = 0, sum = 0;
    for (auto _ : st)
        sum += peer.rtt(++msg);
    benchmark::DoNotOptimize(sum);
    peer.pause();
    if (peer.stop() != 0)
        st.SkipWithError("the ping-pong peer did not stop cleanly");
}

// One block of remotecall_fetch(fn) round trips; its mean in ns, or -1 (the
// error set in st).
double fetch_block(benchmark::State &st, disco_function fn, int pid, const disco_value *arg,
                   int block)
{
    disco_value r;
    double t0 = now_s();
    for (int i = 0; i < block; i++) {
        if (disco_remotecall_fetch(fn, pid, arg, 1, &r) != 0) {
            st.SkipWithError(last_error_text().c_str());
            return -1;
        }
        disco_value_free(&r);
    }
    return (now_s() - t0) / block * 1e9;
}

// The median of v (not empty).
double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// remotecall_fetch bound as mpirun binds MPI's two ranks (one core each):
// this process's threads on the first CPU it may use, a worker of its own
// on the second (bound before its scheduler starts). Without binding, the
// threads of both processes share both CPUs. Blocks of an ordinary function
// alternate with blocks of a no-wait one (disco_register_nowait: the call
// runs in the worker's network progress, as an active-message handler
// would). Reports the medians of the blocks' mean round trips (disco_ns,
// nowait_ns) and of the pairs' ratio (nowait_gain = ordinary / no-wait);
// unbinds and removes the worker afterwards.
void BM_remotecall_fetch_pinned(benchmark::State &st)
{
    cpu_set_t mine;
    if (sched_getaffinity(0, sizeof(mine), &mine) != 0 || CPU_COUNT(&mine) < 2) {
        st.SkipWithError("needs two CPUs");
        return;
    }
    int cpu[2], found = 0;
    for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
        if (CPU_ISSET(c, &mine))
            cpu[found++] = c;
    char bind[64];
    std::snprintf(bind, sizeof(bind), "%s=%d", kBindEnv, cpu[1]);
    char *env[] = {bind, nullptr};
    disco_addprocs_opts opts = {};
    opts.env = env;
    int pid;
    if (disco_addprocs(1, &opts, &pid) != 1) {
        st.SkipWithError(last_error_text().c_str());
        return;
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu[0], &one);
    const int block = 2000;
    std::vector<uint8_t> payload(static_cast<size_t>(st.range(0)), 0x5a);
    disco_value arg = disco_bytes(payload.data(), payload.size());
    std::vector<double> ns, nowait_ns, gain;
    if (!bind_all_threads(one))
        st.SkipWithError("cannot bind this process's threads");
    if (!st.error_occurred()) { // warm-up
        fetch_block(st, echo_bytes, pid, &arg, block);
        fetch_block(st, echo_bytes_nowait, pid, &arg, block);
    }
    for (auto _ : st) {
        if (st.error_occurred())
            continue;
        double a = fetch_block(st, echo_bytes, pid, &arg, block);
        double b = fetch_block(st, echo_bytes_nowait, pid, &arg, block);
        if (a > 0 && b > 0) {
            ns.push_back(a);
            nowait_ns.push_back(b);
            gain.push_back(a / b);
        }
    }
    if (!bind_all_threads(mine) && !st.error_occurred()) // the rows after run unbound
        st.SkipWithError("cannot unbind this process's threads");
    char name[64] = "unknown";
    disco_transport_info(pid, name, sizeof(name));
    if (disco_rmprocs(&pid, 1, 10) != 0 && !st.error_occurred())
        st.SkipWithError(last_error_text().c_str());
    if (ns.empty())
        return;
    st.counters["disco_ns"] = median(ns);
    st.counters["nowait_ns"] = median(nowait_ns);
    st.counters["nowait_gain"] = median(gain);
    st.SetLabel(name);
}

// remotecall_fetch against that floor, in alternating blocks of the same
// period: the host moves its vCPUs, so rows measured a minute apart compare
// badly (either row alone drifts by 2x here). Reports the medians of the
// blocks' mean round trips and of their ratio. MPI's shared-memory round
// trip cannot beat the floor, so the ratio bounds disco's against MPI's
// from above.
void BM_remotecall_fetch_over_floor(benchmark::State &st)
{
    const int block = 2000;
    std::vector<uint8_t> payload(static_cast<size_t>(st.range(0)), 0x5a);
    disco_value arg = disco_bytes(payload.data(), payload.size()), r;
    FloorPeer peer;
    if (!peer.ok()) {
        st.SkipWithError("mmap or fork failed");
        return;
    }
    std::vector<double> disco_ns, floor_ns, ratio;
    uint64_t msg = 0, sum = 0;
    for (auto _ : st) {
        double t0 = now_s();
        for (int i = 0; i < block; i++) {
            if (disco_remotecall_fetch(echo_bytes, worker_pid, &arg, 1, &r) != 0) {
                st.SkipWithError(last_error_text().c_str());
                return;
            }
            disco_value_free(&r);
        }
        double t1 = now_s();
        // The worker spins a while (DISCO_SPIN_US) before it sleeps: not
        // in the floor's block.
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, nullptr);
        peer.resume();
        double t2 = now_s();
        for (int i = 0; i < block; i++)
            sum += peer.rtt(++msg);
        double t3 = now_s();
        peer.pause();
        disco_ns.push_back((t1 - t0) / block * 1e9);
        floor_ns.push_back((t3 - t2) / block * 1e9);
        ratio.push_back(disco_ns.back() / floor_ns.back());
    }
    benchmark::DoNotOptimize(sum);
    st.counters["disco_ns"] = median(disco_ns);
    st.counters["floor_ns"] = median(floor_ns);
    st.counters["ratio"] = median(ratio);
    st.SetLabel(transport_name());
    if (peer.stop() != 0)
        st.SkipWithError("the ping-pong peer did not stop cleanly");
}

// One run of an outside ping-pong program per iteration (manual time):
// rtt(err) is its round trip in seconds, or <= 0 with err saying why, which
// skips the row. False when skipped.
template <typename Rtt> bool time_runs(benchmark::State &st, Rtt rtt)
{
    double sum = 0;
    for (auto _ : st) {
        std::string err;
        double s = rtt(err);
        if (s <= 0) {
            st.SkipWithError(err.c_str());
            return false;
        }
        st.SetIterationTime(s);
        sum += s;
    }
    st.counters["rtt_us"] = sum / static_cast<double>(st.iterations()) * 1e6;
    return true;
}

// ---- fi_pingpong ----------------------------------------------------------------

// fi_pingpong's path on PATH, or "".
std::string find_on_path(const char *prog)
{
    const char *path = getenv("PATH");
    std::stringstream dirs(path ? path : "/usr/bin:/bin");
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
        std::string f = (dir.empty() ? "." : dir) + "/" + prog;
        if (access(f.c_str(), X_OK) == 0)
            return f;
    }
    return "";
}

// A TCP port nobody listens on right now (bind port 0, read it, let go).
int free_port()
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t sl = sizeof(sa);
    int port = -1;
    if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr *>(&sa), &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

// Whether some socket listens on TCP port (from /proc/net/tcp{,6}): how we
// know the fi_pingpong server is ready without using up its one accept().
bool port_listening(int port)
{
    for (const char *file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        FILE *f = fopen(file, "r");
        if (!f)
            continue;
        char line[512];
        bool found = false;
        while (!found && fgets(line, sizeof(line), f)) {
            char local[128];
            unsigned st;
            if (sscanf(line, " %*d: %127s %*s %x", local, &st) != 2)
                continue;
            const char *colon = strrchr(local, ':');
            found = colon && st == 0x0A && std::strtol(colon + 1, nullptr, 16) == port;
        }
        fclose(f);
        if (found)
            return true;
    }
    return false;
}

// Starts argv[0] with stdin from /dev/null and stdout+stderr into out_fd
// (or /dev/null when out_fd < 0). argv is built before fork: the child
// only makes system calls.
pid_t spawn(const std::vector<std::string> &args, int out_fd)
{
    std::vector<char *> argv;
    for (const std::string &a : args)
        argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        child_setup();
        int null = open("/dev/null", O_RDWR);
        int out = out_fd >= 0 ? out_fd : null;
        dup2(null, 0);
        dup2(out, 1);
        dup2(out, 2);
        execv(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

// A wait status (or reap's -1) in words.
std::string status_text(int status)
{
    if (status == -1)
        return "killed after the timeout";
    if (WIFEXITED(status))
        return "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
}

// Reads fd to EOF, giving up at deadline.
std::string read_all(int fd, double deadline)
{
    std::string out;
    char buf[4096];
    for (;;) {
        int left_ms = static_cast<int>((deadline - now_s()) * 1000);
        if (left_ms <= 0)
            break;
        pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, left_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

// The "usec/xfer" column of fi_pingpong's result table, or -1. fi_pingpong
// counts two transfers per iteration (ping and pong), so it is half the
// round trip.
double parse_usec_per_xfer(const std::string &out)
{
    std::istringstream lines(out);
    std::string line;
    int column = -1;
    while (std::getline(lines, line)) {
        std::istringstream words(line);
        std::vector<std::string> w;
        for (std::string s; words >> s;)
            w.push_back(s);
        if (column < 0) {
            for (size_t i = 0; i < w.size(); i++)
                if (w[i] == "usec/xfer")
                    column = static_cast<int>(i);
        } else if (w.size() > static_cast<size_t>(column)) {
            char *end;
            double v = std::strtod(w[static_cast<size_t>(column)].c_str(), &end);
            if (*end == '\0' && v > 0)
                return v;
        }
    }
    return -1;
}

// One fi_pingpong run, server and client on 127.0.0.1: the round trip in
// seconds, or -1 with why in err.
double fi_pingpong_rtt(const std::string &exe, const char *provider, int iters, std::string &err)
{
    const double timeout_s = 60;
    const double deadline = now_s() + timeout_s;
    int port = free_port();
    if (port <= 0) {
        err = "no free port";
        return -1;
    }
    const std::vector<std::string> common = {exe,          "-p", provider, "-e", "rdm", "-I",
                                             std::to_string(iters), "-S", "8"};
    std::vector<std::string> server = common, client = common;
    server.insert(server.end(), {"-B", std::to_string(port)});
    client.insert(client.end(), {"-P", std::to_string(port), "127.0.0.1"});

    pid_t spid = spawn(server, -1);
    if (spid < 0) {
        err = "fork failed";
        return -1;
    }
    // The server is ready when its control port listens.
    const double ready_deadline = now_s() + 10;
    while (!port_listening(port) && now_s() < ready_deadline) {
        if (waitpid(spid, nullptr, WNOHANG) == spid) {
            err = std::string("fi_pingpong server (-p ") + provider + ") exited at start";
            return -1;
        }
        usleep(2000);
    }
    if (!port_listening(port)) {
        reap(spid, 0);
        err = "fi_pingpong server did not listen within 10 s";
        return -1;
    }
    int out[2];
    if (pipe(out) != 0) {
        reap(spid, 0);
        err = "pipe failed";
        return -1;
    }
    pid_t cpid = spawn(client, out[1]);
    close(out[1]);
    std::string text = cpid > 0 ? read_all(out[0], deadline) : "";
    close(out[0]);
    int cst = cpid > 0 ? reap(cpid, deadline - now_s()) : -1;
    int sst = reap(spid, deadline - now_s() > 1 ? deadline - now_s() : 1);
    double usec = parse_usec_per_xfer(text);
    if (cst != 0 || sst != 0 || usec <= 0) {
        std::string first = text.substr(0, text.find('\n'));
        err = std::string("fi_pingpong -p ") + provider + " failed (client " + status_text(cst) +
              ", server " + status_text(sst) + "): " + first;
        return -1;
    }
    return 2 * usec * 1e-6;
}

// libfabric's own ping-pong tool (libfabric-bin) between two processes on
// 127.0.0.1 over one provider, RDM endpoints (what an RDM transport such as
// disco's ofi uses), 8-byte messages, 10000 round trips per run: the floor
// of a libfabric round trip on this machine, to hold BM_remotecall_fetch_rtt
// under DISCO_TRANSPORT=ofi:<provider> against. Manual time: each iteration
// is one fi_pingpong run and counts as the round trip it reports, so the
// median row reads as that RTT (also the rtt_us counter). fi_pingpong prints
// the half round trip in microseconds with two decimals: the RTT comes in
// steps of 0.02 us.
void BM_fi_pingpong(benchmark::State &st, const char *provider)
{
    const std::string exe = find_on_path("fi_pingpong");
    if (exe.empty()) {
        st.SkipWithError("fi_pingpong not on PATH (apt-get install libfabric-bin)");
        return;
    }
    if (time_runs(st, [&](std::string &err) { return fi_pingpong_rtt(exe, provider, 10000, err); }))
        st.SetLabel(std::string("fi_pingpong -p ") + provider + " -e rdm");
}

// ---- MPI ping-pong --------------------------------------------------------------

#ifdef DISCO_MPI_PINGPONG
// The round trip mpi_pingpong printed ("rtt_us X"), in seconds, or -1.
double parse_rtt_us(const std::string &out)
{
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line))
        if (line.rfind("rtt_us ", 0) == 0) {
            double v = std::strtod(line.c_str() + 7, nullptr);
            return v > 0 ? v * 1e-6 : -1;
        }
    return -1;
}

// The first line of mpirun's output that says something: Open MPI frames
// its messages in lines of dashes.
std::string first_message(const std::string &out)
{
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line))
        if (line.find_first_not_of("- ") != std::string::npos)
            return line;
    return "";
}

// One run of bench/mpi_pingpong under Open MPI's mpirun, two ranks on this
// node, over the ob1 PML (else UCX, when built in, would take over and the
// BTL choice would not apply) and one BTL: the round trip in seconds, or -1
// with why in err. --bind-to none: the ranks inherit the caller's taskset
// like the other rows' processes, instead of each being bound to a core of
// Open MPI's choosing, which on a shared machine may be the busy one.
double mpi_pingpong_rtt(const char *btl, std::string &err)
{
    std::vector<std::string> args = {DISCO_MPIRUN, "-np", "2", "--bind-to", "none",
                                     "--mca", "pml", "ob1", "--mca", "btl",
                                     std::string("self,") + btl};
    if (std::strcmp(btl, "tcp") == 0)
        args.insert(args.end(), {"--mca", "btl_tcp_if_include", "lo"});
    if (geteuid() == 0)
        args.push_back("--allow-run-as-root");
    args.insert(args.end(), {DISCO_MPI_PINGPONG, "1000", "11"});
    int out[2];
    if (pipe(out) != 0) {
        err = "pipe failed";
        return -1;
    }
    const double deadline = now_s() + 60;
    pid_t pid = spawn(args, out[1]);
    close(out[1]);
    if (pid < 0) {
        close(out[0]);
        err = "fork failed";
        return -1;
    }
    std::string text = read_all(out[0], deadline);
    close(out[0]);
    int st = wait_exit(pid, deadline - now_s());
    if (st == -1) {
        // SIGTERM first: mpirun then stops its ranks and removes its session
        // directory. Should it not, the ranks die with it (mpi_pingpong sets
        // PR_SET_PDEATHSIG).
        kill(pid, SIGTERM);
        reap(pid, 10);
    }
    double rtt = parse_rtt_us(text);
    if (st != 0 || rtt <= 0) {
        err = std::string("mpirun --mca btl self,") + btl + " failed (" + status_text(st) +
              "): " + first_message(text);
        return -1;
    }
    return rtt;
}
#endif

// Open MPI's small-message path between two processes on this node, the
// figure HPC users hold a runtime against: bench/mpi_pingpong bounces 8
// bytes with MPI_Send/MPI_Recv between ranks 0 and 1 and reports the
// median over 11 batches of 1000 round trips (after 1000 of warm-up), over
// the BTL named: vader (shared memory) or tcp (loopback). Manual time, one
// mpirun per iteration, as BM_fi_pingpong.
void BM_mpi_pingpong(benchmark::State &st, const char *btl)
{
#ifdef DISCO_MPI_PINGPONG
    if (access(DISCO_MPI_PINGPONG, X_OK) != 0 || access(DISCO_MPIRUN, X_OK) != 0) {
        st.SkipWithError("no " DISCO_MPI_PINGPONG " or " DISCO_MPIRUN " (make bench/mpi_pingpong)");
        return;
    }
    if (time_runs(st, [&](std::string &err) { return mpi_pingpong_rtt(btl, err); }))
        st.SetLabel(std::string("mpirun -np 2 --mca btl self,") + btl);
#else
    (void)btl;
    st.SkipWithError("Open MPI not found by configure (apt-get install openmpi-bin "
                     "libopenmpi-dev, then configure again)");
#endif
}

} // namespace

DISCO_FUNCTION(echo_bytes)
DISCO_NOWAIT_FUNCTION(echo_bytes_nowait)
DISCO_FUNCTION(bytes_length)

#define SIZES ->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20)->Arg(16 << 20)->Arg(64 << 20)

BENCHMARK(BM_remotecall_fetch_rtt)->Arg(8)->UseRealTime();
BENCHMARK(BM_argument_bandwidth) SIZES->UseRealTime();
BENCHMARK(BM_memcpy) SIZES->UseRealTime();
BENCHMARK(BM_cma_read) SIZES->UseRealTime();
BENCHMARK(BM_shm_pingpong_rtt)->Arg(8)->UseRealTime();
BENCHMARK(BM_remotecall_fetch_over_floor)->Arg(8)->Iterations(40)->UseRealTime();
BENCHMARK(BM_remotecall_fetch_pinned)->Arg(8)->Iterations(100)->UseRealTime();
BENCHMARK_CAPTURE(BM_fi_pingpong, shm, "shm")->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_fi_pingpong, tcp, "tcp")->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_mpi_pingpong, shm, "vader")->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_mpi_pingpong, tcp, "tcp")->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

int main(int argc, char **argv)
{
    // A 64 MiB argument plus its encoding exceeds the default 64 MiB frame
    // limit; workers inherit the master's environment, so this reaches them.
    setenv("DISCO_MAX_FRAME", "80M", 0);
    // A worker of BM_remotecall_fetch_pinned: bound before disco starts
    // its threads, so that they all inherit the binding.
    if (const char *cpu = getenv(kBindEnv)) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(std::atoi(cpu), &one);
        if (sched_setaffinity(0, sizeof(one), &one) != 0)
            std::perror("bench_transport: worker binding");
    }
    disco_init(&argc, &argv); // a worker never returns from here
    // --benchmark_list_tests must not start workers (Initialize eats it).
    bool listing = false;
    for (int i = 1; i < argc; i++)
        listing |= std::strstr(argv[i], "list_tests") != nullptr;
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    if (!listing && disco_addprocs(1, nullptr, &worker_pid) != 1) {
        fprintf(stderr, "bench_transport: addprocs failed: %s\n", last_error_text().c_str());
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return listing ? 0 : disco_finalize();
}
