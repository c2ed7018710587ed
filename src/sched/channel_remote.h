/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Remote channels behind the local channel API. A disco_channel handle is
 * either a local channel or a remote channel handle (src/rref); both begin
 * with `bool remote`, and every channel operation tests it once, a branch
 * that local channels always predict. Remote handles are served through
 * this table, which src/rref installs at load time (the scheduler sits
 * below it and never names it).
 */
#ifndef DISCO_SCHED_CHANNEL_REMOTE_H
#define DISCO_SCHED_CHANNEL_REMOTE_H

#include <stdbool.h>
#include <stddef.h>

#include "disco/channel.h"

typedef struct disco__channel_remote_ops {
    int (*put)(disco_channel *ch, const void *item);
    int (*take)(disco_channel *ch, void *out);
    int (*fetch)(disco_channel *ch, void *out);
    bool (*isready)(disco_channel *ch);
    int (*wait)(disco_channel *ch);
    int (*close)(disco_channel *ch);
    bool (*isopen)(disco_channel *ch);
    size_t (*capacity)(const disco_channel *ch);
    size_t (*elem_size)(const disco_channel *ch);
    void (*free)(disco_channel *ch);
} disco__channel_remote_ops;

/* Set once, before main, by src/rref. */
extern const disco__channel_remote_ops *disco__channel_remote;

/* True for a remote channel handle (read from the common first member). */
static inline bool disco__channel_is_remote(const disco_channel *ch)
{
    return __builtin_expect(*(const bool *)ch, 0);
}

#endif
