/* SPDX-License-Identifier: BSD-3-Clause */
/* Local channels: capacity, blocking, close, fetch/wait, many producers and
 * consumers across tasks and foreign threads, in every mode. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "disco.h"
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
    };
    int rc = cmocka_run_group_tests_name("channel", tests, NULL, NULL);
    disco_sched_stop();
    return rc;
}
