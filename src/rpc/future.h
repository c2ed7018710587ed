/* SPDX-License-Identifier: BSD-3-Clause */
/* Futures of outstanding remote calls (see disco/rpc.h). */
#ifndef DISCO_RPC_FUTURE_H
#define DISCO_RPC_FUTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "disco/cluster.h"
#include "disco/rpc.h"

/* A pending future for call id of the function with wire id fid (named in
 * error messages) on process where, registered so that its reply can find
 * it. NULL when out of memory. */
disco_future *disco__future_pending(int where, uint64_t id, uint64_t fid);

/* Completes the pending future of call id with value (moved in: owned by
 * the future from now on) or with err (moved in; status < 0). Unknown ids
 * (a released future) just free what they were given. */
void disco__future_complete(uint64_t id, int status, disco_value *value,
                            disco_error *err);

/* Fails every pending future on process where with err's code and a copy of
 * err (which the caller keeps). */
void disco__future_fail_where(int where, const disco_error *err);

/* Takes one more reference to f (dropped by disco_future_release). */
void disco__future_retain(disco_future *f);

/* Takes one more reference unless the last one is already gone. */
bool disco__future_tryretain(disco_future *f);

/* f's value if it is ready and succeeded, else NULL. */
const disco_value *disco__future_ready_value(disco_future *f);

/* A new ready future of a call on where holding value (moved in), or
 * NULL when out of memory. */
disco_future *disco__future_ready(int where, disco_value *value);

/* The reference f stands for (its origin once linked, else this process's
 * call); true when linked. */
bool disco__future_origin(disco_future *f, disco_ref *r);

/* Links f to reference r: freeing f tells the reference table. Once,
 * before f is shared. */
void disco__future_set_origin(disco_future *f, const disco_ref *r);

/* The value of f, ready and succeeded, for a caller about to release f:
 * moved out when the caller holds the only reference, else copied. */
int disco__future_take_value(disco_future *f, disco_value *out);

/* Fails one pending future (its request could not be sent). */
void disco__future_fail(disco_future *f, int status, const char *why);

#endif
