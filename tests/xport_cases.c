/* SPDX-License-Identifier: BSD-3-Clause */
#include <pthread.h>
#include <string.h>

#include "disco.h"
#include "xport_cases.h"
#include "xport_ep.h"

void xport_case_two_threads_send(const disco_transport_ops *ops, const char *arg,
                                 xport_connect_fn *connect)
{
    ep a, b;
    ep_open(&a, ops, NULL, arg);
    ep_open(&b, ops, NULL, arg);
    const size_t total = 2 * PER_THREAD * 8;
    ep_store(&b, total);
    disco_conn *bc, *ac = (connect ? connect : connect_pair)(&a, &b, &bc);
    sender *s = calloc(2, sizeof(*s));
    assert_non_null(s);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        s[i].e = &a;
        s[i].c = ac;
        s[i].id = (uint32_t)i + 1;
        assert_int_equal(pthread_create(&th[i], NULL, sender_main, &s[i]), 0);
    }
    /* The test thread runs progress meanwhile. */
    PUMP_UNTIL(&a, &b,
               ep_rxtotal(&b) == total &&
                   atomic_load(&a.sent_ok) == 2 * PER_THREAD);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pump_for(&a, &b, 20);
    assert_int_equal(ep_rxtotal(&b), total);
    uint32_t next[3] = {0, 0, 0};
    for (size_t off = 0; off < total; off += 8) {
        uint32_t m[2];
        memcpy(m, b.rx + off, 8);
        assert_true(m[0] == 1 || m[0] == 2);
        assert_int_equal(m[1], next[m[0]]); /* each thread's order kept */
        next[m[0]]++;
    }
    assert_int_equal(next[1], PER_THREAD);
    assert_int_equal(next[2], PER_THREAD);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(atomic_load(&s[i].failures), 0);
        for (int k = 0; k < PER_THREAD; k++) {
            assert_int_equal(atomic_load(&s[i].recs[k].count), 1);
            assert_int_equal(atomic_load(&s[i].recs[k].status), 0);
        }
    }
    assert_int_equal(atomic_load(&a.sent_err), 0);
    ops->conn_close(ac);
    ops->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
    free(s);
}

void xport_case_peer_close(const disco_transport_ops *ops, const char *arg,
                           xport_connect_fn *connect)
{
    if (!connect)
        connect = connect_pair;
    ep a, b;
    ep_open(&a, ops, NULL, arg);
    ep_open(&b, ops, NULL, arg);
    disco_conn *bc, *ac = connect(&a, &b, &bc);
    rec r = {0};
    assert_int_equal(ep_send(&a, ac, "bye", 3, &r), 0);
    PUMP_UNTIL(&a, &b, ep_rxtotal(&b) == 3 && atomic_load(&r.count) == 1);
    ops->conn_close(ac); /* a closes: b sees a clean close */
    atomic_store(&a.dead, (uintptr_t)ac);
    PUMP_UNTIL(&a, &b, ep_nclosed(&b) == 1);
    assert_ptr_equal(b.closed[0], bc);
    assert_int_equal(b.close_status[0], 0);
    rec r2 = {0};
    assert_int_equal(ep_send(&b, bc, "late", 4, &r2), DISCO_ECLOSED);
    pump_for(&a, &b, 30);
    assert_int_equal(ep_nclosed(&b), 1); /* once */
    assert_int_equal(ep_nclosed(&a), 0); /* none after conn_close */
    assert_int_equal(atomic_load(&a.late), 0);
    assert_int_equal(atomic_load(&r2.count), 0);
    ops->conn_close(bc); /* still needed after on_close: frees */

    /* The other way round: the accepting side closes. */
    ac = connect(&a, &b, &bc);
    ops->conn_close(bc);
    PUMP_UNTIL(&a, &b, ep_closed_index(&a, ac) >= 0);
    assert_int_equal(a.close_status[ep_closed_index(&a, ac)], 0);
    ops->conn_close(ac);
    ep_close(&a);
    ep_close(&b);
}

void xport_case_close_inside_callback(const disco_transport_ops *ops, const char *arg)
{
    ep a, b;
    ep_open(&a, ops, NULL, arg);
    ep_open(&b, ops, NULL, arg);
    int fds = count_fds();
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    pthread_mutex_lock(&b.mu);
    b.close_in_recv = true; /* b closes inside on_recv */
    b.echo_ack = true;      /* after queuing a reply */
    pthread_mutex_unlock(&b.mu);
    rec r = {0};
    assert_int_equal(ep_send(&a, ac, "ping", 4, &r), 0);
    PUMP_UNTIL(&a, &b, atomic_load(&b.dead) == (uintptr_t)bc);
    PUMP_UNTIL(&a, &b, ep_closed_index(&a, ac) >= 0);
    assert_true(a.rxtotal <= 1); /* the reply, if it left before the close */
    pump_for(&a, &b, 30);
    assert_int_equal(atomic_load(&b.late), 0);
    assert_int_equal(atomic_load(&b.sent_ok) + atomic_load(&b.sent_err), 1);
    assert_int_equal(ep_nclosed(&b), 0);
    ops->conn_close(ac);
    assert_int_equal(count_fds(), fds);
    ep_close(&a);
    ep_close(&b);
}

/* conn_close from the test thread while another thread runs progress and
 * callbacks for that very connection: callbacks that send on it (echo),
 * or that only read (shm then reads its ring without the lock). */
static void close_while_progress_runs(const disco_transport_ops *ops, const char *arg,
                                      xport_connect_fn *connect, bool echo)
{
    ep a, b;
    ep_open(&a, ops, NULL, arg);
    ep_open(&b, ops, NULL, arg);
    disco_conn *bc, *ac = (connect ? connect : connect_pair)(&a, &b, &bc);
    a.echo_ack = echo;  /* a's callbacks send on ac while it is closed */
    a.slow_recv = true; /* and are likely running when it is */
    runner ra = {.e = &a}, rb = {.e = &b, .feed = bc};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, runner_main, &ra), 0);
    assert_int_equal(pthread_create(&tb, NULL, runner_main, &rb), 0);
    double deadline = now_s() + DEADLINE_S;
    while (ep_rxtotal(&a) < (1u << 20) && now_s() < deadline)
        sleep_ms(1);
    size_t before = ep_rxtotal(&a);
    ops->conn_close(ac);
    atomic_store(&a.dead, (uintptr_t)ac);
    sleep_ms(100);
    atomic_store(&ra.stop, true);
    atomic_store(&rb.stop, true);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_true(before >= (1u << 20));
    assert_int_equal(atomic_load(&a.late), 0);
    assert_int_equal(ra.errors + rb.errors, 0);
    /* Every ack a sent completed exactly once (0 or closed). */
    PUMP_UNTIL(&a, &b, ep_nclosed(&b) == 1);
    assert_int_equal(ep_nclosed(&a), 0);
    ops->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

void xport_case_close_while_progress_runs(const disco_transport_ops *ops, const char *arg,
                                          xport_connect_fn *connect)
{
    close_while_progress_runs(ops, arg, connect, true);
    close_while_progress_runs(ops, arg, connect, false);
}

void xport_case_interrupt(const disco_transport_ops *ops, const char *arg)
{
    ep a;
    ep_open(&a, ops, NULL, arg);
    blocked bl = {.e = &a};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, block_main, &bl), 0);
    sleep_ms(100);
    assert_false(atomic_load(&bl.done)); /* nothing to do: still blocked */
    /* The core serialises progress; a second caller is refused. */
    int rc = ops->progress(a.tp, 0);
    if (!atomic_load(&bl.done))
        assert_int_equal(rc, DISCO_EBUSY);
    ops->interrupt(a.tp);
    double deadline = now_s() + DEADLINE_S;
    while (!atomic_load(&bl.done) && now_s() < deadline)
        sleep_ms(1);
    assert_true(atomic_load(&bl.done));
    pthread_join(th, NULL);
    assert_true(bl.rc >= 0);
    /* A wake-up before the call is not lost. */
    ops->interrupt(a.tp);
    double t0 = now_s();
    assert_true(ops->progress(a.tp, 30000) >= 0);
    assert_true(now_s() - t0 < 10.0);
    ep_close(&a);
}

/* Sends completed on another thread wake a progress blocked forever, to
 * deliver their on_sent, once enough of them are owed (the transport may
 * keep a few for the next progress call: TCP_LAZY_DONE, SHM_LAZY_DONE = 32).
 * The sends that come after the wake-up are delivered by the next call. */
#define OWED_SENDS 64
void xport_case_send_wakes_progress(const disco_transport_ops *ops, const char *arg)
{
    ep a, b;
    ep_open(&a, ops, NULL, arg);
    ep_open(&b, ops, NULL, arg);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    pump_for(&a, &b, 20);
    blocked bl = {.e = &a};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, block_main, &bl), 0);
    sleep_ms(50);
    rec r = {0};
    for (int i = 0; i < OWED_SENDS; i++)
        assert_int_equal(ep_send(&a, ac, "z", 1, &r), 0);
    double deadline = now_s() + DEADLINE_S;
    while (!atomic_load(&bl.done) && now_s() < deadline)
        sleep_ms(1);
    assert_true(atomic_load(&bl.done)); /* woken by the completions alone */
    pthread_join(th, NULL);
    assert_true(bl.rc > 0);
    assert_true(atomic_load(&r.count) > 0);
    while (atomic_load(&r.count) < OWED_SENDS && now_s() < deadline)
        ops->progress(a.tp, 10);
    assert_int_equal(atomic_load(&r.count), OWED_SENDS);
    ops->conn_close(ac);
    ops->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}

/* Blocking on the wait fd (how the core sleeps on several transports):
 * armed with nothing pending, the fd stays quiet; a message arriving, or an
 * interrupt, makes it readable; progress then delivers. */
void xport_case_wait_fd(const disco_transport_ops *ops, const char *arg)
{
    ep a, b;
    ep_open(&a, ops, NULL, arg);
    ep_open(&b, ops, NULL, arg);
    disco_conn *bc, *ac = connect_pair(&a, &b, &bc);
    pump_for(&a, &b, 20);
    int fd = ops->wait_fd(b.tp);
    assert_true(fd >= 0);
    assert_int_equal(ops->wait_fd(b.tp), fd); /* fixed for the transport's life */
    assert_int_equal(ops->wait_arm(b.tp), 0);
    assert_false(fd_readable(fd, 50));
    size_t before = ep_rxtotal(&b);
    assert_int_equal(ep_send(&a, ac, "wake", 4, NULL), 0);
    assert_true(fd_readable(fd, DEADLINE_S * 1000));
    assert_true(ops->progress(b.tp, 0) > 0);
    assert_int_equal(ep_rxtotal(&b), before + 4);

    assert_int_equal(ops->wait_arm(b.tp), 0);
    assert_false(fd_readable(fd, 20));
    ops->interrupt(b.tp);
    assert_true(fd_readable(fd, DEADLINE_S * 1000));
    assert_true(ops->progress(b.tp, 0) >= 0);
    assert_false(fd_readable(fd, 0)); /* progress consumed the wake-up */
    ops->conn_close(ac);
    ops->conn_close(bc);
    ep_close(&a);
    ep_close(&b);
}
