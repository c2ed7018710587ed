/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The transports this process runs: TCP always (bootstrap and
 * authentication run over it, and it is every peer's fallback), plus those
 * DISCO_TRANSPORT selects, each listening at its own address. Progress
 * polls them all and, when idle, blocks on all of them at once.
 *
 * DISCO_TRANSPORT is a comma-separated list: `auto` (the default: every
 * transport this build has that can run here, except ofi), a name with an
 * optional argument (`tcp`, `shm`, `ofi`, `ofi:shm`, `ofi:tcp`,
 * `ofi:verbs`: the argument is the libfabric provider), and `^name` to
 * exclude one (`auto,^shm`); `auto,ofi` adds ofi to the rest. A transport
 * that cannot start is skipped: with a warning when it was named, at debug
 * level under `auto`.
 *
 * ofi stays out of `auto`: on a machine without fabric hardware
 * libfabric's tcp and shm providers only emulate what disco's own TCP and
 * shm transports do better, and loading libfabric costs memory in every
 * worker (the idle worker's RSS budget is 10 MB). Name it where a fabric
 * is there.
 */
#ifndef DISCO_CORE_TRANSPORT_SET_H
#define DISCO_CORE_TRANSPORT_SET_H

#include <stddef.h>

#include "core/transport.h"

#define DISCO__XPORTS_MAX 4
#define DISCO__XPORT_SCHEME_MAX 24

typedef struct disco__xport {
    const disco_transport_ops *ops;
    disco_transport *tp;
    int index; /* 0: TCP, the bootstrap transport */
    uint64_t caps; /* of this instance (disco_transport_ops.caps_of) */
    /* The listening address, and its scheme ("tcp", "shm", "ofi+tcp"):
     * the name peers and disco_transport_info know it by. */
    char address[DISCO_TRANSPORT_ADDR_MAX];
    char scheme[DISCO__XPORT_SCHEME_MAX];
} disco__xport;

typedef struct disco__xport_set {
    disco__xport x[DISCO__XPORTS_MAX];
    int n;
    /* Progress thread only: polls since TCP last had something, and the
     * poll count (an idle TCP is polled less often: see progress). */
    unsigned tcp_idle, polls;
} disco__xport_set;

/* Starts TCP and the transports DISCO_TRANSPORT selects, every one with
 * callbacks cb and its own disco__xport as their ctx. Fails only when TCP
 * does. */
int disco__xports_start(disco__xport_set *s, const disco_transport_callbacks *cb);

/* Progress on every transport: see disco_transport_ops.progress. With more
 * than one, blocking waits poll() their wait fds. */
int disco__xports_progress(disco__xport_set *s, int timeout_ms);

/* Wakes a progress call blocked on any of them. */
void disco__xports_interrupt(disco__xport_set *s);

/* Closes them all (at exit). */
void disco__xports_fini(disco__xport_set *s);

/* Before an _exit without fini: see disco_transport_ops.quiesce. */
void disco__xports_quiesce(disco__xport_set *s);

/* See disco_transport_ops.process_ended. */
void disco__xports_process_ended(disco__xport_set *s, pid_t pid);

/* The transport known to peers as scheme, or NULL. */
disco__xport *disco__xport_find(disco__xport_set *s, const char *scheme);

#endif
