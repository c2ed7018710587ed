/* SPDX-License-Identifier: BSD-3-Clause */
/* TCP transport: connection life cycle, callback delivery, conn_close. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "transports/tcp/tcp.h"

tcp_conn *tcp_conn_new(tcp_transport *tp, int fd, tcp_state state,
                       const char *peer, void *ctx)
{
    tcp_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->tp = tp;
    c->fd = fd;
    c->state = state;
    /* Adaptive: a sender and the progress thread hold mu for a few
     * instructions or one socket call; spinning a little first spares the
     * loser a futex sleep and the winner a futex_wake. */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&c->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_cond_init(&c->cv, NULL);
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    atomic_init(&c->ctx, ctx);
    pthread_mutex_lock(&tp->lock);
    c->next = tp->conns;
    if (tp->conns)
        tp->conns->prev = c;
    tp->conns = c;
    pthread_mutex_unlock(&tp->lock);
    return c;
}

void tcp_conn_free(tcp_conn *c)
{
    while (c->head) { /* empty after tcp_conn_shutdown; kept for safety */
        tcp_send *s = c->head;
        c->head = s->next;
        free(s);
    }
    free(c->done);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int tcp_conn_update_events_locked(tcp_conn *c)
{
    if (c->unwatched)
        return 0;
    uint32_t want;
    if (c->state == TCP_CONNECTING)
        want = EPOLLOUT;
    else if (c->state == TCP_OPEN)
        want = EPOLLIN | (c->head && !c->held ? EPOLLOUT : 0);
    else
        return 0;
    if (want == c->events)
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    int op = c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(c->tp->epfd, op, c->fd, &ev) != 0)
        return -errno;
    c->events = want;
    return 0;
}

int tcp_conn_unwatch_locked(tcp_conn *c)
{
    if (c->state != TCP_OPEN || c->unwatched)
        return 0;
    if (c->events && epoll_ctl(c->tp->epfd, EPOLL_CTL_DEL, c->fd, NULL) != 0)
        return -errno;
    c->events = 0;
    c->unwatched = true;
    return 0;
}

int tcp_conn_rewatch_locked(tcp_conn *c)
{
    c->unwatched = false;
    return tcp_conn_update_events_locked(c);
}

static void close_socket_locked(tcp_conn *c)
{
    if (c->fd < 0)
        return;
    if (c->events)
        epoll_ctl(c->tp->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->events = 0;
}

void tcp_conn_fail_locked(tcp_conn *c, int status, const char *fmt, ...)
{
    if (c->state == TCP_DEAD || c->state == TCP_CLOSED)
        return;
    close_socket_locked(c);
    c->state = TCP_DEAD;
    c->close_status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->close_msg, sizeof(c->close_msg), fmt, ap);
    va_end(ap);
    tcp_conn_mark_ready_locked(c);
}

/* tp->lock held: puts c on the ready list; true if progress should be
 * woken for it (then the caller calls tcp_wake after unlocking). */
static bool link_ready_locked(tcp_transport *tp, tcp_conn *c, bool urgent)
{
    if (!c->on_ready) {
        c->on_ready = true;
        c->rnext = NULL;
        c->rprev = tp->ready_tail;
        if (tp->ready_tail)
            tp->ready_tail->rnext = c;
        else
            tp->ready = c;
        tp->ready_tail = c;
    }
    if (!urgent && ++tp->lazy_done < TCP_LAZY_DONE)
        return false;
    if (tp->sleeping && !tp->woken)
        return tp->woken = true;
    return false;
}

void tcp_conn_mark_ready_locked(tcp_conn *c)
{
    tcp_transport *tp = c->tp;
    pthread_mutex_lock(&tp->lock);
    bool wake = link_ready_locked(tp, c, true);
    pthread_mutex_unlock(&tp->lock);
    if (wake)
        tcp_wake(tp);
}

void tcp_conn_mark_done_locked(tcp_conn *c)
{
    tcp_transport *tp = c->tp;
    pthread_mutex_lock(&tp->lock);
    bool wake = link_ready_locked(tp, c, false);
    pthread_mutex_unlock(&tp->lock);
    if (wake)
        tcp_wake(tp);
}

int tcp_conn_done_reserve_locked(tcp_conn *c, size_t extra)
{
    size_t need = c->done_len + c->nqueued + extra;
    if (need <= c->done_cap)
        return 0;
    if (c->done_pos > 0) { /* drop the delivered prefix first */
        memmove(c->done, c->done + c->done_pos,
                (c->done_len - c->done_pos) * sizeof(*c->done));
        c->done_len -= c->done_pos;
        need -= c->done_pos;
        c->done_pos = 0;
        if (need <= c->done_cap)
            return 0;
    }
    size_t cap = c->done_cap ? c->done_cap * 2 : 16;
    while (cap < need)
        cap *= 2;
    void **d = realloc(c->done, cap * sizeof(*d));
    if (!d)
        return disco_error_set(DISCO_ENOMEM, "tcp: out of memory queuing a send");
    c->done = d;
    c->done_cap = cap;
    return 0;
}

void tcp_conn_cb_enter_locked(tcp_conn *c)
{
    c->in_cb = true;
    c->cb_thread = pthread_self();
    pthread_mutex_unlock(&c->mu);
}

void tcp_conn_cb_leave_locked(tcp_conn *c)
{
    pthread_mutex_lock(&c->mu);
    c->in_cb = false;
    if (c->close_waiters)
        pthread_cond_broadcast(&c->cv);
}

/* The status a queued send fails with once c is broken. */
static int failed_send_status(const tcp_conn *c)
{
    return c->close_status < 0 ? c->close_status : DISCO_ECLOSED;
}

/* Whether c still owes a callback (mu held). */
bool tcp_conn_owes_locked(const tcp_conn *c)
{
    return c->done_pos < c->done_len ||
           (c->state == TCP_DEAD && (c->head || !c->close_delivered));
}

int tcp_conn_deliver(tcp_conn *c, int budget)
{
    tcp_transport *tp = c->tp;
    disco_conn *dc = tcp_dc(c);
    int n = 0;
    pthread_mutex_lock(&c->mu);
    while (c->state != TCP_CLOSED) {
        if (n == budget) {
            if (tcp_conn_owes_locked(c))
                tcp_conn_mark_ready_locked(c);
            break;
        }
        if (c->done_pos < c->done_len) {
            void *token = c->done[c->done_pos++];
            tcp_conn_cb_enter_locked(c);
            tp->cb.on_sent(tp->ctx, dc, token, 0);
            tcp_conn_cb_leave_locked(c);
        } else if (c->state == TCP_DEAD && c->head) {
            tcp_send *s = c->head;
            c->head = s->next;
            if (!c->head)
                c->tail = NULL;
            c->nqueued--;
            void *token = s->token;
            free(s);
            int status = failed_send_status(c);
            tcp_conn_cb_enter_locked(c);
            disco_error_set(status, "%s", c->close_msg);
            tp->cb.on_sent(tp->ctx, dc, token, status);
            tcp_conn_cb_leave_locked(c);
        } else if (c->state == TCP_DEAD && !c->close_delivered) {
            c->close_delivered = true;
            int status = c->close_status;
            tcp_conn_cb_enter_locked(c);
            if (status < 0)
                disco_error_set(status, "%s", c->close_msg);
            tp->cb.on_close(tp->ctx, dc, status);
            tcp_conn_cb_leave_locked(c);
        } else {
            break;
        }
        n++;
    }
    if (c->state != TCP_CLOSED && c->done_pos == c->done_len)
        c->done_pos = c->done_len = 0;
    pthread_mutex_unlock(&c->mu);
    return n;
}

bool tcp_conn_shutdown(tcp_conn *c, int status)
{
    tcp_transport *tp = c->tp;
    pthread_mutex_lock(&c->mu);
    if (c->state == TCP_CLOSED) { /* closed twice: the first close frees */
        pthread_mutex_unlock(&c->mu);
        return true;
    }
    if (c->state == TCP_DEAD)
        status = failed_send_status(c);
    c->state = TCP_CLOSED;
    close_socket_locked(c);
    /* A callback for c running on another thread (progress) finishes
     * first; from inside a callback for c we must not wait for ourselves. */
    while (c->in_cb && !pthread_equal(c->cb_thread, pthread_self())) {
        c->close_waiters++;
        pthread_cond_wait(&c->cv, &c->mu);
        c->close_waiters--;
    }
    /* Detach what c holds: nobody else looks at it once c is CLOSED. */
    void **done = c->done;
    size_t pos = c->done_pos, len = c->done_len;
    tcp_send *head = c->head;
    c->done = NULL;
    c->done_pos = c->done_len = c->done_cap = 0;
    c->head = c->tail = NULL;
    c->nqueued = 0;
    pthread_mutex_unlock(&c->mu);

    for (size_t i = pos; i < len; i++)
        tp->cb.on_sent(tp->ctx, tcp_dc(c), done[i], 0);
    free(done);
    while (head) {
        tcp_send *s = head;
        head = s->next;
        void *token = s->token;
        free(s);
        tp->cb.on_sent(tp->ctx, tcp_dc(c), token, status);
    }

    pthread_mutex_lock(&tp->lock);
    if (c->prev)
        c->prev->next = c->next;
    else if (tp->conns == c)
        tp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (c->on_ready) {
        if (c->rprev)
            c->rprev->rnext = c->rnext;
        else
            tp->ready = c->rnext;
        if (c->rnext)
            c->rnext->rprev = c->rprev;
        else
            tp->ready_tail = c->rprev;
        c->on_ready = false;
    }
    c->gone = true;
    if (tp->hot == c)
        tp->hot = NULL;
    if (tp->unwatched == c)
        tp->unwatched = NULL;
    bool defer = tp->in_progress;
    if (defer) {
        c->znext = tp->zombies;
        tp->zombies = c;
    }
    pthread_mutex_unlock(&tp->lock);
    return defer;
}

void tcp_conn_close(disco_conn *dc)
{
    if (!dc)
        return;
    tcp_conn *c = tcp_c(dc);
    if (!tcp_conn_shutdown(c, DISCO_ECLOSED))
        tcp_conn_free(c);
}

const char *tcp_conn_peer(disco_conn *dc)
{
    return dc ? tcp_c(dc)->peer : "";
}

/* Pairs with the acquire in tcp_conn_context: what ctx points to is
 * visible to whoever reads it (a callback on the progress thread). */
void tcp_conn_set_context(disco_conn *dc, void *ctx)
{
    if (dc)
        atomic_store_explicit(&tcp_c(dc)->ctx, ctx, memory_order_release);
}

void *tcp_conn_context(disco_conn *dc)
{
    return dc ? atomic_load_explicit(&tcp_c(dc)->ctx, memory_order_acquire) : NULL;
}
