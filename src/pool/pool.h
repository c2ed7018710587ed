/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Pools inside libdisco (see disco/pool.h).
 *
 * A closure call on the wire: the registered internal function
 * "disco.closure_call" (or "disco.pmap_batch") whose first CLOSURE_HEAD
 * arguments say what to run and with which captured values:
 *   [0] the function's wire id (I64)
 *   [1] a cache key (I64 array: owner pid, pool id, generation, closure id)
 *       or nil when the captured values are not cached
 *   [2] the captured values (a list) or nil when the worker has them cached
 * The worker caches (key -> captured values) when both come; a call with
 * the key alone finds them there.
 */
#ifndef DISCO_POOL_POOL_H
#define DISCO_POOL_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "disco/channel.h"
#include "disco/pool.h"

enum { CLOSURE_HEAD = 3, CACHE_KEY_LEN = 4 };

/* A member of a pool, present or past (its stats stay). */
typedef struct disco__member {
    int pid;
    bool active;         /* still a member */
    bool queued;         /* its pid is in the idle channel */
    disco_pool_stats stats;
    uint64_t *cached;    /* CachingPool: closure ids cached on it */
    size_t ncached, capcached;
} disco__member;

struct disco_pool {
    struct disco_pool *next; /* every live pool, for the peer observer */
    pthread_mutex_t lock;    /* members (short visits, never held to wait) */
    disco__member *m;
    size_t n, cap;
    int nactive;
    disco_channel *idle; /* pids of idle members; 0 wakes a taker to look again */
    bool caching;
    bool is_default;
    uint64_t id;         /* in cache keys */
    uint64_t generation; /* CachingPool: bumped by disco_clear */
    /* Workers still to be handed back by a task once their calls finish
     * (pool_call.c): disco_pool_free waits for them. */
    atomic_size_t givebacks;
};

struct disco_closure {
    disco_function fn;
    uint64_t fn_id;
    uint64_t id;             /* unique in this process */
    disco_value captured;    /* an owned list */
    uint64_t captured_bytes; /* its encoded size */
};

/* The member record of pid, or NULL (pool lock held). */
disco__member *disco__pool_member_locked(disco_pool *pool, int pid);

/* Starts fn (or closure c, when not NULL) with args on pid, a worker taken
 * from pool, and returns its future (NULL with the last error set). Counts
 * the call and any captured bytes sent in the pool's stats. */
disco_future *disco__pool_start(disco_pool *pool, int pid, disco_function fn,
                                const disco_closure *c, const disco_value *args,
                                size_t nargs);

/* Gives pid, taken from pool, back once the calls of the n futures fs
 * (retained meanwhile) have finished: at once if they have, else from a
 * task that waits for them. Callable from a task that was interrupted. */
void disco__pool_put_when_done(disco_pool *pool, int pid, disco_future *const *fs, size_t n);

/* Fills head[CLOSURE_HEAD] for a call of c (or plain fn when c is NULL)
 * on pid through pool; *key is storage for the key array. *sent_bytes
 * tells whether (how many) captured bytes go with it. */
void disco__pool_closure_head(disco_pool *pool, int pid, disco_function fn,
                              const disco_closure *c, disco_value head[CLOSURE_HEAD],
                              int64_t key[CACHE_KEY_LEN], uint64_t *sent_bytes);

/* After a call to pid was sent: counts it and, when sent_bytes, notes the
 * closure as cached there. */
void disco__pool_note_sent(disco_pool *pool, int pid, const disco_closure *c,
                           uint64_t sent_bytes);

/* Worker side: resolves a call's head into the function and the captured
 * values (borrowed until disco__closure_done(*ref)). 0 or an error. */
typedef struct disco__cached disco__cached;
int disco__closure_resolve(disco_value *head, disco_function *fn,
                           const disco_value **captured, size_t *ncaptured,
                           disco__cached **ref);
void disco__closure_done(disco__cached *ref);

/* Runs fn(captured..., args...) into *result. */
int disco__closure_invoke(disco_function fn, const disco_value *captured, size_t ncaptured,
                          const disco_value *args, size_t nargs, disco_value *result);

/* The internal functions (registered at load time). */
int disco__closure_call(const disco_value *args, size_t nargs, disco_value *result);
int disco__pmap_batch(const disco_value *args, size_t nargs, disco_value *result);

/* True when pid can be called: this process or a ready peer. */
bool disco__pool_alive(int pid);

#endif
