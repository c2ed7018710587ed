/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The runtime of one disco process: who it is, the peers it knows, the
 * transport it talks through, and how messages are taken apart and sent.
 *
 * Every peer has a TCP connection (conn): the handshake runs on it, and it
 * stays open to tell when the peer dies. Right after the handshake the two
 * processes may move their frames to a faster transport both have
 * (src/core/upgrade.c): then `fast` carries them.
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

#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/auth.h"
#include "core/transport.h"
#include "core/transport_set.h"
#include "disco/cluster.h"
#include "disco/rpc.h"
#include "disco/task.h"
#include "sched/sched.h"
#include "wire/wire.h"

#define DISCO__MAX_PROCS 4096

enum { PEER_AUTH, PEER_READY, PEER_GONE };

struct disco__peer;

/* A connection on a transport other than TCP: a peer's data path after the
 * upgrade. Its transport context. */
typedef struct disco__link {
    disco__xport *x;
    disco_conn *conn;
    /* NULL on the accepting side until the link proves whose it is. */
    struct disco__peer *peer;
    size_t hello_have; /* accepting side: bytes of the proof so far */
    uint8_t hello[36];
} disco__link;

typedef struct disco__peer {
    int pid;
    _Atomic int state;
    /* Set once everything has learnt that the peer is gone (futures
     * failed, observers such as the pools told): what rmprocs waits for. */
    atomic_bool departed;
    /* The connection, NULL once it is closed. Senders hold conn_lock for
     * reading across the transport's send; closing takes it for writing,
     * so no send can touch a freed connection. (Uncontended, a read lock
     * is one atomic operation per message.) */
    pthread_rwlock_t conn_lock;
    disco_conn *conn;
    /* The data path once upgraded, NULL before (or when staying on TCP);
     * guarded by conn_lock like conn. */
    disco__link *fast;
    /* fast's transport, read without conn_lock where only the transport
     * matters (the rendezvous path of every call: rdv.c); transports
     * outlive links. */
    _Atomic(struct disco__xport *) fast_x;
    /* Handshake initiator, while the UPGRADE answer is due: its link in
     * disco__rt.awaiting (the link that answers arrives with the session
     * secret). */
    struct disco__peer *await_next;
    bool upgraded; /* frames may flow: the transport is settled */
    disco__auth auth;
    bool auth_done;
    /* Frame reassembly (progress thread only): a frame cut by the end of
     * what arrived, rneed its size once its header is in (0 before). */
    uint8_t *rbuf;
    size_t rlen, rcap, rneed;
    /* Rendezvous data streamed after its frame (no RMA: see rdv.h), being
     * received into place: the reads of trailer, from read trailer_i at
     * byte trailer_off (progress thread only). */
    struct disco__rdv_wait *trailer;
    size_t trailer_i, trailer_off;
    /* Calls from p that wait, in arrival order, for the first of them to
     * have its arguments read (dispatch.c): calls start in the order they
     * were made. Progress thread only. */
    struct disco__call *waiting, *waiting_tail;
    /* Set once the peer is ready or gone; ready_status says which. */
    disco_event settled;
    _Atomic int ready_status; /* rewritten if it dies later: atomic */
    char host[DISCO__IDENTITY_HOST_MAX + 1]; /* from the handshake */
    char addr[DISCO__IDENTITY_ADDR_MAX + 1]; /* its listening address, ditto */
    bool joined; /* master: JOIN sent, so later workers learn of it */
    disco_error *join_err; /* master: why the worker could not join */
    struct disco__launched *proc; /* the local process (master side) */
    pid_t os_pid;
} disco__peer;

/* A process a worker has heard of (from JOIN or a handshake) but may not
 * be connected to: where to dial it. Written once, never freed. */
typedef struct disco__known {
    char addr[DISCO__IDENTITY_ADDR_MAX + 1];
    char host[DISCO__IDENTITY_HOST_MAX + 1];
} disco__known;

typedef struct disco__runtime {
    atomic_bool up;
    int myid;
    bool worker;
    disco__xport_set xports;
    /* The bootstrap transport (TCP, xports.x[0]), and its address. */
    const disco_transport_ops *ops;
    disco_transport *tp;
    char address[DISCO__IDENTITY_ADDR_MAX + 1];
    char node[40]; /* this boot of this machine: who can share memory */
    disco__peer *awaiting; /* peers whose upgrade answer is due (lock) */
    disco__identity self;
    _Atomic(disco__peer *) peers[DISCO__MAX_PROCS];
    _Atomic(disco__known *) known[DISCO__MAX_PROCS]; /* worker */
    /* The cluster's topology (DISCO_TOPOLOGY_*) and whether workers connect
     * to each other at join: set by the master's first addprocs, told to
     * workers in JOIN. */
    int topology;
    bool eager;
    bool topology_set; /* master: by the first addprocs */
    int next_pid;               /* master: next pid to hand out */
    pthread_mutex_t lock;       /* peer table changes, next_pid */
    _Atomic uint64_t next_call_id; /* ids handed out in blocks: disco__new_id */
    uint32_t max_payload;       /* largest frame payload sent or accepted */
    long eager_max_env;         /* DISCO_EAGER_MAX, -1 when unset (rdv.h) */
    disco__progress_hook hook;
    /* Worker: posted when the master says goodbye or its connection ends.
     * A semaphore, not an event: the main thread waits on it for the
     * worker's whole life and must not spin (DISCO_PROGRESS=poll makes
     * disco's waits spin). */
    sem_t master_gone;
    atomic_bool master_said_goodbye; /* worker: SHUTDOWN came before that */
} disco__runtime;

extern disco__runtime disco__rt;

/* Brings up the transport and network progress (idempotent). */
int disco__runtime_start(void);

/* A new peer in state PEER_AUTH (pid 0: not known yet), or NULL. */
disco__peer *disco__peer_new(int pid);

/* Sends on p's data path (see disco_transport_ops.send); with more, by
 * send_more where the transport has it, and p is remembered for the
 * thread's next flush (batch.c). DISCO_ECLOSED once the connection is
 * closed. */
int disco__peer_send(disco__peer *p, const struct iovec *iov, int iovcnt, void *token,
                     bool more);
/* Whether p's data path has send_copy (a hint: the path may change). */
bool disco__peer_copies(disco__peer *p);
/* Sends bytes that live only until it returns: by send_copy, or by send
 * from a copy of them where the data path no longer has send_copy. */
int disco__peer_send_copy(disco__peer *p, const struct iovec *iov, int iovcnt);
/* Writes what send_more held back on p's connections. */
void disco__peer_flush(disco__peer *p);

/* batch.c: disco_batch_begin/end and the messages a thread holds back. */
void disco__batch_start(void);                /* at runtime start */
bool disco__batch_open(void);                 /* on this thread */
void disco__batch_held(const disco__peer *p); /* a send to p was held */

/* Closes p's connections (idempotent): frees them in the transport. For
 * a peer the core is done with: its links say nothing more to it. */
void disco__peer_close(disco__peer *p);

/* The ready peer pid, or NULL with the last error set. */
disco__peer *disco__peer_ready(int pid);

/* The ready peer pid; a worker in an all-to-all cluster connects to it
 * first if need be (mesh.c), blocking the caller. NULL with the last error
 * set if that fails. */
disco__peer *disco__peer_get(int pid);

/* A new id for a call or a reference, unique in this process (never 0).
 * Not in order across threads: each takes a block of them at a time. */
uint64_t disco__new_id(void);

/* Starts connecting p (a new peer with its pid) to addr as the
 * handshake's initiator. On failure p has no connection. */
int disco__peer_dial(disco__peer *p, const char *addr);

/* p's connection is over: see dispatch.c. */
void disco__peer_gone(disco__peer *p, int status, const char *why);

/* Frees a peer that was never published (its connection closed). */
void disco__peer_free_unpublished(disco__peer *p);

/* Sends one frame to peer p: header fields from h (payload_len is set
 * here) and, if v is not NULL, v encoded as the payload. */
int disco__send_frame(disco__peer *p, disco__frame_header *h, const disco_value *v);

/* The same, large data by rendezvous when p's data path allows it: the
 * registrations go to *regs, for the caller to release once the reply has
 * come (src/core/rdv.h; also on failure). */
struct disco__rdv_regs;
int disco__send_frame_rdv(disco__peer *p, disco__frame_header *h, const disco_value *v,
                          struct disco__rdv_regs *regs);

/* Transport upcalls (dispatch.c). */
void disco__on_accept(void *ctx, disco_conn *c);
void disco__on_recv(void *ctx, disco_conn *c, const uint8_t *data, size_t len);
void disco__on_close(void *ctx, disco_conn *c, int status);
void disco__on_sent(void *ctx, disco_conn *c, void *token, int status);

/* upgrade.c: moving a peer's frames to a faster transport. */
/* Initiator, handshake done: offers our other transports (UPGRADE). */
int disco__upgrade_offer(disco__peer *p);
/* Acceptor: the offer arrived; picks a transport, connects, answers
 * (UPGRADED, on the path chosen). */
int disco__upgrade_on_offer(disco__peer *p, const uint8_t *payload, size_t len);
/* Initiator: the answer arrived. */
int disco__upgrade_on_answer(disco__peer *p, const uint8_t *payload, size_t len);
/* Callbacks for connections on the other transports. */
void disco__link_on_accept(disco__xport *x, disco_conn *c);
void disco__link_on_recv(disco__link *l, const uint8_t *data, size_t len);
void disco__link_on_close(disco__link *l, int status);
/* Forgets p's pending upgrade (it is gone). */
void disco__upgrade_forget(disco__peer *p);
/* Handles the frames at the start of data (dispatch.c). */
int disco__take_frames(disco__peer *p, const uint8_t *data, size_t len);
/* Logs a connection error with the last error's detail (dispatch.c). */
void disco__log_conn_error(const disco__peer *p, const char *what);

/* mesh.c: worker-to-worker connections. */
/* Master: the JOIN frame for worker p (its pid, the topology, the workers
 * that joined before it). */
int disco__mesh_send_join(disco__peer *p);
/* Worker: JOIN from the master arrived (payload decoded in v). */
int disco__mesh_on_join(const disco_value *v);
/* Master: a worker reports its join complete (status in v). */
void disco__mesh_on_join_complete(disco__peer *p, const disco_value *v);
/* Worker: an authenticated connection from another worker; 0 if accepted
 * (then p is published and ready). */
int disco__mesh_accept(disco__peer *p, const disco__identity *id);
/* Marks p ready and wakes whoever waits for it. */
void disco__peer_set_ready(disco__peer *p);
/* Notes where process pid listens (worker). */
void disco__mesh_learn(int pid, const char *addr, const char *host);

/* Adds fn (once; adding it again is a no-op) to the observers told when a
 * peer becomes ready (up) or is gone: the worker pools follow the cluster
 * through them (src/pool), reference counts forget dead clients
 * (src/rref). They run on the progress thread and must not block.
 * DISCO_EBUSY when all DISCO__PEER_OBSERVERS slots are taken. */
#define DISCO__PEER_OBSERVERS 4
int disco__peer_observe(void (*fn)(int pid, bool up));

#endif
