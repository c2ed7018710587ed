/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The runtime of one disco process: who it is, the peers it knows, the
 * transport it talks through, and how messages are taken apart and sent.
 *
 * Threads: transport callbacks (and so everything in dispatch.c that runs
 * from them) run on the one scheduler worker that drives network progress.
 * Tasks on any thread send frames (the transport's send is thread-safe and
 * keeps the order of sends on a connection) and read the peer table, whose
 * entries are published with release and never freed while the runtime
 * lives (a gone peer stays, in state PEER_GONE: pids are never reused).
 */
#ifndef DISCO_CORE_RUNTIME_H
#define DISCO_CORE_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/auth.h"
#include "core/transport.h"
#include "disco/cluster.h"
#include "disco/rpc.h"
#include "disco/task.h"
#include "sched/sched.h"
#include "wire/wire.h"

#define DISCO__MAX_PROCS 4096

enum { PEER_AUTH, PEER_READY, PEER_GONE };

typedef struct disco__peer {
    int pid;
    _Atomic int state;
    /* The connection, NULL once it is closed. Senders hold conn_lock for
     * reading across the transport's send; closing takes it for writing,
     * so no send can touch a freed connection. (Uncontended, a read lock
     * is one atomic operation per message.) */
    pthread_rwlock_t conn_lock;
    disco_conn *conn;
    disco__auth auth;
    bool auth_done;
    /* Frame reassembly (progress thread only). */
    uint8_t *rbuf;
    size_t rlen, rcap;
    /* Set once the peer is ready or gone; ready_status says which. */
    disco_event settled;
    int ready_status;
    char host[DISCO__IDENTITY_HOST_MAX + 1]; /* from the handshake */
    struct disco__launched *proc; /* the local process (master side) */
    pid_t os_pid;
} disco__peer;

typedef struct disco__runtime {
    atomic_bool up;
    int myid;
    bool worker;
    const disco_transport_ops *ops;
    disco_transport *tp;
    char address[DISCO__IDENTITY_ADDR_MAX + 1];
    disco__identity self;
    _Atomic(disco__peer *) peers[DISCO__MAX_PROCS];
    int next_pid;               /* master: next pid to hand out */
    pthread_mutex_t lock;       /* peer table changes, next_pid */
    _Atomic uint64_t next_call_id;
    disco__progress_hook hook;
    disco_event master_gone;    /* worker: set when the master connection ends */
} disco__runtime;

extern disco__runtime disco__rt;

/* Brings up the transport and network progress (idempotent). */
int disco__runtime_start(void);

/* A new peer in state PEER_AUTH (pid 0: not known yet), or NULL. */
disco__peer *disco__peer_new(int pid);

/* Sends iov on p's connection (token as for the transport's send).
 * DISCO_ECLOSED once the connection is closed. */
int disco__peer_send(disco__peer *p, const struct iovec *iov, int iovcnt, void *token);

/* Closes p's connection (idempotent): frees it in the transport. */
void disco__peer_close(disco__peer *p);

/* The ready peer pid, or NULL with the last error set. */
disco__peer *disco__peer_ready(int pid);

/* Sends one frame to peer p: header fields from h (payload_len is set
 * here) and, if v is not NULL, v encoded as the payload. */
int disco__send_frame(disco__peer *p, disco__frame_header *h, const disco_value *v);

/* Transport upcalls (dispatch.c). */
void disco__on_accept(void *ctx, disco_conn *c);
void disco__on_recv(void *ctx, disco_conn *c, const uint8_t *data, size_t len);
void disco__on_close(void *ctx, disco_conn *c, int status);
void disco__on_sent(void *ctx, disco_conn *c, void *token, int status);

/* Starts the handshake on a new connection to or from peer p. */
int disco__peer_begin_auth(disco__peer *p, int role);

#endif
