/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Worker pools with real workers: WorkerPool push/take/put and its queries,
 * the default pool following addprocs/rmprocs and worker death, the
 * remotecall family through a pool, remote(pool, f), closures through a
 * WorkerPool and a CachingPool (captured bytes sent once per worker, again
 * after clear), retry delays, distributed for, and calls whose caller is
 * interrupted. This binary is also the worker program.
 */
#include <signal.h>
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

static int whoami(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_i64(disco_myid());
    return 0;
}
DISCO_FUNCTION(whoami)

static int os_pid(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_i64(getpid());
    return 0;
}
DISCO_FUNCTION(os_pid)

/* A closure body: captured bytes, then an index; returns that byte. */
static int byte_at(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 2 || args[0].type != DISCO_BYTES || args[1].type != DISCO_I64 ||
        (size_t)args[1].i >= args[0].bytes.len)
        return disco_throw(DISCO_EINVAL, "byte_at(bytes, index)");
    *result = disco_i64(((const unsigned char *)args[0].bytes.ptr)[args[1].i]);
    return 0;
}
DISCO_FUNCTION(byte_at)

static int identity(const disco_value *args, size_t n, disco_value *result)
{
    if (n == 1)
        *result = args[0];
    return 0;
}
DISCO_FUNCTION(identity)

static int add(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 2 || args[0].type != DISCO_I64 || args[1].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "add takes two integers");
    *result = disco_i64(args[0].i + args[1].i);
    return 0;
}
DISCO_FUNCTION(add)

static int boom_at(const disco_value *args, size_t n, disco_value *result)
{
    if (n == 1 && args[0].i == 77)
        return disco_throw(DISCO_EIO, "boom at 77");
    *result = args[0];
    return 0;
}
DISCO_FUNCTION(boom_at)

/* Sleeps args[0] seconds, then counts a finished nap in this process. */
static long naps_done;

static int nap(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    int rc = disco_sleep(args[0].f);
    *result = disco_i64(__atomic_add_fetch(&naps_done, 1, __ATOMIC_SEQ_CST));
    return rc;
}
DISCO_FUNCTION(nap)

static int naps(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_i64(__atomic_load_n(&naps_done, __ATOMIC_SEQ_CST));
    return 0;
}
DISCO_FUNCTION(naps)

/* A distributed-for body of one millisecond. */
static int nap_ms(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_i64(1);
    return disco_sleep(0.001);
}
DISCO_FUNCTION(nap_ms)

static int w[2];

static void test_worker_pool(void **state)
{
    (void)state;
    disco_addprocs_opts opts = {.timeout = 60};
    assert_int_equal(disco_addprocs(2, &opts, w), 2);
    disco_pool *p = disco_worker_pool_new(w, 2);
    assert_non_null(p);
    assert_int_equal(disco_pool_nworkers(p), 2);
    int pids[4];
    assert_int_equal(disco_pool_workers(p, pids, 4), 2);
    assert_int_equal(pids[0], w[0]);
    assert_int_equal(pids[1], w[1]);
    assert_true(disco_pool_isready(p));
    int a = disco_pool_take(p), b = disco_pool_take(p);
    assert_true(a == w[0] || a == w[1]);
    assert_true(b != a && (b == w[0] || b == w[1]));
    assert_false(disco_pool_isready(p)); /* both busy */
    assert_int_equal(disco_pool_nworkers(p), 2);
    assert_int_equal(disco_pool_put(p, a), 0);
    assert_int_equal(disco_pool_put(p, a), 0); /* twice: queued once */
    assert_int_equal(disco_pool_take(p), a);
    assert_false(disco_pool_isready(p));
    disco_pool_put(p, a);
    disco_pool_put(p, b);
    /* Bad input. */
    assert_null(disco_worker_pool_new(NULL, 2));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
    int bogus = 99;
    assert_null(disco_worker_pool_new(&bogus, 1));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_ENOPROC);
    assert_int_equal(disco_pool_push(p, 99), DISCO_ENOPROC);
    disco_pool_stats st;
    assert_int_equal(disco_pool_stats_of(p, 99, &st), DISCO_ENOPROC);
    assert_int_equal(disco_clear(p), DISCO_EINVAL); /* not a CachingPool */
    /* An empty pool refuses at once. */
    disco_pool *empty = disco_worker_pool_new(NULL, 0);
    assert_non_null(empty);
    assert_int_equal(disco_pool_take(empty), DISCO_ENOPROC);
    assert_int_equal(disco_pool_push(empty, disco_myid()), 0); /* this process may serve */
    assert_int_equal(disco_pool_take(empty), 1);
    disco_pool_free(empty);
    disco_pool_free(p);
}

static void test_pool_calls(void **state)
{
    (void)state;
    disco_pool *p = disco_worker_pool_new(w, 2);
    disco_value x = disco_i64(9), r;
    assert_int_equal(disco_pool_remotecall_fetch(p, square, &x, 1, &r), 0);
    assert_int_equal(r.i, 81);
    disco_future *f = disco_pool_remotecall(p, square, &x, 1);
    assert_non_null(f);
    const disco_value *v;
    assert_int_equal(disco_future_fetch(f, &v), 0);
    assert_int_equal(v->i, 81);
    disco_future_release(f);
    f = disco_pool_remotecall_wait(p, square, &x, 1);
    assert_true(disco_future_isready(f));
    disco_future_release(f);
    assert_int_equal(disco_pool_remote_do(p, square, &x, 1), 0);
    /* remote(pool, f) */
    disco_remote_fn sq = disco_remote(p, square);
    assert_int_equal(disco_remote_call(sq, &x, 1, &r), 0);
    assert_int_equal(r.i, 81);
    /* Errors come back with the worker. */
    x = disco_i64(77);
    assert_int_equal(disco_remote_call(disco_remote(p, boom_at), &x, 1, &r), DISCO_EIO);
    assert_true(disco_error_pid(disco_last_error()) > 1);
    /* Both workers serve: each takes the other's turn while one is busy. */
    disco_future *g[8];
    for (int i = 0; i < 8; i++)
        g[i] = disco_pool_remotecall(p, whoami, NULL, 0);
    bool seen[2] = {false, false};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(disco_future_fetch(g[i], &v), 0);
        seen[0] |= v->i == w[0];
        seen[1] |= v->i == w[1];
        disco_future_release(g[i]);
    }
    assert_true(seen[0] && seen[1]);
    /* Every worker came back once its call finished. */
    for (int i = 0; i < 1000 && !disco_pool_isready(p); i++)
        usleep(1000);
    int a = disco_pool_take(p), b = disco_pool_take(p);
    assert_true(a > 1 && b > 1 && a != b);
    disco_pool_put(p, a);
    disco_pool_put(p, b);
    disco_pool_stats st;
    assert_int_equal(disco_pool_stats_of(p, w[0], &st), 0);
    assert_true(st.calls > 0);
    disco_pool_free(p);
}

static void test_default_pool(void **state)
{
    (void)state;
    disco_pool *d = disco_default_worker_pool();
    assert_non_null(d);
    assert_ptr_equal(d, disco_default_worker_pool());
    assert_int_equal(disco_pool_nworkers(d), 2);
    disco_value x = disco_i64(4), r;
    assert_int_equal(disco_pool_remotecall_fetch(NULL, square, &x, 1, &r), 0);
    assert_int_equal(r.i, 16);
    int extra;
    assert_int_equal(disco_addprocs(1, NULL, &extra), 1);
    assert_int_equal(disco_pool_nworkers(d), 3);
    assert_int_equal(disco_rmprocs(&extra, 1, 10), 0);
    assert_int_equal(disco_pool_nworkers(d), 2);
    disco_pool_free(d); /* the default pool is not freed */
    assert_int_equal(disco_pool_nworkers(d), 2);
}

/* A worker that dies leaves its pools; a waiter of a pool that lost its
 * last member fails instead of hanging. */
static void test_dead_worker_leaves(void **state)
{
    (void)state;
    int v;
    assert_int_equal(disco_addprocs(1, NULL, &v), 1);
    disco_pool *p = disco_worker_pool_new(&v, 1);
    disco_value r;
    assert_int_equal(disco_pool_remotecall_fetch(p, os_pid, NULL, 0, &r), 0);
    assert_int_equal(disco_pool_take(p), v); /* busy now */
    kill((pid_t)r.i, SIGKILL);
    int rc = disco_pool_take(p); /* waits, then learns it is gone */
    assert_int_equal(rc, DISCO_ENOPROC);
    assert_int_equal(disco_pool_nworkers(p), 0);
    /* The default pool learns it in the same pass, maybe a moment later. */
    for (int i = 0; i < 5000 && disco_pool_nworkers(NULL) != 2; i++)
        usleep(1000);
    assert_int_equal(disco_pool_nworkers(NULL), 2);
    disco_pool_free(p);
    disco_rmprocs(&v, 1, 5);
}

static void test_closures_and_caching(void **state)
{
    (void)state;
    enum { SIZE = 1 << 20 };
    static unsigned char big[SIZE];
    for (size_t i = 0; i < SIZE; i++)
        big[i] = (unsigned char)(i * 7);
    disco_value cap = disco_bytes(big, SIZE);
    disco_closure *c = disco_closure_new(byte_at, &cap, 1);
    assert_non_null(c);
    assert_null(disco_closure_new(NULL, NULL, 0));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_ENOFUNC);
    /* Through a WorkerPool the values travel with every call. */
    disco_pool *wp = disco_worker_pool_new(w, 1);
    disco_value x = disco_i64(1000), r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(disco_closure_remotecall_fetch(wp, c, &x, 1, &r), 0);
        assert_int_equal(r.i, (1000 * 7) & 0xff);
    }
    disco_pool_stats st;
    assert_int_equal(disco_pool_stats_of(wp, w[0], &st), 0);
    assert_int_equal(st.payload_sends, 3);
    assert_true(st.payload_bytes >= 3u * SIZE);
    disco_pool_free(wp);
    /* Through a CachingPool: once per worker, and again after clear. */
    disco_pool *cp = disco_caching_pool_new(w, 2);
    for (int i = 0; i < 20; i++) {
        x = disco_i64(i * 1000);
        disco_future *f = disco_closure_remotecall(cp, c, &x, 1);
        const disco_value *v;
        assert_int_equal(disco_future_fetch(f, &v), 0);
        assert_int_equal(v->i, (i * 1000 * 7) & 0xff);
        disco_future_release(f);
    }
    uint64_t bytes = 0;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(disco_pool_stats_of(cp, w[k], &st), 0);
        assert_true(st.payload_sends <= 1);
        bytes += st.payload_bytes;
    }
    assert_true(bytes >= SIZE && bytes <= 2u * (SIZE + 64));
    assert_int_equal(disco_clear(cp), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(disco_closure_remotecall_fetch(cp, c, &x, 1, &r), 0);
    uint64_t after = 0;
    for (int k = 0; k < 2; k++) {
        disco_pool_stats_of(cp, w[k], &st);
        after += st.payload_bytes;
    }
    assert_true(after > bytes); /* sent again after clear */
    /* remotecall_wait and remote_do of a closure use the cache too. */
    x = disco_i64(3);
    for (int i = 0; i < 4; i++) {
        disco_future *f = disco_closure_remotecall_wait(cp, c, &x, 1);
        assert_non_null(f);
        assert_true(disco_future_isready(f));
        const disco_value *v;
        assert_int_equal(disco_future_fetch(f, &v), 0);
        assert_int_equal(v->i, 21);
        disco_future_release(f);
        assert_int_equal(disco_closure_remote_do(cp, c, &x, 1), 0);
    }
    uint64_t sends = 0;
    for (int k = 0; k < 2; k++) {
        disco_pool_stats_of(cp, w[k], &st);
        sends += st.payload_sends;
    }
    assert_true(sends <= 4); /* at most once per worker before and after clear */
    assert_null(disco_closure_remotecall_wait(cp, NULL, &x, 1));
    assert_int_equal(disco_closure_remote_do(cp, NULL, &x, 1), DISCO_EINVAL);
    disco_pool_free(cp);
    disco_closure_free(c);
}

static void test_backoff(void **state)
{
    (void)state;
    disco_backoff b = DISCO_BACKOFF_DEFAULT;
    double d[3];
    b.n = 3;
    assert_int_equal(disco_backoff_delays(&b, d), 0);
    assert_true(d[0] == 0.05);
    assert_true(d[1] >= 0.05 * 5 * 0.9 && d[1] <= 0.05 * 5 * 1.1);
    assert_true(d[2] >= d[1] * 5 * 0.9 && d[2] <= d[1] * 5 * 1.1);
    b.max_delay = 0.1;
    assert_int_equal(disco_backoff_delays(&b, d), 0);
    assert_true(d[2] <= 0.1);
    b.factor = -1;
    assert_int_equal(disco_backoff_delays(&b, d), DISCO_EINVAL);
}

static void test_distributed_for(void **state)
{
    (void)state;
    disco_value r;
    int64_t n = test_scaled(10000000);
    assert_int_equal(disco_distributed_for(1, n, identity, add, &r), 0);
    assert_int_equal(r.type, DISCO_I64);
    assert_true(r.i == n * (n + 1) / 2);
    /* splitrange with fewer items than workers */
    assert_int_equal(disco_distributed_for(5, 5, identity, add, &r), 0);
    assert_int_equal(r.i, 5);
    assert_int_equal(disco_distributed_for(3, 2, identity, add, &r), DISCO_EINVAL);
    assert_int_equal(disco_distributed_for(1, 2, identity, NULL, &r), DISCO_EINVAL);
    /* A failing body stops it with the worker's error. */
    assert_int_equal(disco_distributed_for(1, 100, boom_at, add, &r), DISCO_EIO);
    /* Without reducer: asynchronous, inside @sync. */
    disco_sync s;
    disco_sync_begin(&s);
    disco_task *t = disco_distributed_for_async(1, 1000, square);
    assert_non_null(t);
    assert_int_equal(disco_sync_end(&s), 0);
    assert_int_equal(disco_task_join(t, NULL), 0);
    t = disco_distributed_for_async(1, 100, boom_at);
    assert_int_equal(disco_task_join(t, NULL), DISCO_EIO);
}

/* What the interrupted task calls (arg: which). */
static disco_pool *ip;

static int interrupted_call(void *arg, void **result)
{
    (void)result;
    disco_value x = disco_f64(0.2), r;
    disco_future *f = NULL;
    int rc;
    switch ((int)(intptr_t)arg) {
    case 0:
        rc = disco_pool_remotecall_fetch(ip, nap, &x, 1, &r);
        break;
    case 1:
        f = disco_pool_remotecall_wait(ip, nap, &x, 1);
        rc = f ? 0 : disco_error_code(disco_last_error());
        break;
    case 2:
        f = disco_remotecall_wait(nap, w[0], &x, 1);
        rc = f ? 0 : disco_error_code(disco_last_error());
        break;
    default:
        rc = disco_distributed_for(1, 4000, nap_ms, add, &r);
        break;
    }
    disco_future_release(f);
    return rc;
}

/* A task interrupted while it waits for a call fails with
 * DISCO_EINTERRUPTED; its worker goes back to the pool only once the call
 * has finished. */
static void test_interrupted_calls(void **state)
{
    (void)state;
    ip = disco_worker_pool_new(w, 1);
    disco_value none[1], r;
    for (int which = 0; which < 4; which++) {
        assert_int_equal(disco_remotecall_fetch(naps, w[0], none, 0, &r), 0);
        long before = (long)r.i;
        disco_task *t = disco_async(interrupted_call, (void *)(intptr_t)which);
        disco__task_interrupt(t); /* sticky: its first wait fails */
        if (disco_task_join(t, NULL) != DISCO_EINTERRUPTED)
            fail_msg("call %d: %s", which, disco_error_message(disco_last_error()));
        if (which >= 2)
            continue; /* not through the pool */
        /* Waits until the worker is back: by then its nap has finished. */
        int pid = disco_pool_take(ip);
        assert_int_equal(pid, w[0]);
        assert_int_equal(disco_remotecall_fetch(naps, w[0], none, 0, &r), 0);
        assert_int_equal(r.i, before + 1);
        disco_pool_put(ip, pid);
    }
    disco_pool_free(ip);
}

/* Interrupts the calls on every worker every 50 ms until *stop. */
static int interrupter(void *arg, void **unused)
{
    (void)unused;
    while (!__atomic_load_n((bool *)arg, __ATOMIC_SEQ_CST)) {
        disco_sleep(0.05);
        disco_interrupt(NULL, 0);
    }
    return 0;
}

/* disco_interrupt reaches a distributed for's chunks while they compute
 * (they poll disco_interrupted): an endless loop fails, and the workers
 * serve on. */
static void test_distributed_for_interrupted(void **state)
{
    (void)state;
    bool stop = false;
    disco_task *t = disco_async(interrupter, &stop);
    disco_value r;
    int rc = disco_distributed_for(1, INT64_MAX, whoami, add, &r); /* small sums */
    __atomic_store_n(&stop, true, __ATOMIC_SEQ_CST);
    assert_int_equal(disco_task_join(t, NULL), 0);
    assert_int_equal(rc, DISCO_EINTERRUPTED);
    assert_int_equal(disco_distributed_for(1, 100, identity, add, &r), 0);
    assert_int_equal(r.i, 5050);
}

int main(int argc, char **argv)
{
    disco_init(&argc, &argv); /* a worker never returns from here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_pool),
        cmocka_unit_test(test_pool_calls),
        cmocka_unit_test(test_default_pool),
        cmocka_unit_test(test_dead_worker_leaves),
        cmocka_unit_test(test_closures_and_caching),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_distributed_for),
        cmocka_unit_test(test_interrupted_calls),
        cmocka_unit_test(test_distributed_for_interrupted),
    };
    int rc = cmocka_run_group_tests_name("pool", tests, NULL, NULL);
    disco_finalize();
    return rc;
}
