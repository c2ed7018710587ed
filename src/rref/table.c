/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The reference table of this process and the owner's client sets (see
 * rref.h for the protocol). Entries are looked up only when a reference
 * moves or a handle is made, never on a channel operation's data path.
 */
#include <pthread.h>
#include <stdlib.h>

#include "core/runtime.h"
#include "rpc/future.h"
#include "disco/rref.h"
#include "rref/rref.h"
#include "wire/ref_hooks.h"

#define BUCKETS 256

static struct {
    pthread_mutex_t lock;
    disco__rref *bucket[BUCKETS];
    bool dead[DISCO__MAX_PROCS]; /* processes known to have died */
} T = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t slot(const disco_ref *r)
{
    return (size_t)((r->id * 31u + (uint64_t)(uint32_t)r->whence) % BUCKETS);
}

static disco__rref **find_locked(const disco_ref *r)
{
    disco__rref **p = &T.bucket[slot(r)];
    while (*p && !((*p)->ref.id == r->id && (*p)->ref.whence == r->whence))
        p = &(*p)->next;
    return p;
}

static disco__rref *create_locked(const disco_ref *r)
{
    disco__rref *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->ref = *r;
    e->ref.flags = 0;
    e->value = disco_nil();
    pthread_mutex_init(&e->items, NULL);
    disco__rref **p = &T.bucket[slot(r)];
    e->next = *p;
    *p = e;
    return e;
}

static bool is_owner(const disco__rref *e)
{
    return disco__rref_owner(&e->ref) == disco__rt.myid;
}

/* What an entry that changed leaves to do once the lock is gone. */
typedef struct after {
    disco_future *unretain;  /* the owner stops keeping this future */
    disco_channel *backing;  /* the owner frees this remote channel */
    disco_value value;       /* a carried value to free */
    disco_ref del_ref;       /* a client returns del_n grants */
    int64_t del_n;
} after;

/* Re-evaluates e after a change (lock held): keeps or lets go of the
 * owner's future, and unlinks and frees the entry once nothing holds it. */
static void settle_locked(disco__rref *e, after *a)
{
    bool kept = e->holds > 0 || e->nclients > 0;
    if (is_owner(e) && e->future && kept != e->future_retained) {
        if (kept)
            disco__future_retain(e->future);
        else
            a->unretain = e->future;
        e->future_retained = kept;
    }
    if (kept || e->future)
        return;
    disco__rref **p = find_locked(&e->ref);
    *p = e->next;
    a->backing = e->backing;
    a->value = e->value;
    if (!is_owner(e) && e->grants > 0) {
        a->del_ref = e->ref;
        a->del_n = e->grants;
    }
    free(e->clients);
    pthread_mutex_destroy(&e->items);
    free(e);
}

static void send_del(const disco_ref *r, int64_t n);

static void finish(after *a)
{
    if (a->unretain)
        disco_future_release(a->unretain);
    if (a->backing) {
        /* Nobody refers to the channel any more: its items are dropped
         * (which releases references they hold). */
        disco_close(a->backing);
        disco_value v;
        while (disco_take(a->backing, &v) == 0)
            disco_value_free(&v);
        disco_channel_free(a->backing);
    }
    disco_value_free(&a->value);
    if (a->del_n)
        send_del(&a->del_ref, a->del_n);
}

disco__rref *disco__rref_hold(const disco_ref *r)
{
    return disco__rref_hold_granted(r, 0);
}

disco__rref *disco__rref_hold_granted(const disco_ref *r, int64_t grants)
{
    pthread_mutex_lock(&T.lock);
    disco__rref *e = *find_locked(r);
    if (!e && !(e = create_locked(r))) {
        pthread_mutex_unlock(&T.lock);
        disco_error_set(DISCO_ENOMEM, "no memory for a reference");
        return NULL;
    }
    after a = {0};
    e->holds++;
    e->grants += grants;
    settle_locked(e, &a);
    pthread_mutex_unlock(&T.lock);
    finish(&a);
    return e;
}

disco__rref *disco__rref_find_hold(const disco_ref *r)
{
    pthread_mutex_lock(&T.lock);
    disco__rref *e = *find_locked(r);
    after a = {0};
    if (e) {
        e->holds++;
        settle_locked(e, &a);
    }
    pthread_mutex_unlock(&T.lock);
    finish(&a);
    return e;
}

void disco__rref_release(disco__rref *e)
{
    after a = {0};
    pthread_mutex_lock(&T.lock);
    e->holds--;
    settle_locked(e, &a);
    pthread_mutex_unlock(&T.lock);
    finish(&a);
}

disco__rref *disco__rref_new_channel(const disco_ref *r, disco_channel *backing)
{
    pthread_mutex_lock(&T.lock);
    disco__rref *e = *find_locked(r) ? NULL : create_locked(r);
    if (e) {
        e->backing = backing;
        if (r->whence == disco__rt.myid)
            e->holds = 1;
        else if ((e->clients = malloc(sizeof(*e->clients)))) {
            e->clients[0] = (disco__client){r->whence, 1};
            e->nclients = e->capclients = 1;
        } else {
            *find_locked(r) = e->next;
            pthread_mutex_destroy(&e->items);
            free(e);
            e = NULL;
        }
    }
    pthread_mutex_unlock(&T.lock);
    if (!e)
        disco_error_set(DISCO_ENOMEM, "no memory for remote channel %d/%llu", r->whence,
                        (unsigned long long)r->id);
    return e;
}

int disco__rref_link_future(disco_future *f, const disco_ref *r)
{
    pthread_mutex_lock(&T.lock);
    disco__rref *e = *find_locked(r);
    if (!e)
        e = create_locked(r);
    if (e)
        e->future = f;
    pthread_mutex_unlock(&T.lock);
    return e ? 0 : disco_error_set(DISCO_ENOMEM, "no memory for a reference");
}

disco_future *disco__rref_future_of(disco__rref *e)
{
    pthread_mutex_lock(&T.lock);
    disco_future *f = e->future && disco__future_tryretain(e->future) ? e->future : NULL;
    pthread_mutex_unlock(&T.lock);
    return f;
}

void disco__rref_set_future(disco__rref *e, disco_future *f)
{
    pthread_mutex_lock(&T.lock);
    e->future = f;
    pthread_mutex_unlock(&T.lock);
}

void disco__rref_future_freed(disco_future *f, const disco_ref *r)
{
    after a = {0};
    pthread_mutex_lock(&T.lock);
    disco__rref *e = *find_locked(r);
    if (e && e->future == f) {
        e->future = NULL;
        e->future_retained = false; /* it was not: it is being freed */
        settle_locked(e, &a);
    }
    pthread_mutex_unlock(&T.lock);
    finish(&a);
}

/* ---- client sets ---------------------------------------------------------- */

static disco__client *client_locked(disco__rref *e, int pid, bool create)
{
    for (size_t i = 0; i < e->nclients; i++)
        if (e->clients[i].pid == pid)
            return &e->clients[i];
    if (!create)
        return NULL;
    if (e->nclients == e->capclients) {
        size_t cap = e->capclients ? 2 * e->capclients : 4;
        disco__client *c = realloc(e->clients, cap * sizeof(*c));
        if (!c)
            return NULL;
        e->clients = c;
        e->capclients = cap;
    }
    e->clients[e->nclients] = (disco__client){pid, 0};
    return &e->clients[e->nclients++];
}

static void remove_client_locked(disco__rref *e, disco__client *c)
{
    *c = e->clients[--e->nclients];
}

int disco__rref_add_local(const disco_ref *r, int pid, int64_t n)
{
    int rc = 0;
    pthread_mutex_lock(&T.lock);
    disco__rref *e = *find_locked(r);
    disco__client *c;
    if (pid <= 0 || pid >= DISCO__MAX_PROCS || n <= 0)
        rc = DISCO_EINVAL;
    else if (!e || (!e->backing && !e->future))
        rc = DISCO_ESTATE;
    else if (T.dead[pid])
        rc = 0; /* it died meanwhile: nothing to keep for it */
    else if ((c = client_locked(e, pid, true)))
        c->n += n;
    else
        rc = DISCO_ENOMEM;
    pthread_mutex_unlock(&T.lock);
    if (rc == DISCO_ESTATE)
        return disco_error_set(rc, "reference %d/%llu is not stored on process %d (freed, "
                               "or never there)", r->whence, (unsigned long long)r->id,
                               disco__rt.myid);
    if (rc)
        return disco_error_set(rc, "cannot add process %d to reference %d/%llu", pid,
                               r->whence, (unsigned long long)r->id);
    return 0;
}

/* Owner: process pid returns n grants of r. */
static void del_local(const disco_ref *r, int pid, int64_t n)
{
    after a = {0};
    pthread_mutex_lock(&T.lock);
    disco__rref *e = *find_locked(r);
    disco__client *c = e ? client_locked(e, pid, false) : NULL;
    if (c && (c->n -= n) <= 0) {
        remove_client_locked(e, c);
        settle_locked(e, &a);
    }
    pthread_mutex_unlock(&T.lock);
    finish(&a);
}

void disco__rref_forget(int pid)
{
    if (pid <= 0 || pid >= DISCO__MAX_PROCS)
        return;
    for (;;) {
        after a = {0};
        bool more = false;
        pthread_mutex_lock(&T.lock);
        T.dead[pid] = true;
        for (size_t b = 0; b < BUCKETS && !more; b++)
            for (disco__rref *e = T.bucket[b]; e && !more; e = e->next) {
                disco__client *c = client_locked(e, pid, false);
                if (c) {
                    remove_client_locked(e, c);
                    settle_locked(e, &a); /* may unlink e: restart the scan */
                    more = true;
                }
            }
        pthread_mutex_unlock(&T.lock);
        finish(&a);
        if (!more)
            return;
    }
}

/* ---- messages between clients and owners ------------------------------- */

/* "disco.ref_add"(whence, id, kind, pid): the owner adds a client. */
static int ref_add(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n != 4 || args[0].type != DISCO_I64 || args[1].type != DISCO_I64 ||
        args[2].type != DISCO_I64 || args[3].type != DISCO_I64)
        return disco_throw(DISCO_EPROTO, "disco.ref_add: bad arguments");
    disco_ref r = {.whence = (int32_t)args[0].i, .id = (uint64_t)args[1].i,
                   .kind = (uint8_t)args[2].i};
    return disco__rref_add_local(&r, (int)args[3].i, 1);
}

/* "disco.ref_del"(whence, id, pid, n): the owner takes n grants back. */
static int ref_del(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n != 4 || args[0].type != DISCO_I64 || args[1].type != DISCO_I64 ||
        args[2].type != DISCO_I64 || args[3].type != DISCO_I64)
        return disco_throw(DISCO_EPROTO, "disco.ref_del: bad arguments");
    disco_ref r = {.whence = (int32_t)args[0].i, .id = (uint64_t)args[1].i};
    del_local(&r, (int)args[2].i, args[3].i);
    return 0;
}

/* "disco.ref_forget"(pid): the master tells a worker that pid died. */
static int ref_forget(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n != 1 || args[0].type != DISCO_I64)
        return disco_throw(DISCO_EPROTO, "disco.ref_forget: bad arguments");
    disco__rref_forget((int)args[0].i);
    return 0;
}

/* Peer observer (progress thread): a process that is gone holds nothing.
 * The master also tells every worker, which may hold references for it
 * without a connection to it. The master is connected to every worker, so
 * its remote_do's only queue frames: nothing here waits. */
static void on_peer(int pid, bool up)
{
    if (up)
        return;
    disco__rref_forget(pid);
    if (disco__rt.worker)
        return;
    disco_value dead = disco_i64(pid);
    int pids[DISCO__MAX_PROCS];
    int n = disco_workers(pids, DISCO__MAX_PROCS);
    for (int i = 0; i < n; i++)
        if (pids[i] != pid && pids[i] != disco__rt.myid)
            (void)disco_remote_do(ref_forget, pids[i], &dead, 1);
}

typedef struct del_msg {
    disco_ref ref;
    int64_t n;
} del_msg;

/* A release may happen anywhere (even on the progress thread, freeing a
 * decoded value). To a connected owner the message is only queued; one
 * that needs a connection first gets it from a small task (once per
 * reference a process lets go of, not per operation). */
static int del_task(void *arg, void **unused)
{
    (void)unused;
    del_msg *m = arg;
    disco_value args[4] = {disco_i64(m->ref.whence), disco_i64((int64_t)m->ref.id),
                           disco_i64(disco__rt.myid), disco_i64(m->n)};
    /* An owner that is gone has nothing left to free. */
    (void)disco_remote_do(ref_del, disco__rref_owner(&m->ref), args, 4);
    free(m);
    return 0;
}

static void send_del(const disco_ref *r, int64_t n)
{
    int owner = disco__rref_owner(r);
    if (!atomic_load(&disco__rt.up) || owner <= 0 || owner >= DISCO__MAX_PROCS ||
        owner == disco__rt.myid)
        return;
    disco__peer *p = atomic_load(&disco__rt.peers[owner]);
    if (p && atomic_load(&p->state) == PEER_GONE)
        return;
    if (p && atomic_load(&p->state) == PEER_READY) { /* connected: only queues */
        disco_value args[4] = {disco_i64(r->whence), disco_i64((int64_t)r->id),
                               disco_i64(disco__rt.myid), disco_i64(n)};
        (void)disco_remote_do(ref_del, owner, args, 4);
        return;
    }
    del_msg *m = malloc(sizeof(*m));
    if (!m)
        return; /* the owner keeps the value: a leak, never a wrong free */
    *m = (del_msg){*r, n};
    disco_task_attr attr = {.detached = true, .name = "ref release"};
    if (!disco_async_attr(del_task, m, &attr))
        free(m);
}

/* ---- references travelling ---------------------------------------------- */

static int grant_one(int to, const disco_ref *r)
{
    int owner = disco__rref_owner(r);
    if (to == owner || (r->kind == DISCO_REF_FUTURE && (r->flags & DISCO_REF_CARRIES)))
        return 0; /* the owner takes a hold as it decodes; a value needs nothing */
    if (owner == disco__rt.myid)
        return disco__rref_add_local(r, to, 1);
    disco_value args[4] = {disco_i64(r->whence), disco_i64((int64_t)r->id),
                           disco_i64(r->kind), disco_i64(to)};
    return disco_remotecall_fetch(ref_add, owner, args, 4, NULL);
}

int disco__rref_grant(int to, const disco_value *v)
{
    if (v->type == DISCO_REF)
        return grant_one(to, &v->ref);
    if (v->type != DISCO_LIST)
        return 0;
    for (size_t i = 0; i < v->list.n; i++) {
        const disco_value *item = &v->list.items[i];
        int rc = item->type == DISCO_REF    ? grant_one(to, &item->ref)
                 : item->type == DISCO_LIST ? disco__rref_grant(to, item)
                                            : 0; /* most items: no call */
        if (rc)
            return rc;
    }
    return 0;
}

int disco_refs_stats(disco_ref_stats *s)
{
    if (!s)
        return disco_error_set(DISCO_EINVAL, "disco_refs_stats: NULL");
    *s = (disco_ref_stats){0};
    pthread_mutex_lock(&T.lock);
    for (size_t b = 0; b < BUCKETS; b++)
        for (disco__rref *e = T.bucket[b]; e; e = e->next) {
            if (!is_owner(e)) {
                s->held += e->holds > 0 || e->future;
            } else if (e->backing || e->nclients) {
                s->owned++;
                s->clients += e->nclients;
            }
        }
    pthread_mutex_unlock(&T.lock);
    return 0;
}

/* ---- the value layer's hooks ---------------------------------------------- */

static void hook_hold(const disco_ref *r)
{
    if (!disco__rref_hold(r))
        disco_error_clear(); /* out of memory: the copy does not keep it */
}

static void hook_drop(const disco_ref *r)
{
    after a = {0};
    pthread_mutex_lock(&T.lock);
    disco__rref *e = *find_locked(r);
    if (e) {
        e->holds--;
        settle_locked(e, &a);
    }
    pthread_mutex_unlock(&T.lock);
    finish(&a);
}

static void hook_received(const disco_ref *r, disco_value *carried)
{
    after a = {0};
    pthread_mutex_lock(&T.lock);
    disco__rref *e = *find_locked(r);
    if (!e)
        e = create_locked(r);
    if (e) {
        e->holds++;
        if (carried && !e->has_value) {
            e->value = *carried;
            e->has_value = true;
            *carried = disco_nil();
        } else if (!carried && !is_owner(e)) {
            e->grants++; /* the sender added us at the owner */
        }
        settle_locked(e, &a);
    }
    pthread_mutex_unlock(&T.lock);
    finish(&a);
    if (carried)
        disco_value_free(carried);
}

static const disco_value *hook_carried(const disco_ref *r)
{
    const disco_value *v = NULL;
    pthread_mutex_lock(&T.lock);
    disco__rref *e = *find_locked(r);
    if (e && e->has_value)
        v = &e->value;
    else if (e && e->future)
        v = disco__future_ready_value(e->future);
    pthread_mutex_unlock(&T.lock);
    return v;
}

static const disco__ref_hooks hooks = {
    .hold = hook_hold,
    .drop = hook_drop,
    .received = hook_received,
    .carried = hook_carried,
    .grant = disco__rref_grant,
};

/* Names outside C's identifiers: they cannot clash with user functions. */
__attribute__((constructor)) static void register_refs(void)
{
    disco__refs = &hooks;
    disco_register("disco.ref_add", ref_add);
    disco_register("disco.ref_del", ref_del);
    disco_register("disco.ref_forget", ref_forget);
    disco__peer_observe(on_peer);
}
