/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * RemoteChannel (Julia's RemoteChannel): a disco_channel whose items are
 * stored on another process, its owner (`where`). See disco/rref.h for
 * references and their counting.
 *
 * The channel API of disco/channel.h works on it unchanged, from any
 * process: disco_put, disco_take, disco_fetch, disco_isready, disco_wait,
 * disco_close, disco_isopen, disco_channel_capacity, disco_channel_elem_size
 * (each operation one call to the owner; a blocking one parks only the
 * calling task). Its items are disco_values (Julia's Channel{Any}):
 * disco_put takes a `disco_value *`, encoded before it returns, so the
 * caller may overwrite or free it at once; disco_take and disco_fetch fill
 * a `disco_value *` with an owned value (free it with disco_value_free).
 * Capacity and closing behave as for the local channel it is backed by:
 * with capacity 0, put returns once a taker (on the owner) has the item;
 * disco_close wakes every blocked taker and putter, on every process, with
 * DISCO_ECLOSED, and later puts fail with it. disco_channel_free on a
 * remote channel releases this handle (Julia's finalize). An operation on a
 * channel whose owner has died fails with DISCO_EPROCEXIT.
 */
#ifndef DISCO_REMOTE_CHANNEL_H
#define DISCO_REMOTE_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disco/channel.h"
#include "disco/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A remote channel stored on process pid with the given capacity (0,
 * n, or DISCO_CHANNEL_UNBOUNDED), Julia's RemoteChannel(() ->
 * Channel(capacity), pid). pid may be this process. NULL with the last
 * error set: DISCO_ENOPROC for an unknown or dead pid, DISCO_EINVAL for a
 * capacity the local channel refuses.
 */
DISCO_API disco_channel *disco_remote_channel_new(int pid, size_t capacity);

/*
 * A channel factory: runs on the owner and returns a new local channel of
 * disco_value items (elem_size sizeof(disco_value)), for example prefilled
 * with owned values, or NULL with the last error set.
 */
typedef disco_channel *(*disco_channel_factory)(const disco_value *args, size_t nargs);

/* Registers a factory under its name (every process must register it, as
 * for DISCO_FUNCTION). DISCO_EBUSY if another factory has that name. */
DISCO_API int disco_register_channel_factory(const char *name, disco_channel_factory fn);

#define DISCO_CHANNEL_FACTORY(fn)                                              \
    __attribute__((constructor)) static void disco__register_factory_##fn(void) \
    {                                                                          \
        disco_register_channel_factory(#fn, fn);                               \
    }

/*
 * A remote channel whose backing channel the registered factory builds on
 * process pid from args (Julia's RemoteChannel(f, pid)). NULL with the last
 * error set: DISCO_ENOFUNC for an unregistered factory, the factory's own
 * error, DISCO_EINVAL when it made a channel of other items.
 */
DISCO_API disco_channel *disco_remote_channel_make(int pid, disco_channel_factory factory,
                                                   const disco_value *args, size_t nargs);

/* True when ch is a remote channel handle. */
DISCO_API bool disco_channel_is_remote(const disco_channel *ch);

/* The reference of a remote channel as a value (borrowed from ch: valid
 * while the handle is). nil for a local channel. */
DISCO_API disco_value disco_channel_ref(disco_channel *ch);

/* A new handle for the remote channel v refers to (v: a DISCO_REF of kind
 * DISCO_REF_CHANNEL, held while this is called). Free it with
 * disco_channel_free. NULL with the last error set (DISCO_EINVAL). */
DISCO_API disco_channel *disco_channel_from_ref(const disco_value *v);

/*
 * Julia's channel_from_id: on the owner, the local channel backing remote
 * channel (whence, id) — items are owned disco_values; valid while the
 * remote channel lives. NULL with the last error set (DISCO_ESTATE:
 * "local instance of remote reference not found") elsewhere.
 */
DISCO_API disco_channel *disco_channel_from_id(int whence, uint64_t id);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_REMOTE_CHANNEL_H */
