/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Channel factories (Julia's RemoteChannel(f, pid)): registered by name like
 * remote functions, named on the wire by the same 64-bit id of the name.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "rref/remote_channel.h"

typedef struct factory {
    uint64_t id;
    const char *name;
    disco_channel_factory fn;
} factory;

static struct {
    pthread_mutex_t lock;
    factory *v;
    size_t n, cap;
} F = {.lock = PTHREAD_MUTEX_INITIALIZER};

int disco_register_channel_factory(const char *name, disco_channel_factory fn)
{
    if (!name || !fn)
        return disco_error_set(DISCO_EINVAL, "channel factory: NULL name or function");
    uint64_t id = disco__function_id(name);
    int rc = 0;
    pthread_mutex_lock(&F.lock);
    size_t i = 0;
    while (i < F.n && F.v[i].id != id)
        i++;
    if (i < F.n) {
        if (F.v[i].fn != fn)
            rc = DISCO_EBUSY;
    } else if (F.n == F.cap) {
        size_t cap = F.cap ? 2 * F.cap : 8;
        factory *v = realloc(F.v, cap * sizeof(*v));
        if (v) {
            F.v = v;
            F.cap = cap;
        } else {
            rc = DISCO_ENOMEM;
        }
    }
    if (rc == 0 && i == F.n)
        F.v[F.n++] = (factory){id, name, fn};
    pthread_mutex_unlock(&F.lock);
    if (rc == DISCO_EBUSY)
        return disco_error_set(rc, "another channel factory is registered as '%s'", name);
    return rc ? disco_error_set(rc, "no memory for a channel factory") : 0;
}

/* A copy of the factory with wire id id or function fn: a zeroed one if
 * there is none. Once per remote channel made: a mutex is fine. */
static factory find(uint64_t id, disco_channel_factory fn)
{
    factory f = {0};
    pthread_mutex_lock(&F.lock);
    for (size_t i = 0; i < F.n && !f.fn; i++)
        if ((id && F.v[i].id == id) || (fn && F.v[i].fn == fn))
            f = F.v[i];
    pthread_mutex_unlock(&F.lock);
    return f;
}

disco_channel_factory disco__factory_by_id(uint64_t id)
{
    return find(id, NULL).fn;
}

disco_channel *disco_remote_channel_make(int pid, disco_channel_factory fn,
                                         const disco_value *args, size_t nargs)
{
    factory f = find(0, fn);
    if (!fn || !f.fn) {
        disco_error_set(DISCO_ENOFUNC, "remote channel: the factory is not registered here "
                                       "(use DISCO_CHANNEL_FACTORY)");
        return NULL;
    }
    if (nargs && !args) {
        disco_error_set(DISCO_EINVAL, "remote channel: %zu arguments but no array", nargs);
        return NULL;
    }
    disco_value spec[3] = {disco_i64(-1), disco_i64((int64_t)f.id),
                           disco_list(args, nargs)};
    return disco__rchan_create(pid, spec, 3);
}
