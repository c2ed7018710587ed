/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The libfabric transport, driven through disco__ofi_ops only: two
 * transports in one process, and forked children as real peers. The whole
 * set runs once per provider among shm and tcp (tcp;ofi_rxm); a provider
 * that fi_getinfo does not offer here skips its set. The endpoints are
 * tests/xport_ep.h's, opened with the provider as init's argument.
 */
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/transport.h"
#include "disco.h"
#include "test_util.h"
#include "xport_cases.h"
#include "xport_ep.h"

static const disco_transport_ops *const T = &disco__ofi_ops;

/* The provider of the running group, and whether it exists here. */
static const char *prov;
static bool prov_ok;

#define NEED_PROVIDER()                                                        \
    do {                                                                       \
        if (!prov_ok) {                                                        \
            print_message("provider %s not offered here: skipped\n", prov);    \
            skip();                                                            \
        }                                                                      \
    } while (0)

/* Connects a to b, then waits for a byte back: a byte back means the
 * connector has the ACK (it is numbered first), so the tests start from two
 * open ends. The byte is not counted among what a received. */
static disco_conn *connect_acked(ep *a, ep *b, disco_conn **bc)
{
    disco_conn *c = connect_pair(a, b, bc);
    size_t got = ep_rxtotal(a);
    assert_int_equal(ep_send(b, *bc, "", 1, NULL), 0);
    PUMP_UNTIL(a, b, ep_rxtotal(a) > got);
    pthread_mutex_lock(&a->mu);
    a->rxtotal--, a->rxlen -= a->rxlen > 0, a->nrecv--;
    a->hash = FNV_INIT;
    pthread_mutex_unlock(&a->mu);
    return c;
}

/* ---- tests -------------------------------------------------------------- */

static void test_ops_table(void **state)
{
    (void)state;
    assert_int_equal(T->size, sizeof(disco_transport_ops));
    assert_string_equal(T->name, "ofi");
    assert_true(T->caps & DISCO_TRANSPORT_CAP_STREAM);
    assert_true(T->caps & DISCO_TRANSPORT_CAP_RMA);
    assert_false(T->caps & DISCO_TRANSPORT_CAP_CLOSE);
    assert_true(T->rank > 0 && T->rank < 20);
    assert_true(T->eager_max > 0);
    /* Every slot, RMA included, up to the batch pair: libfabric's FI_MORE
     * has no flush of its own, so batches go out message by message. */
    void (*const *slot)(void) = (void (*const *)(void))&T->init;
    for (; (const char *)slot < (const char *)&T->send_more; slot++)
        assert_non_null(*slot);
    assert_null(T->send_more);
    assert_null(T->flush);
    assert_null(T->send_copy); /* libfabric sends from the buffer: nothing to gain */
}

static void test_bad_arguments(void **state)
{
    (void)state;
    NEED_PROVIDER();
    disco_transport *tp = NULL;
    disco_transport_callbacks partial = ep_callbacks;
    partial.on_sent = NULL;
    assert_int_equal(T->init(&tp, NULL, prov, &partial, NULL), DISCO_EINVAL);
    assert_int_equal(T->init(NULL, NULL, prov, &ep_callbacks, NULL), DISCO_EINVAL);
    assert_int_equal(T->init(&tp, NULL, "", &ep_callbacks, NULL), DISCO_EINVAL);
    assert_int_equal(T->init(&tp, NULL, "nosuchprovider", &ep_callbacks, NULL),
                     DISCO_ENOSYS);
    assert_non_null(strstr(disco_error_message(disco_last_error()), "nosuchprovider"));
    assert_null(tp);
    assert_int_equal(T->progress(NULL, 0), DISCO_EINVAL);
    assert_int_equal(T->send(NULL, NULL, 0, NULL), DISCO_EINVAL);
    T->conn_close(NULL);
    T->interrupt(NULL);
    T->fini(NULL);

    ep a;
    ep_open(&a, T, NULL, prov);
    uint64_t caps = T->caps_of(a.tp);
    assert_int_equal(caps & ~T->caps, 0);
    assert_true(caps & DISCO_TRANSPORT_CAP_STREAM);
    assert_true(caps & DISCO_TRANSPORT_CAP_SAME_NODE);
    assert_true(caps & DISCO_TRANSPORT_CAP_RMA); /* both providers have it */
    assert_true(!(caps & DISCO_TRANSPORT_CAP_CROSS_NODE) == !strcmp(prov, "shm"));
    char small[8];
    assert_int_equal(T->local_address(a.tp, small, sizeof(small)), DISCO_EINVAL);
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(T->local_address(a.tp, addr, sizeof(addr)), 0);
    char scheme[32];
    snprintf(scheme, sizeof(scheme), "ofi+%s://", prov);
    assert_int_equal(strncmp(addr, scheme, strlen(scheme)), 0);
    for (const char *p = addr; *p; p++)
        assert_true(*p > ' ' && *p < 127);
    disco_conn *c = NULL;
    assert_int_equal(T->connect(a.tp, addr, NULL, NULL), DISCO_EINVAL);
    assert_int_equal(T->connect(a.tp, NULL, NULL, &c), DISCO_EINVAL);
    assert_null(c);
    uint8_t key[DISCO_TRANSPORT_KEY_MAX];
    size_t keylen;
    disco_mr *mr;
    assert_int_equal(T->mem_register(a.tp, NULL, 0, &mr, key, &keylen), DISCO_EINVAL);
    ep_close(&a);
}

static void test_bad_addresses(void **state)
{
    (void)state;
    NEED_PROVIDER();
    ep a;
    ep_open(&a, T, NULL, prov);
    char other[64], odd[64], upper[64];
    snprintf(other, sizeof(other), "ofi+%s://0102",
             strcmp(prov, "shm") ? "shm" : "tcp");
    snprintf(odd, sizeof(odd), "ofi+%s://012", prov);
    snprintf(upper, sizeof(upper), "ofi+%s://0A0B", prov);
    char nohex[64], empty[64], huge[600];
    snprintf(nohex, sizeof(nohex), "ofi+%s://zz", prov);
    snprintf(empty, sizeof(empty), "ofi+%s://", prov);
    int n = snprintf(huge, sizeof(huge), "ofi+%s://", prov);
    memset(huge + n, 'a', sizeof(huge) - (size_t)n - 1);
    huge[sizeof(huge) - 1] = '\0';
    const char *bad[] = {"", "tcp://127.0.0.1:80", "ofi://00", other, odd,
                         upper, nohex, empty, huge};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        disco_conn *c = NULL;
        disco_error_clear();
        int rc = T->connect(a.tp, bad[i], NULL, &c);
        if (rc != DISCO_EINVAL)
            fail_msg("connect(\"%.40s\") returned %d", bad[i], rc);
        assert_null(c);
        assert_non_null(strstr(disco_error_message(disco_last_error()),
                               "bad address"));
    }
    ep_close(&a);
}

/* The address of a transport that is gone: a child opens one, prints its
 * address and exits. (Not one closed in this process: shm 1.17 keeps a
 * closed endpoint's region in its per-process table, and a later
 * fi_av_insert of its name reads it after it was unmapped.) */
static void gone_address(char *addr, size_t len)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        execl("/proc/self/exe", "test_ofi", "child", prov, "gone", "-", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], addr, len - 1);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(n > 0);
    addr[n] = '\0';
}

/* In the child: a transport's address on stdout, then exit. */
static int gone_main(void)
{
    disco_transport *tp;
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    if (T->init(&tp, NULL, prov, &ep_callbacks, NULL) != 0 ||
        T->local_address(tp, addr, sizeof(addr)) != 0)
        return 2;
    T->fini(tp);
    return fputs(addr, stdout) < 0 || fflush(stdout) != 0 ? 3 : 0;
}

/* In the child: what a worker does when its master is gone, quiesce and
 * _exit without fini. */
static int quiesce_main(void)
{
    disco_transport *tp;
    if (T->init(&tp, NULL, prov, &ep_callbacks, NULL) != 0)
        return 2;
    T->quiesce(tp);
    _exit(0);
}

/* A well-formed address nobody listens on (a transport that is gone): a
 * negative status at once, or on_close(< 0) soon; never a hang. */
static void test_connect_unreachable(void **state)
{
    (void)state;
    NEED_PROVIDER();
    ep a;
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    gone_address(addr, sizeof(addr));
    ep_open(&a, T, NULL, prov);
    disco_conn *c = NULL;
    rec r = {0};
    int rc = T->connect(a.tp, addr, &a, &c);
    if (rc == 0) {
        assert_non_null(c);
        assert_int_equal(ep_send(&a, c, "x", 1, &r), 0); /* queued meanwhile */
        PUMP_UNTIL(&a, NULL, ep_nclosed(&a) == 1);
        assert_ptr_equal(a.closed[0], c);
        assert_true(a.close_status[0] < 0);
        assert_true(a.close_msg[0] != '\0');
        print_message("unreachable %s peer: %s\n", prov, a.close_msg);
        assert_int_equal(atomic_load(&r.count), 1); /* failed before on_close */
        assert_true(atomic_load(&r.status) < 0);
        assert_int_equal(ep_send(&a, c, "y", 1, NULL), DISCO_ECLOSED);
        T->conn_close(c);
    } else {
        assert_true(rc < 0);
        assert_null(c);
    }
    ep_close(&a);
}

static void test_exchange(void **state)
{
    (void)state;
    NEED_PROVIDER();
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    ep_store(&a, 64);
    ep_store(&b, 64);
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(T->local_address(b.tp, addr, sizeof(addr)), 0);
    disco_conn *ac = NULL;
    assert_int_equal(T->connect(a.tp, addr, &a, &ac), 0);
    /* Sends may be queued before the connection is up. */
    rec r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0};
    assert_int_equal(ep_send(&a, ac, "hel", 3, &r1), 0);
    struct iovec v[3] = {{"lo", 2}, {"", 0}, {" b", 2}};
    assert_int_equal(T->send(ac, v, 3, &r2), 0);
    assert_int_equal(T->send(ac, NULL, 0, &r3), 0);
    assert_int_equal(atomic_load(&r1.count), 0); /* deferred */
    PUMP_UNTIL(&a, &b, ep_naccepted(&b) == 1 && ep_rxtotal(&b) == 7);
    assert_memory_equal(b.rx, "hello b", 7);
    disco_conn *bc = b.accepted[0];
    assert_int_equal(ep_send(&b, bc, "hi a", 4, &r4), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&a) == 4 && atomic_load(&r4.count) == 1 &&
                           atomic_load(&r3.count) == 1);
    assert_memory_equal(a.rx, "hi a", 4);
    pump_for(&a, &b, 20);
    rec *rs[] = {&r1, &r2, &r3, &r4};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(atomic_load(&rs[i]->count), 1);
        assert_int_equal(atomic_load(&rs[i]->status), 0);
    }
    assert_true(atomic_load(&r1.seq) < atomic_load(&r2.seq));
    assert_true(atomic_load(&r2.seq) < atomic_load(&r3.seq));
    assert_true(strlen(T->conn_peer(ac)) > 0);
    assert_true(strlen(T->conn_peer(bc)) > 0);
    assert_ptr_equal(T->conn_context(ac), &a);
    assert_null(T->conn_context(bc));
    T->conn_set_context(bc, &b);
    assert_ptr_equal(T->conn_context(bc), &b);
    assert_int_equal(ep_nclosed(&a) + ep_nclosed(&b), 0);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

/* Larger than a receive buffer (and than all of them): split, intact. */
static void test_big_message(void **state)
{
    (void)state;
    NEED_PROVIDER();
    const size_t size = 16u << 20;
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    fill_random(buf, size, 0x9e3779b97f4a7c15ull);
    uint64_t want = fnv(FNV_INIT, buf, size);
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    disco_conn *bc, *ac = connect_acked(&a, &b, &bc);
    struct iovec v[3] = {{buf, 1}, {buf + 1, size - 2}, {buf + size - 1, 1}};
    rec r = {0};
    assert_int_equal(T->send(ac, v, 3, &r), 0);
    assert_int_equal(atomic_load(&r.count), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == size && atomic_load(&r.count) == 1);
    assert_int_equal(atomic_load(&r.status), 0);
    assert_true(b.nrecv > 1);
    assert_true(b.hash == want);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
    free(buf);
}

static void test_many_iovecs(void **state)
{
    (void)state;
    NEED_PROVIDER();
    enum { N = 3000 }; /* far above any provider's iov_limit */
    static uint8_t data[N * 7];
    static struct iovec v[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        v[i].iov_base = data + total;
        v[i].iov_len = (size_t)(i % 7);
        total += v[i].iov_len;
    }
    fill_random(data, total, 42);
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    ep_store(&b, 2 * total);
    disco_conn *bc, *ac = connect_acked(&a, &b, &bc);
    rec r[2] = {{0}};
    assert_int_equal(T->send(ac, v, N, &r[0]), 0);
    assert_int_equal(T->send(ac, v, N, &r[1]), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == 2 * total && atomic_load(&r[1].count));
    assert_memory_equal(b.rx, data, total);
    assert_memory_equal(b.rx + total, data, total);
    assert_int_equal(atomic_load(&r[0].status), 0);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

/* 10000 × 4 KiB while the receiver does not progress for a while: send
 * never blocks nor fails, everything arrives in order afterwards. */
static void test_backpressure(void **state)
{
    (void)state;
    NEED_PROVIDER();
    enum { N = 10000, SZ = 4096 };
    uint8_t *msgs = malloc((size_t)N * SZ);
    assert_non_null(msgs);
    for (uint32_t i = 0; i < N; i++)
        for (size_t k = 0; k < SZ; k += 4)
            memcpy(msgs + (size_t)i * SZ + k, &i, 4);
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    ep_store(&b, (size_t)N * SZ);
    disco_conn *bc, *ac = connect_acked(&a, &b, &bc);
    (void)bc;
    static rec r[N];
    memset(r, 0, sizeof(r));
    double t0 = now_s();
    for (int i = 0; i < N; i++)
        assert_int_equal(ep_send(&a, ac, msgs + (size_t)i * SZ, SZ, &r[i]), 0);
    double t_send = now_s() - t0;
    pump_for(&a, NULL, 200); /* b does not progress */
    t0 = now_s();
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == (size_t)N * SZ &&
                           atomic_load(&a.sent_ok) == N);
    double t_drain = now_s() - t0;
    assert_memory_equal(b.rx, msgs, (size_t)N * SZ);
    for (int i = 1; i < N; i++)
        assert_true(atomic_load(&r[i - 1].seq) < atomic_load(&r[i].seq));
    print_message("%s: 10000 x 4 KiB queued in %.1f ms, drained in %.1f ms "
                  "(%.0f MB/s)\n",
                  prov, t_send * 1e3, t_drain * 1e3, N * SZ / t_drain / 1e6);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
    free(msgs);
}

/* A burst of small messages while the receiver does not progress: far more
 * than its receive buffers, so the provider queues most as unexpected until
 * buffers are posted again. Every one must come, in order. (shm 1.17 picks
 * the queued message for a new receive by a tag mask left in its queue
 * entry by an earlier receive: a message queued in an entry no receive had
 * used matched no receive unless its tag was the receive's, and the stream
 * stopped at the first such message.) */
static void test_burst_of_small_sends(void **state)
{
    (void)state;
    NEED_PROVIDER();
    enum { N = 1000 };
    static uint32_t vals[N];
    for (uint32_t i = 0; i < N; i++)
        vals[i] = i;
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    ep_store(&b, sizeof(vals));
    disco_conn *bc, *ac = connect_acked(&a, &b, &bc);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ep_send(&a, ac, &vals[i], sizeof(vals[i]), NULL), 0);
        /* a takes its completions back, so that each send goes out as a
         * message of its own instead of joining a queued buffer. */
        T->progress(a.tp, 0);
    }
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == sizeof(vals) &&
                           atomic_load(&a.sent_ok) == N);
    assert_memory_equal(b.rx, vals, sizeof(vals));
    print_message("%s: %d sends arrived as %ld messages\n", prov, N, b.nrecv);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

static void test_two_threads_send(void **state)
{
    (void)state;
    NEED_PROVIDER();
    xport_case_two_threads_send(T, prov, connect_acked);
}

static void test_peer_close(void **state)
{
    (void)state;
    NEED_PROVIDER();
    xport_case_peer_close(T, prov, connect_acked);
}

/* A connect closed before its ACK came: the CLOSE cannot go (the ACK
 * brings the acceptor's id), so the late ACK is answered with it, and the
 * acceptor's end closes too. */
static void test_close_before_ack(void **state)
{
    (void)state;
    NEED_PROVIDER();
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(T->local_address(b.tp, addr, sizeof(addr)), 0);
    disco_conn *ac = NULL;
    assert_int_equal(T->connect(a.tp, addr, &a, &ac), 0);
    rec r = {0};
    assert_int_equal(ep_send(&a, ac, "never", 5, &r), 0);
    /* Until b accepted (its ACK is on the way then), a progresses only
     * before b did: a never reads the ACK before the close. A HELLO never
     * sent would leave nothing to close at b. */
    double deadline = now_s() + DEADLINE_S;
    while (now_s() < deadline && T->progress(b.tp, 1) >= 0 && ep_naccepted(&b) == 0)
        T->progress(a.tp, 0);
    assert_int_equal(ep_naccepted(&b), 1);
    T->conn_close(ac);
    atomic_store(&a.dead, (uintptr_t)ac);
    assert_int_equal(atomic_load(&r.count), 1);
    assert_int_equal(atomic_load(&r.status), DISCO_ECLOSED);
    PUMP_UNTIL(&a, &b, ep_naccepted(&b) == 1 && ep_nclosed(&b) == 1);
    assert_ptr_equal(b.closed[0], b.accepted[0]);
    assert_int_equal(b.close_status[0], 0);
    assert_int_equal(ep_rxtotal(&b), 0);
    pump_for(&a, &b, 30);
    assert_int_equal(atomic_load(&a.late), 0);
    assert_int_equal(ep_nclosed(&a), 0);
    T->conn_close(b.accepted[0]);
    ep_close(&a);
    ep_close(&b);
}

static void test_close_with_queued_sends(void **state)
{
    (void)state;
    NEED_PROVIDER();
    enum { N = 64 };
    const size_t chunk = 1u << 20;
    uint8_t *buf = calloc(1, chunk);
    assert_non_null(buf);
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    disco_conn *bc, *ac = connect_acked(&a, &b, &bc);
    rec r[N] = {{0}};
    for (int i = 0; i < N; i++)
        assert_int_equal(ep_send(&a, ac, buf, chunk, &r[i]), 0);
    T->conn_close(ac); /* completes everything before it returns */
    atomic_store(&a.dead, (uintptr_t)ac);
    int failed = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&r[i].count), 1);
        if (atomic_load(&r[i].status) != 0) {
            assert_int_equal(atomic_load(&r[i].status), DISCO_ECLOSED);
            failed++;
        }
    }
    assert_true(failed > 0);
    for (int i = 1; i < N; i++) /* in order: successes first */
        if (atomic_load(&r[i].status) == 0)
            assert_int_equal(atomic_load(&r[i - 1].status), 0);
    PUMP_UNTIL(&a, &b, ep_nclosed(&b) == 1);
    pump_for(&a, &b, 30);
    assert_int_equal(atomic_load(&a.late), 0);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
    free(buf);
}

static void test_close_inside_callback(void **state)
{
    (void)state;
    NEED_PROVIDER();
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    disco_conn *bc, *ac = connect_acked(&a, &b, &bc);
    pthread_mutex_lock(&b.mu);
    b.close_in_recv = true;
    b.echo_ack = true;
    pthread_mutex_unlock(&b.mu);
    assert_int_equal(ep_send(&a, ac, "ping", 4, NULL), 0);
    PUMP_UNTIL(&a, &b, atomic_load(&b.dead) == (uintptr_t)bc);
    PUMP_UNTIL(&a, &b, ep_nclosed(&a) == 1);
    pump_for(&a, &b, 30);
    assert_int_equal(atomic_load(&b.late), 0);
    /* connect_acked's byte and the echo: each reported once, by progress or
     * by the close. */
    assert_int_equal(atomic_load(&b.sent_ok) + atomic_load(&b.sent_err), 2);
    assert_int_equal(ep_nclosed(&b), 0);
    T->conn_close(ac);
    ep_close(&a);
    ep_close(&b);
}

static void test_close_while_progress_runs(void **state)
{
    (void)state;
    NEED_PROVIDER();
    xport_case_close_while_progress_runs(T, prov, connect_acked);
}

static void test_interrupt(void **state)
{
    (void)state;
    NEED_PROVIDER();
    xport_case_interrupt(T, prov);
}

static void test_wait_fd(void **state)
{
    (void)state;
    NEED_PROVIDER();
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    disco_conn *bc, *ac = connect_acked(&a, &b, &bc);
    pump_for(&a, &b, 20);
    int fd = T->wait_fd(b.tp);
    assert_true(fd >= 0);
    assert_int_equal(T->wait_fd(b.tp), fd);
    /* shm (libfabric 1.17) has no completion fd: the transport polls, and
     * an armed wait fd ticks every OFI_POLL_MS instead of staying quiet. */
    bool ticks = strcmp(prov, "shm") == 0;
    /* Armed and idle: quiet (a provider may ask for one more round). */
    int armed = 1;
    for (int i = 0; i < 100 && armed; i++)
        if ((armed = T->wait_arm(b.tp)) > 0)
            T->progress(b.tp, 0);
    assert_int_equal(armed, 0);
    assert_true(fd_readable(fd, 50) == ticks);
    size_t before = ep_rxtotal(&b);
    assert_int_equal(ep_send(&a, ac, "wake", 4, NULL), 0);
    double deadline = now_s() + DEADLINE_S;
    while (ep_rxtotal(&b) < before + 4 && now_s() < deadline) {
        /* a's provider may need a's progress to put the message out */
        T->progress(a.tp, 0);
        if (fd_readable(fd, 10))
            T->progress(b.tp, 0);
    }
    assert_int_equal(ep_rxtotal(&b), before + 4);

    armed = 1;
    for (int i = 0; i < 100 && armed; i++)
        if ((armed = T->wait_arm(b.tp)) > 0)
            T->progress(b.tp, 0);
    assert_int_equal(armed, 0);
    if (!ticks)
        assert_false(fd_readable(fd, 20));
    T->interrupt(b.tp);
    assert_true(fd_readable(fd, DEADLINE_S * 1000));
    assert_true(T->progress(b.tp, 0) >= 0);
    assert_int_equal(T->wait_arm(b.tp), 0);
    if (!ticks)
        assert_false(fd_readable(fd, 0)); /* progress consumed the wake-up */
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

/* ---- forked children as peers -------------------------------------------- */

enum { CHILD_ECHO, CHILD_RMA, CHILD_SPIN };
#define RMA_LEN ((size_t)64 << 20)
#define ECHO_LEN ((size_t)1 << 20)

typedef struct child {
    int mode;
    uint8_t *buf;
    size_t len, got, echoed;
    bool failed, done;
    disco_transport *tp;
} child;

static void child_accept(void *ctx, disco_conn *c) { (void)ctx; T->conn_close(c); }

static void child_recv(void *ctx, disco_conn *c, const uint8_t *data, size_t len)
{
    child *ch = ctx;
    if (ch->mode == CHILD_RMA) { /* the parent's "done" */
        ch->done = true;
        return;
    }
    /* Sends nothing back: a shm child killed inside a send to the parent
     * would leave the lock of the parent's own region taken, and the
     * parent could not even progress (a provider limit, not under test). */
    if (ch->mode == CHILD_SPIN)
        return;
    if (ch->got + len > ch->len) {
        fprintf(stderr, "child: %zu bytes more than expected\n", ch->got + len - ch->len);
        ch->failed = true;
        return;
    }
    memcpy(ch->buf + ch->got, data, len);
    struct iovec v = {ch->buf + ch->got, len};
    ch->got += len;
    if (T->send(c, &v, 1, (void *)(uintptr_t)len) != 0)
        ch->failed = true;
}

/* The child's failures go to stderr: the parent's test log shows them. */
static void child_close(void *ctx, disco_conn *c, int status)
{
    (void)c;
    fprintf(stderr, "child: on_close(%d): %s\n", status,
            status ? disco_error_message(disco_last_error()) : "");
    ((child *)ctx)->failed = true;
}

static void child_sent(void *ctx, disco_conn *c, void *token, int status)
{
    (void)c;
    child *ch = ctx;
    if (status) {
        fprintf(stderr, "child: on_sent(%d): %s\n", status,
                disco_error_message(disco_last_error()));
        ch->failed = true;
    }
    ch->echoed += (uintptr_t)token;
}

/* Runs in the child: connect; echo len bytes, or offer a registered buffer
 * for the parent to read until it says done, or send a byte and poll until
 * killed. Exit status 0 = ok. */
static int child_main(const char *addr, int mode, size_t len)
{
    alarm(120);
    child ch = {.mode = mode, .buf = malloc(len), .len = len};
    const disco_transport_callbacks cbs = {.on_accept = child_accept,
                                           .on_recv = child_recv,
                                           .on_close = child_close,
                                           .on_sent = child_sent};
    disco_conn *c;
    if (!ch.buf || T->init(&ch.tp, NULL, prov, &cbs, &ch) != 0) {
        fprintf(stderr, "child: %s\n", disco_error_message(disco_last_error()));
        return 2;
    }
    if (T->connect(ch.tp, addr, NULL, &c) != 0)
        return 3;
    disco_mr *mr = NULL;
    /* Borrowed by send until on_sent: it must outlive the connect. */
    uint8_t msg[8 + DISCO_TRANSPORT_KEY_MAX];
    if (mode == CHILD_RMA) {
        fill_random(ch.buf, len, 99);
        size_t keylen;
        if (T->mem_register(ch.tp, ch.buf, len, &mr, msg + 8, &keylen) != 0)
            return 4;
        uint64_t a = (uint64_t)(uintptr_t)ch.buf;
        memcpy(msg, &a, 8);
        struct iovec v = {msg, 8 + keylen};
        if (T->send(c, &v, 1, NULL) != 0)
            return 5;
    }
    if (mode == CHILD_SPIN) {
        struct iovec v = {"s", 1};
        if (T->send(c, &v, 1, NULL) != 0)
            return 5;
        for (;;) /* as busy as it gets: the parent kills us */
            T->progress(ch.tp, 0);
    }
    double deadline = now_s() + DEADLINE_S;
    while (!ch.failed && now_s() < deadline &&
           !(mode == CHILD_RMA ? ch.done : ch.echoed == len))
        T->progress(ch.tp, 10);
    bool ok = !ch.failed && (mode == CHILD_RMA ? ch.done : ch.echoed == len);
    T->conn_close(c);
    if (mr)
        T->mem_deregister(mr);
    T->fini(ch.tp);
    free(ch.buf);
    return ok ? 0 : 6;
}

/* The child execs this binary afresh: libfabric's state does not survive a
 * fork (shm keeps the parent's pid for its CMA copies). */
static pid_t fork_child(ep *a, int mode)
{
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(T->local_address(a->tp, addr, sizeof(addr)), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_ofi", "child", prov,
              mode == CHILD_RMA ? "rma" : mode == CHILD_SPIN ? "spin" : "echo", addr,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void wait_child(pid_t pid)
{
    int status = 0;
    double deadline = now_s() + DEADLINE_S;
    while (waitpid(pid, &status, WNOHANG) == 0 && now_s() < deadline)
        sleep_ms(5);
    if (now_s() >= deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A process that quiesces and _exits leaves nothing behind: libfabric's
 * shm provider names a region in /dev/shm after the pid, which only the
 * endpoint's close removes. */
static void test_quiesce_then_exit(void **state)
{
    (void)state;
    NEED_PROVIDER();
    fflush(NULL);
    double since = test_wall_s();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_ofi", "child", prov, "quiesce", "-", (char *)NULL);
        _exit(127);
    }
    wait_child(pid);
    assert_false(test_shm_region_left(pid, since));
}

static void test_forked_peer(void **state)
{
    (void)state;
    NEED_PROVIDER();
    const size_t len = ECHO_LEN;
    uint8_t *msg = malloc(len);
    assert_non_null(msg);
    fill_random(msg, len, 7);
    ep a;
    ep_open(&a, T, NULL, prov);
    ep_store(&a, len);
    pid_t pid = fork_child(&a, CHILD_ECHO);
    PUMP_UNTIL(&a, NULL, ep_naccepted(&a) == 1);
    disco_conn *c = a.accepted[0];
    rec r = {0};
    assert_int_equal(ep_send(&a, c, msg, len, &r), 0);
    PUMP_UNTIL(&a, NULL, ep_rxtotal(&a) == len);
    assert_memory_equal(a.rx, msg, len);
    PUMP_UNTIL(&a, NULL, atomic_load(&r.count) == 1);
    PUMP_UNTIL(&a, NULL, ep_nclosed(&a) == 1); /* the child closes */
    assert_int_equal(a.close_status[0], 0);
    wait_child(pid);
    T->conn_close(c);
    ep_close(&a);
    free(msg);
}

typedef struct abandon_job {
    disco_conn *c;
    atomic_bool done;
} abandon_job;

static void *abandon_main(void *arg)
{
    abandon_job *j = arg;
    T->conn_abandon(j->c);
    atomic_store(&j->done, true);
    return NULL;
}

/* A peer killed while it takes in a stream: conn_abandon (what the core
 * calls once a peer is gone) sends it nothing, reports nothing and returns,
 * and fini returns. A shm peer killed inside its progress keeps its
 * region's lock for good, and a CLOSE to it would spin forever; a kill
 * lands there rarely, so this asserts the contract more than it hunts. */
static void test_abandon_killed_peer(void **state)
{
    (void)state;
    NEED_PROVIDER();
    for (int i = 0; i < 5; i++) {
        ep a;
        ep_open(&a, T, NULL, prov);
        double since = test_wall_s();
        pid_t pid = fork_child(&a, CHILD_SPIN);
        PUMP_UNTIL(&a, NULL, ep_naccepted(&a) == 1 && ep_rxtotal(&a) == 1);
        /* Killed while it takes in a stream: inside shm's progress. */
        static const uint64_t word = 42;
        for (int k = 0; k < 200; k++) {
            assert_int_equal(ep_send(&a, a.accepted[0], &word, sizeof(word), NULL), 0);
            T->progress(a.tp, 0);
        }
        kill(pid, SIGKILL);
        /* Dead but not reaped (the pid stays its own): process_ended
         * removes the region the kill left. */
        siginfo_t si;
        assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
        T->process_ended(a.tp, pid);
        assert_false(test_shm_region_left(pid, since));
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        abandon_job j = {.c = a.accepted[0]};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, abandon_main, &j), 0);
        double deadline = now_s() + DEADLINE_S;
        while (!atomic_load(&j.done) && now_s() < deadline)
            sleep_ms(1);
        if (!atomic_load(&j.done))
            fail_msg("conn_abandon of a killed peer's connection did not return "
                     "(kill %d)", i);
        pthread_join(th, NULL);
        assert_int_equal(ep_nclosed(&a), 0); /* abandoned: no callback */
        ep_close(&a);
    }
}

/* rma_read of 64 MiB from a child's registered buffer. */
static void test_rma_read(void **state)
{
    (void)state;
    NEED_PROVIDER();
    uint8_t *want = malloc(RMA_LEN), *dst = calloc(1, RMA_LEN);
    assert_non_null(want);
    assert_non_null(dst);
    fill_random(want, RMA_LEN, 99);
    ep a;
    ep_open(&a, T, NULL, prov);
    ep_store(&a, 8 + DISCO_TRANSPORT_KEY_MAX);
    pid_t pid = fork_child(&a, CHILD_RMA);
    PUMP_UNTIL(&a, NULL, ep_naccepted(&a) == 1 && ep_rxtotal(&a) >= 8 + 16);
    disco_conn *c = a.accepted[0];
    uint64_t raddr;
    memcpy(&raddr, a.rx, 8);
    size_t keylen = a.rxlen - 8;
    uint8_t key[DISCO_TRANSPORT_KEY_MAX];
    memcpy(key, a.rx + 8, keylen);

    disco_mr *mr;
    uint8_t mykey[DISCO_TRANSPORT_KEY_MAX];
    size_t mykeylen;
    assert_int_equal(T->mem_register(a.tp, dst, RMA_LEN, &mr, mykey, &mykeylen), 0);
    rec r = {0};
    double t0 = now_s();
    assert_int_equal(T->rma_read(c, dst, mr, raddr, RMA_LEN, key, keylen, &r), 0);
    assert_int_equal(atomic_load(&r.count), 0); /* deferred */
    PUMP_UNTIL(&a, NULL, atomic_load(&r.count) == 1);
    double t = now_s() - t0;
    assert_int_equal(atomic_load(&r.status), 0);
    assert_memory_equal(dst, want, RMA_LEN);
    print_message("%s: rma_read of 64 MiB in %.1f ms (%.0f MB/s)\n", prov, t * 1e3,
                  RMA_LEN / t / 1e6);

    assert_int_equal(ep_send(&a, c, "d", 1, NULL), 0);
    PUMP_UNTIL(&a, NULL, ep_nclosed(&a) == 1);
    wait_child(pid);
    T->conn_close(c);
    T->mem_deregister(mr);
    ep_close(&a);
    free(want);
    free(dst);
}

/* A key that names no registration: the read fails, or (shm: CMA reads
 * the peer's memory without looking at keys) reads the right bytes. It
 * may break the connection (tcp;ofi_rxm drops its link to a peer that sent
 * a bad request), so two transports of this process are the peers, not a
 * child. A key of the wrong length is refused at once. */
static void test_rma_bad_key(void **state)
{
    (void)state;
    NEED_PROVIDER();
    enum { LEN = 4096 };
    static uint8_t src[LEN], dst[LEN];
    fill_random(src, LEN, 5);
    memset(dst, 0, LEN);
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    disco_conn *bc, *ac = connect_acked(&a, &b, &bc);
    disco_mr *smr, *dmr;
    uint8_t key[DISCO_TRANSPORT_KEY_MAX], dkey[DISCO_TRANSPORT_KEY_MAX];
    size_t keylen, dkeylen;
    assert_int_equal(T->mem_register(b.tp, src, LEN, &smr, key, &keylen), 0);
    assert_int_equal(T->mem_register(a.tp, dst, LEN, &dmr, dkey, &dkeylen), 0);
    uint64_t raddr = (uint64_t)(uintptr_t)src;
    rec r = {0};
    assert_int_equal(T->rma_read(ac, dst, dmr, raddr, LEN, key, 3, &r), DISCO_EINVAL);
    key[0] ^= 0x5a;
    key[1] ^= 0xa5;
    int rc = T->rma_read(ac, dst, dmr, raddr, LEN, key, keylen, &r);
    if (rc == 0) {
        PUMP_UNTIL(&a, &b, atomic_load(&r.count) == 1);
        if (atomic_load(&r.status) == 0)
            assert_memory_equal(dst, src, LEN);
        print_message("%s: a read with a bad key: %s\n", prov,
                      disco_strerror(atomic_load(&r.status)));
    } else {
        assert_true(rc < 0);
    }
    T->conn_close(ac);
    T->conn_close(bc);
    T->mem_deregister(smr);
    T->mem_deregister(dmr);
    ep_close(&a);
    ep_close(&b);
}

/* Everything a transport opened is closed by fini. */
static void test_no_fd_leak(void **state)
{
    (void)state;
    NEED_PROVIDER();
    /* libfabric opens its own lasting descriptors on first use: warm up. */
    ep w;
    ep_open(&w, T, NULL, prov);
    ep_close(&w);
    int fds = count_fds();
    ep a, b;
    ep_open(&a, T, NULL, prov);
    ep_open(&b, T, NULL, prov);
    disco_conn *bc, *ac = connect_acked(&a, &b, &bc);
    rec r = {0};
    assert_int_equal(ep_send(&a, ac, "x", 1, &r), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == 1 && atomic_load(&r.count) == 1);
    assert_true(count_fds() > fds);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
    assert_int_equal(count_fds(), fds);
}

/* Every case runs once per provider, in one cmocka group (one TAP plan):
 * a case's setup selects its provider, probed once. shm and tcp run by
 * default; verbs when DISCO_TEST_OFI_PROVIDERS names it (scripts/check-rdma
 * does, in a VM with a soft-RoCE device). */
static const char *const provs[] = {"shm", "tcp", "verbs"};
#define DEFAULT_PROVS 2
static int prov_state[3]; /* 0: not probed, 1: offered, -1: not offered */

static int select_provider(void **state)
{
    size_t i = (size_t)(uintptr_t)*state;
    prov = provs[i];
    if (prov_state[i] == 0) {
        disco_transport *tp;
        prov_state[i] = T->init(&tp, NULL, prov, &ep_callbacks, NULL) == 0 ? 1 : -1;
        if (prov_state[i] > 0)
            T->fini(tp);
        else
            print_message("ofi:%s: %s\n", prov, disco_error_message(disco_last_error()));
    }
    prov_ok = prov_state[i] > 0;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "child") == 0) { /* see fork_child */
        prov = argv[2];
        if (strcmp(argv[3], "gone") == 0)
            return gone_main();
        if (strcmp(argv[3], "quiesce") == 0)
            return quiesce_main();
        bool rma = strcmp(argv[3], "rma") == 0;
        return child_main(argv[4],
                          rma ? CHILD_RMA : strcmp(argv[3], "spin") == 0 ? CHILD_SPIN
                                                                        : CHILD_ECHO,
                          rma ? RMA_LEN : ECHO_LEN);
    }
    /* A connect that gets no answer fails after this long. */
    setenv("DISCO_OFI_CONNECT_TIMEOUT", "10", 0);
    signal(SIGPIPE, SIG_IGN);
    static const struct {
        const char *name;
        CMUnitTestFunction fn;
    } cases[] = {
        {"test_ops_table", test_ops_table},
        {"test_bad_arguments", test_bad_arguments},
        {"test_bad_addresses", test_bad_addresses},
        {"test_connect_unreachable", test_connect_unreachable},
        {"test_exchange", test_exchange},
        {"test_big_message", test_big_message},
        {"test_many_iovecs", test_many_iovecs},
        {"test_backpressure", test_backpressure},
        {"test_burst_of_small_sends", test_burst_of_small_sends},
        {"test_two_threads_send", test_two_threads_send},
        {"test_peer_close", test_peer_close},
        {"test_close_before_ack", test_close_before_ack},
        {"test_close_with_queued_sends", test_close_with_queued_sends},
        {"test_close_inside_callback", test_close_inside_callback},
        {"test_close_while_progress_runs", test_close_while_progress_runs},
        {"test_interrupt", test_interrupt},
        {"test_wait_fd", test_wait_fd},
        {"test_forked_peer", test_forked_peer},
        {"test_quiesce_then_exit", test_quiesce_then_exit},
        {"test_abandon_killed_peer", test_abandon_killed_peer},
        {"test_rma_read", test_rma_read},
        {"test_rma_bad_key", test_rma_bad_key},
        {"test_no_fd_leak", test_no_fd_leak},
    };
    enum { NCASES = sizeof(cases) / sizeof(*cases), NPROVS = sizeof(provs) / sizeof(*provs) };
    static struct CMUnitTest tests[NCASES * NPROVS];
    static char names[NCASES * NPROVS][64];
    const char *which = getenv("DISCO_TEST_OFI_PROVIDERS");
    if (getenv("DISCO_TEST_FILTER"))
        cmocka_set_test_filter(getenv("DISCO_TEST_FILTER"));
    size_t n = 0;
    for (size_t p = 0; p < NPROVS; p++) {
        if (which ? !strstr(which, provs[p]) : p >= DEFAULT_PROVS)
            continue;
        for (size_t i = 0; i < NCASES; i++, n++) {
            snprintf(names[n], sizeof(names[n]), "%s_%s", cases[i].name, provs[p]);
            tests[n] = (struct CMUnitTest){.name = names[n],
                                           .test_func = cases[i].fn,
                                           .setup_func = select_provider,
                                           .initial_state = (void *)(uintptr_t)p};
        }
    }
    return _cmocka_run_group_tests("ofi", tests, n, NULL, NULL);
}
