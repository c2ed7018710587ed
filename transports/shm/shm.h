/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared-memory transport: private declarations (nothing outside
 * transports/shm includes this header).
 *
 * Between two processes of one host. A transport listens on a Unix-domain
 * SOCK_SEQPACKET socket in the abstract namespace ("shm://@disco-PID-HEX":
 * no file, nothing left behind when the process dies). connect() dials it
 * synchronously, creates a sealed memfd segment holding two byte rings (one
 * per direction, see shm_ring.h), maps it and passes the memfd and its own
 * wake-up eventfd over the socket (SCM_RIGHTS); the acceptor checks the
 * peer's uid (SO_PEERCRED), maps the segment and replies with its eventfd.
 * The socket then stays open for the connection's life, carrying nothing:
 * its end of file is how each side learns that the other is gone.
 *
 * Data path: send copies into the ring under the connection's mutex (the
 * rest is queued, buffers borrowed until on_sent, and progress writes it as
 * the consumer frees room; send_copy copies the rest too, and records no
 * completion); progress hands on_recv pointers straight into
 * the ring and advances the tail after the callback (no copy on receive).
 *
 * Wake-ups (spin, then block): the core polls progress(tp, 0) while busy;
 * nothing in that path makes a system call per message. Only a consumer
 * about to block (progress with a timeout, or wait_arm) raises the
 * `data_waiter` flag of each ring it reads (and `room_waiter` of each ring
 * it has queued bytes for), then looks at the rings again (seq_cst on both
 * sides, Dekker style: either the sleeper sees the new bytes or the
 * producer sees the flag). A producer that sees the flag writes the peer's
 * eventfd. The epoll set behind wait_fd holds the own eventfd, the listener
 * and every connection's socket. A polling progress looks at that epoll set
 * only every SHM_EPOLL_EVERY calls (or when it was armed): accepts and
 * deaths are not latency-critical, and a system call per poll would cost
 * far more than the ring checks it comes with.
 *
 * Threading: as tcp.h describes for the TCP transport: progress on one
 * thread at a time (DISCO_EBUSY otherwise); send, rma_read and conn_close
 * from any thread; callbacks never run under the connection mutex; on_sent
 * and on_read always deferred to progress, except those conn_close and fini
 * deliver on their own thread; conn_close waits for a callback of c running
 * on another thread, and none runs after it returns. progress scans a
 * snapshot of the connection array; conn_close during progress parks the
 * connection on the zombie list (its segment still mapped), freed when
 * progress returns.
 *
 * Closing: conn_close raises its side's `closed` flag in the segment before
 * closing the socket, so the peer reports on_close(c, 0). An end of file
 * without the flag is a dead process: on_close(c, DISCO_EPROCEXIT). Either
 * way the peer first receives what is left in the ring.
 *
 * RMA: by cross-memory attach (process_vm_readv from the peer's pid), one
 * copy, no pinning. init allows any process to read us (PR_SET_PTRACER, for
 * Yama); the kernel still requires the same uid. A key is {pid, address,
 * length}: rma_read checks that it comes from this peer and that the read
 * lies inside it, but cannot check that the peer still has it registered.
 *
 * Lock order: shm_conn.mu before shm_transport.lock; never the reverse.
 */
#ifndef DISCO_TRANSPORTS_SHM_H
#define DISCO_TRANSPORTS_SHM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>

#include "core/transport.h"
#include "disco/error.h"
#include "disco/status.h"
#include "transports/shm/shm_ring.h"

#define SHM_SCHEME "shm://@"
#define SHM_NAME_MAX 64        /* the abstract socket name after '@' */
#define SHM_PEER_LEN 80
#define SHM_MSG_LEN 192        /* saved detail of a broken connection */
#define SHM_EVENTS 64          /* epoll events per progress call */
#define SHM_EPOLL_EVERY 4096   /* a polling progress looks at epoll this often */
#define SHM_LAZY_DONE 32       /* completions owed before a sleeper is woken */
#define SHM_EAGER_MAX (16 * 1024)

typedef struct shm_transport shm_transport;
typedef struct shm_conn shm_conn;

/* A send not yet (entirely) in the ring: the iovec array is copied, the
 * buffers are borrowed; iov[pos] is the first unfinished one. */
typedef struct shm_send {
    struct shm_send *next;
    void *token;
    bool owned;    /* send_copy's: the bytes follow iov[], no on_sent */
    int iovcnt;
    int pos;
    struct iovec iov[];
} shm_send;

/* A finished rma_read whose on_read is owed. */
typedef struct shm_read {
    struct shm_read *next;
    void *token;
    int status;
    char msg[SHM_MSG_LEN];
} shm_read;

typedef enum shm_state {
    SHM_ACCEPTING, /* accepted socket, hello not yet in: the core never saw it */
    SHM_OPEN,
    SHM_DEAD,   /* peer gone: socket closed, callbacks owed until on_close */
    SHM_CLOSED, /* conn_close called: no callback any more, free pending */
} shm_state;

struct shm_conn {
    shm_transport *tp;
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* conn_close waits here for in_cb to clear */

    /* Guarded by mu. */
    shm_state state;
    int sock;              /* the Unix socket; -1 once DEAD or CLOSED */
    int peer_evfd;         /* the peer's eventfd; -1 until its reply */
    shm_seg seg;           /* mapped once OPEN; unmapped by shm_conn_free */
    shm_send *head, *tail; /* queued sends, in order */
    size_t nqueued;
    void **done;           /* tokens entirely in the ring, on_sent owed */
    size_t done_pos, done_len, done_cap; /* done_cap >= done_len + nqueued */
    shm_read *reads, *reads_tail; /* finished rma_reads, on_read owed */
    int close_status;      /* on_close status once DEAD */
    bool close_delivered;
    bool in_cb;            /* a callback for this conn is running */
    pthread_t cb_thread;
    /* conn_closes waiting for a callback to end: atomic, since the
     * unlocked read below looks at it without mu. */
    atomic_int close_waiters;
    char close_msg[SHM_MSG_LEN];

    /* Guarded by tp->lock. */
    shm_conn *prev, *next; /* tp->conns */
    shm_conn *znext;       /* tp->zombies */

    /* Progress must look at c under mu: set by whoever leaves it work
     * (shm_conn_unlock), cleared by progress when nothing is left. Without
     * it, progress only peeks at the ring: no lock while c is idle. */
    atomic_bool kick;
    bool ring_open;        /* progress thread only: OPEN when last seen */
    /* The unlocked read (shm_progress.c): while no kick is pending,
     * progress reads the ring and runs on_recv without mu. `reading` says
     * it does, `closing` that conn_close began; each side stores its flag,
     * then loads the other's (seq_cst, Dekker style): either the reader
     * sees the close and stops, or conn_close sees the reader and waits. */
    atomic_bool reading;
    atomic_bool closing;

    pid_t peer_pid;        /* from SO_PEERCRED, immutable once OPEN */
    char peer[SHM_PEER_LEN];
    _Atomic(void *) ctx;
};

struct shm_transport {
    disco_transport_callbacks cb;
    void *ctx;
    int epfd, lfd, evfd;
    char address[sizeof(SHM_SCHEME) + SHM_NAME_MAX];

    pthread_mutex_t lock;
    /* Guarded by lock. */
    shm_conn *conns;       /* every live connection (not yet conn_close'd) */
    shm_conn *zombies;     /* closed during a progress call, freed after it */
    _Atomic unsigned long gen; /* bumped when conns changes (read unlocked) */
    /* Set while progress (or wait_arm) runs, without the lock: seq_cst,
     * against unlink_conn's bump of gen and look at it (shm_conn.c). */
    atomic_bool in_progress;
    atomic_bool has_zombies; /* zombies is not empty (read unlocked) */

    /* Written with seq_cst (see the wake-ups above). */
    atomic_bool sleeping;  /* progress is (about to be) blocked */
    atomic_uint lazy_done; /* completions made outside progress since */

    /* Used by the progress thread only. */
    shm_conn **scan;       /* snapshot of conns, taken when gen changes */
    size_t nscan, scan_cap;
    unsigned long scan_gen;
    unsigned polls;        /* counts polling calls for SHM_EPOLL_EVERY */
    bool armed;            /* waiter flags raised: lower them next call */
};

static inline shm_transport *shm_tp(disco_transport *tp)
{
    return (shm_transport *)(void *)tp;
}

/* Unlocks c->mu after a change that progress must act on (a send, a read,
 * a state change): progress then looks at c under mu on its next call. */
static inline void shm_conn_unlock(shm_conn *c)
{
    atomic_store_explicit(&c->kick, true, memory_order_release);
    pthread_mutex_unlock(&c->mu);
}

static inline shm_conn *shm_c(disco_conn *c)
{
    return (shm_conn *)(void *)c;
}

static inline disco_conn *shm_dc(shm_conn *c)
{
    return (disco_conn *)(void *)c;
}

/* shm_sock.c: the Unix socket, addresses and the handshake. */

/* The disco status for an errno. */
int shm_status(int err);
/* Sets the last error to what failed with err; returns the status. */
int shm_fail_errno(int err, const char *what);
/* Parses "shm://@NAME" into an abstract socket address. 0 or DISCO_EINVAL. */
int shm_addr_parse(const char *address, struct sockaddr_un *sa, socklen_t *len);
/* Binds and listens on a fresh abstract name; writes the address. */
int shm_listen(int *lfd, char *address, size_t len);
/* The peer's pid when it has our uid; DISCO_EPERM (last error set) if not. */
int shm_peer_check(int fd, pid_t *pid);
/* Sends bytes with fds attached (nfds 0..2). 0 or a negative errno. */
int shm_sock_send(int fd, const void *buf, size_t len, const int *fds, int nfds);
/* Receives one message and up to 2 fds (the rest is closed): bytes read,
 * 0 at end of file, or a negative errno (-EAGAIN: nothing yet). *nfds
 * receives the count of fds. */
ssize_t shm_sock_recv(int fd, void *buf, size_t len, int *fds, int *nfds);

/* shm_conn.c: connection life cycle, callbacks, conn_close. */

/* A new connection on sock (NULL when out of memory), not yet linked. */
shm_conn *shm_conn_new(shm_transport *tp, int sock, shm_state state,
                       const char *peer, void *ctx);
/* Links c into tp->conns, where progress and fini find it. A progress that
 * arms after the link arms c too; one that armed before does not, so a
 * connection linked outside progress arms itself if tp->sleeping. */
void shm_conn_link(shm_conn *c);
/* Registers c's socket with the epoll set. 0 or a negative errno. */
int shm_conn_watch(shm_conn *c);
/* Breaks c (mu held): closes its socket, records the status and its detail
 * for on_close; sends still queued fail. */
void shm_conn_fail_locked(shm_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void shm_conn_cb_enter_locked(shm_conn *c);
void shm_conn_cb_leave_locked(shm_conn *c);
/* Runs the callbacks c owes (sends, reads, and once DEAD the failed sends
 * and on_close). Progress thread only. Returns the number run. */
int shm_conn_deliver(shm_conn *c);
/* Whether c owes a callback (mu held). */
bool shm_conn_owes_locked(const shm_conn *c);
/* Room to complete `extra` more sends (mu held). 0 or DISCO_ENOMEM. */
int shm_conn_done_reserve_locked(shm_conn *c, size_t extra);
/* Counts a completion made outside progress; wakes a sleeping progress
 * once SHM_LAZY_DONE of them are owed. */
void shm_note_done(shm_transport *tp);
/* Marks c closed and completes what it holds on the calling thread (see
 * tcp_conn_shutdown). True when the caller must not free c. */
bool shm_conn_shutdown(shm_conn *c, int status);
void shm_conn_free(shm_conn *c);
/* Writes the peer's eventfd (mu held). */
void shm_conn_wake_peer_locked(shm_conn *c);

/* shm_handshake.c: both ends of the handshake (shm_connect too). */

/* Accepts what the listener has. Returns the number announced. */
int shm_accept_all(shm_transport *tp);
/* Handles an event on c's socket: hello, reply or end. Returns callbacks run. */
int shm_conn_sock_event(shm_conn *c);
/* A connector takes the acceptor's reply if it is there (mu held; no
 * callback). True when the peer's eventfd is known now. */
bool shm_conn_try_reply_locked(shm_conn *c);

/* shm_send.c: writing into the ring. */

/* Moves queued bytes into the ring (mu held). 1 if it moved any, else 0. */
int shm_conn_write_queue_locked(shm_conn *c);

/* shm_progress.c (wait_arm too) */

/* Frees the connections closed while a progress call ran (shm_progress.c).
 * One parked after a progress call looked is freed by the next, or by
 * fini: no snapshot has it any more. */
void shm_free_zombies(shm_transport *tp);

/* Reads up to about budget bytes from the ring (mu held, dropped during
 * on_recv). Returns the number of on_recv calls. */
int shm_conn_read_locked(shm_conn *c, size_t budget);
/* Whether this thread is inside an unlocked read's on_recv for c (a
 * conn_close from there must not wait for itself). */
bool shm_conn_reading_here(const shm_conn *c);


/* shm_transport.c */
void shm_wake(shm_transport *tp);

/* The ops slots. */
int shm_init(disco_transport **tp, const char *host, const char *arg,
             const disco_transport_callbacks *cb, void *ctx);
int shm_local_address(disco_transport *tp, char *buf, size_t len);
int shm_connect(disco_transport *tp, const char *address, void *ctx,
                disco_conn **c);
int shm_send_op(disco_conn *c, const struct iovec *iov, int iovcnt, void *token);
int shm_send_copy_op(disco_conn *c, const struct iovec *iov, int iovcnt);
int shm_progress(disco_transport *tp, int timeout_ms);
void shm_interrupt(disco_transport *tp);
int shm_wait_fd(disco_transport *tp);
int shm_wait_arm(disco_transport *tp);
void shm_conn_close(disco_conn *c);
const char *shm_conn_peer(disco_conn *c);
void shm_conn_set_context(disco_conn *c, void *ctx);
void *shm_conn_context(disco_conn *c);
void shm_fini(disco_transport *tp);
int shm_mem_register(disco_transport *tp, void *addr, size_t len, disco_mr **mr,
                     uint8_t *key, size_t *keylen);
void shm_mem_deregister(disco_mr *mr);
int shm_rma_read(disco_conn *c, void *dst, disco_mr *dst_mr, uint64_t raddr,
                 size_t len, const uint8_t *key, size_t keylen, void *token);

#endif
