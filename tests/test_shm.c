/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The shared-memory transport: two transports in one process, and forked
 * children as peers (one killed mid-stream, one read by rma_read), driven
 * through disco__shm_ops only, with the endpoints of tests/xport_ep.h. The
 * cases any transport passes alike are tests/xport_cases.c's; what only
 * shm has (addresses, segments, send_copy, rma_read, a killed peer) is here.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/transport.h"
#include "disco.h"
#include "test_util.h"
#include "xport_cases.h"
#include "xport_ep.h"

static const disco_transport_ops *const T = &disco__shm_ops;

/* ---- file descriptors and mappings -------------------------------------- */

typedef struct fdscan {
    int total, sockets, epolls, eventfds, memfds, no_cloexec;
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
        bool memfd = strncmp(link, "/memfd:", 7) == 0;
        if (!sock && !epoll && !evfd && !memfd)
            continue;
        s->sockets += sock;
        s->epolls += epoll;
        s->eventfds += evfd;
        s->memfds += memfd;
        if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC))
            s->no_cloexec++;
    }
    closedir(d);
}

/* Segments mapped in this process (the memfd's name in /proc/self/maps). */
static int count_segments(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, "memfd:disco-shm") != NULL;
    fclose(f);
    return n;
}

/* ---- tests -------------------------------------------------------------- */

static void test_ops_table(void **state)
{
    (void)state;
    assert_int_equal(T->size, sizeof(disco_transport_ops));
    assert_string_equal(T->name, "shm");
    uint64_t want = DISCO_TRANSPORT_CAP_STREAM | DISCO_TRANSPORT_CAP_SAME_NODE |
                    DISCO_TRANSPORT_CAP_RMA | DISCO_TRANSPORT_CAP_CLOSE;
    assert_true(T->caps == want); /* never cross-node */
    assert_true(T->rank > disco__tcp_ops.rank);
    assert_true(T->eager_max > 0);
    assert_non_null(T->init);
    assert_non_null(T->local_address);
    assert_non_null(T->connect);
    assert_non_null(T->send);
    assert_non_null(T->send_copy);
    assert_null(T->send_more); /* nothing to gain from holding back */
    assert_non_null(T->progress);
    assert_non_null(T->interrupt);
    assert_non_null(T->wait_fd);
    assert_non_null(T->wait_arm);
    assert_non_null(T->conn_close);
    assert_non_null(T->conn_peer);
    assert_non_null(T->conn_set_context);
    assert_non_null(T->conn_context);
    assert_non_null(T->fini);
    assert_non_null(T->mem_register);
    assert_non_null(T->mem_deregister);
    assert_non_null(T->rma_read);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    disco_transport *tp = NULL;
    disco_transport_callbacks partial = ep_callbacks;
    partial.on_sent = NULL;
    assert_int_equal(T->init(&tp, NULL, NULL, &partial, NULL), DISCO_EINVAL);
    assert_int_equal(T->init(NULL, NULL, NULL, &ep_callbacks, NULL), DISCO_EINVAL);
    assert_int_equal(T->init(&tp, NULL, NULL, NULL, NULL), DISCO_EINVAL);
    assert_null(tp);
    assert_int_equal(T->progress(NULL, 0), DISCO_EINVAL);
    assert_int_equal(T->send(NULL, NULL, 0, NULL), DISCO_EINVAL);
    T->conn_close(NULL);
    T->interrupt(NULL);
    T->fini(NULL);
    assert_string_equal(T->conn_peer(NULL), "");

    ep a;
    ep_open(&a, T, "10.1.2.3", NULL); /* the host means nothing to a same-node transport */
    char small[8];
    assert_int_equal(T->local_address(a.tp, small, sizeof(small)), DISCO_EINVAL);
    disco_conn *c = NULL;
    assert_int_equal(T->connect(a.tp, "shm://@x", NULL, NULL), DISCO_EINVAL);
    assert_int_equal(T->connect(a.tp, NULL, NULL, &c), DISCO_EINVAL);
    assert_null(c);
    uint8_t key[DISCO_TRANSPORT_KEY_MAX];
    size_t keylen;
    disco_mr *mr;
    assert_int_equal(T->mem_register(a.tp, NULL, 8, &mr, key, &keylen), DISCO_EINVAL);
    assert_int_equal(T->mem_register(a.tp, key, 8, NULL, key, &keylen), DISCO_EINVAL);
    assert_int_equal(T->rma_read(NULL, key, NULL, 0, 8, key, 8, NULL), DISCO_EINVAL);
    ep_close(&a);
}

static void test_listen_address(void **state)
{
    (void)state;
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    char addr[DISCO_TRANSPORT_ADDR_MAX], other[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(T->local_address(a.tp, addr, sizeof(addr)), 0);
    assert_int_equal(T->local_address(b.tp, other, sizeof(other)), 0);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "shm://@disco-%ld-", (long)getpid());
    assert_int_equal(strncmp(addr, prefix, strlen(prefix)), 0);
    const char *hex = addr + strlen(prefix);
    assert_int_equal(strlen(hex), 16);
    assert_int_equal(strspn(hex, "0123456789abcdef"), 16);
    assert_string_not_equal(addr, other);
    for (const char *p = addr; *p; p++)
        assert_true(*p > ' ' && *p < 127); /* printable, no spaces */
    /* Abstract names: nothing in the file system. */
    assert_int_equal(access(addr + strlen("shm://"), F_OK), -1);
    ep_close(&a);
    ep_close(&b);
}

static void test_bad_addresses(void **state)
{
    (void)state;
    ep a;
    ep_open(&a, T, NULL, NULL);
    int fds = count_fds();
    char longname[128];
    snprintf(longname, sizeof(longname), "shm://@%0100d", 7);
    const char *bad[] = {
        "",
        "shm://",
        "shm://@",
        "shm://name",
        "shm://@a b",
        "shm://@a/b",
        "shm://@name\n",
        "shm:/@name",
        "SHM://@name",
        "tcp://127.0.0.1:80",
        " shm://@name",
        "@name",
        longname,
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

/* Same node, so a connect to nobody fails at once, with no connection. */
static void test_connect_refused(void **state)
{
    (void)state;
    ep a, gone;
    ep_open(&a, T, NULL, NULL);
    ep_open(&gone, T, NULL, NULL);
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(T->local_address(gone.tp, addr, sizeof(addr)), 0);
    ep_close(&gone);
    int fds = count_fds(), maps = count_segments();
    disco_conn *c = NULL;
    disco_error_clear();
    int rc = T->connect(a.tp, addr, NULL, &c);
    assert_true(rc < 0);
    assert_null(c);
    const disco_error *e = disco_last_error();
    assert_non_null(e);
    assert_int_equal(disco_error_code(e), rc);
    assert_non_null(strstr(disco_error_message(e), "refused"));
    assert_int_equal(count_fds(), fds);
    assert_int_equal(count_segments(), maps);
    pump_for(&a, NULL, 20);
    assert_int_equal(ep_nclosed(&a), 0);
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
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(T->local_address(b.tp, addr, sizeof(addr)), 0);
    disco_conn *ac = NULL;
    assert_int_equal(T->connect(a.tp, addr, &a, &ac), 0);
    /* Sends may be queued before the peer has accepted. */
    rec r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0};
    assert_int_equal(ep_send(&a, ac, "hel", 3, &r1), 0);
    struct iovec v[3] = {{"lo", 2}, {"", 0}, {" b", 2}};
    assert_int_equal(T->send(ac, v, 3, &r2), 0);
    assert_int_equal(T->send(ac, NULL, 0, &r3), 0); /* empty send */
    assert_int_equal(atomic_load(&r1.count), 0);   /* on_sent is deferred */
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
    assert_true(atomic_load(&r1.seq) < atomic_load(&r2.seq)); /* send order */
    assert_true(atomic_load(&r2.seq) < atomic_load(&r3.seq));

    assert_string_equal(T->conn_peer(ac), addr + strlen("shm://"));
    char pid[32];
    snprintf(pid, sizeof(pid), "pid:%ld", (long)getpid());
    assert_string_equal(T->conn_peer(bc), pid);
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

/* 64 MiB through a ring of a fraction of that: queued, copied as the
 * reader frees room, delivered in pieces, intact. */
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
    struct iovec v[3] = {{buf, 1}, {buf + 1, size - 2}, {buf + size - 1, 1}};
    rec r = {0}, r2 = {0};
    assert_int_equal(T->send(ac, v, 3, &r), 0);
    assert_int_equal(ep_send(&a, ac, "!", 1, &r2), 0); /* queued behind it */
    assert_int_equal(atomic_load(&r.count), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == size + 1 && atomic_load(&r2.count) == 1);
    assert_int_equal(atomic_load(&r.count), 1);
    assert_int_equal(atomic_load(&r.status), 0);
    assert_true(atomic_load(&r.seq) < atomic_load(&r2.seq));
    assert_true(b.nrecv > 1); /* it came in pieces */
    assert_true(b.hash == fnv(want, (const uint8_t *)"!", 1));
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
    free(buf);
}

static void test_many_iovecs(void **state)
{
    (void)state;
    enum { N = 3000 };
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
    ep_store(&b, 2 * total);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    rec r[2] = {{0}};
    assert_int_equal(T->send(ac, v, N, &r[0]), 0);
    assert_int_equal(T->send(ac, v, N, &r[1]), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == 2 * total && atomic_load(&r[1].count));
    assert_memory_equal(b.rx, data, total);
    assert_memory_equal(b.rx + total, data, total);
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

static void test_close_with_queued_sends(void **state)
{
    (void)state;
    enum { N = 16 };
    const size_t chunk = 4u << 20; /* 64 MiB in all: more than the ring holds */
    uint8_t *buf = calloc(1, chunk);
    assert_non_null(buf);
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    int fds = count_fds(), maps = count_segments();
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
    assert_int_equal(count_fds(), fds); /* both sockets and eventfds closed */
    assert_int_equal(count_segments(), maps);
    ep_close(&a);
    ep_close(&b);
    free(buf);
}

/* send_copy: the caller's bytes may change as soon as it returns, whether
 * they went into the ring at once or (the ring full) were queued; they
 * arrive unchanged and in order with plain sends, and no on_sent ever
 * follows, closed with copies queued included (ASan sees a leak). */
static void test_send_copy(void **state)
{
    (void)state;
    enum { N = 24 };
    const size_t chunk = 1u << 20; /* 24 MiB in all: more than the ring holds */
    uint8_t *buf = malloc(chunk), *all = malloc(N * chunk);
    assert_non_null(buf);
    assert_non_null(all);
    fill_random(all, N * chunk, 0x5eedc0deull);
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    struct iovec v = {buf, chunk};
    rec r = {0};
    for (int i = 0; i < N; i++) {
        memcpy(buf, all + i * chunk, chunk);
        if (i == N / 2) /* a plain send in between keeps its place */
            assert_int_equal(T->send(ac, &v, 1, &r), 0);
        else
            assert_int_equal(T->send_copy(ac, &v, 1), 0);
        if (i == N / 2) /* borrowed: left alone until on_sent */
            PUMP_UNTIL(&a, &b, atomic_load(&r.count) == 1);
        memset(buf, 0xee, chunk); /* the copies must not see this */
    }
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == N * chunk);
    assert_true(b.hash == fnv(FNV_INIT, all, N * chunk));
    pump_for(&a, &b, 20);
    assert_int_equal(atomic_load(&a.sent_ok), 1); /* the plain send's only */
    assert_int_equal(atomic_load(&a.sent_err), 0);

    /* Closed with copies still queued: they just go. */
    for (int i = 0; i < N; i++)
        assert_int_equal(T->send_copy(ac, &v, 1), 0);
    T->conn_close(ac);
    atomic_store(&a.dead, (uintptr_t)ac);
    assert_int_equal(atomic_load(&a.sent_ok) + atomic_load(&a.sent_err), 1);
    PUMP_UNTIL(&a, &b, ep_nclosed(&b) == 1);
    assert_int_equal(atomic_load(&a.late), 0);
    disco_conn *cc, *ac2 = connect_pair(&a, &b, &cc);
    T->conn_close(cc); /* the peer gone: send_copy says so */
    /* Until a's progress has seen the close. The socket says so, and a
     * polling progress looks at it only every SHM_EPOLL_EVERY calls: one
     * that may wait looks every time. */
    int rc = 0;
    double deadline = now_s() + DEADLINE_S;
    while (rc == 0 && now_s() < deadline) {
        rc = T->send_copy(ac2, &v, 1);
        T->progress(a.tp, 1);
        T->progress(b.tp, 0);
    }
    assert_int_equal(rc, DISCO_ECLOSED);
    assert_int_equal(atomic_load(&a.sent_ok) + atomic_load(&a.sent_err), 1);
    T->conn_close(ac2);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
    free(buf);
    free(all);
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

/* Two threads ping-pong, each blocking in progress between messages: the
 * sleep/wake handshake must never lose a wake-up. A lost one shows as a
 * progress call that sleeps its whole (long) timeout with a message there. */
#define PINGS 2000

typedef struct pinger {
    ep *e;
    disco_conn *c;
    bool first;     /* sends the first ping */
    long stalls;    /* progress calls that timed out */
    atomic_bool stop;
} pinger;

static void *pinger_main(void *arg)
{
    pinger *p = arg;
    static const uint8_t ball = 'b';
    long sent = 0;
    if (p->first && ep_send(p->e, p->c, &ball, 1, NULL) == 0)
        sent++;
    while (!atomic_load(&p->stop)) {
        size_t got = ep_rxtotal(p->e);
        if ((long)got + (p->first ? 1 : 0) > sent && sent < PINGS) {
            if (ep_send(p->e, p->c, &ball, 1, NULL) == 0)
                sent++;
            continue;
        }
        if (got >= PINGS && sent >= PINGS)
            break;
        if (T->progress(p->e->tp, 5000) == 0)
            p->stalls++;
    }
    return NULL;
}

static void test_blocking_ping_pong(void **state)
{
    (void)state;
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    pinger pa = {.e = &a, .c = ac, .first = true}, pb = {.e = &b, .c = bc};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, pinger_main, &pa), 0);
    assert_int_equal(pthread_create(&tb, NULL, pinger_main, &pb), 0);
    double deadline = now_s() + DEADLINE_S;
    while ((ep_rxtotal(&a) < PINGS || ep_rxtotal(&b) < PINGS) && now_s() < deadline)
        sleep_ms(5);
    atomic_store(&pa.stop, true);
    atomic_store(&pb.stop, true);
    T->interrupt(a.tp);
    T->interrupt(b.tp);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(ep_rxtotal(&a), PINGS);
    assert_int_equal(ep_rxtotal(&b), PINGS);
    assert_int_equal(pa.stalls + pb.stalls, 0);
    T->conn_close(ac);
    T->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

/* ---- file descriptors ---------------------------------------------------- */

static void test_fds_and_segments(void **state)
{
    (void)state;
    fdscan s0;
    scan_fds(&s0);
    int maps0 = count_segments();
    ep a, b;
    ep_open(&a, T, NULL, NULL);
    ep_open(&b, T, NULL, NULL);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    pump_for(&a, &b, 20); /* a reads the acceptor's reply */
    fdscan s;
    scan_fds(&s);
    /* 2 × (epoll, eventfd, listener) + per connection end a socket and the
     * peer's eventfd; the memfds are closed once mapped. */
    assert_int_equal(s.epolls - s0.epolls, 2);
    assert_int_equal(s.eventfds - s0.eventfds, 4);
    assert_int_equal(s.sockets - s0.sockets, 4);
    assert_int_equal(s.memfds, 0);
    assert_int_equal(s.no_cloexec, 0);
    assert_int_equal(count_segments() - maps0, 2); /* one segment, mapped twice */
    T->conn_close(ac);
    PUMP_UNTIL(&a, &b, ep_nclosed(&b) == 1);
    assert_int_equal(b.close_status[0], 0);
    T->conn_close(bc);
    assert_int_equal(count_segments(), maps0);
    ep_close(&a);
    ep_close(&b);
    scan_fds(&s);
    assert_int_equal(s.total, s0.total); /* nothing leaked */
}

/* ---- forked children as peers -------------------------------------------- */

static int wait_child(pid_t pid)
{
    int status = 0;
    double deadline = now_s() + DEADLINE_S;
    while (waitpid(pid, &status, WNOHANG) == 0 && now_s() < deadline)
        sleep_ms(5);
    if (now_s() >= deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    return status;
}

typedef struct child {
    uint8_t *buf;
    size_t len, got, echoed;
    bool failed, closed;
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
    ch->closed = true;
}

static void child_sent(void *ctx, disco_conn *c, void *token, int status)
{
    child *ch = ctx;
    if (status)
        ch->failed = true;
    ch->echoed += (uintptr_t)token;
}

static const disco_transport_callbacks child_cbs = {
    .on_accept = child_accept, .on_recv = child_recv,
    .on_close = child_close, .on_sent = child_sent};

/* Runs in the child: connect, echo len bytes, close. Exit status 0 = ok. */
static int child_echo(const char *addr, size_t len)
{
    alarm(120);
    child ch = {.buf = malloc(len), .len = len};
    disco_transport *tp;
    disco_conn *c;
    if (!ch.buf || T->init(&tp, NULL, NULL, &child_cbs, &ch) != 0)
        return 2;
    if (T->connect(tp, addr, NULL, &c) != 0)
        return 3;
    double deadline = now_s() + DEADLINE_S;
    while (ch.echoed < len && !ch.failed && !ch.closed && now_s() < deadline)
        T->progress(tp, 10);
    bool ok = ch.echoed == len && !ch.failed;
    T->conn_close(c);
    T->fini(tp);
    free(ch.buf);
    return ok ? 0 : 4;
}

static pid_t fork_child(int (*fn)(const char *, size_t), const char *addr, size_t len)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn(addr, len));
    return pid;
}

static void test_forked_peer(void **state)
{
    (void)state;
    const size_t len = 4u << 20;
    uint8_t *msg = malloc(len);
    assert_non_null(msg);
    fill_random(msg, len, 7);
    ep a;
    ep_open(&a, T, NULL, NULL);
    ep_store(&a, len);
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(T->local_address(a.tp, addr, sizeof(addr)), 0);
    pid_t pid = fork_child(child_echo, addr, len);
    PUMP_UNTIL(&a, NULL, ep_naccepted(&a) == 1);
    disco_conn *c = a.accepted[0];
    char peer[32];
    snprintf(peer, sizeof(peer), "pid:%ld", (long)pid);
    assert_string_equal(T->conn_peer(c), peer);
    rec r = {0};
    assert_int_equal(ep_send(&a, c, msg, len, &r), 0);
    PUMP_UNTIL(&a, NULL, ep_rxtotal(&a) == len);
    assert_memory_equal(a.rx, msg, len);
    assert_int_equal(atomic_load(&r.count), 1);
    PUMP_UNTIL(&a, NULL, ep_nclosed(&a) == 1); /* the child closes */
    assert_int_equal(a.close_status[0], 0);
    int status = wait_child(pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    T->conn_close(c);
    ep_close(&a);
    free(msg);
}

/* Runs in the child: connect and stream until killed. */
static int child_stream(const char *addr, size_t chunk)
{
    alarm(120);
    child ch = {.len = 0};
    disco_transport *tp;
    disco_conn *c;
    uint8_t *buf = calloc(1, chunk);
    if (!buf || T->init(&tp, NULL, NULL, &child_cbs, &ch) != 0)
        return 2;
    if (T->connect(tp, addr, NULL, &c) != 0)
        return 3;
    long inflight = 0;
    for (;;) { /* the parent kills us */
        struct iovec v = {buf, chunk};
        if (inflight - (long)ch.echoed < 4 &&
            T->send(c, &v, 1, (void *)(uintptr_t)1) == 0)
            inflight++;
        T->progress(tp, 1);
    }
}

/* A peer killed mid-stream: what it wrote is delivered, then on_close with
 * an error; our queued sends fail; nothing hangs. */
static void test_peer_killed(void **state)
{
    (void)state;
    ep a;
    ep_open(&a, T, NULL, NULL);
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(T->local_address(a.tp, addr, sizeof(addr)), 0);
    pid_t pid = fork_child(child_stream, addr, 100000);
    PUMP_UNTIL(&a, NULL, ep_naccepted(&a) == 1);
    disco_conn *c = a.accepted[0];
    PUMP_UNTIL(&a, NULL, ep_rxtotal(&a) >= (8u << 20));
    /* The child never reads: this stays queued behind a full ring. */
    const size_t big = 4u << 20;
    uint8_t *buf = calloc(1, big);
    assert_non_null(buf);
    rec r = {0};
    assert_int_equal(ep_send(&a, c, buf, big, &r), 0);
    kill(pid, SIGKILL);
    PUMP_UNTIL(&a, NULL, ep_nclosed(&a) == 1);
    assert_ptr_equal(a.closed[0], c);
    assert_int_equal(a.close_status[0], DISCO_EPROCEXIT);
    assert_non_null(strstr(a.close_msg, "exited"));
    assert_int_equal(atomic_load(&r.count), 1);
    assert_true(atomic_load(&r.status) < 0);
    assert_true(atomic_load(&r.seq) < a.close_seq[0]);
    assert_int_equal(ep_send(&a, c, "x", 1, NULL), DISCO_ECLOSED);
    int status = wait_child(pid);
    assert_true(WIFSIGNALED(status));
    T->conn_close(c);
    ep_close(&a);
    free(buf);
}

/* ---- rma_read ------------------------------------------------------------ */

#define RMA_SIZE (64u << 20)
#define RMA_SEED 0x5eedull

typedef struct rma_offer { /* what the child sends: two registrations */
    uint64_t addr, len, keylen;
    uint8_t key[DISCO_TRANSPORT_KEY_MAX];
} rma_offer;

/* Runs in the child: registers 64 MiB of known bytes and a page it then
 * unmaps, sends both keys, waits for the parent to close. */
static int child_rma(const char *addr, size_t len)
{
    alarm(120);
    child ch = {.len = 0};
    disco_transport *tp;
    disco_conn *c;
    uint8_t *mem = malloc(len);
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (!mem || page == MAP_FAILED || T->init(&tp, NULL, NULL, &child_cbs, &ch) != 0)
        return 2;
    fill_random(mem, len, RMA_SEED);
    rma_offer offer[2] = {{(uintptr_t)mem, len, 0, {0}}, {(uintptr_t)page, 4096, 0, {0}}};
    disco_mr *mr[2];
    for (int i = 0; i < 2; i++) {
        size_t kl;
        if (T->mem_register(tp, (void *)(uintptr_t)offer[i].addr, offer[i].len,
                            &mr[i], offer[i].key, &kl) != 0)
            return 3;
        offer[i].keylen = kl;
    }
    /* Unreadable from now on. Not unmapped: a hole of a page can be mapped
     * again by anything, the sanitizers' allocators included, and then
     * the read would find memory there. */
    mprotect(page, 4096, PROT_NONE);
    struct iovec v = {offer, sizeof(offer)};
    if (T->connect(tp, addr, NULL, &c) != 0 || T->send(c, &v, 1, NULL) != 0)
        return 4;
    double deadline = now_s() + DEADLINE_S;
    while (!ch.closed && now_s() < deadline)
        T->progress(tp, 10);
    T->mem_deregister(mr[0]);
    T->mem_deregister(mr[1]);
    T->conn_close(c);
    T->fini(tp);
    free(mem);
    return ch.closed ? 0 : 5;
}

static void test_rma_read(void **state)
{
    (void)state;
    ep a;
    ep_open(&a, T, NULL, NULL);
    ep_store(&a, 2 * sizeof(rma_offer));
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(T->local_address(a.tp, addr, sizeof(addr)), 0);
    pid_t pid = fork_child(child_rma, addr, RMA_SIZE);
    PUMP_UNTIL(&a, NULL, ep_rxtotal(&a) == 2 * sizeof(rma_offer));
    disco_conn *c = a.accepted[0];
    rma_offer offer[2];
    memcpy(offer, a.rx, sizeof(offer));
    uint8_t *dst = malloc(RMA_SIZE), *want = malloc(RMA_SIZE);
    assert_non_null(dst);
    assert_non_null(want);
    fill_random(want, RMA_SIZE, RMA_SEED);

    rec r = {0};
    assert_int_equal(T->rma_read(c, dst, NULL, offer[0].addr, RMA_SIZE, offer[0].key,
                                 offer[0].keylen, &r),
                     0);
    assert_int_equal(atomic_load(&r.count), 0); /* on_read is deferred */
    PUMP_UNTIL(&a, NULL, atomic_load(&r.count) == 1);
    assert_int_equal(atomic_load(&r.status), 0);
    assert_memory_equal(dst, want, RMA_SIZE);

    /* A piece from the middle. */
    rec r2 = {0};
    memset(dst, 0, 4096);
    assert_int_equal(T->rma_read(c, dst, NULL, offer[0].addr + 12345, 4096,
                                 offer[0].key, offer[0].keylen, &r2),
                     0);
    PUMP_UNTIL(&a, NULL, atomic_load(&r2.count) == 1);
    assert_int_equal(atomic_load(&r2.status), 0);
    assert_memory_equal(dst, want + 12345, 4096);

    /* The key holds, but the peer took the memory away. */
    rec r3 = {0};
    assert_int_equal(T->rma_read(c, dst, NULL, offer[1].addr, 4096, offer[1].key,
                                 offer[1].keylen, &r3),
                     0);
    PUMP_UNTIL(&a, NULL, atomic_load(&r3.count) == 1);
    assert_true(atomic_load(&r3.status) < 0);
    assert_non_null(strstr(a.close_msg, "rma_read"));

    /* Keys that cannot hold fail at once, with no on_read. */
    assert_int_equal(T->rma_read(c, dst, NULL, offer[0].addr, 8, offer[0].key, 3, &r),
                     DISCO_EINVAL);
    assert_int_equal(T->rma_read(c, dst, NULL, offer[0].addr + 1, RMA_SIZE,
                                 offer[0].key, offer[0].keylen, &r),
                     DISCO_EINVAL);
    assert_int_equal(T->rma_read(c, dst, NULL, offer[0].addr - 1, 8, offer[0].key,
                                 offer[0].keylen, &r),
                     DISCO_EINVAL);
    uint8_t mine[DISCO_TRANSPORT_KEY_MAX];
    size_t mylen;
    disco_mr *mr;
    assert_int_equal(T->mem_register(a.tp, dst, 4096, &mr, mine, &mylen), 0);
    assert_int_equal(T->rma_read(c, want, NULL, (uintptr_t)dst, 8, mine, mylen, &r),
                     DISCO_EINVAL); /* our own key is not the peer's */
    T->mem_deregister(mr);
    pump_for(&a, NULL, 20);
    assert_int_equal(atomic_load(&r.count), 1);
    assert_int_equal(atomic_load(&a.read_ok), 2);
    assert_int_equal(atomic_load(&a.read_err), 1);

    T->conn_close(c);
    int status = wait_child(pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    ep_close(&a);
    free(dst);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_table),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_listen_address),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_exchange),
        cmocka_unit_test(test_big_message),
        cmocka_unit_test(test_many_iovecs),
        cmocka_unit_test(test_two_threads_send),
        cmocka_unit_test(test_peer_close),
        cmocka_unit_test(test_close_with_queued_sends),
        cmocka_unit_test(test_send_copy),
        cmocka_unit_test(test_close_inside_callback),
        cmocka_unit_test(test_close_while_progress_runs),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_send_wakes_progress),
        cmocka_unit_test(test_wait_fd),
        cmocka_unit_test(test_blocking_ping_pong),
        cmocka_unit_test(test_fds_and_segments),
        cmocka_unit_test(test_forked_peer),
        cmocka_unit_test(test_peer_killed),
        cmocka_unit_test(test_rma_read),
    };
    return cmocka_run_group_tests_name("shm", tests, NULL, NULL);
}
