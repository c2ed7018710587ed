/* SPDX-License-Identifier: BSD-3-Clause */
/* Tasks: spawn, join, results and errors, detach, yield, stealing, stack
 * overflow, main-thread blocking, interruption. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "disco.h"
#include "sched/interrupt.h"
#include "sched/sched.h"
#include "test_util.h"

static const char *self_path;

static int add_one(void *arg, void **result)
{
    *result = (void *)((uintptr_t)arg + 1);
    return 0;
}

static int fail_with(void *arg, void **result)
{
    (void)result;
    return disco_error_set(DISCO_EIO, "broke on %ld", (long)(uintptr_t)arg);
}

static int fail_plain(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return DISCO_EBUSY; /* no error detail: the runtime makes one */
}

static void test_join_result_from_main(void **state)
{
    (void)state;
    void *res = NULL;
    disco_task *t = disco_async(add_one, (void *)41);
    assert_non_null(t);
    assert_true(disco_task_id(t) > 0);
    assert_int_equal(disco_task_join(t, &res), 0);
    assert_int_equal((uintptr_t)res, 42);
    assert_null(disco_current_task()); /* main thread is not a task */
    assert_true(disco_sched_nthreads() >= 1);
}

static void test_join_error(void **state)
{
    (void)state;
    disco_error_clear();
    disco_task *t = disco_async(fail_with, (void *)7);
    assert_int_equal(disco_task_join(t, NULL), DISCO_EIO);
    assert_non_null(disco_last_error());
    assert_string_equal(disco_error_message(disco_last_error()), "broke on 7");
    disco_task_attr attr = {.name = "plain"};
    t = disco_async_attr(fail_plain, NULL, &attr);
    assert_string_equal(disco_task_name(t), "plain");
    assert_int_equal(disco_task_join(t, NULL), DISCO_EBUSY);
    assert_non_null(strstr(disco_error_message(disco_last_error()), "'plain'"));
    disco_error_clear();
    assert_null(disco_async(NULL, NULL));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
    assert_int_equal(disco_task_join(NULL, NULL), DISCO_EINVAL);
}

/* Recursive fork-join: each node spawns two children and joins them from
 * inside a task, which parks the parent and exercises stealing. */
static int tree(void *arg, void **result)
{
    long depth = (long)(uintptr_t)arg;
    if (depth == 0) {
        *result = (void *)1;
        return 0;
    }
    disco_task *a = disco_async(tree, (void *)(uintptr_t)(depth - 1));
    disco_task *b = disco_async(tree, (void *)(uintptr_t)(depth - 1));
    void *ra, *rb;
    int rc = disco_task_join(a, &ra);
    rc |= disco_task_join(b, &rb);
    *result = (void *)((uintptr_t)ra + (uintptr_t)rb);
    return rc;
}

static void test_tree_of_tasks(void **state)
{
    (void)state;
    long depth = 14;
    void *res;
    disco_task *t = disco_async(tree, (void *)(uintptr_t)depth);
    assert_int_equal(disco_task_join(t, &res), 0);
    assert_int_equal((uintptr_t)res, 1ul << depth);
}

struct spread {
    _Atomic long count;
    _Atomic unsigned long threads_seen; /* bit per pthread hash */
};

/* A small number per OS thread, for counting the threads that ran tasks. */
static int thread_bit(void)
{
    static atomic_int next;
    static __thread int bit = -1;
    if (bit < 0)
        bit = atomic_fetch_add(&next, 1) % 64;
    return bit;
}

static int note_thread(void *arg, void **result)
{
    (void)result;
    struct spread *s = arg;
    volatile double x = 0;
    for (int i = 0; i < 20000; i++) /* enough work for a thief to show up */
        x += i;
    atomic_fetch_or(&s->threads_seen, 1ul << thread_bit());
    atomic_fetch_add(&s->count, 1);
    return 0;
}

static int spawn_many(void *arg, void **result)
{
    (void)result;
    enum { N = 2000 };
    static disco_task *tasks[N];
    for (int i = 0; i < N; i++)
        tasks[i] = disco_async(note_thread, arg);
    int rc = 0;
    for (int i = 0; i < N; i++)
        rc |= disco_task_join(tasks[i], NULL);
    return rc;
}

static void test_work_is_stolen(void **state)
{
    (void)state;
    if (disco_sched_nthreads() < 2)
        skip();
    /* Spawned on one worker, run on more than one. A loaded machine may
     * leave the second thread off the CPU for a whole round: allow a few. */
    int threads = 0;
    for (int round = 0; round < 10 && threads < 2; round++) {
        struct spread s = {0};
        disco_task *t = disco_async(spawn_many, &s);
        assert_int_equal(disco_task_join(t, NULL), 0);
        assert_int_equal(atomic_load(&s.count), 2000);
        threads = __builtin_popcountl(atomic_load(&s.threads_seen));
    }
    assert_true(threads >= 2);
}

struct pingpong {
    int turn;
    int rounds;
};

struct player_arg {
    struct pingpong *p;
    int me;
};

static int player(void *arg, void **result)
{
    struct pingpong *p = ((struct player_arg *)arg)->p;
    int me = ((struct player_arg *)arg)->me;
    (void)result;
    for (int i = 0; i < p->rounds; i++) {
        while (__atomic_load_n(&p->turn, __ATOMIC_ACQUIRE) != me)
            disco_yield();
        __atomic_store_n(&p->turn, 1 - me, __ATOMIC_RELEASE);
    }
    return 0;
}

static void test_yield_ping_pong(void **state)
{
    (void)state;
    struct pingpong p = {.turn = 0, .rounds = (int)test_scaled(20000)};
    struct player_arg a0 = {&p, 0}, a1 = {&p, 1};
    disco_task *t0 = disco_async(player, &a0);
    disco_task *t1 = disco_async(player, &a1);
    assert_int_equal(disco_task_join(t0, NULL), 0);
    assert_int_equal(disco_task_join(t1, NULL), 0);
    disco_yield(); /* outside a task: returns at once */
}

static atomic_int detached_ran;

static int detached_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    atomic_fetch_add(&detached_ran, 1);
    return 0;
}

static void test_detach(void **state)
{
    (void)state;
    disco_task_attr attr = {.detached = true};
    assert_non_null(disco_async_attr(detached_body, NULL, &attr));
    disco_task *t = disco_async(detached_body, NULL);
    disco_task_detach(t);
    while (atomic_load(&detached_ran) < 2)
        disco_sleep(0.001);
}

static void test_detached_failure_is_printed(void **state)
{
    (void)state;
    char out[4096];
    int status = test_run_self(self_path, "detached-failure", out, sizeof(out));
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(out, "detached task"));
    assert_non_null(strstr(out, "'doomed'"));
    assert_non_null(strstr(out, "broke on 99"));
}

static int deep(void *arg, void **result)
{
    volatile char pad[4096];
    pad[0] = (char)(uintptr_t)arg;
    if ((uintptr_t)arg < (1u << 30)) /* always true: recurse until it faults */
        deep((void *)((uintptr_t)arg + 1), result);
    return pad[0];
}

static void test_stack_overflow_is_named(void **state)
{
    (void)state;
    char out[4096];
    int status = test_run_self(self_path, "overflow", out, sizeof(out));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
    assert_non_null(strstr(out, "stack overflow in task"));
    assert_non_null(strstr(out, "'recurser'"));
}

struct sleeper_arg {
    disco_task *t;
};

static int long_sleeper(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return disco_sleep(0.05);
}

static void *join_from_thread(void *arg)
{
    struct sleeper_arg *a = arg;
    return (void *)(intptr_t)disco_task_join(a->t, NULL);
}

/* Foreign threads block (on a futex) in disco_task_join while the task
 * sleeps on a timer. */
static void test_join_from_foreign_thread(void **state)
{
    (void)state;
    struct sleeper_arg a = {disco_async(long_sleeper, NULL)};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, join_from_thread, &a), 0);
    void *rc;
    pthread_join(th, &rc);
    assert_int_equal((intptr_t)rc, 0);
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

struct join_box {
    disco_event go;
    disco_task *target;
};

static int wait_go(void *arg, void **result)
{
    (void)result;
    return disco_event_wait(arg);
}

static int join_target(void *arg, void **result)
{
    (void)result;
    struct join_box *b = arg;
    return disco_task_join(b->target, NULL);
}

static void *interrupt_from_thread(void *t)
{
    disco__task_interrupt(t);
    return NULL;
}

/* A join interrupted from a foreign thread fails and keeps the handle. */
static void test_interrupt_join(void **state)
{
    (void)state;
    struct join_box b;
    disco_event_init(&b.go, false);
    b.target = disco_async(wait_go, &b.go);
    disco_task *joiner = disco_async(join_target, &b);
    assert_true(parked(joiner));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, interrupt_from_thread, joiner), 0);
    pthread_join(th, NULL);
    assert_true(finishes(joiner));
    assert_int_equal(disco_task_join(joiner, NULL), DISCO_EINTERRUPTED);
    assert_false(disco_task_done(b.target)); /* only the joiner was hit */
    disco_event_notify(&b.go);
    assert_int_equal(disco_task_join(b.target, NULL), 0);
}

static int sleep_minute(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return disco_sleep(60);
}

static int interrupt_task(void *arg, void **result)
{
    (void)result;
    disco__task_interrupt(arg);
    return 0;
}

static void test_interrupt_from_task(void **state)
{
    (void)state;
    disco_task *sleeper = disco_async(sleep_minute, NULL);
    assert_true(parked(sleeper));
    assert_int_equal(disco_task_join(disco_async(interrupt_task, sleeper), NULL), 0);
    assert_true(finishes(sleeper));
    assert_int_equal(disco_task_join(sleeper, NULL), DISCO_EINTERRUPTED);
}

struct pending_box {
    atomic_bool started;
    bool flag_at_start;
    int rc_event_set, rc_put_room, rc_take_item, rc_take_empty, rc_sleep,
        rc_sleep_again;
    char msg[64];
};

/* Interrupted while running: calls that need not wait still complete, the
 * first call that would wait fails at once, and so does every later one. */
static int interrupted_while_running(void *arg, void **result)
{
    (void)result;
    struct pending_box *b = arg;
    b->flag_at_start = disco_interrupted();
    atomic_store(&b->started, true);
    while (!disco_interrupted())
        disco_yield();
    disco_event set;
    disco_event_init(&set, false);
    disco_event_notify(&set);
    b->rc_event_set = disco_event_wait(&set);
    disco_channel *ch = disco_channel_new(sizeof(long), 1);
    long v = 1;
    b->rc_put_room = disco_put(ch, &v);
    b->rc_take_item = disco_take(ch, &v);
    b->rc_take_empty = disco_take(ch, &v);
    b->rc_sleep = disco_sleep(60);
    snprintf(b->msg, sizeof(b->msg), "%s", disco_error_message(disco_last_error()));
    b->rc_sleep_again = disco_sleep(60);
    disco_channel_free(ch);
    return 0;
}

static bool started(void *b) { return atomic_load(&((struct pending_box *)b)->started); }

static void test_interrupt_before_waiting(void **state)
{
    (void)state;
    assert_false(disco_interrupted()); /* outside tasks */
    struct pending_box b = {0};
    disco_task *t = disco_async(interrupted_while_running, &b);
    assert_int_equal(disco_timedwait(started, &b, 30, 0.001), 0);
    disco__task_interrupt(t);
    char want[64];
    snprintf(want, sizeof(want), "task %llu interrupted",
             (unsigned long long)disco_task_id(t));
    assert_true(finishes(t));
    assert_int_equal(disco_task_join(t, NULL), 0);
    assert_false(b.flag_at_start);
    assert_int_equal(b.rc_event_set, 0);
    assert_int_equal(b.rc_put_room, 0);
    assert_int_equal(b.rc_take_item, 0);
    assert_int_equal(b.rc_take_empty, DISCO_EINTERRUPTED);
    assert_int_equal(b.rc_sleep, DISCO_EINTERRUPTED);
    assert_string_equal(b.msg, want);
    assert_int_equal(b.rc_sleep_again, DISCO_EINTERRUPTED); /* sticky */
}

/* Interrupting a finished task whose handle is held is harmless. */
static void test_interrupt_finished_task(void **state)
{
    (void)state;
    disco_task *t = disco_async(add_one, (void *)1);
    assert_true(finishes(t));
    disco__task_interrupt(t);
    void *res;
    assert_int_equal(disco_task_join(t, &res), 0);
    assert_int_equal((uintptr_t)res, 2);
}

static void test_stop_and_restart(void **state)
{
    (void)state;
    assert_int_equal(disco_sched_stop(), 0);
    assert_int_equal(disco_sched_start(2), 0);
    assert_int_equal(disco_sched_start(2), DISCO_EBUSY);
    assert_int_equal(disco_sched_nthreads(), 2);
    void *res;
    assert_int_equal(disco_task_join(disco_async(add_one, (void *)1), &res), 0);
    assert_int_equal((uintptr_t)res, 2);
    assert_int_equal(disco_sched_stop(), 0);
}

/* DISCO_THREADS and DISCO_STACK_SIZE are read when the scheduler starts:
 * check them in a fresh process. */
static void test_environment_settings(void **state)
{
    (void)state;
    char out[256];
    setenv("DISCO_THREADS", "3", 1);
    setenv("DISCO_STACK_SIZE", "1M", 1);
    int status = test_run_self(self_path, "settings", out, sizeof(out));
    unsetenv("DISCO_THREADS");
    unsetenv("DISCO_STACK_SIZE");
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(out, "threads=3 "));
    assert_non_null(strstr(out, "deep=ok"));
}

/* Recursion that needs ~450 KiB of stack: fine with DISCO_STACK_SIZE=1M,
 * an overflow with the default 256 KiB. */
static int needs_stack(void *arg, void **result)
{
    (void)result;
    long depth = (long)(intptr_t)arg;
    volatile char pad[1024];
    pad[0] = (char)depth;
    if (depth > 0)
        needs_stack((void *)(intptr_t)(depth - 1), result);
    return pad[0] == (char)depth ? 0 : -1;
}

static int child_mode(const char *mode)
{
    if (!strcmp(mode, "settings")) {
        unsigned n = disco_sched_nthreads();
        int rc = disco_task_join(disco_async(needs_stack, (void *)400), NULL);
        fprintf(stderr, "threads=%u deep=%s\n", n, rc == 0 ? "ok" : "failed");
        return 0;
    }
    if (!strcmp(mode, "overflow")) {
        disco_task_attr attr = {.name = "recurser", .stack_size = 64 * 1024};
        disco_task_join(disco_async_attr(deep, NULL, &attr), NULL);
        return 3; /* not reached: the overflow kills us */
    }
    if (!strcmp(mode, "detached-failure")) {
        disco_task_attr attr = {.name = "doomed", .detached = true};
        disco_async_attr(fail_with, (void *)99, &attr);
        while (disco_sched_stop() == DISCO_EBUSY) /* until it has finished */
            disco_sleep(0.01);
        return 0;
    }
    return 2;
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc > 1)
        return child_mode(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_result_from_main),
        cmocka_unit_test(test_join_error),
        cmocka_unit_test(test_tree_of_tasks),
        cmocka_unit_test(test_work_is_stolen),
        cmocka_unit_test(test_yield_ping_pong),
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_detached_failure_is_printed),
        cmocka_unit_test(test_stack_overflow_is_named),
        cmocka_unit_test(test_join_from_foreign_thread),
        cmocka_unit_test(test_interrupt_join),
        cmocka_unit_test(test_interrupt_from_task),
        cmocka_unit_test(test_interrupt_before_waiting),
        cmocka_unit_test(test_interrupt_finished_task),
        cmocka_unit_test(test_stop_and_restart),
        cmocka_unit_test(test_environment_settings),
    };
    return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
