/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libfabric transport: memory registration and rma_read.
 *
 * A key is 16 bytes: the registration's key (fi_mr_key; without
 * FI_MR_PROV_KEY we choose it from a counter) and the base to subtract from
 * a remote address (0 with FI_MR_VIRT_ADDR, the registration's start
 * otherwise, when the provider addresses registrations by offset). A read
 * is split into pieces of at most rma_chunk bytes, each an fi_read with its
 * own context; pieces the provider refuses wait on tp->rretry for the next
 * progress call. on_read runs once every posted piece completed.
 */
#include <stdlib.h>
#include <string.h>

#include "transports/ofi/ofi.h"

#define OFI_KEY_LEN 16

int ofi_mem_register(disco_transport *dtp, void *addr, size_t len, disco_mr **out,
                     uint8_t *key, size_t *keylen)
{
    if (!dtp || !addr || !len || !out || !key || !keylen)
        return disco_error_set(DISCO_EINVAL, "ofi: mem_register: bad arguments");
    ofi_transport *tp = ofi_tp(dtp);
    if (!tp->has_rma)
        return disco_error_set(DISCO_ENOSYS, "ofi: provider %s has no RMA", tp->prov);
    ofi_mr *m = calloc(1, sizeof(*m));
    if (!m)
        return disco_error_set(DISCO_ENOMEM, "ofi: out of memory");
    m->tp = tp;
    uint64_t want = tp->prov_key ? 0 : atomic_fetch_add(&tp->next_key, 1);
    pthread_mutex_lock(&tp->lock);
    int rc = fi_mr_reg(tp->domain, addr, len, FI_READ | FI_REMOTE_READ, 0, want, 0,
                       &m->mr, NULL);
    pthread_mutex_unlock(&tp->lock);
    if (rc) {
        free(m);
        return ofi_fail(rc, "fi_mr_reg");
    }
    uint64_t k = fi_mr_key(m->mr);
    if (k == FI_KEY_NOTAVAIL) { /* raw keys (FI_MR_RAW): not supported */
        fi_close(&m->mr->fid);
        free(m);
        return disco_error_set(DISCO_ENOSYS, "ofi: %s needs raw memory keys",
                               tp->prov);
    }
    uint64_t base = tp->virt_addr ? 0 : (uint64_t)(uintptr_t)addr;
    memcpy(key, &k, 8);
    memcpy(key + 8, &base, 8);
    *keylen = OFI_KEY_LEN;
    *out = (disco_mr *)(void *)m;
    return 0;
}

void ofi_mem_deregister(disco_mr *dmr)
{
    if (!dmr)
        return;
    ofi_mr *m = (ofi_mr *)(void *)dmr;
    pthread_mutex_lock(&m->tp->lock);
    fi_close(&m->mr->fid);
    pthread_mutex_unlock(&m->tp->lock);
    free(m);
}

void ofi_read_maybe_free_locked(ofi_transport *tp, ofi_read *r)
{
    if (r->cid != 0 || r->completed < r->posted || r->retrying)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        tp->reads = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r);
}

/* Once every piece completed, on_read is owed to r's connection (if it
 * still has one). */
static void check_complete_locked(ofi_transport *tp, ofi_read *r)
{
    if (r->completed < r->npieces || r->owed)
        return;
    ofi_conn *c = ofi_conn_lookup_locked(tp, r->cid);
    if (!c) {
        r->cid = 0;
        ofi_read_maybe_free_locked(tp, r);
        return;
    }
    r->owed = true;
    r->dnext = c->rdone;
    c->rdone = r;
    ofi_conn_mark_ready_locked(c);
}

/* Posts r's remaining pieces. 0, -FI_EAGAIN (r waits on tp->rretry), or
 * another negative libfabric error. */
static int post_pieces_locked(ofi_transport *tp, ofi_read *r)
{
    while (r->posted < r->npieces) {
        size_t off = r->posted * tp->rma_chunk;
        size_t n = r->len - off < tp->rma_chunk ? r->len - off : tp->rma_chunk;
        ofi_read_piece *p = &r->pieces[r->posted];
        ssize_t rc = fi_read(tp->ep, r->dst + off, n, r->desc, r->src,
                             r->raddr + off, r->rkey, &p->op);
        if (rc == -FI_EAGAIN) {
            if (!r->retrying) {
                r->retrying = true;
                r->retry_next = tp->rretry;
                tp->rretry = r;
            }
            return -FI_EAGAIN;
        }
        if (rc)
            return (int)rc;
        r->posted++;
    }
    return 0;
}

/* A piece failed to post after others did: the read ends with the error
 * once the posted ones complete. */
static void cut_short_locked(ofi_transport *tp, ofi_read *r, int rc)
{
    if (!r->status)
        r->status = ofi_status(-rc);
    r->npieces = r->posted;
    check_complete_locked(tp, r);
}

void ofi_read_retry_locked(ofi_transport *tp)
{
    ofi_read *list = tp->rretry;
    tp->rretry = NULL;
    while (list) {
        ofi_read *r = list;
        list = r->retry_next;
        r->retrying = false;
        int rc = post_pieces_locked(tp, r);
        if (rc && rc != -FI_EAGAIN)
            cut_short_locked(tp, r, rc);
        else if (!rc)
            ofi_read_maybe_free_locked(tp, r); /* detached meanwhile */
    }
}

void ofi_read_done_locked(ofi_transport *tp, ofi_read_piece *p, int err,
                          int prov_err)
{
    (void)prov_err;
    ofi_read *r = p->r;
    r->completed++;
    if (err && !r->status)
        r->status = ofi_status(err);
    if (r->owed || r->cid == 0)
        ofi_read_maybe_free_locked(tp, r);
    else
        check_complete_locked(tp, r);
}

int ofi_rma_read(disco_conn *dc, void *dst, disco_mr *dst_mr, uint64_t raddr,
                 size_t len, const uint8_t *key, size_t keylen, void *token)
{
    if (!dc || (!dst && len) || !key || keylen != OFI_KEY_LEN)
        return disco_error_set(DISCO_EINVAL, "ofi: rma_read: bad arguments");
    ofi_conn *c = ofi_c(dc);
    ofi_transport *tp = c->tp;
    if (!tp->has_rma)
        return disco_error_set(DISCO_ENOSYS, "ofi: provider %s has no RMA", tp->prov);
    size_t npieces = (len + tp->rma_chunk - 1) / tp->rma_chunk;
    ofi_read *r = calloc(1, sizeof(*r) + npieces * sizeof(ofi_read_piece));
    if (!r)
        return disco_error_set(DISCO_ENOMEM, "ofi: out of memory");
    uint64_t base;
    memcpy(&r->rkey, key, 8);
    memcpy(&base, key + 8, 8);
    r->token = token;
    r->dst = dst;
    r->len = len;
    r->raddr = raddr - base;
    r->npieces = npieces;
    r->desc = dst_mr ? fi_mr_desc(((ofi_mr *)(void *)dst_mr)->mr) : NULL;
    for (size_t i = 0; i < npieces; i++) {
        r->pieces[i].op.kind = OFI_OP_READ;
        r->pieces[i].r = r;
    }

    pthread_mutex_lock(&tp->lock);
    if (c->state == OFI_DEAD || c->state == OFI_CLOSED) {
        pthread_mutex_unlock(&tp->lock);
        free(r);
        return disco_error_set(DISCO_ECLOSED, "ofi: rma_read on a closed connection to %s",
                               c->peer);
    }
    r->cid = c->id;
    r->src = c->addr;
    r->next = tp->reads;
    if (tp->reads)
        tp->reads->prev = r;
    tp->reads = r;
    int rc = post_pieces_locked(tp, r);
    if (rc && rc != -FI_EAGAIN && r->posted == 0) { /* nothing in flight */
        r->cid = 0;
        ofi_read_maybe_free_locked(tp, r);
        pthread_mutex_unlock(&tp->lock);
        return ofi_fail(rc, "fi_read");
    }
    if (rc && rc != -FI_EAGAIN)
        cut_short_locked(tp, r, rc);
    check_complete_locked(tp, r); /* an empty read */
    bool wake = (r->retrying || c->on_ready) && ofi_want_wake_locked(tp);
    pthread_mutex_unlock(&tp->lock);
    if (wake)
        ofi_wake(tp);
    return 0;
}
