/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * pmap with real workers: order, batch sizes 1, 7 and automatic on item
 * counts that do not divide, two collections, on_error (identity, and a
 * replacement), retry_delays with a function that fails twice per item,
 * retry_check, back-off, an unhandled error, a worker SIGKILLed mid-map,
 * the local mode, progress, a CachingPool closure, bad input, and an
 * interrupted caller. This binary is also the worker program.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "disco.h"
#include "sched/interrupt.h"
#include "test_util.h"

static int square(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 1 || args[0].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "square takes one integer");
    *result = disco_i64(args[0].i * args[0].i);
    return 0;
}
DISCO_FUNCTION(square)

/* nil for odd items, the item for even ones. */
static int nil_if_odd(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    *result = args[0].i % 2 ? disco_nil() : args[0];
    return 0;
}
DISCO_FUNCTION(nil_if_odd)

static int fail_even(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    if (args[0].i % 2 == 0)
        return disco_throw(DISCO_EIO, "even item %lld", (long long)args[0].i);
    *result = args[0];
    return 0;
}
DISCO_FUNCTION(fail_even)

static int axpy(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 2 || args[0].type != DISCO_I64 || args[1].type != DISCO_F64)
        return disco_throw(DISCO_EINVAL, "axpy(i64, f64)");
    *result = disco_f64(2.0 * (double)args[0].i + args[1].f);
    return 0;
}
DISCO_FUNCTION(axpy)

/* Fails the first two attempts at each item, anywhere: the attempts are
 * counted on the master (pid 1) by a remote call back to it. */
static long attempts[64];

static int count_attempt(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    *result = disco_i64(__atomic_add_fetch(&attempts[args[0].i], 1, __ATOMIC_SEQ_CST));
    return 0;
}
DISCO_FUNCTION(count_attempt)

static int flaky(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    disco_value k;
    int rc = disco_remotecall_fetch(count_attempt, 1, &args[0], 1, &k);
    if (rc)
        return rc;
    if (k.i <= 2)
        return disco_throw(k.i == 1 ? DISCO_EIO : DISCO_EAGAIN, "attempt %lld fails",
                           (long long)k.i);
    *result = disco_i64(args[0].i * 10);
    return 0;
}
DISCO_FUNCTION(flaky)

/* (i, victim): i + 1000 * pid; the victim process SIGKILLs itself in its
 * second call, while the other worker has items in flight. (Not at an
 * index: a victim slow to start, under ASan, could see no item past it.) */
static atomic_int victim_calls;
static int die_at(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    if (disco_myid() == args[1].i && atomic_fetch_add(&victim_calls, 1) == 1)
        kill(getpid(), SIGKILL);
    disco_sleep(0.002);
    *result = disco_i64(args[0].i + 1000 * disco_myid());
    return 0;
}
DISCO_FUNCTION(die_at)

/* Naps 10 ms, then returns x. */
static int slow_identity(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    *result = args[0];
    return disco_sleep(0.01);
}
DISCO_FUNCTION(slow_identity)

/* Closure body: captured offset, then x. */
static int offset_by(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 2)
        return disco_throw(DISCO_EINVAL, "offset_by(offset, x)");
    *result = disco_i64(args[0].i + args[1].i);
    return 0;
}
DISCO_FUNCTION(offset_by)

static int w[2];
static int64_t xs[1000];

static void free_all(disco_value *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        disco_value_free(&r[i]);
}

static void test_batch_sizes(void **state)
{
    (void)state;
    disco_addprocs_opts opts = {.timeout = 60, .threads = 2};
    assert_int_equal(disco_addprocs(2, &opts, w), 2);
    for (int i = 0; i < 1000; i++)
        xs[i] = i;
    static disco_value r[1000];
    size_t counts[] = {1, 7, 100, 999};
    size_t batches[] = {0, 1, 7, DISCO_BATCH_AUTO};
    for (size_t c = 0; c < 4; c++)
        for (size_t b = 0; b < 4; b++) {
            disco_value coll = disco_array(DISCO_ELEM_I64, xs, counts[c]);
            disco_pmap_opts o = {.batch_size = batches[b]};
            assert_int_equal(disco_pmap(square, &coll, 1, r, &o), 0);
            for (size_t i = 0; i < counts[c]; i++)
                if (r[i].type != DISCO_I64 || r[i].i != (int64_t)(i * i))
                    fail_msg("batch %zu, %zu items: item %zu wrong", batches[b], counts[c], i);
            free_all(r, counts[c]);
        }
    /* Batch results go back as a column when they can (all nil; all I64,
     * above; all F64, in test_two_collections) and as values otherwise. */
    for (int odd_only = 0; odd_only < 2; odd_only++) {
        static int64_t odds[100];
        for (int i = 0; i < 100; i++)
            odds[i] = odd_only ? 2 * i + 1 : i;
        disco_value coll = disco_array(DISCO_ELEM_I64, odds, 100);
        disco_pmap_opts o = {.batch_size = 7};
        assert_int_equal(disco_pmap(nil_if_odd, &coll, 1, r, &o), 0);
        for (int i = 0; i < 100; i++)
            if ((odd_only || i % 2) ? r[i].type != DISCO_NIL : r[i].i != i)
                fail_msg("odd_only %d: item %d wrong", odd_only, i);
        free_all(r, 100);
    }
    /* Empty input. */
    disco_value none = disco_array(DISCO_ELEM_I64, xs, 0);
    assert_int_equal(disco_pmap(square, &none, 1, NULL, NULL), 0);
}

static void test_two_collections(void **state)
{
    (void)state;
    double ys[50];
    disco_value list[50];
    for (int i = 0; i < 50; i++) {
        ys[i] = i * 0.5;
        list[i] = disco_i64(i);
    }
    disco_value colls[2] = {disco_list(list, 50), disco_array(DISCO_ELEM_F64, ys, 50)};
    disco_value r[50];
    disco_pmap_opts o = {.batch_size = 7};
    assert_int_equal(disco_pmap(axpy, colls, 2, r, &o), 0);
    for (int i = 0; i < 50; i++)
        assert_true(r[i].f == 2.0 * i + i * 0.5);
    free_all(r, 50);
    /* Lengths that differ are refused. */
    colls[1].array.n = 49;
    assert_int_equal(disco_pmap(axpy, colls, 2, r, &o), DISCO_EINVAL);
}

static int identity_on_error(void *arg, size_t i, const disco_error *e, disco_value *result)
{
    (void)arg, (void)i;
    *result = disco_error_value(e);
    return 0;
}

static int zero_on_error(void *arg, size_t i, const disco_error *e, disco_value *result)
{
    (void)i, (void)e;
    ++*(int *)arg;
    *result = disco_i64(0);
    return 0;
}

static void test_on_error(void **state)
{
    (void)state;
    disco_value coll = disco_array(DISCO_ELEM_I64, xs, 20), r[20];
    for (int b = 0; b < 2; b++) {
        disco_pmap_opts o = {.on_error = identity_on_error, .batch_size = b ? 3 : 1};
        assert_int_equal(disco_pmap(fail_even, &coll, 1, r, &o), 0);
        for (int i = 0; i < 20; i++) {
            if (i % 2) {
                assert_int_equal(r[i].i, i);
                continue;
            }
            assert_int_equal(r[i].type, DISCO_ERROR);
            assert_int_equal(disco_error_code(r[i].error), DISCO_EIO);
            assert_true(disco_error_pid(r[i].error) > 1);
            assert_non_null(strstr(disco_error_message(r[i].error), "even item"));
        }
        free_all(r, 20);
        int calls = 0;
        o = (disco_pmap_opts){.on_error = zero_on_error, .on_error_arg = &calls,
                              .batch_size = b ? 3 : 1};
        assert_int_equal(disco_pmap(fail_even, &coll, 1, r, &o), 0);
        for (int i = 0; i < 20; i++)
            assert_int_equal(r[i].i, i % 2 ? i : 0);
        assert_int_equal(calls, 10);
        free_all(r, 20);
    }
}

static void test_unhandled_error(void **state)
{
    (void)state;
    disco_value coll = disco_array(DISCO_ELEM_I64, xs, 20), r[20];
    assert_int_equal(disco_pmap(fail_even, &coll, 1, r, NULL), DISCO_EIO);
    const disco_error *e = disco_last_error();
    assert_non_null(strstr(disco_error_message(e), "pmap: item"));
    assert_non_null(strstr(disco_error_message(e), "even item"));
    assert_true(disco_error_pid(e) > 1);
    for (int i = 0; i < 20; i++)
        assert_int_equal(r[i].type, DISCO_NIL);
}

static bool refuse_eagain(void *state, const disco_error *e)
{
    ++*(int *)state;
    return disco_error_code(e) != DISCO_EAGAIN;
}

static void test_retries(void **state)
{
    (void)state;
    for (int b = 0; b < 2; b++) {
        memset(attempts, 0, sizeof(attempts));
        disco_value coll = disco_array(DISCO_ELEM_I64, xs, 30), r[30];
        double zeros[3] = {0, 0, 0};
        disco_pmap_opts o = {.retry_delays = zeros, .n_retry_delays = 3,
                             .batch_size = b ? 4 : 1};
        int calls = 0;
        assert_int_equal(disco_pmap(flaky, &coll, 1, r, &o), 0);
        for (int i = 0; i < 30; i++)
            if (r[i].type != DISCO_I64 || r[i].i != i * 10 || attempts[i] != 3)
                fail_msg("batch %d: item %d: type %d value %lld after %ld attempts", b, i,
                         r[i].type, (long long)r[i].i, attempts[i]);
        free_all(r, 30);
        /* A check that refuses the second error kind stops retrying it. */
        memset(attempts, 0, sizeof(attempts));
        o.retry_check = refuse_eagain;
        o.retry_state = &calls;
        o.on_error = zero_on_error;
        int handled = 0;
        o.on_error_arg = &handled;
        assert_int_equal(disco_pmap(flaky, &coll, 1, r, &o), 0);
        for (int i = 0; i < 30; i++)
            if (r[i].type != DISCO_I64 || r[i].i != 0 || attempts[i] != 2)
                fail_msg("check, batch %d: item %d: type %d value %lld after %ld attempts", b,
                         i, r[i].type, (long long)r[i].i, attempts[i]);
        assert_int_equal(calls, 60);
        assert_int_equal(handled, 30);
        free_all(r, 30);
    }
    /* Julia's default back-off: one retry is not enough here. */
    memset(attempts, 0, sizeof(attempts));
    disco_backoff bo = DISCO_BACKOFF_DEFAULT;
    disco_value coll = disco_array(DISCO_ELEM_I64, xs, 4), r[4];
    disco_pmap_opts o = {.backoff = &bo};
    assert_int_equal(disco_pmap(flaky, &coll, 1, r, &o), DISCO_EAGAIN);
    bo.n = 2;
    memset(attempts, 0, sizeof(attempts));
    assert_int_equal(disco_pmap(flaky, &coll, 1, r, &o), 0);
    free_all(r, 4);
    double d = 0;
    o = (disco_pmap_opts){.backoff = &bo, .retry_delays = &d, .n_retry_delays = 1};
    assert_int_equal(disco_pmap(flaky, &coll, 1, r, &o), DISCO_EINVAL);
}

static void report(void *arg, const disco_pmap_progress *p)
{
    disco_pmap_progress *last = arg;
    assert_true(p->done <= p->total);
    *last = *p;
}

/* A worker SIGKILLed in the middle: with retries its items finish elsewhere;
 * without, the process-exited error reaches on_error. */
static void test_worker_killed(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        int v[2];
        assert_int_equal(disco_addprocs(2, NULL, v), 2);
        disco_pool *p = disco_worker_pool_new(v, 2);
        enum { N = 400 };
        static disco_value r[N];
        static int64_t victim[N];
        for (int i = 0; i < N; i++)
            victim[i] = v[1];
        disco_value colls[2] = {disco_array(DISCO_ELEM_I64, xs, N),
                                disco_array(DISCO_ELEM_I64, victim, N)};
        double zero = 0;
        int handled = 0;
        disco_pmap_progress last = {0};
        disco_pmap_opts o = {.pool = p, .progress = report, .progress_arg = &last};
        if (mode == 0) {
            o.retry_delays = &zero;
            o.n_retry_delays = 1;
        } else {
            o.on_error = zero_on_error;
            o.on_error_arg = &handled;
        }
        assert_int_equal(disco_pmap(die_at, colls, 2, r, &o), 0);
        int on_killed = 0;
        for (int i = 0; i < N; i++) {
            assert_int_equal(r[i].type, DISCO_I64);
            if (r[i].i == 0) {
                assert_int_equal(mode, 1); /* EPROCEXIT went to on_error */
                continue;
            }
            assert_int_equal(r[i].i % 1000, i);
            on_killed += r[i].i / 1000 == v[1];
        }
        assert_true(on_killed < 200);
        assert_true(mode == 0 || handled > 0);
        assert_int_equal(disco_pool_nworkers(p), 1); /* the dead one left */
        if (mode == 0)
            assert_true(last.retries > 0);
        assert_int_equal(last.done, N);
        assert_int_equal(last.total, N);
        free_all(r, N);
        disco_pool_free(p);
        disco_rmprocs(v, 2, 5);
    }
}

static void test_local_and_caching(void **state)
{
    (void)state;
    disco_value coll = disco_array(DISCO_ELEM_I64, xs, 100), r[100];
    disco_pmap_opts o = {.local = true};
    assert_int_equal(disco_pmap(square, &coll, 1, r, &o), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(r[i].i, i * i);
    free_all(r, 100);
    /* A closure through a CachingPool: its value goes once per worker. */
    disco_value off = disco_i64(1000);
    disco_closure *c = disco_closure_new(offset_by, &off, 1);
    disco_pool *cp = disco_caching_pool_new(w, 2);
    for (int b = 0; b < 2; b++) {
        o = (disco_pmap_opts){.pool = cp, .closure = c, .batch_size = b ? 5 : 1};
        assert_int_equal(disco_pmap(NULL, &coll, 1, r, &o), 0);
        for (int i = 0; i < 100; i++)
            assert_int_equal(r[i].i, 1000 + i);
        free_all(r, 100);
    }
    disco_pool_stats st;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(disco_pool_stats_of(cp, w[k], &st), 0);
        assert_true(st.payload_sends <= 1);
    }
    o.local = true; /* closures run here too */
    assert_int_equal(disco_pmap(NULL, &coll, 1, r, &o), 0);
    assert_int_equal(r[99].i, 1099);
    free_all(r, 100);
    disco_pool_free(cp);
    disco_closure_free(c);
    /* Bad input. */
    assert_int_equal(disco_pmap(NULL, &coll, 1, r, NULL), DISCO_EINVAL);
    assert_int_equal(disco_pmap(square, NULL, 0, r, NULL), DISCO_EINVAL);
    disco_value s = disco_str("no");
    assert_int_equal(disco_pmap(square, &s, 1, r, NULL), DISCO_EINVAL);
    double bad = -1;
    o = (disco_pmap_opts){.retry_delays = &bad, .n_retry_delays = 1};
    assert_int_equal(disco_pmap(square, &coll, 1, r, &o), DISCO_EINVAL);
}

static disco_value slow_r[200];

static int interrupted_pmap(void *arg, void **unused)
{
    (void)unused;
    disco_value coll = disco_array(DISCO_ELEM_I64, xs, 200);
    return disco_pmap(slow_identity, &coll, 1, slow_r, arg);
}

/* The task calling pmap is interrupted: pmap stops with DISCO_EINTERRUPTED
 * and no results, once the calls in flight have finished (its workers are
 * back in the pool when it returns). */
static void test_interrupted(void **state)
{
    (void)state;
    disco_pool *p = disco_worker_pool_new(w, 2);
    for (int b = 0; b < 2; b++) {
        disco_pmap_opts o = {.pool = p, .batch_size = b ? 8 : 1};
        disco_task *t = disco_async(interrupted_pmap, &o);
        disco__task_interrupt(t);
        assert_int_equal(disco_task_join(t, NULL), DISCO_EINTERRUPTED);
        for (int i = 0; i < 200; i++)
            assert_int_equal(slow_r[i].type, DISCO_NIL);
        assert_true(disco_pool_isready(p));
        int a = disco_pool_take(p), c = disco_pool_take(p);
        assert_true(a > 1 && c > 1 && a != c);
        disco_pool_put(p, a);
        disco_pool_put(p, c);
    }
    disco_pool_free(p);
}

/* pmap on pid 1 alone runs here. */
static int alone(void)
{
    disco_value coll = disco_array(DISCO_ELEM_I64, xs, 10), r[10];
    for (int i = 0; i < 10; i++)
        xs[i] = i;
    if (disco_pmap(square, &coll, 1, r, NULL) != 0 || r[9].i != 81)
        return 1;
    disco_pmap_opts o = {.progress_bar = true};
    return disco_pmap(square, &coll, 1, r, &o) != 0 || r[3].i != 9;
}

static void test_alone(void **state)
{
    (void)state;
    char out[1024];
    assert_int_equal(test_run_self(getenv("TEST_SELF"), "alone", out, sizeof(out)), 0);
}

int main(int argc, char **argv)
{
    setenv("TEST_SELF", argv[0], 1);
    disco_init(&argc, &argv); /* a worker never returns from here */
    if (argc > 1 && !strcmp(argv[1], "alone"))
        return alone();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_sizes),
        cmocka_unit_test(test_two_collections),
        cmocka_unit_test(test_on_error),
        cmocka_unit_test(test_unhandled_error),
        cmocka_unit_test(test_retries),
        cmocka_unit_test(test_interrupted),
        cmocka_unit_test(test_worker_killed),
        cmocka_unit_test(test_local_and_caching),
        cmocka_unit_test(test_alone),
    };
    int rc = cmocka_run_group_tests_name("pmap", tests, NULL, NULL);
    disco_finalize();
    return rc;
}
