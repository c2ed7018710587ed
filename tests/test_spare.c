/* SPDX-License-Identifier: BSD-3-Clause */
/* Per-thread spare blocks (src/base/spare.h). */
#include <pthread.h>
#include <string.h>

#include "base/spare.h"
#include "test_util.h"

/* A block given back is the thread's next of its kind, and only of that
 * kind; a second one given back while the first is kept is freed (ASan
 * and valgrind see it). Under ASan nothing is kept. */
static void test_spare_reuse(void **state)
{
    (void)state;
    char *a = disco__spare_take(DISCO__SPARE_CALL, 100);
    char *b = disco__spare_take(DISCO__SPARE_CALL, 100);
    assert_non_null(a);
    assert_non_null(b);
    memset(a, 1, 100);
    memset(b, 2, 100);
    disco__spare_put(DISCO__SPARE_CALL, a);
    disco__spare_put(DISCO__SPARE_CALL, b); /* a is kept: b is freed */
    void *f = disco__spare_take(DISCO__SPARE_FUTURE, 100);
    char *c = disco__spare_take(DISCO__SPARE_CALL, 100);
    char *d = disco__spare_take(DISCO__SPARE_CALL, 100);
#ifdef DISCO_ASAN
    assert_ptr_not_equal(c, a);
#else
    assert_ptr_equal(c, a);
    assert_int_equal(c[99], 1); /* given back as it was */
#endif
    assert_ptr_not_equal(f, a);
    assert_ptr_not_equal(d, c);
    disco__spare_put(DISCO__SPARE_FUTURE, f);
    disco__spare_put(DISCO__SPARE_CALL, c);
    disco__spare_put(DISCO__SPARE_CALL, d);
}

static void *take_one(void *arg)
{
    void **taken = arg;
    *taken = disco__spare_take(DISCO__SPARE_CALL, 64);
    disco__spare_put(DISCO__SPARE_CALL, *taken); /* freed when the thread exits */
    return NULL;
}

/* A thread's spare is its own: another thread makes a block of its own,
 * and the spare is still there for its thread afterwards. */
static void test_spare_per_thread(void **state)
{
    (void)state;
    void *mine = disco__spare_take(DISCO__SPARE_CALL, 64);
    assert_non_null(mine);
    disco__spare_put(DISCO__SPARE_CALL, mine);
    void *theirs = NULL;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, take_one, &theirs), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_non_null(theirs);
    assert_ptr_not_equal(theirs, mine); /* mine is still allocated */
    void *again = disco__spare_take(DISCO__SPARE_CALL, 64);
    assert_non_null(again);
#ifndef DISCO_ASAN
    assert_ptr_equal(again, mine);
#endif
    disco__spare_put(DISCO__SPARE_CALL, again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spare_reuse),
        cmocka_unit_test(test_spare_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
