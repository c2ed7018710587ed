/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Registered memory: buffers that remote calls move without copies.
 *
 * Large arguments of remotecall_fetch and remotecall_wait travel by
 * rendezvous: the callee reads them straight out of the caller's memory
 * over an RMA-capable transport (shared memory, a fabric). A fabric can only
 * read memory registered with it, and registering (pinning pages) costs far
 * more than a small message. disco keeps registrations in a cache, so a
 * buffer sent again is not registered again; the calls below go further and
 * make registration free on the hot path:
 *
 *   disco_mem_alloc / disco_mem_free   buffers that stay registered, from a
 *                                      pool of size classes
 *   disco_mem_register / _deregister   a buffer of yours, registered until
 *                                      you say otherwise
 *
 * Both are optional: any buffer can be sent, and the cache registers it on
 * its first trip. Memory that is freed or unmapped leaves the cache by
 * itself (a registration never outlives the pages it names).
 *
 * Limits (environment, read at first use; K/M/G suffixes):
 *   DISCO_MEM_POOL_MAX   bytes of freed disco_mem_alloc blocks kept for
 *                        reuse (default 256M); beyond it they are unmapped
 *   DISCO_MEM_CACHE_MAX  bytes the registration cache keeps registered
 *                        (default 1G); beyond it the least recently used
 *                        registrations not in use are dropped. Memory of
 *                        disco_mem_alloc and disco_mem_register does not
 *                        count and is never dropped.
 *
 * All functions are thread-safe and may be called before the runtime
 * starts (disco_init, disco_addprocs): a buffer allocated or registered
 * then is registered with a transport the first time data moves through it
 * there; one allocated or registered while the runtime runs is registered
 * at once with each of its RMA-capable transports.
 */
#ifndef DISCO_MEM_H
#define DISCO_MEM_H

#include <stddef.h>

#include "disco/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A buffer of at least size bytes, page-aligned, registered with every
 * RMA-capable transport of this process (see above for when), so that
 * sending it or receiving into it costs no registration. Sizes from 4 KiB
 * to 64 MiB are rounded up to a power of two and served from per-size free
 * lists; larger ones are mapped at their size (rounded to pages) and
 * unmapped when freed. The contents are not cleared on reuse.
 *
 * Returns NULL with the last error set (DISCO_EINVAL for size 0,
 * DISCO_ENOMEM when no memory could be mapped).
 */
DISCO_API void *disco_mem_alloc(size_t size);

/*
 * Gives back a buffer of disco_mem_alloc (NULL: nothing). It keeps its
 * registrations in the pool, unless the pool is full (DISCO_MEM_POOL_MAX),
 * then it is deregistered and unmapped. Data still being read from it by a
 * peer must not be freed (as with free()). Passing anything else is a
 * programming error: it is reported through disco_error_set
 * (DISCO_EINVAL) and the pointer is left alone.
 */
DISCO_API void disco_mem_free(void *p);

/*
 * Registers [addr, addr + len) of your memory until disco_mem_deregister
 * (or until the memory is unmapped, which deregisters it). The cache never
 * evicts it. Registration with each transport happens as for
 * disco_mem_alloc.
 *
 * Returns 0; DISCO_EINVAL when addr is NULL, len is 0, or the range
 * overlaps a region already registered this way or a disco_mem_alloc
 * block; DISCO_ENOMEM.
 */
DISCO_API int disco_mem_register(void *addr, size_t len);

/*
 * Ends the registration that disco_mem_register(addr, ...) made. Reads in
 * flight on it keep their registration until they finish.
 *
 * Returns 0, or DISCO_ENOENT when no region registered this way starts at
 * addr.
 */
DISCO_API int disco_mem_deregister(void *addr);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_MEM_H */
