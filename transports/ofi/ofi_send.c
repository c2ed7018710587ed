/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libfabric transport: sending.
 *
 * send queues the caller's iovecs on the connection and pushes: bytes are
 * copied into bounce buffers (appending to a staged buffer that still has
 * room, so a backlog coalesces into full OFI_CHUNK messages) and each
 * buffer goes out with fi_tsend, in order. A buffer the provider refuses
 * (-FI_EAGAIN) stays staged and the connection is marked blocked: progress
 * pushes again after reading completions, which is what frees the
 * provider's queues. See ofi.h for why everything is copied.
 */
#include <stdlib.h>
#include <string.h>

#include "transports/ofi/ofi.h"

void ofi_tx_release_locked(ofi_transport *tp, ofi_tx *tx)
{
    tx->len = tx->stream = 0;
    tx->cid = 0;
    tx->next = tp->tx_free;
    tp->tx_free = tx;
    tp->ntx_free++;
}

static ofi_tx *tx_take_locked(ofi_transport *tp, ofi_conn *c, unsigned kind,
                              uint64_t id)
{
    ofi_tx *tx = tp->tx_free;
    if (!tx)
        return NULL;
    tp->tx_free = tx->next;
    tp->ntx_free--;
    tx->next = NULL;
    tx->cid = c->id;
    tx->dest = c->addr;
    /* Numbered in staging order, which is sending order. */
    tx->hdr = ofi_hdr(kind, id, kind == OFI_HELLO ? 0 : c->tx_seq++);
    memcpy(tx->buf, &tx->hdr, OFI_HDR);
    tx->len = OFI_HDR;
    if (c->staged_tail)
        c->staged_tail->next = tx;
    else
        c->staged = tx;
    c->staged_tail = tx;
    c->ntx++;
    return tx;
}

/* Hands c's staged buffers to the provider in order (lock held). */
static void flush_locked(ofi_conn *c)
{
    ofi_transport *tp = c->tp;
    ofi_tx *tx;
    while ((tx = c->staged) != NULL) {
        ssize_t rc = fi_tsend(tp->ep, tx->buf, tx->len, tp->tx_desc, tx->dest, 0,
                              &tx->op); /* tag 0: see ofi.h */
        if (rc == -FI_EAGAIN) {
            c->blocked = true;
            return;
        }
        c->staged = tx->next;
        if (!c->staged)
            c->staged_tail = NULL;
        if (rc != 0) {
            c->ntx--;
            ofi_tx_release_locked(tp, tx);
            ofi_conn_fail_locked(c, ofi_status((int)-rc), "ofi: fi_tsend to %s: %s",
                                 c->peer, fi_strerror((int)-rc));
            return;
        }
        c->posted += tx->stream;
    }
    c->blocked = false;
}

/* Copies queued bytes into tx until it is full or the queue is copied. */
static void copy_locked(ofi_conn *c, ofi_tx *tx)
{
    size_t before = tx->len;
    ofi_send *s;
    while ((s = c->fill) != NULL && tx->len < OFI_CHUNK) {
        while (s->pos < s->iovcnt && tx->len < OFI_CHUNK) {
            struct iovec *v = &s->iov[s->pos];
            size_t k = v->iov_len < OFI_CHUNK - tx->len ? v->iov_len
                                                        : OFI_CHUNK - tx->len;
            memcpy(tx->buf + tx->len, v->iov_base, k);
            tx->len += k;
            v->iov_base = (uint8_t *)v->iov_base + k;
            v->iov_len -= k;
            if (v->iov_len == 0)
                s->pos++;
        }
        if (s->pos < s->iovcnt)
            break; /* tx is full */
        c->fill = s->next;
    }
    tx->stream += tx->len - before;
    c->filled += tx->len - before;
}

/* A staged data buffer with room, or a new one within c's share. */
static ofi_tx *tx_for_data_locked(ofi_conn *c)
{
    ofi_tx *t = c->staged_tail;
    if (t && (t->hdr >> OFI_KIND_SHIFT) == OFI_DATA && t->len < OFI_CHUNK)
        return t;
    if (c->ntx >= OFI_TX_PER_CONN)
        return NULL;
    return tx_take_locked(c->tp, c, OFI_DATA, c->rid);
}

void ofi_conn_push_locked(ofi_conn *c)
{
    for (;;) {
        flush_locked(c);
        if (c->state != OFI_OPEN || !c->fill)
            break;
        /* Empty sends (and empty tails) need no buffer. */
        while (c->fill && c->fill->end <= c->filled)
            c->fill = c->fill->next;
        if (!c->fill)
            break;
        ofi_tx *tx = tx_for_data_locked(c);
        if (!tx)
            break;
        copy_locked(c, tx);
        if (c->blocked)
            break; /* copied ahead; the provider takes it later */
    }
    if (c->head && c->head->end <= c->posted)
        ofi_conn_mark_ready_locked(c);
}

int ofi_conn_stage_ctl_locked(ofi_conn *c, unsigned kind, uint64_t id,
                              const struct iovec *v, int n)
{
    ofi_tx *tx = tx_take_locked(c->tp, c, kind, id);
    if (!tx)
        return disco_error_set(DISCO_ENOMEM,
                               "ofi: no free send buffer for a handshake with %s",
                               c->peer);
    for (int i = 0; i < n; i++) {
        memcpy(tx->buf + tx->len, v[i].iov_base, v[i].iov_len);
        tx->len += v[i].iov_len;
    }
    return 0;
}

void ofi_tx_done_locked(ofi_transport *tp, ofi_tx *tx, int err, int prov_err)
{
    ofi_conn *c = ofi_conn_lookup_locked(tp, tx->cid);
    if (c) {
        c->ntx--;
        if (err)
            ofi_conn_fail_locked(c, ofi_status(err),
                                 "ofi: send to %s failed: %s (provider error %d)",
                                 c->peer, fi_strerror(err), prov_err);
    }
    ofi_tx_release_locked(tp, tx);
}

int ofi_send_op(disco_conn *dc, const struct iovec *iov, int iovcnt, void *token)
{
    if (!dc || iovcnt < 0 || (iovcnt > 0 && !iov))
        return disco_error_set(DISCO_EINVAL, "ofi: send: bad arguments");
    ofi_conn *c = ofi_c(dc);
    ofi_transport *tp = c->tp;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    ofi_send *s = malloc(sizeof(*s) + (size_t)iovcnt * sizeof(struct iovec));
    if (!s)
        return disco_error_set(DISCO_ENOMEM, "ofi: out of memory queuing a send");
    s->next = NULL;
    s->token = token;
    s->iovcnt = iovcnt;
    s->pos = 0;
    if (iovcnt)
        memcpy(s->iov, iov, (size_t)iovcnt * sizeof(struct iovec));

    pthread_mutex_lock(&tp->lock);
    if (c->state == OFI_DEAD || c->state == OFI_CLOSED) {
        pthread_mutex_unlock(&tp->lock);
        free(s);
        return disco_error_set(DISCO_ECLOSED, "ofi: send on a closed connection to %s",
                               c->peer);
    }
    c->queued += total;
    s->end = c->queued;
    if (c->tail)
        c->tail->next = s;
    else
        c->head = s;
    c->tail = s;
    if (!c->fill)
        c->fill = s;
    ofi_conn_push_locked(c);
    if (c->on_ready)
        tp->lazy_done++; /* a completion owed (or at least a callback) */
    /* Progress must run soon for owed completions piling up, for a refused
     * buffer (only it retries), and for a failure. */
    bool urgent = tp->lazy_done >= OFI_LAZY_DONE || c->blocked ||
                  c->state == OFI_DEAD;
    bool wake = urgent && ofi_want_wake_locked(tp);
    pthread_mutex_unlock(&tp->lock);
    if (wake)
        ofi_wake(tp);
    return 0;
}
