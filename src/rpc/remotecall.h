/* SPDX-License-Identifier: BSD-3-Clause */
/* The remotecall family, internal entry points (the public ones: disco/rpc.h). */
#ifndef DISCO_RPC_REMOTECALL_H
#define DISCO_RPC_REMOTECALL_H

#include "disco/rpc.h"

/*
 * disco_remotecall, except that the data of scope's items (a list whose
 * large bytes and arrays are disco_mem_alloc blocks: they stay registered)
 * may go by rendezvous (src/core/rdv.h) although nobody waits for the
 * reply: scope must then outlive the call. A closure's captured values are
 * such a scope (a closure is not freed while calls use it).
 */
disco_future *disco__remotecall_scoped(disco_function fn, int pid, const disco_value *args,
                                       size_t nargs, const disco_value *scope);

#endif
