/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The registration cache, as the core sees it: a registration covering a
 * buffer for one transport, with a reference held while it is in use.
 * disco/mem.h is the public side (pooled buffers, explicit regions); cache.c
 * says how entries are found, evicted and invalidated.
 */
#ifndef DISCO_MEM_MEM_H
#define DISCO_MEM_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "core/transport.h"
#include "core/transport_set.h"

typedef struct disco__mem_reg disco__mem_reg;

/* A registration with transport x (which has DISCO_TRANSPORT_CAP_RMA)
 * covering [ptr, ptr + len), with a reference held: one of a disco_mem_alloc
 * block or a disco_mem_register region when the range lies inside one, else
 * from the cache (registered and inserted on a miss). It stays valid until
 * disco__mem_put, even if the memory is freed meanwhile (it is then
 * deregistered at the put). 0, or the transport's status. */
int disco__mem_get(disco__xport *x, const void *ptr, size_t len, disco__mem_reg **out);

/* Drops the reference disco__mem_get took. */
void disco__mem_put(disco__mem_reg *r);

/* The transport's registration, and the key a peer reads it with. */
disco_mr *disco__mem_mr(const disco__mem_reg *r);
const uint8_t *disco__mem_key(const disco__mem_reg *r, size_t *keylen);

/* Deregisters everything registered with x: its transport is closing.
 * References still held stay usable as handles but name no registration. */
void disco__mem_forget(disco__xport *x);

/* Forgets the registrations of [addr, addr + len) (len > 0, no overflow):
 * the memory is about to be freed or unmapped (intercept.c calls it). */
void disco__mem_invalidate(uintptr_t addr, size_t len);

typedef struct disco__mem_stats {
    uint64_t hits;          /* gets served by an existing registration */
    uint64_t misses;        /* gets that registered */
    uint64_t evictions;     /* cache entries dropped for DISCO_MEM_CACHE_MAX */
    uint64_t invalidations; /* entries dropped because their memory went */
    size_t cached_bytes;    /* registered by the cache (not pool, not regions) */
    size_t entries;         /* cache registrations */
    size_t pool_bytes;      /* freed disco_mem_alloc blocks kept for reuse */
    size_t regions;         /* address ranges known: cache, blocks, regions */
} disco__mem_stats;

void disco__mem_stats_get(disco__mem_stats *s);

/* Overrides DISCO_MEM_CACHE_MAX and DISCO_MEM_POOL_MAX (tests). */
void disco__mem_set_limits(size_t cache_max, size_t pool_max);

#endif
