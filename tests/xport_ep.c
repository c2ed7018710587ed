/* SPDX-License-Identifier: BSD-3-Clause */
#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "disco.h"
#include "xport_ep.h"

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- callbacks ------------------------------------------------------------ */

static const uint8_t ack_byte = 'k';

static void note_late(ep *e, disco_conn *c)
{
    if (atomic_load(&e->dead) == (uintptr_t)c)
        atomic_fetch_add(&e->late, 1);
}

static void cb_accept(void *ctx, disco_conn *c)
{
    ep *e = ctx;
    pthread_mutex_lock(&e->mu);
    if (e->naccepted < MAXC)
        e->accepted[e->naccepted++] = c;
    pthread_mutex_unlock(&e->mu);
}

static void cb_recv(void *ctx, disco_conn *c, const uint8_t *data, size_t len)
{
    ep *e = ctx;
    note_late(e, c);
    pthread_mutex_lock(&e->mu);
    e->nrecv++;
    e->rxtotal += len;
    e->hash = fnv(e->hash, data, len);
    if (e->rx) {
        size_t k = len < e->rxcap - e->rxlen ? len : e->rxcap - e->rxlen;
        memcpy(e->rx + e->rxlen, data, k);
        e->rxlen += k;
    }
    bool close_it = e->close_in_recv, ack = e->echo_ack, slow = e->slow_recv;
    pthread_mutex_unlock(&e->mu);
    if (ack) {
        struct iovec v = {(void *)&ack_byte, 1};
        e->ops->send(c, &v, 1, NULL);
    }
    if (slow) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
        note_late(e, c); /* still running after conn_close returned? */
    }
    if (close_it) {
        e->ops->conn_close(c);
        atomic_store(&e->dead, (uintptr_t)c);
    }
}

static void cb_close(void *ctx, disco_conn *c, int status)
{
    ep *e = ctx;
    note_late(e, c);
    long seq = atomic_fetch_add(&e->seq, 1);
    const disco_error *err = disco_last_error();
    pthread_mutex_lock(&e->mu);
    if (e->nclosed < MAXC) {
        e->closed[e->nclosed] = c;
        e->close_status[e->nclosed] = status;
        e->close_ctx[e->nclosed] = e->ops->conn_context(c);
        e->close_seq[e->nclosed++] = seq;
    }
    if (status < 0 && err)
        snprintf(e->close_msg, sizeof(e->close_msg), "%s", disco_error_message(err));
    pthread_mutex_unlock(&e->mu);
}

/* Counts the token's completion; seq orders it among e's callbacks. */
static void note_done(rec *r, long seq, int status)
{
    if (r) {
        atomic_store(&r->status, status);
        atomic_store(&r->seq, seq);
        atomic_fetch_add(&r->count, 1);
    }
}

static void cb_sent(void *ctx, disco_conn *c, void *token, int status)
{
    ep *e = ctx;
    note_late(e, c);
    long seq = atomic_fetch_add(&e->seq, 1);
    atomic_fetch_add(status == 0 ? &e->sent_ok : &e->sent_err, 1);
    note_done(token, seq, status);
}

static void cb_read(void *ctx, disco_conn *c, void *token, int status)
{
    ep *e = ctx;
    note_late(e, c);
    long seq = atomic_fetch_add(&e->seq, 1);
    atomic_fetch_add(status == 0 ? &e->read_ok : &e->read_err, 1);
    const disco_error *err = disco_last_error();
    if (status < 0 && err) {
        pthread_mutex_lock(&e->mu);
        snprintf(e->close_msg, sizeof(e->close_msg), "%s", disco_error_message(err));
        pthread_mutex_unlock(&e->mu);
    }
    note_done(token, seq, status);
}

const disco_transport_callbacks ep_callbacks = {
    .on_accept = cb_accept,
    .on_recv = cb_recv,
    .on_close = cb_close,
    .on_sent = cb_sent,
    .on_read = cb_read,
};

/* ---- the endpoint ---------------------------------------------------------- */

int ep_try_open(ep *e, const disco_transport_ops *ops, const char *host, const char *arg)
{
    memset(e, 0, sizeof(*e));
    e->ops = ops;
    pthread_mutex_init(&e->mu, NULL);
    e->hash = FNV_INIT;
    int rc = ops->init(&e->tp, host, arg, &ep_callbacks, e);
    if (rc != 0)
        pthread_mutex_destroy(&e->mu);
    return rc;
}

void ep_open(ep *e, const disco_transport_ops *ops, const char *host, const char *arg)
{
    int rc = ep_try_open(e, ops, host, arg);
    const disco_error *err = disco_last_error();
    if (rc != 0)
        fail_msg("%s init(%s, %s): %d, %s", ops->name, host ? host : "NULL",
                 arg ? arg : "NULL", rc, err ? disco_error_message(err) : "");
}

void ep_close(ep *e)
{
    e->ops->fini(e->tp);
    free(e->rx);
    pthread_mutex_destroy(&e->mu);
}

void ep_store(ep *e, size_t cap)
{
    e->rx = malloc(cap);
    assert_non_null(e->rx);
    e->rxcap = cap;
}

int ep_naccepted(ep *e)
{
    pthread_mutex_lock(&e->mu);
    int n = e->naccepted;
    pthread_mutex_unlock(&e->mu);
    return n;
}

int ep_nclosed(ep *e)
{
    pthread_mutex_lock(&e->mu);
    int n = e->nclosed;
    pthread_mutex_unlock(&e->mu);
    return n;
}

size_t ep_rxtotal(ep *e)
{
    pthread_mutex_lock(&e->mu);
    size_t n = e->rxtotal;
    pthread_mutex_unlock(&e->mu);
    return n;
}

int ep_closed_index(ep *e, disco_conn *c)
{
    pthread_mutex_lock(&e->mu);
    int k = -1;
    for (int i = 0; i < e->nclosed; i++)
        if (e->closed[i] == c)
            k = i;
    pthread_mutex_unlock(&e->mu);
    return k;
}

int ep_send(ep *e, disco_conn *c, const void *p, size_t n, rec *r)
{
    struct iovec v = {(void *)p, n};
    return e->ops->send(c, &v, 1, r);
}

/* ---- pumping ---------------------------------------------------------------- */

void pump_once(ep *a, ep *b)
{
    int n = 0;
    if (a)
        n += a->ops->progress(a->tp, 0);
    if (b)
        n += b->ops->progress(b->tp, 0);
    if (n == 0) {
        ep *e = b ? b : a;
        e->ops->progress(e->tp, b && a ? 1 : 10);
    }
}

void pump_for(ep *a, ep *b, int ms)
{
    double end = now_s() + ms / 1000.0;
    while (now_s() < end)
        pump_once(a, b);
}

disco_conn *connect_pair(ep *a, ep *b, disco_conn **bc)
{
    char addr[DISCO_TRANSPORT_ADDR_MAX];
    assert_int_equal(b->ops->local_address(b->tp, addr, sizeof(addr)), 0);
    int before = ep_naccepted(b);
    disco_conn *c = NULL;
    assert_int_equal(a->ops->connect(a->tp, addr, a, &c), 0);
    assert_non_null(c);
    PUMP_UNTIL(a, b, ep_naccepted(b) > before);
    *bc = b->accepted[before];
    return c;
}

/* ---- payloads ------------------------------------------------------------ */

uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        p[i] = (uint8_t)(x >> (8 * (i % 8)));
    }
}

/* ---- around the transport ------------------------------------------------ */

int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own */
}

bool fd_readable(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, ms) == 1 && (pfd.revents & POLLIN);
}

void *block_main(void *arg)
{
    blocked *bl = arg;
    bl->rc = bl->e->ops->progress(bl->e->tp, -1);
    atomic_store(&bl->done, true);
    return NULL;
}

void *sender_main(void *arg)
{
    sender *s = arg;
    for (uint32_t i = 0; i < PER_THREAD; i++) {
        s->msg[i][0] = s->id;
        s->msg[i][1] = i;
        struct iovec v[2] = {{&s->msg[i][0], 4}, {&s->msg[i][1], 4}};
        if (s->e->ops->send(s->c, v, 2, &s->recs[i]) != 0)
            atomic_fetch_add(&s->failures, 1);
    }
    return NULL;
}

void *runner_main(void *arg)
{
    runner *r = arg;
    static uint8_t feed_buf[64 * 1024];
    static rec dummy; /* tokens are not looked at here */
    while (!atomic_load(&r->stop)) {
        if (r->e->ops->progress(r->e->tp, 1) < 0)
            r->errors++;
        if (r->feed && atomic_load(&r->e->sent_ok) + atomic_load(&r->e->sent_err) +
                               8 > atomic_load(&r->inflight)) {
            if (ep_send(r->e, r->feed, feed_buf, sizeof(feed_buf), &dummy) == 0)
                atomic_fetch_add(&r->inflight, 1);
            else
                r->feed = NULL; /* closed by the peer */
        }
    }
    return NULL;
}
