/* SPDX-License-Identifier: BSD-3-Clause */
/* Local channels: capacity, blocking, close, fetch/wait, many producers and
 * consumers across tasks and foreign threads, in every mode, and tasks
 * interrupted while they wait on them. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "disco.h"
#include "sched/interrupt.h"
#include "sched/sched.h"
#include "test_util.h"

struct op {
    disco_channel *ch;
    long value;
    int rc;
    atomic_bool done;
};

static int put_task(void *arg, void **result)
{
    (void)result;
    struct op *o = arg;
    o->rc = disco_put(o->ch, &o->value);
    atomic_store(&o->done, true);
    return 0;
}

static int take_task(void *arg, void **result)
{
    (void)result;
    struct op *o = arg;
    o->rc = disco_take(o->ch, &o->value);
    atomic_store(&o->done, true);
    return 0;
}

static int wait_task(void *arg, void **result)
{
    (void)result;
    struct op *o = arg;
    o->rc = disco_wait(o->ch);
    atomic_store(&o->done, true);
    return 0;
}

/* Gives a blocked task ample time to (wrongly) finish. */
static void settle(void) { disco_sleep(0.03); }

static void test_bad_arguments(void **state)
{
    (void)state;
    assert_null(disco_channel_new(0, 4));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
    long x = 0;
    assert_int_equal(disco_put(NULL, &x), DISCO_EINVAL);
    assert_int_equal(disco_take(NULL, &x), DISCO_EINVAL);
    assert_int_equal(disco_close(NULL), DISCO_EINVAL);
    assert_int_equal(disco_wait(NULL), DISCO_EINVAL);
    assert_int_equal(disco_fetch(NULL, &x), DISCO_EINVAL);
    disco_channel *ch = disco_channel_new(sizeof(long), 3);
    assert_int_equal(disco_channel_capacity(ch), 3);
    assert_int_equal(disco_channel_elem_size(ch), sizeof(long));
    assert_int_equal(disco_put(ch, NULL), DISCO_EINVAL);
    disco_channel_free(ch);
    disco_channel_free(NULL);
}

static void test_bounded_blocks_when_full(void **state)
{
    (void)state;
    disco_channel *ch = disco_channel_new(sizeof(long), 3);
    assert_false(disco_isready(ch));
    for (long i = 0; i < 3; i++)
        assert_int_equal(disco_put(ch, &i), 0); /* main thread, no wait */
    assert_true(disco_isready(ch));
    struct op o = {.ch = ch, .value = 3};
    disco_task *t = disco_async(put_task, &o);
    settle();
    assert_false(atomic_load(&o.done)); /* a fourth item does not fit */
    long v = -1;
    assert_int_equal(disco_fetch(ch, &v), 0);
    assert_int_equal(v, 0); /* fetch peeks */
    assert_int_equal(disco_take(ch, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(disco_task_join(t, NULL), 0);
    assert_int_equal(o.rc, 0);
    for (long i = 1; i <= 3; i++) {
        assert_int_equal(disco_take(ch, &v), 0);
        assert_int_equal(v, i);
    }
    assert_false(disco_isready(ch));
    disco_channel_free(ch);
}

static void test_take_blocks_when_empty(void **state)
{
    (void)state;
    size_t caps[] = {1, 16, DISCO_CHANNEL_UNBOUNDED};
    for (size_t k = 0; k < 3; k++) {
        disco_channel *ch = disco_channel_new(sizeof(long), caps[k]);
        struct op taker = {.ch = ch}, waiter = {.ch = ch};
        /* wait blocks until an item is there, and leaves it. */
        disco_task *w = disco_async(wait_task, &waiter);
        settle();
        assert_false(atomic_load(&waiter.done));
        long v = 77;
        assert_int_equal(disco_put(ch, &v), 0);
        assert_int_equal(disco_task_join(w, NULL), 0);
        assert_int_equal(waiter.rc, 0);
        assert_true(disco_isready(ch));
        assert_int_equal(disco_take(ch, &v), 0);
        /* take blocks until an item is there. */
        disco_task *t = disco_async(take_task, &taker);
        settle();
        assert_false(atomic_load(&taker.done));
        v = 78;
        assert_int_equal(disco_put(ch, &v), 0);
        assert_int_equal(disco_task_join(t, NULL), 0);
        assert_int_equal(taker.rc, 0);
        assert_int_equal(taker.value, 78);
        disco_channel_free(ch);
    }
}

static void test_unbuffered_rendezvous(void **state)
{
    (void)state;
    disco_channel *ch = disco_channel_new(sizeof(long), 0);
    assert_false(disco_isready(ch));
    struct op o = {.ch = ch, .value = 5};
    disco_task *t = disco_async(put_task, &o);
    settle();
    assert_false(atomic_load(&o.done)); /* nobody has taken it yet */
    assert_true(disco_isready(ch));
    assert_int_equal(disco_wait(ch), 0);
    long v = 0;
    assert_int_equal(disco_fetch(ch, &v), 0);
    assert_int_equal(v, 5);
    settle();
    assert_false(atomic_load(&o.done)); /* fetch does not complete a put */
    assert_int_equal(disco_take(ch, &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(disco_task_join(t, NULL), 0);
    assert_int_equal(o.rc, 0);
    /* Taker first: the put finds it and returns at once. */
    struct op tk = {.ch = ch};
    t = disco_async(take_task, &tk);
    settle();
    v = 6;
    assert_int_equal(disco_put(ch, &v), 0);
    assert_int_equal(disco_task_join(t, NULL), 0);
    assert_int_equal(tk.value, 6);
    disco_channel_free(ch);
}

static void test_unbounded_never_blocks(void **state)
{
    (void)state;
    disco_channel *ch = disco_channel_new(sizeof(long), DISCO_CHANNEL_UNBOUNDED);
    long n = test_scaled(100000);
    for (long i = 0; i < n; i++)
        assert_int_equal(disco_put(ch, &i), 0);
    long v;
    assert_int_equal(disco_fetch(ch, &v), 0);
    assert_int_equal(v, 0);
    for (long i = 0; i < n; i++) {
        assert_int_equal(disco_take(ch, &v), 0);
        assert_int_equal(v, i);
    }
    assert_false(disco_isready(ch));
    disco_channel_free(ch);
}

static void check_close(size_t cap)
{
    disco_channel *ch = disco_channel_new(sizeof(long), cap);
    assert_true(disco_isopen(ch));
    long v = 1;
    if (cap >= 2) { /* items put before close are still taken */
        assert_int_equal(disco_put(ch, &v), 0);
        v = 2;
        assert_int_equal(disco_put(ch, &v), 0);
    }
    struct op t1 = {.ch = ch}, t2 = {.ch = ch}, w = {.ch = ch};
    disco_task *a = NULL, *b = NULL, *c = NULL;
    if (cap < 2) { /* empty: takers and a waiter block, then close wakes them */
        a = disco_async(take_task, &t1);
        b = disco_async(take_task, &t2);
        c = disco_async(wait_task, &w);
        settle();
    }
    assert_int_equal(disco_close(ch), 0);
    assert_int_equal(disco_close(ch), 0); /* idempotent */
    assert_false(disco_isopen(ch));
    v = 3;
    assert_int_equal(disco_put(ch, &v), DISCO_ECLOSED);
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_ECLOSED);
    if (cap >= 2) {
        assert_int_equal(disco_take(ch, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(disco_wait(ch), 0);
        assert_int_equal(disco_take(ch, &v), 0);
        assert_int_equal(v, 2);
    } else {
        assert_int_equal(disco_task_join(a, NULL), 0);
        assert_int_equal(disco_task_join(b, NULL), 0);
        assert_int_equal(disco_task_join(c, NULL), 0);
        assert_int_equal(t1.rc, DISCO_ECLOSED);
        assert_int_equal(t2.rc, DISCO_ECLOSED);
        assert_int_equal(w.rc, DISCO_ECLOSED);
    }
    assert_int_equal(disco_take(ch, &v), DISCO_ECLOSED);
    assert_int_equal(disco_fetch(ch, &v), DISCO_ECLOSED);
    assert_int_equal(disco_wait(ch), DISCO_ECLOSED);
    disco_channel_free(ch);
}

static void test_close_semantics(void **state)
{
    (void)state;
    check_close(0);
    check_close(1);
    check_close(8);
    check_close(DISCO_CHANNEL_UNBOUNDED);
}

/* A putter blocked on a full channel is woken by close with ECLOSED. */
static void test_close_wakes_blocked_putter(void **state)
{
    (void)state;
    size_t caps[] = {0, 1};
    for (int k = 0; k < 2; k++) {
        disco_channel *ch = disco_channel_new(sizeof(long), caps[k]);
        long v = 0;
        if (caps[k] == 1)
            assert_int_equal(disco_put(ch, &v), 0);
        struct op o = {.ch = ch, .value = 9};
        disco_task *t = disco_async(put_task, &o);
        settle();
        assert_false(atomic_load(&o.done));
        disco_close(ch);
        assert_int_equal(disco_task_join(t, NULL), 0);
        assert_int_equal(o.rc, DISCO_ECLOSED);
        disco_channel_free(ch);
    }
}

/* ---- many producers and consumers ---------------------------------------- */

enum { NPROD_TASKS = 4, NPROD_THREADS = 2, NCONS_TASKS = 3, NCONS_THREADS = 1 };
#define NPROD (NPROD_TASKS + NPROD_THREADS)
#define NCONS (NCONS_TASKS + NCONS_THREADS)

struct mpmc {
    disco_channel *ch;
    long per_producer;
    _Atomic unsigned char *seen;
    atomic_int order_violations;
    atomic_int errors;
};

struct prod_arg {
    struct mpmc *m;
    long id;
};

/* Items are (producer << 32 | sequence). */
static int producer(void *arg, void **result)
{
    (void)result;
    struct prod_arg *p = arg;
    for (long i = 0; i < p->m->per_producer; i++) {
        long item = (p->id << 32) | i;
        if (disco_put(p->m->ch, &item) != 0)
            atomic_fetch_add(&p->m->errors, 1);
    }
    return 0;
}

static int consumer(void *arg, void **result)
{
    (void)result;
    struct mpmc *m = arg;
    long last[NPROD];
    for (int i = 0; i < NPROD; i++)
        last[i] = -1;
    long item;
    DISCO_CHANNEL_FOREACH(m->ch, &item) {
        long prod = item >> 32, seq = item & 0xffffffff;
        if (seq <= last[prod]) /* per-producer FIFO */
            atomic_fetch_add(&m->order_violations, 1);
        last[prod] = seq;
        atomic_fetch_add(&m->seen[prod * m->per_producer + seq], 1);
    }
    return 0;
}

static void *producer_thread(void *arg)
{
    producer(arg, NULL);
    return NULL;
}

static void *consumer_thread(void *arg)
{
    consumer(arg, NULL);
    return NULL;
}

static void run_mpmc(size_t cap, long per_producer)
{
    struct mpmc m = {.per_producer = per_producer};
    m.ch = disco_channel_new(sizeof(long), cap);
    m.seen = calloc((size_t)(NPROD * per_producer), 1);
    struct prod_arg pa[NPROD];
    disco_task *prod[NPROD_TASKS], *cons[NCONS_TASKS];
    pthread_t pth[NPROD_THREADS], cth[NCONS_THREADS];
    for (int i = 0; i < NCONS_TASKS; i++)
        cons[i] = disco_async(consumer, &m);
    for (int i = 0; i < NCONS_THREADS; i++)
        pthread_create(&cth[i], NULL, consumer_thread, &m);
    for (int i = 0; i < NPROD; i++) {
        pa[i] = (struct prod_arg){&m, i};
        if (i < NPROD_TASKS)
            prod[i] = disco_async(producer, &pa[i]);
        else
            pthread_create(&pth[i - NPROD_TASKS], NULL, producer_thread, &pa[i]);
    }
    for (int i = 0; i < NPROD_TASKS; i++)
        assert_int_equal(disco_task_join(prod[i], NULL), 0);
    for (int i = 0; i < NPROD_THREADS; i++)
        pthread_join(pth[i], NULL);
    disco_close(m.ch);
    for (int i = 0; i < NCONS_TASKS; i++)
        assert_int_equal(disco_task_join(cons[i], NULL), 0);
    for (int i = 0; i < NCONS_THREADS; i++)
        pthread_join(cth[i], NULL);
    assert_int_equal(atomic_load(&m.errors), 0);
    assert_int_equal(atomic_load(&m.order_violations), 0);
    for (long i = 0; i < NPROD * per_producer; i++)
        if (m.seen[i] != 1)
            fail_msg("capacity %zu: item %ld of producer %ld seen %d times", cap,
                     i % per_producer, i / per_producer, m.seen[i]);
    free((void *)m.seen);
    disco_channel_free(m.ch);
}

static void test_mpmc_capacity_1(void **state)
{
    (void)state;
    run_mpmc(1, test_scaled(20000));
}

static void test_mpmc_capacity_7(void **state)
{
    (void)state;
    run_mpmc(7, test_scaled(50000));
}

static void test_mpmc_capacity_1024(void **state)
{
    (void)state;
    run_mpmc(1024, test_scaled(200000));
}

static void test_mpmc_unbuffered(void **state)
{
    (void)state;
    run_mpmc(0, test_scaled(10000));
}

static void test_mpmc_unbounded(void **state)
{
    (void)state;
    run_mpmc(DISCO_CHANNEL_UNBOUNDED, test_scaled(100000));
}

/* Large items are copied whole; the caller's buffer is free after put. */
static void test_large_items_are_copied(void **state)
{
    (void)state;
    enum { SZ = 1000 };
    disco_channel *ch = disco_channel_new(SZ, 2);
    char buf[SZ], out[SZ];
    memset(buf, 'a', SZ);
    assert_int_equal(disco_put(ch, buf), 0);
    memset(buf, 'b', SZ); /* overwrite after put */
    assert_int_equal(disco_put(ch, buf), 0);
    assert_int_equal(disco_take(ch, out), 0);
    for (int i = 0; i < SZ; i++)
        assert_int_equal(out[i], 'a');
    assert_int_equal(disco_take(ch, out), 0);
    assert_int_equal(out[SZ - 1], 'b');
    disco_channel_free(ch);
}

/* ---- interruption --------------------------------------------------------- */

/* Waits until t is parked, which for these task bodies means blocked in the
 * channel call under test; false after 30 s. */
static bool parked(disco_task *t)
{
    for (int i = 0; i < 30000; i++) {
        if (atomic_load(&t->state) == TASK_PARKED)
            return true;
        disco_sleep(0.001);
    }
    return false;
}

static bool task_done(void *t) { return disco_task_done(t); }

/* Interrupts t once it is blocked, then joins it (its body returns 0). */
static void interrupt_blocked(disco_task *t)
{
    assert_true(parked(t));
    disco__task_interrupt(t);
    /* A generous bound instead of a hang when an interrupt is lost. */
    assert_int_equal(disco_timedwait(task_done, t, 30, 0.001), 0);
    assert_int_equal(disco_task_join(t, NULL), 0);
}

static int fetch_task(void *arg, void **result)
{
    (void)result;
    struct op *o = arg;
    o->rc = disco_fetch(o->ch, &o->value);
    atomic_store(&o->done, true);
    return 0;
}

/* Interrupted takers, fetchers and waiters take nothing: the next item
 * goes to a taker that was not interrupted. */
static void test_interrupt_take(void **state)
{
    (void)state;
    size_t caps[] = {0, 1, 16, DISCO_CHANNEL_UNBOUNDED};
    disco_task_fn fns[] = {take_task, fetch_task, wait_task};
    for (size_t k = 0; k < 4; k++) {
        disco_channel *ch = disco_channel_new(sizeof(long), caps[k]);
        for (int f = 0; f < 3; f++) {
            struct op o = {.ch = ch, .value = -1};
            interrupt_blocked(disco_async(fns[f], &o));
            assert_int_equal(o.rc, DISCO_EINTERRUPTED);
            assert_int_equal(o.value, -1);
        }
        struct op taker = {.ch = ch};
        disco_task *t = disco_async(take_task, &taker);
        assert_true(parked(t));
        long v = 42;
        assert_int_equal(disco_put(ch, &v), 0);
        assert_int_equal(disco_task_join(t, NULL), 0);
        assert_int_equal(taker.rc, 0);
        assert_int_equal(taker.value, 42);
        assert_false(disco_isready(ch));
        disco_channel_free(ch);
    }
}

/* An interrupted put has delivered nothing. */
static void test_interrupt_put(void **state)
{
    (void)state;
    size_t caps[] = {0, 1};
    for (int k = 0; k < 2; k++) {
        disco_channel *ch = disco_channel_new(sizeof(long), caps[k]);
        long v = 1;
        if (caps[k] == 1)
            assert_int_equal(disco_put(ch, &v), 0); /* now full */
        struct op o = {.ch = ch, .value = 9};
        interrupt_blocked(disco_async(put_task, &o));
        assert_int_equal(o.rc, DISCO_EINTERRUPTED);
        if (caps[k] == 1) {
            assert_int_equal(disco_take(ch, &v), 0);
            assert_int_equal(v, 1);
        }
        assert_false(disco_isready(ch)); /* 9 is not in there */
        /* The channel works on: a put that is not interrupted arrives. */
        o = (struct op){.ch = ch, .value = 10};
        disco_task *t = disco_async(put_task, &o);
        assert_int_equal(disco_take(ch, &v), 0);
        assert_int_equal(v, 10);
        assert_int_equal(disco_task_join(t, NULL), 0);
        assert_int_equal(o.rc, 0);
        disco_channel_free(ch);
    }
}

/*
 * Interrupts under load: victim tasks take and put on a small channel while
 * steady producers and consumers (tasks and threads) keep it busy, and are
 * interrupted round after round, from the main thread or from a task.
 * Every item whose put succeeded is taken exactly once; no other is seen.
 */
enum { STEADY = 2, VICTIM_TAKERS = 4, VICTIM_PUTTERS = 2, VICTIM_PUTS = 2000 };
#define VICTIMS (VICTIM_TAKERS + VICTIM_PUTTERS)

struct stress {
    disco_channel *ch;
    long per_producer;
    atomic_long next_id;
    _Atomic unsigned char *delivered, *seen;
    atomic_int errors; /* unexpected return codes */
    atomic_int takes_interrupted, puts_interrupted;
};

static int stress_put(struct stress *s)
{
    long id = atomic_fetch_add(&s->next_id, 1);
    int rc = disco_put(s->ch, &id);
    if (rc == 0)
        atomic_store(&s->delivered[id], 1);
    return rc;
}

/* Takes until an error, which must be one of the two allowed. */
static void stress_take_all(struct stress *s, int allowed1, int allowed2)
{
    long id;
    int rc;
    while ((rc = disco_take(s->ch, &id)) == 0)
        atomic_fetch_add(&s->seen[id], 1);
    if (rc == DISCO_EINTERRUPTED)
        atomic_fetch_add(&s->takes_interrupted, 1);
    if (rc != allowed1 && rc != allowed2)
        atomic_fetch_add(&s->errors, 1);
}

static int steady_producer(void *arg, void **result)
{
    (void)result;
    struct stress *s = arg;
    for (long i = 0; i < s->per_producer; i++)
        if (stress_put(s) != 0)
            atomic_fetch_add(&s->errors, 1);
    return 0;
}

static int steady_consumer(void *arg, void **result)
{
    (void)result;
    stress_take_all(arg, DISCO_ECLOSED, DISCO_ECLOSED);
    return 0;
}

static void *steady_producer_thread(void *arg)
{
    steady_producer(arg, NULL);
    return NULL;
}

static void *steady_consumer_thread(void *arg)
{
    steady_consumer(arg, NULL);
    return NULL;
}

static int victim_taker(void *arg, void **result)
{
    (void)result;
    stress_take_all(arg, DISCO_EINTERRUPTED, DISCO_ECLOSED);
    return 0;
}

static int victim_putter(void *arg, void **result)
{
    (void)result;
    struct stress *s = arg;
    for (int i = 0; i < VICTIM_PUTS; i++) {
        int rc = stress_put(s);
        if (rc == DISCO_EINTERRUPTED) {
            atomic_fetch_add(&s->puts_interrupted, 1);
            break;
        }
        if (rc != 0)
            atomic_fetch_add(&s->errors, 1);
    }
    return 0;
}

static int interrupt_all(void *arg, void **result)
{
    (void)result;
    disco_task **v = arg;
    for (int i = 0; i < VICTIMS; i++)
        disco__task_interrupt(v[i]);
    return 0;
}

static void run_interrupt_stress(size_t cap)
{
    long rounds = test_scaled(100);
    struct stress s = {.per_producer = test_scaled(10000)};
    size_t max_items = (size_t)(STEADY * s.per_producer +
                                rounds * VICTIM_PUTTERS * VICTIM_PUTS);
    s.ch = disco_channel_new(sizeof(long), cap);
    s.delivered = calloc(max_items, 1);
    s.seen = calloc(max_items, 1);
    disco_task *producer_task = disco_async(steady_producer, &s);
    disco_task *consumer_task = disco_async(steady_consumer, &s);
    pthread_t producer_th, consumer_th;
    pthread_create(&producer_th, NULL, steady_producer_thread, &s);
    pthread_create(&consumer_th, NULL, steady_consumer_thread, &s);
    for (long r = 0; r < rounds; r++) {
        disco_task *v[VICTIMS];
        for (int i = 0; i < VICTIMS; i++)
            v[i] = disco_async(i < VICTIM_TAKERS ? victim_taker : victim_putter, &s);
        if (r % 3) /* let some of them block; or catch them early */
            disco_sleep(0.001);
        if (r % 2)
            assert_int_equal(disco_task_join(disco_async(interrupt_all, v), NULL), 0);
        else
            interrupt_all(v, NULL);
        for (int i = 0; i < VICTIMS; i++)
            assert_int_equal(disco_task_join(v[i], NULL), 0);
    }
    assert_int_equal(disco_task_join(producer_task, NULL), 0);
    pthread_join(producer_th, NULL);
    disco_close(s.ch);
    assert_int_equal(disco_task_join(consumer_task, NULL), 0);
    pthread_join(consumer_th, NULL);
    assert_int_equal(atomic_load(&s.errors), 0);
    long n = atomic_load(&s.next_id), delivered = 0;
    for (long i = 0; i < n; i++) {
        delivered += s.delivered[i];
        if (s.seen[i] != s.delivered[i])
            fail_msg("capacity %zu: item %ld delivered %d times, seen %d times",
                     cap, i, s.delivered[i], s.seen[i]);
    }
    assert_true(delivered >= STEADY * s.per_producer);
    print_message("capacity %zu: %ld items, %d takes and %d puts interrupted\n",
                  cap, delivered, atomic_load(&s.takes_interrupted),
                  atomic_load(&s.puts_interrupted));
    free((void *)s.delivered);
    free((void *)s.seen);
    disco_channel_free(s.ch);
}

static void test_interrupt_stress(void **state)
{
    (void)state;
    run_interrupt_stress(0);
    run_interrupt_stress(1);
    run_interrupt_stress(4);
    run_interrupt_stress(DISCO_CHANNEL_UNBOUNDED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_bounded_blocks_when_full),
        cmocka_unit_test(test_take_blocks_when_empty),
        cmocka_unit_test(test_unbuffered_rendezvous),
        cmocka_unit_test(test_unbounded_never_blocks),
        cmocka_unit_test(test_close_semantics),
        cmocka_unit_test(test_close_wakes_blocked_putter),
        cmocka_unit_test(test_mpmc_capacity_1),
        cmocka_unit_test(test_mpmc_capacity_7),
        cmocka_unit_test(test_mpmc_capacity_1024),
        cmocka_unit_test(test_mpmc_unbuffered),
        cmocka_unit_test(test_mpmc_unbounded),
        cmocka_unit_test(test_large_items_are_copied),
        cmocka_unit_test(test_interrupt_take),
        cmocka_unit_test(test_interrupt_put),
        cmocka_unit_test(test_interrupt_stress),
    };
    int rc = cmocka_run_group_tests_name("channel", tests, NULL, NULL);
    disco_sched_stop();
    return rc;
}
