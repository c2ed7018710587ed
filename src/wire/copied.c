/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The count of payload bytes disco copied (disco_bytes_copied), kept per
 * thread. One shared counter cost every encode and decode a locked add on
 * a cache line that the encoding threads passed around; here a thread adds
 * to a slot of its own with a plain load and store, and the total sums the
 * slots. A thread's slot goes back to a free list when the thread exits,
 * its count kept, for the next new thread to add to. A thread that finds
 * every slot taken counts in a shared one, with locked adds.
 */
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>

#include "wire/wire.h"

#define SLOTS 128

typedef struct slot {
    alignas(64) _Atomic uint64_t n; /* written by its owner only */
    struct slot *next_free;         /* under lock */
} slot;

static slot slots[SLOTS];
static slot shared; /* for threads beyond SLOTS: locked adds */
static _Atomic size_t nused; /* slots[0..nused) were handed out once */
static slot *free_list;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
DISCO__TLS _Atomic uint64_t *disco__copied_here;
static DISCO__TLS bool no_slot;

static void give_back(void *p)
{
    slot *s = p;
    pthread_mutex_lock(&lock);
    s->next_free = free_list;
    free_list = s;
    pthread_mutex_unlock(&lock);
    disco__copied_here = NULL;
}

static void make_key(void) { (void)pthread_key_create(&key, give_back); }

/* Takes a slot for the calling thread, then counts n there; with no slot
 * to take, counts n in the shared one. */
void disco__count_copy_slow(size_t n)
{
    if (no_slot) {
        atomic_fetch_add_explicit(&shared.n, n, memory_order_relaxed);
        return;
    }
    pthread_once(&key_once, make_key);
    pthread_mutex_lock(&lock);
    slot *s = free_list;
    if (s)
        free_list = s->next_free;
    else if (atomic_load_explicit(&nused, memory_order_relaxed) < SLOTS)
        s = &slots[atomic_fetch_add_explicit(&nused, 1, memory_order_relaxed)];
    pthread_mutex_unlock(&lock);
    if (s && pthread_setspecific(key, s) != 0) {
        give_back(s); /* without the key it would never come back */
        s = NULL;
    }
    if (!s) { /* this thread counts in the shared slot from now on */
        no_slot = true;
        atomic_fetch_add_explicit(&shared.n, n, memory_order_relaxed);
        return;
    }
    disco__copied_here = &s->n;
    disco__count_copy(n);
}

uint64_t disco_bytes_copied(void)
{
    uint64_t total = atomic_load_explicit(&shared.n, memory_order_relaxed);
    size_t n = atomic_load_explicit(&nused, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        total += atomic_load_explicit(&slots[i].n, memory_order_relaxed);
    return total;
}
