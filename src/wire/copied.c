/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The count of payload bytes disco copied (disco_bytes_copied), kept per
 * thread. One shared counter cost every encode and decode a locked add on
 * a cache line that the encoding threads passed around; here a thread adds
 * to a slot of its own with a plain load and store, and the total sums the
 * slots. A thread's slot goes back to a free list when the thread exits,
 * its count kept, for the next new thread to add to. Threads beyond SLOTS
 * at once share one slot with locked adds.
 */
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>

#include "sched/sched.h"
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
static DISCO__TLS slot *mine;

static void give_back(void *p)
{
    slot *s = p;
    pthread_mutex_lock(&lock);
    s->next_free = free_list;
    free_list = s;
    pthread_mutex_unlock(&lock);
    mine = NULL;
}

static void make_key(void) { (void)pthread_key_create(&key, give_back); }

/* The calling thread's slot, taken on its first copy (or the shared one). */
static slot *claim(void)
{
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
    return mine = s ? s : &shared;
}

void disco__count_copy(size_t n)
{
    slot *s = mine ? mine : claim();
    if (s == &shared)
        atomic_fetch_add_explicit(&s->n, n, memory_order_relaxed);
    else /* only this thread writes s */
        atomic_store_explicit(&s->n, atomic_load_explicit(&s->n, memory_order_relaxed) + n,
                              memory_order_relaxed);
}

uint64_t disco_bytes_copied(void)
{
    uint64_t total = atomic_load_explicit(&shared.n, memory_order_relaxed);
    size_t n = atomic_load_explicit(&nused, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        total += atomic_load_explicit(&slots[i].n, memory_order_relaxed);
    return total;
}
