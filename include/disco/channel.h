/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Local channels (Julia's Channel{T}(sz)) between tasks and threads of one
 * process.
 *
 * A channel carries items of a fixed size given at creation. disco_put
 * copies the item into the channel, so when it returns the channel no longer
 * needs the caller's memory; to pass ownership of a larger object, make the
 * item a pointer (elem_size = sizeof(void *)) and stop using the object
 * after the put.
 *
 * Capacity:
 *   0                         unbuffered: a put waits until a taker has the
 *                             item (Julia's Channel(0))
 *   n >= 1                    bounded: put waits while n items are queued
 *   DISCO_CHANNEL_UNBOUNDED   put never waits (Julia's Channel(Inf))
 *
 * Any number of tasks and threads (scheduler threads or not) may put and
 * take concurrently. Bounded channels move items through a lock-free ring
 * (one CAS per put or take); only a caller that has to wait takes the
 * channel's short wait-queue spinlock. Unbuffered and unbounded channels
 * use that lock for every operation. Items from one producer are taken in
 * the order it put them. A full or empty channel parks the calling task (or
 * blocks the calling thread outside tasks).
 *
 * Closing: put on a closed channel fails with DISCO_ECLOSED; items put
 * before the close are still taken, after which take fails with
 * DISCO_ECLOSED. Close wakes every waiter.
 *
 * Interruption (see disco/task.h): put, take, fetch and wait fail with
 * DISCO_EINTERRUPTED when the calling task is interrupted while they wait.
 * An interrupted take has taken nothing and an interrupted put has
 * delivered nothing, so no item is lost or duplicated; an item that was
 * handed over before the interrupt is kept, and the call returns 0.
 */
#ifndef DISCO_CHANNEL_H
#define DISCO_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disco/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DISCO_CHANNEL_UNBOUNDED SIZE_MAX

typedef struct disco_channel disco_channel;

/* A new open channel of items of elem_size (> 0) bytes. NULL with the last
 * error set on bad arguments or no memory. */
DISCO_API disco_channel *disco_channel_new(size_t elem_size, size_t capacity);

/* Frees the channel. Nobody may be using it or waiting on it; items still
 * in it are dropped. */
DISCO_API void disco_channel_free(disco_channel *ch);

DISCO_API size_t disco_channel_capacity(const disco_channel *ch);
DISCO_API size_t disco_channel_elem_size(const disco_channel *ch);

/* Copies elem_size bytes from item into the channel, waiting while it is
 * full (or, unbuffered, until a taker has it). 0, DISCO_ECLOSED or
 * DISCO_EINTERRUPTED. */
DISCO_API int disco_put(disco_channel *ch, const void *item);

/* Removes the oldest item into out, waiting while the channel is empty.
 * 0, DISCO_ECLOSED when the channel is closed and empty, or
 * DISCO_EINTERRUPTED. */
DISCO_API int disco_take(disco_channel *ch, void *out);

/* Like disco_take but leaves the item in the channel (Julia's fetch). On an
 * unbuffered channel it copies the item of a waiting putter. */
DISCO_API int disco_fetch(disco_channel *ch, void *out);

/* True when a take would not wait: an item is queued (or, unbuffered, a
 * putter is waiting). */
DISCO_API bool disco_isready(disco_channel *ch);

/* Waits until an item is ready: 0, DISCO_ECLOSED if the channel is closed
 * and empty, or DISCO_EINTERRUPTED. */
DISCO_API int disco_wait(disco_channel *ch);

/* Closes the channel (idempotent) and wakes every waiter. Always 0. */
DISCO_API int disco_close(disco_channel *ch);

/* True until disco_close. */
DISCO_API bool disco_isopen(disco_channel *ch);

/*
 * Iterates over the items of a channel until it is closed and drained,
 * like Julia's `for x in ch`:
 *
 *     long x;
 *     DISCO_CHANNEL_FOREACH(ch, &x) { use(x); }
 */
#define DISCO_CHANNEL_FOREACH(ch, out) while (disco_take((ch), (out)) == 0)

#ifdef __cplusplus
}
#endif
#endif /* DISCO_CHANNEL_H */
