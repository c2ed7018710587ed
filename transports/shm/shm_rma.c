/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared-memory transport: memory registration and rma_read by cross-memory
 * attach (process_vm_readv): the kernel copies from the peer's pages into
 * ours, one copy, nothing pinned.
 *
 * A registration is only a record of {pid, address, length}: the key. The
 * reader checks that a key names its peer's pid and that the read lies
 * inside the key's range, but it cannot know whether the peer still has
 * that range registered, or mapped: a read of memory the peer unmapped
 * fails (EFAULT) with on_read(DISCO_EIO); memory it reused is read as it
 * is. rma_read copies on the calling thread at once (a memory copy, never
 * a wait on the peer) and leaves on_read for the next progress call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transports/shm/shm.h"

#define SHM_KEY_MAGIC 0x6b6d6873u /* "shmk" */

typedef struct shm_key {
    uint32_t magic;
    uint32_t pid;
    uint64_t addr;
    uint64_t len;
} shm_key;

_Static_assert(sizeof(shm_key) <= DISCO_TRANSPORT_KEY_MAX, "key too long");

struct disco_mr {
    shm_key key;
};

int shm_mem_register(disco_transport *tp, void *addr, size_t len, disco_mr **out,
                     uint8_t *key, size_t *keylen)
{
    if (!tp || !out || !key || !keylen || (!addr && len))
        return disco_error_set(DISCO_EINVAL, "shm: mem_register: bad arguments");
    disco_mr *mr = malloc(sizeof(*mr));
    if (!mr)
        return disco_error_set(DISCO_ENOMEM, "shm: out of memory");
    mr->key = (shm_key){SHM_KEY_MAGIC, (uint32_t)getpid(), (uintptr_t)addr, len};
    memcpy(key, &mr->key, sizeof(mr->key));
    *keylen = sizeof(mr->key);
    *out = mr;
    return 0;
}

void shm_mem_deregister(disco_mr *mr)
{
    free(mr);
}

/* The key is this peer's and covers [raddr, raddr + len). */
static int key_check(const shm_conn *c, uint64_t raddr, size_t len,
                     const uint8_t *key, size_t keylen)
{
    shm_key k;
    if (!key || keylen != sizeof(k))
        return disco_error_set(DISCO_EINVAL, "shm: rma_read: bad key length %zu",
                               keylen);
    memcpy(&k, key, sizeof(k));
    if (k.magic != SHM_KEY_MAGIC || k.pid != (uint32_t)c->peer_pid)
        return disco_error_set(DISCO_EINVAL,
                               "shm: rma_read: the key is not one of %s (pid %ld)",
                               c->peer, (long)c->peer_pid);
    if (raddr < k.addr || len > k.len || raddr - k.addr > k.len - len)
        return disco_error_set(DISCO_EINVAL,
                               "shm: rma_read: %zu bytes at %#llx lie outside the "
                               "key's range",
                               len, (unsigned long long)raddr);
    return 0;
}

/* Copies from the peer; 0 or a negative errno. */
static int copy_from(pid_t pid, void *dst, uint64_t raddr, size_t len)
{
    size_t done = 0;
    while (done < len) {
        struct iovec l = {(uint8_t *)dst + done, len - done};
        struct iovec r = {(void *)(uintptr_t)(raddr + done), len - done};
        ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EFAULT;
        done += (size_t)n;
    }
    return 0;
}

static void record(shm_read *r, pid_t pid, uint64_t raddr, size_t len, int err)
{
    char buf[128];
    r->status = err ? shm_status(-err) : 0;
    if (err == -EFAULT)
        r->status = DISCO_EIO;
    if (err)
        snprintf(r->msg, sizeof(r->msg),
                 "shm: rma_read of %zu bytes at %#llx from pid %ld: %s", len,
                 (unsigned long long)raddr, (long)pid,
                 strerror_r(-err, buf, sizeof(buf)));
}

int shm_rma_read(disco_conn *dc, void *dst, disco_mr *dst_mr, uint64_t raddr,
                 size_t len, const uint8_t *key, size_t keylen, void *token)
{
    (void)dst_mr; /* no local registration needed */
    if (!dc || (!dst && len))
        return disco_error_set(DISCO_EINVAL, "shm: rma_read: bad arguments");
    shm_conn *c = shm_c(dc);
    if (!c->tp->cb.on_read)
        return disco_error_set(DISCO_EINVAL, "shm: rma_read without on_read");
    int rc = key_check(c, raddr, len, key, keylen);
    if (rc)
        return rc;
    shm_read *r = calloc(1, sizeof(*r));
    if (!r)
        return disco_error_set(DISCO_ENOMEM, "shm: out of memory");
    r->token = token;
    record(r, c->peer_pid, raddr, len, copy_from(c->peer_pid, dst, raddr, len));
    pthread_mutex_lock(&c->mu);
    if (c->state != SHM_OPEN) {
        pthread_mutex_unlock(&c->mu);
        free(r);
        return disco_error_set(DISCO_ECLOSED, "shm: rma_read on a closed connection "
                                              "to %s",
                               c->peer);
    }
    if (c->reads_tail)
        c->reads_tail->next = r;
    else
        c->reads = r;
    c->reads_tail = r;
    shm_conn_unlock(c);
    shm_note_done(c->tp);
    return 0;
}
