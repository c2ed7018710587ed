/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Function registry: two fixed open-addressing tables, one keyed by wire id
 * (incoming calls), one by function pointer (outgoing calls). Registration
 * (at load time, or when a plugin is loaded) takes a mutex; lookups, on
 * every call, take none: an entry's key is published last, with release,
 * and never changes afterwards.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "rpc/registry.h"
#include "wire/wire.h"

#define CAPACITY 4096 /* power of two; at most half full */

typedef struct {
    _Atomic uint64_t id; /* 0: empty */
    disco_function fn;
    const char *name;
    bool nowait; /* disco_register_nowait */
} by_id_entry;

typedef struct {
    _Atomic(disco_function) fn; /* NULL: empty */
    uint64_t id;
} by_fn_entry;

static by_id_entry by_id[CAPACITY];
static by_fn_entry by_fn[CAPACITY];
static unsigned count;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static size_t hash_ptr(disco_function fn)
{
    uint64_t x = (uint64_t)(uintptr_t)fn;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static int register_fn(const char *name, disco_function fn, bool nowait)
{
    if (!name || !*name || !fn)
        return disco_error_set(DISCO_EINVAL, "disco_register: no name or function");
    uint64_t id = disco__function_id(name);
    pthread_mutex_lock(&lock);
    size_t i = id & (CAPACITY - 1);
    for (; atomic_load_explicit(&by_id[i].id, memory_order_relaxed); i = (i + 1) & (CAPACITY - 1)) {
        if (atomic_load_explicit(&by_id[i].id, memory_order_relaxed) != id)
            continue;
        disco_function other = by_id[i].fn;
        const char *other_name = by_id[i].name;
        bool other_nowait = by_id[i].nowait;
        pthread_mutex_unlock(&lock);
        if (other == fn && other_nowait == nowait)
            return 0; /* the same function again (a plugin loaded twice) */
        if (other == fn)
            return disco_error_set(DISCO_EBUSY, "disco_register: '%s' is already registered "
                                                "as a function that %s", name,
                                   other_nowait ? "never waits" : "may wait");
        return disco_error_set(DISCO_EBUSY,
                               "disco_register: '%s' already names another function%s%s",
                               name, strcmp(other_name, name) ? ", via a hash collision with " : "",
                               strcmp(other_name, name) ? other_name : "");
    }
    if (count >= CAPACITY / 2) {
        pthread_mutex_unlock(&lock);
        return disco_error_set(DISCO_ENOMEM, "disco_register: more than %d functions",
                               CAPACITY / 2);
    }
    by_id[i].fn = fn;
    by_id[i].name = name; /* a string literal from DISCO_FUNCTION, or the caller's */
    by_id[i].nowait = nowait;
    /* release: pairs with the acquire load in lookups: fn and name first. */
    atomic_store_explicit(&by_id[i].id, id, memory_order_release);
    size_t j = hash_ptr(fn) & (CAPACITY - 1);
    while (atomic_load_explicit(&by_fn[j].fn, memory_order_relaxed))
        j = (j + 1) & (CAPACITY - 1);
    by_fn[j].id = id;
    atomic_store_explicit(&by_fn[j].fn, fn, memory_order_release);
    count++;
    pthread_mutex_unlock(&lock);
    return 0;
}

int disco_register(const char *name, disco_function fn)
{
    return register_fn(name, fn, false);
}

int disco_register_nowait(const char *name, disco_function fn)
{
    return register_fn(name, fn, true);
}

disco_function disco__function_by_id(uint64_t id, const char **name, bool *nowait)
{
    for (size_t i = id & (CAPACITY - 1);; i = (i + 1) & (CAPACITY - 1)) {
        uint64_t k = atomic_load_explicit(&by_id[i].id, memory_order_acquire);
        if (!k)
            return NULL;
        if (k == id) {
            if (name)
                *name = by_id[i].name;
            if (nowait)
                *nowait = by_id[i].nowait;
            return by_id[i].fn;
        }
    }
}

uint64_t disco__function_id_of(disco_function fn)
{
    for (size_t j = hash_ptr(fn) & (CAPACITY - 1);; j = (j + 1) & (CAPACITY - 1)) {
        disco_function k = atomic_load_explicit(&by_fn[j].fn, memory_order_acquire);
        if (!k)
            return 0;
        if (k == fn)
            return by_fn[j].id;
    }
}

const char *disco_function_name(disco_function fn)
{
    const char *name = NULL;
    uint64_t id = fn ? disco__function_id_of(fn) : 0;
    if (id)
        disco__function_by_id(id, &name, NULL);
    return name;
}
