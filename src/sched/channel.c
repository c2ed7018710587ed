/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Local channels (see disco/channel.h).
 *
 * Bounded channels keep their items in a Vyukov ring (the same cell-sequence
 * scheme as inject.c, with the item stored in the cell): put and take are
 * one CAS each and never touch the lock. Callers that must wait queue a
 * waiter under ch->lock. The lost-wake-up race between a fast-path put and a
 * taker going to sleep is closed Dekker-style:
 *
 *   taker:  n_takers++ (seq_cst)  fence  ring empty?  -> sleep
 *   putter: ring push (release)   fence  n_takers > 0? -> wake one
 *
 * With a seq_cst fence on both sides at least one of them sees the other:
 * the taker finds the item, or the putter finds the taker. Symmetrically for
 * putters waiting for room. A woken waiter retries from the top; waking one
 * waiter per item (or slot) keeps the thundering herd away.
 *
 * Unbuffered (capacity 0) and unbounded channels do everything under the
 * lock: the former hand the item straight from putter to taker, the latter
 * keep a growable circular buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "disco/channel.h"
#include "sched/channel_remote.h"
#include "sched/sched.h"

#ifdef DISCO_TSAN
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define IGNORE_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define IGNORE_READS_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define IGNORE_READS_BEGIN() ((void)0)
#define IGNORE_READS_END() ((void)0)
#endif

typedef enum { MODE_RING, MODE_UNBUFFERED, MODE_UNBOUNDED } channel_mode;

struct disco_channel {
    bool remote; /* false: see channel_remote.h */
    size_t elem_size, capacity;
    channel_mode mode;
    atomic_bool closed;
    /* Ring: ring_size cells of cell_size bytes (8-byte seq, then item). */
    _Alignas(64) _Atomic uint64_t head; /* next position to take */
    _Alignas(64) _Atomic uint64_t tail; /* next position to put */
    _Alignas(64) char *cells;
    uint64_t ring_size, cell_size;
    /* Unbounded: circular buffer of buf_cap items, buf_n from buf_head. */
    char *buf;
    size_t buf_cap, buf_head, buf_n;
    /* Waiters, all under lock. */
    disco__spin lock;
    disco__waitq takers, putters, watchers;
};

static inline _Atomic uint64_t *cell_seq(disco_channel *ch, uint64_t pos)
{
    return (_Atomic uint64_t *)(ch->cells + (pos & (ch->ring_size - 1)) * ch->cell_size);
}

static inline void *cell_item(disco_channel *ch, uint64_t pos)
{
    return (char *)cell_seq(ch, pos) + sizeof(uint64_t);
}

/* Item copy: word-sized items (pointers, integers, the common case) skip
 * the call into memcpy. */
static inline void copy_item(void *dst, const void *src, size_t n)
{
    if (n == sizeof(uint64_t))
        __builtin_memcpy(dst, src, sizeof(uint64_t));
    else
        memcpy(dst, src, n);
}

disco_channel *disco_channel_new(size_t elem_size, size_t capacity)
{
    if (elem_size == 0 || elem_size > (1u << 30)) {
        disco_error_set(DISCO_EINVAL, "disco_channel_new: bad item size %zu",
                        elem_size);
        return NULL;
    }
    if (capacity != DISCO_CHANNEL_UNBOUNDED && capacity > ((size_t)1 << 40)) {
        disco_error_set(DISCO_EINVAL, "disco_channel_new: capacity %zu too large",
                        capacity);
        return NULL;
    }
    disco_channel *ch = calloc(1, sizeof(*ch));
    if (!ch)
        goto nomem;
    ch->elem_size = elem_size;
    ch->capacity = capacity;
    atomic_init(&ch->closed, false);
    atomic_init(&ch->head, 0);
    atomic_init(&ch->tail, 0);
    atomic_init(&ch->lock.held, false);
    disco__waitq_init(&ch->takers);
    disco__waitq_init(&ch->putters);
    disco__waitq_init(&ch->watchers);
    if (capacity == 0) {
        ch->mode = MODE_UNBUFFERED;
    } else if (capacity == DISCO_CHANNEL_UNBOUNDED) {
        ch->mode = MODE_UNBOUNDED;
    } else {
        ch->mode = MODE_RING;
        /* A power of two >= 2 (the cell-sequence scheme cannot tell full
         * from empty with one cell); a smaller capacity is enforced on top. */
        ch->ring_size = 2;
        while (ch->ring_size < capacity)
            ch->ring_size <<= 1;
        ch->cell_size = (sizeof(uint64_t) + elem_size + 7) & ~(uint64_t)7;
        ch->cells = malloc(ch->ring_size * ch->cell_size);
        if (!ch->cells)
            goto nomem;
        for (uint64_t i = 0; i < ch->ring_size; i++)
            atomic_init(cell_seq(ch, i), i);
    }
    return ch;
nomem:
    free(ch);
    disco_error_set(DISCO_ENOMEM, "disco_channel_new: out of memory");
    return NULL;
}

const disco__channel_remote_ops *disco__channel_remote;

/* Each operation below hands a remote channel handle to src/rref first. */
#define REMOTE(ch) disco__channel_is_remote(ch)

void disco_channel_free(disco_channel *ch)
{
    if (!ch)
        return;
    if (REMOTE(ch)) {
        disco__channel_remote->free(ch);
        return;
    }
    free(ch->cells);
    free(ch->buf);
    free(ch);
}

size_t disco_channel_capacity(const disco_channel *ch)
{
    return REMOTE(ch) ? disco__channel_remote->capacity(ch) : ch->capacity;
}

size_t disco_channel_elem_size(const disco_channel *ch)
{
    return REMOTE(ch) ? disco__channel_remote->elem_size(ch) : ch->elem_size;
}

bool disco_isopen(disco_channel *ch)
{
    if (REMOTE(ch))
        return disco__channel_remote->isopen(ch);
    return !atomic_load_explicit(&ch->closed, memory_order_acquire);
}

/* ---- lock-free ring (MODE_RING) ---------------------------------------- */

static bool ring_push(disco_channel *ch, const void *item)
{
    uint64_t pos = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    for (;;) {
        /* Capacity below the ring size: a stale head only makes this more
         * conservative (head never goes back). */
        if (ch->capacity < ch->ring_size &&
            pos - atomic_load_explicit(&ch->head, memory_order_acquire) >=
                ch->capacity)
            return false;
        /* acquire: pairs with the release store in ring_pop, so the taker
         * that freed this cell is done copying out of it. */
        uint64_t seq = atomic_load_explicit(cell_seq(ch, pos), memory_order_acquire);
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&ch->tail, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return false; /* full */
        } else {
            pos = atomic_load_explicit(&ch->tail, memory_order_relaxed);
        }
    }
    copy_item(cell_item(ch, pos), item, ch->elem_size);
    /* release: pairs with the acquire load of seq in ring_pop/ring_peek. */
    atomic_store_explicit(cell_seq(ch, pos), pos + 1, memory_order_release);
    return true;
}

static bool ring_pop(disco_channel *ch, void *out)
{
    uint64_t pos = atomic_load_explicit(&ch->head, memory_order_relaxed);
    for (;;) {
        /* acquire: pairs with the release store in ring_push. */
        uint64_t seq = atomic_load_explicit(cell_seq(ch, pos), memory_order_acquire);
        int64_t dif = (int64_t)(seq - (pos + 1));
        if (dif == 0) {
            /* release: ring_push's capacity check reads head with acquire. */
            if (atomic_compare_exchange_weak_explicit(&ch->head, &pos, pos + 1,
                                                      memory_order_release,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return false; /* empty (or its putter is mid-copy) */
        } else {
            pos = atomic_load_explicit(&ch->head, memory_order_relaxed);
        }
    }
    copy_item(out, cell_item(ch, pos), ch->elem_size);
    /* release: pairs with the acquire load in ring_push: the cell is free
     * for the putter one lap later. */
    atomic_store_explicit(cell_seq(ch, pos), pos + ch->ring_size,
                          memory_order_release);
    return true;
}

/* Copies the oldest item without removing it. Seqlock-style: the copy is
 * valid if head has not moved, because a putter can only overwrite the
 * cell after a taker claimed it by advancing head. */
static bool ring_peek(disco_channel *ch, void *out)
{
    for (;;) {
        uint64_t pos = atomic_load_explicit(&ch->head, memory_order_acquire);
        uint64_t seq = atomic_load_explicit(cell_seq(ch, pos), memory_order_acquire);
        if (seq != pos + 1) {
            if ((int64_t)(seq - (pos + 1)) < 0)
                return false;
            continue; /* head moved on under us */
        }
        /* A copy that races with a reuse of the cell is thrown away below;
         * tell TSan the racing read is intended. */
        IGNORE_READS_BEGIN();
        memcpy(out, cell_item(ch, pos), ch->elem_size);
        IGNORE_READS_END();
        /* acquire fence: the copy's loads happen before the re-check. */
        disco__fence_acquire();
        if (atomic_load_explicit(&ch->head, memory_order_relaxed) == pos)
            return true;
    }
}

static bool ring_nonempty(disco_channel *ch)
{
    uint64_t pos = atomic_load_explicit(&ch->head, memory_order_acquire);
    return atomic_load_explicit(cell_seq(ch, pos), memory_order_acquire) == pos + 1;
}

/* Wakes one waiter of q if any. The caller has made its change visible
 * and issued the seq_cst fence that pairs with sleep_on's. */
static void wake_one_waiting(disco_channel *ch, disco__waitq *q)
{
    if (!atomic_load_explicit(&q->n, memory_order_relaxed))
        return;
    disco__spin_lock(&ch->lock);
    disco__waiter *w = disco__waitq_pop_locked(q);
    disco__spin_unlock(&ch->lock);
    if (w)
        disco__waiter_wake(w, 0);
}

static void wake_all_waiting(disco_channel *ch, disco__waitq *q)
{
    if (!atomic_load_explicit(&q->n, memory_order_relaxed))
        return;
    disco__spin_lock(&ch->lock);
    disco__waiter *all = disco__waitq_take_all_locked(q);
    disco__spin_unlock(&ch->lock);
    disco__waiters_wake_list(all, 0);
}

/* Takes an interrupted waiter back from whichever queue of the channel
 * holds it (a disco__cancel_fn). */
static bool cancel_waiter(void *chan, disco__waiter *w)
{
    disco_channel *ch = chan;
    disco__spin_lock(&ch->lock);
    bool removed = disco__waitq_remove_locked(&ch->takers, w) ||
                   disco__waitq_remove_locked(&ch->putters, w) ||
                   disco__waitq_remove_locked(&ch->watchers, w);
    disco__spin_unlock(&ch->lock);
    return removed;
}

/*
 * Ring slow path: queue on q, then retry `attempt` once more; sleep only if
 * it still fails and the channel is open. Returns 1 when the retry
 * succeeded, DISCO_ECLOSED when closed, else how the sleep ended: 0 when
 * woken (caller retries), DISCO_ECLOSED or DISCO_EINTERRUPTED. Wakers pick
 * waiters under ch->lock, so an interrupted waiter was picked by none: it
 * took no item and no wake-up meant for another.
 */
static int sleep_on(disco_channel *ch, disco__waitq *q,
                    bool (*attempt)(disco_channel *, void *), void *arg)
{
    disco__waiter w;
    disco__waiter_init(&w);
    disco__spin_lock(&ch->lock);
    disco__waitq_push_locked(q, &w);
    disco__fence_seq_cst(); /* pairs with wake_*_waiting */
    int rc = 0;
    if (attempt(ch, arg))
        rc = 1;
    else if (atomic_load_explicit(&ch->closed, memory_order_acquire))
        rc = DISCO_ECLOSED;
    if (rc) {
        disco__waitq_remove_locked(q, &w);
        disco__spin_unlock(&ch->lock);
        return rc;
    }
    disco__spin_unlock(&ch->lock);
    return disco__waiter_wait_intr(&w, cancel_waiter, ch);
}

static bool attempt_push(disco_channel *ch, void *item) { return ring_push(ch, item); }
static bool attempt_pop(disco_channel *ch, void *out) { return ring_pop(ch, out); }
static bool attempt_peek(disco_channel *ch, void *out) { return ring_peek(ch, out); }
static bool attempt_ready(disco_channel *ch, void *unused)
{
    (void)unused;
    return ring_nonempty(ch);
}

static void after_put(disco_channel *ch)
{
    disco__fence_seq_cst(); /* pairs with sleep_on's */
    wake_one_waiting(ch, &ch->takers);
    wake_all_waiting(ch, &ch->watchers);
}

static int ring_put(disco_channel *ch, const void *item)
{
    for (;;) {
        if (atomic_load_explicit(&ch->closed, memory_order_acquire))
            return disco_error_set(DISCO_ECLOSED, "put on a closed channel");
        if (ring_push(ch, item))
            break;
        int rc = sleep_on(ch, &ch->putters, attempt_push, (void *)item);
        if (rc == 1)
            break;
        if (rc == DISCO_ECLOSED)
            return disco_error_set(DISCO_ECLOSED, "put on a closed channel");
        if (disco__wait_refused(rc))
            return rc; /* the item was not put */
    }
    after_put(ch);
    return 0;
}

/* Take, peek or wait on a ring: the attempt says which. */
static int ring_get(disco_channel *ch, bool (*attempt)(disco_channel *, void *),
                    void *out, disco__waitq *q)
{
    for (;;) {
        if (attempt(ch, out))
            return 0;
        if (atomic_load_explicit(&ch->closed, memory_order_acquire)) {
            if (attempt(ch, out)) /* an item put just before the close */
                return 0;
            return disco_error_set(DISCO_ECLOSED, "channel closed and empty");
        }
        int rc = sleep_on(ch, q, attempt, out);
        if (rc == 1)
            return 0;
        if (disco__wait_refused(rc))
            return rc;
        /* DISCO_ECLOSED or woken: loop (drains what is left first) */
    }
}

/* ---- locked modes (unbuffered, unbounded) ------------------------------ */

static int buf_grow(disco_channel *ch)
{
    size_t cap = ch->buf_cap ? 2 * ch->buf_cap : 16;
    char *b = malloc(cap * ch->elem_size);
    if (!b)
        return DISCO_ENOMEM;
    for (size_t i = 0; i < ch->buf_n; i++)
        memcpy(b + i * ch->elem_size,
               ch->buf + ((ch->buf_head + i) % ch->buf_cap) * ch->elem_size,
               ch->elem_size);
    free(ch->buf);
    ch->buf = b;
    ch->buf_cap = cap;
    ch->buf_head = 0;
    return 0;
}

static void *buf_at(disco_channel *ch, size_t i)
{
    return ch->buf + ((ch->buf_head + i) % ch->buf_cap) * ch->elem_size;
}

/* Lock held: is an item available to a taker? */
static bool locked_ready(disco_channel *ch)
{
    return ch->mode == MODE_UNBOUNDED ? ch->buf_n > 0
                                      : atomic_load_explicit(&ch->putters.n,
                                                             memory_order_relaxed) > 0;
}

static int locked_put(disco_channel *ch, const void *item)
{
    disco__spin_lock(&ch->lock);
    if (atomic_load_explicit(&ch->closed, memory_order_relaxed)) {
        disco__spin_unlock(&ch->lock);
        return disco_error_set(DISCO_ECLOSED, "put on a closed channel");
    }
    disco__waiter *taker = disco__waitq_pop_locked(&ch->takers);
    disco__waiter *watchers = disco__waitq_take_all_locked(&ch->watchers);
    if (taker) { /* hand the item straight to a waiting taker */
        memcpy(taker->buf, item, ch->elem_size);
        disco__spin_unlock(&ch->lock);
        disco__waiter_wake(taker, 0);
        disco__waiters_wake_list(watchers, 0);
        return 0;
    }
    if (ch->mode == MODE_UNBOUNDED) {
        if (ch->buf_n == ch->buf_cap && buf_grow(ch) != 0) {
            disco__spin_unlock(&ch->lock);
            disco__waiters_wake_list(watchers, 0);
            return disco_error_set(DISCO_ENOMEM, "put: channel cannot grow");
        }
        memcpy(buf_at(ch, ch->buf_n++), item, ch->elem_size);
        disco__spin_unlock(&ch->lock);
        disco__waiters_wake_list(watchers, 0);
        return 0;
    }
    /* Unbuffered, nobody taking: wait for a taker to copy from us. */
    disco__waiter w;
    disco__waiter_init(&w);
    w.buf = (void *)item;
    disco__waitq_push_locked(&ch->putters, &w);
    disco__spin_unlock(&ch->lock);
    disco__waiters_wake_list(watchers, 0);
    /* Takers copy the item and pop us under ch->lock: interrupted, we were
     * popped by none and the item was not delivered. */
    int rc = disco__waiter_wait_intr(&w, cancel_waiter, ch);
    return rc == DISCO_ECLOSED ? disco_error_set(rc, "put on a closed channel") : rc;
}

/* What a locked-mode get does with the ready item. */
typedef enum { GET_TAKE, GET_FETCH, GET_WAIT } get_kind;

/* take, fetch or wait in a locked mode. */
static int locked_get(disco_channel *ch, void *out, get_kind kind)
{
    for (;;) {
        disco__spin_lock(&ch->lock);
        if (locked_ready(ch)) {
            disco__waiter *putter = NULL;
            if (kind == GET_WAIT) {
                /* nothing to copy */
            } else if (ch->mode == MODE_UNBOUNDED) {
                memcpy(out, buf_at(ch, 0), ch->elem_size);
                if (kind == GET_TAKE) {
                    ch->buf_head = (ch->buf_head + 1) % ch->buf_cap;
                    ch->buf_n--;
                }
            } else {
                memcpy(out, ch->putters.head->buf, ch->elem_size);
                if (kind == GET_TAKE)
                    putter = disco__waitq_pop_locked(&ch->putters);
            }
            disco__spin_unlock(&ch->lock);
            if (putter)
                disco__waiter_wake(putter, 0);
            return 0;
        }
        if (atomic_load_explicit(&ch->closed, memory_order_relaxed)) {
            disco__spin_unlock(&ch->lock);
            return disco_error_set(DISCO_ECLOSED, "channel closed and empty");
        }
        disco__waiter w;
        disco__waiter_init(&w);
        w.buf = out;
        /* A taker can receive the item straight from a putter; fetch and
         * wait only watch. */
        disco__waitq_push_locked(kind == GET_TAKE ? &ch->takers : &ch->watchers, &w);
        disco__spin_unlock(&ch->lock);
        int rc = disco__waiter_wait_intr(&w, cancel_waiter, ch);
        if (disco__wait_refused(rc))
            return rc; /* no putter picked us: nothing was copied */
        if (rc == 0 && kind == GET_TAKE)
            return 0; /* a putter copied the item into out */
        /* woken by a close or as a watcher: look again */
    }
}

/* ---- public API --------------------------------------------------------- */

int disco_put(disco_channel *ch, const void *item)
{
    if (!ch || !item)
        return disco_error_set(DISCO_EINVAL, "disco_put: NULL argument");
    if (REMOTE(ch))
        return disco__channel_remote->put(ch, item);
    return ch->mode == MODE_RING ? ring_put(ch, item) : locked_put(ch, item);
}

int disco_take(disco_channel *ch, void *out)
{
    if (!ch || !out)
        return disco_error_set(DISCO_EINVAL, "disco_take: NULL argument");
    if (REMOTE(ch))
        return disco__channel_remote->take(ch, out);
    if (ch->mode != MODE_RING)
        return locked_get(ch, out, GET_TAKE);
    int rc = ring_get(ch, attempt_pop, out, &ch->takers);
    if (rc == 0) {
        disco__fence_seq_cst(); /* pairs with sleep_on's */
        wake_one_waiting(ch, &ch->putters);
    }
    return rc;
}

int disco_fetch(disco_channel *ch, void *out)
{
    if (!ch || !out)
        return disco_error_set(DISCO_EINVAL, "disco_fetch: NULL argument");
    if (REMOTE(ch))
        return disco__channel_remote->fetch(ch, out);
    if (ch->mode != MODE_RING)
        return locked_get(ch, out, GET_FETCH);
    return ring_get(ch, attempt_peek, out, &ch->watchers);
}

bool disco_isready(disco_channel *ch)
{
    if (REMOTE(ch))
        return disco__channel_remote->isready(ch);
    if (ch->mode == MODE_RING)
        return ring_nonempty(ch);
    disco__spin_lock(&ch->lock);
    bool ready = locked_ready(ch);
    disco__spin_unlock(&ch->lock);
    return ready;
}

int disco_wait(disco_channel *ch)
{
    if (!ch)
        return disco_error_set(DISCO_EINVAL, "disco_wait: NULL channel");
    if (REMOTE(ch))
        return disco__channel_remote->wait(ch);
    if (ch->mode == MODE_RING)
        return ring_get(ch, attempt_ready, NULL, &ch->watchers);
    return locked_get(ch, NULL, GET_WAIT);
}

int disco_close(disco_channel *ch)
{
    if (!ch)
        return disco_error_set(DISCO_EINVAL, "disco_close: NULL channel");
    if (REMOTE(ch))
        return disco__channel_remote->close(ch);
    disco__spin_lock(&ch->lock);
    atomic_store_explicit(&ch->closed, true, memory_order_release);
    disco__waiter *t = disco__waitq_take_all_locked(&ch->takers);
    disco__waiter *p = disco__waitq_take_all_locked(&ch->putters);
    disco__waiter *w = disco__waitq_take_all_locked(&ch->watchers);
    disco__spin_unlock(&ch->lock);
    disco__waiters_wake_list(t, DISCO_ECLOSED);
    disco__waiters_wake_list(p, DISCO_ECLOSED);
    disco__waiters_wake_list(w, DISCO_ECLOSED);
    return 0;
}
