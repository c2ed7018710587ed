/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libfabric transport: private declarations (nothing outside transports/ofi
 * includes this header).
 *
 * One reliable-datagram endpoint (FI_EP_RDM) per transport, with one
 * completion queue for everything and one address vector. A "connection"
 * is a pair of ids, one per side, agreed by a handshake:
 *
 *   connect: A -> B  HELLO  hdr(HELLO, 0)      payload {A's id, length of
 *                                               A's address, A's address,
 *                                               B's address}
 *   accept:  B -> A  ACK    hdr(ACK, A's id)   payload {B's id, B's address}
 *   data:    X -> Y  DATA   hdr(DATA, Y's id)  payload: stream bytes
 *   close:   X -> Y  CLOSE  hdr(CLOSE, Y's id) (fi_tinject, retried by
 *                                               progress until fini)
 *
 * Addresses are raw endpoint names. B accepts a HELLO only when it names B:
 * a provider may resolve a name that is gone to another endpoint (shm 1.17
 * delivers to a live endpoint of the same process), and B refuses such a
 * HELLO with a CLOSE, which fails A's connect at once. A connection closed
 * before its ACK came cannot send its CLOSE (it does not know B's id yet):
 * the ACK that comes later, for no live connection, is answered with the
 * CLOSE instead, so B's end does not stay open. Both CLOSEs are numbered 0,
 * as A sends nothing numbered before the ACK.
 *
 * Every message starts with an 8-byte header (OFI_HDR) that carries the
 * message kind, a sequence number and the receiver's connection id, so a
 * receive maps to its connection by the id alone. The libfabric tag is 0
 * on every message and every receive: any receive buffer takes any
 * message. Tag matching is broken in shm 1.17 for a message that comes
 * before a receive is posted: it tests the queued message against a tag
 * mask left in its queue entry by whichever receive used the entry before,
 * and a message queued in an entry no receive had used yet matched no
 * receive unless its tag was the receive's (a burst of more than twice
 * OFI_NRX messages to a busy receiver stopped its stream for good:
 * test_burst_of_small_sends). With equal tags every mask matches. FI_TAGGED
 * stays (rather than FI_MSG) so that the providers chosen are the ones
 * tested. Ids hold a slot index and a generation, so a late message for a
 * closed connection never reaches the slot's next owner. Every message to a
 * connection but the HELLO (ACK, DATA, CLOSE) is numbered: FI_ORDER_SAS
 * (which init requires) orders the data placement, but completions may
 * come out of order (tcp;ofi_rxm completes a large rendezvous message after
 * a small one behind it), so a receive that comes early is held, its buffer
 * not re-posted, until its predecessors have been delivered.
 *
 * Sending copies: every byte goes through a transport-owned bounce buffer
 * of OFI_CHUNK bytes (OFI_NTX of them), behind the header. That makes the
 * provider's limits moot (iov_limit, max_msg_size: one contiguous buffer of
 * at most OFI_CHUNK bytes per message, which is also the receive buffer
 * size), coalesces small sends when a backlog forms, lets FI_MR_LOCAL
 * providers use one registration for all buffers, and above all frees the
 * caller's buffers as soon as they are copied: a closed connection never
 * leaves the provider reading memory the caller has taken back.
 * on_sent(token, 0) is owed once the send's last byte is in a buffer the
 * provider accepted. Large payloads should use RMA instead (eager_max =
 * OFI_CHUNK).
 *
 * Back-pressure: a connection holds at most OFI_TX_PER_CONN buffers; sends
 * beyond that stay queued (iovec array copied, buffers borrowed), as do
 * buffers the provider refused with -FI_EAGAIN. progress retries both after
 * reading the completion queue. send never spins.
 *
 * Threading (contract: src/core/transport.h). One mutex, tp->lock, guards
 * the transport, every connection and every libfabric call (the domain is
 * opened FI_THREAD_DOMAIN: we serialise). Callbacks run without it. The
 * rest mirrors the TCP transport (transports/tcp/tcp.h):
 *  - progress runs on one thread at a time (DISCO_EBUSY otherwise);
 *    callbacks run inside it, except that conn_close (and fini) complete the
 *    sends and reads they cancel on their own thread before returning.
 *  - on_sent is deferred to progress; a progress blocked in epoll is woken
 *    for completions made outside it only once OFI_LAZY_DONE are owed, or
 *    when the provider refused a buffer (someone must retry it).
 *  - a callback for c is bracketed by tp->cb_conn; conn_close on another
 *    thread waits for it to return; no callback for c starts once c is
 *    closed. conn_close during a progress call parks c on the zombie list,
 *    freed when progress returns.
 *
 * Peers: RDM is connectionless, so a dead peer shows only as a failed send
 * (tcp;ofi_rxm) or not at all (shm); the transport does not claim
 * DISCO_TRANSPORT_CAP_CLOSE and the core learns of deaths through its TCP
 * bootstrap connection, and then closes with conn_abandon, which sends no
 * CLOSE: shm's region of a process killed while it held the region's lock
 * (its own progress takes it every millisecond) keeps the lock, and
 * fi_tinject to it would spin forever. A connect that gets no ACK within
 * DISCO_OFI_CONNECT_TIMEOUT seconds (default 30) fails with
 * DISCO_ETIMEDOUT.
 *
 * fini: what the provider accepted (data, CLOSEs) is still in the
 * provider's hands, and a provider with manual progress (tcp;ofi_rxm) moves
 * it only while we read the completion queue: fini drains it, for at most
 * OFI_LINGER_MS (sends to a dead peer may never complete), before closing
 * the endpoint. Otherwise a process that sends its last bytes and exits
 * loses them.
 *
 * RMA: mem_register is fi_mr_reg (FI_READ | FI_REMOTE_READ); the key is
 * {mr key, base}, base 0 when the provider takes virtual addresses
 * (FI_MR_VIRT_ADDR) or the registration's start otherwise (reads then use
 * offsets). Reads are split into OFI_RMA_CHUNK pieces. A read in flight
 * when its connection closes is reported DISCO_ECLOSED at once; the
 * provider may still write dst until it completes (keep dst_mr registered,
 * as a NIC would require anyway).
 */
#ifndef DISCO_TRANSPORTS_OFI_H
#define DISCO_TRANSPORTS_OFI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>

#include "core/transport.h"
#include "disco/error.h"
#include "disco/status.h"

#define OFI_CHUNK (64 * 1024)   /* bytes per message = receive buffer size */
#define OFI_NRX 64              /* pre-posted receive buffers */
#define OFI_NTX 64              /* bounce buffers for sending */
#define OFI_TX_PER_CONN 16      /* of which one connection may hold */
#define OFI_CQ_BATCH 16         /* completions per fi_cq_read */
#define OFI_CQ_ROUNDS 16        /* fi_cq_read calls per progress call */
#define OFI_LAZY_DONE 32        /* see Threading */
#define OFI_READY_PER_CALL 64   /* connections served per progress call */
#define OFI_DELIVER_BUDGET 1024 /* callbacks per connection per call */
#define OFI_POLL_MS 1           /* sleeping without a completion fd */
#define OFI_RMA_CHUNK (4u << 20) /* bytes per fi_read */
#define OFI_AV_SIZE 256         /* DISCO_OFI_AV_SIZE overrides */
#define OFI_CONNECT_TIMEOUT_S 30
#define OFI_LINGER_MS 2000      /* fini's wait for sends in flight */
#define OFI_ADDR_RAW_MAX 120    /* raw endpoint name (hex doubles it) */
#define OFI_ADDR_PAD 512        /* raw names are copied into this much zeros */
#define OFI_PEER_LEN 96
#define OFI_MSG_LEN 192

/* The header, a uint64_t in host order at the start of every message: kind
 * in the top two bits, then a 22-bit sequence number, then the receiver's
 * 40-bit connection id. */
#define OFI_HDR sizeof(uint64_t)
#define OFI_KIND_SHIFT 62
#define OFI_SEQ_SHIFT 40
#define OFI_SEQ_MASK ((1u << 22) - 1)
#define OFI_ID_MASK ((1ull << OFI_SEQ_SHIFT) - 1)
enum { OFI_DATA = 0, OFI_HELLO = 1, OFI_ACK = 2, OFI_CLOSE = 3 };

static inline uint64_t ofi_hdr(unsigned kind, uint64_t id, uint32_t seq)
{
    return ((uint64_t)kind << OFI_KIND_SHIFT) |
           ((uint64_t)(seq & OFI_SEQ_MASK) << OFI_SEQ_SHIFT) | (id & OFI_ID_MASK);
}

/* Connection ids: slot index in the low 24 bits, a 16-bit generation above
 * (never 0, so 0 means "no connection"). */
#define OFI_SLOT_BITS 24
#define OFI_SLOT_MASK ((1ull << OFI_SLOT_BITS) - 1)
#define OFI_GEN_MASK 0xffffull

typedef struct ofi_transport ofi_transport;
typedef struct ofi_conn ofi_conn;

/* Every operation's context starts with the provider's scratch space
 * (FI_CONTEXT / FI_CONTEXT2 modes) and says what it belongs to. */
enum { OFI_OP_TX, OFI_OP_RX, OFI_OP_READ };
typedef struct ofi_op {
    struct fi_context2 fctx;
    int kind;
} ofi_op;

/* A bounce buffer: free, staged on a connection (filled, not yet taken by
 * the provider), or in flight (cid says whom to blame for an error). */
typedef struct ofi_tx {
    ofi_op op;
    struct ofi_tx *next;
    uint64_t cid;
    uint64_t hdr;  /* also in buf's first OFI_HDR bytes */
    fi_addr_t dest;
    size_t len;    /* bytes in buf, the header's included */
    size_t stream; /* of which stream bytes (DATA) */
    uint8_t *buf;
} ofi_tx;

typedef struct ofi_rx {
    ofi_op op;
    uint8_t *buf;
    bool posted;
    /* A message held until its turn (c->held, by sequence). */
    struct ofi_rx *next;
    uint32_t seq;
    unsigned kind;
    size_t len; /* of the payload, at buf + OFI_HDR */
} ofi_rx;

/* A queued send: the caller's iovec array, iov[pos] the first byte not yet
 * copied; end is the stream offset just past its last byte. */
typedef struct ofi_send {
    struct ofi_send *next;
    void *token;
    uint64_t end;
    int iovcnt;
    int pos;
    struct iovec iov[];
} ofi_send;

typedef struct ofi_read ofi_read;
typedef struct ofi_read_piece {
    ofi_op op;
    ofi_read *r;
} ofi_read_piece;

/* An rma_read, split into pieces. Lives on tp->reads until every posted
 * piece completed and (if its connection still exists) on_read ran. */
struct ofi_read {
    ofi_read *prev, *next; /* tp->reads */
    ofi_read *dnext;       /* c->rdone */
    ofi_read *retry_next;  /* tp->rretry */
    uint64_t cid;          /* 0 once detached from its connection */
    void *token;
    int status;
    uint8_t *dst;
    void *desc;
    uint64_t raddr, rkey;
    size_t len;
    fi_addr_t src;
    size_t npieces, posted, completed;
    bool retrying;         /* on tp->rretry */
    bool owed;             /* on its connection's rdone */
    ofi_read_piece pieces[];
};

typedef enum ofi_state {
    OFI_CONNECTING, /* HELLO sent, no ACK yet: sends queue */
    OFI_OPEN,
    OFI_DEAD,   /* failed or peer-closed: on_close pending */
    OFI_CLOSED, /* conn_close called */
} ofi_state;

struct ofi_conn {
    ofi_transport *tp;
    uint64_t id, rid;  /* ours, the peer's (0 until the ACK) */
    fi_addr_t addr;
    ofi_state state;
    double deadline;   /* CONNECTING: when to give up */

    /* Sends: head is the oldest not reported, fill the first not copied
     * completely. Stream offsets: copied into buffers, taken by the
     * provider; queued is where the next send starts. */
    ofi_send *head, *fill, *tail;
    uint64_t queued, filled, posted;
    ofi_tx *staged, *staged_tail; /* FIFO of buffers not taken yet */
    int ntx;                      /* buffers staged or in flight */
    bool blocked;                 /* the provider said -FI_EAGAIN */

    ofi_read *rdone;   /* reads whose on_read is owed (LIFO is fine) */
    uint32_t tx_seq, rx_seq; /* next to send, next to deliver */
    ofi_rx *held;      /* early receives, in sequence order */

    int close_status;
    bool close_delivered;
    char close_msg[OFI_MSG_LEN];

    ofi_conn *prev, *next;     /* tp->conns */
    ofi_conn *rnext;           /* tp->ready */
    bool on_ready;
    ofi_conn *znext;           /* tp->zombies */

    char peer[OFI_PEER_LEN];
    _Atomic(void *) ctx;
};

/* A CLOSE the provider could not take at once, retried by progress until
 * give_up: a peer that takes nothing for OFI_LINGER_MS is most likely dead
 * (shm fills a dead peer's queue and refuses from then on), and retrying
 * would keep progress polling instead of sleeping. */
typedef struct ofi_close_msg {
    struct ofi_close_msg *next;
    fi_addr_t addr;
    uint64_t hdr;
    double give_up;
} ofi_close_msg;

/* An address inserted into the AV (never removed before fini). */
typedef struct ofi_peer_addr {
    uint8_t raw[OFI_ADDR_RAW_MAX];
    size_t len;
    fi_addr_t fi;
} ofi_peer_addr;

struct ofi_transport {
    disco_transport_callbacks cb;
    void *ctx;

    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_av *av;
    struct fid_cq *cq;
    struct fid_ep *ep;
    struct fid_mr *tx_mr, *rx_mr; /* FI_MR_LOCAL only */
    void *tx_desc, *rx_desc;
    bool virt_addr;   /* FI_MR_VIRT_ADDR */
    bool prov_key;    /* FI_MR_PROV_KEY */
    bool has_rma;
    atomic_uint_fast64_t next_key; /* requested keys without PROV_KEY */
    size_t rma_chunk;
    double connect_timeout;

    int epfd, evfd;
    int cqfd;          /* the completion queue's wait fd, or -1: then */
    int tfd;           /* a timer ticks every OFI_POLL_MS while we sleep */
    char prov[32];     /* "shm", "tcp" (for tcp;ofi_rxm) */
    char address[DISCO_TRANSPORT_ADDR_MAX];
    uint8_t raw[OFI_ADDR_RAW_MAX];
    size_t rawlen;

    uint8_t *tx_slab, *rx_slab;
    ofi_tx tx[OFI_NTX];
    ofi_rx rx[OFI_NRX];

    pthread_mutex_t lock;
    pthread_cond_t cv;  /* conn_close waits here for a callback to end */
    /* Guarded by lock. */
    ofi_tx *tx_free;
    int ntx_free;       /* buffers on tx_free: the rest are in use */
    bool finishing;     /* fini drains: HELLOs are ignored */
    ofi_conn **slots;   /* id table */
    uint64_t *gens;
    size_t nslots;
    ofi_conn *conns;
    ofi_conn *ready, *ready_tail;
    ofi_conn *zombies;
    ofi_read *reads;    /* every live read */
    ofi_read *rretry;   /* reads with pieces refused by the provider */
    ofi_close_msg *closes, *closes_tail; /* FIFO */
    ofi_peer_addr *addrs;
    size_t naddrs, addrs_cap;
    ofi_conn *cb_conn;  /* the connection whose callback runs */
    pthread_t cb_thread;
    int close_waiters;
    bool in_progress, sleeping, woken;
    bool any_blocked;   /* a connection waits for the provider to take a
                         * buffer: no event will say when, so poll */
    double next_deadline; /* the soonest connect deadline, 0 if none */
    unsigned lazy_done;
};

typedef struct ofi_mr {
    ofi_transport *tp;
    struct fid_mr *mr;
} ofi_mr;

static inline ofi_transport *ofi_tp(disco_transport *tp)
{
    return (ofi_transport *)(void *)tp;
}

static inline ofi_conn *ofi_c(disco_conn *c)
{
    return (ofi_conn *)(void *)c;
}

static inline disco_conn *ofi_dc(ofi_conn *c)
{
    return (disco_conn *)(void *)c;
}

/* ofi_addr.c: addresses. */

/* Writes "ofi+<prov>://<hex>" for raw into buf. 0 or DISCO_EINVAL. */
int ofi_addr_format(const char *prov, const uint8_t *raw, size_t rawlen,
                    char *buf, size_t len);
/* Parses an address printed by ofi_addr_format for provider prov. 0 or
 * DISCO_EINVAL with the last error set. */
int ofi_addr_parse(const char *prov, const char *address, uint8_t *raw,
                   size_t *rawlen);
/* The AV entry for raw, inserted on first use (lock held). 0 or a status. */
int ofi_av_lookup_locked(ofi_transport *tp, const uint8_t *raw, size_t len,
                         fi_addr_t *out);
/* A readable peer name for raw ("127.0.0.1:4000", "fi_shm://..."). */
void ofi_peer_name(ofi_transport *tp, const uint8_t *raw, size_t len, char *buf,
                   size_t buflen);
/* The disco status for a (positive) libfabric error code. */
int ofi_status(int fi_err);
/* Sets the last error for a libfabric call that returned rc (< 0). */
int ofi_fail(int rc, const char *what);

/* ofi_conn.c: connections. */

/* A new connection in state, with a fresh id, linked into tp (lock held).
 * NULL when out of memory. */
ofi_conn *ofi_conn_new_locked(ofi_transport *tp, ofi_state state, fi_addr_t addr,
                              const char *peer, void *ctx);
/* The live connection with id, or NULL (lock held). */
ofi_conn *ofi_conn_lookup_locked(ofi_transport *tp, uint64_t id);
/* Breaks c (lock held): on_close(status) is owed after the failed sends. */
void ofi_conn_fail_locked(ofi_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Re-posts the receive buffers c holds (lock held). */
void ofi_conn_release_held_locked(ofi_conn *c);
/* Puts c on the ready list (lock held). */
void ofi_conn_mark_ready_locked(ofi_conn *c);
/* Bracket a callback for c (lock held on entry and exit, not during). */
void ofi_cb_enter_locked(ofi_transport *tp, ofi_conn *c);
void ofi_cb_leave_locked(ofi_transport *tp);
/* Runs the callbacks owed by the ready connections. Progress thread only,
 * lock not held. Returns the number run. */
int ofi_deliver_ready(ofi_transport *tp);
/* Fails connects past their deadline (lock held); returns the soonest
 * deadline left, or 0. */
double ofi_check_deadlines_locked(ofi_transport *tp, double now);
/* Sends the CLOSEs the provider refused before, in order (lock held). */
void ofi_close_retry_locked(ofi_transport *tp);
/* Sends a CLOSE with header hdr to addr, or queues it behind refused ones
 * (lock held). */
void ofi_send_close_locked(ofi_transport *tp, fi_addr_t addr, uint64_t hdr);
/* Closes c: the shared part of conn_close, conn_abandon and fini; goodbye:
 * an open c sends the peer a CLOSE. */
void ofi_conn_shutdown(ofi_conn *c, bool goodbye);
void ofi_conn_free(ofi_conn *c);

/* ofi_send.c: sending. */

/* Copies c's queued bytes into buffers and hands them to the provider, as
 * far as buffers and the provider allow (lock held). */
void ofi_conn_push_locked(ofi_conn *c);
/* Stages a control message (HELLO, ACK) on c ahead of any data, its payload
 * gathered from v (lock held). 0 or DISCO_ENOMEM (no free buffer). */
int ofi_conn_stage_ctl_locked(ofi_conn *c, unsigned kind, uint64_t id,
                              const struct iovec *v, int n);
/* A buffer completed (lock held). */
void ofi_tx_done_locked(ofi_transport *tp, ofi_tx *tx, int err, int prov_err);
/* Returns tx to the free list (lock held). */
void ofi_tx_release_locked(ofi_transport *tp, ofi_tx *tx);

/* ofi_rma.c */
int ofi_mem_register(disco_transport *tp, void *addr, size_t len, disco_mr **mr,
                     uint8_t *key, size_t *keylen);
void ofi_mem_deregister(disco_mr *mr);
int ofi_rma_read(disco_conn *c, void *dst, disco_mr *dst_mr, uint64_t raddr,
                 size_t len, const uint8_t *key, size_t keylen, void *token);
/* A read piece completed (lock held). */
void ofi_read_done_locked(ofi_transport *tp, ofi_read_piece *p, int err,
                          int prov_err);
/* Posts the pieces of the reads the provider refused before (lock held). */
void ofi_read_retry_locked(ofi_transport *tp);
/* Frees r once nothing refers to it any more (lock held). */
void ofi_read_maybe_free_locked(ofi_transport *tp, ofi_read *r);

/* ofi_progress.c */
void ofi_wake(ofi_transport *tp);
/* Wakes a sleeping progress once per sleep (lock held: returns whether the
 * caller must call ofi_wake after unlocking). */
bool ofi_want_wake_locked(ofi_transport *tp);
/* Posts rx (lock held). */
void ofi_rx_post_locked(ofi_transport *tp, ofi_rx *rx);
/* Reads the completion queue and retries refused CLOSEs (lock held; no
 * connection left, so no callback runs). True when nothing is left in
 * flight. */
bool ofi_drain_locked(ofi_transport *tp);
double ofi_now(void);

/* The ops slots. */
/* ofi_lib.c: loads libfabric (once); 0 or DISCO_ENOSYS saying why. */
int ofi_lib_load(void);

int ofi_init(disco_transport **tp, const char *host, const char *arg,
             const disco_transport_callbacks *cb, void *ctx);
int ofi_local_address(disco_transport *tp, char *buf, size_t len);
int ofi_connect(disco_transport *tp, const char *address, void *ctx,
                disco_conn **c);
int ofi_send_op(disco_conn *c, const struct iovec *iov, int iovcnt, void *token);
int ofi_progress(disco_transport *tp, int timeout_ms);
void ofi_interrupt(disco_transport *tp);
int ofi_wait_fd(disco_transport *tp);
int ofi_wait_arm(disco_transport *tp);
void ofi_conn_close(disco_conn *c);
void ofi_conn_abandon(disco_conn *c);
const char *ofi_conn_peer(disco_conn *c);
void ofi_conn_set_context(disco_conn *c, void *ctx);
void *ofi_conn_context(disco_conn *c);
void ofi_fini(disco_transport *tp);

#endif
