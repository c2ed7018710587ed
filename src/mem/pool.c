/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * disco/mem.h: registered blocks from a pool of size classes, and regions
 * the user registers. Both are regions (region.h) that the cache never
 * evicts; their registrations are made once per transport and kept.
 *
 * Every block is a mapping of its own (page-aligned, nothing in front of
 * it), so a block never shares a page with other data and its region is
 * exactly the block. Freed blocks of a class wait in a LIFO list (the most
 * recently used first: warm in cache) while the pool holds at most
 * DISCO_MEM_POOL_MAX bytes.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/error_internal.h"
#include "core/runtime.h"
#include "disco/mem.h"
#include "mem/region.h"

void disco__mem_register_now(void *p, size_t len)
{
    if (!atomic_load_explicit(&disco__rt.up, memory_order_acquire))
        return;
    disco__xport_set *s = &disco__rt.xports;
    for (int i = 0; i < s->n; i++) {
        disco__mem_reg *r;
        if ((s->x[i].caps & DISCO_TRANSPORT_CAP_RMA) &&
            disco__mem_get(&s->x[i], p, len, &r) == 0)
            disco__mem_put(r);
    }
}

/* The class of size (MEM_CLASSES: above the largest) and its bytes. */
static unsigned class_of(size_t size, size_t *bytes)
{
    unsigned c = 0;
    while (c < MEM_CLASSES && ((size_t)1 << (MEM_CLASS_SHIFT + c)) < size)
        c++;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    *bytes = c < MEM_CLASSES ? (size_t)1 << (MEM_CLASS_SHIFT + c)
                             : (size + page - 1) / page * page;
    return c;
}

static void *pool_take(unsigned c)
{
    disco__mem_state *m = &disco__mem;
    disco__mem_region *rg = c < MEM_CLASSES ? m->pool[c] : NULL;
    if (!rg)
        return NULL;
    m->pool[c] = rg->pool_next;
    rg->pooled = false;
    m->pool_bytes -= rg->len;
    return (void *)rg->addr;
}

void *disco_mem_alloc(size_t size)
{
    if (!size || size > SIZE_MAX / 2) {
        disco_error_set(DISCO_EINVAL, "disco_mem_alloc: bad size %zu", size);
        return NULL;
    }
    size_t bytes;
    unsigned c = class_of(size, &bytes);
    disco__mem_lock();
    void *p = pool_take(c);
    disco__mem_unlock();
    if (p)
        return p;
    disco__mem_region *rg = calloc(1, sizeof(*rg));
    p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!rg || p == MAP_FAILED) {
        free(rg);
        if (p != MAP_FAILED)
            munmap(p, bytes);
        disco_error_set(DISCO_ENOMEM, "disco_mem_alloc: cannot map %zu bytes", bytes);
        return NULL;
    }
    *rg = (disco__mem_region){.addr = (uintptr_t)p, .len = bytes, .kind = MEM_BLOCK, .cls = c};
    disco__mem_lock();
    int rc = disco__mem_index_insert(rg);
    disco__mem_unlock();
    if (rc) {
        free(rg);
        munmap(p, bytes);
        return NULL;
    }
    disco__mem_register_now(p, bytes);
    return p;
}

/* The index of the region of kind that starts at a, or n. */
static size_t find_start(uintptr_t a, int kind)
{
    disco__mem_state *m = &disco__mem;
    size_t i = disco__mem_index_find(a);
    return i < m->n && m->v[i]->addr == a && m->v[i]->kind == kind ? i : m->n;
}

void disco_mem_free(void *p)
{
    if (!p)
        return;
    disco__mem_state *m = &disco__mem;
    disco__mem_reg *grave = NULL;
    disco__mem_lock();
    disco__mem_limits_locked();
    size_t i = find_start((uintptr_t)p, MEM_BLOCK);
    if (i == m->n || m->v[i]->pooled) {
        disco__mem_unlock();
        disco_error_set(DISCO_EINVAL, "disco_mem_free: %p is not a block of disco_mem_alloc", p);
        return;
    }
    disco__mem_region *rg = m->v[i];
    size_t len = rg->len;
    if (rg->cls < MEM_CLASSES && m->pool_bytes + len <= m->pool_max) {
        rg->pooled = true;
        rg->pool_next = m->pool[rg->cls];
        m->pool[rg->cls] = rg;
        m->pool_bytes += len;
        disco__mem_unlock();
        return;
    }
    disco__mem_region_drop(i, &grave);
    disco__mem_unlock();
    disco__mem_reap(grave);
    munmap(p, len);
}

int disco_mem_register(void *addr, size_t len)
{
    uintptr_t a = (uintptr_t)addr;
    if (!addr || !len || a + len < a)
        return disco_error_set(DISCO_EINVAL, "disco_mem_register: bad range %p + %zu", addr, len);
    disco__mem_region *rg = calloc(1, sizeof(*rg));
    if (!rg)
        return disco_error_set(DISCO_ENOMEM, "no memory for a memory region");
    *rg = (disco__mem_region){.addr = a, .len = len, .kind = MEM_USER, .cls = MEM_CLASSES};
    disco__mem_state *m = &disco__mem;
    disco__mem_reg *grave = NULL;
    int rc = 0;
    disco__mem_lock();
    size_t i = disco__mem_index_find(a);
    for (size_t j = i; j < m->n && m->v[j]->addr < a + len; j++)
        if (m->v[j]->kind != MEM_CACHE) {
            rc = disco_error_set(DISCO_EINVAL, "disco_mem_register: %p + %zu overlaps a "
                                 "registered region or block", addr, len);
            break;
        }
    while (!rc && i < m->n && m->v[i]->addr < a + len)
        disco__mem_region_drop(i, &grave); /* cache entries give way */
    if (!rc)
        rc = disco__mem_index_insert(rg);
    disco__mem_unlock();
    disco__mem_reap(grave);
    if (rc) {
        free(rg);
        return rc;
    }
    disco__mem_register_now(addr, len);
    return 0;
}

int disco_mem_deregister(void *addr)
{
    disco__mem_state *m = &disco__mem;
    disco__mem_reg *grave = NULL;
    disco__mem_lock();
    size_t i = find_start((uintptr_t)addr, MEM_USER);
    bool found = i < m->n;
    if (found)
        disco__mem_region_drop(i, &grave);
    disco__mem_unlock();
    disco__mem_reap(grave);
    return found ? 0
                 : disco_error_set(DISCO_ENOENT, "disco_mem_deregister: no region "
                                   "registered at %p", addr);
}
