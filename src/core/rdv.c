/* SPDX-License-Identifier: BSD-3-Clause */
/* Rendezvous: registering what is sent, reading what is received (rdv.h). */
#include <stdlib.h>
#include <string.h>

#include "base/error_internal.h"
#include "core/rdv.h"

/* The data path of p when it can do RMA, else NULL (streamed). */
static disco__xport *rma_path(disco__peer *p)
{
    disco__xport *x = atomic_load_explicit(&p->fast_x, memory_order_acquire);
    return x && (x->caps & DISCO_TRANSPORT_CAP_RMA) ? x : NULL;
}

/* The eager limit of x (NULL: streamed over TCP): DISCO_EAGER_MAX
 * overrides the transport's. */
static size_t eager_max(const disco__xport *x)
{
    if (disco__rt.eager_max_env >= 0)
        return (size_t)disco__rt.eager_max_env;
    return x && x->ops->eager_max ? x->ops->eager_max : 64 * 1024;
}

/* Room for len more bytes of data (the receiver takes at most
 * DISCO_MAX_FRAME bytes per message, as of a message sent inline) and for
 * entry n of *arr, an array of *cap entries of size bytes. */
static int make_room(const disco__rdv_regs *regs, size_t len, void **arr, size_t *cap,
                     size_t n, size_t size)
{
    if (len > disco__rt.max_payload - regs->bytes)
        return disco_error_set(DISCO_EMSGSIZE, "a message with %zu bytes of data is above "
                               "the limit of %u (DISCO_MAX_FRAME)", regs->bytes + len,
                               disco__rt.max_payload);
    if (n < *cap)
        return 0;
    size_t more = *cap ? 2 * *cap : 4;
    void *a = realloc(*arr, more * size);
    if (!a)
        return disco_error_set(DISCO_ENOMEM, "no memory for a message");
    *arr = a;
    *cap = more;
    return 0;
}

/* Streamed: the data goes right behind the frame, from where it is. */
static int expose_trailer(void *ctx, const void *ptr, size_t len, disco__rdv_desc *d)
{
    disco__rdv_regs *regs = ctx;
    void *arr = regs->trail;
    int rc = make_room(regs, len, &arr, &regs->trail_cap, regs->ntrail, sizeof(*regs->trail));
    regs->trail = arr;
    if (rc)
        return rc;
    regs->trail[regs->ntrail++] = (struct iovec){(void *)ptr, len};
    regs->bytes += len;
    *d = (disco__rdv_desc){.len = len}; /* no address, no key: it follows */
    return 0;
}

static int expose(void *ctx, const void *ptr, size_t len, disco__rdv_desc *d)
{
    disco__rdv_regs *regs = ctx;
    void *arr = regs->reg;
    int rc = make_room(regs, len, &arr, &regs->cap, regs->n, sizeof(*regs->reg));
    regs->reg = arr;
    if (rc)
        return rc;
    if ((rc = disco__mem_get(regs->x, ptr, len, &regs->reg[regs->n])))
        return rc;
    size_t keylen;
    const uint8_t *key = disco__mem_key(regs->reg[regs->n], &keylen);
    memcpy(d->key, key, keylen);
    regs->n++;
    regs->bytes += len;
    d->addr = (uint64_t)(uintptr_t)ptr;
    d->len = len;
    d->keylen = (uint8_t)keylen;
    return 0;
}

/* Whether ptr is the data of one of the scope's items. */
static bool in_scope(void *ctx, const void *ptr, size_t len)
{
    (void)len;
    const disco_value *scope = ((disco__rdv_regs *)ctx)->scope;
    for (size_t i = 0; i < scope->list.n; i++) {
        const disco_value *v = &scope->list.items[i];
        if ((v->type == DISCO_BYTES && v->bytes.ptr == ptr) ||
            (v->type == DISCO_ARRAY && v->array.data == ptr))
            return true;
    }
    return false;
}

void disco__rdv_policy(disco__peer *p, disco__rdv_regs *regs, disco__rdv_out *out)
{
    disco__xport *x = rma_path(p);
    regs->x = x;
    *out = (disco__rdv_out){.min = eager_max(x), .wants = regs->scope ? in_scope : NULL,
                            .expose = x ? expose : expose_trailer, .ctx = regs};
}

void disco__rdv_release(disco__rdv_regs *regs)
{
    /* Most messages hold nothing: no call of free (and its wrapper). */
    if (regs->reg) {
        for (size_t i = 0; i < regs->n; i++)
            disco__mem_put(regs->reg[i]);
        free(regs->reg);
    }
    if (regs->trail)
        free(regs->trail);
    *regs = (disco__rdv_regs){.scope = regs->scope};
}

disco__rdv_in *disco__rdv_accept(disco__peer *p, disco__rdv_wait *w)
{
    w->x = rma_path(p);
    w->in.max_len = disco__rt.max_payload;
    w->in.pooled = true;
    w->from = p->pid;
    return &w->in;
}

static void finish_one(disco__rdv_wait *w, int status)
{
    int none = 0;
    if (status)
        atomic_compare_exchange_strong(&w->status, &none, status);
    if (atomic_fetch_sub(&w->pending, 1) == 1)
        w->done(w);
}

/* Starts read i: 0 or why it could not. */
static int start_read(disco__peer *p, disco__rdv_wait *w, size_t i)
{
    const disco__rdv_read *r = &w->in.reads[i];
    int rc = disco__mem_get(w->x, r->dst, r->d.len, &w->reg[i]);
    if (rc)
        return rc;
    pthread_rwlock_rdlock(&p->conn_lock);
    rc = p->fast ? w->x->ops->rma_read(p->fast->conn, r->dst, disco__mem_mr(w->reg[i]),
                                       r->d.addr, r->d.len, r->d.key, r->d.keylen, w)
                 : DISCO_ECLOSED;
    pthread_rwlock_unlock(&p->conn_lock);
    return rc;
}

/* Whether every read of w is of the kind its path takes: streamed ones
 * have neither address nor key, RMA ones have both. */
static bool reads_match(const disco__rdv_wait *w)
{
    for (size_t i = 0; i < w->in.n; i++)
        if ((w->in.reads[i].d.keylen == 0) != (w->x == NULL))
            return false;
    return true;
}

void disco__rdv_fetch(disco__peer *p, disco__rdv_wait *w)
{
    size_t n = w->in.n;
    if (!reads_match(w)) {
        atomic_store(&w->pending, 1);
        finish_one(w, disco_error_set(DISCO_EPROTO, "rendezvous descriptors that do not "
                                                    "fit the transport"));
        return;
    }
    if (!w->x) { /* streamed: the bytes that follow the frame are its data */
        atomic_store(&w->pending, 1);
        p->trailer = w;
        p->trailer_i = p->trailer_off = 0;
        return;
    }
    atomic_store(&w->pending, n + 1); /* + 1 until every read has started */
    if (!(w->reg = calloc(n, sizeof(*w->reg)))) {
        atomic_store(&w->pending, 1);
        finish_one(w, disco_error_set(DISCO_ENOMEM, "no memory for rendezvous reads"));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = start_read(p, w, i);
        if (rc)
            finish_one(w, rc);
    }
    finish_one(w, 0);
}

size_t disco__rdv_trailer_take(disco__peer *p, const uint8_t *data, size_t len)
{
    disco__rdv_wait *w = p->trailer;
    size_t used = 0;
    while (used < len && p->trailer_i < w->in.n) {
        const disco__rdv_read *r = &w->in.reads[p->trailer_i];
        size_t n = r->d.len - p->trailer_off;
        if (n > len - used)
            n = len - used;
        memcpy((uint8_t *)r->dst + p->trailer_off, data + used, n);
        disco__count_copy(n); /* the copy a socket needs: into place */
        used += n;
        if ((p->trailer_off += n) == r->d.len) {
            p->trailer_i++;
            p->trailer_off = 0;
        }
    }
    if (p->trailer_i == w->in.n) {
        p->trailer = NULL;
        finish_one(w, 0);
    }
    return used;
}

void disco__rdv_trailer_abort(disco__peer *p, int status)
{
    disco__rdv_wait *w = p->trailer;
    if (w) {
        p->trailer = NULL;
        finish_one(w, status);
    }
}

void disco__rdv_wait_fini(disco__rdv_wait *w)
{
    for (size_t i = 0; w->reg && i < w->in.n; i++)
        if (w->reg[i])
            disco__mem_put(w->reg[i]);
    free(w->reg);
    free(w->in.reads);
    w->reg = NULL;
    w->in.reads = NULL;
}

/* Held replies: a list, since few are outstanding at once (one per large
 * result being read); the lock is taken twice per large result. */
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static disco__held *held;

/* Takes off the list the entries matching p (and call_id unless all). */
static disco__held *take_held(disco__peer *p, uint64_t call_id, bool all)
{
    disco__held *out = NULL;
    pthread_mutex_lock(&held_lock);
    for (disco__held **q = &held; *q;) {
        disco__held *h = *q;
        if (h->to == p && (all || h->call_id == call_id)) {
            *q = h->next;
            h->next = out;
            out = h;
            if (!all)
                break;
        } else {
            q = &h->next;
        }
    }
    pthread_mutex_unlock(&held_lock);
    return out;
}

static void release_all(disco__held *h)
{
    while (h) {
        disco__held *next = h->next;
        disco__rdv_release(&h->regs);
        h->release(h);
        h = next;
    }
}

void disco__held_add(disco__held *h)
{
    pthread_mutex_lock(&held_lock);
    h->next = held;
    held = h;
    pthread_mutex_unlock(&held_lock);
    /* Gone meanwhile: its drop may have run before we were listed. */
    if (atomic_load(&h->to->state) == PEER_GONE)
        release_all(take_held(h->to, 0, true));
}

void disco__held_done(disco__peer *p, uint64_t call_id)
{
    release_all(take_held(p, call_id, false));
}

void disco__held_drop_peer(disco__peer *p)
{
    release_all(take_held(p, 0, true));
}

void disco__rdv_send_done(disco__peer *p, uint64_t call_id)
{
    disco__frame_header h = {.kind = DISCO__FRAME_RDV_DONE, .call_id = call_id};
    (void)disco__send_frame(p, &h, NULL); /* a gone callee has let go anyway */
}

void disco__on_read(void *ctx, disco_conn *c, void *token, int status)
{
    (void)ctx;
    (void)c;
    finish_one(token, status);
}
