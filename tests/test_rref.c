/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Remote references with real worker processes: RemoteChannel operations
 * from every process (capacity 0 and n, factories, close waking takers on
 * two other processes), channels and futures passed as arguments, results
 * and through a third process, distributed reference counting back to zero
 * on the owner (also for fetched futures carrying their value, and for a
 * killed client, also one the owner has no connection to), the identity calls,
 * @everywhere with a failing process, globals and clear!, and the spawn
 * helpers. A plugin loaded before addprocs serving calls on the new workers
 * runs in a child master. This binary is also the worker program.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "disco.h"
#include "test_util.h"

static const char *self_path;

/* ---- functions the workers serve ----------------------------------------- */

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

/* [owned, clients, held] of this process. */
static int ref_stats(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    disco_ref_stats s;
    disco_refs_stats(&s);
    disco_value v[3] = {disco_i64((int64_t)s.owned), disco_i64((int64_t)s.clients),
                        disco_i64((int64_t)s.held)};
    disco_value list = disco_list(v, 3);
    return disco_value_copy(result, &list);
}
DISCO_FUNCTION(ref_stats)

/* Keeps args[0] (a reference) in global "kept": the owned copy holds it. */
static int keep(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    return n == 1 ? disco_global_set("kept", &args[0], false)
                  : disco_throw(DISCO_EINVAL, "keep(ref)");
}
DISCO_FUNCTION(keep)

/* Passes args[0] on to process args[1], which keeps it. */
static int forward(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n != 2 || args[1].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "forward(ref, pid)");
    return disco_remotecall_fetch(keep, (int)args[1].i, &args[0], 1, NULL);
}
DISCO_FUNCTION(forward)

/* Returns the kept reference (the result travels to the caller). */
static int give_kept(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    return disco_global_get("kept", result);
}
DISCO_FUNCTION(give_kept)

/* Fetches future args[0] here and returns a copy of its value. */
static int fetch_future(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    disco_future *f = disco_future_from_ref(&args[0]);
    if (!f)
        return disco_error_code(disco_last_error());
    const disco_value *v;
    int rc = disco_future_fetch(f, &v);
    if (rc == 0)
        rc = disco_value_copy(result, v);
    disco_future_release(f);
    return rc;
}
DISCO_FUNCTION(fetch_future)

static int nap_then(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    disco_sleep(args[0].f);
    *result = args[1];
    return 0;
}
DISCO_FUNCTION(nap_then)

static int fail_on(const disco_value *args, size_t n, disco_value *result)
{
    (void)n, (void)result;
    if (disco_myid() == args[0].i)
        return disco_throw(DISCO_EINVAL, "refused on purpose");
    return disco_global_set("visited", &args[0], false);
}
DISCO_FUNCTION(fail_on)

static int global_of(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    char name[64];
    snprintf(name, sizeof(name), "%.*s", (int)args[0].str.len, args[0].str.ptr);
    return disco_global_get(name, result);
}
DISCO_FUNCTION(global_of)

static int set_global(const disco_value *args, size_t n, disco_value *result)
{
    (void)n, (void)result;
    char name[64];
    snprintf(name, sizeof(name), "%.*s", (int)args[0].str.len, args[0].str.ptr);
    return disco_global_set(name, &args[1], args[2].b);
}
DISCO_FUNCTION(set_global)

/* Puts 1..args[1] into the remote channel args[0]. */
static int produce(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n != 2 || args[1].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "produce(channel, count)");
    disco_channel *ch = disco_channel_from_ref(&args[0]);
    if (!ch)
        return disco_error_code(disco_last_error());
    int rc = 0;
    for (int64_t i = 1; i <= args[1].i && !rc; i++) {
        disco_value v = disco_i64(i);
        rc = disco_put(ch, &v);
    }
    disco_channel_free(ch);
    return rc;
}
DISCO_FUNCTION(produce)

/* Takes args[1] integers from remote channel args[0]; returns their sum. */
static int consume(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 2 || args[1].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "consume(channel, count)");
    disco_channel *ch = disco_channel_from_ref(&args[0]);
    if (!ch)
        return disco_error_code(disco_last_error());
    int64_t sum = 0;
    int rc = 0;
    for (int64_t i = 0; i < args[1].i && !rc; i++) {
        disco_value v;
        if ((rc = disco_take(ch, &v)) == 0) {
            sum += v.i;
            disco_value_free(&v);
        }
    }
    disco_channel_free(ch);
    *result = disco_i64(sum);
    return rc;
}
DISCO_FUNCTION(consume)

/* Takes one item from channel args[0]: returns the status. */
static int take_status(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    disco_channel *ch = disco_channel_from_ref(&args[0]);
    if (!ch)
        return disco_error_code(disco_last_error());
    disco_value v;
    int rc = disco_take(ch, &v);
    if (rc == 0)
        disco_value_free(&v);
    disco_channel_free(ch);
    *result = disco_i64(rc);
    return 0;
}
DISCO_FUNCTION(take_status)

/* A factory: a channel of capacity args[0] holding the strings "a", "b". */
static disco_channel *two_letters(const disco_value *args, size_t n)
{
    disco_channel *ch = disco_channel_new(sizeof(disco_value), n ? (size_t)args[0].i : 4);
    const char *s[2] = {"a", "b"};
    for (int i = 0; ch && i < 2; i++) {
        disco_value v, b = disco_str(s[i]);
        disco_value_copy(&v, &b);
        disco_put(ch, &v);
    }
    return ch;
}
DISCO_CHANNEL_FACTORY(two_letters)

static disco_channel *wrong_items(const disco_value *args, size_t n)
{
    (void)args, (void)n;
    return disco_channel_new(sizeof(int), 1);
}
DISCO_CHANNEL_FACTORY(wrong_items)

/* ---- helpers ------------------------------------------------------------------ */

static int64_t stat_of(int pid, int which)
{
    disco_value r;
    if (disco_remotecall_fetch(ref_stats, pid, NULL, 0, &r) != 0)
        return -1;
    int64_t x = r.list.items[which].i;
    disco_value_free(&r);
    return x;
}

typedef struct {
    int pid, which;
    int64_t want;
} stat_wait;

static bool stat_is(void *arg)
{
    stat_wait *w = arg;
    return stat_of(w->pid, w->which) == w->want;
}

/* Releases travel asynchronously: wait (generously) for the count. */
static bool settles(int pid, int which, int64_t want)
{
    stat_wait w = {pid, which, want};
    return disco_timedwait(stat_is, &w, 30, 0.01) == 0;
}

#define OWNED 0
#define CLIENTS 1
#define HELD 2

static void drop_kept(int pid)
{
    const char *name = "kept";
    assert_int_equal(disco_clear_globals(&name, 1, &pid, 1), 0);
}

/* ---- reference counting ------------------------------------------------------- */

/* ---- RemoteChannel ------------------------------------------------------------ */

static void test_channel_ops(void **state)
{
    (void)state;
    disco_channel *ch = disco_remote_channel_new(2, 4);
    assert_non_null(ch);
    assert_true(disco_channel_is_remote(ch));
    assert_int_equal(disco_channel_capacity(ch), 4);
    assert_int_equal(disco_channel_elem_size(ch), sizeof(disco_value));
    assert_true(disco_isopen(ch));
    assert_false(disco_isready(ch));
    char buf[16] = "first";
    disco_value v = disco_str(buf), out;
    assert_int_equal(disco_put(ch, &v), 0);
    strcpy(buf, "XXXXX"); /* the put is done with the caller's memory */
    assert_true(disco_isready(ch));
    assert_int_equal(disco_wait(ch), 0);
    assert_int_equal(disco_fetch(ch, &out), 0); /* left in place */
    assert_string_equal(out.str.ptr, "first");
    disco_value_free(&out);
    assert_int_equal(disco_take(ch, &out), 0);
    assert_string_equal(out.str.ptr, "first");
    disco_value_free(&out);
    assert_false(disco_isready(ch));
    /* Arrays and lists go through whole. */
    int64_t xs[3] = {7, 8, 9};
    v = disco_array(DISCO_ELEM_I64, xs, 3);
    assert_int_equal(disco_put(ch, &v), 0);
    assert_int_equal(disco_take(ch, &out), 0);
    assert_int_equal(out.array.n, 3);
    assert_int_equal(((const int64_t *)out.array.data)[2], 9);
    disco_value_free(&out);
    /* Close: items put before it are still taken, then ECLOSED. */
    v = disco_i64(5);
    assert_int_equal(disco_put(ch, &v), 0);
    assert_int_equal(disco_close(ch), 0);
    assert_false(disco_isopen(ch));
    assert_int_equal(disco_put(ch, &v), DISCO_ECLOSED);
    assert_int_equal(disco_take(ch, &out), 0);
    assert_int_equal(out.i, 5);
    assert_int_equal(disco_take(ch, &out), DISCO_ECLOSED);
    assert_int_equal(disco_wait(ch), DISCO_ECLOSED);
    disco_channel_free(ch);
    assert_true(settles(2, OWNED, 0));
    /* Bad input. */
    assert_null(disco_remote_channel_new(99, 1));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_ENOPROC);
    v = disco_i64(1);
    assert_null(disco_channel_from_ref(&v));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
    assert_false(disco_channel_is_remote(NULL));
}

static void test_channel_owned_here(void **state)
{
    (void)state;
    /* The master owns it; two workers produce and consume through it. */
    disco_channel *ch = disco_remote_channel_new(1, 0); /* unbuffered */
    assert_non_null(ch);
    disco_value ref = disco_channel_ref(ch);
    long n = test_scaled(200);
    disco_value pargs[2] = {ref, disco_i64(n)};
    disco_future *p = disco_remotecall(produce, 2, pargs, 2);
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(consume, 3, pargs, 2, &r), 0);
    assert_int_equal(r.i, n * (n + 1) / 2);
    assert_int_equal(disco_future_wait(p), 0);
    disco_future_release(p);
    /* Local use of a channel stored here. */
    disco_value v = disco_i64(3);
    disco_future *t = disco_remotecall(consume, 4, (disco_value[]){ref, disco_i64(1)}, 2);
    assert_int_equal(disco_put(ch, &v), 0); /* returns once the taker has it */
    const disco_value *got;
    assert_int_equal(disco_future_fetch(t, &got), 0);
    assert_int_equal(got->i, 3);
    disco_future_release(t);
    int where, whence;
    uint64_t id;
    assert_int_equal(disco_remoteref_id(&ref, &where, &whence, &id), 0);
    assert_int_equal(where, 1);
    assert_int_equal(whence, 1);
    disco_channel *backing = disco_channel_from_id(whence, id);
    assert_non_null(backing);
    assert_false(disco_channel_is_remote(backing));
    assert_int_equal(disco_remoteref_id(&v, NULL, NULL, NULL), DISCO_EINVAL);
    disco_channel_free(ch);
    assert_true(settles(1, OWNED, 0));
    assert_null(disco_channel_from_id(whence, id));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_ESTATE);
}

static void test_channel_between_workers(void **state)
{
    (void)state;
    /* Owned by worker 2, used by workers 3 and 4 (lazy connections). */
    disco_channel *ch = disco_remote_channel_new(2, 8);
    assert_non_null(ch);
    disco_value ref = disco_channel_ref(ch);
    long n = test_scaled(300);
    disco_value args[2] = {ref, disco_i64(n)};
    disco_future *p = disco_remotecall(produce, 3, args, 2);
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(consume, 4, args, 2, &r), 0);
    assert_int_equal(r.i, n * (n + 1) / 2);
    assert_int_equal(disco_future_wait(p), 0);
    disco_future_release(p);
    disco_channel_free(ch);
    assert_true(settles(2, OWNED, 0));
}

static void test_close_wakes_takers(void **state)
{
    (void)state;
    disco_channel *ch = disco_remote_channel_new(2, 1);
    assert_non_null(ch);
    disco_value ref = disco_channel_ref(ch);
    disco_future *a = disco_remotecall(take_status, 3, &ref, 1);
    disco_future *b = disco_remotecall(take_status, 4, &ref, 1);
    disco_sleep(0.3); /* let both wait on the owner; correct without it too */
    assert_int_equal(disco_close(ch), 0);
    const disco_value *v;
    assert_int_equal(disco_future_fetch(a, &v), 0);
    assert_int_equal(v->i, DISCO_ECLOSED);
    assert_int_equal(disco_future_fetch(b, &v), 0);
    assert_int_equal(v->i, DISCO_ECLOSED);
    disco_future_release(a);
    disco_future_release(b);
    disco_value x = disco_i64(1);
    assert_int_equal(disco_put(ch, &x), DISCO_ECLOSED);
    disco_channel_free(ch);
    assert_true(settles(2, OWNED, 0));
}

static void test_factory(void **state)
{
    (void)state;
    disco_value cap = disco_i64(8), out;
    disco_channel *ch = disco_remote_channel_make(3, two_letters, &cap, 1);
    assert_non_null(ch);
    assert_int_equal(disco_channel_capacity(ch), 8);
    assert_int_equal(disco_take(ch, &out), 0);
    assert_string_equal(out.str.ptr, "a");
    disco_value_free(&out);
    assert_int_equal(disco_take(ch, &out), 0);
    assert_string_equal(out.str.ptr, "b");
    disco_value_free(&out);
    disco_channel_free(ch);
    assert_null(disco_remote_channel_make(3, wrong_items, NULL, 0));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
    assert_null(disco_remote_channel_make(3, NULL, NULL, 0));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_ENOFUNC);
    assert_int_equal(disco_register_channel_factory("two_letters", wrong_items), DISCO_EBUSY);
    assert_true(settles(3, OWNED, 0));
}

static void test_refcount_channels(void **state)
{
    (void)state;
    disco_channel *ch = disco_remote_channel_new(2, 4);
    assert_non_null(ch);
    disco_value ref = disco_channel_ref(ch);
    assert_int_equal(stat_of(2, OWNED), 1);
    assert_int_equal(stat_of(2, CLIENTS), 1); /* us */
    /* To 3, which keeps it; to 4 through 3; to the owner itself. */
    assert_int_equal(disco_remotecall_fetch(keep, 3, &ref, 1, NULL), 0);
    disco_value fw[2] = {ref, disco_i64(4)};
    assert_int_equal(disco_remotecall_fetch(forward, 3, fw, 2, NULL), 0); /* 3 -> 4 */
    assert_int_equal(disco_remotecall_fetch(keep, 2, &ref, 1, NULL), 0);
    assert_int_equal(stat_of(2, CLIENTS), 3); /* 1, 3, 4 (the owner holds its own) */
    assert_int_equal(stat_of(4, HELD), 1);
    /* 4 hands it back as a result: usable here. */
    disco_value back;
    assert_int_equal(disco_remotecall_fetch(give_kept, 4, NULL, 0, &back), 0);
    disco_channel *again = disco_channel_from_ref(&back);
    disco_value_free(&back);
    disco_value x = disco_i64(11), out;
    assert_int_equal(disco_put(again, &x), 0);
    assert_int_equal(disco_take(ch, &out), 0);
    assert_int_equal(out.i, 11);
    disco_channel_free(again);
    /* Everyone lets go: the owner frees it. */
    disco_channel_free(ch);
    assert_int_equal(stat_of(2, OWNED), 1);
    drop_kept(3);
    drop_kept(4);
    assert_true(settles(2, CLIENTS, 0));
    assert_int_equal(stat_of(2, OWNED), 1); /* the owner's own global */
    drop_kept(2);
    assert_true(settles(2, OWNED, 0));
    for (int pid = 1; pid <= 4; pid++)
        assert_true(settles(pid, HELD, 0));
}

static void test_dead_client_of_channel(void **state)
{
    (void)state;
    /* 2 owns it, 5 holds it and is killed: 2 forgets 5 (without a
     * connection of its own to 5: the master tells it). */
    disco_channel *ch = disco_remote_channel_new(2, 4);
    disco_value ref = disco_channel_ref(ch), r;
    assert_int_equal(disco_remotecall_fetch(keep, 5, &ref, 1, NULL), 0);
    assert_int_equal(stat_of(2, CLIENTS), 2);
    assert_int_equal(disco_remotecall_fetch(os_pid, 5, NULL, 0, &r), 0);
    assert_int_equal(kill((pid_t)r.i, SIGKILL), 0);
    assert_true(settles(2, CLIENTS, 1));
    disco_channel_free(ch);
    assert_true(settles(2, OWNED, 0));
}

static void test_refcount_futures(void **state)
{
    (void)state;
    /* Unfetched: 3 gets the value from us (the caller keeps it). */
    disco_value args[2] = {disco_f64(0.2), disco_str("late")};
    disco_future *f = disco_remotecall(nap_then, 2, args, 2);
    assert_non_null(f);
    disco_value ref = disco_future_ref(f);
    assert_int_equal(ref.ref.flags & DISCO_REF_CARRIES, 0);
    disco_value r;
    assert_int_equal(disco_remotecall_fetch(keep, 4, &ref, 1, NULL), 0);
    assert_int_equal(disco_remotecall_fetch(fetch_future, 3, &ref, 1, &r), 0);
    assert_string_equal(r.str.ptr, "late");
    disco_value_free(&r);
    /* Passed on through a third process. */
    disco_value fw[2] = {ref, disco_i64(5)};
    assert_int_equal(disco_remotecall_fetch(forward, 4, fw, 2, NULL), 0);
    disco_future_release(f); /* others still hold it: we keep the value */
    assert_int_equal(stat_of(1, OWNED), 1);
    assert_int_equal(disco_remotecall_fetch(give_kept, 5, NULL, 0, &r), 0);
    disco_future *g = disco_future_from_ref(&r); /* our own future again */
    disco_value_free(&r);
    assert_non_null(g);
    const disco_value *v;
    assert_int_equal(disco_future_fetch(g, &v), 0);
    assert_string_equal(v->str.ptr, "late");
    drop_kept(4);
    drop_kept(5);
    assert_true(settles(1, CLIENTS, 0));
    /* Fetched: it carries its value; nobody is tracked. */
    ref = disco_future_ref(g);
    assert_true(ref.ref.flags & DISCO_REF_CARRIES);
    assert_int_equal(disco_remotecall_fetch(keep, 3, &ref, 1, NULL), 0);
    disco_value fw2[2] = {ref, disco_i64(4)};
    assert_int_equal(disco_remotecall_fetch(forward, 3, fw2, 2, NULL), 0);
    disco_future_release(g);
    assert_int_equal(stat_of(1, OWNED), 0);
    disco_value kept;
    assert_int_equal(disco_remotecall_fetch(give_kept, 4, NULL, 0, &kept), 0);
    assert_int_equal(disco_remotecall_fetch(fetch_future, 2, &kept, 1, &r), 0);
    assert_string_equal(r.str.ptr, "late");
    disco_value_free(&r);
    disco_value_free(&kept);
    drop_kept(3);
    drop_kept(4);
    for (int pid = 1; pid <= 5; pid++) {
        assert_true(settles(pid, OWNED, 0));
        assert_true(settles(pid, HELD, 0));
    }
    /* A future of ours that is not kept (a reference is only data). */
    disco_ref none = {.where = 2, .whence = 1, .id = UINT64_MAX - 1, .kind = DISCO_REF_FUTURE};
    disco_value hr = disco_ref_value(none);
    assert_null(disco_future_from_ref(&hr));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_ESTATE);
    disco_value nil = disco_nil();
    assert_null(disco_future_from_ref(&nil));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
}

static void test_dead_client(void **state)
{
    (void)state;
    /* 4 holds our future and is killed: we forget it and free the value. */
    disco_value args[2] = {disco_f64(0.5), disco_i64(1)};
    disco_future *f = disco_remotecall(nap_then, 2, args, 2); /* not ready yet */
    disco_value ref = disco_future_ref(f), r;
    assert_int_equal(disco_remotecall_fetch(keep, 4, &ref, 1, NULL), 0);
    disco_future_release(f);
    assert_int_equal(stat_of(1, OWNED), 1);
    assert_int_equal(disco_remotecall_fetch(os_pid, 4, NULL, 0, &r), 0);
    assert_int_equal(kill((pid_t)r.i, SIGKILL), 0);
    assert_true(settles(1, OWNED, 0));
}

/* ---- identities ---------------------------------------------------------------- */

static void test_worker_id_from_socket(void **state)
{
    (void)state;
    int found = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        int fd = atoi(de->d_name), pid = disco_worker_id_from_socket(fd);
        if (pid > 0) {
            assert_true(pid >= 2);
            found++;
        }
    }
    closedir(d);
    assert_true(found >= 3); /* 2, 3, 4 at least */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(disco_worker_id_from_socket(fds[0]), DISCO_EINVAL);
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(disco_worker_id_from_socket(-1), DISCO_EINVAL);
}

/* ---- @everywhere, globals, spawn ---------------------------------------------- */

static void test_everywhere(void **state)
{
    (void)state;
    disco_value no = disco_i64(-1);
    assert_int_equal(disco_everywhere(fail_on, &no, 1, NULL, 0), 0);
    int pids[8], n = disco_procs(pids, 8);
    for (int i = 0; i < n; i++) {
        disco_value name = disco_str("visited"), r;
        assert_int_equal(disco_remotecall_fetch(global_of, pids[i], &name, 1, &r), 0);
        assert_int_equal(r.i, -1);
    }
    disco_value three = disco_i64(3);
    assert_int_equal(disco_everywhere(fail_on, &three, 1, NULL, 0), DISCO_ECOMPOSITE);
    const disco_error *e = disco_last_error();
    assert_int_equal(disco_error_count(e), 1);
    assert_int_equal(disco_error_pid(disco_error_nested(e, 0)), 3);
    assert_non_null(strstr(disco_error_message(disco_error_nested(e, 0)), "on purpose"));
    int some[2] = {2, 4};
    assert_int_equal(disco_everywhere(fail_on, &three, 1, some, 2), 0);
    assert_int_equal(disco_everywhere(fail_on, &three, 1, some, -1), DISCO_EINVAL);
    assert_int_equal(disco_everywhere(NULL, NULL, 0, some, 2), DISCO_ECOMPOSITE);
    assert_int_equal(disco_everywhere_load(""), DISCO_EINVAL);
    assert_int_equal(disco_everywhere_load("/nonexistent/plugin.so"), DISCO_ECOMPOSITE);
    assert_non_null(strstr(disco_error_message(disco_error_nested(disco_last_error(), 0)),
                           "nonexistent"));
}

static void test_globals(void **state)
{
    (void)state;
    disco_value v = disco_str("hello"), out;
    assert_int_equal(disco_global_set("greeting", &v, false), 0);
    assert_int_equal(disco_global_get("greeting", &out), 0);
    assert_string_equal(out.str.ptr, "hello");
    disco_value_free(&out);
    assert_int_equal(disco_global_get("nothing", &out), DISCO_EINVAL);
    assert_int_equal(disco_global_set("", &v, false), DISCO_EINVAL);
    assert_int_equal(disco_global_set("pi", &(disco_value){.type = DISCO_F64, .f = 3.14}, true), 0);
    assert_int_equal(disco_global_set("pi", &v, false), DISCO_EPERM);
    /* On workers, then clear! on some of them. */
    disco_value set[3] = {disco_str("x"), disco_i64(42), disco_bool(false)};
    assert_int_equal(disco_everywhere(set_global, set, 3, NULL, 0), 0);
    disco_value cset[3] = {disco_str("c"), disco_i64(1), disco_bool(true)};
    assert_int_equal(disco_everywhere(set_global, cset, 3, NULL, 0), 0);
    const char *names[1] = {"x"};
    int two[1] = {2};
    assert_int_equal(disco_clear_globals(names, 1, two, 1), 0);
    disco_value xname = disco_str("x");
    assert_int_equal(disco_remotecall_fetch(global_of, 2, &xname, 1, &out), 0);
    assert_int_equal(out.type, DISCO_NIL);
    assert_int_equal(disco_remotecall_fetch(global_of, 3, &xname, 1, &out), 0);
    assert_int_equal(out.i, 42);
    const char *c[1] = {"c"};
    assert_int_equal(disco_clear_globals(c, 1, NULL, 0), DISCO_ECOMPOSITE);
    assert_int_equal(disco_error_code(disco_error_nested(disco_last_error(), 0)), DISCO_EPERM);
    assert_int_equal(disco_clear_globals(NULL, 1, NULL, 0), DISCO_EINVAL);
    assert_int_equal(disco_global_get("greeting", &out), 0); /* untouched */
    disco_value_free(&out);
}

static void test_spawn(void **state)
{
    (void)state;
    int seen[8] = {0};
    int n = disco_nworkers();
    for (int i = 0; i < 2 * n; i++) {
        disco_future *f = disco_spawn(whoami, NULL, 0);
        const disco_value *v;
        assert_int_equal(disco_future_fetch(f, &v), 0);
        seen[v->i]++;
        disco_future_release(f);
    }
    for (int pid = 2; pid < 2 + n; pid++)
        assert_int_equal(seen[pid], 2); /* round-robin: each twice */
    disco_future *f = disco_spawnat(3, whoami, NULL, 0);
    const disco_value *v;
    assert_int_equal(disco_future_fetch(f, &v), 0);
    assert_int_equal(v->i, 3);
    disco_future_release(f);
    disco_value r;
    assert_int_equal(disco_fetchfrom(4, whoami, NULL, 0, &r), 0);
    assert_int_equal(r.i, 4);
    assert_int_equal(disco_fetchfrom(99, whoami, NULL, 0, &r), DISCO_ENOPROC);
}

/* ---- a plugin loaded before addprocs (child master) ---------------------------- */

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "check failed at line %d: %s\n", __LINE__, #cond);      \
            return 1;                                                                \
        }                                                                            \
    } while (0)

static int plugin_master(void)
{
    const char *path = getenv("DISCO_TEST_PLUGIN");
    CHECK(path != NULL);
    CHECK(disco_everywhere_load(path) == 0);
    disco_function triple = (disco_function)dlsym(RTLD_DEFAULT, "plugin_triple");
    CHECK(triple != NULL);
    int w[2];
    CHECK(disco_addprocs(2, NULL, w) == 2);
    disco_value x = disco_i64(14), r;
    for (int i = 0; i < 2; i++) {
        CHECK(disco_remotecall_fetch(triple, w[i], &x, 1, &r) == 0);
        CHECK(r.i == 42);
    }
    CHECK(disco_finalize() == 0);
    return 0;
}

static void test_plugin_on_new_workers(void **state)
{
    (void)state;
    char out[8192];
    int status = test_run_self(self_path, "plugin-master", out, sizeof(out));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("plugin master: status %#x, stderr:\n%s", status, out);
}

static int setup(void **state)
{
    (void)state;
    return disco_addprocs(4, NULL, NULL) == 4 ? 0 : -1; /* 2..5 */
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    disco_init(&argc, &argv); /* a worker never returns from here */
    if (argc > 1 && !strcmp(argv[1], "plugin-master"))
        return plugin_master();
    /* The plugin libtool built next to this binary, for the child master. */
    char plugin[4096];
    const char *slash = strrchr(self_path, '/');
    snprintf(plugin, sizeof(plugin), "%.*s.libs/plugin_triple.so",
             slash ? (int)(slash - self_path + 1) : 0, self_path);
    setenv("DISCO_TEST_PLUGIN", plugin, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_ops),
        cmocka_unit_test(test_channel_owned_here),
        cmocka_unit_test(test_channel_between_workers),
        cmocka_unit_test(test_close_wakes_takers),
        cmocka_unit_test(test_factory),
        cmocka_unit_test(test_refcount_channels),
        cmocka_unit_test(test_refcount_futures),
        cmocka_unit_test(test_worker_id_from_socket),
        cmocka_unit_test(test_everywhere),
        cmocka_unit_test(test_globals),
        cmocka_unit_test(test_spawn),
        cmocka_unit_test(test_dead_client_of_channel), /* kills worker 5 */
        cmocka_unit_test(test_dead_client),                /* kills worker 4 */
        cmocka_unit_test(test_plugin_on_new_workers),
    };
    int rc = cmocka_run_group_tests_name("rref", tests, setup, NULL);
    disco_finalize();
    return rc;
}
