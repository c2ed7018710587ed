/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared-memory transport: sending.
 *
 * Everything happens under the connection's mutex, so sends from several
 * threads never interleave. When nothing is queued, send copies into the
 * ring at once, as much as fits; the rest is queued (iovec array copied,
 * buffers borrowed) and progress copies more as the consumer frees room.
 * Completions never call back from here: progress delivers them (shm.h).
 */
#include <stdlib.h>
#include <string.h>

#include "transports/shm/shm.h"

/* The ring's counts make no sense: the peer broke the segment (mu held). */
static void corrupt_locked(shm_conn *c)
{
    shm_conn_fail_locked(c, DISCO_EPROTO,
                         "shm: the segment shared with %s is corrupt", c->peer);
}

/* Copies iov into the ring as far as room goes, unpublished (mu held).
 * Returns the bytes copied. */
static size_t put_iov(shm_conn *c, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        size_t want = iov[i].iov_len;
        size_t room = shm_ring_room(&c->seg, want);
        if (room == SHM_RING_CORRUPT) {
            corrupt_locked(c);
            break;
        }
        size_t k = want < room ? want : room;
        shm_ring_put(&c->seg, iov[i].iov_base, k);
        total += k;
        if (k < want)
            break;
    }
    return total;
}

static void publish_locked(shm_conn *c)
{
    if (shm_ring_publish(&c->seg))
        shm_conn_wake_peer_locked(c);
}

/* Skips the finished and empty iovecs of s. True when s is complete. */
static bool send_skip(shm_send *s)
{
    while (s->pos < s->iovcnt && s->iov[s->pos].iov_len == 0)
        s->pos++;
    return s->pos == s->iovcnt;
}

/* Accounts n bytes of s as copied. */
static void send_advance(shm_send *s, size_t n)
{
    while (n > 0) {
        struct iovec *v = &s->iov[s->pos];
        size_t k = n < v->iov_len ? n : v->iov_len;
        v->iov_base = (uint8_t *)v->iov_base + k;
        v->iov_len -= k;
        n -= k;
        send_skip(s);
    }
}

int shm_conn_write_queue_locked(shm_conn *c)
{
    size_t room = shm_ring_room(&c->seg, shm_ring_batch(&c->seg));
    if (room == SHM_RING_CORRUPT) {
        corrupt_locked(c);
        return 0;
    }
    if (room < shm_ring_batch(&c->seg))
        return 0; /* not worth a piece yet (shm_ring_batch) */
    size_t copied = 0;
    shm_send *s;
    while (c->state == SHM_OPEN && (s = c->head) != NULL) {
        if (!send_skip(s)) {
            size_t n = put_iov(c, s->iov + s->pos, s->iovcnt - s->pos);
            send_advance(s, n);
            copied += n;
            if (!send_skip(s))
                break; /* the ring is full */
        }
        c->head = s->next;
        if (!c->head)
            c->tail = NULL;
        c->nqueued--;
        if (!s->owned)
            c->done[c->done_len++] = s->token; /* room reserved at send */
        free(s);
    }
    if (copied && c->state == SHM_OPEN)
        publish_locked(c);
    return copied > 0;
}

static void queue_locked(shm_conn *c, shm_send *s)
{
    if (c->tail)
        c->tail->next = s;
    else
        c->head = s;
    c->tail = s;
    c->nqueued++;
}

/* Queues iov[first..] with the first `skip` bytes of iov[first] copied. */
static int enqueue(shm_conn *c, const struct iovec *iov, int iovcnt, int first,
                   size_t skip, void *token)
{
    int n = iovcnt - first;
    shm_send *s = malloc(sizeof(*s) + (size_t)n * sizeof(struct iovec));
    if (!s)
        return disco_error_set(DISCO_ENOMEM, "shm: out of memory queuing a send");
    s->next = NULL;
    s->token = token;
    s->owned = false;
    s->iovcnt = n;
    s->pos = 0;
    if (n)
        memcpy(s->iov, iov + first, (size_t)n * sizeof(struct iovec));
    if (n && skip) {
        s->iov[0].iov_base = (uint8_t *)s->iov[0].iov_base + skip;
        s->iov[0].iov_len -= skip;
    }
    queue_locked(c, s);
    return 0;
}

/* Queues a copy of the bytes of iov past the first `skip` (send_copy). */
static int enqueue_copy(shm_conn *c, const struct iovec *iov, int iovcnt, size_t skip)
{
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    len -= skip;
    shm_send *s = malloc(sizeof(*s) + sizeof(struct iovec) + len);
    if (!s)
        return disco_error_set(DISCO_ENOMEM, "shm: out of memory queuing a send");
    uint8_t *p = (uint8_t *)(s->iov + 1);
    *s = (shm_send){.owned = true, .iovcnt = 1};
    s->iov[0] = (struct iovec){p, len};
    for (int i = 0; i < iovcnt; i++) {
        size_t k = iov[i].iov_len, from = skip < k ? skip : k;
        memcpy(p, (const uint8_t *)iov[i].iov_base + from, k - from);
        p += k - from;
        skip -= from;
    }
    queue_locked(c, s);
    return 0;
}

/* A progress asleep since before this queue existed did not ask to be
 * woken by room in this ring: ask for it (mu held). */
static void want_room_locked(shm_conn *c)
{
    shm_transport *tp = c->tp;
    if (atomic_load(&tp->sleeping) && shm_ring_arm_tx(&c->seg))
        shm_wake(tp);
}

int shm_send_op(disco_conn *dc, const struct iovec *iov, int iovcnt, void *token)
{
    if (!dc || iovcnt < 0 || (iovcnt > 0 && !iov))
        return disco_error_set(DISCO_EINVAL, "shm: send: bad arguments");
    shm_conn *c = shm_c(dc);
    pthread_mutex_lock(&c->mu);
    int rc;
    if (c->state != SHM_OPEN) {
        rc = disco_error_set(DISCO_ECLOSED, "shm: send on a closed connection to %s",
                             c->peer);
        goto out;
    }
    /* Room to record the completion, reserved before a byte is copied. */
    if ((rc = shm_conn_done_reserve_locked(c, 1)) != 0)
        goto out;
    int first = 0;
    size_t skip = 0;
    if (!c->head) {
        size_t w = put_iov(c, iov, iovcnt);
        if (w)
            publish_locked(c);
        while (first < iovcnt && w >= iov[first].iov_len) /* empty ones too */
            w -= iov[first++].iov_len;
        if (first == iovcnt) { /* all in the ring: complete through progress */
            c->done[c->done_len++] = token;
            shm_note_done(c->tp);
            goto out;
        }
        skip = w;
    }
    if ((rc = enqueue(c, iov, iovcnt, first, skip, token)) != 0) {
        if (first || skip) /* part of it is in the ring: the stream is torn */
            shm_conn_fail_locked(c, DISCO_ENOMEM,
                                 "shm: out of memory after a partial send to %s",
                                 c->peer);
        goto out;
    }
    if (c->state == SHM_OPEN)
        want_room_locked(c);
out:
    shm_conn_unlock(c);
    return rc;
}

int shm_send_copy_op(disco_conn *dc, const struct iovec *iov, int iovcnt)
{
    if (!dc || iovcnt < 0 || (iovcnt > 0 && !iov))
        return disco_error_set(DISCO_EINVAL, "shm: send: bad arguments");
    shm_conn *c = shm_c(dc);
    pthread_mutex_lock(&c->mu);
    if (c->state != SHM_OPEN) {
        int rc = disco_error_set(DISCO_ECLOSED, "shm: send on a closed connection to %s",
                                 c->peer);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    size_t w = 0;
    if (!c->head) {
        w = put_iov(c, iov, iovcnt);
        if (w)
            publish_locked(c);
        size_t total = 0;
        for (int i = 0; i < iovcnt; i++)
            total += iov[i].iov_len;
        if (w == total && c->state == SHM_OPEN) {
            /* Nothing queued, no completion: progress has nothing to do
             * for c, so no kick (shm_conn_unlock) either. */
            pthread_mutex_unlock(&c->mu);
            return 0;
        }
    }
    int rc;
    if (c->state != SHM_OPEN) { /* broke while we copied (corrupt ring) */
        rc = disco_error_set(DISCO_ECLOSED, "shm: connection to %s broken", c->peer);
    } else if ((rc = enqueue_copy(c, iov, iovcnt, w)) != 0) {
        if (w) /* part of it is in the ring: the stream is torn */
            shm_conn_fail_locked(c, DISCO_ENOMEM,
                                 "shm: out of memory after a partial send to %s", c->peer);
    } else {
        want_room_locked(c);
    }
    shm_conn_unlock(c);
    return rc;
}
