/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The runtime with real worker processes: addprocs, the process queries,
 * the remotecall family, errors from workers, ordering, a worker killed
 * under outstanding calls, rmprocs, a hostile connection, and no orphans
 * when the master dies. This binary is also the worker program: started
 * with the worker flag, disco_init turns it into a worker.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/runtime.h"
#include "disco.h"
#include "test_util.h"

static const char *self_path;
static double started; /* test_wall_s() before any worker */

/* ---- functions the workers serve ------------------------------------------ */

static int square(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 1 || args[0].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "square takes one integer");
    *result = disco_i64(args[0].i * args[0].i);
    return 0;
}
DISCO_FUNCTION(square)

static int real_sqrt(const disco_value *args, size_t n, disco_value *result)
{
    double x = n == 1 && args[0].type == DISCO_F64 ? args[0].f : NAN;
    if (!(x >= 0))
        return disco_throw(DISCO_EINVAL, "DomainError with %g: sqrt was called with a "
                                         "negative real argument", x);
    *result = disco_f64(sqrt(x));
    return 0;
}
DISCO_FUNCTION(real_sqrt)

/* Hands back its argument as is: the runtime must not free it twice. */
static int identity(const disco_value *args, size_t n, disco_value *result)
{
    if (n == 1)
        *result = args[0];
    return 0;
}
DISCO_FUNCTION(identity)

static int whoami(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    disco_value pair[2] = {disco_i64(disco_myid()), disco_i64(getpid())};
    return disco_value_copy(result, &(disco_value){.type = DISCO_LIST,
                                                   .list = {pair, 2}});
}
DISCO_FUNCTION(whoami)

/* Whether this process has one of hwloc's plugins mapped, or the C++
 * runtime that some of them pull in and that stays after hwloc unloads
 * them. This program is C: only UBSan's runtime would load it too. */
static int hwloc_plugins_mapped(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return disco_throw(DISCO_ESYS, "cannot read /proc/self/maps");
    char line[4096];
    bool mapped = false;
#if defined(__SANITIZE_ADDRESS__) /* built with UBSan as well */
    const char *cxx = NULL;
#else
    const char *cxx = "libstdc++";
#endif
    while (!mapped && fgets(line, sizeof(line), f))
        mapped = strstr(line, "/hwloc/hwloc_") || (cxx && strstr(line, cxx));
    fclose(f);
    *result = disco_bool(mapped);
    return 0;
}
DISCO_FUNCTION(hwloc_plugins_mapped)

static int nap(const disco_value *args, size_t n, disco_value *result)
{
    disco_sleep(n == 1 && args[0].type == DISCO_F64 ? args[0].f : 0);
    *result = disco_i64(disco_myid());
    return 0;
}
DISCO_FUNCTION(nap)

static long appended[2000];
static int n_appended;

static int append(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n == 1 && args[0].type == DISCO_I64 && n_appended < 2000)
        appended[n_appended++] = args[0].i;
    return 0;
}
DISCO_FUNCTION(append)

static int appended_list(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_array(DISCO_ELEM_I64, appended, (size_t)n_appended);
    return 0;
}
DISCO_FUNCTION(appended_list)

static int address(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_str(disco__rt.address);
    return 0;
}
DISCO_FUNCTION(address)

/* Breaks the protocol: writes junk on the connection to the master. */
static int send_garbage(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    static char junk[256];
    memset(junk, 0xee, sizeof(junk));
    struct iovec iov = {junk, sizeof(junk)};
    disco__peer *master = atomic_load(&disco__rt.peers[1]);
    return disco__peer_send(master, &iov, 1, NULL, false);
}
DISCO_FUNCTION(send_garbage)

static disco_event poked;

static int poke(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    disco_event_notify(&poked);
    return 0;
}
DISCO_FUNCTION(poke)

/* Tells the master, then hogs the worker's only scheduler thread: it
 * cannot even hear a request to exit. */
static int spin_forever(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    disco_remote_do(poke, 1, NULL, 0);
    for (volatile int forever = 1; forever;)
        ;
    return 0;
}
DISCO_FUNCTION(spin_forever)

/* Tells the master it runs, then sleeps args[0] s; returns what the sleep
 * returned (the runtime fails an interrupted call whatever it returns). */
static int poke_and_nap(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    disco_remote_do(poke, 1, NULL, 0);
    int rc = disco_sleep(args[0].f);
    *result = disco_i64(rc);
    return 0;
}
DISCO_FUNCTION(poke_and_nap)

/* Tells the master, then computes until interrupted (polling). */
static int poke_and_spin(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    disco_remote_do(poke, 1, NULL, 0);
    while (!disco_interrupted())
        disco_yield();
    return 0;
}
DISCO_FUNCTION(poke_and_spin)

/* A result of args[0] bytes. */
static int bytes_of(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    static char big[1 << 20];
    *result = disco_bytes(big, (size_t)args[0].i);
    return 0;
}
DISCO_FUNCTION(bytes_of)

/* Registered only in the master, after the workers started. */
static int master_only(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    return 0;
}

/* Registered nowhere. */
static int unregistered(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    return 0;
}

/* ---- tests -------------------------------------------------------------------- */

static int workers[2];

/* A gate on the worker: one call waits at it until another opens it; it
 * shuts behind the call it let through. */
static disco_event gate;
static pthread_once_t gate_once = PTHREAD_ONCE_INIT;
static void gate_init(void) { disco_event_init(&gate, true); }

static int wait_at_gate(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    pthread_once(&gate_once, gate_init);
    int rc = disco_event_wait(&gate);
    *result = disco_i64(7);
    return rc;
}
DISCO_FUNCTION(wait_at_gate)

static int open_gate(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n, (void)result;
    pthread_once(&gate_once, gate_init);
    disco_event_notify(&gate);
    return 0;
}
DISCO_FUNCTION(open_gate)

static void test_alone_then_addprocs(void **state)
{
    (void)state;
    int pids[8];
    assert_int_equal(disco_myid(), 1);
    assert_int_equal(disco_nprocs(), 1);
    assert_int_equal(disco_nworkers(), 1); /* pid 1 alone is the only worker */
    assert_int_equal(disco_workers(pids, 8), 1);
    assert_int_equal(pids[0], 1);
    disco_addprocs_opts opts = {.timeout = 60};
    assert_int_equal(disco_addprocs(2, &opts, workers), 2);
    assert_int_equal(workers[0], 2);
    assert_int_equal(workers[1], 3);
    assert_int_equal(disco_nprocs(), 3);
    assert_int_equal(disco_nworkers(), 2);
    assert_int_equal(disco_procs(pids, 8), 3);
    assert_int_equal(pids[0], 1);
    assert_int_equal(pids[2], 3);
    assert_int_equal(disco_workers(pids, 8), 2);
    assert_int_equal(pids[0], 2);
    /* Local workers share the master's host. */
    assert_int_equal(disco_procs_on_node(workers[1], pids, 8), 3);
    assert_int_equal(pids[0], 1);
    assert_int_equal(pids[2], 3);
    assert_int_equal(disco_procs_on_node(42, pids, 8), DISCO_ENOPROC);
}

static void test_remotecall_fetch(void **state)
{
    (void)state;
    for (int k = 0; k < 2; k++) {
        disco_value x = disco_i64(12 + k), r;
        assert_int_equal(disco_remotecall_fetch(square, workers[k], &x, 1, &r), 0);
        assert_int_equal(r.type, DISCO_I64);
        assert_int_equal(r.i, (12 + k) * (12 + k));
        disco_value_free(&r);
        assert_int_equal(disco_remotecall_fetch(whoami, workers[k], NULL, 0, &r), 0);
        assert_int_equal(r.type, DISCO_LIST);
        assert_int_equal(r.list.items[0].i, workers[k]); /* the worker knows its pid */
        assert_int_not_equal(r.list.items[1].i, getpid());
        disco_value_free(&r);
    }
}

/* A worker loads none of hwloc's I/O plugins: they cost every idle
 * worker memory (worker.c). */
static void test_worker_without_hwloc_plugins(void **state)
{
    (void)state;
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(hwloc_plugins_mapped, workers[0], NULL, 0, &r), 0);
    assert_int_equal(r.type, DISCO_BOOL);
    assert_false(r.b);
}

static void test_argument_returned(void **state)
{
    (void)state;
    char big[100000];
    memset(big, 'z', sizeof(big));
    disco_value x = disco_bytes(big, sizeof(big)), r;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(disco_remotecall_fetch(identity, workers[0], &x, 1, &r), 0);
        assert_int_equal(r.type, DISCO_BYTES);
        assert_int_equal(r.bytes.len, sizeof(big));
        assert_memory_equal(r.bytes.ptr, big, sizeof(big));
        disco_value_free(&r);
    }
}

static void test_future_cached(void **state)
{
    (void)state;
    disco_value x = disco_i64(7);
    disco_future *f = disco_remotecall(square, workers[0], &x, 1);
    assert_non_null(f);
    assert_int_equal(disco_future_where(f), workers[0]);
    const disco_value *a, *b;
    assert_int_equal(disco_future_fetch(f, &a), 0);
    assert_true(disco_future_isready(f));
    assert_int_equal(disco_future_fetch(f, &b), 0);
    assert_ptr_equal(a, b); /* the value is cached in the future */
    assert_int_equal(a->i, 49);
    disco_future_release(f);
    f = disco_remotecall_wait(square, workers[1], &x, 1);
    assert_non_null(f);
    assert_true(disco_future_isready(f));
    assert_int_equal(disco_future_fetch(f, &a), 0);
    assert_int_equal(a->i, 49);
    disco_future_release(f);
}

static void test_remote_error_names_worker(void **state)
{
    (void)state;
    disco_value x = disco_f64(-4), r;
    int rc = disco_remotecall_fetch(real_sqrt, workers[0], &x, 1, &r);
    assert_int_equal(rc, DISCO_EINVAL);
    const disco_error *e = disco_last_error();
    assert_int_equal(disco_error_pid(e), workers[0]);
    char buf[512];
    disco_error_format(e, buf, sizeof(buf));
    assert_non_null(strstr(buf, "On worker 2: DomainError with -4"));
    /* A future holding an error fails every fetch with it. */
    disco_future *f = disco_remotecall(real_sqrt, workers[0], &x, 1);
    assert_int_equal(disco_future_fetch(f, NULL), DISCO_EINVAL);
    assert_int_equal(disco_future_wait(f), DISCO_EINVAL);
    assert_int_equal(disco_error_pid(disco_last_error()), workers[0]);
    disco_future_release(f);
    /* The worker goes on serving. */
    x = disco_f64(16);
    assert_int_equal(disco_remotecall_fetch(real_sqrt, workers[0], &x, 1, &r), 0);
    assert_true(r.f == 4.0);
}

static void test_unknown_function(void **state)
{
    (void)state;
    assert_int_equal(disco_register("master_only", master_only), 0);
    assert_int_equal(disco_register("master_only", master_only), 0); /* again: no-op */
    assert_int_equal(disco_register("master_only", square), DISCO_EBUSY);
    assert_int_equal(disco_register(NULL, square), DISCO_EINVAL);
    assert_string_equal(disco_function_name(master_only), "master_only");
    assert_string_equal(disco_function_name(square), "square");
    assert_null(disco_function_name(unregistered));
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(master_only, workers[1], NULL, 0, &r),
                     DISCO_ENOFUNC);
    char buf[256];
    disco_error_format(disco_last_error(), buf, sizeof(buf));
    assert_non_null(strstr(buf, "'master_only'"));
    assert_non_null(strstr(buf, "worker 3"));
    /* Not registered here at all: refused before anything is sent. */
    assert_int_equal(disco_remote_do(unregistered, workers[1],
                                     NULL, 0), DISCO_ENOFUNC);
    assert_int_equal(disco_remotecall_fetch(square, 99, NULL, 0, &r), DISCO_ENOPROC);
}

static void test_calls_start_in_order(void **state)
{
    (void)state;
    for (long i = 0; i < 1000; i++) {
        disco_value x = disco_i64(i);
        assert_int_equal(disco_remote_do(append, workers[1], &x, 1), 0);
    }
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(appended_list, workers[1], NULL, 0, &r), 0);
    assert_int_equal(r.type, DISCO_ARRAY);
    assert_int_equal(r.array.n, 1000);
    const int64_t *v = r.array.data;
    for (long i = 0; i < 1000; i++)
        if (v[i] != i)
            fail_msg("call %ld ran as number %ld", v[i], i);
    disco_value_free(&r);
}

/* Calls sent in a batch, to two workers, all run and answer; nested
 * batches send at the outermost end; an end without a begin does nothing. */
static void test_batch(void **state)
{
    (void)state;
    enum { N = 300 };
    disco_future *f[N];
    disco_batch_end();
    disco_batch_begin();
    for (int i = 0; i < N; i++) {
        if (i == N / 2)
            disco_batch_begin();
        disco_value x = disco_i64(i);
        assert_non_null(f[i] = disco_remotecall(square, workers[i % 2], &x, 1));
    }
    disco_batch_end();
    disco_batch_end();
    /* The end sent them: they complete with nobody waiting (a wait would
     * send them too), and the workers answer without being asked twice. */
    for (int i = 0; i < N; i++)
        for (int ms = 0; !disco_future_isready(f[i]) && ms < 60000; ms++)
            usleep(1000);
    for (int i = 0; i < N; i++) {
        assert_true(disco_future_isready(f[i]));
        const disco_value *v;
        assert_int_equal(disco_future_fetch(f[i], &v), 0);
        assert_int_equal(v->i, (long)i * i);
        disco_future_release(f[i]);
    }
}

static bool future_ready(void *f) { return disco_future_isready(f); }

/* A wait inside a batch sends what the batch held first (it would never
 * be answered otherwise) and ends the batch; calls keep their order. */
static void test_batch_wait_inside(void **state)
{
    (void)state;
    disco_value r, x = disco_i64(5);
    disco_batch_begin();
    disco_future *f = disco_remotecall(square, workers[0], &x, 1);
    assert_non_null(f);
    assert_int_equal(disco_remotecall_fetch(square, workers[1], &x, 1, &r), 0);
    assert_int_equal(r.i, 25);
    const disco_value *v;
    assert_int_equal(disco_future_fetch(f, &v), 0);
    assert_int_equal(v->i, 25);
    disco_future_release(f);
    assert_int_equal(disco_remotecall_fetch(square, workers[0], &x, 1, &r), 0);
    disco_batch_end(); /* already ended by the wait */
    /* A sleep is a wait too (disco_timedwait sleeps between its tests). */
    disco_batch_begin();
    f = disco_remotecall(square, workers[0], &x, 1);
    assert_non_null(f);
    assert_int_equal(disco_timedwait(future_ready, f, 60, 0.001), 0);
    disco_batch_end();
    disco_future_release(f);
    disco_batch_begin();
    for (long i = 0; i < 10; i++) {
        disco_value k = disco_i64(5000 + i);
        assert_int_equal(disco_remote_do(append, workers[1], &k, 1), 0);
    }
    disco_batch_end();
    assert_int_equal(disco_remotecall_fetch(appended_list, workers[1], NULL, 0, &r), 0);
    assert_true(r.array.n >= 10);
    const int64_t *a = r.array.data;
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(a[r.array.n - 10 + i], 5000 + (long)i);
    disco_value_free(&r);
}

/* On the worker, the answers to a batch's calls are held back until its
 * thread runs out of work or a call waits: a call of the batch that waits
 * for a later one of the same batch must still see it run, and every
 * answer comes. */
static void test_batch_call_waits_for_later_call(void **state)
{
    (void)state;
    disco_value x = disco_i64(3);
    disco_batch_begin();
    disco_future *w = disco_remotecall(wait_at_gate, workers[0], NULL, 0);
    disco_future *q = disco_remotecall(square, workers[0], &x, 1);
    disco_future *o = disco_remotecall(open_gate, workers[0], NULL, 0);
    disco_batch_end();
    const disco_value *v;
    assert_int_equal(disco_future_fetch(q, &v), 0);
    assert_int_equal(v->i, 9);
    assert_int_equal(disco_future_fetch(w, &v), 0);
    assert_int_equal(v->i, 7);
    assert_int_equal(disco_future_wait(o), 0);
    disco_future_release(w);
    disco_future_release(q);
    disco_future_release(o);
}

/* A task that fetches the square of its number (fetches in flight). */
static atomic_int fetched;
static int fetch_square(void *arg, void **unused)
{
    (void)unused;
    disco_value x = disco_i64((int64_t)(intptr_t)arg), r;
    if (disco_remotecall_fetch(square, workers[0], &x, 1, &r) == 0 && r.i == x.i * x.i)
        atomic_fetch_add(&fetched, 1);
    return 0;
}

static bool all_fetched(void *n) { return atomic_load(&fetched) == *(int *)n; }

/* Calls in flight: their answers come while another call waits on the
 * worker (at the gate until they are all in), the waiting call first in
 * line and last; then with fetches, from as many tasks. */
static void test_inflight_answers_not_held_by_a_waiter(void **state)
{
    (void)state;
    enum { N = 100 };
    for (int waiter_last = 0; waiter_last < 2; waiter_last++) {
        disco_future *q[N], *w = NULL;
        if (!waiter_last)
            w = disco_remotecall(wait_at_gate, workers[0], NULL, 0);
        for (int i = 0; i < N; i++) {
            disco_value x = disco_i64(i);
            q[i] = disco_remotecall(square, workers[0], &x, 1);
            assert_non_null(q[i]);
        }
        if (waiter_last)
            w = disco_remotecall(wait_at_gate, workers[0], NULL, 0);
        assert_non_null(w);
        for (int i = 0; i < N; i++) {
            assert_int_equal(disco_timedwait(future_ready, q[i], 60, 0.001), 0);
            const disco_value *v;
            assert_int_equal(disco_future_fetch(q[i], &v), 0);
            assert_int_equal(v->i, (int64_t)i * i);
            disco_future_release(q[i]);
        }
        assert_false(disco_future_isready(w));
        assert_int_equal(disco_remote_do(open_gate, workers[0], NULL, 0), 0);
        assert_int_equal(disco_timedwait(future_ready, w, 60, 0.001), 0);
        disco_future_release(w);
    }
    disco_future *w = disco_remotecall(wait_at_gate, workers[0], NULL, 0);
    assert_non_null(w);
    atomic_store(&fetched, 0);
    disco_task *t[N];
    for (intptr_t i = 0; i < N; i++)
        assert_non_null(t[i] = disco_async(fetch_square, (void *)i));
    int n = N;
    assert_int_equal(disco_timedwait(all_fetched, &n, 60, 0.001), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(disco_task_join(t[i], NULL), 0);
    assert_false(disco_future_isready(w));
    assert_int_equal(disco_remote_do(open_gate, workers[0], NULL, 0), 0);
    assert_int_equal(disco_timedwait(future_ready, w, 60, 0.001), 0);
    disco_future_release(w);
}

/* Computes (never yields) for args[0] seconds. */
static int compute(const disco_value *args, size_t n, disco_value *result)
{
    double s = n == 1 && args[0].type == DISCO_F64 ? args[0].f : 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9 < s);
    *result = disco_nil();
    return 0;
}
DISCO_FUNCTION(compute)

/* Without a batch each answer goes as soon as its call returns, even when
 * the calls reached the worker together (sent while its thread computes)
 * and a long one came right behind. */
static void test_inflight_answer_not_held_by_a_long_call(void **state)
{
    (void)state;
    disco_value busy = disco_f64(0.3), longer = disco_f64(3.0), x = disco_i64(7);
    disco_future *b = disco_remotecall(compute, workers[0], &busy, 1);
    assert_non_null(b);
    assert_int_equal(disco_sleep(0.05), 0); /* what follows queues up */
    disco_future *q = disco_remotecall(square, workers[0], &x, 1);
    disco_future *l = disco_remotecall(compute, workers[0], &longer, 1);
    assert_non_null(q);
    assert_non_null(l);
    assert_int_equal(disco_timedwait(future_ready, q, 60, 0.001), 0);
    assert_false(disco_future_isready(l)); /* q's answer did not wait for l */
    const disco_value *v;
    assert_int_equal(disco_future_fetch(q, &v), 0);
    assert_int_equal(v->i, 49);
    assert_int_equal(disco_future_wait(l), 0);
    assert_int_equal(disco_future_wait(b), 0);
    disco_future_release(b);
    disco_future_release(q);
    disco_future_release(l);
}

/* A task that returns with its batch open: what it held still goes. */
static int batch_left_open(void *arg, void **result)
{
    disco_value x = disco_i64(11);
    disco_batch_begin();
    *result = disco_remotecall(square, *(int *)arg, &x, 1);
    return *result ? 0 : -1;
}

static void test_batch_left_open_by_task(void **state)
{
    (void)state;
    disco_task *t = disco_async(batch_left_open, &workers[1]);
    assert_non_null(t);
    void *res;
    assert_int_equal(disco_task_join(t, &res), 0);
    const disco_value *v;
    assert_int_equal(disco_future_fetch(res, &v), 0);
    assert_int_equal(v->i, 121);
    disco_future_release(res);
}

/* A connection that does not know the cookie (or speaks nonsense) is
 * dropped by the worker, which serves on. */
static void test_hostile_connection(void **state)
{
    (void)state;
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(address, workers[0], NULL, 0, &r), 0);
    int port = 0;
    assert_int_equal(sscanf(r.str.ptr, "tcp://127.0.0.1:%d", &port), 1);
    disco_value_free(&r);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        char junk[4096];
        memset(junk, attempt ? 'A' : 0x7f, sizeof(junk));
        ssize_t w = write(fd, junk, sizeof(junk));
        (void)w;
        /* The worker closes on us: read until EOF (or reset). */
        struct timeval tv = {.tv_sec = 10};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[512];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            ;
        assert_true(n <= 0);
        close(fd);
    }
    disco_value x = disco_i64(3);
    assert_int_equal(disco_remotecall_fetch(square, workers[0], &x, 1, &r), 0);
    assert_int_equal(r.i, 9);
}

/* A worker whose stream turns to garbage: the master closes that one
 * connection (the worker, without its master, exits), fails its calls and
 * goes on with the others. */
static void test_corrupt_stream_closes_connection(void **state)
{
    (void)state;
    int pid;
    assert_int_equal(disco_addprocs(1, NULL, &pid), 1);
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(send_garbage, pid, NULL, 0, &r), DISCO_EPROCEXIT);
    int pids[8];
    int n = disco_workers(pids, 8);
    for (int i = 0; i < n; i++)
        assert_int_not_equal(pids[i], pid);
    disco_value x = disco_i64(6);
    assert_int_equal(disco_remotecall_fetch(square, workers[0], &x, 1, &r), 0);
    assert_int_equal(r.i, 36);
    disco_rmprocs(&pid, 1, 5); /* reaps it */
}

static void test_worker_killed_with_calls_in_flight(void **state)
{
    (void)state;
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(whoami, workers[1], NULL, 0, &r), 0);
    pid_t os_pid = (pid_t)r.list.items[1].i;
    disco_value_free(&r);
    disco_value secs = disco_f64(30), short_secs = disco_f64(0.2);
    disco_future *f[3];
    for (int i = 0; i < 3; i++)
        assert_non_null(f[i] = disco_remotecall(nap, workers[1], &secs, 1));
    /* Another worker's call in flight meanwhile is not failed with them. */
    disco_future *other = disco_remotecall(nap, workers[0], &short_secs, 1);
    assert_non_null(other);
    kill(os_pid, SIGKILL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(disco_future_wait(f[i]), DISCO_EPROCEXIT);
        assert_int_equal(disco_error_pid(disco_last_error()), workers[1]);
        disco_future_release(f[i]);
    }
    const disco_value *v;
    assert_int_equal(disco_future_fetch(other, &v), 0);
    assert_int_equal(v->i, workers[0]);
    disco_future_release(other);
    int pids[8];
    assert_int_equal(disco_workers(pids, 8), 1);
    assert_int_equal(pids[0], workers[0]);
    assert_int_equal(disco_remotecall_fetch(square, workers[1], &secs, 1, &r), DISCO_EPROCEXIT);
    disco_rmprocs(&workers[1], 1, 5); /* reaps the process */
    /* Nothing of the killed worker is left in /dev/shm (over ofi:shm). */
    assert_false(test_shm_region_left(os_pid, started));
}

static void test_rmprocs(void **state)
{
    (void)state;
    assert_int_equal(disco_rmprocs(&workers[0], 1, 10), 0);
    assert_int_equal(disco_nprocs(), 1);
    assert_int_equal(disco_nworkers(), 1);
    int pid = 99;
    assert_int_equal(disco_rmprocs(&pid, 1, 1), DISCO_ENOPROC);
    /* pids are never reused */
    int again;
    assert_int_equal(disco_addprocs(1, NULL, &again), 1);
    assert_int_equal(again, 5);
    disco_value x = disco_i64(5), r;
    assert_int_equal(disco_remotecall_fetch(square, again, &x, 1, &r), 0);
    assert_int_equal(r.i, 25);
    assert_int_equal(disco_rmprocs(&again, 1, 10), 0);
}

static void test_call_to_self(void **state)
{
    (void)state;
    disco_value x = disco_i64(9), r;
    assert_int_equal(disco_remotecall_fetch(square, 1, &x, 1, &r), 0);
    assert_int_equal(r.i, 81);
    /* The future owns a copy: the argument handed back may be freed. */
    char *text = strdup("mine");
    disco_value s = disco_str(text);
    disco_future *f = disco_remotecall(identity, disco_myid(), &s, 1);
    free(text);
    const disco_value *v;
    assert_int_equal(disco_future_fetch(f, &v), 0);
    assert_int_equal(disco_future_where(f), 1);
    assert_int_equal(v->str.len, 4);
    assert_memory_equal(v->str.ptr, "mine", 4);
    disco_future_release(f);
    x = disco_f64(-4);
    assert_int_equal(disco_remotecall_fetch(real_sqrt, 1, &x, 1, &r), DISCO_EINVAL);
    assert_int_equal(disco_error_pid(disco_last_error()), 1);
    f = disco_remotecall_wait(square, 1, &(disco_value[1]){disco_i64(3)}[0], 1);
    assert_true(disco_future_isready(f));
    disco_future_release(f);
    disco_event_init(&poked, false);
    assert_int_equal(disco_remote_do(poke, 1, NULL, 0), 0);
    disco_event_wait(&poked);
}

/* Starts fn on pid and waits until it has told us it runs. */
static disco_future *start_poking(disco_function fn, int pid, double secs)
{
    disco_event_init(&poked, false);
    disco_value x = disco_f64(secs);
    disco_future *f = disco_remotecall(fn, pid, &x, 1);
    assert_non_null(f);
    disco_event_wait(&poked);
    return f;
}

static void test_interrupt(void **state)
{
    (void)state;
    int w[2];
    assert_int_equal(disco_addprocs(2, NULL, w), 2);
    /* A sleeping call is woken; its future fails; the worker goes on. */
    disco_future *f = start_poking(poke_and_nap, w[0], 60);
    assert_int_equal(disco_interrupt(&w[0], 1), 0);
    assert_int_equal(disco_future_wait(f), DISCO_EINTERRUPTED);
    assert_int_equal(disco_error_pid(disco_last_error()), w[0]);
    assert_non_null(strstr(disco_error_message(disco_last_error()),
                           "'poke_and_nap' interrupted on worker"));
    disco_future_release(f);
    disco_value x = disco_i64(6), r;
    assert_int_equal(disco_remotecall_fetch(square, w[0], &x, 1, &r), 0);
    assert_int_equal(r.i, 36);
    /* A computing call that polls disco_interrupted; all workers at once. */
    disco_future *g = start_poking(poke_and_spin, w[1], 0);
    f = start_poking(poke_and_nap, w[0], 60);
    assert_int_equal(disco_interrupt(NULL, 0), 0);
    assert_int_equal(disco_future_wait(g), DISCO_EINTERRUPTED);
    assert_int_equal(disco_future_wait(f), DISCO_EINTERRUPTED);
    disco_future_release(f);
    disco_future_release(g);
    /* A later call is not affected; nor is anything when nothing runs. */
    assert_int_equal(disco_interrupt(&w[1], 1), 0);
    assert_int_equal(disco_remotecall_fetch(square, w[1], &x, 1, &r), 0);
    int nobody = 99;
    assert_int_equal(disco_interrupt(&nobody, 1), DISCO_ENOPROC);
    /* A call to this process itself is interrupted too. */
    f = start_poking(poke_and_nap, 1, 60);
    assert_int_equal(disco_interrupt((int[]){1}, 1), 0);
    assert_int_equal(disco_future_wait(f), DISCO_EINTERRUPTED);
    disco_future_release(f);
    assert_int_equal(disco_rmprocs(w, 2, 10), 0);
}

static void test_rmprocs_async_and_stuck_worker(void **state)
{
    (void)state;
    int w[2];
    assert_int_equal(disco_addprocs(2, NULL, w), 2);
    disco_task *t = disco_rmprocs_async(&w[0], 1, 10);
    assert_non_null(t);
    assert_int_equal(disco_task_join(t, NULL), 0);
    int pids[8];
    assert_int_equal(disco_workers(pids, 8), 1);
    assert_int_equal(pids[0], w[1]);
    /* A worker too busy to exit is killed when the time is up. */
    disco_event_init(&poked, false);
    assert_int_equal(disco_remote_do(spin_forever, w[1], NULL, 0), 0);
    disco_event_wait(&poked);
    assert_int_equal(disco_rmprocs(&w[1], 1, 0.5), DISCO_ETIMEDOUT);
    assert_int_equal(disco_nprocs(), 1);
}

/* The master dies hard: its workers must not outlive it. */
static void test_no_orphans(void **state)
{
    (void)state;
    char out[1024];
    double since = test_wall_s();
    /* Not reaped until its workers are gone: a zombie still counts as a
     * live peer for libfabric's own removal of dead peers' regions, so
     * what the master left is then the workers' to remove. */
    pid_t m = test_spawn_self(self_path, "doomed-master", out, sizeof(out));
    assert_true(m > 0);
    int a = 0, b = 0;
    const char *line = strstr(out, "workers:");
    assert_non_null(line);
    assert_int_equal(sscanf(line, "workers: %d %d", &a, &b), 2);
    for (int i = 0; i < 500 && (kill(a, 0) == 0 || kill(b, 0) == 0); i++)
        usleep(10000);
    assert_int_not_equal(kill(a, 0), 0);
    assert_int_not_equal(kill(b, 0), 0);
    /* They settled their transports before they exited (over ofi:shm),
     * and removed what the master left. */
    assert_false(test_shm_region_left(a, started));
    assert_false(test_shm_region_left(b, started));
    assert_false(test_shm_region_left(m, since));
    int status = 0;
    assert_int_equal(waitpid(m, &status, 0), m);
    assert_true(WIFSIGNALED(status));
}

static int doomed_master(void)
{
    int pids[2];
    if (disco_addprocs(2, NULL, pids) != 2)
        return 1;
    disco_value r;
    int os[2];
    for (int i = 0; i < 2; i++) {
        if (disco_remotecall_fetch(whoami, pids[i], NULL, 0, &r))
            return 1;
        os[i] = (int)r.list.items[1].i;
        disco_value_free(&r);
    }
    fprintf(stderr, "workers: %d %d\n", os[0], os[1]);
    kill(getpid(), SIGKILL);
    return 1;
}

/* A cluster whose messages are limited to 64 KiB (DISCO_MAX_FRAME). */
static int small_frames(void)
{
    int w;
    if (disco_addprocs(1, NULL, &w) != 1)
        return 1;
    static char big[100000];
    disco_value x = disco_bytes(big, 30000), r;
    if (disco_remotecall_fetch(identity, w, &x, 1, &r) != 0)
        return 2;
    disco_value_free(&r);
    x = disco_bytes(big, sizeof(big)); /* too large to send */
    if (disco_remotecall_fetch(identity, w, &x, 1, &r) != DISCO_EMSGSIZE ||
        !strstr(disco_error_message(disco_last_error()), "DISCO_MAX_FRAME"))
        return 3;
    x = disco_i64(sizeof(big)); /* a result too large to send back */
    if (disco_remotecall_fetch(bytes_of, w, &x, 1, &r) != DISCO_EMSGSIZE ||
        disco_error_pid(disco_last_error()) != w)
        return 4;
    x = disco_i64(1000);
    if (disco_remotecall_fetch(bytes_of, w, &x, 1, &r) != 0 || r.bytes.len != 1000)
        return 5;
    disco_value_free(&r);
    return disco_finalize() ? 6 : 0;
}

/* Call and reference ids: never 0, never twice, from any number of
 * threads (each takes blocks of them: disco__new_id). */
enum { ID_THREADS = 4, IDS_EACH = 1000 };
static uint64_t ids[ID_THREADS][IDS_EACH];

static void *take_ids(void *arg)
{
    uint64_t *mine = arg;
    for (int i = 0; i < IDS_EACH; i++)
        mine[i] = disco__new_id();
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_new_ids_unique(void **state)
{
    (void)state;
    pthread_t t[ID_THREADS];
    for (int i = 0; i < ID_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, take_ids, ids[i]), 0);
    for (int i = 0; i < ID_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    uint64_t *all = &ids[0][0];
    qsort(all, ID_THREADS * IDS_EACH, sizeof(*all), cmp_u64);
    assert_true(all[0] != 0);
    for (int i = 1; i < ID_THREADS * IDS_EACH; i++)
        assert_true(all[i] != all[i - 1]);
}

static void test_max_frame(void **state)
{
    (void)state;
    char out[4096];
    setenv("DISCO_MAX_FRAME", "64K", 1);
    int status = test_run_self(self_path, "small-frames", out, sizeof(out));
    unsetenv("DISCO_MAX_FRAME");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("small-frames: status %#x\n%s", status, out);
}

/* A remote_do that fails reports on the worker's stderr, which reaches the
 * master's stderr. */
static int failing_remote_do(void)
{
    int w;
    if (disco_addprocs(1, NULL, &w) != 1)
        return 1;
    disco_value x = disco_f64(-4), r;
    if (disco_remote_do(real_sqrt, w, &x, 1) != 0)
        return 2;
    /* Calls start in order: once this one ran, the failure was printed. */
    if (disco_remotecall_fetch(whoami, w, NULL, 0, &r) != 0)
        return 3;
    disco_value_free(&r);
    return disco_finalize() ? 4 : 0;
}

static void test_remote_do_error_reported(void **state)
{
    (void)state;
    char out[4096];
    int status = test_run_self(self_path, "failing-remote-do", out, sizeof(out));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    const char *line = strstr(out, "From worker 2: disco: remote_do of 'real_sqrt' failed");
    if (!line)
        fail_msg("no report in:\n%s", out);
    assert_non_null(strstr(line, "DomainError with -4"));
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    started = test_wall_s();
    disco_init(&argc, &argv); /* a worker never returns from here */
    if (argc > 1 && !strcmp(argv[1], "doomed-master"))
        return doomed_master();
    if (argc > 1 && !strcmp(argv[1], "small-frames"))
        return small_frames();
    if (argc > 1 && !strcmp(argv[1], "failing-remote-do"))
        return failing_remote_do();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alone_then_addprocs),
        cmocka_unit_test(test_remotecall_fetch),
        cmocka_unit_test(test_worker_without_hwloc_plugins),
        cmocka_unit_test(test_argument_returned),
        cmocka_unit_test(test_future_cached),
        cmocka_unit_test(test_remote_error_names_worker),
        cmocka_unit_test(test_unknown_function),
        cmocka_unit_test(test_calls_start_in_order),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_wait_inside),
        cmocka_unit_test(test_batch_call_waits_for_later_call),
        cmocka_unit_test(test_batch_left_open_by_task),
        cmocka_unit_test(test_inflight_answers_not_held_by_a_waiter),
        cmocka_unit_test(test_inflight_answer_not_held_by_a_long_call),
        cmocka_unit_test(test_hostile_connection),
        cmocka_unit_test(test_corrupt_stream_closes_connection),
        cmocka_unit_test(test_worker_killed_with_calls_in_flight),
        cmocka_unit_test(test_rmprocs),
        cmocka_unit_test(test_call_to_self),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_rmprocs_async_and_stuck_worker),
        cmocka_unit_test(test_new_ids_unique),
        cmocka_unit_test(test_max_frame),
        cmocka_unit_test(test_remote_do_error_reported),
        cmocka_unit_test(test_no_orphans),
    };
    int rc = cmocka_run_group_tests_name("cluster", tests, NULL, NULL);
    disco_finalize();
    return rc;
}
