/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the memory layer knows, private to src/mem: regions of address space
 * (cache entries, disco_mem_alloc blocks, disco_mem_register regions) in one
 * sorted array of disjoint ranges, each with its registrations (one per
 * transport that used it), all under one lock.
 */
#ifndef DISCO_MEM_REGION_H
#define DISCO_MEM_REGION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "mem/mem.h"

enum { MEM_CACHE, MEM_BLOCK, MEM_USER };

/* disco_mem_alloc size classes: 4 KiB << c for c < MEM_CLASSES. */
#define MEM_CLASS_SHIFT 12
#define MEM_CLASSES 15

typedef struct disco__mem_region disco__mem_region;

struct disco__mem_reg {
    disco__mem_region *region; /* NULL once detached: freed at the last put */
    disco__xport *x;
    uintptr_t addr;
    size_t len;
    disco_mr *mr;             /* NULL once its transport is gone */
    unsigned refs;
    size_t keylen;
    uint8_t key[DISCO_TRANSPORT_KEY_MAX];
    disco__mem_reg *next;     /* the region's registrations; a grave list */
    disco__mem_reg *lru_prev, *lru_next; /* cache entries nobody holds */
};

struct disco__mem_region {
    uintptr_t addr;
    size_t len;
    int kind;
    disco__mem_reg *regs;
    unsigned cls;                 /* blocks: size class (MEM_CLASSES: none) */
    bool pooled;                  /* blocks: in the free list */
    disco__mem_region *pool_next;
};

typedef struct disco__mem_state {
    /* One mutex for everything: it is taken once per large message (get
     * and put), per disco_mem_* call and per free or unmap that touches
     * registered memory (intercept.c filters the rest without it); the work
     * under it is a binary search over a few hundred regions. Transports
     * are never called with it held, except at disco__mem_forget. */
    pthread_mutex_t lock;
    disco__mem_region **v; /* sorted by address, disjoint */
    size_t n, cap;
    /* Read without the lock by intercept.c to skip frees that cannot
     * matter: whether there is any region, and the span they cover. */
    atomic_size_t nregions;
    atomic_uintptr_t lo, hi;
    uint64_t gen;             /* bumped by every change to v or to a region */
    disco__mem_reg lru;       /* sentinel: lru_next is the most recent */
    size_t cached_bytes, entries, pool_bytes;
    size_t cache_max, pool_max;
    bool limits_set;
    disco__mem_region *pool[MEM_CLASSES];
    uint64_t hits, misses, evictions, invalidations;
} disco__mem_state;

extern disco__mem_state disco__mem;

/* Taking and dropping the lock; while held, the calling thread's own
 * frees and unmaps (of the layer's bookkeeping) skip invalidation. */
void disco__mem_lock(void);
void disco__mem_unlock(void);
bool disco__mem_locked_here(void);

/* Reads DISCO_MEM_CACHE_MAX / DISCO_MEM_POOL_MAX once (lock held). */
void disco__mem_limits_locked(void);

/* index.c: the sorted array (lock held). */
/* The first region ending after a (n when none). */
size_t disco__mem_index_find(uintptr_t a);
int disco__mem_index_insert(disco__mem_region *rg);
void disco__mem_index_remove(size_t i);

/* Removes region i from the index and frees it; its registrations are
 * detached, and those nobody holds go onto *grave (lock held). */
void disco__mem_region_drop(size_t i, disco__mem_reg **grave);

/* Deregisters and frees what disco__mem_region_drop buried (lock not
 * held: transports are called). */
void disco__mem_reap(disco__mem_reg *grave);

/* Registers [p, p + len) with each RMA transport of the running runtime,
 * if any; failures are left for the first use to report. */
void disco__mem_register_now(void *p, size_t len);

#endif
