/* SPDX-License-Identifier: BSD-3-Clause */
/* libfabric transport: connection ids, life cycle, callback delivery,
 * conn_close. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transports/ofi/ofi.h"

/* A free slot of the id table, grown when full (lock held). */
static int slot_alloc_locked(ofi_transport *tp, size_t *out)
{
    for (size_t i = 0; i < tp->nslots; i++)
        if (!tp->slots[i]) {
            *out = i;
            return 0;
        }
    size_t n = tp->nslots ? 2 * tp->nslots : 16;
    if (n > OFI_SLOT_MASK)
        return -1;
    ofi_conn **s = realloc(tp->slots, n * sizeof(*s));
    if (!s)
        return -1;
    tp->slots = s;
    uint64_t *g = realloc(tp->gens, n * sizeof(*g));
    if (!g)
        return -1;
    tp->gens = g;
    for (size_t i = tp->nslots; i < n; i++) {
        s[i] = NULL;
        g[i] = 0;
    }
    *out = tp->nslots;
    tp->nslots = n;
    return 0;
}

ofi_conn *ofi_conn_new_locked(ofi_transport *tp, ofi_state state, fi_addr_t addr,
                              const char *peer, void *ctx)
{
    size_t slot;
    ofi_conn *c = calloc(1, sizeof(*c));
    if (!c || slot_alloc_locked(tp, &slot) != 0) {
        free(c);
        return NULL;
    }
    tp->slots[slot] = c;
    tp->gens[slot] = (tp->gens[slot] + 1) & OFI_GEN_MASK;
    if (tp->gens[slot] == 0)
        tp->gens[slot] = 1;
    c->id = (tp->gens[slot] << OFI_SLOT_BITS) | slot;
    c->tp = tp;
    c->addr = addr;
    c->state = state;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    atomic_init(&c->ctx, ctx);
    c->next = tp->conns;
    if (tp->conns)
        tp->conns->prev = c;
    tp->conns = c;
    return c;
}

ofi_conn *ofi_conn_lookup_locked(ofi_transport *tp, uint64_t id)
{
    uint64_t slot = id & OFI_SLOT_MASK;
    if (slot >= tp->nslots)
        return NULL;
    ofi_conn *c = tp->slots[slot];
    return c && c->id == id ? c : NULL;
}

void ofi_conn_mark_ready_locked(ofi_conn *c)
{
    ofi_transport *tp = c->tp;
    if (c->on_ready)
        return;
    c->on_ready = true;
    c->rnext = NULL;
    if (tp->ready_tail)
        tp->ready_tail->rnext = c;
    else
        tp->ready = c;
    tp->ready_tail = c;
}

/* Returns c's staged buffers to the free list (lock held). They hold the
 * last sequence numbers taken, which are given back: the peer must not wait
 * for them before our CLOSE. */
static void drop_staged_locked(ofi_conn *c)
{
    while (c->staged) {
        ofi_tx *tx = c->staged;
        c->staged = tx->next;
        if ((tx->hdr >> OFI_KIND_SHIFT) != OFI_HELLO)
            c->tx_seq = (c->tx_seq - 1) & OFI_SEQ_MASK;
        ofi_tx_release_locked(c->tp, tx);
        c->ntx--;
    }
    c->staged_tail = NULL;
    c->blocked = false;
}

/* Detaches c's reads still in flight: they are owed on_read(status) now
 * and complete quietly later (lock held). */
static void detach_reads_locked(ofi_conn *c, int status)
{
    for (ofi_read *r = c->tp->reads; r; r = r->next) {
        if (r->cid != c->id || r->owed)
            continue;
        if (r->status == 0)
            r->status = status;
        r->npieces = r->posted; /* pieces not posted never will be */
        r->owed = true;
        r->dnext = c->rdone;
        c->rdone = r;
    }
}

void ofi_conn_release_held_locked(ofi_conn *c)
{
    while (c->held) {
        ofi_rx *rx = c->held;
        c->held = rx->next;
        ofi_rx_post_locked(c->tp, rx);
    }
}

void ofi_conn_fail_locked(ofi_conn *c, int status, const char *fmt, ...)
{
    if (c->state == OFI_DEAD || c->state == OFI_CLOSED)
        return;
    c->state = OFI_DEAD;
    c->close_status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->close_msg, sizeof(c->close_msg), fmt, ap);
    va_end(ap);
    drop_staged_locked(c);
    ofi_conn_release_held_locked(c);
    detach_reads_locked(c, status < 0 ? status : DISCO_ECLOSED);
    ofi_conn_mark_ready_locked(c);
}

void ofi_cb_enter_locked(ofi_transport *tp, ofi_conn *c)
{
    tp->cb_conn = c;
    tp->cb_thread = pthread_self();
    pthread_mutex_unlock(&tp->lock);
}

void ofi_cb_leave_locked(ofi_transport *tp)
{
    pthread_mutex_lock(&tp->lock);
    tp->cb_conn = NULL;
    if (tp->close_waiters)
        pthread_cond_broadcast(&tp->cv);
}

/* The status a queued send fails with once c is broken. */
static int failed_send_status(const ofi_conn *c)
{
    return c->close_status < 0 ? c->close_status : DISCO_ECLOSED;
}

/* Runs one callback c owes (lock held, dropped during it). False when c
 * owes nothing. */
static bool deliver_one_locked(ofi_transport *tp, ofi_conn *c)
{
    disco_conn *dc = ofi_dc(c);
    ofi_send *s = c->head;
    if (s && (s->end <= c->posted || c->state == OFI_DEAD)) {
        int status = s->end <= c->posted ? 0 : failed_send_status(c);
        c->head = s->next;
        if (c->fill == s)
            c->fill = s->next;
        if (!c->head)
            c->tail = NULL;
        void *token = s->token;
        free(s);
        ofi_cb_enter_locked(tp, c);
        if (status)
            disco_error_set(status, "%s", c->close_msg);
        tp->cb.on_sent(tp->ctx, dc, token, status);
        ofi_cb_leave_locked(tp);
        return true;
    }
    ofi_read *r = c->rdone;
    if (r) {
        c->rdone = r->dnext;
        r->cid = 0;
        void *token = r->token;
        int status = r->status;
        ofi_read_maybe_free_locked(tp, r);
        ofi_cb_enter_locked(tp, c);
        if (tp->cb.on_read)
            tp->cb.on_read(tp->ctx, dc, token, status);
        ofi_cb_leave_locked(tp);
        return true;
    }
    if (c->state == OFI_DEAD && !c->close_delivered) {
        c->close_delivered = true;
        int status = c->close_status;
        ofi_cb_enter_locked(tp, c);
        if (status < 0)
            disco_error_set(status, "%s", c->close_msg);
        tp->cb.on_close(tp->ctx, dc, status);
        ofi_cb_leave_locked(tp);
        return true;
    }
    return false;
}

int ofi_deliver_ready(ofi_transport *tp)
{
    int n = 0;
    pthread_mutex_lock(&tp->lock);
    /* At most OFI_READY_PER_CALL connections and OFI_DELIVER_BUDGET
     * callbacks each: what is left stays on the list for the next call. */
    for (int i = 0; i < OFI_READY_PER_CALL && tp->ready; i++) {
        ofi_conn *c = tp->ready;
        tp->ready = c->rnext;
        if (!tp->ready)
            tp->ready_tail = NULL;
        c->on_ready = false;
        int k = 0;
        /* A callback may close c (it is then a zombie: still allocated). */
        while (c->state != OFI_CLOSED && k < OFI_DELIVER_BUDGET &&
               deliver_one_locked(tp, c))
            k++;
        if (k == OFI_DELIVER_BUDGET && c->state != OFI_CLOSED)
            ofi_conn_mark_ready_locked(c);
        n += k;
    }
    pthread_mutex_unlock(&tp->lock);
    return n;
}

double ofi_check_deadlines_locked(ofi_transport *tp, double now)
{
    double soonest = 0;
    for (ofi_conn *c = tp->conns; c; c = c->next) {
        if (c->state != OFI_CONNECTING)
            continue;
        if (now >= c->deadline)
            ofi_conn_fail_locked(c, DISCO_ETIMEDOUT,
                                 "ofi: connect to %s: no answer in %.0f s",
                                 c->peer, tp->connect_timeout);
        else if (soonest == 0 || c->deadline < soonest)
            soonest = c->deadline;
    }
    return soonest;
}

static void unlink_locked(ofi_transport *tp, ofi_conn *c)
{
    tp->slots[c->id & OFI_SLOT_MASK] = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        tp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (!c->on_ready)
        return;
    ofi_conn *prev = NULL;
    for (ofi_conn *r = tp->ready; r != c; prev = r, r = r->rnext)
        ;
    if (prev)
        prev->rnext = c->rnext;
    else
        tp->ready = c->rnext;
    if (tp->ready_tail == c)
        tp->ready_tail = prev;
    c->on_ready = false;
}

void ofi_close_retry_locked(ofi_transport *tp)
{
    ofi_close_msg *m;
    while ((m = tp->closes) != NULL) {
        if (fi_tinject(tp->ep, &m->hdr, OFI_HDR, m->addr, 0) == -FI_EAGAIN &&
            ofi_now() < m->give_up)
            return;
        tp->closes = m->next; /* sent, or failed for good: the core learns
                               * of the close through its own connection */
        if (!tp->closes)
            tp->closes_tail = NULL;
        free(m);
    }
}

/* An inject needs no buffer and no completion. One the provider refuses
 * now waits for progress, behind earlier ones. */
void ofi_send_close_locked(ofi_transport *tp, fi_addr_t addr, uint64_t hdr)
{
    if (!tp->closes && fi_tinject(tp->ep, &hdr, OFI_HDR, addr, 0) != -FI_EAGAIN)
        return;
    ofi_close_msg *m = malloc(sizeof(*m));
    if (!m)
        return; /* as if the provider had failed it */
    m->next = NULL;
    m->addr = addr;
    m->hdr = hdr;
    m->give_up = ofi_now() + OFI_LINGER_MS / 1000.0;
    if (tp->closes_tail)
        tp->closes_tail->next = m;
    else
        tp->closes = m;
    tp->closes_tail = m;
}

void ofi_conn_shutdown(ofi_conn *c, bool goodbye)
{
    ofi_transport *tp = c->tp;
    pthread_mutex_lock(&tp->lock);
    if (c->state == OFI_CLOSED) { /* closed twice: the first close frees */
        pthread_mutex_unlock(&tp->lock);
        return;
    }
    /* A callback for c on another thread (progress) finishes first; from
     * inside a callback for c we must not wait for ourselves. */
    while (tp->cb_conn == c && !pthread_equal(tp->cb_thread, pthread_self())) {
        tp->close_waiters++;
        pthread_cond_wait(&tp->cv, &tp->lock);
        tp->close_waiters--;
    }
    int status = c->state == OFI_DEAD ? failed_send_status(c) : DISCO_ECLOSED;
    drop_staged_locked(c); /* gives back the sequence numbers they took */
    /* Not OPEN: see ofi.h, a stray ACK is answered. */
    if (goodbye && c->state == OFI_OPEN)
        ofi_send_close_locked(tp, c->addr, ofi_hdr(OFI_CLOSE, c->rid, c->tx_seq++));
    ofi_conn_release_held_locked(c);
    detach_reads_locked(c, DISCO_ECLOSED);
    c->state = OFI_CLOSED;
    unlink_locked(tp, c);
    ofi_send *sends = c->head;
    uint64_t posted = c->posted;
    ofi_read *reads = c->rdone;
    c->head = c->fill = c->tail = NULL;
    c->rdone = NULL;
    for (ofi_read *r = reads; r; r = r->dnext)
        r->cid = 0;
    bool defer = tp->in_progress;
    if (defer) {
        c->znext = tp->zombies;
        tp->zombies = c;
    }
    pthread_mutex_unlock(&tp->lock);

    while (sends) {
        ofi_send *s = sends;
        sends = s->next;
        void *token = s->token;
        int st = s->end <= posted ? 0 : status;
        free(s);
        tp->cb.on_sent(tp->ctx, ofi_dc(c), token, st);
    }
    while (reads) {
        ofi_read *r = reads;
        reads = r->dnext;
        void *token = r->token;
        int st = r->status;
        pthread_mutex_lock(&tp->lock);
        ofi_read_maybe_free_locked(tp, r);
        pthread_mutex_unlock(&tp->lock);
        if (tp->cb.on_read)
            tp->cb.on_read(tp->ctx, ofi_dc(c), token, st);
    }
    if (!defer)
        ofi_conn_free(c);
}

void ofi_conn_free(ofi_conn *c)
{
    free(c);
}

void ofi_conn_close(disco_conn *dc)
{
    if (dc)
        ofi_conn_shutdown(ofi_c(dc), true);
}

void ofi_conn_abandon(disco_conn *dc)
{
    if (dc)
        ofi_conn_shutdown(ofi_c(dc), false);
}

const char *ofi_conn_peer(disco_conn *dc)
{
    return dc ? ofi_c(dc)->peer : "";
}

/* Pairs with the acquire in ofi_conn_context. */
void ofi_conn_set_context(disco_conn *dc, void *ctx)
{
    if (dc)
        atomic_store_explicit(&ofi_c(dc)->ctx, ctx, memory_order_release);
}

void *ofi_conn_context(disco_conn *dc)
{
    return dc ? atomic_load_explicit(&ofi_c(dc)->ctx, memory_order_acquire) : NULL;
}
