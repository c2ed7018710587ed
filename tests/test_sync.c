/* SPDX-License-Identifier: BSD-3-Clause */
/* @sync scopes (and inline execution), sleep, timedwait, events, mutexes,
 * conditions, and interrupting tasks blocked in them. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "disco.h"
#include "sched/interrupt.h"
#include "sched/sched.h"
#include "test_util.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static atomic_int finished;

static int sleepy_ok(void *arg, void **result)
{
    (void)result;
    disco_sleep((double)(uintptr_t)arg / 1000.0);
    atomic_fetch_add(&finished, 1);
    return 0;
}

static int sleepy_fail(void *arg, void **result)
{
    (void)result;
    disco_sleep(0.005);
    atomic_fetch_add(&finished, 1);
    return disco_error_set(DISCO_EIO, "task %ld broke", (long)(uintptr_t)arg);
}

static void test_sync_waits_for_all(void **state)
{
    (void)state;
    atomic_store(&finished, 0);
    disco_task *t[8];
    disco_sync s;
    disco_sync_begin(&s);
    for (int i = 0; i < 8; i++)
        t[i] = disco_async(sleepy_ok, (void *)(uintptr_t)(i * 3));
    assert_int_equal(disco_sync_end(&s), 0);
    assert_int_equal(atomic_load(&finished), 8);
    for (int i = 0; i < 8; i++) {
        assert_true(disco_task_done(t[i]));
        assert_int_equal(disco_task_join(t[i], NULL), 0);
    }
}

static void test_sync_composite_error(void **state)
{
    (void)state;
    atomic_store(&finished, 0);
    disco_sync s;
    disco_sync_begin(&s);
    disco_task_detach(disco_async(sleepy_fail, (void *)1));
    disco_task_detach(disco_async(sleepy_ok, (void *)1));
    disco_task_detach(disco_async(sleepy_fail, (void *)2));
    assert_int_equal(disco_sync_end(&s), DISCO_ECOMPOSITE);
    assert_int_equal(atomic_load(&finished), 3);
    const disco_error *e = disco_last_error();
    assert_int_equal(disco_error_code(e), DISCO_ECOMPOSITE);
    assert_int_equal(disco_error_count(e), 2);
    char buf[512];
    disco_error_format(e, buf, sizeof(buf));
    assert_non_null(strstr(buf, "task 1 broke"));
    assert_non_null(strstr(buf, "task 2 broke"));
    assert_int_equal(disco_error_code(disco_error_nested(e, 0)), DISCO_EIO);
    disco_error_clear();
}

/* A task spawned inside a scope opens its own scope: its children belong
 * to the inner scope only. */
static int inner_scope(void *arg, void **result)
{
    (void)result;
    disco_sync s;
    disco_sync_begin(&s);
    for (int i = 0; i < 4; i++)
        disco_task_detach(disco_async(sleepy_ok, (void *)2));
    int rc = disco_sync_end(&s);
    *(int *)arg = atomic_load(&finished);
    return rc;
}

static void test_sync_nested(void **state)
{
    (void)state;
    atomic_store(&finished, 0);
    int seen_inside = -1;
    disco_sync outer;
    disco_sync_begin(&outer);
    disco_task_detach(disco_async(inner_scope, &seen_inside));
    disco_sync inner;
    disco_sync_begin(&inner);
    disco_task_detach(disco_async(sleepy_ok, (void *)1));
    assert_int_equal(disco_sync_end(&inner), 0);
    assert_int_equal(disco_sync_end(&outer), 0);
    assert_true(seen_inside >= 4);
    assert_int_equal(atomic_load(&finished), 5);
    /* An empty scope ends at once. */
    disco_sync empty;
    disco_sync_begin(&empty);
    assert_int_equal(disco_sync_end(&empty), 0);
}

/* Tasks that start, park on their event and are woken by a task of their
 * scope's owner: each wake-up puts the woken task in the waker's worker's
 * next slot and moves the one before it to that worker's deque. Ending the
 * scope, or joining one of them, must not take such a started task from
 * the deque and run its body again inline. */
enum { WOKEN = 64 };
static disco_event woken_ev[WOKEN];
static atomic_int woken_starts, woken_ends;

static int wait_woken(void *arg, void **result)
{
    (void)result;
    atomic_fetch_add(&woken_starts, 1);
    int rc = disco_event_wait(&woken_ev[(uintptr_t)arg]);
    atomic_fetch_add(&woken_ends, 1);
    return rc;
}

static void start_and_park(disco_task **t)
{
    atomic_store(&woken_starts, 0);
    atomic_store(&woken_ends, 0);
    for (uintptr_t i = 0; i < WOKEN; i++) {
        disco_event_init(&woken_ev[i], false);
        t[i] = disco_async(wait_woken, (void *)i);
    }
    while (atomic_load(&woken_starts) < WOKEN)
        disco_sleep(0.001);
    for (int i = 0; i < WOKEN; i++)
        disco_event_notify(&woken_ev[i]);
}

static int wake_then_wait(void *arg, void **result)
{
    (void)arg, (void)result;
    disco_task *t[WOKEN];
    disco_sync s;
    disco_sync_begin(&s);
    start_and_park(t);
    for (int i = 0; i < WOKEN; i++)
        disco_task_detach(t[i]);
    int rc = disco_sync_end(&s);
    if (rc || atomic_load(&woken_starts) != WOKEN || atomic_load(&woken_ends) != WOKEN)
        return disco_error_set(DISCO_EIO, "scope: %d starts, %d ends of %d",
                               atomic_load(&woken_starts), atomic_load(&woken_ends), WOKEN);
    start_and_park(t);
    for (int i = WOKEN - 1; i >= 0; i--) /* the last woken first: the deque's bottom */
        if ((rc = disco_task_join(t[i], NULL)))
            return rc;
    if (atomic_load(&woken_starts) != WOKEN || atomic_load(&woken_ends) != WOKEN)
        return disco_error_set(DISCO_EIO, "join: %d starts, %d ends of %d",
                               atomic_load(&woken_starts), atomic_load(&woken_ends), WOKEN);
    return 0;
}

static void test_started_task_not_rerun(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        disco_task *t = disco_async(wake_then_wait, NULL);
        if (disco_task_join(t, NULL) != 0)
            fail_msg("round %d: %s", round, disco_error_message(disco_last_error()));
    }
}

static int timed_sleep(void *arg, void **result)
{
    (void)result;
    double t0 = now_s();
    int rc = disco_sleep(0.05);
    *(double *)arg = now_s() - t0;
    return rc;
}

static void test_sleep(void **state)
{
    (void)state;
    double slept = 0;
    assert_int_equal(disco_task_join(disco_async(timed_sleep, &slept), NULL), 0);
    assert_true(slept >= 0.05);
    double t0 = now_s();
    assert_int_equal(disco_sleep(0.02), 0); /* main thread */
    assert_true(now_s() - t0 >= 0.02);
    assert_int_equal(disco_sleep(-1), DISCO_EINVAL);
    assert_int_equal(disco_sleep(0), 0);
}

static bool flag_is_set(void *arg) { return atomic_load((atomic_int *)arg) != 0; }

static int set_flag_later(void *arg, void **result)
{
    (void)result;
    disco_sleep(0.03);
    atomic_store((atomic_int *)arg, 1);
    return 0;
}

static int timedwait_in_task(void *arg, void **result)
{
    (void)result;
    return disco_timedwait(flag_is_set, arg, 5.0, 0.005);
}

static void test_timedwait(void **state)
{
    (void)state;
    atomic_int flag = 0;
    disco_task *setter = disco_async(set_flag_later, &flag);
    disco_task *waiter = disco_async(timedwait_in_task, &flag);
    assert_int_equal(disco_task_join(waiter, NULL), 0);
    assert_int_equal(disco_task_join(setter, NULL), 0);
    /* Already true: returns at once even with a zero timeout. */
    assert_int_equal(disco_timedwait(flag_is_set, &flag, 0, 0.1), 0);
    atomic_int never = 0;
    double t0 = now_s();
    assert_int_equal(disco_timedwait(flag_is_set, &never, 0.03, 0.01),
                     DISCO_ETIMEDOUT);
    assert_true(now_s() - t0 >= 0.03);
    assert_int_equal(disco_timedwait(flag_is_set, &never, -1, 0.1), DISCO_EINVAL);
    assert_int_equal(disco_timedwait(flag_is_set, &never, 1, 0), DISCO_EINVAL);
}

static disco_event ev;
static atomic_int passed;

static int event_waiter(void *arg, void **result)
{
    (void)arg;
    (void)result;
    if (disco_event_wait(&ev) == 0)
        atomic_fetch_add(&passed, 1);
    return 0;
}

static void test_event_wakes_all(void **state)
{
    (void)state;
    disco_event_init(&ev, false);
    atomic_store(&passed, 0);
    disco_task *t[5];
    for (int i = 0; i < 5; i++)
        t[i] = disco_async(event_waiter, NULL);
    disco_sleep(0.02);
    assert_int_equal(atomic_load(&passed), 0);
    assert_false(disco_event_isset(&ev));
    disco_event_notify(&ev);
    for (int i = 0; i < 5; i++)
        assert_int_equal(disco_task_join(t[i], NULL), 0);
    assert_int_equal(atomic_load(&passed), 5);
    assert_true(disco_event_isset(&ev));
    assert_int_equal(disco_event_wait(&ev), 0); /* stays set: main passes */
    disco_event_reset(&ev);
    assert_false(disco_event_isset(&ev));
}

static void test_event_autoreset_wakes_one(void **state)
{
    (void)state;
    disco_event_init(&ev, true);
    atomic_store(&passed, 0);
    disco_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = disco_async(event_waiter, NULL);
    disco_sleep(0.02);
    for (int k = 1; k <= 3; k++) {
        disco_event_notify(&ev);
        while (atomic_load(&passed) < k)
            disco_sleep(0.001);
        disco_sleep(0.01);
        assert_int_equal(atomic_load(&passed), k); /* exactly one per notify */
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(disco_task_join(t[i], NULL), 0);
    /* Notify with nobody waiting lets the next wait through, once. */
    disco_event_notify(&ev);
    assert_int_equal(disco_event_wait(&ev), 0);
    assert_false(disco_event_isset(&ev));
}

struct counter {
    disco_mutex m;
    long value; /* protected by m, deliberately not atomic */
    long per_task;
};

static int increment(void *arg, void **result)
{
    (void)result;
    struct counter *c = arg;
    for (long i = 0; i < c->per_task; i++) {
        disco_mutex_lock(&c->m);
        long v = c->value;
        if (i % 64 == 0)
            disco_yield(); /* hold the mutex across a switch */
        c->value = v + 1;
        disco_mutex_unlock(&c->m);
    }
    return 0;
}

static void *increment_thread(void *arg)
{
    increment(arg, NULL);
    return NULL;
}

static void test_mutex_excludes(void **state)
{
    (void)state;
    struct counter c = {.per_task = test_scaled(20000)};
    disco_mutex_init(&c.m);
    disco_task *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = disco_async(increment, &c);
    pthread_t th; /* and a foreign thread competing with the tasks */
    pthread_create(&th, NULL, increment_thread, &c);
    for (int i = 0; i < 4; i++)
        assert_int_equal(disco_task_join(t[i], NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(c.value, 5 * c.per_task);
    assert_true(disco_mutex_trylock(&c.m));
    assert_false(disco_mutex_trylock(&c.m));
    disco_mutex_unlock(&c.m);
}

struct mailbox {
    disco_mutex m;
    disco_cond c;
    int items;
    int taken;
};

static int cond_consumer(void *arg, void **result)
{
    (void)result;
    struct mailbox *b = arg;
    for (int k = 0; k < 100; k++) {
        disco_mutex_lock(&b->m);
        while (b->items == 0)
            disco_cond_wait(&b->c, &b->m);
        b->items--;
        b->taken++;
        disco_mutex_unlock(&b->m);
    }
    return 0;
}

static void test_condition(void **state)
{
    (void)state;
    struct mailbox b = {0};
    disco_mutex_init(&b.m);
    disco_cond_init(&b.c);
    disco_task *t[2] = {disco_async(cond_consumer, &b),
                        disco_async(cond_consumer, &b)};
    for (int k = 0; k < 200; k++) {
        disco_mutex_lock(&b.m); /* from the main thread */
        b.items++;
        if (k % 2)
            disco_cond_notify_one(&b.c);
        else
            disco_cond_notify_all(&b.c);
        disco_mutex_unlock(&b.m);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(disco_task_join(t[i], NULL), 0);
    assert_int_equal(b.taken, 200);
    assert_int_equal(b.items, 0);
}

/* ---- interruption --------------------------------------------------------- */

/* Waits until t is parked, which for these task bodies means blocked in the
 * call under test; false after 30 s. */
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

/* A generous bound instead of a hang when an interrupt is lost. */
static bool finishes(disco_task *t)
{
    return disco_timedwait(task_done, t, 30, 0.001) == 0;
}

/* Interrupts t once it is blocked; returns what its body returned. */
static int interrupt_blocked(disco_task *t)
{
    assert_true(parked(t));
    disco__task_interrupt(t);
    assert_true(finishes(t));
    return disco_task_join(t, NULL);
}

static int sleep_long(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return disco_sleep(60);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static int timedwait_long(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return disco_timedwait(never, NULL, 60, 0.01);
}

static void test_interrupt_sleep(void **state)
{
    (void)state;
    disco_error_clear();
    assert_int_equal(interrupt_blocked(disco_async(sleep_long, NULL)),
                     DISCO_EINTERRUPTED);
    assert_non_null(strstr(disco_error_message(disco_last_error()), "interrupted"));
    assert_int_equal(interrupt_blocked(disco_async(timedwait_long, NULL)),
                     DISCO_EINTERRUPTED);
    /* The cancelled timers are gone: a short sleep still works. */
    double slept = 0;
    assert_int_equal(disco_task_join(disco_async(timed_sleep, &slept), NULL), 0);
}

static int event_wait_task(void *arg, void **result)
{
    (void)result;
    return disco_event_wait(arg);
}

static void test_interrupt_event_wait(void **state)
{
    (void)state;
    for (int autoreset = 0; autoreset < 2; autoreset++) {
        disco_event e;
        disco_event_init(&e, autoreset);
        disco_task *a = disco_async(event_wait_task, &e);
        disco_task *b = disco_async(event_wait_task, &e);
        assert_true(parked(b));
        assert_int_equal(interrupt_blocked(a), DISCO_EINTERRUPTED);
        /* The other waiter still gets the notify (autoreset: the only
         * one, which it consumes). */
        disco_event_notify(&e);
        assert_true(finishes(b));
        assert_int_equal(disco_task_join(b, NULL), 0);
        assert_int_equal(disco_event_isset(&e), !autoreset);
    }
}

struct cond_box {
    disco_mutex m;
    disco_cond c;
    bool go; /* under m */
    atomic_bool held_after; /* the waiter held m when cond_wait returned */
};

static int cond_wait_task(void *arg, void **result)
{
    (void)result;
    struct cond_box *b = arg;
    int rc = 0;
    disco_mutex_lock(&b->m);
    while (!b->go && rc == 0)
        rc = disco_cond_wait(&b->c, &b->m);
    atomic_store(&b->held_after, !disco_mutex_trylock(&b->m));
    disco_mutex_unlock(&b->m);
    return rc;
}

static void test_interrupt_cond_wait(void **state)
{
    (void)state;
    struct cond_box b = {0};
    disco_mutex_init(&b.m);
    disco_cond_init(&b.c);
    disco_task *a = disco_async(cond_wait_task, &b);
    disco_task *other = disco_async(cond_wait_task, &b);
    assert_true(parked(other));
    assert_int_equal(interrupt_blocked(a), DISCO_EINTERRUPTED);
    assert_true(atomic_load(&b.held_after)); /* m re-acquired all the same */
    atomic_store(&b.held_after, false);
    /* One notify: it reaches the waiter that is left. */
    disco_mutex_lock(&b.m);
    b.go = true;
    disco_cond_notify_one(&b.c);
    disco_mutex_unlock(&b.m);
    assert_true(finishes(other));
    assert_int_equal(disco_task_join(other, NULL), 0);
    assert_true(atomic_load(&b.held_after));
}

struct gate {
    disco_mutex m;
    disco_cond c;
    bool open; /* under m */
    atomic_bool interrupted_after;
};

/* Waits for the gate through interrupts, then waits once more. */
static int wait_gate_uninterruptibly(void *arg, void **result)
{
    (void)result;
    struct gate *g = arg;
    disco_mutex_lock(&g->m);
    while (!g->open)
        disco__cond_wait_uninterruptible(&g->c, &g->m);
    atomic_store(&g->interrupted_after, disco_interrupted());
    int rc = disco_cond_wait(&g->c, &g->m); /* the interrupt was kept */
    disco_mutex_unlock(&g->m);
    return rc;
}

/* The runtime's own waits that must outlast other tasks ignore interrupts
 * and leave them pending. */
static void test_uninterruptible_cond_wait(void **state)
{
    (void)state;
    struct gate g = {0};
    disco_mutex_init(&g.m);
    disco_cond_init(&g.c);
    disco_task *t = disco_async(wait_gate_uninterruptibly, &g);
    assert_true(parked(t));
    disco__task_interrupt(t);
    disco_sleep(0.03); /* ample time to (wrongly) give up */
    assert_false(disco_task_done(t));
    disco_mutex_lock(&g.m);
    g.open = true;
    disco_cond_notify_all(&g.c);
    disco_mutex_unlock(&g.m);
    assert_true(finishes(t));
    assert_int_equal(disco_task_join(t, NULL), DISCO_EINTERRUPTED);
    assert_true(atomic_load(&g.interrupted_after));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_waits_for_all),
        cmocka_unit_test(test_sync_composite_error),
        cmocka_unit_test(test_sync_nested),
        cmocka_unit_test(test_started_task_not_rerun),
        cmocka_unit_test(test_sleep),
        cmocka_unit_test(test_timedwait),
        cmocka_unit_test(test_event_wakes_all),
        cmocka_unit_test(test_event_autoreset_wakes_one),
        cmocka_unit_test(test_mutex_excludes),
        cmocka_unit_test(test_condition),
        cmocka_unit_test(test_interrupt_sleep),
        cmocka_unit_test(test_interrupt_event_wait),
        cmocka_unit_test(test_interrupt_cond_wait),
        cmocka_unit_test(test_uninterruptible_cond_wait),
    };
    int rc = cmocka_run_group_tests_name("sync", tests, NULL, NULL);
    disco_sched_stop();
    return rc;
}
