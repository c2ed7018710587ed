/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * No-wait functions (disco_register_nowait) with real worker processes:
 * their calls answer like any call (results, errors, remote_do, a large
 * argument or result, batches, order), every wait inside them fails with
 * DISCO_ENOWAIT on a worker and in the master alike, and a wait that cannot
 * fail ends the worker with a message naming the function. This binary is
 * also the worker program.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "disco.h"
#include "test_util.h"

static const char *self_path;
static int worker;

/* ---- functions the workers serve ------------------------------------------ */

static int square_nowait(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 1 || args[0].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "square_nowait takes one integer");
    *result = disco_i64(args[0].i * args[0].i);
    return 0;
}
DISCO_NOWAIT_FUNCTION(square_nowait)

/* What the no-wait calls below saw, in the order they ran. */
static long seen[2000];
static int n_seen;

/* Notes its integer, or the length of its bytes. */
static int note(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n == 1 && n_seen < 2000)
        seen[n_seen++] = args[0].type == DISCO_BYTES ? (long)args[0].bytes.len : args[0].i;
    return 0;
}
DISCO_NOWAIT_FUNCTION(note)

/* A function that may wait: hands over what the no-wait calls saw. */
static int take_seen(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_array(DISCO_ELEM_I64, seen, (size_t)n_seen);
    int rc = disco_value_copy(result, result); /* owned: seen is reset */
    n_seen = 0;
    return rc;
}
DISCO_FUNCTION(take_seen)

/* An owned bytes result of args[0] bytes, byte i = i % 251. */
static int make_bytes_nowait(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 1 || args[0].type != DISCO_I64 || args[0].i < 0)
        return disco_throw(DISCO_EINVAL, "make_bytes_nowait takes a size");
    size_t len = (size_t)args[0].i;
    uint8_t *p = malloc(len ? len : 1);
    if (!p)
        return disco_throw(DISCO_ENOMEM, "no memory");
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i % 251);
    *result = disco_bytes(p, len);
    result->flags |= DISCO_VALUE_OWNED;
    return 0;
}
DISCO_NOWAIT_FUNCTION(make_bytes_nowait)

static int do_nothing(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    return 0;
}
DISCO_FUNCTION(do_nothing)

static int sleep_nowait(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    return disco_sleep(0.001);
}
DISCO_NOWAIT_FUNCTION(sleep_nowait)

/* Every kind of wait, from inside a no-wait function: the status of each,
 * in the order of the list below, and whether each refusal named us. */
enum {
    W_SLEEP,
    W_TAKE_EMPTY,
    W_PUT_ROOM,
    W_PUT_FULL,
    W_TAKE_ITEM,
    W_EVENT_UNSET,
    W_EVENT_SET,
    W_COND,
    W_FETCH_MASTER,
    W_PMAP,
    W_JOIN,
    W_NAMED,
    W_INTERRUPTED,
    W_TASKLESS,
    W_COUNT
};

static int nap_task(void *arg, void **result)
{
    (void)arg, (void)result;
    return disco_sleep(0.05);
}

static int probe_waits(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    int64_t st[W_COUNT];
    int named = 0;
#define PROBE(k, call)                                                         \
    do {                                                                       \
        st[k] = (call);                                                        \
        if (st[k] == DISCO_ENOWAIT && disco_last_error()) {                    \
            char msg[256];                                                     \
            disco_error_format(disco_last_error(), msg, sizeof(msg));          \
            named += strstr(msg, "'probe_waits' is a no-wait function") != NULL; \
        }                                                                      \
    } while (0)
    PROBE(W_SLEEP, disco_sleep(0.001));
    disco_channel *ch = disco_channel_new(sizeof(int), 1);
    int item = 7, out = 0;
    PROBE(W_TAKE_EMPTY, disco_take(ch, &out));
    PROBE(W_PUT_ROOM, disco_put(ch, &item));
    PROBE(W_PUT_FULL, disco_put(ch, &item));
    PROBE(W_TAKE_ITEM, disco_take(ch, &out) != 0 ? -1 : out == 7 ? 0 : -2);
    disco_channel_free(ch);
    disco_event ev;
    disco_event_init(&ev, false);
    PROBE(W_EVENT_UNSET, disco_event_wait(&ev));
    disco_event_notify(&ev);
    PROBE(W_EVENT_SET, disco_event_wait(&ev));
    disco_mutex mu;
    disco_cond cv;
    disco_mutex_init(&mu);
    disco_cond_init(&cv);
    disco_mutex_lock(&mu);
    PROBE(W_COND, disco_cond_wait(&cv, &mu));
    disco_mutex_unlock(&mu); /* still held after the refusal */
    PROBE(W_FETCH_MASTER, disco_remotecall_fetch(do_nothing, 1, NULL, 0, NULL));
    PROBE(W_PMAP, disco_pmap(do_nothing, NULL, 0, NULL, NULL));
#undef PROBE
    /* A task still napping: the join is refused and the handle stays ours.
     * (Called as a task, this one may instead run it inline, where its nap
     * is refused: the join then fails with the task.) */
    disco_task *t = disco_async(nap_task, NULL);
    st[W_JOIN] = t ? disco_task_join(t, NULL) : -1;
    if (t && st[W_JOIN] == DISCO_ENOWAIT)
        disco_task_detach(t);
    disco_yield(); /* does nothing */
    st[W_NAMED] = named;
    st[W_INTERRUPTED] = disco_interrupted();
    st[W_TASKLESS] = disco_current_task() == NULL;
    *result = disco_array(DISCO_ELEM_I64, st, W_COUNT);
    return disco_value_copy(result, result);
}
DISCO_NOWAIT_FUNCTION(probe_waits)

/* Locks a mutex it already holds: a wait that cannot fail. */
static int lock_twice(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    static disco_mutex mu;
    disco_mutex_init(&mu);
    disco_mutex_lock(&mu);
    disco_mutex_lock(&mu);
    return 0;
}
DISCO_NOWAIT_FUNCTION(lock_twice)

static int unregistered(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    return 0;
}

/* ---- tests ------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    return disco_addprocs(1, NULL, &worker) == 1 ? 0 : -1;
}

static void test_register(void **state)
{
    (void)state;
    assert_int_equal(disco_register_nowait("square_nowait", square_nowait), 0); /* again */
    assert_int_equal(disco_register("square_nowait", square_nowait), DISCO_EBUSY);
    char msg[256];
    disco_error_format(disco_last_error(), msg, sizeof(msg));
    assert_non_null(strstr(msg, "never waits"));
    assert_int_equal(disco_register_nowait("do_nothing", do_nothing), DISCO_EBUSY);
    assert_int_equal(disco_register_nowait(NULL, unregistered), DISCO_EINVAL);
    assert_int_equal(disco_register_nowait("x", NULL), DISCO_EINVAL);
    assert_string_equal(disco_function_name(square_nowait), "square_nowait");
}

/* The remotecall family, to the worker and to this process. */
static void test_calls(void **state)
{
    (void)state;
    int pids[2] = {worker, disco_myid()};
    for (int k = 0; k < 2; k++) {
        disco_value x = disco_i64(9), r;
        assert_int_equal(disco_remotecall_fetch(square_nowait, pids[k], &x, 1, &r), 0);
        assert_int_equal(r.i, 81);
        disco_future *f = disco_remotecall(square_nowait, pids[k], &x, 1);
        const disco_value *v;
        assert_int_equal(disco_future_fetch(f, &v), 0);
        assert_int_equal(v->i, 81);
        disco_future_release(f);
        f = disco_remotecall_wait(square_nowait, pids[k], &x, 1);
        assert_non_null(f);
        assert_true(disco_future_isready(f));
        disco_future_release(f);
    }
    for (long i = 0; i < 3; i++) {
        disco_value x = disco_i64(i);
        assert_int_equal(disco_remote_do(note, worker, &x, 1), 0);
    }
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(take_seen, worker, NULL, 0, &r), 0);
    assert_int_equal(r.array.n, 3);
    disco_value_free(&r);
}

static void test_error_names_worker(void **state)
{
    (void)state;
    disco_value x = disco_str("nine"), r;
    assert_int_equal(disco_remotecall_fetch(square_nowait, worker, &x, 1, &r), DISCO_EINVAL);
    assert_int_equal(disco_error_pid(disco_last_error()), worker);
    char msg[256];
    disco_error_format(disco_last_error(), msg, sizeof(msg));
    assert_non_null(strstr(msg, "On worker 2: square_nowait takes one integer"));
}

/* Calls of a no-wait function start in the order they were made, also
 * behind one whose argument comes by rendezvous (a large one). */
static void test_order_behind_large_argument(void **state)
{
    (void)state;
    size_t big = 4u << 20;
    uint8_t *data = calloc(1, big);
    assert_non_null(data);
    long n = test_scaled(1000);
    for (long i = 0; i < n; i++) {
        disco_value x = i == 10 ? disco_bytes(data, big) : disco_i64(i);
        assert_int_equal(disco_remote_do(note, worker, &x, 1), 0);
    }
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(take_seen, worker, NULL, 0, &r), 0);
    assert_int_equal(r.array.n, n);
    const int64_t *v = r.array.data;
    for (long i = 0; i < n; i++)
        if (v[i] != (i == 10 ? (long)big : i))
            fail_msg("call %ld saw %ld", i, (long)v[i]);
    disco_value_free(&r);
    free(data);
}

/* A result large enough to go by rendezvous, read after the call ended. */
static void test_large_result(void **state)
{
    (void)state;
    disco_value x = disco_i64(3 << 20), r;
    for (int k = 0; k < 3; k++) {
        assert_int_equal(disco_remotecall_fetch(make_bytes_nowait, worker, &x, 1, &r), 0);
        assert_int_equal(r.type, DISCO_BYTES);
        assert_int_equal(r.bytes.len, 3 << 20);
        const uint8_t *p = r.bytes.ptr;
        for (size_t i = 0; i < r.bytes.len; i += 4093)
            assert_int_equal(p[i], i % 251);
        disco_value_free(&r);
    }
}

/* A batch of no-wait calls: all run and answer. */
static void test_batch(void **state)
{
    (void)state;
    disco_future *f[16];
    disco_batch_begin();
    for (int i = 0; i < 16; i++) {
        disco_value x = disco_i64(i);
        assert_non_null(f[i] = disco_remotecall(square_nowait, worker, &x, 1));
    }
    disco_batch_end();
    for (int i = 0; i < 16; i++) {
        const disco_value *v;
        assert_int_equal(disco_future_fetch(f[i], &v), 0);
        assert_int_equal(v->i, i * i);
        disco_future_release(f[i]);
    }
}

static void check_probe(const disco_value *r, bool remote)
{
    assert_int_equal(r->type, DISCO_ARRAY);
    assert_int_equal(r->array.n, W_COUNT);
    const int64_t *st = r->array.data;
    assert_int_equal(st[W_SLEEP], DISCO_ENOWAIT);
    assert_int_equal(st[W_TAKE_EMPTY], DISCO_ENOWAIT);
    assert_int_equal(st[W_PUT_ROOM], 0);
    assert_int_equal(st[W_PUT_FULL], DISCO_ENOWAIT);
    assert_int_equal(st[W_TAKE_ITEM], 0);
    assert_int_equal(st[W_EVENT_UNSET], DISCO_ENOWAIT);
    assert_int_equal(st[W_EVENT_SET], 0);
    assert_int_equal(st[W_COND], DISCO_ENOWAIT);
    assert_int_equal(st[W_FETCH_MASTER], DISCO_ENOWAIT);
    assert_int_equal(st[W_PMAP], DISCO_ENOWAIT);
    if (remote) /* never run inline by the worker's loop, which is no task */
        assert_int_equal(st[W_JOIN], DISCO_ENOWAIT);
    else
        assert_int_not_equal(st[W_JOIN], 0);
    assert_int_equal(st[W_NAMED], 7); /* every refusal named the function */
    assert_int_equal(st[W_INTERRUPTED], 0);
    if (remote) /* run by the worker's progress, not as a task */
        assert_int_equal(st[W_TASKLESS], 1);
}

/* Every wait refused, on the worker (in its progress) and in this process
 * (a call to itself runs as a task, under the same rule). */
static void test_waits_refused(void **state)
{
    (void)state;
    int pids[2] = {worker, disco_myid()};
    for (int k = 0; k < 2; k++) {
        disco_value r;
        assert_int_equal(disco_remotecall_fetch(probe_waits, pids[k], NULL, 0, &r), 0);
        check_probe(&r, k == 0);
        disco_value_free(&r);
        /* A refusal the function passes on is the call's error. */
        assert_int_equal(disco_remotecall_fetch(sleep_nowait, pids[k], NULL, 0, &r),
                         DISCO_ENOWAIT);
        char msg[256];
        disco_error_format(disco_last_error(), msg, sizeof(msg));
        assert_non_null(strstr(msg, "'sleep_nowait' is a no-wait function"));
    }
    /* The worker goes on serving, tasks and no-wait calls alike. */
    disco_value x = disco_i64(5), r;
    assert_int_equal(disco_remotecall_fetch(square_nowait, worker, &x, 1, &r), 0);
    assert_int_equal(disco_remotecall_fetch(take_seen, worker, NULL, 0, &r), 0);
    disco_value_free(&r);
}

static int mutex_abort(void)
{
    /* libinfinipath, which libfabric's psm provider loads, writes a
     * backtrace file into the working directory when a process aborts,
     * unless told not to (the worker inherits this). */
    setenv("IPATH_NO_BACKTRACE", "1", 1);
    int w;
    if (disco_addprocs(1, NULL, &w) != 1)
        return 1;
    int rc = disco_remotecall_fetch(lock_twice, w, NULL, 0, NULL);
    fprintf(stderr, "call status %s\n", disco_status_name(rc));
    return disco_finalize() ? 2 : 0;
}

/* A wait that cannot fail ends the worker, which says why; the caller gets
 * the worker's exit. */
static void test_mutex_wait_aborts_worker(void **state)
{
    (void)state;
    char out[8192];
    int status = test_run_self(self_path, "mutex-abort", out, sizeof(out));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("status %#x:\n%s", status, out);
    if (!strstr(out, "From worker 2: disco: 'lock_twice' is a no-wait function but waited") ||
        !strstr(out, "call status DISCO_EPROCEXIT"))
        fail_msg("no report in:\n%s", out);
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    disco_init(&argc, &argv); /* a worker never returns from here */
    if (argc > 1 && !strcmp(argv[1], "mutex-abort"))
        return mutex_abort();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_calls),
        cmocka_unit_test(test_error_names_worker),
        cmocka_unit_test(test_order_behind_large_argument),
        cmocka_unit_test(test_large_result),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_waits_refused),
        cmocka_unit_test(test_mutex_wait_aborts_worker),
    };
    int rc = cmocka_run_group_tests_name("nowait", tests, setup, NULL);
    disco_finalize();
    return rc;
}
