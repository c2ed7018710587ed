/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared-memory transport: creating and mapping a connection's segment.
 *
 * The segment is a memfd (anonymous: no file in /dev/shm, gone with the
 * last mapping), sealed against shrinking and growing before it is handed
 * over, so that the peer cannot truncate it under our mapping (a SIGBUS).
 * The fd itself is closed once mapped: the mapping holds the memory.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disco/error.h"
#include "disco/status.h"
#include "transports/shm/shm_ring.h"

#define SHM_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static void view(shm_seg *s, void *base, size_t len, int side, uint64_t size)
{
    s->hdr = base;
    s->len = len;
    s->side = side;
    s->size = size;
    s->mask = size - 1;
    uint8_t *data = (uint8_t *)base + SHM_HDR_SPACE;
    s->tx = &s->hdr->ring[side];
    s->rx = &s->hdr->ring[1 - side];
    s->txdata = data + (size_t)side * size;
    s->rxdata = data + (size_t)(1 - side) * size;
    s->tx_head = atomic_load_explicit(&s->tx->head, memory_order_relaxed);
    s->tx_tail = atomic_load_explicit(&s->tx->tail, memory_order_relaxed);
    s->rx_tail = atomic_load_explicit(&s->rx->tail, memory_order_relaxed);
}

int shm_seg_create(shm_seg *s, uint64_t ring_size, int *memfd)
{
    size_t len = shm_seg_len(ring_size);
    int fd = memfd_create("disco-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    void *base = MAP_FAILED;
    if (ftruncate(fd, (off_t)len) != 0 || fcntl(fd, F_ADD_SEALS, SHM_SEALS) != 0 ||
        (base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
            MAP_FAILED) {
        int err = errno;
        close(fd);
        return -err;
    }
    shm_seg_hdr *h = base; /* zero-filled by the kernel */
    h->magic = SHM_SEG_MAGIC;
    h->version = SHM_SEG_VERSION;
    h->ring_size = ring_size;
    view(s, base, len, 0, ring_size);
    *memfd = fd;
    return 0;
}

int shm_seg_map(shm_seg *s, int memfd)
{
    struct stat st;
    if (fstat(memfd, &st) != 0)
        return -errno;
    int seals = fcntl(memfd, F_GET_SEALS);
    if (seals < 0 || (seals & SHM_SEALS) != SHM_SEALS ||
        st.st_size < (off_t)shm_seg_len(SHM_RING_MIN) ||
        st.st_size > (off_t)shm_seg_len(SHM_RING_MAX))
        return disco_error_set(DISCO_EPROTO,
                               "shm: the peer's segment is not sealed or has a "
                               "bad size (%lld bytes)",
                               (long long)st.st_size);
    size_t len = (size_t)st.st_size;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (base == MAP_FAILED)
        return -errno;
    const shm_seg_hdr *h = base;
    uint64_t size = h->ring_size;
    if (h->magic != SHM_SEG_MAGIC || h->version != SHM_SEG_VERSION ||
        size < SHM_RING_MIN || size > SHM_RING_MAX || (size & (size - 1)) ||
        shm_seg_len(size) != len) {
        munmap(base, len);
        return disco_error_set(DISCO_EPROTO,
                               "shm: the peer's segment has a bad header");
    }
    view(s, base, len, 1, size);
    return 0;
}

void shm_seg_unmap(shm_seg *s)
{
    if (s->hdr)
        munmap(s->hdr, s->len);
    s->hdr = NULL;
}
