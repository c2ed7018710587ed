/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared-memory transport: the segment two processes share for one
 * connection, and its two single-producer single-consumer byte rings.
 *
 * Layout: one page of header (magic, ring size, each side's `closed` flag,
 * the two ring controls), then ring 0's bytes (connector to acceptor), then
 * ring 1's (acceptor to connector). head and tail count bytes since the
 * start (64 bits: they never wrap); the index is the count masked by the
 * power-of-two size. head, tail and the waiter flags sit on separate cache
 * lines: the producer writes head, the consumer writes tail, and the flags
 * are read after every write but written only around sleeping, so their
 * line stays shared in both caches.
 *
 * Ordering: the producer copies bytes, then stores head (release: the
 * consumer's acquire load of head sees the bytes); the consumer reads, then
 * stores tail (release: the producer reuses the room only after). The
 * stores of head and tail and the waiter flags are seq_cst, for the
 * sleep/wake handshake described in shm.h.
 *
 * The peer can write anything into the segment: counts that make no sense
 * (more bytes than the ring holds) are reported as SHM_RING_CORRUPT rather
 * than followed out of bounds.
 */
#ifndef DISCO_TRANSPORTS_SHM_RING_H
#define DISCO_TRANSPORTS_SHM_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Bytes per ring (a power of two). Payloads above eager_max (16 KiB) go by
 * rma_read, so the ring carries small messages and holds many of them.
 * bench_shm, blocking 1 MiB round trips: 170 us with 64 KiB rings, 80 us
 * with 256 KiB, 62 us with 1 MiB; 8 B and 64 KiB alike. 256 KiB keeps a
 * full mesh of 64 local processes at 1 GiB of segments, 1 MiB would take 4. */
#define SHM_RING_SIZE (256 * 1024)
#define SHM_RING_MIN 4096
#define SHM_RING_MAX (64u << 20)
#define SHM_HDR_SPACE 4096
#define SHM_SEG_MAGIC 0x6d687364u /* "dshm" */
#define SHM_SEG_VERSION 1u
#define SHM_RING_CORRUPT SIZE_MAX

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "the rings need address-free lock-free atomics");

typedef struct shm_ring_ctl {
    alignas(64) _Atomic uint64_t head;        /* bytes written (producer) */
    alignas(64) _Atomic uint64_t tail;        /* bytes consumed (consumer) */
    alignas(64) _Atomic uint32_t data_waiter; /* consumer asleep: wake it */
    _Atomic uint32_t room_waiter; /* producer asleep with bytes queued */
} shm_ring_ctl;

typedef struct shm_seg_hdr {
    uint32_t magic, version;
    uint64_t ring_size;
    _Atomic uint32_t closed[2]; /* side i closed its end with conn_close */
    shm_ring_ctl ring[2];       /* ring i is written by side i */
} shm_seg_hdr;

_Static_assert(sizeof(shm_seg_hdr) <= SHM_HDR_SPACE, "header too big");

/* One side's view of a mapped segment (private memory). Side 0 connected,
 * side 1 accepted. */
typedef struct shm_seg {
    shm_seg_hdr *hdr; /* NULL when not mapped */
    size_t len;
    int side;
    uint64_t size, mask;
    shm_ring_ctl *tx, *rx;
    uint8_t *txdata, *rxdata;
    uint64_t tx_head; /* the producer's count (under the connection mutex) */
    uint64_t tx_tail; /* the consumer's count as last seen */
    uint64_t rx_tail; /* the consumer's count (progress thread) */
} shm_seg;

/* shm_ring.c */

/* Creates a sealed memfd holding a fresh segment and maps it as side 0.
 * 0 or a negative errno; *memfd is the fd to pass to the peer. */
int shm_seg_create(shm_seg *s, uint64_t ring_size, int *memfd);
/* Maps the peer's segment as side 1 after checking its size, seals and
 * header. 0, or DISCO_EPROTO / a negative errno with the last error set. */
int shm_seg_map(shm_seg *s, int memfd);
void shm_seg_unmap(shm_seg *s);

/* The segment's length for a ring size. */
static inline size_t shm_seg_len(uint64_t ring_size)
{
    return SHM_HDR_SPACE + 2 * (size_t)ring_size;
}

/* Free bytes in the tx ring, at least `want` if there are (rereads the
 * consumer's tail only when the last one seen leaves too little). */
static inline size_t shm_ring_room(shm_seg *s, size_t want)
{
    uint64_t used = s->tx_head - s->tx_tail;
    if (s->size - used < want) {
        s->tx_tail = atomic_load_explicit(&s->tx->tail, memory_order_acquire);
        used = s->tx_head - s->tx_tail;
        if (used > s->size)
            return SHM_RING_CORRUPT;
    }
    return (size_t)(s->size - used);
}

/* Copies n bytes (n <= room) into the tx ring, unpublished. */
static inline void shm_ring_put(shm_seg *s, const void *p, size_t n)
{
    size_t at = (size_t)(s->tx_head & s->mask);
    size_t first = n < s->size - at ? n : (size_t)(s->size - at);
    memcpy(s->txdata + at, p, first);
    if (first < n) /* wraps: rarely, so no call for nothing */
        memcpy(s->txdata, (const uint8_t *)p + first, n - first);
    s->tx_head += n;
}

/* Publishes what was put. True when the consumer sleeps and must be woken
 * (the flag is taken: one wake-up per sleep). */
static inline bool shm_ring_publish(shm_seg *s)
{
    atomic_store_explicit(&s->tx->head, s->tx_head, memory_order_seq_cst);
    return atomic_load_explicit(&s->tx->data_waiter, memory_order_seq_cst) &&
           atomic_exchange_explicit(&s->tx->data_waiter, 0, memory_order_seq_cst);
}

/* The contiguous bytes readable in the rx ring: their count (0: none,
 * SHM_RING_CORRUPT: the peer's head makes no sense) and where in *p. */
static inline size_t shm_ring_peek(shm_seg *s, const uint8_t **p)
{
    uint64_t head = atomic_load_explicit(&s->rx->head, memory_order_acquire);
    uint64_t avail = head - s->rx_tail;
    if (avail > s->size)
        return SHM_RING_CORRUPT;
    size_t at = (size_t)(s->rx_tail & s->mask);
    *p = s->rxdata + at;
    return (size_t)(avail < s->size - at ? avail : s->size - at);
}

/* Queued bytes move into the ring only once this much of it is free: in
 * smaller pieces, a producer and a consumer polling each other would pass
 * the bytes a few at a time (bench_shm, spinning 1 MiB round trips on a
 * loaded 2-core machine: 3.5 ms that way, 0.5 ms with the threshold). */
/* Whether the ring has bytes to read (consumer side). */
static inline bool shm_ring_readable(const shm_seg *s)
{
    return atomic_load_explicit(&s->rx->head, memory_order_acquire) != s->rx_tail;
}

static inline uint64_t shm_ring_batch(const shm_seg *s)
{
    return s->size / 4;
}

/* Frees n consumed bytes. True when the producer sleeps waiting for room
 * and there is a batch of it now. */
static inline bool shm_ring_release(shm_seg *s, size_t n)
{
    s->rx_tail += n;
    atomic_store_explicit(&s->rx->tail, s->rx_tail, memory_order_seq_cst);
    if (!atomic_load_explicit(&s->rx->room_waiter, memory_order_seq_cst))
        return false;
    uint64_t head = atomic_load_explicit(&s->rx->head, memory_order_acquire);
    return s->size - (head - s->rx_tail) >= shm_ring_batch(s) &&
           atomic_exchange_explicit(&s->rx->room_waiter, 0, memory_order_seq_cst);
}

/* Before sleeping: asks to be woken by new bytes. True if some are there. */
static inline bool shm_ring_arm_rx(shm_seg *s)
{
    atomic_store_explicit(&s->rx->data_waiter, 1, memory_order_seq_cst);
    return atomic_load_explicit(&s->rx->head, memory_order_seq_cst) != s->rx_tail;
}

/* Before sleeping with bytes queued: asks to be woken by room. True if
 * there is a batch of room already. */
static inline bool shm_ring_arm_tx(shm_seg *s)
{
    atomic_store_explicit(&s->tx->room_waiter, 1, memory_order_seq_cst);
    uint64_t tail = atomic_load_explicit(&s->tx->tail, memory_order_seq_cst);
    return s->size - (s->tx_head - tail) >= shm_ring_batch(s);
}

static inline void shm_ring_disarm(shm_seg *s)
{
    atomic_store_explicit(&s->rx->data_waiter, 0, memory_order_relaxed);
    atomic_store_explicit(&s->tx->room_waiter, 0, memory_order_relaxed);
}

#endif
