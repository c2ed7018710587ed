/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TCP transport: private declarations (nothing outside transports/tcp
 * includes this header).
 *
 * One epoll instance per transport watches the listener, an eventfd (the
 * wake-up for interrupt() and for completions produced outside progress) and
 * every connection, level-triggered. All sockets are non-blocking,
 * close-on-exec and TCP_NODELAY; writes use MSG_NOSIGNAL (no SIGPIPE).
 * Addresses are numeric: "tcp://A.B.C.D:PORT" or "tcp://[IPv6]:PORT"; init
 * takes "A.B.C.D", "IPv6" or "[IPv6]" (never a name: resolving can block).
 *
 * Threading (the contract is src/core/transport.h):
 *  - progress runs on one thread at a time; a concurrent or nested call
 *    fails with DISCO_EBUSY. Callbacks run inside progress, on its thread,
 *    with two exceptions: conn_close completes the sends it cancels (and
 *    those written but not yet reported) with on_sent on the thread that
 *    calls it, before it returns; fini does the same for every connection.
 *    So on_sent may run on a thread that calls conn_close, concurrently
 *    with callbacks for other connections on the progress thread.
 *  - on_sent is always deferred: send never calls back, even when it writes
 *    everything at once. A send completed outside progress puts its
 *    connection on the transport's ready list, and the next progress call
 *    delivers on_sent(token, 0). A progress blocked in epoll_wait is not
 *    woken for each such completion (a wake-up per message would cost more
 *    than the message), only once TCP_LAZY_DONE of them are owed: that
 *    bounds the buffers held. Per connection, on_sent comes in send order.
 *  - send and conn_close may run on any thread, concurrently with progress.
 *    Each connection has a mutex that guards its socket, state, send queue
 *    and completions; every socket call on a connection happens under it, so
 *    conn_close can close the socket at once and sends never interleave.
 *    Callbacks run without it held: a callback may call send, or conn_close
 *    on its own or another connection.
 *  - A callback for c is bracketed by c->in_cb. conn_close on another thread
 *    while a callback for c runs waits for that callback to return
 *    (callbacks must not block, so the wait is short: but do not call
 *    conn_close while holding a lock that a callback takes). From inside a
 *    callback for c it does not wait. Either way no callback for c starts
 *    once conn_close has marked c closed, and none runs after it returns.
 *  - Memory: progress may still hold a pointer to a connection that another
 *    thread closes (in its epoll event array, between two callbacks), so
 *    conn_close frees the connection at once only when no progress call is
 *    running; otherwise it parks it on the zombie list, which the running
 *    progress frees before it returns.
 *
 * Closing: end of stream from the peer is on_close(c, 0) (a half-close is a
 * close); a broken connection or a failed connect is on_close(c, status <
 * 0) with the detail (strerror included) in disco_last_error() during the
 * callback. Sends still queued then fail first, in order, with that status
 * (DISCO_ECLOSED after a clean close). Errno mapping: tcp_status().
 *
 * Lock order: tcp_conn.mu before tcp_transport.lock; never the reverse.
 * tcp_transport.lock guards the connection list, the ready list (and each
 * connection's on_ready/ready links), the zombie list and the progress flags.
 */
#ifndef DISCO_TRANSPORTS_TCP_H
#define DISCO_TRANSPORTS_TCP_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "core/transport.h"
#include "disco/error.h"
#include "disco/status.h"

/* One read buffer per transport, not per connection: progress is
 * serialised and on_recv's data is only valid during the call, so a single
 * buffer serves every connection (and saves 64 KiB per peer). */
#define TCP_RBUF_SIZE (64 * 1024)
#define TCP_READS_PER_CALL 16     /* reads per connection per progress call */
#define TCP_ACCEPTS_PER_CALL 64   /* accepts per progress call */
#define TCP_EVENTS 64             /* epoll events per progress call */
#define TCP_GATHER 64             /* iovecs per sendmsg from the queue */
#define TCP_PEER_LEN 64           /* "[ipv6]:port" */
#define TCP_HOT_POLLS 16          /* polls of the hot connection per epoll_wait */
#define TCP_UNWATCH_HITS 2        /* reads by hot polls in a row before the hot
                                   * connection leaves epoll (tcp_progress.c) */
#define TCP_MSG_LEN 192           /* saved detail of a broken connection */
/* Bytes send_more may hold back on a connection before it writes them:
 * past this, a batch gains nothing from waiting (see tcp_send.c). */
#define TCP_HOLD_MAX (64 * 1024)

/* Completions of sends written at once that may wait for the next progress
 * call before a blocked one is woken for them (see Threading). */
#define TCP_LAZY_DONE 32

typedef struct tcp_transport tcp_transport;
typedef struct tcp_conn tcp_conn;

/* A send that could not be written at once: the caller's iovec array is
 * copied (the buffers are borrowed); iov[pos] is the first unfinished one,
 * already advanced past its written bytes. */
typedef struct tcp_send {
    struct tcp_send *next;
    void *token;
    int iovcnt;
    int pos;
    struct iovec iov[];
} tcp_send;

typedef enum tcp_state {
    TCP_CONNECTING, /* non-blocking connect in flight; sends queue */
    TCP_OPEN,
    TCP_DEAD,   /* broken or peer-closed: socket closed, on_close pending */
    TCP_CLOSED, /* conn_close called: no callback any more, free pending */
} tcp_state;

struct tcp_conn {
    tcp_transport *tp;
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* conn_close waits here for in_cb to clear */

    /* Guarded by mu. */
    tcp_state state;
    int fd;               /* -1 once DEAD or CLOSED */
    uint32_t events;      /* epoll mask currently registered */
    bool unwatched;       /* taken out of epoll while it is hot: progress
                           * polls it on every call (tcp_progress.c) */
    tcp_send *head, *tail; /* queued sends, in order */
    void **done;          /* tokens written completely, on_sent pending */
    size_t done_pos, done_len, done_cap;
    size_t nqueued;       /* sends on the queue; done_cap >= done_len +
                           * nqueued, so completing never allocates */
    bool held;            /* the queue is send_more's, unwritten: no
                           * EPOLLOUT; the next send or flush writes it */
    size_t held_bytes;
    int close_status;     /* on_close status once DEAD (0: peer closed) */
    int sock_err;         /* errno a send outside progress hit; reported
                           * when progress sees the socket end */
    bool close_delivered; /* on_close has run */
    bool in_cb;           /* a callback for this conn is running */
    pthread_t cb_thread;  /* the thread running it */
    int close_waiters;
    char close_msg[TCP_MSG_LEN];

    /* Guarded by tp->lock. */
    tcp_conn *prev, *next;     /* tp->conns */
    tcp_conn *rnext, *rprev;   /* tp->ready */
    bool on_ready;
    tcp_conn *znext;           /* tp->zombies */
    bool gone;                 /* shut down: never hot again */

    char peer[TCP_PEER_LEN];   /* immutable after creation */
    /* The core's pointer (conn_set_context): set and read from any thread,
     * release/acquire so that what it points to is published with it. */
    _Atomic(void *) ctx;
};

struct tcp_transport {
    disco_transport_callbacks cb;
    void *ctx;
    int epfd, lfd, evfd;
    char address[TCP_PEER_LEN + 8]; /* "tcp://host:port" */

    pthread_mutex_t lock;
    /* Guarded by lock. */
    tcp_conn *conns;     /* every live connection (not yet conn_close'd) */
    tcp_conn *ready, *ready_tail; /* connections with callbacks owed */
    tcp_conn *zombies;   /* closed during a progress call, freed after it */
    bool in_progress;
    bool sleeping;       /* progress is (about to be) blocked in epoll_wait */
    bool woken;          /* the eventfd was written since it went to sleep */
    unsigned lazy_done;  /* completions owed since progress last looked */
    tcp_conn *hot;       /* the connection data came on last (see
                          * tcp_progress.c); cleared when it is shut down */
    unsigned hot_polls;  /* polls of hot alone since the last epoll_wait */
    unsigned hot_hits;   /* hot polls in a row that read data from hot */
    tcp_conn *unwatched; /* hot, taken out of epoll (at most one); cleared
                          * when it is shut down */
    bool rewatch;        /* wait_arm asks the next progress call to put
                          * unwatched back into epoll */

    /* Used by the progress thread only. */
    tcp_conn *last_read; /* the connection this call read data from last */
    uint8_t rbuf[TCP_RBUF_SIZE];
};

static inline tcp_transport *tcp_tp(disco_transport *tp)
{
    return (tcp_transport *)(void *)tp;
}

static inline tcp_conn *tcp_c(disco_conn *c)
{
    return (tcp_conn *)(void *)c;
}

static inline disco_conn *tcp_dc(tcp_conn *c)
{
    return (disco_conn *)(void *)c;
}

/* tcp_addr.c: addresses, socket options, errno mapping. */

/* Parses "tcp://A.B.C.D:PORT" or "tcp://[IPV6]:PORT" strictly (numeric
 * host, port 1..65535). 0 or DISCO_EINVAL with the last error set. */
int tcp_addr_parse(const char *address, struct sockaddr_storage *ss,
                   socklen_t *len);
/* Parses a numeric host for listening ("127.0.0.1", "::1", "[::1]") with
 * port 0. 0 or DISCO_EINVAL with the last error set. */
int tcp_host_parse(const char *host, struct sockaddr_storage *ss,
                   socklen_t *len);
/* Writes "host:port" ("[v6]:port" for IPv6) into buf. */
void tcp_addr_format(const struct sockaddr *sa, char *buf, size_t len);
/* The disco status for a socket errno. */
int tcp_status(int err);
/* Sets TCP_NODELAY on fd. */
void tcp_set_nodelay(int fd);
/* Sets the last error to what (a call) failed with err; returns the status. */
int tcp_fail_errno(int err, const char *what, const char *where);

/* tcp_conn.c: connection life cycle. */

/* A new connection on fd in state with the core's ctx, linked into
 * tp->conns. NULL when out of memory (fd is left to the caller). */
tcp_conn *tcp_conn_new(tcp_transport *tp, int fd, tcp_state state,
                       const char *peer, void *ctx);
/* Breaks c (mu held): closes its socket, records status and its detail for
 * on_close; sends still queued fail. Makes c deliverable. */
void tcp_conn_fail_locked(tcp_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Registers the epoll mask c needs now (mu held), unless c is unwatched.
 * 0 or a negative errno. */
int tcp_conn_update_events_locked(tcp_conn *c);
/* Takes c out of epoll, or puts it back with the mask it needs (mu held,
 * progress thread). 0 or a negative errno. */
int tcp_conn_unwatch_locked(tcp_conn *c);
int tcp_conn_rewatch_locked(tcp_conn *c);
/* Runs the callbacks c owes (completed sends; once broken the failed sends
 * and on_close), one at a time, until none is left, c is closed or budget
 * callbacks ran (then c goes back on the ready list). Progress thread only.
 * Returns the number run. */
int tcp_conn_deliver(tcp_conn *c, int budget);
/* Whether c owes callbacks (mu held). */
bool tcp_conn_owes_locked(const tcp_conn *c);
/* Bracket a callback for c: enter marks c->in_cb and drops mu, leave takes
 * mu back and wakes a conn_close waiting for the callback to end. */
void tcp_conn_cb_enter_locked(tcp_conn *c);
void tcp_conn_cb_leave_locked(tcp_conn *c);
/* Puts c on the ready list and wakes a sleeping progress (mu held). */
void tcp_conn_mark_ready_locked(tcp_conn *c);
/* The same for a send completed outside progress: wakes a sleeping
 * progress only once TCP_LAZY_DONE completions are owed (mu held). */
void tcp_conn_mark_done_locked(tcp_conn *c);
/* Makes room to complete `extra` more sends than c holds (mu held). 0 or
 * DISCO_ENOMEM with the last error set. */
int tcp_conn_done_reserve_locked(tcp_conn *c, size_t extra);
/* Marks c closed, closes its socket and completes every send it still holds
 * on the calling thread: written ones with on_sent(0), queued ones with
 * on_sent(status). Unlinks c from the transport's lists; returns true when
 * the caller must not free c: a progress call is running (it frees c when
 * it returns) or c was already closed. conn_close and fini. */
bool tcp_conn_shutdown(tcp_conn *c, int status);
/* Frees c (socket closed, lists empty). */
void tcp_conn_free(tcp_conn *c);

/* tcp_send.c: writing. */

/* Writes as much of the queue as the socket takes (mu held); finished sends
 * move to the completions. 0, or a negative errno that broke the socket. */
int tcp_conn_write_locked(tcp_conn *c);

/* tcp_transport.c: wake-up. */
void tcp_wake(tcp_transport *tp);

/* The ops slots, one file each. */
int tcp_init(disco_transport **tp, const char *host, const char *arg,
             const disco_transport_callbacks *cb, void *ctx);
int tcp_local_address(disco_transport *tp, char *buf, size_t len);
int tcp_connect(disco_transport *tp, const char *address, void *ctx,
                disco_conn **c);
int tcp_send_op(disco_conn *c, const struct iovec *iov, int iovcnt,
                void *token);
int tcp_send_more_op(disco_conn *c, const struct iovec *iov, int iovcnt,
                     void *token);
void tcp_flush_op(disco_conn *c);
int tcp_progress(disco_transport *tp, int timeout_ms);
void tcp_interrupt(disco_transport *tp);
int tcp_wait_fd(disco_transport *tp);
int tcp_wait_arm(disco_transport *tp);
void tcp_conn_close(disco_conn *c);
const char *tcp_conn_peer(disco_conn *c);
void tcp_conn_set_context(disco_conn *c, void *ctx);
void *tcp_conn_context(disco_conn *c);
void tcp_fini(disco_transport *tp);

#endif
