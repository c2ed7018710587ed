/* SPDX-License-Identifier: BSD-3-Clause */
/* Function ids: the name of a registered function as the wire sees it. */
#include "wire/wire.h"

/*
 * 64-bit FNV-1a over the bytes of the name. Chosen for being tiny, fast and
 * fully specified; it is not collision resistant against an adversary, which
 * is fine because a peer has passed the cookie handshake before it can name
 * a function; registration must refuse a second name with an id already
 * taken (and the id 0, reserved for "no function").
 * Never change this: every process of a cluster must agree on it.
 */
uint64_t disco__function_id(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    for (const unsigned char *p = (const unsigned char *)name; p && *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull; /* FNV 64 prime */
    }
    return h;
}
