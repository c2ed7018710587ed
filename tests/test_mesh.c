/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Worker-to-worker connections with real workers: the lazy all-to-all mesh
 * (connections made on first use, in either direction, once), the eager
 * mesh (complete when addprocs returns, also for workers added later), the
 * master_worker star (a worker-to-worker call fails at once; a worker's
 * connection to another is refused), and a worker-to-worker call whose
 * callee is killed. The topology is chosen once per cluster, so the eager
 * and star clusters run in child processes of this binary, which is also
 * the worker program.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/runtime.h"
#include "disco.h"
#include "test_util.h"

static const char *self_path;

/* ---- functions the workers serve ----------------------------------------- */

static int whoami(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    disco_value pair[2] = {disco_i64(disco_myid()), disco_i64(getpid())};
    return disco_value_copy(result, &(disco_value){.type = DISCO_LIST,
                                                   .list = {pair, 2}});
}
DISCO_FUNCTION(whoami)

static int nap(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    return disco_sleep(n == 1 && args[0].type == DISCO_F64 ? args[0].f : 0);
}
DISCO_FUNCTION(nap)

/* The pids this process is connected to, as an i64 array. */
static int connections(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    int64_t pids[64];
    int got[64];
    int k = disco_connections(got, 64);
    for (int i = 0; i < k && i < 64; i++)
        pids[i] = got[i];
    disco_value a = disco_array(DISCO_ELEM_I64, pids, (size_t)(k < 64 ? k : 64));
    return disco_value_copy(result, &a);
}
DISCO_FUNCTION(connections)

/* From here, calls whoami on args[0] args[1] times at once; returns the
 * pid that answered, or fails with the first error. */
static int call_peer(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 2 || args[0].type != DISCO_I64 || args[1].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "call_peer(pid, count)");
    disco_future *f[16];
    int k = (int)(args[1].i < 16 ? args[1].i : 16), rc = 0;
    for (int i = 0; i < k; i++)
        if (!(f[i] = disco_remotecall(whoami, (int)args[0].i, NULL, 0)))
            return disco_error_code(disco_last_error());
    for (int i = 0; i < k; i++) {
        const disco_value *v;
        int frc = disco_future_fetch(f[i], &v);
        if (frc == 0 && rc == 0)
            *result = disco_i64(v->list.items[0].i);
        else if (rc == 0)
            rc = frc; /* the error stays in the last-error slot */
        disco_future_release(f[i]);
    }
    return rc;
}
DISCO_FUNCTION(call_peer)

/* From here, naps on args[0] for a long time; returns the status the call
 * ended with (the callee is killed meanwhile). */
static int nap_on(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    disco_value a = disco_f64(60);
    int rc = disco_remotecall_fetch(nap, (int)args[0].i, &a, 1, NULL);
    *result = disco_i64(rc);
    return 0;
}
DISCO_FUNCTION(nap_on)

/* Star topology: dials worker args[0] at address args[1] by hand, as a
 * rogue worker would, and reports whether the connection was refused. */
static int dial_by_hand(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    int pid = (int)args[0].i;
    char addr[DISCO__IDENTITY_ADDR_MAX + 1];
    snprintf(addr, sizeof(addr), "%.*s", (int)args[1].str.len, args[1].str.ptr);
    disco__peer *p = disco__peer_new(pid), *none = NULL;
    if (!p || !atomic_compare_exchange_strong(&disco__rt.peers[pid], &none, p))
        return disco_throw(DISCO_ESTATE, "cannot set up the dial");
    if (disco__peer_dial(p, addr) != 0)
        return disco_error_code(disco_last_error());
    for (int i = 0; i < 3000 && atomic_load(&p->state) != PEER_GONE; i++)
        disco_sleep(0.01);
    *result = disco_bool(atomic_load(&p->state) == PEER_GONE);
    return 0;
}
DISCO_FUNCTION(dial_by_hand)

static int my_address(const disco_value *args, size_t n, disco_value *result)
{
    (void)args, (void)n;
    *result = disco_str(disco__rt.address);
    return 0;
}
DISCO_FUNCTION(my_address)

/* The transport this worker's messages to args[0] travel over. */
static int transport_to(const disco_value *args, size_t n, disco_value *result)
{
    (void)n;
    char name[32];
    int rc = disco_transport_info((int)args[0].i, name, sizeof(name));
    if (rc == 0)
        rc = disco_value_copy(result, &(disco_value){.type = DISCO_STRING,
                                                     .str = {name, strlen(name)}});
    return rc;
}
DISCO_FUNCTION(transport_to)

/* ---- helpers ---------------------------------------------------------------- */

/* The transport the suite runs over (the conformance runs say which one
 * each run must get: tests/conformance.sh), or NULL: any. */
static void assert_transport(const char *got)
{
    const char *want = getenv("DISCO_EXPECT_TRANSPORT");
    assert_true(got[0] != '\0' && strcmp(got, "self") != 0);
    if (want && *want)
        assert_string_equal(got, want);
}

/* Connections of pid, as a bit set of pids below 64. */
static uint64_t links_of(int pid)
{
    disco_value r;
    if (disco_remotecall_fetch(connections, pid, NULL, 0, &r) != 0)
        return ~0ull;
    uint64_t set = 0;
    const int64_t *p = r.array.data;
    for (size_t i = 0; i < r.array.n; i++)
        set |= 1ull << p[i];
    disco_value_free(&r);
    return set;
}

#define BIT(p) (1ull << (p))

/* Calls call_peer(to, count) on from; the pid that answered or a status. */
static int64_t relay(int from, int to, int count)
{
    disco_value args[2] = {disco_i64(to), disco_i64(count)}, r;
    int rc = disco_remotecall_fetch(call_peer, from, args, 2, &r);
    return rc ? rc : r.i;
}

/* ---- lazy all-to-all (this process is the master) ----------------------------- */

static void test_lazy_mesh(void **state)
{
    (void)state;
    int w[4];
    assert_int_equal(disco_addprocs(4, NULL, w), 4); /* 2..5, all-to-all, lazy */
    for (int i = 0; i < 4; i++)
        assert_int_equal(links_of(w[i]), BIT(1)); /* nothing until first use */
    /* Both directions between pids; one of each pair learnt the other's
     * address at join and dials, the other goes through the master. */
    assert_int_equal(relay(5, 2, 1), 2);
    assert_int_equal(relay(2, 4, 1), 4);
    assert_int_equal(relay(3, 5, 1), 5);
    /* Many first calls at once still make one connection. */
    assert_int_equal(relay(2, 3, 16), 3);
    assert_int_equal(relay(3, 2, 16), 2);
    assert_int_equal(links_of(2), BIT(1) | BIT(3) | BIT(4) | BIT(5));
    assert_int_equal(links_of(3), BIT(1) | BIT(2) | BIT(5));
    assert_int_equal(links_of(4), BIT(1) | BIT(2));
    assert_int_equal(links_of(5), BIT(1) | BIT(2) | BIT(3));
    /* A topology cannot change under existing workers. */
    disco_addprocs_opts star = {.topology = DISCO_TOPOLOGY_MASTER_WORKER};
    assert_int_equal(disco_addprocs(1, &star, NULL), DISCO_EINVAL);
    /* The master's view is unchanged by the workers' mesh. */
    assert_int_equal(disco_nprocs(), 5);
}

/* Which transport each pair of processes talks over, from both ends. */
static void test_transport_info(void **state)
{
    (void)state;
    char name[32];
    for (int pid = 2; pid <= 5; pid++) {
        assert_int_equal(disco_transport_info(pid, name, sizeof(name)), 0);
        assert_transport(name);
    }
    assert_int_equal(disco_transport_info(1, name, sizeof(name)), 0);
    assert_string_equal(name, "self");
    assert_int_equal(disco_transport_info(999, name, sizeof(name)), DISCO_ENOPROC);
    assert_int_equal(disco_transport_info(2, name, 2), DISCO_EINVAL);
    assert_int_equal(disco_transport_info(2, NULL, 8), DISCO_EINVAL);
    /* Worker to worker (2 and 3 are connected by now), and to the master. */
    for (int to = 1; to <= 3; to += 2) {
        disco_value arg = disco_i64(to), r;
        assert_int_equal(disco_remotecall_fetch(transport_to, 2, &arg, 1, &r), 0);
        char got[32];
        snprintf(got, sizeof(got), "%.*s", (int)r.str.len, r.str.ptr);
        assert_transport(got);
        disco_value_free(&r);
    }
}

static void test_peer_killed_under_worker_call(void **state)
{
    (void)state;
    disco_value r, a = disco_i64(4);
    disco_future *f = disco_remotecall(nap_on, 2, &a, 1);
    assert_non_null(f);
    assert_int_equal(disco_remotecall_fetch(whoami, 4, NULL, 0, &r), 0);
    int os_pid = (int)r.list.items[1].i;
    disco_value_free(&r);
    disco_sleep(0.2); /* let the nap start on 4 */
    assert_int_equal(kill(os_pid, SIGKILL), 0);
    const disco_value *v;
    assert_int_equal(disco_future_fetch(f, &v), 0);
    assert_int_equal(v->i, DISCO_EPROCEXIT);
    disco_future_release(f);
    /* 2 still serves, and its other peers still answer it. */
    assert_int_equal(relay(2, 5, 1), 5);
}

/* ---- eager all-to-all and the star (child masters) ----------------------------- */

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "check failed at line %d: %s\n", __LINE__, #cond);      \
            return 1;                                                                \
        }                                                                            \
    } while (0)

static int eager_master(void)
{
    disco_addprocs_opts eager = {.eager = true};
    int w[5];
    CHECK(disco_addprocs(3, &eager, w) == 3); /* 2..4 */
    uint64_t all = BIT(1) | BIT(2) | BIT(3) | BIT(4);
    for (int i = 0; i < 3; i++)
        CHECK(links_of(w[i]) == (all & ~BIT(w[i])));
    CHECK(disco_addprocs(2, &eager, w + 3) == 2); /* 5, 6 join the mesh too */
    all |= BIT(5) | BIT(6);
    for (int i = 0; i < 5; i++)
        CHECK(links_of(w[i]) == (all & ~BIT(w[i])));
    CHECK(relay(6, 2, 4) == 2);
    disco_addprocs_opts lazy = {0};
    CHECK(disco_addprocs(1, &lazy, NULL) == DISCO_EINVAL);
    CHECK(disco_finalize() == 0);
    return 0;
}

static int star_master(void)
{
    disco_addprocs_opts star = {.topology = DISCO_TOPOLOGY_MASTER_WORKER};
    int w[3];
    CHECK(disco_addprocs(3, &star, w) == 3);
    /* A worker-to-worker call fails at once, and says why. */
    CHECK(relay(2, 3, 1) == DISCO_ENOPROC);
    CHECK(strstr(disco_error_message(disco_last_error()), "master_worker") != NULL);
    CHECK(disco_error_pid(disco_last_error()) == 2);
    /* A worker that dials another anyway is refused. */
    disco_value addr;
    CHECK(disco_remotecall_fetch(my_address, 2, NULL, 0, &addr) == 0);
    disco_value args[2] = {disco_i64(2), addr}, r;
    CHECK(disco_remotecall_fetch(dial_by_hand, 4, args, 2, &r) == 0);
    CHECK(r.type == DISCO_BOOL && r.b);
    disco_value_free(&addr);
    for (int i = 0; i < 3; i++)
        CHECK(links_of(w[i]) == BIT(1));
    CHECK(disco_finalize() == 0);
    return 0;
}

static void run_child(const char *mode)
{
    char out[8192];
    int status = test_run_self(self_path, mode, out, sizeof(out));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: status %#x, stderr:\n%s", mode, status, out);
}

static void test_eager_mesh(void **state)
{
    (void)state;
    run_child("eager-master");
}

static void test_master_worker_star(void **state)
{
    (void)state;
    run_child("star-master");
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    disco_init(&argc, &argv); /* a worker never returns from here */
    if (argc > 1 && !strcmp(argv[1], "eager-master"))
        return eager_master();
    if (argc > 1 && !strcmp(argv[1], "star-master"))
        return star_master();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lazy_mesh),
        cmocka_unit_test(test_transport_info),
        cmocka_unit_test(test_peer_killed_under_worker_call),
        cmocka_unit_test(test_eager_mesh),
        cmocka_unit_test(test_master_worker_star),
    };
    int rc = cmocka_run_group_tests_name("mesh", tests, NULL, NULL);
    disco_finalize();
    return rc;
}
