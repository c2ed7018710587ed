/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What arrives on a connection: first the handshake, then frames. Runs in
 * transport callbacks, on the worker that drives network progress: nothing
 * here blocks; a call becomes a task (a call of a no-wait function runs
 * here), a reply completes a future.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error_internal.h"
#include "base/spare.h"
#include "cluster/worker_boot.h"
#include "core/rdv.h"
#include "core/running.h"
#include "core/runtime.h"
#include "rpc/future.h"
#include "rpc/registry.h"
#include "sched/sched.h"

void disco__log_conn_error(const disco__peer *p, const char *what)
{
    char msg[512] = "";
    const disco_error *e = disco_last_error();
    if (e)
        disco_error_format(e, msg, sizeof(msg));
    fprintf(stderr, "disco[%d]: connection %s%d (%s): %s: %s\n", disco__rt.myid,
            p->pid ? "to process " : "#", p->pid,
            p->conn ? disco__rt.ops->conn_peer(p->conn) : "closed", what, msg);
}

/* Queues whatever the handshake wants to send. */
static void flush_auth(disco__peer *p)
{
    const uint8_t *out;
    size_t n;
    if (disco__auth_output(&p->auth, &out, &n) != 0 || n == 0)
        return;
    uint8_t *copy = malloc(n); /* freed by on_sent */
    if (!copy)
        return;
    memcpy(copy, out, n);
    struct iovec iov = {copy, n};
    if (disco__peer_send(p, &iov, 1, copy, false) != 0)
        free(copy);
}

int disco__peer_dial(disco__peer *p, const char *addr)
{
    /* Ready before the connection exists: the acceptor's answer may
     * arrive as soon as connect has sent our HELLO. */
    int rc = disco__auth_init(&p->auth, DISCO__AUTH_INITIATOR, disco_cluster_cookie(),
                              &disco__rt.self);
    if (rc)
        return rc;
    /* Callbacks for the connection may run before connect returns: they
     * find p->conn set once they get the lock. */
    pthread_rwlock_wrlock(&p->conn_lock);
    rc = disco__rt.ops->connect(disco__rt.tp, addr, p, &p->conn);
    pthread_rwlock_unlock(&p->conn_lock);
    if (rc)
        return disco_error_set(rc, "cannot connect to process %d at %s", p->pid, addr);
    flush_auth(p); /* HELLO */
    return 0;
}

/* Starts the handshake on an accepted connection (the acceptor speaks
 * first). */
static int begin_accept(disco__peer *p)
{
    int rc = disco__auth_init(&p->auth, DISCO__AUTH_ACCEPTOR, disco_cluster_cookie(),
                              &disco__rt.self);
    if (rc == 0)
        flush_auth(p);
    return rc;
}

static void (*_Atomic observers[DISCO__PEER_OBSERVERS])(int pid, bool up);

int disco__peer_observe(void (*fn)(int pid, bool up))
{
    for (int i = 0; i < DISCO__PEER_OBSERVERS; i++) {
        void (*none)(int, bool) = NULL;
        if (atomic_load(&observers[i]) == fn ||
            atomic_compare_exchange_strong(&observers[i], &none, fn))
            return 0;
    }
    return disco_error_set(DISCO_EBUSY, "no room for another peer observer");
}

static void observe(const disco__peer *p, bool up)
{
    for (int i = 0; i < DISCO__PEER_OBSERVERS && p->pid > 0; i++) {
        void (*observer)(int, bool) = atomic_load(&observers[i]);
        if (observer)
            observer(p->pid, up);
    }
}

void disco__peer_set_ready(disco__peer *p)
{
    atomic_store(&p->ready_status, 0);
    atomic_store_explicit(&p->state, PEER_READY, memory_order_release);
    /* The observers (the default pool) first: addprocs returns once
     * settled, and its caller may count the pool's workers at once. */
    observe(p, true);
    disco_event_notify(&p->settled);
}

/* Callbacks come from every transport; ctx says which (transport_set.h).
 * TCP connections have their peer as context, the others a link. */
static bool is_link(void *ctx) { return ((disco__xport *)ctx)->index != 0; }

void disco__on_accept(void *ctx, disco_conn *c)
{
    if (is_link(ctx)) {
        disco__link_on_accept(ctx, c);
        return;
    }
    disco__peer *p = disco__peer_new(0);
    if (!p) {
        disco__rt.ops->conn_close(c);
        return;
    }
    p->conn = c;
    disco__rt.ops->conn_set_context(c, p);
    if (begin_accept(p) != 0) {
        disco__log_conn_error(p, "handshake");
        disco__peer_free_unpublished(p);
    }
}

/* The handshake just succeeded on p: the initiator offers its transports
 * (src/core/upgrade.c), the acceptor waits for the offer. */
static int authenticated(disco__peer *p)
{
    const disco__identity *id = disco__auth_peer(&p->auth);
    memcpy(p->host, id->host, sizeof(p->host));
    memcpy(p->addr, id->addr, sizeof(p->addr));
    if (p->pid) { /* we dialled p */
        /* A worker answers as pid 0 until its JOIN has arrived. */
        if (disco__rt.worker && id->pid != 0 && id->pid != p->pid)
            return disco_error_set(DISCO_EAUTH, "dialled process %d, process %d answered",
                                   p->pid, id->pid);
        return disco__upgrade_offer(p);
    }
    if (!disco__rt.worker)
        return disco_error_set(DISCO_EPERM, "unexpected connection from process %d (%s): "
                                            "the master accepts none", id->pid, id->host);
    return 0;
}

/* Initiator: the transport is settled. A new worker is ready once it has
 * joined; a worker we dialled once it says IDENTIFY_ACK (it may refuse). */
static int upgraded_as_initiator(disco__peer *p)
{
    return disco__rt.worker ? 0 : disco__mesh_send_join(p);
}

/* Acceptor (a worker): the transport is settled; p is the master or
 * another worker. */
static int upgraded_as_acceptor(disco__peer *p)
{
    const disco__identity *id = disco__auth_peer(&p->auth);
    if (id->pid != 1)
        return disco__mesh_accept(p, id);
    disco__peer *none = NULL;
    p->pid = 1;
    if (!atomic_compare_exchange_strong(&disco__rt.peers[1], &none, p)) {
        p->pid = 0;
        return disco_error_set(DISCO_EPERM, "a second connection from the master refused");
    }
    disco__worker_master_connected();
    disco__peer_set_ready(p);
    return 0;
}

/* ---- calls (target side) ------------------------------------------------ */

typedef struct disco__call {
    struct disco__call *next; /* in from->waiting */
    int status;               /* > 0: arguments still being read */
    int refused;              /* not to run: its function is unknown */
    disco_error *err;         /* why it fails, for the answer */
    disco__peer *from;
    disco__frame_header h;
    disco_function fn;
    const char *name;
    bool nowait;      /* fn is a no-wait function: it runs in progress */
    disco_value args; /* owned list */
    disco__rdv_wait rdv; /* arguments still to read by rendezvous */
    disco_value result;  /* kept while the caller reads it (held) */
    disco__held held;
    disco_value inplace[]; /* CALL_INPLACE: the items of args, when they fit */
} call;

/* A call of up to this many arguments needs no allocation for their
 * array (disco__value_decode_into). */
#define CALL_INPLACE 4
#define CALL_SIZE (sizeof(call) + CALL_INPLACE * sizeof(disco_value))

static void reply(call *c, int rc, const disco_value *result)
{
    /* The answers to a batch's calls go back together (batch.c). */
    disco__frame_header h = {.call_id = c->h.call_id,
                             .flags = c->h.flags & DISCO__FRAME_BATCH};
    if (rc == 0) {
        h.kind = DISCO__FRAME_RESULT;
        rc = disco__send_frame_rdv(c->from, &h, result, &c->held.regs);
        if (rc == 0 || rc == DISCO_ECLOSED)
            return;
        disco__rdv_release(&c->held.regs);
        /* The result could not be sent (not encodable, too large): say so. */
    }
    disco_error *e = disco_error_take();
    if (!e)
        e = disco_error_new(rc, "%s", disco_strerror(rc));
    if (!e)
        return;
    disco__error_set_pid(e, disco__rt.myid);
    h.kind = DISCO__FRAME_ERROR;
    disco_value ev = disco_error_value(e);
    if (disco__send_frame(c->from, &h, &ev) != 0)
        disco__log_conn_error(c->from, "cannot send an error reply");
    disco_error_free(e);
}

static void call_free(call *c)
{
    disco__call_result_free(&c->result, &c->args);
    disco_value_free(&c->args);
    disco__spare_put(DISCO__SPARE_CALL, c);
}

static void release_held(disco__held *h)
{
    call_free((call *)(void *)((char *)h - offsetof(call, held)));
}

static int run_call(void *arg, void **unused)
{
    (void)unused;
    call *c = arg;
    bool effect_only = c->h.kind == DISCO__FRAME_REMOTE_DO;
    int rc = disco__call_invoke(c->fn, c->name, c->nowait, &c->args, effect_only, &c->result);
    if (!effect_only)
        reply(c, rc, &c->result);
    if (c->held.regs.n || c->held.regs.ntrail) { /* the caller reads it from here */
        c->held = (disco__held){.to = c->from, .call_id = c->h.call_id,
                                .regs = c->held.regs, .release = release_held};
        disco__held_add(&c->held);
        return 0;
    }
    call_free(c);
    return 0;
}

/* A call frame whose function or arguments are no good: answer with the
 * error (when an answer is wanted) and go on with the connection. */
static void refuse_call(disco__peer *p, const disco__frame_header *in, int rc)
{
    call c = {.from = p, .h = *in};
    c.h.flags = 0; /* answered from progress, which does not flush: at once */
    if (in->kind == DISCO__FRAME_REMOTE_DO) {
        disco__log_conn_error(p, "remote_do refused");
        return;
    }
    reply(&c, rc, NULL);
}

static void drop_call(call *c, int rc)
{
    disco_value_free(&c->args);
    disco__rdv_wait_fini(&c->rdv);
    refuse_call(c->from, &c->h, rc);
    disco__spare_put(DISCO__SPARE_CALL, c);
}

/* A call of a no-wait function runs here, in network progress, without a
 * task. Its answer goes at once, batch or not: the thread reading the
 * network may be one outside the scheduler, in a wait of its own, which
 * would flush held answers only when that wait ends. Whoever is reading
 * the network keeps its last error. */
static void run_here(call *c)
{
    c->h.flags &= (uint8_t)~DISCO__FRAME_BATCH;
    disco_error *reader = disco_error_take();
    run_call(c, NULL);
    disco_error_put(reader);
}

/* Starts c (status 0), or answers with its failure. */
static void start_call(call *c, int rc)
{
    if (rc == 0 && c->nowait) {
        run_here(c);
        return;
    }
    if (rc == 0)
        rc = disco__async_fifo(run_call, c);
    if (rc)
        drop_call(c, rc);
}

/* Starts the calls at the head of p's waiting line that have their
 * arguments, up to the first that does not yet. */
static void start_waiting(disco__peer *p)
{
    call *c;
    while ((c = p->waiting) && c->status <= 0) {
        if (!(p->waiting = c->next))
            p->waiting_tail = NULL;
        if (c->err)
            disco_error_put(c->err); /* the answer's message */
        start_call(c, c->status);
    }
}

static void wait_in_line(disco__peer *p, call *c)
{
    if (p->waiting_tail)
        p->waiting_tail->next = c;
    else
        p->waiting = c;
    p->waiting_tail = c;
}

/* The arguments that came by rendezvous are here (or could not be read). */
static void arguments_read(disco__rdv_wait *w)
{
    call *c = (call *)(void *)((char *)w - offsetof(call, rdv));
    int rc = atomic_load(&w->status);
    size_t total = w->in.total;
    disco__rdv_wait_fini(w);
    if (rc)
        rc = disco_error_set(rc, "the arguments (%zu bytes by rendezvous) could not be read "
                                 "from process %d: %s", total, w->from, disco_strerror(rc));
    if (rc) {
        disco_error_free(c->err);
        c->err = disco_error_take();
    } else {
        rc = c->refused; /* c->err says why */
    }
    c->status = rc;
    start_waiting(c->from);
}

static void handle_call(disco__peer *p, const disco__frame_header *h,
                        const uint8_t *payload)
{
    const char *name = NULL;
    bool nowait = false;
    disco_function fn = disco__function_by_id(h->function_id, &name, &nowait);
    /* Initialized below: calloc costs more. */
    call *c = disco__spare_take(DISCO__SPARE_CALL, CALL_SIZE);
    if (!c) {
        refuse_call(p, h, disco_error_set(DISCO_ENOMEM, "no memory for a call"));
        return;
    }
    *c = (call){.from = p, .h = *h, .fn = fn, .name = name, .nowait = nowait};
    size_t used;
    disco__rdv_in *in = disco__rdv_accept(p, &c->rdv);
    int rc = disco__value_decode_into(payload, h->payload_len, &used, &c->args, in,
                                      c->inplace, CALL_INPLACE);
    if (rc == 0 && (c->args.type != DISCO_LIST || used != h->payload_len)) {
        disco_value_free(&c->args);
        rc = disco_error_set(DISCO_EPROTO, "call arguments are not one list");
    }
    /* A call of an unknown function is refused once its arguments are in:
     * data streamed behind its frame must be taken off the stream first. */
    if (rc == 0 && !fn) {
        c->refused = disco_error_set(DISCO_ENOFUNC,
                                     "function %#llx is not registered on worker %d",
                                     (unsigned long long)h->function_id, disco__rt.myid);
        c->err = disco_error_take();
    }
    if (rc == 0 && c->rdv.in.n) { /* it waits for its arguments, in line */
        c->status = 1;
        c->rdv.done = arguments_read;
        wait_in_line(p, c);
        disco__rdv_fetch(p, &c->rdv);
        return;
    }
    if (rc == 0 && p->waiting) { /* behind one that waits */
        c->status = c->refused;
        wait_in_line(p, c);
        return;
    }
    if (rc == 0 && c->refused) {
        rc = c->refused;
        disco_error_put(c->err); /* the answer's message */
        c->err = NULL;
    }
    start_call(c, rc);
}

/* ---- replies and control (caller side) --------------------------------- */

/* A result whose data comes by rendezvous: completed once it is read. */
typedef struct result_read {
    uint64_t call_id;
    disco__peer *from;
    disco_value v;
    disco__rdv_wait rdv;
} result_read;

static void result_done(disco__rdv_wait *w)
{
    result_read *r = (result_read *)(void *)((char *)w - offsetof(result_read, rdv));
    int rc = atomic_load(&w->status);
    size_t total = w->in.total;
    disco__rdv_wait_fini(w);
    disco__rdv_send_done(r->from, r->call_id);
    if (rc == 0) {
        disco__future_complete(r->call_id, 0, &r->v, NULL);
    } else {
        disco_value_free(&r->v);
        disco_error *e = disco_error_new(rc, "the result (%zu bytes by rendezvous) could not "
                                             "be read from process %d: %s",
                                         total, w->from, disco_strerror(rc));
        disco__future_complete(r->call_id, rc, NULL, e);
    }
    free(r);
}

/* Starts reading the rendezvous data of result v (moved in). */
static void fetch_result(disco__peer *p, const disco__frame_header *h, disco_value *v,
                         const disco__rdv_wait *w)
{
    result_read *r = malloc(sizeof(*r));
    if (!r) {
        disco__rdv_send_done(p, h->call_id);
        disco_value_free(v);
        disco__future_complete(h->call_id, DISCO_ENOMEM, NULL,
                               disco_error_new(DISCO_ENOMEM, "no memory for a result"));
        return;
    }
    *r = (result_read){.call_id = h->call_id, .from = p, .v = *v, .rdv = *w};
    r->rdv.done = result_done;
    disco__rdv_fetch(p, &r->rdv);
}

static void handle_reply(disco__peer *p, const disco__frame_header *h, const uint8_t *payload)
{
    disco_value v;
    size_t used;
    disco__rdv_wait w = {0};
    disco__rdv_in *in = h->kind == DISCO__FRAME_RESULT ? disco__rdv_accept(p, &w) : NULL;
    int rc = disco__value_decode_rdv(payload, h->payload_len, &used, &v, in);
    if (rc == 0 && used != h->payload_len) {
        disco_value_free(&v);
        rc = disco_error_set(DISCO_EPROTO, "trailing bytes after a reply");
    }
    if (rc == 0 && w.in.n) {
        fetch_result(p, h, &v, &w);
        return;
    }
    if (w.in.reads) /* begun by a value that then failed to decode */
        free(w.in.reads);
    if (rc) {
        disco__future_complete(h->call_id, rc, NULL, disco_error_take());
        return;
    }
    if (h->kind == DISCO__FRAME_RESULT) {
        disco__future_complete(h->call_id, 0, &v, NULL);
    } else if (v.type == DISCO_ERROR && v.error) {
        /* The decoded value owns its error: take it over. */
        disco_error *e = (disco_error *)v.error;
        v = disco_nil();
        disco__future_complete(h->call_id, disco_error_code(e), NULL, e);
    } else {
        disco_value_free(&v);
        disco__future_complete(h->call_id, DISCO_EPROTO, NULL,
                               disco_error_new(DISCO_EPROTO, "error reply without an error"));
    }
}

/* JOIN (master to worker) and JOIN_COMPLETE (back): see mesh.c. A
 * malformed one breaks the connection. */
static int handle_join(disco__peer *p, const disco__frame_header *h,
                       const uint8_t *payload)
{
    bool to_worker = h->kind == DISCO__FRAME_JOIN;
    if (to_worker != disco__rt.worker || (to_worker && p->pid != 1))
        return disco_error_set(DISCO_EPROTO, "unexpected %s frame from process %d",
                               disco__frame_kind_name(h->kind), p->pid);
    disco_value v;
    size_t used;
    int rc = disco__value_decode(payload, h->payload_len, &used, &v);
    if (rc == 0 && used != h->payload_len)
        rc = disco_error_set(DISCO_EPROTO, "trailing bytes after %s",
                             disco__frame_kind_name(h->kind));
    if (rc == 0 && to_worker)
        rc = disco__mesh_on_join(&v);
    else if (rc == 0)
        disco__mesh_on_join_complete(p, &v);
    disco_value_free(&v);
    return rc;
}

/* The transport upgrade (upgrade.c): the first frame each way after the
 * handshake, and nothing else may come before it. */
static int handle_upgrade(disco__peer *p, const disco__frame_header *h,
                          const uint8_t *payload)
{
    bool offer = h->kind == DISCO__FRAME_UPGRADE;
    bool acceptor = p->pid == 0; /* it gets its pid once upgraded */
    if (p->upgraded || offer != acceptor)
        return disco_error_set(DISCO_EPROTO, "unexpected %s frame",
                               disco__frame_kind_name(h->kind));
    int rc = offer ? disco__upgrade_on_offer(p, payload, h->payload_len)
                   : disco__upgrade_on_answer(p, payload, h->payload_len);
    if (rc == 0)
        rc = offer ? upgraded_as_acceptor(p) : upgraded_as_initiator(p);
    return rc;
}

/* Handles one frame. A negative return closes the connection. */
static int handle_frame(disco__peer *p, const disco__frame_header *h,
                        const uint8_t *payload)
{
    if (h->kind == DISCO__FRAME_UPGRADE || h->kind == DISCO__FRAME_UPGRADED || !p->upgraded)
        return handle_upgrade(p, h, payload);
    switch (h->kind) {
    case DISCO__FRAME_CALL:
    case DISCO__FRAME_CALL_FETCH:
    case DISCO__FRAME_CALL_WAIT:
    case DISCO__FRAME_REMOTE_DO:
        handle_call(p, h, payload);
        return 0;
    case DISCO__FRAME_RESULT:
    case DISCO__FRAME_ERROR:
        handle_reply(p, h, payload);
        return 0;
    case DISCO__FRAME_JOIN:
    case DISCO__FRAME_JOIN_COMPLETE:
        return handle_join(p, h, payload);
    case DISCO__FRAME_IDENTIFY_ACK: /* another worker accepted our dial */
        if (disco__rt.worker && p->pid > 1 && atomic_load(&p->state) == PEER_AUTH)
            disco__peer_set_ready(p);
        return 0;
    case DISCO__FRAME_RDV_DONE:
        disco__held_done(p, h->call_id);
        return 0;
    case DISCO__FRAME_INTERRUPT:
        disco__running_interrupt_all();
        return 0;
    case DISCO__FRAME_SHUTDOWN:
        if (disco__rt.worker && p->pid == 1) {
            atomic_store(&disco__rt.master_said_goodbye, true);
            sem_post(&disco__rt.master_gone);
        }
        return 0;
    default:
        return disco_error_set(DISCO_EPROTO, "unexpected %s frame",
                               disco__frame_kind_name(h->kind));
    }
}

/* Handles the complete frames at the start of buf[0..len): *used is what
 * they took; *need the size of the incomplete frame after them (0: not
 * known yet). A negative return (a corrupt stream) closes the connection. */
static int parse(disco__peer *p, const uint8_t *buf, size_t len, size_t *used,
                 size_t *need)
{
    size_t off = 0;
    int rc = 0;
    *need = 0;
    while (len - off >= DISCO__FRAME_HEADER_SIZE) {
        disco__frame_header h;
        if ((rc = disco__frame_header_decode(buf + off, len - off, disco__rt.max_payload, &h)))
            break;
        size_t total = DISCO__FRAME_HEADER_SIZE + (size_t)h.payload_len;
        if (len - off < total) {
            *need = total;
            break;
        }
        if ((rc = handle_frame(p, &h, buf + off + DISCO__FRAME_HEADER_SIZE)))
            break;
        off += total;
        if (p->trailer)
            break; /* its rendezvous data follows: not a frame */
    }
    *used = off;
    return rc;
}

/* Keeps data[0..len) for later, with room for want bytes in all. */
static int append(disco__peer *p, const uint8_t *data, size_t len, size_t want)
{
    if (want < p->rlen + len)
        want = p->rlen + len;
    if (p->rcap < want) {
        size_t cap = p->rcap ? p->rcap : 64 * 1024;
        while (cap < want)
            cap *= 2;
        uint8_t *b = realloc(p->rbuf, cap);
        if (!b)
            return disco_error_set(DISCO_ENOMEM, "no memory for a %zu-byte message", want);
        p->rbuf = b;
        p->rcap = cap;
    }
    if (len)
        memcpy(p->rbuf + p->rlen, data, len);
    disco__count_copy(len);
    p->rlen += len;
    return 0;
}

/* Whole frames at the start of data, handled where they lie; a frame cut
 * by the end of data goes to p's buffer, sized for all of it at once. */
static int take_whole(disco__peer *p, const uint8_t *data, size_t len, size_t *taken)
{
    size_t used, need;
    int rc = parse(p, data, len, &used, &need);
    *taken = used;
    if (rc || p->trailer || used == len)
        return rc;
    *taken = len;
    p->rneed = need;
    return append(p, data + used, len - used, need);
}

/* p's buffer holds the start of a frame: adds what it lacks (only that)
 * from data, and handles the frame once whole. */
static int complete_frame(disco__peer *p, const uint8_t *data, size_t len, size_t *taken)
{
    size_t want = p->rneed ? p->rneed : DISCO__FRAME_HEADER_SIZE;
    size_t n = want - p->rlen < len ? want - p->rlen : len;
    int rc = append(p, data, n, want);
    *taken = n;
    if (rc || p->rlen < want)
        return rc;
    size_t used, need;
    if ((rc = parse(p, p->rbuf, p->rlen, &used, &need)))
        return rc;
    if (used == p->rlen) /* handled */
        p->rlen = p->rneed = 0;
    else /* only its header so far: now its size is known */
        p->rneed = need;
    return 0;
}

/* Bytes of p's stream arrived: frames, and the rendezvous data streamed
 * behind some of them, which goes straight into place (rdv.h). */
int disco__take_frames(disco__peer *p, const uint8_t *data, size_t len)
{
    int rc = 0;
    while (len && rc == 0) {
        size_t n;
        if (p->trailer)
            n = disco__rdv_trailer_take(p, data, len);
        else if (p->rlen)
            rc = complete_frame(p, data, len, &n);
        else
            rc = take_whole(p, data, len, &n);
        data += n;
        len -= n;
    }
    return rc;
}

/*
 * p's connection is over (closed by the peer, broken, or dropped by us: a
 * corrupt stream closes that one connection). Everything waiting on the
 * peer learns it: futures of calls on it fail with a process-exited error,
 * addprocs stops waiting, a worker whose master is gone shuts down. The
 * connection is closed and freed; the peer stays (pids are never reused)
 * and its sends fail with DISCO_ECLOSED — except a peer that never became
 * known, which nothing else refers to and is freed as well.
 */
void disco__peer_gone(disco__peer *p, int status, const char *why)
{
    if (atomic_exchange(&p->state, PEER_GONE) == PEER_GONE)
        return;
    disco__upgrade_forget(p);
    disco__held_drop_peer(p);
    disco__rdv_trailer_abort(p, DISCO_EPROCEXIT);
    bool was_known = p->pid != 0;
    /* The pools drop it before its futures fail: whoever a failure wakes
     * (pmap retrying elsewhere, then returning) sees it gone already. */
    observe(p, false);
    if (p->pid > 1 || (p->pid == 1 && !disco__rt.worker)) {
        disco_error *e = disco_error_new(DISCO_EPROCEXIT, "worker %d exited (%s)",
                                         p->pid, why);
        if (e) {
            disco__error_set_pid(e, p->pid);
            disco__future_fail_where(p->pid, e);
            disco_error_free(e);
        }
    } else if (p->pid == 1) {
        sem_post(&disco__rt.master_gone);
    }
    atomic_store(&p->ready_status, status ? status : DISCO_EPROCEXIT);
    disco_event_notify(&p->settled);
    free(p->rbuf);
    p->rbuf = NULL;
    p->rlen = p->rcap = p->rneed = 0;
    disco__auth_fini(&p->auth);
    disco__peer_close(p);
    if (!was_known)
        disco__peer_free_unpublished(p);
    else
        atomic_store_explicit(&p->departed, true, memory_order_release);
}

static void drop(disco__peer *p, const char *what)
{
    disco__log_conn_error(p, what);
    disco__peer_gone(p, disco_error_code(disco_last_error()), what);
}

void disco__on_close(void *ctx, disco_conn *c, int status)
{
    if (is_link(ctx)) {
        disco__link_on_close(((disco__xport *)ctx)->ops->conn_context(c), status);
        return;
    }
    disco__peer *p = disco__rt.ops->conn_context(c);
    if (p)
        disco__peer_gone(p, status, status ? disco_strerror(status) : "connection closed");
}

void disco__on_sent(void *ctx, disco_conn *c, void *token, int status)
{
    (void)ctx;
    (void)c;
    (void)status;
    free(token); /* every send's token is its malloc'd buffer */
}

void disco__on_recv(void *ctx, disco_conn *c, const uint8_t *data, size_t len)
{
    if (is_link(ctx)) {
        disco__link_on_recv(((disco__xport *)ctx)->ops->conn_context(c), data, len);
        return;
    }
    disco__peer *p = disco__rt.ops->conn_context(c);
    if (!p || atomic_load_explicit(&p->state, memory_order_acquire) == PEER_GONE)
        return; /* dropped: what still arrives is ignored */
    if (!p->auth_done) {
        size_t used = 0;
        int rc = disco__auth_input(&p->auth, data, len, &used);
        flush_auth(p); /* the next message, or an ABORT for the peer */
        if (rc == 0)
            return;
        if (rc < 0 || (rc = authenticated(p)) != 0) {
            drop(p, "handshake failed");
            return;
        }
        p->auth_done = true;
        data += used;
        len -= used;
    }
    if (len && disco__take_frames(p, data, len) != 0)
        drop(p, "closing the connection");
}
