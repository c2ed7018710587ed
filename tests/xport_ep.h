/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * An endpoint of a transport under test: one transport, driven through its
 * ops table only, and what its callbacks saw. test_tcp, test_shm and
 * test_ofi each test one transport with endpoints; the ops table is the
 * endpoint's, so nothing here knows which transport it drives. What those
 * tests do around endpoints alike (waits with a deadline, payloads and
 * their hash, a progress blocked in a thread) is here too.
 *
 * Callbacks may run on helper threads, so they record what they see under
 * the endpoint's mutex (or in atomics) and the test asserts afterwards on
 * its own thread. Every wait is a bounded loop of short progress calls with
 * a deadline: a hang fails the test instead of stalling it.
 */
#ifndef DISCO_TESTS_XPORT_EP_H
#define DISCO_TESTS_XPORT_EP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/transport.h"
#include "test_util.h"

/* How long any wait may take before the test fails. */
#define DEADLINE_S 60.0
/* Connections an endpoint records (accepted, closed); more are not kept. */
#define MAXC 32

double now_s(void); /* CLOCK_MONOTONIC, in seconds */
void sleep_ms(int ms);

/* ---- an endpoint: one transport and what its callbacks saw ------------- */

/* The token of a send (or an rma_read): how often, how and when on_sent
 * (on_read) reported it. */
typedef struct rec {
    atomic_int count;
    atomic_int status;
    atomic_long seq;
} rec;

typedef struct ep {
    const disco_transport_ops *ops; /* the transport under test */
    disco_transport *tp;
    pthread_mutex_t mu;
    disco_conn *accepted[MAXC];
    int naccepted;
    disco_conn *closed[MAXC];
    int close_status[MAXC];
    long close_seq[MAXC];
    void *close_ctx[MAXC]; /* conn_context when on_close came */
    int nclosed;
    char close_msg[256];   /* the error of the last on_close or on_read < 0 */
    uint8_t *rx; /* stores received bytes when set (rxcap of them) */
    size_t rxcap, rxlen, rxtotal;
    uint64_t hash; /* fnv of every byte received */
    long nrecv;
    atomic_long seq;       /* orders callbacks */
    atomic_long sent_ok, sent_err, read_ok, read_err;
    atomic_uintptr_t dead; /* a conn the test closed: callbacks are late */
    atomic_int late;
    bool close_in_recv;    /* on_recv closes its connection */
    bool echo_ack;         /* on_recv answers with a small send */
    bool slow_recv;        /* on_recv takes a while (widens races) */
} ep;

/* What an endpoint's transport calls back (ctx: the endpoint). Tests of
 * init's arguments take a copy to break. */
extern const disco_transport_callbacks ep_callbacks;

/* Opens e: ops->init(host, arg) with ep_callbacks; the test fails unless
 * it succeeds. ep_try_open returns init's status instead (e is open only
 * when it is 0), for a host this machine may not have. */
void ep_open(ep *e, const disco_transport_ops *ops, const char *host, const char *arg);
int ep_try_open(ep *e, const disco_transport_ops *ops, const char *host, const char *arg);
void ep_close(ep *e);
/* Keeps the first cap bytes received from now on in e->rx. */
void ep_store(ep *e, size_t cap);
int ep_naccepted(ep *e);
int ep_nclosed(ep *e);
size_t ep_rxtotal(ep *e);
/* The index of c among e's closed connections, or -1. */
int ep_closed_index(ep *e, disco_conn *c);
/* Sends the n bytes at p on c, a connection of e's transport (e's own, or
 * a peer endpoint's over the same ops), with r as the token. */
int ep_send(ep *e, disco_conn *c, const void *p, size_t n, rec *r);

/* One round of progress on a and b (either may be NULL); sleeps briefly in
 * progress when nothing happened. */
void pump_once(ep *a, ep *b);

/* Pumps until cond holds or the deadline passes; the test asserts cond. */
#define PUMP_UNTIL(a, b, cond)                                                 \
    do {                                                                       \
        double deadline_ = now_s() + DEADLINE_S;                               \
        while (!(cond) && now_s() < deadline_)                                 \
            pump_once(a, b);                                                   \
        assert_true(cond);                                                     \
    } while (0)

/* Pumps for ms milliseconds (to let wrong callbacks show up). */
void pump_for(ep *a, ep *b, int ms);

/* Connects a to b; returns a's end, b's end in *bc. */
disco_conn *connect_pair(ep *a, ep *b, disco_conn **bc);

/* ---- payloads ------------------------------------------------------------ */

#define FNV_INIT 0xcbf29ce484222325ull
uint64_t fnv(uint64_t h, const uint8_t *p, size_t n);
/* n bytes of a xorshift stream: the same seed, the same bytes (a child
 * process makes them again to compare). */
void fill_random(uint8_t *p, size_t n, uint64_t seed);

/* ---- around the transport ------------------------------------------------ */

/* Descriptors open in this process (what a transport opened and closed). */
int count_fds(void);

/* Whether fd is readable within ms (a transport's wait fd). */
bool fd_readable(int fd, int ms);

/* A progress(-1) of e on a thread of its own: block_main runs it, done says
 * when it returned, rc what. */
typedef struct blocked {
    ep *e;
    atomic_bool done;
    int rc;
} blocked;

void *block_main(void *arg);

/* Two threads sending on one connection: sender_main sends PER_THREAD
 * messages of 8 bytes {id, i} on c, a connection of e, as two iovecs. */
#define PER_THREAD 10000

typedef struct sender {
    ep *e;
    disco_conn *c;
    uint32_t id;
    uint32_t msg[PER_THREAD][2];
    rec recs[PER_THREAD];
    atomic_int failures;
} sender;

void *sender_main(void *arg);

/* Progress of e on a thread of its own, 1 ms at a time, until stop: errors
 * counts the calls that failed. With feed set, it also keeps a few sends
 * of 64 KiB in flight on feed, a connection of e, until one fails. */
typedef struct runner {
    ep *e;
    atomic_bool stop;
    disco_conn *feed;
    atomic_int inflight;
    int errors;
} runner;

void *runner_main(void *arg);

#endif
