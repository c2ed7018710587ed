/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Registered memory (disco/mem.h) and the registration cache (src/mem),
 * over the real shared-memory transport: its registrations are real, only
 * cheap. Its mem_register and mem_deregister are counted on the way through
 * so that the tests see what is registered at any time.
 *
 * The layer's state is process-wide, so each test works with deltas of the
 * statistics and leaves nothing held behind.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/transport.h"
#include "disco.h"
#include "mem/mem.h"
#include "test_util.h"

#define MiB ((size_t)1 << 20)

static atomic_long live; /* registrations the transport holds */

static int counted_register(disco_transport *tp, void *addr, size_t len, disco_mr **mr,
                            uint8_t *key, size_t *keylen)
{
    int rc = disco__shm_ops.mem_register(tp, addr, len, mr, key, keylen);
    if (!rc)
        atomic_fetch_add(&live, 1);
    return rc;
}

static void counted_deregister(disco_mr *mr)
{
    atomic_fetch_sub(&live, 1);
    disco__shm_ops.mem_deregister(mr);
}

static disco_transport_ops counted;
static disco__xport X;

static void cb_accept(void *ctx, disco_conn *c)
{
    (void)ctx;
    (void)c;
}
static void cb_recv(void *ctx, disco_conn *c, const uint8_t *d, size_t n)
{
    (void)ctx;
    (void)c;
    (void)d;
    (void)n;
}
static void cb_close(void *ctx, disco_conn *c, int s)
{
    (void)ctx;
    (void)c;
    (void)s;
}
static void cb_done(void *ctx, disco_conn *c, void *t, int s)
{
    (void)ctx;
    (void)c;
    (void)t;
    (void)s;
}

static const disco_transport_callbacks callbacks = {
    .on_accept = cb_accept, .on_recv = cb_recv, .on_close = cb_close,
    .on_sent = cb_done, .on_read = cb_done,
};

static int setup(void **state)
{
    (void)state;
    counted = disco__shm_ops;
    counted.mem_register = counted_register;
    counted.mem_deregister = counted_deregister;
    X.ops = &counted;
    return disco__shm_ops.init(&X.tp, NULL, NULL, &callbacks, NULL);
}

static int teardown(void **state)
{
    (void)state;
    disco__mem_forget(&X);
    long left = atomic_load(&live);
    disco__shm_ops.fini(X.tp);
    return left == 0 ? 0 : -1;
}

static disco__mem_stats stats(void)
{
    disco__mem_stats s;
    disco__mem_stats_get(&s);
    return s;
}

static void *map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

/* get + put of [p, p + len): whether it was a hit. */
static bool touch(void *p, size_t len)
{
    disco__mem_stats a = stats();
    disco__mem_reg *r;
    assert_int_equal(disco__mem_get(&X, p, len, &r), 0);
    assert_non_null(disco__mem_mr(r));
    disco__mem_put(r);
    return stats().hits == a.hits + 1;
}

/* ---- the pool ------------------------------------------------------- */

static void test_alloc_classes(void **state)
{
    (void)state;
    disco__mem_set_limits(1 << 30, 256 * MiB);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t size = 4096; size <= 64 * MiB; size *= 2) {
        for (size_t ask = size / 2 + 1; ask <= size; ask += size / 2 - 1) {
            char *p = disco_mem_alloc(ask);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % page, 0);
            p[0] = 1;
            p[size - 1] = 2; /* the whole class is usable */
            disco__mem_stats a = stats();
            disco_mem_free(p);
            assert_int_equal(stats().pool_bytes, a.pool_bytes + size);
            char *q = disco_mem_alloc(ask);
            assert_ptr_equal(q, p); /* the freed block of the class comes back */
            assert_int_equal(q[size - 1], 2);
            disco_mem_free(q);
        }
    }
    /* Above the classes: exact, never pooled. */
    size_t big = 64 * MiB + 3 * page + 1;
    char *b = disco_mem_alloc(big);
    assert_non_null(b);
    b[big - 1] = 1;
    disco__mem_stats a = stats();
    disco_mem_free(b);
    assert_int_equal(stats().pool_bytes, a.pool_bytes);
    assert_int_equal(stats().regions, a.regions - 1);
}

static void test_alloc_errors(void **state)
{
    (void)state;
    disco_error_clear();
    assert_null(disco_mem_alloc(0));
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
    char local[64];
    disco_error_clear();
    disco_mem_free(local);
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
    char *p = disco_mem_alloc(100);
    disco_mem_free(p);
    disco_error_clear();
    disco_mem_free(p); /* twice */
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
    disco_mem_free(NULL);
}

static void test_pool_bound(void **state)
{
    (void)state;
    void *p[3];
    for (int i = 0; i < 3; i++)
        assert_non_null(p[i] = disco_mem_alloc(64 * 1024 - 7));
    size_t base = stats().pool_bytes; /* blocks pooled by earlier tests stay */
    disco__mem_set_limits(1 << 30, base + 64 * 1024);
    size_t regions = stats().regions;
    for (int i = 0; i < 3; i++)
        disco_mem_free(p[i]);
    assert_int_equal(stats().pool_bytes, base + 64 * 1024); /* one kept */
    assert_int_equal(stats().regions, regions - 2);         /* two unmapped */
    disco__mem_set_limits(1 << 30, 256 * MiB);
}

/* A block allocated with no transport around registers at its first use,
 * once; it is not the cache's. */
static void test_block_registers_lazily(void **state)
{
    (void)state;
    char *p = disco_mem_alloc(MiB);
    disco__mem_stats a = stats();
    long l = atomic_load(&live);
    assert_false(touch(p + 100, 1000));
    assert_int_equal(atomic_load(&live), l + 1);
    assert_true(touch(p, MiB));
    assert_true(touch(p + MiB - 1, 1));
    disco__mem_stats b = stats();
    assert_int_equal(b.cached_bytes, a.cached_bytes);
    assert_int_equal(b.entries, a.entries);
    disco_mem_free(p); /* pooled: still registered */
    assert_int_equal(atomic_load(&live), l + 1);
    char *q = disco_mem_alloc(MiB);
    assert_ptr_equal(q, p);
    assert_true(touch(q, 4096));
    disco_mem_free(q);
}

/* ---- explicit regions ------------------------------------------------ */

static void test_register_errors(void **state)
{
    (void)state;
    char *buf = map(MiB);
    assert_int_equal(disco_mem_register(NULL, 10), DISCO_EINVAL);
    assert_int_equal(disco_mem_register(buf, 0), DISCO_EINVAL);
    assert_int_equal(disco_mem_register(buf, SIZE_MAX), DISCO_EINVAL);
    assert_int_equal(disco_mem_register(buf + 4096, 8192), 0);
    assert_int_equal(disco_mem_register(buf + 8192, 100), DISCO_EINVAL);
    assert_int_equal(disco_mem_register(buf, 4097), DISCO_EINVAL);
    assert_int_equal(disco_mem_register(buf, 4096), 0); /* adjacent is fine */
    char *blk = disco_mem_alloc(4096);
    assert_int_equal(disco_mem_register(blk, 10), DISCO_EINVAL);
    disco_mem_free(blk);
    assert_int_equal(disco_mem_deregister(buf + 4097), DISCO_ENOENT);
    assert_int_equal(disco_mem_deregister(blk), DISCO_ENOENT); /* a block */
    assert_int_equal(disco_mem_deregister(buf + 4096), 0);
    assert_int_equal(disco_mem_deregister(buf + 4096), DISCO_ENOENT);
    assert_int_equal(disco_mem_deregister(buf), 0);
    assert_int_equal(disco_mem_deregister(NULL), DISCO_ENOENT);
    munmap(buf, MiB);
}

static void test_region_pinned(void **state)
{
    (void)state;
    char *buf = map(5 * MiB);
    assert_false(touch(buf + MiB, MiB)); /* a cache entry inside */
    disco__mem_stats a = stats();
    long l = atomic_load(&live);
    assert_int_equal(disco_mem_register(buf, 4 * MiB), 0);
    assert_int_equal(stats().entries, a.entries - 1); /* the entry gave way */
    assert_int_equal(atomic_load(&live), l - 1);
    assert_false(touch(buf + 10, 10)); /* the region's registration */
    assert_true(touch(buf + MiB, 3 * MiB));
    disco__mem_set_limits(0, 256 * MiB); /* the cache keeps nothing now... */
    assert_true(touch(buf, 4 * MiB));    /* ...but regions are not the cache's */
    disco__mem_set_limits(1 << 30, 256 * MiB);
    /* Straddling the region: a registration of its own, until its put. */
    long l1 = atomic_load(&live);
    disco__mem_reg *r;
    assert_int_equal(disco__mem_get(&X, buf + 4 * MiB - 1, 2, &r), 0);
    assert_int_equal(atomic_load(&live), l1 + 1);
    disco__mem_put(r);
    assert_int_equal(atomic_load(&live), l1);
    assert_int_equal(disco_mem_deregister(buf), 0);
    assert_int_equal(atomic_load(&live), l - 1); /* neither entry nor region */
    munmap(buf, 5 * MiB);
}

/* ---- the cache ------------------------------------------------------- */

static void test_hit_miss(void **state)
{
    (void)state;
    char *a = map(2 * MiB), *b = map(MiB);
    disco__mem_stats s0 = stats();
    assert_false(touch(a, MiB));
    assert_true(touch(a, MiB));
    assert_true(touch(a + 4096, 100)); /* a sub-range */
    assert_false(touch(b, MiB));
    disco__mem_stats s1 = stats();
    assert_int_equal(s1.misses, s0.misses + 2);
    assert_int_equal(s1.entries, s0.entries + 2);
    assert_int_equal(s1.cached_bytes, s0.cached_bytes + 2 * MiB);
    /* Overlapping the entry: one entry covering both. */
    assert_false(touch(a + MiB / 2, MiB));
    assert_true(touch(a, 3 * MiB / 2));
    assert_int_equal(stats().entries, s0.entries + 2);
    /* The key names the memory for a peer. */
    disco__mem_reg *r;
    assert_int_equal(disco__mem_get(&X, a + 10, 10, &r), 0);
    size_t keylen = 0;
    assert_non_null(disco__mem_key(r, &keylen));
    assert_true(keylen > 0 && keylen <= DISCO_TRANSPORT_KEY_MAX);
    disco__mem_put(r);
    assert_int_equal(disco__mem_get(&X, NULL, 10, &r), DISCO_EINVAL);
    assert_int_equal(disco__mem_get(&X, a, 0, &r), DISCO_EINVAL);
    munmap(a, 2 * MiB);
    munmap(b, MiB);
    assert_int_equal(stats().entries, s0.entries);
}

static void test_lru_eviction(void **state)
{
    (void)state;
    disco__mem_set_limits(3 * MiB, 256 * MiB);
    char *b[5];
    disco__mem_stats s0 = stats();
    for (int i = 0; i < 5; i++) {
        b[i] = map(MiB);
        assert_false(touch(b[i], MiB));
    }
    disco__mem_stats s1 = stats();
    assert_int_equal(s1.entries, 3);
    assert_int_equal(s1.cached_bytes, 3 * MiB);
    assert_int_equal(s1.evictions, s0.evictions + 2);
    assert_true(touch(b[2], MiB)); /* b[2] is now the most recent */
    assert_false(touch(b[0], MiB)); /* evicted: evicts b[3] */
    assert_true(touch(b[2], MiB));
    assert_false(touch(b[3], MiB));
    /* Entries in use are not evicted, whatever the bound. */
    disco__mem_reg *held[5];
    for (int i = 0; i < 5; i++)
        assert_int_equal(disco__mem_get(&X, b[i], MiB, &held[i]), 0);
    assert_int_equal(stats().entries, 5);
    for (int i = 0; i < 5; i++)
        disco__mem_put(held[i]);
    assert_int_equal(stats().entries, 3);
    disco__mem_set_limits(1 << 30, 256 * MiB);
    for (int i = 0; i < 5; i++)
        munmap(b[i], MiB);
    assert_int_equal(stats().entries, 0);
}

/* ---- invalidation ---------------------------------------------------- */

static void test_invalidate_free(void **state)
{
    (void)state;
    char *volatile p = malloc(4 * MiB); /* mmapped by glibc */
    assert_non_null(p);
    p[0] = 1;
    disco__mem_stats s0 = stats();
    long l = atomic_load(&live);
    assert_false(touch(p, 4 * MiB));
    assert_true(touch(p + 1, 10));
    assert_int_equal(stats().entries, s0.entries + 1);
    free(p);
    disco__mem_stats s1 = stats();
    assert_int_equal(s1.entries, s0.entries);
    assert_int_equal(s1.invalidations, s0.invalidations + 1);
    assert_int_equal(atomic_load(&live), l);
    /* A small heap buffer, and realloc. */
    char *volatile q = malloc(100000);
    assert_false(touch(q, 100000));
    q = realloc(q, 8 * MiB);
    assert_int_equal(stats().entries, s0.entries);
    free(q);
}

static void test_invalidate_unmap(void **state)
{
    (void)state;
    disco__mem_stats s0 = stats();
    char *p = map(4 * MiB);
    assert_false(touch(p, 4 * MiB));
    assert_int_equal(munmap(p + MiB, MiB), 0); /* a hole: the entry goes */
    assert_int_equal(stats().entries, s0.entries);
    assert_int_equal(stats().invalidations, s0.invalidations + 1);
    munmap(p, 4 * MiB);

    p = map(4 * MiB);
    assert_false(touch(p, MiB));
    assert_false(touch(p + 2 * MiB, MiB));
    assert_int_equal(madvise(p + 2 * MiB + 4096, 4096, MADV_DONTNEED), 0);
    assert_int_equal(stats().entries, s0.entries + 1); /* only the one it hit */
    assert_true(touch(p, MiB));
    assert_int_equal(madvise(p, MiB, MADV_WILLNEED), 0); /* harmless advice */
    assert_true(touch(p, MiB));
    char *q = mremap(p, 4 * MiB, 8 * MiB, MREMAP_MAYMOVE);
    assert_true(q != MAP_FAILED);
    assert_int_equal(stats().entries, s0.entries);
    assert_false(touch(q, MiB));
    char *fixed = mmap(q, MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                       -1, 0);
    assert_ptr_equal(fixed, q);
    assert_int_equal(stats().entries, s0.entries); /* replaced under it */
    munmap(q, 8 * MiB);
}

/* Explicit regions and blocks go with their memory too. */
static void test_invalidate_pinned(void **state)
{
    (void)state;
    char *p = map(MiB);
    assert_int_equal(disco_mem_register(p, MiB), 0);
    touch(p, MiB);
    long l = atomic_load(&live);
    munmap(p, MiB);
    assert_int_equal(atomic_load(&live), l - 1);
    assert_int_equal(disco_mem_deregister(p), DISCO_ENOENT);
}

/* A held registration whose memory goes stays usable until its put, and is
 * deregistered then. */
static void test_invalidate_held(void **state)
{
    (void)state;
    char *p = map(MiB);
    disco__mem_stats s0 = stats();
    long l = atomic_load(&live);
    disco__mem_reg *r, *r2;
    assert_int_equal(disco__mem_get(&X, p, MiB, &r), 0);
    assert_int_equal(disco__mem_get(&X, p, 10, &r2), 0);
    assert_ptr_equal(r, r2);
    munmap(p, MiB);
    assert_int_equal(stats().entries, s0.entries); /* out of the index */
    assert_int_equal(atomic_load(&live), l + 1);   /* still registered */
    size_t keylen;
    assert_non_null(disco__mem_key(r, &keylen));
    assert_non_null(disco__mem_mr(r));
    disco__mem_put(r);
    assert_int_equal(atomic_load(&live), l + 1);
    disco__mem_put(r2);
    assert_int_equal(atomic_load(&live), l);
    /* A new mapping at the same place is a miss, not the stale entry. */
    char *q = map(MiB);
    assert_false(touch(q, MiB));
    munmap(q, MiB);
}

/* ---- threads --------------------------------------------------------- */

#define NTHREADS 4
static char *shared;
static atomic_int failures;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    long rounds = test_scaled(20000);
    for (long i = 0; i < rounds; i++) {
        size_t off = (size_t)(rand_r(&seed) % 64) * 4096;
        size_t len = 4096 + (size_t)(rand_r(&seed) % 32) * 4096;
        disco__mem_reg *r;
        if (disco__mem_get(&X, shared + off, len, &r)) {
            atomic_fetch_add(&failures, 1);
            continue;
        }
        if (i % 64 == 0) { /* memory coming and going meanwhile */
            char *m = malloc(256 * 1024);
            disco__mem_reg *r2;
            if (m && disco__mem_get(&X, m, 1000, &r2) == 0)
                disco__mem_put(r2);
            void *blk = disco_mem_alloc(8192);
            disco_mem_free(blk);
            free(m);
        }
        disco__mem_put(r);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    disco__mem_set_limits(4 * MiB, 256 * MiB); /* eviction keeps happening */
    shared = map(128 * 4096);
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&failures), 0);
    munmap(shared, 128 * 4096);
    disco__mem_set_limits(1 << 30, 256 * MiB);
}

/* ---- cost ------------------------------------------------------------ */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A hit among 512 entries, and a free() with entries around: printed. */
static void test_lookup_cost(void **state)
{
    (void)state;
    enum { N = 512 };
    char *buf = map(N * 2 * 4096);
    for (int i = 0; i < N; i++)
        touch(buf + (size_t)i * 2 * 4096, 4096);
    assert_int_equal(stats().entries, N);
    long rounds = test_scaled(200000);
    double t0 = now_ns();
    for (long i = 0; i < rounds; i++) {
        disco__mem_reg *r;
        disco__mem_get(&X, buf + (size_t)(i % N) * 2 * 4096, 100, &r);
        disco__mem_put(r);
    }
    double t1 = now_ns();
    for (long i = 0; i < rounds; i++) {
        char *volatile m = malloc(64 + (size_t)(i % 4096));
        free(m);
    }
    double t2 = now_ns();
    printf("# get+put hit among %d entries: %.0f ns; malloc+free: %.0f ns\n", N,
           (t1 - t0) / (double)rounds, (t2 - t1) / (double)rounds);
    munmap(buf, N * 2 * 4096);
    assert_int_equal(stats().entries, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_classes),
        cmocka_unit_test(test_alloc_errors),
        cmocka_unit_test(test_pool_bound),
        cmocka_unit_test(test_block_registers_lazily),
        cmocka_unit_test(test_register_errors),
        cmocka_unit_test(test_region_pinned),
        cmocka_unit_test(test_hit_miss),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_invalidate_free),
        cmocka_unit_test(test_invalidate_unmap),
        cmocka_unit_test(test_invalidate_pinned),
        cmocka_unit_test(test_invalidate_held),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_lookup_cost),
    };
    return cmocka_run_group_tests_name("mem", tests, setup, teardown);
}
