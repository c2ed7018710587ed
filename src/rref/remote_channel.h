/* SPDX-License-Identifier: BSD-3-Clause */
/* Remote channel handles (see disco/remote_channel.h). */
#ifndef DISCO_RREF_REMOTE_CHANNEL_H
#define DISCO_RREF_REMOTE_CHANNEL_H

#include "disco/remote_channel.h"
#include "rref/rref.h"
#include "sched/channel_remote.h"

/* A remote channel handle. Its first member matches the local channel's,
 * so that each channel operation tells the two apart with one test. */
typedef struct disco__rchan {
    bool remote; /* true */
    disco_ref ref;
    disco__rref *entry; /* held by the handle */
    size_t capacity;    /* the backing channel's, when this handle made it */
} disco__rchan;

/* Makes a remote channel on pid from spec (a capacity, or a factory) and
 * its first handle. */
disco_channel *disco__rchan_create(int pid, const disco_value *spec, size_t nspec);

/* The registered channel factory with wire id id, or NULL. */
disco_channel_factory disco__factory_by_id(uint64_t id);

#endif
