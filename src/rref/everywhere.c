/* SPDX-License-Identifier: BSD-3-Clause */
/* @everywhere, and plugins loaded on every process (disco/everywhere.h). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/error_internal.h"
#include "cluster/joined.h"
#include "core/runtime.h"
#include "disco/everywhere.h"

int disco_everywhere(disco_function fn, const disco_value *args, size_t nargs,
                     const int *pids, int npids)
{
    int all[DISCO__MAX_PROCS];
    if (!pids) {
        npids = disco_procs(all, DISCO__MAX_PROCS);
        pids = all;
    }
    if (npids < 0)
        return disco_error_set(DISCO_EINVAL, "disco_everywhere: %d processes", npids);
    disco_future **f = calloc((size_t)npids + 1, sizeof(*f));
    disco_error **errs = calloc((size_t)npids + 1, sizeof(*errs));
    if (!f || !errs) {
        free(f);
        free(errs);
        return disco_error_set(DISCO_ENOMEM, "disco_everywhere: out of memory");
    }
    /* Others first, this process last: its call does not delay sending. */
    size_t nerr = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < npids; i++)
            if ((pids[i] == disco__rt.myid) == (pass == 1) &&
                !(f[i] = disco_remotecall(fn, pids[i], args, nargs)))
                errs[nerr++] = disco_error_take();
    for (int i = 0; i < npids; i++) {
        if (f[i] && disco_future_wait(f[i]) != 0)
            errs[nerr++] = disco_error_take();
        disco_future_release(f[i]);
    }
    int rc = 0;
    if (nerr)
        rc = disco_error_put(disco_error_composite(errs, nerr));
    free(errs);
    free(f);
    return rc;
}

/* ---- plugins ------------------------------------------------------------------- */

/* Paths loaded everywhere, for workers that join later (master). */
static struct {
    pthread_mutex_t lock;
    char **paths;
    size_t n;
} L = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* "disco.load"(path): dlopen here. The library stays loaded for the life of
 * the process, as its functions may be called at any time. */
static int load(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n != 1 || args[0].type != DISCO_STRING)
        return disco_throw(DISCO_EPROTO, "disco.load: bad arguments");
    /* Owned strings are NUL-terminated (decoded or copied arguments). */
    if (!dlopen(args[0].str.ptr, RTLD_NOW | RTLD_GLOBAL))
        return disco_throw(DISCO_EIO, "cannot load %s: %s", args[0].str.ptr,
                           dlerror());
    return 0;
}

static int load_on(const char *path, const int *pids, int npids)
{
    disco_value arg = disco_str(path);
    return disco_everywhere(load, &arg, 1, pids, npids);
}

int disco_everywhere_load(const char *path)
{
    if (!path || !*path)
        return disco_error_set(DISCO_EINVAL, "disco_everywhere_load: no path");
    int rc = load_on(path, NULL, 0);
    if (rc || disco__rt.worker)
        return rc;
    char *copy = strdup(path);
    pthread_mutex_lock(&L.lock);
    char **v = copy ? realloc(L.paths, (L.n + 1) * sizeof(*v)) : NULL;
    if (v) {
        L.paths = v;
        L.paths[L.n++] = copy;
    }
    pthread_mutex_unlock(&L.lock);
    if (!v) {
        free(copy);
        return disco_error_set(DISCO_ENOMEM, "disco_everywhere_load: out of memory");
    }
    return 0;
}

/* New workers load what every process has loaded, in the same order. */
static int on_joined(const int *pids, int n)
{
    for (size_t i = 0;; i++) {
        pthread_mutex_lock(&L.lock);
        char *path = i < L.n ? L.paths[i] : NULL; /* never freed: stays valid */
        pthread_mutex_unlock(&L.lock);
        if (!path)
            return 0;
        int rc = load_on(path, pids, n);
        if (rc)
            return rc;
    }
}

__attribute__((constructor)) static void register_everywhere(void)
{
    disco_register("disco.load", load);
    disco__workers_joined = on_joined;
}
