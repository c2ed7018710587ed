/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The TCP transport over loopback: two transports in one process (and a
 * forked child as the peer), driven through disco__tcp_ops only, with
 * the endpoints of tests/xport_ep.h. The cases any transport passes alike
 * are tests/xport_cases.c's; what only TCP has (addresses, the sockets'
 * options, send_more, the hot connection) is here.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/transport.h"
#include "disco.h"
#include "test_util.h"
#include "xport_cases.h"
#include "xport_ep.h"

static const disco_transport_ops *const T = &disco__tcp_ops;

/* A port nobody listens on (bound, read, closed). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- file descriptors --------------------------------------------------- */

typedef struct fdscan {
    int total, sockets, epolls, eventfds, listeners;
    int no_cloexec, no_nonblock, no_nodelay, listen_not_loopback;
} fdscan;

static void scan_fds(fdscan *s)
{
    memset(s, 0, sizeof(*s));
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        int fd = atoi(de->d_name);
        if (fd == dirfd(d))
            continue;
        s->total++;
        char path[64], link[128];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n < 0)
            continue;
        link[n] = '\0';
        bool sock = strncmp(link, "socket:", 7) == 0;
        bool epoll = strstr(link, "[eventpoll]") != NULL;
        bool evfd = strstr(link, "[eventfd]") != NULL;
        if (!sock && !epoll && !evfd)
            continue;
        s->sockets += sock;
        s->epolls += epoll;
        s->eventfds += evfd;
        if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC))
            s->no_cloexec++;
        if (!sock)
            continue;
        if (!(fcntl(fd, F_GETFL) & O_NONBLOCK))
            s->no_nonblock++;
        int v = 0;
        socklen_t len = sizeof(v);
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len);
        if (v) {
            s->listeners++;
            struct sockaddr_storage ss;
            len = sizeof(ss);
            getsockname(fd, (struct sockaddr *)&ss, &len);
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            if (ss.ss_family != AF_INET ||
                s4->sin_addr.s_addr != htonl(INADDR_LOOPBACK))
                s->listen_not_loopback++;
        }
        v = 0;
        len = sizeof(v);
        if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) != 0 || !v)
            s->no_nodelay++;
    }
    closedir(d);
}

/* ---- tests -------------------------------------------------------------- */

static void test_ops_table(void **state)
{
    (void)state;
    assert_int_equal(T->size, sizeof(disco_transport_ops));
    assert_string_equal(T->name, "tcp");
    assert_true(T->caps & DISCO_TRANSPORT_CAP_STREAM);
    assert_true(T->caps & DISCO_TRANSPORT_CAP_CROSS_NODE);
    assert_non_null(T->init);
    assert_non_null(T->local_address);
    assert_non_null(T->connect);
    assert_non_null(T->send);
    assert_non_null(T->send_more);
    assert_non_null(T->flush);
    assert_null(T->send_copy); /* send borrows the buffer until on_sent */
    assert_non_null(T->progress);
    assert_non_null(T->interrupt);
    assert_non_null(T->conn_close);
    assert_non_null(T->conn_peer);
    assert_non_null(T->conn_set_context);
    assert_non_null(T->conn_context);
    assert_non_null(T->fini);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    disco_transport *tp = NULL;
    disco_transport_callbacks partial = ep_callbacks;
    partial.on_sent = NULL;
    assert_int_equal(T->init(&tp, NULL, NULL, &partial, NULL), DISCO_EINVAL);
    assert_int_equal(T->init(NULL, NULL, NULL, &ep_callbacks, NULL), DISCO_EINVAL);
    const char *hosts[] = {"", "localhost", "1.2.3", "127.0.0.1:80",
                           "[::1", "tcp://127.0.0.1", "256.0.0.1"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(*hosts); i++) {
        assert_int_equal(T->init(&tp, hosts[i], NULL, &ep_callbacks, NULL), DISCO_EINVAL);
        assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
    }
    assert_null(tp);
    assert_int_equal(T->progress(NULL, 0), DISCO_EINVAL);
    assert_int_equal(T->send(NULL, NULL, 0, NULL), DISCO_EINVAL);
    T->conn_close(NULL);
    T->interrupt(NULL);
    T->fini(NULL);

    ep a;
    ep_open(&a, T, NULL, NULL);
    char small[8];
    assert_int_equal(T->local_address(a.tp, small, sizeof(small)), DISCO_EINVAL);
    disco_conn *c = NULL;
    assert_int_equal(T->connect(a.tp, "tcp://127.0.0.1:1", NULL, NULL), DISCO_EINVAL);
    assert_int_equal(T->connect(a.tp, NULL, NULL, &c), DISCO_EINVAL);
    assert_null(c);
    ep_close(&a);
}

static void test_listen_address(void **state)
{
    (void)state;
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, "127.0.0.1", NULL);
    char addr[128];
    assert_int_equal(T->local_address(a.tp, addr, sizeof(addr)), 0);
    assert_int_equal(strncmp(addr, "tcp://127.0.0.1:", 16), 0);
    int port = atoi(addr + 16);
    assert_true(port > 0 && port < 65536);
    char again[128];
    snprintf(again, sizeof(again), "tcp://127.0.0.1:%d", port);
    assert_string_equal(addr, again);
    assert_int_equal(T->local_address(b.tp, again, sizeof(again)), 0);
    assert_string_not_equal(addr, again); /* two ephemeral ports */

    fdscan s;
    scan_fds(&s);
    assert_int_equal(s.listeners, 2);
    assert_int_equal(s.listen_not_loopback, 0);
    ep_close(&a);
    ep_close(&b);
}

static void test_bad_addresses(void **state)
{
    (void)state;
    ep a;
    ep_open(&a, T, NULL, NULL);
    int fds = count_fds();
    const char *bad[] = {
        "",
        "tcp://",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:65536",
        "tcp://127.0.0.1:99999999",
        "tcp://127.0.0.1:080",
        "tcp://127.0.0.1:12a",
        "tcp://127.0.0.1:+80",
        "tcp://127.0.0.1:-80",
        "tcp://127.0.0.1:80 ",
        "tcp://127.0.0.1:80/x",
        "tcp:// 127.0.0.1:80",
        "tcp://localhost:80",
        "tcp://1.2.3:80",
        "tcp://1.2.3.4.5:80",
        "tcp://256.1.1.1:80",
        "tcp://:80",
        "tcp://::1:80",
        "tcp://[::1:80",
        "tcp://[::1]80",
        "tcp://[127.0.0.1]:80",
        "tcp://[]:80",
        "udp://127.0.0.1:80",
        "TCP://127.0.0.1:80",
        "127.0.0.1:80",
        " tcp://127.0.0.1:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        disco_conn *c = NULL;
        disco_error_clear();
        int rc = T->connect(a.tp, bad[i], NULL, &c);
        if (rc != DISCO_EINVAL)
            fail_msg("connect(\"%s\") returned %d", bad[i], rc);
        assert_null(c);
        const disco_error *e = disco_last_error();
        assert_non_null(e);
        assert_int_equal(disco_error_code(e), DISCO_EINVAL);
        assert_non_null(strstr(disco_error_message(e), "bad address"));
    }
    assert_int_equal(count_fds(), fds); /* nothing was opened */
    ep_close(&a);
}

static void test_exchange(void **state)
{
    (void)state;
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    ep_store(&a, 64);
    ep_store(&b, 64);
    char addr[128];
    assert_int_equal(T->local_address(b.tp, addr, sizeof(addr)), 0);
    disco_conn *ac = NULL;
    assert_int_equal(T->connect(a.tp, addr, &a, &ac), 0);
    /* Sends may be queued before the connection is up. */
    rec r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0};
    assert_int_equal(ep_send(&a, ac, "hel", 3, &r1), 0);
    struct iovec v[3] = {{"lo", 2}, {"", 0}, {" b", 2}};
    assert_int_equal(T->send(ac, v, 3, &r2), 0);
    assert_int_equal(T->send(ac, NULL, 0, &r3), 0); /* empty send */
    PUMP_UNTIL(&a, &b, ep_naccepted(&b) == 1 && ep_rxtotal(&b) == 7);
    assert_memory_equal(b.rx, "hello b", 7);
    disco_conn *bc = b.accepted[0];
    assert_int_equal(ep_send(&b, bc, "hi a", 4, &r4), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&a) == 4 && atomic_load(&r4.count) == 1);
    assert_memory_equal(a.rx, "hi a", 4);
    pump_for(&a, &b, 20);
    rec *rs[] = {&r1, &r2, &r3, &r4};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(atomic_load(&rs[i]->count), 1);
        assert_int_equal(atomic_load(&rs[i]->status), 0);
    }
    /* on_sent in send order on a connection. */
    assert_true(atomic_load(&r1.seq) < atomic_load(&r2.seq));
    assert_true(atomic_load(&r2.seq) < atomic_load(&r3.seq));

    /* Peer names: "host:port", the connector's is the listening address. */
    assert_string_equal(T->conn_peer(ac), addr + strlen("tcp://"));
    assert_int_equal(strncmp(T->conn_peer(bc), "127.0.0.1:", 10), 0);
    assert_string_not_equal(T->conn_peer(bc), T->conn_peer(ac));
    /* The core's pointer: given at connect, NULL on accept until set. */
    assert_ptr_equal(T->conn_context(ac), &a);
    assert_null(T->conn_context(bc));
    T->conn_set_context(bc, &b);
    assert_ptr_equal(T->conn_context(bc), &b);
    assert_null(T->conn_context(NULL));
    assert_int_equal(ep_nclosed(&a) + ep_nclosed(&b), 0);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

static void test_connect_refused(void **state)
{
    (void)state;
    ep a;
    ep_open(&a, T, NULL, NULL);
    int port = closed_port();
    assert_true(port > 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", port);
    disco_conn *c = NULL;
    static int marker;
    assert_int_equal(T->connect(a.tp, addr, &marker, &c), 0);
    assert_non_null(c);
    rec r = {0};
    int rc = ep_send(&a, c, "x", 1, &r);
    PUMP_UNTIL(&a, NULL, ep_nclosed(&a) == 1);
    assert_ptr_equal(a.closed[0], c);
    assert_true(a.close_status[0] < 0);
    assert_int_equal(a.close_status[0], DISCO_EIO);
    assert_non_null(strstr(a.close_msg, "refused"));
    assert_ptr_equal(a.close_ctx[0], &marker); /* the context from the start */
    if (rc == 0) { /* accepted before the failure was known */
        assert_int_equal(atomic_load(&r.count), 1);
        assert_true(atomic_load(&r.status) < 0);
        assert_true(atomic_load(&r.seq) < a.close_seq[0]); /* before on_close */
    }
    /* After on_close: sends fail at once, no callback follows. */
    rec r2 = {0};
    assert_int_equal(ep_send(&a, c, "y", 1, &r2), DISCO_ECLOSED);
    pump_for(&a, NULL, 30);
    assert_int_equal(atomic_load(&r2.count), 0);
    assert_int_equal(ep_nclosed(&a), 1);
    T->conn_close(c);
    ep_close(&a);
}

static void test_big_message(void **state)
{
    (void)state;
    const size_t size = 64u << 20;
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    fill_random(buf, size, 0x9e3779b97f4a7c15ull);
    uint64_t want = fnv(FNV_INIT, buf, size);
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    /* Three pieces, so that partial writes split iovecs anywhere. */
    struct iovec v[3] = {{buf, 1}, {buf + 1, size - 2}, {buf + size - 1, 1}};
    rec r = {0};
    assert_int_equal(T->send(ac, v, 3, &r), 0);
    assert_int_equal(atomic_load(&r.count), 0); /* on_sent is deferred */
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == size && atomic_load(&r.count) == 1);
    assert_int_equal(atomic_load(&r.status), 0);
    assert_true(b.nrecv > 1); /* it came in pieces */
    assert_true(b.hash == want);
    pump_for(&a, &b, 20);
    assert_int_equal(atomic_load(&r.count), 1);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
    free(buf);
}

static void test_many_iovecs(void **state)
{
    (void)state;
    enum { N = 3000 }; /* above IOV_MAX */
    static uint8_t data[N * 7];
    static struct iovec v[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        v[i].iov_base = data + total;
        v[i].iov_len = (size_t)(i % 7); /* includes empty ones */
        total += v[i].iov_len;
    }
    fill_random(data, total, 42);
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    ep_store(&b, total);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    rec r[2] = {{0}};
    assert_int_equal(T->send(ac, v, N, &r[0]), 0);
    assert_int_equal(T->send(ac, v, N, &r[1]), 0); /* only stored once */
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == 2 * total && atomic_load(&r[1].count));
    assert_memory_equal(b.rx, data, total);
    assert_int_equal(atomic_load(&r[0].count), 1);
    assert_int_equal(atomic_load(&r[0].status), 0);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

static void test_two_threads_send(void **state)
{
    (void)state;
    xport_case_two_threads_send(T, NULL, NULL);
}

/* ---- closing -------------------------------------------------------------- */

static void test_peer_close(void **state)
{
    (void)state;
    xport_case_peer_close(T, NULL, NULL);
}

/* The peer is gone (reset) while we still send: no SIGPIPE, every send
 * completes once, failures before on_close. */
static void test_send_after_peer_reset(void **state)
{
    (void)state;
    enum { N = 20 };
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    T->conn_close(ac);
    rec r[N] = {{0}};
    int accepted = 0;
    for (int i = 0; i < N; i++) { /* b has not noticed yet: sends are taken */
        if (ep_send(&b, bc, "data", 4, &r[i]) == 0)
            accepted++;
        sleep_ms(5); /* lets the peer's RST arrive */
    }
    assert_int_equal(accepted, N);
    PUMP_UNTIL(&a, &b, ep_nclosed(&b) == 1);
    pump_for(&a, &b, 20);
    int failed = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&r[i].count), 1);
        if (atomic_load(&r[i].status) < 0) {
            failed++;
            assert_true(atomic_load(&r[i].seq) < b.close_seq[0]);
        }
    }
    assert_true(failed > 0);
    assert_true(b.close_status[0] <= 0);
    assert_int_equal(ep_send(&b, bc, "more", 4, &r[0]), DISCO_ECLOSED);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

static void test_close_with_queued_sends(void **state)
{
    (void)state;
    enum { N = 16 };
    const size_t chunk = 4u << 20; /* 64 MiB in all: more than the sockets hold */
    uint8_t *buf = calloc(1, chunk);
    assert_non_null(buf);
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    int fds = count_fds();
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    rec r[N] = {{0}};
    for (int i = 0; i < N; i++)
        assert_int_equal(ep_send(&a, ac, buf, chunk, &r[i]), 0);
    pump_for(&a, NULL, 50); /* b does not read: a's queue stays */
    int done_before = 0;
    for (int i = 0; i < N; i++)
        done_before += atomic_load(&r[i].count);
    assert_true(done_before < N);
    T->conn_close(ac); /* completes the rest before it returns */
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
    /* b drains what reached it and sees the end. */
    PUMP_UNTIL(&a, &b, ep_nclosed(&b) == 1);
    pump_for(&a, &b, 30);
    assert_int_equal(atomic_load(&a.late), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&r[i].count), 1);
    T->conn_close(bc);
    assert_int_equal(count_fds(), fds); /* both sockets closed */
    ep_close(&a);
    ep_close(&b);
    free(buf);
}

static int more1(disco_conn *c, const void *p, size_t n, rec *r)
{
    struct iovec v = {(void *)p, n};
    return T->send_more(c, &v, 1, r);
}

/* send_more holds messages back: nothing reaches the peer, nothing
 * completes, until flush writes them all, in order. */
static void test_send_more_holds_until_flush(void **state)
{
    (void)state;
    enum { N = 10 };
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    ep_store(&b, 64);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    rec r[N] = {{0}};
    for (int i = 0; i < N; i++)
        assert_int_equal(more1(ac, &"0123456789"[i], 1, &r[i]), 0);
    pump_for(&a, &b, 50);
    assert_int_equal(ep_rxtotal(&b), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&r[i].count), 0);
    T->flush(ac);
    T->flush(ac); /* nothing left: a no-op */
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == N && atomic_load(&r[N - 1].count) == 1);
    assert_memory_equal(b.rx, "0123456789", N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&r[i].count), 1);
        assert_int_equal(atomic_load(&r[i].status), 0);
        if (i)
            assert_true(atomic_load(&r[i - 1].seq) < atomic_load(&r[i].seq));
    }
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

/* A plain send behind held messages writes them first, without a flush. */
static void test_send_after_send_more(void **state)
{
    (void)state;
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    ep_store(&b, 64);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    rec r[3] = {{0}};
    assert_int_equal(more1(ac, "ab", 2, &r[0]), 0);
    assert_int_equal(more1(ac, "cd", 2, &r[1]), 0);
    assert_int_equal(ep_send(&a, ac, "ef", 2, &r[2]), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == 6 && atomic_load(&r[2].count) == 1);
    assert_memory_equal(b.rx, "abcdef", 6);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&r[i].status), 0);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

/* Past its bound (64 KiB) send_more writes without waiting for a flush. */
static void test_send_more_bound(void **state)
{
    (void)state;
    enum { N = 100, K = 1024 };
    static uint8_t chunk[K];
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    rec r[N] = {{0}};
    for (int i = 0; i < N; i++)
        assert_int_equal(more1(ac, chunk, K, &r[i]), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) >= 64 * K);
    assert_true(ep_rxtotal(&b) >= 64 * K);
    T->flush(ac);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == N * K);
    assert_int_equal(ep_rxtotal(&b), N * K);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

/* Closing a connection fails the messages it held, once each; none reached
 * the peer. */
static void test_close_with_held_sends(void **state)
{
    (void)state;
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    rec r[3] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(more1(ac, "x", 1, &r[i]), 0);
    T->conn_close(ac);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&r[i].count), 1);
        assert_int_equal(atomic_load(&r[i].status), DISCO_ECLOSED);
    }
    PUMP_UNTIL(&a, &b, ep_nclosed(&b) == 1);
    assert_int_equal(ep_rxtotal(&b), 0);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

static void test_close_inside_callback(void **state)
{
    (void)state;
    xport_case_close_inside_callback(T, NULL);
}

static void test_close_while_progress_runs(void **state)
{
    (void)state;
    xport_case_close_while_progress_runs(T, NULL, NULL);
}

/* ---- progress, interrupt ------------------------------------------------ */

static void test_interrupt(void **state)
{
    (void)state;
    xport_case_interrupt(T, NULL);
}

static void test_send_wakes_progress(void **state)
{
    (void)state;
    xport_case_send_wakes_progress(T, NULL);
}

static void test_wait_fd(void **state)
{
    (void)state;
    xport_case_wait_fd(T, NULL);
}

/* ---- file descriptors ---------------------------------------------------- */

static void test_fds_cloexec_nodelay(void **state)
{
    (void)state;
    fdscan s0;
    scan_fds(&s0);
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", closed_port());
    disco_conn *pending = NULL; /* a connect in flight or failed */
    assert_int_equal(T->connect(a.tp, addr, NULL, &pending), 0);
    fdscan s;
    scan_fds(&s);
    /* 2 × (epoll, eventfd, listener) + 2 connected sockets (+ maybe the
     * failing connect's) */
    assert_int_equal(s.epolls - s0.epolls, 2);
    assert_int_equal(s.eventfds - s0.eventfds, 2);
    assert_true(s.sockets - s0.sockets >= 4);
    assert_int_equal(s.no_cloexec, 0);
    assert_int_equal(s.no_nonblock, 0);
    assert_int_equal(s.no_nodelay, 0);
    T->conn_close(pending);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
    scan_fds(&s);
    assert_int_equal(s.total, s0.total); /* nothing leaked */
}

/* ---- a forked child as the peer ----------------------------------------- */

typedef struct child {
    uint8_t *buf;
    size_t len, got, echoed;
    bool failed;
} child;

static void child_accept(void *ctx, disco_conn *c) { T->conn_close(c); }

static void child_recv(void *ctx, disco_conn *c, const uint8_t *data, size_t len)
{
    child *ch = ctx;
    if (ch->got + len > ch->len) {
        ch->failed = true;
        return;
    }
    memcpy(ch->buf + ch->got, data, len); /* stays valid until on_sent */
    struct iovec v = {ch->buf + ch->got, len};
    ch->got += len;
    if (T->send(c, &v, 1, (void *)(uintptr_t)len) != 0)
        ch->failed = true;
}

static void child_close(void *ctx, disco_conn *c, int status)
{
    child *ch = ctx;
    ch->failed = true; /* the parent closes only after the echo */
}

static void child_sent(void *ctx, disco_conn *c, void *token, int status)
{
    child *ch = ctx;
    if (status)
        ch->failed = true;
    ch->echoed += (uintptr_t)token;
}

/* Runs in the child: connect, echo len bytes, close. Exit status 0 = ok. */
static int child_main(const char *addr, size_t len)
{
    alarm(120);
    child ch = {.buf = malloc(len), .len = len};
    const disco_transport_callbacks cbs = {.on_accept = child_accept, .on_recv = child_recv,
                                           .on_close = child_close, .on_sent = child_sent};
    disco_transport *tp;
    disco_conn *c;
    if (!ch.buf || T->init(&tp, NULL, NULL, &cbs, &ch) != 0)
        return 2;
    if (T->connect(tp, addr, NULL, &c) != 0)
        return 3;
    double deadline = now_s() + DEADLINE_S;
    while (ch.echoed < len && !ch.failed && now_s() < deadline)
        T->progress(tp, 10);
    bool ok = ch.echoed == len && !ch.failed;
    T->conn_close(c);
    T->fini(tp);
    free(ch.buf);
    return ok ? 0 : 4;
}

static void test_forked_peer(void **state)
{
    (void)state;
    const size_t len = 1u << 20;
    uint8_t *msg = malloc(len);
    assert_non_null(msg);
    fill_random(msg, len, 7);
    ep a;
    ep_open(&a, T, NULL, NULL);
    ep_store(&a, len);
    char addr[128];
    assert_int_equal(T->local_address(a.tp, addr, sizeof(addr)), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_main(addr, len));
    PUMP_UNTIL(&a, NULL, ep_naccepted(&a) == 1);
    disco_conn *c = a.accepted[0];
    assert_int_equal(strncmp(T->conn_peer(c), "127.0.0.1:", 10), 0);
    rec r = {0};
    assert_int_equal(ep_send(&a, c, msg, len, &r), 0);
    PUMP_UNTIL(&a, NULL, ep_rxtotal(&a) == len);
    assert_memory_equal(a.rx, msg, len);
    assert_int_equal(atomic_load(&r.count), 1);
    PUMP_UNTIL(&a, NULL, ep_nclosed(&a) == 1); /* the child closes */
    assert_int_equal(a.close_status[0], 0);
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
    T->conn_close(c);
    ep_close(&a);
    free(msg);
}

/* ---- IPv6 ------------------------------------------------------------------ */

static void test_ipv6(void **state)
{
    (void)state;
    ep b;
    if (ep_try_open(&b, T, "[::1]", NULL) != 0)
        skip(); /* no IPv6 loopback here */
    ep a;
    ep_open(&a, T, NULL, NULL); /* an IPv4 listener can still dial IPv6 */
    ep_store(&b, 16);
    char addr[128];
    assert_int_equal(T->local_address(b.tp, addr, sizeof(addr)), 0);
    assert_int_equal(strncmp(addr, "tcp://[::1]:", 12), 0);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    assert_string_equal(T->conn_peer(ac), addr + 6);
    assert_int_equal(strncmp(T->conn_peer(bc), "[::1]:", 6), 0);
    rec r = {0};
    assert_int_equal(ep_send(&a, ac, "six", 3, &r), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == 3);
    assert_memory_equal(b.rx, "six", 3);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

/* Polls (timeout 0) of e until cond holds, at most max of them; the test
 * asserts cond. Nothing sleeps: what is checked is the number of polls. */
#define POLL_UNTIL(e, max, cond)                                               \
    do {                                                                       \
        for (int k_ = 0; k_ < (max) && !(cond); k_++)                          \
            T->progress((e)->tp, 0);                                           \
        assert_true(cond);                                                     \
    } while (0)

static bool ep_got(ep *e, char byte)
{
    pthread_mutex_lock(&e->mu);
    bool got = memchr(e->rx, byte, e->rxlen) != NULL;
    pthread_mutex_unlock(&e->mu);
    return got;
}

/* The hot-connection tests' start: a and b open, b keeping what it gets,
 * two connections from a to b (a's ends a1, a2; b's b1, b2). */
static void open_two_conns(ep *a, ep *b, disco_conn **a1, disco_conn **a2, disco_conn **b1,
                           disco_conn **b2)
{
    ep_open(a, T, NULL, NULL);
    ep_open(b, T, NULL, NULL);
    ep_store(b, 4096);
    *a1 = connect_pair(a, b, b1);
    *a2 = connect_pair(a, b, b2);
}

/* A connection that just had data is polled directly (no epoll_wait), but
 * never to the exclusion of the rest: while it gets data on every poll, a
 * second connection's data, a new connection and its data still arrive
 * within a bounded number of polls. */
static void test_hot_conn_does_not_starve_others(void **state)
{
    (void)state;
    ep a, b;
    disco_conn *a1, *a2, *b1, *b2;
    open_two_conns(&a, &b, &a1, &a2, &b1, &b2);
    assert_int_equal(ep_send(&a, a1, "x", 1, NULL), 0);
    POLL_UNTIL(&b, 1000, ep_rxtotal(&b) == 1); /* b1 is hot */
    char addr[128];
    assert_int_equal(T->local_address(b.tp, addr, sizeof(addr)), 0);
    disco_conn *a3 = NULL;
    assert_int_equal(T->connect(a.tp, addr, &a, &a3), 0);
    assert_int_equal(ep_send(&a, a2, "Y", 1, NULL), 0);
    int polls = 0;
    for (; polls < 200 && !(ep_got(&b, 'Y') && ep_naccepted(&b) == 3); polls++) {
        assert_int_equal(ep_send(&a, a1, "x", 1, NULL), 0); /* keeps b1 hot */
        T->progress(b.tp, 0);
    }
    assert_true(ep_got(&b, 'Y'));
    assert_int_equal(ep_naccepted(&b), 3);
    /* The new connection's data too, while b1 keeps getting more. */
    assert_int_equal(ep_send(&a, a3, "Z", 1, NULL), 0);
    pump_for(&a, NULL, 50); /* a3's connect completes, Z is written */
    for (polls = 0; polls < 200 && !ep_got(&b, 'Z'); polls++) {
        assert_int_equal(ep_send(&a, a1, "x", 1, NULL), 0);
        T->progress(b.tp, 0);
    }
    assert_true(ep_got(&b, 'Z'));
    T->conn_close(a1);
    T->conn_close(a2);
    T->conn_close(a3);
    ep_close(&a);
    ep_close(&b);
}

/* The hot connection closed by the core between polls is never touched
 * again (ASan sees a use after free); closed by the peer, its end is
 * reported by the next polls. */
static void test_hot_conn_closed(void **state)
{
    (void)state;
    ep a, b;
    disco_conn *a1, *a2, *b1, *b2;
    open_two_conns(&a, &b, &a1, &a2, &b1, &b2);
    assert_int_equal(ep_send(&a, a1, "x", 1, NULL), 0);
    POLL_UNTIL(&b, 1000, ep_rxtotal(&b) == 1);
    T->conn_close(b1);
    atomic_store(&b.dead, (uintptr_t)b1);
    assert_int_equal(ep_send(&a, a1, "x", 1, NULL), 0);
    assert_int_equal(ep_send(&a, a2, "y", 1, NULL), 0);
    POLL_UNTIL(&b, 1000, ep_rxtotal(&b) == 2);
    assert_true(ep_got(&b, 'y'));
    /* b2 is hot now: its peer closes. */
    T->conn_close(a2);
    POLL_UNTIL(&b, 1000, ep_closed_index(&b, b2) >= 0);
    assert_int_equal(b.close_status[ep_closed_index(&b, b2)], 0);
    for (int i = 0; i < 50; i++)
        T->progress(b.tp, 0);
    assert_int_equal(atomic_load(&b.late), 0);
    assert_int_equal(ep_rxtotal(&b), 2);
    T->conn_close(b2);
    T->conn_close(a1);
    ep_close(&a);
    ep_close(&b);
}

/* How many descriptors tp's epoll instance watches (from /proc). */
static int epoll_watched(disco_transport *tp)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", T->wait_fd(tp));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strncmp(line, "tfd:", 4) == 0;
    fclose(f);
    return n;
}

/* Data on ac, each byte found by one poll of b: hot polls in a row. */
static void make_hot(ep *b, disco_conn *ac)
{
    for (int i = 0; i < 8; i++) {
        size_t before = ep_rxtotal(b);
        assert_int_equal(ep_send(b, ac, "h", 1, NULL), 0);
        POLL_UNTIL(b, 100000, ep_rxtotal(b) > before);
    }
}

/* Sends one byte on ac while b sleeps in progress(-1): did it wake? */
static bool sleeper_woken_by(ep *b, disco_conn *ac)
{
    blocked bl = {.e = b};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, block_main, &bl), 0);
    sleep_ms(50);
    assert_int_equal(ep_send(b, ac, "s", 1, NULL), 0);
    double deadline = now_s() + DEADLINE_S;
    while (!atomic_load(&bl.done) && now_s() < deadline)
        sleep_ms(1);
    bool woken = atomic_load(&bl.done);
    if (!woken)
        T->interrupt(b->tp);
    pthread_join(th, NULL);
    return woken;
}

/* A connection whose data hot polls keep finding leaves epoll (epoll's work
 * on each of its packets is wasted on a poller). It is back before any
 * sleep, so a sleeping progress or a wait on wait_fd still wakes for it,
 * and once another connection is hot; closed while out, it is never
 * touched again (ASan sees a use after free). */
static void test_hot_conn_leaves_epoll(void **state)
{
    (void)state;
    ep a, b;
    disco_conn *a1, *a2, *b1, *b2;
    open_two_conns(&a, &b, &a1, &a2, &b1, &b2);
    pump_for(&a, &b, 20);
    int all = epoll_watched(b.tp);
    assert_int_equal(all, 4); /* listener, eventfd, b1, b2 */
    make_hot(&b, a1);
    assert_int_equal(epoll_watched(b.tp), all - 1);

    size_t before = ep_rxtotal(&b);
    assert_true(sleeper_woken_by(&b, a1));
    assert_int_equal(ep_rxtotal(&b), before + 1);
    assert_int_equal(epoll_watched(b.tp), all);

    /* The core's way to sleep on several transports. */
    make_hot(&b, a1);
    assert_int_equal(epoll_watched(b.tp), all - 1);
    int armed = 0;
    while (T->wait_arm(b.tp) > 0 && armed++ < 10) /* pending: progress instead */
        assert_true(T->progress(b.tp, 0) >= 0);
    assert_true(armed < 10);
    assert_int_equal(epoll_watched(b.tp), all);
    before = ep_rxtotal(&b);
    assert_int_equal(ep_send(&a, a1, "w", 1, NULL), 0);
    assert_true(fd_readable(T->wait_fd(b.tp), DEADLINE_S * 1000));
    POLL_UNTIL(&b, 1000, ep_rxtotal(&b) == before + 1);

    /* Another connection hot: the first is back. */
    make_hot(&b, a1);
    assert_int_equal(epoll_watched(b.tp), all - 1);
    assert_int_equal(ep_send(&a, a2, "o", 1, NULL), 0);
    POLL_UNTIL(&b, 1000, ep_got(&b, 'o'));
    assert_int_equal(epoll_watched(b.tp), all);

    /* Closed while out of epoll. */
    make_hot(&b, a1);
    assert_int_equal(epoll_watched(b.tp), all - 1);
    T->conn_close(b1);
    atomic_store(&b.dead, (uintptr_t)b1);
    before = ep_rxtotal(&b);
    assert_int_equal(ep_send(&a, a2, "p", 1, NULL), 0);
    POLL_UNTIL(&b, 1000, ep_rxtotal(&b) == before + 1);
    assert_true(sleeper_woken_by(&b, a2));
    assert_int_equal(epoll_watched(b.tp), all - 1); /* b1 is gone */
    assert_int_equal(atomic_load(&b.late), 0);
    T->conn_close(a1);
    T->conn_close(a2);
    T->conn_close(b2);
    ep_close(&a);
    ep_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_table),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_listen_address),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_exchange),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_big_message),
        cmocka_unit_test(test_many_iovecs),
        cmocka_unit_test(test_two_threads_send),
        cmocka_unit_test(test_peer_close),
        cmocka_unit_test(test_send_after_peer_reset),
        cmocka_unit_test(test_close_with_queued_sends),
        cmocka_unit_test(test_send_more_holds_until_flush),
        cmocka_unit_test(test_send_after_send_more),
        cmocka_unit_test(test_send_more_bound),
        cmocka_unit_test(test_close_with_held_sends),
        cmocka_unit_test(test_close_inside_callback),
        cmocka_unit_test(test_close_while_progress_runs),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_send_wakes_progress),
        cmocka_unit_test(test_wait_fd),
        cmocka_unit_test(test_fds_cloexec_nodelay),
        cmocka_unit_test(test_forked_peer),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_hot_conn_does_not_starve_others),
        cmocka_unit_test(test_hot_conn_closed),
        cmocka_unit_test(test_hot_conn_leaves_epoll),
    };
    return cmocka_run_group_tests_name("tcp", tests, NULL, NULL);
}
