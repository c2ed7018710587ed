/* SPDX-License-Identifier: BSD-3-Clause */
/* The table of remotely callable functions (see disco/rpc.h). */
#ifndef DISCO_RPC_REGISTRY_H
#define DISCO_RPC_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "disco/rpc.h"

/* The function registered under wire id, or NULL; its name and whether it
 * is a no-wait function in *name and *nowait when not NULL. Lock-free. */
disco_function disco__function_by_id(uint64_t id, const char **name, bool *nowait);

/* The wire id of a registered function; 0 if it is not registered. */
uint64_t disco__function_id_of(disco_function fn);

#endif
