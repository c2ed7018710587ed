/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Rendezvous: large data of a message is not copied into it. The message
 * carries a descriptor in its place (wire.h: RDV values), and the data
 * reaches the buffer the receiver hands on (pooled: disco_mem_alloc)
 * in one of two ways:
 *  - RMA, when the peer's data path is a transport with
 *    DISCO_TRANSPORT_CAP_RMA: the data stays in the sender's memory,
 *    registered, and the receiver reads it;
 *  - streamed, otherwise (TCP): the sender writes it right behind the frame,
 *    straight from its memory (more iovecs of the same send), and the
 *    receiver copies it from the transport's buffer into place as it
 *    arrives (the one copy a socket needs), before the next frame.
 * For data of at least the eager limit (the transport's eager_max, 64 KiB
 * when it has none, or DISCO_EAGER_MAX bytes).
 *
 * Users: remotecall_fetch/remotecall_wait arguments, every result, so
 * RemoteChannel items both ways (put and take are such calls to the owner),
 * and closures' captured values (src/rpc/remotecall.h).
 *
 * Lifetimes:
 *  - Arguments: the caller keeps its registrations until the reply comes (a
 *    reply means the reads are done: the callee reads its arguments before
 *    the function runs), which is why only calls whose caller waits for the
 *    reply with the arguments alive (remotecall_fetch, remotecall_wait) use
 *    it. An interrupted caller stops waiting and releases at once: the
 *    callee's read may then fail, which fails only that call.
 *  - Results: the callee holds the result (and the call) after replying,
 *    until the caller says RDV_DONE once its reads are over, or the caller
 *    is gone (disco__held_*).
 * The receiver's reads complete through on_read, then the message goes on
 * as if its data had come inline.
 */
#ifndef DISCO_CORE_RDV_H
#define DISCO_CORE_RDV_H

#include <stdatomic.h>
#include <sys/uio.h>

#include "core/runtime.h"
#include "mem/mem.h"
#include "wire/wire.h"

/* The registrations a sender holds for one message (src/mem: cached, so
 * a buffer sent again is not registered again). */
typedef struct disco__rdv_regs {
    /* Set by the caller: when not NULL, only the data of these values (the
     * items of a list) may go by rendezvous. */
    const disco_value *scope;
    disco__xport *x; /* RMA: registrations on x; NULL: streamed */
    disco__mem_reg **reg;
    size_t n, cap;
    size_t bytes; /* exposed, in all */
    struct iovec *trail; /* streamed: the data to send after the frame */
    size_t ntrail, trail_cap;
} disco__rdv_regs;

/* The rendezvous policy for sending to p into *out, with regs to collect
 * what the message then holds on to. */
void disco__rdv_policy(disco__peer *p, disco__rdv_regs *regs, disco__rdv_out *out);

/* Drops the registrations (after the reply, or when sending failed). */
void disco__rdv_release(disco__rdv_regs *regs);

/* The reads of one received message. */
typedef struct disco__rdv_wait {
    disco__rdv_in in;       /* what to read (filled by the decoder) */
    disco__xport *x;        /* NULL: streamed behind the frame */
    disco__mem_reg **reg;   /* local registrations of the destinations */
    atomic_size_t pending;
    _Atomic int status;     /* the first failure */
    int from;               /* the sender's pid, for messages */
    /* Called once every read is done (w->status says how), on the
     * progress thread. */
    void (*done)(struct disco__rdv_wait *w);
} disco__rdv_wait;

/* Prepares w->in for decoding a message from p; returns &w->in. */
disco__rdv_in *disco__rdv_accept(disco__peer *p, disco__rdv_wait *w);

/* Starts reading what w->in lists from p; done follows (even when some
 * reads could not start: w->status is their failure). Streamed data is
 * taken from p's stream from now on (disco__rdv_trailer_take). */
void disco__rdv_fetch(disco__peer *p, disco__rdv_wait *w);

/* Streamed data of p's last frame arrived: copies what of data[0..len)
 * belongs to it into place; returns how many bytes it took. Completes the
 * reads once all is in. Progress thread. */
size_t disco__rdv_trailer_take(disco__peer *p, const uint8_t *data, size_t len);

/* p is gone: streamed data it still owed fails with status. */
void disco__rdv_trailer_abort(disco__peer *p, int status);

/* Frees what w holds (not the data read: the values own it). */
void disco__rdv_wait_fini(disco__rdv_wait *w);

/* A reply whose data the caller still reads: released (release called, on
 * any thread) when the caller says so or is gone. */
typedef struct disco__held {
    struct disco__held *next;
    disco__peer *to;
    uint64_t call_id;
    disco__rdv_regs regs;
    void (*release)(struct disco__held *h);
} disco__held;

/* Keeps h (its reply is sent) until RDV_DONE or the peer's end. */
void disco__held_add(disco__held *h);

/* RDV_DONE from p for call_id: releases what was held for it. */
void disco__held_done(disco__peer *p, uint64_t call_id);

/* p is gone: releases everything held for it. */
void disco__held_drop_peer(disco__peer *p);

/* Tells p that the data of its reply to call_id has been read. */
void disco__rdv_send_done(disco__peer *p, uint64_t call_id);

/* Transport upcall: an rma_read finished (token is its disco__rdv_wait). */
void disco__on_read(void *ctx, disco_conn *c, void *token, int status);

#endif
