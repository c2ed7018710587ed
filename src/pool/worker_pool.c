/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * WorkerPool: members, the idle queue, the default pool, and how pools
 * follow the cluster (a dead or removed worker leaves every pool).
 */
#include <stdlib.h>

#include "core/runtime.h"
#include "pool/pool.h"

/* Every live pool, so that the peer observer can update them. */
static struct {
    pthread_mutex_t lock;
    disco_pool *head;
    disco_pool *dflt;
    _Atomic uint64_t next_id;
} P = {.lock = PTHREAD_MUTEX_INITIALIZER};

bool disco__pool_alive(int pid)
{
    if (pid == disco__rt.myid)
        return true;
    if (pid <= 0 || pid >= DISCO__MAX_PROCS)
        return false;
    disco__peer *p = atomic_load_explicit(&disco__rt.peers[pid], memory_order_acquire);
    return p && atomic_load_explicit(&p->state, memory_order_acquire) == PEER_READY;
}

disco__member *disco__pool_member_locked(disco_pool *pool, int pid)
{
    for (size_t i = 0; i < pool->n; i++)
        if (pool->m[i].pid == pid)
            return &pool->m[i];
    return NULL;
}

/* Makes pid an active, idle member (pool lock held). */
static int join_locked(disco_pool *pool, int pid)
{
    disco__member *m = disco__pool_member_locked(pool, pid);
    if (!m) {
        if (pool->n == pool->cap) {
            size_t cap = pool->cap ? 2 * pool->cap : 8;
            disco__member *g = realloc(pool->m, cap * sizeof(*g));
            if (!g)
                return disco_error_set(DISCO_ENOMEM, "no memory for a pool member");
            pool->m = g;
            pool->cap = cap;
        }
        m = &pool->m[pool->n++];
        *m = (disco__member){.pid = pid};
    }
    if (!m->active) {
        m->active = true;
        pool->nactive++;
    }
    if (!m->queued) {
        m->queued = true;
        disco_put(pool->idle, &pid); /* unbounded: never waits */
    }
    return 0;
}

/* pid leaves the pool (pool lock held). */
static void leave_locked(disco_pool *pool, int pid)
{
    disco__member *m = disco__pool_member_locked(pool, pid);
    if (!m || !m->active)
        return;
    m->active = false;
    m->ncached = 0; /* its caches died with it */
    if (--pool->nactive == 0) {
        int wake = 0; /* a taker waiting for a member must see there is none */
        disco_put(pool->idle, &wake);
    }
}

/* The peer observer (dispatch.c): new workers join the default pool,
 * gone ones leave every pool. */
static void on_peer(int pid, bool up)
{
    pthread_mutex_lock(&P.lock);
    for (disco_pool *pool = P.head; pool; pool = pool->next) {
        if (up && !(pool->is_default && pid != 1))
            continue;
        pthread_mutex_lock(&pool->lock);
        if (up)
            join_locked(pool, pid);
        else
            leave_locked(pool, pid);
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&P.lock);
}

static disco_pool *pool_new(const int *pids, int n, bool caching, bool is_default)
{
    if (n < 0 || (n > 0 && !pids)) {
        disco_error_set(DISCO_EINVAL, "pool: %d pids%s", n, pids ? "" : " and no array");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!disco__pool_alive(pids[i])) {
            disco_error_set(DISCO_ENOPROC, "pool: process %d is not a live process", pids[i]);
            return NULL;
        }
    disco_pool *pool = calloc(1, sizeof(*pool));
    if (!pool || !(pool->idle = disco_channel_new(sizeof(int), DISCO_CHANNEL_UNBOUNDED))) {
        free(pool);
        disco_error_set(DISCO_ENOMEM, "no memory for a pool");
        return NULL;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pool->caching = caching;
    pool->is_default = is_default;
    pool->id = atomic_fetch_add(&P.next_id, 1) + 1;
    for (int i = 0; i < n; i++)
        if (join_locked(pool, pids[i]) != 0) {
            disco_pool_free(pool);
            return NULL;
        }
    disco__peer_observe(on_peer); /* cannot fail: two users of four slots */
    pthread_mutex_lock(&P.lock);
    pool->next = P.head;
    P.head = pool;
    pthread_mutex_unlock(&P.lock);
    return pool;
}

disco_pool *disco_worker_pool_new(const int *pids, int n)
{
    return pool_new(pids, n, false, false);
}

disco_pool *disco_caching_pool_new(const int *pids, int n)
{
    return pool_new(pids, n, true, false);
}

disco_pool *disco_default_worker_pool(void)
{
    static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&once);
    if (!P.dflt && (P.dflt = pool_new(NULL, 0, false, true))) {
        /* Registered first, then filled: a worker that joins meanwhile is
         * pushed twice, which join_locked makes harmless. */
        int pids[DISCO__MAX_PROCS];
        int n = disco_workers(pids, DISCO__MAX_PROCS);
        pthread_mutex_lock(&P.dflt->lock);
        for (int i = 0; i < n; i++)
            if (pids[i] != 1 && disco__pool_alive(pids[i]))
                join_locked(P.dflt, pids[i]);
        pthread_mutex_unlock(&P.dflt->lock);
    }
    disco_pool *pool = P.dflt;
    pthread_mutex_unlock(&once);
    return pool;
}

void disco_pool_free(disco_pool *pool)
{
    if (!pool || pool->is_default)
        return;
    /* Calls that have finished may still have their worker on the way
     * back (a task hands it back): wait for those hand-backs. */
    while (atomic_load(&pool->givebacks))
        disco_sleep(0.0005);
    if (pool->caching)
        disco_clear(pool);
    pthread_mutex_lock(&P.lock);
    for (disco_pool **p = &P.head; *p; p = &(*p)->next)
        if (*p == pool) {
            *p = pool->next;
            break;
        }
    pthread_mutex_unlock(&P.lock);
    for (size_t i = 0; i < pool->n; i++)
        free(pool->m[i].cached);
    free(pool->m);
    disco_channel_free(pool->idle);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

static disco_pool *resolve(disco_pool *pool)
{
    return pool ? pool : disco_default_worker_pool();
}

int disco_pool_push(disco_pool *pool, int pid)
{
    if (!(pool = resolve(pool)))
        return disco_error_code(disco_last_error());
    if (!disco__pool_alive(pid))
        return disco_error_set(DISCO_ENOPROC, "pool: process %d is not a live process", pid);
    pthread_mutex_lock(&pool->lock);
    int rc = join_locked(pool, pid);
    pthread_mutex_unlock(&pool->lock);
    return rc;
}

int disco_pool_take(disco_pool *pool)
{
    if (!(pool = resolve(pool)))
        return disco_error_code(disco_last_error());
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        int active = pool->nactive;
        pthread_mutex_unlock(&pool->lock);
        if (active == 0) {
            if (pool->is_default)
                return disco__rt.myid; /* Julia's default pool falls back to pid 1 */
            return disco_error_set(DISCO_ENOPROC, "no active worker available in pool");
        }
        int pid, rc = disco_take(pool->idle, &pid);
        if (rc)
            return rc;
        pthread_mutex_lock(&pool->lock);
        if (pid == 0) { /* membership changed: look again */
            if (pool->nactive == 0)
                disco_put(pool->idle, &pid); /* and wake the next waiter */
            pthread_mutex_unlock(&pool->lock);
            continue;
        }
        disco__member *m = disco__pool_member_locked(pool, pid);
        bool ok = m && m->active && m->queued;
        if (ok)
            m->queued = false;
        if (ok && !disco__pool_alive(pid)) { /* left before the observer saw it */
            leave_locked(pool, pid);
            ok = false;
        }
        pthread_mutex_unlock(&pool->lock);
        if (ok)
            return pid;
    }
}

int disco_pool_put(disco_pool *pool, int pid)
{
    if (!(pool = resolve(pool)))
        return disco_error_code(disco_last_error());
    pthread_mutex_lock(&pool->lock);
    disco__member *m = disco__pool_member_locked(pool, pid);
    if (m && m->active && !m->queued) {
        m->queued = true;
        disco_put(pool->idle, &pid);
    }
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

int disco_pool_nworkers(disco_pool *pool)
{
    if (!(pool = resolve(pool)))
        return disco_error_code(disco_last_error());
    pthread_mutex_lock(&pool->lock);
    int n = pool->nactive;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

int disco_pool_workers(disco_pool *pool, int *pids, int max)
{
    if (!(pool = resolve(pool)))
        return disco_error_code(disco_last_error());
    pthread_mutex_lock(&pool->lock);
    int k = 0;
    for (size_t i = 0; i < pool->n; i++) {
        if (!pool->m[i].active)
            continue;
        /* insertion into pids[0..min(k,max)), ascending */
        int j = k < max ? k : max;
        while (j > 0 && pids[j - 1] > pool->m[i].pid) {
            if (j < max)
                pids[j] = pids[j - 1];
            j--;
        }
        if (j < max)
            pids[j] = pool->m[i].pid;
        k++;
    }
    pthread_mutex_unlock(&pool->lock);
    return k;
}

bool disco_pool_isready(disco_pool *pool)
{
    pool = resolve(pool);
    return pool && disco_isready(pool->idle);
}

int disco_pool_stats_of(disco_pool *pool, int pid, disco_pool_stats *stats)
{
    if (!(pool = resolve(pool)))
        return disco_error_code(disco_last_error());
    if (!stats)
        return disco_error_set(DISCO_EINVAL, "disco_pool_stats_of: NULL stats");
    pthread_mutex_lock(&pool->lock);
    disco__member *m = disco__pool_member_locked(pool, pid);
    if (m)
        *stats = m->stats;
    pthread_mutex_unlock(&pool->lock);
    return m ? 0 : disco_error_set(DISCO_ENOPROC, "process %d never was in the pool", pid);
}
