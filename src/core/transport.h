/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The transport interface: the only header a transport includes from the
 * core, and the only way the core reaches a network.
 *
 * A transport moves bytes between processes over connections. The core
 * treats every connection as an ordered, reliable byte stream and does its
 * own framing (src/wire), so a message transport may deliver any chunking
 * of the stream. Transports register a const ops table; the core chooses by
 * capability bits, never by name.
 *
 * Threading: disco_transport_ops.progress is called by one thread at a time
 * (the core serialises it); the callbacks run inside progress, on that
 * thread, and must not block — except that conn_close reports the sends it
 * cancels with on_sent on its calling thread before it returns. send and
 * conn_close may be called from any thread at any time, concurrently with
 * progress; conn_close may wait for a callback for c running in progress,
 * so do not call it holding a lock that callbacks take.
 */
#ifndef DISCO_CORE_TRANSPORT_H
#define DISCO_CORE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Opaque: each transport casts them to its own types. */
typedef struct disco_transport disco_transport;
typedef struct disco_conn disco_conn;

typedef struct disco_mr disco_mr; /* a memory registration */

/* Capability bits. The core picks a transport for a peer by these (and by
 * rank), never by name. */
#define DISCO_TRANSPORT_CAP_STREAM (1ull << 0)    /* ordered reliable bytes */
#define DISCO_TRANSPORT_CAP_CROSS_NODE (1ull << 1) /* reaches other hosts */
#define DISCO_TRANSPORT_CAP_SAME_NODE (1ull << 2) /* reaches this host's processes */
#define DISCO_TRANSPORT_CAP_RMA (1ull << 3)      /* mem_register + rma_read work */
/* Reports a dead peer by itself (on_close). A transport without it (a
 * connectionless fabric) relies on the core, which keeps its TCP bootstrap
 * connection open to learn that a peer died. */
#define DISCO_TRANSPORT_CAP_CLOSE (1ull << 4)

/* The largest remote key mem_register writes. */
#define DISCO_TRANSPORT_KEY_MAX 64

/* Upcalls from the transport into the core. ctx is what init was given. */
typedef struct disco_transport_callbacks {
    /* A peer connected to our listening address. The core owns c from now
     * on (it must eventually conn_close it). */
    void (*on_accept)(void *ctx, disco_conn *c);
    /* Bytes arrived on c, in order. data is valid only during the call. */
    void (*on_recv)(void *ctx, disco_conn *c, const uint8_t *data, size_t len);
    /* c is finished: the peer closed it, an error broke it (status < 0), or
     * an outgoing connect failed. No callback for c follows; the core still
     * calls conn_close(c) to free it. Pending sends completed before with
     * on_sent(status < 0). */
    void (*on_close)(void *ctx, disco_conn *c, int status);
    /* The send identified by token is done with the caller's buffers
     * (status 0), or failed (negative status). It may come late: a
     * transport may keep a few completions for a later progress call
     * rather than wake a blocked one for each. */
    void (*on_sent)(void *ctx, disco_conn *c, void *token, int status);
    /* The rma_read identified by token is done: its destination holds the
     * data (status 0) or the read failed (negative status). Deferred like
     * on_sent: never called from inside rma_read. */
    void (*on_read)(void *ctx, disco_conn *c, void *token, int status);
} disco_transport_callbacks;

typedef struct disco_transport_ops {
    size_t size; /* sizeof(struct disco_transport_ops): new slots append */
    const char *name;
    uint64_t caps;
    /* Preference among the transports two peers share: higher wins. */
    int rank;
    /* Payloads up to this size go inline in a frame; above it the core may
     * use rendezvous (mem_register + rma_read). 0: no preference. */
    size_t eager_max;

    /* Creates a transport listening on host (NULL: 127.0.0.1) on an
     * ephemeral port. Does not block. arg is the part of DISCO_TRANSPORT
     * after "name:" (a libfabric provider), NULL when none was given.
     * Returns 0, or DISCO_ENOSYS when this machine cannot run the
     * transport (the core then goes on without it), or another status. */
    int (*init)(disco_transport **tp, const char *host, const char *arg,
                const disco_transport_callbacks *cb, void *ctx);

    /* Writes the listening address into buf: printable ASCII without
     * spaces, starting with the transport's name and "://"
     * ("tcp://127.0.0.1:40123"), at most DISCO_TRANSPORT_ADDR_MAX bytes
     * with the NUL. */
    int (*local_address)(disco_transport *tp, char *buf, size_t len);

    /* Starts connecting to address (as printed by local_address), with ctx
     * as the connection's context (see conn_context) from the start, since
     * callbacks for it may run before connect returns. Returns the
     * connection at once; sends may be queued on it right away. A failure
     * to connect arrives as on_close(c, status < 0) — or, for a transport
     * that can tell at once (a same-node one), as a negative return. */
    int (*connect)(disco_transport *tp, const char *address, void *ctx,
                   disco_conn **c);

    /* Queues the bytes of iov (in order, after everything sent on c
     * before). The caller's buffers are borrowed until on_sent(token);
     * the iovec array itself is copied. May write immediately. Never
     * blocks. Returns 0; DISCO_ECLOSED when c is closed, DISCO_EINVAL or
     * DISCO_ENOMEM otherwise; no on_sent follows a failure. */
    int (*send)(disco_conn *c, const struct iovec *iov, int iovcnt, void *token);

    /* Runs callbacks for whatever happened; waits up to timeout_ms for
     * something to happen (0: poll, -1: forever). Returns > 0 when
     * something happened, 0 when not, or a negative status (DISCO_EBUSY
     * for a concurrent or nested call). */
    int (*progress)(disco_transport *tp, int timeout_ms);

    /* Wakes a progress call blocked in another thread, and a thread
     * blocked on wait_fd after wait_arm. */
    void (*interrupt)(disco_transport *tp);

    /* Blocking on several transports at once: the core calls wait_arm on
     * each, and if all return 0, poll()s their wait_fd for POLLIN, then
     * calls progress(tp, 0) on each, which ends the armed state. wait_arm
     * returns 0 when the caller may sleep (anything that happens from now
     * on makes wait_fd readable, interrupt included), > 0 when something
     * is already pending (call progress instead). Same thread rules as
     * progress. The fd is owned by the transport and fixed for its life. */
    int (*wait_fd)(disco_transport *tp);
    int (*wait_arm)(disco_transport *tp);

    /* Closes c (idempotent with a peer close) and frees it. Sends still
     * queued complete with on_sent(DISCO_ECLOSED). No callback for c runs
     * after conn_close returns. */
    void (*conn_close)(disco_conn *c);

    /* The peer's address as "host:port", for logs. */
    const char *(*conn_peer)(disco_conn *c);

    /* A pointer the core keeps with c (NULL until set). */
    void (*conn_set_context)(disco_conn *c, void *ctx);
    void *(*conn_context)(disco_conn *c);

    /* Closes every connection and the listener, frees tp. Outstanding sends
     * are reported with on_sent; on_close is not called. */
    void (*fini)(disco_transport *tp);

    /* Remote memory access (DISCO_TRANSPORT_CAP_RMA; NULL slots without
     * it). mem_register makes [addr, addr + len) readable by peers' rma_read
     * and local as an rma_read destination; it writes the key a peer needs
     * into key (*keylen bytes, at most DISCO_TRANSPORT_KEY_MAX). It may
     * block (pinning memory). mem_deregister ends it; reads in flight on it
     * may then fail. Both thread-safe. */
    int (*mem_register)(disco_transport *tp, void *addr, size_t len, disco_mr **mr,
                        uint8_t *key, size_t *keylen);
    void (*mem_deregister)(disco_mr *mr);
    /* Reads len bytes at the peer's address raddr, registered there under
     * key, into dst (inside dst_mr, a local registration; NULL when the
     * transport needs none). Completion: on_read(token), from progress.
     * Never blocks; any thread. 0 or a negative status (no on_read then). */
    int (*rma_read)(disco_conn *c, void *dst, disco_mr *dst_mr, uint64_t raddr,
                    size_t len, const uint8_t *key, size_t keylen, void *token);

    /* The capability bits of this instance, when they depend on what init
     * found (a libfabric provider that reaches this node only, or has no
     * RMA); NULL: caps. The core asks once, after init. */
    uint64_t (*caps_of)(disco_transport *tp);

    /* conn_close for a peer the core is done with for good (its process
     * exited or was killed, or the core dropped it): the same, except that
     * nothing more goes to the peer, not even a goodbye. A transport that
     * shares memory with the peer's process needs it: a process killed
     * inside libfabric's shm provider leaves a lock of its region taken,
     * and a message to it spins forever. NULL: conn_close. */
    void (*conn_abandon)(disco_conn *c);

    /* The process is about to _exit without fini (a worker whose master is
     * gone): returns once no other thread is inside a call that holds a
     * lock in memory shared with other processes, and keeps them out from
     * then on, waiting a few seconds at most for a call that does not end.
     * A thread that _exit ends inside such a call leaves the lock taken for
     * good (libfabric's shm provider: the region of the peer it was sending
     * to, whose every send and progress then spins forever). Any thread.
     * NULL: nothing to wait for. */
    void (*quiesce)(disco_transport *tp);

    /* send for a message with more to follow at once (a batch: see
     * disco_batch_begin): the transport may hold the bytes back until the
     * next send or flush on c, to write the batch with one system call
     * (MSG_MORE, libfabric's FI_MORE), up to a bound of its own. Same
     * contract as send otherwise. NULL: the core uses send. */
    int (*send_more)(disco_conn *c, const struct iovec *iov, int iovcnt, void *token);
    /* Writes what send_more held back on c (nothing when it holds none).
     * Never blocks; any thread. NULL when send_more is. */
    void (*flush)(disco_conn *c);
    /* send for bytes that live only until it returns (a frame encoded on
     * the caller's stack): the transport has copied them when it returns,
     * into its ring or a queue of its own, and no on_sent follows. Worth
     * it where send copies anyway (shared memory): the core then neither
     * allocates a buffer for the message nor hears of its completion.
     * Same contract as send otherwise. NULL: the core uses send. */
    int (*send_copy)(disco_conn *c, const struct iovec *iov, int iovcnt);

    /* A process of this node ended, perhaps killed without closing its
     * transport, and its pid cannot be reused yet (the caller has not
     * reaped it): removes what it left that only its own close would have
     * removed. libfabric's shm provider names a region in /dev/shm after
     * the pid (16 MiB) and unlinks it on a clean close only. Any thread.
     * NULL: nothing outlives a process. */
    void (*process_ended)(disco_transport *tp, pid_t pid);
} disco_transport_ops;

#define DISCO_TRANSPORT_ADDR_MAX 256

extern const disco_transport_ops disco__tcp_ops;
extern const disco_transport_ops disco__shm_ops;
extern const disco_transport_ops disco__ofi_ops;

#endif
