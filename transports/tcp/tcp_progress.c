/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TCP transport: progress.
 *
 * One epoll_wait, then for each ready socket: accept (bounded), finish a
 * connect, read (bounded: TCP_READS_PER_CALL reads of TCP_RBUF_SIZE per
 * connection per call, so a busy peer cannot starve the others; epoll is
 * level-triggered and reports the rest next time), write the queue, and run
 * the callbacks the connection owes. Then the ready list: connections whose
 * sends completed outside progress, or that broke there.
 *
 * The hot connection: a poll (timeout 0) right after data came on a
 * connection reads that connection directly instead of asking epoll first.
 * A busy-polling caller in a round trip then pays one recv per message, as a
 * raw ping-pong does, instead of an epoll_wait and a recv. Every
 * TCP_HOT_POLLS polls epoll_wait runs anyway (level-triggered: nothing is
 * lost), so the other connections, the listener and the eventfd wait at
 * most that many polls.
 *
 * Once hot polls have read data from the hot connection TCP_UNWATCH_HITS
 * times in a row, it leaves epoll (unwatched): epoll's callback on each of
 * its packets bought nothing while it is polled anyway. Progress then polls
 * it on every call, the epoll_wait ones included. It goes back into epoll
 * before any sleep (a progress call with a timeout, or after wait_arm) and
 * when another connection becomes hot. Each move is one epoll_ctl, paid only
 * by a caller that polls rather than sleeps.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "transports/tcp/tcp.h"

#define TCP_DELIVER_BUDGET 1024 /* callbacks per connection per call */

static int handle_listener(tcp_transport *tp)
{
    int n = 0;
    for (int i = 0; i < TCP_ACCEPTS_PER_CALL; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(tp->lfd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break; /* EAGAIN; or EMFILE and the like: retried next call */
        }
        tcp_set_nodelay(fd);
        char peer[TCP_PEER_LEN];
        tcp_addr_format((struct sockaddr *)&ss, peer, sizeof(peer));
        tcp_conn *c = tcp_conn_new(tp, fd, TCP_OPEN, peer, NULL);
        if (!c) {
            close(fd);
            continue;
        }
        pthread_mutex_lock(&c->mu);
        int err = tcp_conn_update_events_locked(c);
        if (err) { /* the core never saw it: drop it quietly */
            pthread_mutex_unlock(&c->mu);
            if (!tcp_conn_shutdown(c, DISCO_ECLOSED))
                tcp_conn_free(c);
            continue;
        }
        tcp_conn_cb_enter_locked(c);
        tp->cb.on_accept(tp->ctx, tcp_dc(c));
        tcp_conn_cb_leave_locked(c);
        pthread_mutex_unlock(&c->mu);
        n++;
    }
    return n;
}

/* Reads what c has (mu held), calling on_recv for each chunk. */
static int read_locked(tcp_transport *tp, tcp_conn *c)
{
    char ebuf[128];
    int n = 0;
    for (int i = 0; i < TCP_READS_PER_CALL && c->state == TCP_OPEN; i++) {
        ssize_t r = recv(c->fd, tp->rbuf, sizeof(tp->rbuf), 0);
        if (r > 0) {
            tp->last_read = c;
            tcp_conn_cb_enter_locked(c);
            tp->cb.on_recv(tp->ctx, tcp_dc(c), tp->rbuf, (size_t)r);
            tcp_conn_cb_leave_locked(c);
            n++;
            if ((size_t)r < sizeof(tp->rbuf))
                break; /* most likely drained: epoll says if not */
        } else if (r == 0) {
            if (c->sock_err)
                tcp_conn_fail_locked(c, tcp_status(c->sock_err),
                                     "tcp: connection to %s broken: %s", c->peer,
                                     strerror_r(c->sock_err, ebuf, sizeof(ebuf)));
            else
                tcp_conn_fail_locked(c, 0, "tcp: %s closed the connection",
                                     c->peer);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            tcp_conn_fail_locked(c, tcp_status(errno),
                                 "tcp: read from %s: %s", c->peer,
                                 strerror_r(errno, ebuf, sizeof(ebuf)));
        }
    }
    return n;
}

/* Completes a non-blocking connect (mu held). A hang-up without an error
 * opens the connection: the read that follows finds the end. */
static void connect_done_locked(tcp_conn *c)
{
    char ebuf[128];
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err)
        tcp_conn_fail_locked(c, tcp_status(err), "tcp: connect to %s: %s",
                             c->peer, strerror_r(err, ebuf, sizeof(ebuf)));
    else
        c->state = TCP_OPEN;
}

/* Handles events on c; *open says whether c is still open after it. */
static int handle_conn(tcp_transport *tp, tcp_conn *c, uint32_t events, bool *open)
{
    char ebuf[128];
    int n = 0;
    /* A sender holds mu while it writes: rather than sleep on the mutex
     * (and make the sender's unlock a futex_wake), come back to c at the
     * next poll (epoll is level-triggered; the hot connection is polled
     * again anyway). */
    if (pthread_mutex_trylock(&c->mu) != 0)
        return 0;
    bool writable = events & (EPOLLOUT | EPOLLERR | EPOLLHUP);
    if (c->state == TCP_CONNECTING && writable)
        connect_done_locked(c);
    if (c->state == TCP_OPEN && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        n += read_locked(tp, c);
    if (c->state == TCP_OPEN && c->head && writable) {
        int err = tcp_conn_write_locked(c);
        if (err)
            tcp_conn_fail_locked(c, tcp_status(-err), "tcp: write to %s: %s",
                                 c->peer, strerror_r(-err, ebuf, sizeof(ebuf)));
    }
    if (c->state == TCP_OPEN) {
        int err = tcp_conn_update_events_locked(c);
        if (err)
            tcp_conn_fail_locked(c, tcp_status(-err), "tcp: epoll_ctl for %s: %s",
                                 c->peer, strerror_r(-err, ebuf, sizeof(ebuf)));
    }
    *open = c->state == TCP_OPEN;
    /* Looked at here rather than under a second lock: what a sender
     * completes after this reaches the ready list. */
    bool owes = tcp_conn_owes_locked(c);
    pthread_mutex_unlock(&c->mu);
    return owes ? n + tcp_conn_deliver(c, TCP_DELIVER_BUDGET) : n;
}

/* Runs the callbacks owed by connections on the ready list, at most
 * TCP_EVENTS connections per call (the rest stay for the next call). */
static int drain_ready(tcp_transport *tp)
{
    int n = 0;
    for (int i = 0; i < TCP_EVENTS; i++) {
        pthread_mutex_lock(&tp->lock);
        tcp_conn *c = tp->ready;
        if (c) {
            tp->ready = c->rnext;
            if (tp->ready)
                tp->ready->rprev = NULL;
            else
                tp->ready_tail = NULL;
            c->on_ready = false;
            c->rnext = c->rprev = NULL;
        }
        pthread_mutex_unlock(&tp->lock);
        if (!c)
            break;
        n += tcp_conn_deliver(c, TCP_DELIVER_BUDGET); /* c cannot be freed
                                                        * before we return */
    }
    return n;
}

/* Puts c back into epoll (progress thread, in a progress call: c is not
 * freed before it returns). */
static void rewatch(tcp_conn *c)
{
    char ebuf[128];
    pthread_mutex_lock(&c->mu);
    int err = tcp_conn_rewatch_locked(c);
    if (err)
        tcp_conn_fail_locked(c, tcp_status(-err), "tcp: epoll_ctl for %s: %s", c->peer,
                             strerror_r(-err, ebuf, sizeof(ebuf)));
    pthread_mutex_unlock(&c->mu);
}

/* Takes c, hot, out of epoll (as rewatch). A failure leaves it watched. */
static void unwatch(tcp_conn *c)
{
    if (pthread_mutex_trylock(&c->mu) != 0)
        return; /* a sender has it: next time */
    bool out = tcp_conn_unwatch_locked(c) == 0 && c->unwatched;
    pthread_mutex_unlock(&c->mu);
    if (!out)
        return;
    pthread_mutex_lock(&c->tp->lock);
    if (!c->gone) /* else shut down meanwhile: nothing to put back */
        c->tp->unwatched = c;
    pthread_mutex_unlock(&c->tp->lock);
}

int tcp_progress(disco_transport *dtp, int timeout_ms)
{
    if (!dtp)
        return disco_error_set(DISCO_EINVAL, "tcp: progress: NULL transport");
    tcp_transport *tp = tcp_tp(dtp);
    pthread_mutex_lock(&tp->lock);
    if (tp->in_progress) {
        pthread_mutex_unlock(&tp->lock);
        return disco_error_set(DISCO_EBUSY,
                               "tcp: progress called while it runs (nested or "
                               "from two threads)");
    }
    tp->in_progress = true;
    tp->lazy_done = 0; /* this call delivers them */
    if (tp->ready)
        timeout_ms = 0;
    /* hot and unwatched cannot be freed before this call returns (zombies
     * at worst). */
    tcp_conn *hot = NULL, *out = tp->unwatched;
    if (timeout_ms == 0 && tp->hot && tp->hot_polls < TCP_HOT_POLLS) {
        hot = tp->hot;
        tp->hot_polls++;
    } else {
        tp->hot_polls = 0;
    }
    /* Before a sleep, epoll must see every connection again. */
    if (out && (timeout_ms != 0 || tp->rewatch))
        tp->unwatched = NULL;
    else
        out = NULL;
    if (timeout_ms != 0 || tp->rewatch)
        tp->hot_hits = 0;
    tp->rewatch = false;
    tp->sleeping = timeout_ms != 0;
    tp->woken = false;
    tp->last_read = NULL;
    pthread_mutex_unlock(&tp->lock);
    if (out)
        rewatch(out);

    int n = 0, rc = 0;
    bool open = true; /* hot is still open */
    if (hot) {
        int k = handle_conn(tp, hot, EPOLLIN | EPOLLOUT, &open); /* writes only if queued */
        n += k ? k + 1 : 0; /* counted as an epoll event would be */
    } else {
        struct epoll_event evs[TCP_EVENTS];
        int nev = epoll_wait(tp->epfd, evs, TCP_EVENTS, timeout_ms);
        int err = errno;

        pthread_mutex_lock(&tp->lock);
        tp->sleeping = false;
        out = tp->unwatched; /* not in evs: polled here */
        pthread_mutex_unlock(&tp->lock);

        if (nev < 0 && err != EINTR)
            rc = tcp_fail_errno(err, "epoll_wait", "failed");
        for (int i = 0; i < nev; i++) {
            void *p = evs[i].data.ptr;
            if (p == &tp->lfd) {
                n += handle_listener(tp);
            } else if (p == &tp->evfd) {
                uint64_t v;
                (void)!read(tp->evfd, &v, sizeof(v));
            } else {
                bool ignored;
                n += handle_conn(tp, p, evs[i].events, &ignored);
                n++; /* the socket event itself, callbacks or not */
            }
        }
        if (out) {
            bool ignored;
            int k = handle_conn(tp, out, EPOLLIN | EPOLLOUT, &ignored);
            n += k ? k + 1 : 0;
        }
    }
    pthread_mutex_lock(&tp->lock);
    if (tp->ready) {
        pthread_mutex_unlock(&tp->lock);
        n += drain_ready(tp);
        pthread_mutex_lock(&tp->lock);
    }
    /* Data on hot poll after poll: spinning catches this connection's
     * messages, so epoll's work on each of them (its callback runs in the
     * sender's softirq: +0.4 us a round trip here) buys nothing. Take hot
     * out of epoll until a sleep, or until another connection is hot. */
    bool hit = hot && tp->last_read == hot;
    if (hit)
        tp->hot_hits++;
    else if (tp->last_read && tp->last_read != tp->hot)
        tp->hot_hits = 0;
    tcp_conn *leave = hit && tp->hot_hits >= TCP_UNWATCH_HITS && !tp->unwatched &&
                              !hot->gone ? hot : NULL;
    if (tp->last_read && !tp->last_read->gone)
        tp->hot = tp->last_read;
    else if (!open && tp->hot == hot)
        tp->hot = NULL;
    out = tp->unwatched && tp->unwatched != tp->hot ? tp->unwatched : NULL;
    if (out)
        tp->unwatched = NULL;
    if (out || leave) { /* epoll_ctl, under the connection's mutex only */
        pthread_mutex_unlock(&tp->lock);
        if (out)
            rewatch(out);
        if (leave)
            unwatch(leave);
        pthread_mutex_lock(&tp->lock);
    }
    tp->in_progress = false;
    tcp_conn *z = tp->zombies;
    tp->zombies = NULL;
    pthread_mutex_unlock(&tp->lock);
    while (z) {
        tcp_conn *next = z->znext;
        tcp_conn_free(z);
        z = next;
    }
    return rc < 0 ? rc : n;
}
