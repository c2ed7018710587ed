/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libfabric transport: progress, waiting, interrupt.
 *
 * A round of work reads the completion queue (bounded: OFI_CQ_ROUNDS reads
 * of OFI_CQ_BATCH entries; with FI_PROGRESS_MANUAL this is also what drives
 * the provider), handles receives (handshakes, data, closes) and send and
 * read completions, re-posts receive buffers, pushes every connection's
 * queue, fails overdue connects, then runs the callbacks owed.
 *
 * Sleeping: fi_trywait on the completion queue, then epoll_wait on an epoll
 * set holding the queue's wait fd (FI_WAIT_FD, from fi_control
 * FI_GETWAIT) and an eventfd that interrupt() and sends made outside
 * progress write. The epoll fd is also wait_fd. Polling (sleeps of at most
 * OFI_POLL_MS, then a look at the queue) replaces the queue's fd when
 * the provider has none (shm in libfabric 1.17), and is used while a
 * connection waits for the provider to take a buffer: the provider signals
 * no event when its queue drains. Without a queue fd, wait_arm arms a
 * one-shot timer of OFI_POLL_MS in the epoll set instead, so that the
 * core's poll() on wait_fd wakes up to look: an armed, idle transport is
 * then not quiet, it ticks.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "transports/ofi/ofi.h"

double ofi_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void ofi_wake(ofi_transport *tp)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is full, so progress is awake anyway. */
    (void)!write(tp->evfd, &one, sizeof(one));
}

bool ofi_want_wake_locked(ofi_transport *tp)
{
    if (!tp->sleeping || tp->woken)
        return false;
    return tp->woken = true;
}

void ofi_interrupt(disco_transport *dtp)
{
    if (dtp)
        ofi_wake(ofi_tp(dtp));
}

int ofi_wait_fd(disco_transport *dtp)
{
    return dtp ? ofi_tp(dtp)->epfd : -1;
}

void ofi_rx_post_locked(ofi_transport *tp, ofi_rx *rx)
{
    /* Every message has tag 0: its header says what it is (see ofi.h). */
    ssize_t rc = fi_trecv(tp->ep, rx->buf, OFI_CHUNK, tp->rx_desc, FI_ADDR_UNSPEC,
                          0, 0, &rx->op);
    rx->posted = rc == 0; /* else retried by the next round */
}

/* A HELLO: a peer connects (payload: see ofi.h). */
static int on_hello_locked(ofi_transport *tp, const uint8_t *p, size_t len)
{
    uint64_t rid;
    fi_addr_t addr;
    if (len < sizeof(rid) + 1 || tp->finishing)
        return 0; /* malformed, or too late: nothing to answer */
    memcpy(&rid, p, sizeof(rid));
    size_t rawlen = p[sizeof(rid)];
    const uint8_t *raw = p + sizeof(rid) + 1;
    size_t rest = len - sizeof(rid) - 1;
    if (rawlen == 0 || rawlen > OFI_ADDR_RAW_MAX || rawlen > rest)
        return 0;
    if (ofi_av_lookup_locked(tp, raw, rawlen, &addr) != 0)
        return 0;
    if (rest - rawlen != tp->rawlen || memcmp(raw + rawlen, tp->raw, tp->rawlen)) {
        /* Meant for another endpoint: refuse, so that the connect fails
         * now rather than at its deadline. */
        ofi_send_close_locked(tp, addr, ofi_hdr(OFI_CLOSE, rid, 0));
        return 0;
    }
    char peer[OFI_PEER_LEN];
    ofi_peer_name(tp, raw, rawlen, peer, sizeof(peer));
    ofi_conn *c = ofi_conn_new_locked(tp, OFI_OPEN, addr, peer, NULL);
    if (!c)
        return 0; /* the peer's connect times out */
    c->rid = rid;
    const struct iovec ack[] = {{&c->id, sizeof(c->id)}, {tp->raw, tp->rawlen}};
    if (ofi_conn_stage_ctl_locked(c, OFI_ACK, rid, ack, 2)) {
        /* No buffer for the ACK: the core never saw c, drop it. */
        pthread_mutex_unlock(&tp->lock);
        ofi_conn_shutdown(c, true);
        pthread_mutex_lock(&tp->lock);
        return 0;
    }
    ofi_conn_push_locked(c);
    ofi_cb_enter_locked(tp, c);
    tp->cb.on_accept(tp->ctx, ofi_dc(c));
    ofi_cb_leave_locked(tp);
    return 1;
}

static void on_ack_locked(ofi_conn *c, const uint8_t *p, size_t len)
{
    if (c->state != OFI_CONNECTING || len < sizeof(c->rid))
        return;
    memcpy(&c->rid, p, sizeof(c->rid));
    c->state = OFI_OPEN;
    ofi_conn_push_locked(c); /* what was queued while connecting */
}

/* Delivers one numbered message to c (lock held, dropped for callbacks). */
static int deliver_rx_locked(ofi_transport *tp, ofi_conn *c, ofi_rx *rx)
{
    int n = 1;
    if (rx->kind == OFI_ACK) {
        on_ack_locked(c, rx->buf + OFI_HDR, rx->len);
    } else if (rx->kind == OFI_DATA) {
        ofi_cb_enter_locked(tp, c);
        tp->cb.on_recv(tp->ctx, ofi_dc(c), rx->buf + OFI_HDR, rx->len);
        ofi_cb_leave_locked(tp);
    } else if (c->state == OFI_CONNECTING) { /* see ofi.h */
        ofi_conn_fail_locked(c, DISCO_ECLOSED, "ofi: %s refused the connection",
                             c->peer);
    } else {
        ofi_conn_fail_locked(c, 0, "ofi: %s closed the connection", c->peer);
    }
    ofi_rx_post_locked(tp, rx);
    return n;
}

/* Holds rx on c until its predecessors have come (lock held). */
static void hold_locked(ofi_conn *c, ofi_rx *rx)
{
    uint32_t d = (rx->seq - c->rx_seq) & OFI_SEQ_MASK;
    ofi_rx **p = &c->held;
    while (*p && (((*p)->seq - c->rx_seq) & OFI_SEQ_MASK) < d)
        p = &(*p)->next;
    rx->next = *p;
    *p = rx;
}

static bool live(const ofi_conn *c)
{
    return c->state == OFI_OPEN || c->state == OFI_CONNECTING;
}

/* An ACK for a connection closed (or timed out) before it came: the
 * acceptor's end is open, close it (see ofi.h). Payload: its id, its
 * address. */
static void on_stray_ack_locked(ofi_transport *tp, const uint8_t *p, size_t len)
{
    uint64_t rid;
    fi_addr_t addr;
    if (len <= sizeof(rid) || len - sizeof(rid) > OFI_ADDR_RAW_MAX)
        return;
    memcpy(&rid, p, sizeof(rid));
    if (ofi_av_lookup_locked(tp, p + sizeof(rid), len - sizeof(rid), &addr) == 0)
        ofi_send_close_locked(tp, addr, ofi_hdr(OFI_CLOSE, rid, 0));
}

static int on_rx_locked(ofi_transport *tp, ofi_rx *rx, size_t len)
{
    uint64_t hdr;
    if (len < OFI_HDR) { /* not from a disco peer */
        ofi_rx_post_locked(tp, rx);
        return 0;
    }
    memcpy(&hdr, rx->buf, OFI_HDR);
    rx->kind = (unsigned)(hdr >> OFI_KIND_SHIFT);
    rx->seq = (uint32_t)(hdr >> OFI_SEQ_SHIFT) & OFI_SEQ_MASK;
    rx->len = len - OFI_HDR;
    if (rx->kind == OFI_HELLO) {
        int n = on_hello_locked(tp, rx->buf + OFI_HDR, rx->len);
        ofi_rx_post_locked(tp, rx);
        return n;
    }
    uint64_t id = hdr & OFI_ID_MASK;
    ofi_conn *c = ofi_conn_lookup_locked(tp, id);
    if (!c || !live(c)) { /* a late message for a closed connection */
        if (rx->kind == OFI_ACK)
            on_stray_ack_locked(tp, rx->buf + OFI_HDR, rx->len);
        ofi_rx_post_locked(tp, rx);
        return 0;
    }
    if (rx->seq != c->rx_seq) {
        hold_locked(c, rx);
        return 0;
    }
    int n = 0;
    for (;;) {
        c->rx_seq = (c->rx_seq + 1) & OFI_SEQ_MASK;
        n += deliver_rx_locked(tp, c, rx);
        /* c may have been closed by the callback (then it released what it
         * held, and its id no longer resolves). */
        if (ofi_conn_lookup_locked(tp, id) != c || !live(c) || !c->held ||
            c->held->seq != c->rx_seq)
            break;
        rx = c->held;
        c->held = rx->next;
    }
    return n;
}

static int on_completion_locked(ofi_transport *tp, const struct fi_cq_tagged_entry *e)
{
    ofi_op *op = e->op_context;
    if (!op)
        return 0;
    switch (op->kind) {
    case OFI_OP_TX:
        ofi_tx_done_locked(tp, (ofi_tx *)op, 0, 0);
        return 0; /* its on_sent, if any, counts when delivered */
    case OFI_OP_RX:
        return on_rx_locked(tp, (ofi_rx *)op, e->len);
    default:
        ofi_read_done_locked(tp, (ofi_read_piece *)op, 0, 0);
        return 0;
    }
}

static void on_error_locked(ofi_transport *tp)
{
    struct fi_cq_err_entry e;
    memset(&e, 0, sizeof(e));
    if (fi_cq_readerr(tp->cq, &e, 0) != 1 || !e.op_context)
        return;
    ofi_op *op = e.op_context;
    if (op->kind == OFI_OP_TX) {
        ofi_tx_done_locked(tp, (ofi_tx *)op, e.err, e.prov_errno);
    } else if (op->kind == OFI_OP_READ) {
        ofi_read_done_locked(tp, (ofi_read_piece *)op, e.err, e.prov_errno);
    } else {
        /* A receive failed: cancelled, or truncated (a peer with another
         * OFI_CHUNK), which tears the stream of its connection. A truncated
         * message fills the buffer, its header first. */
        ofi_rx *rx = (ofi_rx *)op;
        uint64_t hdr = 0;
        if (e.err == FI_ETRUNC)
            memcpy(&hdr, rx->buf, OFI_HDR);
        ofi_conn *c = ofi_conn_lookup_locked(tp, hdr & OFI_ID_MASK); /* 0: none */
        if (c && (hdr >> OFI_KIND_SHIFT) == OFI_DATA)
            ofi_conn_fail_locked(c, DISCO_EPROTO, "ofi: receive from %s failed: %s",
                                 c->peer, fi_strerror(e.err));
        ofi_rx_post_locked(tp, rx);
    }
}

static int read_cq_locked(ofi_transport *tp)
{
    struct fi_cq_tagged_entry ev[OFI_CQ_BATCH];
    int n = 0;
    for (int round = 0; round < OFI_CQ_ROUNDS; round++) {
        ssize_t k = fi_cq_read(tp->cq, ev, OFI_CQ_BATCH);
        if (k == -FI_EAVAIL) {
            on_error_locked(tp);
            n++;
            continue;
        }
        if (k <= 0)
            break; /* -FI_EAGAIN: empty */
        for (ssize_t i = 0; i < k; i++)
            n += on_completion_locked(tp, &ev[i]);
        n += (int)k;
        if (k < OFI_CQ_BATCH)
            break;
    }
    return n;
}

bool ofi_drain_locked(ofi_transport *tp)
{
    read_cq_locked(tp);
    ofi_close_retry_locked(tp);
    return tp->ntx_free == OFI_NTX && !tp->closes;
}

/* One round of work (see the top of the file). Returns what happened. */
static int work(ofi_transport *tp)
{
    pthread_mutex_lock(&tp->lock);
    int n = read_cq_locked(tp);
    for (int i = 0; i < OFI_NRX; i++)
        if (!tp->rx[i].posted)
            ofi_rx_post_locked(tp, &tp->rx[i]);
    ofi_read_retry_locked(tp);
    ofi_close_retry_locked(tp);
    bool blocked = tp->rretry != NULL || tp->closes != NULL;
    for (ofi_conn *c = tp->conns; c; c = c->next) {
        if (c->state == OFI_OPEN || c->state == OFI_CONNECTING)
            ofi_conn_push_locked(c);
        blocked |= c->blocked;
    }
    tp->any_blocked = blocked;
    tp->next_deadline = ofi_check_deadlines_locked(tp, ofi_now());
    pthread_mutex_unlock(&tp->lock);
    return n + ofi_deliver_ready(tp);
}

/* Consumes the eventfd's wake-ups (and the polling timer's ticks); true
 * when there was one. */
static bool drain_evfd(ofi_transport *tp)
{
    uint64_t v;
    bool woken = read(tp->evfd, &v, sizeof(v)) == sizeof(v);
    if (tp->tfd >= 0)
        (void)!read(tp->tfd, &v, sizeof(v));
    return woken;
}

/* Sleeps until the completion queue or the eventfd signals, or until end.
 * True when woken by the eventfd (interrupt or a send). */
static bool sleep_once(ofi_transport *tp, double end)
{
    pthread_mutex_lock(&tp->lock);
    bool poll_only = tp->any_blocked || tp->ready || tp->cqfd < 0;
    double wake_at = end;
    if (tp->next_deadline > 0 && tp->next_deadline < wake_at)
        wake_at = tp->next_deadline;
    tp->sleeping = true;
    tp->woken = false;
    pthread_mutex_unlock(&tp->lock);

    struct fid *fids[1] = {&tp->cq->fid};
    int ms = 0;
    if (tp->cqfd < 0 || fi_trywait(tp->fabric, fids, 1) == FI_SUCCESS) {
        double left = (wake_at - ofi_now()) * 1000.0;
        ms = isinf(wake_at) ? -1 : left <= 0 ? 0 : (int)ceil(left);
        if (poll_only && (ms < 0 || ms > 1))
            ms = 1;
    }
    struct epoll_event evs[2];
    int k = ms == 0 ? 0 : epoll_wait(tp->epfd, evs, 2, ms);
    bool woken = false;
    for (int i = 0; i < k; i++)
        if (evs[i].data.ptr == &tp->evfd)
            woken = true;
    if (woken)
        drain_evfd(tp);
    pthread_mutex_lock(&tp->lock);
    tp->sleeping = false;
    pthread_mutex_unlock(&tp->lock);
    return woken;
}

int ofi_progress(disco_transport *dtp, int timeout_ms)
{
    if (!dtp)
        return disco_error_set(DISCO_EINVAL, "ofi: progress: NULL transport");
    ofi_transport *tp = ofi_tp(dtp);
    pthread_mutex_lock(&tp->lock);
    if (tp->in_progress) {
        pthread_mutex_unlock(&tp->lock);
        return disco_error_set(DISCO_EBUSY,
                               "ofi: progress called while it runs (nested or "
                               "from two threads)");
    }
    tp->in_progress = true;
    tp->lazy_done = 0; /* this call delivers them */
    pthread_mutex_unlock(&tp->lock);
    /* An interrupt before the call ends it after one round, as one during
     * it does. */
    bool interrupted = drain_evfd(tp);

    double end = timeout_ms < 0 ? INFINITY : ofi_now() + timeout_ms / 1000.0;
    int n = work(tp);
    while (n == 0 && timeout_ms != 0 && !interrupted && ofi_now() < end) {
        interrupted = sleep_once(tp, end);
        n = work(tp);
    }

    pthread_mutex_lock(&tp->lock);
    tp->in_progress = false;
    ofi_conn *z = tp->zombies;
    tp->zombies = NULL;
    pthread_mutex_unlock(&tp->lock);
    while (z) {
        ofi_conn *next = z->znext;
        ofi_conn_free(z);
        z = next;
    }
    return n;
}

int ofi_wait_arm(disco_transport *dtp)
{
    ofi_transport *tp = ofi_tp(dtp);
    pthread_mutex_lock(&tp->lock);
    int pending = tp->ready != NULL || tp->any_blocked;
    if (!pending) { /* as progress does before it sleeps */
        tp->sleeping = true;
        tp->woken = false;
    }
    pthread_mutex_unlock(&tp->lock);
    if (pending)
        return 1;
    if (tp->cqfd < 0) {
        struct itimerspec t = {.it_value = {0, OFI_POLL_MS * 1000000L}};
        timerfd_settime(tp->tfd, 0, &t, NULL);
        return 0;
    }
    struct fid *fids[1] = {&tp->cq->fid};
    return fi_trywait(tp->fabric, fids, 1) == FI_SUCCESS ? 0 : 1;
}
