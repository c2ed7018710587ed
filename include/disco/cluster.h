/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The cluster: the set of processes that trust each other.
 *
 * For now this header holds only the cluster cookie, the shared secret that
 * every process of one cluster knows and that each connection proves before
 * anything else is exchanged (Julia's `cluster_cookie()`).
 *
 * Unlike Julia, disco never sends the cookie over the wire: peers prove they
 * know it with a challenge-response (HMAC-SHA256 over fresh random nonces),
 * so an eavesdropper learns neither the cookie nor anything it could replay.
 * The cookie is also never put in a worker's argv or environment, where `ps`
 * or /proc would show it to other users: workers receive it on their stdin.
 *
 * A peer that records one handshake can still try to guess the cookie
 * offline; the default cookie (256 random bits) makes that hopeless, so a
 * cookie set by hand should be just as unguessable.
 */
#ifndef DISCO_CLUSTER_H
#define DISCO_CLUSTER_H

#include "disco/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest cookie accepted, in bytes (not counting the terminating NUL). */
#define DISCO_CLUSTER_COOKIE_MAX 256

/*
 * The calling process's cluster cookie. On first use, when none was set, it
 * is generated from the system's cryptographic random generator: 32 random
 * bytes written as 64 lowercase hex characters. Thread-safe.
 *
 * The returned string stays valid and unchanged for the life of the process;
 * after a later disco_cluster_cookie_set, calls return the new cookie (as a
 * different string). Returns NULL only when the random generator fails (the
 * last error then says so, DISCO_ESYS); a later call tries again.
 */
DISCO_API const char *disco_cluster_cookie(void);

/*
 * Sets the cluster cookie, as a worker does with the cookie read from its
 * stdin. The cookie must be 1 to DISCO_CLUSTER_COOKIE_MAX bytes of printable
 * ASCII (0x20 to 0x7e); anything else fails with DISCO_EINVAL and the cookie
 * is unchanged. The string is copied. Thread-safe. Returns 0 or DISCO_EINVAL
 * (DISCO_ENOMEM when out of memory).
 */
DISCO_API int disco_cluster_cookie_set(const char *cookie);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_CLUSTER_H */
