/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * disco: Julia's Distributed programming model for C programs.
 *
 * This umbrella header includes the whole public API:
 *   disco/status.h   status codes, disco_strerror
 *   disco/error.h    error detail objects, the task-local last error
 *   disco/task.h     tasks, scheduler, @sync, sleep/timedwait, events,
 *                    mutexes, conditions
 *   disco/channel.h  local channels
 *   disco/value.h    values: arguments and results of remote calls
 *   disco/cluster.h  the cluster: init, addprocs/rmprocs, process queries
 *   disco/rpc.h      remote calls and futures
 *   disco/pool.h     worker pools, closures, pmap, distributed for
 *   disco/rref.h     references as values, distributed refcounting
 *   disco/remote_channel.h  RemoteChannel
 *   disco/everywhere.h  @everywhere, plugins, globals and clear!, @spawn
 *   disco/mem.h      registered memory: buffers that cross without copies
 */
#ifndef DISCO_H
#define DISCO_H

#include "disco/status.h"
#include "disco/error.h"
#include "disco/task.h"
#include "disco/channel.h"
#include "disco/value.h"
#include "disco/cluster.h"
#include "disco/rpc.h"
#include "disco/pool.h"
#include "disco/rref.h"
#include "disco/remote_channel.h"
#include "disco/everywhere.h"
#include "disco/mem.h"

#endif /* DISCO_H */
