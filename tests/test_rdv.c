/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Large arguments with real workers. Over a transport with remote memory
 * access (shm, ofi) the arguments of remotecall_fetch and remotecall_wait
 * above the eager limit go by rendezvous: the worker reads them straight
 * from the caller into the buffer its function gets, and neither side
 * copies them (disco_bytes_copied). Over TCP they go inline and are
 * counted. Either way the data arrives intact; a worker killed while it
 * holds such a call fails the caller with a process-exited error; a caller
 * that dies before the worker has read leaves the worker healthy.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disco.h"
#include "test_util.h"

#define BIG (4u << 20)

static int worker;

/* FNV-1a over the bytes or array argument, and this process's copy count
 * when the call started. */
static int digest(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 1 || (args[0].type != DISCO_BYTES && args[0].type != DISCO_ARRAY))
        return disco_throw(DISCO_EINVAL, "digest(bytes or array)");
    const uint8_t *p = args[0].type == DISCO_BYTES ? args[0].bytes.ptr : args[0].array.data;
    size_t len = args[0].type == DISCO_BYTES
                     ? args[0].bytes.len
                     : args[0].array.n * disco_elem_size(args[0].array.elem);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    disco_value pair[2] = {disco_i64((int64_t)h), disco_i64((int64_t)disco_bytes_copied())};
    return disco_value_copy(result, &(disco_value){.type = DISCO_LIST, .list = {pair, 2}});
}
DISCO_FUNCTION(digest)

/* FNV-1a over the bytes of every argument, one after the other. */
static int digest_all(const disco_value *args, size_t n, disco_value *result)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t k = 0; k < n; k++) {
        if (args[k].type != DISCO_BYTES)
            return disco_throw(DISCO_EINVAL, "digest_all(bytes...)");
        const uint8_t *p = args[k].bytes.ptr;
        for (size_t i = 0; i < args[k].bytes.len; i++)
            h = (h ^ p[i]) * 0x100000001b3ull;
    }
    *result = disco_i64((int64_t)h);
    return 0;
}
DISCO_FUNCTION(digest_all)

/* args[0] bytes of a pattern (args[1] seeds it), and this process's copy
 * count before it made them. */
static int make_bytes(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    size_t len = (size_t)args[0].i;
    uint8_t *p = malloc(len);
    if (!p)
        return disco_throw(DISCO_ENOMEM, "make_bytes");
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 31 + (uint64_t)args[1].i);
    disco_value pair[2] = {disco_bytes(p, len), disco_i64((int64_t)disco_bytes_copied())};
    *result = (disco_value){.type = DISCO_LIST, .flags = DISCO_VALUE_OWNED};
    disco_value *items = malloc(sizeof(pair));
    if (!items) {
        free(p);
        return disco_throw(DISCO_ENOMEM, "make_bytes");
    }
    memcpy(items, pair, sizeof(pair));
    items[0].flags = DISCO_VALUE_OWNED;
    result->list.items = items;
    result->list.n = 2;
    return 0;
}
DISCO_FUNCTION(make_bytes)

static int copies(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_i64((int64_t)disco_bytes_copied());
    return 0;
}
DISCO_FUNCTION(copies)

/* On a worker: asks worker args[0] for a large result and dies before it
 * has read it. */
static int fetch_and_die(const disco_value *args, size_t n, disco_value *result)
{
    (void)n, (void)result;
    disco_value a[2] = {disco_i64(BIG), disco_i64(1)};
    (void)disco_remotecall(make_bytes, (int)args[0].i, a, 2);
    disco_sleep(0.001);
    _exit(0);
}
DISCO_FUNCTION(fetch_and_die)

/* The order calls started in on this worker: each call of note appends
 * its last argument (a one-letter string). */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char started[64];

static int note(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    pthread_mutex_lock(&log_lock);
    size_t k = strlen(started);
    if (n && args[n - 1].type == DISCO_STRING && k + 1 < sizeof(started))
        started[k] = args[n - 1].str.ptr[0];
    pthread_mutex_unlock(&log_lock);
    return 0;
}
DISCO_FUNCTION(note)

static int started_order(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    pthread_mutex_lock(&log_lock);
    int rc = disco_value_copy(result, &(disco_value){.type = DISCO_STRING,
                                                     .str = {started, strlen(started)}});
    memset(started, 0, sizeof(started));
    pthread_mutex_unlock(&log_lock);
    return rc;
}
DISCO_FUNCTION(started_order)

static int os_pid(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_i64(getpid());
    return 0;
}
DISCO_FUNCTION(os_pid)

static int nap(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    return disco_sleep(60);
}
DISCO_FUNCTION(nap)

/* On a worker: sends a large argument to worker args[0] and dies without
 * waiting for the answer. */
static int send_and_die(const disco_value *args, size_t n, disco_value *result)
{
    (void)n, (void)result;
    static uint8_t buf[BIG];
    disco_value big = disco_bytes(buf, sizeof(buf));
    /* The call is sent before remotecall_wait blocks; a task dies with us. */
    disco_future *f = disco_remotecall(digest, (int)args[0].i, &big, 1);
    (void)f;
    _exit(0);
}
DISCO_FUNCTION(send_and_die)

static uint64_t fnv(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Whether the master reaches pid over a transport that reads remotely. */
static bool by_rendezvous(int pid)
{
    char name[32];
    assert_int_equal(disco_transport_info(pid, name, sizeof(name)), 0);
    return !strcmp(name, "shm") || !strncmp(name, "ofi", 3);
}

/* What the receiver of BIG bytes copied: nothing when it reads them by
 * RMA; once, from the socket's buffer into place, when they are streamed
 * behind their message over TCP. */
static void assert_receiver_copies(uint64_t copied)
{
    if (by_rendezvous(worker))
        assert_true(copied < 4096);
    else
        assert_true(copied >= BIG && copied < BIG + 4096);
}

/* Calls digest(v) on the worker: checks the digest; returns the bytes the
 * worker copied for the call and, in *here, those this process copied. */
static uint64_t call_digest(const disco_value *v, uint64_t want, uint64_t *here)
{
    disco_value small = disco_bytes("x", 1), r;
    assert_int_equal(disco_remotecall_fetch(digest, worker, &small, 1, &r), 0);
    uint64_t before = (uint64_t)r.list.items[1].i;
    disco_value_free(&r);
    uint64_t mine = disco_bytes_copied();
    assert_int_equal(disco_remotecall_fetch(digest, worker, v, 1, &r), 0);
    *here = disco_bytes_copied() - mine;
    assert_int_equal((uint64_t)r.list.items[0].i, want);
    uint64_t copied = (uint64_t)r.list.items[1].i - before;
    disco_value_free(&r);
    return copied;
}

static void test_large_argument(void **state)
{
    (void)state;
    uint8_t *buf = malloc(BIG);
    assert_non_null(buf);
    for (size_t i = 0; i < BIG; i++)
        buf[i] = (uint8_t)(i * 13 + (i >> 12));
    disco_value v = disco_bytes(buf, BIG);
    uint64_t here, there = call_digest(&v, fnv(buf, BIG), &here);
    assert_true(here < 4096); /* the sender never copies it */
    assert_receiver_copies(there);
    free(buf);
}

/* A rendezvous argument followed by more inline data than the sender's
 * first guess at a message's size holds (runtime.c): the descriptor the
 * guess made is given back and made again, once. */
static void test_large_argument_then_inline_data(void **state)
{
    (void)state;
    uint8_t *buf = malloc(BIG + 1000);
    assert_non_null(buf);
    for (size_t i = 0; i < BIG + 1000; i++)
        buf[i] = (uint8_t)(i * 7 + (i >> 10));
    disco_value v[2] = {disco_bytes(buf, BIG), disco_bytes(buf + BIG, 1000)}, r;
    uint64_t mine = disco_bytes_copied();
    assert_int_equal(disco_remotecall_fetch(digest_all, worker, v, 2, &r), 0);
    assert_true(disco_bytes_copied() - mine < 4096); /* the inline 1000 only */
    assert_int_equal(r.type, DISCO_I64);
    assert_int_equal((uint64_t)r.i, fnv(buf, BIG + 1000));
    free(buf);
}

static bool pattern_ok(const disco_value *v, size_t len, uint64_t seed)
{
    if (v->type != DISCO_BYTES || v->bytes.len != len)
        return false;
    const uint8_t *p = v->bytes.ptr;
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(i * 31 + seed))
            return false;
    return true;
}

/* A large result: by rendezvous, the caller reads it from the worker into
 * the future's value, which remotecall_fetch hands over without a copy;
 * the worker keeps it until then. From a plain remotecall's future too. */
static void test_large_result(void **state)
{
    (void)state;
    disco_value a[2] = {disco_i64(BIG), disco_i64(7)}, r;
    uint64_t mine = disco_bytes_copied();
    assert_int_equal(disco_remotecall_fetch(make_bytes, worker, a, 2, &r), 0);
    uint64_t here = disco_bytes_copied() - mine;
    assert_true(pattern_ok(&r.list.items[0], BIG, 7));
    uint64_t before = (uint64_t)r.list.items[1].i;
    disco_value_free(&r);
    disco_value c;
    assert_int_equal(disco_remotecall_fetch(copies, worker, NULL, 0, &c), 0);
    uint64_t there = (uint64_t)c.i - before;
    assert_true(there < 4096); /* the sender never copies it */
    assert_receiver_copies(here);
    a[1] = disco_i64(9);
    disco_future *f = disco_remotecall(make_bytes, worker, a, 2);
    assert_non_null(f);
    const disco_value *v;
    assert_int_equal(disco_future_fetch(f, &v), 0);
    assert_true(pattern_ok(&v->list.items[0], BIG, 9));
    disco_future_release(f);
}

/* The caller of a large result dies before reading it: the worker lets
 * go of it and stays healthy. */
static void test_result_reader_dies(void **state)
{
    (void)state;
    int w[2];
    assert_int_equal(disco_addprocs(2, NULL, w), 2);
    disco_value to = disco_i64(w[1]);
    assert_int_equal(disco_remote_do(fetch_and_die, w[0], &to, 1), 0);
    disco_value a[2] = {disco_i64(1000), disco_i64(3)}, r;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(disco_remotecall_fetch(make_bytes, w[1], a, 2, &r), 0);
        assert_true(pattern_ok(&r.list.items[0], 1000, 3));
        disco_value_free(&r);
        disco_sleep(0.02);
    }
    disco_rmprocs(&w[1], 1, 10);
}

/* An array by remotecall_wait, fetched afterwards. */
static void test_large_array_wait(void **state)
{
    (void)state;
    size_t n = BIG / sizeof(double);
    double *a = malloc(n * sizeof(double));
    assert_non_null(a);
    for (size_t i = 0; i < n; i++)
        a[i] = (double)i * 0.5;
    disco_value v = disco_array(DISCO_ELEM_F64, a, n);
    disco_future *f = disco_remotecall_wait(digest, worker, &v, 1);
    assert_non_null(f);
    const disco_value *r;
    assert_int_equal(disco_future_fetch(f, &r), 0);
    assert_int_equal((uint64_t)r->list.items[0].i, fnv((const uint8_t *)a, n * sizeof(double)));
    disco_future_release(f);
    free(a);
}

/* A CachingPool's captured payload: each worker pulls it once, by
 * rendezvous from the closure's registered memory, and copies nothing. */
static void test_caching_pool_payload(void **state)
{
    (void)state;
    uint8_t *buf = malloc(BIG);
    assert_non_null(buf);
    for (size_t i = 0; i < BIG; i++)
        buf[i] = (uint8_t)(i * 5 + 1);
    disco_value cap = disco_bytes(buf, BIG), r;
    disco_closure *c = disco_closure_new(digest, &cap, 1);
    assert_non_null(c);
    uint64_t want = fnv(buf, BIG);
    free(buf); /* the closure has its own copy */
    disco_pool *pool = disco_caching_pool_new(&worker, 1);
    assert_non_null(pool);
    assert_int_equal(disco_remotecall_fetch(copies, worker, NULL, 0, &r), 0);
    uint64_t first = (uint64_t)r.i, last = 0, mine = disco_bytes_copied();
    for (int i = 0; i < 3; i++) {
        assert_int_equal(disco_closure_remotecall_fetch(pool, c, NULL, 0, &r), 0);
        assert_int_equal((uint64_t)r.list.items[0].i, want);
        last = (uint64_t)r.list.items[1].i;
        disco_value_free(&r);
    }
    uint64_t here = disco_bytes_copied() - mine;
    disco_pool_stats st;
    assert_int_equal(disco_pool_stats_of(pool, worker, &st), 0);
    assert_int_equal(st.payload_sends, 1); /* once per worker */
    if (by_rendezvous(worker)) {
        assert_true(here < 4096);
        assert_true(last - first < 4096);
    }
    disco_pool_free(pool);
    disco_closure_free(c);
}

/* Large RemoteChannel items: put is a call to the owner with the item as
 * argument, take one with the item as result, so both go by rendezvous. */
static void test_remote_channel_items(void **state)
{
    (void)state;
    disco_channel *ch = disco_remote_channel_new(worker, 4);
    assert_non_null(ch);
    uint8_t *buf = malloc(BIG);
    assert_non_null(buf);
    for (size_t i = 0; i < BIG; i++)
        buf[i] = (uint8_t)(i * 31 + 11);
    uint64_t mine = disco_bytes_copied();
    disco_value item = disco_bytes(buf, BIG), got;
    assert_int_equal(disco_put(ch, &item), 0);
    memset(buf, 0, BIG); /* put has read it: ours to reuse */
    assert_int_equal(disco_take(ch, &got), 0);
    uint64_t here = disco_bytes_copied() - mine;
    assert_true(pattern_ok(&got, BIG, 11));
    if (by_rendezvous(worker))
        assert_true(here < 4096);
    disco_value_free(&got);
    free(buf);
    disco_channel_free(ch);
}

/* Calls start in the order they were made, even when the first must wait
 * for its arguments to be read and the next has all of its own. */
static void test_calls_start_in_order(void **state)
{
    (void)state;
    uint8_t *buf = calloc(1, BIG);
    assert_non_null(buf);
    disco_value cap = disco_bytes(buf, BIG), r;
    disco_closure *c = disco_closure_new(note, &cap, 1); /* by rendezvous */
    free(buf);
    disco_pool *pool = disco_worker_pool_new(&worker, 1);
    assert_non_null(c);
    assert_non_null(pool);
    disco_value a = disco_str("a"), b = disco_str("b");
    for (int round = 0; round < 5; round++) {
        disco_future *fa = disco_closure_remotecall(pool, c, &a, 1);
        disco_future *fb = disco_remotecall(note, worker, &b, 1);
        assert_non_null(fa);
        assert_non_null(fb);
        assert_int_equal(disco_future_wait(fa), 0);
        assert_int_equal(disco_future_wait(fb), 0);
        disco_future_release(fa);
        disco_future_release(fb);
        assert_int_equal(disco_remotecall_fetch(started_order, worker, NULL, 0, &r), 0);
        assert_string_equal(r.str.ptr, "ab");
        disco_value_free(&r);
    }
    disco_pool_free(pool);
    disco_closure_free(c);
}

/* Registered in the master only, at run time: unknown to the worker. */
static int master_only(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    return 0;
}

/* A call of a function the worker does not know, with a large argument:
 * refused with DISCO_ENOFUNC once the argument is in (over TCP it follows
 * the frame in the stream), and the connection goes on. */
static void test_unknown_function_large_argument(void **state)
{
    (void)state;
    assert_int_equal(disco_register("master_only", master_only), 0);
    uint8_t *buf = calloc(1, BIG);
    assert_non_null(buf);
    disco_value v = disco_bytes(buf, BIG);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(disco_remotecall_fetch(master_only, worker, &v, 1, NULL),
                         DISCO_ENOFUNC);
        assert_non_null(strstr(disco_error_message(disco_last_error()), "not registered"));
        uint64_t here;
        call_digest(&v, fnv(buf, BIG), &here); /* the worker still answers */
    }
    free(buf);
}

/* Many large calls in flight from several tasks at once. */
static int many_calls(void *arg, void **res)
{
    (void)res;
    uint8_t *buf = arg;
    disco_value v = disco_bytes(buf, 256 << 10), r;
    for (int i = 0; i < 8; i++) {
        if (disco_remotecall_fetch(digest, worker, &v, 1, &r))
            return -1;
        bool ok = (uint64_t)r.list.items[0].i == fnv(buf, 256 << 10);
        disco_value_free(&r);
        if (!ok)
            return -2;
    }
    return 0;
}

static void test_concurrent_large_calls(void **state)
{
    (void)state;
    enum { TASKS = 8 };
    uint8_t *bufs[TASKS];
    disco_task *t[TASKS];
    for (int k = 0; k < TASKS; k++) {
        bufs[k] = malloc(256 << 10);
        memset(bufs[k], k + 1, 256 << 10);
        t[k] = disco_async(many_calls, bufs[k]);
        assert_non_null(t[k]);
    }
    for (int k = 0; k < TASKS; k++) {
        void *res;
        assert_int_equal(disco_task_join(t[k], &res), 0);
        free(bufs[k]);
    }
}

/* The caller dies before (or while) the worker reads: the worker's call
 * fails or finishes, and the worker stays healthy. */
static void test_sender_dies(void **state)
{
    (void)state;
    int w[2];
    assert_int_equal(disco_addprocs(2, NULL, w), 2);
    disco_value to = disco_i64(w[1]);
    assert_int_equal(disco_remote_do(send_and_die, w[0], &to, 1), 0);
    disco_value small = disco_bytes("y", 1), r;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(disco_remotecall_fetch(digest, w[1], &small, 1, &r), 0);
        disco_value_free(&r);
        disco_sleep(0.02);
    }
    disco_rmprocs(&w[1], 1, 10);
}

/* Kills the process whose OS pid is arg, a moment after the call began. */
static int killer(void *arg, void **res)
{
    (void)res;
    disco_sleep(0.3);
    kill((pid_t)(intptr_t)arg, SIGKILL);
    return 0;
}

/* The worker is killed while it runs a call whose argument came by
 * rendezvous: the caller gets a process-exited error, and no hang. */
static void test_worker_killed(void **state)
{
    (void)state;
    int w;
    assert_int_equal(disco_addprocs(1, NULL, &w), 1);
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(os_pid, w, NULL, 0, &r), 0);
    disco_task *t = disco_async(killer, (void *)(intptr_t)r.i);
    assert_non_null(t);
    uint8_t *buf = calloc(1, BIG);
    disco_value v = disco_bytes(buf, BIG);
    assert_int_equal(disco_remotecall_fetch(nap, w, &v, 1, NULL), DISCO_EPROCEXIT);
    assert_int_equal(disco_task_join(t, NULL), 0);
    free(buf);
}

int main(int argc, char **argv)
{
    disco_init(&argc, &argv); /* a worker never returns from here */
    int w;
    if (disco_addprocs(1, NULL, &w) != 1)
        return 1;
    worker = w;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_argument),
        cmocka_unit_test(test_large_argument_then_inline_data),
        cmocka_unit_test(test_large_array_wait),
        cmocka_unit_test(test_large_result),
        cmocka_unit_test(test_result_reader_dies),
        cmocka_unit_test(test_concurrent_large_calls),
        cmocka_unit_test(test_caching_pool_payload),
        cmocka_unit_test(test_remote_channel_items),
        cmocka_unit_test(test_calls_start_in_order),
        cmocka_unit_test(test_unknown_function_large_argument),
        cmocka_unit_test(test_sender_dies),
        cmocka_unit_test(test_worker_killed),
    };
    int rc = cmocka_run_group_tests_name("rdv", tests, NULL, NULL);
    disco_finalize();
    return rc;
}
