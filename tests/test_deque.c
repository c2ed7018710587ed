/* SPDX-License-Identifier: BSD-3-Clause */
/* Chase-Lev deque: sequential semantics and contention. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "disco/status.h"
#include "sched/deque.h"
#include "test_util.h"

#define ITEM(i) ((void *)(uintptr_t)((i) + 2)) /* never NULL or ABORT */
#define INDEX(p) ((long)(uintptr_t)(p) - 2)

static void test_lifo_pop_fifo_steal(void **state)
{
    (void)state;
    disco__deque d;
    assert_int_equal(disco__deque_init(&d, 1), 0);
    assert_true(disco__deque_empty(&d));
    assert_null(disco__deque_pop(&d));
    assert_null(disco__deque_steal(&d));
    for (long i = 0; i < 100; i++) /* grows from capacity 2 */
        assert_int_equal(disco__deque_push(&d, ITEM(i)), 0);
    assert_false(disco__deque_empty(&d));
    assert_ptr_equal(disco__deque_steal(&d), ITEM(0));
    assert_ptr_equal(disco__deque_steal(&d), ITEM(1));
    assert_ptr_equal(disco__deque_pop(&d), ITEM(99));
    assert_ptr_equal(disco__deque_pop(&d), ITEM(98));
    for (long i = 97; i >= 2; i--)
        assert_ptr_equal(disco__deque_pop(&d), ITEM(i));
    assert_null(disco__deque_pop(&d));
    assert_true(disco__deque_empty(&d));
    disco__deque_fini(&d);
}

struct contention {
    disco__deque d;
    long n;
    _Atomic unsigned char *seen;
    atomic_bool done;
    _Atomic long stolen;
};

static void *thief(void *arg)
{
    struct contention *c = arg;
    long got = 0;
    for (;;) {
        void *p = disco__deque_steal(&c->d);
        if (p == DISCO__DEQUE_ABORT)
            continue;
        if (p) {
            atomic_fetch_add(&c->seen[INDEX(p)], 1);
            got++;
        } else if (atomic_load(&c->done)) {
            break;
        }
    }
    atomic_fetch_add(&c->stolen, got);
    return NULL;
}

/* The owner pushes and pops (in bursts, so the deque grows and shrinks and
 * often has a single item left to race for) while two thieves steal: every
 * item must be taken exactly once. */
static void test_contention_exactly_once(void **state)
{
    (void)state;
    struct contention c;
    c.n = test_scaled(2000000);
    c.seen = calloc((size_t)c.n, 1);
    assert_non_null(c.seen);
    atomic_init(&c.done, false);
    atomic_init(&c.stolen, 0);
    assert_int_equal(disco__deque_init(&c.d, 2), 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thief, &c), 0);
    long popped = 0, next = 0;
    unsigned burst = 1;
    while (next < c.n) {
        for (unsigned k = 0; k < burst && next < c.n; k++)
            assert_int_equal(disco__deque_push(&c.d, ITEM(next++)), 0);
        for (unsigned k = 0; k < burst / 2 + 1; k++) {
            void *p = disco__deque_pop(&c.d);
            if (!p)
                break;
            atomic_fetch_add(&c.seen[INDEX(p)], 1);
            popped++;
        }
        burst = burst * 7 % 61 + 1;
    }
    void *p;
    while ((p = disco__deque_pop(&c.d))) {
        atomic_fetch_add(&c.seen[INDEX(p)], 1);
        popped++;
    }
    atomic_store(&c.done, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(popped + atomic_load(&c.stolen), c.n);
    for (long i = 0; i < c.n; i++)
        if (c.seen[i] != 1)
            fail_msg("item %ld taken %d times", i, c.seen[i]);
    disco__deque_fini(&c.d);
    free((void *)c.seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifo_pop_fifo_steal),
        cmocka_unit_test(test_contention_exactly_once),
    };
    return cmocka_run_group_tests_name("deque", tests, NULL, NULL);
}
