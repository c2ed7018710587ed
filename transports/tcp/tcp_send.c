/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TCP transport: sending.
 *
 * send takes the connection's mutex. When nothing is queued it writes on the
 * caller's thread at once (one sendmsg); what the socket does not take is
 * queued (the iovec array copied, the buffers borrowed) and EPOLLOUT armed,
 * and progress writes the queue in order, gathering several sends per
 * sendmsg. Every byte is written under the mutex, so sends are never
 * interleaved. Completions never call back from here: they are recorded and
 * delivered by progress (see tcp.h).
 *
 * send_more queues without writing (c->held: no EPOLLOUT for it either);
 * the next send or flush on c writes the held sends with its own, gathered,
 * so that a batch of small messages costs one sendmsg, not one each. Past
 * TCP_HOLD_MAX held bytes send_more writes as send does.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "transports/tcp/tcp.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* Skips the finished and empty iovecs of s. True when s is complete. */
static bool send_skip(tcp_send *s)
{
    while (s->pos < s->iovcnt && s->iov[s->pos].iov_len == 0)
        s->pos++;
    return s->pos == s->iovcnt;
}

/* Accounts n written bytes against the queue; moves finished sends to the
 * completions (room for them is reserved: see tcp_conn.nqueued). */
static void queue_consume(tcp_conn *c, size_t n)
{
    tcp_send *s;
    while ((s = c->head) != NULL) {
        while (n > 0 && s->pos < s->iovcnt) {
            struct iovec *v = &s->iov[s->pos];
            size_t k = n < v->iov_len ? n : v->iov_len;
            v->iov_base = (uint8_t *)v->iov_base + k;
            v->iov_len -= k;
            n -= k;
            if (v->iov_len == 0)
                s->pos++;
        }
        if (!send_skip(s))
            break;
        c->head = s->next;
        if (!c->head) {
            c->tail = NULL;
            c->held = false; /* whoever wrote them, nothing is held now */
            c->held_bytes = 0;
        }
        c->nqueued--;
        c->done[c->done_len++] = s->token;
        free(s);
    }
}

int tcp_conn_write_locked(tcp_conn *c)
{
    while (c->head) {
        struct iovec v[TCP_GATHER];
        int n = 0;
        size_t total = 0;
        for (tcp_send *s = c->head; s && n < TCP_GATHER; s = s->next)
            for (int i = s->pos; i < s->iovcnt && n < TCP_GATHER; i++)
                if (s->iov[i].iov_len) {
                    v[n] = s->iov[i];
                    total += v[n++].iov_len;
                }
        if (n == 0) { /* only empty sends left */
            queue_consume(c, 0);
            continue;
        }
        struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        queue_consume(c, (size_t)w);
        if ((size_t)w < total)
            return 0; /* the socket is full */
    }
    return 0;
}

/* Writes iov directly (nothing is queued). Returns the bytes written, 0 on
 * EAGAIN; a hard error is remembered for progress (the send then queues and
 * fails when progress finds the socket broken) and counts as 0. */
static size_t write_direct(tcp_conn *c, const struct iovec *iov, int iovcnt)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov,
                       .msg_iovlen = (size_t)(iovcnt < IOV_MAX ? iovcnt : IOV_MAX)};
    for (;;) {
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w >= 0)
            return (size_t)w;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK && !c->sock_err)
            c->sock_err = errno;
        return 0;
    }
}

/* Queues iov[first..] with the first `skip` bytes of iov[first] written. */
static int enqueue(tcp_conn *c, const struct iovec *iov, int iovcnt, int first,
                   size_t skip, void *token)
{
    int n = iovcnt - first;
    tcp_send *s = malloc(sizeof(*s) + (size_t)n * sizeof(struct iovec));
    if (!s)
        return disco_error_set(DISCO_ENOMEM, "tcp: out of memory queuing a send");
    s->next = NULL;
    s->token = token;
    s->iovcnt = n;
    s->pos = 0;
    if (n)
        memcpy(s->iov, iov + first, (size_t)n * sizeof(struct iovec));
    if (n && skip) {
        s->iov[0].iov_base = (uint8_t *)s->iov[0].iov_base + skip;
        s->iov[0].iov_len -= skip;
    }
    send_skip(s);
    if (c->tail)
        c->tail->next = s;
    else
        c->head = s;
    c->tail = s;
    c->nqueued++;
    return 0;
}

/* Writes what c holds back, and anything queued with it (mu held); what
 * the socket does not take waits for EPOLLOUT as any queued send. */
static void write_held_locked(tcp_conn *c)
{
    char ebuf[128];
    size_t done = c->done_len;
    c->held = false;
    c->held_bytes = 0;
    int err = tcp_conn_write_locked(c);
    if (err) {
        tcp_conn_fail_locked(c, tcp_status(-err), "tcp: write to %s: %s", c->peer,
                             strerror_r(-err, ebuf, sizeof(ebuf)));
        return;
    }
    if (c->done_len > done) /* complete through progress */
        tcp_conn_mark_done_locked(c);
    if ((err = tcp_conn_update_events_locked(c)) != 0)
        tcp_conn_fail_locked(c, tcp_status(-err), "tcp: epoll_ctl for %s: %s", c->peer,
                             strerror_r(-err, ebuf, sizeof(ebuf)));
}

static size_t iov_bytes(const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    return n;
}

static int send_locked(tcp_conn *c, const struct iovec *iov, int iovcnt, void *token,
                       bool more)
{
    if (c->state == TCP_DEAD || c->state == TCP_CLOSED)
        return disco_error_set(DISCO_ECLOSED, "tcp: send on a closed connection to %s",
                               c->peer);
    /* Room to record the completion, reserved before a byte is written. */
    int rc = tcp_conn_done_reserve_locked(c, 1);
    if (rc)
        return rc;
    if (more && c->state == TCP_OPEN && (!c->head || c->held)) {
        size_t n = iov_bytes(iov, iovcnt);
        if (c->held_bytes + n <= TCP_HOLD_MAX) {
            if ((rc = enqueue(c, iov, iovcnt, 0, 0, token)) == 0) {
                c->held = true;
                c->held_bytes += n;
            }
            return rc;
        }
    }
    int first = 0;
    size_t skip = 0;
    if (c->state == TCP_OPEN && !c->head) {
        size_t w = write_direct(c, iov, iovcnt);
        while (first < iovcnt && w >= iov[first].iov_len) /* empty ones too */
            w -= iov[first++].iov_len;
        if (first == iovcnt) { /* all written: complete through progress */
            c->done[c->done_len++] = token;
            tcp_conn_mark_done_locked(c);
            return 0;
        }
        skip = w;
    }
    if ((rc = enqueue(c, iov, iovcnt, first, skip, token)) != 0) {
        if (first || skip) /* part of it is on the wire: the stream is torn */
            tcp_conn_fail_locked(c, DISCO_ENOMEM,
                                 "tcp: out of memory after a partial write to %s",
                                 c->peer);
        return rc;
    }
    if (c->held) { /* behind held sends: write them all now */
        write_held_locked(c);
        return 0;
    }
    int err = tcp_conn_update_events_locked(c);
    if (err) {
        char buf[128];
        tcp_conn_fail_locked(c, tcp_status(-err), "tcp: epoll_ctl for %s: %s",
                             c->peer, strerror_r(-err, buf, sizeof(buf)));
    }
    return 0;
}

static int send_common(disco_conn *dc, const struct iovec *iov, int iovcnt, void *token,
                       bool more)
{
    if (!dc || iovcnt < 0 || (iovcnt > 0 && !iov))
        return disco_error_set(DISCO_EINVAL, "tcp: send: bad arguments");
    tcp_conn *c = tcp_c(dc);
    pthread_mutex_lock(&c->mu);
    int rc = send_locked(c, iov, iovcnt, token, more);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int tcp_send_op(disco_conn *dc, const struct iovec *iov, int iovcnt, void *token)
{
    return send_common(dc, iov, iovcnt, token, false);
}

int tcp_send_more_op(disco_conn *dc, const struct iovec *iov, int iovcnt, void *token)
{
    return send_common(dc, iov, iovcnt, token, true);
}

void tcp_flush_op(disco_conn *dc)
{
    tcp_conn *c = tcp_c(dc);
    pthread_mutex_lock(&c->mu);
    if (c->held && c->state == TCP_OPEN)
        write_held_locked(c);
    pthread_mutex_unlock(&c->mu);
}
