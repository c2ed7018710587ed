/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared-memory transport: progress.
 *
 * Each call scans every connection (a snapshot of the list, refreshed when
 * it changed): reads its ring (at most one ring's worth per call, so that a
 * busy peer cannot starve the others), copies queued bytes into its own
 * ring, and runs the callbacks it owes. The epoll set (listener, eventfd,
 * sockets) is looked at every SHM_EPOLL_EVERY polling calls, after a
 * wait_arm, and whenever the call may block. Blocking: raise the waiter
 * flags, look at the rings again, then epoll_wait (shm.h: wake-ups).
 */
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base/compiler.h"
#include "transports/shm/shm.h"

int shm_conn_read_locked(shm_conn *c, size_t budget)
{
    shm_transport *tp = c->tp;
    int n = 0;
    size_t got = 0;
    while (c->state == SHM_OPEN && got < budget) {
        const uint8_t *p;
        size_t len = shm_ring_peek(&c->seg, &p);
        if (len == 0)
            break;
        if (len == SHM_RING_CORRUPT) {
            shm_conn_fail_locked(c, DISCO_EPROTO,
                                 "shm: the segment shared with %s is corrupt",
                                 c->peer);
            break;
        }
        shm_conn_cb_enter_locked(c);
        tp->cb.on_recv(tp->ctx, shm_dc(c), p, len);
        shm_conn_cb_leave_locked(c);
        n++;
        got += len;
        if (c->state == SHM_CLOSED)
            break; /* still mapped (a zombie) but nobody's business now */
        if (shm_ring_release(&c->seg, len))
            shm_conn_wake_peer_locked(c);
    }
    return n;
}

/* Takes a new snapshot of the connections if the list changed. */
static int refresh_scan(shm_transport *tp)
{
    /* seq_cst: pairs with unlink_conn's bump and its look at in_progress
     * (shm_conn.c), so that a connection it frees is out of our snapshot. */
    if (atomic_load(&tp->gen) == tp->scan_gen)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&tp->lock);
    if (tp->scan_gen != tp->gen) {
        size_t n = 0;
        for (shm_conn *c = tp->conns; c; c = c->next)
            n++;
        if (n > tp->scan_cap) {
            shm_conn **a = realloc(tp->scan, n * 2 * sizeof(*a));
            if (!a) { /* an empty snapshot: never a stale one */
                tp->nscan = 0;
                rc = disco_error_set(DISCO_ENOMEM, "shm: out of memory in progress");
                goto out;
            }
            tp->scan = a;
            tp->scan_cap = n * 2;
        }
        tp->nscan = 0;
        for (shm_conn *c = tp->conns; c; c = c->next)
            tp->scan[tp->nscan++] = c;
        tp->scan_gen = tp->gen;
    }
out:
    pthread_mutex_unlock(&tp->lock);
    return rc;
}

/* The connection an unlocked read on this thread is in on_recv for. */
static DISCO__TLS const shm_conn *reading_here;

bool shm_conn_reading_here(const shm_conn *c)
{
    return reading_here == c;
}

/*
 * Reads c's ring with no lock: c's open ring has bytes and nothing else
 * asked progress to look at c under mu (no kick), the case of every
 * message on a busy connection. The mutex cost 4 locked operations and
 * about 170 instructions per message (lock, unlocked around on_recv,
 * locked again, unlocked); this costs 2 seq_cst stores. Returns the
 * number of on_recv calls, or -1 when c must be looked at under mu.
 */
static int read_unlocked(shm_conn *c)
{
    shm_transport *tp = c->tp;
    atomic_store(&c->reading, true); /* seq_cst: see shm.h */
    if (atomic_load(&c->closing)) {
        atomic_store(&c->reading, false);
        return -1; /* conn_close runs: under mu, c is CLOSED */
    }
#ifdef DISCO_TSAN
    /* TSan sees one process: the release/acquire chain through the peer
     * (our thread's send publishes, the peer reads and answers, we read)
     * is invisible to it. The mutex every send takes stands in for it,
     * as when progress read under that mutex. */
    pthread_mutex_lock(&c->mu);
    pthread_mutex_unlock(&c->mu);
#endif
    int n = 0;
    bool corrupt = false, wake = false;
    size_t got = 0;
    reading_here = c;
    while (got < c->seg.size) {
        const uint8_t *p;
        size_t len = shm_ring_peek(&c->seg, &p);
        if (len == 0 || (corrupt = len == SHM_RING_CORRUPT))
            break;
        tp->cb.on_recv(tp->ctx, shm_dc(c), p, len);
        n++;
        got += len;
        /* Closed by on_recv (by another thread it waits for us): what is
         * left in the ring is nobody's business now. */
        if (atomic_load_explicit(&c->closing, memory_order_relaxed))
            break;
        wake |= shm_ring_release(&c->seg, len);
    }
    reading_here = NULL;
    atomic_store(&c->reading, false);
    if (atomic_load(&c->close_waiters)) { /* under mu: not before it waits */
        pthread_mutex_lock(&c->mu);
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    if (corrupt) {
        pthread_mutex_lock(&c->mu);
        if (c->state == SHM_OPEN)
            shm_conn_fail_locked(c, DISCO_EPROTO,
                                 "shm: the segment shared with %s is corrupt", c->peer);
        shm_conn_unlock(c); /* its callbacks are owed now */
    } else if (wake) { /* the producer sleeps, waiting for room */
        pthread_mutex_lock(&c->mu);
        if (c->state == SHM_OPEN)
            shm_conn_wake_peer_locked(c);
        pthread_mutex_unlock(&c->mu);
    }
    return n;
}

static int service(shm_conn *c)
{
    /* Idle: nothing in the ring, nothing left by others (kick). The ring
     * is read without mu: only progress moves its read count, and the
     * segment stays mapped until c is freed, after progress. */
    if (!atomic_load_explicit(&c->kick, memory_order_acquire)) {
        if (!(c->ring_open && shm_ring_readable(&c->seg)))
            return 0;
        int n = read_unlocked(c);
        if (n >= 0)
            return n;
    }
    int n = 0;
    pthread_mutex_lock(&c->mu);
    atomic_store_explicit(&c->kick, false, memory_order_relaxed);
    /* A connector looks for the reply on every call until it has it, rather
     * than every SHM_EPOLL_EVERY calls: one recv per call, only then. */
    if (c->state == SHM_OPEN && c->peer_evfd < 0)
        n += shm_conn_try_reply_locked(c);
    if (c->state == SHM_OPEN) {
        n += shm_conn_read_locked(c, c->seg.size);
        if (c->state == SHM_OPEN && c->head)
            n += shm_conn_write_queue_locked(c);
    }
    bool owes = c->state != SHM_CLOSED && shm_conn_owes_locked(c);
    /* What only a look under mu finds: a reply awaited, bytes queued for
     * room, callbacks owed (deliver may leave some for the next call). */
    c->ring_open = c->state == SHM_OPEN;
    if ((c->ring_open && (c->peer_evfd < 0 || c->head)) || owes)
        atomic_store_explicit(&c->kick, true, memory_order_relaxed);
    pthread_mutex_unlock(&c->mu);
    return owes ? n + shm_conn_deliver(c) : n;
}

/* Services every connection; c may be closed meanwhile but stays valid
 * (freed only after progress). */
static int scan(shm_transport *tp, int *rc)
{
    if ((*rc = refresh_scan(tp)) != 0)
        return 0;
    int n = 0;
    for (size_t i = 0; i < tp->nscan; i++)
        n += service(tp->scan[i]);
    return n;
}

static int poll_events(shm_transport *tp, int timeout_ms, int *rc)
{
    struct epoll_event evs[SHM_EVENTS];
    int nev = epoll_wait(tp->epfd, evs, SHM_EVENTS, timeout_ms);
    if (nev < 0 && errno != EINTR)
        *rc = shm_fail_errno(errno, "epoll_wait");
    int n = 0;
    for (int i = 0; i < nev; i++) {
        void *p = evs[i].data.ptr;
        if (p == &tp->lfd) {
            n += shm_accept_all(tp);
        } else if (p == &tp->evfd) {
            uint64_t v;
            (void)!read(tp->evfd, &v, sizeof(v));
            n++; /* a wake-up made before this call is not lost */
        } else {
            n += shm_conn_sock_event(p) + 1; /* the event itself counts */
        }
    }
    return n;
}

/* Arms one connection (its mu taken): true when it has work already. */
static bool arm_conn(shm_conn *c)
{
    pthread_mutex_lock(&c->mu);
    bool pending = false;
    if (c->state == SHM_OPEN) {
        pending |= shm_ring_arm_rx(&c->seg);
        if (c->head)
            pending |= shm_ring_arm_tx(&c->seg);
    }
    pending |= c->state != SHM_CLOSED && shm_conn_owes_locked(c);
    pthread_mutex_unlock(&c->mu);
    return pending;
}

/* Raises the waiter flags of every connection before sleeping; true when
 * something is pending already (do not sleep). */
static bool arm(shm_transport *tp)
{
    atomic_store(&tp->sleeping, true);
    tp->armed = true;
    if (refresh_scan(tp) != 0)
        return true; /* cannot arm what we cannot see: do not sleep */
    bool pending = false;
    for (size_t i = 0; i < tp->nscan; i++)
        pending |= arm_conn(tp->scan[i]);
    return pending;
}

/* Lowers what arm raised, on a fresh snapshot: a connection closed
 * since may be freed (after a wait_arm), one added since may have armed
 * itself. */
static void disarm(shm_transport *tp)
{
    atomic_store(&tp->sleeping, false);
    tp->armed = false;
    (void)refresh_scan(tp); /* on failure the flags stay up: extra wake-ups */
    for (size_t i = 0; i < tp->nscan; i++) {
        shm_conn *c = tp->scan[i];
        pthread_mutex_lock(&c->mu);
        if (c->seg.hdr && c->state != SHM_CLOSED)
            shm_ring_disarm(&c->seg);
        pthread_mutex_unlock(&c->mu);
    }
}

/* No lock on this path, taken on every poll: a connection unlinked while
 * progress runs is either seen running by unlink_conn (and left to us as
 * a zombie) or out of the snapshot refresh_scan takes after this store
 * (both sides seq_cst: a store then a load each, as in Dekker's). */
static int enter(shm_transport *tp)
{
    if (atomic_exchange(&tp->in_progress, true))
        return disco_error_set(DISCO_EBUSY,
                               "shm: progress called while it runs (nested or "
                               "from two threads)");
    return 0;
}

void shm_free_zombies(shm_transport *tp)
{
    if (!atomic_load_explicit(&tp->has_zombies, memory_order_relaxed))
        return;
    pthread_mutex_lock(&tp->lock);
    shm_conn *z = tp->zombies;
    tp->zombies = NULL;
    atomic_store_explicit(&tp->has_zombies, false, memory_order_relaxed);
    pthread_mutex_unlock(&tp->lock);
    while (z) {
        shm_conn *next = z->znext;
        shm_conn_free(z);
        z = next;
    }
}

static void leave(shm_transport *tp)
{
    /* Release: what this call did happens before the next one's enter. */
    atomic_store_explicit(&tp->in_progress, false, memory_order_release);
    shm_free_zombies(tp);
}

int shm_progress(disco_transport *dtp, int timeout_ms)
{
    if (!dtp)
        return disco_error_set(DISCO_EINVAL, "shm: progress: NULL transport");
    shm_transport *tp = shm_tp(dtp);
    int rc = enter(tp);
    if (rc)
        return rc;
    if (atomic_load_explicit(&tp->lazy_done, memory_order_relaxed))
        atomic_store(&tp->lazy_done, 0); /* this call delivers them */
    bool look = tp->armed || timeout_ms != 0 || ++tp->polls % SHM_EPOLL_EVERY == 0;
    if (tp->armed)
        disarm(tp);
    int n = look ? poll_events(tp, 0, &rc) : 0;
    n += scan(tp, &rc);
    if (n == 0 && rc == 0 && timeout_ms != 0) {
        if (!arm(tp))
            n += poll_events(tp, timeout_ms, &rc);
        disarm(tp);
        n += scan(tp, &rc);
    }
    leave(tp);
    return rc < 0 ? rc : n;
}

/* Runs as progress does (enter/leave): connections closed meanwhile stay
 * allocated while it walks the snapshot. */
int shm_wait_arm(disco_transport *dtp)
{
    shm_transport *tp = shm_tp(dtp);
    int rc = enter(tp);
    if (rc)
        return rc;
    bool pending = arm(tp);
    leave(tp);
    return pending ? 1 : 0;
}
