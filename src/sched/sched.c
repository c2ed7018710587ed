/* SPDX-License-Identifier: BSD-3-Clause */
/* Scheduler threads: start/stop, the worker loop, finding work, idling. */
#include <hwloc.h>
#include <sched.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/error_internal.h"
#include "base/env.h"
#include "sched/futex.h"
#include "sched/sched.h"

#ifdef DISCO_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef DISCO_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define DEFAULT_STACK_SIZE (256 * 1024)
#define SPIN_ROUNDS 256    /* idle polls before a worker sleeps */
#define BUSY_POLL_EVERY 64 /* tasks run between network polls when busy */
/* A worker sleeping while threads outside the scheduler drive the network
 * (see disco__sched_foreign_spin) wakes this often to see whether they
 * still do; if not, it takes the network over. */
#define FOREIGN_LEASE_NS 1000000
#define INJECT_EVERY 61    /* check the injection queue for fairness */
#define CLOCK_EVERY 16     /* spinning rounds per look at the clock */

static struct {
    pthread_mutex_t lock; /* start/stop only */
    atomic_bool running;
    atomic_bool stopping;
    unsigned n;
    disco__worker *workers;
    disco__inject inject;
    size_t stack_size;
    bool bind;
    hwloc_topology_t topo;
    /* Idle workers sleep on epoch; a producer bumps it to wake one.
     * `searching` counts workers spinning for work: while one spins, a
     * producer need not wake a sleeper (and pay a futex syscall). */
    _Alignas(64) _Atomic uint32_t epoch;
    _Atomic unsigned sleepers;
    _Atomic unsigned searching;
    /* membarrier(2) works here: the rare side of the wake-up pairing (a
     * worker going to sleep) pays for the barrier, the hot side (every
     * spawn) needs none. */
    bool heavy_barrier;
    _Alignas(64) _Atomic int64_t foreign_spawned;
    /* Network progress (see disco__sched_set_progress): one worker at a
     * time runs it; progress_blocked says one is waiting inside it. */
    _Alignas(64) _Atomic(const disco__progress_hook *) progress;
    disco__spin progress_lock;
    atomic_bool progress_blocked;
    /* DISCO_PROGRESS (see disco/rpc.h) and the adaptive spin budget. */
    int mode;
    uint64_t spin_ns;
    /* Threads outside the scheduler polling the network while they wait,
     * and when the last one stopped (its lease, FOREIGN_LEASE_NS). */
    _Atomic unsigned foreign_pollers;
    _Atomic uint64_t foreign_until;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

enum { PROGRESS_ADAPTIVE, PROGRESS_POLL, PROGRESS_BLOCK };

void disco__sched_set_progress(const disco__progress_hook *hook)
{
    const disco__progress_hook *old =
        atomic_exchange_explicit(&S.progress, hook, memory_order_acq_rel);
    /* Sleeping workers wake up so that one of them sleeps in the new poll;
     * one sleeping in the old poll is interrupted. */
    atomic_fetch_add_explicit(&S.epoch, 1, memory_order_release);
    disco__futex_wake(&S.epoch, INT32_MAX);
    if (old)
        old->interrupt(old->arg);
    /* Unhooking: wait until no worker is inside the old hook. */
    if (!hook) {
        disco__spin_lock(&S.progress_lock);
        disco__spin_unlock(&S.progress_lock);
    }
}

/* Polls the network if no other worker is doing it. timeout_ms as for the
 * hook's poll. Returns false when it did not get to run it. */
static bool run_progress(int timeout_ms)
{
    const disco__progress_hook *h =
        atomic_load_explicit(&S.progress, memory_order_acquire);
    if (!h || !disco__spin_trylock(&S.progress_lock))
        return false;
    h = atomic_load_explicit(&S.progress, memory_order_acquire);
    if (h) {
        if (timeout_ms != 0)
            atomic_store(&S.progress_blocked, true);
        h->poll(h->arg, timeout_ms);
        if (timeout_ms != 0)
            atomic_store(&S.progress_blocked, false);
    }
    disco__spin_unlock(&S.progress_lock);
    return h != NULL;
}

static DISCO__TLS disco__worker *tls_worker;
DISCO__TLS unsigned disco__held_bits;
static void (*_Atomic held_flush)(void);

void disco__sched_set_held_flush(void (*flush)(void))
{
    atomic_store_explicit(&held_flush, flush, memory_order_release);
}

void disco__held_flush_now(void)
{
    void (*flush)(void) = atomic_load_explicit(&held_flush, memory_order_acquire);
    if (flush)
        flush();
    else
        disco__held_bits = 0;
}
static DISCO__TLS disco_error *tls_error; /* last error outside tasks */
static DISCO__TLS bool tls_error_registered;
static pthread_key_t error_key;
static pthread_once_t error_key_once = PTHREAD_ONCE_INIT;

#if defined(__SANITIZE_THREAD__)
_Atomic int disco__fence_word;
#endif

/* Frees a foreign thread's last error when the thread exits. */
static void free_thread_error(void *unused)
{
    (void)unused;
    disco_error_free(tls_error);
    tls_error = NULL;
}

static void make_error_key(void) { pthread_key_create(&error_key, free_thread_error); }

__attribute__((noinline)) disco__worker *disco__self(void)
{
    /* The empty asm keeps the compiler from caching the TLS address across
     * calls in inlined callers: a task may move to another thread. */
    __asm__ __volatile__("" ::: "memory");
    return tls_worker;
}

disco_error **disco__error_slot(void)
{
    disco__worker *w = disco__self();
    if (w && w->current)
        return &w->current->err;
    if (!tls_error_registered) {
        pthread_once(&error_key_once, make_error_key);
        pthread_setspecific(error_key, &tls_error); /* non-NULL: run the destructor */
        tls_error_registered = true;
    }
    return &tls_error;
}

disco_task *disco_current_task(void)
{
    disco__worker *w = disco__self();
    return w ? w->current : NULL;
}

size_t disco__default_stack_size(void) { return S.stack_size; }

void disco__count_foreign_spawn(int delta)
{
    atomic_fetch_add_explicit(&S.foreign_spawned, delta, memory_order_relaxed);
}

int64_t disco__tasks_live(void)
{
    int64_t live = atomic_load_explicit(&S.foreign_spawned, memory_order_relaxed);
    for (unsigned i = 0; i < S.n; i++)
        live += (int64_t)(atomic_load(&S.workers[i].spawned) -
                          atomic_load(&S.workers[i].finished));
    return live;
}

/* Wakes one sleeping worker if there is one. Called after new work became
 * visible. */
static void wake_one(void)
{
    /* Pairs with the decrement of searching and the barrier in worker_idle:
     * either that worker's re-check sees our work, or we see it as a
     * sleeper here (no longer searching) and wake it. With membarrier the
     * sleeper's barrier covers us and a compiler barrier is enough. */
    if (S.heavy_barrier)
        __asm__ __volatile__("" ::: "memory");
    else
        disco__fence_seq_cst();
    if (atomic_load_explicit(&S.searching, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&S.sleepers, memory_order_relaxed) > 0) {
        atomic_fetch_add_explicit(&S.epoch, 1, memory_order_release);
        disco__futex_wake(&S.epoch, 1);
        /* The sleeper may be the one waiting for network events. */
        if (atomic_load_explicit(&S.progress_blocked, memory_order_relaxed)) {
            const disco__progress_hook *h =
                atomic_load_explicit(&S.progress, memory_order_acquire);
            if (h)
                h->interrupt(h->arg);
        }
    }
}

void disco__schedule(disco_task *t) { disco__schedule_on(disco__self(), t); }

void disco__schedule_on(disco__worker *w, disco_task *t)
{
    if (w) {
        if (disco__deque_push(&w->deque, t) != 0)
            disco__inject_push(&S.inject, t); /* deque could not grow */
    } else {
        disco__inject_push(&S.inject, t);
    }
    wake_one();
}

void disco__schedule_fifo(disco_task *t)
{
    disco__worker *w = disco__self();
    /* A worker must not wait for room in the queue it drains itself: when
     * the queue is full the task goes on its deque (out of order, but run). */
    if (!w)
        disco__inject_push(&S.inject, t);
    else if (!disco__inject_try_push(&S.inject, t))
        disco__schedule_on(w, t);
    wake_one();
}

void disco__schedule_woken(disco_task *t)
{
    disco__worker *w = disco__self();
    if (!w || !w->current) {
        disco__schedule_on(w, t);
        return;
    }
    /* release: publishes t to whoever takes it from the slot (the owner's
     * exchange or a thief's CAS, both acquire). */
    disco_task *old = atomic_exchange_explicit(&w->next, t, memory_order_acq_rel);
    atomic_store_explicit(&w->next_gen,
                          atomic_load_explicit(&w->next_gen, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (old) /* displaced: it queues like any runnable task */
        disco__schedule_on(w, old);
}

/* How many consecutive looks at the same task in a victim's next slot
 * before a thief takes it (each look is one round of the search loop, some
 * hundred nanoseconds): long enough for the waker to park and its worker to
 * run the task itself, short enough that a waker that keeps computing does
 * not hold it back for long. */
#define NEXT_PATIENCE 32

static disco_task *steal_next(disco__worker *w, disco__worker *v)
{
    disco_task *t = atomic_load_explicit(&v->next, memory_order_acquire);
    uint32_t gen = atomic_load_explicit(&v->next_gen, memory_order_relaxed);
    if (!t)
        return NULL;
    if (t != w->probe_task || gen != w->probe_gen) {
        w->probe_task = t;
        w->probe_gen = gen;
        w->probe_count = 0;
    }
    if (++w->probe_count < NEXT_PATIENCE)
        return NULL;
    w->probe_task = NULL;
    /* acquire on success: pairs with the exchange in disco__schedule_woken. */
    if (atomic_compare_exchange_strong_explicit(&v->next, &t, NULL,
                                                memory_order_acquire,
                                                memory_order_relaxed))
        return t;
    return NULL;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static disco_task *steal_any(disco__worker *w)
{
    if (S.n < 2)
        return NULL;
    unsigned start = (unsigned)(xorshift(&w->rng) % S.n);
    for (unsigned k = 0; k < S.n; k++) {
        disco__worker *v = &S.workers[(start + k) % S.n];
        if (v == w)
            continue;
        void *t;
        while ((t = disco__deque_steal(&v->deque)) == DISCO__DEQUE_ABORT)
            disco__cpu_relax();
        if (t)
            return t;
    }
    for (unsigned k = 0; k < S.n; k++) {
        disco__worker *v = &S.workers[(start + k) % S.n];
        void *t;
        if (v != w && (t = steal_next(w, v)))
            return t;
    }
    return NULL;
}

static disco_task *find_work(disco__worker *w)
{
    disco_task *t;
    if (atomic_load_explicit(&w->next, memory_order_relaxed) &&
        (t = atomic_exchange_explicit(&w->next, NULL, memory_order_acquire)))
        return t;
    if (--w->tick == 0) { /* now and then the injection queue goes first */
        w->tick = INJECT_EVERY;
        if ((t = disco__inject_try_pop(&S.inject)))
            return t;
    }
    if ((t = disco__deque_pop(&w->deque)))
        return t;
    if (disco__timer_next() != UINT64_MAX &&
        disco__timer_run_due(disco__now_ns()) &&
        (t = disco__deque_pop(&w->deque)))
        return t;
    if ((t = disco__inject_try_pop(&S.inject)))
        return t;
    return steal_any(w);
}

static bool work_visible(void)
{
    if (!disco__inject_empty(&S.inject))
        return true;
    for (unsigned i = 0; i < S.n; i++)
        if (!disco__deque_empty(&S.workers[i].deque) ||
            atomic_load_explicit(&S.workers[i].next, memory_order_relaxed))
            return true;
    return disco__timer_next() <= disco__now_ns();
}

static bool foreign_polling(void)
{
    return atomic_load_explicit(&S.foreign_pollers, memory_order_relaxed) ||
           atomic_load_explicit(&S.foreign_until, memory_order_relaxed) > disco__now_ns();
}

bool disco__sched_foreign_spin(_Atomic uint32_t *signal)
{
    const disco__progress_hook *h = atomic_load_explicit(&S.progress, memory_order_acquire);
    if (!h || S.mode == PROGRESS_BLOCK)
        return false;
    atomic_fetch_add_explicit(&S.foreign_pollers, 1, memory_order_seq_cst);
    /* A worker asleep in the network poll would keep us out of it. */
    if (atomic_load_explicit(&S.progress_blocked, memory_order_seq_cst))
        h->interrupt(h->arg);
    uint64_t now = 0, deadline = UINT64_MAX;
    bool got;
    unsigned rounds = 0;
    /* The clock is read on the first round and every CLOCK_EVERY rounds
     * after (a read costs about what a shared-memory poll does on this
     * kind of machine), not once the signal came: the lease below starts
     * at the last reading, at most that many rounds old. */
    while (!(got = atomic_load_explicit(signal, memory_order_acquire))) {
        if (++rounds % CLOCK_EVERY == 1) {
            now = disco__now_ns();
            if (rounds == 1 && S.mode != PROGRESS_POLL)
                deadline = now + S.spin_ns;
            if (now >= deadline)
                break;
        }
        run_progress(0);
        if (atomic_load_explicit(signal, memory_order_acquire))
            continue; /* this poll brought it: no pause before taking it */
        disco__cpu_relax();
        if (rounds % 256 == 0) /* as in worker_main's spin */
            sched_yield();
    }
    if (got) /* the workers leave the network to us a while longer */
        atomic_store_explicit(&S.foreign_until, (now ? now : disco__now_ns()) + FOREIGN_LEASE_NS,
                              memory_order_relaxed);
    else /* hand it back: a worker must sleep in the poll for us */
        atomic_store_explicit(&S.foreign_until, 0, memory_order_relaxed);
    atomic_fetch_sub_explicit(&S.foreign_pollers, 1, memory_order_seq_cst);
    if (!got) {
        atomic_fetch_add_explicit(&S.epoch, 1, memory_order_release);
        disco__futex_wake(&S.epoch, 1);
    }
    return got;
}

void disco__sched_poll_network(void)
{
    run_progress(0);
}

/* Called by a searching worker that found nothing for a while: it stops
 * searching and sleeps until woken or the next timer is due. */
static void worker_idle(void)
{
    uint32_t epoch = atomic_load_explicit(&S.epoch, memory_order_acquire);
    atomic_fetch_add_explicit(&S.sleepers, 1, memory_order_seq_cst);
    /* seq_cst: pairs with wake_one (see there). */
    atomic_fetch_sub_explicit(&S.searching, 1, memory_order_seq_cst);
    if (S.heavy_barrier)
        syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    if (!work_visible() && !atomic_load(&S.stopping)) {
        uint64_t next = disco__timer_next(), timeout = UINT64_MAX;
        if (next != UINT64_MAX) {
            uint64_t now = disco__now_ns();
            timeout = next > now ? next - now : 0;
        }
        /* Sleep in the network poll if nobody else does, so that a
         * message wakes us; else on the futex. While a thread outside the
         * scheduler polls the network, leave it to that thread (a sleeper
         * in epoll_wait would hold the poll) and look again later. */
        int ms = timeout == UINT64_MAX ? -1 : (int)((timeout + 999999) / 1000000);
        if (foreign_polling()) {
            /* Until the lease runs out with no renewal: a lease renewed
             * (the foreign thread is still at it) is no reason to spin. */
            do {
                disco__futex_wait(&S.epoch, epoch,
                                  timeout < FOREIGN_LEASE_NS ? timeout : FOREIGN_LEASE_NS);
                if (timeout != UINT64_MAX || atomic_load(&S.stopping))
                    break;
            } while (foreign_polling() && !work_visible() &&
                     atomic_load_explicit(&S.epoch, memory_order_acquire) == epoch);
        } else if (timeout && !run_progress(ms)) {
            disco__futex_wait(&S.epoch, epoch, timeout);
        }
    }
    atomic_fetch_add_explicit(&S.searching, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&S.sleepers, 1, memory_order_relaxed);
}

/* Binds worker w's thread to the w->index-th core of the process's cpuset,
 * cycling. Called by the thread that starts the workers, while it holds
 * the topology. */
static void bind_worker(disco__worker *w)
{
    if (!S.bind || !S.topo)
        return;
    hwloc_cpuset_t set = hwloc_bitmap_alloc();
    if (!set)
        return;
    if (hwloc_get_cpubind(S.topo, set, HWLOC_CPUBIND_PROCESS) == 0) {
        int ncores = hwloc_get_nbobjs_inside_cpuset_by_type(S.topo, set,
                                                            HWLOC_OBJ_CORE);
        if (ncores > 0) {
            hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(
                S.topo, set, HWLOC_OBJ_CORE, w->index % (unsigned)ncores);
            if (core && core->cpuset)
                hwloc_set_thread_cpubind(S.topo, w->thread, core->cpuset, 0);
        }
    }
    hwloc_bitmap_free(set);
}

/* Whether an idle worker keeps spinning (polling the network) after idle
 * rounds since idle_since, by the progress policy. Without a network the
 * spin is for stealing work only: a fixed number of rounds. */
static bool spin_more(unsigned idle, uint64_t idle_since)
{
    /* The clock is read every CLOCK_EVERY rounds only: a read costs about
     * what a shared-memory poll does on this kind of machine. */
    uint64_t now = idle % CLOCK_EVERY == 1 ? disco__now_ns() : 0;
    if (!atomic_load_explicit(&S.progress, memory_order_relaxed) ||
        atomic_load_explicit(&S.foreign_pollers, memory_order_relaxed) ||
        (now && atomic_load_explicit(&S.foreign_until, memory_order_relaxed) > now))
        return idle < SPIN_ROUNDS;
    switch (S.mode) {
    case PROGRESS_POLL:
        return !atomic_load_explicit(&S.stopping, memory_order_relaxed);
    case PROGRESS_BLOCK:
        return false;
    default:
        return idle < SPIN_ROUNDS || !now || now - idle_since < S.spin_ns;
    }
}

/* DISCO_PROGRESS and DISCO_SPIN_US (see disco/rpc.h). */
static void read_progress_policy(void)
{
    const char *m = getenv("DISCO_PROGRESS");
    S.mode = PROGRESS_ADAPTIVE;
    if (m && !strcmp(m, "poll"))
        S.mode = PROGRESS_POLL;
    else if (m && !strcmp(m, "block"))
        S.mode = PROGRESS_BLOCK;
    else if (m && *m && strcmp(m, "adaptive"))
        fprintf(stderr, "disco: ignoring DISCO_PROGRESS=%s (poll, adaptive or block)\n", m);
    long us = disco__env_long("DISCO_SPIN_US", 100);
    S.spin_ns = us > 0 ? (uint64_t)us * 1000u : 0;
}

static void *worker_main(void *arg)
{
    disco__worker *w = arg;
    tls_worker = w;
    disco__stack_guard_thread_init();
#ifdef DISCO_ASAN
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lo;
        pthread_attr_getstack(&attr, &lo, &w->stack_size);
        w->stack_lo = lo;
        pthread_attr_destroy(&attr);
    }
#endif
#ifdef DISCO_TSAN
    w->tsan_fiber = __tsan_get_current_fiber();
#endif
    unsigned idle = 0, busy = 0;
    uint64_t idle_since = 0;
    bool searching = false;
    for (;;) {
        disco_task *t = find_work(w);
        /* Busy workers still read the network now and then: a task that
         * yields in a loop must not keep messages (an interrupt for it)
         * from arriving. */
        if (t && ++busy == BUSY_POLL_EVERY) {
            busy = 0;
            if (disco__held_bits) /* a busy worker's answers go now and then too */
                disco__held_flush_now();
            run_progress(0);
        }
        if (t) {
            /* The last searcher to find work wakes a sleeper to take over
             * the search: there may be more where this came from. */
            if (searching &&
                atomic_fetch_sub_explicit(&S.searching, 1, memory_order_seq_cst) == 1)
                wake_one();
            searching = false;
            idle = 0;
            disco__task_run(w, t);
            continue;
        }
        if (w->done_count) /* nothing to run: hand in what we counted */
            disco__sync_flush(w);
        if (disco__held_bits) /* and send what the tasks held back */
            disco__held_flush_now();
        if (atomic_load_explicit(&S.stopping, memory_order_acquire))
            break;
        if (!searching) {
            searching = true;
            atomic_fetch_add_explicit(&S.searching, 1, memory_order_seq_cst);
        }
        if (idle++ == 0)
            idle_since = disco__now_ns();
        if (spin_more(idle, idle_since)) {
            if (!run_progress(0))
                disco__cpu_relax();
            /* Spinning must not starve a thread that has real work on this
             * core (more spinners than cores: a worker per core and the
             * caller): let it run now and then. */
            if (idle % 256 == 0)
                sched_yield();
        } else {
            worker_idle(); /* returns searching again */
            idle = 0;
        }
    }
    if (searching)
        atomic_fetch_sub_explicit(&S.searching, 1, memory_order_relaxed);
    disco__stack_guard_thread_fini();
    tls_worker = NULL;
    return NULL;
}

static unsigned default_nthreads(void)
{
    long env = disco__env_long("DISCO_THREADS", 0);
    if (env > 0)
        return (unsigned)env;
    int n = 0;
    if (S.topo) {
        hwloc_cpuset_t set = hwloc_bitmap_alloc();
        if (set && hwloc_get_cpubind(S.topo, set, HWLOC_CPUBIND_PROCESS) == 0)
            n = hwloc_get_nbobjs_inside_cpuset_by_type(S.topo, set,
                                                       HWLOC_OBJ_CORE);
        hwloc_bitmap_free(set);
    }
    return n > 0 ? (unsigned)n : 1;
}

static int start_locked(unsigned n)
{
    int rc = DISCO_ENOMEM;
    /* Without a topology the scheduler still runs: one thread, unbound. */
    if (hwloc_topology_init(&S.topo) != 0) {
        S.topo = NULL;
    } else if (hwloc_topology_load(S.topo) != 0) {
        hwloc_topology_destroy(S.topo);
        S.topo = NULL;
    }
    if (!n)
        n = default_nthreads();
    S.stack_size = (size_t)disco__env_long("DISCO_STACK_SIZE", DEFAULT_STACK_SIZE);
    if (S.stack_size < 16 * 1024)
        S.stack_size = 16 * 1024;
    S.bind = disco__env_long("DISCO_BIND", 1) != 0;
    read_progress_policy();
    long mb = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    S.heavy_barrier =
        mb > 0 && (mb & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    S.workers = calloc(n, sizeof(*S.workers));
    if (!S.workers || disco__inject_init(&S.inject, 16) != 0)
        goto fail;
    S.n = n;
    for (unsigned i = 0; i < n; i++) {
        disco__worker *w = &S.workers[i];
        w->index = i;
        w->rng = 0x9e3779b97f4a7c15ull * (i + 1);
        w->tick = INJECT_EVERY;
        if (disco__deque_init(&w->deque, 10) != 0) {
            S.n = i;
            goto fail_workers;
        }
    }
    atomic_store(&S.stopping, false);
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&S.workers[i].thread, NULL, worker_main,
                           &S.workers[i]) != 0) {
            rc = DISCO_ESYS;
            atomic_store(&S.stopping, true);
            for (unsigned j = 0; j < i; j++)
                pthread_join(S.workers[j].thread, NULL);
            goto fail_workers;
        }
    }
    for (unsigned i = 0; i < n; i++)
        bind_worker(&S.workers[i]);
    /* The topology is only needed to size and bind: free its megabytes. */
    if (S.topo)
        hwloc_topology_destroy(S.topo);
    S.topo = NULL;
    atomic_store_explicit(&S.running, true, memory_order_release);
    return 0;
fail_workers:
    for (unsigned i = 0; i < S.n; i++)
        disco__deque_fini(&S.workers[i].deque);
    disco__inject_fini(&S.inject);
fail:
    free(S.workers);
    S.workers = NULL;
    S.n = 0;
    if (S.topo)
        hwloc_topology_destroy(S.topo);
    S.topo = NULL;
    return disco_error_set(rc, "cannot start the scheduler: %s",
                           rc == DISCO_ESYS ? "pthread_create failed"
                                            : "out of memory");
}

int disco_sched_start(unsigned nthreads)
{
    pthread_mutex_lock(&S.lock);
    int rc = atomic_load(&S.running) ? DISCO_EBUSY : start_locked(nthreads);
    pthread_mutex_unlock(&S.lock);
    return rc;
}

int disco__sched_ensure(void)
{
    /* acquire: pairs with the release store of running in start_locked. */
    if (atomic_load_explicit(&S.running, memory_order_acquire))
        return 0;
    pthread_mutex_lock(&S.lock);
    int rc = atomic_load(&S.running) ? 0 : start_locked(0);
    pthread_mutex_unlock(&S.lock);
    return rc;
}

int disco_sched_stop(void)
{
    if (disco__self())
        return disco_error_set(DISCO_ESTATE,
                               "disco_sched_stop called from a scheduler thread");
    pthread_mutex_lock(&S.lock);
    if (!atomic_load(&S.running)) {
        pthread_mutex_unlock(&S.lock);
        return 0;
    }
    int64_t live = disco__tasks_live();
    if (live != 0) {
        pthread_mutex_unlock(&S.lock);
        return disco_error_set(DISCO_EBUSY,
                               "disco_sched_stop: %lld tasks still live",
                               (long long)live);
    }
    atomic_store_explicit(&S.stopping, true, memory_order_release);
    atomic_fetch_add(&S.epoch, 1);
    disco__futex_wake(&S.epoch, (int)S.n);
    const disco__progress_hook *h = atomic_load(&S.progress);
    if (h)
        h->interrupt(h->arg);
    for (unsigned i = 0; i < S.n; i++)
        pthread_join(S.workers[i].thread, NULL);
    for (unsigned i = 0; i < S.n; i++) {
        disco__worker_drain_caches(&S.workers[i]);
        disco__deque_fini(&S.workers[i].deque);
    }
    disco__inject_fini(&S.inject);
    disco__task_depot_drain();
    disco__timer_fini();
    free(S.workers);
    S.workers = NULL;
    S.n = 0;
    atomic_store(&S.foreign_spawned, 0);
    atomic_store(&S.running, false);
    pthread_mutex_unlock(&S.lock);
    return 0;
}

unsigned disco_sched_nthreads(void)
{
    disco__sched_ensure(); /* on failure S.n stays 0, which says it */
    return S.n;
}

/* Requeue after a yield: behind everything already waiting. */
void disco__schedule_yield(disco_task *t)
{
    disco__inject_push(&S.inject, t);
}
