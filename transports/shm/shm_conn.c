/* SPDX-License-Identifier: BSD-3-Clause */
/* Shared-memory transport: connection life cycle, callback delivery,
 * conn_close. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "transports/shm/shm.h"

shm_conn *shm_conn_new(shm_transport *tp, int sock, shm_state state,
                       const char *peer, void *ctx)
{
    shm_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->tp = tp;
    c->sock = sock;
    c->peer_evfd = -1;
    c->state = state;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    atomic_init(&c->ctx, ctx);
    atomic_init(&c->kick, true); /* progress has not seen it yet */
    return c;
}

void shm_conn_link(shm_conn *c)
{
    shm_transport *tp = c->tp;
    pthread_mutex_lock(&tp->lock);
    c->next = tp->conns;
    if (tp->conns)
        tp->conns->prev = c;
    tp->conns = c;
    tp->gen++;
    pthread_mutex_unlock(&tp->lock);
}

void shm_conn_free(shm_conn *c)
{
    free(c->done);
    shm_seg_unmap(&c->seg);
    if (c->peer_evfd >= 0)
        close(c->peer_evfd);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int shm_conn_watch(shm_conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    return epoll_ctl(c->tp->epfd, EPOLL_CTL_ADD, c->sock, &ev) == 0 ? 0 : -errno;
}

static void close_socket_locked(shm_conn *c)
{
    if (c->sock < 0)
        return;
    epoll_ctl(c->tp->epfd, EPOLL_CTL_DEL, c->sock, NULL);
    close(c->sock);
    c->sock = -1;
}

void shm_conn_wake_peer_locked(shm_conn *c)
{
    uint64_t one = 1;
    /* The acceptor asks for wake-ups only after its reply is on its way to
     * us: if we have not read it yet, it is in the socket now. */
    if (c->peer_evfd < 0 && !shm_conn_try_reply_locked(c))
        return;
    /* EAGAIN: the counter is full, the peer is awake anyway. */
    (void)!write(c->peer_evfd, &one, sizeof(one));
}

void shm_conn_fail_locked(shm_conn *c, int status, const char *fmt, ...)
{
    if (c->state == SHM_DEAD || c->state == SHM_CLOSED)
        return;
    close_socket_locked(c);
    c->state = SHM_DEAD;
    c->close_status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->close_msg, sizeof(c->close_msg), fmt, ap);
    va_end(ap);
    shm_wake(c->tp); /* on_close is owed: a sleeping progress delivers it */
}

void shm_note_done(shm_transport *tp)
{
    unsigned n = atomic_fetch_add(&tp->lazy_done, 1) + 1;
    if (n == SHM_LAZY_DONE && atomic_load(&tp->sleeping))
        shm_wake(tp);
}

int shm_conn_done_reserve_locked(shm_conn *c, size_t extra)
{
    size_t need = c->done_len + c->nqueued + extra;
    if (need <= c->done_cap)
        return 0;
    size_t cap = c->done_cap ? c->done_cap * 2 : 16;
    while (cap < need)
        cap *= 2;
    void **d = realloc(c->done, cap * sizeof(*d));
    if (!d)
        return disco_error_set(DISCO_ENOMEM, "shm: out of memory queuing a send");
    c->done = d;
    c->done_cap = cap;
    return 0;
}

void shm_conn_cb_enter_locked(shm_conn *c)
{
    c->in_cb = true;
    c->cb_thread = pthread_self();
    pthread_mutex_unlock(&c->mu);
}

void shm_conn_cb_leave_locked(shm_conn *c)
{
    pthread_mutex_lock(&c->mu);
    c->in_cb = false;
    if (atomic_load_explicit(&c->close_waiters, memory_order_relaxed))
        pthread_cond_broadcast(&c->cv);
}

static int failed_send_status(const shm_conn *c)
{
    return c->close_status < 0 ? c->close_status : DISCO_ECLOSED;
}

bool shm_conn_owes_locked(const shm_conn *c)
{
    return c->done_pos < c->done_len || c->reads ||
           (c->state == SHM_DEAD && (c->head || !c->close_delivered));
}

static shm_read *pop_read_locked(shm_conn *c)
{
    shm_read *r = c->reads;
    c->reads = r->next;
    if (!c->reads)
        c->reads_tail = NULL;
    return r;
}

static shm_send *pop_send_locked(shm_conn *c)
{
    shm_send *s = c->head;
    c->head = s->next;
    if (!c->head)
        c->tail = NULL;
    c->nqueued--;
    return s;
}

/* Runs one owed callback (mu held, dropped during it). False when none. */
static bool deliver_one_locked(shm_conn *c)
{
    shm_transport *tp = c->tp;
    disco_conn *dc = shm_dc(c);
    if (c->done_pos < c->done_len) {
        void *token = c->done[c->done_pos++];
        shm_conn_cb_enter_locked(c);
        tp->cb.on_sent(tp->ctx, dc, token, 0);
    } else if (c->reads) {
        shm_read *r = pop_read_locked(c);
        shm_conn_cb_enter_locked(c);
        if (r->status < 0)
            disco_error_set(r->status, "%s", r->msg);
        tp->cb.on_read(tp->ctx, dc, r->token, r->status);
        free(r);
    } else if (c->state == SHM_DEAD && c->head) {
        shm_send *s = pop_send_locked(c);
        void *token = s->token;
        bool owned = s->owned;
        free(s);
        if (owned) /* nobody to tell */
            return true;
        int status = failed_send_status(c);
        shm_conn_cb_enter_locked(c);
        disco_error_set(status, "%s", c->close_msg);
        tp->cb.on_sent(tp->ctx, dc, token, status);
    } else if (c->state == SHM_DEAD && !c->close_delivered) {
        c->close_delivered = true;
        int status = c->close_status;
        shm_conn_cb_enter_locked(c);
        if (status < 0)
            disco_error_set(status, "%s", c->close_msg);
        tp->cb.on_close(tp->ctx, dc, status);
    } else {
        return false;
    }
    shm_conn_cb_leave_locked(c);
    return true;
}

int shm_conn_deliver(shm_conn *c)
{
    int n = 0;
    pthread_mutex_lock(&c->mu);
    /* Bounded by what is owed now: callbacks that send add completions
     * for the next call, not for this loop. */
    size_t budget = c->done_len - c->done_pos + c->nqueued + 2;
    for (shm_read *r = c->reads; r; r = r->next)
        budget++;
    while (c->state != SHM_CLOSED && (size_t)n < budget && deliver_one_locked(c))
        n++;
    if (c->state != SHM_CLOSED && c->done_pos == c->done_len)
        c->done_pos = c->done_len = 0;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* Completes, on the calling thread, what a closing c held. */
static void complete_detached(shm_conn *c, void **done, size_t pos, size_t len,
                              shm_send *head, shm_read *reads, int status)
{
    shm_transport *tp = c->tp;
    for (size_t i = pos; i < len; i++)
        tp->cb.on_sent(tp->ctx, shm_dc(c), done[i], 0);
    free(done);
    while (head) {
        shm_send *s = head;
        head = s->next;
        void *token = s->token;
        bool owned = s->owned;
        free(s);
        if (!owned)
            tp->cb.on_sent(tp->ctx, shm_dc(c), token, status);
    }
    while (reads) {
        shm_read *r = reads;
        reads = r->next;
        if (r->status < 0)
            disco_error_set(r->status, "%s", r->msg);
        tp->cb.on_read(tp->ctx, shm_dc(c), r->token, r->status);
        free(r);
    }
}

/* Unlinks c from the transport; true when a progress call runs (c is then
 * parked on the zombie list for it to free). */
static bool unlink_conn(shm_conn *c)
{
    shm_transport *tp = c->tp;
    pthread_mutex_lock(&tp->lock);
    if (c->prev)
        c->prev->next = c->next;
    else if (tp->conns == c)
        tp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    tp->gen++; /* seq_cst, as the load below: see shm_progress.c's enter */
    bool defer = atomic_load(&tp->in_progress);
    if (defer) {
        c->znext = tp->zombies;
        tp->zombies = c;
        atomic_store(&tp->has_zombies, true);
    }
    pthread_mutex_unlock(&tp->lock);
    return defer;
}

bool shm_conn_shutdown(shm_conn *c, int status)
{
    pthread_mutex_lock(&c->mu);
    if (c->state == SHM_CLOSED) { /* closed twice: the first close frees */
        pthread_mutex_unlock(&c->mu);
        return true;
    }
    if (c->state == SHM_DEAD)
        status = failed_send_status(c);
    else if (c->seg.hdr) /* the peer reads a clean close, not a death */
        atomic_store(&c->seg.hdr->closed[c->seg.side], 1);
    c->state = SHM_CLOSED;
    close_socket_locked(c);
    /* A callback for c on another thread (progress) finishes first; from
     * inside a callback for c we must not wait for ourselves. */
    atomic_store(&c->closing, true); /* seq_cst: see shm.h */
    for (;;) {
        bool in_cb = c->in_cb && !pthread_equal(c->cb_thread, pthread_self());
        /* Counted before the look at `reading`: a reader that stops after
         * it sees the count and wakes us (under mu, so not before we wait). */
        atomic_fetch_add(&c->close_waiters, 1);
        bool reading = atomic_load(&c->reading) && !shm_conn_reading_here(c);
        if (!in_cb && !reading) {
            atomic_fetch_sub(&c->close_waiters, 1);
            break;
        }
        pthread_cond_wait(&c->cv, &c->mu);
        atomic_fetch_sub(&c->close_waiters, 1);
    }
    /* Detach what c holds: nobody looks at it once c is CLOSED. */
    void **done = c->done;
    size_t pos = c->done_pos, len = c->done_len;
    shm_send *head = c->head;
    shm_read *reads = c->reads;
    c->done = NULL;
    c->done_pos = c->done_len = c->done_cap = 0;
    c->head = c->tail = NULL;
    c->reads = c->reads_tail = NULL;
    c->nqueued = 0;
    shm_conn_unlock(c);
    complete_detached(c, done, pos, len, head, reads, status);
    return unlink_conn(c);
}

void shm_conn_close(disco_conn *dc)
{
    if (!dc)
        return;
    shm_conn *c = shm_c(dc);
    if (!shm_conn_shutdown(c, DISCO_ECLOSED))
        shm_conn_free(c);
}

const char *shm_conn_peer(disco_conn *dc)
{
    return dc ? shm_c(dc)->peer : "";
}

/* Pairs with the acquire in shm_conn_context. */
void shm_conn_set_context(disco_conn *dc, void *ctx)
{
    if (dc)
        atomic_store_explicit(&shm_c(dc)->ctx, ctx, memory_order_release);
}

void *shm_conn_context(disco_conn *dc)
{
    return dc ? atomic_load_explicit(&shm_c(dc)->ctx, memory_order_acquire) : NULL;
}
