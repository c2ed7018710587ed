/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The registration cache: registrations per transport over the regions of
 * region.h, found by binary search, kept while unused in LRU order up to
 * DISCO_MEM_CACHE_MAX registered bytes, and invalidated when their memory
 * goes away.
 *
 * Lookup. disco__mem_get(x, ptr, len) looks for the region containing
 * [ptr, ptr + len). Inside a disco_mem_alloc block or a disco_mem_register
 * region, it uses (or makes, once) the region's registration for x; those
 * are never evicted. Otherwise the cache: a cache region that contains the
 * range and has x's registration is a hit; a miss registers the range,
 * merged with the cache regions it overlaps (which are replaced), so cache
 * regions stay disjoint. A range straddling a block or region and something
 * else gets a registration of its own, dropped at its put. Registering
 * happens without the lock (pinning may take long); the plan is made under
 * the lock and redone after it, and a registration that no longer fits the
 * plan is dropped.
 *
 * References. Every registration counts its holders. One nobody holds may
 * be dropped: evicted (cache, least recently used first, when the cache is
 * over its bound), invalidated, or with its block or region. One that is
 * held is only detached (out of the index, so nobody new finds it) and
 * deregistered at its last put: the holder's reads stay valid.
 *
 * Invalidation. A registration must never outlive the mapping it pins: on
 * real RDMA a stale one would silently name the old pages. intercept.c
 * wraps, in libdisco, the calls that release memory, and each first calls
 * disco__mem_invalidate on the range, then the real function (the next
 * definition, dlsym(RTLD_NEXT)):
 *   - munmap; mremap (the old range, and the target of MREMAP_FIXED);
 *     mmap with MAP_FIXED (it replaces what was mapped there);
 *     madvise with MADV_DONTNEED, MADV_FREE or MADV_REMOVE;
 *     brk and sbrk when they shrink the heap;
 *   - free and realloc (the block's usable size). glibc's allocator calls
 *     its internal __munmap, __mremap, __madvise and __sbrk, which no
 *     wrapper sees (checked on glibc 2.36), so freed heap memory is caught
 *     at free(): earlier than needed (a chunk freed to the heap stays
 *     mapped) but never late, and memory that glibc trims or unmaps later
 *     was freed first. Under ASan and TSan, which own malloc and cannot
 *     have free() wrapped (their own start-up calls it before they are
 *     ready), their allocator's free hook does the same.
 * Re-entry: while the lock is held, the thread's own frees and unmaps (the
 * layer's bookkeeping) skip invalidation; calls before anything was cached
 * cost one atomic load. Limits: memory released by a raw syscall(2), by
 * shmdt, by a malloc replacement that comes before libdisco in symbol
 * order (LD_PRELOAD), or by another process (a shared mapping truncated)
 * escapes it. The shm transport registers nothing real (CMA reads the
 * peer's current pages), so there a stale entry could not matter anyway.
 */
#include <stdlib.h>

#include "base/compiler.h"
#include "base/env.h"
#include "base/error_internal.h"
#include "mem/region.h"

disco__mem_state disco__mem = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .lru = {.lru_prev = &disco__mem.lru, .lru_next = &disco__mem.lru},
};

static DISCO__TLS bool locked_here;

void disco__mem_lock(void)
{
    pthread_mutex_lock(&disco__mem.lock);
    locked_here = true;
}

void disco__mem_unlock(void)
{
    locked_here = false;
    pthread_mutex_unlock(&disco__mem.lock);
}

bool disco__mem_locked_here(void)
{
    return locked_here;
}

void disco__mem_limits_locked(void)
{
    disco__mem_state *m = &disco__mem;
    if (m->limits_set)
        return;
    long c = disco__env_long("DISCO_MEM_CACHE_MAX", 1L << 30);
    long p = disco__env_long("DISCO_MEM_POOL_MAX", 256L << 20);
    m->cache_max = c > 0 ? (size_t)c : 0;
    m->pool_max = p > 0 ? (size_t)p : 0;
    m->limits_set = true;
}

void disco__mem_set_limits(size_t cache_max, size_t pool_max)
{
    disco__mem_lock();
    disco__mem.cache_max = cache_max;
    disco__mem.pool_max = pool_max;
    disco__mem.limits_set = true;
    disco__mem_unlock();
}

static void lru_remove(disco__mem_reg *r)
{
    r->lru_prev->lru_next = r->lru_next;
    r->lru_next->lru_prev = r->lru_prev;
}

static void lru_push(disco__mem_reg *r)
{
    disco__mem_reg *s = &disco__mem.lru;
    r->lru_prev = s;
    r->lru_next = s->lru_next;
    s->lru_next->lru_prev = r;
    s->lru_next = r;
}

/* Takes r out of its region (which must hold it) and of the cache's
 * accounts; buries it when nobody holds it. */
static void detach(disco__mem_reg *r, disco__mem_reg **grave)
{
    disco__mem_state *m = &disco__mem;
    disco__mem_region *rg = r->region;
    disco__mem_reg **pp = &rg->regs;
    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    r->region = NULL;
    r->next = NULL;
    if (rg->kind == MEM_CACHE) {
        m->cached_bytes -= r->len;
        m->entries--;
        if (!r->refs)
            lru_remove(r);
    }
    if (!r->refs) {
        r->next = *grave;
        *grave = r;
    }
    m->gen++;
}

void disco__mem_region_drop(size_t i, disco__mem_reg **grave)
{
    disco__mem_state *m = &disco__mem;
    disco__mem_region *rg = m->v[i];
    while (rg->regs)
        detach(rg->regs, grave);
    if (rg->pooled) {
        disco__mem_region **pp = &m->pool[rg->cls];
        while (*pp != rg)
            pp = &(*pp)->pool_next;
        *pp = rg->pool_next;
        m->pool_bytes -= rg->len;
    }
    disco__mem_index_remove(i);
    free(rg);
}

void disco__mem_reap(disco__mem_reg *grave)
{
    while (grave) {
        disco__mem_reg *r = grave;
        grave = r->next;
        if (r->mr)
            r->x->ops->mem_deregister(r->mr);
        free(r);
    }
}

/* Drops least recently used cache entries nobody holds until the cache is
 * within its bound. */
static void evict(disco__mem_reg **grave)
{
    disco__mem_state *m = &disco__mem;
    while (m->cached_bytes > m->cache_max && m->lru.lru_prev != &m->lru) {
        disco__mem_reg *r = m->lru.lru_prev;
        disco__mem_region *rg = r->region;
        detach(r, grave);
        m->evictions++;
        if (!rg->regs)
            disco__mem_region_drop(disco__mem_index_find(rg->addr), grave);
    }
}

static disco__mem_reg *reg_of(const disco__mem_region *rg, const disco__xport *x)
{
    for (disco__mem_reg *r = rg->regs; r; r = r->next)
        if (r->x == x)
            return r;
    return NULL;
}

/* What a get does, decided under the lock: use hit, or register
 * [a, a + len) and add it to region into (NULL: a new cache region,
 * replacing the cache regions it overlaps; own: a registration of its own). */
typedef struct plan {
    disco__mem_reg *hit;
    disco__mem_region *into;
    bool own;
    uintptr_t a;
    size_t len;
} plan;

static plan decide(const disco__xport *x, uintptr_t a, uintptr_t b)
{
    disco__mem_state *m = &disco__mem;
    size_t i = disco__mem_index_find(a);
    disco__mem_region *rg = i < m->n ? m->v[i] : NULL;
    if (rg && rg->addr <= a && b <= rg->addr + rg->len) {
        disco__mem_reg *r = reg_of(rg, x);
        return r ? (plan){.hit = r} : (plan){.into = rg, .a = rg->addr, .len = rg->len};
    }
    uintptr_t lo = a, hi = b;
    for (; i < m->n && m->v[i]->addr < b; i++) {
        if (m->v[i]->kind != MEM_CACHE)
            return (plan){.own = true, .a = a, .len = b - a};
        if (m->v[i]->addr < lo)
            lo = m->v[i]->addr;
        if (m->v[i]->addr + m->v[i]->len > hi)
            hi = m->v[i]->addr + m->v[i]->len;
    }
    return (plan){.a = lo, .len = hi - lo};
}

/* Carries out p with r, registered as p asks (lock held). */
static void install(const plan *p, disco__mem_reg *r, disco__mem_reg **grave)
{
    disco__mem_state *m = &disco__mem;
    disco__mem_region *rg = p->into;
    if (!rg && !p->own) {
        size_t i;
        while ((i = disco__mem_index_find(p->a)) < m->n && m->v[i]->addr < p->a + p->len)
            disco__mem_region_drop(i, grave);
        rg = calloc(1, sizeof(*rg));
        if (rg) {
            *rg = (disco__mem_region){.addr = p->a, .len = p->len, .kind = MEM_CACHE,
                                      .cls = MEM_CLASSES};
            if (disco__mem_index_insert(rg)) {
                free(rg);
                rg = NULL;
            }
        }
        /* Without memory for the region, r serves this get alone. */
    }
    r->refs = 1;
    m->misses++;
    if (!rg || p->own)
        return;
    r->region = rg;
    r->next = rg->regs;
    rg->regs = r;
    if (rg->kind == MEM_CACHE) {
        m->cached_bytes += r->len;
        m->entries++;
    }
    m->gen++;
}

static int reg_new(disco__xport *x, uintptr_t a, size_t len, disco__mem_reg **out)
{
    disco__mem_reg *r = calloc(1, sizeof(*r));
    if (!r)
        return disco_error_set(DISCO_ENOMEM, "no memory for a registration");
    r->x = x;
    r->addr = a;
    r->len = len;
    int rc = x->ops->mem_register(x->tp, (void *)a, len, &r->mr, r->key, &r->keylen);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int disco__mem_get(disco__xport *x, const void *ptr, size_t len, disco__mem_reg **out)
{
    uintptr_t a = (uintptr_t)ptr;
    if (!x || !ptr || !len || a + len < a || !out)
        return disco_error_set(DISCO_EINVAL, "mem: bad registration request");
    disco__mem_reg *fresh = NULL, *grave = NULL;
    disco__mem_lock();
    disco__mem_limits_locked();
    for (;;) {
        plan p = decide(x, a, a + len);
        if (p.hit) {
            if (!p.hit->refs++ && p.hit->region->kind == MEM_CACHE)
                lru_remove(p.hit);
            disco__mem.hits++;
            *out = p.hit;
            break;
        }
        if (fresh && fresh->addr == p.a && fresh->len == p.len) {
            install(&p, fresh, &grave);
            evict(&grave);
            *out = fresh;
            fresh = NULL;
            break;
        }
        disco__mem_unlock();
        disco__mem_reap(fresh); /* registered for a plan that changed */
        fresh = NULL;
        int rc = reg_new(x, p.a, p.len, &fresh);
        if (rc)
            return rc;
        disco__mem_lock();
    }
    disco__mem_unlock();
    if (fresh)
        grave = (fresh->next = grave, fresh);
    disco__mem_reap(grave);
    return 0;
}

void disco__mem_put(disco__mem_reg *r)
{
    disco__mem_reg *grave = NULL;
    disco__mem_lock();
    if (!--r->refs) {
        if (!r->region) {
            r->next = grave;
            grave = r;
        } else if (r->region->kind == MEM_CACHE) {
            lru_push(r);
            evict(&grave);
        }
    }
    disco__mem_unlock();
    disco__mem_reap(grave);
}

disco_mr *disco__mem_mr(const disco__mem_reg *r)
{
    return r->mr;
}

const uint8_t *disco__mem_key(const disco__mem_reg *r, size_t *keylen)
{
    *keylen = r->keylen;
    return r->key;
}

void disco__mem_invalidate(uintptr_t a, size_t len)
{
    disco__mem_state *m = &disco__mem;
    uintptr_t b = a + len;
    if (locked_here)
        return;
    disco__mem_reg *grave = NULL;
    disco__mem_lock();
    size_t i = disco__mem_index_find(a);
    while (i < m->n && m->v[i]->addr < b) {
        disco__mem_region_drop(i, &grave);
        m->invalidations++;
    }
    disco__mem_unlock();
    disco__mem_reap(grave);
}

void disco__mem_forget(disco__xport *x)
{
    disco__mem_state *m = &disco__mem;
    disco__mem_reg *grave = NULL;
    disco__mem_lock();
    for (size_t i = 0; i < m->n;) {
        disco__mem_region *rg = m->v[i];
        disco__mem_reg *r = reg_of(rg, x);
        if (!r) {
            i++;
            continue;
        }
        detach(r, &grave);
        if (r->refs) { /* a holder keeps the handle; the transport goes now */
            x->ops->mem_deregister(r->mr);
            r->mr = NULL;
        }
        if (!rg->regs && rg->kind == MEM_CACHE)
            disco__mem_region_drop(i, &grave);
    }
    disco__mem_unlock();
    disco__mem_reap(grave);
}

void disco__mem_stats_get(disco__mem_stats *s)
{
    disco__mem_state *m = &disco__mem;
    disco__mem_lock();
    *s = (disco__mem_stats){.hits = m->hits, .misses = m->misses, .evictions = m->evictions,
                            .invalidations = m->invalidations, .cached_bytes = m->cached_bytes,
                            .entries = m->entries, .pool_bytes = m->pool_bytes,
                            .regions = m->n};
    disco__mem_unlock();
}
