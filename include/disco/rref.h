/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Remote references (Julia's Future and RemoteChannel as values, RRID) and
 * distributed reference counting. Remote channels themselves are in
 * disco/remote_channel.h.
 *
 * References as values: disco_future_ref (and disco_channel_ref) give a
 * DISCO_REF value that can be an argument or result of any call, an item of
 * a remote channel, or a global. The receiving process turns it back into
 * a handle with disco_future_from_ref (disco_channel_from_ref) and uses it
 * directly with the owner (connecting to it if need be).
 *
 * Who keeps what: a remote channel's items live on its owner (`where`). A
 * future's value comes back to the process that made the call (`whence`:
 * unlike Julia, which leaves it on the worker), which keeps it for the
 * other processes holding the future. A future that is ready when its
 * reference is taken travels with its value (DISCO_REF_CARRIES, Julia's
 * fetched Future): receivers need no trip at all and nobody tracks it.
 *
 * Reference counting: every handle and every owned DISCO_REF value (a
 * decoded argument or result, a disco_value_copy, a global) holds its
 * reference. The owner keeps the value while any process holds it and
 * frees it when the last one lets go; a process that dies lets go of
 * everything it held. Unlike Julia's, the count cannot reach zero while a
 * reference is in flight: a process receiving a reference is counted
 * before the message leaves the sender (a round trip to the owner when
 * neither of the two is the owner). Release is explicit:
 * disco_future_release, disco_channel_free, disco_value_free.
 *
 * Thread-safety: every function may be called from any task or thread.
 */
#ifndef DISCO_RREF_H
#define DISCO_RREF_H

#include <stddef.h>
#include <stdint.h>

#include "disco/rpc.h"
#include "disco/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The reference of a future as a value (borrowed from f). A future that is
 * ready with a value carries it (DISCO_REF_CARRIES). nil with the last
 * error set when out of memory. */
DISCO_API disco_value disco_future_ref(disco_future *f);

/*
 * A future handle for the future v refers to; release it with
 * disco_future_release. On the process that made the call it is that
 * call's future; elsewhere it gets the value from there (a carried value
 * at once). NULL with the last error set: DISCO_EINVAL for a value that is
 * not a future reference, DISCO_ESTATE when the value is no longer kept.
 */
DISCO_API disco_future *disco_future_from_ref(const disco_value *v);

/* Julia's remoteref_id: the (where, whence, id) of a reference value
 * (any of the outputs may be NULL). DISCO_EINVAL if v is not a DISCO_REF. */
DISCO_API int disco_remoteref_id(const disco_value *v, int *where, int *whence,
                                 uint64_t *id);

/* Julia's worker_id_from_socket: the pid at the other end of the cluster
 * connection with file descriptor fd (matched by the address it is
 * connected to). DISCO_ENOPROC when it is no cluster connection,
 * DISCO_EINVAL for a descriptor that is not a connected socket. */
DISCO_API int disco_worker_id_from_socket(int fd);

/* What this process keeps for references (for tests and debugging). */
typedef struct disco_ref_stats {
    size_t owned;   /* values kept here: remote channels stored here, and
                     * futures' values other processes hold */
    size_t clients; /* (owned value, other process holding it) pairs */
    size_t held;    /* references to other processes' values held here */
} disco_ref_stats;

/* Fills *stats for this process. DISCO_EINVAL for NULL. */
DISCO_API int disco_refs_stats(disco_ref_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_RREF_H */
