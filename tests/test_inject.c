/* SPDX-License-Identifier: BSD-3-Clause */
/* Injection queue (bounded MPMC): semantics and contention. */
#include <pthread.h>
#include <stdatomic.h>

#include "disco/status.h"
#include "sched/inject.h"
#include "test_util.h"

#define NPROD 2
#define NCONS 2

static void test_fifo_and_full(void **state)
{
    (void)state;
    disco__inject q;
    assert_int_equal(disco__inject_init(&q, 3), 0); /* 8 cells */
    assert_true(disco__inject_empty(&q));
    assert_null(disco__inject_try_pop(&q));
    for (uintptr_t i = 1; i <= 8; i++)
        assert_true(disco__inject_try_push(&q, (void *)i));
    assert_false(disco__inject_try_push(&q, (void *)9));
    for (uintptr_t i = 1; i <= 8; i++)
        assert_ptr_equal(disco__inject_try_pop(&q), (void *)i);
    assert_null(disco__inject_try_pop(&q));
    /* Wraps around many times. */
    for (uintptr_t i = 1; i <= 1000; i++) {
        assert_true(disco__inject_try_push(&q, (void *)i));
        assert_ptr_equal(disco__inject_try_pop(&q), (void *)i);
    }
    disco__inject_fini(&q);
}

struct mpmc {
    disco__inject q;
    long per_producer;
    _Atomic unsigned char *seen;
    _Atomic long consumed;
    long total;
    atomic_int order_violations;
};

struct producer_arg {
    struct mpmc *m;
    long base;
};

static void *producer(void *arg)
{
    struct producer_arg *pa = arg;
    /* Blocking push: the small queue fills and exercises back-pressure. */
    for (long i = 0; i < pa->m->per_producer; i++)
        disco__inject_push(&pa->m->q, (void *)(uintptr_t)(pa->base + i + 1));
    return NULL;
}

static void *consumer(void *arg)
{
    struct mpmc *m = arg;
    long last[NPROD];
    for (int i = 0; i < NPROD; i++)
        last[i] = -1;
    while (atomic_load(&m->consumed) < m->total) {
        void *p = disco__inject_try_pop(&m->q);
        if (!p)
            continue;
        long v = (long)(uintptr_t)p - 1;
        int prod = (int)(v / m->per_producer);
        /* One consumer sees each producer's items in order (FIFO). */
        if (v <= last[prod])
            atomic_fetch_add(&m->order_violations, 1);
        last[prod] = v;
        atomic_fetch_add(&m->seen[v], 1);
        atomic_fetch_add(&m->consumed, 1);
    }
    return NULL;
}

static void test_contention_exactly_once(void **state)
{
    (void)state;
    struct mpmc m = {.per_producer = test_scaled(1000000)};
    m.total = m.per_producer * NPROD;
    m.seen = calloc((size_t)m.total, 1);
    atomic_init(&m.consumed, 0);
    assert_int_equal(disco__inject_init(&m.q, 10), 0);
    struct mpmc *cons_arg[NCONS];
    pthread_t p[NPROD], c[NCONS];
    struct producer_arg pa[NPROD];
    for (int i = 0; i < NCONS; i++) {
        cons_arg[i] = &m;
        assert_int_equal(pthread_create(&c[i], NULL, consumer, cons_arg[i]), 0);
    }
    for (int i = 0; i < NPROD; i++) {
        pa[i] = (struct producer_arg){&m, i * m.per_producer};
        assert_int_equal(pthread_create(&p[i], NULL, producer, &pa[i]), 0);
    }
    for (int i = 0; i < NPROD; i++)
        pthread_join(p[i], NULL);
    for (int i = 0; i < NCONS; i++)
        pthread_join(c[i], NULL);
    assert_int_equal(atomic_load(&m.consumed), m.total);
    assert_int_equal(atomic_load(&m.order_violations), 0);
    for (long i = 0; i < m.total; i++)
        if (m.seen[i] != 1)
            fail_msg("item %ld seen %d times", i, m.seen[i]);
    assert_true(disco__inject_empty(&m.q));
    disco__inject_fini(&m.q);
    free((void *)m.seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_full),
        cmocka_unit_test(test_contention_exactly_once),
    };
    return cmocka_run_group_tests_name("inject", tests, NULL, NULL);
}
