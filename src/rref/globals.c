/* SPDX-License-Identifier: BSD-3-Clause */
/* Named per-process globals and clear! (disco/everywhere.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "disco/everywhere.h"

typedef struct global {
    struct global *next;
    char *name;
    disco_value value; /* owned */
    bool constant;
} global;

/* Globals are set and read now and then, not per message: a list under a
 * mutex. */
static struct {
    pthread_mutex_t lock;
    global *head;
} G = {.lock = PTHREAD_MUTEX_INITIALIZER};

static global *find_locked(const char *name, size_t len)
{
    for (global *g = G.head; g; g = g->next)
        if (strlen(g->name) == len && !memcmp(g->name, name, len))
            return g;
    return NULL;
}

int disco_global_set(const char *name, const disco_value *v, bool constant)
{
    if (!name || !*name || !v)
        return disco_error_set(DISCO_EINVAL, "disco_global_set: %s",
                               v ? "no name" : "no value");
    disco_value copy;
    int rc = disco_value_copy(&copy, v);
    if (rc)
        return rc;
    pthread_mutex_lock(&G.lock);
    global *g = find_locked(name, strlen(name));
    if (g && g->constant) {
        rc = DISCO_EPERM;
    } else if (!g && (g = calloc(1, sizeof(*g))) && (g->name = strdup(name))) {
        g->next = G.head;
        G.head = g;
    } else if (!g || !g->name) {
        free(g);
        g = NULL;
        rc = DISCO_ENOMEM;
    }
    disco_value old = disco_nil();
    if (rc == 0) {
        old = g->value;
        g->value = copy;
        g->constant = constant;
        copy = disco_nil();
    }
    pthread_mutex_unlock(&G.lock);
    disco_value_free(&old); /* outside the lock: it may release references */
    disco_value_free(&copy);
    if (rc == DISCO_EPERM)
        return disco_error_set(rc, "global '%s' is constant on process %d", name,
                               disco__rt.myid);
    return rc ? disco_error_set(rc, "no memory for global '%s'", name) : 0;
}

int disco_global_get(const char *name, disco_value *out)
{
    if (!name || !out)
        return disco_error_set(DISCO_EINVAL, "disco_global_get: NULL argument");
    pthread_mutex_lock(&G.lock);
    global *g = find_locked(name, strlen(name));
    int rc = g ? disco_value_copy(out, &g->value) : DISCO_EINVAL;
    pthread_mutex_unlock(&G.lock);
    if (rc == DISCO_EINVAL && !g)
        return disco_error_set(rc, "global '%s' is not defined on process %d", name,
                               disco__rt.myid);
    return rc;
}

/* "disco.clear_globals"(names...): sets each defined one to nil here. */
static int clear_here(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    for (size_t i = 0; i < n; i++)
        if (args[i].type != DISCO_STRING)
            return disco_throw(DISCO_EPROTO, "disco.clear_globals: names must be strings");
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&G.lock);
        global *g = find_locked(args[i].str.ptr, args[i].str.len);
        disco_value old = disco_nil();
        if (g && g->constant && rc == 0)
            rc = disco_error_set(DISCO_EPERM, "cannot clear constant global '%.*s'",
                                 (int)args[i].str.len, args[i].str.ptr);
        else if (g && !g->constant) {
            old = g->value;
            g->value = disco_nil();
        }
        pthread_mutex_unlock(&G.lock);
        disco_value_free(&old);
    }
    return rc;
}

int disco_clear_globals(const char *const *names, size_t n, const int *pids, int npids)
{
    if (n && !names)
        return disco_error_set(DISCO_EINVAL, "disco_clear_globals: no names");
    disco_value *args = calloc(n ? n : 1, sizeof(*args));
    if (!args)
        return disco_error_set(DISCO_ENOMEM, "disco_clear_globals: out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        if (!names[i] || !*names[i])
            rc = disco_error_set(DISCO_EINVAL, "disco_clear_globals: empty name");
        else
            args[i] = disco_str(names[i]);
    if (!rc)
        rc = disco_everywhere(clear_here, args, n, pids, npids);
    free(args);
    return rc;
}

__attribute__((constructor)) static void register_globals(void)
{
    disco_register("disco.clear_globals", clear_here);
}
