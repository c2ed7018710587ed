/* SPDX-License-Identifier: BSD-3-Clause */
/* Runtime state, start-up, the process queries, sending frames. */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/compiler.h"
#include "base/env.h"
#include "base/error_internal.h"
#include "core/rdv.h"
#include "core/runtime.h"
#include "wire/ref_hooks.h"

disco__runtime disco__rt = {.myid = 1, .next_pid = 2, .lock = PTHREAD_MUTEX_INITIALIZER};

static int progress_poll(void *arg, int timeout_ms)
{
    disco__runtime *r = arg;
    return disco__xports_progress(&r->xports, timeout_ms);
}

static void progress_interrupt(void *arg)
{
    disco__runtime *r = arg;
    disco__xports_interrupt(&r->xports);
}

/* The boot of this machine (processes that share it may share memory), or
 * the host name when the kernel does not say. */
static void read_node(disco__runtime *r)
{
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    char id[sizeof(r->node)] = "";
    if (f) {
        if (!fgets(id, sizeof(id), f))
            id[0] = '\0';
        fclose(f);
    }
    id[strcspn(id, "\n")] = '\0';
    snprintf(r->node, sizeof(r->node), "%s", id[0] ? id : r->self.host);
}

static const disco_transport_callbacks callbacks = {
    .on_accept = disco__on_accept,
    .on_recv = disco__on_recv,
    .on_close = disco__on_close,
    .on_sent = disco__on_sent,
    .on_read = disco__on_read,
};

/* DISCO_MAX_FRAME: the payload limit of one message, the same in every
 * process of a cluster (workers inherit the master's environment). */
static uint32_t max_payload(void)
{
    long v = disco__env_long("DISCO_MAX_FRAME", DISCO__FRAME_MAX_PAYLOAD_DEFAULT);
    if (v < 4096 || v > (long)UINT32_MAX) {
        fprintf(stderr, "disco: ignoring DISCO_MAX_FRAME=%ld: not in [4096, %u]\n", v,
                UINT32_MAX);
        v = DISCO__FRAME_MAX_PAYLOAD_DEFAULT;
    }
    return (uint32_t)v;
}

int disco__runtime_start(void)
{
    disco__runtime *r = &disco__rt;
    if (atomic_load_explicit(&r->up, memory_order_acquire))
        return 0;
    pthread_mutex_lock(&r->lock);
    int rc = 0;
    if (atomic_load(&r->up))
        goto out;
    if ((rc = disco__sched_ensure()))
        goto out;
    r->max_payload = max_payload();
    r->eager_max_env = disco__env_long("DISCO_EAGER_MAX", -1);
    if ((rc = disco__xports_start(&r->xports, &callbacks)))
        goto out;
    r->ops = r->xports.x[0].ops;
    r->tp = r->xports.x[0].tp;
    size_t alen = strnlen(r->xports.x[0].address, sizeof(r->address) - 1);
    memcpy(r->address, r->xports.x[0].address, alen); /* TCP's fits */
    r->address[alen] = '\0';
    r->self.pid = r->myid;
    RAND_bytes(r->self.uuid, sizeof(r->self.uuid));
    if (gethostname(r->self.host, sizeof(r->self.host)) != 0)
        strcpy(r->self.host, "localhost");
    r->self.host[sizeof(r->self.host) - 1] = '\0';
    read_node(r);
    memcpy(r->self.addr, r->address, sizeof(r->self.addr)); /* same size */
    sem_init(&r->master_gone, 0, 0);
    r->hook = (disco__progress_hook){progress_poll, progress_interrupt, r};
    disco__sched_set_progress(&r->hook);
    disco__batch_start();
    atomic_store_explicit(&r->up, true, memory_order_release);
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

disco__peer *disco__peer_new(int pid)
{
    disco__peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->pid = pid;
    atomic_init(&p->state, PEER_AUTH);
    pthread_rwlock_init(&p->conn_lock, NULL);
    disco_event_init(&p->settled, false);
    return p;
}

int disco__peer_send(disco__peer *p, const struct iovec *iov, int iovcnt, void *token,
                     bool more)
{
    pthread_rwlock_rdlock(&p->conn_lock);
    disco__link *l = p->fast;
    const disco_transport_ops *ops = l ? l->x->ops : disco__rt.ops;
    disco_conn *c = l ? l->conn : p->conn;
    more = more && ops->send_more;
    int rc = !c ? DISCO_ECLOSED
             : more ? ops->send_more(c, iov, iovcnt, token)
                    : ops->send(c, iov, iovcnt, token);
    pthread_rwlock_unlock(&p->conn_lock);
    if (rc == 0 && more)
        disco__batch_held(p);
    return rc;
}

bool disco__peer_copies(disco__peer *p)
{
    struct disco__xport *x = atomic_load_explicit(&p->fast_x, memory_order_relaxed);
    return x && x->ops->send_copy;
}

int disco__peer_send_copy(disco__peer *p, const struct iovec *iov, int iovcnt)
{
    pthread_rwlock_rdlock(&p->conn_lock);
    disco__link *l = p->fast;
    if (l && l->x->ops->send_copy) {
        int rc = l->x->ops->send_copy(l->conn, iov, iovcnt);
        pthread_rwlock_unlock(&p->conn_lock);
        return rc;
    }
    pthread_rwlock_unlock(&p->conn_lock);
    /* The link went away meanwhile: send a copy the usual way. */
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    uint8_t *copy = malloc(len ? len : 1); /* freed by on_sent */
    if (!copy)
        return disco_error_set(DISCO_ENOMEM, "no memory for a message");
    uint8_t *at = copy;
    for (int i = 0; i < iovcnt; i++) {
        memcpy(at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    struct iovec one = {copy, len};
    int rc = disco__peer_send(p, &one, 1, copy, false);
    if (rc)
        free(copy);
    return rc;
}

void disco__peer_flush(disco__peer *p)
{
    /* Both connections: a batch may have begun before the upgrade. */
    pthread_rwlock_rdlock(&p->conn_lock);
    disco__link *l = p->fast;
    if (l && l->x->ops->flush)
        l->x->ops->flush(l->conn);
    if (p->conn && disco__rt.ops->flush)
        disco__rt.ops->flush(p->conn);
    pthread_rwlock_unlock(&p->conn_lock);
}

void disco__peer_free_unpublished(disco__peer *p)
{
    disco__peer_close(p);
    disco__auth_fini(&p->auth);
    free(p->rbuf);
    disco_error_free(p->join_err);
    pthread_rwlock_destroy(&p->conn_lock);
    free(p);
}

void disco__peer_close(disco__peer *p)
{
    pthread_rwlock_wrlock(&p->conn_lock);
    disco_conn *c = p->conn;
    disco__link *l = p->fast;
    p->conn = NULL;
    p->fast = NULL;
    atomic_store_explicit(&p->fast_x, NULL, memory_order_relaxed);
    pthread_rwlock_unlock(&p->conn_lock);
    /* Outside the lock: conn_close waits for a running callback of the
     * connection, which may be sending to p. p is gone: the link says
     * nothing more to it (see conn_abandon). */
    if (l) {
        if (l->x->ops->conn_abandon)
            l->x->ops->conn_abandon(l->conn);
        else
            l->x->ops->conn_close(l->conn);
        free(l);
    }
    if (c)
        disco__rt.ops->conn_close(c);
}

disco__peer *disco__peer_ready(int pid)
{
    disco__peer *p = pid > 0 && pid < DISCO__MAX_PROCS
                         ? atomic_load_explicit(&disco__rt.peers[pid], memory_order_acquire)
                         : NULL;
    if (!p || atomic_load_explicit(&p->state, memory_order_acquire) == PEER_GONE) {
        if (p)
            disco_error_set(DISCO_EPROCEXIT, "worker %d has exited", pid);
        else
            disco_error_set(DISCO_ENOPROC, "no process %d is connected to process %d",
                            pid, disco__rt.myid);
        return NULL;
    }
    if (atomic_load_explicit(&p->state, memory_order_acquire) != PEER_READY) {
        disco_error_set(DISCO_ESTATE, "process %d is still joining", pid);
        return NULL;
    }
    return p;
}

/* Blocks of ids per thread: one locked add on the shared counter per
 * block, not per call. */
#define ID_BLOCK 64

static DISCO__TLS uint64_t next_id, end_id;

uint64_t disco__new_id(void)
{
    if (next_id == end_id) {
        next_id = atomic_fetch_add_explicit(&disco__rt.next_call_id, ID_BLOCK,
                                            memory_order_relaxed) + 1;
        end_id = next_id + ID_BLOCK;
    }
    return next_id++;
}

int disco__send_frame(disco__peer *p, disco__frame_header *h, const disco_value *v)
{
    return disco__send_frame_rdv(p, h, v, NULL);
}

/* v encoded behind room for a frame header, in a buffer of ours (one
 * allocation per message, freed by on_sent; large data of synchronous
 * calls goes by rendezvous instead: rdv.h). Small values, most messages,
 * are encoded at once into FRAME_GUESS bytes, below the smallest
 * DISCO_MAX_FRAME (max_payload); others are measured first. */
#define FRAME_GUESS 256

static int too_big(size_t size)
{
    return disco_error_set(DISCO_EMSGSIZE, "a message of %zu bytes is above the limit of %u "
                           "(DISCO_MAX_FRAME)", size, disco__rt.max_payload);
}

/* Encodes v behind room for a header: into room (HEADER + FRAME_GUESS
 * bytes) when given and v fits there, else into a malloc'd buffer. */
static int encode(disco__peer *p, const disco_value *v, disco__rdv_regs *regs,
                  uint8_t *room, uint8_t **out, size_t *size)
{
    disco__rdv_out rdv;
    if (regs)
        disco__rdv_policy(p, regs, &rdv);
    uint8_t *buf = room ? room : malloc(DISCO__FRAME_HEADER_SIZE + FRAME_GUESS);
    if (!buf)
        return disco_error_set(DISCO_ENOMEM, "no memory for a message");
    int rc = disco__value_try_encode_rdv(v, buf + DISCO__FRAME_HEADER_SIZE, FRAME_GUESS, size,
                                         regs ? &rdv : NULL);
    if (rc == DISCO__ENCODE_NO_ROOM) {
        if (buf != room)
            free(buf);
        buf = NULL;
        if (regs) { /* what the guess exposed is exposed again below */
            disco__rdv_release(regs);
            disco__rdv_policy(p, regs, &rdv);
        }
        size_t need = disco__value_encoded_size_rdv(v, regs ? &rdv : NULL);
        if (!need)
            return disco_error_code(disco_last_error());
        if (need > disco__rt.max_payload)
            return too_big(need);
        if (!(buf = malloc(DISCO__FRAME_HEADER_SIZE + need)))
            return disco_error_set(DISCO_ENOMEM, "no memory for a %zu-byte message", need);
        /* The size counted room for the longest keys: the real one follows. */
        rc = disco__value_encode_rdv(v, buf + DISCO__FRAME_HEADER_SIZE, need, size,
                                     regs ? &rdv : NULL);
    }
    if (rc) {
        if (buf != room)
            free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

int disco__send_frame_rdv(disco__peer *p, disco__frame_header *h, const disco_value *v,
                          disco__rdv_regs *regs)
{
    /* Where the data path copies what it sends (shared memory), small
     * frames are encoded here and copied once, with no buffer to allocate
     * and no completion to hear of. */
    uint8_t room[DISCO__FRAME_HEADER_SIZE + FRAME_GUESS];
    bool copies = disco__peer_copies(p);
    uint8_t *buf = NULL;
    size_t size = 0;
    int rc = v ? encode(p, v, regs, copies ? room : NULL, &buf, &size)
             : (buf = copies ? room : malloc(DISCO__FRAME_HEADER_SIZE)) ? 0
             : disco_error_set(DISCO_ENOMEM, "no memory for a message");
    if (rc)
        return rc;
    /* References in v are granted to p before they can reach it (src/rref;
     * a walk over v's lists, which costs nothing next to the encoding). */
    if (v && disco__refs && (rc = disco__refs->grant(p->pid, v)) != 0)
        goto out;
    h->payload_len = (uint32_t)size;
    if (disco__batch_open())
        h->flags |= DISCO__FRAME_BATCH;
    if ((rc = disco__frame_header_encode(h, buf)) != 0)
        goto out;
    /* Streamed rendezvous data goes right behind the frame, in the same
     * send (rdv.h); it is borrowed until on_sent, so the frame is too. A
     * frame too big for room is already ours on the heap: lent, it is
     * never copied twice (a full ring would queue a copy of a copy). */
    size_t len = DISCO__FRAME_HEADER_SIZE + size, ntrail = regs ? regs->ntrail : 0;
    bool copy = copies && ntrail == 0 && buf == room;
    if (!copy && buf == room) {
        if (!(buf = malloc(len))) {
            rc = disco_error_set(DISCO_ENOMEM, "no memory for a message");
            goto out;
        }
        memcpy(buf, room, len);
    }
    struct iovec one[8], *iov = ntrail < 8 ? one : malloc((ntrail + 1) * sizeof(*iov));
    if (!iov) {
        rc = disco_error_set(DISCO_ENOMEM, "no memory for a message");
        goto out;
    }
    iov[0] = (struct iovec){buf, len};
    for (size_t i = 0; i < ntrail; i++)
        iov[i + 1] = regs->trail[i];
    rc = copy ? disco__peer_send_copy(p, iov, 1)
              : disco__peer_send(p, iov, (int)(ntrail + 1), buf, h->flags & DISCO__FRAME_BATCH);
    if (iov != one)
        free(iov);
    if (rc == DISCO_ECLOSED)
        rc = disco_error_set(rc, "process %d: connection closed", p->pid);
    if (rc == 0 && !copy)
        return 0; /* buf is the transport's until on_sent */
out:
    if (buf != room)
        free(buf);
    return rc;
}

int disco_myid(void) { return disco__rt.myid; }

/* This process and its ready peers, in pid order: the count, and the
 * first max pids in pids. */
static int list_procs(int *pids, int max)
{
    int n = 0;
    for (int pid = 1; pid < DISCO__MAX_PROCS; pid++) {
        disco__peer *p = atomic_load_explicit(&disco__rt.peers[pid], memory_order_acquire);
        int state = p ? atomic_load_explicit(&p->state, memory_order_acquire) : -1;
        /* A worker also counts the workers it knows of but has not yet
         * connected to (lazy all-to-all), as Julia's procs() does. */
        bool here = pid == disco__rt.myid || state == PEER_READY ||
                    (state != PEER_GONE &&
                     atomic_load_explicit(&disco__rt.known[pid], memory_order_acquire));
        if (!here)
            continue;
        if (n < max)
            pids[n] = pid;
        n++;
    }
    return n;
}

int disco_nprocs(void) { return list_procs(NULL, 0); }

/* The host a known process runs on, or NULL. */
static const char *host_of(int pid)
{
    if (pid == disco__rt.myid)
        return disco__rt.self.host;
    if (pid <= 0 || pid >= DISCO__MAX_PROCS)
        return NULL;
    disco__peer *p = atomic_load_explicit(&disco__rt.peers[pid], memory_order_acquire);
    if (p && atomic_load_explicit(&p->state, memory_order_acquire) == PEER_READY)
        return p->host;
    disco__known *k = atomic_load_explicit(&disco__rt.known[pid], memory_order_acquire);
    return k && !(p && atomic_load_explicit(&p->state, memory_order_acquire) == PEER_GONE)
               ? k->host : NULL;
}

int disco_procs_on_node(int pid, int *pids, int max)
{
    const char *host = host_of(pid);
    if (!host)
        return disco_error_set(DISCO_ENOPROC, "no process %d is known to process %d",
                               pid, disco__rt.myid);
    int all[DISCO__MAX_PROCS];
    int n = list_procs(all, DISCO__MAX_PROCS), k = 0;
    for (int i = 0; i < n; i++) {
        const char *h = host_of(all[i]);
        if (h && !strcmp(h, host)) {
            if (k < max)
                pids[k] = all[i];
            k++;
        }
    }
    return k;
}

int disco_procs(int *pids, int max) { return list_procs(pids, max); }

int disco_connections(int *pids, int max)
{
    int n = 0;
    for (int pid = 1; pid < DISCO__MAX_PROCS; pid++) {
        disco__peer *p = atomic_load_explicit(&disco__rt.peers[pid], memory_order_acquire);
        if (!p || atomic_load_explicit(&p->state, memory_order_acquire) != PEER_READY)
            continue;
        if (n < max)
            pids[n] = pid;
        n++;
    }
    return n;
}

int disco_transport_info(int pid, char *buf, size_t len)
{
    if (!buf)
        return disco_error_set(DISCO_EINVAL, "disco_transport_info: NULL buffer");
    const char *name = "self";
    disco__peer *p = NULL;
    if (pid != disco__rt.myid) {
        if (!(p = disco__peer_ready(pid)))
            return disco_error_code(disco_last_error());
        pthread_rwlock_rdlock(&p->conn_lock);
        name = p->fast ? p->fast->x->scheme : "tcp";
    }
    int n = snprintf(buf, len, "%s", name);
    if (p)
        pthread_rwlock_unlock(&p->conn_lock);
    if (n < 0 || (size_t)n >= len)
        return disco_error_set(DISCO_EINVAL, "disco_transport_info: a buffer of %zu bytes "
                                             "is too small", len);
    return 0;
}

int disco_nworkers(void)
{
    int n = list_procs(NULL, 0);
    return n > 1 ? n - 1 : 1; /* Julia: pid 1 alone counts as the only worker */
}

int disco_workers(int *pids, int max)
{
    int all[DISCO__MAX_PROCS];
    int n = list_procs(all, DISCO__MAX_PROCS);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (all[i] != 1 || n == 1) {
            if (k < max)
                pids[k] = all[i];
            k++;
        }
    return k;
}
